//! The architecture of a Hugging Face GPT-2 (`config.json` of a `gpt2` download) as a serde
//! struct: `model::gpt2` builds the network from it, and a ClipCap run on pretrained weights
//! (`--lm-weights`) records it in its `config.json`, so the run rebuilds the LM without the
//! folder (docs/ARCHITECTURE.md, "CLIP and GPT-2 on Hugging Face folders").
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub use super::clip::Activation;

/// `GPT2Config`, with `transformers`' defaults (the 124M `gpt2`) for absent fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Gpt2Config {
    pub vocab_size: i64,
    pub n_positions: i64,
    pub n_embd: i64,
    pub n_layer: i64,
    pub n_head: i64,
    pub n_inner: Option<i64>,
    pub activation_function: Activation,
    pub layer_norm_epsilon: f64,
    pub scale_attn_weights: bool,
    pub scale_attn_by_inverse_layer_idx: bool,
    pub tie_word_embeddings: bool,
    pub add_cross_attention: bool,
    pub embd_pdrop: f64,
    pub attn_pdrop: f64,
    pub resid_pdrop: f64,
    pub bos_token_id: Option<i64>,
    pub eos_token_id: Option<i64>,
    pub model_type: Option<String>,
}

impl Default for Gpt2Config {
    fn default() -> Self {
        Gpt2Config {
            vocab_size: 50257,
            n_positions: 1024,
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            n_inner: None,
            activation_function: Activation::GeluNew,
            layer_norm_epsilon: 1e-5,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            tie_word_embeddings: true,
            add_cross_attention: false,
            embd_pdrop: 0.1,
            attn_pdrop: 0.1,
            resid_pdrop: 0.1,
            bos_token_id: Some(50256),
            eos_token_id: Some(50256),
            model_type: None,
        }
    }
}

impl Gpt2Config {
    /// Sizes checked so a broken config is one error line, not a libtorch crash.
    pub fn validate(&self, place: &Path) -> Result<()> {
        let bad = |why: String| Err(Error::invalid(format!("{}: {why}", place.display())));
        if let Some(t) = self.model_type.as_deref().filter(|t| *t != "gpt2") {
            return bad(format!("model_type is `{t}`, not `gpt2`"));
        }
        for (name, x) in [
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_embd", self.n_embd),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_inner", self.inner()),
        ] {
            if x <= 0 {
                return bad(format!("{name} is {x}, it must be positive"));
            }
        }
        if self.n_embd % self.n_head != 0 {
            return bad(format!(
                "n_embd {} is not a multiple of n_head {}",
                self.n_embd, self.n_head
            ));
        }
        if self.add_cross_attention {
            return bad("add_cross_attention is not supported".into());
        }
        Ok(())
    }

    /// The MLP width: `n_inner`, or `4 · n_embd`.
    pub fn inner(&self) -> i64 {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }
}
