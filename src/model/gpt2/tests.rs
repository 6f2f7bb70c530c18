//! Parity with `transformers`' `GPT2LMHeadModel` on the tiny random model that
//! `notebooks/make_hf_fixtures.py` saved under `tests/fixtures/hf/gpt2/`, loaded like a user's
//! download; the key/value cache against full recomputation; the real `gpt2` names and shapes.
use std::collections::HashMap;

use super::*;
use crate::model::clip::tests::{close, expected, fixture};
use crate::text::hf_tokenizer::HfTokenizer;

fn ids_of(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.flatten(0, -1).to_kind(Kind::Int64)).unwrap()
}

#[test]
fn logits_prefix_logits_and_greedy_ids_equal_transformers() {
    let dir = fixture("gpt2");
    let want = expected(&dir);
    let g = Gpt2::load(&dir, Device::Cpu).unwrap();
    let m = &g.model;
    let ids = &want["input_ids"];
    let (logits, _) = tch::no_grad(|| m.forward_t(ids, None, false)).unwrap();
    close("gpt2 logits", &logits, &want["logits"]);

    let embeds = Tensor::cat(&[want["prefix"].shallow_clone(), m.embed(ids)], 1); // (B, 3 + T, D)
    let (logits, _) = tch::no_grad(|| m.forward_embeds_t(&embeds, None, false)).unwrap();
    close(
        "gpt2 prefix (inputs_embeds) logits",
        &logits,
        &want["prefix_logits"],
    );

    let greedy = m.greedy(ids, 12).unwrap();
    assert_eq!(
        ids_of(&greedy),
        ids_of(&want["greedy_ids"]),
        "greedy continuation"
    );
    eprintln!(
        "gpt2 greedy: {} ids identical to generate()",
        greedy.numel()
    );
}

#[test]
fn prompts_tokenize_to_the_ids_transformers_fed_the_model() {
    let dir = fixture("gpt2");
    let tok = HfTokenizer::gpt2(&dir).unwrap();
    let a = tok.encode("A dog runs through");
    let b = tok.encode("Two kids play on the");
    let n = a.len().min(b.len());
    let got: Vec<i64> = a[..n].iter().chain(&b[..n]).map(|&i| i as i64).collect();
    assert_eq!(got, ids_of(&expected(&dir)["input_ids"]));
}

/// Decoding one position at a time with the cache gives the logits of one full pass, for a
/// prefix of embeddings followed by tokens.
#[test]
fn kv_cache_decoding_equals_full_recomputation() {
    let g = Gpt2::load(&fixture("gpt2"), Device::Cpu).unwrap();
    let m = &g.model;
    tch::manual_seed(7);
    let prefix = Tensor::randn([2, 4, 32], (Kind::Float, Device::Cpu));
    let ids = Tensor::randint(700, [2, 9], (Kind::Int64, Device::Cpu));
    let embeds = Tensor::cat(&[prefix.shallow_clone(), m.embed(&ids)], 1); // (2, 13, 32)
    let (full, _) = tch::no_grad(|| m.forward_embeds_t(&embeds, None, false)).unwrap();

    let (first, mut cache) = tch::no_grad(|| m.forward_embeds_t(&prefix, None, false)).unwrap();
    let mut steps = vec![first];
    for i in 0..9 {
        let (l, c) =
            tch::no_grad(|| m.forward_t(&ids.narrow(1, i, 1), Some(&cache), false)).unwrap();
        assert_eq!(c.len(), 5 + i);
        cache = c;
        steps.push(l);
    }
    close("gpt2 kv-cache vs full pass", &Tensor::cat(&steps, 1), &full);

    // Reordered rows keep their own cache.
    let rows = Tensor::from_slice(&[1i64, 1, 0]);
    let next = Tensor::from_slice(&[3i64, 3, 5]).view([3, 1]);
    let (l, _) = tch::no_grad(|| m.forward_t(&next, Some(&cache.select(&rows)), false)).unwrap();
    let (l1, _) = tch::no_grad(|| {
        m.forward_t(
            &next.narrow(0, 0, 1),
            Some(&cache.select(&rows.narrow(0, 0, 1))),
            false,
        )
    })
    .unwrap();
    close("gpt2 cache select", &l.narrow(0, 0, 1), &l1);
    close(
        "gpt2 cache select, same rows",
        &l.narrow(0, 0, 1),
        &l.narrow(0, 1, 1),
    );
}

