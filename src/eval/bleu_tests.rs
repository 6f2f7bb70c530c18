//! Tests of `eval::bleu`: hand-checked cases, a map-based reference on random corpora, and
//! parity with pycocoevalcap / NLTK on `tests/fixtures/bleu/cases.json`.
use super::*;

fn toks(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn score(hyps: &[&str], refs: &[&[&str]], mode: BleuMode) -> BleuScores {
    let h: Vec<Vec<String>> = hyps.iter().map(|s| toks(s)).collect();
    let r: Vec<Vec<Vec<String>>> = refs
        .iter()
        .map(|rs| rs.iter().map(|s| toks(s)).collect())
        .collect();
    corpus_bleu(&h, &r, mode).unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn identical_sentence_scores_one() {
    let same: &[&[&str]] = &[&["a dog runs on grass"]];
    assert_eq!(
        score(&["a dog runs on grass"], same, BleuMode::Nltk).bleu,
        [1.0; 4]
    );
    // coco's 1e-9 in every denominator keeps it just below 1.
    let s = score(&["a dog runs on grass"], same, BleuMode::Coco);
    assert!(
        s.bleu.iter().all(|&b| b < 1.0 && close(b, 1.0, 1e-9)),
        "{s:?}"
    );
    assert_eq!((s.hyp_len, s.ref_len), (5, 5));
}

#[test]
fn clipping_counts_each_reference_word_once() {
    // Papineni's example: "the" occurs at most twice in one reference, so p1 = 2/7.
    let refs: &[&[&str]] = &[&["the cat is on the mat", "there is a cat on the mat"]];
    for mode in [BleuMode::Coco, BleuMode::Nltk] {
        let s = score(&["the the the the the the the"], refs, mode);
        assert!(close(s.bleu[0], 2.0 / 7.0, 1e-9), "{mode}: {s:?}");
    }
}

#[test]
fn brevity_penalty_uses_closest_reference() {
    // c = 2, closest r = 4 (of 4 and 9): BP = exp(1 - 4/2) = e^-1, p1 = 1.
    let refs: &[&[&str]] = &[&["a b c d", "a b c d e f g h i"]];
    let s = score(&["a b"], refs, BleuMode::Nltk);
    assert!(close(s.bleu[0], (-1.0f64).exp(), 1e-15), "{s:?}");
    assert_eq!(s.ref_len, 4);
}

#[test]
fn closest_length_ties_go_to_the_shorter_reference() {
    // |5 - 4| == |6 - 5|: r = 4, so no brevity penalty.
    for refs in [["a b c d", "a b c d e f"], ["a b c d e f", "a b c d"]] {
        let s = score(&["a b c d e"], &[&refs], BleuMode::Nltk);
        assert_eq!(s.ref_len, 4);
        assert_eq!(s.bleu[0], 1.0);
    }
    assert_eq!(closest_ref_len(&[3, 7, 1], 2), 1);
    assert_eq!(closest_ref_len(&[3, 7], 2), 3);
    assert_eq!(closest_ref_len(&[], 2), 0);
}

#[test]
fn short_hypotheses_count_one_in_nltk_denominator() {
    // "a dog" has no trigram: coco's guess_3 = 0, NLTK's denominator max(1, 0) = 1.
    let h = vec![toks("a dog")];
    let r = vec![vec![toks("a dog")]];
    let st = corpus_stats(&h, &r).unwrap();
    assert_eq!(st.guess, [2, 1, 0, 0]);
    assert_eq!(st.guess_nltk, [2, 1, 1, 1]);
    assert_eq!(st.correct, [2, 1, 0, 0]);
    // NLTK: zero 3-gram precision becomes float_info.min, a tiny but non-zero score.
    let s = st.score(BleuMode::Nltk);
    assert!(s.bleu[2] > 0.0 && s.bleu[2] < 1e-100, "{s:?}");
}

#[test]
fn no_unigram_match_is_exactly_zero_in_nltk() {
    let s = score(&["x y"], &[&["a b"]], BleuMode::Nltk);
    assert_eq!(s.bleu, [0.0; 4]);
    let s = score(&[""], &[&["a b"]], BleuMode::Coco);
    assert!(s.bleu.iter().all(|&b| b < 1e-6), "{s:?}");
}

#[test]
fn bad_shapes_are_errors() {
    let h = vec![toks("a")];
    let none: Vec<Vec<Vec<String>>> = vec![];
    assert!(corpus_bleu(&h, &none, BleuMode::Coco).is_err());
    let empty: Vec<Vec<Vec<String>>> = vec![vec![]];
    let e = corpus_bleu(&h, &empty, BleuMode::Nltk)
        .unwrap_err()
        .to_string();
    assert!(e.contains("hypothesis 0 has no references"), "{e}");
}

#[test]
fn statistics_of_parts_add_up() {
    let (h, r) = (
        vec![toks("a b a"), toks("c")],
        vec![vec![toks("a b")], vec![toks("c d")]],
    );
    let mut parts = corpus_stats(&h[..1], &r[..1]).unwrap();
    parts.merge(&corpus_stats(&h[1..], &r[1..]).unwrap());
    assert_eq!(parts, corpus_stats(&h, &r).unwrap());
    assert_eq!(parts.correct, [3, 1, 0, 0]);
}

/// The definition, spelled out with maps of n-gram slices.
fn naive_stats(hyps: &[Vec<String>], refs: &[Vec<Vec<String>>]) -> BleuStats {
    use std::collections::HashMap;
    fn counts(t: &[String], n: usize) -> HashMap<&[String], u64> {
        let mut m = HashMap::new();
        for w in t.windows(n) {
            *m.entry(w).or_insert(0) += 1;
        }
        m
    }
    let mut st = BleuStats::default();
    for (h, rs) in hyps.iter().zip(refs) {
        let lens: Vec<usize> = rs.iter().map(Vec::len).collect();
        st.hyp_len += h.len() as u64;
        st.ref_len += closest_ref_len(&lens, h.len()) as u64;
        for k in 0..MAX_N {
            let guess = (h.len() + 1).saturating_sub(k + 1) as u64;
            st.guess[k] += guess;
            st.guess_nltk[k] += guess.max(1);
            let rc: Vec<_> = rs.iter().map(|r| counts(r, k + 1)).collect();
            for (g, c) in counts(h, k + 1) {
                let best = rc.iter().map(|m| m.get(g).copied().unwrap_or(0)).max();
                st.correct[k] += c.min(best.unwrap_or(0));
            }
        }
    }
    st
}

#[test]
fn matches_the_naive_definition_on_random_corpora() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    // Tokens of every digest shape, including > 16 bytes sharing head, tail and length.
    let words = [
        "a",
        "ab",
        "abc",
        "abcd",
        "abcdefg",
        "abcdefgh",
        "ab.defghijk",
        "",
        "é",
        "aaaaaaaaXaaaaaaaa",
        "aaaaaaaaYaaaaaaaa",
        "aaaaaaaaZaaaaaaaaaaaaaa",
    ];
    for max_len in [3, 12, 300] {
        let sent = |rng: &mut rand_chacha::ChaCha8Rng| -> Vec<String> {
            let n = rng.gen_range(0..=max_len);
            (0..n)
                .map(|_| words[rng.gen_range(0..words.len())].to_string())
                .collect()
        };
        let hyps: Vec<_> = (0..60).map(|_| sent(&mut rng)).collect();
        let refs: Vec<Vec<_>> = (0..60)
            .map(|_| (0..rng.gen_range(1..6)).map(|_| sent(&mut rng)).collect())
            .collect();
        assert_eq!(
            corpus_stats(&hyps, &refs).unwrap(),
            naive_stats(&hyps, &refs)
        );
    }
}

#[test]
fn fsum_is_correctly_rounded() {
    assert_eq!(fsum(&[0.1; 10]), 1.0);
    assert_eq!(
        fsum(&[1e100, 1.0, -1e100, 1e-100, 1e50, -1.0, -1e50]),
        1e-100
    );
    // Half-even fix-up (CPython test_math): 2^53 + 1 + 2^-? style cases.
    assert_eq!(
        fsum(&[2f64.powi(53), -0.5, -(2f64.powi(-54))]),
        2f64.powi(53) - 1.0
    );
    assert_eq!(fsum(&[]), 0.0);
}

#[derive(serde::Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    hyps: Vec<Vec<String>>,
    refs: Vec<Vec<Vec<String>>>,
    coco_bits: [u64; 4],
    nltk_bits: [u64; 4],
}

/// Expected values come from pycocoevalcap and NLTK via notebooks/bleu_reference.py (the
/// exact calls are in its docstring); stored as bit patterns so nothing is lost in JSON.
#[test]
fn parity_with_reference() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/bleu/cases.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let fx: Fixture = serde_json::from_str(&text).unwrap();
    assert!(fx.cases.len() >= 10);
    let (mut exact, mut total) = (0, 0);
    for case in &fx.cases {
        let st = corpus_stats(&case.hyps, &case.refs).unwrap();
        for (mode, bits) in [
            (BleuMode::Coco, case.coco_bits),
            (BleuMode::Nltk, case.nltk_bits),
        ] {
            let got = st.score(mode).bleu;
            for k in 0..4 {
                let want = f64::from_bits(bits[k]);
                assert!(
                    close(got[k], want, 1e-12),
                    "{} {mode} BLEU-{}: rust {:e} reference {:e}",
                    case.name,
                    k + 1,
                    got[k],
                    want
                );
                total += 1;
                exact += usize::from(got[k].to_bits() == bits[k]);
            }
        }
    }
    eprintln!("BLEU parity: {exact}/{total} scores bit-identical, all within 1e-12");
}
