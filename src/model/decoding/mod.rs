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

/// The specials of the model tests' vocabularies: `<start>` 1, `<end>` 2, `<unk>` 3 masked.
#[cfg(test)]
pub const TEST_SPECIALS: Specials = Specials {
    start: 1,
    end: 2,
    unk: Some(3),
    allow_unk: false,
};

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
mod tests;
