//! Tokenizers of Hugging Face translation folders, with the ids `transformers` gives
//! (docs/translation.md):
//! - Marian (`MarianTokenizer`): the folder's `source.spm` cuts the text into pieces, the shared
//!   `vocab.json` numbers them (`<unk>` for a piece it lacks), `</s>` is appended; a leading
//!   `>>xxx<<` target-language token (multilingual opus-mt models) is kept whole.
//! - M2M100 (`M2M100Tokenizer`): `sentencepiece.bpe.model` pieces numbered by `vocab.json`,
//!   `__en__ … </s>`; the 100 language tokens follow the vocabulary.
//! - NLLB (`NllbTokenizerFast`): the folder's `tokenizer.json` (`eng_Latn … </s>`).
//!
//! Decoding drops `</s>`, `<pad>`, `<unk>`, `<s>` and the language tokens, and joins the pieces
//! as SentencePiece does.
use std::collections::HashMap;
use std::path::Path;

use tokenizers::Tokenizer;

use super::hf_tokenizer::{Family, HfTokenizer};
use super::spm::{pieces_to_text, SpmModel};
use crate::{Error, Result};

/// `M2M100Tokenizer`'s language codes (`FAIRSEQ_LANGUAGE_CODES["m2m100"]`), in id order.
const M2M100_LANGS: &str = "af am ar ast az ba be bg bn br bs ca ceb cs cy da de el en es et fa \
ff fi fr fy ga gd gl gu ha he hi hr ht hu hy id ig ilo is it ja jv ka kk km kn ko lb lg ln lo lt \
lv mg mk ml mn mr ms my ne nl no ns oc or pa pl ps pt ro ru sd si sk sl so sq sr ss su sv sw ta \
th tl tn tr uk ur uz vi wo xh yi yo zh zu";
const WMT21_LANGS: &str = "en ha is ja cs ru zh de";

/// NLLB codes of the languages people ask for most (the Indian ones first) and their two-letter
/// M2M100 codes, so `--lang hin_Deva` works for both families.
const LANG_PAIRS: &[(&str, &str)] = &[
    ("hin_Deva", "hi"),
    ("ben_Beng", "bn"),
    ("tam_Taml", "ta"),
    ("tel_Telu", "te"),
    ("mar_Deva", "mr"),
    ("guj_Gujr", "gu"),
    ("kan_Knda", "kn"),
    ("mal_Mlym", "ml"),
    ("pan_Guru", "pa"),
    ("urd_Arab", "ur"),
    ("npi_Deva", "ne"),
    ("ory_Orya", "or"),
    ("sin_Sinh", "si"),
    ("eng_Latn", "en"),
    ("fra_Latn", "fr"),
    ("deu_Latn", "de"),
    ("spa_Latn", "es"),
];

/// The two-letter code of an NLLB code, or the code itself.
pub fn short_lang(code: &str) -> &str {
    LANG_PAIRS
        .iter()
        .find(|(long, _)| *long == code)
        .map_or(code, |(_, short)| short)
}

/// The NLLB code of a two-letter code, or the code itself.
pub fn long_lang(code: &str) -> &str {
    LANG_PAIRS
        .iter()
        .find(|(_, short)| *short == code)
        .map_or(code, |(long, _)| long)
}

enum Kind {
    /// Pieces from a SentencePiece model, numbered by `vocab.json`.
    Pieces {
        spm: Tokenizer,
        vocab: HashMap<String, u32>,
        /// id ⇒ piece, for decoding.
        pieces: HashMap<u32, String>,
        /// M2M100's `__en__` before the pieces; `None` for Marian.
        prefix: Option<u32>,
    },
    Nllb(HfTokenizer),
}

/// A translation model's tokenizer.
pub struct MtTokenizer {
    kind: Kind,
    pub family: &'static str,
    pub eos: i64,
    pub pad: i64,
    unk: i64,
    /// Language code ⇒ the token id that selects it (M2M100 `hi` ⇒ `__hi__`, NLLB `hin_Deva`,
    /// Marian `>>hin<<` codes).
    langs: HashMap<String, i64>,
    /// Ids never shown in decoded text.
    specials: Vec<i64>,
}

impl std::fmt::Debug for MtTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtTokenizer")
            .field("family", &self.family)
            .finish()
    }
}

