//! One interface over the three CNN encoders and CLIP's image tower, and the frozen-encoder
//! builder and feature extraction that `captag features`, training from a cache and inference
//! share. A frozen encoder lives in its own `VarStore` under torchvision's names (CLIP: under
//! `transformers`' `vision_model.*`, `visual_projection`), `freeze()`d and run under `no_grad`
//! (docs/ARCHITECTURE.md, "Variable stores", "Features").
//!
//! Inference runs in channels-last memory layout (NHWC strides, NCHW shape): libtorch's CPU
//! convolutions take their oneDNN path for it, which ran SqueezeNet twice as fast as the
//! default layout on the 2-core build machine (bench/README.md, "Feature extraction"). The
//! values are the same convolution up to float summation order. Training keeps the default
//! layout, so resumed and uninterrupted runs compute exactly the same way. CLIP (a ViT: one
//! patch convolution, then matrix products) keeps the default layout, so its features are
//! `transformers`' computation.
use std::path::{Path, PathBuf};

use tch::{nn, nn::VarStore, Device, Tensor};

use super::clip::{ClipImage, ClipImageFolder};
use super::cnn;
use super::effnet;
use super::features::ImageFeatures;
use crate::config::{ClipImageConfig, EncoderKind};
use crate::data::features::FeatureCache;
use crate::data::image::Preprocess;
use crate::data::loader::{BatchLoader, THREADS_BESIDE_MODEL};
use crate::{Error, Result};

#[derive(Debug)]
pub enum Encoder {
    SmallCnn(cnn::SmallCnn),
    SqueezeNet(cnn::SqueezeNet),
    Vgg19(cnn::Vgg19),
    /// Boxed: a ViT tower holds far more module handles than a CNN.
    Clip(Box<ClipImage>),
    EfficientNet(Box<effnet::EfficientNetLite>),
}

impl Encoder {
    /// `clip`: the image tower's sizes (`ModelConfig::clip`; absent, the default ViT-B/32's).
    pub fn new(p: nn::Path, kind: EncoderKind, clip: Option<&ClipImageConfig>) -> Self {
        match kind {
            EncoderKind::SmallCnn => Encoder::SmallCnn(cnn::SmallCnn::new(p)),
            EncoderKind::Squeezenet1_1 => Encoder::SqueezeNet(cnn::SqueezeNet::new(p)),
            EncoderKind::Vgg19 => Encoder::Vgg19(cnn::Vgg19::new(p)),
            EncoderKind::Clip => {
                let cfg = clip.cloned().unwrap_or_default();
                Encoder::Clip(Box::new(ClipImage::new(&p, &cfg)))
            }
            EncoderKind::EfficientnetLite0 => Encoder::EfficientNet(Box::new(
                effnet::EfficientNetLite::new(p, effnet::Variant::Lite0),
            )),
            EncoderKind::EfficientnetLite2 => Encoder::EfficientNet(Box::new(
                effnet::EfficientNetLite::new(p, effnet::Variant::Lite2),
            )),
        }
    }

    /// A pretrained encoder in its own frozen store, weights loaded from `weights` (a
    /// safetensors file under the store's names: the user's CNN weights, a run's
    /// `encoder.safetensors`).
    pub fn frozen(
        kind: EncoderKind,
        clip: Option<&ClipImageConfig>,
        weights: &Path,
        device: Device,
    ) -> Result<(Encoder, VarStore)> {
        let mut vs = VarStore::new(device);
        let enc = Encoder::new(vs.root(), kind, clip);
        super::weights::load_vars(&mut vs, weights)?;
        vs.freeze();
        enc.frozen_layout(&vs);
        Ok((enc, vs))
    }

    /// A frozen CNN's kernels in channels-last memory (see the module docs); CLIP keeps its own.
    pub fn frozen_layout(&self, vs: &VarStore) {
        if !matches!(self, Encoder::Clip(_)) {
            channels_last_weights(vs);
        }
    }

