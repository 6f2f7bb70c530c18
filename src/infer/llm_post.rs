//! The social post an instruction-tuned LLM writes for a captioned photo (`caption --llm`,
//! `serve --llm`, docs/llm.md): captag's caption, moods and hashtags go into the prompt in the
//! words the training pairs use (`data::llm_pairs::prompt_from_photo`), so a LoRA adapter
//! trained on `captag llm pairs` sees the prompts it learnt from.
use super::CaptionResult;
use crate::model::decoding::Decoding;
use crate::model::llama::chat::ChatLm;
use crate::Result;

/// New tokens the post may take: an Instagram caption, not an essay (and a bounded wait for
/// the web page).
pub const MAX_NEW_TOKENS: usize = 96;

/// The post for one result (greedy, at most [`MAX_NEW_TOKENS`] new tokens), trimmed.
pub fn social_post(lm: &ChatLm, r: &CaptionResult) -> Result<String> {
    let moods: Vec<String> = r.moods.iter().flatten().map(|m| m.label.clone()).collect();
    let tags: Vec<String> = r.hashtags.iter().map(|t| t.tag.clone()).collect();
    let prompt = crate::data::llm_pairs::prompt_from_photo(r.caption_text(), &moods, &tags);
    let ids = lm.prompt_ids(Some(crate::data::llm_pairs::SYSTEM), &prompt, false)?;
    let h = lm.generate(
        &ids,
        &Decoding::Greedy {
            max_len: MAX_NEW_TOKENS,
        },
        |_| {},
    )?;
    Ok(lm.decode(&h.tokens).trim().to_string())
}
