//! GPT-2's and CLIP's tokenizers, token for token as `transformers` (5.x, backed by
//! `tokenizers`) runs them on a Hugging Face folder, so that a user's `gpt2` or
//! `openai/clip-vit-base-patch32` download gives the ids the weights were trained with.
//!
//! Both cut the text at their special tokens first (`<|endoftext|>`, `<|startoftext|>` written
//! in the text are those tokens, as in `tokenizers`), then:
//! - **GPT-2**: no normalisation; the pre-tokenizer regex
//!   `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` (the look-ahead
//!   keeps the last space of a run for the next word); byte-level BPE; no specials added.
//! - **CLIP**: NFC, every run of whitespace ⇒ one space, lower-case (per character, as
//!   `tokenizers`' `Lowercase`, so no final-sigma rule); the pieces matched by CLIP's regex are
//!   kept and whitespace is dropped; byte-level BPE with `</w>` on each word's last symbol;
//!   `<|startoftext|> … <|endoftext|>` around the ids. (The slow, ftfy-less tokenizer of older
//!   `transformers` differs only on control characters and CJK spacing; 5.x has no slow one.)
//!
//! Parity: `tests/fixtures/hf/tokenizer_cases.json`, written by `notebooks/make_hf_fixtures.py`
//! (docs/ARCHITECTURE.md, "CLIP and GPT-2 on Hugging Face folders").
use std::path::Path;

use fancy_regex::Regex;
use unicode_normalization::UnicodeNormalization;

use super::bpe::{byte_chars, Bpe, BpeFiles};
use crate::{Error, Result};

const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
const END_OF_TEXT: &str = "<|endoftext|>";
const START_OF_TEXT: &str = "<|startoftext|>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Gpt2,
    Clip,
}

/// A GPT-2 or CLIP tokenizer read from a Hugging Face folder.
#[derive(Debug)]
pub struct HfTokenizer {
    family: Family,
    bpe: Bpe,
    bytes: [char; 256],
    /// Special tokens cut out of the text before anything else, longest first.
    specials: Vec<(String, u32)>,
    bos: Option<u32>,
    eos: u32,
    byte_level: Regex,
    clip_split: Option<Regex>,
}

impl HfTokenizer {
    /// GPT-2's tokenizer from `dir` (`tokenizer.json`, or `vocab.json` + `merges.txt`).
    pub fn gpt2(dir: &Path) -> Result<Self> {
        Self::load(dir, Family::Gpt2)
    }

    /// CLIP's tokenizer from `dir` (`tokenizer.json`, or `vocab.json` + `merges.txt`).
    pub fn clip(dir: &Path) -> Result<Self> {
        Self::load(dir, Family::Clip)
    }

    pub fn load(dir: &Path, family: Family) -> Result<Self> {
        let want_suffix = (family == Family::Clip).then_some("</w>");
        let files = BpeFiles::read(dir, want_suffix)?;
        if files.suffix.as_deref() != want_suffix {
            return Err(Error::invalid(format!(
                "{}: the tokenizer's end-of-word suffix is {:?}, a {} tokenizer has {:?}",
                dir.display(),
                files.suffix.as_deref().unwrap_or(""),
                if family == Family::Clip {
                    "CLIP"
                } else {
                    "GPT-2"
                },
                want_suffix.unwrap_or("")
            )));
        }
        let mut specials = files.added.clone();
        let bpe = Bpe::new(files, dir)?;
        let names: &[&str] = match family {
            Family::Gpt2 => &[END_OF_TEXT],
            Family::Clip => &[START_OF_TEXT, END_OF_TEXT],
        };
        for name in names {
            let id = bpe.id(name).ok_or_else(|| {
                Error::invalid(format!(
                    "{}: the vocabulary has no `{name}` token",
                    dir.display()
                ))
            })?;
            if !specials.iter().any(|(s, _)| s == name) {
                specials.push((name.to_string(), id));
            }
        }
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        let regex = |p: &str| Regex::new(p).map_err(|e| Error::invalid(format!("regex: {e}")));
        Ok(HfTokenizer {
            family,
            bos: bpe.id(START_OF_TEXT).filter(|_| family == Family::Clip),
            eos: bpe.id(END_OF_TEXT).unwrap_or(0),
            bytes: byte_chars(),
            specials,
            byte_level: regex(GPT2_PATTERN)?,
            clip_split: match family {
                Family::Clip => Some(regex(CLIP_PATTERN)?),
                Family::Gpt2 => None,
            },
            bpe,
        })
    }

    pub fn family(&self) -> Family {
        self.family
    }

