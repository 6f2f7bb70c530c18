//! CLIP (Radford et al. 2021) on a Hugging Face folder (`openai/clip-vit-base-patch32`,
//! `-patch16`, or any `CLIPModel` download): the ViT image tower and the text tower under
//! `transformers`' parameter names, built from the folder's `config.json`, so the weights load
//! without conversion and without Python. captag uses the image embeddings (and patch tokens)
//! as features for the prefix captioner and image–text similarity for zero-shot labels.
//!
//! What is reproduced from `transformers`' `CLIPModel` (5.x): quick-GELU (or the config's
//! `gelu`/`gelu_new`), pre-LN encoder layers, `pre_layrnorm` before the image encoder,
//! `post_layernorm` on the class token, a causal mask in the text tower, text pooling at the
//! end-of-text position (the first `eos_token_id`, or, when the config says `eos_token_id: 2` as
//! the older OpenAI folders do, the position of the largest id), bias-free projections and
//! `logit_scale`. Parity with `transformers` on a tiny random model is tested in `tests.rs`
//! (docs/ARCHITECTURE.md, "CLIP and GPT-2 on Hugging Face folders").
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use tch::{nn, Device, Kind, Tensor};

pub use crate::config::clip::{Activation, ClipImageConfig, ClipVisionConfig};
use crate::model::hf::{read_config, HfWeights};
use crate::{Error, Result};

mod vision;
/// CLIP's image preprocessing lives with the others in `data::image` (the loader runs it).
pub use crate::data::image::clip as preprocess;
mod tower;

pub use preprocess::ClipPreprocess;
pub use tower::{TextTower, VisionTower};
pub use vision::{ClipImage, ClipImageFolder};

/// `eos_token_id` is a number, or a list in some configs (the first is used).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(i64),
    Many(Vec<i64>),
}

/// `CLIPTextConfig`, with `transformers`' defaults for absent fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClipTextConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub max_position_embeddings: i64,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    eos_token_id: Option<TokenIds>,
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        ClipTextConfig {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            eos_token_id: Some(TokenIds::One(49407)),
        }
    }
}

impl ClipTextConfig {
    pub fn eos_token_id(&self) -> Option<i64> {
        match &self.eos_token_id {
            Some(TokenIds::One(i)) => Some(*i),
            Some(TokenIds::Many(v)) => v.first().copied(),
            None => None,
        }
    }
}

/// `CLIPConfig`: the two towers and the shared projection width.
#[derive(Debug, Clone)]
pub struct ClipConfig {
    pub text: ClipTextConfig,
    pub vision: ClipVisionConfig,
    pub projection_dim: i64,
}

#[derive(Deserialize)]
struct Top {
    #[serde(default = "default_projection")]
    projection_dim: i64,
    #[serde(default)]
    model_type: Option<String>,
}

fn default_projection() -> i64 {
    512
}

impl ClipConfig {
    /// A `CLIPModel` `config.json`: `text_config` / `vision_config` (or the `*_dict` fields older
    /// `transformers` wrote), absent fields at their defaults; sizes checked so a broken config
    /// is an error, not a libtorch crash.
    pub fn from_json(v: &Value, place: &Path) -> Result<Self> {
        let bad = |why: String| Error::invalid(format!("{}: {why}", place.display()));
        let top: Top = serde_json::from_value(v.clone())
            .map_err(|e| bad(format!("not a CLIP config ({})", crate::input::one_line(e))))?;
        if let Some(t) = top.model_type.as_deref().filter(|t| *t != "clip") {
            return Err(bad(format!(
                "model_type is `{t}`, not `clip` (captag reads CLIPModel folders)"
            )));
        }
        let section = |name: &str| {
            [name.to_string(), format!("{name}_dict")]
                .iter()
                .map(|k| &v[k.as_str()])
                .find(|s| s.is_object())
                .cloned()
                .unwrap_or(Value::Object(Default::default()))
        };
        let text: ClipTextConfig = serde_json::from_value(section("text_config"))
            .map_err(|e| bad(format!("text_config: {}", crate::input::one_line(e))))?;
        let vision: ClipVisionConfig = serde_json::from_value(section("vision_config"))
            .map_err(|e| bad(format!("vision_config: {}", crate::input::one_line(e))))?;
        let positive = [
            ("text_config.hidden_size", text.hidden_size),
            ("text_config.vocab_size", text.vocab_size),
            ("text_config.num_attention_heads", text.num_attention_heads),
            (
                "text_config.max_position_embeddings",
                text.max_position_embeddings,
            ),
            ("text_config.intermediate_size", text.intermediate_size),
            ("projection_dim", top.projection_dim),
        ];
        for (name, x) in positive {
            if x <= 0 {
                return Err(bad(format!("{name} is {x}, it must be positive")));
            }
        }
        if text.hidden_size % text.num_attention_heads != 0 {
            return Err(bad(
                "hidden_size must be a multiple of num_attention_heads".into()
            ));
        }
        vision.check().map_err(bad)?;
        Ok(ClipConfig {
            text,
            vision,
            projection_dim: top.projection_dim,
        })
    }
}

