//! The tokens a run's decoder reads and writes, behind one type (docs/ARCHITECTURE.md, "Tokens
//! behind the decoder interface"): the run's word vocabulary (`vocab.json`), or the GPT-2
//! byte-level BPE of a pretrained LM (`--lm-weights`, the tokenizer files copied into `lm/`).
//! Training encodes captions with [`Tokens::encode_caption`]; evaluation, inference and the web
//! server turn generated ids back into words with [`Tokens::decode`], so BLEU, CIDEr-D and
//! ROUGE-L score a BPE run's captions exactly like a word-level run's.
//!
//! **BPE ids.** Every run keeps the four specials `<pad> <start> <end> <unk>` as ids 0–3 (the
//! loss masks `<pad>` = 0, decoding starts at `<start>` and stops at `<end>`); BPE token `k` is id
//! `k + 4` ([`BPE_OFFSET`]). The LM reads `<start>` as `<|endoftext|>` (GPT-2's document
//! boundary, after which text begins) and its `<|endoftext|>` logit is the `<end>` logit, so a
//! caption ends where GPT-2 would end the text; [`bpe_lm_tables`] is that mapping. A caption is
//! encoded as ClipCap does: its text as written (whitespace runs made one space, cut to
//! `max_words` words), without a leading space, followed by `<|endoftext|>` (`<end>`).
use std::path::Path;

use super::hf_tokenizer::HfTokenizer;
use super::tokenize;
use super::vocab::{Vocab, END, PAD, START, UNK};
use crate::Result;

/// BPE token `k` is id `k + BPE_OFFSET`: the four specials come first.
pub const BPE_OFFSET: i64 = 4;

/// A run's tokens.
#[derive(Debug)]
pub enum Tokens {
    /// The word vocabulary (`vocab.json`).
    Words(Vocab),
    /// A pretrained GPT-2's BPE (the run's `lm/` folder).
    Bpe(Box<BpeTokens>),
}

/// GPT-2's tokenizer with the run's id layout.
#[derive(Debug)]
pub struct BpeTokens {
    tokenizer: HfTokenizer,
    /// Rows of the LM's embedding (`config.json` `vocab_size`, ≥ the tokenizer's ids).
    lm_vocab: i64,
    /// Longest caption in BPE tokens (`<start>`/`<end>` excluded): the LM's positions.
    max_tokens: usize,
}

impl BpeTokens {
    /// The GPT-2 tokenizer of `dir` for an LM with `lm_vocab` embedding rows.
    pub fn load(dir: &Path, lm_vocab: i64, max_tokens: usize) -> Result<Self> {
        let tokenizer = HfTokenizer::gpt2(dir)?;
        if tokenizer.vocab_size() as i64 > lm_vocab {
            return Err(crate::Error::invalid(format!(
                "{}: the tokenizer has {} tokens but the model's vocab_size is {lm_vocab}",
                dir.display(),
                tokenizer.vocab_size()
            )));
        }
        Ok(BpeTokens {
            tokenizer,
            lm_vocab,
            max_tokens,
        })
    }

    /// `<|endoftext|>`'s BPE id.
    pub fn eot_id(&self) -> i64 {
        self.tokenizer.eos_id() as i64
    }

    /// The caption's BPE ids (no specials): whitespace-normalised text of its first
    /// `max_words` words, no leading space, at most `max_tokens` tokens. An `<|endoftext|>`
    /// written in the caption is dropped (it would end the caption).
    pub fn bpe_ids(&self, caption: &str, max_words: usize) -> Vec<u32> {
        let text = caption
            .split_whitespace()
            .take(max_words)
            .collect::<Vec<_>>()
            .join(" ");
        let eot = self.tokenizer.eos_id();
        let mut ids: Vec<u32> = self
            .tokenizer
            .encode_plain(&text)
            .into_iter()
            .filter(|&i| i != eot)
            .collect();
        ids.truncate(self.max_tokens);
        ids
    }

    /// Generated ids ⇒ the BPE-decoded text (up to `<end>`; specials and ids the tokenizer
    /// does not have are skipped).
    pub fn text(&self, ids: &[i64]) -> String {
        let size = self.tokenizer.vocab_size() as i64;
        let bpe: Vec<u32> = ids
            .iter()
            .take_while(|&&i| i != END)
            .filter_map(|&i| {
                let k = i - BPE_OFFSET;
                (0..size).contains(&k).then_some(k as u32)
            })
            .collect();
        self.tokenizer.decode(&bpe, true)
    }
}

impl Tokens {
    /// Number of ids the decoder scores, specials included.
    pub fn len(&self) -> usize {
        match self {
            Tokens::Words(v) => v.len(),
            Tokens::Bpe(b) => (b.lm_vocab + BPE_OFFSET) as usize,
        }
    }

