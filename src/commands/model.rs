//! `features`, `train`, `eval` and `caption`.
use std::path::Path;

use super::out::outln;
use anyhow::bail;

use super::shared::{decoding, print_plain, train_config};
use super::{bleu_table, collect_images, load_options, Ctx};
use crate::cli::{CaptionArgs, EvalArgs, TrainArgs};
use crate::config::{
    DecoderConfig, DecoderOverrides, EncoderKind, FineTune, Gpt2Sizes, ModelConfig, PretrainedLm,
    TagsConfig,
};
use crate::eval::runner::EvalSpec;
use crate::fsio::Fingerprint;
use crate::infer::{CaptionResult, Extras};
use crate::model::clip::ClipImageFolder;
use crate::model::decoding::Decoding;
use crate::model::gpt2::{Gpt2, Gpt2Config};
use crate::model::hf::read_config;
use crate::model::text_tagger::TextTagger;
use crate::run;
use crate::text::hf_tokenizer::HfTokenizer;
use crate::train::{self as training, TrainJob};

/// The architecture `train` asks for: the preset of `--decoder` for `--encoder`, the user's
/// overrides applied by the config ([`DecoderConfig::apply`]), ClipCap's pretrained LM and CLIP's
/// folder read, the hashtag model added.
fn model_config(a: &TrainArgs) -> anyhow::Result<ModelConfig> {
    let frozen = a.encoder_weights.is_some() && !a.fine_tune_encoder;
    let mut model = ModelConfig::preset(a.encoder, frozen, a.decoder, 0);
    if a.fine_tune_encoder {
        let f = FineTune {
            blocks: a
                .fine_tune_blocks
                .unwrap_or_else(|| a.encoder.default_fine_tune_blocks()),
        };
        f.check(a.encoder).map_err(anyhow::Error::msg)?;
        model.fine_tune = Some(f);
    }
    model.decoder.apply(&decoder_overrides(a));
    if let Some(dir) = &a.lm_weights {
        pretrained_lm(a, dir, &mut model.decoder)?;
    }
    if let Some(s) = a.image_size {
        model.preprocess.size = s;
    }
    if a.encoder == EncoderKind::Clip {
        clip_model(&mut model, a)?;
    }
    if a.hashtags || a.hashtags_only {
        model.hashtags = Some(TagsConfig {
            model: a.hashtag_model,
            num_tags: 0,
            hidden_dim: a.tag_hidden,
            only: a.hashtags_only,
        });
    }
    Ok(model)
}

/// `train`'s decoder flags as overrides (`None`: the preset's).
fn decoder_overrides(a: &TrainArgs) -> DecoderOverrides {
    DecoderOverrides {
        embed: a.embed,
        hidden: a.hidden,
        layers: a.layers,
        dropout: a.dropout,
        feed: a.feed,
        attention_dim: a.attention_dim,
        alpha_c: a.alpha_c,
        heads: a.heads,
        ff_dim: a.ff_dim,
        positions: a.positions,
        mapper: a.mapper,
        prefix_len: a.prefix_len,
        clip_len: a.clip_len,
        mapper_layers: a.mapper_layers,
        lm: a.lm,
    }
}

pub fn train_job(ctx: &Ctx, a: &TrainArgs) -> anyhow::Result<TrainJob> {
    check_fine_tune(a)?;
    if a.freeze_vision {
        bail!("--freeze-vision needs --init-from a BLIP or GIT Hugging Face folder");
    }
    let mut model = model_config(a)?;
    let mut features = a.features.clone();
    // --init-from: the architecture (and the feature cache, unless given) are the source run's.
    if let Some(src) = &a.scst.init_from {
        training::init::adopt(src, &a.data, &mut model, &mut features)?;
    }
    let train = train_config(ctx, a)?;
    train.validate()?;
    if let Some(w) = &a.encoder_weights {
        if !w.is_file() && a.encoder != EncoderKind::Clip {
            bail!("--encoder-weights {}: no such file", w.display());
        }
    }
    Ok(TrainJob {
        data: a.data.clone(),
        load: load_options(ctx, &a.dataset),
        out: a.out.clone(),
        resume: a.resume,
        model,
        train,
        encoder_weights: a.encoder_weights.clone(),
        lm_weights: a.lm_weights.clone(),
        features,
        init_from: a.scst.init_from.clone(),
        device: ctx.device,
        quiet: ctx.quiet,
        verbose: ctx.verbose,
    })
}

