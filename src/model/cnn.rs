//! The three image encoders. VGG19 and SqueezeNet 1.1 mirror torchvision's module trees so their
//! variables carry torchvision's state-dict names (`features.N.*`, `classifier.N.*`) and load
//! exported torchvision weights unchanged; `small-cnn` is a few conv blocks for end-to-end
//! training on small images (the synthetic set, CPU runs).
use tch::{nn, Tensor};

fn conv(p: nn::Path, i: i64, o: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    nn::conv2d(
        p,
        i,
        o,
        k,
        nn::ConvConfig {
            stride,
            padding,
            ..Default::default()
        },
    )
}

/// torchvision `vgg19` (configuration "E"): 16 conv layers, 3 FC layers.
#[derive(Debug)]
pub struct Vgg19 {
    /// `None` marks a max-pool position in `features`.
    features: Vec<Option<nn::Conv2D>>,
    fc: [nn::Linear; 3],
}

const VGG19_CFG: [i64; 21] = [
    64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0,
];

impl Vgg19 {
    pub const POOLED_DIM: i64 = 4096;

    pub fn new(p: nn::Path) -> Self {
        let f = &p / "features";
        let (mut idx, mut cin, mut features) = (0, 3, Vec::new());
        for &c in VGG19_CFG.iter() {
            if c == 0 {
                features.push(None);
                idx += 1; // MaxPool2d
            } else {
                features.push(Some(conv(&f / idx, cin, c, 3, 1, 1)));
                idx += 2; // Conv2d + ReLU
                cin = c;
            }
        }
        let c = &p / "classifier";
        let fc = [
            nn::linear(&c / 0, 512 * 7 * 7, 4096, Default::default()),
            nn::linear(&c / 3, 4096, 4096, Default::default()),
            nn::linear(&c / 6, 4096, 1000, Default::default()),
        ];
        Vgg19 { features, fc }
    }

    /// `xs (B,3,224,224)` ⇒ (fc7 after ReLU `(B,4096)`, conv5_4 grid `(B,512,14,14)`).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        let last = self.features.len() - 1;
        let mut x = xs.shallow_clone();
        for layer in &self.features[..last] {
            x = match layer {
                Some(c) => x.apply(c).relu(),
                None => x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false),
            };
        }
        let grid = x.shallow_clone(); // (B, 512, H/16, W/16)
        let x = x
            .max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
            .adaptive_avg_pool2d([7, 7]);
        let x = x.flatten(1, -1); // (B, 25088)
        let x = x.apply(&self.fc[0]).relu().dropout(0.5, train);
        let x = x.apply(&self.fc[1]).relu(); // (B, 4096)
        (x, grid)
    }
}

/// One SqueezeNet "fire" module: 1×1 squeeze, then parallel 1×1 and 3×3 expands, concatenated.
#[derive(Debug)]
struct Fire {
    squeeze: nn::Conv2D,
    expand1x1: nn::Conv2D,
    expand3x3: nn::Conv2D,
}

impl Fire {
    fn new(p: nn::Path, cin: i64, s: i64, e1: i64, e3: i64) -> Self {
        Fire {
            squeeze: conv(&p / "squeeze", cin, s, 1, 1, 0),
            expand1x1: conv(&p / "expand1x1", s, e1, 1, 1, 0),
            expand3x3: conv(&p / "expand3x3", s, e3, 3, 1, 1),
        }
    }
    fn forward(&self, xs: &Tensor) -> Tensor {
        let s = xs.apply(&self.squeeze).relu();
        Tensor::cat(
            &[
                s.apply(&self.expand1x1).relu(),
                s.apply(&self.expand3x3).relu(),
            ],
            1,
        )
    }
}

/// torchvision `squeezenet1_1.features` (the classifier is not used: the real pretrained weights
/// available are Keras "notop").
#[derive(Debug)]
pub struct SqueezeNet {
    conv1: nn::Conv2D,
    /// (torchvision index, module); max-pools sit at indices 2, 5 and 8.
    fires: Vec<(usize, Fire)>,
}

impl SqueezeNet {
    pub const POOLED_DIM: i64 = 512;

    pub fn new(p: nn::Path) -> Self {
        let f = &p / "features";
        let spec: [(usize, i64, i64, i64); 8] = [
            (3, 64, 16, 64),
            (4, 128, 16, 64),
            (6, 128, 32, 128),
            (7, 256, 32, 128),
            (9, 256, 48, 192),
            (10, 384, 48, 192),
            (11, 384, 64, 256),
            (12, 512, 64, 256),
        ];
        let fires = spec
            .iter()
            .map(|&(i, cin, s, e)| (i, Fire::new(&f / i, cin, s, e, e)))
            .collect();
        SqueezeNet {
            conv1: conv(&f / 0, 3, 64, 3, 2, 0),
            fires,
        }
    }

