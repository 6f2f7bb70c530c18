//! LSTM and GRU layers with PyTorch's parameter names (`weight_ih_l0`, `weight_hh_l0`,
//! `bias_ih_l0`, `bias_hh_l0`, ...), so weights round-trip with `torch.nn.LSTM`/`torch.nn.GRU`
//! state dicts and the PyTorch reference benchmark builds the very same model.
//!
//! Unlike `tch::nn::LSTM`, whose dropout/train flag is fixed at construction, `train` is passed
//! on every call (inter-layer dropout only in training), and the state is a value that beam
//! search can reorder ([`RnnState::select`]).
use tch::{nn, Tensor};

pub use crate::config::CellKind;

/// Recurrent state, `(layers, R, H)` per tensor, R = rows (images × beams).
#[derive(Debug)]
pub enum RnnState {
    Lstm(Tensor, Tensor),
    Gru(Tensor),
}

impl RnnState {
    /// Keep/reorder rows (beam search bookkeeping): `rows` is an int64 index tensor `(R',)`.
    pub fn select(&self, rows: &Tensor) -> RnnState {
        match self {
            RnnState::Lstm(h, c) => {
                RnnState::Lstm(h.index_select(1, rows), c.index_select(1, rows))
            }
            RnnState::Gru(h) => RnnState::Gru(h.index_select(1, rows)),
        }
    }
    /// The top layer's hidden state `(R, H)`.
    pub fn top(&self) -> Tensor {
        match self {
            RnnState::Lstm(h, _) | RnnState::Gru(h) => h.get(-1),
        }
    }
}

#[derive(Debug)]
pub struct Rnn {
    kind: CellKind,
    params: Vec<Tensor>,
    layers: i64,
    hidden: i64,
    dropout: f64,
}

impl Rnn {
    pub fn new(
        p: nn::Path,
        kind: CellKind,
        input: i64,
        hidden: i64,
        layers: i64,
        dropout: f64,
    ) -> Self {
        let gates = match kind {
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        };
        // PyTorch's default init: U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias.
        let bound = 1.0 / (hidden as f64).sqrt();
        let init = nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let mut params = Vec::new();
        for l in 0..layers {
            let inp = if l == 0 { input } else { hidden };
            params.push(p.var(&format!("weight_ih_l{l}"), &[gates * hidden, inp], init));
            params.push(p.var(&format!("weight_hh_l{l}"), &[gates * hidden, hidden], init));
            params.push(p.var(&format!("bias_ih_l{l}"), &[gates * hidden], init));
            params.push(p.var(&format!("bias_hh_l{l}"), &[gates * hidden], init));
        }
        // cuDNN wants all weights in one buffer: without this every call re-packs them (and
        // warns). The vars become views into the buffer; loading weights later copies into
        // them in place, so the layout survives `VarStore::load`.
        if p.device().is_cuda() && tch::Cuda::cudnn_is_available() {
            let mode = match kind {
                CellKind::Lstm => 2, // cuDNN's CUDNN_LSTM
                CellKind::Gru => 3,  // CUDNN_GRU
            };
            let _ = Tensor::internal_cudnn_rnn_flatten_weight(
                &params, 4, input, mode, hidden, 0, layers, true, false,
            );
        }
        Rnn {
            kind,
            params,
            layers,
            hidden,
            dropout,
        }
    }

    pub fn zero_state(&self, rows: i64, device: tch::Device) -> RnnState {
        let z = || Tensor::zeros([self.layers, rows, self.hidden], (tch::Kind::Float, device));
        match self.kind {
            CellKind::Lstm => RnnState::Lstm(z(), z()),
            CellKind::Gru => RnnState::Gru(z()),
        }
    }

    /// `xs`: `(R, T, I)` batch-first ⇒ outputs `(R, T, H)` and the final state.
    pub fn forward_t(&self, xs: &Tensor, state: &RnnState, train: bool) -> (Tensor, RnnState) {
        let dropout = if self.layers > 1 { self.dropout } else { 0.0 };
        let params: Vec<&Tensor> = self.params.iter().collect();
        match (self.kind, state) {
            (CellKind::Lstm, RnnState::Lstm(h, c)) => {
                let (out, h, c) = xs.lstm(
                    &[h, c],
                    &params,
                    true,
                    self.layers,
                    dropout,
                    train,
                    false,
                    true,
                );
                (out, RnnState::Lstm(h, c))
            }
            (CellKind::Gru, RnnState::Gru(h)) => {
                let (out, h) = xs.gru(h, &params, true, self.layers, dropout, train, false, true);
                (out, RnnState::Gru(h))
            }
            // A state of the other kind can only come from a programming error in this crate.
            _ => unreachable!("rnn state kind does not match the cell kind"),
        }
    }

    /// Expand a single vector into an initial state for every layer: `(R, H)` ⇒ `(L, R, H)`.
    /// Used by the "image initialises the state" variant of Show and Tell.
    pub fn state_from(&self, h0: &Tensor) -> RnnState {
        let h = h0.unsqueeze(0).repeat([self.layers, 1, 1]); // (L, R, H)
        match self.kind {
            CellKind::Lstm => RnnState::Lstm(h.shallow_clone(), h),
            CellKind::Gru => RnnState::Gru(h),
        }
    }
}
