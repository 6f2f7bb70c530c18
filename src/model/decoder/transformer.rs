//! CNN + Transformer captioner (the seed projects' second pipeline): a pre-LayerNorm
//! transformer decoder (Vaswani et al. 2017; pre-LN as in GPT-2) with masked self-attention over
//! the words so far and cross-attention over a memory of the projected pooled vector followed by
//! the projected grid cells. Positions are learned or sinusoidal. Decoding keeps a key/value
//! cache per layer ([`DecoderCache`]): each step runs one query position, and cross-attention
//! keys and values of the memory are computed once per image. Attention and feed-forward are
//! the shared transformer blocks (`model::blocks`).
use tch::{nn, Kind, Tensor};

use super::Forward;
use crate::config::clip::Activation;
use crate::config::{Positions, TransformerConfig};
use crate::model::blocks::{
    layer_norm, sinusoidal, Attention, AttentionConfig, KvCache, LayerNorm, Mlp, MlpConfig,
};
use crate::model::features::ImageFeatures;

#[derive(Debug)]
struct Layer {
    ln1: LayerNorm,
    self_attn: Attention,
    ln2: LayerNorm,
    cross_attn: Attention,
    ln3: LayerNorm,
    ff: Mlp,
}

#[derive(Debug)]
pub struct Transformer {
    embed: nn::Embedding,
    /// `(max_len, d)`: a trained variable, or the sinusoidal table (not saved).
    pos: Tensor,
    mem_pooled: nn::Linear,
    mem_grid: nn::Linear,
    mem_norm: LayerNorm,
    layers: Vec<Layer>,
    ln_f: LayerNorm,
    out: nn::Linear,
    dropout: f64,
    max_len: i64,
}

/// Self-attention keys/values of the words so far `(R, h, t, dh)` per layer, and
/// cross-attention keys/values of the memory `(R, h, S, dh)` per layer; `t` = words read.
#[derive(Debug)]
pub struct DecoderCache {
    self_kv: KvCache,
    mem_kv: KvCache,
    t: i64,
}

impl DecoderCache {
    pub fn select(&self, rows: &Tensor) -> DecoderCache {
        DecoderCache {
            self_kv: self.self_kv.select(rows),
            mem_kv: self.mem_kv.select(rows),
            t: self.t,
        }
    }
}

impl Transformer {
    pub fn new(
        p: nn::Path,
        cfg: &TransformerConfig,
        vocab: i64,
        pooled_dim: i64,
        grid_dim: i64,
    ) -> Self {
        let d = cfg.d_model;
        let ln = |p: nn::Path| layer_norm(p, d, 1e-5);
        let pos = match cfg.positions {
            Positions::Learned => p.var(
                "pos",
                &[cfg.max_len, d],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            ),
            Positions::Sinusoidal => sinusoidal(cfg.max_len, d).to_device(p.device()),
        };
        let attn = AttentionConfig::new(d, cfg.heads).dropout(cfg.dropout);
        let ff = MlpConfig::new(d, cfg.ff_dim, Activation::Gelu).dropout(cfg.dropout);
        let layers = (0..cfg.layers)
            .map(|i| {
                let l = &p / "layers" / i;
                Layer {
                    ln1: ln(&l / "ln1"),
                    self_attn: Attention::new(&l / "self_attn", &attn.clone().causal()),
                    ln2: ln(&l / "ln2"),
                    cross_attn: Attention::new(&l / "cross_attn", &attn),
                    ln3: ln(&l / "ln3"),
                    ff: Mlp::new(&l / "ff", &ff),
                }
            })
            .collect();
        Transformer {
            embed: nn::embedding(
                &p / "embed",
                vocab,
                d,
                nn::EmbeddingConfig {
                    ws_init: nn::Init::Randn {
                        mean: 0.0,
                        stdev: 0.02,
                    },
                    ..Default::default()
                },
            ),
            pos,
            mem_pooled: nn::linear(&p / "mem_pooled", pooled_dim, d, Default::default()),
            mem_grid: nn::linear(&p / "mem_grid", grid_dim, d, Default::default()),
            mem_norm: ln(&p / "mem_norm"),
            layers,
            ln_f: ln(&p / "ln_f"),
            out: nn::linear(&p / "out", d, vocab, Default::default()),
            dropout: cfg.dropout,
            max_len: cfg.max_len,
        }
    }

