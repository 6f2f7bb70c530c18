//! Positions: the sinusoidal table (Vaswani et al. 2017) and rotary embeddings (Su et al. 2021)
//! in the rotate-half convention `transformers` uses for Llama and Qwen2 (the two halves of a
//! head, not interleaved pairs), with `rope_theta` as the base.
use tch::{Device, Kind, Tensor};

/// `(T, D)` sinusoidal position table: sin on even, cos on odd dimensions.
pub fn sinusoidal(len: i64, d: i64) -> Tensor {
    let pos = Tensor::arange(len, (Kind::Float, Device::Cpu)).unsqueeze(1); // (T, 1)
    let i = Tensor::arange_start_step(0, d, 2, (Kind::Float, Device::Cpu)); // (D/2,)
    let freq = (i * (-(10000f64.ln()) / d as f64)).exp(); // (D/2,)
    let angle = pos * freq.unsqueeze(0); // (T, D/2)
    Tensor::stack(&[angle.sin(), angle.cos()], 2).view([len, d]) // interleaved (T, D)
}

/// Rotary position embedding of heads of width `head_dim`: position `m` rotates the pair
/// `(x_i, x_{i + hd/2})` by `m · θ^(−2i/hd)`.
#[derive(Debug)]
pub struct Rotary {
    /// `(hd/2,)` float32.
    inv_freq: Tensor,
}

impl Rotary {
    pub fn new(head_dim: i64, theta: f64, device: Device) -> Self {
        let i = Tensor::arange_start_step(0, head_dim, 2, (Kind::Double, device)); // (hd/2,)
        let inv_freq = (i * (-theta.ln() / head_dim as f64))
            .exp()
            .to_kind(Kind::Float);
        Rotary { inv_freq }
    }

    /// `x (B, h, T, hd)` at positions `offset..offset + T` ⇒ rotated `(B, h, T, hd)`.
    pub fn apply(&self, x: &Tensor, offset: i64) -> Tensor {
        let t = x.size()[2];
        let pos = Tensor::arange_start(offset, offset + t, (Kind::Int64, x.device())); // (T,)
        self.at(&pos, x.kind()).apply(x)
    }

    /// The angles of `positions` — `(T,)` shared by the batch, or `(B, T)` per row (left-padded
    /// batches) — computed once per forward pass and used by every layer.
    pub fn at(&self, positions: &Tensor, kind: Kind) -> RopeAt {
        let pos = positions.to_kind(Kind::Float).unsqueeze(-1); // (…, T, 1)
        let freqs = pos * self.inv_freq.to_device(positions.device()); // (…, T, hd/2)
        let emb = Tensor::cat(&[&freqs, &freqs], -1); // (…, T, hd)
        let emb = if emb.dim() == 2 {
            emb.unsqueeze(0).unsqueeze(0) // (1, 1, T, hd)
        } else {
            emb.unsqueeze(1) // (B, 1, T, hd)
        };
        RopeAt {
            cos: emb.cos().to_kind(kind),
            sin: emb.sin().to_kind(kind),
        }
    }
}

/// Rotary angles for one forward pass: `cos` and `sin` of shape `(1 | B, 1, T, hd)`.
#[derive(Debug)]
pub struct RopeAt {
    cos: Tensor,
    sin: Tensor,
}

impl RopeAt {
    /// `x (B, h, T, hd)` ⇒ rotated `(B, h, T, hd)` (`q·cos + rotate_half(q)·sin`).
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let halves = x.chunk(2, -1); // 2 × (B, h, T, hd/2)
        let rotated = Tensor::cat(&[-&halves[1], halves[0].shallow_clone()], -1); // (B, h, T, hd)
        x * &self.cos + rotated * &self.sin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinusoidal_matches_the_formula() {
        let t = sinusoidal(5, 4);
        let want = (3.0f64 / 10000f64.powf(2.0 / 4.0)).cos();
        assert!((t.double_value(&[3, 3]) - want).abs() < 1e-6);
        assert!((t.double_value(&[3, 0]) - 3.0f64.sin()).abs() < 1e-6);
    }

    /// The property rotary embeddings exist for: a query at m and a key at n score by m − n
    /// only, and rotation keeps lengths.
    #[test]
    fn rotary_scores_depend_on_relative_position_only() {
        tch::manual_seed(0);
        let r = Rotary::new(8, 10000.0, Device::Cpu);
        let q = Tensor::randn([1, 1, 1, 8], (Kind::Float, Device::Cpu));
        let k = Tensor::randn([1, 1, 1, 8], (Kind::Float, Device::Cpu));
        let score = |m: i64, n: i64| {
            (r.apply(&q, m) * r.apply(&k, n))
                .sum(Kind::Float)
                .double_value(&[])
        };
        assert!((score(5, 2) - score(13, 10)).abs() < 1e-4);
        assert!((score(5, 2) - score(2, 5)).abs() > 1e-4);
        let norm = |x: &Tensor| x.norm().double_value(&[]);
        assert!((norm(&r.apply(&q, 7)) - norm(&q)).abs() < 1e-5);
        // Position 0 is the identity; the first pair at position 1 turns by θ⁰ = 1 radian.
        assert!((r.apply(&q, 0) - &q).abs().max().double_value(&[]) < 1e-6);
        let x = Tensor::from_slice(&[1.0f32, 0., 0., 0., 0., 0., 0., 0.]).view([1, 1, 1, 8]);
        let y = r.apply(&x, 1);
        assert!((y.double_value(&[0, 0, 0, 0]) - 1f64.cos()).abs() < 1e-6);
        assert!((y.double_value(&[0, 0, 0, 4]) - 1f64.sin()).abs() < 1e-6);
    }
}
