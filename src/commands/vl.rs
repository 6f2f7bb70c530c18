//! `caption` and `eval` on a Hugging Face BLIP or GIT folder given in place of a run directory
//! (docs/vision-language.md): the folder's own preprocessing and tokenizer, the shared decoding
//! strategies, the same output lines and JSON as a run's captions, hashtags and emoji from the
//! caption text (`--text-tags`, `--emoji`), and zero-shot scores on a dataset split with the
//! common word-level evaluation (BLEU, CIDEr-D, ROUGE-L).
use std::path::Path;

use anyhow::bail;

use super::out::outln;
use super::{bleu_table, collect_images, load_dataset, load_options, Ctx};
use crate::cli::{CaptionArgs, EvalArgs};
use crate::data::Split;
use crate::infer::{Alternative, Caption};
use crate::infer::{CaptionResult, Extras};
use crate::model::decoding::Hypothesis;
use crate::model::text_tagger::TextTagger;
use crate::model::vl::{is_vl_folder, VlCaptioner};
use crate::text::tokenize;

/// Images per forward pass.
const BATCH: usize = 16;

/// Whether `caption`/`eval` should read `dir` as a BLIP or GIT folder.
pub fn is_vl(dir: &Path) -> bool {
    is_vl_folder(dir)
}

fn load(ctx: &Ctx, dir: &Path) -> anyhow::Result<VlCaptioner> {
    let m = VlCaptioner::load(dir, ctx.device)?;
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

/// One image's n-best list as captag's caption (words, log-probability, alternatives).
fn to_caption(m: &VlCaptioner, prefix: &crate::model::vl::Prefix, hs: &[Hypothesis]) -> Caption {
    let text = |h: &Hypothesis| m.text(prefix, &h.tokens);
    let best = hs.first();
    Caption {
        words: best
            .map(|h| text(h).split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
        logp: best.map_or(f64::NEG_INFINITY, |h| h.logp),
        tags: None,
        attention: None,
        alternatives: hs
            .iter()
            .skip(1)
            .map(|h| Alternative {
                text: text(h),
                logp: h.logp,
            })
            .collect(),
    }
}

pub fn caption(ctx: &Ctx, a: &CaptionArgs) -> anyhow::Result<()> {
    let decoding = super::model::decoding(&a.decode, ctx.seed)?;
    if a.attention.is_some() || a.restore.is_some() || a.moods.is_some() || a.last {
        bail!(
            "--attention, --restore, --moods and --last need a captag run directory, not a \
             Hugging Face BLIP/GIT folder"
        );
    }
    let files = collect_images(&a.inputs)?;
    let m = load(ctx, &a.checkpoint)?;
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
        let mut r = CaptionResult::new(&to_caption(&m, &prefix, &hs), false, &extras);
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
            super::model::print_plain(path, &r)?;
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
    let decoding = super::model::decoding(&a.decode, ctx.seed)?;
    if a.features.is_some() || a.last {
        bail!(
            "--features and --last need a captag run directory, not a Hugging Face BLIP/GIT folder"
        );
    }
    let m = load(ctx, &a.checkpoint)?;
    let ds = load_dataset(ctx, &a.data, &load_options(ctx, &a.dataset))?;
    let split: Split = a.split.into();
    let samples: Vec<_> = ds.samples.iter().filter(|s| s.split == split).collect();
    if samples.is_empty() {
        bail!("{}: no images in the {split} split", a.data.display());
    }
    let paths: Vec<_> = samples.iter().map(|s| s.path.clone()).collect();
    let prefix = m.prefix(None);
    let t0 = std::time::Instant::now();
    let results = m.caption_paths(&paths, &prefix, &decoding, BATCH)?;
    let seconds = t0.elapsed().as_secs_f64();
    let (mut hyps, mut refs, mut preds) = (vec![], vec![], vec![]);
    let mut unreadable = 0;
    for (s, r) in samples.iter().zip(results) {
        match r {
            Ok(hs) => {
                let text = hs
                    .first()
                    .map(|h| m.text(&prefix, &h.tokens))
                    .unwrap_or_default();
                hyps.push(tokenize(&text));
                refs.push(s.captions.iter().map(|c| tokenize(c)).collect::<Vec<_>>());
                preds.push(serde_json::json!({"image_id": s.id, "caption": text}));
            }
            Err(why) => {
                unreadable += 1;
                if ctx.verbose {
                    crate::fsio::errln!("skipped: {why}");
                }
            }
        }
    }
    if hyps.is_empty() {
        bail!("no image of the {split} split could be read");
    }
    let bleu = crate::eval::bleu::corpus_bleu(&hyps, &refs, a.mode.into())?;
    let cider = crate::eval::cider::cider_d(&hyps, &refs).map_err(anyhow::Error::msg)?;
    let rouge = crate::eval::rouge::rouge_l(&hyps, &refs).map_err(anyhow::Error::msg)?;
    if let Some(out) = &a.predictions {
        crate::run::write_json(&preds, out)?;
    }
    let name = decoding.name();
    if a.json {
        let v = serde_json::json!({
            "model": m.config.name(), "folder": a.checkpoint, "split": split.to_string(),
            "images": hyps.len(), "unreadable": unreadable, "decoding": name,
            "bleu": bleu.bleu, "cider": cider.score, "rouge_l": rouge.score,
            "seconds": seconds,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    outln!(
        "{} images of {split} ({unreadable} unreadable), {} zero-shot, {name}, {:.1}s ({:.2} ms per image)",
        hyps.len(),
        m.config.name(),
        seconds,
        1000.0 * seconds / hyps.len() as f64
    )?;
    outln!(
        "{}",
        bleu_table(&[(a.checkpoint.display().to_string(), bleu.bleu)])
    )?;
    outln!(
        "CIDEr-D {:.2}  ROUGE-L {:.2}",
        100.0 * cider.score,
        100.0 * rouge.score
    )?;
    if let Some(out) = &a.predictions {
        outln!("predictions: {}", out.display())?;
    }
    Ok(())
}
