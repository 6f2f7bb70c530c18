//! Interface tests every decoder must pass: stepping through a caption one token at a time
//! gives the teacher-forced log-probabilities, and reordering a state reorders its rows.
use tch::{nn::VarStore, Device, Kind, Tensor};

use super::*;
use crate::config::{DecoderPreset, EncoderKind};

fn features(b: i64) -> ImageFeatures {
    let k = EncoderKind::SmallCnn;
    ImageFeatures::new(
        Tensor::randn([b, k.pooled_dim()], (Kind::Float, Device::Cpu)),
        Some(Tensor::randn(
            [b, 16, k.grid_dim()],
            (Kind::Float, Device::Cpu),
        )),
    )
}

fn all() -> Vec<DecoderConfig> {
    [
        DecoderPreset::Lstm,
        DecoderPreset::Gru,
        DecoderPreset::Attention,
        DecoderPreset::Transformer,
        DecoderPreset::Clipcap,
    ]
    .into_iter()
    .map(|p| DecoderConfig::preset(p, EncoderKind::SmallCnn))
    .chain([clipcap_transformer_mapper(), clipcap_pretrained()])
    .collect()
}

fn gpt2_fixture() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/gpt2")
}

/// ClipCap on the tiny GPT-2 fixture's architecture (`--lm-weights`), run ids = BPE ids + 4.
fn clipcap_pretrained() -> DecoderConfig {
    let text = std::fs::read_to_string(gpt2_fixture().join("config.json")).unwrap();
    let config: crate::config::gpt2::Gpt2Config = serde_json::from_str(&text).unwrap();
    let mut c = DecoderConfig::preset(DecoderPreset::Clipcap, EncoderKind::SmallCnn);
    if let DecoderConfig::ClipCap(cc) = &mut c {
        cc.prefix_len = 4;
        cc.max_len = config.n_positions - 4;
        cc.gpt2.n_embd = config.n_embd;
        cc.pretrained = Some(Box::new(crate::config::PretrainedLm {
            eot_id: 699,
            weights_fingerprint: String::new(),
            config,
        }));
    }
    c
}

/// After `load_pretrained_lm`, ClipCap's LM is the folder's GPT-2: `Gpt2Model`'s logits on the
/// same ids (and not before: a random LM would pass a shape-only test); the run's ids are scored
/// by the LM's logits shifted by 4, `<end>` by `<|endoftext|>`'s, the rest never predicted.
#[test]
fn a_pretrained_clipcap_lm_gives_the_folders_gpt2_logits() {
    use crate::model::gpt2::Gpt2;
    let dir = gpt2_fixture();
    let g = Gpt2::load(&dir, Device::Cpu).unwrap();
    tch::manual_seed(6);
    let mut vs = VarStore::new(Device::Cpu);
    let dec = Decoder::new(
        vs.root() / "decoder",
        &clipcap_pretrained(),
        EncoderKind::SmallCnn,
        704,
    );
    let Decoder::ClipCap(cc) = &dec else {
        panic!("not clipcap");
    };
    let ids = Tensor::randint(700, [2, 7], (Kind::Int64, Device::Cpu));
    let (want, _) = tch::no_grad(|| g.model.forward_t(&ids, None, false)).unwrap(); // (2, 7, 700)
    let diff = |cc: &ClipCap| {
        let (got, _) = tch::no_grad(|| cc.lm().forward_t(&ids, None, false)).unwrap();
        (got - &want).abs().max().double_value(&[])
    };
    assert!(
        diff(cc) > 1e-2,
        "a random LM already gives the folder's logits"
    );
    clipcap::load_pretrained_lm(&mut vs, &dir).unwrap();
    assert_eq!(diff(cc), 0.0, "loaded LM vs Gpt2Model");
    let (h, _) = tch::no_grad(|| cc.lm().hidden_t(&cc.lm().embed(&ids), None, false)).unwrap();
    let z = tch::no_grad(|| dec.project(&h)); // (2, 7, 704)
    assert_eq!(z.size(), [2, 7, 704]);
    let same = |a: Tensor, b: Tensor| (a - b).abs().max().double_value(&[]);
    assert_eq!(same(z.narrow(2, 4, 699), want.narrow(2, 0, 699)), 0.0);
    assert_eq!(same(z.narrow(2, 2, 1), want.narrow(2, 699, 1)), 0.0);
    for never in [0, 1, 3, 703] {
        assert!(
            z.narrow(2, never, 1).max().double_value(&[]) < -1e8,
            "id {never}"
        );
    }
}

/// ClipCap with its transformer mapper (the preset's is the MLP).
fn clipcap_transformer_mapper() -> DecoderConfig {
    let mut c = DecoderConfig::preset(DecoderPreset::Clipcap, EncoderKind::SmallCnn);
    if let DecoderConfig::ClipCap(cc) = &mut c {
        cc.mapper = crate::config::MapperKind::Transformer;
        cc.mapper_layers = 2;
        cc.clip_len = 3;
        cc.prefix_len = 4;
    }
    c
}

