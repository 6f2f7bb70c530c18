//! The blocks against the explicit formulas they replace: attention through libtorch's fused
//! kernel equals `softmax(QKᵀ/√d + mask)V` computed by hand; a cached step equals the full
//! pass; grouped-query heads equal repeated heads; a left-padded row equals the same row alone.
use tch::{nn, Device, Kind, Tensor};

use super::attention::Mask;
use super::*;

fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// The variables of `vs` by name.
fn var(vs: &nn::VarStore, name: &str) -> Tensor {
    vs.variables()[name].shallow_clone()
}

/// `softmax(q kᵀ · scale + additive mask) v` for `(B, h, T, hd)` inputs, by hand.
fn explicit(q: &Tensor, k: &Tensor, v: &Tensor, causal_from: Option<i64>, scale: f64) -> Tensor {
    let (t, s) = (q.size()[2], k.size()[2]);
    let mut scores = q.matmul(&k.transpose(-2, -1)) * scale; // (B, h, T, S)
    if let Some(p) = causal_from {
        scores += Tensor::full([t, s], f64::NEG_INFINITY, (Kind::Float, Device::Cpu)).triu(p + 1);
    }
    scores.softmax(-1, Kind::Float).matmul(v)
}

#[test]
fn attention_equals_the_explicit_formula_with_and_without_a_cache() {
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = AttentionConfig::new(8, 2).causal();
    let a = Attention::new(vs.root() / "attn", &cfg);
    let x = randn(&[2, 5, 8]);
    let (y, (k, v)) = tch::no_grad(|| a.forward_t(&x, None, None, None, false));

    let lin = |n: &str, x: &Tensor| {
        x.matmul(&var(&vs, &format!("attn.{n}.weight")).tr()) + var(&vs, &format!("attn.{n}.bias"))
    };
    let heads = |t: Tensor| t.view([2, -1, 2, 4]).transpose(1, 2);
    let (q, kk, vv) = (
        heads(lin("q_proj", &x)),
        heads(lin("k_proj", &x)),
        heads(lin("v_proj", &x)),
    );
    let want = explicit(&q, &kk, &vv, Some(0), 0.5)
        .transpose(1, 2)
        .reshape([2, 5, 8]);
    let want = lin("out_proj", &want);
    assert!(max_diff(&y, &want) < 1e-5, "{}", max_diff(&y, &want));
    assert!(max_diff(&k, &kk) < 1e-6);

    // The last two positions read against a cache of the first three (mask offset by 3).
    let past = (k.narrow(2, 0, 3), v.narrow(2, 0, 3));
    let (tail, (k5, _)) =
        tch::no_grad(|| a.forward_t(&x.narrow(1, 3, 2), Some(&past), None, None, false));
    assert!(max_diff(&tail, &y.narrow(1, 3, 2)) < 1e-5);
    assert_eq!(k5.size(), vec![2, 2, 5, 4]);
}

#[test]
fn fused_qkv_splits_q_k_v_in_order() {
    tch::manual_seed(4);
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = AttentionConfig::new(8, 2)
        .causal()
        .layout(Layout::FusedConv1D)
        .scale(0.25);
    let a = Attention::new(vs.root() / "attn", &cfg);
    let x = randn(&[1, 3, 8]);
    let y = tch::no_grad(|| a.forward_t(&x, None, None, None, false).0);
    let qkv = x.matmul(&var(&vs, "attn.c_attn.weight")) + var(&vs, "attn.c_attn.bias");
    let p = qkv.split(8, -1);
    let heads = |t: &Tensor| t.view([1, 3, 2, 4]).transpose(1, 2);
    let o = explicit(&heads(&p[0]), &heads(&p[1]), &heads(&p[2]), Some(0), 0.25);
    let o = o.transpose(1, 2).reshape([1, 3, 8]);
    let want = o.matmul(&var(&vs, "attn.c_proj.weight")) + var(&vs, "attn.c_proj.bias");
    assert!(max_diff(&y, &want) < 1e-5);
}

#[test]
fn grouped_query_heads_equal_repeated_key_value_heads() {
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = AttentionConfig::new(8, 4)
        .head_dim(2)
        .kv_heads(2)
        .bias(false, false)
        .causal();
    let a = Attention::new(vs.root(), &cfg);
    let x = randn(&[1, 4, 8]);
    let (y, (k, v)) = tch::no_grad(|| a.forward_t(&x, None, None, None, false));
    assert_eq!(k.size(), vec![1, 2, 4, 2]);
    let q = x
        .matmul(&var(&vs, "q_proj.weight").tr())
        .view([1, 4, 4, 2])
        .transpose(1, 2);
    let rep = |t: &Tensor| {
        Tensor::cat(
            &[
                t.narrow(1, 0, 1),
                t.narrow(1, 0, 1),
                t.narrow(1, 1, 1),
                t.narrow(1, 1, 1),
            ],
            1,
        )
    };
    let o = explicit(&q, &rep(&k), &rep(&v), Some(0), 1.0 / 2f64.sqrt());
    let want = o
        .transpose(1, 2)
        .reshape([1, 4, 8])
        .matmul(&var(&vs, "out_proj.weight").tr());
    assert!(max_diff(&y, &want) < 1e-5);
}

#[test]
fn a_left_padded_row_equals_the_row_alone() {
    tch::manual_seed(6);
    let vs = nn::VarStore::new(Device::Cpu);
    let a = Attention::new(vs.root(), &AttentionConfig::new(8, 2).causal());
    let x = randn(&[1, 3, 8]);
    let padded = Tensor::cat(&[randn(&[1, 2, 8]), x.shallow_clone()], 1); // two pads first
    let keep = Tensor::from_slice(&[false, false, true, true, true]).view([1, 5]);
    let alone = tch::no_grad(|| a.forward_t(&x, None, None, None, false).0);
    let batched = tch::no_grad(|| a.forward_t(&padded, None, Some(&keep), None, false).0);
    assert!(max_diff(&batched.narrow(1, 2, 3), &alone) < 1e-5);
    assert_eq!(batched.isfinite().all().int64_value(&[]), 1);
}

/// libtorch's dispatcher picks the fused flash kernel (`SDPBackend::flash_attention` = 1) on
/// CPU for what captag asks in inference: float32, no mask (causal flag or none), no dropout.
#[test]
fn the_fused_kernel_is_chosen_on_cpu() {
    let (q, k, v) = (
        randn(&[2, 4, 6, 8]),
        randn(&[2, 4, 6, 8]),
        randn(&[2, 4, 6, 8]),
    );
    for causal in [false, true] {
        let m = Mask::new(causal, 6, 6, None, Device::Cpu);
        assert!(m.tensor.is_none());
        let choice = Tensor::internal_fused_sdp_choice(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            m.is_causal,
            None,
            false,
        );
        assert_eq!(
            choice, 1,
            "causal {causal}: backend {choice}, not flash attention"
        );
    }
}

#[test]
fn a_single_query_needs_no_mask_and_a_cached_block_a_shifted_one() {
    let m = Mask::new(true, 1, 7, None, Device::Cpu);
    assert!(m.tensor.is_none() && !m.is_causal);
    let m = Mask::new(true, 2, 4, None, Device::Cpu);
    let t = m.tensor.unwrap().to_kind(Kind::Int64).view([2, 4]);
    assert_eq!(
        Vec::<i64>::try_from(t.view([-1])).unwrap(),
        vec![1, 1, 1, 0, 1, 1, 1, 1]
    );
}
