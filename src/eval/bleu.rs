//! Corpus BLEU-1..4 (Papineni et al. 2002) exactly as the two reference evaluators compute it
//! on the same token lists: pycocoevalcap `Bleu(4).compute_score` ([`BleuMode::Coco`]) and
//! NLTK `corpus_bleu` without smoothing ([`BleuMode::Nltk`]); see docs/ARCHITECTURE.md "BLEU, exactly".
//!
//! Both modes share one pass over the corpus that collects integer sufficient statistics
//! ([`BleuStats`]); the modes differ only in how those integers become scores. The pass numbers
//! each hypothesis' tokens and n-grams in small open-addressing tables and streams the
//! references through them, so nothing is allocated per token or n-gram. Parity with the Python evaluators is tested to 1e-12 against
//! `tests/fixtures/bleu/cases.json`, written by `notebooks/bleu_reference.py`.
//!
//! Tokens are compared as given. pycocoevalcap joins tokens with spaces and splits again, so the
//! two agree only for non-empty tokens without whitespace (what `text::tokenize` produces).
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Highest n-gram order; BLEU-N for N < 4 is read off the same statistics.
pub const MAX_N: usize = 4;

/// Which reference evaluator's definition to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BleuMode {
    /// pycocoevalcap `Bleu(4)`: 1e-15/1e-9 smoothing of every ratio, `option='closest'`.
    Coco,
    /// NLTK `corpus_bleu`, uniform weights 1/N over n = 1..N, no smoothing.
    Nltk,
}

impl BleuMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BleuMode::Coco => "coco",
            BleuMode::Nltk => "nltk",
        }
    }
}

impl std::fmt::Display for BleuMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Corpus scores. `bleu[k]` is BLEU-(k+1) in [0, 1].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BleuScores {
    pub mode: BleuMode,
    pub bleu: [f64; MAX_N],
    /// Total hypothesis length c.
    pub hyp_len: usize,
    /// Sum over hypotheses of the closest reference length r (ties to the shorter).
    pub ref_len: usize,
    /// (c + 1e-15) / (r + 1e-9), as pycocoevalcap reports it (finite even when r = 0).
    pub ratio: f64,
}

/// Integer sufficient statistics of a corpus, shared by both modes. Sums of per-sentence
/// counts, so statistics of disjoint parts of a corpus add up (`merge`) to the whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BleuStats {
    /// Σ clipped n-gram matches for n = k+1 (both evaluators' numerator).
    pub correct: [u64; MAX_N],
    /// Σ max(0, |h| − n + 1): pycocoevalcap's denominator.
    pub guess: [u64; MAX_N],
    /// Σ max(1, |h| − n + 1): NLTK's denominator (`modified_precision` never returns /0).
    pub guess_nltk: [u64; MAX_N],
    pub hyp_len: u64,
    pub ref_len: u64,
}

impl BleuStats {
    pub fn merge(&mut self, other: &BleuStats) {
        for k in 0..MAX_N {
            self.correct[k] += other.correct[k];
            self.guess[k] += other.guess[k];
            self.guess_nltk[k] += other.guess_nltk[k];
        }
        self.hyp_len += other.hyp_len;
        self.ref_len += other.ref_len;
    }

    /// Scores under one evaluator's definition. The float operations follow the Python code
    /// step by step (same order, same libm calls): bit-identical on every parity case and the
    /// benchmark corpus here; only a different libm could move the last bit.
    pub fn score(&self, mode: BleuMode) -> BleuScores {
        let c = self.hyp_len as f64;
        let r = self.ref_len as f64;
        let ratio = (c + 1e-15) / (r + 1e-9);
        let bleu = match mode {
            BleuMode::Coco => self.coco(ratio),
            BleuMode::Nltk => self.nltk(),
        };
        BleuScores {
            mode,
            bleu,
            hyp_len: self.hyp_len as usize,
            ref_len: self.ref_len as usize,
            ratio,
        }
    }

    /// bleu_scorer.py `compute_score`: running product of smoothed precisions, k-th root,
    /// then the brevity penalty on the smoothed length ratio.
    fn coco(&self, ratio: f64) -> [f64; MAX_N] {
        let (tiny, small) = (1e-15, 1e-9);
        let mut out = [0.0; MAX_N];
        let mut prod = 1.0_f64;
        for (k, o) in out.iter_mut().enumerate() {
            prod *= (self.correct[k] as f64 + tiny) / (self.guess[k] as f64 + small);
            *o = prod.powf(1.0 / (k + 1) as f64);
        }
        if ratio < 1.0 {
            let bp = (1.0 - 1.0 / ratio).exp();
            for s in &mut out {
                *s *= bp;
            }
        }
        out
    }

