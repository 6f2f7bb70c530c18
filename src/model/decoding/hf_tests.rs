//! `generate`'s processors and beam rules on fake bigram models; parity with `transformers`
//! itself is in src/model/seq2seq/tests.rs.
use super::*;

/// `table[prev]` = probabilities of the next token; vocab 0 start/pad, 1 eos, 2 a, 3 b.
fn bigram(table: Vec<Vec<f32>>) -> impl FnMut(&[usize], &[i64]) -> Result<Vec<f32>> {
    move |parents, tokens| {
        assert_eq!(parents.len(), tokens.len());
        Ok(tokens
            .iter()
            .flat_map(|&t| table[t as usize].iter().map(|p| p.ln()))
            .collect())
    }
}

fn config(beams: usize) -> Generate {
    GenerationConfig::default()
        .resolve(0, 1, 0)
        .with_beams(beams)
}

impl Generate {
    fn with_beams(self, beams: usize) -> Self {
        Generate { beams, ..self }
    }
}

fn loops() -> Vec<Vec<f32>> {
    vec![
        vec![1e-9, 0.1, 0.5, 0.4],
        vec![0.25, 0.25, 0.25, 0.25],
        vec![1e-9, 0.1, 0.2, 0.7],
        vec![1e-9, 0.1, 0.7, 0.2],
    ]
}

#[test]
fn greedy_runs_to_max_length_and_forces_the_first_and_last_tokens() {
    let g = Generate {
        max_length: 6,
        ..config(1)
    };
    let out = generate(2, &g, bigram(loops())).unwrap();
    assert_eq!(out, vec![vec![2, 3, 2, 3, 2]; 2]);
    let g = Generate {
        forced_bos: Some(3),
        forced_eos: Some(1),
        ..g
    };
    let out = generate(1, &g, bigram(loops())).unwrap();
    assert_eq!(out[0], vec![3, 2, 3, 2, 1]);
    let beam = generate(1, &Generate { beams: 3, ..g }, bigram(loops())).unwrap();
    assert_eq!(beam[0].first(), Some(&3));
    assert_eq!(beam[0].last(), Some(&1));
}

#[test]
fn no_repeat_ngram_bans_a_repeated_pair() {
    let g = Generate {
        max_length: 8,
        no_repeat_ngram: 2,
        ..config(1)
    };
    let out = generate(1, &g, bigram(loops())).unwrap();
    // "a b" may not come twice: after "a b a" the next is "a", not "b".
    let seq = &out[0];
    let pairs: Vec<_> = seq.windows(2).collect();
    let distinct: std::collections::HashSet<_> = pairs.iter().collect();
    assert_eq!(pairs.len(), distinct.len(), "{seq:?}");
    assert_eq!(&seq[..4], &[2, 3, 2, 2]);
    // Banned pads never appear; min_length keeps `</s>` out early.
    let g = Generate {
        bad_words: vec![2],
        min_length: 4,
        ..g
    };
    let out = generate(1, &g, bigram(loops())).unwrap();
    assert!(!out[0].contains(&2), "{:?}", out[0]);
    assert!(out[0].iter().position(|&t| t == 1).is_none_or(|p| p >= 3));
}

#[test]
fn beam_finds_what_greedy_misses_and_length_penalty_prefers_longer() {
    // Greedy: "a" (0.6) then a flat row; beam: "b </s>" (0.4).
    let table = vec![
        vec![1e-9, 1e-9, 0.6, 0.4],
        vec![0.25, 0.25, 0.25, 0.25],
        vec![1e-9, 0.34, 0.33, 0.33],
        vec![1e-9, 1.0, 1e-9, 1e-9],
    ];
    let g = Generate {
        max_length: 6,
        length_penalty: 0.0,
        ..config(2)
    };
    assert_eq!(
        generate(1, &g.clone().with_beams(1), bigram(table.clone())).unwrap()[0][..2],
        [2, 1]
    );
    assert_eq!(generate(1, &g, bigram(table)).unwrap()[0], vec![3, 1]);
    // "</s>" at once (0.4) against "a </s>" (0.36): a penalty of 1 scores per token.
    let table = vec![
        vec![1e-9, 0.4, 0.6, 1e-9],
        vec![0.25, 0.25, 0.25, 0.25],
        vec![1e-9, 0.6, 0.4, 1e-9],
        vec![1e-9, 1.0, 1e-9, 1e-9],
    ];
    let short = Generate {
        max_length: 5,
        length_penalty: 0.0,
        ..config(3)
    };
    let long = Generate {
        length_penalty: 1.0,
        ..short.clone()
    };
    assert_eq!(
        generate(1, &short, bigram(table.clone())).unwrap()[0],
        vec![1]
    );
    assert_eq!(generate(1, &long, bigram(table)).unwrap()[0], vec![2, 1]);
}

