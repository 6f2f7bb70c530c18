//! Hugging Face tokenizers through the `tokenizers` crate — the library `transformers` itself
//! runs — so a user's folder gives the ids its weights were trained with: byte-level BPE (GPT-2,
//! CLIP, Llama 3, Qwen2), WordPiece (BERT, BLIP, GIT) and Unigram/SentencePiece (Marian, NLLB,
//! T5) from `tokenizer.json`. Folders that ship only the older files get the `tokenizer.json`
//! that `transformers`' converters (`convert_slow_tokenizer.py`) would build from them:
//! `vocab.json` + `merges.txt` for GPT-2 (`GPT2Converter`) and CLIP (`CLIPConverter`),
//! `vocab.txt` for BERT (`BertConverter`, `do_lower_case` from `tokenizer_config.json`).
//!
//! SentencePiece `.model`/`.spm` files without `tokenizer.json` (Marian, M2M100) are read by
//! `text::spm`, which builds the same kind of `tokenizer.json` from the protobuf.
//!
//! Parity: `tests/fixtures/hf/tokenizer_cases.json`, written by `notebooks/make_hf_fixtures.py`
//! (docs/ARCHITECTURE.md, "CLIP and GPT-2 on Hugging Face folders").
use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use tokenizers::Tokenizer;

use crate::{Error, Result};

const END_OF_TEXT: &str = "<|endoftext|>";
const START_OF_TEXT: &str = "<|startoftext|>";

/// Which tokenizer a model expects; the folder's `tokenizer.json` is checked against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Byte-level BPE, no prefix space, `<|endoftext|>`.
    Gpt2,
    /// Byte-level BPE with `</w>` word ends, `<|startoftext|> … <|endoftext|>`.
    Clip,
    /// WordPiece, `[CLS] … [SEP]`.
    Bert,
    /// Whatever `tokenizer.json` holds (Unigram, BPE, WordPiece); the end token is the config's
    /// `eos_token`, `</s>`, `<|endoftext|>` or `[SEP]`.
    Any,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Gpt2 => "GPT-2",
            Family::Clip => "CLIP",
            Family::Bert => "BERT",
            Family::Any => "Hugging Face",
        }
    }
}

/// A tokenizer read from a Hugging Face folder.
pub struct HfTokenizer {
    family: Family,
    inner: Tokenizer,
    bos: Option<u32>,
    eos: u32,
    vocab_size: usize,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("family", &self.family)
            .field("vocab_size", &self.vocab_size)
            .finish()
    }
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
        let bad = |why: String| Error::invalid(format!("{}: {why}", dir.display()));
        let json = tokenizer_json(dir, family)?;
        check_family(&json, family).map_err(bad)?;
        let text = json.to_string();
        let mut inner: Tokenizer = text.parse().map_err(|e| {
            bad(format!(
                "not a tokenizer the `tokenizers` library reads ({e})"
            ))
        })?;
        // `transformers` sets truncation and padding per call (none by default).
        inner
            .with_truncation(None)
            .map_err(|e| bad(format!("tokenizer truncation ({e})")))?;
        inner.with_padding(None);
        let id = |t: &str| inner.token_to_id(t);
        let need = |t: &str| id(t).ok_or_else(|| bad(format!("the vocabulary has no `{t}` token")));
        let (bos, eos) = match family {
            Family::Gpt2 => (None, need(END_OF_TEXT)?),
            Family::Clip => (Some(need(START_OF_TEXT)?), need(END_OF_TEXT)?),
            Family::Bert => (Some(need("[CLS]")?), need("[SEP]")?),
            Family::Any => {
                let config = special_tokens(dir);
                let named = |k: &str| config.get(k).and_then(|t| id(t));
                let eos = named("eos_token")
                    .or_else(|| {
                        ["</s>", END_OF_TEXT, "<eos>", "[SEP]"]
                            .iter()
                            .find_map(|t| id(t))
                    })
                    .ok_or_else(|| bad("the tokenizer names no end-of-sequence token".into()))?;
                (named("bos_token"), eos)
            }
        };
        let vocab_size = inner
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&m| m as usize + 1);
        Ok(HfTokenizer {
            family,
            inner,
            bos,
            eos,
            vocab_size,
        })
    }

    pub fn family(&self) -> Family {
        self.family
    }

    /// One more than the largest token id.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The end token: `<|endoftext|>` (GPT-2, CLIP), `[SEP]` (BERT), `</s>` (SentencePiece).
    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// The start token: `<|startoftext|>` (CLIP), `[CLS]` (BERT), the config's `bos_token`.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// The id of a token, added tokens included.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token of an id, added tokens included.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// What `tokenizer(text)["input_ids"]` gives: the folder's post-processor adds its start/end
    /// tokens (CLIP's, BERT's; none for GPT-2).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.ids(text, true)
    }

    /// The ids of `text` without the added start/end tokens.
    pub fn encode_plain(&self, text: &str) -> Vec<u32> {
        self.ids(text, false)
    }

    fn ids(&self, text: &str, specials: bool) -> Vec<u32> {
        // Encoding fails only on truncation/padding settings, which `load` switched off.
        self.inner
            .encode(text, specials)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    }

    /// Token ids back to text through the folder's decoder; CLIP's `</w>` become spaces and the
    /// ends are trimmed, as `transformers` decodes. Special tokens are dropped when
    /// `skip_special`. Ids outside the vocabulary are dropped.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let kept: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&i| (i as usize) < self.vocab_size)
            .collect();
        let text = self.inner.decode(&kept, skip_special).unwrap_or_default();
        match self.family {
            Family::Clip => text.replace("</w>", " ").trim().to_string(),
            _ => text,
        }
    }
}

