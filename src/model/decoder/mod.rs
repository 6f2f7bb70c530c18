//! The caption decoders behind one interface (docs/ARCHITECTURE.md, "The decoder interface"):
//!
//! ```text
//! loss(features, tokens, train)  -> scalar        teacher forcing, pad masked (+ regulariser)
//! live_logits(features, tokens)  -> (M, V)        non-pad positions, for distillation
//! start(features)                -> State         image ⇒ state before the first word
//! step(tokens (R,), &State)      -> (logp (R,V), State)
//! State::select(rows)            -> State         beam search reorders hypotheses
//! ```
//!
//! Each architecture is one file; this file holds the `match`es that dispatch the interface to
//! them (`Decoder`, `State`). The architectures' configs are matched elsewhere too: presets,
//! sizes, validation and feature needs in `config::decoder`, per-architecture flags in
//! `commands::model::train_job`, and ClipCap's pretrained LM in `run` and `train::prepare`
//! (docs/ARCHITECTURE.md lists them). Decoding strategies (`model::decoding`) drive
//! `start`/`step` and never see which decoder runs.
pub mod attention;
pub mod clipcap;
pub mod show_tell;
pub mod transformer;

use tch::{nn, Tensor};

use super::features::ImageFeatures;
use super::rnn::RnnState;
use crate::config::{DecoderConfig, FeatureDims};
use crate::text::vocab::PAD;

pub use attention::Attention;
pub use clipcap::ClipCap;
pub use show_tell::ShowTell;
pub use transformer::Transformer;

#[derive(Debug)]
pub enum Decoder {
    ShowTell(ShowTell),
    Attention(Attention),
    Transformer(Transformer),
    /// Boxed: with its LM and id tables it is several times the size of the others.
    ClipCap(Box<ClipCap>),
}

/// A decoder's state for `R` rows (images × beams).
#[derive(Debug)]
pub enum State {
    ShowTell(RnnState),
    Attention(attention::AttnState),
    Transformer(transformer::DecoderCache),
    ClipCap(crate::model::blocks::KvCache),
}

impl State {
    /// Keep/reorder rows: `rows` is an int64 index tensor `(R',)`.
    pub fn select(&self, rows: &Tensor) -> State {
        match self {
            State::ShowTell(s) => State::ShowTell(s.select(rows)),
            State::Attention(s) => State::Attention(s.select(rows)),
            State::Transformer(s) => State::Transformer(s.select(rows)),
            State::ClipCap(s) => State::ClipCap(s.select(rows)),
        }
    }
}

/// Teacher-forced outputs: the states `(B, L-1, H)` the output layer reads at the positions
/// predicting `tokens[:, 1:]` (values at `<pad>` targets are unspecified), an extra loss term the
/// architecture adds (attention's doubly stochastic regulariser), and per-word attention weights
/// over the grid cells `(B, L-1, N)` where the architecture has them.
pub struct Forward {
    pub hidden: Tensor,
    pub penalty: Option<Tensor>,
    pub attention: Option<Tensor>,
}

/// The positions that predict a non-`<pad>` target of `tokens[:, 1:]`: their states `(M, H)`
/// and targets `(M,)`, in row-major order.
pub fn live_positions(hidden: &Tensor, tokens: &Tensor) -> (Tensor, Tensor) {
    let h = hidden.size()[2];
    let targets = tokens.narrow(1, 1, tokens.size()[1] - 1).reshape([-1]); // (B·(L-1),)
    let live = targets.ne(PAD).nonzero().squeeze_dim(1); // (M,)
    let states = hidden.reshape([-1, h]).index_select(0, &live); // (M, H)
    (states, targets.index_select(0, &live))
}

/// Mean cross-entropy against `tokens[:, 1:]` over the non-`<pad>` targets. Only those
/// positions' states go through `project` (the output layer, the largest matrix product of a
/// step): the same value and gradients as projecting every position and ignoring `<pad>`,
/// without the work on padding (~40% of positions at Flickr8k's caption lengths).
pub fn masked_cross_entropy(
    hidden: &Tensor,
    tokens: &Tensor,
    project: impl Fn(&Tensor) -> Tensor,
) -> Tensor {
    let (states, targets) = live_positions(hidden, tokens);
    project(&states).cross_entropy_loss::<Tensor>(&targets, None, tch::Reduction::Mean, PAD, 0.0)
}

/// Teacher-forced logits at the non-`<pad>` positions (distillation compares teacher and
/// student there): logits `(M, V)`, targets `(M,)`, and the architecture's regulariser.
pub struct LiveLogits {
    pub logits: Tensor,
    pub targets: Tensor,
    pub penalty: Option<Tensor>,
}

