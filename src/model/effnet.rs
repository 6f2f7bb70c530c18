//! EfficientNet-Lite (Google's `tensorflow/tpu` `efficientnet/lite`; Tan & Le 2019 made
//! mobile-friendly): EfficientNet-B0's MBConv stages without squeeze-and-excitation, ReLU6
//! instead of swish, stem (32) and head (1280) widths fixed, the first and last stages never
//! repeated for the deeper variants, TensorFlow "SAME" padding, BatchNorm eps 1e-3. Variables
//! carry `efficientnet_pytorch`'s state-dict names (`_conv_stem`, `_bn0`,
//! `_blocks.N.{_expand_conv,_bn0,_depthwise_conv,_bn1,_project_conv,_bn2}`, `_conv_head`,
//! `_bn1`, `_fc`), so the ImageNet weights `make weights` converts load unchanged.
//!
//! The plain-PyTorch reference this is tested against is `notebooks/effnet_lite.py`
//! (`tests/fixtures/effnet/`, written by `notebooks/make_effnet_fixture.py`).
use tch::{nn, Tensor};

/// EfficientNet-B0's stages: (repeats, kernel, stride, expand ratio, in, out).
const STAGES: [(i64, i64, i64, i64, i64, i64); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];
const STEM: i64 = 32;
/// Width of the head convolution: the pooled vector and every grid cell.
pub const HEAD: i64 = 1280;
const BN_EPS: f64 = 1e-3;

/// The two variants whose ImageNet weights exist offline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Lite0,
    Lite2,
}

impl Variant {
    /// (width multiplier, depth multiplier, input size).
    fn scaling(self) -> (f64, f64, u32) {
        match self {
            Variant::Lite0 => (1.0, 1.0, 224),
            Variant::Lite2 => (1.1, 1.2, 260),
        }
    }
    /// The input size the weights were trained at (224 / 260 px).
    pub fn image_size(self) -> u32 {
        self.scaling().2
    }
}

/// `efficientnet_pytorch`'s `round_filters`: `c · width` to a multiple of 8, never more than
/// 10% below.
fn round_filters(c: i64, width: f64) -> i64 {
    let c = c as f64 * width;
    let mut new = (8.0f64).max(((c + 4.0) as i64 / 8 * 8) as f64);
    if new < 0.9 * c {
        new += 8.0;
    }
    new as i64
}

/// TF "SAME" padding of a `k × k`, stride-`s` window over `n` pixels: (before, after). The
/// output is `ceil(n / s)`; the odd pixel goes after.
fn same_pad(n: i64, k: i64, s: i64) -> (i64, i64) {
    let total = (((n + s - 1) / s - 1) * s + k - n).max(0);
    (total / 2, total - total / 2)
}

/// A bias-free convolution with TF "SAME" padding.
#[derive(Debug)]
struct SameConv {
    conv: nn::Conv2D,
    k: i64,
    s: i64,
    groups: i64,
}

