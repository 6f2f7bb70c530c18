//! GPT-2 (`GPT2LMHeadModel`, Radford et al. 2019) on a Hugging Face folder (`gpt2` and its
//! larger sizes), under `transformers`' names, for the prefix captioner (ClipCap): the language
//! model reads a prefix of embeddings (an image mapped into its input space) followed by the
//! caption's tokens, and decodes incrementally with a key/value cache.
//!
//! What is reproduced from `transformers` (5.x): `wte` + `wpe`, pre-LN blocks `h.N` (`ln_1`,
//! `attn.c_attn` producing q|k|v, `attn.c_proj`, `ln_2`, `mlp.c_fc`, `mlp.c_proj`), `ln_f`,
//! and `lm_head` tied to `wte`. Its `Conv1D` layers store weights `[in, out]` (`y = x W + b`),
//! so the file's tensors are used as they are. Scores are scaled by `1/√d_head`
//! (`scale_attn_weights`) and, when the config asks, by `1/(layer + 1)`. The activation is
//! `gelu_new` (tanh approximation) unless the config names another. Keys load with or without
//! the `transformer.` prefix (`GPT2Model` vs `GPT2LMHeadModel` saves); the `attn.bias` /
//! `attn.masked_bias` causal-mask buffers of older files are ignored. Parity on a tiny random
//! model is tested in `tests.rs` (docs/ARCHITECTURE.md, "CLIP and GPT-2 on Hugging Face folders").
use std::path::Path;

use tch::{nn, Device, Kind, Tensor};

pub use crate::config::gpt2::Gpt2Config;
pub use crate::model::blocks::KvCache;
use crate::model::blocks::{
    generate, layer_norm, Attention, AttentionConfig, LayerNorm, Layout, Mlp, MlpConfig,
};
use crate::model::hf::{read_config, HfWeights};
use crate::{Error, Result};

#[derive(Debug)]
struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn new(p: nn::Path, cfg: &Gpt2Config, layer: i64) -> Self {
        let d = cfg.n_embd;
        let mut scale = 1.0;
        if cfg.scale_attn_weights {
            scale /= ((d / cfg.n_head) as f64).sqrt();
        }
        if cfg.scale_attn_by_inverse_layer_idx {
            scale /= (layer + 1) as f64;
        }
        let attn = AttentionConfig::new(d, cfg.n_head)
            .layout(Layout::FusedConv1D)
            .causal()
            .dropout(cfg.attn_pdrop)
            .scale(scale);
        let mlp = MlpConfig::new(d, cfg.inner(), cfg.activation_function).gpt2();
        Block {
            ln_1: layer_norm(&p / "ln_1", d, cfg.layer_norm_epsilon),
            attn: Attention::new(&p / "attn", &attn),
            ln_2: layer_norm(&p / "ln_2", d, cfg.layer_norm_epsilon),
            mlp: Mlp::new(&p / "mlp", &mlp),
        }
    }

    /// `x (B, T, D)` at positions `past..past + T` ⇒ `(B, T, D)` and this layer's keys/values
    /// for all `past + T` positions. `pad (B, past + T)`: true at real tokens.
    fn forward_t(
        &self,
        x: &Tensor,
        past: Option<&(Tensor, Tensor)>,
        pad: Option<&Tensor>,
        cfg: &Gpt2Config,
        train: bool,
    ) -> (Tensor, (Tensor, Tensor)) {
        let (a, kv) = self
            .attn
            .forward_t(&x.apply(&self.ln_1), past, pad, None, train);
        let x = x + a.dropout(cfg.resid_pdrop, train);
        let h = self.mlp.forward_t(&x.apply(&self.ln_2), train); // (B, T, D)
        (&x + h.dropout(cfg.resid_pdrop, train), kv)
    }
}

/// The modules of a `GPT2LMHeadModel`, built under `p` with the names of a `GPT2Model` save
/// (`wte`, `h.N.…`, `ln_f`; `lm_head` only when not tied).
#[derive(Debug)]
pub struct Gpt2Model {
    pub config: Gpt2Config,
    wte: nn::Embedding,
    wpe: nn::Embedding,
    h: Vec<Block>,
    ln_f: LayerNorm,
    lm_head: Option<Tensor>,
}

