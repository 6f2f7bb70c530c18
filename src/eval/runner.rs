//! The evaluation runner: caption every image of a split with a checkpoint, score BLEU-1..4,
//! CIDEr-D and ROUGE-L against the split's references (and, on synthetic data, the grounded
//! truth of each caption), and keep the predictions as a COCO results list.
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::bleu::{corpus_bleu, BleuMode, BleuScores};
use super::tag_metrics::{self, TagScores};
use crate::data::feature_file::FeatureFile;
use crate::data::features::FeatureCache;
use crate::data::synth::truth::{judge, Grounded, Scenes};
use crate::data::{LoadOptions, Sample, Split};
use crate::infer::{Captioned, Loaded};
use crate::model::decoding::{Decoding, UnkStats};
use crate::text::taglist::{content_words, TagList};
use crate::text::tokenize;
use crate::{Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub image_id: String,
    pub caption: String,
    /// Synthetic data: how many of the caption's claims hold, and which are false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truth: Option<Truth>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Truth {
    pub claims: usize,
    pub held: usize,
    pub false_claims: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub split: Split,
    pub images: usize,
    /// Images of the split that could not be decoded (not scored).
    pub unreadable: usize,
    pub decoding: Decoding,
    pub mode: BleuMode,
    pub bleu: BleuScores,
    /// CIDEr-D and ROUGE-L as pycocoevalcap computes them (on the same tokens as BLEU).
    pub cider: f64,
    pub rouge_l: f64,
    /// How many different captions the system wrote for the split's images.
    pub distinct_captions: usize,
    /// Captions containing `<unk>` (only possible with `--allow-unk`).
    pub unk_captions: usize,
    /// Decoding steps while captioning the split, and how many of them had `<unk>` as the most
    /// probable word before it was masked.
    pub unk: UnkStats,
    pub seconds: f64,
    /// Of `seconds`, the time spent captioning (image decoding and encoder included unless the
    /// features came from a cache; hashtag ranking included).
    pub caption_seconds: f64,
    /// Trained parameters of the run (decoder, hashtag model, end-to-end encoder).
    pub parameters: usize,
    /// Hashtag metrics of the run's hashtag model next to the two baselines.
    pub hashtags: Option<TagEval>,
    /// Share of true captions and claims, on a dataset written by `captag synth`.
    pub grounded: Option<Grounded>,
    #[serde(skip)]
    pub predictions: Vec<Prediction>,
    /// Per-image statistics in split order (for paired bootstrap intervals).
    #[serde(skip)]
    pub per_image: PerImage,
}

/// BLEU sufficient statistics and CIDEr-D of each scored image.
#[derive(Debug, Clone, Default)]
pub struct PerImage {
    pub ids: Vec<String>,
    pub bleu: Vec<crate::eval::bleu::BleuStats>,
    pub cider: Vec<f64>,
}

/// Hashtag scores on the split: the model, then the baselines.
#[derive(Debug, Clone, Serialize)]
pub struct TagEval {
    pub k: usize,
    /// `(system, scores)`: the run's model, `most frequent`, `caption words`.
    pub rows: Vec<(String, TagScores)>,
}

/// What to score: the split, the caption decoding, the BLEU flavour, the hashtag cut-off.
#[derive(Debug, Clone, Copy)]
pub struct EvalSpec {
    pub split: Split,
    pub decoding: Decoding,
    pub mode: BleuMode,
    pub tag_k: usize,
}