impl SameConv {
    fn new(p: nn::Path, i: i64, o: i64, k: i64, s: i64, groups: i64) -> Self {
        let cfg = nn::ConvConfig {
            stride: s,
            groups,
            bias: false,
            ..Default::default()
        };
        SameConv {
            conv: nn::conv2d(p, i, o, k, cfg),
            k,
            s,
            groups,
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let (h, w) = (xs.size()[2], xs.size()[3]);
        let (top, bottom) = same_pad(h, self.k, self.s);
        let (left, right) = same_pad(w, self.k, self.s);
        let c = &self.conv;
        let conv = |x: &Tensor, pad: [i64; 2]| {
            let (s, g) = (self.s, self.groups);
            x.conv2d(&c.ws, c.bs.as_ref(), [s, s], pad, [1, 1], g) // (B, C, ⌈H/s⌉, ⌈W/s⌉)
        };
        if top == bottom && left == right {
            // Symmetric (every stride-1 conv, stride 2 on odd sizes): the convolution's own
            // zero padding, no padded copy of the input.
            return conv(xs, [top, left]);
        }
        conv(&xs.constant_pad_nd([left, right, top, bottom]), [0, 0])
    }
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    let cfg = nn::BatchNormConfig {
        eps: BN_EPS,
        ..Default::default()
    };
    nn::batch_norm2d(p, c, cfg)
}

/// One inverted-residual block (MBConv) without squeeze-and-excitation.
#[derive(Debug)]
struct MbConv {
    /// Absent for expand ratio 1 (the first stage).
    expand: Option<(SameConv, nn::BatchNorm)>,
    depthwise: SameConv,
    bn1: nn::BatchNorm,
    project: SameConv,
    bn2: nn::BatchNorm,
    skip: bool,
}

impl MbConv {
    fn new(p: nn::Path, i: i64, o: i64, k: i64, s: i64, e: i64) -> Self {
        let mid = i * e;
        let expand = (e != 1).then(|| {
            (
                SameConv::new(&p / "_expand_conv", i, mid, 1, 1, 1),
                bn(&p / "_bn0", mid),
            )
        });
        MbConv {
            expand,
            depthwise: SameConv::new(&p / "_depthwise_conv", mid, mid, k, s, mid),
            bn1: bn(&p / "_bn1", mid),
            project: SameConv::new(&p / "_project_conv", mid, o, 1, 1, 1),
            bn2: bn(&p / "_bn2", o),
            skip: s == 1 && i == o,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut y = xs.shallow_clone();
        if let Some((conv, bn0)) = &self.expand {
            y = conv.forward(&y).apply_t(bn0, train).relu6(); // (B, i·e, H, W)
        }
        let y = self.depthwise.forward(&y).apply_t(&self.bn1, train).relu6(); // (B, i·e, H/s, W/s)
        let y = self.project.forward(&y).apply_t(&self.bn2, train); // (B, o, H/s, W/s)
        if self.skip {
            y + xs
        } else {
            y
        }
    }
}

#[derive(Debug)]
pub struct EfficientNetLite {
    stem: SameConv,
    bn0: nn::BatchNorm,
    blocks: Vec<MbConv>,
    head: SameConv,
    bn1: nn::BatchNorm,
    /// The ImageNet classifier: not used for features, kept so the weights load whole and
    /// their top-1 classes can be checked.
    pub fc: nn::Linear,
}

impl EfficientNetLite {
    pub fn new(p: nn::Path, variant: Variant) -> Self {
        let (width, depth, _) = variant.scaling();
        let b = &p / "_blocks";
        let mut blocks = Vec::new();
        let mut cin = STEM;
        for (si, &(r, k, s, e, _, o)) in STAGES.iter().enumerate() {
            let o = round_filters(o, width);
            let r = if si == 0 || si == STAGES.len() - 1 {
                r
            } else {
                (depth * r as f64).ceil() as i64
            };
            for j in 0..r {
                let n = blocks.len();
                let stride = if j == 0 { s } else { 1 };
                blocks.push(MbConv::new(&b / n, cin, o, k, stride, e));
                cin = o;
            }
        }
        EfficientNetLite {
            stem: SameConv::new(&p / "_conv_stem", 3, STEM, 3, 2, 1),
            bn0: bn(&p / "_bn0", STEM),
            blocks,
            head: SameConv::new(&p / "_conv_head", cin, HEAD, 1, 1, 1),
            bn1: bn(&p / "_bn1", HEAD),
            fc: nn::linear(&p / "_fc", HEAD, 1000, Default::default()),
        }
    }

    /// `xs (B,3,S,S)` preprocessed as `(x − 127) / 128` ⇒ (global average `(B,1280)`, head
    /// activations `(B,1280,⌈S/32⌉,⌈S/32⌉)`: 7×7 at 224 px, 9×9 at 260).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        let mut x = self.stem.forward(xs).apply_t(&self.bn0, train).relu6(); // (B, 32, S/2, S/2)
        for block in &self.blocks {
            x = block.forward_t(&x, train);
        }
        let grid = self.head.forward(&x).apply_t(&self.bn1, train).relu6(); // (B, 1280, h, w)
        let pooled = grid.mean_dim([2i64, 3].as_slice(), false, tch::Kind::Float); // (B, 1280)
        (pooled, grid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EncoderKind;
    use crate::model::encoder::{channels_last_weights, Encoder};

    /// `notebooks/make_effnet_fixture.py`'s generator: splitmix64 seeded with the FNV-1a hash
    /// of `name`, the top 24 bits as u in [0, 1).
    fn uniform(name: &str, n: usize) -> Vec<f64> {
        let mut state = name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
        });
        (0..n)
            .map(|_| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                (z >> 40) as f64 / 16_777_216.0
            })
            .collect()
    }

