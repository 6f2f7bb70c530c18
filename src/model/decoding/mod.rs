//! Decoding as data ([`Decoding`]) and as plain bookkeeping over a `step` closure, so greedy,
//! beam search and nucleus sampling ([`sample`]) are tested with fake models and work for any
//! decoder.
//!
//! The closure contract: `step(parents, tokens)` first reorders the model's recurrent state to
//! the rows `parents` (indices into the rows of the previous call; for the first call, into the
//! initial per-image state), then feeds `tokens` (one per row) and returns the rows'
//! log-probabilities, row-major `(R × V)`.
//!
//! The unknown word is masked here, once for every strategy and decoder ([`decode_nbest`]):
//! a caption never says `<unk>` unless [`Specials::unk`] is `None` (`--allow-unk`), as
//! ruotianluo/ImageCaptioning.pytorch's `suppress_UNK` does by default. How often the unmasked
//! argmax was `<unk>` is counted ([`UnkStats`]).
use serde::{Deserialize, Serialize};

use crate::Result;

mod draw;
pub mod hf;
mod request;
mod sample;
pub use draw::{draw_counted, Draw, Drawn};
pub use request::{cli_flag, query_field, DecodeRequest, MAX_SAMPLES, SERVER_MAX_BEAM};
pub use sample::{nucleus, Nucleus};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Decoding {
    Greedy {
        max_len: usize,
    },
    /// Beam search; finished hypotheses are ranked by `logp / len^alpha` (`alpha = 0`: raw
    /// log-probability, which favours short captions; `alpha = 1`: per-word average).
    Beam {
        width: usize,
        max_len: usize,
        alpha: f64,
    },
    /// Nucleus (top-p) sampling with temperature (Holtzman et al. 2020): each word is drawn from
    /// the smallest set of most probable words whose probability reaches `top_p`, after
    /// dividing the log-probabilities by `temperature`. `samples` captions per image, drawn
    /// independently; reproducible from `seed` and the image's index (see [`sample`]).
    Sample {
        max_len: usize,
        top_p: f64,
        temperature: f64,
        samples: usize,
        seed: u64,
    },
}

impl Decoding {
    /// `--beam K`: 1 (or 0) means greedy.
    pub fn from_beam(width: usize, max_len: usize, alpha: f64) -> Self {
        if width <= 1 {
            Decoding::Greedy { max_len }
        } else {
            Decoding::Beam {
                width,
                max_len,
                alpha,
            }
        }
    }

    /// How the decoding is named in tables and in the ratings database: `greedy`, `beam 3`,
    /// `top-p 0.9 T 1 ×3`.
    pub fn name(&self) -> String {
        match *self {
            Decoding::Greedy { .. } => "greedy".into(),
            Decoding::Beam { width, .. } => format!("beam {width}"),
            Decoding::Sample {
                top_p,
                temperature,
                samples,
                ..
            } => format!("top-p {top_p} T {temperature} ×{samples}"),
        }
    }

    /// The same decoding for images numbered from `first` in a longer list: sampling draws
    /// image `i`'s words from a stream seeded by `seed + i`, so an image gets the same samples
    /// whichever chunk it is decoded in.
    pub fn from_image(&self, first: usize) -> Self {
        match *self {
            Decoding::Sample {
                max_len,
                top_p,
                temperature,
                samples,
                seed,
            } => Decoding::Sample {
                max_len,
                top_p,
                temperature,
                samples,
                seed: seed.wrapping_add(first as u64),
            },
            other => other,
        }
    }
}

/// A finished caption: token ids without `<start>`/`<end>`, its total log-probability and the
/// length-normalised score it was ranked by.
#[derive(Clone, Debug, PartialEq)]
pub struct Hypothesis {
    pub tokens: Vec<i64>,
    pub logp: f64,
    pub score: f64,
}

/// The special token ids decoding needs.
#[derive(Clone, Copy, Debug)]
pub struct Specials {
    pub start: i64,
    pub end: i64,
    /// The caption vocabulary's `<unk>` (`None` for tag sequences): never chosen (its
    /// log-probability is set to −∞ before every choice) unless `allow_unk`; counted in
    /// [`UnkStats`] either way.
    pub unk: Option<i64>,
    /// Let `unk` through (`--allow-unk`: the behaviour before it was masked).
    pub allow_unk: bool,
}