/// `--fine-tune-encoder` and the flags that only make sense with it.
fn check_fine_tune(a: &TrainArgs) -> anyhow::Result<()> {
    if !a.fine_tune_encoder {
        if a.encoder_lr.is_some() || a.fine_tune_blocks.is_some() {
            bail!("--encoder-lr and --fine-tune-blocks need --fine-tune-encoder");
        }
        return Ok(());
    }
    if a.encoder_weights.is_none() {
        bail!(
            "--fine-tune-encoder needs the pretrained weights (--encoder-weights FILE); without \
             them the encoder trains end to end from scratch anyway"
        );
    }
    if a.features.is_some() {
        bail!(
            "--fine-tune-encoder trains from images (the encoder changes every step), so it \
             cannot read a feature cache: drop --features"
        );
    }
    if a.scst.init_from.is_some() {
        bail!("--fine-tune-encoder starts from --encoder-weights, not from --init-from RUN");
    }
    Ok(())
}

/// `--encoder clip`: the tower's sizes and preprocessing from the `--encoder-weights` folder.
fn clip_model(model: &mut ModelConfig, a: &TrainArgs) -> anyhow::Result<()> {
    let Some(dir) = &a.encoder_weights else {
        bail!(
            "--encoder clip needs --encoder-weights HF_DIR (a Hugging Face CLIP folder; CLIP is \
             not trained end to end)"
        );
    };
    let folder = ClipImageFolder::read(dir)?;
    let size = folder.config.vision.image_size;
    if let Some(s) = a.image_size.filter(|&s| i64::from(s) != size) {
        bail!("--image-size {s}: this CLIP takes {size} px images (its config.json)");
    }
    model.set_clip(folder.config, folder.preprocess.preprocess());
    Ok(())
}

