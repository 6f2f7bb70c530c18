//! Parity with `transformers`' `LlamaForCausalLM` and `Qwen2ForCausalLM` on the tiny random
//! folders `notebooks/make_llama_fixtures.py` saved under `tests/fixtures/hf/{llama,qwen2}/`
//! (grouped-query attention, rotary positions at the config's `rope_theta`, tied and separate
//! heads, Qwen2's biases, a sharded save), loaded like a user's download.
use serde_json::Value;

use super::*;
use crate::model::clip::tests::{close, expected, fixture};

fn ids_of(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.flatten(0, -1).to_kind(Kind::Int64)).unwrap()
}

fn parity(name: &str) {
    let dir = fixture(name);
    let want = expected(&dir);
    let l = Llama::load(&dir, Device::Cpu).unwrap();
    let m = &l.model;
    let ids = &want["input_ids"];
    let (logits, _) = tch::no_grad(|| m.forward_t(ids, None, false)).unwrap();
    close(&format!("{name} logits"), &logits, &want["logits"]);

    // Greedy with the cache, one token at a time, equals generate().
    let mut seq = ids.narrow(0, 0, 1);
    let (mut logits, mut cache) = tch::no_grad(|| m.forward_t(&seq, None, false)).unwrap();
    for _ in 0..8 {
        let next = logits.select(1, -1).argmax(-1, true); // (1, 1)
        seq = Tensor::cat(&[&seq, &next], 1);
        (logits, cache) = tch::no_grad(|| m.forward_t(&next, Some(&cache), false)).unwrap();
    }
    assert_eq!(
        ids_of(&seq.narrow(1, 7, 8)),
        ids_of(&want["greedy_ids"]),
        "{name} greedy"
    );

    // A left-padded batch of two prompts: generate(attention_mask=…)'s new ids.
    let mask = ids_of(&want["batch_mask"]);
    let rows = ids_of(&want["batch_ids"]);
    let prompts: Vec<Vec<i64>> = rows
        .chunks(5)
        .zip(mask.chunks(5))
        .map(|(r, k)| {
            r.iter()
                .zip(k)
                .filter(|(_, &k)| k == 1)
                .map(|(&i, _)| i)
                .collect()
        })
        .collect();
    let got: Vec<i64> = m.greedy_batch(&prompts, 6).unwrap().concat();
    assert_eq!(got, ids_of(&want["batch_new"]), "{name} left-padded batch");
}

#[test]
fn llama_logits_greedy_and_padded_batches_equal_transformers() {
    parity("llama");
}

#[test]
fn qwen2_logits_greedy_and_padded_batches_equal_transformers() {
    parity("qwen2");
}

#[test]
fn configs_captag_cannot_run_are_one_clear_error() {
    let src = fixture("llama");
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(
        src.join("model.safetensors"),
        d.path().join("model.safetensors"),
    )
    .unwrap();
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let msg = |edit: &dyn Fn(&mut Value)| {
        let mut c = cfg.clone();
        edit(&mut c);
        std::fs::write(d.path().join("config.json"), c.to_string()).unwrap();
        let e = Llama::load(d.path(), Device::Cpu)
            .err()
            .expect("refused")
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        e
    };
    let e = msg(&|c| c["rope_parameters"]["rope_type"] = "llama3".into());
    assert!(e.contains("rope type `llama3`"), "{e}");
    let e = msg(&|c| c["num_key_value_heads"] = 3.into());
    assert!(e.contains("not a multiple of num_key_value_heads 3"), "{e}");
    let e = msg(&|c| c["model_type"] = "mistral".into());
    assert!(e.contains("model_type is `mistral`"), "{e}");
    let e = msg(&|c| c["intermediate_size"] = 40.into());
    assert!(e.contains("config.json implies [32, 40]"), "{e}");
    // Older configs: rope_theta at the top level.
    let mut c: LlamaConfig = serde_json::from_value(cfg.clone()).unwrap();
    c.rope_parameters = None;
    c.rope_theta = Some(123.0);
    assert_eq!(c.rope_theta(), 123.0);
}

/// `--precision bf16` (CUDA-only on the command line; CPU autocast has the same switches, so it
/// runs here): the base weights become bfloat16, the logits stay within bf16's rounding of
/// float32's, cached generation runs, and back in fp32 the logits are float32's again.
#[test]
fn bf16_casts_the_base_and_stays_near_float32() {
    let dir = fixture("llama");
    let ids = &expected(&dir)["input_ids"];
    let mut lm = chat::ChatLm::load(&dir, None, Device::Cpu).unwrap();
    let logits = |l: &Llama| {
        l.in_precision(|| tch::no_grad(|| l.model.forward_t(ids, None, false)))
            .unwrap()
            .0
    };
    let fp32 = logits(&lm.llama);
    assert!(Precision::Bf16.check(Device::Cpu).is_err());
    lm.llama.set_precision(Precision::Bf16);
    for (name, t) in lm.llama.vs.variables() {
        assert_eq!(t.kind(), Kind::BFloat16, "{name}");
    }
    let bf16 = logits(&lm.llama);
    assert_eq!(bf16.kind(), Kind::BFloat16);
    let diff = (bf16.to_kind(Kind::Float) - &fp32)
        .abs()
        .max()
        .double_value(&[]);
    let scale = fp32.abs().max().double_value(&[]);
    assert!(
        diff <= 0.05 * scale,
        "bf16 logits {diff} away (scale {scale})"
    );
    let prompt = lm.prompt_ids(None, "hi there", false).unwrap();
    let h = lm
        .generate(
            &prompt,
            &crate::model::decoding::Decoding::Greedy { max_len: 5 },
            |_| {},
        )
        .unwrap();
    assert!(h.logp.is_finite() && h.tokens.iter().all(|&t| (0..64).contains(&t)));
    lm.llama.set_precision(Precision::Fp32);
    let back = logits(&lm.llama);
    assert_eq!(back.kind(), Kind::Float);
    assert!((back - &fp32).abs().max().double_value(&[]) <= 0.05 * scale);
}
