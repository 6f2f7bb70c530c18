//! CIDEr-D (Vedantam et al. 2015) on tokenized captions, computed exactly as pycocoevalcap 1.2's
//! `Cider().compute_score` (`cider/cider.py`, `cider/cider_scorer.py`: n = 4, σ = 6) does it.
//! Parity is tested to 1e-9 against `tests/fixtures/coco/cases.json`, written by
//! `notebooks/coco_reference.py` with the real pycocoevalcap.
//!
//! What the reference does, and this module with it:
//! - **Words.** pycocoevalcap receives `" ".join(tokens)` and re-splits it with Python's
//!   `str.split()`: runs of whitespace separate words and empty words vanish. So an empty token
//!   disappears, a token `"a b"` or `"a\tb"` is two words, and so is `"a\u{1c}b"` (U+001C..U+001F
//!   are whitespace to Python, not to Rust's `char::is_whitespace`; `is_py_space` is Python's set).
//! - **n-grams and df.** 1- to 4-gram counts per sentence. The document frequency of an n-gram
//!   is the number of images whose references (pooled; hypotheses never count) contain it, and
//!   `ref_len = ln(number of images)`. A one-image corpus therefore scores exactly 0 everywhere.
//! - **Weights.** `tf · (ref_len − ln(max(1, df)))` with tf the raw count in the sentence, so an
//!   n-gram no reference contains (df = 0) weighs like a df = 1 one, and one in every image's
//!   references weighs 0. One Euclidean norm per order n.
//! - **Similarity.** Per order, `Σ_{g in hyp} min(v_h(g), v_r(g)) · v_r(g)` (the "D" clipping:
//!   a repeated hypothesis n-gram earns no more than the reference's weight), divided by
//!   `‖h‖·‖r‖` only when both norms are non-zero (else the sum, which is then 0, stays), times the
//!   Gaussian penalty `e^(−δ²/(2σ²))`. δ is the difference of the two "lengths", and the
//!   reference's `counts2vec` takes that length from the *bigram* slot (`if n == 1: length +=
//!   term_freq`), i.e. the number of bigrams, `max(0, words − 1)`, not the number of words.
//!   (That changes no score: for two non-empty sentences the differences agree, and an empty
//!   side has zero vectors; but δ counts re-split words, never the caller's tokens.)
//! - **Averaging.** Per image: the four orders' values summed over references, the mean of the
//!   four, divided by the number of references (empty references count), times 10. Corpus score:
//!   the mean over images. Sums are done in the reference's order, including numpy's pairwise
//!   summation for its `np.mean`s, so results usually agree to the last bit.
//!
//! Where pycocoevalcap fails, this returns an error instead: different numbers of hypotheses
//! and reference sets (`assert gts.keys() == res.keys()`), an image without references
//! (`assert len(ref) > 0`), and an empty corpus (numpy's mean of nothing is NaN). If *every*
//! reference in the corpus is empty, pycocoevalcap raises `ValueError` (`max()` of an empty df
//! table); here every score is 0, the limit its formulas give. An empty hypothesis scores 0.
use super::numpy::numpy_mean;
use std::collections::{HashMap, HashSet};

/// n-gram orders 1..=N.
const N: usize = 4;
/// Standard deviation of the Gaussian length penalty (`Cider(sigma=6.0)`).
const SIGMA: f64 = 6.0;

/// Corpus CIDEr-D and each image's score (in input order), as `Cider().compute_score` returns.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CiderScores {
    pub score: f64,
    pub per_image: Vec<f64>,
}

