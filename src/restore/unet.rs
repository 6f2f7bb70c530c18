//! The two restoration networks and their losses (docs/ARCHITECTURE.md, "Restoration"):
//!
//! - [`MaskUNet`]: a U-Net (Ronneberger et al. 2015, with batch norm) from the damaged photo to one logit
//!   per pixel, "damaged"; trained with BCE + Dice, because damage covers a few percent of the
//!   pixels and BCE alone settles for predicting "clean" everywhere.
//! - [`PConvUNet`]: the partial-convolution U-Net of Liu et al. 2018 (stride-2 partial
//!   convolutions down, nearest upsampling + skip concatenation + partial convolutions up, the
//!   input image and mask concatenated before the last layer), scaled down: `depth` levels of
//!   `channels·2^i` (at most 8×) channels, kernels 7, 5, then 3 as in the paper. Its loss is the
//!   paper's valid and hole L1 and total variation over the hole's 1-px dilation, plus the
//!   perceptual and style terms when a frozen feature network is given ([`Perceptual`]).
//!
//! Both take images in `[0, 1]` (`[B, 3, H, W]`, H and W multiples of `2^depth`) and scale them
//! to `[-1, 1]` inside; the inpainter's output is in `[0, 1]` units (unclamped).
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Tensor};

use super::pconv::PartialConv2d;

/// Sizes of both networks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    /// Side (px) images are trained and restored at; a multiple of `2^depth` of both networks.
    pub size: u32,
    pub mask_channels: i64,
    pub mask_depth: usize,
    pub inpaint_channels: i64,
    pub inpaint_depth: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            size: 128,
            mask_channels: 16,
            mask_depth: 4,
            inpaint_channels: 16,
            inpaint_depth: 5,
        }
    }
}

impl NetConfig {
    pub fn validate(&self) -> crate::Result<()> {
        let need = 1u32 << self.mask_depth.max(self.inpaint_depth).min(16);
        if self.mask_depth == 0
            || self.inpaint_depth == 0
            || self.mask_depth > 8
            || self.inpaint_depth > 8
        {
            return Err(crate::Error::invalid(format!(
                "restore: network depths must be 1..=8 (got mask {}, inpaint {})",
                self.mask_depth, self.inpaint_depth
            )));
        }
        if self.size == 0 || !self.size.is_multiple_of(need) || self.size > 4096 {
            return Err(crate::Error::invalid(format!(
                "--size {}: must be a positive multiple of {need} (2^depth) up to 4096",
                self.size
            )));
        }
        if self.mask_channels < 1 || self.inpaint_channels < 1 {
            return Err(crate::Error::invalid("restore: channel counts must be ≥ 1"));
        }
        self.check_memory(1, false)
    }

    /// Refuses networks (and a training batch of them) that cannot fit in this machine's
    /// memory, naming the flags (`config::budget`). Both U-Nets have up to 8× their base
    /// channels per level and 3×3 kernels (the inpainter's first two are larger); a level's
    /// activations hold its channels at its resolution, forward and backward.
    pub fn check_memory(&self, batch: usize, training: bool) -> crate::Result<()> {
        use crate::config::budget::{self, product as p};
        let s = self.size as i64;
        let net = |c: i64, depth: usize| {
            let widest = c.saturating_mul(8);
            let params = p(&[2, depth as i64 + 1, 49, widest, widest]);
            let acts = p(&[batch.max(1) as i64, widest, s, s, 4]);
            (params, acts)
        };
        let (pm, am) = net(self.mask_channels, self.mask_depth);
        let (pi, ai) = net(self.inpaint_channels, self.inpaint_depth);
        let weights =
            budget::f32s(pm.saturating_add(pi)).saturating_mul(if training { 4 } else { 1 });
        let need = weights.saturating_add(budget::f32s(am.saturating_add(ai)));
        budget::check(need, || {
            let batch = if training {
                format!(", --batch-size {batch}")
            } else {
                String::new()
            };
            format!(
                "restoring at --size {} with --mask-channels {} and --inpaint-channels {}{batch}",
                self.size, self.mask_channels, self.inpaint_channels
            )
        })
    }
}