    /// `(B, S, d)`: the pooled vector as the first memory token, then the grid cells.
    fn memory(&self, f: &ImageFeatures) -> Tensor {
        let pooled = f.pooled.apply(&self.mem_pooled).unsqueeze(1); // (B, 1, d)
        let mem = match &f.grid {
            Some(g) => Tensor::cat(&[pooled, g.apply(&self.mem_grid)], 1), // (B, 1+N, d)
            None => pooled,
        };
        mem.apply(&self.mem_norm)
    }

    // `x = x + ..` rather than `x += ..`: the in-place add would overwrite a tensor autograd
    // may still need.
    #[allow(clippy::assign_op_pattern)]
    pub fn forward_t(&self, f: &ImageFeatures, tokens: &Tensor, train: bool) -> Forward {
        let len = tokens.size()[1] - 1; // ≤ max_len, checked before training
        let mem = self.memory(f).dropout(self.dropout, train);
        let mut x = tokens.narrow(1, 0, len).apply(&self.embed) + self.pos.narrow(0, 0, len); // (B, T, d)
        x = x.dropout(self.dropout, train);
        for l in &self.layers {
            let (a, _) = l
                .self_attn
                .forward_t(&x.apply(&l.ln1), None, None, None, train);
            x = x + a.dropout(self.dropout, train);
            let (mk, mv) = l.cross_attn.keys_values(&mem); // (U, h, S, dh)
            let (mk, mv) = (f.expand(&mk), f.expand(&mv)); // (B, h, S, dh)
            let y = x.apply(&l.ln2);
            x = x + l
                .cross_attn
                .attend(&y, &mk, &mv, None, train)
                .dropout(self.dropout, train);
            x = &x
                + l.ff
                    .forward_t(&x.apply(&l.ln3), train)
                    .dropout(self.dropout, train);
        }
        Forward {
            hidden: x, // (B, T, d)
            penalty: None,
            attention: None,
        }
    }

    /// Final LayerNorm and output layer: `(.., d)` ⇒ `(.., V)`.
    pub fn project(&self, hidden: &Tensor) -> Tensor {
        hidden.apply(&self.ln_f).apply(&self.out)
    }

    pub fn start(&self, f: &ImageFeatures) -> DecoderCache {
        let mem = self.memory(f);
        DecoderCache {
            self_kv: KvCache::default(),
            mem_kv: KvCache {
                layers: self
                    .layers
                    .iter()
                    .map(|l| {
                        let (k, v) = l.cross_attn.keys_values(&mem); // (U, h, S, dh)
                        (f.expand(&k), f.expand(&v)) // (R, h, S, dh)
                    })
                    .collect(),
            },
            t: 0,
        }
    }

    #[allow(clippy::assign_op_pattern)]
    pub fn step(&self, tokens: &Tensor, cache: &DecoderCache) -> (Tensor, DecoderCache) {
        // Past the last position the table has, the last one is reused (decoding lengths are
        // validated against max_len; this only keeps a long --max-len from failing).
        let pos = self.pos.get(cache.t.min(self.max_len - 1));
        let mut x = (tokens.apply(&self.embed) + pos).unsqueeze(1); // (R, 1, d)
        let mut self_kv = Vec::with_capacity(self.layers.len());
        for (i, l) in self.layers.iter().enumerate() {
            let past = cache.self_kv.layers.get(i);
            let (a, kv) = l
                .self_attn
                .forward_t(&x.apply(&l.ln1), past, None, None, false);
            x = x + a; // (R, 1, d)
            self_kv.push(kv); // (R, h, t + 1, dh) each
            let (mk, mv) = &cache.mem_kv.layers[i];
            x = &x + l.cross_attn.attend(&x.apply(&l.ln2), mk, mv, None, false);
            x = &x + l.ff.forward_t(&x.apply(&l.ln3), false);
        }
        let logp = self.project(&x.squeeze_dim(1)).log_softmax(-1, Kind::Float); // (R, V)
        let next = DecoderCache {
            self_kv: KvCache { layers: self_kv },
            mem_kv: cache.mem_kv.share(),
            t: cache.t + 1,
        };
        (logp, next)
    }
}
