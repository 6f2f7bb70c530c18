//! Model and training configuration: serde structs with named presets, validated before any
//! work starts, saved as `config.json` in every run directory. Loading a checkpoint or resuming
//! a run compares configs and refuses an architecture mismatch with a clear message.
use serde::{Deserialize, Serialize};

pub mod budget;
pub mod clip;
pub mod decoder;
pub mod defaults;
mod fine_tune;
pub mod gpt2;
pub mod llama;
pub mod precision;
mod schedule;
pub mod scst;
mod train;

use crate::data::image::{Normalization, Preprocess, ResizeMode};
use crate::{Error, Result};
pub use clip::ClipImageConfig;
pub use decoder::{
    AttentionConfig, CellKind, ClipCapConfig, DecoderConfig, DecoderOverrides, DecoderPreset,
    Gpt2Sizes, ImageFeed, LmMode, MapperKind, Positions, PretrainedLm, ShowTellConfig,
    TransformerConfig,
};
pub use fine_tune::FineTune;
pub use schedule::{Plateau, Schedule};
pub use train::{Batching, Distill, KdMethod, Selection, TrainConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum EncoderKind {
    /// Four conv blocks trained end to end with the decoder (synthetic data, CPU runs).
    #[serde(rename = "small-cnn")]
    #[value(name = "small-cnn")]
    SmallCnn,
    /// torchvision SqueezeNet 1.1 features, frozen; real weights converted from Keras.
    #[serde(rename = "squeezenet1_1")]
    #[value(name = "squeezenet1_1")]
    Squeezenet1_1,
    /// torchvision VGG19, frozen, fc7 features; weights exported from torchvision.
    #[serde(rename = "vgg19")]
    #[value(name = "vgg19")]
    Vgg19,
    /// CLIP's ViT image tower, frozen: `--encoder-weights` is a Hugging Face CLIP folder;
    /// pooled = the image embedding, grid = the patch tokens (sizes from its config.json).
    #[serde(rename = "clip")]
    #[value(name = "clip")]
    Clip,
    /// EfficientNet-Lite0 (ImageNet, 224 px), frozen; `make weights` converts the weights to
    /// `data/weights/efficientnet_lite0.safetensors`. Pooled 1280, grid 7×7×1280.
    #[serde(rename = "efficientnet_lite0")]
    #[value(name = "efficientnet_lite0")]
    EfficientnetLite0,
    /// EfficientNet-Lite2 (ImageNet, 260 px), frozen; `data/weights/efficientnet_lite2.safetensors`.
    /// Pooled 1280, grid 9×9×1280.
    #[serde(rename = "efficientnet_lite2")]
    #[value(name = "efficientnet_lite2")]
    EfficientnetLite2,
}

impl EncoderKind {
    /// The encoder named `name` (as [`EncoderKind::as_str`] writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            EncoderKind::SmallCnn,
            EncoderKind::Squeezenet1_1,
            EncoderKind::Vgg19,
            EncoderKind::Clip,
            EncoderKind::EfficientnetLite0,
            EncoderKind::EfficientnetLite2,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EncoderKind::SmallCnn => "small-cnn",
            EncoderKind::Squeezenet1_1 => "squeezenet1_1",
            EncoderKind::Vgg19 => "vgg19",
            EncoderKind::Clip => "clip",
            EncoderKind::EfficientnetLite0 => "efficientnet_lite0",
            EncoderKind::EfficientnetLite2 => "efficientnet_lite2",
        }
    }
    /// Width of the pooled image vector `(B, D)`. CLIP's is its folder's `projection_dim`
    /// ([`ModelConfig::pooled_dim`]); here the default, ViT-B/32's.
    pub fn pooled_dim(self) -> i64 {
        match self {
            EncoderKind::SmallCnn => 128 * 9,
            EncoderKind::Squeezenet1_1 => 512,
            EncoderKind::Vgg19 => 4096,
            EncoderKind::Clip => ClipImageConfig::default().projection_dim,
            EncoderKind::EfficientnetLite0 | EncoderKind::EfficientnetLite2 => 1280,
        }
    }
    /// Channels of one grid cell `(B, N, C)`: small-cnn's last conv, SqueezeNet's fire9,
    /// VGG19's conv5_4, CLIP's width (the default ViT-B/32's here; [`ModelConfig::grid_dim`]).
    pub fn grid_dim(self) -> i64 {
        match self {
            EncoderKind::SmallCnn => 128,
            EncoderKind::Squeezenet1_1 | EncoderKind::Vgg19 => 512,
            EncoderKind::Clip => ClipImageConfig::default().vision.hidden_size,
            EncoderKind::EfficientnetLite0 | EncoderKind::EfficientnetLite2 => 1280,
        }
    }
    /// The preprocessing each network's weights expect.
    pub fn default_preprocess(self) -> Preprocess {
        match self {
            EncoderKind::SmallCnn => Preprocess {
                size: 64,
                resize: ResizeMode::Squash,
                norm: Normalization::ImageNet,
            },
            // Keras-origin weights: Caffe BGR mean subtraction. Flickr8k here is already 224².
            EncoderKind::Squeezenet1_1 => Preprocess {
                size: 224,
                resize: ResizeMode::Squash,
                norm: Normalization::CaffeBgr,
            },
            EncoderKind::Vgg19 => Preprocess {
                size: 224,
                resize: ResizeMode::CenterCrop,
                norm: Normalization::ImageNet,
            },
            // The default `CLIPImageProcessor`; a run takes its folder's (`ModelConfig::set_clip`).
            EncoderKind::Clip => Preprocess::clip_default(),
            // TF-Lite's eval preprocessing: bicubic shorter side to size / 0.875 (Pillow's
            // filter, as `clip` resizes), the centre crop, (x − 127) / 128.
            EncoderKind::EfficientnetLite0 | EncoderKind::EfficientnetLite2 => {
                let size = if self == EncoderKind::EfficientnetLite0 {
                    224
                } else {
                    260
                };
                Preprocess {
                    size,
                    resize: ResizeMode::ClipCrop {
                        shortest_edge: (size as f64 / 0.875) as u32,
                        filter: crate::data::image::clip::Filter::Bicubic,
                    },
                    norm: Normalization::Centered127,
                }
            }
        }
    }
}