fn conv3(p: nn::Path, i: i64, o: i64) -> nn::Conv2D {
    nn::conv2d(
        p,
        i,
        o,
        3,
        nn::ConvConfig {
            padding: 1,
            ..Default::default()
        },
    )
}

fn up2(x: &Tensor) -> Tensor {
    let s = x.size();
    x.upsample_nearest2d([s[2] * 2, s[3] * 2], None, None)
}

/// Two 3×3 conv + batch norm + ReLU.
#[derive(Debug)]
struct Block {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
}

impl Block {
    fn new(p: nn::Path, i: i64, o: i64) -> Self {
        Block {
            conv1: conv3(&p / "conv1", i, o),
            bn1: nn::batch_norm2d(&p / "bn1", o, Default::default()),
            conv2: conv3(&p / "conv2", o, o),
            bn2: nn::batch_norm2d(&p / "bn2", o, Default::default()),
        }
    }
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = x.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        x.apply(&self.conv2).apply_t(&self.bn2, train).relu()
    }
}

/// Damage detector: damaged image ⇒ per-pixel logit of "damaged".
#[derive(Debug)]
pub struct MaskUNet {
    down: Vec<Block>,
    up: Vec<Block>,
    head: nn::Conv2D,
}

impl MaskUNet {
    pub fn new(p: nn::Path, c: i64, depth: usize) -> Self {
        let ch = |i: usize| c * (1 << i.min(3));
        let down = (0..=depth)
            .map(|i| Block::new(&p / "down" / i, if i == 0 { 3 } else { ch(i - 1) }, ch(i)))
            .collect();
        let up = (0..depth)
            .map(|i| Block::new(&p / "up" / i, ch(i + 1) + ch(i), ch(i)))
            .collect();
        MaskUNet {
            down,
            up,
            head: nn::conv2d(&p / "head", c, 1, 1, Default::default()),
        }
    }

    /// `img [B, 3, H, W]` in [0, 1] ⇒ logits `[B, 1, H, W]`.
    pub fn forward_t(&self, img: &Tensor, train: bool) -> Tensor {
        let mut x = img * 2.0 - 1.0;
        let mut skips = vec![];
        for (i, b) in self.down.iter().enumerate() {
            if i > 0 {
                x = x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            }
            x = b.forward_t(&x, train);
            skips.push(x.shallow_clone());
        }
        skips.pop(); // the bottleneck is `x` itself
        for (b, skip) in self.up.iter().zip(skips).rev() {
            x = b.forward_t(&Tensor::cat(&[up2(&x), skip], 1), train);
        }
        self.head.forward(&x)
    }
}

/// Inpainter: damaged image + validity mask ⇒ restored image.
#[derive(Debug)]
pub struct PConvUNet {
    down: Vec<PartialConv2d>,
    up: Vec<PartialConv2d>,
    /// Channels out of encoder level `i` (`ch[0]` = 3, the image).
    ch: Vec<i64>,
}

impl PConvUNet {
    pub fn new(p: nn::Path, c: i64, depth: usize) -> Self {
        let mut ch = vec![3];
        for i in 0..depth {
            ch.push(c * (1 << i.min(3)));
        }
        let down = (0..depth)
            .map(|i| {
                let k = match i {
                    0 => 7,
                    1 => 5,
                    _ => 3,
                };
                PartialConv2d::new(&p / "down" / i, ch[i], ch[i + 1], k, 2, 1)
            })
            .collect();
        // Decoder layer i takes level i+1 upsampled (its output width, `ch[i+1]` at the bottom)
        // and the skip of level i, and gives `ch[i]` channels (3 for i = 0: the image).
        let up = (0..depth)
            .map(|i| {
                let from = if i + 1 == depth { ch[depth] } else { ch[i + 1] };
                let cin = from + ch[i];
                PartialConv2d::new(&p / "up" / i, cin, ch[i], 3, 1, cin)
            })
            .collect();
        PConvUNet { down, up, ch }
    }

