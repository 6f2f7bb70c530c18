//! Feed-forward blocks: `fc1 → activation → dropout → fc2` under the names a family uses
//! (`fc1`/`fc2` for CLIP and captag's decoder, GPT-2's `Conv1D` `c_fc`/`c_proj`), and SwiGLU
//! (`down_proj(silu(gate_proj(x)) · up_proj(x))`, Llama/Qwen2, no biases).
use tch::{nn, Tensor};

use super::{sub, Proj};
pub use crate::config::clip::Activation;

// The enum is a config value (config/clip.rs, shared by config/gpt2.rs); running it is the
// blocks' business.
impl Activation {
    pub fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Activation::QuickGelu => x * (x * 1.702).sigmoid(),
            Activation::Gelu => x.gelu("none"),
            Activation::GeluNew => x.gelu("tanh"),
            Activation::Relu => x.relu(),
            Activation::Silu => x.silu(),
        }
    }
}

/// A two-layer feed-forward block's shape and names.
#[derive(Debug, Clone)]
pub struct MlpConfig {
    pub d: i64,
    pub hidden: i64,
    pub act: Activation,
    /// Between the activation and the second layer, in training.
    pub dropout: f64,
    /// Dotted names of the two layers relative to the block's path.
    pub names: (&'static str, &'static str),
    /// GPT-2's `Conv1D` layout instead of `nn.Linear`.
    pub conv1d: bool,
}

impl MlpConfig {
    /// `fc1`/`fc2` `nn.Linear`s with biases, no dropout.
    pub fn new(d: i64, hidden: i64, act: Activation) -> Self {
        MlpConfig {
            d,
            hidden,
            act,
            dropout: 0.0,
            names: ("fc1", "fc2"),
            conv1d: false,
        }
    }

    pub fn dropout(self, dropout: f64) -> Self {
        MlpConfig { dropout, ..self }
    }

    /// GPT-2's `mlp.c_fc` / `mlp.c_proj` (`Conv1D`).
    pub fn gpt2(self) -> Self {
        MlpConfig {
            names: ("c_fc", "c_proj"),
            conv1d: true,
            ..self
        }
    }
}

#[derive(Debug)]
pub struct Mlp {
    fc1: Proj,
    fc2: Proj,
    act: Activation,
    dropout: f64,
}

impl Mlp {
    pub fn new(p: nn::Path, c: &MlpConfig) -> Self {
        let proj = |name: &str, d_in: i64, d_out: i64| {
            if c.conv1d {
                Proj::conv1d(sub(&p, name), d_in, d_out)
            } else {
                Proj::linear(sub(&p, name), d_in, d_out, true)
            }
        };
        Mlp {
            fc1: proj(c.names.0, c.d, c.hidden),
            fc2: proj(c.names.1, c.hidden, c.d),
            act: c.act,
            dropout: c.dropout,
        }
    }

    /// `(…, d)` ⇒ `(…, d)`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = self.act.apply(&self.fc1.forward(x)); // (…, hidden)
        self.fc2.forward(&h.dropout(self.dropout, train))
    }
}

/// Llama's and Qwen2's `mlp`: `gate_proj`, `up_proj`, `down_proj`, no biases, SiLU gate.
#[derive(Debug)]
pub struct SwiGlu {
    gate_proj: Proj,
    up_proj: Proj,
    down_proj: Proj,
}

impl SwiGlu {
    pub fn new(p: nn::Path, d: i64, hidden: i64) -> Self {
        SwiGlu {
            gate_proj: Proj::linear(&p / "gate_proj", d, hidden, false),
            up_proj: Proj::linear(&p / "up_proj", d, hidden, false),
            down_proj: Proj::linear(&p / "down_proj", hidden, d, false),
        }
    }

    /// `gate_proj`, `up_proj` or `down_proj`, for adapters (LoRA) that wrap it.
    pub fn proj_mut(&mut self, name: &str) -> Option<&mut Proj> {
        match name {
            "gate_proj" => Some(&mut self.gate_proj),
            "up_proj" => Some(&mut self.up_proj),
            "down_proj" => Some(&mut self.down_proj),
            _ => None,
        }
    }

    /// `(…, d)` ⇒ `(…, d)`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let g = self.gate_proj.forward(x).silu() * self.up_proj.forward(x); // (…, hidden)
        self.down_proj.forward(&g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn swiglu_is_down_of_silu_gate_times_up() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = SwiGlu::new(vs.root() / "mlp", 4, 6);
        let x = Tensor::randn([2, 4], (Kind::Float, Device::Cpu));
        let w = |n: &str| vs.variables()[&format!("mlp.{n}.weight")].shallow_clone();
        let g = x.matmul(&w("gate_proj").tr());
        let want = ((&g * g.sigmoid()) * x.matmul(&w("up_proj").tr())).matmul(&w("down_proj").tr());
        assert!((m.forward(&x) - want).abs().max().double_value(&[]) < 1e-6);
    }
}
