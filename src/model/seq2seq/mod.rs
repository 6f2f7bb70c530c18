//! Encoder–decoder translation models from Hugging Face folders on the shared blocks
//! (docs/translation.md): Marian (`MarianMTModel`, Helsinki-NLP/opus-mt-*: post-LayerNorm
//! layers, sinusoidal positions in sin | cos halves, SiLU) and M2M100/NLLB
//! (`M2M100ForConditionalGeneration`: pre-LayerNorm layers with a final norm per stack,
//! fairseq positions offset by `pad + 1`), embeddings scaled by √d_model, tied or separate
//! heads, Marian's `final_logits_bias`. The decoder runs one token at a time on a key/value
//! cache, with the memory's cross-attention keys/values computed once per batch; beam search
//! and greedy decoding are `transformers`' `generate` ([`crate::model::decoding::hf`]).
pub mod config;
pub mod translator;

use std::path::Path;

use tch::{nn, Device, Kind, Tensor};

use crate::model::blocks::{
    layer_norm, Attention, AttentionConfig, KvCache, LayerNorm, Mlp, MlpConfig,
};
use crate::model::hf::{read_config, HfWeights};
use crate::{Error, Result};
pub use config::{Arch, Seq2SeqConfig};
pub use translator::Translator;

const LN_EPS: f64 = 1e-5;

#[derive(Debug)]
struct Layer {
    self_attn: Attention,
    self_attn_layer_norm: LayerNorm,
    /// Decoder layers only.
    cross: Option<(Attention, LayerNorm)>,
    mlp: Mlp,
    final_layer_norm: LayerNorm,
}

impl Layer {
    fn new(
        p: nn::Path,
        d: i64,
        heads: i64,
        ffn: i64,
        act: crate::model::blocks::mlp::Activation,
        decoder: bool,
    ) -> Self {
        let attn = AttentionConfig::new(d, heads);
        let self_cfg = if decoder {
            attn.clone().causal()
        } else {
            attn.clone()
        };
        Layer {
            self_attn: Attention::new(&p / "self_attn", &self_cfg),
            self_attn_layer_norm: layer_norm(&p / "self_attn_layer_norm", d, LN_EPS),
            cross: decoder.then(|| {
                (
                    Attention::new(&p / "encoder_attn", &attn),
                    layer_norm(&p / "encoder_attn_layer_norm", d, LN_EPS),
                )
            }),
            mlp: Mlp::new(p.clone(), &MlpConfig::new(d, ffn, act)),
            final_layer_norm: layer_norm(&p / "final_layer_norm", d, LN_EPS),
        }
    }

    /// One layer on `x (B, T, d)`: self-attention after `past` (`keep (B, S)` masks the
    /// encoder's padding), cross-attention to `memory` keys/values, feed-forward; post- or
    /// pre-norm. Returns `(B, T, d)` and the self-attention's new cache entry.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &Tensor,
        arch: Arch,
        past: Option<&(Tensor, Tensor)>,
        keep: Option<&Tensor>,
        memory: Option<(&(Tensor, Tensor), &Tensor)>,
    ) -> (Tensor, (Tensor, Tensor)) {
        let post = arch == Arch::Marian;
        let norm = |n: &LayerNorm, h: &Tensor| if post { h.shallow_clone() } else { h.apply(n) };
        let after = |n: &LayerNorm, h: Tensor| if post { h.apply(n) } else { h };
        let (a, kv) = self.self_attn.forward_t(
            &norm(&self.self_attn_layer_norm, x),
            past,
            keep,
            None,
            false,
        );
        let mut h = after(&self.self_attn_layer_norm, x + a); // (B, T, d)
        if let (Some((attn, ln)), Some(((k, v), mem_keep))) = (&self.cross, memory) {
            let c = attn.attend(&norm(ln, &h), k, v, Some(mem_keep), false);
            h = after(ln, &h + c);
        }
        let f = self.mlp.forward_t(&norm(&self.final_layer_norm, &h), false);
        (after(&self.final_layer_norm, &h + f), kv)
    }
}

/// A Marian or M2M100/NLLB encoder–decoder.
#[derive(Debug)]
pub struct Seq2Seq {
    pub config: Seq2SeqConfig,
    enc_embed: Tensor,
    dec_embed: Tensor,
    lm_head: Tensor,
    final_logits_bias: Option<Tensor>,
    encoder: Vec<Layer>,
    decoder: Vec<Layer>,
    /// M2M100's `model.encoder.layer_norm` and `model.decoder.layer_norm`.
    final_norms: Option<(LayerNorm, LayerNorm)>,
    /// `(positions, d)`: Marian's table, or M2M100's (row `pad` zero).
    positions: Tensor,
    scale: f64,
}

/// The decoder's state for `R` rows: the self-attention cache, and the memory's
/// cross-attention keys/values per layer with its padding mask.
pub struct DecoderState {
    pub cache: KvCache,
    cross: Vec<(Tensor, Tensor)>,
    mem_keep: Tensor,
}