impl Decoder {
    /// `dims`: the widths of the encoder's features (an `EncoderKind`'s, or a run's
    /// `ModelConfig::dims`).
    pub fn new(p: nn::Path, cfg: &DecoderConfig, dims: impl Into<FeatureDims>, vocab: i64) -> Self {
        let FeatureDims { pooled, grid } = dims.into();
        match cfg {
            DecoderConfig::ShowTell(c) => Decoder::ShowTell(ShowTell::new(p, c, vocab, pooled)),
            DecoderConfig::Attention(c) => Decoder::Attention(Attention::new(p, c, vocab, grid)),
            DecoderConfig::Transformer(c) => {
                Decoder::Transformer(Transformer::new(p, c, vocab, pooled, grid))
            }
            DecoderConfig::ClipCap(c) => Decoder::ClipCap(Box::new(ClipCap::new(p, c, vocab))),
        }
    }

    /// Teacher forcing on `tokens (B, L)` = `[<start> w.. <end> <pad>..]`.
    pub fn forward_t(&self, f: &ImageFeatures, tokens: &Tensor, train: bool) -> Forward {
        match self {
            Decoder::ShowTell(d) => Forward {
                hidden: d.hidden_t(&f.rows_pooled(), tokens, train),
                penalty: None,
                attention: None,
            },
            Decoder::Attention(d) => d.forward_t(f, tokens, train),
            Decoder::Transformer(d) => d.forward_t(f, tokens, train),
            Decoder::ClipCap(d) => d.forward_t(f, tokens, train),
        }
    }

    /// The output layer: states `(.., H)` ⇒ logits `(.., V)`.
    pub fn project(&self, hidden: &Tensor) -> Tensor {
        match self {
            Decoder::ShowTell(d) => d.project(hidden),
            Decoder::Attention(d) => d.project(hidden),
            Decoder::Transformer(d) => d.project(hidden),
            Decoder::ClipCap(d) => d.project(hidden),
        }
    }

    /// Logits `(B, L-1, V)` at every position (tests).
    pub fn logits(&self, f: &ImageFeatures, tokens: &Tensor, train: bool) -> Tensor {
        self.project(&self.forward_t(f, tokens, train).hidden)
    }

    /// Logits at the positions with a non-`<pad>` target only.
    pub fn live_logits(&self, f: &ImageFeatures, tokens: &Tensor, train: bool) -> LiveLogits {
        let out = self.forward_t(f, tokens, train);
        let (states, targets) = live_positions(&out.hidden, tokens);
        LiveLogits {
            logits: self.project(&states),
            targets,
            penalty: out.penalty,
        }
    }

    /// The training objective: masked cross-entropy plus the architecture's regulariser.
    pub fn loss(&self, f: &ImageFeatures, tokens: &Tensor, train: bool) -> Tensor {
        let out = self.forward_t(f, tokens, train);
        let ce = masked_cross_entropy(&out.hidden, tokens, |h| self.project(h));
        match out.penalty {
            Some(p) => ce + p,
            None => ce,
        }
    }

    /// Features of `R` rows ⇒ the state before `<start>` is read.
    pub fn start(&self, f: &ImageFeatures) -> State {
        match self {
            Decoder::ShowTell(d) => State::ShowTell(d.start(&f.rows_pooled(), false)),
            Decoder::Attention(d) => State::Attention(d.start(f)),
            Decoder::Transformer(d) => State::Transformer(d.start(f)),
            Decoder::ClipCap(d) => State::ClipCap(d.start(f)),
        }
    }

    /// Last tokens `(R,)` ⇒ log-probabilities `(R, V)` and the next state.
    pub fn step(&self, tokens: &Tensor, state: &State) -> (Tensor, State) {
        match (self, state) {
            (Decoder::ShowTell(d), State::ShowTell(s)) => {
                let (lp, s) = d.step(tokens, s);
                (lp, State::ShowTell(s))
            }
            (Decoder::Attention(d), State::Attention(s)) => {
                let (lp, s) = d.step(tokens, s);
                (lp, State::Attention(s))
            }
            (Decoder::Transformer(d), State::Transformer(s)) => {
                let (lp, s) = d.step(tokens, s);
                (lp, State::Transformer(s))
            }
            (Decoder::ClipCap(d), State::ClipCap(s)) => {
                let (lp, s) = d.step(tokens, s);
                (lp, State::ClipCap(s))
            }
            // States are only made by `start` of the same decoder.
            _ => unreachable!("decoder state of another architecture"),
        }
    }
}

#[cfg(test)]
mod tests;
