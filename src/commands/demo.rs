//! `captag demo`: the whole pipeline on the built-in synthetic data — synthesize, train
//! small-cnn + a decoder (`--decoder`, the small transformer by default) with a hashtag head,
//! evaluate on the test split against the caption-prior baseline and the human ceiling
//! (hashtags against their two baselines) and by grounded truth, and caption a few test images
//! with their hashtags. The defaults (transformer, 3,000 images, one caption per image per
//! epoch, cosine schedule) are what made the demo's captions true of their pictures (README,
//! "Built-in synthetic set").
use super::out::outln;
use anyhow::Context;

use super::{bleu_table, Ctx};
use crate::cli::{DataArgs, DemoArgs, ScheduleArg, TrainArgs};
use crate::config::{DecoderPreset, EncoderKind, TagModelKind};
use crate::data::synth::{generate, SynthConfig, SynthLayout};
use crate::data::{LoadOptions, Sample, Split};
use crate::eval::baselines;
use crate::eval::bleu::BleuMode;
use crate::eval::runner::EvalSpec;
use crate::infer::Loaded;
use crate::model::decoding::Decoding;
use crate::text::tokenize;
use std::path::Path;

pub fn demo(ctx: &Ctx, a: &DemoArgs) -> anyhow::Result<()> {
    let data = a.out.join("data");
    let run = a.out.join("run");
    let cfg = SynthConfig {
        count: a.count,
        seed: ctx.seed,
        layout: SynthLayout::Flickr8k,
        ..SynthConfig::default()
    };
    let s = generate(&data, &cfg)?;
    outln!(
        "1. synthesized {} images with {} captions in {}",
        s.images,
        s.captions,
        data.display()
    )?;

    if run.exists() {
        std::fs::remove_dir_all(&run)
            .with_context(|| format!("removing the previous demo run {}", run.display()))?;
    }
    let args = train_args(a, &data, &run);
    outln!(
        "2. training small-cnn + {} for {} epochs into {}",
        decoder_name(a.decoder),
        a.epochs,
        run.display()
    )?;
    let job = super::model::train_job(ctx, &args)?;
    let summary = crate::train::run(&job)?;
    outln!(
        "   trained in {:.0}s, best dev {} {:.2} (epoch {})",
        summary.seconds,
        summary.selected_by,
        100.0 * summary.best_score,
        summary.best_epoch
    )?;

    let loaded = crate::infer::load_checkpoint(&run, ctx.device, false)?;
    let test = evaluate_test_split(&loaded, &data, &job.load, a.decoder)?;
    show_captions(&loaded, &test.samples)?;
    let verdict = if test.model_bleu4 > test.prior_bleu4 {
        "beats"
    } else {
        "does NOT beat"
    };
    outln!(
        "The trained model {verdict} the caption prior on BLEU-4. Try: captag caption {} {}",
        run.display(),
        test.samples
            .first()
            .map(|s| s.path.display().to_string())
            .unwrap_or_default()
    )?;
    Ok(())
}

fn decoder_name(p: DecoderPreset) -> &'static str {
    match p {
        DecoderPreset::Lstm => "LSTM",
        DecoderPreset::Gru => "GRU",
        DecoderPreset::Attention => "soft attention",
        DecoderPreset::Transformer => "transformer",
        DecoderPreset::LstmSmall => "small LSTM",
        DecoderPreset::GruSmall => "small GRU",
        DecoderPreset::AttentionSmall => "small soft attention",
        DecoderPreset::TransformerSmall => "small transformer",
        DecoderPreset::Clipcap => "ClipCap prefix LM (word-level GPT-2 architecture)",
    }
}

/// The demo's training run: small-cnn end to end with `--decoder`, a hashtag head, the cosine
/// schedule and one caption per image per epoch (the choices the module doc explains).
fn train_args(a: &DemoArgs, data: &Path, run: &Path) -> TrainArgs {
    TrainArgs {
        data: data.to_path_buf(),
        encoder: EncoderKind::SmallCnn,
        decoder: a.decoder,
        encoder_weights: None,
        fine_tune_encoder: false,
        encoder_lr: None,
        fine_tune_blocks: None,
        lm_weights: None,
        features: None,
        freeze_vision: false,
        epochs: a.epochs,
        out: run.to_path_buf(),
        resume: false,
        batch_size: 64,
        lr: Some(3e-3),
        grad_clip: crate::config::defaults::GRAD_CLIP,
        schedule: ScheduleArg::Cosine,
        select: crate::config::Selection::Bleu4,
        batching: None,
        captions_per_image: Some(a.captions_per_image),
        precision: None,
        early_stop: 0,
        min_count: 1,
        max_words: 20,
        embed: None,
        hidden: None,
        layers: None,
        dropout: None,
        feed: None,
        attention_dim: None,
        alpha_c: None,
        heads: None,
        ff_dim: None,
        positions: None,
        mapper: None,
        prefix_len: None,
        clip_len: None,
        mapper_layers: None,
        lm: None,
        warmup: 200,
        image_size: None,
        hashtags: true,
        hashtags_only: false,
        hashtag_model: TagModelKind::Head,
        tag_hidden: 128,
        tag_min_agree: 2,
        tag_min_count: 5,
        distill: Default::default(),
        scst: Default::default(),
        dataset: DataArgs {
            format: None,
            ratios: [0.8, 0.1, 0.1],
        },
    }
}

