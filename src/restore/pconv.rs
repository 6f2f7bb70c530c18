//! Partial convolution (Liu et al., "Image Inpainting for Irregular Holes Using Partial
//! Convolutions", ECCV 2018): a convolution that sees only the valid pixels of its window and
//! re-normalises for the ones it cannot see,
//!
//! ```text
//! x' = Wᵀ(X ⊙ M) · sum(1)/sum(M) + b   if sum(M) > 0,   else 0
//! m' = 1                               if sum(M) > 0,   else 0
//! ```
//!
//! Why: an ordinary convolution over a hole filled with some placeholder value learns from the
//! placeholder, which shows as colour casts and blur at the hole; here a window's output depends
//! only on the real pixels in it, and the hole shrinks layer by layer (the mask update) until it
//! is gone. The input mask has one channel shared by all input channels (`[B, 1, H, W]`, 1 =
//! valid) or one per input channel (`[B, C, H, W]`: the decoder's concatenated skip and
//! upsampled features, each with its own mask); `sum(1)/sum(M)` runs over the whole C×k×k
//! window either way, and the updated mask has one channel. Zero padding counts as hole.
use tch::{nn, Tensor};

/// One partial-convolution layer: `new(p, cin, cout, k, stride, mask_channels)` with padding
/// `k / 2`; `mask_channels` is 1 or `cin`.
#[derive(Debug)]
pub struct PartialConv2d {
    pub weight: Tensor,
    pub bias: Tensor,
    ones: Tensor,
    stride: i64,
    padding: i64,
    area: f64,
}

impl PartialConv2d {
    pub fn new(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, mask_channels: i64) -> Self {
        let weight = p.var(
            "weight",
            &[cout, cin, k, k],
            nn::init::DEFAULT_KAIMING_UNIFORM,
        );
        let bias = p.zeros("bias", &[cout]);
        PartialConv2d {
            weight,
            bias,
            ones: Tensor::ones([1, mask_channels, k, k], (tch::Kind::Float, p.device())),
            stride,
            padding: k / 2,
            area: (mask_channels * k * k) as f64,
        }
    }

