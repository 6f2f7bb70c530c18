//! Byte-level byte-pair encoding as GPT-2 and CLIP use it, read from a Hugging Face folder's
//! tokenizer files (`tokenizer.json`, or `vocab.json` + `merges.txt`). This is the model half of
//! a `tokenizers` BPE tokenizer: the byte ⇒ printable-character table, the merge loop and the
//! vocabulary lookup; the text-dependent halves (normalisation, pre-tokenizer regex, special
//! tokens) live in [`crate::text::hf_tokenizer`]. Parity with `transformers` is tested there
//! (docs/ARCHITECTURE.md, "CLIP and GPT-2 on Hugging Face folders").
use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::{Error, Result};

/// GPT-2's `bytes_to_unicode`: every byte gets a printable character, the printable Latin-1
/// bytes themselves and the rest `U+0100 + n` in byte order (so a space is `Ġ`, a newline `Ċ`).
pub fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let printable = |b: u32| {
        (b'!' as u32..=b'~' as u32).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b)
    };
    let mut n = 0;
    for b in 0..256u32 {
        table[b as usize] = if printable(b) {
            char::from_u32(b).unwrap_or('\0')
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('\0')
        };
    }
    table
}

/// The contents of a folder's BPE files, before they become a [`Bpe`].
#[derive(Debug, Clone)]
pub struct BpeFiles {
    pub vocab: HashMap<String, u32>,
    pub merges: Vec<(String, String)>,
    /// `</w>` for CLIP (appended to the last symbol of a word), none for GPT-2.
    pub suffix: Option<String>,
    pub unk: Option<String>,
    /// `tokenizers`' `ignore_merges`: a word found whole in the vocabulary is one token.
    pub ignore_merges: bool,
    /// `added_tokens` of `tokenizer.json` (content, id); empty for `vocab.json` + `merges.txt`.
    pub added: Vec<(String, u32)>,
}

impl BpeFiles {
    /// Reads `dir/tokenizer.json` when present (what `transformers` loads), otherwise
    /// `dir/vocab.json` + `dir/merges.txt`; `suffix` is the end-of-word suffix of the family, used
    /// for the two-file form (which does not record it).
    pub fn read(dir: &Path, suffix: Option<&str>) -> Result<BpeFiles> {
        let json = dir.join("tokenizer.json");
        if json.exists() {
            return Self::from_tokenizer_json(&json);
        }
        let (vocab_path, merges_path) = (dir.join("vocab.json"), dir.join("merges.txt"));
        if !vocab_path.exists() || !merges_path.exists() {
            return Err(Error::invalid(format!(
                "{}: no tokenizer.json, and no vocab.json + merges.txt — not a Hugging Face \
                 tokenizer folder",
                dir.display()
            )));
        }
        let text = crate::input::read_text(&vocab_path, crate::input::TEXT, "a vocabulary")?;
        let vocab = serde_json::from_str::<HashMap<String, u32>>(&text).map_err(|e| {
            Error::invalid(format!(
                "{}: not a token ⇒ id JSON object ({e})",
                vocab_path.display()
            ))
        })?;
        let text = crate::input::read_text(&merges_path, crate::input::TEXT, "a merges file")?;
        let mut merges = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if (i == 0 && line.starts_with("#version")) || line.is_empty() {
                continue;
            }
            let (a, b) = line.split_once(' ').ok_or_else(|| {
                Error::invalid(format!(
                    "{}:{}: a merge is two symbols separated by one space",
                    merges_path.display(),
                    i + 1
                ))
            })?;
            merges.push((a.to_string(), b.to_string()));
        }
        Ok(BpeFiles {
            vocab,
            merges,
            suffix: suffix.map(str::to_string),
            unk: None,
            ignore_merges: false,
            added: Vec::new(),
        })
    }

    /// The `model` (type `BPE`) and `added_tokens` of a `tokenizer.json`; merges are read in
    /// both forms `tokenizers` writes (`"a b"` strings, or `["a", "b"]` pairs since 0.20).
    pub fn from_tokenizer_json(path: &Path) -> Result<BpeFiles> {
        let bad = |why: String| Error::invalid(format!("{}: {why}", path.display()));
        let text = crate::input::read_text(path, crate::input::TEXT, "a tokenizer")?;
        let root: Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON ({e})")))?;
        let model = &root["model"];
        if model["type"].as_str().unwrap_or("BPE") != "BPE" {
            return Err(bad(format!(
                "the tokenizer model is {}, captag reads BPE tokenizers only",
                model["type"]
            )));
        }
        let vocab = serde_json::from_value::<HashMap<String, u32>>(model["vocab"].clone())
            .map_err(|e| bad(format!("model.vocab is not a token ⇒ id object ({e})")))?;
        let mut merges = Vec::new();
        for m in model["merges"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let pair = match m {
                Value::String(s) => s.split_once(' ').map(|(a, b)| (a.into(), b.into())),
                Value::Array(v) if v.len() == 2 => match (&v[0], &v[1]) {
                    (Value::String(a), Value::String(b)) => Some((a.clone(), b.clone())),
                    _ => None,
                },
                _ => None,
            };
            merges.push(pair.ok_or_else(|| bad(format!("model.merges has an entry {m}")))?);
        }
        let string = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
        if model["continuing_subword_prefix"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
        {
            return Err(bad("continuing_subword_prefix is not supported".into()));
        }
        let mut added = Vec::new();
        for t in root["added_tokens"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            match (t["content"].as_str(), t["id"].as_u64()) {
                (Some(c), Some(id)) => added.push((c.to_string(), id as u32)),
                _ => return Err(bad(format!("added_tokens has an entry {t}"))),
            }
        }
        Ok(BpeFiles {
            vocab,
            merges,
            suffix: string(&model["end_of_word_suffix"]),
            unk: string(&model["unk_token"]),
            ignore_merges: model["ignore_merges"].as_bool().unwrap_or(false),
            added,
        })
    }
}

