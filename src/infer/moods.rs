//! Zero-shot mood and aesthetic labels with CLIP (`caption --moods [LABELS.txt] --clip HF_DIR`):
//! each label is put into the prompt template [`TEMPLATE`] ("a photo that feels {label}."),
//! embedded by CLIP's text tower, and the labels are ranked by the cosine similarity of their
//! embedding with the picture's image embedding (both `get_*_features` projections, L2
//! normalised). The default list (`moods.txt`, 40 moods and aesthetics) is compiled in; a
//! labels file has one label a line (`#` comments and blank lines skipped). The CLIP folder is
//! read as a Hugging Face download (docs/ARCHITECTURE.md, "CLIP and GPT-2 on Hugging Face
//! folders").
use std::path::Path;

use serde::Serialize;
use tch::{Device, Tensor};

use crate::model::clip::{normalize, Clip};
use crate::text::hf_tokenizer::HfTokenizer;
use crate::{Error, Result};

/// The prompt each label is put into.
pub const TEMPLATE: &str = "a photo that feels {}.";

/// The default label list shipped with captag.
pub const DEFAULT_LABELS: &str = include_str!("moods.txt");

/// One label and its cosine similarity with the image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mood {
    pub label: String,
    pub score: f64,
}

/// A CLIP with the label list's normalised text embeddings computed once.
pub struct MoodRanker {
    clip: Clip,
    labels: Vec<String>,
    /// `(L, proj)` unit rows.
    text: Tensor,
}

/// Labels of a list: one a line, trimmed; blank lines and `#` comments skipped.
pub fn parse_labels(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The prompt of one label.
pub fn prompt(label: &str) -> String {
    TEMPLATE.replace("{}", label)
}

impl MoodRanker {
    /// Loads the CLIP folder `dir` and embeds the labels of `labels` (a file) or the default
    /// list.
    pub fn load(dir: &Path, labels: Option<&Path>, device: Device) -> Result<MoodRanker> {
        let list = match labels {
            Some(p) => parse_labels(&crate::input::read_text(
                p,
                crate::input::TEXT,
                "a mood label list",
            )?),
            None => parse_labels(DEFAULT_LABELS),
        };
        if list.is_empty() {
            return Err(Error::invalid(format!(
                "{}: no labels (one label a line)",
                labels.map_or("the default list".into(), |p| p.display().to_string())
            )));
        }
        let clip = Clip::load(dir, device)?;
        let tok = HfTokenizer::clip(dir)?;
        let prompts: Vec<String> = list.iter().map(|l| prompt(l)).collect();
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let text = normalize(&clip.text_embeds(&clip.text_ids(&tok, &refs))?); // (L, proj)
        Ok(MoodRanker {
            clip,
            labels: list,
            text,
        })
    }

    /// The `top` labels of the picture at `path`, most similar first.
    pub fn rank(&self, path: &Path, top: usize) -> Result<Vec<Mood>> {
        let pixels = self.clip.preprocess.load(path)?.unsqueeze(0); // (1, 3, S, S)
        let image = normalize(&self.clip.image_embeds(&pixels)?); // (1, proj)
        let cos = image.matmul(&self.text.transpose(0, 1)).view([-1]); // (L,)
        let cos = Vec::<f64>::try_from(cos.to_kind(tch::Kind::Double).to_device(Device::Cpu))
            .map_err(Error::Torch)?;
        let mut ranked: Vec<Mood> = self
            .labels
            .iter()
            .zip(cos)
            .map(|(l, score)| Mood {
                label: l.clone(),
                score,
            })
            .collect();
        // Stable: equal scores keep the list's order.
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
        ranked.truncate(top);
        Ok(ranked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_list_has_about_forty_distinct_labels() {
        let l = parse_labels(DEFAULT_LABELS);
        assert_eq!(l.len(), 40);
        let set: std::collections::HashSet<&String> = l.iter().collect();
        assert_eq!(set.len(), l.len());
        assert_eq!(prompt("calm"), "a photo that feels calm.");
        assert_eq!(parse_labels("# c\n\n a b \n"), vec!["a b".to_string()]);
    }
}
