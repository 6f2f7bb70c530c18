//! ClipCap prefix captioning (Mokady et al. 2021, "ClipCap: CLIP Prefix for Image
//! Captioning"): the pooled image vector is mapped to `prefix_len` embeddings in a GPT-2's input
//! space, and the language model continues that prefix with the caption. The LM is captag's
//! GPT-2 module (`model::gpt2`, the `inputs_embeds` path), so decoding runs on its key/value
//! cache and every `step` reads one token.
//!
//! By default this is the **word-level variant**: the LM is a GPT-2-architecture model over the run's word
//! vocabulary (`<pad> <start> <end> <unk>` + words), trained from scratch, not `gpt2`'s BPE
//! vocabulary or weights. `<start>` is the first token after the prefix and every training
//! caption ends in `<end>`, so decoding stops (the original code trained without an end token
//! and cut captions at a fixed length). With `lm: frozen` only the mapper trains
//! (`DecoderConfig::frozen_prefix`, applied by `Captioner::new`).
//!
//! Mappers: `mlp` is `Linear → Tanh → Linear` to `prefix_len × n_embd` (hidden width half the
//! output, as in the paper's code); `transformer` projects the image vector to `clip_len` tokens,
//! appends a learned constant prefix, runs `mapper_layers` pre-LN encoder layers and keeps the
//! prefix positions. See docs/ARCHITECTURE.md, "The decoder interface".
//!
//! **Pretrained GPT-2** (`pretrained: Some`, `--lm-weights`): the LM is built from the folder's
//! `config.json` (recorded in the run's config) and starts from its weights
//! ([`load_pretrained_lm`]); the run's ids are its BPE ids shifted past the four specials, and a
//! fixed table maps them to the LM's ids and logits (`text::tokens::bpe_lm_tables`;
//! docs/ARCHITECTURE.md, "Tokens behind the decoder interface").
use std::path::Path;

use tch::{nn, Kind, Tensor};

use super::Forward;
use crate::config::clip::Activation;
use crate::config::{ClipCapConfig, MapperKind};
use crate::model::blocks::{
    layer_norm, Attention, AttentionConfig, KvCache, LayerNorm, Mlp, MlpConfig,
};
use crate::model::features::ImageFeatures;
use crate::model::gpt2::{Gpt2Config, Gpt2Model};
use crate::model::hf::HfWeights;
use crate::text::tokens::bpe_lm_tables;
use crate::text::vocab::{END, START};
use crate::Result;

#[derive(Debug)]
struct MapperLayer {
    ln1: LayerNorm,
    attn: Attention,
    ln2: LayerNorm,
    ff: Mlp,
}

#[derive(Debug)]
enum Mapper {
    Mlp {
        fc1: nn::Linear,
        fc2: nn::Linear,
    },
    Transformer {
        proj: nn::Linear,
        /// `(prefix_len, d)` learned constant.
        prefix: Tensor,
        layers: Vec<MapperLayer>,
        clip_len: i64,
    },
}

#[derive(Debug)]
pub struct ClipCap {
    /// LayerNorm over the image vector: encoders' pooled vectors differ widely in scale and
    /// share large common components (SqueezeNet's: mean 2.0, std 2.7 per dimension), which
    /// would saturate the MLP's tanh. Not in the paper (CLIP embeddings have a fixed scale).
    in_norm: LayerNorm,
    mapper: Mapper,
    lm: Gpt2Model,
    /// A pretrained LM's view of the run's BPE ids.
    bpe: Option<BpeMap>,
    /// Ids the decoder scores (the run's vocabulary).
    vocab: i64,
    prefix_len: i64,
    d: i64,
    dropout: f64,
}

/// Per run id `(V,)`: the LM token it is read as, and what is added to the LM logit it is scored
/// by (0, or −1e9 for ids never predicted: finite, so distillation's KL stays finite).
#[derive(Debug)]
struct BpeMap {
    read: Tensor,
    mask: Tensor,
}

/// Copies a Hugging Face GPT-2 folder's weights into ClipCap's LM variables `decoder.lm.*` of
/// `vs` (keys with or without `transformer.`; `lm_head` tied to `wte` unless the config unties
/// it). The mapper's variables are left as they are.
pub fn load_pretrained_lm(vs: &mut nn::VarStore, dir: &Path) -> Result<()> {
    HfWeights::read(dir)?.load_into(vs, |var| match var.strip_prefix("decoder.lm.") {
        Some(name) if name.starts_with("lm_head.") => vec![name.to_string()],
        Some(name) => vec![name.to_string(), format!("transformer.{name}")],
        None => vec![],
    })
}