fn read_vocab(path: &Path) -> Result<HashMap<String, u32>> {
    let text = crate::input::read_text(path, crate::input::TEXT, "a vocabulary")?;
    let v: HashMap<String, u32> = serde_json::from_str(&text).map_err(|e| {
        Error::invalid(format!(
            "{}: not a token ⇒ id JSON object ({})",
            path.display(),
            crate::input::one_line(e)
        ))
    })?;
    Ok(v)
}

fn spm_tokenizer(path: &Path) -> Result<Tokenizer> {
    SpmModel::read(path)?
        .tokenizer()
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
}

fn need(vocab: &HashMap<String, u32>, tok: &str, path: &Path) -> Result<i64> {
    vocab
        .get(tok)
        .map(|&i| i as i64)
        .ok_or_else(|| Error::invalid(format!("{}: has no `{tok}` token", path.display())))
}

impl MtTokenizer {
    /// The tokenizer of a Marian, M2M100 or NLLB folder, chosen by the files it holds.
    pub fn load(dir: &Path) -> Result<MtTokenizer> {
        if dir.join("source.spm").is_file() {
            Self::marian(dir)
        } else if dir.join("sentencepiece.bpe.model").is_file() && dir.join("vocab.json").is_file()
        {
            Self::m2m100(dir)
        } else if dir.join("tokenizer.json").is_file() {
            Self::nllb(dir)
        } else {
            Err(Error::invalid(format!(
                "{}: no source.spm (Marian), sentencepiece.bpe.model + vocab.json (M2M100) or \
                 tokenizer.json (NLLB) — not a translation model folder",
                dir.display()
            )))
        }
    }

    fn marian(dir: &Path) -> Result<MtTokenizer> {
        let vpath = dir.join("vocab.json");
        let vocab = read_vocab(&vpath)?;
        let (eos, pad, unk) = (
            need(&vocab, "</s>", &vpath)?,
            need(&vocab, "<pad>", &vpath)?,
            need(&vocab, "<unk>", &vpath)?,
        );
        let langs = vocab
            .iter()
            .filter(|(k, _)| k.starts_with(">>") && k.ends_with("<<") && k.len() > 4)
            .map(|(k, &v)| (k[2..k.len() - 2].to_string(), v as i64))
            .collect();
        let pieces = vocab.iter().map(|(k, &v)| (v, k.clone())).collect();
        Ok(MtTokenizer {
            kind: Kind::Pieces {
                spm: spm_tokenizer(&dir.join("source.spm"))?,
                vocab,
                pieces,
                prefix: None,
            },
            family: "Marian",
            eos,
            pad,
            unk,
            langs,
            specials: vec![eos, pad, unk],
        })
    }

    fn m2m100(dir: &Path) -> Result<MtTokenizer> {
        let vpath = dir.join("vocab.json");
        let vocab = read_vocab(&vpath)?;
        let size = vocab.len() as i64;
        let (eos, pad, unk, bos) = (
            need(&vocab, "</s>", &vpath)?,
            need(&vocab, "<pad>", &vpath)?,
            need(&vocab, "<unk>", &vpath)?,
            need(&vocab, "<s>", &vpath)?,
        );
        let config = std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap_or_default();
        let config: serde_json::Value = serde_json::from_str(&config).unwrap_or_default();
        let codes = match config["language_codes"].as_str() {
            Some("wmt21") => WMT21_LANGS,
            _ => M2M100_LANGS,
        };
        let langs: HashMap<String, i64> = codes
            .split_whitespace()
            .enumerate()
            .map(|(i, c)| (c.to_string(), size + i as i64))
            .collect();
        let src = config["src_lang"].as_str().unwrap_or("en");
        let prefix = langs.get(src).or(langs.get("en")).map(|&i| i as u32);
        let mut pieces: HashMap<u32, String> = vocab.iter().map(|(k, &v)| (v, k.clone())).collect();
        for (c, &i) in &langs {
            pieces.insert(i as u32, format!("__{c}__"));
        }
        let mut specials = vec![eos, pad, unk, bos];
        specials.extend(langs.values());
        Ok(MtTokenizer {
            kind: Kind::Pieces {
                spm: spm_tokenizer(&dir.join("sentencepiece.bpe.model"))?,
                vocab,
                pieces,
                prefix,
            },
            family: "M2M100",
            eos,
            pad,
            unk,
            langs,
            specials,
        })
    }