/// CIDEr-D of a corpus: image `i` has hypothesis `hyps[i]` and references `refs[i]`, each
/// already tokenized (see the module docs for how tokens become words).
pub fn cider_d(hyps: &[Vec<String>], refs: &[Vec<Vec<String>>]) -> Result<CiderScores, String> {
    if hyps.len() != refs.len() {
        return Err(format!(
            "CIDEr-D: {} hypotheses but {} reference sets",
            hyps.len(),
            refs.len()
        ));
    }
    if hyps.is_empty() {
        return Err("CIDEr-D: empty corpus (no images to average over)".to_string());
    }
    if let Some(i) = refs.iter().position(|r| r.is_empty()) {
        return Err(format!("CIDEr-D: image {i} has no references"));
    }

    // The strings pycocoevalcap sees; words borrow from them.
    let hyp_text: Vec<String> = hyps.iter().map(|h| h.join(" ")).collect();
    let ref_text: Vec<Vec<String>> = refs
        .iter()
        .map(|rs| rs.iter().map(|r| r.join(" ")).collect())
        .collect();

    let mut vocab = Vocab::default();
    let hyp_counts: Vec<Counts> = hyp_text.iter().map(|s| vocab.precook(s)).collect();
    let ref_counts: Vec<Vec<Counts>> = ref_text
        .iter()
        .map(|rs| rs.iter().map(|s| vocab.precook(s)).collect())
        .collect();

    // compute_doc_freq: each image counts once per n-gram its references contain.
    let mut df: HashMap<Gram, u32> = HashMap::new();
    let mut seen: HashSet<Gram> = HashSet::new();
    for rs in &ref_counts {
        seen.clear();
        seen.extend(rs.iter().flat_map(|c| c.grams.iter().map(|&(g, _)| g)));
        for &g in &seen {
            *df.entry(g).or_insert(0) += 1;
        }
    }

    let ref_len = (hyps.len() as f64).ln();
    let to_vec = |c: &Counts| TfIdf::new(c, &df, ref_len);
    let penalty_denominator = 2.0 * SIGMA * SIGMA;

    let mut per_image = Vec::with_capacity(hyps.len());
    for (hc, rcs) in hyp_counts.iter().zip(&ref_counts) {
        let h = to_vec(hc);
        let mut score = [0.0f64; N];
        for rc in rcs {
            let r = to_vec(rc);
            let delta = h.length as f64 - r.length as f64;
            let penalty = std::f64::consts::E.powf(-(delta * delta) / penalty_denominator);
            for (n, slot) in score.iter_mut().enumerate() {
                let mut val = 0.0f64;
                for &(g, vh) in &h.vec[n] {
                    let vr = r.weight.get(&g).copied().unwrap_or(0.0);
                    // Python's min(vh, vr): vh unless vr < vh.
                    let clipped = if vr < vh { vr } else { vh };
                    val += clipped * vr;
                }
                if h.norm[n] != 0.0 && r.norm[n] != 0.0 {
                    val /= h.norm[n] * r.norm[n];
                }
                *slot += val * penalty;
            }
        }
        let mut s = numpy_mean(&score);
        s /= rcs.len() as f64;
        s *= 10.0;
        per_image.push(s);
    }
    Ok(CiderScores {
        score: numpy_mean(&per_image),
        per_image,
    })
}

/// Python's `str.isspace()` (3.11): Rust's `char::is_whitespace` plus U+001C..=U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// An n-gram as word ids, unused tail slots `NONE`; its order is the number of used slots.
type Gram = [u32; N];
const NONE: u32 = u32::MAX;

fn order(g: &Gram) -> usize {
    g.iter().take_while(|&&w| w != NONE).count()
}

/// One sentence's n-gram counts in first-occurrence order, orders 1..=4 one after the other:
/// the iteration order of `precook`'s dict, which fixes the order of every sum below.
struct Counts {
    grams: Vec<(Gram, u32)>,
}

#[derive(Default)]
struct Vocab<'a> {
    ids: HashMap<&'a str, u32>,
}

impl<'a> Vocab<'a> {
    /// `precook(s, 4)`: `s.split()` (Python whitespace), then all 1..=4-gram counts.
    fn precook(&mut self, s: &'a str) -> Counts {
        let words: Vec<u32> = s
            .split(is_py_space)
            .filter(|w| !w.is_empty())
            .map(|w| {
                let next = self.ids.len() as u32;
                *self.ids.entry(w).or_insert(next)
            })
            .collect();
        let mut grams: Vec<(Gram, u32)> = Vec::new();
        let mut index: HashMap<Gram, usize> = HashMap::new();
        for k in 1..=N {
            for win in words.windows(k) {
                let mut g = [NONE; N];
                g[..k].copy_from_slice(win);
                match index.get(&g) {
                    Some(&i) => grams[i].1 += 1,
                    None => {
                        index.insert(g, grams.len());
                        grams.push((g, 1));
                    }
                }
            }
        }
        Counts { grams }
    }
}

/// `counts2vec`: tf-idf weights per order (in `Counts` order), their norms, and the length used
/// by the penalty.
struct TfIdf {
    vec: [Vec<(Gram, f64)>; N],
    weight: HashMap<Gram, f64>,
    norm: [f64; N],
    /// Sum of the bigram counts (the reference's `if n == 1: length += term_freq`).
    length: u32,
}

impl TfIdf {
    fn new(c: &Counts, df: &HashMap<Gram, u32>, ref_len: f64) -> TfIdf {
        let mut vec: [Vec<(Gram, f64)>; N] = Default::default();
        let mut weight = HashMap::with_capacity(c.grams.len());
        let mut norm = [0.0f64; N];
        let mut length = 0;
        for &(g, tf) in &c.grams {
            let d = df.get(&g).copied().unwrap_or(0) as f64;
            let idf = ref_len - d.max(1.0).ln();
            let w = tf as f64 * idf;
            let n = order(&g) - 1;
            vec[n].push((g, w));
            weight.insert(g, w);
            norm[n] += w * w;
            if n == 1 {
                length += tf;
            }
        }
        for x in &mut norm {
            *x = x.sqrt();
        }
        TfIdf {
            vec,
            weight,
            norm,
            length,
        }
    }
}

#[cfg(test)]
#[path = "cider_tests.rs"]
mod tests;