/// Widths of an encoder's features: the pooled vector `(B, D)` and a grid cell `(B, N, C)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureDims {
    pub pooled: i64,
    pub grid: i64,
}

impl From<EncoderKind> for FeatureDims {
    fn from(k: EncoderKind) -> Self {
        FeatureDims {
            pooled: k.pooled_dim(),
            grid: k.grid_dim(),
        }
    }
}

/// Everything needed to rebuild the network: an architecture mismatch is detected by comparing
/// these.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub encoder: EncoderKind,
    /// Pretrained encoder kept frozen (features cached) rather than trained end to end.
    pub frozen_encoder: bool,
    /// `--fine-tune-encoder`: a pretrained encoder (not frozen) whose last blocks train.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fine_tune: Option<FineTune>,
    pub decoder: DecoderConfig,
    pub vocab_size: i64,
    pub preprocess: Preprocess,
    /// The hashtag model trained beside (or instead of) the caption decoder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashtags: Option<TagsConfig>,
    /// The CLIP image tower (`encoder: clip` only), read from the user's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<ClipImageConfig>,
}

/// Which image ⇒ hashtags model a run trains (`src/model/tagger.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TagModelKind {
    /// Multi-label classifier (BCE with positive weighting for rare tags).
    Head,
    /// GRU that generates the tag sequence (the seed projects' model).
    Gru,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TagsConfig {
    pub model: TagModelKind,
    /// Size of the run's label list (`hashtags.json`).
    pub num_tags: i64,
    pub hidden_dim: i64,
    /// Train the hashtag model alone: the caption decoder is not trained, best epoch = dev mAP.
    pub only: bool,
}

