//! `captag tags` and `captag emoji`: the caption-text ⇒ hashtags and caption-text ⇒ emoji
//! models on Instagram posts (one [`TextTagger`] with a [`LabelKind`]: train with smoothing
//! tuned on dev, evaluate against the most-frequent-labels baseline, suggest), and the hashtag
//! table shared with `captag eval`. The two commands differ only in where a post's labels come
//! from ([`labelled_posts`]); everything else is shared so that their numbers are comparable.
use super::out::outln;
use std::path::Path;

use anyhow::bail;

use super::{load_dataset, load_options, Ctx};
use crate::cli::{SplitArg, TagsCommand};
use crate::data::{Sample, Split};
use crate::eval::tag_metrics::{self, TagScores};
use crate::model::text_tagger::{LabelKind, TextTagger};
use crate::text::emoji::emoji_labels;

/// Smoothing grid searched on dev: β (damping of rare words) × λ (weight of the label prior).
const BETAS: [f64; 5] = [0.5, 1.0, 2.0, 5.0, 10.0];
const PRIORS: [f64; 4] = [0.0, 0.1, 0.5, 2.0];

/// `captag tags ...`: hashtags.
pub fn run(ctx: &Ctx, cmd: &TagsCommand) -> anyhow::Result<()> {
    run_kind(ctx, cmd, LabelKind::Hashtag)
}

/// `captag emoji ...`: emoji.
pub fn run_emoji(ctx: &Ctx, cmd: &TagsCommand) -> anyhow::Result<()> {
    run_kind(ctx, cmd, LabelKind::Emoji)
}

fn run_kind(ctx: &Ctx, cmd: &TagsCommand, kind: LabelKind) -> anyhow::Result<()> {
    match cmd {
        TagsCommand::Train { data, out, dataset } => {
            train(ctx, kind, data, out, &load_options(ctx, dataset))
        }
        TagsCommand::Eval {
            model,
            data,
            split,
            k,
            json,
            dataset,
        } => {
            let m = TextTagger::load_as(model, kind)?;
            eval(
                ctx,
                &m,
                data,
                *split,
                *k,
                *json,
                &load_options(ctx, dataset),
            )
        }
        TagsCommand::Suggest { model, text, n } => {
            let m = TextTagger::load_as(model, kind)?;
            let labels: Vec<String> = m
                .suggest(text, *n)
                .into_iter()
                .map(|(t, _)| kind.show(&t))
                .collect();
            outln!("{}", labels.join(" "))?;
            Ok(())
        }
    }
}

/// `(text, labels)` of the posts of a split that have labels of this kind. Hashtags come from
/// the loader (the text is the caption without its `#tag` block); emoji from the caption text
/// itself, which the model then reads without them ([`LabelKind::words`]).
pub fn labelled_posts(
    samples: &[Sample],
    split: Split,
    kind: LabelKind,
) -> Vec<(String, Vec<String>)> {
    samples
        .iter()
        .filter(|s| s.split == split)
        .map(|s| {
            let text = s.captions.join(" ");
            let labels = match kind {
                LabelKind::Hashtag => s.hashtags.clone(),
                LabelKind::Emoji => emoji_labels(&text),
            };
            (text, labels)
        })
        .filter(|(_, labels)| !labels.is_empty())
        .collect()
}

fn score(m: &TextTagger, posts: &[(String, Vec<String>)], k: usize) -> (TagScores, TagScores) {
    // Full rankings for mAP are long; 100 labels cover every useful rank.
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
    kind: LabelKind,
    data: &Path,
    opts: &crate::data::LoadOptions,
) -> anyhow::Result<Vec<Sample>> {
    let mut opts = opts.clone();
    opts.keep_missing = true; // the text model needs no images
    let ds = load_dataset(ctx, data, &opts)?;
    let any = [Split::Train, Split::Dev, Split::Test]
        .into_iter()
        .any(|split| !labelled_posts(&ds.samples, split, kind).is_empty());
    if !any {
        match kind {
            LabelKind::Hashtag => bail!(
                "{}: no post carries a #hashtag (an Instagram captions CSV is needed)",
                data.display()
            ),
            LabelKind::Emoji => bail!(
                "{}: no post has an emoji in its text (an Instagram captions CSV is needed)",
                data.display()
            ),
        }
    }
    Ok(ds.samples)
}

/// What the labels are called in messages and tables.
fn plural(kind: LabelKind) -> &'static str {
    match kind {
        LabelKind::Hashtag => "tags",
        LabelKind::Emoji => "emoji",
    }
}

fn train(
    ctx: &Ctx,
    kind: LabelKind,
    data: &Path,
    out: &Path,
    opts: &crate::data::LoadOptions,
) -> anyhow::Result<()> {
    let samples = load_posts(ctx, kind, data, opts)?;
    let train = labelled_posts(&samples, Split::Train, kind);
    let dev = labelled_posts(&samples, Split::Dev, kind);
    if train.is_empty() || dev.is_empty() {
        bail!(
            "need posts with {} in both the train and dev splits",
            plural(kind)
        );
    }
    let mut m = TextTagger::train(kind, &train, 1.0, 0.0);
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
        "{} training posts, {} {}, {} words; dev F1@5 {:.2} at beta {} prior {} → {}",
        m.posts,
        m.tags.len(),
        plural(kind),
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
    m: &TextTagger,
    data: &Path,
    split: SplitArg,
    k: usize,
    json: bool,
    opts: &crate::data::LoadOptions,
) -> anyhow::Result<()> {
    let samples = load_posts(ctx, m.kind, data, opts)?;
    let split: Split = split.into();
    let held = labelled_posts(&samples, split, m.kind);
    let what = plural(m.kind);
    if held.is_empty() {
        bail!("no posts with {what} in the {split} split");
    }
    let (model_s, freq_s) = score(m, &held, k);
    let rows = vec![
        (
            match m.kind {
                LabelKind::Hashtag => "caption text ⇒ hashtags",
                LabelKind::Emoji => "caption text ⇒ emoji",
            }
            .to_string(),
            model_s,
        ),
        (format!("baseline: most frequent training {what}"), freq_s),
    ];
    if json {
        outln!(
            "{}",
            serde_json::json!({"kind": m.kind, "split": split, "posts": held.len(), "k": k, "rows": rows})
        )?;
    } else {
        let with = match m.kind {
            LabelKind::Hashtag => "tagged posts",
            LabelKind::Emoji => "posts with emoji",
        };
        outln!("{} {with} of {split}", held.len())?;
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
