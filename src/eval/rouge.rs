//! ROUGE-L (Lin 2004) on tokenized captions, computed exactly as pycocoevalcap 1.2's
//! `Rouge().compute_score` (`rouge/rouge.py`, β = 1.2) does it. Parity is tested to 1e-9
//! against `tests/fixtures/coco/cases.json`, written by `notebooks/coco_reference.py` with the
//! real pycocoevalcap.
//!
//! What the reference does, and this module with it:
//! - **Tokens.** pycocoevalcap receives `" ".join(tokens)` and splits it with `split(" ")`, on
//!   single spaces only (unlike its CIDEr, which uses `split()`). So empty tokens *survive* as
//!   `""` tokens, a token `"a b"` becomes two, a tab stays inside its token, and an empty
//!   hypothesis or reference is the one-token sentence `[""]`: its length is 1, never 0, and its
//!   `""` matches another `""`. An empty hypothesis therefore scores 0 against non-empty
//!   references but 1 against an empty one (LCS 1, P = R = 1).
//! - **Per reference** r: `LCS(hyp, r)` by dynamic programming on exact token equality,
//!   `P = LCS / len(hyp)`, `R = LCS / len(r)`.
//! - **Per image**: `P_max` and `R_max` are maxima taken *separately* over the references (they
//!   may come from different references); `F = (1 + β²)·P_max·R_max / (R_max + β²·P_max)`, or 0
//!   when either maximum is 0.
//! - **Corpus**: the mean over images (numpy's pairwise summation, as `np.mean` does it).
//!
//! Where pycocoevalcap fails, this returns an error instead: different numbers of hypotheses
//! and reference sets (`assert gts.keys() == res.keys()`), an image without references
//! (`calc_score`'s `assert len(refs) > 0`, which fires before `compute_score`'s own sanity
//! checks), and an empty corpus (numpy's mean of nothing is NaN). No input divides by zero:
//! every split sentence has at least one token.
use super::numpy::numpy_mean;
use rustc_hash::FxHashMap;

/// β of the F-measure (`Rouge().beta`), weighting recall over precision.
const BETA: f64 = 1.2;

/// Corpus ROUGE-L and each image's score (in input order), as `Rouge().compute_score` returns.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RougeScores {
    pub score: f64,
    pub per_image: Vec<f64>,
}

/// ROUGE-L of a corpus: image `i` has hypothesis `hyps[i]` and references `refs[i]`, each
/// already tokenized (see the module docs for how tokens are re-split).
pub fn rouge_l(hyps: &[Vec<String>], refs: &[Vec<Vec<String>>]) -> Result<RougeScores, String> {
    if hyps.len() != refs.len() {
        return Err(format!(
            "ROUGE-L: {} hypotheses but {} reference sets",
            hyps.len(),
            refs.len()
        ));
    }
    if hyps.is_empty() {
        return Err("ROUGE-L: empty corpus (no images to average over)".to_string());
    }
    if let Some(i) = refs.iter().position(|r| r.is_empty()) {
        return Err(format!("ROUGE-L: image {i} has no references"));
    }
    let mut lcs = Lcs::default();
    let mut words = Words::default();
    let per_image: Vec<f64> = hyps
        .iter()
        .zip(refs)
        .map(|(h, rs)| image_score(h, rs, &mut words, &mut lcs))
        .collect();
    Ok(RougeScores {
        score: numpy_mean(&per_image),
        per_image,
    })
}

/// Words as ids, so the LCS compares integers; the reference's `" ".join(tokens).split(" ")`
/// is each token split on `' '`, empty pieces kept — and one empty word for no tokens at all.
#[derive(Default)]
struct Words<'a> {
    ids: FxHashMap<&'a str, u32>,
}

impl<'a> Words<'a> {
    fn split(&mut self, tokens: &'a [String], out: &mut Vec<u32>) {
        out.clear();
        let mut push = |w: &'a str| {
            let next = self.ids.len() as u32;
            out.push(*self.ids.entry(w).or_insert(next));
        };
        if tokens.is_empty() {
            push("");
        }
        for w in tokens.iter().flat_map(|t| t.split(' ')) {
            push(w);
        }
    }
}

/// `Rouge.calc_score` for one image (references non-empty).
fn image_score<'a>(
    hyp: &'a [String],
    refs: &'a [Vec<String>],
    words: &mut Words<'a>,
    lcs: &mut Lcs,
) -> f64 {
    let (mut token_c, mut token_r) = (vec![], vec![]);
    words.split(hyp, &mut token_c);
    let mut prec_max = f64::NEG_INFINITY;
    let mut rec_max = f64::NEG_INFINITY;
    for r in refs {
        words.split(r, &mut token_r);
        let l = lcs.length(&token_r, &token_c) as f64;
        let prec = l / token_c.len() as f64;
        let rec = l / token_r.len() as f64;
        if prec > prec_max {
            prec_max = prec;
        }
        if rec > rec_max {
            rec_max = rec;
        }
    }
    if prec_max != 0.0 && rec_max != 0.0 {
        let b2 = BETA * BETA;
        ((1.0 + b2) * prec_max * rec_max) / (rec_max + b2 * prec_max)
    } else {
        0.0
    }
}

/// `my_lcs`: length of the longest common subsequence, one DP row kept (reused across calls).
#[derive(Default)]
struct Lcs {
    row: Vec<u32>,
}

impl Lcs {
    fn length(&mut self, a: &[u32], b: &[u32]) -> u32 {
        // The row runs over the shorter sentence (the reference's `sub`).
        let (long, short) = if a.len() < b.len() { (b, a) } else { (a, b) };
        self.row.clear();
        self.row.resize(short.len() + 1, 0);
        let row = &mut self.row;
        for x in long {
            // row[j] holds lengths[i-1][j] on entry; `diag` is lengths[i-1][j-1].
            let mut diag = 0;
            for (j, y) in short.iter().enumerate() {
                let up = row[j + 1];
                row[j + 1] = if x == y { diag + 1 } else { up.max(row[j]) };
                diag = up;
            }
        }
        row[short.len()]
    }
}

#[cfg(test)]
#[path = "rouge_tests.rs"]
mod tests;
