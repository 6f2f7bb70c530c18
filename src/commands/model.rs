//! `features`, `train`, `eval` and `caption`.
use std::path::Path;

use super::out::outln;
use anyhow::bail;

use super::{bleu_table, collect_images, load_dataset, load_options, Ctx};
use crate::cli::{CaptionArgs, DecodeArgs, EvalArgs, FeaturesArgs, ScheduleArg, TrainArgs};
use crate::config::{
    Batching, DecoderConfig, Distill, EncoderKind, Gpt2Sizes, ModelConfig, PretrainedLm, Schedule,
    TagsConfig, TrainConfig,
};
use crate::data::features;
use crate::eval::runner::EvalSpec;
use crate::fsio::Fingerprint;
use crate::model::clip::ClipImageFolder;
use crate::model::decoding::Decoding;
use crate::model::encoder::{self, ExtractSpec};
use crate::model::gpt2::{Gpt2, Gpt2Config};
use crate::model::hf::read_config;
use crate::model::text_tagger::TextTagger;
use crate::run;
use crate::text::hf_tokenizer::HfTokenizer;
use crate::train::{self as training, TrainJob};

pub fn features(ctx: &Ctx, a: &FeaturesArgs) -> anyhow::Result<()> {
    // `--out` was checked against the data and weights by `commands::guard`.
    let ds = load_dataset(ctx, &a.data, &load_options(ctx, &a.dataset))?;
    // A CLIP folder's weights and preprocessing, or a CNN's weights file.
    let pre = encoder::pretrained(a.encoder, &a.encoder_weights, ctx.device)?;
    let (enc, preprocess, weights_fp) = (pre.encoder, pre.preprocess, pre.fingerprint);
    {
        // One batch of pixels and its copy on the way to the encoder (config::budget).
        use crate::config::budget;
        let per_image = preprocess.output_len() as i64;
        let need = budget::f32s(budget::product(&[a.batch_size as i64, per_image, 2]));
        budget::check(need, || format!("features --batch-size {}", a.batch_size))?;
    }
    let list = ds.image_list();
    let bar = training::progress(ctx.quiet, list.len() as u64, "features");
    let t0 = std::time::Instant::now();
    let spec = ExtractSpec {
        kind: a.encoder,
        weights_fp: &weights_fp,
        preprocess,
        batch_size: a.batch_size,
        device: ctx.device,
        keep_grid: a.grid,
    };
    let mut ex = encoder::extract(&enc, &spec, &list, &bar)?;
    bar.finish_and_clear();
    ex.cache.fingerprint =
        features::fingerprint(a.encoder.as_str(), &weights_fp, &preprocess, &list);
    for (_, why) in &ex.failed {
        if ctx.verbose {
            // `why` names the file already.
            crate::commands::out::errln!("  skipped {why}");
        }
    }
    ex.cache.save(&a.out)?;
    let secs = t0.elapsed().as_secs_f64();
    outln!(
        "{} images → {} ({} features each{}), {} unreadable skipped, {:.1} images/s",
        ex.cache.ids.len(),
        a.out.display(),
        ex.cache.pooled.size()[1],
        if a.grid { " + grids" } else { "" },
        ex.failed.len(),
        ex.cache.ids.len() as f64 / secs.max(1e-9)
    )?;
    Ok(())
}

