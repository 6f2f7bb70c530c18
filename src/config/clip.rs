//! The CLIP image tower of a `clip` encoder run (docs/ARCHITECTURE.md, "Features"): the
//! `vision_config` sizes of the user's Hugging Face folder and its `projection_dim`, stored in
//! the run's `config.json` so that `caption RUN photo.jpg` rebuilds the tower without the
//! folder (the weights are the run's `encoder.safetensors`). The same struct reads
//! `config.json`'s `vision_config` in `model::clip`, with `transformers`' defaults (ViT-B/32)
//! for absent fields, so the two cannot drift apart.
use serde::{Deserialize, Serialize};

/// A hidden activation as `transformers` configs name it (`hidden_act`, `activation_function`);
/// `model::hf` applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x · σ(1.702 x)`, OpenAI CLIP's.
    QuickGelu,
    /// The exact (erf) GELU.
    Gelu,
    /// The tanh approximation, GPT-2's (`gelu_new`, `gelu_pytorch_tanh`).
    #[serde(alias = "gelu_pytorch_tanh")]
    GeluNew,
    Relu,
    /// `x · σ(x)` (Llama's and Qwen2's `silu`, SwiGLU's gate).
    #[serde(alias = "swish")]
    Silu,
}

/// `CLIPVisionConfig`, with `transformers`' defaults (ViT-B/32) for absent fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipVisionConfig {
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub num_channels: i64,
    pub image_size: i64,
    pub patch_size: i64,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        ClipVisionConfig {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

impl ClipVisionConfig {
    /// Sizes a tower can be built from (a broken config is an error, not a libtorch crash):
    /// the first problem, as `vision_config.FIELD ...`.
    pub fn check(&self) -> std::result::Result<(), String> {
        let positive = [
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("patch_size", self.patch_size),
            ("num_channels", self.num_channels),
            ("image_size", self.image_size),
        ];
        for (name, x) in positive {
            if x <= 0 {
                return Err(format!("vision_config.{name} is {x}, it must be positive"));
            }
        }
        if self.num_hidden_layers < 0 {
            return Err("vision_config.num_hidden_layers is negative".into());
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(
                "vision_config.hidden_size must be a multiple of num_attention_heads".into(),
            );
        }
        if self.image_size < self.patch_size || self.image_size % self.patch_size != 0 {
            return Err(format!(
                "vision_config.image_size {} is not a multiple of patch_size {}",
                self.image_size, self.patch_size
            ));
        }
        Ok(())
    }

    /// Patch tokens per image: `(image_size / patch_size)²`.
    pub fn patches(&self) -> i64 {
        let g = self.image_size / self.patch_size.max(1);
        g * g
    }
}

/// What a `clip` encoder computes: the image tower and the width of `visual_projection`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipImageConfig {
    pub vision: ClipVisionConfig,
    /// Width of the image embedding (`get_image_features`), the pooled vector.
    pub projection_dim: i64,
}

impl Default for ClipImageConfig {
    fn default() -> Self {
        ClipImageConfig {
            vision: ClipVisionConfig::default(),
            projection_dim: 512,
        }
    }
}

impl ClipImageConfig {
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.projection_dim <= 0 {
            return Err(format!(
                "projection_dim is {}, it must be positive",
                self.projection_dim
            ));
        }
        self.vision.check()
    }
}