    /// `img [B, 3, H, W]` in [0, 1] (hole pixels may hold anything), `valid [B, 1, H, W]`
    /// (1 = known) ⇒ the predicted image `[B, 3, H, W]` in [0, 1] units. Callers composite:
    /// known pixels from the input, holes from the prediction.
    pub fn forward_t(&self, img: &Tensor, valid: &Tensor, _train: bool) -> Tensor {
        let x0 = (img * 2.0 - 1.0) * valid;
        let mut feats = vec![(x0.shallow_clone(), valid.shallow_clone())];
        let (mut x, mut m) = (x0, valid.shallow_clone());
        for layer in &self.down {
            let (y, m2) = layer.forward(&x, &m);
            x = y.relu();
            m = m2;
            feats.push((x.shallow_clone(), m.shallow_clone()));
        }
        feats.pop(); // the bottleneck is `x`
        for (i, layer) in self.up.iter().enumerate().rev() {
            let (skip, skip_m) = &feats[i];
            let (ux, um) = (up2(&x), up2(&m));
            let cu = ux.size()[1];
            let xin = Tensor::cat(&[&ux, skip], 1);
            let min = Tensor::cat(
                &[
                    um.expand([-1, cu, -1, -1], false),
                    skip_m.expand([-1, self.ch[i], -1, -1], false),
                ],
                1,
            );
            let (y, m2) = layer.forward(&xin, &min);
            x = if i == 0 { y } else { y.leaky_relu() };
            m = m2;
        }
        (x + 1.0) * 0.5
    }
}

/// `mean(BCE) + Dice loss` of logits `[B, 1, H, W]` against the true hole mask (1 = damaged).
pub fn mask_loss(logits: &Tensor, hole: &Tensor) -> Tensor {
    let bce =
        logits.binary_cross_entropy_with_logits::<Tensor>(hole, None, None, tch::Reduction::Mean);
    let p = logits.sigmoid();
    let inter = (&p * hole).sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float); // [B]
    let total = p.sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float)
        + hole.sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float);
    let dice: Tensor = (inter * 2.0 + 1.0) / (total + 1.0);
    let dice_loss: Tensor = (1.0f64 - dice).mean(Kind::Float);
    bce + dice_loss
}

/// The loss terms of one inpainting batch (each already weighted; `total` is their sum).
pub struct InpaintLoss {
    pub total: Tensor,
    pub valid: Tensor,
    pub hole: Tensor,
    pub tv: Tensor,
    pub perceptual: Option<Tensor>,
    pub style: Option<Tensor>,
}

/// Liu et al.'s weights: valid 1, hole 6, perceptual 0.05, style 120, total variation 0.1.
pub const W_HOLE: f64 = 6.0;
pub const W_TV: f64 = 0.1;
pub const W_PERCEPTUAL: f64 = 0.05;
pub const W_STYLE: f64 = 120.0;

/// `out`, `gt [B, 3, H, W]` in [0, 1], `valid [B, 1, H, W]` ⇒ valid L1 + 6·hole L1 + 0.1·TV of
/// the composite over the hole's 1-px dilation, + perceptual and style terms with `features`.
/// L1 terms are means over all `B·3·H·W` elements, as in the paper.
pub fn inpaint_loss(
    out: &Tensor,
    gt: &Tensor,
    valid: &Tensor,
    features: Option<&Perceptual>,
) -> InpaintLoss {
    let hole_m = 1.0f64 - valid;
    let diff = (out - gt).abs(); // [B, 3, H, W]
    let l_valid = (&diff * valid).mean(Kind::Float);
    let l_hole = (&diff * &hole_m).mean(Kind::Float) * W_HOLE;
    let comp = gt * valid + out * &hole_m;
    // The region P: holes dilated by one pixel (3×3 max).
    let region = hole_m.max_pool2d([3, 3], [1, 1], [1, 1], [1, 1], false); // [B, 1, H, W]
    let (h, w) = (comp.size()[2], comp.size()[3]);
    let dx = (comp.narrow(3, 1, w - 1) - comp.narrow(3, 0, w - 1)).abs()
        * region
            .narrow(3, 1, w - 1)
            .maximum(&region.narrow(3, 0, w - 1));
    let dy = (comp.narrow(2, 1, h - 1) - comp.narrow(2, 0, h - 1)).abs()
        * region
            .narrow(2, 1, h - 1)
            .maximum(&region.narrow(2, 0, h - 1));
    let n = comp.numel() as f64;
    let l_tv = (dx.sum(Kind::Float) + dy.sum(Kind::Float)) * (W_TV / n);
    let (perceptual, style) = match features {
        Some(f) => {
            let (p, s) = f.loss(out, &comp, gt);
            (Some(p * W_PERCEPTUAL), Some(s * W_STYLE))
        }
        None => (None, None),
    };
    let mut total = &l_valid + &l_hole + &l_tv;
    if let (Some(p), Some(s)) = (&perceptual, &style) {
        total = total + p + s;
    }
    InpaintLoss {
        total,
        valid: l_valid,
        hole: l_hole,
        tv: l_tv,
        perceptual,
        style,
    }
}