impl DecoderState {
    /// Rows `rows (R',)` of the state (beam search reorders and drops hypotheses).
    pub fn select(&self, rows: &Tensor, cross_too: bool) -> DecoderState {
        DecoderState {
            cache: self.cache.select(rows),
            cross: if cross_too {
                self.cross
                    .iter()
                    .map(|(k, v)| (k.index_select(0, rows), v.index_select(0, rows)))
                    .collect()
            } else {
                self.cross
                    .iter()
                    .map(|(k, v)| (k.shallow_clone(), v.shallow_clone()))
                    .collect()
            },
            mem_keep: if cross_too {
                self.mem_keep.index_select(0, rows)
            } else {
                self.mem_keep.shallow_clone()
            },
        }
    }
}

/// Marian's `MarianSinusoidalPositionalEmbedding`: `sin` in the first half, `cos` in the
/// second, angle `pos / 10000^(2j/d)`, computed in double precision as numpy does.
pub fn marian_positions(n: i64, d: i64) -> Tensor {
    let half = (d + 1) / 2;
    let pos = Tensor::arange(n, (Kind::Double, Device::Cpu)).unsqueeze(1); // (n, 1)
    let j = Tensor::arange(half, (Kind::Double, Device::Cpu)); // (half,)
    let inv = (j * (-2.0 * 10000f64.ln() / d as f64)).exp().unsqueeze(0); // (1, half)
    let angle = pos * inv; // (n, half)
    let cos = angle.cos().narrow(1, 0, d / 2);
    Tensor::cat(&[angle.sin(), cos], 1).to_kind(Kind::Float) // (n, d)
}

/// M2M100's `get_embedding` (float32, frequencies `10000^(−j/(d/2 − 1))`), row `pad` zero.
pub fn m2m100_positions(n: i64, d: i64, pad: i64) -> Tensor {
    let half = d / 2;
    let step = 10000f64.ln() / (half - 1).max(1) as f64;
    let freq = (Tensor::arange(half, (Kind::Float, Device::Cpu)) * -step).exp(); // (half,)
    let angle = Tensor::arange(n, (Kind::Float, Device::Cpu)).unsqueeze(1) * freq.unsqueeze(0);
    let mut t = Tensor::cat(&[angle.sin(), angle.cos()], 1); // (n, 2·half)
    if d % 2 == 1 {
        t = Tensor::cat(&[t, Tensor::zeros([n, 1], (Kind::Float, Device::Cpu))], 1);
    }
    if (0..n).contains(&pad) {
        let _ = t.get(pad).zero_();
    }
    t
}

impl Seq2Seq {
    fn new(p: &nn::Path, cfg: &Seq2SeqConfig, separate: [bool; 3]) -> Result<Self> {
        let (d, v) = (cfg.d_model, cfg.vocab_size);
        let act = cfg.activation()?;
        let m = p / "model";
        let init = nn::Init::Const(0.0);
        let shared = (&m / "shared").var("weight", &[v, d], init);
        let [sep_enc, sep_dec, sep_head] = separate;
        let enc_embed = if sep_enc {
            (&m / "encoder" / "embed_tokens").var("weight", &[v, d], init)
        } else {
            shared.shallow_clone()
        };
        let dec_embed = if sep_dec {
            (&m / "decoder" / "embed_tokens").var("weight", &[v, d], init)
        } else {
            shared.shallow_clone()
        };
        let lm_head = if sep_head {
            (p / "lm_head").var("weight", &[v, d], init)
        } else {
            dec_embed.shallow_clone()
        };
        let arch = cfg.arch();
        let final_logits_bias =
            (arch == Arch::Marian).then(|| p.var("final_logits_bias", &[1, v], init));
        let stack = |name: &str, n: i64, heads: i64, ffn: i64, dec: bool| -> Vec<Layer> {
            (0..n)
                .map(|i| Layer::new(&m / name / "layers" / i, d, heads, ffn, act, dec))
                .collect()
        };
        let encoder = stack(
            "encoder",
            cfg.encoder_layers,
            cfg.encoder_attention_heads,
            cfg.encoder_ffn_dim,
            false,
        );
        let decoder = stack(
            "decoder",
            cfg.decoder_layers,
            cfg.decoder_attention_heads,
            cfg.decoder_ffn_dim,
            true,
        );
        let final_norms = (arch == Arch::M2m100).then(|| {
            (
                layer_norm(&m / "encoder" / "layer_norm", d, LN_EPS),
                layer_norm(&m / "decoder" / "layer_norm", d, LN_EPS),
            )
        });
        let n = cfg.max_position_embeddings;
        let positions = match arch {
            Arch::Marian => marian_positions(n, d),
            Arch::M2m100 => m2m100_positions(n + 2, d, cfg.pad()),
        }
        .to_device(p.device());
        Ok(Seq2Seq {
            config: cfg.clone(),
            enc_embed,
            dec_embed,
            lm_head,
            final_logits_bias,
            encoder,
            decoder,
            final_norms,
            positions,
            scale: if cfg.scale_embedding {
                (d as f64).sqrt()
            } else {
                1.0
            },
        })
    }

