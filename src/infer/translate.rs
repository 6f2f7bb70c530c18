//! Captions and hashtags in another language (docs/translation.md): a caption's text through a
//! Hugging Face translation folder ([`Translator`]), and its hashtags word by word — each tag's
//! words (`#beachlife` → "beach life") translated as a short input, the result joined into one
//! tag. A tag whose translation is not in the target language's script (or came back as the
//! English word) is left out and counted, never shown as a regional tag.
use serde::Serialize;

use crate::model::seq2seq::translator::{TranslateOptions, Translator};
use crate::text::mt_tokenizer::long_lang;
use crate::Result;

/// One text's translation (`translate --json`, `caption --translate --json`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Translation {
    /// The target language as asked (`hin_Deva`) or as the folder names it.
    pub lang: String,
    pub text: String,
    /// The hashtags in the target language, beside the English ones; English tags that did not
    /// translate into the target script are left out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hashtags: Vec<String>,
    /// English tags left out (no translation in the target script).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub untranslated_hashtags: Vec<String>,
}

/// The script of a language code (`hin_Deva` → `Deva`; `hi` via its NLLB code).
fn script(lang: &str) -> Option<&str> {
    let long = long_lang(lang);
    let (_, s) = long.split_once('_')?;
    (s.len() == 4).then_some(s)
}

