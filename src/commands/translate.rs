//! `captag translate --model HF_DIR [--lang L] [--beam K] TEXT…` (standard input's lines when
//! no TEXT): one translation per line, or one JSON object per text with `--json` (its hashtags
//! in both languages). docs/translation.md.
use std::io::BufRead;

use anyhow::{bail, Context};

use super::out::outln;
use super::Ctx;
use crate::cli::TranslateArgs;
use crate::infer::translate::translate_all;
use crate::model::seq2seq::translator::{TranslateOptions, Translator};

pub fn options(
    lang: Option<&str>,
    beam: Option<usize>,
    max_len: Option<usize>,
) -> anyhow::Result<TranslateOptions> {
    if beam == Some(0) {
        bail!("--beam must be ≥ 1");
    }
    if max_len == Some(0) {
        bail!("--max-len must be ≥ 1");
    }
    Ok(TranslateOptions {
        lang: lang.map(str::to_string),
        beams: beam,
        max_new: max_len,
    })
}

pub fn translate(ctx: &Ctx, a: &TranslateArgs) -> anyhow::Result<()> {
    let opts = options(a.lang.as_deref(), a.beam, a.max_len)?;
    if a.batch_size == 0 {
        bail!("--batch-size must be ≥ 1");
    }
    let t = Translator::load(&a.model, ctx.device)?;
    // The language is checked before any text is read.
    t.settings(&opts)?;
    let texts: Vec<String> = if a.texts.is_empty() {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<Result<_, _>>()
            .context("reading standard input")?
    } else {
        a.texts.clone()
    };
    for chunk in texts.chunks(a.batch_size) {
        let tags: Vec<Vec<String>> = chunk
            .iter()
            .map(|s| crate::text::extract_tags(s).hashtags)
            .collect();
        let done = translate_all(&t, chunk, &tags, &opts)?;
        for ((text, tags), tr) in chunk.iter().zip(&tags).zip(done) {
            if a.json {
                let v = serde_json::json!({
                    "text": text, "lang": tr.lang, "translation": tr.text,
                    "hashtags": tags, "regional_hashtags": tr.hashtags,
                    "untranslated_hashtags": tr.untranslated_hashtags,
                });
                outln!("{v}")?;
            } else {
                outln!("{}", tr.text)?;
            }
        }
    }
    Ok(())
}