    /// The position rows of `ids (B, T)` after `past` positions: Marian `past..`; M2M100
    /// `pad + 1 + past + i` for real tokens and `pad` (a zero row) for padding.
    fn positions_of(&self, ids: &Tensor, past: i64) -> Result<Tensor> {
        let t = ids.size()[1];
        let pos = match self.config.arch() {
            Arch::Marian => Tensor::arange_start(past, past + t, (Kind::Int64, ids.device()))
                .unsqueeze(0)
                .expand([ids.size()[0], t], false),
            Arch::M2m100 => {
                let pad = self.config.pad();
                let real = ids.ne(pad).to_kind(Kind::Int64); // (B, T)
                (real.cumsum(1, Kind::Int64) + past) * &real + pad
            }
        };
        let max = pos.max().int64_value(&[]);
        if max >= self.positions.size()[0] {
            return Err(Error::invalid(format!(
                "a sequence of {} tokens is longer than the model's {} positions",
                past + t,
                self.config.max_position_embeddings
            )));
        }
        Ok(self
            .positions
            .index_select(0, &pos.flatten(0, 1))
            .view([ids.size()[0], t, -1]))
    }

    fn embed(&self, table: &Tensor, ids: &Tensor, past: i64) -> Result<Tensor> {
        let (b, t) = (ids.size()[0], ids.size()[1]);
        let e = table.index_select(0, &ids.flatten(0, 1)).view([b, t, -1]) * self.scale; // (B, T, d)
        Ok(e + self.positions_of(ids, past)?)
    }

    fn check(&self, ids: &Tensor) -> Result<()> {
        crate::model::blocks::generate::check_ids(ids, self.config.vocab_size, "translation model")
    }

    /// Encoder states of `ids (B, S)` with `keep (B, S)` true at real tokens: `(B, S, d)`.
    pub fn encode(&self, ids: &Tensor, keep: &Tensor) -> Result<Tensor> {
        self.check(ids)?;
        let arch = self.config.arch();
        let mut x = self.embed(&self.enc_embed, ids, 0)?;
        for l in &self.encoder {
            x = l.forward(&x, arch, None, Some(keep), None).0;
        }
        Ok(match &self.final_norms {
            Some((enc, _)) => x.apply(enc),
            None => x,
        })
    }

    /// The decoder's state for the memory `(B, S, d)` with its padding `keep (B, S)`.
    pub fn start(&self, memory: &Tensor, keep: &Tensor) -> DecoderState {
        let cross = self
            .decoder
            .iter()
            .filter_map(|l| l.cross.as_ref().map(|(a, _)| a.keys_values(memory)))
            .collect();
        DecoderState {
            cache: KvCache::default(),
            cross,
            mem_keep: keep.to_kind(Kind::Bool),
        }
    }

    /// Decoder tokens `ids (R, T)` after the state's cache ⇒ logits `(R, T, V)`; the cache
    /// grows by `T`.
    pub fn decode(&self, ids: &Tensor, state: &mut DecoderState) -> Result<Tensor> {
        self.check(ids)?;
        let arch = self.config.arch();
        let past = state.cache.len();
        let mut x = self.embed(&self.dec_embed, ids, past)?;
        let mut layers = Vec::with_capacity(self.decoder.len());
        for (i, l) in self.decoder.iter().enumerate() {
            let p = state.cache.layers.get(i);
            let (y, kv) = l.forward(&x, arch, p, None, Some((&state.cross[i], &state.mem_keep)));
            x = y;
            layers.push(kv);
        }
        state.cache = KvCache { layers };
        if let Some((_, dec)) = &self.final_norms {
            x = x.apply(dec);
        }
        let logits = x.matmul(&self.lm_head.transpose(0, 1)); // (R, T, V)
        Ok(match &self.final_logits_bias {
            Some(b) => logits + b,
            None => logits,
        })
    }

    /// Loads `dir` (`config.json`, `model.safetensors`) onto `device`.
    pub fn load(dir: &Path, device: Device) -> Result<(nn::VarStore, Seq2Seq)> {
        let (config, _) = read_config::<Seq2SeqConfig>(dir, "translation model")?;
        config.validate(&dir.join("config.json"))?;
        let weights = HfWeights::read(dir)?;
        let has = |n: &str| weights.tensors.contains_key(n);
        // Separate tensors only where the folder has them and the config unties them.
        let untied = !config.tie_word_embeddings;
        let separate = [
            untied && has("model.encoder.embed_tokens.weight") || !has("model.shared.weight"),
            untied && has("model.decoder.embed_tokens.weight") || !has("model.shared.weight"),
            untied && has("lm_head.weight"),
        ];
        let mut vs = nn::VarStore::new(device);
        let model = Seq2Seq::new(&vs.root(), &config, separate)?;
        weights.load_into(&mut vs, |name| {
            let mut names = vec![name.to_string()];
            if name.ends_with("embed_tokens.weight") {
                names.push("model.shared.weight".into());
            }
            names
        })?;
        Ok((vs, model))
    }
}

#[cfg(test)]
mod tests;