/// The words of a tag: `beach_life` / `beachLife` / `beach-life` ⇒ "beach life".
pub fn tag_words(tag: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in tag.trim_start_matches('#').chars() {
        if c == '_' || c == '-' {
            out.push(' ');
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower {
            out.push(' ');
        }
        prev_lower = c.is_lowercase();
        out.push(c);
    }
    out.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// A translation made into one tag: words joined by `_`, punctuation and emoji dropped, the
/// combining marks of Indic scripts kept.
pub fn as_tag(text: &str) -> String {
    let keep = |c: char| {
        if c.is_ascii() {
            return c.is_ascii_alphanumeric();
        }
        let u = c as u32;
        let punct = matches!(
            c,
            '।' | '॥' | '«' | '»' | '“' | '”' | '‘' | '’' | '…' | '،' | '۔'
        ) || (0x2000..=0x206F).contains(&u)
            || (0x2190..=0x2BFF).contains(&u)
            || u >= 0x1F000
            || (0xFE00..=0xFE0F).contains(&u);
        !punct && !c.is_whitespace()
    };
    text.split_whitespace()
        .map(|w| w.chars().filter(|&c| keep(c)).collect::<String>())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

/// The Unicode blocks of the scripts of India's languages (and Urdu's Arabic).
fn script_blocks(script: &str) -> Option<&'static [(u32, u32)]> {
    Some(match script {
        "Deva" => &[(0x0900, 0x097F), (0xA8E0, 0xA8FF)],
        "Beng" => &[(0x0980, 0x09FF)],
        "Guru" => &[(0x0A00, 0x0A7F)],
        "Gujr" => &[(0x0A80, 0x0AFF)],
        "Orya" => &[(0x0B00, 0x0B7F)],
        "Taml" => &[(0x0B80, 0x0BFF)],
        "Telu" => &[(0x0C00, 0x0C7F)],
        "Knda" => &[(0x0C80, 0x0CFF)],
        "Mlym" => &[(0x0D00, 0x0D7F)],
        "Sinh" => &[(0x0D80, 0x0DFF)],
        "Arab" => &[
            (0x0600, 0x06FF),
            (0x0750, 0x077F),
            (0xFB50, 0xFDFF),
            (0xFE70, 0xFEFF),
        ],
        _ => return None,
    })
}

/// Whether `tag` is a translation into `lang` and not the English word: for the scripts of
/// India's languages every letter must be in that script's Unicode block (a Devanagari tag is
/// never labelled Bengali); in another non-Latin script no letter may be ASCII; in a Latin
/// script (or an unknown language) it must differ from the English words.
pub fn is_translated(tag: &str, english: &str, lang: &str) -> bool {
    if tag.is_empty() {
        return false;
    }
    let letters = || tag.chars().filter(|c| *c != '_' && !c.is_ascii_digit());
    match script(lang) {
        Some(s) if s != "Latn" => match script_blocks(s) {
            Some(blocks) => {
                letters().all(|c| blocks.iter().any(|&(a, b)| (a..=b).contains(&(c as u32))))
            }
            None => !tag.chars().any(|c| c.is_ascii_alphabetic()),
        },
        _ => tag.to_lowercase().replace('_', " ") != english.to_lowercase(),
    }
}

/// Translations of `texts` with their hashtags (`tags[i]` are text `i`'s English tags, without
/// `#`). Texts go in one batch, the distinct tags in a second.
pub fn translate_all(
    t: &Translator,
    texts: &[String],
    tags: &[Vec<String>],
    opts: &TranslateOptions,
) -> Result<Vec<Translation>> {
    let (out, lang) = t.translate(texts, opts)?;
    let mut distinct: Vec<String> = tags.iter().flatten().cloned().collect();
    distinct.sort();
    distinct.dedup();
    let words: Vec<String> = distinct.iter().map(|t| tag_words(t)).collect();
    let tag_opts = TranslateOptions {
        max_new: Some(opts.max_new.unwrap_or(16).min(16)),
        ..opts.clone()
    };
    let translated = if words.is_empty() {
        vec![]
    } else {
        t.translate(&words, &tag_opts)?.0
    };
    let regional: std::collections::HashMap<&str, Option<String>> = distinct
        .iter()
        .zip(&words)
        .zip(&translated)
        .map(|((tag, w), tr)| {
            let t = as_tag(tr);
            (tag.as_str(), is_translated(&t, w, &lang).then_some(t))
        })
        .collect();
    Ok(out
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let mut r = Translation {
                lang: lang.clone(),
                text,
                hashtags: vec![],
                untranslated_hashtags: vec![],
            };
            for tag in tags.get(i).into_iter().flatten() {
                match regional.get(tag.as_str()).cloned().flatten() {
                    Some(t) if !r.hashtags.contains(&t) => r.hashtags.push(t),
                    Some(_) => {}
                    None => r.untranslated_hashtags.push(tag.clone()),
                }
            }
            r
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_words_split_joined_tags() {
        assert_eq!(tag_words("#beach_life"), "beach life");
        assert_eq!(tag_words("BeachLife"), "beach life");
        assert_eq!(tag_words("sunset"), "sunset");
    }

    #[test]
    fn translations_become_one_tag_in_the_target_script() {
        assert_eq!(as_tag("सूर्य अस्त।"), "सूर्य_अस्त");
        assert_eq!(as_tag("समुद्र तट 🌅!"), "समुद्र_तट");
        // Devanagari vowel signs (combining marks) stay.
        assert_eq!(as_tag("दोस्ती"), "दोस्ती");
        assert!(is_translated("सूर्यास्त", "sunset", "hin_Deva"));
        assert!(is_translated("সূর্যাস্ত", "sunset", "bn"));
        // An English word is never a Hindi tag, nor a mixed one.
        assert!(!is_translated("sunset", "sunset", "hin_Deva"));
        assert!(!is_translated("sunsetकल", "sunset", "hi"));
        // A Devanagari word is not a Bengali or Tamil tag.
        assert!(!is_translated("सूर्यास्त", "sunset", "ben_Beng"));
        assert!(!is_translated("सूर्यास्त", "sunset", "ta"));
        assert!(is_translated("சூரியன்", "sunset", "tam_Taml"));
        assert!(!is_translated("", "sunset", "fra_Latn"));
        assert!(!is_translated("Sunset", "sunset", "fra_Latn"));
        assert!(is_translated("coucher_de_soleil", "sunset", "fra_Latn"));
    }
}
