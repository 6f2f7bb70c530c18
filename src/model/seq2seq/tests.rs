//! Parity with `transformers`' `MarianMTModel` and `M2M100ForConditionalGeneration` on the tiny
//! random folders `notebooks/make_translation_fixtures.py` saved under
//! `tests/fixtures/hf/{marian,m2m100,nllb}/`: encoder states and teacher-forced logits to float
//! tolerance, `generate`'s greedy and beam-4 ids exactly (each caption alone and a right-padded
//! batch of three), with each folder's generation_config.json (Marian: `bad_words_ids`,
//! `forced_eos_token_id`, renormalised; M2M100: `forced_bos_token_id`, `no_repeat_ngram_size`
//! 3, `length_penalty` 1.3, `early_stopping`; NLLB: untied head, `length_penalty` 0.7).
use serde_json::Value;

use super::*;
use crate::model::clip::tests::{close, expected};
use crate::model::decoding::hf::Generate;
use crate::text::mt_tokenizer::fixture_tests::{expected_json, fixture, ids};

/// `generate`'s row without the start token, cut after the first `</s>` (the rest is padding).
fn generated(row: &[i64], eos: i64) -> Vec<i64> {
    let row = &row[1..];
    match row.iter().position(|&t| t == eos) {
        Some(i) => row[..=i].to_vec(),
        None => row.to_vec(),
    }
}

fn parity(name: &str) {
    let dir = fixture(name);
    let t = Translator::load(&dir, Device::Cpu).unwrap();
    let want = expected_json(name);
    let tensors = expected(&dir);
    let eos = t.generation.eos;
    let cases = want["cases"].as_array().unwrap();
    for (i, case) in cases.iter().take(2).enumerate() {
        let x = Tensor::from_slice(&ids(&case["ids"])).unsqueeze(0);
        let keep = x.ones_like().to_kind(Kind::Bool);
        let mem = tch::no_grad(|| t.model.encode(&x, &keep)).unwrap();
        close(
            &format!("{name} encoder {i}"),
            &mem.squeeze_dim(0),
            &tensors[&format!("encoder_{i}")],
        );
        let y = Tensor::from_slice(&ids(&case["greedy"])).unsqueeze(0);
        let mut st = t.model.start(&mem, &keep);
        let logits = tch::no_grad(|| t.model.decode(&y, &mut st)).unwrap();
        close(
            &format!("{name} logits {i}"),
            &logits.squeeze_dim(0),
            &tensors[&format!("logits_{i}")],
        );
    }
    let inputs: Vec<Vec<i64>> = cases.iter().map(|c| ids(&c["ids"])).collect();
    for (key, beams) in [("greedy", 1), ("beam", 4)] {
        let g = Generate {
            beams,
            ..t.generation.clone()
        };
        for (input, case) in inputs.iter().zip(cases) {
            let got = t.generate_ids(std::slice::from_ref(input), &g).unwrap();
            assert_eq!(
                got[0],
                generated(&ids(&case[key]), eos),
                "{name} {key} of {:?}",
                case["text"]
            );
        }
        // A right-padded batch of three.
        let got = t.generate_ids(&inputs[..3], &g).unwrap();
        let rows: Vec<Vec<i64>> = want["batch"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| generated(&ids(r), eos))
            .collect();
        assert_eq!(got, rows, "{name} {key} batch");
    }
}

#[test]
fn marian_states_logits_greedy_and_beam_equal_transformers() {
    parity("marian");
}

#[test]
fn m2m100_states_logits_greedy_and_beam_equal_transformers() {
    parity("m2m100");
}

#[test]
fn nllb_states_logits_greedy_and_beam_equal_transformers() {
    parity("nllb");
}

#[test]
fn marian_positions_are_sin_then_cos() {
    let t = marian_positions(4, 6);
    let angle = 3.0 / 10000f64.powf(2.0 / 6.0);
    assert!((t.double_value(&[3, 1]) - angle.sin()).abs() < 1e-6);
    assert!((t.double_value(&[3, 4]) - angle.cos()).abs() < 1e-6);
    let m = m2m100_positions(5, 4, 1);
    assert_eq!(m.get(1).abs().sum(Kind::Float).double_value(&[]), 0.0);
}

#[test]
fn a_folder_of_another_architecture_is_one_error() {
    let e = Translator::load(&fixture("llama"), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model_type") || e.contains("not a translation"),
        "{e}"
    );
    let _: Value = Value::Null;
}
