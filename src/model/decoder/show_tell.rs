//! Show-and-Tell caption decoder (Vinyals et al., CVPR 2015): the image vector is projected to
//! the word-embedding space and either fed as the first input step or used to initialise the
//! recurrent state; words are generated left to right with an LSTM or GRU.
//!
//! It reads only the pooled vector. Its state is the recurrent `(h[, c])`; the hashtag GRU
//! generator (`model::tagger`) is the same module over the tag vocabulary.
use tch::{nn, Kind, Tensor};

use crate::config::{ImageFeed, ShowTellConfig};
use crate::model::rnn::{Rnn, RnnState};

#[derive(Debug)]
pub struct ShowTell {
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

impl ShowTell {
    /// `vocab` output words, `pooled` = width of the image vector.
    pub fn new(p: nn::Path, cfg: &ShowTellConfig, vocab: i64, pooled: i64) -> Self {
        let e = cfg.embed_dim;
        let h = cfg.hidden_dim;
        let proj_dim = match cfg.feed {
            ImageFeed::FirstInput => e,
            ImageFeed::InitState => h,
        };
        ShowTell {
            embed: nn::embedding(&p / "embed", vocab, e, Default::default()),
            img_proj: nn::linear(&p / "img_proj", pooled, proj_dim, Default::default()),
            img_norm: nn::batch_norm1d(&p / "img_norm", proj_dim, Default::default()),
            rnn: Rnn::new(&p / "rnn", cfg.cell, e, h, cfg.layers, cfg.dropout),
            out: nn::linear(&p / "out", h, vocab, Default::default()),
            feed: cfg.feed,
            dropout: cfg.dropout,
        }
    }

    /// Pooled image vector `(B, D)` ⇒ the state before the first word is read.
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
    /// the (dropped-out) outputs `(B, L-1, H)` for positions predicting `tokens[:, 1:]`.
    pub fn hidden_t(&self, features: &Tensor, tokens: &Tensor, train: bool) -> Tensor {
        let len = tokens.size()[1];
        let state = self.start(features, train);
        let inputs = tokens.narrow(1, 0, len - 1); // (B, L-1)
        let x = inputs.apply(&self.embed).dropout(self.dropout, train); // (B, L-1, E)
        let (out, _) = self.rnn.forward_t(&x, &state, train); // (B, L-1, H)
        out.dropout(self.dropout, train)
    }

    /// Outputs `(.., H)` ⇒ logits `(.., V)`.
    pub fn project(&self, hidden: &Tensor) -> Tensor {
        hidden.apply(&self.out)
    }

    /// Logits `(B, L-1, V)`.
    pub fn forward_t(&self, features: &Tensor, tokens: &Tensor, train: bool) -> Tensor {
        self.project(&self.hidden_t(features, tokens, train))
    }

    /// Mean cross-entropy over non-pad target positions.
    pub fn loss(&self, features: &Tensor, tokens: &Tensor, train: bool) -> Tensor {
        let hidden = self.hidden_t(features, tokens, train);
        super::masked_cross_entropy(&hidden, tokens, |h| self.project(h))
    }

    /// One decoding step: last tokens `(R,)` ⇒ log-probabilities `(R, V)` and the new state.
    pub fn step(&self, tokens: &Tensor, state: &RnnState) -> (Tensor, RnnState) {
        let x = tokens.unsqueeze(1).apply(&self.embed); // (R, 1, E)
        let (out, state) = self.rnn.forward_t(&x, state, false); // (R, 1, H)
        let logits = out.squeeze_dim(1).apply(&self.out); // (R, V)
        (logits.log_softmax(-1, Kind::Float), state)
    }
}
