//! CIDEr-D as a reward (self-critical training, docs/training.md "Self-critical training"): one
//! caption at a time against one image's references, with the document frequencies of a fixed
//! corpus — the training references — instead of the scored corpus's own, as
//! ruotianluo/ImageCaptioning.pytorch's `CiderD(df='coco-train-idxs')` does.
//!
//! The per-image sum is [`super::cider::cider_d`]'s own (`image_score`), so a caption scored here
//! against the references of image `i`, with the document frequencies of a corpus `refs`, is
//! exactly `cider_d(hyps, refs).per_image[i]` (tested). What differs is only where `df` and
//! `ref_len = ln(images)` come from. The references' n-gram counts are cooked once; a caption's
//! n-grams that no reference has are counted (df 0, idf `ref_len`) and forgotten again, so the
//! table does not grow over an epoch of samples.
//!
//! "End-of-sentence counted" (ruotianluo's rewards score the `0` token that ends a sequence):
//! callers append [`EOS`] to every reference and to every caption that finished, so ending a
//! caption in the right place earns its n-grams; a caption cut at the length limit has none.
use rustc_hash::FxHashMap;

use super::cider::{image_score, is_py_space, Counts, Interner, TfIdf};

/// The word a finished caption and every reference end with in the reward.
pub const EOS: &str = "<end>";

/// CIDEr-D of single captions against their image's references, document frequencies fixed.
pub struct CiderReward {
    grams: Interner<'static>,
    /// Words of the references, by id (owned: the scorer outlives any caption).
    words: FxHashMap<String, u32>,
    /// Per image: its references' n-gram counts.
    refs: Vec<Vec<Counts>>,
    /// Per n-gram id of the references: `ref_len − ln(max(1, df))`.
    idf: Vec<f64>,
    ref_len: f64,
    /// Scratch: one slot per n-gram id, all 0 between calls.
    weight: Vec<f64>,
    ids_buf: Vec<u32>,
}

impl CiderReward {
    /// Document frequencies from `refs` (image `i`'s tokenized references, each as the caller
    /// wants it scored, e.g. ending in [`EOS`]). Images without references count in `ln(images)`
    /// and score 0.
    pub fn new(refs: &[Vec<Vec<String>>]) -> CiderReward {
        let mut r = CiderReward {
            grams: Interner::default(),
            words: FxHashMap::default(),
            refs: Vec::with_capacity(refs.len()),
            idf: vec![],
            ref_len: (refs.len().max(1) as f64).ln(),
            weight: vec![],
            ids_buf: vec![],
        };
        for rs in refs {
            let cooked: Vec<Counts> = rs.iter().map(|s| r.count(s)).collect();
            r.refs.push(cooked);
        }
        let total = r.grams.mark();
        let mut df = vec![0u32; total];
        let mut last_image = vec![usize::MAX; total];
        for (i, rs) in r.refs.iter().enumerate() {
            for &(g, _) in rs.iter().flat_map(|c| c.grams.iter()) {
                if last_image[g as usize] != i {
                    last_image[g as usize] = i;
                    df[g as usize] += 1;
                }
            }
        }
        r.idf = df
            .iter()
            .map(|&d| r.ref_len - (d as f64).max(1.0).ln())
            .collect();
        r.weight = vec![0.0; total];
        r
    }

