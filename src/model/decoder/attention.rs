//! Show, Attend and Tell with soft attention (Xu et al., ICML 2015), as its well-known PyTorch
//! implementation writes it: additive attention `full_att(relu(encoder_att(grid) +
//! decoder_att(h)))` over the grid cells, an `LSTMCell` fed `[word; gate ⊙ context]` with the
//! gate `σ(f_beta(h))`, initial `h`/`c` from the mean grid cell, dropout before the output layer,
//! and the doubly stochastic regulariser `alpha_c · mean_{b,n} (1 − Σ_t α_tn)²` over the words of
//! each caption (the tutorial's `((1 - alphas.sum(1)) ** 2).mean()`). Grid cells are layer-normalised first: frozen CNN activations (SqueezeNet's are
//! post-ReLU with a large shared component) otherwise saturate the attention scores.
use tch::{nn, Kind, Tensor};

use super::Forward;
use crate::config::AttentionConfig;
use crate::model::blocks::{layer_norm, LayerNorm};
use crate::model::features::ImageFeatures;
use crate::text::vocab::PAD;

#[derive(Debug)]
pub struct Attention {
    embed: nn::Embedding,
    grid_norm: LayerNorm,
    encoder_att: nn::Linear,
    decoder_att: nn::Linear,
    full_att: nn::Linear,
    init_h: nn::Linear,
    init_c: nn::Linear,
    f_beta: nn::Linear,
    /// `LSTMCell` weights under PyTorch's names (`weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`).
    cell: [Tensor; 4],
    fc: nn::Linear,
    dropout: f64,
    alpha_c: f64,
}

/// Per row: `h`, `c` `(R, H)`, the normalised grid `(R, N, C)` and its attention projection
/// `(R, N, A)`, and the last step's attention weights `(R, N)`.
#[derive(Debug)]
pub struct AttnState {
    h: Tensor,
    c: Tensor,
    grid: Tensor,
    att1: Tensor,
    pub alpha: Option<Tensor>,
}

impl AttnState {
    pub fn select(&self, rows: &Tensor) -> AttnState {
        AttnState {
            h: self.h.index_select(0, rows),
            c: self.c.index_select(0, rows),
            grid: self.grid.index_select(0, rows),
            att1: self.att1.index_select(0, rows),
            alpha: self.alpha.as_ref().map(|a| a.index_select(0, rows)),
        }
    }
}

impl Attention {
    /// `grid_dim` = channels of one grid cell.
    pub fn new(p: nn::Path, cfg: &AttentionConfig, vocab: i64, grid_dim: i64) -> Self {
        let (e, h, a, c) = (cfg.embed_dim, cfg.hidden_dim, cfg.attention_dim, grid_dim);
        let lin = |name: &str, i, o| nn::linear(&p / name, i, o, Default::default());
        let bound = 1.0 / (h as f64).sqrt();
        let init = nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let cp = &p / "lstm";
        Attention {
            embed: nn::embedding(&p / "embed", vocab, e, Default::default()),
            grid_norm: layer_norm(&p / "grid_norm", c, 1e-5),
            encoder_att: lin("encoder_att", c, a),
            decoder_att: lin("decoder_att", h, a),
            full_att: lin("full_att", a, 1),
            init_h: lin("init_h", c, h),
            init_c: lin("init_c", c, h),
            f_beta: lin("f_beta", h, c),
            cell: [
                cp.var("weight_ih", &[4 * h, e + c], init),
                cp.var("weight_hh", &[4 * h, h], init),
                cp.var("bias_ih", &[4 * h], init),
                cp.var("bias_hh", &[4 * h], init),
            ],
            fc: lin("fc", h, vocab),
            dropout: cfg.dropout,
            alpha_c: cfg.alpha_c,
        }
    }

    fn grid(f: &ImageFeatures) -> Tensor {
        // Validated before training and decoding start (a pooled-only cache is refused).
        f.grid
            .as_ref()
            .map(Tensor::shallow_clone)
            .unwrap_or_else(|| f.pooled.unsqueeze(1))
    }

    /// Per image: the normalised grid, its attention projection and the initial state; then
    /// expanded to rows.
    pub fn start(&self, f: &ImageFeatures) -> AttnState {
        let grid = Self::grid(f).apply(&self.grid_norm); // (U, N, C)
        let mean = grid.mean_dim(1, false, Kind::Float); // (U, C)
        AttnState {
            h: f.expand(&mean.apply(&self.init_h)), // (R, H)
            c: f.expand(&mean.apply(&self.init_c)),
            att1: f.expand(&grid.apply(&self.encoder_att)), // (R, N, A)
            grid: f.expand(&grid),                          // (R, N, C)
            alpha: None,
        }
    }