    /// `x [B, C, H, W]`, `mask [B, 1 or C, H, W]` (1 = valid) ⇒ (`[B, C', H', W']`, updated mask
    /// `[B, 1, H', W']`).
    pub fn forward(&self, x: &Tensor, mask: &Tensor) -> (Tensor, Tensor) {
        let (s, p) = ([self.stride; 2], [self.padding; 2]);
        let raw = (x * mask).conv2d::<Tensor>(&self.weight, None, s, p, [1, 1], 1); // [B, C', H', W']
                                                                                    // Valid pixels per window, without gradient: the mask is data, not a parameter.
        let valid = tch::no_grad(|| mask.conv2d::<Tensor>(&self.ones, None, s, p, [1, 1], 1)); // [B, 1, H', W']
        let new_mask = valid.gt(0.0).to_kind(tch::Kind::Float);
        let ratio = (valid.clamp_min(1e-8).reciprocal() * self.area) * &new_mask;
        let out = (raw * &ratio + self.bias.view([1, -1, 1, 1])) * &new_mask;
        (out, new_mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device, Kind};

    fn layer(k: i64, stride: i64, w: &[f32], b: f32) -> (VarStore, PartialConv2d) {
        let vs = VarStore::new(Device::Cpu);
        let mut l = PartialConv2d::new(vs.root() / "pc", 1, 1, k, stride, 1);
        tch::no_grad(|| {
            l.weight.copy_(&Tensor::from_slice(w).view([1, 1, k, k]));
            l.bias.copy_(&Tensor::from_slice(&[b]));
        });
        (vs, l)
    }

    fn t(v: &[f32], h: i64, w: i64) -> Tensor {
        Tensor::from_slice(v).view([1, 1, h, w])
    }

    fn values(x: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(x.flatten(0, -1).to_kind(Kind::Float)).unwrap()
    }

    #[test]
    fn hand_computed_window_renormalises_by_the_valid_share() {
        // 3×3 input, 3×3 kernel of ones, bias 0.5, stride 1, padding 1 (padding is hole).
        let (_vs, l) = layer(3, 1, &[1.0; 9], 0.5);
        let x = t(&[1., 2., 3., 4., 5., 6., 7., 8., 9.], 3, 3);
        let m = t(&[1., 0., 1., 1., 1., 0., 0., 0., 0.], 3, 3);
        let (y, m2) = l.forward(&x, &m);
        let y = values(&y);
        // Centre window: the whole input; valid pixels 1, 3, 4, 5 ⇒ sum 13, 4 of 9 valid ⇒
        // 13 · 9/4 + 0.5 = 29.75.
        assert!((y[4] - 29.75).abs() < 1e-5, "{y:?}");
        // Top-left window (rows -1..=1, cols -1..=1): valid in-image pixels 1, 4, 5 (values
        // 1, 4, 5) ⇒ 10 · 9/3 + 0.5 = 30.5.
        assert!((y[0] - 30.5).abs() < 1e-5, "{y:?}");
        // Bottom-right window: rows 1..=2, cols 1..=2 in the image: only pixel 5 (value 5)
        // is valid ⇒ 5 · 9/1 + 0.5 = 45.5.
        assert!((y[8] - 45.5).abs() < 1e-5, "{y:?}");
        // Every window touches a valid pixel ⇒ the hole is gone.
        assert_eq!(values(&m2), vec![1.0; 9]);
    }

    #[test]
    fn all_hole_window_stays_a_hole_with_zero_output() {
        // 5×5, only the top-left pixel valid; 3×3 kernel: windows centred more than one pixel
        // away see no valid pixel.
        let (_vs, l) = layer(3, 1, &[2.0; 9], -1.0);
        let x = Tensor::ones([1, 1, 5, 5], (Kind::Float, Device::Cpu)) * 7.0;
        let mut mv = vec![0.0f32; 25];
        mv[0] = 1.0;
        let (y, m2) = l.forward(&x, &t(&mv, 5, 5));
        let (y, m2) = (values(&y), values(&m2));
        for r in 0..5 {
            for c in 0..5 {
                let near = r <= 1 && c <= 1;
                assert_eq!(
                    m2[r * 5 + c],
                    if near { 1.0 } else { 0.0 },
                    "mask ({r},{c})"
                );
                if !near {
                    // A hole: 0, not the bias.
                    assert_eq!(y[r * 5 + c], 0.0, "output ({r},{c})");
                }
            }
        }
        // A window seeing only the one valid pixel (7): 2·7 · 9/1 − 1 = 125.
        assert!((y[6] - 125.0).abs() < 1e-4, "{y:?}");
        // The input under the hole does not matter.
        let mut xv = vec![-300.0f32; 25];
        xv[0] = 7.0;
        let x2 = t(&xv, 5, 5);
        let (y2, _) = l.forward(&x2, &t(&mv, 5, 5));
        assert_eq!(values(&y2), y);
    }

    #[test]
    fn full_mask_is_an_ordinary_convolution_inside_and_stride_halves() {
        let (_vs, l) = layer(3, 2, &[1., 0., -1., 2., 0., -2., 1., 0., -1.], 0.25);
        let x = Tensor::randn([1, 1, 6, 6], (Kind::Float, Device::Cpu));
        let m = Tensor::ones([1, 1, 6, 6], (Kind::Float, Device::Cpu));
        let (y, m2) = l.forward(&x, &m);
        assert_eq!(y.size(), vec![1, 1, 3, 3]);
        assert_eq!(m2.size(), vec![1, 1, 3, 3]);
        let plain = x.conv2d(&l.weight, Some(&l.bias), [2, 2], [1, 1], [1, 1], 1);
        // Output (1,1) is centred on input (2,2): its window lies inside, so no re-scaling.
        let (a, b) = (values(&y), values(&plain));
        assert!((a[4] - b[4]).abs() < 1e-5);
    }

    #[test]
    fn per_channel_masks_count_every_channel() {
        // Two input channels, 1×1 kernel of ones: channel 0 valid, channel 1 a hole at the
        // pixel ⇒ sum(1)/sum(M) = 2/1, output = (x0·1 + x1·0) · 2 + b.
        let vs = VarStore::new(Device::Cpu);
        let mut l = PartialConv2d::new(vs.root() / "pc", 2, 1, 1, 1, 2);
        tch::no_grad(|| {
            l.weight
                .copy_(&Tensor::from_slice(&[1.0f32, 1.0]).view([1, 2, 1, 1]));
            l.bias.copy_(&Tensor::from_slice(&[0.5f32]));
        });
        let x = Tensor::from_slice(&[3.0f32, 100.0]).view([1, 2, 1, 1]);
        let m = Tensor::from_slice(&[1.0f32, 0.0]).view([1, 2, 1, 1]);
        let (y, m2) = l.forward(&x, &m);
        assert!((values(&y)[0] - 6.5).abs() < 1e-5);
        assert_eq!(values(&m2), vec![1.0]);
        assert_eq!(m2.size(), vec![1, 1, 1, 1]);
    }
}