/// `dir/tokenizer.json`, or the one `transformers`' converter builds from the older files.
fn tokenizer_json(dir: &Path, family: Family) -> Result<Value> {
    let read_json = |name: &str, what: &str| -> Result<Value> {
        let path = dir.join(name);
        let text = crate::input::read_text(&path, crate::input::TEXT, what)?;
        serde_json::from_str(&text)
            .map_err(|e| Error::invalid(format!("{}: not valid JSON ({e})", path.display())))
    };
    if dir.join("tokenizer.json").is_file() {
        return read_json("tokenizer.json", "a tokenizer");
    }
    let two_files = dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file();
    if two_files && matches!(family, Family::Gpt2 | Family::Clip) {
        let vocab = read_json("vocab.json", "a vocabulary")?;
        if !vocab.is_object() {
            return Err(Error::invalid(format!(
                "{}: not a token ⇒ id JSON object",
                dir.join("vocab.json").display()
            )));
        }
        let merges = read_merges(&dir.join("merges.txt"))?;
        return Ok(match family {
            Family::Clip => clip_json(vocab, merges),
            _ => gpt2_json(vocab, merges),
        });
    }
    if dir.join("vocab.txt").is_file() && matches!(family, Family::Bert | Family::Any) {
        let path = dir.join("vocab.txt");
        let text = crate::input::read_text(&path, crate::input::TEXT, "a vocabulary")?;
        let lower = special_tokens(dir)
            .get("do_lower_case")
            .is_none_or(|v| v != "false");
        return Ok(bert_json(&text, lower));
    }
    Err(Error::invalid(format!(
        "{}: no tokenizer.json, and no {} — not a Hugging Face tokenizer folder",
        dir.display(),
        match family {
            Family::Gpt2 | Family::Clip => "vocab.json + merges.txt",
            _ => "vocab.txt",
        }
    )))
}

/// `merges.txt`: a `#version` line, then one `a b` pair per line.
fn read_merges(path: &Path) -> Result<Vec<Value>> {
    let text = crate::input::read_text(path, crate::input::TEXT, "a merges list")?;
    let mut merges = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if (i == 0 && line.starts_with("#version")) || line.is_empty() {
            continue;
        }
        let (a, b) = line
            .split_once(' ')
            .filter(|(_, b)| !b.contains(' '))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{}:{}: a merge is two symbols separated by one space",
                    path.display(),
                    i + 1
                ))
            })?;
        merges.push(json!([a, b]));
    }
    Ok(merges)
}

/// `tokenizer_config.json`'s string fields (special token names, `do_lower_case`); empty when
/// the file is absent or unreadable (it only refines the defaults).
fn special_tokens(dir: &Path) -> BTreeMap<String, String> {
    let path = dir.join("tokenizer_config.json");
    let Ok(text) = crate::input::read_text(&path, crate::input::TEXT, "a tokenizer config") else {
        return BTreeMap::new();
    };
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let mut out = BTreeMap::new();
    for (k, x) in v.as_object().into_iter().flatten() {
        let s = match x {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            // `{"content": "</s>", ...}` (AddedToken as transformers saves it).
            Value::Object(o) => match o.get("content").and_then(Value::as_str) {
                Some(s) => s.to_string(),
                None => continue,
            },
            _ => continue,
        };
        out.insert(k.clone(), s);
    }
    out
}

fn added(id: &Value, content: &str) -> Value {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false,
           "rstrip": false, "normalized": false, "special": true})
}

fn byte_level() -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})
}

/// `GPT2Converter`: byte-level BPE, no normaliser, `<|endoftext|>` as an added special token.
fn gpt2_json(vocab: Value, merges: Vec<Value>) -> Value {
    let eos = vocab.get(END_OF_TEXT).cloned();
    json!({
        "version": "1.0",
        "added_tokens": eos.map(|id| vec![added(&id, END_OF_TEXT)]).unwrap_or_default(),
        "normalizer": null,
        "pre_tokenizer": byte_level(),
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false,
                           "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": false,
                  "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges}
    })
}

