//! Normalisations: LayerNorm (PyTorch's, with the folder's epsilon) and RMSNorm (Llama/Qwen2:
//! `x / √(mean(x²) + ε) · weight`, computed in float32 as `transformers` does).
use tch::{nn, Kind, Tensor};

/// `nn.LayerNorm(d, eps)` under `p` (`weight`, `bias`).
pub fn layer_norm(p: nn::Path, d: i64, eps: f64) -> LayerNorm {
    LayerNorm {
        weight: p.var("weight", &[d], nn::Init::Const(1.0)),
        bias: p.var("bias", &[d], nn::Init::Const(0.0)),
        d,
        eps,
    }
}

/// PyTorch's LayerNorm, computed in float32 whenever the input or the weights are 16-bit (as
/// CUDA's autocast does for `layer_norm`; CPU autocast would refuse the mixed types), so a
/// model whose weights were cast for `--precision bf16` normalises exactly as in training.
#[derive(Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    d: i64,
    eps: f64,
}

impl nn::Module for LayerNorm {
    /// `x (…, d)` ⇒ `(…, d)`: `x`'s dtype in float32, float32 otherwise.
    fn forward(&self, x: &Tensor) -> Tensor {
        let (w, b) = (&self.weight, &self.bias);
        if x.kind() == Kind::Float && w.kind() == Kind::Float {
            x.layer_norm([self.d], Some(w), Some(b), self.eps, true)
        } else {
            let f = |t: &Tensor| t.to_kind(Kind::Float);
            f(x).layer_norm([self.d], Some(f(w)), Some(f(b)), self.eps, true)
        }
    }
}

/// `LlamaRMSNorm` / `Qwen2RMSNorm` under `p` (`weight`, initialised to 1).
#[derive(Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(p: nn::Path, d: i64, eps: f64) -> Self {
        RmsNorm {
            weight: p.var("weight", &[d], nn::Init::Const(1.0)),
            eps,
        }
    }

    /// `x (…, d)` ⇒ `(…, d)` in `x`'s dtype.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let h = x.to_kind(Kind::Float);
        let var = h.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float); // (…, 1)
        (h * (var + self.eps).rsqrt()).to_kind(kind) * &self.weight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_matches_the_formula() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let n = RmsNorm::new(vs.root() / "n", 4, 1e-6);
        let x = Tensor::from_slice(&[1.0f32, -2.0, 3.0, -4.0]).view([1, 4]);
        let rms = ((1.0 + 4.0 + 9.0 + 16.0) / 4.0f64 + 1e-6).sqrt();
        let y = n.forward(&x);
        assert!((y.double_value(&[0, 2]) - 3.0 / rms).abs() < 1e-6);
    }
}