impl ModelConfig {
    /// Named presets: sizes that train well for each encoder on its typical data.
    pub fn preset(
        encoder: EncoderKind,
        frozen_encoder: bool,
        decoder: DecoderPreset,
        vocab_size: i64,
    ) -> Self {
        ModelConfig {
            encoder,
            frozen_encoder,
            fine_tune: None,
            decoder: DecoderConfig::preset(decoder, encoder),
            vocab_size,
            preprocess: encoder.default_preprocess(),
            hashtags: None,
            clip: None,
        }
    }

    /// A `clip` encoder's tower and preprocessing, as its Hugging Face folder says; the
    /// decoder's input widths follow (ClipCap's mapper reads the pooled vector).
    pub fn set_clip(&mut self, clip: ClipImageConfig, preprocess: Preprocess) {
        if let DecoderConfig::ClipCap(c) = &mut self.decoder {
            c.feature_dim = clip.projection_dim;
        }
        self.clip = Some(clip);
        self.preprocess = preprocess;
    }

    /// Width of the pooled image vector `(B, D)` (CLIP: its `projection_dim`).
    pub fn pooled_dim(&self) -> i64 {
        match &self.clip {
            Some(c) => c.projection_dim,
            None => self.encoder.pooled_dim(),
        }
    }

    /// Channels of one grid cell `(B, N, C)` (CLIP: the tower's width).
    pub fn grid_dim(&self) -> i64 {
        match &self.clip {
            Some(c) => c.vision.hidden_size,
            None => self.encoder.grid_dim(),
        }
    }

    pub fn dims(&self) -> FeatureDims {
        FeatureDims {
            pooled: self.pooled_dim(),
            grid: self.grid_dim(),
        }
    }

    /// Parse `config.json`'s `model`, upgrading the layout of captag 0.1 run directories (a
    /// flat Show-and-Tell config: `decoder: "lstm"`, `feed`, `embed_dim`, ...) to today's.
    pub fn from_json(mut v: serde_json::Value) -> std::result::Result<Self, String> {
        if let Some(o) = v.as_object_mut() {
            if let Some(cell) = o.get("decoder").filter(|d| d.is_string()).cloned() {
                let mut dec = serde_json::json!({ "kind": "show-tell", "cell": cell });
                for k in ["feed", "embed_dim", "hidden_dim", "layers", "dropout"] {
                    dec[k] = o
                        .remove(k)
                        .ok_or(format!("old-style config without `{k}`"))?;
                }
                o.insert("decoder".into(), dec);
            }
        }
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    /// Dropout of the hashtag head (the decoder's).
    pub fn dropout(&self) -> f64 {
        self.decoder.dropout()
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::invalid(format!("invalid model config: {m}")));
        if self.vocab_size < 5 {
            return bad("vocabulary has fewer than 5 entries (is the training split empty?)");
        }
        if let Err(m) = self.decoder.validate() {
            return bad(&m);
        }
        if let Err(m) = self.check_clip() {
            return bad(&m);
        }
        if let Some(f) = &self.fine_tune {
            if let Err(m) = f.check(self.encoder) {
                return bad(&m);
            }
            if self.frozen_encoder {
                return bad("a fine-tuned encoder is not frozen");
            }
        }
        if self.preprocess.size < 32 && self.encoder != EncoderKind::Clip {
            return bad("image size must be ≥ 32 px");
        }
        if let Err(m) = self.preprocess.check() {
            return bad(&m);
        }
        self.check_memory(1, false)?;
        if let DecoderConfig::ClipCap(c) = &self.decoder {
            if c.feature_dim != self.pooled_dim() {
                return bad(&format!(
                    "the clipcap mapper reads {} features but the {} encoder gives {}",
                    c.feature_dim,
                    self.encoder.as_str(),
                    self.pooled_dim()
                ));
            }
        }
        if let Some(t) = &self.hashtags {
            if t.num_tags < 1 {
                return bad("the hashtag label list is empty (no tag reaches --tag-min-count)");
            }
            if t.hidden_dim < 2 {
                return bad("hashtag hidden size must be ≥ 2");
            }
        }
        Ok(())
    }