impl Gpt2Model {
    pub fn new(p: nn::Path, cfg: &Gpt2Config) -> Self {
        let d = cfg.n_embd;
        let emb = nn::EmbeddingConfig {
            ws_init: nn::Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
            ..Default::default()
        };
        Gpt2Model {
            config: cfg.clone(),
            wte: nn::embedding(&p / "wte", cfg.vocab_size, d, emb),
            wpe: nn::embedding(&p / "wpe", cfg.n_positions, d, emb),
            h: (0..cfg.n_layer)
                .map(|i| Block::new(&p / "h" / i, cfg, i))
                .collect(),
            ln_f: layer_norm(&p / "ln_f", d, cfg.layer_norm_epsilon),
            lm_head: (!cfg.tie_word_embeddings).then(|| {
                (&p / "lm_head").var("weight", &[cfg.vocab_size, d], nn::Init::Const(0.0))
            }),
        }
    }

    /// Token embeddings `ids (B, T)` ⇒ `(B, T, D)` (`wte` only; positions are added by the
    /// forward pass, so a prefix of other embeddings can be concatenated in front).
    pub fn embed(&self, ids: &Tensor) -> Tensor {
        ids.apply(&self.wte)
    }

    /// The `inputs_embeds` path: `embeds (B, T, D)` at positions `past.len()..` ⇒ the final
    /// hidden states `(B, T, D)` (after `ln_f`) and the cache extended by these `T` positions.
    pub fn hidden_t(
        &self,
        embeds: &Tensor,
        past: Option<&KvCache>,
        train: bool,
    ) -> Result<(Tensor, KvCache)> {
        self.hidden_padded_t(embeds, past, None, train)
    }

    /// [`Gpt2Model::hidden_t`] of a padded batch: `pad (B, past + T)` is true at real tokens
    /// (pads anywhere, left padding for generation). Positions count real tokens only, as
    /// `transformers`' `generate` makes them (`cumsum(attention_mask) − 1`), so a left-padded
    /// row gets the same numbers as the row alone.
    pub fn hidden_padded_t(
        &self,
        embeds: &Tensor,
        past: Option<&KvCache>,
        pad: Option<&Tensor>,
        train: bool,
    ) -> Result<(Tensor, KvCache)> {
        let (_, t, d) = embeds.size3().map_err(|_| {
            Error::invalid(format!(
                "GPT-2 input embeddings must be [B, T, D], got {:?}",
                embeds.size()
            ))
        })?;
        let p = past.map_or(0, KvCache::len);
        if d != self.config.n_embd {
            return Err(Error::invalid(format!(
                "GPT-2 input embeddings have width {d}, the model's n_embd is {}",
                self.config.n_embd
            )));
        }
        if p + t > self.config.n_positions {
            return Err(Error::invalid(format!(
                "GPT-2 sequence of {} positions is longer than n_positions {}",
                p + t,
                self.config.n_positions
            )));
        }
        if let Some(m) = pad {
            if m.size() != [embeds.size()[0], p + t] {
                return Err(Error::invalid(format!(
                    "GPT-2 padding mask must be [B, past + T] = [{}, {}], got {:?}",
                    embeds.size()[0],
                    p + t,
                    m.size()
                )));
            }
        }
        let pos = match pad {
            None => self.wpe.ws.narrow(0, p, t), // (T, D)
            Some(m) => {
                let at = (m.to_kind(Kind::Int64).cumsum(1, Kind::Int64) - 1).clamp_min(0); // (B, S)
                self.wpe
                    .ws
                    .index_select(0, &at.narrow(1, p, t).reshape([-1]))
                    .view([-1, t, d])
                // (B, T, D)
            }
        };
        let mut x = (embeds + pos).dropout(self.config.embd_pdrop, train); // (B, T, D)
        let mut layers = Vec::with_capacity(self.h.len());
        for (i, block) in self.h.iter().enumerate() {
            let past = past.and_then(|c| c.layers.get(i));
            let (y, kv) = block.forward_t(&x, past, pad, &self.config, train);
            x = y;
            layers.push(kv);
        }
        Ok((x.apply(&self.ln_f), KvCache { layers }))
    }