    /// bleu_score.py `corpus_bleu` with `weights=(1/N,)*N` and `SmoothingFunction().method0`.
    fn nltk(&self) -> [f64; MAX_N] {
        // "no unigram matches" short-circuits to an exact 0 before any logarithm.
        if self.correct[0] == 0 {
            return [0.0; MAX_N];
        }
        // brevity_penalty(r, c); c > 0 here because some unigram matched.
        let bp = if self.hyp_len > self.ref_len {
            1.0
        } else {
            (1.0 - self.ref_len as f64 / self.hyp_len as f64).exp()
        };
        // method0 turns a zero precision into sys.float_info.min, so the score is tiny, not 0:
        // keep that value rather than rounding it to 0.
        let logp: Vec<f64> = (0..MAX_N)
            .map(|k| {
                let p = if self.correct[k] == 0 {
                    f64::MIN_POSITIVE
                } else {
                    // float(Fraction(num, den)) is the correctly rounded quotient; so is this,
                    // as both counts are far below 2^53.
                    self.correct[k] as f64 / self.guess_nltk[k] as f64
                };
                p.ln()
            })
            .collect();
        let mut out = [0.0; MAX_N];
        for (k, o) in out.iter_mut().enumerate() {
            let n = k + 1;
            let w = 1.0 / n as f64;
            let terms: Vec<f64> = logp[..n].iter().map(|l| w * l).collect();
            *o = bp * fsum(&terms).exp();
        }
        out
    }
}

/// Corpus BLEU-1..4 of `hyps[i]` against the references `refs[i]`.
///
/// Errors when the two lists differ in length or an item has no reference (both evaluators
/// reject those too: an assertion in pycocoevalcap, `min()` of nothing in NLTK).
pub fn corpus_bleu<S: AsRef<str>>(
    hyps: &[Vec<S>],
    refs: &[Vec<Vec<S>>],
    mode: BleuMode,
) -> Result<BleuScores> {
    Ok(corpus_stats(hyps, refs)?.score(mode))
}

/// The statistics behind [`corpus_bleu`]; score them with [`BleuStats::score`] for each mode
/// wanted (one pass serves both).
///
/// Single-threaded on purpose: it is memory-bound and already ~100× faster than NLTK
/// (bench/README.md); on the shared 2-core build machine two threads gained at most ~20% and
/// were several times slower while other processes held the cores. Callers can still split a
/// corpus and [`BleuStats::merge`] the parts.
pub fn corpus_stats<S: AsRef<str>>(hyps: &[Vec<S>], refs: &[Vec<Vec<S>>]) -> Result<BleuStats> {
    if hyps.len() != refs.len() {
        return Err(Error::invalid(format!(
            "BLEU: {} hypotheses but {} reference lists",
            hyps.len(),
            refs.len()
        )));
    }
    if let Some(i) = refs.iter().position(|r| r.is_empty()) {
        return Err(Error::invalid(format!(
            "BLEU: hypothesis {i} has no references"
        )));
    }
    let mut item = Item::default();
    let mut stats = BleuStats::default();
    for (h, rs) in hyps.iter().zip(refs) {
        item.set_hypothesis(h)?;
        for r in rs {
            item.add_reference(r);
        }
        item.finish(&mut stats);
    }
    Ok(stats)
}

/// "Not a hypothesis token / n-gram", and the free-slot marker of the tables.
const NONE: u32 = u32::MAX;

/// One hypothesis with its references, streamed: the hypothesis' n-grams are numbered once,
/// then each reference is read token by token and only ever looked up against those numbers.
/// Buffers are reused across items, so the corpus pass allocates only while they grow.
///
/// Numbering: a unigram's number is its token id; an n-gram (n ≥ 2) is keyed by (number of its
/// (n−1)-gram prefix, id of its last token) and numbered on first sight. A reference n-gram is
/// therefore looked up only when its prefix is a hypothesis n-gram, and any key fits a `u64`.
#[derive(Default)]
struct Item<'a> {
    vocab: SmallVocab<'a>,
    ngrams: NgramTable,
    hyp: Vec<u32>,
    /// Per hypothesis position: the number of the current-order n-gram ending there.
    ends: Vec<u32>,
    hyp_len: usize,
    ref_lens: Vec<usize>,
    /// Per n-gram number: its order minus one, its count in the hypothesis, its highest count
    /// in one reference so far, and its count in the reference being read.
    order: Vec<u8>,
    count: Vec<u32>,
    best: Vec<u32>,
    cur: Vec<u32>,
}