/// Baseline rankings: the label list by training frequency for every image, and the content
/// words of the image's generated caption followed by the rest of that list.
pub fn tag_baselines(list: &TagList, captions: &[Vec<String>]) -> (Vec<String>, Vec<Vec<String>>) {
    let frequent = list.tags.clone();
    let from_caption = captions
        .iter()
        .map(|words| {
            let mut r = content_words(&words.join(" "));
            r.extend(
                frequent
                    .iter()
                    .filter(|t| !r.contains(t))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            r
        })
        .collect();
    (frequent, from_caption)
}

/// Caption the split (from `features` when given: one cache per encoder of the run and its
/// ensemble partners), score it and keep the predictions.
pub fn evaluate(
    loaded: &Loaded,
    data: &Path,
    load: &LoadOptions,
    spec: &EvalSpec,
    features: &[&FeatureFile],
) -> Result<EvalReport> {
    let EvalSpec {
        split, mode, tag_k, ..
    } = *spec;
    let t0 = std::time::Instant::now();
    let ds = crate::data::load(data, load)?;
    let samples: Vec<&Sample> = ds.samples.iter().filter(|s| s.split == split).collect();
    if samples.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no images in the {split} split",
            data.display()
        )));
    }
    let t_caption = std::time::Instant::now();
    let unk_before = loaded.model.unk_stats.get();
    let results = caption_split(loaded, &ds, &samples, &spec.decoding, features)?;
    let caption_seconds = t_caption.elapsed().as_secs_f64();
    let unk_after = loaded.model.unk_stats.get();
    let unk = UnkStats {
        steps: unk_after.steps - unk_before.steps,
        unk_argmax: unk_after.unk_argmax - unk_before.unk_argmax,
    };
    let scored = collect(loaded, data, &samples, results)?;
    let hashtags = loaded
        .tags
        .as_ref()
        .map(|list| tag_eval(loaded, list, &scored, tag_k));
    let Scored {
        hyps,
        refs,
        predictions,
        unreadable,
        grounded,
        ..
    } = scored;
    if hyps.is_empty() {
        return Err(Error::invalid(format!(
            "no image of the {split} split could be decoded"
        )));
    }
    let w = word_scores(&hyps, &refs, &predictions, mode)?;
    let unk_word = crate::text::vocab::SPECIALS[crate::text::vocab::UNK as usize];
    let unk_captions = hyps
        .iter()
        .filter(|h| h.iter().any(|w| w == unk_word))
        .count();
    Ok(EvalReport {
        split,
        images: hyps.len(),
        unreadable,
        decoding: spec.decoding,
        mode,
        bleu: w.bleu,
        cider: w.cider,
        rouge_l: w.rouge_l,
        distinct_captions: w.distinct,
        unk_captions,
        unk,
        seconds: t0.elapsed().as_secs_f64(),
        caption_seconds,
        parameters: trained_parameters(loaded),
        hashtags,
        grounded: grounded.filter(|g| g.captions > 0),
        predictions,
        per_image: w.per_image,
    })
}

/// The word-level scores of a split's captions (`hyps`, one per prediction) against `refs`.
pub struct WordScores {
    pub bleu: BleuScores,
    pub cider: f64,
    pub rouge_l: f64,
    pub distinct: usize,
    pub per_image: PerImage,
}

/// BLEU (`mode`), CIDEr-D and ROUGE-L of tokenized captions, and the per-image statistics of
/// the paired bootstrap: the one scoring of `eval` and `compare`, whatever wrote the captions.
pub fn word_scores(
    hyps: &[Vec<String>],
    refs: &[Vec<Vec<String>>],
    predictions: &[Prediction],
    mode: BleuMode,
) -> Result<WordScores> {
    let bleu = corpus_bleu(hyps, refs, mode)?;
    let cider = crate::eval::cider::cider_d(hyps, refs).map_err(Error::invalid)?;
    let rouge = crate::eval::rouge::rouge_l(hyps, refs).map_err(Error::invalid)?;
    let per_image = PerImage {
        ids: predictions.iter().map(|p| p.image_id.clone()).collect(),
        bleu: hyps
            .iter()
            .zip(refs)
            .map(|(h, r)| {
                crate::eval::bleu::corpus_stats(std::slice::from_ref(h), std::slice::from_ref(r))
            })
            .collect::<Result<_>>()?,
        cider: cider.per_image.clone(),
    };
    Ok(WordScores {
        bleu,
        cider: cider.score,
        rouge_l: rouge.score,
        distinct: hyps.iter().collect::<std::collections::HashSet<_>>().len(),
        per_image,
    })
}

/// Captions of the split's images: from feature caches when given (each member of an
/// ensemble reads the one its encoder computed on this dataset, with grids when its decoder
/// reads them), else from the image files.
fn caption_split(
    loaded: &Loaded,
    ds: &crate::data::Dataset,
    samples: &[&Sample],
    decoding: &Decoding,
    features: &[&FeatureFile],
) -> Result<Vec<Captioned>> {
    if features.is_empty() {
        let paths: Vec<PathBuf> = samples.iter().map(|s| s.path.clone()).collect();
        return loaded.caption_files(&paths, decoding);
    }
    let images = ds.image_list();
    let ids: Vec<String> = samples.iter().map(|s| s.id.clone()).collect();
    let members = std::iter::once((loaded.dir.as_path(), &loaded.run))
        .chain(loaded.partners.iter().map(|p| (p.dir.as_path(), &p.run)));
    let picked = members
        .map(|(dir, run)| member_file(dir, run, features, &images))
        .collect::<Result<Vec<usize>>>()?;
    // Members on one encoder share its cache: each file's rows are read once.
    let mut read: Vec<(usize, FeatureCache)> = vec![];
    for &i in &picked {
        if !read.iter().any(|(j, _)| *j == i) {
            read.push((i, FeatureCache::read_rows(features[i], &ids)?));
        }
    }
    let caches: Vec<&FeatureCache> = picked
        .iter()
        .filter_map(|i| read.iter().find(|(j, _)| j == i).map(|(_, c)| c))
        .collect();
    loaded.caption_cached(&caches, &ids, decoding)
}

