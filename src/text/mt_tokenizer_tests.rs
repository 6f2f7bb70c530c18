//! Ids and texts equal to `transformers`' `MarianTokenizer`, `M2M100Tokenizer` and
//! `NllbTokenizerFast` on the folders `notebooks/make_translation_fixtures.py` wrote under
//! `tests/fixtures/hf/{marian,m2m100,nllb}/` (`expected.json`: English captions with
//! punctuation, numbers, emoji and hashtags).
use std::path::PathBuf;

use serde_json::Value;

use super::*;

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

pub(crate) fn expected_json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub(crate) fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

/// `transformers` 5.25 leaves M2M100's `__xx__` tokens in decoded text; captag drops them.
fn without_lang_tokens(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("__") {
        let after = &rest[i + 2..];
        match after.find("__") {
            Some(j) if j <= 3 && after[..j].chars().all(|c| c.is_ascii_lowercase()) => {
                out.push_str(&rest[..i]);
                rest = &after[j + 2..];
            }
            _ => {
                out.push_str(&rest[..i + 2]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn parity(name: &str) {
    let tok = MtTokenizer::load(&fixture(name)).unwrap();
    let want = expected_json(name);
    for case in want["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            tok.encode(text, None),
            ids(&case["ids"]),
            "{name}: {text:?}"
        );
        for key in ["greedy", "beam"] {
            let got = tok.decode(&ids(&case[key]));
            let hf = case[&format!("{key}_text")].as_str().unwrap();
            let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(
                norm(&got),
                without_lang_tokens(hf),
                "{name} {key} text of {text:?}"
            );
        }
    }
}

#[test]
fn marian_ids_and_texts_equal_transformers() {
    parity("marian");
}

#[test]
fn m2m100_ids_and_texts_equal_transformers() {
    parity("m2m100");
    let tok = MtTokenizer::load(&fixture("m2m100")).unwrap();
    let want = expected_json("m2m100");
    assert_eq!(
        tok.lang_id("hin_Deva"),
        want["forced_bos_token_id"].as_i64()
    );
    assert_eq!(tok.lang_id("hi"), want["forced_bos_token_id"].as_i64());
}

#[test]
fn nllb_ids_and_texts_equal_transformers() {
    parity("nllb");
    let tok = MtTokenizer::load(&fixture("nllb")).unwrap();
    let want = expected_json("nllb");
    assert_eq!(
        tok.lang_id("hin_Deva"),
        want["forced_bos_token_id"].as_i64()
    );
    assert_eq!(tok.lang_id("hi"), want["forced_bos_token_id"].as_i64());
}

#[test]
fn a_folder_without_tokenizer_files_is_one_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    let e = MtTokenizer::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("not a translation model folder"), "{e}");
}
