//! Nucleus (top-p) sampling with temperature over the same `step` closure as greedy and beam
//! search ([`super::walk`] with a random choice instead of the argmax).
//!
//! Reproducibility: caption `s` of image `i` draws from its own ChaCha stream seeded by
//! `(seed + i, s)`, so the samples of an image depend on the seed and its index only — not on
//! how many images are decoded together or which other rows finished first. The caption's
//! `logp` is the model's log-probability of the drawn words (before temperature), so samples
//! rank against each other and against beam captions on one scale.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Drawn, Hypothesis, Specials};
use crate::Result;

/// The settings of [`super::Decoding::Sample`].
#[derive(Clone, Copy, Debug)]
pub struct Nucleus {
    pub max_len: usize,
    pub top_p: f64,
    pub temperature: f64,
    pub samples: usize,
    pub seed: u64,
}

/// Per image, its distinct samples ranked by log-probability, best first (a sample drawn twice
/// is listed once, so there may be fewer than `samples`).
pub fn sample_nbest<F>(
    n: usize,
    cfg: &Nucleus,
    sp: Specials,
    step: F,
) -> Result<Vec<Vec<Hypothesis>>>
where
    F: FnMut(&[usize], &[i64]) -> Result<Vec<f32>>,
{
    let k = cfg.samples.max(1);
    let hyps = sample_each(n, cfg, sp, step)?;
    let mut out: Vec<Vec<Hypothesis>> = vec![Vec::with_capacity(k); n];
    for (c, d) in hyps.into_iter().enumerate() {
        let mine = &mut out[c / k];
        if !mine.iter().any(|o| o.tokens == d.hyp.tokens) {
            mine.push(d.hyp);
        }
    }
    for hs in &mut out {
        // Stable: equal log-probabilities keep the order they were drawn in.
        hs.sort_by(|a, b| b.logp.total_cmp(&a.logp));
    }
    Ok(out)
}

/// Every sample in the order drawn: caption `c = image · samples + s`, duplicates kept, each
/// with whether it ended with `<end>` (self-critical training scores all of them).
pub fn sample_each<F>(n: usize, cfg: &Nucleus, sp: Specials, step: F) -> Result<Vec<Drawn>>
where
    F: FnMut(&[usize], &[i64]) -> Result<Vec<f32>>,
{
    let k = cfg.samples.max(1);
    // Caption c = img * k + s starts from image img's initial state.
    let starts: Vec<usize> = (0..n * k).map(|c| c / k).collect();
    let mut rngs: Vec<ChaCha8Rng> = (0..n * k)
        .map(|c| {
            let mut r = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add((c / k) as u64));
            r.set_stream((c % k) as u64);
            r
        })
        .collect();
    let mut scratch = Vec::new();
    super::walk(starts, cfg.max_len, sp, step, |c, row| {
        nucleus(
            row,
            cfg.top_p,
            cfg.temperature,
            rngs[c].gen::<f64>(),
            &mut scratch,
        )
    })
}

/// The token that uniform `u ∈ [0, 1)` selects from `logp` (one row of log-probabilities):
/// scale by `1 / temperature`, keep the most probable tokens until their renormalised mass
/// reaches `top_p` (at least one token; ties broken by the lower id), and invert the
/// cumulative distribution of what is kept. `scratch` is reused between calls.
pub fn nucleus(
    logp: &[f32],
    top_p: f64,
    temperature: f64,
    u: f64,
    scratch: &mut Vec<(f64, usize)>,
) -> i64 {
    let t = temperature.max(1e-6);
    let max = logp.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    scratch.clear();
    scratch.extend(
        logp.iter()
            .enumerate()
            .map(|(i, &l)| (((l as f64 - max) / t).exp(), i)),
    );
    let total: f64 = scratch.iter().map(|x| x.0).sum();
    scratch.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut kept = 0;
    let mut mass = 0.0;
    for &(p, _) in scratch.iter() {
        kept += 1;
        mass += p;
        if mass >= top_p * total {
            break;
        }
    }
    let target = u * mass;
    let mut acc = 0.0;
    for &(p, i) in &scratch[..kept] {
        acc += p;
        if target < acc {
            return i as i64;
        }
    }
    scratch[kept - 1].1 as i64
}

#[cfg(test)]
mod tests {
    use super::super::tests::{bigram, SP};
    use super::super::{decode_nbest, greedy, Decoding};
    use super::*;

    fn sampling(top_p: f64, temperature: f64, samples: usize, seed: u64) -> Decoding {
        Decoding::Sample {
            max_len: 8,
            top_p,
            temperature,
            samples,
            seed,
        }
    }

    /// vocab: 0 <start>, 1 <end>, 2 a, 3 b, 4 c
    fn table() -> Vec<Vec<f32>> {
        vec![
            vec![1e-9, 0.05, 0.5, 0.3, 0.15],
            vec![0.2; 5],
            vec![1e-9, 0.5, 0.2, 0.2, 0.1],
            vec![1e-9, 0.6, 0.2, 0.1, 0.1],
            vec![1e-9, 0.7, 0.1, 0.1, 0.1],
        ]
    }