    /// Never true (the specials are always there).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The word vocabulary (None for BPE runs).
    pub fn words(&self) -> Option<&Vocab> {
        match self {
            Tokens::Words(v) => Some(v),
            Tokens::Bpe(_) => None,
        }
    }

    /// `[<start> ids.. <end>]` for a training caption, at most `max_words` words: the
    /// captag-tokenized words for a word vocabulary, the BPE of the text for GPT-2.
    pub fn encode_caption(&self, caption: &str, max_words: usize) -> Vec<i64> {
        let mut ids = vec![START];
        match self {
            Tokens::Words(v) => return encode_words(v, caption, max_words),
            Tokens::Bpe(b) => ids.extend(
                b.bpe_ids(caption, max_words)
                    .into_iter()
                    .map(|k| k as i64 + BPE_OFFSET),
            ),
        }
        ids.push(END);
        ids
    }

    /// Generated ids (up to `<end>`) ⇒ the caption's words, as every caption is scored and
    /// shown: the vocabulary's words, or the BPE-decoded text tokenized like a reference.
    pub fn decode(&self, ids: &[i64]) -> Vec<String> {
        match self {
            Tokens::Words(v) => v.decode(ids),
            Tokens::Bpe(b) => tokenize(&b.text(ids)),
        }
    }
}

/// `[<start> w.. <end>]`: the caption's captag-tokenized words (at most `max_words`) as
/// vocabulary ids.
pub fn encode_words(vocab: &Vocab, caption: &str, max_words: usize) -> Vec<i64> {
    let mut words = tokenize(caption);
    words.truncate(max_words);
    vocab.encode_sequence(&words)
}

/// The LM side of the BPE id layout for an LM with `lm_vocab` rows and `<|endoftext|>` at
/// `eot`: per run id, the LM token it is read as, and whether the decoder may predict it.
/// `<start>` reads as `<|endoftext|>`; `<end>` is predicted from `<|endoftext|>`'s logit, so the
/// id `eot + 4` itself is never predicted (one id per LM logit); `<pad>`, `<start>`, `<unk>`
/// are never predicted.
pub fn bpe_lm_tables(lm_vocab: i64, eot: i64) -> (Vec<i64>, Vec<bool>) {
    let n = (lm_vocab + BPE_OFFSET) as usize;
    let (mut read, mut allowed) = (vec![eot; n], vec![true; n]);
    for (id, r) in read.iter_mut().enumerate().skip(BPE_OFFSET as usize) {
        *r = id as i64 - BPE_OFFSET;
    }
    for id in [PAD, START, UNK, eot + BPE_OFFSET] {
        allowed[id as usize] = false;
    }
    (read, allowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/gpt2")
    }

    #[test]
    fn bpe_captions_are_the_tokenizer_ids_shifted_and_ended() {
        let b = BpeTokens::load(&fixture(), 700, 50).unwrap();
        let tok = HfTokenizer::gpt2(&fixture()).unwrap();
        let cap = "A dog  runs through\tthe grass .";
        let t = Tokens::Bpe(Box::new(b));
        let ids = t.encode_caption(cap, 30);
        let want: Vec<i64> = tok
            .encode("A dog runs through the grass .")
            .into_iter()
            .map(|k| k as i64 + BPE_OFFSET)
            .collect();
        assert_eq!(ids[0], START);
        assert_eq!(*ids.last().unwrap(), END);
        assert_eq!(&ids[1..ids.len() - 1], &want[..]);
        // Round trip: BPE-decoded, then tokenized like a reference.
        assert_eq!(t.decode(&ids[1..]), tokenize(cap));
        // Word cut, token cut, and an end-of-text in the text is not a token of the caption.
        assert_eq!(
            t.encode_caption(cap, 2).len(),
            2 + tok.encode("A dog").len()
        );
        let short = Tokens::Bpe(Box::new(BpeTokens::load(&fixture(), 700, 3).unwrap()));
        assert_eq!(short.encode_caption(cap, 30).len(), 5);
        let e = t.encode_caption("a<|endoftext|>b", 30);
        assert!(!e.contains(&(tok.eos_id() as i64 + BPE_OFFSET)), "{e:?}");
        assert_eq!(t.len(), 704);
    }

    #[test]
    fn lm_tables_read_start_as_eot_and_predict_end_from_it() {
        let (read, allowed) = bpe_lm_tables(6, 5);
        assert_eq!(read, [5, 5, 5, 5, 0, 1, 2, 3, 4, 5]);
        assert_eq!(
            allowed,
            [false, false, true, false, true, true, true, true, true, false]
        );
    }

    #[test]
    fn a_tokenizer_larger_than_the_model_is_refused() {
        let e = BpeTokens::load(&fixture(), 10, 5).unwrap_err().to_string();
        assert!(e.contains("vocab_size is 10"), "{e}");
    }
}
