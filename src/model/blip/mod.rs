//! BLIP (Li et al. 2022) captioning, `BlipForConditionalGeneration`, on a Hugging Face folder
//! (`Salesforce/blip-image-captioning-base|large`) under `transformers`' names: the ViT image
//! tower (`vision_model.*`: patch convolution with bias, class token, learned positions, pre-LN
//! layers with a fused `qkv` and a `projection`, `post_layernorm` on every token) and the BERT
//! text decoder (`text_decoder.bert.*`, causal self-attention and cross-attention to the image
//! tokens, [`crate::model::bert`]) with its prediction head (`text_decoder.cls.predictions.*`,
//! decoder weight tied to the word embeddings). A caption starts at `[DEC]` (`bos_token_id`),
//! optionally followed by a prompt ("a picture of"), and ends at `[SEP]` (`sep_token_id`), as
//! `transformers`' `generate` does. Parity on a tiny random folder: `tests.rs`
//! (docs/vision-language.md).
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use crate::model::bert::{self, BertEmbeddings, BertLayer, BertSizes};
use crate::model::blocks::{
    layer_norm, Attention, AttentionConfig, LayerNorm, Layout, Mlp, MlpConfig,
};
use crate::model::hf::Activation;
use crate::model::vl::interface::{Prefix, VlCache, VlModel};
use crate::{Error, Result};

/// `BlipVisionConfig`, `transformers`' defaults (BLIP-base) for absent fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlipVisionConfig {
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub image_size: i64,
    pub patch_size: i64,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl Default for BlipVisionConfig {
    fn default() -> Self {
        BlipVisionConfig {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 384,
            patch_size: 16,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-5,
        }
    }
}

/// `BlipTextConfig`, `transformers`' defaults for absent fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlipTextConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub encoder_hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub max_position_embeddings: i64,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub hidden_dropout_prob: f64,
    pub bos_token_id: i64,
    pub sep_token_id: i64,
    pub pad_token_id: i64,
    pub label_smoothing: f64,
}

impl Default for BlipTextConfig {
    fn default() -> Self {
        BlipTextConfig {
            vocab_size: 30524,
            hidden_size: 768,
            encoder_hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 512,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: 0.0,
            bos_token_id: 30522,
            sep_token_id: 102,
            pad_token_id: 0,
            label_smoothing: 0.0,
        }
    }
}

/// `BlipConfig`: the two halves (what a run's config records to rebuild the model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlipConfig {
    #[serde(default)]
    pub vision_config: BlipVisionConfig,
    #[serde(default)]
    pub text_config: BlipTextConfig,
}

impl BlipConfig {
    /// Sizes a model can be built from; the first problem as one line naming `place`.
    pub fn check(&self, place: &str) -> Result<()> {
        let v = &self.vision_config;
        let bad = |why: String| Error::invalid(format!("{place}: {why}"));
        for (name, x) in [
            ("hidden_size", v.hidden_size),
            ("intermediate_size", v.intermediate_size),
            ("num_attention_heads", v.num_attention_heads),
            ("image_size", v.image_size),
            ("patch_size", v.patch_size),
        ] {
            if x <= 0 {
                return Err(bad(format!(
                    "vision_config.{name} is {x}, it must be positive"
                )));
            }
        }
        if v.hidden_size % v.num_attention_heads != 0 || v.num_hidden_layers < 0 {
            return Err(bad(
                "vision_config.hidden_size must be a multiple of num_attention_heads".into(),
            ));
        }
        if v.image_size % v.patch_size != 0 {
            return Err(bad(
                "vision_config.image_size must be a multiple of patch_size".into(),
            ));
        }
        self.text_sizes().check(&format!("{place}: text_config"))?;
        let t = &self.text_config;
        if t.encoder_hidden_size != v.hidden_size {
            return Err(bad(format!(
                "text_config.encoder_hidden_size {} differs from vision_config.hidden_size {}",
                t.encoder_hidden_size, v.hidden_size
            )));
        }
        for (name, id) in [
            ("bos_token_id", t.bos_token_id),
            ("sep_token_id", t.sep_token_id),
        ] {
            if id < 0 || id >= t.vocab_size {
                return Err(bad(format!(
                    "text_config.{name} {id} is outside the vocabulary of {}",
                    t.vocab_size
                )));
            }
        }
        Ok(())
    }

