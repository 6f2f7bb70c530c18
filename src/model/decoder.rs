//! Show-and-Tell caption decoder (Vinyals et al., CVPR 2015): the image vector is projected to
//! the word-embedding space and either fed as the first input step or used to initialise the
//! recurrent state; words are generated left to right with an LSTM or GRU.
//!
//! Training uses teacher forcing on `[<start>, w1..wn]` predicting `[w1..wn, <end>]`; padding is
//! excluded from the loss by `ignore_index = <pad>`. Inference goes through [`Decoder::start`]
//! and [`Decoder::step`], which `infer` drives for greedy and beam search.
use tch::{nn, Kind, Tensor};

use super::rnn::{Rnn, RnnState};
use crate::config::{ImageFeed, ModelConfig};
use crate::text::vocab::PAD;

#[derive(Debug)]
pub struct Decoder {
    embed: nn::Embedding,
    img_proj: nn::Linear,
    /// BatchNorm over the projected image: pooled CNN features share a large common component
    /// (SqueezeNet: mean 2.0, per-dimension std 2.7), which drowned the per-image signal and
    /// collapsed greedy captions onto a few templates.
    img_norm: nn::BatchNorm,
    rnn: Rnn,
    out: nn::Linear,
    feed: ImageFeed,
    dropout: f64,
}

impl Decoder {
    pub fn new(p: nn::Path, cfg: &ModelConfig) -> Self {
        let e = cfg.embed_dim;
        let h = cfg.hidden_dim;
        let proj_dim = match cfg.feed {
            ImageFeed::FirstInput => e,
            ImageFeed::InitState => h,
        };
        Decoder {
            embed: nn::embedding(&p / "embed", cfg.vocab_size, e, Default::default()),
            img_proj: nn::linear(
                &p / "img_proj",
                cfg.encoder.pooled_dim(),
                proj_dim,
                Default::default(),
            ),
            img_norm: nn::batch_norm1d(&p / "img_norm", proj_dim, Default::default()),
            rnn: Rnn::new(&p / "rnn", cfg.decoder, e, h, cfg.layers, cfg.dropout),
            out: nn::linear(&p / "out", h, cfg.vocab_size, Default::default()),
            feed: cfg.feed,
            dropout: cfg.dropout,
        }
    }

    /// Image vector `(B, D)` ⇒ the state before the first word is read.
    pub fn start(&self, features: &Tensor, train: bool) -> RnnState {
        // Batch statistics need more than one row; a lone row uses the running ones.
        let bn_train = train && features.size()[0] > 1;
        let img = features
            .apply(&self.img_proj)
            .apply_t(&self.img_norm, bn_train); // (B, E|H)
        match self.feed {
            ImageFeed::FirstInput => {
                let zero = self.rnn.zero_state(img.size()[0], img.device());
                self.rnn.forward_t(&img.unsqueeze(1), &zero, train).1
            }
            ImageFeed::InitState => self.rnn.state_from(&img.tanh()),
        }
    }

    /// Teacher forcing: `features (B,D)`, `tokens (B,L)` = `[<start> w.. <end> <pad>..]` ⇒
    /// logits `(B, L-1, V)` for positions predicting `tokens[:, 1:]`.
    pub fn forward_t(&self, features: &Tensor, tokens: &Tensor, train: bool) -> Tensor {
        let len = tokens.size()[1];
        let state = self.start(features, train);
        let inputs = tokens.narrow(1, 0, len - 1); // (B, L-1)
        let x = inputs.apply(&self.embed).dropout(self.dropout, train); // (B, L-1, E)
        let (out, _) = self.rnn.forward_t(&x, &state, train); // (B, L-1, H)
        out.dropout(self.dropout, train).apply(&self.out) // (B, L-1, V)
    }

    /// Mean cross-entropy over non-pad target positions, and the number of such positions.
    pub fn loss(&self, features: &Tensor, tokens: &Tensor, train: bool) -> Tensor {
        let logits = self.forward_t(features, tokens, train); // (B, L-1, V)
        let v = logits.size()[2];
        let targets = tokens.narrow(1, 1, tokens.size()[1] - 1); // (B, L-1)
        logits.reshape([-1, v]).cross_entropy_loss::<Tensor>(
            &targets.reshape([-1]),
            None,
            tch::Reduction::Mean,
            PAD,
            0.0,
        )
    }

    /// One decoding step: last tokens `(R,)` ⇒ log-probabilities `(R, V)` and the new state.
    pub fn step(&self, tokens: &Tensor, state: &RnnState) -> (Tensor, RnnState) {
        let x = tokens.unsqueeze(1).apply(&self.embed); // (R, 1, E)
        let (out, state) = self.rnn.forward_t(&x, state, false); // (R, 1, H)
        let logits = out.squeeze_dim(1).apply(&self.out); // (R, V)
        (logits.log_softmax(-1, Kind::Float), state)
    }
}
