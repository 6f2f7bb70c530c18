//! Interface tests every decoder must pass: stepping through a caption one token at a time
//! gives the teacher-forced log-probabilities, and reordering a state reorders its rows.
use tch::{nn::VarStore, Device, Kind, Tensor};

use super::*;
use crate::config::{DecoderPreset, EncoderKind};

fn features(b: i64) -> ImageFeatures {
    let k = EncoderKind::SmallCnn;
    ImageFeatures {
        pooled: Tensor::randn([b, k.pooled_dim()], (Kind::Float, Device::Cpu)),
        grid: Some(Tensor::randn([b, 16, k.grid_dim()], (Kind::Float, Device::Cpu))),
    }
}

fn all() -> Vec<DecoderConfig> {
    [
        DecoderPreset::Lstm,
        DecoderPreset::Gru,
        DecoderPreset::Attention,
        DecoderPreset::Transformer,
    ]
    .into_iter()
    .map(|p| DecoderConfig::preset(p, EncoderKind::SmallCnn))
    .collect()
}

#[test]
fn stepping_reproduces_teacher_forcing() {
    tch::manual_seed(3);
    for cfg in all() {
        let vs = VarStore::new(Device::Cpu);
        let dec = Decoder::new(vs.root(), &cfg, EncoderKind::SmallCnn, 11);
        let f = features(3);
        let tokens = Tensor::from_slice(&[1i64, 5, 6, 7, 2, 1, 8, 9, 10, 2, 1, 4, 4, 4, 4])
            .view([3, 5]);
        let want = tch::no_grad(|| dec.logits(&f, &tokens, false)).log_softmax(-1, Kind::Float); // (3, 4, V)
        let mut state = dec.start(&f);
        for t in 0..4 {
            let (lp, next) = tch::no_grad(|| dec.step(&tokens.select(1, t), &state));
            let diff = (lp - want.select(1, t)).abs().max().double_value(&[]);
            assert!(diff < 1e-4, "{}: step {t} differs by {diff}", cfg.name());
            state = next;
        }
    }
}

#[test]
fn select_reorders_rows() {
    tch::manual_seed(4);
    for cfg in all() {
        let vs = VarStore::new(Device::Cpu);
        let dec = Decoder::new(vs.root(), &cfg, EncoderKind::SmallCnn, 11);
        let f = features(2);
        let first = Tensor::from_slice(&[1i64, 1]);
        let s = dec.start(&f);
        let (_, s) = tch::no_grad(|| dec.step(&first, &s));
        let swapped = s.select(&Tensor::from_slice(&[1i64, 0]));
        let next = Tensor::from_slice(&[5i64, 6]);
        let (a, _) = tch::no_grad(|| dec.step(&next, &s));
        let (b, _) = tch::no_grad(|| dec.step(&Tensor::from_slice(&[6i64, 5]), &swapped));
        let diff = (a.get(0) - b.get(1)).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{}: {diff}", cfg.name());
    }
}

#[test]
fn attention_weights_are_distributions_and_the_penalty_counts_words() {
    tch::manual_seed(5);
    let cfg = DecoderConfig::preset(DecoderPreset::Attention, EncoderKind::SmallCnn);
    let vs = VarStore::new(Device::Cpu);
    let dec = Decoder::new(vs.root(), &cfg, EncoderKind::SmallCnn, 11);
    let tokens = Tensor::from_slice(&[1i64, 5, 2, 0, 0]).view([1, 5]);
    let out = tch::no_grad(|| dec.forward_t(&features(1), &tokens, false));
    let a = out.attention.unwrap(); // (1, 4, 16)
    assert_eq!(a.size(), [1, 4, 16]);
    let sums = a.sum_dim_intlist(2, false, Kind::Float);
    assert!((sums - 1.0).abs().max().double_value(&[]) < 1e-5);
    // Two live positions (word, <end>): penalty = mean_n (1 - α_0n - α_1n)².
    let spent = a.narrow(1, 0, 2).sum_dim_intlist(1, false, Kind::Float);
    let want = spent.neg().g_add_scalar(1.0).square().mean(Kind::Float).double_value(&[]);
    assert!((out.penalty.unwrap().double_value(&[]) - want).abs() < 1e-6);
}