#[test]
fn generation_config_reads_transformers_fields() {
    let text = r#"{"num_beams": 4, "max_length": 512, "bad_words_ids": [[58100]],
        "forced_eos_token_id": 0, "eos_token_id": [0], "early_stopping": "never",
        "decoder_start_token_id": 58100}"#;
    let c: GenerationConfig = serde_json::from_str(text).unwrap();
    let g = c.resolve(1, 2, 3);
    assert_eq!(
        (g.beams, g.max_length, g.eos, g.start, g.pad),
        (4, 512, 0, 58100, 3)
    );
    assert_eq!((g.forced_eos, g.bad_words.clone()), (Some(0), vec![58100]));
    assert_eq!(g.early_stopping, EarlyStopping::Never);
}

/// A prompt shifts nothing a bigram model sees, counts in `max_length` but not in the length
/// penalty, and is seen by the n-gram rule; the n-best list is ranked and its sums add up.
#[test]
fn a_prompt_counts_in_max_length_and_the_ngram_rule_only() {
    let plain = Generate {
        max_length: 6,
        ..config(3)
    };
    let prompted = Generate {
        max_length: 8,
        ..plain.clone()
    };
    let alone = generate_nbest(2, &[0], &plain, bigram(loops())).unwrap();
    let after = generate_nbest(2, &[3, 2, 0], &prompted, bigram(loops())).unwrap();
    assert_eq!(alone, after);
    assert_eq!(alone[0].len(), 3);
    let table = loops();
    for h in &alone[0] {
        let mut prev = 0usize;
        let sum: f32 = h
            .ids
            .iter()
            .map(|&t| {
                let l = table[prev][t as usize].ln();
                prev = t as usize;
                l
            })
            .sum();
        assert!((sum - h.logp).abs() < 1e-4, "{h:?}");
    }
    assert!(alone[0].windows(2).all(|w| w[0].score >= w[1].score));
    // After "<s> a <s>", a 2-gram rule bans "a" (greedy would pick it: 0.5).
    let g = Generate {
        no_repeat_ngram: 2,
        ..plain.with_beams(1)
    };
    assert_eq!(
        generate_nbest(1, &[0], &g, bigram(loops())).unwrap()[0][0].ids[0],
        2
    );
    assert_ne!(
        generate_nbest(1, &[0, 2, 0], &g, bigram(loops())).unwrap()[0][0].ids[0],
        2
    );
}

#[test]
fn a_rows_top_k_is_the_head_of_the_fully_sorted_row() {
    // Ties (equal values, and values that round to one sum with the beam's score) and banned
    // tokens: the one-pass selection must keep exactly what sorting everything keeps.
    let row = [
        -1.0,
        -0.5,
        f32::NEG_INFINITY,
        -0.5,
        -2.0,
        -0.5 - 1e-9,
        -0.25,
        -0.5,
        f32::NEG_INFINITY,
        -3.0,
    ];
    for score in [0.0f32, -7.0, -1.0e6] {
        for k in 1..=row.len() + 2 {
            let mut all: Vec<(f32, usize)> = row
                .iter()
                .enumerate()
                .map(|(t, &x)| (score + x, 40 + t))
                .collect();
            all.sort_by(by_score);
            all.truncate(k);
            assert_eq!(row_top_k(&row, score, 40, k), all, "score {score}, k {k}");
        }
    }
}
