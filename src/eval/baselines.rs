//! Reference points that say whether a captioner looks at the image at all: the caption prior
//! (the single most frequent training caption, given for every image) and the human ceiling
//! (each reference scored against the other references of its image).
use std::collections::HashMap;

use super::bleu::{corpus_bleu, BleuMode, BleuScores};
use crate::Result;

/// The most frequent tokenized training caption (ties: the lexicographically first).
pub fn prior_caption(train_captions: &[Vec<String>]) -> Vec<String> {
    let mut counts: HashMap<&[String], usize> = HashMap::new();
    for c in train_captions {
        *counts.entry(c.as_slice()).or_insert(0) += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(c, _)| c.to_vec())
        .unwrap_or_default()
}

/// BLEU of giving `caption` to every image.
pub fn constant_bleu(
    caption: &[String],
    refs: &[Vec<Vec<String>>],
    mode: BleuMode,
) -> Result<BleuScores> {
    let hyps = vec![caption.to_vec(); refs.len()];
    corpus_bleu(&hyps, refs, mode)
}

/// Each reference as a hypothesis against the other references of its image (images with
/// fewer than two references are left out).
pub fn human_ceiling(refs: &[Vec<Vec<String>>], mode: BleuMode) -> Result<BleuScores> {
    let (mut hyps, mut others) = (vec![], vec![]);
    for r in refs.iter().filter(|r| r.len() >= 2) {
        for i in 0..r.len() {
            hyps.push(r[i].clone());
            others.push(
                r.iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, x)| x.clone())
                    .collect::<Vec<_>>(),
            );
        }
    }
    corpus_bleu(&hyps, &others, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn prior_is_the_most_frequent_caption() {
        let caps = vec![toks("a dog"), toks("a cat"), toks("a dog"), toks("a bird")];
        assert_eq!(prior_caption(&caps), toks("a dog"));
    }

    #[test]
    fn identical_references_give_a_perfect_ceiling() {
        let refs = vec![vec![toks("a red circle on the left"); 3]];
        let s = human_ceiling(&refs, BleuMode::Coco).unwrap();
        assert!((s.bleu[3] - 1.0).abs() < 1e-9);
        let refs = vec![vec![
            toks("a red circle on the left"),
            toks("two blue squares above it"),
        ]];
        assert!(human_ceiling(&refs, BleuMode::Coco).unwrap().bleu[0] < 0.5);
    }
}