    /// `xs (B,3,224,224)` ⇒ (global average `(B,512)`, grid `(B,512,13,13)`).
    pub fn forward_t(&self, xs: &Tensor, _train: bool) -> (Tensor, Tensor) {
        let pool = |x: &Tensor| x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], true);
        let mut x = pool(&xs.apply(&self.conv1).relu()); // (B, 64, 55, 55)
        for (idx, fire) in &self.fires {
            x = fire.forward(&x);
            if *idx == 4 || *idx == 7 {
                x = pool(&x);
            }
        }
        let pooled = x.adaptive_avg_pool2d([1, 1]).flatten(1, -1); // (B, 512)
        (pooled, x)
    }

    /// Activations after conv1 (64 ch, S/2), fire3 (128 ch, S/4) and fire5 (256 ch, S/8): the
    /// restoration inpainter's perceptual and style loss taps (docs/ARCHITECTURE.md,
    /// "Restoration").
    pub fn taps(&self, xs: &Tensor) -> Vec<Tensor> {
        let pool = |x: &Tensor| x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], true);
        let c1 = xs.apply(&self.conv1).relu(); // (B, 64, S/2, S/2)
        let mut x = pool(&c1);
        let mut out = vec![c1];
        for (idx, fire) in &self.fires {
            x = fire.forward(&x);
            if *idx == 4 || *idx == 7 {
                out.push(x.shallow_clone());
                if *idx == 7 {
                    break;
                }
                x = pool(&x);
            }
        }
        out
    }
}

/// Four conv–BN–ReLU–pool blocks. The pooled vector keeps a coarse 3×3 layout (flattened), not a
/// global average: captions about "left of"/"above" need to know where things are.
#[derive(Debug)]
pub struct SmallCnn {
    blocks: Vec<(nn::Conv2D, nn::BatchNorm)>,
}

const SMALL_CNN_CHANNELS: [i64; 4] = [16, 32, 64, 128];

impl SmallCnn {
    pub const POOLED_DIM: i64 = 128 * 9;

    pub fn new(p: nn::Path) -> Self {
        let mut cin = 3;
        let mut blocks = Vec::new();
        for (i, &c) in SMALL_CNN_CHANNELS.iter().enumerate() {
            let b = &p / format!("block{i}");
            blocks.push((
                conv(&b / "conv", cin, c, 3, 1, 1),
                nn::batch_norm2d(&b / "bn", c, Default::default()),
            ));
            cin = c;
        }
        SmallCnn { blocks }
    }

    /// `xs (B,3,S,S)` ⇒ (3×3-pooled layout `(B,1152)`, grid `(B,128,S/16,S/16)`).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        let mut x = xs.shallow_clone();
        for (c, bn) in &self.blocks {
            x = x.apply(c).apply_t(bn, train).relu().max_pool2d_default(2);
        }
        let pooled = x.adaptive_avg_pool2d([3, 3]).flatten(1, -1); // (B, 1152)
        (pooled, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// `name<TAB>shape` lines written by `notebooks/export_torchvision.py --list` from
    /// torchvision 0.26 (`vgg19(weights=None).state_dict()`, `squeezenet1_1(...).features`).
    fn fixture(name: &str) -> BTreeMap<String, Vec<i64>> {
        let path = format!(
            "{}/tests/fixtures/torchvision/{name}.txt",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (n, shape) = l.split_once('\t').unwrap();
                (
                    n.to_string(),
                    shape.split(',').map(|d| d.parse().unwrap()).collect(),
                )
            })
            .collect()
    }

    fn ours(build: impl FnOnce(nn::Path)) -> BTreeMap<String, Vec<i64>> {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        build(vs.root());
        vs.variables()
            .into_iter()
            .map(|(n, t)| (n, t.size()))
            .collect()
    }

    #[test]
    fn vgg19_has_torchvision_names_and_shapes() {
        let ours = ours(|p| {
            Vgg19::new(p);
        });
        assert_eq!(ours, fixture("vgg19"));
    }

    #[test]
    fn squeezenet_has_torchvision_names_and_shapes() {
        let ours = ours(|p| {
            SqueezeNet::new(p);
        });
        assert_eq!(ours, fixture("squeezenet1_1"));
    }

    #[test]
    fn encoders_give_the_documented_shapes() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let sq = SqueezeNet::new(vs.root() / "sq");
        let (pooled, grid) = sq.forward_t(
            &Tensor::zeros([2, 3, 224, 224], tch::kind::FLOAT_CPU),
            false,
        );
        assert_eq!(pooled.size(), [2, SqueezeNet::POOLED_DIM]);
        assert_eq!(grid.size(), [2, 512, 13, 13]);
        let cnn = SmallCnn::new(vs.root() / "cnn");
        let (pooled, _) =
            cnn.forward_t(&Tensor::zeros([2, 3, 64, 64], tch::kind::FLOAT_CPU), false);
        assert_eq!(pooled.size(), [2, SmallCnn::POOLED_DIM]);
    }
}
