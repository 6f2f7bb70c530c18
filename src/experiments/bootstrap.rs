//! Paired bootstrap over images (Koehn 2004; Efron & Tibshirani 1993): resample the evaluated
//! images with replacement, recompute both systems' corpus scores on the same resample, and read
//! the 2.5th and 97.5th percentiles of the difference. Corpus BLEU is recomputed from merged
//! per-image sufficient statistics, so a resample costs one pass over integers; CIDEr-D is the
//! mean of per-image scores (its document frequencies stay those of the full split).
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::eval::bleu::{BleuMode, BleuStats};

/// A difference `system − baseline` on the full set and its 95% interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Interval {
    pub diff: f64,
    pub lo: f64,
    pub hi: f64,
}

/// Resample indices `0..n` `resamples` times (seeded) and collect `stat(sample)`.
fn percentile_interval(
    n: usize,
    resamples: usize,
    seed: u64,
    full: f64,
    mut stat: impl FnMut(&[usize]) -> f64,
) -> Interval {
    if n == 0 || resamples == 0 {
        return Interval {
            diff: full,
            lo: full,
            hi: full,
        };
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut sample = vec![0usize; n];
    let mut values: Vec<f64> = (0..resamples)
        .map(|_| {
            for s in sample.iter_mut() {
                *s = rng.gen_range(0..n);
            }
            stat(&sample)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    Interval {
        diff: full,
        lo: at(0.025),
        hi: at(0.975),
    }
}

/// Paired interval of corpus BLEU-4 (coco mode) differences.
pub fn bleu4(
    system: &[BleuStats],
    baseline: &[BleuStats],
    resamples: usize,
    seed: u64,
) -> Interval {
    let score = |stats: &[BleuStats], idx: &mut dyn Iterator<Item = usize>| {
        let mut total = BleuStats::default();
        for i in idx {
            total.merge(&stats[i]);
        }
        total.score(BleuMode::Coco).bleu[3]
    };
    let n = system.len().min(baseline.len());
    let full = score(system, &mut (0..n)) - score(baseline, &mut (0..n));
    percentile_interval(n, resamples, seed, full, |s| {
        score(system, &mut s.iter().copied()) - score(baseline, &mut s.iter().copied())
    })
}

/// Paired interval of mean-score differences (CIDEr-D per image).
pub fn mean(system: &[f64], baseline: &[f64], resamples: usize, seed: u64) -> Interval {
    let n = system.len().min(baseline.len());
    let d: Vec<f64> = (0..n).map(|i| system[i] - baseline[i]).collect();
    let avg = |idx: &mut dyn Iterator<Item = usize>, k: usize| {
        idx.map(|i| d[i]).sum::<f64>() / k.max(1) as f64
    };
    let full = avg(&mut (0..n), n);
    percentile_interval(n, resamples, seed, full, |s| {
        avg(&mut s.iter().copied(), s.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::bleu::corpus_stats;

    fn stats(pairs: &[(&str, &str)]) -> Vec<BleuStats> {
        pairs
            .iter()
            .map(|(h, r)| {
                let h: Vec<String> = h.split(' ').map(String::from).collect();
                let r: Vec<String> = r.split(' ').map(String::from).collect();
                corpus_stats(&[h], &[vec![r]]).unwrap()
            })
            .collect()
    }

    #[test]
    fn identical_systems_give_a_zero_interval() {
        let a = stats(&[("a dog runs on grass", "a dog runs on the grass"); 20]);
        let i = bleu4(&a, &a, 200, 1);
        assert_eq!((i.diff, i.lo, i.hi), (0.0, 0.0, 0.0));
        let c = vec![0.3, 0.5, 0.9, 0.1];
        assert_eq!(mean(&c, &c, 200, 1).hi, 0.0);
    }

    #[test]
    fn a_system_better_on_every_image_has_an_interval_above_zero() {
        let refs = [
            "a dog runs on the grass",
            "two children play in the sand",
            "a man rides a red bike",
            "a woman sits on a bench",
        ];
        let good: Vec<(&str, &str)> = refs.iter().map(|r| (*r, *r)).cycle().take(40).collect();
        let bad: Vec<(&str, &str)> = refs
            .iter()
            .map(|r| ("a dog is on a", *r))
            .cycle()
            .take(40)
            .collect();
        let i = bleu4(&stats(&good), &stats(&bad), 500, 7);
        assert!(i.lo > 0.0 && i.lo <= i.diff && i.diff <= i.hi, "{i:?}");
        let m = mean(&[1.0, 0.8, 0.9, 1.2], &[0.5, 0.4, 0.6, 0.3], 500, 7);
        assert!(m.lo > 0.0, "{m:?}");
        // The same seed gives the same interval.
        assert_eq!(i, bleu4(&stats(&good), &stats(&bad), 500, 7));
    }
}