    /// `xs (B,3,S,S)` preprocessed as [`EncoderKind::default_preprocess`] says ⇒ pooled
    /// `(B, D)` and grid `(B, H·W, C)`.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> ImageFeatures {
        // Channels-last pixels let oneDNN pick its fast NHWC kernels, in training too (the
        // small CNN's forward + backward: ~12% less CPU time per step; docs/ARCHITECTURE.md).
        let layout = channels_last;
        let (pooled, conv) = match self {
            Encoder::SmallCnn(m) => m.forward_t(&layout(xs), train),
            Encoder::SqueezeNet(m) => m.forward_t(&layout(xs), train),
            Encoder::Vgg19(m) => m.forward_t(&layout(xs), train),
            Encoder::EfficientNet(m) => m.forward_t(&layout(xs), train),
            Encoder::Clip(m) => {
                let (embeds, patches) = m.forward(xs); // (B, proj), (B, P, width)
                return ImageFeatures::new(embeds, Some(patches));
            }
        };
        ImageFeatures::from_conv(pooled, &conv)
    }
}

/// `t (B,C,H,W)` with NHWC strides: the same values and shape, channels-last memory.
fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Every 4-D variable of a frozen store (conv kernels `(O,I,kh,kw)`) in channels-last memory,
/// so inference convolutions need no layout conversion per call. Loading weights later copies
/// values into these tensors and keeps their layout.
pub fn channels_last_weights(vs: &VarStore) {
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            if v.dim() == 4 {
                let cl = channels_last(&v);
                v.set_data(&cl);
            }
        }
    });
}

/// A pretrained encoder as the user names it with `--encoder-weights`: a safetensors file
/// under torchvision's names, or for `clip` a Hugging Face CLIP folder.
pub struct Pretrained {
    pub encoder: Encoder,
    /// The frozen store holding its weights.
    pub vs: VarStore,
    /// The preprocessing its weights expect (CLIP: the folder's).
    pub preprocess: Preprocess,
    /// Identifies the weights (feature caches and runs record it).
    pub fingerprint: String,
    /// CLIP's tower sizes, from the folder's config.json.
    pub clip: Option<ClipImageConfig>,
}