pub fn train_job(ctx: &Ctx, a: &TrainArgs) -> anyhow::Result<TrainJob> {
    let frozen = a.encoder_weights.is_some();
    let mut model = ModelConfig::preset(a.encoder, frozen, a.decoder, 0);
    model
        .decoder
        .override_sizes(a.embed, a.hidden, a.layers, a.dropout);
    match &mut model.decoder {
        DecoderConfig::ShowTell(c) => c.feed = a.feed.unwrap_or(c.feed),
        DecoderConfig::Attention(c) => {
            c.attention_dim = a.attention_dim.unwrap_or(c.attention_dim);
            c.alpha_c = a.alpha_c.unwrap_or(c.alpha_c);
        }
        DecoderConfig::Transformer(c) => {
            c.heads = a.heads.unwrap_or(c.heads);
            c.ff_dim = a.ff_dim.unwrap_or(c.ff_dim);
            c.positions = a.positions.unwrap_or(c.positions);
        }
        DecoderConfig::ClipCap(c) => {
            c.gpt2.n_head = a.heads.unwrap_or(c.gpt2.n_head);
            c.mapper = a.mapper.unwrap_or(c.mapper);
            c.prefix_len = a.prefix_len.unwrap_or(c.prefix_len);
            c.clip_len = a.clip_len.unwrap_or(c.clip_len);
            c.mapper_layers = a.mapper_layers.unwrap_or(c.mapper_layers);
            c.lm = a.lm.unwrap_or(c.lm);
        }
    }
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
    let train = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        // Resuming without --lr continues with the run's rate (a changed one is refused).
        lr: match (a.lr, a.resume) {
            (Some(lr), _) => lr,
            (None, true) => run::read_config(&a.out.join(run::CONFIG))
                .map(|c| c.train.lr)
                .unwrap_or(2e-3),
            (None, false) => 2e-3,
        },
        clip: a.clip,
        schedule: match a.schedule {
            ScheduleArg::Constant => Schedule::Constant,
            ScheduleArg::Step => Schedule::Step {
                every: 5,
                gamma: 0.5,
            },
            ScheduleArg::Plateau => Schedule::Plateau {
                patience: 2,
                factor: 0.5,
            },
            ScheduleArg::Warmup => Schedule::Warmup { warmup: a.warmup },
            ScheduleArg::Cosine => Schedule::Cosine { warmup: a.warmup },
        },
        early_stop: a.early_stop,
        min_count: a.min_count,
        max_words: a.max_words,
        seed: ctx.seed,
        tag_min_agree: a.tag_min_agree,
        tag_min_count: a.tag_min_count,
        select: a.select,
        batching: match (a.batching, a.resume) {
            (Some(b), _) => b,
            // Resuming: the order the run was trained in (an older run's is `shuffle`).
            (None, true) => run::read_config(&a.out.join(run::CONFIG))
                .map(|c| c.train.batching)
                .unwrap_or(Batching::Buckets),
            (None, false) => Batching::Buckets,
        },
        // Resuming without the flag keeps the run's setting, as for --batching.
        captions_per_image: match (a.captions_per_image, a.resume) {
            (None, true) => run::read_config(&a.out.join(run::CONFIG))
                .ok()
                .and_then(|c| c.train.captions_per_image),
            (k, _) => k,
        },
        distill: match &a.distill.teacher {
            Some(dir) => Some(Distill {
                teacher: dir.display().to_string(),
                teacher_fingerprint: crate::train::distill::teacher_fingerprint(dir)?,
                method: a.distill.kd,
                temperature: a.distill.temperature,
                alpha: a.distill.alpha,
                beam: a.distill.kd_beam,
                teacher_only: a.distill.kd_teacher_only,
            }),
            None => None,
        },
    };
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
        features: a.features.clone(),
        device: ctx.device,
        quiet: ctx.quiet,
        verbose: ctx.verbose,
    })
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

pub fn train(ctx: &Ctx, a: &TrainArgs) -> anyhow::Result<()> {
    let job = train_job(ctx, a)?;
    let s = training::run(&job)?;
    let only = job.model.hashtags.as_ref().is_some_and(|t| t.only);
    outln!(
        "{} epochs in {:.0}s; best dev {} {:.2} at epoch {} → {}",
        s.epochs,
        s.seconds,
        if only {
            "hashtag mAP"
        } else {
            job.train.select.name()
        },
        100.0 * s.best_score,
        s.best_epoch,
        s.out.join(run::BEST).display()
    )?;
    Ok(())
}