    /// The sizes that set the model's memory, named by flag and field for the error line.
    fn size_names(&self) -> Vec<(&'static str, i64)> {
        let mut v = match &self.decoder {
            DecoderConfig::ShowTell(c) => vec![
                ("--embed (embed_dim)", c.embed_dim),
                ("--hidden (hidden_dim)", c.hidden_dim),
                ("--layers (layers)", c.layers),
            ],
            DecoderConfig::Attention(c) => vec![
                ("--embed (embed_dim)", c.embed_dim),
                ("--hidden (hidden_dim)", c.hidden_dim),
                ("--attention-dim (attention_dim)", c.attention_dim),
            ],
            DecoderConfig::Transformer(c) => vec![
                ("--embed/--hidden (d_model)", c.d_model),
                ("--layers (layers)", c.layers),
                ("--ff-dim (ff_dim)", c.ff_dim),
            ],
            DecoderConfig::ClipCap(c) => vec![
                ("--embed/--hidden (n_embd)", c.gpt2.n_embd),
                ("--layers (n_layer)", c.gpt2.n_layer),
                ("--prefix-len (prefix_len)", c.prefix_len),
                ("--clip-len (clip_len)", c.clip_len),
                ("--mapper-layers (mapper_layers)", c.mapper_layers),
            ],
        };
        if !self.frozen_encoder {
            v.push((
                "--image-size (preprocess.size)",
                self.preprocess.size as i64,
            ));
        }
        if let Some(t) = &self.hashtags {
            v.push(("--tag-hidden (hashtags.hidden_dim)", t.hidden_dim));
        }
        v
    }

    /// Parameters of the model (a lower bound; see `config::budget`).
    pub fn param_estimate(&self) -> u128 {
        use budget::product as p;
        let vocab = self.vocab_size.max(5);
        let (pooled, grid) = (self.pooled_dim(), self.grid_dim());
        let decoder = match &self.decoder {
            DecoderConfig::ShowTell(c) => {
                let (e, h) = (c.embed_dim, c.hidden_dim);
                p(&[vocab, e.saturating_add(h)])
                    .saturating_add(p(&[4, c.layers, h, e.max(h).saturating_add(h)]))
                    .saturating_add(p(&[pooled, e]))
            }
            DecoderConfig::Attention(c) => {
                let (e, h) = (c.embed_dim, c.hidden_dim);
                p(&[vocab, e.saturating_add(h)])
                    .saturating_add(p(&[4, h, e.saturating_add(grid).saturating_add(h)]))
                    .saturating_add(p(&[c.attention_dim, grid.saturating_add(h)]))
            }
            DecoderConfig::Transformer(c) => {
                let d = c.d_model;
                p(&[2, vocab, d])
                    .saturating_add(p(&[
                        c.layers,
                        d,
                        d.saturating_mul(8)
                            .saturating_add(c.ff_dim.saturating_mul(2)),
                    ]))
                    .saturating_add(p(&[c.max_len, d]))
                    .saturating_add(p(&[grid, d]))
            }
            DecoderConfig::ClipCap(c) => {
                let lm = match &c.pretrained {
                    Some(pre) => {
                        let g = &pre.config;
                        budget::gpt2_params(
                            g.n_embd,
                            g.n_layer,
                            g.vocab_size,
                            g.n_positions,
                            g.inner(),
                        )
                    }
                    None => {
                        let e = c.gpt2.n_embd;
                        let positions = c.prefix_len.saturating_add(c.max_len);
                        budget::gpt2_params(
                            e,
                            c.gpt2.n_layer,
                            vocab,
                            positions,
                            e.saturating_mul(4),
                        )
                    }
                };
                let e = match &c.pretrained {
                    Some(pre) => pre.config.n_embd,
                    None => c.gpt2.n_embd,
                };
                let out = c.prefix_len.saturating_mul(e);
                let mapper = match c.mapper {
                    // Linear(feature → out/2) → Linear(out/2 → out).
                    MapperKind::Mlp => {
                        p(&[c.feature_dim, out / 2]).saturating_add(p(&[out / 2, out]))
                    }
                    MapperKind::Transformer => p(&[c.feature_dim, c.clip_len, e])
                        .saturating_add(p(&[12, c.mapper_layers, e, e]))
                        .saturating_add(p(&[c.prefix_len, e])),
                };
                lm.saturating_add(mapper)
            }
        };
        let tags = match &self.hashtags {
            Some(t) => p(&[t.hidden_dim, pooled.saturating_add(t.num_tags.max(1))]),
            None => 0,
        };
        let clip = match &self.clip {
            Some(c) => budget::clip_vision_params(&c.vision, c.projection_dim),
            None => 0,
        };
        decoder.saturating_add(tags).saturating_add(clip)
    }