/// Decoding steps (rows of log-probabilities) seen, and how many of them had `<unk>` as their
/// most probable word before it was masked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UnkStats {
    pub steps: u64,
    pub unk_argmax: u64,
}

impl UnkStats {
    pub fn add(&mut self, other: UnkStats) {
        self.steps += other.steps;
        self.unk_argmax += other.unk_argmax;
    }
}

pub fn decode<F>(n: usize, decoding: &Decoding, sp: Specials, step: F) -> Result<Vec<Hypothesis>>
where
    F: FnMut(&[usize], &[i64]) -> Result<Vec<f32>>,
{
    Ok(decode_nbest(n, decoding, sp, step)?
        .into_iter()
        .map(first_or_empty)
        .collect())
}

/// Per image, its finished hypotheses best first: up to `width` for beam search (the n-best
/// list the web page shows as alternatives), the one caption for greedy decoding.
pub fn decode_nbest<F>(
    n: usize,
    decoding: &Decoding,
    sp: Specials,
    step: F,
) -> Result<Vec<Vec<Hypothesis>>>
where
    F: FnMut(&[usize], &[i64]) -> Result<Vec<f32>>,
{
    decode_nbest_counted(n, decoding, sp, step, &mut UnkStats::default())
}

/// [`decode_nbest`], adding to `stats` how often the most probable word was `sp.unk` (before
/// it is masked).
pub fn decode_nbest_counted<F>(
    n: usize,
    decoding: &Decoding,
    sp: Specials,
    step: F,
    stats: &mut UnkStats,
) -> Result<Vec<Vec<Hypothesis>>>
where
    F: FnMut(&[usize], &[i64]) -> Result<Vec<f32>>,
{
    let step = masked(sp, step, stats);
    match *decoding {
        Decoding::Greedy { max_len } => Ok(greedy(n, max_len, sp, step)?
            .into_iter()
            .map(|h| vec![h])
            .collect()),
        Decoding::Beam {
            width,
            max_len,
            alpha,
        } => beam_nbest(n, width, max_len, alpha, sp, step),
        Decoding::Sample {
            max_len,
            top_p,
            temperature,
            samples,
            seed,
        } => sample::sample_nbest(
            n,
            &sample::Nucleus {
                max_len,
                top_p,
                temperature,
                samples,
                seed,
            },
            sp,
            step,
        ),
    }
}

/// `step` with `<unk>` masked and counted: the one place log-probabilities come back from the
/// model, so every strategy (greedy, beam, sampling, SCST's draws) chooses from masked rows.
fn masked<'a, F>(
    sp: Specials,
    mut step: F,
    stats: &'a mut UnkStats,
) -> impl FnMut(&[usize], &[i64]) -> Result<Vec<f32>> + 'a
where
    F: FnMut(&[usize], &[i64]) -> Result<Vec<f32>> + 'a,
{
    let unk = sp.unk.map(|u| u as usize);
    move |parents: &[usize], tokens: &[i64]| -> Result<Vec<f32>> {
        let mut lp = step(parents, tokens)?;
        let rows = tokens.len().max(1);
        let v = lp.len() / rows;
        if let (Some(u), true) = (unk, v > 0) {
            // Row by row: each is one live caption (or beam) at this step.
            for row in lp.chunks_exact_mut(v) {
                stats.steps += 1;
                if u < v {
                    if argmax(row).0 == u as i64 {
                        stats.unk_argmax += 1;
                    }
                    if !sp.allow_unk {
                        row[u] = f32::NEG_INFINITY;
                    }
                }
            }
        }
        Ok(lp)
    }
}

/// The best of an n-best list; an image that finished nothing gets an empty caption.
pub fn first_or_empty(hs: Vec<Hypothesis>) -> Hypothesis {
    hs.into_iter().next().unwrap_or(Hypothesis {
        tokens: vec![],
        logp: f64::NEG_INFINITY,
        score: f64::NEG_INFINITY,
    })
}

