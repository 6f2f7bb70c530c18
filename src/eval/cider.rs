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
use rustc_hash::FxHashMap;

/// n-gram orders 1..=N.
pub(super) const N: usize = 4;
/// Standard deviation of the Gaussian length penalty (`Cider(sigma=6.0)`).
pub(super) const SIGMA: f64 = 6.0;

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

    // pycocoevalcap sees `" ".join(tokens)` and re-splits it: the same words as splitting each
    // token on Python whitespace and dropping empty pieces. Words borrow from the tokens.
    let mut grams = Interner::default();
    let hyp_counts: Vec<Counts> = hyps.iter().map(|h| grams.precook(h)).collect();
    let ref_counts: Vec<Vec<Counts>> = refs
        .iter()
        .map(|rs| rs.iter().map(|r| grams.precook(r)).collect())
        .collect();

    // compute_doc_freq: each image counts once per n-gram its references contain.
    let total = grams.orders.len();
    let mut df = vec![0u32; total];
    let mut last_image = vec![usize::MAX; total];
    for (i, rs) in ref_counts.iter().enumerate() {
        for &(g, _) in rs.iter().flat_map(|c| c.grams.iter()) {
            if last_image[g as usize] != i {
                last_image[g as usize] = i;
                df[g as usize] += 1;
            }
        }
    }

    let ref_len = (hyps.len() as f64).ln();
    let idf: Vec<f64> = df
        .iter()
        .map(|&d| ref_len - (d as f64).max(1.0).ln())
        .collect();
    // The reference's weight of every n-gram id, set for one reference at a time (0 elsewhere).
    let mut weight = vec![0.0f64; total];
    let mut per_image = Vec::with_capacity(hyps.len());
    for (hc, rcs) in hyp_counts.iter().zip(&ref_counts) {
        let h = TfIdf::new(hc, &grams.orders, &idf);
        per_image.push(image_score(&h, rcs, &grams.orders, &idf, &mut weight));
    }
    Ok(CiderScores {
        score: numpy_mean(&per_image),
        per_image,
    })
}

/// One image's CIDEr-D: hypothesis vector `h` against the counts of its references, with the
/// corpus's `idf` per n-gram id. `weight` (one slot per n-gram id, all 0) is scratch and is left
/// all 0. Shared by [`cider_d`] and the SCST reward (`cider_reward`), so both are the same sum.
pub(super) fn image_score(
    h: &TfIdf,
    rcs: &[Counts],
    orders: &[u8],
    idf: &[f64],
    weight: &mut [f64],
) -> f64 {
    let penalty_denominator = 2.0 * SIGMA * SIGMA;
    let mut score = [0.0f64; N];
    for rc in rcs {
        // The reference's counts2vec, written straight into `weight`.
        let r = Weights::fill(rc, orders, idf, weight);
        let delta = h.length as f64 - r.length as f64;
        let penalty = std::f64::consts::E.powf(-(delta * delta) / penalty_denominator);
        for (n, slot) in score.iter_mut().enumerate() {
            let mut val = 0.0f64;
            for &(g, vh) in h.order(n) {
                let vr = weight[g as usize];
                // Python's min(vh, vr): vh unless vr < vh.
                let clipped = if vr < vh { vr } else { vh };
                val += clipped * vr;
            }
            if h.norm[n] != 0.0 && r.norm[n] != 0.0 {
                val /= h.norm[n] * r.norm[n];
            }
            *slot += val * penalty;
        }
        for &(g, _) in &rc.grams {
            weight[g as usize] = 0.0;
        }
    }
    let mut s = numpy_mean(&score);
    s /= rcs.len() as f64;
    s *= 10.0;
    s
}

/// Python's `str.isspace()` (3.11): Rust's `char::is_whitespace` plus U+001C..=U+001F.
pub(super) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The "prefix" of a unigram in the n-gram table's keys.
const NONE: u32 = u32::MAX;

/// One sentence's n-gram counts `(n-gram id, count)` in first-occurrence order, orders 1..=4
/// one after the other: the iteration order of `precook`'s dict, which fixes the order of every
/// sum below.
pub(super) struct Counts {
    pub(super) grams: Vec<(u32, u32)>,
}

/// Words and n-grams of the corpus as dense ids, so document frequencies, per-sentence counts
/// and reference weights are array lookups rather than hash lookups.
#[derive(Default)]
pub(super) struct Interner<'a> {
    words: FxHashMap<&'a str, u32>,
    /// An n-gram is its (n−1)-gram prefix's id and its last word: `prefix << 32 | word`.
    ids: FxHashMap<u64, u32>,
    /// The key of each n-gram id (so ids added after a [`Interner::rollback`] mark can go).
    keys: Vec<u64>,
    /// Order (1..=4) of each n-gram id.
    pub(super) orders: Vec<u8>,
    /// Scratch: position of an n-gram id in the sentence being counted (`u32::MAX`: absent).
    slot: Vec<u32>,
    /// Scratch: the sentence's word ids, and the (k−1)-gram id starting at each word.
    words_buf: Vec<u32>,
    prefix: Vec<u32>,
}