    /// Bytes a batch of `batch` images needs: the weights (×4 when `training`: gradients and
    /// Adam's two moments), the decoder's activations for a caption of its longest length,
    /// and, when the encoder runs on pixels, the image and a CNN's activations (about 16
    /// floats a pixel per image, a lower bound for the encoders captag has).
    pub fn memory_estimate(&self, batch: usize, training: bool) -> u128 {
        use budget::product as p;
        let weights =
            budget::f32s(self.param_estimate()).saturating_mul(if training { 4 } else { 1 });
        let b = batch.max(1) as i64;
        let widest = self.size_names().iter().map(|(_, x)| *x).max().unwrap_or(1);
        let len = self.decoder.max_len().unwrap_or(32).max(32);
        let prefix = match &self.decoder {
            DecoderConfig::ClipCap(c) => c.prefix_len,
            _ => 0,
        };
        let layers = match &self.decoder {
            DecoderConfig::ShowTell(c) => c.layers,
            DecoderConfig::Attention(_) => 1,
            DecoderConfig::Transformer(c) => c.layers,
            DecoderConfig::ClipCap(c) => c.gpt2.n_layer,
        };
        let decoder = budget::f32s(p(&[b, len.saturating_add(prefix), widest, layers.max(1)]));
        let image = if self.frozen_encoder && self.clip.is_none() {
            0
        } else {
            let s = self.preprocess.size as i64;
            budget::f32s(p(&[b, s, s, 16]))
        };
        weights.saturating_add(decoder).saturating_add(image)
    }

    /// Refuses a model (or a training batch of it) that cannot fit in this machine's memory,
    /// naming the flags and fields that set its size (`config::budget`).
    pub fn check_memory(&self, batch: usize, training: bool) -> Result<()> {
        budget::check(self.memory_estimate(batch, training), || {
            let sizes: Vec<String> = self
                .size_names()
                .iter()
                .map(|(n, x)| format!("{n} {x}"))
                .collect();
            let what = if training {
                format!(
                    "training the {} model with --batch-size {batch}",
                    self.decoder.name()
                )
            } else {
                format!("the {} model", self.decoder.name())
            };
            format!("{what} ({})", sizes.join(", "))
        })
    }

    /// A `clip` encoder is frozen, has its tower's sizes, and takes images of the tower's size.
    fn check_clip(&self) -> std::result::Result<(), String> {
        match (&self.clip, self.encoder) {
            (None, EncoderKind::Clip) => Err("encoder clip without its `clip` tower sizes".into()),
            (Some(_), k) if k != EncoderKind::Clip => Err(format!(
                "a `clip` tower section with encoder {}",
                k.as_str()
            )),
            (Some(_), _) if !self.frozen_encoder => {
                Err("CLIP is a frozen encoder (pass --encoder-weights HF_DIR)".into())
            }
            (Some(c), _) => {
                c.check()?;
                if self.preprocess.size as i64 != c.vision.image_size {
                    return Err(format!(
                        "CLIP takes {} px images (vision_config.image_size), not {}",
                        c.vision.image_size, self.preprocess.size
                    ));
                }
                Ok(())
            }
            (None, _) => Ok(()),
        }
    }

    /// A one-line description of the first architectural difference, if any.
    pub fn mismatch(&self, other: &ModelConfig) -> Option<String> {
        let a = serde_json::to_value(self).ok()?;
        let b = serde_json::to_value(other).ok()?;
        let (a, b) = (a.as_object()?, b.as_object()?);
        a.iter()
            .find(|(k, v)| b.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k}: {v} vs {}", b.get(k).cloned().unwrap_or_default()))
    }
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