/// A byte-level BPE model: pre-tokenized words (strings of [`byte_chars`]) ⇒ token ids.
#[derive(Debug, Clone)]
pub struct Bpe {
    vocab: HashMap<String, u32>,
    /// Token strings by id (for decoding); ids no token has are empty.
    tokens: Vec<String>,
    /// `(left id, right id)` ⇒ `(rank, merged id)`.
    merges: HashMap<(u32, u32), (u32, u32)>,
    suffix: String,
    unk: Option<u32>,
    ignore_merges: bool,
}

impl Bpe {
    /// Checks that every merge's parts and result are in the vocabulary, as `tokenizers` does
    /// when it loads a file (`where` names the folder in errors).
    pub fn new(files: BpeFiles, place: &Path) -> Result<Bpe> {
        let mut vocab = files.vocab;
        for (content, id) in &files.added {
            vocab.entry(content.clone()).or_insert(*id);
        }
        let id = |s: &str| {
            vocab.get(s).copied().ok_or_else(|| {
                Error::invalid(format!(
                    "{}: the merges use `{s}`, which the vocabulary does not have",
                    place.display()
                ))
            })
        };
        let mut merges = HashMap::with_capacity(files.merges.len());
        for (rank, (a, b)) in files.merges.iter().enumerate() {
            let merged = id(&format!("{a}{b}"))?;
            merges
                .entry((id(a)?, id(b)?))
                .or_insert((rank as u32, merged));
        }
        let unk = match &files.unk {
            Some(u) => Some(id(u)?),
            None => None,
        };
        let size = vocab.values().map(|&i| i as usize + 1).max().unwrap_or(0);
        let mut tokens = vec![String::new(); size];
        for (t, &i) in &vocab {
            tokens[i as usize] = t.clone();
        }
        Ok(Bpe {
            vocab,
            tokens,
            merges,
            suffix: files.suffix.unwrap_or_default(),
            unk,
            ignore_merges: files.ignore_merges,
        })
    }

    /// One more than the largest id.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// The token string of `id` (empty for an id no token has).
    pub fn token(&self, id: u32) -> &str {
        self.tokens.get(id as usize).map_or("", String::as_str)
    }