    /// One more than the largest token id.
    pub fn vocab_size(&self) -> usize {
        self.bpe.vocab_size()
    }

    /// `<|endoftext|>`.
    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// `<|startoftext|>` (CLIP only).
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// What `tokenizer(text)["input_ids"]` gives: CLIP's ids between `<|startoftext|>` and
    /// `<|endoftext|>`, GPT-2's as they are.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        ids.extend(self.bos);
        self.encode_into(text, &mut ids);
        if self.family == Family::Clip {
            ids.push(self.eos);
        }
        ids
    }

    /// The ids of `text` without the added start/end tokens.
    pub fn encode_plain(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        self.encode_into(text, &mut ids);
        ids
    }

    fn encode_into(&self, text: &str, ids: &mut Vec<u32>) {
        let mut rest = text;
        while !rest.is_empty() {
            // The leftmost special token, the longest on a tie.
            let hit = self
                .specials
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|at| (at, s.len(), *id)))
                .min_by_key(|&(at, len, _)| (at, std::cmp::Reverse(len)));
            let (piece, special, next) = match hit {
                Some((at, len, id)) => (&rest[..at], Some(id), &rest[at + len..]),
                None => (rest, None, ""),
            };
            self.encode_piece(piece, ids);
            ids.extend(special);
            rest = next;
        }
    }

    fn encode_piece(&self, piece: &str, ids: &mut Vec<u32>) {
        if piece.is_empty() {
            return;
        }
        match &self.clip_split {
            None => self.byte_level_words(piece, ids),
            Some(split) => {
                let text = clip_normalize(piece);
                for m in split.find_iter(&text).flatten() {
                    // `tokenizers` runs its byte-level regex again inside each kept piece.
                    self.byte_level_words(m.as_str(), ids);
                }
            }
        }
    }

    /// Splits with GPT-2's regex (every character falls in some match) and encodes each word.
    fn byte_level_words(&self, text: &str, ids: &mut Vec<u32>) {
        let mut word = String::new();
        for m in self.byte_level.find_iter(text).flatten() {
            word.clear();
            word.extend(m.as_str().bytes().map(|b| self.bytes[b as usize]));
            self.bpe.encode_word(&word, ids);
        }
    }

    /// Token ids back to text: bytes decoded as UTF-8 (invalid sequences as U+FFFD); CLIP's
    /// `</w>` become spaces and the ends are trimmed, as `transformers` decodes. Special tokens
    /// are dropped when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let kept: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|id| !skip_special || !self.specials.iter().any(|(_, s)| s == id))
            .collect();
        let text = String::from_utf8_lossy(&self.bpe.decode_bytes(&kept, &self.bytes)).into_owned();
        match self.family {
            Family::Gpt2 => text,
            Family::Clip => text.replace("</w>", " ").trim().to_string(),
        }
    }
}

