//! `caption` and `eval` on a Hugging Face BLIP or GIT folder given in place of a run directory
//! (docs/vision-language.md): the folder's own preprocessing and tokenizer, the shared decoding
//! strategies, the same output lines and JSON as a run's captions, hashtags and emoji from the
//! caption text (`--text-tags`, `--emoji`), and zero-shot scores on a dataset split with the
//! common word-level evaluation (BLEU, CIDEr-D, ROUGE-L).
use std::path::Path;

use anyhow::bail;

use super::out::outln;
use super::{bleu_table, collect_images, load_options, Ctx};
use crate::cli::{CaptionArgs, EvalArgs, TrainArgs};
use crate::data::Split;
use crate::infer::{CaptionResult, Extras};
use crate::model::text_tagger::TextTagger;
use crate::model::vl::{is_vl_folder, VlCaptioner};
use crate::run::vl as vlrun;
use crate::train::vl::VlTrainJob;

/// Images per forward pass.
const BATCH: usize = 16;

/// Whether `caption`/`eval` should read `dir` as a BLIP or GIT folder, or a run fine-tuned
/// from one.
pub fn is_vl(dir: &Path) -> bool {
    is_vl_folder(dir) || vlrun::is_vl_run(dir)
}

/// A folder as downloaded, or a fine-tuned run (its best weights; `last`: its last epoch's).
pub fn open(dir: &Path, device: tch::Device, last: bool) -> crate::Result<VlCaptioner> {
    if vlrun::is_vl_run(dir) {
        return Ok(vlrun::open(dir, device, last)?.1);
    }
    VlCaptioner::load(dir, device)
}

/// Whether `train` fine-tunes a BLIP/GIT model: `--init-from` names a folder or a run
/// fine-tuned from one, or `--resume` continues such a run.
pub fn wants_training(a: &TrainArgs) -> bool {
    match &a.scst.init_from {
        Some(src) => is_vl_folder(src) || vlrun::is_vl_run(src),
        None => a.resume && vlrun::is_vl_run(&a.out),
    }
}

/// `train --init-from HF_DIR`'s job: the training flags that apply to a folder (the
/// architecture, vocabulary and feature flags of captag's own models are refused).
pub fn train_job(ctx: &Ctx, a: &TrainArgs) -> anyhow::Result<VlTrainJob> {
    let refused = [
        ("--encoder-weights", a.encoder_weights.is_some()),
        ("--lm-weights", a.lm_weights.is_some()),
        ("--features", a.features.is_some()),
        ("--hashtags", a.hashtags || a.hashtags_only),
        ("--teacher", a.distill.teacher.is_some()),
        ("--captions-per-image", a.captions_per_image.is_some()),
        ("--image-size", a.image_size.is_some()),
    ];
    if let Some((flag, _)) = refused.iter().find(|(_, given)| *given) {
        bail!(
            "{flag} does not apply to fine-tuning a BLIP/GIT folder (its architecture, tokenizer \
             and preprocessing are the folder's)"
        );
    }
    let old = match a.resume {
        true => Some(vlrun::read(&a.out)?),
        false => None,
    };
    let mut train = super::shared::train_config(ctx, a)?;
    train.lr = match (a.lr, &old) {
        (Some(lr), _) => lr,
        (None, Some(r)) => r.train.lr,
        (None, None) => crate::config::defaults::VL_LR,
    };
    // Whole images shuffled per epoch (`train::vl`): recorded as the shuffled order.
    train.batching = crate::config::Batching::Shuffle;
    if let (None, Some(r)) = (a.precision, &old) {
        train.precision = r.train.precision;
    }
    train.validate()?;
    Ok(VlTrainJob {
        data: a.data.clone(),
        load: load_options(ctx, &a.dataset),
        out: a.out.clone(),
        resume: a.resume,
        folder: a.scst.init_from.clone(),
        // Resuming without the flag keeps the run's setting.
        freeze_vision: a.freeze_vision || old.is_some_and(|r| r.freeze_vision),
        train,
        device: ctx.device,
        quiet: ctx.quiet,
        verbose: ctx.verbose,
    })
}

fn load_at(ctx: &Ctx, dir: &Path, last: bool) -> anyhow::Result<VlCaptioner> {
    let m = open(dir, ctx.device, last)?;
    if ctx.verbose {
        crate::fsio::errln!(
            "{}: {} on {:?}, {} tokens, {}-pixel images",
            dir.display(),
            m.config.name(),
            ctx.device,
            m.tokenizer.vocab_size(),
            m.preprocess.size()
        );
    }
    Ok(m)
}