    /// Appends the ids of one pre-tokenized word (already mapped through [`byte_chars`]).
    ///
    /// Symbols start as single characters, the last one with the suffix; then the adjacent pair
    /// of lowest merge rank is merged everywhere, left to right, until no pair has a rank — the
    /// order `tokenizers`' priority queue produces. A character missing from the vocabulary
    /// becomes the unknown token, or is dropped when there is none (as in `tokenizers`).
    pub fn encode_word(&self, word: &str, out: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        if self.ignore_merges {
            if let Some(&id) = self.vocab.get(&format!("{word}{}", self.suffix)) {
                out.push(id);
                return;
            }
        }
        let n = word.chars().count();
        let mut syms: Vec<u32> = Vec::with_capacity(n);
        let mut buf = String::new();
        for (i, c) in word.chars().enumerate() {
            buf.clear();
            buf.push(c);
            if i + 1 == n {
                buf.push_str(&self.suffix);
            }
            match self.vocab.get(&buf) {
                Some(&id) => syms.push(id),
                None => syms.extend(self.unk),
            }
        }
        loop {
            let best = syms
                .windows(2)
                .filter_map(|w| {
                    self.merges
                        .get(&(w[0], w[1]))
                        .map(|&(r, _)| (r, (w[0], w[1])))
                })
                .min_by_key(|&(r, _)| r);
            let Some((_, pair)) = best else { break };
            let merged = self.merges[&pair].1;
            let mut next = Vec::with_capacity(syms.len());
            let mut i = 0;
            while i < syms.len() {
                if i + 1 < syms.len() && (syms[i], syms[i + 1]) == pair {
                    next.push(merged);
                    i += 2;
                } else {
                    next.push(syms[i]);
                    i += 1;
                }
            }
            syms = next;
        }
        out.extend(syms);
    }

    /// Token strings concatenated and mapped back to bytes (characters outside the byte table,
    /// such as a special token's, are kept as their UTF-8).
    pub fn decode_bytes(&self, ids: &[u32], table: &[char; 256]) -> Vec<u8> {
        let mut back: HashMap<char, u8> = HashMap::with_capacity(256);
        for (b, &c) in table.iter().enumerate() {
            back.insert(c, b as u8);
        }
        let mut out = Vec::new();
        for &id in ids {
            for c in self.token(id).chars() {
                match back.get(&c) {
                    Some(&b) => out.push(b),
                    None => {
                        let mut tmp = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_gpt2s() {
        let t = byte_chars();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[0], 'Ā');
        let mut all: Vec<char> = t.to_vec();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 256);
    }

    fn tiny(suffix: Option<&str>) -> Bpe {
        let toks = [
            "a", "b", "c", "ab", "abc", "c</w>", "ab</w>", "a</w>", "b</w>",
        ];
        let vocab = toks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let merges = vec![
            ("a".into(), "b".into()),
            ("ab".into(), "c".into()),
            ("a".into(), "b</w>".into()),
        ];
        let files = BpeFiles {
            vocab,
            merges,
            suffix: suffix.map(str::to_string),
            unk: None,
            ignore_merges: false,
            added: vec![],
        };
        Bpe::new(files, Path::new("test")).unwrap()
    }

    #[test]
    fn merges_apply_by_rank_and_suffix_marks_word_ends() {
        let bpe = tiny(None);
        let mut out = vec![];
        bpe.encode_word("ababc", &mut out);
        assert_eq!(out, vec![3, 4]); // ab abc
        let bpe = tiny(Some("</w>"));
        let mut out = vec![];
        bpe.encode_word("abab", &mut out);
        assert_eq!(out, vec![3, 6]); // ab ab</w>: the word end merges by its own rule
        out.clear();
        bpe.encode_word("bab", &mut out);
        assert_eq!(out, vec![1, 6]); // b ab</w>
        out.clear();
        bpe.encode_word("abc", &mut out); // "c</w>" does not merge with "ab"
        assert_eq!(out, vec![3, 5]);
    }

    #[test]
    fn a_merge_outside_the_vocabulary_is_one_clear_error() {
        let files = BpeFiles {
            vocab: [("a".to_string(), 0)].into_iter().collect(),
            merges: vec![("a".into(), "a".into())],
            suffix: None,
            unk: None,
            ignore_merges: false,
            added: vec![],
        };
        let e = Bpe::new(files, Path::new("dir")).unwrap_err().to_string();
        assert!(e.contains("`aa`"), "{e}");
    }
}
