//! The social post an instruction-tuned LLM writes for a captioned photo (`caption --llm`,
//! `serve --llm`, docs/llm.md): captag's caption, moods and hashtags go into the prompt in the
//! words the training pairs use (`data::llm_pairs::prompt_from_photo`), so a LoRA adapter
//! trained on `captag llm pairs` sees the prompts it learnt from. `llm pairs --captioner`
//! builds its image-recipe prompts here too ([`photo_prompts`]), through the same
//! [`CaptionResult`] and [`prompt`] as `caption --llm`, so the two cannot drift apart.
use std::path::PathBuf;

use super::moods::MoodRanker;
use super::{CaptionResult, Extras, Loaded};
use crate::model::decoding::Decoding;
use crate::model::llama::chat::ChatLm;
use crate::Result;

/// New tokens the post may take: an Instagram caption, not an essay (and a bounded wait for
/// the web page).
pub const MAX_NEW_TOKENS: usize = 96;

/// Images captioned per [`Loaded::caption_files`] call by [`photo_prompts`]: the encoder
/// batches 32 at a time inside; this bounds the features held at once.
pub const PHOTO_CHUNK: usize = 256;

/// The prompt for one result: its caption, its moods and its hashtags.
pub fn prompt(r: &CaptionResult) -> String {
    let moods: Vec<String> = r.moods.iter().flatten().map(|m| m.label.clone()).collect();
    let tags: Vec<String> = r.hashtags.iter().map(|t| t.tag.clone()).collect();
    crate::data::llm_pairs::prompt_from_photo(r.caption_text(), &moods, &tags)
}

/// The post for one result (greedy, at most [`MAX_NEW_TOKENS`] new tokens), trimmed.
pub fn social_post(lm: &ChatLm, r: &CaptionResult) -> Result<String> {
    let ids = lm.prompt_ids(Some(crate::data::llm_pairs::SYSTEM), &prompt(r), false)?;
    let h = lm.generate(
        &ids,
        &Decoding::Greedy {
            max_len: MAX_NEW_TOKENS,
        },
        |_| {},
    )?;
    Ok(lm.decode(&h.tokens).trim().to_string())
}

/// CLIP moods for [`photo_prompts`]: the ranker and how many labels (`caption --top-moods`).
pub struct Moods<'a> {
    pub ranker: &'a MoodRanker,
    pub top: usize,
}

/// The image-recipe prompt of every picture, as `caption RUN IMAGE [--moods --clip] --llm`
/// builds it with the default hashtag flags (image-model hashtags only, no text tagger):
/// `Err(why)` for a picture that cannot be read. Captioned [`PHOTO_CHUNK`] files per call;
/// `done(n)` is told after each chunk how many pictures are done.
pub fn photo_prompts(
    loaded: &Loaded,
    decoding: &Decoding,
    moods: Option<&Moods>,
    paths: &[PathBuf],
    mut done: impl FnMut(usize),
) -> Result<Vec<std::result::Result<String, String>>> {
    let tags_only = loaded.run.model.hashtags.as_ref().is_some_and(|t| t.only);
    let extras = Extras {
        text_tags: None,
        emoji: None,
        hashtags: crate::config::defaults::HASHTAGS_SHOWN,
        emoji_count: crate::config::defaults::EMOJI_SHOWN,
    };
    let mut out = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(PHOTO_CHUNK) {
        for c in loaded.caption_files(chunk, decoding)? {
            let caption = match c.caption {
                Ok(caption) => caption,
                Err(why) => {
                    out.push(Err(why));
                    continue;
                }
            };
            let mut r = CaptionResult::new(&caption, tags_only, &extras);
            if let Some(m) = moods {
                match m.ranker.rank(&c.path, m.top) {
                    Ok(ranked) => r.moods = Some(ranked),
                    Err(e) => {
                        out.push(Err(e.to_string()));
                        continue;
                    }
                }
            }
            out.push(Ok(prompt(&r)));
        }
        done(out.len());
    }
    Ok(out)
}