    /// Number of images (reference sets).
    pub fn len(&self) -> usize {
        self.refs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    /// CIDEr-D (the ×10 scale of `cider_d`'s per-image scores) of `caption` against the
    /// references of image `image`; 0 for an image without references or out of range.
    pub fn score(&mut self, caption: &[String], image: usize) -> f64 {
        if self.refs.get(image).is_none_or(|r| r.is_empty()) {
            return 0.0;
        }
        let mark = self.grams.mark();
        let words_mark = self.words.len();
        let mut new_words = vec![];
        let counts = self.count_new(caption, &mut new_words);
        // n-grams of this caption no reference has: df 0 (weight of a df 1 one), no reference
        // weight.
        let total = self.grams.mark();
        self.idf.resize(total, self.ref_len);
        self.weight.resize(total, 0.0);
        let h = TfIdf::new(&counts, &self.grams.orders, &self.idf);
        let s = image_score(
            &h,
            &self.refs[image],
            &self.grams.orders,
            &self.idf,
            &mut self.weight,
        );
        self.grams.rollback(mark);
        self.idf.truncate(mark);
        self.weight.truncate(mark);
        for w in new_words {
            self.words.remove(&w);
        }
        debug_assert_eq!(self.words.len(), words_mark);
        s
    }

    /// A reference's counts (its words join the table).
    fn count(&mut self, tokens: &[String]) -> Counts {
        self.count_new(tokens, &mut vec![])
    }

    /// Python's `str.split()` of the joined tokens, words to ids (new ones listed in `new`),
    /// then the n-gram counts.
    fn count_new(&mut self, tokens: &[String], new: &mut Vec<String>) -> Counts {
        let mut ids = std::mem::take(&mut self.ids_buf);
        ids.clear();
        for w in tokens
            .iter()
            .flat_map(|t| t.split(is_py_space))
            .filter(|w| !w.is_empty())
        {
            let id = match self.words.get(w) {
                Some(&id) => id,
                None => {
                    let id = self.words.len() as u32;
                    self.words.insert(w.to_string(), id);
                    new.push(w.to_string());
                    id
                }
            };
            ids.push(id);
        }
        let c = self.grams.count_ids(&ids);
        self.ids_buf = ids;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::super::cider::cider_d;
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    fn corpus() -> (Vec<Vec<String>>, Vec<Vec<Vec<String>>>) {
        let refs = vec![
            vec![
                toks("a dog runs on the grass <end>"),
                toks("a brown dog is running <end>"),
            ],
            vec![
                toks("two children play in the water <end>"),
                toks("kids splash in a pool <end>"),
                toks("two kids swim <end>"),
            ],
            vec![toks("a man rides a bike on a road <end>")],
            vec![
                toks("a dog jumps <end>"),
                toks("a black dog jumps high <end>"),
            ],
        ];
        let hyps = vec![
            toks("a dog runs on grass <end>"),
            toks("two kids play in a pool pool <end>"),
            toks("a man on a unicycle zebra"),
            toks("a dog a dog a dog"),
        ];
        (hyps, refs)
    }

    #[test]
    fn equals_the_corpus_scores_per_image_when_df_comes_from_the_same_references() {
        let (hyps, refs) = corpus();
        let want = cider_d(&hyps, &refs).unwrap().per_image;
        let mut r = CiderReward::new(&refs);
        // Twice, in another order: scoring forgets each caption's new n-grams.
        for round in 0..2 {
            for i in (0..hyps.len()).rev() {
                let got = r.score(&hyps[i], i);
                assert!(
                    (got - want[i]).abs() <= 1e-12 * want[i].abs().max(1.0),
                    "round {round} image {i}: {got} vs {want:?}"
                );
            }
        }
        assert!(want[1] > 0.0 && want[2] > 0.0, "{want:?}");
    }

    #[test]
    fn unseen_words_and_end_of_sentence() {
        let (_, refs) = corpus();
        let mut r = CiderReward::new(&refs);
        let finished = r.score(&toks("a dog jumps <end>"), 3);
        let cut = r.score(&toks("a dog jumps"), 3);
        assert!(
            finished > cut,
            "ending where the references end pays: {finished} {cut}"
        );
        let words = r.words.len();
        let grams = r.grams.mark();
        assert_eq!(r.score(&toks("zzz qqq www"), 3), 0.0);
        assert_eq!(
            (r.words.len(), r.grams.mark()),
            (words, grams),
            "table unchanged"
        );
        assert_eq!(r.score(&[], 0), 0.0);
        assert_eq!(r.score(&toks("a dog"), 99), 0.0, "no such image");
    }
}