/// A `GPT2Model` save (no `transformer.` prefix, with the old `attn.bias` buffers), as the
/// `gpt2` repository's `model.safetensors` is, loads to the same model.
#[test]
fn keys_without_prefix_and_with_mask_buffers_load_the_same() {
    let src = fixture("gpt2");
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), d.path().join("config.json")).unwrap();
    let mut named: Vec<(String, Tensor)> =
        crate::model::weights::read_tensors(&src.join("model.safetensors"))
            .unwrap()
            .into_iter()
            .map(|(n, t)| (n.trim_start_matches("transformer.").to_string(), t))
            .collect();
    assert!(
        named.iter().all(|(n, _)| !n.starts_with("lm_head")),
        "tied head not saved"
    );
    for i in 0..2 {
        let causal = Tensor::ones([64, 64], (Kind::Float, Device::Cpu))
            .tril(0)
            .view([1, 1, 64, 64]);
        named.push((format!("h.{i}.attn.bias"), causal));
        named.push((format!("h.{i}.attn.masked_bias"), Tensor::from(-1e4f32)));
    }
    Tensor::write_safetensors(&named, d.path().join("model.safetensors")).unwrap();
    let g = Gpt2::load(d.path(), Device::Cpu).unwrap();
    let want = expected(&src);
    let (logits, _) = tch::no_grad(|| g.model.forward_t(&want["input_ids"], None, false)).unwrap();
    close(
        "gpt2 logits (GPT2Model-style keys)",
        &logits,
        &want["logits"],
    );
}

#[test]
fn bad_folders_and_inputs_are_one_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let msg = |dir: &std::path::Path| Gpt2::load(dir, Device::Cpu).err().unwrap().to_string();
    assert!(msg(d.path()).contains("no config.json"));
    std::fs::write(
        d.path().join("config.json"),
        r#"{"n_embd": 30, "n_head": 4}"#,
    )
    .unwrap();
    assert!(
        msg(d.path()).contains("not a multiple of n_head"),
        "{}",
        msg(d.path())
    );
    std::fs::write(d.path().join("config.json"), "{not json").unwrap();
    assert!(msg(d.path()).contains("not valid JSON"));
    let src = fixture("gpt2");
    std::fs::copy(src.join("config.json"), d.path().join("config.json")).unwrap();
    std::fs::write(d.path().join("pytorch_model.bin"), b"x").unwrap();
    assert!(
        msg(d.path()).contains("safetensors only"),
        "{}",
        msg(d.path())
    );

    let g = Gpt2::load(&src, Device::Cpu).unwrap();
    let long = Tensor::zeros([1, 65], (Kind::Int64, Device::Cpu));
    let e = g
        .model
        .forward_t(&long, None, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("longer than n_positions 64"), "{e}");
    let e = g
        .model
        .forward_t(&Tensor::from_slice(&[700i64]).view([1, 1]), None, false);
    assert!(e.unwrap_err().to_string().contains("0..700"));
}

/// The variables built for the real `gpt2` config are `transformers`' parameters (without the
/// `transformer.` prefix; the tied head is `wte`).
#[test]
fn gpt2_124m_has_transformers_names_and_shapes() {
    let text = std::fs::read_to_string(fixture("shapes.json")).unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cfg: Gpt2Config = serde_json::from_value(all["gpt2"]["config"].clone()).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = tch::no_grad(|| Gpt2Model::new(vs.root(), &cfg));
    let got: HashMap<String, Vec<i64>> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.size()))
        .collect();
    let want: HashMap<String, Vec<i64>> =
        serde_json::from_value(all["gpt2"]["shapes"].clone()).unwrap();
    assert_eq!(got.len(), want.len());
    for (n, s) in &want {
        assert_eq!(
            got.get(n.trim_start_matches("transformer.")),
            Some(s),
            "{n}"
        );
    }
    eprintln!(
        "gpt2 (124M): {} parameters, names and shapes as transformers",
        want.len()
    );
}

/// Prompts of different lengths, left-padded into one batch, continue exactly as each prompt
/// alone (the padding mask hides the pads; positions count real tokens only).
#[test]
fn a_left_padded_batch_generates_what_each_prompt_generates_alone() {
    let g = Gpt2::load(&fixture("gpt2"), Device::Cpu).unwrap();
    let m = &g.model;
    let prompts: Vec<Vec<i64>> = vec![vec![5, 17, 42, 9, 300], vec![77], vec![12, 600, 3]];
    let batched = m.greedy_batch(&prompts, 8).unwrap();
    for (p, got) in prompts.iter().zip(&batched) {
        let alone = m.greedy(&Tensor::from_slice(p).view([1, -1]), 8).unwrap();
        assert_eq!(got[..], ids_of(&alone)[p.len()..], "prompt {p:?}");
    }
    // The pads change nothing in the logits of the real positions either.
    let ids = Tensor::from_slice(&[0i64, 0, 12, 600, 3]).view([1, 5]);
    let keep = Tensor::from_slice(&[false, false, true, true, true]).view([1, 5]);
    let (h, _) =
        tch::no_grad(|| m.hidden_padded_t(&m.embed(&ids), None, Some(&keep), false)).unwrap();
    let (alone, _) =
        tch::no_grad(|| m.hidden_t(&m.embed(&ids.narrow(1, 2, 3)), None, false)).unwrap();
    assert!((h.narrow(1, 2, 3) - alone).abs().max().double_value(&[]) < 1e-5);
    let e = m
        .greedy_batch(&[vec![1], vec![]], 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least one id"), "{e}");
}
