//! The evaluation runner: caption every image of a split with a checkpoint, score BLEU-1..4
//! against the split's references, and keep the predictions as a COCO results list.
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::bleu::{corpus_bleu, BleuMode, BleuScores};
use crate::data::features::FeatureCache;
use crate::data::{LoadOptions, Split};
use crate::infer::decoding::Decoding;
use crate::infer::Loaded;
use crate::text::tokenize;
use crate::{Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub image_id: String,
    pub caption: String,
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
    pub seconds: f64,
    #[serde(skip)]
    pub predictions: Vec<Prediction>,
}

pub fn evaluate(
    loaded: &Loaded,
    data: &Path,
    load: &LoadOptions,
    split: Split,
    decoding: &Decoding,
    mode: BleuMode,
    features: Option<&FeatureCache>,
) -> Result<EvalReport> {
    let t0 = std::time::Instant::now();
    let ds = crate::data::load(data, load)?;
    let samples: Vec<_> = ds.samples.iter().filter(|s| s.split == split).collect();
    if samples.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no images in the {split} split",
            data.display()
        )));
    }
    let paths: Vec<PathBuf> = samples.iter().map(|s| s.path.clone()).collect();
    let results = match features {
        Some(cache) => {
            // The cache must hold exactly this checkpoint's encoder over this dataset.
            let ids: Vec<String> = crate::train::prepare::image_list(&ds)
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            let m = &loaded.run.model;
            let want = crate::data::features::fingerprint(
                m.encoder,
                loaded
                    .run
                    .encoder_fingerprint
                    .as_deref()
                    .unwrap_or_default(),
                &m.preprocess,
                &ids,
            );
            if !m.frozen_encoder || cache.fingerprint != want {
                return Err(Error::invalid(
                    "--features: the cache was not computed by this checkpoint's encoder on this dataset",
                ));
            }
            loaded.caption_cached(
                cache,
                &samples.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
                decoding,
            )?
        }
        None => loaded.caption_files(&paths, decoding)?,
    };
    let (mut hyps, mut refs, mut predictions, mut unreadable) = (vec![], vec![], vec![], 0);
    for (s, r) in samples.iter().zip(results) {
        match r.caption {
            Ok(c) => {
                predictions.push(Prediction {
                    image_id: s.id.clone(),
                    caption: c.text(),
                });
                hyps.push(c.words);
                refs.push(s.captions.iter().map(|c| tokenize(c)).collect::<Vec<_>>());
            }
            Err(_) => unreadable += 1,
        }
    }
    if hyps.is_empty() {
        return Err(Error::invalid(format!(
            "no image of the {split} split could be decoded"
        )));
    }
    let bleu = corpus_bleu(&hyps, &refs, mode)?;
    Ok(EvalReport {
        split,
        images: hyps.len(),
        unreadable,
        decoding: *decoding,
        mode,
        bleu,
        seconds: t0.elapsed().as_secs_f64(),
        predictions,
    })
}