/// `CLIPConverter`: NFC, whitespace runs to one space, lower case; CLIP's split regex, then
/// byte-level; `</w>` word ends; `<|startoftext|> … <|endoftext|>` around every text.
fn clip_json(vocab: Value, merges: Vec<Value>) -> Value {
    let id = |t: &str| vocab.get(t).cloned().unwrap_or(Value::Null);
    let (bos, eos) = (id(START_OF_TEXT), id(END_OF_TEXT));
    let added_tokens: Vec<Value> = [(&bos, START_OF_TEXT), (&eos, END_OF_TEXT)]
        .into_iter()
        .filter(|(i, _)| !i.is_null())
        .map(|(i, t)| added(i, t))
        .collect();
    json!({
        "version": "1.0",
        "added_tokens": added_tokens,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex":
                "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"},
             "behavior": "Removed", "invert": true},
            byte_level()]},
        "post_processor": {"type": "RobertaProcessing", "sep": [END_OF_TEXT, eos],
                           "cls": [START_OF_TEXT, bos], "trim_offsets": false,
                           "add_prefix_space": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": END_OF_TEXT,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "</w>",
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    })
}

/// `BertConverter`: BERT's normaliser and pre-tokenizer, WordPiece with `##` continuations,
/// `[CLS] $A [SEP]`.
fn bert_json(vocab_txt: &str, lowercase: bool) -> Value {
    let vocab: serde_json::Map<String, Value> = vocab_txt
        .lines()
        .enumerate()
        .map(|(i, t)| (t.trim_end_matches('\r').to_string(), json!(i)))
        .collect();
    let id = |t: &str| vocab.get(t).cloned().unwrap_or(Value::Null);
    let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    let added_tokens: Vec<Value> = specials
        .iter()
        .filter(|t| vocab.contains_key(**t))
        .map(|t| added(&id(t), t))
        .collect();
    let special = |t: &str| json!({"id": t, "ids": [id(t)], "tokens": [t]});
    let tok = |t: &str, type_id: u32| json!({"SpecialToken": {"id": t, "type_id": type_id}});
    let seq = |s: &str, type_id: u32| json!({"Sequence": {"id": s, "type_id": type_id}});
    json!({
        "version": "1.0",
        "added_tokens": added_tokens,
        "normalizer": {"type": "BertNormalizer", "clean_text": true,
                       "handle_chinese_chars": true, "strip_accents": null,
                       "lowercase": lowercase},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [tok("[CLS]", 0), seq("A", 0), tok("[SEP]", 0)],
            "pair": [tok("[CLS]", 0), seq("A", 0), tok("[SEP]", 0), seq("B", 1), tok("[SEP]", 1)],
            "special_tokens": {"[CLS]": special("[CLS]"), "[SEP]": special("[SEP]")}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    })
}

/// The model type and word-end conventions a family's weights were trained with.
fn check_family(json: &Value, family: Family) -> std::result::Result<(), String> {
    let model = &json["model"];
    let kind = model["type"].as_str().unwrap_or("BPE");
    let suffix = model["end_of_word_suffix"].as_str().unwrap_or("");
    let want = match family {
        Family::Gpt2 | Family::Clip => "BPE",
        Family::Bert => "WordPiece",
        Family::Any => return Ok(()),
    };
    if kind != want {
        return Err(format!(
            "the tokenizer model is {kind}, a {} tokenizer is {want}",
            family.name()
        ));
    }
    let want_suffix = if family == Family::Clip { "</w>" } else { "" };
    if matches!(family, Family::Gpt2 | Family::Clip) && suffix != want_suffix {
        return Err(format!(
            "the tokenizer's end-of-word suffix is {suffix:?}, a {} tokenizer has {want_suffix:?}",
            family.name()
        ));
    }
    if family == Family::Gpt2
        && json_has(
            &json["pre_tokenizer"],
            "add_prefix_space",
            &Value::Bool(true),
        )
    {
        return Err("the pre-tokenizer adds a prefix space, which GPT-2's does not".into());
    }
    Ok(())
}

/// Whether `key: want` appears anywhere inside `v`.
fn json_has(v: &Value, key: &str, want: &Value) -> bool {
    match v {
        Value::Object(m) => m.get(key) == Some(want) || m.values().any(|x| json_has(x, key, want)),
        Value::Array(a) => a.iter().any(|x| json_has(x, key, want)),
        _ => false,
    }
}

#[cfg(test)]
#[path = "hf_tokenizer_tests.rs"]
mod tests;
