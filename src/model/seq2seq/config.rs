//! The `config.json` of Marian (`MarianMTModel`) and M2M100/NLLB
//! (`M2M100ForConditionalGeneration`) folders: the fields the encoder–decoder reads, with
//! `transformers`' defaults where a field is absent.
use std::path::Path;

use serde::Deserialize;

use crate::model::blocks::mlp::Activation;
use crate::{Error, Result};

/// Which layout a folder's layers have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Post-LayerNorm layers, no final norm, positions `0..` in Marian's sin | cos halves.
    Marian,
    /// Pre-LayerNorm layers, a final norm per stack, fairseq positions offset by `pad + 1`.
    M2m100,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Seq2SeqConfig {
    #[serde(default)]
    pub model_type: String,
    pub vocab_size: i64,
    pub d_model: i64,
    pub encoder_layers: i64,
    pub decoder_layers: i64,
    pub encoder_attention_heads: i64,
    pub decoder_attention_heads: i64,
    pub encoder_ffn_dim: i64,
    pub decoder_ffn_dim: i64,
    #[serde(default = "default_act")]
    pub activation_function: String,
    #[serde(default)]
    pub scale_embedding: bool,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: i64,
    pub pad_token_id: Option<i64>,
    pub eos_token_id: Option<i64>,
    pub decoder_start_token_id: Option<i64>,
    #[serde(default = "yes")]
    pub tie_word_embeddings: bool,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_positions() -> i64 {
    1024
}
fn yes() -> bool {
    true
}

impl Seq2SeqConfig {
    pub fn arch(&self) -> Arch {
        if self.model_type == "marian" {
            Arch::Marian
        } else {
            Arch::M2m100
        }
    }

    pub fn activation(&self) -> Result<Activation> {
        Ok(match self.activation_function.as_str() {
            "swish" | "silu" => Activation::Silu,
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluNew,
            "relu" => Activation::Relu,
            other => {
                return Err(Error::invalid(format!(
                    "activation_function `{other}` is not one captag runs (swish, gelu, relu)"
                )))
            }
        })
    }

    pub fn pad(&self) -> i64 {
        self.pad_token_id.unwrap_or(1)
    }

    pub fn eos(&self) -> i64 {
        self.eos_token_id.unwrap_or(2)
    }

    /// The first decoder token (`decoder_start_token_id`; Marian's is `<pad>`, M2M100's `</s>`).
    pub fn start(&self) -> i64 {
        self.decoder_start_token_id.unwrap_or(match self.arch() {
            Arch::Marian => self.pad(),
            Arch::M2m100 => self.eos(),
        })
    }

    /// Refuses a config captag cannot run, naming the file.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |why: String| Error::invalid(format!("{}: {why}", path.display()));
        if !matches!(self.model_type.as_str(), "marian" | "m2m_100") {
            return Err(bad(format!(
                "model_type `{}` is not a translation model captag reads (marian, m2m_100)",
                self.model_type
            )));
        }
        let positive = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("encoder_layers", self.encoder_layers),
            ("decoder_layers", self.decoder_layers),
            ("encoder_attention_heads", self.encoder_attention_heads),
            ("decoder_attention_heads", self.decoder_attention_heads),
            ("encoder_ffn_dim", self.encoder_ffn_dim),
            ("decoder_ffn_dim", self.decoder_ffn_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (name, x) in positive {
            if x <= 0 {
                return Err(bad(format!("{name} must be positive, got {x}")));
            }
        }
        for heads in [self.encoder_attention_heads, self.decoder_attention_heads] {
            if self.d_model % heads != 0 {
                return Err(bad(format!(
                    "d_model {} is not a multiple of {heads} heads",
                    self.d_model
                )));
            }
        }
        for (name, id) in [
            ("pad", self.pad()),
            ("eos", self.eos()),
            ("start", self.start()),
        ] {
            if !(0..self.vocab_size).contains(&id) {
                return Err(bad(format!(
                    "{name} token id {id} outside 0..{}",
                    self.vocab_size
                )));
            }
        }
        self.activation().map_err(|e| bad(e.to_string()))?;
        Ok(())
    }
}
