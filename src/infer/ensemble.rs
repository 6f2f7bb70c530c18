//! Ensembles: runs that caption together (`eval`/`caption --ensemble RUN`, a `compare` spec's
//! `ensemble`), each step's next word drawn from the mean of the members' probabilities
//! ([`crate::model::captioner::Captioner::generate_nbest_with`]). The first run leads: its
//! hashtag model, attention maps and decoding options are the ensemble's; every other member
//! (a [`Partner`]) brings only its decoder, its encoder and its preprocessing, so members may
//! stand on different encoders (docs/training.md, "Ensembles").
use std::path::PathBuf;

use tch::{Device, Tensor};

use super::Loaded;
use crate::data::image::Preprocess;
use crate::data::loader::{BatchLoader, THREADS_BESIDE_MODEL};
use crate::model::captioner::Captioner;
use crate::model::ImageFeatures;
use crate::run::RunConfig;
use crate::text::tokens::Tokens;
use crate::{Error, Result};

/// A run that captions beside the leading one.
#[derive(Debug)]
pub struct Partner {
    pub dir: PathBuf,
    pub run: RunConfig,
    pub model: Captioner,
}

impl Loaded {
    /// Add the runs in `dirs` as partners (their best weights, or the last with `last`). Every
    /// member must write with the same word vocabulary: the ensemble averages distributions
    /// over one set of ids.
    pub fn with_partners(mut self, dirs: &[PathBuf], device: Device, last: bool) -> Result<Self> {
        for dir in dirs {
            let (c, model) = crate::run::open(dir, device, last)?;
            let same = match (&self.vocab, &c.vocab) {
                (Tokens::Words(a), Tokens::Words(b)) => a == b,
                _ => {
                    return Err(Error::invalid(format!(
                        "--ensemble: {} or {} writes GPT-2 BPE tokens; ensembles need runs with word vocabularies",
                        self.dir.display(),
                        dir.display()
                    )))
                }
            };
            if !same {
                return Err(Error::invalid(format!(
                    "--ensemble: {} has another vocabulary than {} (trained on other captions or \
                     with another --min-count); an ensemble's runs must share theirs",
                    dir.display(),
                    self.dir.display()
                )));
            }
            let mut model = model;
            model.set_precision(self.model.precision);
            self.partners.push(Partner {
                dir: dir.clone(),
                run: c.run,
                model,
            });
        }
        Ok(self)
    }

    /// The members after the leader with their features of the image files `paths`, which
    /// the leader read (each member runs its own encoder on its own preprocessing).
    pub(super) fn partner_features(&self, paths: &[PathBuf]) -> Result<Vec<ImageFeatures>> {
        self.partners
            .iter()
            .map(|p| {
                let (f, _, failed) = encode_files(&p.model, p.run.model.preprocess, paths, 32)?;
                match failed.first() {
                    Some((i, why)) => Err(Error::invalid(format!(
                        "{}: could be read for {} but not for ensemble member {}: {why}",
                        paths[*i].display(),
                        self.dir.display(),
                        p.dir.display()
                    ))),
                    None => Ok(f),
                }
            })
            .collect()
    }

    /// Every member's features of decoded pictures, the leader first.
    pub(super) fn encode_rgb_all(&self, imgs: &[image::RgbImage]) -> Result<Vec<ImageFeatures>> {
        std::iter::once((&self.model, self.run.model.preprocess))
            .chain(
                self.partners
                    .iter()
                    .map(|p| (&p.model, p.run.model.preprocess)),
            )
            .map(|(m, pre)| encode_rgb(m, pre, imgs))
            .collect()
    }

    /// The partners' feature pairs for decoding beside the leader's.
    pub(super) fn partner_pairs<'a>(
        &'a self,
        feats: &'a [ImageFeatures],
    ) -> Vec<(&'a Captioner, &'a ImageFeatures)> {
        self.partners.iter().map(|p| &p.model).zip(feats).collect()
    }
}

/// Features of the readable files among `paths` through `model`'s encoder, the input indices
/// they belong to, and `(input index, reason)` for those that failed.
pub(super) fn encode_files(
    model: &Captioner,
    pre: Preprocess,
    paths: &[PathBuf],
    batch: usize,
) -> Result<super::Features> {
    let (mut feats, mut ok, mut failed) = (vec![], vec![], vec![]);
    for b in BatchLoader::new(paths.to_vec(), pre, batch, THREADS_BESIDE_MODEL) {
        failed.extend(b.failed.iter().cloned());
        if b.indices.is_empty() {
            continue;
        }
        feats.push(tch::no_grad(|| model.encode(&b.to_tensor(), false))?);
        ok.extend(b.indices.iter().copied());
    }
    let feats = if feats.is_empty() {
        let d = model.cfg.pooled_dim();
        ImageFeatures::new(
            Tensor::zeros([0, d], (tch::Kind::Float, model.device())),
            None,
        )
    } else {
        ImageFeatures::cat(&feats)
    };
    Ok((feats, ok, failed))
}

/// Decoded pictures through `model`'s encoder after `pre` (as a file of them would be).
fn encode_rgb(
    model: &Captioner,
    pre: Preprocess,
    imgs: &[image::RgbImage],
) -> Result<ImageFeatures> {
    let side = pre.size as i64;
    let mut flat = Vec::with_capacity(imgs.len() * pre.output_len());
    for img in imgs {
        flat.extend(crate::data::image::preprocess_rgb(img, &pre));
    }
    let x = Tensor::from_slice(&flat).view([imgs.len() as i64, 3, side, side]);
    tch::no_grad(|| model.encode(&x, false))
}