    #[test]
    fn nucleus_keeps_only_the_top_p_mass_with_the_right_frequencies() {
        let row: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        let mut scratch = Vec::new();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut counts = [0usize; 4];
        let draws = 20_000;
        for _ in 0..draws {
            counts[nucleus(&row, 0.8, 1.0, rng.gen(), &mut scratch) as usize] += 1;
        }
        // {0.5, 0.3} reaches 0.8: tokens 2 and 3 are never drawn; 0 and 1 as 5/8 and 3/8.
        assert_eq!(counts[2] + counts[3], 0, "{counts:?}");
        let f0 = counts[0] as f64 / draws as f64;
        assert!((f0 - 0.625).abs() < 0.015, "{f0}");
        // top_p 1 keeps everything; a tiny top_p is the argmax.
        assert_eq!(nucleus(&row, 1.0, 1.0, 0.999_999, &mut scratch), 3);
        assert_eq!(nucleus(&row, 1e-9, 1.0, 0.999_999, &mut scratch), 0);
    }

    #[test]
    fn temperature_flattens_or_sharpens() {
        let row: Vec<f32> = [0.6f32, 0.4].iter().map(|p| p.ln()).collect();
        let mut scratch = Vec::new();
        // P(token 0) at temperature T is 0.6^(1/T) / (0.6^(1/T) + 0.4^(1/T)): u just below it
        // picks 0, just above picks 1.
        for t in [0.5, 1.0, 2.0] {
            let p0 = 0.6f64.powf(1.0 / t) / (0.6f64.powf(1.0 / t) + 0.4f64.powf(1.0 / t));
            assert_eq!(nucleus(&row, 1.0, t, p0 - 1e-6, &mut scratch), 0, "T {t}");
            assert_eq!(nucleus(&row, 1.0, t, p0 + 1e-6, &mut scratch), 1, "T {t}");
        }
    }

    #[test]
    fn a_tiny_nucleus_is_greedy_decoding() {
        let g = greedy(3, 8, SP, bigram(table())).unwrap();
        let s = decode_nbest(3, &sampling(1e-9, 1.0, 4, 0), SP, bigram(table())).unwrap();
        for (g, s) in g.iter().zip(&s) {
            assert_eq!(s.len(), 1, "every sample is the greedy caption: {s:?}");
            assert_eq!(s[0].tokens, g.tokens);
            assert!((s[0].logp - g.logp).abs() < 1e-9);
        }
    }

    #[test]
    fn samples_are_seeded_per_image_distinct_and_ranked() {
        let a = decode_nbest(4, &sampling(0.95, 1.0, 6, 11), SP, bigram(table())).unwrap();
        let b = decode_nbest(4, &sampling(0.95, 1.0, 6, 11), SP, bigram(table())).unwrap();
        let c = decode_nbest(4, &sampling(0.95, 1.0, 6, 12), SP, bigram(table())).unwrap();
        assert_eq!(a, b, "same seed, same samples");
        assert_ne!(a, c, "another seed, other samples");
        for hs in &a {
            assert!(!hs.is_empty() && hs.len() <= 6);
            assert!(hs.windows(2).all(|w| w[0].logp >= w[1].logp), "{hs:?}");
            let distinct: std::collections::HashSet<_> = hs.iter().map(|h| &h.tokens).collect();
            assert_eq!(distinct.len(), hs.len());
            for h in hs {
                assert!(h.tokens.len() <= 8 && !h.tokens.contains(&SP.end));
            }
        }
        // Image i of a list gets what image 0 of a list starting at i gets: chunking does not
        // change an image's samples.
        let alone = decode_nbest(
            1,
            &sampling(0.95, 1.0, 6, 11).from_image(2),
            SP,
            bigram(table()),
        )
        .unwrap();
        assert_eq!(alone[0], a[2]);
    }

    #[test]
    fn sample_each_keeps_every_draw_and_says_which_finished() {
        let cfg = Nucleus {
            max_len: 2,
            top_p: 1.0,
            temperature: 1.0,
            samples: 8,
            seed: 5,
        };
        let d = sample_each(3, &cfg, SP, bigram(table())).unwrap();
        assert_eq!(d.len(), 24, "every draw, duplicates kept");
        let (fin, cut) = d.iter().partition::<Vec<&Drawn>, _>(|x| x.finished);
        assert!(!fin.is_empty() && !cut.is_empty(), "{d:?}");
        for x in cut {
            assert_eq!(x.hyp.tokens.len(), 2, "only the length limit cuts: {x:?}");
        }
        // sample_nbest is these draws per image, deduplicated and ranked.
        let nb = sample_nbest(3, &cfg, SP, bigram(table())).unwrap();
        for (img, hs) in nb.iter().enumerate() {
            let mut mine: Vec<&Vec<i64>> = d[img * 8..img * 8 + 8]
                .iter()
                .map(|x| &x.hyp.tokens)
                .collect();
            mine.sort();
            mine.dedup();
            assert_eq!(mine.len(), hs.len());
        }
    }

    #[test]
    fn logp_is_the_models_probability_of_the_drawn_words() {
        let t = table();
        let s = decode_nbest(2, &sampling(1.0, 2.0, 5, 3), SP, bigram(t.clone())).unwrap();
        for h in s.iter().flatten() {
            let mut prev = 0usize;
            let mut want = 0.0f64;
            for &w in &h.tokens {
                want += (t[prev][w as usize] as f64).ln();
                prev = w as usize;
            }
            if h.tokens.len() < 8 {
                want += (t[prev][1] as f64).ln();
            }
            assert!((h.logp - want).abs() < 1e-5, "{h:?} vs {want}");
        }
    }
}