/// Take the most probable word at every step until `<end>` or `max_len` words.
pub fn greedy<F>(n: usize, max_len: usize, sp: Specials, step: F) -> Result<Vec<Hypothesis>>
where
    F: FnMut(&[usize], &[i64]) -> Result<Vec<f32>>,
{
    Ok(
        walk((0..n).collect(), max_len, sp, step, |_, row| argmax(row).0)?
            .into_iter()
            .map(|d| d.hyp)
            .collect(),
    )
}

/// One word at a time for each of `starts.len()` captions (caption `c` starts from initial
/// state row `starts[c]`), the word chosen by `choose(c, log-probabilities)`, until `<end>` or
/// `max_len` words. Greedy decoding and sampling differ only in `choose`.
fn walk<F, C>(
    starts: Vec<usize>,
    max_len: usize,
    sp: Specials,
    mut step: F,
    mut choose: C,
) -> Result<Vec<Drawn>>
where
    F: FnMut(&[usize], &[i64]) -> Result<Vec<f32>>,
    C: FnMut(usize, &[f32]) -> i64,
{
    let n = starts.len();
    let mut hyps: Vec<Hypothesis> = (0..n)
        .map(|_| Hypothesis {
            tokens: vec![],
            logp: 0.0,
            score: 0.0,
        })
        .collect();
    let mut finished = vec![false; n];
    let mut live: Vec<usize> = (0..n).collect(); // caption of each row
    let mut parents: Vec<usize> = starts;
    let mut tokens = vec![sp.start; n];
    for t in 0..=max_len {
        if live.is_empty() {
            break;
        }
        let lp = step(&parents, &tokens)?;
        let v = lp.len() / live.len();
        let (mut next_live, mut next_parents, mut next_tokens) = (vec![], vec![], vec![]);
        for (row, &img) in live.iter().enumerate() {
            let probs = &lp[row * v..(row + 1) * v];
            let w = choose(img, probs);
            if t == max_len && w != sp.end {
                // Out of room: the caption ends here without `<end>` (as in beam search).
                continue;
            }
            let h = &mut hyps[img];
            h.logp += probs[w as usize] as f64;
            if w == sp.end {
                finished[img] = true;
                continue;
            }
            h.tokens.push(w);
            next_live.push(img);
            next_parents.push(row);
            next_tokens.push(w);
        }
        (live, parents, tokens) = (next_live, next_parents, next_tokens);
    }
    Ok(hyps
        .into_iter()
        .zip(finished)
        .map(|(mut hyp, finished)| {
            hyp.score = hyp.logp;
            Drawn { hyp, finished }
        })
        .collect())
}

fn argmax(row: &[f32]) -> (i64, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &x) in row.iter().enumerate() {
        if x > best.1 {
            best = (i as i64, x);
        }
    }
    best
}

/// The `k` best `(token, logp)` of one row, best first.
fn top_k(row: &[f32], k: usize) -> Vec<(i64, f32)> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    let k = k.min(row.len());
    if k < row.len() {
        idx.select_nth_unstable_by(k, |&a, &b| row[b].total_cmp(&row[a]));
        idx.truncate(k);
    }
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx.into_iter().map(|i| (i as i64, row[i])).collect()
}

#[derive(Clone, Debug)]
struct Beam {
    tokens: Vec<i64>,
    logp: f64,
}

fn normalised(logp: f64, len: usize, alpha: f64) -> f64 {
    if alpha == 0.0 {
        logp
    } else {
        logp / (len.max(1) as f64).powf(alpha)
    }
}

/// Beam search, batched over `n` images. Each image keeps `width` live beams; a candidate ending
/// in `<end>` is set aside as finished; an image stops when it has `width` finished hypotheses
/// and no live beam can beat them, and at `max_len` words its live beams are finished as they
/// are.
pub fn beam<F>(
    n: usize,
    width: usize,
    max_len: usize,
    alpha: f64,
    sp: Specials,
    step: F,
) -> Result<Vec<Hypothesis>>
where
    F: FnMut(&[usize], &[i64]) -> Result<Vec<f32>>,
{
    Ok(beam_nbest(n, width, max_len, alpha, sp, step)?
        .into_iter()
        .map(first_or_empty)
        .collect())
}