impl ClipCap {
    pub fn new(p: nn::Path, cfg: &ClipCapConfig, vocab: i64) -> Self {
        let (lm_cfg, bpe) = match &cfg.pretrained {
            Some(pre) => {
                let (read, allowed) = bpe_lm_tables(pre.config.vocab_size, pre.eot_id);
                let mask: Vec<f32> = allowed
                    .iter()
                    .map(|&a| if a { 0.0 } else { -1e9 })
                    .collect();
                let map = BpeMap {
                    read: Tensor::from_slice(&read).to_device(p.device()),
                    mask: Tensor::from_slice(&mask).to_device(p.device()),
                };
                (pre.config.clone(), Some(map))
            }
            None => (
                Gpt2Config {
                    vocab_size: vocab,
                    n_positions: cfg.prefix_len + cfg.max_len,
                    n_embd: cfg.gpt2.n_embd,
                    n_layer: cfg.gpt2.n_layer,
                    n_head: cfg.gpt2.n_head,
                    embd_pdrop: cfg.gpt2.dropout,
                    attn_pdrop: cfg.gpt2.dropout,
                    resid_pdrop: cfg.gpt2.dropout,
                    bos_token_id: Some(START),
                    eos_token_id: Some(END),
                    ..Gpt2Config::default()
                },
                None,
            ),
        };
        let d = lm_cfg.n_embd;
        let vocab = bpe.as_ref().map_or(vocab, |m| m.read.size()[0]);
        let m = &p / "mapper";
        let mapper = match cfg.mapper {
            MapperKind::Mlp => {
                let out = cfg.prefix_len * d;
                Mapper::Mlp {
                    fc1: nn::linear(&m / "fc1", cfg.feature_dim, out / 2, Default::default()),
                    fc2: nn::linear(&m / "fc2", out / 2, out, Default::default()),
                }
            }
            MapperKind::Transformer => {
                let ln = |p: nn::Path| layer_norm(p, d, 1e-5);
                let attn = AttentionConfig::new(d, lm_cfg.n_head).dropout(cfg.gpt2.dropout);
                let ff = MlpConfig::new(d, 2 * d, Activation::Gelu).dropout(cfg.gpt2.dropout);
                Mapper::Transformer {
                    proj: nn::linear(
                        &m / "proj",
                        cfg.feature_dim,
                        cfg.clip_len * d,
                        Default::default(),
                    ),
                    prefix: m.var(
                        "prefix",
                        &[cfg.prefix_len, d],
                        nn::Init::Randn {
                            mean: 0.0,
                            stdev: 1.0,
                        },
                    ),
                    layers: (0..cfg.mapper_layers)
                        .map(|i| {
                            let l = &m / "layers" / i;
                            MapperLayer {
                                ln1: ln(&l / "ln1"),
                                attn: Attention::new(&l / "attn", &attn),
                                ln2: ln(&l / "ln2"),
                                ff: Mlp::new(&l / "ff", &ff),
                            }
                        })
                        .collect(),
                    clip_len: cfg.clip_len,
                }
            }
        };
        ClipCap {
            in_norm: layer_norm(&m / "in_norm", cfg.feature_dim, 1e-5),
            mapper,
            lm: Gpt2Model::new(&p / "lm", &lm_cfg),
            bpe,
            vocab,
            prefix_len: cfg.prefix_len,
            d,
            dropout: cfg.gpt2.dropout,
        }
    }