/// Opens `--encoder-weights` for `kind` (frozen, on `device`).
pub fn pretrained(kind: EncoderKind, weights: &Path, device: Device) -> Result<Pretrained> {
    if kind == EncoderKind::Clip {
        let folder = ClipImageFolder::read(weights)?;
        let (image, vs, fingerprint) = folder.load(weights, device)?;
        return Ok(Pretrained {
            encoder: Encoder::Clip(Box::new(image)),
            vs,
            preprocess: folder.preprocess.preprocess(),
            fingerprint,
            clip: Some(folder.config),
        });
    }
    if !weights.is_file() {
        return Err(Error::invalid(format!(
            "--encoder-weights {}: no such file",
            weights.display()
        )));
    }
    let fingerprint = crate::fsio::Fingerprint::of_file(weights)?;
    let (encoder, vs) = Encoder::frozen(kind, None, weights, device)?;
    Ok(Pretrained {
        encoder,
        vs,
        preprocess: kind.default_preprocess(),
        fingerprint,
        clip: None,
    })
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

/// `xs` padded with black images to `size` rows. Convolution libraries (oneDNN on the CPU,
/// cuDNN) choose their algorithm by the input's shape, and two algorithms round differently:
/// an image encoded in a batch of 32 and in a batch of 12 differed in the last bits. Every
/// batch is run at the full batch size, so an image's features depend on the image alone
/// (not on which others share its batch) and the shards of `features --shard` merge into the
/// single-process cache byte for byte (docs/scale.md).
fn full_batch(xs: &Tensor, size: usize) -> Tensor {
    let (b, size) = (xs.size()[0], size as i64);
    if b >= size {
        return xs.shallow_clone();
    }
    let mut shape = xs.size();
    shape[0] = size - b;
    Tensor::cat(&[xs, &Tensor::zeros(&shape, (xs.kind(), xs.device()))], 0) // (size, 3, S, S)
}

/// Run `encoder` (frozen) over `images` = `(id, path)`; undecodable images are skipped and
/// listed. No decodable image at all is an error.
pub fn extract(
    encoder: &Encoder,
    spec: &ExtractSpec,
    images: &[(String, PathBuf)],
    progress: &indicatif::ProgressBar,
) -> Result<Extracted> {
    let ex = extract_any(encoder, spec, images, progress)?;
    if ex.cache.ids.is_empty() {
        return Err(Error::invalid(
            "no image could be decoded: nothing to extract features from",
        ));
    }
    Ok(ex)
}

/// [`extract`], where no decodable image (a shard whose images are all unreadable, or that
/// got none) gives an empty cache: pooled `(0, 0)`, grid `(0, 0, 0)`.
pub fn extract_any(
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
        let b = xs.size()[0];
        let out = tch::no_grad(|| encoder.forward_t(&full_batch(&xs, spec.batch_size), false));
        parts.push(ImageFeatures::new(
            out.pooled.narrow(0, 0, b).to_device(Device::Cpu), // (B, D)
            spec.keep_grid.then(|| {
                out.memory()
                    .narrow(0, 0, b)
                    .to_kind(tch::Kind::Half)
                    .to_device(Device::Cpu) // (B, N, C)
            }),
        ));
        ids.extend(batch.indices.iter().map(|&i| images[i].0.clone()));
    }
    if ids.is_empty() {
        let cpu = (tch::Kind::Float, Device::Cpu);
        let cache = FeatureCache {
            key: Default::default(),
            encoder: spec.kind.as_str().to_string(),
            ids,
            pooled: Tensor::zeros([0, 0], cpu),
            grid: spec
                .keep_grid
                .then(|| Tensor::zeros([0, 0, 0], cpu).to_kind(tch::Kind::Half)),
        };
        return Ok(Extracted { cache, failed });
    }
    let decoded: std::collections::HashSet<&String> = ids.iter().collect();
    let kept: Vec<(String, PathBuf)> = images
        .iter()
        .filter(|(id, _)| decoded.contains(id))
        .cloned()
        .collect();
    let key = crate::data::features::CacheKey::of(
        spec.kind.as_str(),
        spec.weights_fp,
        &spec.preprocess,
        &kept,
    );
    let all = ImageFeatures::cat(&parts);
    let cache = FeatureCache {
        key,
        encoder: spec.kind.as_str().to_string(),
        ids,
        pooled: all.pooled,
        grid: all.grid,
    };
    Ok(Extracted { cache, failed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_last_inference_computes_the_same_features() {
        tch::manual_seed(3);
        let vs = VarStore::new(Device::Cpu);
        let enc = Encoder::new(vs.root(), EncoderKind::Squeezenet1_1, None);
        let xs = Tensor::randn([2, 3, 64, 64], (tch::Kind::Float, Device::Cpu));
        // Default layout, through the network directly (no conversion).
        let Encoder::SqueezeNet(net) = &enc else {
            unreachable!()
        };
        let (want, _) = tch::no_grad(|| net.forward_t(&xs, false));
        channels_last_weights(&vs);
        let w = vs
            .variables()
            .into_iter()
            .find(|(_, v)| v.dim() == 4)
            .unwrap()
            .1;
        assert_eq!(
            w.stride()[1],
            1,
            "kernels are channels-last: {:?}",
            w.stride()
        );
        let got = tch::no_grad(|| enc.forward_t(&xs, false)).pooled;
        let diff = (&got - &want).abs().max().double_value(&[]);
        let scale = want.abs().max().double_value(&[]);
        assert!(diff <= 1e-4 * scale.max(1.0), "{diff} vs {scale}");
    }
}
