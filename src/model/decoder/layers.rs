//! Layers the attention and transformer decoders share: multi-head scaled dot-product attention
//! with separate q/k/v/out projections (the names PyTorch and Hugging Face use), the pre-LN
//! feed-forward block, and sinusoidal positions (Vaswani et al. 2017).
use tch::{nn, Kind, Tensor};

#[derive(Debug)]
pub struct MultiHead {
    q_proj: nn::Linear,
    k_proj: nn::Linear,
    v_proj: nn::Linear,
    out_proj: nn::Linear,
    heads: i64,
    dropout: f64,
}

impl MultiHead {
    /// `d` model width, `kv_in` width of the keys/values' source.
    pub fn new(p: nn::Path, d: i64, kv_in: i64, heads: i64, dropout: f64) -> Self {
        let c = Default::default;
        MultiHead {
            q_proj: nn::linear(&p / "q_proj", d, d, c()),
            k_proj: nn::linear(&p / "k_proj", kv_in, d, c()),
            v_proj: nn::linear(&p / "v_proj", kv_in, d, c()),
            out_proj: nn::linear(&p / "out_proj", d, d, c()),
            heads,
            dropout,
        }
    }

    /// `(B, T, D)` ⇒ `(B, heads, T, D/heads)`.
    fn split(&self, x: &Tensor) -> Tensor {
        let (b, t, d) = x.size3().unwrap_or((0, 0, 0));
        x.view([b, t, self.heads, d / self.heads]).transpose(1, 2)
    }

    /// Keys and values of `src (B, S, kv_in)`, split into heads: `(B, h, S, dh)` each.
    pub fn keys_values(&self, src: &Tensor) -> (Tensor, Tensor) {
        (
            self.split(&src.apply(&self.k_proj)),
            self.split(&src.apply(&self.v_proj)),
        )
    }

    /// Queries `x (B, T, D)` against split keys/values `(B, h, S, dh)`; `mask` `(T, S)` is
    /// added to the scores (−∞ hides a key). Returns `(B, T, D)`.
    pub fn attend(
        &self,
        x: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let (b, t, d) = x.size3().unwrap_or((0, 0, 0));
        let q = self.split(&x.apply(&self.q_proj)); // (B, h, T, dh)
        let scale = 1.0 / ((d / self.heads) as f64).sqrt();
        let mut scores = q.matmul(&k.transpose(-2, -1)) * scale; // (B, h, T, S)
        if let Some(m) = mask {
            scores += m;
        }
        let w = scores.softmax(-1, Kind::Float).dropout(self.dropout, train); // (B, h, T, S)
        w.matmul(v) // (B, h, T, dh)
            .transpose(1, 2)
            .contiguous()
            .view([b, t, d])
            .apply(&self.out_proj)
    }
}

/// `Linear → GELU → dropout → Linear`.
#[derive(Debug)]
pub struct FeedForward {
    fc1: nn::Linear,
    fc2: nn::Linear,
    dropout: f64,
}

impl FeedForward {
    pub fn new(p: nn::Path, d: i64, ff: i64, dropout: f64) -> Self {
        FeedForward {
            fc1: nn::linear(&p / "fc1", d, ff, Default::default()),
            fc2: nn::linear(&p / "fc2", ff, d, Default::default()),
            dropout,
        }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.fc1)
            .gelu("none")
            .dropout(self.dropout, train)
            .apply(&self.fc2)
    }
}

/// `(T, D)` sinusoidal position table: sin on even, cos on odd dimensions.
pub fn sinusoidal(len: i64, d: i64) -> Tensor {
    let pos = Tensor::arange(len, (Kind::Float, tch::Device::Cpu)).unsqueeze(1); // (T, 1)
    let i = Tensor::arange_start_step(0, d, 2, (Kind::Float, tch::Device::Cpu)); // (D/2,)
    let freq = (i * (-(10000f64.ln()) / d as f64)).exp(); // (D/2,)
    let angle = pos * freq.unsqueeze(0); // (T, D/2)
    Tensor::stack(&[angle.sin(), angle.cos()], 2).view([len, d]) // interleaved (T, D)
}

/// `(T, T)` additive causal mask: 0 on and below the diagonal, −∞ above.
pub fn causal_mask(t: i64, device: tch::Device) -> Tensor {
    Tensor::full([t, t], f64::NEG_INFINITY, (Kind::Float, device)).triu(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_mask_hides_the_future_only() {
        let m = causal_mask(3, tch::Device::Cpu);
        assert_eq!(m.double_value(&[0, 0]), 0.0);
        assert_eq!(m.double_value(&[2, 1]), 0.0);
        assert_eq!(m.double_value(&[0, 1]), f64::NEG_INFINITY);
    }

    #[test]
    fn sinusoidal_matches_the_formula() {
        let t = sinusoidal(5, 4);
        let want = (3.0f64 / 10000f64.powf(2.0 / 4.0)).cos();
        assert!((t.double_value(&[3, 3]) - want).abs() < 1e-6);
        assert!((t.double_value(&[3, 0]) - 3.0f64.sin()).abs() < 1e-6);
    }
}