pub fn caption(ctx: &Ctx, a: &CaptionArgs) -> anyhow::Result<()> {
    let decoding = super::shared::decoding(&a.decode, ctx.seed)?;
    if a.attention.is_some() || a.restore.is_some() || a.moods.is_some() || !a.ensemble.is_empty() {
        bail!(
            "--attention, --restore, --moods and --ensemble are not available for BLIP/GIT models"
        );
    }
    if a.last && !vlrun::is_vl_run(&a.checkpoint) {
        bail!("--last needs a run directory, not a Hugging Face BLIP/GIT folder");
    }
    let files = collect_images(&a.inputs)?;
    let m = load_at(ctx, &a.checkpoint, a.last)?;
    let text_tags = a
        .tags
        .text_tags
        .as_deref()
        .map(TextTagger::load)
        .transpose()?;
    let emoji = a
        .tags
        .emoji
        .as_deref()
        .map(TextTagger::load_emoji)
        .transpose()?;
    let prefix = m.prefix(a.prompt.as_deref());
    let results = m.caption_paths(&files, &prefix, &decoding, BATCH)?;
    let extras = Extras {
        text_tags: text_tags.as_ref(),
        emoji: emoji.as_ref(),
        hashtags: a.tags.hashtags,
        emoji_count: a.tags.hashtags.max(crate::config::defaults::EMOJI_SHOWN),
    };
    let social = a.tags.style == crate::cli::StyleArg::Social;
    let mut failed = 0;
    for (path, r) in files.iter().zip(results) {
        let hs = match r {
            Ok(hs) => hs,
            Err(why) => {
                failed += 1;
                crate::fsio::errln!("error: {why}");
                continue;
            }
        };
        let mut r = CaptionResult::new(
            &crate::infer::vl::to_caption(&m, &prefix, &hs),
            false,
            &extras,
        );
        if a.json {
            r.image = Some(path.display().to_string());
            if !social {
                r.social = None;
            }
            outln!("{}", serde_json::to_string(&r)?)?;
        } else if social {
            let post = r.social.as_deref().unwrap_or("");
            let flat: Vec<&str> = post.lines().filter(|l| !l.trim().is_empty()).collect();
            outln!("{}\t{}", path.display(), flat.join(" / "))?;
        } else {
            super::shared::print_plain(path, &r)?;
        }
    }
    if failed == files.len() {
        bail!("no image could be read");
    }
    if failed > 0 {
        return Err(crate::Error::Partial(format!(
            "{failed} of {} images could not be read (listed above); the other {} were captioned",
            files.len(),
            files.len() - failed
        ))
        .into());
    }
    Ok(())
}

/// Zero-shot scores of a folder on a dataset split.
pub fn eval(ctx: &Ctx, a: &EvalArgs) -> anyhow::Result<()> {
    let decoding = super::shared::decoding(&a.decode, ctx.seed)?;
    if !a.features.is_empty() {
        bail!("--features does not apply to BLIP/GIT models (they read the pictures)");
    }
    if !a.ensemble.is_empty() {
        bail!("--ensemble needs captag's own runs, not a BLIP/GIT model");
    }
    if a.last && !vlrun::is_vl_run(&a.checkpoint) {
        bail!("--last needs a run directory, not a Hugging Face BLIP/GIT folder");
    }
    let m = load_at(ctx, &a.checkpoint, a.last)?;
    let split: Split = a.split.into();
    let opts = load_options(ctx, &a.dataset);
    let r = crate::eval::vl::evaluate(&m, &a.data, &opts, split, &decoding, a.mode.into())?;
    let (bleu, seconds, unreadable) = (&r.bleu, r.caption_seconds, r.unreadable);
    let hyps = &r.predictions;
    if let Some(out) = &a.predictions {
        crate::run::write_json(&r.predictions, out)?;
    }
    let name = decoding.name();
    if a.json {
        let v = serde_json::json!({
            "model": m.config.name(), "folder": a.checkpoint, "split": split.to_string(),
            "images": hyps.len(), "unreadable": unreadable, "decoding": name,
            "bleu": bleu, "cider": r.cider, "rouge_l": r.rouge_l,
            "seconds": seconds,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    outln!(
        "{} images of {split} ({unreadable} unreadable), {} {}, {name}, {:.1}s ({:.2} ms per image)",
        hyps.len(),
        m.config.name(),
        if vlrun::is_vl_run(&a.checkpoint) {
            "fine-tuned"
        } else {
            "zero-shot"
        },
        seconds,
        1000.0 * seconds / hyps.len() as f64
    )?;
    outln!(
        "{}",
        bleu_table(&[(a.checkpoint.display().to_string(), bleu.bleu)])
    )?;
    outln!(
        "CIDEr-D {:.2}  ROUGE-L {:.2}",
        100.0 * r.cider,
        100.0 * r.rouge_l
    )?;
    if let Some(out) = &a.predictions {
        outln!("predictions: {}", out.display())?;
    }
    Ok(())
}