    /// The script's pseudo-random value of every variable (its docstring has the table).
    fn fill(name: &str, shape: &[i64]) -> Tensor {
        let n = shape.iter().product::<i64>() as usize;
        let u = uniform(name, n);
        let v: Vec<f64> = if shape.len() == 4 {
            let b = (3.0 / (shape[1] * shape[2] * shape[3]) as f64).sqrt();
            u.iter().map(|u| (2.0 * u - 1.0) * b).collect()
        } else if name == "_fc.weight" {
            u.iter()
                .map(|u| (2.0 * u - 1.0) * (3.0f64 / 1280.0).sqrt())
                .collect()
        } else if name.ends_with("running_var")
            || (name.ends_with(".weight") && name.contains("_bn"))
        {
            u.iter().map(|u| 0.5 + u).collect()
        } else {
            u.iter().map(|u| (2.0 * u - 1.0) * 0.1).collect()
        };
        Tensor::from_slice(&v).view(shape).to_kind(tch::Kind::Float)
    }

    /// Parity with the independent plain-PyTorch EfficientNet-Lite (`notebooks/effnet_lite.py`)
    /// on pseudo-random weights: `tests/fixtures/effnet/*.safetensors`, written by
    /// `notebooks/make_effnet_fixture.py` (float64 reference), through the frozen encoder's
    /// channels-last inference path.
    #[test]
    fn matches_the_pytorch_reference_on_random_weights() {
        for (kind, size) in [
            (EncoderKind::EfficientnetLite0, 64),
            (EncoderKind::EfficientnetLite2, 66),
        ] {
            let path = format!(
                "{}/tests/fixtures/effnet/{}.safetensors",
                env!("CARGO_MANIFEST_DIR"),
                kind.as_str()
            );
            let want: std::collections::HashMap<String, Tensor> =
                crate::model::weights::read_tensors(std::path::Path::new(&path))
                    .unwrap()
                    .into_iter()
                    .collect();
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let enc = Encoder::new(vs.root(), kind, None);
            tch::no_grad(|| {
                for (name, mut v) in vs.variables() {
                    v.copy_(&fill(&name, &v.size()));
                }
            });
            channels_last_weights(&vs);
            let u = uniform("input", (2 * 3 * size * size) as usize);
            let u: Vec<f32> = u.iter().map(|u| (2.0 * u - 1.0) as f32).collect();
            let xs = Tensor::from_slice(&u).view([2, 3, size, size]); // uniform ±1
            let out = tch::no_grad(|| enc.forward_t(&xs, false));
            let Encoder::EfficientNet(net) = &enc else {
                unreachable!()
            };
            let logits = tch::no_grad(|| out.pooled.apply(&net.fc));
            let grid = want["grid"].flatten(2, 3).transpose(1, 2); // (B, h·w, 1280)
            for (what, got, want) in [
                ("pooled", &out.pooled, &want["pooled"]),
                ("grid", &out.memory(), &grid),
                ("logits", &logits, &want["logits"]),
            ] {
                assert_eq!(got.size(), want.size(), "{kind:?} {what}");
                let diff = (got - want).abs().max().double_value(&[]);
                let scale = want.abs().max().double_value(&[]);
                eprintln!("{kind:?} {what}: max |diff| {diff:.3e}, max |want| {scale:.3e}");
                assert!(diff <= 1e-4 * scale, "{kind:?} {what}: {diff} vs {scale}");
            }
        }
    }

    #[test]
    fn same_padding_matches_tensorflow() {
        // Stride 2 on an even input: 3×3 pads 0 / 1, 5×5 pads 1 / 2; odd input: symmetric.
        assert_eq!(same_pad(224, 3, 2), (0, 1));
        assert_eq!(same_pad(224, 5, 2), (1, 2));
        assert_eq!(same_pad(65, 3, 2), (1, 1));
        assert_eq!(same_pad(65, 5, 2), (2, 2));
        assert_eq!(same_pad(7, 5, 1), (2, 2));
        assert_eq!(same_pad(7, 1, 1), (0, 0));
    }

    #[test]
    fn widths_follow_round_filters() {
        let lite2: Vec<i64> = STAGES.iter().map(|s| round_filters(s.5, 1.1)).collect();
        assert_eq!(lite2, [16, 24, 48, 88, 120, 208, 352]);
    }

    #[test]
    fn parameter_counts_match_the_published_models() {
        for (v, blocks, params) in [
            (Variant::Lite0, 16, 4_652_008),
            (Variant::Lite2, 21, 6_092_072),
        ] {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let net = EfficientNetLite::new(vs.root(), v);
            assert_eq!(net.blocks.len(), blocks);
            let trainable: i64 = vs
                .trainable_variables()
                .iter()
                .map(|t| t.numel() as i64)
                .sum();
            assert_eq!(trainable, params, "{v:?}");
        }
    }
}
