//! The architecture of a Hugging Face decoder-only LM of the Llama family (`config.json` of a
//! Llama, SmolLM2 or Qwen2 download) as a serde struct; `model::llama` builds the network from
//! it. Rotary settings are read where `transformers` 5 writes them (`rope_parameters`) and where
//! older and hub configs have them (`rope_theta`, `rope_scaling`); scaled rotary variants
//! (`llama3`, `yarn`, …) are refused rather than run wrongly.
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

pub use super::clip::Activation;

/// `LlamaConfig` / `Qwen2Config`, with `transformers`' defaults for absent fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LlamaConfig {
    pub model_type: String,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub num_key_value_heads: Option<i64>,
    pub head_dim: Option<i64>,
    pub hidden_act: Activation,
    pub max_position_embeddings: i64,
    pub rms_norm_eps: f64,
    pub rope_theta: Option<f64>,
    pub rope_parameters: Option<Value>,
    pub rope_scaling: Option<Value>,
    /// Llama: biases on q/k/v/o; Qwen2 always has q/k/v biases and none on o.
    pub attention_bias: bool,
    pub mlp_bias: bool,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<Value>,
    pub eos_token_id: Option<Value>,
}

impl Default for LlamaConfig {
    fn default() -> Self {
        LlamaConfig {
            model_type: "llama".into(),
            vocab_size: 32000,
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: None,
            head_dim: None,
            hidden_act: Activation::Silu,
            max_position_embeddings: 2048,
            rms_norm_eps: 1e-6,
            rope_theta: None,
            rope_parameters: None,
            rope_scaling: None,
            attention_bias: false,
            mlp_bias: false,
            tie_word_embeddings: false,
            bos_token_id: None,
            eos_token_id: None,
        }
    }
}

impl LlamaConfig {
    pub fn kv_heads(&self) -> i64 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> i64 {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// `(q/k/v bias, o bias)`.
    pub fn biases(&self) -> (bool, bool) {
        match self.model_type.as_str() {
            "qwen2" => (true, false),
            _ => (self.attention_bias, self.attention_bias),
        }
    }

    /// The rotary base: `rope_parameters.rope_theta`, else `rope_theta`, else 10,000.
    pub fn rope_theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p["rope_theta"].as_f64())
            .or(self.rope_theta)
            .unwrap_or(10000.0)
    }

    /// The end-of-sequence ids the config names (a number or a list).
    pub fn eos_ids(&self) -> Vec<i64> {
        match &self.eos_token_id {
            Some(Value::Number(n)) => n.as_i64().into_iter().collect(),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_i64).collect(),
            _ => vec![],
        }
    }

    /// Sizes and settings checked so a config captag cannot run is one error line.
    pub fn validate(&self, place: &Path) -> Result<()> {
        let bad = |why: String| Err(Error::invalid(format!("{}: {why}", place.display())));
        if !matches!(self.model_type.as_str(), "llama" | "qwen2") {
            return bad(format!(
                "model_type is `{}`; captag's Llama family reads `llama` (Llama, SmolLM2) and \
                 `qwen2` folders",
                self.model_type
            ));
        }
        for (name, x) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("head_dim", self.head_dim()),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if x <= 0 {
                return bad(format!("{name} is {x}, it must be positive"));
            }
        }
        if self.num_attention_heads % self.kv_heads() != 0 {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.kv_heads()
            ));
        }
        if self.head_dim() % 2 != 0 {
            return bad(format!(
                "head_dim {} must be even for rotary positions",
                self.head_dim()
            ));
        }
        if self.hidden_act != Activation::Silu {
            return bad(format!(
                "hidden_act is {:?}; the Llama family's MLP gate is silu",
                self.hidden_act
            ));
        }
        if self.mlp_bias {
            return bad("mlp_bias: true is not supported".into());
        }
        let kind = |v: &Option<Value>| {
            v.as_ref()
                .and_then(|p| p["rope_type"].as_str().or(p["type"].as_str()))
                .map(str::to_string)
        };
        if let Some(t) = kind(&self.rope_parameters)
            .or(kind(&self.rope_scaling))
            .filter(|t| t != "default")
        {
            return bad(format!(
                "rope type `{t}` (scaled rotary positions) is not supported; captag runs the \
                 default rotary embedding"
            ));
        }
        Ok(())
    }
}