/// What step 3 leaves for the rest of the demo.
struct TestSplit {
    samples: Vec<Sample>,
    model_bleu4: f64,
    prior_bleu4: f64,
}

/// Step 3: greedy and beam-3 captions of the test split against the caption-prior baseline
/// and the human ceiling, grounded truth, and the hashtag table.
fn evaluate_test_split(
    loaded: &Loaded,
    data: &Path,
    opts: &LoadOptions,
    decoder: DecoderPreset,
) -> anyhow::Result<TestSplit> {
    let spec = EvalSpec {
        split: Split::Test,
        decoding: Decoding::Greedy { max_len: 20 },
        mode: BleuMode::Coco,
        tag_k: 5,
    };
    let greedy = crate::eval::runner::evaluate(loaded, data, opts, &spec, &[])?;
    let beam_spec = EvalSpec {
        decoding: Decoding::Beam {
            width: 3,
            max_len: 20,
            alpha: 0.0,
        },
        ..spec
    };
    let beam = crate::eval::runner::evaluate(loaded, data, opts, &beam_spec, &[])?;
    let ds = crate::data::load(data, opts)?;
    let train_caps: Vec<Vec<String>> = ds
        .samples
        .iter()
        .filter(|s| s.split == Split::Train)
        .flat_map(|s| s.captions.iter().map(|c| tokenize(c)))
        .collect();
    let test: Vec<_> = ds
        .samples
        .iter()
        .filter(|s| s.split == Split::Test)
        .collect();
    let refs: Vec<Vec<Vec<String>>> = test
        .iter()
        .map(|s| s.captions.iter().map(|c| tokenize(c)).collect())
        .collect();
    let prior = baselines::prior_caption(&train_caps);
    let prior_bleu = baselines::constant_bleu(&prior, &refs, BleuMode::Coco)?;
    let ceiling = baselines::human_ceiling(&refs, BleuMode::Coco)?;
    let name = decoder_name(decoder);
    outln!("3. test split, {} images (coco BLEU ×100):", greedy.images)?;
    outln!(
        "{}",
        bleu_table(&[
            (
                format!("caption prior (\"{}\")", prior.join(" ")),
                prior_bleu.bleu
            ),
            (format!("small-cnn + {name}, greedy"), greedy.bleu.bleu),
            (format!("small-cnn + {name}, beam 3"), beam.bleu.bleu),
            (
                "human ceiling (5 refs, leave-one-out)".to_string(),
                ceiling.bleu
            ),
        ])
    )?;
    outln!("   grounded truth (each claim of a caption checked against the scene it describes):")?;
    for (how, r) in [("greedy", &greedy), ("beam 3", &beam)] {
        if let Some(g) = &r.grounded {
            outln!("     {how}: {g}")?;
        }
    }
    if let Some(t) = &greedy.hashtags {
        outln!("   hashtags from the image (tags derived from the reference captions):")?;
        outln!("{}", super::tags::tag_table(t.k, &t.rows))?;
    }
    Ok(TestSplit {
        samples: test.into_iter().cloned().collect(),
        model_bleu4: greedy.bleu.bleu[3],
        prior_bleu4: prior_bleu.bleu[3],
    })
}

/// Step 4: the captions and hashtags of the first five test images beside a reference.
fn show_captions(loaded: &Loaded, test: &[Sample]) -> anyhow::Result<()> {
    outln!("4. captions and hashtags for a few test images:")?;
    let shown: Vec<_> = test.iter().take(5).collect();
    let paths: Vec<std::path::PathBuf> = shown.iter().map(|s| s.path.clone()).collect();
    let out = loaded.caption_files(&paths, &Decoding::Greedy { max_len: 20 })?;
    for (r, s) in out.iter().zip(&shown) {
        let line = match &r.caption {
            Ok(c) => {
                let tags: Vec<String> = c
                    .tags
                    .as_ref()
                    .map(|t| t.top(5).iter().map(|t| format!("#{}", t.tag)).collect())
                    .unwrap_or_default();
                format!("{} {}", c.text(), tags.join(" "))
            }
            Err(why) => format!("error: {why}"),
        };
        outln!(
            "   {}\n     captag:    {}\n     reference: {}",
            s.path.display(),
            line.trim_end(),
            s.captions[0]
        )?;
    }
    Ok(())
}