    fn nllb(dir: &Path) -> Result<MtTokenizer> {
        let hf = HfTokenizer::load(dir, Family::Any)?;
        let id = |t: &str| hf.token_id(t).map(|i| i as i64);
        let bad = |t: &str| Error::invalid(format!("{}: has no `{t}` token", dir.display()));
        let eos = id("</s>").ok_or_else(|| bad("</s>"))?;
        let pad = id("<pad>").ok_or_else(|| bad("<pad>"))?;
        let unk = id("<unk>").ok_or_else(|| bad("<unk>"))?;
        // Language tokens look like `hin_Deva`: three letters, `_`, a four-letter script.
        let is_code = |t: &str| {
            let b = t.as_bytes();
            b.len() == 8 && b[3] == b'_' && b[..3].iter().all(u8::is_ascii_lowercase)
        };
        let langs: HashMap<String, i64> = (0..hf.vocab_size() as u32)
            .filter_map(|i| {
                let t = hf.id_to_token(i)?;
                is_code(&t).then_some((t, i as i64))
            })
            .collect();
        let mut specials = vec![eos, pad, unk];
        specials.extend(id("<s>"));
        specials.extend(langs.values());
        Ok(MtTokenizer {
            kind: Kind::Nllb(hf),
            family: "NLLB",
            eos,
            pad,
            unk,
            langs,
            specials,
        })
    }

    /// The id of the token that selects language `code` (`hin_Deva` or `hi` for either
    /// family), if the folder has one.
    pub fn lang_id(&self, code: &str) -> Option<i64> {
        let candidates = [code, short_lang(code), long_lang(code)];
        candidates.iter().find_map(|c| self.langs.get(*c).copied())
    }

    /// Whether the folder selects target languages by a token (M2M100, NLLB, multilingual
    /// Marian).
    pub fn has_langs(&self) -> bool {
        !self.langs.is_empty()
    }

    /// What `tokenizer(text)["input_ids"]` gives. `marian_lang`: a Marian `>>xxx<<` target
    /// token put in front (multilingual opus-mt models).
    pub fn encode(&self, text: &str, marian_lang: Option<i64>) -> Vec<i64> {
        match &self.kind {
            Kind::Nllb(hf) => hf.encode(text).into_iter().map(i64::from).collect(),
            Kind::Pieces {
                spm, vocab, prefix, ..
            } => {
                let mut ids: Vec<i64> = prefix.iter().map(|&p| p as i64).collect();
                ids.extend(marian_lang);
                let mut text = text;
                if prefix.is_none() && text.starts_with(">>") {
                    if let Some(end) = text.find("<<") {
                        let code = &text[..end + 2];
                        ids.push(vocab.get(code).map_or(self.unk, |&i| i as i64));
                        text = &text[end + 2..];
                    }
                }
                let enc = spm.encode(text, false).map(|e| e.get_tokens().to_vec());
                for piece in enc.unwrap_or_default() {
                    ids.push(vocab.get(&piece).map_or(self.unk, |&i| i as i64));
                }
                ids.push(self.eos);
                ids
            }
        }
    }

    /// The token of one id (`__hi__`, `hin_Deva`, a piece).
    pub fn decode_raw(&self, id: i64) -> Option<String> {
        match &self.kind {
            Kind::Nllb(hf) => hf.id_to_token(u32::try_from(id).ok()?),
            Kind::Pieces { pieces, .. } => pieces.get(&u32::try_from(id).ok()?).cloned(),
        }
    }

    /// Generated ids back to text, special and language tokens dropped.
    pub fn decode(&self, ids: &[i64]) -> String {
        let kept: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|i| !self.specials.contains(i) && *i >= 0)
            .collect();
        match &self.kind {
            Kind::Nllb(hf) => {
                let ids: Vec<u32> = kept.iter().map(|&i| i as u32).collect();
                hf.decode(&ids, true).trim().to_string()
            }
            Kind::Pieces { pieces, .. } => {
                let ps: Vec<&str> = kept
                    .iter()
                    .filter_map(|&i| pieces.get(&(i as u32)).map(String::as_str))
                    .collect();
                pieces_to_text(&ps)
            }
        }
    }
}

#[cfg(test)]
#[path = "mt_tokenizer_tests.rs"]
pub(crate) mod fixture_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_codes_map_both_ways() {
        assert_eq!(short_lang("hin_Deva"), "hi");
        assert_eq!(long_lang("ta"), "tam_Taml");
        assert_eq!(short_lang("xyz"), "xyz");
        assert_eq!(M2M100_LANGS.split_whitespace().count(), 100);
        assert_eq!(
            M2M100_LANGS.split_whitespace().position(|c| c == "hi"),
            Some(32)
        );
    }
}
