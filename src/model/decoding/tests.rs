//! Unit tests of the decoding strategies on hand-made step functions.
use super::*;

pub(super) const SP: Specials = Specials {
    start: 0,
    end: 1,
    unk: None,
    allow_unk: false,
};

/// A fake model whose next-token distribution depends only on the previous token:
/// `table[prev]` = probabilities over the vocabulary.
pub(super) fn bigram(table: Vec<Vec<f32>>) -> impl FnMut(&[usize], &[i64]) -> Result<Vec<f32>> {
    move |_parents, tokens| {
        Ok(tokens
            .iter()
            .flat_map(|&t| table[t as usize].iter().map(|p| p.ln()))
            .collect())
    }
}

/// vocab: 0 <start>, 1 <end>, 2 a, 3 b; greedy writes "a b".
fn two_words() -> Vec<Vec<f32>> {
    vec![
        vec![1e-9, 0.1, 0.5, 0.4],
        vec![0.25, 0.25, 0.25, 0.25],
        vec![1e-9, 0.3, 0.2, 0.5],
        vec![1e-9, 0.6, 0.3, 0.1],
    ]
}

#[test]
fn nbest_is_sorted_and_led_by_the_beam_caption() {
    let table = two_words();
    let best = beam(2, 3, 6, 0.0, SP, bigram(table.clone())).unwrap();
    let all = beam_nbest(2, 3, 6, 0.0, SP, bigram(table)).unwrap();
    for (b, hs) in best.iter().zip(&all) {
        assert!(!hs.is_empty() && hs.len() <= 3);
        assert_eq!(&hs[0], b);
        assert!(hs.windows(2).all(|w| w[0].score >= w[1].score));
        let distinct: std::collections::HashSet<_> = hs.iter().map(|h| &h.tokens).collect();
        assert_eq!(distinct.len(), hs.len(), "{hs:?}");
    }
}

/// Greedy, beam and top-p on a model that prefers `<unk>` (id 2 here) after `<start>`:
/// masked, no caption contains it and the steps where it led are counted; allowed, the
/// old captions come back.
#[test]
fn unk_is_never_chosen_unless_allowed() {
    // vocab: 0 <start>, 1 <end>, 2 <unk>, 3 b; "<unk> b" is the most probable caption.
    let table = vec![
        vec![1e-9, 0.05, 0.6, 0.35],
        vec![0.25, 0.25, 0.25, 0.25],
        vec![1e-9, 0.1, 0.1, 0.8],
        vec![1e-9, 0.7, 0.2, 0.1],
    ];
    let masked = Specials { unk: Some(2), ..SP };
    let allowed = Specials {
        allow_unk: true,
        ..masked
    };
    let strategies = [
        Decoding::Greedy { max_len: 6 },
        Decoding::Beam {
            width: 3,
            max_len: 6,
            alpha: 0.0,
        },
        Decoding::Sample {
            max_len: 6,
            top_p: 1.0,
            temperature: 1.5,
            samples: 8,
            seed: 7,
        },
    ];
    for d in &strategies {
        let mut stats = UnkStats::default();
        let out = decode_nbest_counted(4, d, masked, bigram(table.clone()), &mut stats).unwrap();
        assert!(
            out.iter().flatten().all(|h| !h.tokens.contains(&2)),
            "{d:?}: {out:?}"
        );
        assert!(out.iter().all(|hs| !hs.is_empty()), "{d:?}");
        assert!(
            stats.unk_argmax >= 4 && stats.unk_argmax <= stats.steps,
            "{d:?} {stats:?}"
        );
        for h in out.iter().flatten() {
            assert!(h.logp.is_finite(), "{d:?}: {h:?}");
        }
    }
    // Greedy masked writes "b", allowed "<unk> b" (the old behaviour), both counted.
    let mut stats = UnkStats::default();
    let g = decode_nbest_counted(
        1,
        &strategies[0],
        allowed,
        bigram(table.clone()),
        &mut stats,
    );
    assert_eq!(g.unwrap()[0][0].tokens, vec![2, 3]);
    assert_eq!(
        stats,
        UnkStats {
            steps: 3,
            unk_argmax: 1
        }
    );
    let g = decode_nbest(1, &strategies[0], masked, bigram(table.clone())).unwrap();
    assert_eq!(g[0][0].tokens, vec![3]);
    let b = decode_nbest(1, &strategies[1], allowed, bigram(table)).unwrap();
    assert_eq!(b[0][0].tokens, vec![2, 3]);
}