    /// Greedy continuation of prompts of different lengths in one batch: left-padded to the
    /// longest, one forward pass for all prompts, then one cached step per token for all rows
    /// (`generate(do_sample=False)` with `padding_side="left"`). Returns each prompt's `steps`
    /// new ids.
    pub fn greedy_batch(&self, prompts: &[Vec<i64>], steps: i64) -> Result<Vec<Vec<i64>>> {
        let (v, dev) = (self.config.vocab_size, self.wte.ws.device());
        generate::greedy_left_padded(prompts, steps, v, "GPT-2", dev, |ids, past, pad| {
            let (h, cache) = self.hidden_padded_t(&self.embed(ids), past, Some(pad), false)?;
            Ok((self.lm_head(&h.select(1, -1)), cache))
        })
    }

    /// Hidden states `(…, D)` ⇒ logits `(…, V)` through the tied (or separate) head.
    pub fn lm_head(&self, hidden: &Tensor) -> Tensor {
        hidden.matmul(
            &self
                .lm_head
                .as_ref()
                .unwrap_or(&self.wte.ws)
                .transpose(0, 1),
        )
    }

    /// `embeds (B, T, D)` ⇒ logits `(B, T, V)` and the extended cache.
    pub fn forward_embeds_t(
        &self,
        embeds: &Tensor,
        past: Option<&KvCache>,
        train: bool,
    ) -> Result<(Tensor, KvCache)> {
        let (h, cache) = self.hidden_t(embeds, past, train)?;
        Ok((self.lm_head(&h), cache))
    }

    /// `ids (B, T)` ⇒ logits `(B, T, V)` and the extended cache.
    pub fn forward_t(
        &self,
        ids: &Tensor,
        past: Option<&KvCache>,
        train: bool,
    ) -> Result<(Tensor, KvCache)> {
        self.check_ids(ids)?;
        self.forward_embeds_t(&self.embed(ids), past, train)
    }

    fn check_ids(&self, ids: &Tensor) -> Result<()> {
        generate::check_ids(ids, self.config.vocab_size, "GPT-2")
    }

    /// Greedy continuation of `embeds (B, T, D)` (a prefix, tokens, or both) by `steps` tokens,
    /// with the cache: `(B, steps)` int64 ids. Nothing stops at end-of-text here; the caller
    /// cuts the ids.
    pub fn greedy_embeds(&self, embeds: &Tensor, steps: i64) -> Result<Tensor> {
        let mut out = Vec::with_capacity(steps as usize);
        if steps <= 0 {
            return Ok(Tensor::zeros(
                [embeds.size()[0], 0],
                (Kind::Int64, embeds.device()),
            ));
        }
        let (logits, mut cache) = tch::no_grad(|| self.forward_embeds_t(embeds, None, false))?;
        let mut next = logits.select(1, -1).argmax(-1, true); // (B, 1)
        for i in 0..steps {
            out.push(next.shallow_clone());
            if i + 1 == steps {
                break;
            }
            let (logits, c) = tch::no_grad(|| self.forward_t(&next, Some(&cache), false))?;
            cache = c;
            next = logits.select(1, -1).argmax(-1, true); // (B, 1)
        }
        Ok(Tensor::cat(&out, 1)) // (B, steps)
    }

    /// [`Gpt2Model::greedy_embeds`] of token ids: `ids (B, T)` followed by `steps` new ids,
    /// `(B, T + steps)` like `generate(do_sample=False)`.
    pub fn greedy(&self, ids: &Tensor, steps: i64) -> Result<Tensor> {
        self.check_ids(ids)?;
        let new = self.greedy_embeds(&self.embed(ids), steps)?;
        Ok(Tensor::cat(&[ids.to_kind(Kind::Int64), new], 1))
    }
}

/// A GPT-2 loaded from a Hugging Face folder, with its variable store (trainable: the prefix
/// captioner freezes it or fine-tunes it).
pub struct Gpt2 {
    pub vs: nn::VarStore,
    pub model: Gpt2Model,
}

impl Gpt2 {
    /// Loads `dir` (`config.json`, `model.safetensors`) onto `device`.
    pub fn load(dir: &Path, device: Device) -> Result<Gpt2> {
        let (config, _) = read_config::<Gpt2Config>(dir, "GPT-2")?;
        config.validate(&dir.join("config.json"))?;
        let mut vs = nn::VarStore::new(device);
        let model = Gpt2Model::new(vs.root(), &config);
        HfWeights::read(dir)?.load_into(&mut vs, |name| {
            if name.starts_with("lm_head.") {
                vec![name.to_string()]
            } else {
                vec![name.to_string(), format!("transformer.{name}")]
            }
        })?;
        Ok(Gpt2 { vs, model })
    }
}

#[cfg(test)]
mod tests;