/// CLIP's normaliser: NFC, whitespace runs ⇒ one space, lower-case character by character.
fn clip_normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.nfc() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            in_space = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hf")
            .join(name)
    }

    struct Cases {
        strings: Vec<String>,
        ids: serde_json::Value,
    }

    /// The committed cases, or the file `CAPTAG_TOKENIZER_CASES` names (`make_hf_fixtures.py
    /// --bulk-cases PATH`: every caption of the Instagram and Flickr8k files).
    fn cases() -> Cases {
        let path = std::env::var_os("CAPTAG_TOKENIZER_CASES")
            .map(PathBuf::from)
            .unwrap_or_else(|| fixture("tokenizer_cases.json"));
        let text = std::fs::read_to_string(path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        Cases {
            strings: serde_json::from_value(v["strings"].clone()).unwrap(),
            ids: v,
        }
    }

    /// Every case's ids equal `transformers`'; returns the number of cases checked.
    fn check(tok: &HfTokenizer, key: &str) -> usize {
        let c = cases();
        let want: Vec<Vec<u32>> = serde_json::from_value(c.ids[key].clone()).unwrap();
        assert_eq!(want.len(), c.strings.len());
        let mut bad = Vec::new();
        for (s, w) in c.strings.iter().zip(&want) {
            let got = tok.encode(s);
            if &got != w {
                bad.push(format!("{s:?}\n  got  {got:?}\n  want {w:?}"));
            }
        }
        assert!(
            bad.is_empty(),
            "{} of {} differ:\n{}",
            bad.len(),
            want.len(),
            bad.join("\n")
        );
        want.len()
    }

    /// A copy of a fixture folder with only `vocab.json` + `merges.txt` (the older download).
    fn two_file_copy(name: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in ["vocab.json", "merges.txt"] {
            std::fs::copy(fixture(name).join(f), d.path().join(f)).unwrap();
        }
        d
    }

    #[test]
    fn gpt2_ids_equal_transformers() {
        let n = check(&HfTokenizer::gpt2(&fixture("gpt2")).unwrap(), "gpt2");
        let d = two_file_copy("gpt2");
        check(&HfTokenizer::gpt2(d.path()).unwrap(), "gpt2");
        eprintln!("gpt2 tokenizer: {n} cases identical (tokenizer.json and vocab+merges)");
    }

    #[test]
    fn clip_ids_equal_transformers() {
        let n = check(&HfTokenizer::clip(&fixture("clip")).unwrap(), "clip");
        let d = two_file_copy("clip");
        check(&HfTokenizer::clip(d.path()).unwrap(), "clip");
        eprintln!("clip tokenizer: {n} cases identical (tokenizer.json and vocab+merges)");
    }

    /// The full real vocabularies (written by `make_hf_fixtures.py --real-out DIR`, not
    /// committed: 1–2 MB each) when `CAPTAG_REAL_{CLIP,GPT2}_TOKENIZER` name their folders.
    fn real(var: &str, family: Family, key: &str, size: usize) {
        let Some(dir) = std::env::var_os(var) else {
            eprintln!("skipped: set {var} to a --real-out folder of make_hf_fixtures.py");
            return;
        };
        let dir = PathBuf::from(dir);
        let tok = HfTokenizer::load(&dir, family).unwrap();
        assert_eq!(tok.vocab_size(), size);
        let n = check(&tok, key);
        let mut forms = "tokenizer.json";
        if dir.join("tokenizer.json").exists() {
            let d = tempfile::tempdir().unwrap();
            for f in ["vocab.json", "merges.txt"] {
                std::fs::copy(dir.join(f), d.path().join(f)).unwrap();
            }
            check(&HfTokenizer::load(d.path(), family).unwrap(), key);
            forms = "tokenizer.json and vocab+merges";
        }
        eprintln!("{key}: {n} cases identical with the {size}-token vocabulary ({forms})");
    }

    /// `tokenizer.json` files written before `tokenizers` 0.20 (the hub's `gpt2` and
    /// `openai/clip-*`) hold merges as `"a b"` strings.
    #[test]
    fn merges_as_strings_read_the_same() {
        for (name, family, key) in [
            ("gpt2", Family::Gpt2, "gpt2"),
            ("clip", Family::Clip, "clip"),
        ] {
            let text = std::fs::read_to_string(fixture(name).join("tokenizer.json")).unwrap();
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let merges: Vec<serde_json::Value> = v["model"]["merges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| format!("{} {}", m[0].as_str().unwrap(), m[1].as_str().unwrap()).into())
                .collect();
            v["model"]["merges"] = merges.into();
            let d = tempfile::tempdir().unwrap();
            std::fs::write(d.path().join("tokenizer.json"), v.to_string()).unwrap();
            check(&HfTokenizer::load(d.path(), family).unwrap(), key);
        }
    }

    #[test]
    fn real_clip_vocabulary_ids_equal_transformers() {
        real(
            "CAPTAG_REAL_CLIP_TOKENIZER",
            Family::Clip,
            "clip_real",
            49408,
        );
    }

    #[test]
    fn real_gpt2_vocabulary_ids_equal_transformers() {
        real(
            "CAPTAG_REAL_GPT2_TOKENIZER",
            Family::Gpt2,
            "gpt2_real",
            50257,
        );
    }

    #[test]
    fn decoding_inverts_encoding() {
        let g = HfTokenizer::gpt2(&fixture("gpt2")).unwrap();
        let s = "Sunset vibes 🌅 #beach  with @friends\n";
        assert_eq!(g.decode(&g.encode(s), false), s);
        let c = HfTokenizer::clip(&fixture("clip")).unwrap();
        let ids = c.encode("A Dog,  running!");
        assert_eq!(ids[0], c.bos_id().unwrap());
        assert_eq!(*ids.last().unwrap(), c.eos_id());
        assert_eq!(c.decode(&ids, true), "a dog , running !");
    }

    #[test]
    fn a_folder_without_tokenizer_files_is_one_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let e = HfTokenizer::gpt2(d.path()).unwrap_err().to_string();
        assert!(e.contains("not a Hugging Face tokenizer folder"), "{e}");
        let e = HfTokenizer::gpt2(&fixture("clip")).unwrap_err().to_string();
        assert!(e.contains("end-of-word suffix"), "{e}");
    }
}
