//! Decoder configurations: one serde variant per architecture (`config.json` field
//! `model.decoder`, tagged by `kind`), with the named presets `--decoder` picks. Adding a decoder
//! adds one variant here, one file under `src/model/decoder/` and its arms in
//! `src/model/decoder/mod.rs` (docs/ARCHITECTURE.md, "Adding a decoder").
use serde::{Deserialize, Serialize};

use super::gpt2::Gpt2Config;
use super::EncoderKind;

/// Recurrent cell of the Show-and-Tell decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    Lstm,
    Gru,
}

/// How the image enters the Show-and-Tell decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ImageFeed {
    /// The projected image is the first input step (Vinyals et al. 2015).
    FirstInput,
    /// The projected image initialises the hidden (and cell) state.
    InitState,
}

/// `--decoder`: the architecture families, each with a preset per encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DecoderPreset {
    /// Show and Tell with an LSTM (Vinyals et al. 2015), on the pooled image vector.
    Lstm,
    /// Show and Tell with a GRU.
    Gru,
    /// Show, Attend and Tell soft attention over the feature grid (Xu et al. 2015).
    Attention,
    /// Pre-LayerNorm transformer decoder with cross-attention over the grid.
    Transformer,
    /// Student sizes (distillation): embed 128, hidden 256 whatever the encoder.
    LstmSmall,
    GruSmall,
    /// Student transformer: d_model 128, 4 heads, 2 layers, feed-forward 256.
    TransformerSmall,
    /// Student attention decoder: embed 128, hidden 256, attention 128.
    AttentionSmall,
    /// ClipCap prefix captioner (Mokady et al. 2021): the pooled image vector mapped to a
    /// prefix of GPT-2 input embeddings; a small GPT-2-architecture LM over the run's word
    /// vocabulary, trained from scratch, or a pretrained GPT-2 folder (`--lm-weights`).
    Clipcap,
}

/// The architecture settings a user may override (`train --embed`, `--heads`, ...): `None`
/// keeps the preset's. [`DecoderConfig::apply`] puts each where its architecture has it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecoderOverrides {
    pub embed: Option<i64>,
    pub hidden: Option<i64>,
    pub layers: Option<i64>,
    pub dropout: Option<f64>,
    pub feed: Option<ImageFeed>,
    pub attention_dim: Option<i64>,
    pub alpha_c: Option<f64>,
    pub heads: Option<i64>,
    pub ff_dim: Option<i64>,
    pub positions: Option<Positions>,
    pub mapper: Option<MapperKind>,
    pub prefix_len: Option<i64>,
    pub clip_len: Option<i64>,
    pub mapper_layers: Option<i64>,
    pub lm: Option<LmMode>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShowTellConfig {
    pub cell: CellKind,
    pub feed: ImageFeed,
    pub embed_dim: i64,
    pub hidden_dim: i64,
    pub layers: i64,
    pub dropout: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionConfig {
    pub embed_dim: i64,
    /// LSTMCell size.
    pub hidden_dim: i64,
    /// Additive-attention size.
    pub attention_dim: i64,
    /// Dropout before the output layer.
    pub dropout: f64,
    /// Weight of the doubly stochastic regulariser `alpha_c · Σ_n (1 − Σ_t α_tn)²`.
    pub alpha_c: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Positions {
    Learned,
    Sinusoidal,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransformerConfig {
    pub d_model: i64,
    pub heads: i64,
    pub layers: i64,
    pub ff_dim: i64,
    pub dropout: f64,
    pub positions: Positions,
    /// Longest token sequence (`<start>` + words + `<end>`) positions exist for.
    pub max_len: i64,
}

/// ClipCap's mapper from the pooled image vector to the prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MapperKind {
    /// `Linear → Tanh → Linear` to `prefix_len × n_embd` (hidden width half the output).
    Mlp,
    /// The image vector as `clip_len` tokens beside a learned constant prefix, through a
    /// transformer encoder; the prefix positions' outputs are the prefix.
    Transformer,
}

/// Whether ClipCap's language model trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LmMode {
    /// Only the mapper trains (the LM's variables never change).
    Frozen,
    /// Mapper and LM train together.
    Finetune,
}

/// The GPT-2 sizes of ClipCap's language model (`vocab_size` is the run's vocabulary,
/// `n_positions` is `prefix_len + max_len`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Sizes {
    pub n_embd: i64,
    pub n_layer: i64,
    pub n_head: i64,
    /// GPT-2's embedding, attention and residual dropout.
    pub dropout: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipCapConfig {
    pub mapper: MapperKind,
    /// Prefix embeddings the image becomes.
    pub prefix_len: i64,
    /// Transformer mapper: tokens the image vector is projected into.
    pub clip_len: i64,
    /// Transformer mapper: encoder layers (heads: the LM's `n_head`).
    pub mapper_layers: i64,
    pub lm: LmMode,
    pub gpt2: Gpt2Sizes,
    /// Width of the pooled image vector the mapper reads.
    pub feature_dim: i64,
    /// Longest token sequence (`<start>` + words + `<end>`) after the prefix.
    pub max_len: i64,
    /// A pretrained GPT-2 (`--lm-weights`) instead of the word-level LM: its architecture, and
    /// the run's ids are its BPE ids (`text::tokens`). Absent in word-level runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<Box<PretrainedLm>>,
}

/// ClipCap's language model read from a Hugging Face `gpt2` folder (docs/ARCHITECTURE.md,
/// "Tokens behind the decoder interface"). The weights live in the run's own files after the
/// first epoch; the folder's tokenizer files are copied into the run's `lm/`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainedLm {
    /// The folder's `config.json` (its sizes, activation, positions and vocabulary).
    pub config: Gpt2Config,
    /// `<|endoftext|>`: the LM reads it for `<start>` and predicts it for `<end>`.
    pub eot_id: i64,
    /// Fingerprint of the folder's weights (a resume that restarts from them checks it).
    pub weights_fingerprint: String,
}

