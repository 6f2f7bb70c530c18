//! `captag tags`: the caption-text ⇒ hashtags model on Instagram posts (train with smoothing
//! tuned on dev, evaluate against the most-frequent-tags baseline, suggest), and the hashtag
//! table shared with `captag eval`.
use super::out::outln;
use std::path::Path;

use anyhow::bail;

use super::{load_dataset, load_options, Ctx};
use crate::cli::{SplitArg, TagsCommand};
use crate::data::{Sample, Split};
use crate::eval::tag_metrics::{self, TagScores};
use crate::model::text_tagger::TextTagger;

/// Smoothing grid searched on dev: β (damping of rare words) × λ (weight of the tag prior).
const BETAS: [f64; 5] = [0.5, 1.0, 2.0, 5.0, 10.0];
const PRIORS: [f64; 4] = [0.0, 0.1, 0.5, 2.0];

pub fn run(ctx: &Ctx, cmd: &TagsCommand) -> anyhow::Result<()> {
    match cmd {
        TagsCommand::Train { data, out, dataset } => {
            train(ctx, data, out, &load_options(ctx, dataset))
        }
        TagsCommand::Eval {
            model,
            data,
            split,
            k,
            json,
            dataset,
        } => eval(
            ctx,
            model,
            data,
            *split,
            *k,
            *json,
            &load_options(ctx, dataset),
        ),
        TagsCommand::Suggest { model, text, n } => {
            let m = TextTagger::load(model)?;
            let tags: Vec<String> = m
                .suggest(text, *n)
                .into_iter()
                .map(|(t, _)| format!("#{t}"))
                .collect();
            outln!("{}", tags.join(" "))?;
            Ok(())
        }
    }
}

/// `(text, tags)` of the tagged posts of a split.
fn posts(samples: &[Sample], split: Split) -> Vec<(String, Vec<String>)> {
    samples
        .iter()
        .filter(|s| s.split == split && !s.hashtags.is_empty())
        .map(|s| (s.captions.join(" "), s.hashtags.clone()))
        .collect()
}

fn score(m: &TextTagger, posts: &[(String, Vec<String>)], k: usize) -> (TagScores, TagScores) {
    // Full rankings for mAP are long; 100 tags cover every useful rank.
    let ranked: Vec<Vec<String>> = posts
        .iter()
        .map(|(text, _)| m.suggest(text, 100).into_iter().map(|(t, _)| t).collect())
        .collect();
    let truth: Vec<Vec<String>> = posts.iter().map(|(_, t)| t.clone()).collect();
    let frequent = vec![m.most_frequent(100); posts.len()];
    (
        tag_metrics::score(&ranked, &truth, k),
        tag_metrics::score(&frequent, &truth, k),
    )
}

fn load_posts(
    ctx: &Ctx,
    data: &Path,
    opts: &crate::data::LoadOptions,
) -> anyhow::Result<Vec<Sample>> {
    let mut opts = opts.clone();
    opts.keep_missing = true; // the text model needs no images
    let ds = load_dataset(ctx, data, &opts)?;
    if ds.samples.iter().all(|s| s.hashtags.is_empty()) {
        bail!(
            "{}: no post carries a #hashtag (an Instagram captions CSV is needed)",
            data.display()
        );
    }
    Ok(ds.samples)
}

fn train(
    ctx: &Ctx,
    data: &Path,
    out: &Path,
    opts: &crate::data::LoadOptions,
) -> anyhow::Result<()> {
    crate::fsio::refuse_overwriting_inputs("--out", out, &[data])?;
    let samples = load_posts(ctx, data, opts)?;
    let (train, dev) = (posts(&samples, Split::Train), posts(&samples, Split::Dev));
    if train.is_empty() || dev.is_empty() {
        bail!("need tagged posts in both the train and dev splits");
    }
    let mut m = TextTagger::train(&train, 1.0, 0.0);
    let mut best = (f64::MIN, 1.0, 0.0);
    for beta in BETAS {
        for prior in PRIORS {
            (m.beta, m.prior) = (beta, prior);
            let s = score(&m, &dev, 5).0;
            if s.f1 > best.0 {
                best = (s.f1, beta, prior);
            }
        }
    }
    (m.beta, m.prior) = (best.1, best.2);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    }
    m.save(out)?;
    outln!(
        "{} training posts, {} tags, {} words; dev F1@5 {:.2} at beta {} prior {} → {}",
        m.posts,
        m.tags.len(),
        m.words.len(),
        100.0 * best.0,
        m.beta,
        m.prior,
        out.display()
    )?;
    Ok(())
}

fn eval(
    ctx: &Ctx,
    model: &Path,
    data: &Path,
    split: SplitArg,
    k: usize,
    json: bool,
    opts: &crate::data::LoadOptions,
) -> anyhow::Result<()> {
    let m = TextTagger::load(model)?;
    let samples = load_posts(ctx, data, opts)?;
    let split: Split = split.into();
    let held = posts(&samples, split);
    if held.is_empty() {
        bail!("no tagged posts in the {split} split");
    }
    let (model_s, freq_s) = score(&m, &held, k);
    let rows = vec![
        ("caption text ⇒ hashtags".to_string(), model_s),
        ("baseline: most frequent training tags".to_string(), freq_s),
    ];
    if json {
        outln!(
            "{}",
            serde_json::json!({"split": split, "posts": held.len(), "k": k, "rows": rows})
        )?;
    } else {
        outln!("{} tagged posts of {split}", held.len())?;
        outln!("{}", tag_table(k, &rows))?;
    }
    Ok(())
}

/// `system  P@k  R@k  F1@k  mAP` (×100).
pub fn tag_table(k: usize, rows: &[(String, TagScores)]) -> String {
    let w = rows
        .iter()
        .map(|r| r.0.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let h = |m: &str| format!("{m}@{k}");
    let mut s = format!(
        "{:<w$}  {:>6}  {:>6}  {:>6}  {:>6}\n",
        "",
        h("P"),
        h("R"),
        h("F1"),
        "mAP"
    );
    for (name, t) in rows {
        s += &format!(
            "{name:<w$}  {:>6.2}  {:>6.2}  {:>6.2}  {:>6.2}\n",
            100.0 * t.precision,
            100.0 * t.recall,
            100.0 * t.f1,
            100.0 * t.map
        );
    }
    s.trim_end().to_string()
}
