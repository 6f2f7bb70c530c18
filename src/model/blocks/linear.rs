//! A projection as Hugging Face folders store it: `nn.Linear` (weight `[out, in]`, PyTorch's
//! layout) or GPT-2's `Conv1D` (weight `[in, out]`, `y = x W + b`). Both run as one
//! matrix-multiply-with-bias (`addmm`) so no separate pass adds the bias.
use tch::{nn, Tensor};

#[derive(Debug)]
pub enum Proj {
    Linear(nn::Linear),
    Conv1D {
        weight: Tensor,
        bias: Tensor,
    },
    /// A frozen `nn.Linear` plus a low-rank update (LoRA, Hu et al. 2021, as `peft` runs it):
    /// `base(x) + scale · B(A(x))`, `a (r, in)`, `b (out, r)` (no LoRA dropout: `peft`'s
    /// default `lora_dropout` 0).
    Lora {
        base: nn::Linear,
        a: Tensor,
        b: Tensor,
        scale: f64,
    },
}

impl Proj {
    /// `nn.Linear(d_in, d_out, bias)` under `p` (`weight`, `bias`), PyTorch's initialisation.
    pub fn linear(p: nn::Path, d_in: i64, d_out: i64, bias: bool) -> Self {
        let c = nn::LinearConfig {
            bias,
            ..Default::default()
        };
        Proj::Linear(nn::linear(p, d_in, d_out, c))
    }

    /// GPT-2's `Conv1D(d_out, d_in)`: weight `[d_in, d_out]` ~ N(0, 0.02), bias 0.
    pub fn conv1d(p: nn::Path, d_in: i64, d_out: i64) -> Self {
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        Proj::Conv1D {
            weight: p.var("weight", &[d_in, d_out], init),
            bias: p.var("bias", &[d_out], nn::Init::Const(0.0)),
        }
    }

    /// The `nn.Linear` weight `[out, in]` (`None` for `Conv1D`).
    pub fn linear_weight(&self) -> Option<&Tensor> {
        match self {
            Proj::Linear(l) | Proj::Lora { base: l, .. } => Some(&l.ws),
            Proj::Conv1D { .. } => None,
        }
    }

    /// Adds a LoRA update `a (r, in)`, `b (out, r)` to an `nn.Linear` (a no-op `false` for
    /// `Conv1D` or a projection that already has one).
    pub fn add_lora(&mut self, a: Tensor, b: Tensor, scale: f64) -> bool {
        let Proj::Linear(l) = self else {
            return false;
        };
        let base = nn::Linear {
            ws: l.ws.shallow_clone(),
            bs: l.bs.as_ref().map(Tensor::shallow_clone),
        };
        *self = Proj::Lora { base, a, b, scale };
        true
    }

    /// `x (…, in)` ⇒ `(…, out)`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Proj::Linear(l) => x.apply(l),
            Proj::Lora { base, a, b, scale } => {
                let low = x.matmul(&a.tr()).matmul(&b.tr()); // (…, out)
                x.apply(base) + low * *scale
            }
            Proj::Conv1D { weight, bias } => {
                let mut shape = x.size();
                if let Some(last) = shape.last_mut() {
                    *last = weight.size()[1];
                }
                bias.addmm(&x.reshape([-1, weight.size()[0]]), weight) // (N, out)
                    .view(shape.as_slice()) // (…, out)
            }
        }
    }
}