    /// Attend, gate and advance the cell on the embedded words `x (R, E)`; returns the new
    /// state (its `alpha` set) — the output layer is applied by the caller.
    fn advance(&self, x: &Tensor, s: &AttnState) -> AttnState {
        let att2 = s.h.apply(&self.decoder_att).unsqueeze(1); // (R, 1, A)
        let e = (&s.att1 + att2).relu().apply(&self.full_att).squeeze_dim(2); // (R, N)
        let alpha = e.softmax(1, Kind::Float); // (R, N)
        let ctx = alpha.unsqueeze(1).bmm(&s.grid).squeeze_dim(1); // (R, C)
        let gate = s.h.apply(&self.f_beta).sigmoid(); // (R, C)
        let input = Tensor::cat(&[x, &(gate * ctx)], 1); // (R, E + C)
        let [w_ih, w_hh, b_ih, b_hh] = &self.cell;
        let (h, c) = input.lstm_cell(&[&s.h, &s.c], w_ih, w_hh, Some(b_ih), Some(b_hh));
        AttnState {
            h,
            c,
            grid: s.grid.shallow_clone(),
            att1: s.att1.shallow_clone(),
            alpha: Some(alpha),
        }
    }

    /// Teacher forcing. As in the reference implementation, rows are sorted by caption length
    /// and step `t` runs only the rows whose caption is still going (`b_t` of them): the
    /// recurrence never computes on padding. States and weights at padded positions are zero.
    pub fn forward_t(&self, f: &ImageFeatures, tokens: &Tensor, train: bool) -> Forward {
        let (b, len) = (tokens.size()[0], tokens.size()[1] - 1);
        let targets = tokens.narrow(1, 1, len); // (B, T)
        let lens: Vec<i64> = Vec::try_from(
            targets
                .ne(PAD)
                .sum_dim_intlist(1, false, Kind::Int64)
                .to_device(tch::Device::Cpu),
        )
        .unwrap_or_else(|_| vec![len; b as usize]);
        let mut order: Vec<i64> = (0..b).collect();
        order.sort_by_key(|&r| std::cmp::Reverse(lens[r as usize])); // stable: ties keep order
        let sorted: Vec<i64> = order.iter().map(|&r| lens[r as usize]).collect();
        let perm = Tensor::from_slice(&order).to_device(tokens.device());
        let inverse = perm.argsort(0, false);
        let f = f.select(&perm);
        let x = tokens
            .index_select(0, &perm)
            .narrow(1, 0, len)
            .apply(&self.embed); // (B, T, E)
        let mut s = self.start(&f);
        let (mut hs, mut alphas) = (vec![], vec![]);
        for t in 0..len {
            let live = sorted.iter().take_while(|&&l| l > t).count() as i64; // b_t
            if live == 0 {
                let z = |d: i64| Tensor::zeros([b, d], (Kind::Float, x.device()));
                hs.push(z(s.h.size()[1]));
                alphas.push(z(s.grid.size()[1]));
                continue;
            }
            let rows = AttnState {
                h: s.h.narrow(0, 0, live),
                c: s.c.narrow(0, 0, live),
                grid: s.grid.narrow(0, 0, live),
                att1: s.att1.narrow(0, 0, live),
                alpha: None,
            };
            s = self.advance(&x.select(1, t).narrow(0, 0, live), &rows);
            let pad = [0, 0, 0, b - live];
            hs.push(s.h.constant_pad_nd(pad)); // (B, H)
            if let Some(a) = s.alpha.take() {
                alphas.push(a.constant_pad_nd(pad)); // (B, N)
            }
        }
        let hidden = Tensor::stack(&hs, 1)
            .dropout(self.dropout, train)
            .index_select(0, &inverse); // (B, T, H)
        let alpha = Tensor::stack(&alphas, 1).index_select(0, &inverse); // (B, T, N)
        let spent = alpha.sum_dim_intlist(1, false, Kind::Float); // (B, N)
        let penalty = (self.alpha_c > 0.0)
            .then(|| spent.neg().g_add_scalar(1.0).square().mean(Kind::Float) * self.alpha_c);
        Forward {
            hidden,
            penalty,
            attention: Some(alpha),
        }
    }

    /// Dropout is applied by the caller; `(.., H)` ⇒ `(.., V)`.
    pub fn project(&self, hidden: &Tensor) -> Tensor {
        hidden.apply(&self.fc)
    }

    pub fn step(&self, tokens: &Tensor, s: &AttnState) -> (Tensor, AttnState) {
        let x = tokens.apply(&self.embed); // (R, E)
        let next = self.advance(&x, s);
        let logp = self.project(&next.h).log_softmax(-1, Kind::Float); // (R, V)
        (logp, next)
    }
}
