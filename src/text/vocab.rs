//! The word vocabulary of a caption model, saved as `vocab.json` in a run directory (docs/ARCHITECTURE.md
//! "Run directory": word list, index = id, specials `<pad> <start> <end> <unk>` first).
//!
//! File format: `{"min_count": N, "words": ["<pad>", "<start>", "<end>", "<unk>", ...]}`; a plain
//! JSON list of words is accepted on load too (min_count then reads as 1).
use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const PAD: i64 = 0;
pub const START: i64 = 1;
pub const END: i64 = 2;
pub const UNK: i64 = 3;
/// The special tokens, in id order.
pub const SPECIALS: [&str; 4] = ["<pad>", "<start>", "<end>", "<unk>"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    words: Vec<String>,
    index: HashMap<String, i64>,
    min_count: usize,
}

#[derive(Serialize, Deserialize)]
struct VocabFile {
    min_count: usize,
    words: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AnyVocabFile {
    Object(VocabFile),
    List(Vec<String>),
}

impl Vocab {
    /// Build from token lists (the training split's tokenized captions). Words seen at least
    /// `min_count` times (0 reads as 1) follow the specials, ordered by descending count, then
    /// alphabetically, so the same data always gives the same ids.
    pub fn build<I, L, W>(token_lists: I, min_count: usize) -> Self
    where
        I: IntoIterator<Item = L>,
        L: IntoIterator<Item = W>,
        W: AsRef<str>,
    {
        let min_count = min_count.max(1);
        let mut counts: HashMap<String, usize> = HashMap::new();
        for list in token_lists {
            for w in list {
                let w = w.as_ref();
                // Empty strings and the specials' spellings would collide with the fixed ids.
                if !w.is_empty() && !SPECIALS.contains(&w) {
                    *counts.entry(w.to_string()).or_insert(0) += 1;
                }
            }
        }
        let mut kept: Vec<(String, usize)> = counts
            .into_iter()
            .filter(|(_, n)| *n >= min_count)
            .collect();
        kept.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let words = SPECIALS
            .iter()
            .map(|s| s.to_string())
            .chain(kept.into_iter().map(|(w, _)| w))
            .collect();
        Self::from_words(words, min_count)
    }

