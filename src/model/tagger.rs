//! Image ⇒ hashtags, on the encoder's pooled features. Two models (config `hashtags.model`):
//!
//! - `head`: a multi-label classifier, `Linear → BatchNorm → ReLU → dropout → Linear`, one logit
//!   per tag of the run's label list, trained with binary cross-entropy whose positive weight
//!   lifts rare tags (`pos_weight_t = clamp((N − n_t) / n_t, 1, 30)` from training counts,
//!   kept in the checkpoint as the buffer `log_pos_weight`). Positive weighting inflates the
//!   sigmoid by the factor `w_t` in odds, so scores are `sigmoid(logit − ln w_t)`: calibrated
//!   again, and a threshold of 0.5 means what it says. A tag is output when it is in the top N
//!   and scores at least the threshold.
//! - `gru`: the seed projects' tag generator — a Show-and-Tell GRU over the tag vocabulary that
//!   writes an image's tags as a sequence (most frequent tag first), decoded with the same greedy
//!   and beam search as captions. Its ranking is the generated tags in order, then every other
//!   tag by the probability of being written first; that first-step probability is the score.
use tch::{nn, Kind, Tensor};

use super::decoder::ShowTell;
use crate::config::{CellKind, ImageFeed, ModelConfig, ShowTellConfig, TagModelKind, TagsConfig};

/// Tag ids in the generator's vocabulary follow the four specials.
pub const TAG_OFFSET: i64 = 4;
/// A tag sequence is cut to this many tags.
pub const MAX_TAGS: usize = 10;

/// The multi-label classifier.
#[derive(Debug)]
pub struct TagHead {
    hidden: nn::Linear,
    norm: nn::BatchNorm,
    out: nn::Linear,
    /// `(T,)` ln of the BCE positive weights (not trained; set from the training counts).
    log_pos_weight: Tensor,
    dropout: f64,
}

impl TagHead {
    pub fn new(p: nn::Path, in_dim: i64, hidden: i64, tags: i64, dropout: f64) -> Self {
        TagHead {
            hidden: nn::linear(&p / "hidden", in_dim, hidden, Default::default()),
            norm: nn::batch_norm1d(&p / "norm", hidden, Default::default()),
            out: nn::linear(&p / "out", hidden, tags, Default::default()),
            log_pos_weight: p.zeros_no_train("log_pos_weight", &[tags]),
            dropout,
        }
    }

    /// Install the positive weights `(T,)` of a new run.
    pub fn set_pos_weight(&mut self, w: &Tensor) {
        tch::no_grad(|| {
            self.log_pos_weight
                .copy_(&w.to_device(self.log_pos_weight.device()).log())
        });
    }

    /// Pooled features `(B, D)` ⇒ logits `(B, T)`.
    pub fn forward_t(&self, features: &Tensor, train: bool) -> Tensor {
        // Batch statistics need more than one row; a lone row uses the running ones.
        let bn_train = train && features.size()[0] > 1;
        features
            .apply(&self.hidden)
            .apply_t(&self.norm, bn_train)
            .relu()
            .dropout(self.dropout, train)
            .apply(&self.out)
    }
}

#[derive(Debug)]
pub enum Tagger {
    Head(TagHead),
    Gru(ShowTell),
}

/// The Show-and-Tell config of the tag generator: a GRU over `num_tags + 4` tokens.
pub fn generator_config(cfg: &ModelConfig, tags: &TagsConfig) -> ShowTellConfig {
    ShowTellConfig {
        cell: CellKind::Gru,
        feed: ImageFeed::FirstInput,
        embed_dim: tags.hidden_dim / 2,
        hidden_dim: tags.hidden_dim,
        layers: 1,
        dropout: cfg.dropout(),
    }
}

impl Tagger {
    pub fn new(p: nn::Path, cfg: &ModelConfig, tags: &TagsConfig) -> Self {
        match tags.model {
            TagModelKind::Head => Tagger::Head(TagHead::new(
                p / "head",
                cfg.pooled_dim(),
                tags.hidden_dim,
                tags.num_tags,
                cfg.dropout(),
            )),
            TagModelKind::Gru => Tagger::Gru(ShowTell::new(
                p / "gru",
                &generator_config(cfg, tags),
                tags.num_tags + TAG_OFFSET,
                cfg.pooled_dim(),
            )),
        }
    }

    /// Training loss. `targets`: head ⇒ multi-hot `(B, T)`; gru ⇒ token sequences `(B, L)`
    /// `[<start> tag.. <end> <pad>..]`.
    pub fn loss(&self, features: &Tensor, targets: &Tensor, train: bool) -> Tensor {
        match self {
            Tagger::Gru(dec) => dec.loss(features, targets, train),
            Tagger::Head(head) => {
                let pos_weight = head.log_pos_weight.exp();
                head.forward_t(features, train)
                    .binary_cross_entropy_with_logits::<&Tensor>(
                        targets,
                        None,
                        Some(&pos_weight),
                        tch::Reduction::Mean,
                    )
            }
        }
    }

    /// Per-tag scores `(B, T)` in [0, 1]: head sigmoids, or the generator's first-tag
    /// probabilities.
    pub fn scores(&self, features: &Tensor) -> Tensor {
        tch::no_grad(|| match self {
            Tagger::Head(head) => {
                (head.forward_t(features, false) - &head.log_pos_weight).sigmoid()
            }
            Tagger::Gru(dec) => {
                let state = dec.start(features, false);
                let n = features.size()[0];
                let start = Tensor::full(
                    [n],
                    crate::text::vocab::START,
                    (Kind::Int64, features.device()),
                );
                let (lp, _) = dec.step(&start, &state); // (B, T+4)
                lp.narrow(1, TAG_OFFSET, lp.size()[1] - TAG_OFFSET).exp()
            }
        })
    }

    pub fn generator(&self) -> Option<&ShowTell> {
        match self {
            Tagger::Gru(d) => Some(d),
            Tagger::Head(_) => None,
        }
    }
}