    pub fn text_sizes(&self) -> BertSizes {
        let t = &self.text_config;
        BertSizes {
            vocab: t.vocab_size,
            d: t.hidden_size,
            layers: t.num_hidden_layers,
            heads: t.num_attention_heads,
            ff: t.intermediate_size,
            act: t.hidden_act,
            eps: t.layer_norm_eps,
            max_positions: t.max_position_embeddings,
            type_vocab: 0,
            cross: Some(t.encoder_hidden_size),
            dropout: t.hidden_dropout_prob,
        }
    }
}

/// One pre-LN ViT layer: `x + projection(attn(ln1(x)))`, `x + mlp(ln2(x))`.
#[derive(Debug)]
struct VitLayer {
    self_attn: Attention,
    layer_norm1: LayerNorm,
    layer_norm2: LayerNorm,
    mlp: Mlp,
}

/// BLIP's image tower (`vision_model`).
#[derive(Debug)]
pub struct BlipVision {
    class_embedding: Tensor,
    patch_embedding: nn::Conv2D,
    position_embedding: Tensor,
    layers: Vec<VitLayer>,
    post_layernorm: LayerNorm,
}

impl BlipVision {
    pub fn new(p: nn::Path, c: &BlipVisionConfig) -> Self {
        let d = c.hidden_size;
        let e = &p / "embeddings";
        let grid = c.image_size / c.patch_size;
        let conv = nn::ConvConfig {
            stride: c.patch_size,
            ..Default::default()
        };
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let attn = AttentionConfig::new(d, c.num_attention_heads).layout(Layout::FusedLinear {
            qkv: "qkv",
            out: "projection",
        });
        let l = &p / "encoder" / "layers";
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let p = &l / i;
                VitLayer {
                    self_attn: Attention::new(&p / "self_attn", &attn),
                    layer_norm1: layer_norm(&p / "layer_norm1", d, c.layer_norm_eps),
                    layer_norm2: layer_norm(&p / "layer_norm2", d, c.layer_norm_eps),
                    mlp: Mlp::new(
                        &p / "mlp",
                        &MlpConfig::new(d, c.intermediate_size, c.hidden_act),
                    ),
                }
            })
            .collect();
        BlipVision {
            class_embedding: e.var("class_embedding", &[1, 1, d], init),
            patch_embedding: nn::conv2d(&e / "patch_embedding", 3, d, c.patch_size, conv),
            position_embedding: e.var("position_embedding", &[1, grid * grid + 1, d], init),
            layers,
            post_layernorm: layer_norm(&p / "post_layernorm", d, c.layer_norm_eps),
        }
    }

    /// `pixels (B, 3, S, S)` ⇒ `last_hidden_state (B, 1 + P, D)` (after `post_layernorm`).
    pub fn forward_t(&self, pixels: &Tensor, train: bool) -> Tensor {
        let b = pixels.size()[0];
        let patches = pixels
            .apply(&self.patch_embedding) // (B, D, S/p, S/p)
            .flatten(2, 3)
            .transpose(1, 2); // (B, P, D)
        let d = *self.class_embedding.size().last().unwrap_or(&0);
        let cls = self.class_embedding.expand([b, 1, d], false);
        let mut x = Tensor::cat(&[cls, patches], 1) + &self.position_embedding; // (B, 1 + P, D)
        for l in &self.layers {
            let (a, _) = l
                .self_attn
                .forward_t(&x.apply(&l.layer_norm1), None, None, None, train);
            x = &x + a;
            x = &x + l.mlp.forward_t(&x.apply(&l.layer_norm2), train);
        }
        x.apply(&self.post_layernorm)
    }
}

/// `BlipForConditionalGeneration`'s modules under `p`.
#[derive(Debug)]
pub struct Blip {
    pub config: BlipConfig,
    vision: BlipVision,
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
    transform: nn::Linear,
    transform_norm: LayerNorm,
    out_bias: Tensor,
}

