//! Hashtag metrics over ranked tag lists (pure functions).
//!
//! For each image with at least one true tag (images without any are left out and counted):
//! - P@k = |top-k ∩ truth| / k (a ranking shorter than k is not rewarded for it);
//! - R@k = |top-k ∩ truth| / |truth|;
//! - AP = Σ over ranks r holding a true tag of P@r, divided by |truth| (the whole ranking).
//!
//! P@k, R@k and mAP are means over images; F1@k is the harmonic mean of mean P@k and mean R@k.
use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TagScores {
    pub k: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub map: f64,
    /// Images scored (with at least one true tag).
    pub images: usize,
    /// Images left out because they have no true tag.
    pub untagged: usize,
}

/// Average precision of one ranking against a truth set.
pub fn average_precision(ranking: &[String], truth: &[String]) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    let (mut hits, mut sum) = (0usize, 0.0);
    for (i, t) in ranking.iter().enumerate() {
        if truth.contains(t) {
            hits += 1;
            sum += hits as f64 / (i + 1) as f64;
        }
    }
    sum / truth.len() as f64
}

/// Scores of rankings (best tag first) against truth sets, at cut-off `k`.
pub fn score(rankings: &[Vec<String>], truths: &[Vec<String>], k: usize) -> TagScores {
    let k = k.max(1);
    let mut s = TagScores {
        k,
        ..Default::default()
    };
    for (ranking, truth) in rankings.iter().zip(truths) {
        if truth.is_empty() {
            s.untagged += 1;
            continue;
        }
        let hits = ranking.iter().take(k).filter(|t| truth.contains(t)).count();
        s.precision += hits as f64 / k as f64;
        s.recall += hits as f64 / truth.len() as f64;
        s.map += average_precision(ranking, truth);
        s.images += 1;
    }
    if s.images > 0 {
        let n = s.images as f64;
        s.precision /= n;
        s.recall /= n;
        s.map /= n;
    }
    if s.precision + s.recall > 0.0 {
        s.f1 = 2.0 * s.precision * s.recall / (s.precision + s.recall);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn perfect_and_empty_rankings() {
        let truth = vec![v(&["dog", "beach"])];
        let s = score(&[v(&["beach", "dog"])], &truth, 2);
        assert_eq!((s.precision, s.recall, s.f1, s.map), (1.0, 1.0, 1.0, 1.0));
        let s = score(&[vec![]], &truth, 2);
        assert_eq!((s.precision, s.recall, s.f1, s.map), (0.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn hand_computed_case() {
        // Image 1: truth {a, c}; ranking a x c → P@2 = 1/2, R@2 = 1/2, AP = (1/1 + 2/3) / 2.
        // Image 2: truth {y}; ranking x y → P@2 = 1/2, R@2 = 1, AP = 1/2.
        // Image 3: no truth → left out.
        let s = score(
            &[v(&["a", "x", "c"]), v(&["x", "y"]), v(&["q"])],
            &[v(&["a", "c"]), v(&["y"]), vec![]],
            2,
        );
        assert_eq!((s.images, s.untagged), (2, 1));
        assert!((s.precision - 0.5).abs() < 1e-12);
        assert!((s.recall - 0.75).abs() < 1e-12);
        assert!((s.f1 - 0.6).abs() < 1e-12);
        let ap1 = (1.0 + 2.0 / 3.0) / 2.0;
        assert!((s.map - (ap1 + 0.5) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn short_rankings_are_not_rewarded() {
        let s = score(&[v(&["a"])], &[v(&["a", "b"])], 5);
        assert!((s.precision - 0.2).abs() < 1e-12);
        assert!((s.recall - 0.5).abs() < 1e-12);
    }
}
