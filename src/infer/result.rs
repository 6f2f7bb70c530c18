//! One image's caption result as JSON: `caption --json` prints it and `POST /api/caption`
//! answers it, from this one type, so the command line and the web API cannot drift apart.
//! Fields that do not apply are left out (no `emoji` without an emoji model, no `image_sha256`
//! outside the server).
use serde::Serialize;

use super::moods::Mood;
use super::tags::TagScore;
use super::{Alternative, Caption};
use crate::model::text_tagger::TextTagger;

#[derive(Clone, Debug, Default, Serialize)]
pub struct CaptionResult {
    /// The input file (`caption --json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The best caption (left out for hashtag-only runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logp: Option<f64>,
    /// The n-best list (beam search) or the distinct samples (top-p), most probable first: the
    /// first is `caption`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<Alternative>,
    /// `caption --restore`: the caption of the photo before restoration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unrestored_caption: Option<String>,
    /// Attention decoders: per word (and `<end>`), its weights over the grid cells.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention: Option<Vec<Vec<f32>>>,
    /// Image-model tags first, then caption-text tags (`model` says which).
    pub hashtags: Vec<TagScore>,
    /// Emoji for the caption (with an emoji model; the server always lists them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emoji: Option<Vec<String>>,
    /// The description, emoji and hashtags as one post text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub social: Option<String>,
    /// `--llm HF_DIR`: the post the LLM wrote from the caption, moods and hashtags
    /// (`infer::llm_post`). `caption --llm` also puts it in `social`; the server keeps the
    /// template post there and shows this one beside the plain caption.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_post: Option<String>,
    /// `caption --translate`: the caption and its hashtags in another language.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub translation: Option<super::translate::Translation>,
    /// `caption --moods`: CLIP's ranking of mood labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moods: Option<Vec<Mood>>,
    /// `greedy`, `beam K` or `top-p P T t ×N` (`Decoding::name`; the server's answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decoding: Option<String>,
    /// The server's: the upload's hash, the model's id, the asked style and the text to show.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The text models and counts a caption result is completed with.
#[derive(Clone, Copy, Default)]
pub struct Extras<'a> {
    /// Caption-text hashtags after the image model's.
    pub text_tags: Option<&'a TextTagger>,
    pub emoji: Option<&'a TextTagger>,
    /// How many hashtags and emoji to show.
    pub hashtags: usize,
    pub emoji_count: usize,
}

impl CaptionResult {
    /// The result for one image's caption (its `alternatives`: the rest of the n-best list):
    /// hashtags, emoji and the post text made from it. `tags_only`: a hashtag-only run, whose
    /// caption is not shown (the hashtags still read its text).
    pub fn new(c: &Caption, tags_only: bool, x: &Extras) -> Self {
        let text = c.text();
        let hashtags = super::tags::shown(c.tags.as_ref(), x.text_tags, &text, x.hashtags);
        let shown = if tags_only { String::new() } else { text };
        let emoji: Option<Vec<String>> = x.emoji.map(|m| {
            m.suggest(&shown, x.emoji_count)
                .into_iter()
                .map(|(e, _)| e)
                .collect()
        });
        let names: Vec<&str> = hashtags.iter().map(|t| t.tag.as_str()).collect();
        let social = super::social::compose(&shown, emoji.as_deref().unwrap_or(&[]), &names);
        let mut r = CaptionResult {
            hashtags,
            emoji,
            social: Some(social),
            ..Default::default()
        };
        if !tags_only {
            r.alternatives = std::iter::once(Alternative {
                text: shown.clone(),
                logp: c.logp,
            })
            .chain(c.alternatives.iter().cloned())
            .collect();
            r.caption = Some(shown);
            r.logp = Some(c.logp);
            r.attention = c.attention.clone();
        }
        r
    }

    /// The caption as shown (empty for hashtag-only runs).
    pub fn caption_text(&self) -> &str {
        self.caption.as_deref().unwrap_or("")
    }
}