impl Blip {
    pub fn new(p: &nn::Path, config: &BlipConfig) -> Self {
        let t = config.text_sizes();
        let bert = p / "text_decoder" / "bert";
        let pred = p / "text_decoder" / "cls" / "predictions";
        Blip {
            config: config.clone(),
            vision: BlipVision::new(p / "vision_model", &config.vision_config),
            embeddings: BertEmbeddings::new(&bert / "embeddings", &t),
            layers: bert::layers(&(&bert / "encoder"), &t, true),
            transform: nn::linear(&pred / "transform" / "dense", t.d, t.d, Default::default()),
            transform_norm: layer_norm(&pred / "transform" / "LayerNorm", t.d, t.eps),
            out_bias: pred.var("bias", &[t.vocab], nn::Init::Const(0.0)),
        }
    }

    /// The names a variable may have in a folder: its own, and for the head's bias the tied
    /// `decoder.bias` older files hold instead.
    pub fn weight_names(var: &str) -> Vec<String> {
        let mut v = vec![var.to_string()];
        if var == "text_decoder.cls.predictions.bias" {
            v.push("text_decoder.cls.predictions.decoder.bias".into());
        }
        v
    }

    /// `h (…, d)` ⇒ logits `(…, V)` (decoder weight = word embeddings).
    fn head(&self, h: &Tensor) -> Tensor {
        let act = self.config.text_config.hidden_act;
        let h = act
            .apply(&h.apply(&self.transform))
            .apply(&self.transform_norm);
        h.matmul(&self.embeddings.word.ws.tr()) + &self.out_bias
    }

    /// Text tokens `ids (B, T)` after `cache` (cross keys/values already in it) ⇒ `(B, T, d)`.
    fn text(&self, ids: &Tensor, cache: &mut VlCache, pad: Option<&Tensor>, train: bool) -> Tensor {
        let past_len = cache.self_kv.len();
        let mut x = self.embeddings.forward_t(ids, past_len, train);
        let mut new = Vec::with_capacity(self.layers.len());
        for (i, l) in self.layers.iter().enumerate() {
            let past = cache.self_kv.layers.get(i);
            let (y, kv) = l.forward_t(&x, past, pad, cache.cross.get(i), train);
            x = y;
            new.push(kv);
        }
        cache.self_kv.layers = new;
        x
    }
}

impl VlModel for Blip {
    fn vocab(&self) -> i64 {
        self.config.text_config.vocab_size
    }

    fn image_size(&self) -> i64 {
        self.config.vision_config.image_size
    }

    fn max_positions(&self) -> i64 {
        self.config.text_config.max_position_embeddings
    }

    fn start_token(&self) -> i64 {
        self.config.text_config.bos_token_id
    }

    fn end_token(&self) -> i64 {
        self.config.text_config.sep_token_id
    }

    fn image_memory(&self, pixels: &Tensor, train: bool) -> Tensor {
        self.vision.forward_t(pixels, train)
    }

    fn begin(&self, memory: &Tensor, prefix: &Prefix) -> VlCache {
        let mut cache = VlCache {
            cross: self
                .layers
                .iter()
                .filter_map(|l| l.cross_kv(memory))
                .collect(),
            ..Default::default()
        };
        if let Some(ids) = prefix.before_last(memory.size()[0], memory.device()) {
            let _ = self.text(&ids, &mut cache, None, false);
        }
        cache
    }

    fn step(&self, cache: &mut VlCache, ids: &Tensor) -> Tensor {
        let h = self.text(ids, cache, None, false); // (R, T, d)
        self.head(&h.select(1, -1)) // (R, V)
    }

    fn logits_t(&self, memory: &Tensor, ids: &Tensor, pad: &Tensor, train: bool) -> Tensor {
        let mut cache = VlCache {
            cross: self
                .layers
                .iter()
                .filter_map(|l| l.cross_kv(memory))
                .collect(),
            ..Default::default()
        };
        let pad = pad.to_kind(Kind::Bool);
        let h = self.text(ids, &mut cache, Some(&pad), train);
        self.head(&h)
    }
}

#[cfg(test)]
mod tests;