/// The modules of a `CLIPModel`, built under `p` with `transformers`' names.
#[derive(Debug)]
pub struct ClipModel {
    /// `vision_model` + `visual_projection`.
    pub image: ClipImage,
    pub text: TextTower,
    text_projection: nn::Linear,
    logit_scale: Tensor,
}

impl ClipModel {
    pub fn new(p: nn::Path, cfg: &ClipConfig) -> Self {
        let no_bias = nn::LinearConfig {
            bias: false,
            ..Default::default()
        };
        let image = ClipImageConfig {
            vision: cfg.vision.clone(),
            projection_dim: cfg.projection_dim,
        };
        ClipModel {
            image: ClipImage::new(&p, &image),
            text: TextTower::new(&p / "text_model", &cfg.text),
            text_projection: nn::linear(
                &p / "text_projection",
                cfg.text.hidden_size,
                cfg.projection_dim,
                no_bias,
            ),
            logit_scale: p.var("logit_scale", &[], nn::Init::Const(2.6592)),
        }
    }
}

/// A loaded, frozen CLIP: its variable store, modules, config and preprocessing.
pub struct Clip {
    pub config: ClipConfig,
    pub preprocess: ClipPreprocess,
    pub vs: nn::VarStore,
    model: ClipModel,
}

impl Clip {
    /// Loads `dir` (`config.json`, `model.safetensors`, optional `preprocessor_config.json`)
    /// onto `device`; the variables are frozen.
    pub fn load(dir: &Path, device: Device) -> Result<Clip> {
        let (value, _) = read_config::<Value>(dir, "CLIP")?;
        let config = ClipConfig::from_json(&value, &dir.join("config.json"))?;
        let preprocess = ClipPreprocess::read(dir, config.vision.image_size)?;
        if preprocess.crop as i64 != config.vision.image_size {
            return Err(Error::invalid(format!(
                "{}: preprocessor_config.json crops to {} pixels, the model takes {}",
                dir.display(),
                preprocess.crop,
                config.vision.image_size
            )));
        }
        let mut vs = nn::VarStore::new(device);
        let model = ClipModel::new(vs.root(), &config);
        HfWeights::read(dir)?.load_into(&mut vs, |name| vec![name.to_string()])?;
        vs.freeze();
        Ok(Clip {
            config,
            preprocess,
            vs,
            model,
        })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    fn check_pixels(&self, pixels: &Tensor) -> Result<()> {
        let s = self.config.vision.image_size;
        let c = self.config.vision.num_channels;
        match pixels.size().as_slice() {
            [_, ch, h, w] if *ch == c && *h == s && *w == s => Ok(()),
            other => Err(Error::invalid(format!(
                "CLIP takes images of shape [N, {c}, {s}, {s}], got {other:?}"
            ))),
        }
    }

    /// `pixels (N, 3, S, S)`, already normalised ⇒ `(image_embeds (N, proj), patch tokens
    /// (N, P, width))`: `get_image_features` (projected, not normalised) and the encoder's
    /// last hidden state without the class token (`last_hidden_state[:, 1:]`).
    pub fn image_features(&self, pixels: &Tensor) -> Result<(Tensor, Tensor)> {
        self.check_pixels(pixels)?;
        let pixels = pixels.to_kind(Kind::Float).to_device(self.device());
        Ok(tch::no_grad(|| self.model.image.forward(&pixels))) // (N, proj), (N, P, width)
    }

    /// `get_image_features`: `(N, proj)`.
    pub fn image_embeds(&self, pixels: &Tensor) -> Result<Tensor> {
        Ok(self.image_features(pixels)?.0)
    }

    /// The patch tokens `(N, P, width)`, P = (S / patch)², row-major.
    pub fn patch_tokens(&self, pixels: &Tensor) -> Result<Tensor> {
        Ok(self.image_features(pixels)?.1)
    }

    /// The vision encoder's whole last hidden state `(N, 1 + P, width)`.
    pub fn vision_hidden(&self, pixels: &Tensor) -> Result<Tensor> {
        self.check_pixels(pixels)?;
        let pixels = pixels.to_kind(Kind::Float).to_device(self.device());
        Ok(tch::no_grad(|| self.model.image.vision.forward(&pixels).0))
    }

    /// `get_text_features` of `ids (B, T)` (each row with its end-of-text token, padded after
    /// it): `(B, proj)`, projected, not normalised.
    pub fn text_embeds(&self, ids: &Tensor) -> Result<Tensor> {
        let max = self.config.text.max_position_embeddings;
        let vocab = self.config.text.vocab_size;
        let (b, t) = ids.size2().map_err(|_| {
            Error::invalid(format!(
                "CLIP text ids must be [B, T], got {:?}",
                ids.size()
            ))
        })?;
        if t == 0 || t > max || b == 0 {
            return Err(Error::invalid(format!(
                "CLIP text ids are [{b}, {t}]: the length must be 1..={max}"
            )));
        }
        let ids = ids.to_kind(Kind::Int64).to_device(self.device());
        let (lo, hi) = (ids.min().int64_value(&[]), ids.max().int64_value(&[]));
        if lo < 0 || hi >= vocab {
            return Err(Error::invalid(format!(
                "CLIP text ids must be in 0..{vocab}, got {lo}..={hi}"
            )));
        }
        let pooled = tch::no_grad(|| self.model.text.forward(&ids).1); // (B, width)
        Ok(pooled.apply(&self.model.text_projection)) // (B, proj)
    }

    /// `exp(logit_scale)`, the temperature of `logits_per_image`.
    pub fn logit_scale(&self) -> f64 {
        self.model.logit_scale.exp().double_value(&[])
    }

    /// `logits_per_image (N, B)`: scaled cosine similarities of image and text embeddings.
    pub fn logits_per_image(&self, image_embeds: &Tensor, text_embeds: &Tensor) -> Tensor {
        let i = normalize(image_embeds);
        let t = normalize(text_embeds);
        i.matmul(&t.transpose(0, 1)) * self.logit_scale() // (N, B)
    }

    /// Token ids for [`Clip::text_embeds`]: each text as `tokenizer.encode` gives it, cut to the
    /// context length with `<|endoftext|>` kept last, padded with `<|endoftext|>`: `(B, T)`.
    pub fn text_ids(&self, tok: &crate::text::hf_tokenizer::HfTokenizer, texts: &[&str]) -> Tensor {
        let max = self.config.text.max_position_embeddings as usize;
        let eos = tok.eos_id() as i64;
        let mut rows: Vec<Vec<i64>> = texts
            .iter()
            .map(|t| {
                let mut ids: Vec<i64> = tok.encode(t).into_iter().map(i64::from).collect();
                if ids.len() > max {
                    ids.truncate(max);
                    ids[max - 1] = eos;
                }
                ids
            })
            .collect();
        let t = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
        for r in &mut rows {
            r.resize(t, eos);
        }
        let flat: Vec<i64> = rows.concat();
        Tensor::from_slice(&flat).view([texts.len() as i64, t as i64])
    }
}

/// Rows scaled to unit L2 norm.
pub fn normalize(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [-1], true)
}

#[cfg(test)]
pub(crate) mod tests;