#[test]
fn beam_width_one_equals_greedy() {
    let table = two_words();
    let g = greedy(3, 10, SP, bigram(table.clone())).unwrap();
    let b = beam(3, 1, 10, 0.0, SP, bigram(table)).unwrap();
    assert_eq!(g[0].tokens, vec![2, 3]);
    for (g, b) in g.iter().zip(&b) {
        assert_eq!(g.tokens, b.tokens);
        assert!((g.logp - b.logp).abs() < 1e-9);
    }
}

#[test]
fn beam_finds_the_sequence_greedy_misses() {
    // Greedy takes "a" (0.6) and then is stuck with a flat 1/3 distribution;
    // "b" (0.4) leads to <end> with certainty: P(b <end>) = 0.4 > P(a x <end>) ≤ 0.2.
    let table = vec![
        vec![1e-9, 1e-9, 0.6, 0.4],
        vec![0.25, 0.25, 0.25, 0.25],
        vec![1e-9, 0.34, 0.33, 0.33],
        vec![1e-9, 1.0, 1e-9, 1e-9],
    ];
    let g = greedy(1, 5, SP, bigram(table.clone())).unwrap();
    let b = beam(1, 2, 5, 0.0, SP, bigram(table)).unwrap();
    assert_eq!(g[0].tokens, vec![2]);
    assert_eq!(b[0].tokens, vec![3]);
    assert!(b[0].logp > g[0].logp);
    assert!((b[0].logp - 0.4f64.ln()).abs() < 1e-6);
}

#[test]
fn end_handling_and_max_len() {
    // Never ends: both decoders stop at max_len words, without <end>.
    let table = vec![
        vec![1e-9, 1e-9, 1.0],
        vec![1e-9, 1e-9, 1.0],
        vec![1e-9, 1e-9, 1.0],
    ];
    let g = greedy(2, 4, SP, bigram(table.clone())).unwrap();
    let b = beam(2, 3, 4, 0.0, SP, bigram(table)).unwrap();
    assert_eq!(g[0].tokens, vec![2; 4]);
    assert_eq!(b[1].tokens, vec![2; 4]);
    // Immediate <end>: empty caption, <end> itself is never part of the tokens.
    let table = vec![
        vec![1e-9, 1.0, 1e-9],
        vec![1e-9, 1.0, 1e-9],
        vec![1e-9, 1.0, 1e-9],
    ];
    assert!(beam(1, 2, 4, 0.0, SP, bigram(table)).unwrap()[0]
        .tokens
        .is_empty());
}

#[test]
fn parents_track_rows() {
    // A model that records the parents it was asked to gather: rows must always be valid
    // indices into the previous call's rows.
    let mut prev_rows = 2usize;
    let step = |parents: &[usize], tokens: &[i64]| -> Result<Vec<f32>> {
        assert_eq!(parents.len(), tokens.len());
        assert!(parents.iter().all(|&p| p < prev_rows));
        prev_rows = tokens.len();
        Ok(tokens
            .iter()
            .flat_map(|_| [0.1f32, 0.2, 0.3, 0.4].map(f32::ln))
            .collect())
    };
    let out = beam(2, 3, 6, 0.7, SP, step).unwrap();
    assert_eq!(out.len(), 2);
}

#[test]
fn length_normalisation_prefers_longer_when_alpha_is_one() {
    // <end> right away has p=0.4, the most probable caption; "a <end>" has p=0.36 but a
    // better per-word average (0.6 per word vs 0.4).
    let table = vec![
        vec![1e-9, 0.4, 0.6, 1e-9],
        vec![0.25, 0.25, 0.25, 0.25],
        vec![1e-9, 0.6, 0.4, 1e-9],
        vec![1e-9, 1.0, 1e-9, 1e-9],
    ];
    let short = beam(1, 3, 3, 0.0, SP, bigram(table.clone())).unwrap();
    let long = beam(1, 3, 3, 1.0, SP, bigram(table)).unwrap();
    assert!(short[0].tokens.is_empty());
    assert!(!long[0].tokens.is_empty());
}