/// The perceptual and style terms over a frozen SqueezeNet 1.1's activations (the captioner's
/// pretrained encoder, in its own frozen store): after conv1, fire3 and fire5 (the paper uses
/// VGG16's pool1..3, which are not available here).
pub struct Perceptual {
    net: crate::model::cnn::SqueezeNet,
    _vs: nn::VarStore,
}

impl Perceptual {
    pub fn new(weights: &std::path::Path, device: tch::Device) -> crate::Result<Perceptual> {
        let mut vs = nn::VarStore::new(device);
        let net = crate::model::cnn::SqueezeNet::new(vs.root());
        crate::model::weights::load_vars(&mut vs, weights)?;
        vs.freeze();
        Ok(Perceptual { net, _vs: vs })
    }

    /// Caffe-mode input (`docs/ARCHITECTURE.md`, "Features": BGR, 0..255, mean subtracted).
    fn taps(&self, img: &Tensor) -> Vec<Tensor> {
        let mean = Tensor::from_slice(&[103.939f32, 116.779, 123.68])
            .view([1, 3, 1, 1])
            .to_device(img.device());
        let bgr = img.flip([1]) * 255.0 - mean;
        self.net.taps(&bgr)
    }

    /// (Σ over taps of mean |φ(out) − φ(gt)| + mean |φ(comp) − φ(gt)|, Σ of the same on Gram
    /// matrices normalised by C·H·W). Each tap is divided by the mean |φ(gt)| of its batch: the
    /// Caffe-scale SqueezeNet activations are in the hundreds, and without this the paper's
    /// weights (set for VGG16 on ImageNet-normalised input) would drown the L1 terms.
    fn loss(&self, out: &Tensor, comp: &Tensor, gt: &Tensor) -> (Tensor, Tensor) {
        let fg: Vec<Tensor> = tch::no_grad(|| self.taps(gt));
        let (fo, fc) = (self.taps(out), self.taps(comp));
        let gram = |f: &Tensor| {
            let s = f.size();
            let (b, c, n) = (s[0], s[1], s[2] * s[3]);
            let f = f.view([b, c, n]);
            f.bmm(&f.transpose(1, 2)) / (c * n) as f64 // [B, C, C]
        };
        let mut perc = Tensor::zeros([], (Kind::Float, out.device()));
        let mut style = Tensor::zeros([], (Kind::Float, out.device()));
        for ((o, c), g) in fo.iter().zip(&fc).zip(&fg) {
            let scale = g.abs().mean(Kind::Float).clamp_min(1e-6).detach();
            let (o, c, g) = (o / &scale, c / &scale, g / &scale);
            perc = perc + (&o - &g).abs().mean(Kind::Float) + (&c - &g).abs().mean(Kind::Float);
            let gg = gram(&g);
            style = style
                + (gram(&o) - &gg).abs().mean(Kind::Float)
                + (gram(&c) - &gg).abs().mean(Kind::Float);
        }
        (perc, style)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device};