/// `--lm-weights DIR`: ClipCap's LM becomes the folder's GPT-2 (its sizes, positions and BPE),
/// recorded in the config with a fingerprint of its weights.
fn pretrained_lm(a: &TrainArgs, dir: &Path, decoder: &mut DecoderConfig) -> anyhow::Result<()> {
    let DecoderConfig::ClipCap(c) = decoder else {
        bail!("--lm-weights needs --decoder clipcap");
    };
    if a.embed.is_some() || a.hidden.is_some() || a.layers.is_some() || a.heads.is_some() {
        bail!(
            "--lm-weights: the LM's sizes are the folder's; drop --embed/--hidden/--layers/--heads"
        );
    }
    let (mut config, _) = read_config::<Gpt2Config>(dir, "GPT-2")?;
    let tokenizer = HfTokenizer::gpt2(dir)?;
    // Loading it once here refuses a folder whose weights contradict its config before the run
    // directory exists.
    drop(Gpt2::load(dir, tch::Device::Cpu)?);
    let weights = [
        dir.join("model.safetensors"),
        dir.join("model.safetensors.index.json"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .unwrap_or_default();
    if let Some(p) = a.dropout {
        (config.embd_pdrop, config.attn_pdrop, config.resid_pdrop) = (p, p, p);
    }
    c.gpt2 = Gpt2Sizes {
        n_embd: config.n_embd,
        n_layer: config.n_layer,
        n_head: config.n_head,
        dropout: config.resid_pdrop,
    };
    c.max_len = config.n_positions - c.prefix_len;
    if c.max_len < 3 {
        bail!(
            "--lm-weights {}: n_positions {} leaves no room for a caption after a prefix of {}",
            dir.display(),
            config.n_positions,
            c.prefix_len
        );
    }
    c.pretrained = Some(Box::new(PretrainedLm {
        eot_id: tokenizer.eos_id() as i64,
        weights_fingerprint: Fingerprint::of_file(&weights)?,
        config,
    }));
    Ok(())
}

/// Train a run: captag's own models, or a BLIP/GIT folder fine-tuned (`--init-from HF_DIR`,
/// or `--resume` of such a run).
pub fn run_train(ctx: &Ctx, a: &TrainArgs) -> anyhow::Result<training::TrainSummary> {
    if super::vl::wants_training(a) {
        return Ok(training::vl::run(&super::vl::train_job(ctx, a)?)?);
    }
    Ok(training::run(&train_job(ctx, a)?)?)
}

pub fn train(ctx: &Ctx, a: &TrainArgs) -> anyhow::Result<()> {
    let s = run_train(ctx, a)?;
    outln!(
        "{} epochs in {:.0}s; best dev {} {:.2} at epoch {} → {}",
        s.epochs,
        s.seconds,
        s.selected_by,
        100.0 * s.best_score,
        s.best_epoch,
        s.out.join(run::BEST).display()
    )?;
    Ok(())
}

pub fn eval(ctx: &Ctx, a: &EvalArgs) -> anyhow::Result<()> {
    if super::vl::is_vl(&a.checkpoint) {
        return super::vl::eval(ctx, a);
    }
    // Flags first: a bad one is refused before the run is loaded.
    let dec = decoding(&a.decode, ctx.seed)?;
    let mut loaded = crate::infer::load_checkpoint(&a.checkpoint, ctx.device, a.last)?
        .in_precision(a.precision)?
        .with_partners(&a.ensemble, ctx.device, a.last)?;
    loaded.allow_unk = a.decode.allow_unk;
    let split = a.split.into();
    let caches = a
        .features
        .iter()
        .map(|f| crate::data::feature_file::FeatureFile::open(f))
        .collect::<crate::Result<Vec<_>>>()?;
    let opts = load_options(ctx, &a.dataset);
    let spec = EvalSpec {
        split,
        decoding: dec,
        mode: a.mode.into(),
        tag_k: a.k.max(1),
    };
    let r = crate::eval::runner::evaluate(
        &loaded,
        &a.data,
        &opts,
        &spec,
        &caches.iter().collect::<Vec<_>>(),
    )?;
    let only = loaded.run.model.hashtags.as_ref().is_some_and(|t| t.only);
    let out = a
        .predictions
        .clone()
        .unwrap_or_else(|| a.checkpoint.join(format!("predictions_{split}.json")));
    run::write_json(&r.predictions, &out)?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&r)?)?;
    } else {
        let name = dec.name();
        outln!(
            "{} images of {split} ({} unreadable), {name}, {} mode, {:.1}s ({:.2} ms per image captioning)",
            r.images,
            r.unreadable,
            r.mode.as_str(),
            r.seconds,
            1000.0 * r.caption_seconds / r.images.max(1) as f64
        )?;
        if !only {
            outln!(
                "{}",
                bleu_table(&[(a.checkpoint.display().to_string(), r.bleu.bleu)])
            )?;
            outln!(
                "CIDEr-D {:.2}  ROUGE-L {:.2}  distinct captions {}/{}  {:.2}M trained parameters",
                100.0 * r.cider,
                100.0 * r.rouge_l,
                r.distinct_captions,
                r.images,
                r.parameters as f64 / 1e6
            )?;
            outln!(
                "<unk>: the most probable word at {} of {} decoding steps ({:.2}%, {}); {} captions contain it",
                r.unk.unk_argmax,
                r.unk.steps,
                100.0 * r.unk.unk_argmax as f64 / r.unk.steps.max(1) as f64,
                if a.decode.allow_unk { "allowed" } else { "masked" },
                r.unk_captions
            )?;
        }
        if let Some(g) = &r.grounded {
            outln!("grounded truth: {g}")?;
        }
        if let Some(t) = &r.hashtags {
            outln!("hashtags ({} images with true tags):", t.rows[0].1.images)?;
            outln!("{}", super::tags::tag_table(t.k, &t.rows))?;
        }
        outln!("predictions: {}", out.display())?;
    }
    Ok(())
}