pub fn decoding(d: &DecodeArgs, seed: u64) -> anyhow::Result<Decoding> {
    if d.max_len == 0 {
        bail!("--max-len must be ≥ 1");
    }
    // Refused, not reinterpreted: `--beam 0` used to decode greedily, `--alpha NaN` to rank
    // every beam as NaN.
    if !(1..=100).contains(&d.beam) {
        bail!("--beam must be 1 (greedy) to 100, not {}", d.beam);
    }
    if !d.alpha.is_finite() {
        bail!("--alpha must be a finite number, not {}", d.alpha);
    }
    let Some(top_p) = d.top_p else {
        return Ok(Decoding::from_beam(d.beam, d.max_len, d.alpha));
    };
    if !(top_p > 0.0 && top_p <= 1.0) {
        bail!("--top-p must be in (0, 1], not {top_p}");
    }
    if !(d.temperature > 0.0 && d.temperature.is_finite()) {
        bail!(
            "--temperature must be a positive number, not {}",
            d.temperature
        );
    }
    if !(1..=100).contains(&d.samples) {
        bail!("--samples must be 1 to 100, not {}", d.samples);
    }
    Ok(Decoding::Sample {
        max_len: d.max_len,
        top_p,
        temperature: d.temperature,
        samples: d.samples,
        seed,
    })
}