    #[test]
    fn shapes_and_hole_independence() {
        let vs = VarStore::new(Device::Cpu);
        let m = MaskUNet::new(vs.root() / "mask", 4, 3);
        let p = PConvUNet::new(vs.root() / "inpaint", 4, 4);
        let img = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        assert_eq!(m.forward_t(&img, false).size(), vec![2, 1, 32, 32]);
        let valid = Tensor::ones([2, 1, 32, 32], (Kind::Float, Device::Cpu));
        let _ = valid.narrow(2, 8, 8).narrow(3, 8, 8).fill_(0.0);
        let out = p.forward_t(&img, &valid, false);
        assert_eq!(out.size(), vec![2, 3, 32, 32]);
        // What lies under the hole never reaches the output.
        let other = &img * &valid + (1.0f64 - &valid) * 0.77;
        let out2 = p.forward_t(&other, &valid, false);
        assert!(f64::try_from((out - out2).abs().max()).unwrap() < 1e-6);
    }

    #[test]
    fn losses_are_zero_for_perfect_predictions_and_positive_otherwise() {
        let gt = Tensor::rand([1, 3, 8, 8], (Kind::Float, Device::Cpu));
        let valid = Tensor::ones([1, 1, 8, 8], (Kind::Float, Device::Cpu));
        let _ = valid.narrow(2, 2, 3).narrow(3, 2, 3).fill_(0.0);
        let exact = inpaint_loss(&gt, &gt, &valid, None);
        assert!(f64::try_from(&exact.valid).unwrap() == 0.0);
        assert!(f64::try_from(&exact.hole).unwrap() == 0.0);
        // Off by 0.1 in the 9 hole pixels only: hole L1 = 6 · 0.1 · 27 / 192.
        let off = &gt + (1.0f64 - &valid) * 0.1;
        let l = inpaint_loss(&off, &gt, &valid, None);
        assert!(f64::try_from(&l.valid).unwrap().abs() < 1e-7);
        let want = 6.0 * 0.1 * 27.0 / 192.0;
        assert!((f64::try_from(&l.hole).unwrap() - want).abs() < 1e-5);
        let hole = 1.0f64 - &valid;
        let good = mask_loss(&((&hole * 2.0 - 1.0) * 30.0), &hole);
        let bad = mask_loss(&((&hole * 2.0 - 1.0) * -30.0), &hole);
        assert!(f64::try_from(&good).unwrap() < 0.01);
        assert!(f64::try_from(&bad).unwrap() > 1.0);
    }

    #[test]
    fn bad_sizes_are_refused() {
        let mut c = NetConfig::default();
        assert!(c.validate().is_ok());
        c.size = 100;
        assert!(c.validate().is_err());
        c.size = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn perceptual_and_style_terms_vanish_only_for_the_truth() {
        // Random SqueezeNet weights under torchvision names stand in for the pretrained ones.
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("sq.safetensors");
        let vs = VarStore::new(Device::Cpu);
        let _net = crate::model::cnn::SqueezeNet::new(vs.root());
        crate::model::weights::save_vars(&vs, &w).unwrap();
        let f = Perceptual::new(&w, Device::Cpu).unwrap();
        let gt = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let valid = Tensor::ones([2, 1, 32, 32], (Kind::Float, Device::Cpu));
        let _ = valid.narrow(2, 4, 10).narrow(3, 4, 10).fill_(0.0);
        let same = inpaint_loss(&gt, &gt, &valid, Some(&f));
        let p = f64::try_from(same.perceptual.as_ref().unwrap()).unwrap();
        let st = f64::try_from(same.style.as_ref().unwrap()).unwrap();
        assert!(p.abs() < 1e-6 && st.abs() < 1e-6, "{p} {st}");
        let off = &gt * &valid + (1.0f64 - &valid) * 0.5;
        let l = inpaint_loss(&off, &gt, &valid, Some(&f));
        assert!(f64::try_from(l.perceptual.as_ref().unwrap()).unwrap() > 0.0);
        assert!(f64::try_from(l.style.as_ref().unwrap()).unwrap() > 0.0);
        let parts = f64::try_from(&l.valid + &l.hole + &l.tv).unwrap()
            + f64::try_from(l.perceptual.unwrap()).unwrap()
            + f64::try_from(l.style.unwrap()).unwrap();
        assert!((f64::try_from(&l.total).unwrap() - parts).abs() < 1e-4 * parts.max(1.0));
    }
}
