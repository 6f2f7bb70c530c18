use super::*;

use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/coco/cases.json"
);

fn toks(s: &str) -> Vec<String> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split(' ').map(str::to_string).collect()
    }
}

fn corpus(hyps: &[&str], refs: &[&[&str]]) -> (Vec<Vec<String>>, Vec<Vec<Vec<String>>>) {
    (
        hyps.iter().map(|h| toks(h)).collect(),
        refs.iter()
            .map(|rs| rs.iter().map(|r| toks(r)).collect())
            .collect(),
    )
}

fn score(hyps: &[&str], refs: &[&[&str]]) -> RougeScores {
    let (h, r) = corpus(hyps, refs);
    rouge_l(&h, &r).unwrap()
}

/// F_β from P and R, written out as in rouge.py.
fn f(p: f64, r: f64) -> f64 {
    (1.0 + 1.44) * p * r / (r + 1.44 * p)
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * want.abs().max(1.0)
}

fn assert_close(got: f64, want: f64, what: &str) {
    assert!(close(got, want), "{what}: got {got:?}, want {want:?}");
}

fn tokens(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("token list")
        .iter()
        .map(|t| t.as_str().expect("token").to_string())
        .collect()
}

/// The expected value: the exact bit pattern when the fixture has it, else the float.
fn expected(case: &Value, key: &str) -> f64 {
    match case[format!("{key}_bits")].as_u64() {
        Some(b) => f64::from_bits(b),
        None => case[key].as_f64().expect(key),
    }
}

fn expected_list(case: &Value, key: &str) -> Vec<f64> {
    match case[format!("{key}_bits")].as_array() {
        Some(bits) => bits
            .iter()
            .map(|b| f64::from_bits(b.as_u64().unwrap()))
            .collect(),
        None => case[key]
            .as_array()
            .expect(key)
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect(),
    }
}

#[test]
fn parity_with_pycocoevalcap() {
    let text = std::fs::read_to_string(FIXTURE).expect("read tests/fixtures/coco/cases.json");
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let cases = fixture["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10, "fixture has {} cases", cases.len());
    let (mut values, mut identical) = (0, 0);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let hyps: Vec<Vec<String>> = case["hyps"]
            .as_array()
            .unwrap()
            .iter()
            .map(tokens)
            .collect();
        let refs: Vec<Vec<Vec<String>>> = case["refs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|rs| rs.as_array().unwrap().iter().map(tokens).collect())
            .collect();
        let got = rouge_l(&hyps, &refs).unwrap();
        let want_img = expected_list(case, "rouge_per_image");
        assert_eq!(got.per_image.len(), want_img.len(), "{name}: images");
        for (i, (&g, &w)) in got.per_image.iter().zip(&want_img).enumerate() {
            assert_close(g, w, &format!("{name}: image {i}"));
            values += 1;
            identical += usize::from(g.to_bits() == w.to_bits());
        }
        let want = expected(case, "rouge");
        assert_close(got.score, want, &format!("{name}: corpus"));
        values += 1;
        identical += usize::from(got.score.to_bits() == want.to_bits());
    }
    eprintln!("ROUGE-L: {identical} of {values} fixture values bit-identical to pycocoevalcap");
}

#[test]
fn hand_checked_single_reference() {
    // LCS("a b c d", "a c e") = 2: P = 2/4, R = 2/3.
    let s = score(&["a b c d"], &[&["a c e"]]);
    assert_close(s.per_image[0], f(0.5, 2.0 / 3.0), "F");
    assert_close(s.score, s.per_image[0], "corpus of one");
    // Identical sentences: 1. Nothing in common: 0.
    let s = score(&["a dog runs", "x"], &[&["a dog runs"], &["y z"]]);
    assert_eq!(s.per_image, vec![1.0, 0.0]);
    assert_eq!(s.score, 0.5);
}

#[test]
fn precision_and_recall_maxima_are_taken_separately() {
    // ref 0: LCS 2, P = 1, R = 2/6; ref 1: LCS 1, P = 1/2, R = 1. No single reference has
    // P = R = 1, but P_max = R_max = 1, so F = 1.
    let s = score(&["a b"], &[&["a b c d e f", "a"]]);
    assert_close(s.per_image[0], 1.0, "separate maxima");
}

#[test]
fn empty_hypothesis_is_one_empty_token() {
    // "".split(" ") == [""]: length 1; it matches nothing in a non-empty reference ...
    let s = score(&["", "a"], &[&["a dog"], &["a"]]);
    assert_eq!(s.per_image, vec![0.0, 1.0]);
    // ... but matches an empty reference's "" token: LCS 1, P = R = 1.
    let s = score(&[""], &[&["a dog", ""]]);
    assert_close(s.per_image[0], 1.0, "empty vs empty");
}

#[test]
fn empty_tokens_survive_the_split() {
    // ["a", "", "b"] -> "a  b" -> ["a", "", "b"]: 3 tokens, LCS with "a b" is 2.
    let h = vec![vec!["a".to_string(), String::new(), "b".to_string()]];
    let r = vec![vec![toks("a b")]];
    let s = rouge_l(&h, &r).unwrap();
    assert_close(s.per_image[0], f(2.0 / 3.0, 1.0), "empty token");
    // A space inside a token splits it; a tab does not.
    let h = vec![vec!["a b".to_string()], vec!["c\td".to_string()]];
    let r = vec![vec![toks("a b")], vec![toks("c d")]];
    assert_eq!(rouge_l(&h, &r).unwrap().per_image, vec![1.0, 0.0]);
}

#[test]
fn mismatched_lengths_is_an_error() {
    let (h, mut r) = corpus(&["a", "b", "c"], &[&["a"], &["b"], &["c"]]);
    r.push(vec![toks("d")]);
    let e = rouge_l(&h, &r).unwrap_err();
    assert!(e.contains("3 hypotheses but 4 reference sets"), "{e}");
}

#[test]
fn empty_corpus_and_missing_references_are_errors() {
    assert!(rouge_l(&[], &[]).unwrap_err().contains("empty corpus"));
    let (h, mut r) = corpus(&["a", "b"], &[&["a"], &["b"]]);
    r[0].clear();
    assert!(rouge_l(&h, &r)
        .unwrap_err()
        .contains("image 0 has no references"));
}

#[test]
fn lcs_lengths() {
    let mut lcs = Lcs::default();
    // Letters as word ids.
    let w = |s: &str| -> Vec<u32> { s.split(' ').map(|x| u32::from(x.as_bytes()[0])).collect() };
    assert_eq!(lcs.length(&w("a b c d e"), &w("a c e")), 3);
    assert_eq!(lcs.length(&w("a c e"), &w("a b c d e")), 3);
    assert_eq!(lcs.length(&w("a b a b"), &w("b a b a")), 3);
    assert_eq!(lcs.length(&w("x y"), &w("a b c")), 0);
    assert_eq!(lcs.length(&w("t c t d"), &w("t d t c")), 2);
}
