//! `HfTokenizer` against `transformers`' ids on the committed cases (GPT-2, CLIP, BERT, Unigram).
use super::*;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

struct Cases {
    strings: Vec<String>,
    ids: serde_json::Value,
}

/// The committed cases, or the file `CAPTAG_TOKENIZER_CASES` names (`make_hf_fixtures.py
/// --bulk-cases PATH`: every caption of the Instagram and Flickr8k files).
fn cases() -> Cases {
    let path = std::env::var_os("CAPTAG_TOKENIZER_CASES")
        .map(PathBuf::from)
        .unwrap_or_else(|| fixture("tokenizer_cases.json"));
    let text = std::fs::read_to_string(path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    Cases {
        strings: serde_json::from_value(v["strings"].clone()).unwrap(),
        ids: v,
    }
}

/// Every case's ids equal `transformers`'; returns the number of cases checked.
fn check(tok: &HfTokenizer, key: &str) -> usize {
    let c = cases();
    let want: Vec<Vec<u32>> = serde_json::from_value(c.ids[key].clone()).unwrap();
    assert_eq!(want.len(), c.strings.len());
    let mut bad = Vec::new();
    for (s, w) in c.strings.iter().zip(&want) {
        let got = tok.encode(s);
        if &got != w {
            bad.push(format!("{s:?}\n  got  {got:?}\n  want {w:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} differ:\n{}",
        bad.len(),
        want.len(),
        bad.join("\n")
    );
    want.len()
}

/// A copy of a fixture folder with only `vocab.json` + `merges.txt` (the older download).
fn two_file_copy(name: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for f in ["vocab.json", "merges.txt"] {
        std::fs::copy(fixture(name).join(f), d.path().join(f)).unwrap();
    }
    d
}

#[test]
fn gpt2_ids_equal_transformers() {
    let n = check(&HfTokenizer::gpt2(&fixture("gpt2")).unwrap(), "gpt2");
    let d = two_file_copy("gpt2");
    check(&HfTokenizer::gpt2(d.path()).unwrap(), "gpt2");
    eprintln!("gpt2 tokenizer: {n} cases identical (tokenizer.json and vocab+merges)");
}

#[test]
fn clip_ids_equal_transformers() {
    let n = check(&HfTokenizer::clip(&fixture("clip")).unwrap(), "clip");
    let d = two_file_copy("clip");
    check(&HfTokenizer::clip(d.path()).unwrap(), "clip");
    eprintln!("clip tokenizer: {n} cases identical (tokenizer.json and vocab+merges)");
}

/// WordPiece: BERT's `tokenizer.json`, and the same folder with only `vocab.txt` (+ its
/// `tokenizer_config.json`), converted as `transformers`' `BertConverter` does.
#[test]
fn bert_wordpiece_ids_equal_transformers() {
    let n = check(
        &HfTokenizer::load(&fixture("bert"), Family::Bert).unwrap(),
        "bert",
    );
    let d = tempfile::tempdir().unwrap();
    for f in ["vocab.txt", "tokenizer_config.json"] {
        std::fs::copy(fixture("bert").join(f), d.path().join(f)).unwrap();
    }
    let t = HfTokenizer::load(d.path(), Family::Bert).unwrap();
    check(&t, "bert");
    let ids = t.encode("A Dog runs.");
    assert_eq!(
        (ids[0], *ids.last().unwrap()),
        (t.bos_id().unwrap(), t.eos_id())
    );
    assert_eq!(t.decode(&ids, true), "a dog runs.");
    eprintln!("bert tokenizer: {n} cases identical (tokenizer.json and vocab.txt)");
}

/// Unigram (SentencePiece: NFKC, `▁` word starts, `</s>` appended), read from
/// `tokenizer.json` as any folder's; the end token comes from `tokenizer_config.json`.
#[test]
fn sentencepiece_unigram_ids_equal_transformers() {
    let t = HfTokenizer::load(&fixture("unigram"), Family::Any).unwrap();
    let n = check(&t, "unigram");
    assert_eq!(Some(t.eos_id()), t.token_id("</s>"));
    assert_eq!(t.decode(&t.encode("a dog runs"), true), "a dog runs");
    let e = HfTokenizer::load(&fixture("unigram"), Family::Gpt2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Unigram") && e.contains("BPE"), "{e}");
    eprintln!("unigram tokenizer: {n} cases identical");
}

/// The full real vocabularies (written by `make_hf_fixtures.py --real-out DIR`, not
/// committed: 1–2 MB each) when `CAPTAG_REAL_{CLIP,GPT2}_TOKENIZER` name their folders.
fn real(var: &str, family: Family, key: &str, size: usize) {
    let Some(dir) = std::env::var_os(var) else {
        eprintln!("skipped: set {var} to a --real-out folder of make_hf_fixtures.py");
        return;
    };
    let dir = PathBuf::from(dir);
    let tok = HfTokenizer::load(&dir, family).unwrap();
    assert_eq!(tok.vocab_size(), size);
    let n = check(&tok, key);
    let mut forms = "tokenizer.json";
    if dir.join("tokenizer.json").exists() {
        let d = tempfile::tempdir().unwrap();
        for f in ["vocab.json", "merges.txt"] {
            std::fs::copy(dir.join(f), d.path().join(f)).unwrap();
        }
        check(&HfTokenizer::load(d.path(), family).unwrap(), key);
        forms = "tokenizer.json and vocab+merges";
    }
    eprintln!("{key}: {n} cases identical with the {size}-token vocabulary ({forms})");
}

/// `tokenizer.json` files written before `tokenizers` 0.20 (the hub's `gpt2` and
/// `openai/clip-*`) hold merges as `"a b"` strings.
#[test]
fn merges_as_strings_read_the_same() {
    for (name, family, key) in [
        ("gpt2", Family::Gpt2, "gpt2"),
        ("clip", Family::Clip, "clip"),
    ] {
        let text = std::fs::read_to_string(fixture(name).join("tokenizer.json")).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let merges: Vec<serde_json::Value> = v["model"]["merges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| format!("{} {}", m[0].as_str().unwrap(), m[1].as_str().unwrap()).into())
            .collect();
        v["model"]["merges"] = merges.into();
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("tokenizer.json"), v.to_string()).unwrap();
        check(&HfTokenizer::load(d.path(), family).unwrap(), key);
    }
}

#[test]
fn real_clip_vocabulary_ids_equal_transformers() {
    real(
        "CAPTAG_REAL_CLIP_TOKENIZER",
        Family::Clip,
        "clip_real",
        49408,
    );
}

#[test]
fn real_gpt2_vocabulary_ids_equal_transformers() {
    real(
        "CAPTAG_REAL_GPT2_TOKENIZER",
        Family::Gpt2,
        "gpt2_real",
        50257,
    );
}

#[test]
fn decoding_inverts_encoding() {
    let g = HfTokenizer::gpt2(&fixture("gpt2")).unwrap();
    let s = "Sunset vibes 🌅 #beach  with @friends\n";
    assert_eq!(g.decode(&g.encode(s), false), s);
    let c = HfTokenizer::clip(&fixture("clip")).unwrap();
    let ids = c.encode("A Dog,  running!");
    assert_eq!(ids[0], c.bos_id().unwrap());
    assert_eq!(*ids.last().unwrap(), c.eos_id());
    assert_eq!(c.decode(&ids, true), "a dog , running !");
}

#[test]
fn a_folder_without_tokenizer_files_is_one_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let e = HfTokenizer::gpt2(d.path()).unwrap_err().to_string();
    assert!(e.contains("not a Hugging Face tokenizer folder"), "{e}");
    let e = HfTokenizer::gpt2(&fixture("clip")).unwrap_err().to_string();
    assert!(e.contains("end-of-word suffix"), "{e}");
    let text = std::fs::read_to_string(fixture("gpt2").join("tokenizer.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["pre_tokenizer"]["add_prefix_space"] = true.into();
    std::fs::write(d.path().join("tokenizer.json"), v.to_string()).unwrap();
    let e = HfTokenizer::gpt2(d.path()).unwrap_err().to_string();
    assert!(e.contains("prefix space"), "{e}");
}