    /// The prefix of every row `(B, P, d)`, computed once per image and expanded to rows.
    // `x = x + ..`: the in-place add would overwrite a tensor autograd may still need.
    #[allow(clippy::assign_op_pattern)]
    fn prefix(&self, f: &ImageFeatures, train: bool) -> Tensor {
        let u = f.pooled.size()[0];
        let pooled = f.pooled.apply(&self.in_norm); // (U, D)
        let per_image = match &self.mapper {
            Mapper::Mlp { fc1, fc2 } => {
                pooled
                    .apply(fc1)
                    .tanh()
                    .apply(fc2)
                    .view([u, self.prefix_len, self.d])
            } // (U, P, d)
            Mapper::Transformer {
                proj,
                prefix,
                layers,
                clip_len,
            } => {
                let clip = pooled.apply(proj).view([u, *clip_len, self.d]); // (U, C, d)
                let constant = prefix
                    .unsqueeze(0)
                    .expand([u, self.prefix_len, self.d], true);
                let mut x = Tensor::cat(&[clip, constant], 1); // (U, C + P, d)
                for l in layers {
                    let (a, _) = l.attn.forward_t(&x.apply(&l.ln1), None, None, None, train);
                    x = x + a; // (U, C + P, d)
                    x = &x + l.ff.forward_t(&x.apply(&l.ln2), train);
                }
                x.narrow(1, *clip_len, self.prefix_len) // (U, P, d)
            }
        };
        f.expand(&per_image) // (B, P, d)
    }

    /// Teacher forcing on `tokens (B, L)`: the LM reads `[prefix; <start> w..]` and the states
    /// after the prefix `(B, L-1, d)` predict `tokens[:, 1:]`.
    pub fn forward_t(&self, f: &ImageFeatures, tokens: &Tensor, train: bool) -> Forward {
        // Lengths are checked before training (`train::run`: max words + 2 ≤ max_len), so the
        // sequence fits the LM's `prefix_len + max_len` positions.
        let len = tokens.size()[1] - 1;
        let words = self.embed(&tokens.narrow(1, 0, len)); // (B, T, d)
        let x = Tensor::cat(&[self.prefix(f, train), words], 1); // (B, P + T, d)
        let (h, _) = self
            .lm
            .hidden_t(&x, None, train)
            .expect("clipcap: caption longer than the LM's positions (max_len)");
        Forward {
            hidden: h.narrow(1, self.prefix_len, len), // (B, T, d)
            penalty: None,
            attention: None,
        }
    }

    /// Run ids `(B, T)` ⇒ the LM's input embeddings `(B, T, d)`.
    fn embed(&self, ids: &Tensor) -> Tensor {
        match &self.bpe {
            Some(m) => self
                .lm
                .embed(&m.read.index_select(0, &ids.reshape([-1])).view_as(ids)),
            None => self.lm.embed(ids),
        }
    }

    /// The tied LM head: `(.., d)` ⇒ `(.., V)` (the states are already `ln_f`-normalised); a
    /// pretrained LM's logits `(.., V_lm)` are gathered into the run's ids.
    pub fn project(&self, hidden: &Tensor) -> Tensor {
        let z = self.lm.lm_head(hidden);
        match &self.bpe {
            Some(m) => z.index_select(-1, &m.read) + &m.mask, // (.., V)
            None => z,
        }
    }

    /// The LM (tests compare it with `Gpt2Model` loaded from the same folder).
    pub fn lm(&self) -> &Gpt2Model {
        &self.lm
    }

    /// The prefix run through the LM: its cache, before `<start>` is read.
    pub fn start(&self, f: &ImageFeatures) -> KvCache {
        let (_, cache) = self
            .lm
            .hidden_t(&self.prefix(f, false), None, false)
            .expect("clipcap: prefix longer than the LM's positions");
        cache
    }

    /// One token per row `(R,)` ⇒ log-probabilities `(R, V)` and the cache one longer. Past the
    /// LM's last position only `<end>` is possible (a `--max-len` beyond the model's `max_len`
    /// ends the caption there).
    pub fn step(&self, tokens: &Tensor, cache: &KvCache) -> (Tensor, KvCache) {
        let x = self.embed(&tokens.unsqueeze(1)); // (R, 1, d)
        match self.lm.hidden_t(&x, Some(cache), false) {
            Ok((h, next)) => {
                let logp = self.project(&h.squeeze_dim(1)).log_softmax(-1, Kind::Float); // (R, V)
                (logp, next)
            }
            Err(_) => {
                let r = tokens.size()[0];
                let v = self.vocab;
                let logp = Tensor::full([r, v], f64::NEG_INFINITY, (Kind::Float, x.device()));
                let _ = logp.narrow(1, END, 1).fill_(0.0);
                let rows = Tensor::arange(r, (Kind::Int64, x.device()));
                (logp, cache.select(&rows))
            }
        }
    }

    /// Dropout of the LM (for the hashtag head the decoder's dropout sets).
    pub fn dropout(&self) -> f64 {
        self.dropout
    }
}
