//! Decoder-only LMs of the Llama family on Hugging Face folders — Llama, SmolLM2 and Qwen2
//! (`LlamaForCausalLM`, `Qwen2ForCausalLM`) — under `transformers`' names, built from the shared
//! transformer blocks: `model.embed_tokens`, `model.layers.N.{input_layernorm,
//! self_attn.{q,k,v,o}_proj, post_attention_layernorm, mlp.{gate,up,down}_proj}`, `model.norm`,
//! `lm_head` (or tied to the embeddings). RMSNorm, rotary positions (rotate-half, the config's
//! `rope_theta`), grouped-query attention, SwiGLU; Qwen2 adds q/k/v biases. Decoding keeps the
//! blocks' key/value cache; prompts of different lengths run in one left-padded batch with
//! positions counting real tokens, as `transformers`' `generate` does. Parity with
//! `transformers` on tiny random folders is tested in `tests.rs` (docs/ARCHITECTURE.md,
//! "How to add a Hugging Face model family").
use std::path::Path;

use tch::{nn, Device, Kind, Tensor};

pub use crate::config::llama::LlamaConfig;
use crate::model::blocks::{
    attention::Layout, generate, Attention, AttentionConfig, KvCache, RmsNorm, Rotary, SwiGlu,
};
use crate::model::hf::{read_config, HfWeights};
use crate::model::precision::Precision;
use crate::{Error, Result};

#[derive(Debug)]
struct Layer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: SwiGlu,
}

/// The modules of a `LlamaForCausalLM` / `Qwen2ForCausalLM`, built under the root path with the
/// state-dict names.
#[derive(Debug)]
pub struct LlamaModel {
    pub config: LlamaConfig,
    embed_tokens: nn::Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Option<Tensor>,
    rotary: Rotary,
}

impl LlamaModel {
    pub fn new(p: nn::Path, cfg: &LlamaConfig) -> Self {
        let d = cfg.hidden_size;
        let m = &p / "model";
        let (qkv_bias, o_bias) = cfg.biases();
        let attn = AttentionConfig::new(d, cfg.num_attention_heads)
            .kv_heads(cfg.kv_heads())
            .head_dim(cfg.head_dim())
            .layout(Layout::Separate {
                q: "q_proj",
                k: "k_proj",
                v: "v_proj",
                out: "o_proj",
            })
            .bias(qkv_bias, o_bias)
            .causal();
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = &m / "layers" / i;
                Layer {
                    input_layernorm: RmsNorm::new(&l / "input_layernorm", d, cfg.rms_norm_eps),
                    self_attn: Attention::new(&l / "self_attn", &attn),
                    post_attention_layernorm: RmsNorm::new(
                        &l / "post_attention_layernorm",
                        d,
                        cfg.rms_norm_eps,
                    ),
                    mlp: SwiGlu::new(&l / "mlp", d, cfg.intermediate_size),
                }
            })
            .collect();
        let emb = nn::EmbeddingConfig {
            ws_init: nn::Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
            ..Default::default()
        };
        LlamaModel {
            config: cfg.clone(),
            embed_tokens: nn::embedding(&m / "embed_tokens", cfg.vocab_size, d, emb),
            layers,
            norm: RmsNorm::new(&m / "norm", d, cfg.rms_norm_eps),
            lm_head: (!cfg.tie_word_embeddings).then(|| {
                (&p / "lm_head").var("weight", &[cfg.vocab_size, d], nn::Init::Const(0.0))
            }),
            rotary: Rotary::new(cfg.head_dim(), cfg.rope_theta(), p.device()),
        }
    }

    /// Token embeddings `ids (B, T)` ⇒ `(B, T, D)`.
    pub fn embed(&self, ids: &Tensor) -> Tensor {
        ids.apply(&self.embed_tokens)
    }

    /// `embeds (B, T, D)` after `past` ⇒ the final hidden states `(B, T, D)` (after `model.norm`)
    /// and the cache extended by these `T` positions. `pad (B, past + T)`: true at real tokens;
    /// with it, positions count real tokens only (left padding).
    // `x = x + ..`: the in-place add would overwrite a tensor autograd may still need.
    #[allow(clippy::assign_op_pattern)]
    pub fn hidden_t(
        &self,
        embeds: &Tensor,
        past: Option<&KvCache>,
        pad: Option<&Tensor>,
        train: bool,
    ) -> Result<(Tensor, KvCache)> {
        let size = embeds.size();
        if size.len() != 3 || size[2] != self.config.hidden_size {
            return Err(Error::invalid(format!(
                "Llama input embeddings must be [B, T, {}], got {size:?}",
                self.config.hidden_size
            )));
        }
        let (b, t) = (size[0], size[1]);
        let p = past.map_or(0, KvCache::len);
        let positions = match pad {
            None => Tensor::arange_start(p, p + t, (Kind::Int64, embeds.device())), // (T,)
            Some(m) => {
                if m.size() != [b, p + t] {
                    return Err(Error::invalid(format!(
                        "Llama padding mask must be [B, past + T] = [{b}, {}], got {:?}",
                        p + t,
                        m.size()
                    )));
                }
                let at = (m.to_kind(Kind::Int64).cumsum(1, Kind::Int64) - 1).clamp_min(0);
                at.narrow(1, p, t) // (B, T)
            }
        };
        let rope = self.rotary.at(&positions, embeds.kind()); // computed once for every layer
        let mut x = embeds.shallow_clone();
        let mut layers = Vec::with_capacity(self.layers.len());
        for (i, l) in self.layers.iter().enumerate() {
            let past = past.and_then(|c| c.layers.get(i));
            let h = l.input_layernorm.forward(&x);
            let (a, kv) = l.self_attn.forward_t(&h, past, pad, Some(&rope), train);
            x = x + a; // (B, T, D)
            x = &x + l.mlp.forward(&l.post_attention_layernorm.forward(&x));
            layers.push(kv);
        }
        Ok((self.norm.forward(&x), KvCache { layers }))
    }

    /// Hidden states `(…, D)` ⇒ logits `(…, V)` (`lm_head`, or the tied embeddings).
    pub fn lm_head(&self, hidden: &Tensor) -> Tensor {
        hidden.matmul(
            &self
                .lm_head
                .as_ref()
                .unwrap_or(&self.embed_tokens.ws)
                .transpose(0, 1),
        )
    }

    fn check_ids(&self, ids: &Tensor) -> Result<()> {
        generate::check_ids(ids, self.config.vocab_size, "Llama")
    }

    /// `ids (B, T)` ⇒ logits `(B, T, V)` and the extended cache.
    pub fn forward_t(
        &self,
        ids: &Tensor,
        past: Option<&KvCache>,
        train: bool,
    ) -> Result<(Tensor, KvCache)> {
        self.check_ids(ids)?;
        let (h, cache) = self.hidden_t(&self.embed(ids), past, None, train)?;
        Ok((self.lm_head(&h), cache))
    }

    /// Greedy continuation of prompts of different lengths in one left-padded batch
    /// (`generate(do_sample=False)` with `padding_side="left"`): each prompt's `steps` new ids.
    pub fn greedy_batch(&self, prompts: &[Vec<i64>], steps: i64) -> Result<Vec<Vec<i64>>> {
        let (v, dev) = (self.config.vocab_size, self.embed_tokens.ws.device());
        generate::greedy_left_padded(prompts, steps, v, "Llama", dev, |ids, past, pad| {
            let (h, cache) = self.hidden_t(&self.embed(ids), past, Some(pad), false)?;
            Ok((self.lm_head(&h.select(1, -1)), cache))
        })
    }
}

