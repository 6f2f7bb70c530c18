//! What restoration does to captioning (README, "Restoring damaged photos"): one fixed
//! captioner captions every image of a split as it is, damaged, and repaired several ways, and
//! each version is scored with the captioning metrics (BLEU-1..4, CIDEr-D, ROUGE-L) against the
//! split's reference captions.
//!
//! Why at the photo's own size: the captioner sees what a user's photo would give it. The damage
//! is drawn on the full-size photo with `restore eval`'s held-out seeds (`(seed ^ EVAL_SALT,
//! image id)`, the same draw `captag --seed S^EVAL_SALT damage` writes), the fills go through
//! [`super::apply::restore_image`] (the networks at the run's size, every known pixel kept at
//! full resolution), and the classical fill runs at full size. Images are captioned from memory
//! ([`crate::infer::Loaded::caption_images`], preprocessed as `caption` preprocesses a file), so
//! no PNG round trip changes a pixel.
use serde::Serialize;

use super::apply::{restore_image, DIFFUSION_ITERS};
use super::damage;
use super::fill;
use super::train::Opened;
use crate::data::{Dataset, Split};
use crate::eval::bleu::{corpus_bleu, BleuMode, BleuScores};
use crate::infer::Loaded;
use crate::model::decoding::Decoding;
use crate::text::tokenize;
use crate::{Error, Result};

/// The versions of each image that are captioned, in table order.
pub const VERSIONS: [&str; 6] = [
    "clean photo",
    "damaged photo",
    "diffusion fill, true mask",
    "partial-conv U-Net, true mask",
    "diffusion fill, predicted mask",
    "partial-conv U-Net, predicted mask",
];

/// One image's caption of one version.
#[derive(Clone, Debug, Serialize)]
pub struct ImageCaption {
    pub image_id: String,
    pub caption: String,
}

/// Captioning scores of one version of the images.
#[derive(Clone, Debug, Serialize)]
pub struct CaptionRow {
    pub version: String,
    pub bleu: BleuScores,
    pub cider: f64,
    pub rouge_l: f64,
    /// Different captions among the images.
    pub distinct: usize,
    pub captions: Vec<ImageCaption>,
}

/// What `restore eval --captioner` adds.
#[derive(Clone, Debug, Serialize)]
pub struct CaptionReport {
    pub split: String,
    pub images: usize,
    /// Images of the split that could not be decoded (not scored).
    pub unreadable: usize,
    /// Share of the photos' pixels damaged.
    pub damaged_share: f64,
    pub decoding: Decoding,
    pub captioner: String,
    pub rows: Vec<CaptionRow>,
    pub seconds: f64,
}

/// Which images, which damage, which decoding.
#[derive(Clone, Copy, Debug)]
pub struct Scope {
    pub split: Split,
    /// The first N images of the split by id.
    pub limit: Option<usize>,
    /// The damage seed (`--seed`), salted as `restore eval` salts it.
    pub seed: u64,
    pub decoding: Decoding,
}

/// Caption the images of `scope` in every version of [`VERSIONS`] with `captioner` and score
/// each version (coco BLEU, CIDEr-D, ROUGE-L).
pub fn evaluate(
    m: &Opened,
    captioner: &Loaded,
    ds: &Dataset,
    scope: &Scope,
    bar: &indicatif::ProgressBar,
) -> Result<CaptionReport> {
    let Scope {
        split,
        limit,
        seed,
        ref decoding,
    } = *scope;
    let t0 = std::time::Instant::now();
    let mut samples: Vec<&crate::data::Sample> = ds.split(split).collect();
    samples.sort_by(|a, b| a.id.cmp(&b.id));
    samples.dedup_by(|a, b| a.id == b.id);
    if let Some(n) = limit {
        samples.truncate(n);
    }
    bar.set_length(samples.len() as u64);
    let (mut ids, mut refs) = (vec![], vec![]);
    let mut words: Vec<Vec<Vec<String>>> = vec![vec![]; VERSIONS.len()];
    let (mut unreadable, mut holes, mut pixels) = (0, 0usize, 0usize);
    for chunk in samples.chunks(16) {
        let mut versions: Vec<Vec<image::RgbImage>> = vec![vec![]; VERSIONS.len()];
        for s in chunk {
            bar.inc(1);
            let Ok(clean) = crate::data::image::decode_rgb(&s.path) else {
                unreadable += 1;
                continue;
            };
            let d = damage::damage(
                &clean,
                &m.run.damage,
                damage::seed_for(seed ^ damage::EVAL_SALT, &s.id),
            );
            let truth = super::holes(&d.mask);
            holes += truth.iter().filter(|&&t| t).count();
            pixels += truth.len();
            let by_true = restore_image(m, &d.image, Some(&d.mask))?;
            let by_pred = restore_image(m, &d.image, None)?;
            let pred = super::holes(&by_pred.mask);
            let imgs = [
                fill::diffusion(&d.image, &truth, DIFFUSION_ITERS),
                by_true.image,
                fill::diffusion(&d.image, &pred, DIFFUSION_ITERS),
                by_pred.image,
            ];
            versions[0].push(clean);
            versions[1].push(d.image);
            for (v, img) in versions[2..].iter_mut().zip(imgs) {
                v.push(img);
            }
            ids.push(s.id.clone());
            refs.push(s.captions.iter().map(|c| tokenize(c)).collect::<Vec<_>>());
        }
        for (v, imgs) in versions.iter().enumerate() {
            for c in captioner.caption_images(imgs, decoding)? {
                words[v].push(c.words);
            }
        }
    }
    if ids.is_empty() {
        return Err(Error::invalid(format!(
            "no readable images in the {split} split"
        )));
    }
    let rows = VERSIONS
        .iter()
        .zip(words)
        .map(|(name, hyps)| {
            let bleu = corpus_bleu(&hyps, &refs, BleuMode::Coco)?;
            let cider = crate::eval::cider::cider_d(&hyps, &refs).map_err(Error::invalid)?;
            let rouge = crate::eval::rouge::rouge_l(&hyps, &refs).map_err(Error::invalid)?;
            let distinct = hyps.iter().collect::<std::collections::HashSet<_>>().len();
            Ok(CaptionRow {
                version: name.to_string(),
                bleu,
                cider: cider.score,
                rouge_l: rouge.score,
                distinct,
                captions: ids
                    .iter()
                    .zip(&hyps)
                    .map(|(id, h)| ImageCaption {
                        image_id: id.clone(),
                        caption: h.join(" "),
                    })
                    .collect(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CaptionReport {
        split: split.to_string(),
        images: ids.len(),
        unreadable,
        damaged_share: holes as f64 / pixels.max(1) as f64,
        decoding: *decoding,
        captioner: captioner.dir.display().to_string(),
        rows,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