impl<'a> Item<'a> {
    fn set_hypothesis<S: AsRef<str>>(&mut self, hyp: &'a [S]) -> Result<()> {
        // Numbers (< 4·|hyp|) must stay below NONE.
        if hyp.len() >= (NONE / MAX_N as u32) as usize {
            return Err(Error::invalid(format!(
                "BLEU: a hypothesis of {} tokens",
                hyp.len()
            )));
        }
        self.hyp_len = hyp.len();
        self.ref_lens.clear();
        self.vocab.reset(hyp.len());
        self.hyp.clear();
        for t in hyp {
            let id = self.vocab.id(t.as_ref());
            self.hyp.push(id);
        }
        let words = self.vocab.len();
        self.order.clear();
        self.order.resize(words, 0);
        self.count.clear();
        self.count.resize(words, 0);
        for &id in &self.hyp {
            self.count[id as usize] += 1;
        }
        self.ngrams.reset((MAX_N - 1) * hyp.len());
        self.ends.clone_from(&self.hyp);
        for k in 1..MAX_N {
            // Right to left, so `ends[j - 1]` still holds the prefix's (lower-order) number.
            for j in (k..self.hyp.len()).rev() {
                let next = self.count.len() as u32;
                let g = self.ngrams.number(key(self.ends[j - 1], self.hyp[j]), next);
                if g == next {
                    self.count.push(0);
                    self.order.push(k as u8);
                }
                self.count[g as usize] += 1;
                self.ends[j] = g;
            }
        }
        self.best.clear();
        self.best.resize(self.count.len(), 0);
        Ok(())
    }

    fn add_reference<S: AsRef<str>>(&mut self, r: &[S]) {
        self.ref_lens.push(r.len());
        self.cur.clear();
        self.cur.resize(self.count.len(), 0);
        // Numbers of the 1-, 2-, 3-grams ending at the previous token.
        let mut prev = [NONE; MAX_N - 1];
        for t in r {
            let mut here = [NONE; MAX_N - 1];
            let id = self.vocab.get(t.as_ref());
            if id != NONE {
                self.cur[id as usize] += 1;
                here[0] = id;
                // An n-gram is a hypothesis n-gram only if its prefix and suffix (n−1)-grams
                // are, so the first miss ends the climb.
                for k in 1..MAX_N {
                    if prev[k - 1] == NONE {
                        break;
                    }
                    let g = self.ngrams.get(key(prev[k - 1], id));
                    if g == NONE {
                        break;
                    }
                    self.cur[g as usize] += 1;
                    if k < MAX_N - 1 {
                        here[k] = g;
                    }
                }
            }
            prev = here;
        }
        for (b, &c) in self.best.iter_mut().zip(&self.cur) {
            *b = (*b).max(c);
        }
    }

    fn finish(&self, stats: &mut BleuStats) {
        stats.hyp_len += self.hyp_len as u64;
        stats.ref_len += closest_ref_len(&self.ref_lens, self.hyp_len) as u64;
        for k in 0..MAX_N {
            let guess = (self.hyp_len + 1).saturating_sub(k + 1) as u64;
            stats.guess[k] += guess;
            stats.guess_nltk[k] += guess.max(1);
        }
        // Clipping: each distinct n-gram counts at most as often as in the best reference.
        for ((&k, &c), &b) in self.order.iter().zip(&self.count).zip(&self.best) {
            stats.correct[k as usize] += c.min(b) as u64;
        }
    }
}

#[inline]
fn key(prefix: u32, last: u32) -> u64 {
    (prefix as u64) << 32 | last as u64
}

/// The reference length closest to `hyp_len`, ties to the shorter (both evaluators take
/// `min` over `(|r − c|, r)`).
fn closest_ref_len(ref_lens: &[usize], hyp_len: usize) -> usize {
    let best = ref_lens
        .iter()
        .map(|&len| (len.abs_diff(hyp_len), len))
        .min();
    best.map_or(0, |(_, len)| len)
}

/// Open-addressing tables below: power-of-two size at least twice the entries (so probing
/// always reaches a free slot), and the shift that takes a hash's top bits as the start slot.
fn table_shape(max_entries: usize) -> (usize, u32) {
    let size = (2 * max_entries).next_power_of_two().max(8);
    (size, 64 - size.trailing_zeros())
}

const MIX: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// The hypothesis n-grams of order ≥ 2: `key` -> number.
#[derive(Default)]
struct NgramTable {
    slots: Vec<(u64, u32)>,
    shift: u32,
}

impl NgramTable {
    fn reset(&mut self, max_entries: usize) {
        let (size, shift) = table_shape(max_entries);
        self.shift = shift;
        self.slots.clear();
        self.slots.resize(size, (0, NONE));
    }

