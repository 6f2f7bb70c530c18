//! GIT (Wang et al. 2022), `GitForCausalLM`, on a Hugging Face folder (`microsoft/git-base`,
//! `-base-coco`, `-large`) under `transformers`' names: CLIP's ViT
//! (`git.image_encoder.vision_model.*`, the tower of [`crate::model::clip`], every token after
//! `post_layernorm`), `git.visual_projection` (Linear + LayerNorm), and one BERT stack
//! (`git.embeddings`, `git.encoder.layer.N`, [`crate::model::bert`]) over the image tokens
//! followed by the caption tokens: image tokens see every image token and no caption token,
//! caption tokens see the image and the earlier caption tokens. The `output` head reads the
//! caption positions. The image tokens go into the key/value cache once per image, then each
//! caption token is one cached step. Captions start at `[CLS]` (`bos_token_id`) and end at
//! `[SEP]` (`eos_token_id`). Parity on a tiny random folder: `tests.rs`
//! (docs/vision-language.md).
use serde::{Deserialize, Deserializer, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::model::bert::{self, BertEmbeddings, BertLayer, BertSizes};
use crate::model::blocks::{layer_norm, LayerNorm};
use crate::model::clip::{ClipVisionConfig, VisionTower};
use crate::model::hf::Activation;
use crate::model::vl::interface::{Prefix, VlCache, VlModel};
use crate::{Error, Result};

/// `GitConfig`, `transformers`' defaults (GIT-base) for absent fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GitConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    pub hidden_act: Activation,
    pub max_position_embeddings: i64,
    pub layer_norm_eps: f64,
    pub hidden_dropout_prob: f64,
    pub bos_token_id: i64,
    pub eos_token_id: i64,
    pub tie_word_embeddings: bool,
    /// Video GIT (several frames per input); captag reads single images only.
    pub num_image_with_embedding: Option<i64>,
    #[serde(deserialize_with = "git_vision")]
    pub vision_config: ClipVisionConfig,
}

/// `GitVisionConfig`'s defaults differ from CLIP's in the patch (16, not 32).
fn git_vision<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<ClipVisionConfig, D::Error> {
    let mut v = serde_json::Value::deserialize(d)?;
    if let Some(o) = v.as_object_mut() {
        o.entry("patch_size").or_insert(16.into());
    }
    serde_json::from_value(v).map_err(serde::de::Error::custom)
}

impl Default for GitConfig {
    fn default() -> Self {
        GitConfig {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 6,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            max_position_embeddings: 1024,
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: 0.1,
            bos_token_id: 101,
            eos_token_id: 102,
            tie_word_embeddings: false,
            num_image_with_embedding: None,
            vision_config: ClipVisionConfig {
                patch_size: 16,
                ..Default::default()
            },
        }
    }
}

impl GitConfig {
    pub fn check(&self, place: &str) -> Result<()> {
        let bad = |why: String| Error::invalid(format!("{place}: {why}"));
        if self.num_image_with_embedding.is_some() {
            return Err(bad(
                "num_image_with_embedding is set: a video GIT, captag captions single images"
                    .into(),
            ));
        }
        self.vision_config.check().map_err(bad)?;
        self.text_sizes().check(place)?;
        for (name, id) in [
            ("bos_token_id", self.bos_token_id),
            ("eos_token_id", self.eos_token_id),
        ] {
            if id < 0 || id >= self.vocab_size {
                return Err(bad(format!(
                    "{name} {id} is outside the vocabulary of {}",
                    self.vocab_size
                )));
            }
        }
        Ok(())
    }

    pub fn text_sizes(&self) -> BertSizes {
        BertSizes {
            vocab: self.vocab_size,
            d: self.hidden_size,
            layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            ff: self.intermediate_size,
            act: self.hidden_act,
            eps: self.layer_norm_eps,
            max_positions: self.max_position_embeddings,
            type_vocab: 0,
            cross: None,
            dropout: self.hidden_dropout_prob,
        }
    }
}

/// `GitForCausalLM`'s modules under `p`.
#[derive(Debug)]
pub struct Git {
    pub config: GitConfig,
    vision: VisionTower,
    projection: nn::Linear,
    projection_norm: LayerNorm,
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
    output: nn::Linear,
}

impl Git {
    pub fn new(p: &nn::Path, config: &GitConfig) -> Self {
        let t = config.text_sizes();
        let v = &config.vision_config;
        let g = p / "git";
        let proj = &g / "visual_projection" / "visual_projection";
        Git {
            config: config.clone(),
            vision: VisionTower::new(&g / "image_encoder" / "vision_model", v),
            projection: nn::linear(&proj / 0, v.hidden_size, t.d, Default::default()),
            projection_norm: layer_norm(&proj / 1, t.d, v.layer_norm_eps),
            embeddings: BertEmbeddings::new(&g / "embeddings", &t),
            layers: bert::layers(&(&g / "encoder"), &t, true),
            output: nn::linear(p / "output", t.d, t.vocab, Default::default()),
        }
    }