/// The caption decoder of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DecoderConfig {
    ShowTell(ShowTellConfig),
    Attention(AttentionConfig),
    Transformer(TransformerConfig),
    #[serde(rename = "clipcap")]
    ClipCap(ClipCapConfig),
}

impl DecoderConfig {
    /// Sizes that train well for each encoder on its typical data.
    pub fn preset(p: DecoderPreset, encoder: EncoderKind) -> DecoderConfig {
        let small = encoder == EncoderKind::SmallCnn
            || matches!(
                p,
                DecoderPreset::LstmSmall
                    | DecoderPreset::GruSmall
                    | DecoderPreset::TransformerSmall
                    | DecoderPreset::AttentionSmall
            );
        let show_tell = |cell| {
            let (embed_dim, hidden_dim, dropout) = if small {
                (128, 256, 0.2)
            } else {
                (256, 512, 0.5)
            };
            DecoderConfig::ShowTell(ShowTellConfig {
                cell,
                feed: ImageFeed::FirstInput,
                embed_dim,
                hidden_dim,
                layers: 1,
                dropout,
            })
        };
        match p {
            DecoderPreset::Lstm | DecoderPreset::LstmSmall => show_tell(CellKind::Lstm),
            DecoderPreset::Gru | DecoderPreset::GruSmall => show_tell(CellKind::Gru),
            DecoderPreset::Attention | DecoderPreset::AttentionSmall => {
                DecoderConfig::Attention(if small {
                    AttentionConfig {
                        embed_dim: 128,
                        hidden_dim: 256,
                        attention_dim: 128,
                        dropout: 0.2,
                        alpha_c: 1.0,
                    }
                } else {
                    AttentionConfig {
                        embed_dim: 256,
                        hidden_dim: 512,
                        attention_dim: 256,
                        dropout: 0.5,
                        alpha_c: 1.0,
                    }
                })
            }
            DecoderPreset::Transformer | DecoderPreset::TransformerSmall => {
                DecoderConfig::Transformer(TransformerConfig {
                    d_model: if small { 128 } else { 256 },
                    heads: if small { 4 } else { 8 },
                    layers: if small { 2 } else { 3 },
                    ff_dim: if small { 256 } else { 1024 },
                    dropout: if small { 0.1 } else { 0.3 },
                    positions: Positions::Learned,
                    max_len: 40,
                })
            }
            DecoderPreset::Clipcap => DecoderConfig::ClipCap(ClipCapConfig {
                mapper: MapperKind::Mlp,
                prefix_len: 10,
                clip_len: 10,
                mapper_layers: 8,
                lm: LmMode::Finetune,
                gpt2: Gpt2Sizes {
                    n_embd: if small { 128 } else { 256 },
                    n_layer: if small { 2 } else { 4 },
                    n_head: 4,
                    dropout: 0.1,
                },
                feature_dim: encoder.pooled_dim(),
                max_len: 40,
                pretrained: None,
            }),
        }
    }