    fn from_words(words: Vec<String>, min_count: usize) -> Self {
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as i64))
            .collect();
        Vocab {
            words,
            index,
            min_count,
        }
    }

    /// Number of ids, specials included.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Never true for a built or loaded vocabulary (the specials are always there).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub fn min_count(&self) -> usize {
        self.min_count
    }

    /// All words, index = id.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    pub fn id(&self, word: &str) -> Option<i64> {
        self.index.get(word).copied()
    }

    pub fn word(&self, id: i64) -> Option<&str> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.words.get(i))
            .map(String::as_str)
    }

    /// Word ids; unknown words become `<unk>`. No `<start>`/`<end>` are added.
    pub fn encode<S: AsRef<str>>(&self, tokens: &[S]) -> Vec<i64> {
        tokens
            .iter()
            .map(|t| self.id(t.as_ref()).unwrap_or(UNK))
            .collect()
    }

    /// `<start> ids... <end>` of already tokenized words: the sequence a caption decoder is
    /// trained on (`Tokens::encode_caption` tokenizes and cuts a caption first).
    pub fn encode_sequence<S: AsRef<str>>(&self, tokens: &[S]) -> Vec<i64> {
        let mut ids = Vec::with_capacity(tokens.len() + 2);
        ids.push(START);
        ids.extend(self.encode(tokens));
        ids.push(END);
        ids
    }

    /// Words up to the first `<end>`, skipping `<start>` and `<pad>`; `<unk>` and ids outside
    /// the vocabulary read as `<unk>`.
    pub fn decode(&self, ids: &[i64]) -> Vec<String> {
        let mut out = Vec::new();
        for &id in ids {
            match id {
                END => break,
                START | PAD => continue,
                _ => out.push(self.word(id).unwrap_or(SPECIALS[UNK as usize]).to_string()),
            }
        }
        out
    }

    /// Write `vocab.json` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let file = VocabFile {
            min_count: self.min_count,
            words: self.words.clone(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| {
            Error::invalid(format!("{}: cannot encode vocabulary: {e}", path.display()))
        })?;
        crate::fsio::write_atomic(path, &json, true)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = crate::input::read_bytes(path, crate::input::TEXT, "a vocabulary")?;
        let parsed: AnyVocabFile = serde_json::from_slice(&bytes).map_err(|e| {
            Error::invalid(format!(
                "{}: not a vocabulary file (expected {{\"min_count\": N, \"words\": [...]}} or a JSON list of words): {}",
                path.display(),
                crate::input::one_line(e)
            ))
        })?;
        let (words, min_count) = match parsed {
            AnyVocabFile::Object(f) => (f.words, f.min_count),
            AnyVocabFile::List(words) => (words, 1),
        };
        if words.len() < SPECIALS.len() || words[..SPECIALS.len()] != SPECIALS {
            let found: Vec<&str> = words
                .iter()
                .take(SPECIALS.len())
                .map(String::as_str)
                .collect();
            return Err(Error::invalid(format!(
                "{}: not a captag vocabulary: the first four words must be {} (found {})",
                path.display(),
                SPECIALS.join(" "),
                if found.is_empty() {
                    "no words".to_string()
                } else {
                    crate::input::printable(&found.join(" "), 80)
                }
            )));
        }
        let vocab = Self::from_words(words, min_count);
        if vocab.index.len() != vocab.words.len() {
            return Err(Error::invalid(format!(
                "{}: vocabulary lists a word twice",
                path.display()
            )));
        }
        Ok(vocab)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists() -> Vec<Vec<String>> {
        [
            "a dog runs on the grass",
            "a dog plays",
            "the cat sleeps",
            "a bird",
        ]
        .iter()
        .map(|s| s.split(' ').map(String::from).collect())
        .collect()
    }

    #[test]
    fn order_is_count_then_alphabetical() {
        let v = Vocab::build(lists(), 1);
        let w: Vec<&str> = v.words().iter().map(String::as_str).collect();
        assert_eq!(
            w,
            [
                "<pad>", "<start>", "<end>", "<unk>", "a", "dog", "the", "bird", "cat", "grass",
                "on", "plays", "runs", "sleeps"
            ]
        );
        let v2 = Vocab::build(lists(), 2);
        assert_eq!(&v2.words()[4..], ["a", "dog", "the"]);
        assert_eq!(v2.min_count(), 2);
        // Same data in another order: same ids.
        let mut rev = lists();
        rev.reverse();
        assert_eq!(Vocab::build(rev, 1), v);
    }

    #[test]
    fn specials_and_empty_tokens_are_not_words() {
        let v = Vocab::build(vec![vec!["<unk>", "", "x", "<pad>"]], 1);
        assert_eq!(v.len(), 5);
        assert_eq!(v.id("x"), Some(4));
    }

    #[test]
    fn encode_decode() {
        let v = Vocab::build(lists(), 2);
        assert_eq!(v.encode(&["a", "zebra", "dog"]), vec![4, UNK, 5]);
        assert_eq!(v.encode_sequence(&["the"]), vec![START, 6, END]);
        assert_eq!(
            v.decode(&[START, 4, UNK, 5, END, 6, PAD]),
            ["a", "<unk>", "dog"]
        );
        assert_eq!(v.decode(&[PAD, 6, 999, -5]), ["the", "<unk>", "<unk>"]);
        assert!(v.decode(&[END, 4]).is_empty());
    }

    #[test]
    fn save_load_round_trip_and_plain_list() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vocab.json");
        let v = Vocab::build(lists(), 1);
        v.save(&p).unwrap();
        assert_eq!(Vocab::load(&p).unwrap(), v);
        // No temp file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(&p, r#"["<pad>","<start>","<end>","<unk>","dog"]"#).unwrap();
        let l = Vocab::load(&p).unwrap();
        assert_eq!(l.id("dog"), Some(4));
        assert_eq!(l.min_count(), 1);
    }

    #[test]
    fn load_rejects_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vocab.json");
        std::fs::write(&p, r#"["dog","<pad>","<start>","<end>","<unk>"]"#).unwrap();
        let e = Vocab::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("first four words must be <pad> <start> <end> <unk>"),
            "{e}"
        );
        assert!(e.contains("found dog <pad> <start> <end>"), "{e}");
        std::fs::write(&p, r#"{"min_count": 1, "words": []}"#).unwrap();
        assert!(Vocab::load(&p)
            .unwrap_err()
            .to_string()
            .contains("found no words"));
        std::fs::write(&p, r#"["<pad>","<start>","<end>","<unk>","a","a"]"#).unwrap();
        assert!(Vocab::load(&p).unwrap_err().to_string().contains("twice"));
        std::fs::write(&p, b"\x00\xff binary").unwrap();
        assert!(Vocab::load(&p)
            .unwrap_err()
            .to_string()
            .contains("not a vocabulary file"));
        assert!(Vocab::load(&dir.path().join("missing.json")).is_err());
    }
}