    #[inline]
    fn slot(&self, key: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = (key.wrapping_mul(MIX) >> self.shift) as usize;
        loop {
            let (k, g) = self.slots[i];
            if g == NONE || k == key {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    fn get(&self, key: u64) -> u32 {
        self.slots[self.slot(key)].1
    }

    /// The number of `key`, giving it `next` if it has none yet.
    fn number(&mut self, key: u64, next: u32) -> u32 {
        let i = self.slot(key);
        if self.slots[i].1 == NONE {
            self.slots[i] = (key, next);
        }
        self.slots[i].1
    }
}

/// The distinct tokens of one hypothesis, keyed by a fixed-size digest. Every reference token
/// is looked up here, so this is the hot path of the whole pass; a general `HashMap<&str, _>`
/// (hashing byte by byte, then `memcmp`) made the pass about twice as slow.
#[derive(Default)]
struct SmallVocab<'a> {
    slots: Vec<(Digest, u32)>,
    /// Token by id, for the full comparison of tokens longer than 16 bytes.
    words: Vec<&'a str>,
    shift: u32,
}

impl<'a> SmallVocab<'a> {
    /// Empties the table and sizes it for up to `max_words` distinct tokens.
    fn reset(&mut self, max_words: usize) {
        let (size, shift) = table_shape(max_words);
        self.shift = shift;
        self.slots.clear();
        self.slots.resize(size, (Digest::default(), NONE));
        self.words.clear();
    }

    fn len(&self) -> usize {
        self.words.len()
    }

    /// Index of `tok`'s slot, or of the free slot where it would go.
    #[inline]
    fn slot(&self, tok: &str, d: &Digest) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = (d.hash() >> self.shift) as usize;
        loop {
            let (sd, id) = &self.slots[i];
            if *id == NONE || (sd == d && (tok.len() <= 16 || self.words[*id as usize] == tok)) {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// The id of `tok`, or NONE.
    #[inline]
    fn get(&self, tok: &str) -> u32 {
        let d = Digest::of(tok);
        self.slots[self.slot(tok, &d)].1
    }

    /// The id of `tok`, adding it if new (at most `max_words` of `reset` may be added).
    fn id(&mut self, tok: &'a str) -> u32 {
        let d = Digest::of(tok);
        let i = self.slot(tok, &d);
        if self.slots[i].1 == NONE {
            self.slots[i] = (d, self.words.len() as u32);
            self.words.push(tok);
        }
        self.slots[i].1
    }
}

/// A token's length and (overlapping) first and last bytes: equal digests mean equal tokens
/// for tokens of up to 16 bytes, which is nearly every word.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Digest {
    head: u64,
    tail: u64,
    len: usize,
}

impl Digest {
    #[inline]
    fn of(tok: &str) -> Digest {
        let b = tok.as_bytes();
        let len = b.len();
        let (head, tail) = if let (Some(h), Some(t)) = (b.first_chunk::<8>(), b.last_chunk::<8>()) {
            (u64::from_le_bytes(*h), u64::from_le_bytes(*t))
        } else if let (Some(h), Some(t)) = (b.first_chunk::<4>(), b.last_chunk::<4>()) {
            let (h, t) = (u32::from_le_bytes(*h) as u64, u32::from_le_bytes(*t) as u64);
            (h | t << 32, 0)
        } else if len > 0 {
            let h = b[0] as u64 | (b[len / 2] as u64) << 8 | (b[len - 1] as u64) << 16;
            (h, 0)
        } else {
            (0, 0)
        };
        Digest { head, tail, len }
    }

    /// Fx-style mixing; the tables use the top bits.
    #[inline]
    fn hash(&self) -> u64 {
        let h = self.head.wrapping_mul(MIX);
        let h = (h.rotate_left(5) ^ self.tail).wrapping_mul(MIX);
        (h.rotate_left(5) ^ self.len as u64).wrapping_mul(MIX)
    }
}

/// Python's `math.fsum`: the correctly rounded sum (Shewchuk's partials, then CPython's
/// half-even fix-up), needed because NLTK sums the weighted log precisions with it.
fn fsum(xs: &[f64]) -> f64 {
    let mut partials: Vec<f64> = Vec::with_capacity(4);
    for &x0 in xs {
        let mut x = x0;
        let mut i = 0;
        for j in 0..partials.len() {
            let mut y = partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                partials[i] = lo;
                i += 1;
            }
            x = hi;
        }
        partials.truncate(i);
        partials.push(x);
    }
    let mut n = partials.len();
    if n == 0 {
        return 0.0;
    }
    n -= 1;
    let mut hi = partials[n];
    let mut lo = 0.0;
    while n > 0 {
        let x = hi;
        n -= 1;
        let y = partials[n];
        hi = x + y;
        let yr = hi - x;
        lo = y - yr;
        if lo != 0.0 {
            break;
        }
    }
    // Round half to even across the remaining partials, as CPython does.
    if n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0)) {
        let y = lo * 2.0;
        let x = hi + y;
        let yr = x - hi;
        if y == yr {
            hi = x;
        }
    }
    hi
}

#[cfg(test)]
#[path = "bleu_tests.rs"]
mod tests;