/// Which of `files` the run in `dir` reads: a cache computed by its frozen encoder (same
/// weights and preprocessing) from these image files, with grids when its decoder reads them.
/// With one file, the refusal says what differs.
fn member_file(
    dir: &Path,
    run: &crate::run::RunConfig,
    files: &[&FeatureFile],
    images: &[(String, PathBuf)],
) -> Result<usize> {
    let m = &run.model;
    if !m.frozen_encoder {
        return Err(Error::invalid(format!(
            "--features: {} fine-tuned its encoder, so cached features of the pretrained one do not fit it",
            dir.display()
        )));
    }
    let fp = run.encoder_fingerprint.as_deref().unwrap_or_default();
    let want = crate::data::features::CacheKey::of(m.encoder.as_str(), fp, &m.preprocess, images);
    let has_grid = |i: &usize| files[*i].tensor("grid").is_ok();
    let i = match files {
        [one] => crate::data::features::check_fits(one, &want, images).map(|()| 0)?,
        // Of the caches that fit, one with grids when the decoder reads them.
        _ => (0..files.len())
            .filter(|&i| crate::data::features::check_fits(files[i], &want, images).is_ok())
            .max_by_key(|i| m.decoder.needs_grid() && has_grid(i))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "--features: none of the {} caches was computed by the encoder of {} ({}) on these images",
                    files.len(),
                    dir.display(),
                    m.encoder.as_str()
                ))
            })?,
    };
    if m.decoder.needs_grid() && !has_grid(&i) {
        return Err(Error::invalid(format!(
            "--features: the {} decoder reads feature grids but this cache holds pooled \
             vectors only; rerun `captag features --grid`",
            m.decoder.name()
        )));
    }
    Ok(i)
}

/// The captions of the readable images with their references, predictions (judged against
/// the scene on synthetic data) and hashtag rankings.
struct Scored {
    hyps: Vec<Vec<String>>,
    refs: Vec<Vec<Vec<String>>>,
    predictions: Vec<Prediction>,
    unreadable: usize,
    grounded: Option<Grounded>,
    rankings: Vec<Vec<String>>,
    truths: Vec<Vec<String>>,
}

fn collect(
    loaded: &Loaded,
    data: &Path,
    samples: &[&Sample],
    results: Vec<Captioned>,
) -> Result<Scored> {
    let scenes = Scenes::open(data)?;
    let mut out = Scored {
        hyps: vec![],
        refs: vec![],
        predictions: vec![],
        unreadable: 0,
        grounded: scenes.as_ref().map(|_| Grounded::default()),
        rankings: vec![],
        truths: vec![],
    };
    for (s, r) in samples.iter().zip(results) {
        let Ok(c) = r.caption else {
            out.unreadable += 1;
            continue;
        };
        let mut truth = None;
        if let (Some(g), Some(scene)) = (
            out.grounded.as_mut(),
            scenes.as_ref().and_then(|sc| sc.scene(&s.id)),
        ) {
            let v = judge(&scene, &c.text());
            g.add(&v);
            truth = Some(Truth {
                claims: v.claims,
                held: v.held,
                false_claims: v.false_claims,
            });
        }
        out.predictions.push(Prediction {
            image_id: s.id.clone(),
            caption: c.text(),
            truth,
        });
        if let (Some(ranked), Some(list)) = (&c.tags, &loaded.tags) {
            out.rankings.push(ranked.names());
            out.truths.push(list.rule.truth(s));
        }
        out.hyps.push(c.words);
        out.refs
            .push(s.captions.iter().map(|c| tokenize(c)).collect::<Vec<_>>());
    }
    Ok(out)
}

/// The run's hashtag model against the most-frequent-tags baseline and (captioning runs) the
/// generated caption's content words.
fn tag_eval(loaded: &Loaded, list: &TagList, scored: &Scored, k: usize) -> TagEval {
    let (rankings, truths) = (&scored.rankings, &scored.truths);
    let (frequent, from_caption) = tag_baselines(list, &scored.hyps);
    let cfg = loaded.run.model.hashtags.as_ref();
    let only = cfg.is_some_and(|t| t.only);
    let model = cfg.map_or("head", |t| match t.model {
        crate::config::TagModelKind::Head => "hashtag head",
        crate::config::TagModelKind::Gru => "GRU tag generator",
    });
    let mut rows = vec![
        (model.to_string(), tag_metrics::score(rankings, truths, k)),
        (
            "baseline: most frequent training tags".to_string(),
            tag_metrics::score(&vec![frequent; truths.len()], truths, k),
        ),
    ];
    if !only {
        rows.push((
            "baseline: generated caption's content words".to_string(),
            tag_metrics::score(&from_caption, truths, k),
        ));
    }
    TagEval { k, rows }
}

/// Trained parameters of the run (decoder, hashtag model, end-to-end encoder), and of its
/// ensemble partners.
fn trained_parameters(loaded: &Loaded) -> usize {
    std::iter::once(&loaded.model)
        .chain(loaded.partners.iter().map(|p| &p.model))
        .flat_map(|m| m.vs.trainable_variables())
        .filter(|v| v.requires_grad())
        .map(|v| v.numel())
        .sum()
}