    /// Longest token sequence the decoder has positions for, where it has such a limit.
    pub fn max_len(&self) -> Option<i64> {
        match self {
            DecoderConfig::Transformer(c) => Some(c.max_len),
            DecoderConfig::ClipCap(c) => Some(c.max_len),
            _ => None,
        }
    }

    /// Variables under `decoder.` that never train (ClipCap's frozen LM), as a name prefix.
    pub fn frozen_prefix(&self) -> Option<&'static str> {
        match self {
            DecoderConfig::ClipCap(c) if c.lm == LmMode::Frozen => Some("decoder.lm."),
            _ => None,
        }
    }

    /// Whether the decoder reads the feature grid `(B, N, C)` (a feature cache must then hold
    /// grids). Each architecture says so itself: a new variant does not compile until it does.
    pub fn needs_grid(&self) -> bool {
        match self {
            // The pooled image vector `(B, D)` only.
            DecoderConfig::ShowTell(_) | DecoderConfig::ClipCap(_) => false,
            // Attention over the grid cells.
            DecoderConfig::Attention(_) | DecoderConfig::Transformer(_) => true,
        }
    }

    /// Whether decoding yields per-word attention weights over the grid (`caption --attention`).
    pub fn has_attention_maps(&self) -> bool {
        matches!(self, DecoderConfig::Attention(_))
    }

    pub fn dropout(&self) -> f64 {
        match self {
            DecoderConfig::ShowTell(c) => c.dropout,
            DecoderConfig::Attention(c) => c.dropout,
            DecoderConfig::Transformer(c) => c.dropout,
            DecoderConfig::ClipCap(c) => c.gpt2.dropout,
        }
    }

    /// A short name for tables and logs (`lstm`, `gru`, `attention`, `transformer`).
    pub fn name(&self) -> &'static str {
        match self {
            DecoderConfig::ShowTell(c) => match c.cell {
                CellKind::Lstm => "lstm",
                CellKind::Gru => "gru",
            },
            DecoderConfig::Attention(_) => "attention",
            DecoderConfig::Transformer(_) => "transformer",
            DecoderConfig::ClipCap(_) => "clipcap",
        }
    }

    /// Apply the user's overrides (`train` flags) where the architecture has such a setting;
    /// the others are ignored, as the flags' help says.
    pub fn apply(&mut self, o: &DecoderOverrides) {
        self.override_sizes(o.embed, o.hidden, o.layers, o.dropout);
        match self {
            DecoderConfig::ShowTell(c) => c.feed = o.feed.unwrap_or(c.feed),
            DecoderConfig::Attention(c) => {
                c.attention_dim = o.attention_dim.unwrap_or(c.attention_dim);
                c.alpha_c = o.alpha_c.unwrap_or(c.alpha_c);
            }
            DecoderConfig::Transformer(c) => {
                c.heads = o.heads.unwrap_or(c.heads);
                c.ff_dim = o.ff_dim.unwrap_or(c.ff_dim);
                c.positions = o.positions.unwrap_or(c.positions);
            }
            DecoderConfig::ClipCap(c) => {
                c.gpt2.n_head = o.heads.unwrap_or(c.gpt2.n_head);
                c.mapper = o.mapper.unwrap_or(c.mapper);
                c.prefix_len = o.prefix_len.unwrap_or(c.prefix_len);
                c.clip_len = o.clip_len.unwrap_or(c.clip_len);
                c.mapper_layers = o.mapper_layers.unwrap_or(c.mapper_layers);
                c.lm = o.lm.unwrap_or(c.lm);
            }
        }
    }

    /// The generic size flags (`--embed`, `--hidden`, `--layers`, `--dropout`) where the
    /// architecture has such a size.
    fn override_sizes(
        &mut self,
        embed: Option<i64>,
        hidden: Option<i64>,
        layers: Option<i64>,
        dropout: Option<f64>,
    ) {
        match self {
            DecoderConfig::ShowTell(c) => {
                c.embed_dim = embed.unwrap_or(c.embed_dim);
                c.hidden_dim = hidden.unwrap_or(c.hidden_dim);
                c.layers = layers.unwrap_or(c.layers);
                c.dropout = dropout.unwrap_or(c.dropout);
            }
            DecoderConfig::Attention(c) => {
                c.embed_dim = embed.unwrap_or(c.embed_dim);
                c.hidden_dim = hidden.unwrap_or(c.hidden_dim);
                c.dropout = dropout.unwrap_or(c.dropout);
            }
            DecoderConfig::Transformer(c) => {
                c.d_model = embed.or(hidden).unwrap_or(c.d_model);
                c.layers = layers.unwrap_or(c.layers);
                c.dropout = dropout.unwrap_or(c.dropout);
            }
            DecoderConfig::ClipCap(c) => {
                c.gpt2.n_embd = embed.or(hidden).unwrap_or(c.gpt2.n_embd);
                c.gpt2.n_layer = layers.unwrap_or(c.gpt2.n_layer);
                c.gpt2.dropout = dropout.unwrap_or(c.gpt2.dropout);
            }
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let pos = |xs: &[i64]| xs.iter().all(|&x| x >= 1);
        let ok_dropout = (0.0..1.0).contains(&self.dropout());
        if !ok_dropout {
            return Err("dropout must be in [0, 1)".into());
        }
        match self {
            DecoderConfig::ShowTell(c) if !pos(&[c.embed_dim, c.hidden_dim, c.layers]) => {
                Err("embed_dim, hidden_dim and layers must be ≥ 1".into())
            }
            DecoderConfig::Attention(c)
                if !pos(&[c.embed_dim, c.hidden_dim, c.attention_dim]) || c.alpha_c < 0.0 =>
            {
                Err("attention sizes must be ≥ 1 and alpha_c ≥ 0".into())
            }
            DecoderConfig::Transformer(c)
                if !pos(&[c.d_model, c.heads, c.layers, c.ff_dim, c.max_len]) =>
            {
                Err("transformer sizes must be ≥ 1".into())
            }
            DecoderConfig::Transformer(c) if c.d_model % c.heads != 0 => Err(format!(
                "transformer width {} is not a multiple of {} heads",
                c.d_model, c.heads
            )),
            DecoderConfig::Transformer(c)
                if c.positions == Positions::Sinusoidal && c.d_model % 2 != 0 =>
            {
                Err("sinusoidal positions need an even width".into())
            }
            DecoderConfig::ClipCap(c)
                if !pos(&[
                    c.prefix_len,
                    c.clip_len,
                    c.mapper_layers,
                    c.gpt2.n_embd,
                    c.gpt2.n_layer,
                    c.gpt2.n_head,
                    c.feature_dim,
                    c.max_len,
                ]) =>
            {
                Err("clipcap sizes must be ≥ 1".into())
            }
            DecoderConfig::ClipCap(c) if c.gpt2.n_embd % c.gpt2.n_head != 0 => Err(format!(
                "clipcap width {} is not a multiple of {} heads",
                c.gpt2.n_embd, c.gpt2.n_head
            )),
            DecoderConfig::ClipCap(ClipCapConfig {
                pretrained: Some(p),
                prefix_len,
                max_len,
                ..
            }) if prefix_len + max_len > p.config.n_positions
                || p.eot_id < 0
                || p.eot_id >= p.config.vocab_size =>
            {
                Err(format!(
                    "clipcap: prefix {prefix_len} + {max_len} tokens exceed the GPT-2's {} \
                     positions, or <|endoftext|> {} is not among its {} ids",
                    p.config.n_positions, p.eot_id, p.config.vocab_size
                ))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_round_trip_with_their_kind_tag() {
        for p in [
            DecoderPreset::Lstm,
            DecoderPreset::Gru,
            DecoderPreset::Attention,
            DecoderPreset::Transformer,
            DecoderPreset::Clipcap,
        ] {
            let c = DecoderConfig::preset(p, EncoderKind::Squeezenet1_1);
            let v = serde_json::to_value(&c).unwrap();
            assert!(v["kind"].is_string());
            assert_eq!(serde_json::from_value::<DecoderConfig>(v).unwrap(), c);
            assert!(c.validate().is_ok());
        }
    }

    #[test]
    fn transformer_heads_must_divide_width() {
        let mut c = DecoderConfig::preset(DecoderPreset::Transformer, EncoderKind::SmallCnn);
        if let DecoderConfig::Transformer(t) = &mut c {
            t.heads = 3;
        }
        assert!(c.validate().unwrap_err().contains("multiple"));
    }
}
