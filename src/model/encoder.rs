//! One interface over the three CNN encoders, and the frozen-encoder builder and feature
//! extraction that `captag features`, training from a cache and inference share. A frozen
//! encoder lives in its own `VarStore` under torchvision's names, `freeze()`d and run under
//! `no_grad` (docs/ARCHITECTURE.md, "Variable stores").
use std::path::{Path, PathBuf};

use tch::{nn, nn::VarStore, Device, Tensor};

use super::cnn;
use super::features::ImageFeatures;
use crate::config::EncoderKind;
use crate::data::features::FeatureCache;
use crate::data::image::Preprocess;
use crate::data::loader::{BatchLoader, THREADS_BESIDE_MODEL};
use crate::{Error, Result};

#[derive(Debug)]
pub enum Encoder {
    SmallCnn(cnn::SmallCnn),
    SqueezeNet(cnn::SqueezeNet),
    Vgg19(cnn::Vgg19),
}

impl Encoder {
    pub fn new(p: nn::Path, kind: EncoderKind) -> Self {
        match kind {
            EncoderKind::SmallCnn => Encoder::SmallCnn(cnn::SmallCnn::new(p)),
            EncoderKind::Squeezenet1_1 => Encoder::SqueezeNet(cnn::SqueezeNet::new(p)),
            EncoderKind::Vgg19 => Encoder::Vgg19(cnn::Vgg19::new(p)),
        }
    }

    /// A pretrained encoder in its own frozen store, weights loaded from `weights`.
    pub fn frozen(
        kind: EncoderKind,
        weights: &Path,
        device: Device,
    ) -> Result<(Encoder, VarStore)> {
        let mut vs = VarStore::new(device);
        let enc = Encoder::new(vs.root(), kind);
        super::weights::load_vars(&mut vs, weights)?;
        vs.freeze();
        Ok((enc, vs))
    }

    /// `xs (B,3,S,S)` preprocessed as [`EncoderKind::default_preprocess`] says ⇒ pooled
    /// `(B, D)` and grid `(B, H·W, C)`.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> ImageFeatures {
        let (pooled, conv) = match self {
            Encoder::SmallCnn(m) => m.forward_t(xs, train),
            Encoder::SqueezeNet(m) => m.forward_t(xs, train),
            Encoder::Vgg19(m) => m.forward_t(xs, train),
        };
        ImageFeatures::from_conv(pooled, &conv)
    }
}

/// Outcome of running an encoder over a list of images.
pub struct Extracted {
    pub cache: FeatureCache,
    /// `(image id, reason)` for images that could not be decoded (skipped).
    pub failed: Vec<(String, String)>,
}

/// What [`extract`] runs.
pub struct ExtractSpec<'a> {
    pub kind: EncoderKind,
    pub weights_fp: &'a str,
    pub preprocess: Preprocess,
    pub batch_size: usize,
    pub device: Device,
    /// Keep the grids (stored as float16) as well as the pooled vectors.
    pub keep_grid: bool,
}

/// Run `encoder` (frozen) over `images` = `(id, path)`; undecodable images are skipped and
/// listed.
pub fn extract(
    encoder: &Encoder,
    spec: &ExtractSpec,
    images: &[(String, PathBuf)],
    progress: &indicatif::ProgressBar,
) -> Result<Extracted> {
    let paths: Vec<PathBuf> = images.iter().map(|(_, p)| p.clone()).collect();
    let (mut ids, mut parts, mut failed) = (vec![], vec![], vec![]);
    for batch in BatchLoader::new(
        paths,
        spec.preprocess,
        spec.batch_size,
        THREADS_BESIDE_MODEL,
    ) {
        for (i, reason) in &batch.failed {
            failed.push((images[*i].0.clone(), reason.clone()));
        }
        progress.inc((batch.indices.len() + batch.failed.len()) as u64);
        if batch.indices.is_empty() {
            continue;
        }
        let xs = batch.to_tensor().to_device(spec.device); // (B, 3, S, S)
        let out = tch::no_grad(|| encoder.forward_t(&xs, false));
        parts.push(ImageFeatures::new(
            out.pooled.to_device(Device::Cpu), // (B, D)
            spec.keep_grid
                .then(|| out.memory().to_kind(tch::Kind::Half).to_device(Device::Cpu)), // (B, N, C)
        ));
        ids.extend(batch.indices.iter().map(|&i| images[i].0.clone()));
    }
    if ids.is_empty() {
        return Err(Error::invalid(
            "no image could be decoded: nothing to extract features from",
        ));
    }
    let fingerprint = crate::data::features::fingerprint(
        spec.kind.as_str(),
        spec.weights_fp,
        &spec.preprocess,
        &ids,
    );
    let all = ImageFeatures::cat(&parts);
    let cache = FeatureCache {
        fingerprint,
        encoder: spec.kind.as_str().to_string(),
        ids,
        pooled: all.pooled,
        grid: all.grid,
    };
    Ok(Extracted { cache, failed })
}