impl<'a> Interner<'a> {
    /// `precook(" ".join(tokens), 4)`: `str.split()` (Python whitespace), then all 1..=4-gram
    /// counts.
    fn precook(&mut self, tokens: &'a [String]) -> Counts {
        let mut words = std::mem::take(&mut self.words_buf);
        words.clear();
        for w in tokens
            .iter()
            .flat_map(|t| t.split(is_py_space))
            .filter(|w| !w.is_empty())
        {
            let next = self.words.len() as u32;
            words.push(*self.words.entry(w).or_insert(next));
        }
        let counts = self.count_ids(&words);
        self.words_buf = words;
        counts
    }

    /// Number of n-gram ids so far: a mark for [`Interner::rollback`].
    pub(super) fn mark(&self) -> usize {
        self.orders.len()
    }

    /// Forget the n-grams first seen after `mark` (a scorer with fixed document frequencies
    /// counts each hypothesis's new n-grams and drops them again, so its table does not grow).
    pub(super) fn rollback(&mut self, mark: usize) {
        for k in self.keys.drain(mark..) {
            self.ids.remove(&k);
        }
        self.orders.truncate(mark);
        self.slot.truncate(mark);
    }

    /// All 1..=4-gram counts of a sentence given as word ids (see [`Interner::precook`]).
    pub(super) fn count_ids(&mut self, words: &[u32]) -> Counts {
        let mut grams: Vec<(u32, u32)> = Vec::with_capacity(4 * words.len());
        // prefix[p]: id of the (k−1)-gram starting at word p (NONE before the unigrams).
        let mut prefix = std::mem::take(&mut self.prefix);
        prefix.clear();
        prefix.resize(words.len(), NONE);
        for k in 1..=N {
            let starts = (words.len() + 1).saturating_sub(k);
            for p in 0..starts {
                let key = (u64::from(prefix[p]) << 32) | u64::from(words[p + k - 1]);
                let next = self.orders.len() as u32;
                let id = *self.ids.entry(key).or_insert(next);
                if id == next {
                    self.keys.push(key);
                    self.orders.push(k as u8);
                    self.slot.push(u32::MAX);
                }
                prefix[p] = id;
                match self.slot[id as usize] {
                    u32::MAX => {
                        self.slot[id as usize] = grams.len() as u32;
                        grams.push((id, 1));
                    }
                    i => grams[i as usize].1 += 1,
                }
            }
        }
        for &(id, _) in &grams {
            self.slot[id as usize] = u32::MAX;
        }
        self.prefix = prefix;
        Counts { grams }
    }
}

/// A reference's `counts2vec` without the vector: its weights go into a dense array indexed by
/// n-gram id; what remains are the norms and the length.
pub(super) struct Weights {
    pub(super) norm: [f64; N],
    pub(super) length: u32,
}

impl Weights {
    pub(super) fn fill(c: &Counts, orders: &[u8], idf: &[f64], weight: &mut [f64]) -> Weights {
        let mut norm = [0.0f64; N];
        let mut length = 0;
        for &(g, tf) in &c.grams {
            let w = tf as f64 * idf[g as usize];
            let n = orders[g as usize] as usize - 1;
            weight[g as usize] = w;
            norm[n] += w * w;
            if n == 1 {
                length += tf;
            }
        }
        for x in &mut norm {
            *x = x.sqrt();
        }
        Weights { norm, length }
    }
}

/// `counts2vec`: tf-idf weights (in `Counts` order, so orders 1..=4 one after the other), where
/// each order's run starts, the norms per order, and the length used by the penalty.
pub(super) struct TfIdf {
    vec: Vec<(u32, f64)>,
    /// Order n+1's weights are `vec[bounds[n]..bounds[n + 1]]`.
    bounds: [usize; N + 1],
    pub(super) norm: [f64; N],
    /// Sum of the bigram counts (the reference's `if n == 1: length += term_freq`).
    pub(super) length: u32,
}

impl TfIdf {
    /// `idf[g] = ref_len − ln(max(1, df[g]))`.
    pub(super) fn new(c: &Counts, orders: &[u8], idf: &[f64]) -> TfIdf {
        let mut vec = Vec::with_capacity(c.grams.len());
        let mut bounds = [0usize; N + 1];
        let mut norm = [0.0f64; N];
        let mut length = 0;
        for &(g, tf) in &c.grams {
            let w = tf as f64 * idf[g as usize];
            let n = orders[g as usize] as usize - 1;
            vec.push((g, w));
            bounds[n + 1] = vec.len();
            norm[n] += w * w;
            if n == 1 {
                length += tf;
            }
        }
        // Orders a sentence is too short for are empty runs at the end.
        for n in 1..=N {
            bounds[n] = bounds[n].max(bounds[n - 1]);
        }
        for x in &mut norm {
            *x = x.sqrt();
        }
        TfIdf {
            vec,
            bounds,
            norm,
            length,
        }
    }

    /// Order `n + 1`'s weights.
    pub(super) fn order(&self, n: usize) -> &[(u32, f64)] {
        &self.vec[self.bounds[n]..self.bounds[n + 1]]
    }
}

#[cfg(test)]
#[path = "cider_tests.rs"]
mod tests;