/// `captag caption`: every image's caption (and hashtags, emoji, moods), one line each or one
/// [`CaptionResult`] JSON object each.
pub fn caption(ctx: &Ctx, a: &CaptionArgs) -> anyhow::Result<()> {
    if super::vl::is_vl(&a.checkpoint) {
        return super::vl::caption(ctx, a);
    }
    if a.prompt.is_some() {
        bail!("--prompt needs a Hugging Face BLIP or GIT folder");
    }
    let job = CaptionJob::open(ctx, a)?;
    let files = collect_images(&a.inputs)?;
    let mut results = job.loaded.caption_files(&files, &job.decoding)?;
    // `--restore`: the restored picture's caption replaces the photo's, which is kept to print.
    let unrestored = match &a.restore {
        Some(dir) => restore_captions(ctx, &job, dir, &mut results)?,
        None => vec![None; results.len()],
    };
    let mut failed = 0;
    for (r, before) in results.into_iter().zip(unrestored) {
        match &r.caption {
            Ok(c) => print_caption(ctx, a, &job, &r.path, c, before)?,
            Err(why) => {
                failed += 1;
                // One line per image, naming it once (decode errors start with the path).
                let name = r.path.display().to_string();
                if why.starts_with(&name) {
                    crate::fsio::errln!("error: {why}");
                } else {
                    crate::fsio::errln!("error: {name}: {why}");
                }
            }
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

/// `caption`'s flags turned into loaded models and a checked decoding.
struct CaptionJob {
    loaded: crate::infer::Loaded,
    text_tags: Option<TextTagger>,
    emoji: Option<TextTagger>,
    moods: Option<crate::infer::moods::MoodRanker>,
    decoding: Decoding,
    /// A hashtag-only run: its captions are not shown.
    tags_only: bool,
    /// `--translate HF_DIR [--lang L]`.
    translator: Option<(
        crate::model::seq2seq::Translator,
        crate::model::seq2seq::translator::TranslateOptions,
    )>,
    /// `--llm`: the model that writes the social post.
    llm: Option<crate::model::llama::chat::ChatLm>,
}

impl CaptionJob {
    fn open(ctx: &Ctx, a: &CaptionArgs) -> anyhow::Result<Self> {
        // Flags first: a bad one is refused before the run is loaded.
        let decoding = decoding(&a.decode, ctx.seed)?;
        let mut loaded = crate::infer::load_checkpoint(&a.checkpoint, ctx.device, a.last)?
            .in_precision(a.precision)?
            .with_partners(&a.ensemble, ctx.device, a.last)?;
        loaded.tag_threshold = a.tags.tag_threshold;
        loaded.with_attention = a.json || a.attention.is_some();
        loaded.allow_unk = a.decode.allow_unk;
        let text_tags = a.tags.text_tags.as_deref().map(TextTagger::load);
        let emoji = a.tags.emoji.as_deref().map(TextTagger::load_emoji);
        let model = &loaded.run.model;
        if a.attention.is_some() && !model.decoder.has_attention_maps() {
            bail!(
                "--attention: the {} decoder has no attention weights over the image (train --decoder attention)",
                model.decoder.name()
            );
        }
        let translator = match &a.translate.translate {
            Some(dir) => {
                let opts = super::translate::options(a.translate.lang.as_deref(), None, None)?;
                let t = crate::model::seq2seq::Translator::load(dir, ctx.device)?;
                t.settings(&opts)?;
                Some((t, opts))
            }
            None => None,
        };
        Ok(CaptionJob {
            translator,
            tags_only: model.hashtags.as_ref().is_some_and(|t| t.only),
            text_tags: text_tags.transpose()?,
            emoji: emoji.transpose()?,
            moods: mood_ranker(ctx, a)?,
            decoding,
            loaded,
            llm: a
                .llm
                .as_deref()
                .map(|d| {
                    crate::model::llama::chat::ChatLm::load(d, a.adapter.as_deref(), ctx.device)?
                        .in_precision(a.precision)
                })
                .transpose()?,
        })
    }
}

/// `caption --restore RUN`: caption the restored picture of every readable image instead;
/// returns the photos' own captions, to print beside.
fn restore_captions(
    ctx: &Ctx,
    job: &CaptionJob,
    dir: &Path,
    results: &mut [crate::infer::Captioned],
) -> anyhow::Result<Vec<Option<String>>> {
    let m = crate::restore::train::open(dir, ctx.device, false)?;
    let mut before = vec![None; results.len()];
    for (r, before) in results.iter_mut().zip(&mut before) {
        let Ok(c) = &r.caption else { continue };
        let img = crate::data::image::decode_rgb(&r.path)?;
        let fixed = crate::restore::apply::restore_image(&m, &img, None)?;
        let restored = job.loaded.caption_image(&fixed.image, &job.decoding)?;
        *before = Some(c.text());
        r.caption = Ok(restored);
    }
    Ok(before)
}

/// One image's output: a JSON object, a social post line, or the plain line (with its
/// alternatives when sampling several), and the attention map when asked.
fn print_caption(
    ctx: &Ctx,
    a: &CaptionArgs,
    job: &CaptionJob,
    path: &Path,
    c: &crate::infer::Caption,
    before: Option<String>,
) -> anyhow::Result<()> {
    if let (Some(dir), Some(w)) = (&a.attention, &c.attention) {
        let png = crate::infer::attention_map::write(dir, path, &c.words, w)?;
        if ctx.verbose {
            crate::fsio::errln!("wrote {}", png.display());
        }
    }
    let extras = Extras {
        text_tags: job.text_tags.as_ref(),
        emoji: job.emoji.as_ref(),
        hashtags: a.tags.hashtags,
        emoji_count: a.tags.hashtags.max(crate::config::defaults::EMOJI_SHOWN),
    };
    let mut r = CaptionResult::new(c, job.tags_only, &extras);
    r.moods = job
        .moods
        .as_ref()
        .map(|m| m.rank(path, a.top_moods))
        .transpose()?;
    if let Some((t, opts)) = &job.translator {
        let tags: Vec<String> = r.hashtags.iter().map(|t| t.tag.clone()).collect();
        let text = vec![r.caption_text().to_string()];
        let mut done = crate::infer::translate::translate_all(t, &text, &[tags], opts)?;
        r.translation = done.pop();
    }
    if let Some(lm) = &job.llm {
        let post = crate::infer::llm_post::social_post(lm, &r)?;
        r.social = Some(post.clone());
        r.llm_post = Some(post);
    }
    let social = a.tags.style == crate::cli::StyleArg::Social || job.llm.is_some();
    if a.json {
        r.image = Some(path.display().to_string());
        r.unrestored_caption = before.filter(|_| !job.tags_only);
        if !social {
            r.social = None;
        }
        return Ok(outln!("{}", serde_json::to_string(&r)?)?);
    }
    if social {
        // One line per image: the post's line breaks become " / ".
        let post = r.social.as_deref().unwrap_or("");
        let flat: Vec<&str> = post.lines().filter(|l| !l.trim().is_empty()).collect();
        outln!("{}\t{}", path.display(), flat.join(" / "))?;
    } else {
        print_plain(path, &r)?;
    }
    if let Some(tr) = &r.translation {
        let tags = tr
            .hashtags
            .iter()
            .map(|t| format!(" #{t}"))
            .collect::<String>();
        outln!("{}\t{}: {}{tags}", path.display(), tr.lang, tr.text)?;
    }
    if let Some(b) = &before {
        outln!("{}\tbefore restoration: {b}", path.display())?;
    }
    if matches!(job.decoding, Decoding::Sample { samples, .. } if samples > 1) {
        // Text output lists alternatives only when the user asked for several samples.
        for (k, alt) in c.alternatives.iter().enumerate() {
            outln!(
                "{}\talternative {}: {} (logp {:.2})",
                path.display(),
                k + 2,
                alt.text,
                alt.logp
            )?;
        }
    }
    Ok(())
}

/// `caption --moods [LABELS] --clip HF_DIR`: the CLIP folder loaded and the labels embedded once.
fn mood_ranker(
    ctx: &Ctx,
    a: &CaptionArgs,
) -> anyhow::Result<Option<crate::infer::moods::MoodRanker>> {
    let Some(labels) = &a.moods else {
        if a.clip.is_some() {
            bail!("--clip is read by --moods; add --moods to rank mood labels");
        }
        return Ok(None);
    };
    let Some(dir) = &a.clip else {
        bail!("--moods needs --clip HF_DIR (a Hugging Face CLIP folder, e.g. openai/clip-vit-base-patch32)");
    };
    if let Some(p) = labels {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if matches!(ext.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png") {
            bail!(
                "--moods {}: that is an image, not a label list; write --moods after the images, or --moods=LABELS.txt",
                p.display()
            );
        }
    }
    if a.top_moods == 0 {
        bail!("--top-moods must be ≥ 1");
    }
    Ok(Some(crate::infer::moods::MoodRanker::load(
        dir,
        labels.as_deref(),
        ctx.device,
    )?))
}