    /// The folder names of a variable: a tied `output.weight` may be stored only as the word
    /// embeddings.
    pub fn weight_names(c: &GitConfig, var: &str) -> Vec<String> {
        let mut v = vec![var.to_string()];
        if c.tie_word_embeddings && var == "output.weight" {
            v.push("git.embeddings.word_embeddings.weight".into());
        }
        v
    }

    /// Text tokens `ids (B, T)` after the cache (image tokens and `text_len` caption tokens);
    /// `pad (B, T)` true at real tokens ⇒ `(B, T, d)`.
    fn text(&self, ids: &Tensor, cache: &mut VlCache, pad: Option<&Tensor>, train: bool) -> Tensor {
        let t = ids.size()[1];
        let past = cache.self_kv.len();
        let mut x = self.embeddings.forward_t(ids, cache.text_len, train);
        let mask = (t > 1 || pad.is_some()).then(|| text_mask(t, past, pad, ids.device()));
        let mut new = Vec::with_capacity(self.layers.len());
        for (i, l) in self.layers.iter().enumerate() {
            let (y, kv) = l.forward_masked(&x, cache.self_kv.layers.get(i), mask.as_ref(), train);
            x = y;
            new.push(kv);
        }
        cache.self_kv.layers = new;
        cache.text_len += t;
        x
    }
}

/// Caption queries `T` after `past` cached keys (image tokens and earlier caption tokens): every
/// cached key, and the new caption keys causally, real ones only ⇒ `(B | 1, 1, T, past + T)`.
fn text_mask(t: i64, past: i64, pad: Option<&Tensor>, dev: Device) -> Tensor {
    let seen = Tensor::ones([t, past], (Kind::Bool, dev));
    let mut m = Tensor::cat(&[seen, Tensor::ones([t, t], (Kind::Bool, dev)).tril(0)], 1); // (T, S)
    if let Some(keep) = pad {
        let b = keep.size()[0];
        let keep = Tensor::cat(
            &[
                Tensor::ones([b, past], (Kind::Bool, dev)),
                keep.to_kind(Kind::Bool),
            ],
            1,
        ); // (B, S)
        m = m.unsqueeze(0).logical_and(&keep.unsqueeze(1)); // (B, T, S)
    } else {
        m = m.unsqueeze(0);
    }
    m.unsqueeze(1)
}

impl VlModel for Git {
    fn vocab(&self) -> i64 {
        self.config.vocab_size
    }

    fn image_size(&self) -> i64 {
        self.config.vision_config.image_size
    }

    fn max_positions(&self) -> i64 {
        self.config.max_position_embeddings
    }

    fn start_token(&self) -> i64 {
        self.config.bos_token_id
    }

    fn end_token(&self) -> i64 {
        self.config.eos_token_id
    }

    /// The projected image tokens `(N, 1 + P, d)`.
    fn image_memory(&self, pixels: &Tensor, _train: bool) -> Tensor {
        self.vision
            .forward_all(pixels)
            .apply(&self.projection)
            .apply(&self.projection_norm)
    }

    fn begin(&self, memory: &Tensor, prefix: &Prefix) -> VlCache {
        let mut cache = VlCache::default();
        let mut x = memory.shallow_clone();
        for l in &self.layers {
            let (y, kv) = l.forward_masked(&x, None, None, false); // image tokens see each other
            x = y;
            cache.self_kv.layers.push(kv);
        }
        if let Some(ids) = prefix.before_last(memory.size()[0], memory.device()) {
            let _ = self.text(&ids, &mut cache, None, false);
        }
        cache
    }

    fn step(&self, cache: &mut VlCache, ids: &Tensor) -> Tensor {
        let h = self.text(ids, cache, None, false);
        h.select(1, -1).apply(&self.output)
    }

    fn logits_t(&self, memory: &Tensor, ids: &Tensor, pad: &Tensor, train: bool) -> Tensor {
        let mut cache = VlCache::default();
        let mut x = memory.shallow_clone();
        for l in &self.layers {
            let (y, kv) = l.forward_masked(&x, None, None, train);
            x = y;
            cache.self_kv.layers.push(kv);
        }
        let h = self.text(ids, &mut cache, Some(pad), train);
        h.apply(&self.output)
    }
}

#[cfg(test)]
mod tests;
