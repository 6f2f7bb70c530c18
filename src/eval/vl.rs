//! A split captioned by a BLIP or GIT model (a Hugging Face folder, or a run fine-tuned from
//! one) and scored as every run is: the captions written with the folder's own tokenizer, then
//! scored on words by the common evaluation ([`super::runner::word_scores`]), so `eval` and
//! `compare` put these models beside captag's own decoders in one table.
use std::path::Path;

use super::bleu::BleuMode;
use super::runner::{word_scores, EvalReport, Prediction};
use crate::data::{LoadOptions, Split};
use crate::model::decoding::{Decoding, UnkStats};
use crate::model::vl::VlCaptioner;
use crate::text::tokenize;
use crate::{Error, Result};

/// Images per forward pass.
pub const BATCH: usize = 16;

/// Caption `split` of the dataset at `data` with `m` and score it.
pub fn evaluate(
    m: &VlCaptioner,
    data: &Path,
    load: &LoadOptions,
    split: Split,
    decoding: &Decoding,
    mode: BleuMode,
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
    let paths: Vec<_> = samples.iter().map(|s| s.path.clone()).collect();
    let prefix = m.prefix(None);
    let t1 = std::time::Instant::now();
    let results = m.caption_paths(&paths, &prefix, decoding, BATCH)?;
    let caption_seconds = t1.elapsed().as_secs_f64();
    let (mut hyps, mut refs, mut predictions) = (vec![], vec![], vec![]);
    let mut unreadable = 0;
    for (s, r) in samples.iter().zip(results) {
        let Ok(hs) = r else {
            unreadable += 1;
            continue;
        };
        let text = hs
            .first()
            .map(|h| m.text(&prefix, &h.tokens))
            .unwrap_or_default();
        hyps.push(tokenize(&text));
        refs.push(s.captions.iter().map(|c| tokenize(c)).collect::<Vec<_>>());
        predictions.push(Prediction {
            image_id: s.id.clone(),
            caption: text,
            truth: None,
        });
    }
    if hyps.is_empty() {
        return Err(Error::invalid(format!(
            "no image of the {split} split could be read"
        )));
    }
    let w = word_scores(&hyps, &refs, &predictions, mode)?;
    let parameters =
        m.vs.trainable_variables()
            .iter()
            .filter(|v| v.requires_grad())
            .map(|v| v.numel())
            .sum();
    Ok(EvalReport {
        split,
        images: hyps.len(),
        unreadable,
        decoding: *decoding,
        mode,
        bleu: w.bleu,
        cider: w.cider,
        rouge_l: w.rouge_l,
        distinct_captions: w.distinct,
        unk_captions: 0,
        unk: UnkStats::default(),
        seconds: t0.elapsed().as_secs_f64(),
        caption_seconds,
        parameters,
        hashtags: None,
        grounded: None,
        predictions,
        per_image: w.per_image,
    })
}