/// [`beam`] keeping each image's `width` best finished hypotheses, best first (ties keep the
/// order they finished in, so the first is exactly [`beam`]'s caption).
pub fn beam_nbest<F>(
    n: usize,
    width: usize,
    max_len: usize,
    alpha: f64,
    sp: Specials,
    mut step: F,
) -> Result<Vec<Vec<Hypothesis>>>
where
    F: FnMut(&[usize], &[i64]) -> Result<Vec<f32>>,
{
    let width = width.max(1);
    let mut finished: Vec<Vec<Hypothesis>> = vec![vec![]; n];
    // Rows are grouped by image: `live[img]` holds that image's beams in row order.
    let mut live: Vec<Vec<Beam>> = vec![
        vec![Beam {
            tokens: vec![],
            logp: 0.0
        }];
        n
    ];
    let mut parents: Vec<usize> = (0..n).collect();
    let mut tokens = vec![sp.start; n];
    for t in 0..=max_len {
        let rows: usize = live.iter().map(Vec::len).sum();
        if rows == 0 {
            break;
        }
        let lp = step(&parents, &tokens)?;
        let v = lp.len() / rows;
        let (mut next_parents, mut next_tokens) = (vec![], vec![]);
        let mut row = 0;
        for img in 0..n {
            let beams = std::mem::take(&mut live[img]);
            let mut cands: Vec<(f64, usize, i64)> = Vec::new(); // (logp, beam, token)
            for (b, beam) in beams.iter().enumerate() {
                for (w, l) in top_k(&lp[(row + b) * v..(row + b + 1) * v], 2 * width) {
                    cands.push((beam.logp + l as f64, b, w));
                }
            }
            let first_row = row;
            row += beams.len();
            cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            let mut kept = Vec::new();
            for (logp, b, w) in cands {
                if kept.len() >= width {
                    break;
                }
                let toks = &beams[b].tokens;
                if w == sp.end {
                    let score = normalised(logp, toks.len() + 1, alpha);
                    finished[img].push(Hypothesis {
                        tokens: toks.clone(),
                        logp,
                        score,
                    });
                } else if t == max_len {
                    // Out of room: the beam ends here without `<end>`.
                    let score = normalised(beams[b].logp, toks.len(), alpha);
                    finished[img].push(Hypothesis {
                        tokens: toks.clone(),
                        logp: beams[b].logp,
                        score,
                    });
                } else {
                    let mut tokens = toks.clone();
                    tokens.push(w);
                    next_parents.push(first_row + b);
                    next_tokens.push(w);
                    kept.push(Beam { tokens, logp });
                }
            }
            // Done once `width` hypotheses are finished and no live beam can still beat the best
            // of them (log-probabilities only fall as words are added; with alpha > 0 this is
            // the usual heuristic of comparing at the current length).
            let best_done = finished[img]
                .iter()
                .map(|h| h.score)
                .fold(f64::NEG_INFINITY, f64::max);
            let live_best = kept
                .iter()
                .map(|b| normalised(b.logp, b.tokens.len(), alpha))
                .fold(f64::NEG_INFINITY, f64::max);
            if finished[img].len() >= width && live_best <= best_done {
                // Done: drop this image's live rows again.
                let drop = kept.len();
                next_parents.truncate(next_parents.len() - drop);
                next_tokens.truncate(next_tokens.len() - drop);
                kept.clear();
            }
            live[img] = kept;
        }
        parents = next_parents;
        tokens = next_tokens;
    }
    Ok(finished
        .into_iter()
        .map(|mut hs| {
            // `max_by` returned the last of equal scores: reverse first, then a stable sort,
            // so the first element is the one it chose.
            hs.reverse();
            hs.sort_by(|a, b| b.score.total_cmp(&a.score));
            hs.truncate(width);
            hs
        })
        .collect())
}

#[cfg(test)]
mod tests {
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
            let out =
                decode_nbest_counted(4, d, masked, bigram(table.clone()), &mut stats).unwrap();
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
}
