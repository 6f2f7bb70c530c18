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

fn score(hyps: &[&str], refs: &[&[&str]]) -> CiderScores {
    let (h, r) = corpus(hyps, refs);
    cider_d(&h, &r).unwrap()
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
        let got = cider_d(&hyps, &refs).unwrap();
        let want_img = expected_list(case, "cider_per_image");
        assert_eq!(got.per_image.len(), want_img.len(), "{name}: images");
        for (i, (&g, &w)) in got.per_image.iter().zip(&want_img).enumerate() {
            assert_close(g, w, &format!("{name}: image {i}"));
            values += 1;
            identical += usize::from(g.to_bits() == w.to_bits());
        }
        let want = expected(case, "cider");
        assert_close(got.score, want, &format!("{name}: corpus"));
        values += 1;
        identical += usize::from(got.score.to_bits() == want.to_bits());
    }
    eprintln!("CIDEr-D: {identical} of {values} fixture values bit-identical to pycocoevalcap");
}

#[test]
fn identical_hypothesis_and_single_reference() {
    // Disjoint vocabularies: every df is 1, each weight tf·ln 2, every order's cosine 1.
    let s = score(
        &["a dog runs fast", "the cat sat"],
        &[&["a dog runs fast"], &["the cat sat"]],
    );
    // Four orders present: 10. Three words, no 4-gram: that order adds 0 to the mean: 7.5.
    assert_close(s.per_image[0], 10.0, "4 words");
    assert_close(s.per_image[1], 7.5, "3 words");
    assert_close(s.score, 8.75, "corpus");
}

#[test]
fn one_image_corpus_scores_zero() {
    let s = score(&["a dog runs"], &[&["a dog runs", "a dog"]]);
    assert_eq!(s.per_image, vec![0.0]);
    assert_eq!(s.score, 0.0);
}

#[test]
fn mismatched_lengths_is_an_error() {
    let (h, mut r) = corpus(&["a", "b", "c"], &[&["a"], &["b"], &["c"]]);
    r.push(vec![toks("d")]);
    let e = cider_d(&h, &r).unwrap_err();
    assert!(e.contains("3 hypotheses but 4 reference sets"), "{e}");
}

#[test]
fn empty_corpus_and_missing_references_are_errors() {
    assert!(cider_d(&[], &[]).unwrap_err().contains("empty corpus"));
    let (h, mut r) = corpus(&["a", "b"], &[&["a"], &["b"]]);
    r[1].clear();
    assert!(cider_d(&h, &r)
        .unwrap_err()
        .contains("image 1 has no references"));
}

#[test]
fn empty_hypotheses_and_references_do_not_panic() {
    let s = score(&["", "a cat"], &[&["a dog"], &["a cat", ""]]);
    assert_eq!(s.per_image[0], 0.0);
    // The empty reference scores 0 but still counts in the average over references.
    let alone = score(&["", "a cat"], &[&["a dog"], &["a cat"]]);
    assert_close(s.per_image[1], alone.per_image[1] / 2.0, "empty ref halves");
    // pycocoevalcap raises ValueError when no reference has any word; the limit is 0.
    let s = score(&["a", "b"], &[&[""], &["", ""]]);
    assert_eq!(s.per_image, vec![0.0, 0.0]);
    assert_eq!(s.score, 0.0);
}

#[test]
fn repeated_ngrams_are_clipped() {
    // Image 0: hyp "x x", ref "x"; ref_len = ln 2, df(x) = 1: v_h(x) = 2 ln 2, v_r(x) = ln 2.
    // Clipped unigram value min(2ln2, ln2)·ln2 / (2ln2 · ln2) = 1/2 (an unclipped cosine: 1).
    // The hypothesis bigram "x x" meets an all-zero reference bigram vector: 0. δ = 1 - 0.
    let s = score(&["x x", "y"], &[&["x"], &["y"]]);
    let penalty = (-1.0f64 / 72.0).exp();
    assert_close(s.per_image[0], 10.0 * 0.5 * penalty / 4.0, "clipped");
    assert_close(s.per_image[1], 2.5, "single word");
}

#[test]
fn length_penalty_by_hand() {
    // hyp "a b", ref "a b c d" (other image disjoint): all weights ln 2. Unigram cosine
    // 2/(√2·2) = 1/√2, bigram 1/(1·√3), no hyp 3-/4-grams. δ = bigrams 1 - 3 = -2.
    let s = score(&["a b", "e"], &[&["a b c d"], &["e"]]);
    let want = 10.0 * (0.5f64.sqrt() + (1.0f64 / 3.0).sqrt()) / 4.0 * (-4.0f64 / 72.0).exp();
    assert_close(s.per_image[0], want, "penalised");
}

#[test]
fn length_is_the_bigram_count_of_the_resplit_words() {
    let mut grams = Interner::default();
    let mut len = |s: &str| {
        // One token holding the whole string: precook re-splits it as Python would.
        let tokens: &'static [String] = Vec::leak(vec![s.to_string()]);
        let c = grams.precook(tokens);
        let idf = vec![1.0; grams.orders.len()];
        TfIdf::new(&c, &grams.orders, &idf).length
    };
    // counts2vec's `if n == 1: length += term_freq`: bigrams, repeated ones included.
    assert_eq!(len("a b c d"), 3);
    assert_eq!(len("a b a b"), 3);
    assert_eq!(len("a"), 0);
    assert_eq!(len(""), 0);
    assert_eq!(len("  a \t b  "), 1);
}

#[test]
fn penalty_counts_words_not_caller_tokens() {
    // Six tokens but three words after " ".join + split(): pycocoevalcap scores it as the
    // clean sentence. A δ from the token count (6 vs 3) would give a different score.
    let clean = score(&["a dog runs", "a cat"], &[&["a dog runs"], &["a cat"]]);
    let hyps = vec![
        vec!["a", "", "", "", "dog", "runs"]
            .into_iter()
            .map(String::from)
            .collect(),
        toks("a cat"),
    ];
    let refs = vec![vec![toks("a dog runs")], vec![toks("a cat")]];
    let odd = cider_d(&hyps, &refs).unwrap();
    assert_eq!(odd, clean);
    assert!(clean.per_image[0] > 0.0);
}

#[test]
fn python_whitespace_splits_words() {
    // U+001C is whitespace to Python's str.split() (not to char::is_whitespace); a tab and a
    // space inside a token split it too.
    let split = score(&["x y z", "q"], &[&["x y z"], &["q"]]);
    let h = vec![vec!["x\u{1c}y".to_string(), "z".to_string()], toks("q")];
    let r = vec![vec![vec!["x\ty z".to_string()]], vec![toks("q")]];
    assert_eq!(cider_d(&h, &r).unwrap(), split);
    assert!(is_py_space('\u{1f}') && is_py_space('\u{3000}') && !is_py_space('\u{200b}'));
}

#[test]
fn numpy_mean_matches_naive_mean_closely() {
    for n in [1usize, 3, 7, 8, 9, 16, 127, 128, 129, 300, 1000] {
        let a: Vec<f64> = (0..n).map(|i| ((i * 7919) % 101) as f64 / 7.0).collect();
        let naive = a.iter().sum::<f64>() / n as f64;
        assert_close(numpy_mean(&a), naive, &format!("n = {n}"));
    }
}