/// A Llama-family LM loaded from a Hugging Face folder, with its variable store and the
/// precision its forward passes run in.
pub struct Llama {
    pub vs: nn::VarStore,
    pub model: LlamaModel,
    /// `--precision` of `llm generate/eval/train`, `caption/serve --llm`: fp32, or the base
    /// weights in bf16/fp16 and every forward pass under autocast ([`Llama::in_precision`]).
    pub precision: Precision,
}

impl Llama {
    /// Loads `dir` (`config.json`, `model.safetensors` or its shards) onto `device`.
    pub fn load(dir: &Path, device: Device) -> Result<Llama> {
        let (config, _) = read_config::<LlamaConfig>(dir, "Llama/Qwen2")?;
        config.validate(&dir.join("config.json"))?;
        let mut vs = nn::VarStore::new(device);
        let model = LlamaModel::new(vs.root(), &config);
        HfWeights::read(dir)?.load_into(&mut vs, |name| vec![name.to_string()])?;
        Ok(Llama {
            vs,
            model,
            precision: Precision::Fp32,
        })
    }

    /// Run in `p` from now on: the base weights (this store's variables: not a LoRA adapter's,
    /// which live in their own store and stay float32 with their optimizer state) are cast to
    /// its 16-bit type, halving their memory — a 7B model's 30 GB become 15 GB — and
    /// [`Llama::in_precision`] runs forward passes under autocast. Merge adapters into the
    /// weights before (merging adds in float32). The CUDA-only rule is the caller's
    /// ([`Precision::check`]); on the CPU it works, which is how it is tested.
    pub fn set_precision(&mut self, p: Precision) {
        self.vs.set_kind(p.half_kind().unwrap_or(Kind::Float));
        self.precision = p;
    }

    /// `f` under this model's precision (as it is in fp32).
    pub fn in_precision<T>(&self, f: impl FnOnce() -> T) -> T {
        self.precision.autocast(self.vs.device(), f)
    }
}

pub mod chat;
pub mod lora;

#[cfg(test)]
mod tests;