pub fn eval(ctx: &Ctx, a: &EvalArgs) -> anyhow::Result<()> {
    // Flags first: a bad one is refused before the run is loaded.
    let dec = decoding(&a.decode, ctx.seed)?;
    let loaded = crate::infer::load_checkpoint(&a.checkpoint, ctx.device, a.last)?;
    let split = a.split.into();
    let cache = a
        .features
        .as_deref()
        .map(crate::data::features::FeatureCache::load)
        .transpose()?;
    let opts = load_options(ctx, &a.dataset);
    let spec = EvalSpec {
        split,
        decoding: dec,
        mode: a.mode.into(),
        tag_k: a.k.max(1),
    };
    let r = crate::eval::runner::evaluate(&loaded, &a.data, &opts, &spec, cache.as_ref())?;
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

pub fn caption(ctx: &Ctx, a: &CaptionArgs) -> anyhow::Result<()> {
    let dec = decoding(&a.decode, ctx.seed)?;
    let mut loaded = crate::infer::load_checkpoint(&a.checkpoint, ctx.device, a.last)?;
    loaded.tag_threshold = a.tags.tag_threshold;
    loaded.with_attention = a.json || a.attention.is_some();
    let text_model = a
        .tags
        .text_tags
        .as_deref()
        .map(TextTagger::load)
        .transpose()?;
    let emoji_model = a
        .tags
        .emoji
        .as_deref()
        .map(TextTagger::load_emoji)
        .transpose()?;
    let social = a.tags.style == crate::cli::StyleArg::Social;
    let only = loaded.run.model.hashtags.as_ref().is_some_and(|t| t.only);
    if a.attention.is_some() && !loaded.run.model.decoder.has_attention_maps() {
        bail!(
            "--attention: the {} decoder has no attention weights over the image (train --decoder attention)",
            loaded.run.model.decoder.name()
        );
    }
    let moods = mood_ranker(ctx, a)?;
    let files = collect_images(&a.inputs)?;
    // Text output lists alternatives only when the user asked for several samples.
    let sampled = matches!(dec, Decoding::Sample { samples, .. } if samples > 1);
    let mut failed = 0;
    let mut results = loaded.caption_files(&files, &dec)?;
    // `--restore`: the restored picture's caption replaces the photo's, which is kept to print.
    let mut unrestored: Vec<Option<String>> = vec![None; results.len()];
    if let Some(dir) = &a.restore {
        let m = crate::restore::train::open(dir, ctx.device, false)?;
        for (r, before) in results.iter_mut().zip(&mut unrestored) {
            let Ok(c) = &r.caption else { continue };
            let img = crate::data::image::decode_rgb(&r.path)?;
            let fixed = crate::restore::apply::restore_image(&m, &img, None)?;
            let mut nbest = loaded.caption_image(&fixed.image, &dec)?.into_iter();
            if let Some(mut best) = nbest.next() {
                best.alternatives = nbest
                    .map(|h| crate::infer::Alternative {
                        text: h.text(),
                        logp: h.logp,
                    })
                    .collect();
                *before = Some(c.text());
                r.caption = Ok(best);
            }
        }
    }
    for (r, before) in results.into_iter().zip(unrestored) {
        match r.caption {
            Ok(c) => {
                if let (Some(dir), Some(w)) = (&a.attention, &c.attention) {
                    let png = crate::infer::attention_map::write(dir, &r.path, &c.words, w)?;
                    if ctx.verbose {
                        crate::commands::out::errln!("wrote {}", png.display());
                    }
                }
                let tags = crate::infer::tags::shown(
                    c.tags.as_ref(),
                    text_model.as_ref(),
                    &c.text(),
                    a.tags.hashtags,
                );
                let caption = if only { String::new() } else { c.text() };
                let emoji: Vec<String> = emoji_model
                    .as_ref()
                    .map(|m| {
                        let n = a.tags.hashtags.max(3);
                        m.suggest(&caption, n).into_iter().map(|(e, _)| e).collect()
                    })
                    .unwrap_or_default();
                let names: Vec<&str> = tags.iter().map(|t| t.tag.as_str()).collect();
                let post = crate::infer::social::compose(&caption, &emoji, &names);
                let mood = moods
                    .as_ref()
                    .map(|m| m.rank(&r.path, a.top_moods))
                    .transpose()?;
                if a.json {
                    let mut o = serde_json::json!({"image": r.path.display().to_string(), "hashtags": tags});
                    if !only {
                        o["caption"] = caption.into();
                        o["logp"] = c.logp.into();
                        if !c.alternatives.is_empty() {
                            o["alternatives"] = serde_json::to_value(&c.alternatives)?;
                        }
                        if let Some(b) = &before {
                            o["unrestored_caption"] = b.as_str().into();
                        }
                        if let Some(w) = &c.attention {
                            o["attention"] = serde_json::to_value(w)?;
                        }
                    }
                    if emoji_model.is_some() {
                        o["emoji"] = emoji.into();
                    }
                    if social {
                        o["social"] = post.into();
                    }
                    if let Some(m) = &mood {
                        o["moods"] = serde_json::to_value(m)?;
                    }
                    outln!("{o}")?;
                } else if social {
                    // One line per image: the post's line breaks become " / ".
                    let flat: Vec<&str> = post.lines().filter(|l| !l.trim().is_empty()).collect();
                    outln!("{}\t{}", r.path.display(), flat.join(" / "))?;
                } else {
                    let line: Vec<String> = std::iter::once(caption)
                        .chain(emoji)
                        .chain(tags.iter().map(|t| format!("#{}", t.tag)))
                        .filter(|w| !w.is_empty())
                        .collect();
                    let mood: String = mood
                        .iter()
                        .flatten()
                        .map(|m| format!("{} ({:.3})", m.label, m.score))
                        .collect::<Vec<_>>()
                        .join(", ");
                    if mood.is_empty() {
                        outln!("{}\t{}", r.path.display(), line.join(" "))?;
                    } else {
                        outln!("{}\t{}\tmoods: {mood}", r.path.display(), line.join(" "))?;
                    }
                }
                if let (false, Some(b)) = (a.json, &before) {
                    outln!("{}\tbefore restoration: {b}", r.path.display())?;
                }
                if !a.json && sampled {
                    for (k, alt) in c.alternatives.iter().enumerate() {
                        outln!(
                            "{}\talternative {}: {} (logp {:.2})",
                            r.path.display(),
                            k + 2,
                            alt.text,
                            alt.logp
                        )?;
                    }
                }
            }
            Err(why) => {
                failed += 1;
                // One line per image, naming it once (decode errors start with the path).
                let name = r.path.display().to_string();
                if why.starts_with(&name) {
                    crate::commands::out::errln!("error: {why}");
                } else {
                    crate::commands::out::errln!("error: {name}: {why}");
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