#[test]
fn stepping_reproduces_teacher_forcing() {
    tch::manual_seed(3);
    for cfg in all() {
        let vs = VarStore::new(Device::Cpu);
        let dec = Decoder::new(vs.root(), &cfg, EncoderKind::SmallCnn, 11);
        let f = features(3);
        // Rows of different lengths (the last one padded): only positions that predict a real
        // token are compared.
        let tokens =
            Tensor::from_slice(&[1i64, 5, 6, 7, 2, 1, 8, 9, 10, 2, 1, 4, 2, 0, 0]).view([3, 5]);
        let want = tch::no_grad(|| dec.logits(&f, &tokens, false)).log_softmax(-1, Kind::Float); // (3, 4, V)
        let mut state = dec.start(&f);
        for t in 0..4 {
            let (lp, next) = tch::no_grad(|| dec.step(&tokens.select(1, t), &state));
            for r in 0..3 {
                if tokens.int64_value(&[r, t + 1]) == PAD {
                    continue;
                }
                let diff = (lp.get(r) - want.get(r).get(t))
                    .abs()
                    .max()
                    .double_value(&[]);
                assert!(
                    diff < 1e-4,
                    "{}: row {r} step {t} differs by {diff}",
                    cfg.name()
                );
            }
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
    // Distributions at the live positions (word, <end>); zeros on padding.
    let sums = a.sum_dim_intlist(2, false, Kind::Float); // (1, 4)
    for (t, want) in [(0, 1.0), (1, 1.0), (2, 0.0), (3, 0.0)] {
        assert!(
            (sums.double_value(&[0, t]) - want).abs() < 1e-5,
            "position {t}"
        );
    }
    // Two live positions (word, <end>): penalty = mean_n (1 - α_0n - α_1n)².
    let spent = a.narrow(1, 0, 2).sum_dim_intlist(1, false, Kind::Float);
    let want = spent
        .neg()
        .g_add_scalar(1.0)
        .square()
        .mean(Kind::Float)
        .double_value(&[]);
    assert!((out.penalty.unwrap().double_value(&[]) - want).abs() < 1e-6);
}

/// The loss gathers non-pad positions before the output layer and the attention decoder skips
/// finished rows: both must give the padded computation's value and gradients.
#[test]
fn work_avoidance_keeps_loss_and_gradients() {
    tch::manual_seed(6);
    for cfg in all() {
        let vs = VarStore::new(Device::Cpu);
        let dec = Decoder::new(vs.root(), &cfg, EncoderKind::SmallCnn, 11);
        let f = features(3);
        // Lengths 2, 5 and 3 words: padding in two rows, rows not sorted by length.
        let tokens = Tensor::from_slice(&[
            1i64, 5, 2, 0, 0, 0, 0, //
            1, 6, 7, 8, 9, 10, 2, //
            1, 4, 4, 2, 0, 0, 0,
        ])
        .view([3, 7]);
        let grads = |loss: Tensor| -> Vec<Tensor> {
            for v in vs.trainable_variables() {
                v.grad().defined().then(|| v.grad().zero_());
            }
            loss.backward();
            vs.trainable_variables()
                .iter()
                .map(|v| {
                    let g = v.grad();
                    if g.defined() {
                        g.copy()
                    } else {
                        v.zeros_like()
                    }
                })
                .collect()
        };
        let fast = dec.loss(&f, &tokens, false);
        let out = dec.forward_t(&f, &tokens, false);
        let logits = dec.project(&out.hidden); // (3, 6, V)
        let v = logits.size()[2]; // 11, or the pretrained LM's ids
        let mut slow = logits.reshape([-1, v]).cross_entropy_loss::<Tensor>(
            &tokens.narrow(1, 1, 6).reshape([-1]),
            None,
            tch::Reduction::Mean,
            PAD,
            0.0,
        );
        if let Some(p) = out.penalty {
            slow += p;
        }
        let dv = (fast.double_value(&[]) - slow.double_value(&[])).abs();
        assert!(dv < 1e-5, "{}: loss differs by {dv}", cfg.name());
        let (gf, gs) = (grads(fast), grads(slow));
        for (a, b) in gf.iter().zip(&gs) {
            let d = (a - b).abs().max().double_value(&[]);
            assert!(d < 1e-5, "{}: gradient differs by {d}", cfg.name());
        }
    }
}

/// Per-image work done once for the captions of an image (`ImageFeatures::owner`) gives the
/// numbers of repeating the image per row.
#[test]
fn shared_images_give_the_per_row_loss() {
    tch::manual_seed(7);
    for cfg in all() {
        let vs = VarStore::new(Device::Cpu);
        let dec = Decoder::new(vs.root(), &cfg, EncoderKind::SmallCnn, 11);
        let mut f = features(2);
        f.owner = Some(Tensor::from_slice(&[0i64, 0, 1, 0]));
        let tokens = Tensor::from_slice(&[
            1i64, 5, 2, 0, 1, 6, 7, 2, 1, 8, 2, 0, 1, 9, 9, 2, //
        ])
        .view([4, 4]);
        let shared = tch::no_grad(|| dec.loss(&f, &tokens, false)).double_value(&[]);
        let repeated = tch::no_grad(|| dec.loss(&f.expanded(), &tokens, false)).double_value(&[]);
        assert!(
            (shared - repeated).abs() < 1e-5,
            "{}: {shared} vs {repeated}",
            cfg.name()
        );
    }
}
