//! Caption text ⇒ labels: a smoothed word–label co-occurrence model learnt from real Instagram
//! posts, for two kinds of label ([`LabelKind`]): the `#tags` their authors chose (`captag
//! tags`, saved as `text_tags.json`) and the emoji they wrote (`captag emoji`, labels from
//! [`crate::text::emoji`]). Pure Rust, no tch: it is a table of counts.
//!
//! Why this model: the Kaggle Instagram set has ~6.5k tagged posts and ~6.4k distinct tags, most
//! used once, and ~10k posts with emoji over ~870 distinct ones, a few of them (❤️ ✨ 😍) in
//! most posts; a table of counts is what such data supports, trains in milliseconds and is easy
//! to audit. One model serves both kinds because the question is the same — which labels does
//! this text make more likely than their base rate — and only the labels and the text read
//! differ. Score of label `t` for a text with content words `W` (each counted once):
//!
//! `score(t) = Σ_{w∈W} max(0, n(w,t) / (n(w) + β) − P(t))  +  λ · P(t)`,  `P(t) = n(t) / N`
//!
//! where `n(w,t)` counts training posts whose text has `w` and whose labels have `t`, `n(w)` posts
//! with `w`, `n(t)` posts with `t`, `N` posts. A word only votes for labels it makes *more* likely
//! than their base rate (without that, every common word votes for the common tags and
//! `#square` outranks `#red` for "a red circle and a blue square"). `β` damps words seen in few
//! posts; the prior term `λ` orders labels when no word is informative (λ large ⇒ the
//! most-frequent-labels baseline).
//!
//! The file records its kind (`"kind": "emoji"`), so a hashtag model is refused where an emoji
//! model is expected and the other way round; files written before emoji models existed have no
//! `kind` and load as hashtag models.
use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::text::emoji::strip_emoji;
use crate::text::taglist::{fold_plural, is_stopword};
use crate::text::tokenize;

/// What a [`TextTagger`]'s labels are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelKind {
    /// Hashtags without `#`, lower-case (`crate::text::extract_tags`).
    #[default]
    Hashtag,
    /// Normalised emoji ([`crate::text::emoji::emoji_labels`]).
    Emoji,
}

impl LabelKind {
    /// `text-hashtag model` / `emoji model`, for messages.
    pub fn model_name(self) -> &'static str {
        match self {
            LabelKind::Hashtag => "text-hashtag model",
            LabelKind::Emoji => "emoji model",
        }
    }

    /// The same with its article: `a text-hashtag model` / `an emoji model`.
    pub fn a_model(self) -> &'static str {
        match self {
            LabelKind::Hashtag => "a text-hashtag model",
            LabelKind::Emoji => "an emoji model",
        }
    }

    /// The command that trains and reads this kind.
    pub fn command(self) -> &'static str {
        match self {
            LabelKind::Hashtag => "captag tags",
            LabelKind::Emoji => "captag emoji",
        }
    }

    /// The words of a post's text this kind of model reads: [`text_words`]; for emoji models
    /// after [`strip_emoji`] (the emoji are the labels, and an emoji glued to a word,
    /// `love❤`, must not hide the word).
    pub fn words(self, text: &str) -> Vec<String> {
        match self {
            LabelKind::Hashtag => text_words(text),
            LabelKind::Emoji => text_words(&strip_emoji(text)),
        }
    }

    /// A label as a user reads it: `#beach`, `🌊`.
    pub fn show(self, label: &str) -> String {
        match self {
            LabelKind::Hashtag => format!("#{label}"),
            LabelKind::Emoji => label.to_string(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TextTagger {
    /// Absent in files from before emoji models: hashtags.
    #[serde(default)]
    pub kind: LabelKind,
    pub beta: f64,
    pub prior: f64,
    /// Training posts.
    pub posts: usize,
    /// The labels (hashtags or emoji, per `kind`); the field keeps its old name so old files load.
    pub tags: Vec<String>,
    /// Posts carrying each label.
    pub tag_posts: Vec<u32>,
    /// word ⇒ (posts with the word, [(label id, posts with both)]).
    pub words: HashMap<String, (u32, Vec<(u32, u32)>)>,
}

/// The words of a post's text the model reads: tokenized, lower-case, letters/digits only,
/// at least 2 characters, no stopwords, plurals folded, each once.
pub fn text_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for w in tokenize(text) {
        if w.chars().count() < 2 || !w.chars().all(char::is_alphanumeric) || is_stopword(&w) {
            continue;
        }
        let w = fold_plural(&w);
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

impl TextTagger {
    /// Count co-occurrences over `(text, labels)` training posts; posts without labels are
    /// skipped. The text is read as [`LabelKind::words`] reads it.
    pub fn train(kind: LabelKind, posts: &[(String, Vec<String>)], beta: f64, prior: f64) -> Self {
        let mut tag_ids: HashMap<String, u32> = HashMap::new();
        let mut tags: Vec<String> = vec![];
        let mut tag_posts: Vec<u32> = vec![];
        let mut pairs: HashMap<String, (u32, HashMap<u32, u32>)> = HashMap::new();
        let mut n = 0;
        for (text, post_tags) in posts {
            if post_tags.is_empty() {
                continue;
            }
            n += 1;
            let ids: Vec<u32> = post_tags
                .iter()
                .map(|t| {
                    *tag_ids.entry(t.clone()).or_insert_with(|| {
                        tags.push(t.clone());
                        tag_posts.push(0);
                        (tags.len() - 1) as u32
                    })
                })
                .collect();
            for &id in &ids {
                tag_posts[id as usize] += 1;
            }
            for w in kind.words(text) {
                let e = pairs.entry(w).or_default();
                e.0 += 1;
                for &id in &ids {
                    *e.1.entry(id).or_insert(0) += 1;
                }
            }
        }
        let words = pairs
            .into_iter()
            .map(|(w, (nw, m))| {
                let mut v: Vec<(u32, u32)> = m.into_iter().collect();
                v.sort_unstable();
                (w, (nw, v))
            })
            .collect();
        TextTagger {
            kind,
            beta,
            prior,
            posts: n,
            tags,
            tag_posts,
            words,
        }
    }

    /// The `k` best labels for a text with their scores, best first (ties: more posts, then
    /// name). Scores are sums of lifts, comparable within one model only.
    pub fn suggest(&self, text: &str, k: usize) -> Vec<(String, f64)> {
        let n = self.posts.max(1) as f64;
        let mut score: Vec<f64> = self
            .tag_posts
            .iter()
            .map(|&c| self.prior * c as f64 / n)
            .collect();
        for w in self.kind.words(text) {
            if let Some((nw, list)) = self.words.get(&w) {
                let d = *nw as f64 + self.beta;
                for &(t, c) in list {
                    let base = self.tag_posts[t as usize] as f64 / n;
                    score[t as usize] += (c as f64 / d - base).max(0.0);
                }
            }
        }
        let mut order: Vec<usize> = (0..score.len()).collect();
        order.sort_by(|&a, &b| {
            score[b]
                .total_cmp(&score[a])
                .then(self.tag_posts[b].cmp(&self.tag_posts[a]))
                .then(self.tags[a].cmp(&self.tags[b]))
        });
        order
            .into_iter()
            .take(k)
            .map(|i| (self.tags[i].clone(), score[i]))
            .collect()
    }

    /// The `k` most frequent training labels (the baseline every suggestion must beat).
    pub fn most_frequent(&self, k: usize) -> Vec<String> {
        let mut order: Vec<usize> = (0..self.tags.len()).collect();
        order.sort_by(|&a, &b| {
            self.tag_posts[b]
                .cmp(&self.tag_posts[a])
                .then(self.tags[a].cmp(&self.tags[b]))
        });
        order
            .into_iter()
            .take(k)
            .map(|i| self.tags[i].clone())
            .collect()
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string(self)
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        crate::fsio::write_atomic(path, text.as_bytes(), true)
    }

    /// Load a hashtag model (`captag tags train`, `--text-tags`).
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_as(path, LabelKind::Hashtag)
    }

    /// Load an emoji model (`captag emoji train`, `caption --emoji`, `serve --emoji`).
    pub fn load_emoji(path: &Path) -> Result<Self> {
        Self::load_as(path, LabelKind::Emoji)
    }

    /// Load a model of the given kind; a model of the other kind, a JSON file that is no such
    /// model, or one with label ids out of range is a one-line error.
    pub fn load_as(path: &Path, kind: LabelKind) -> Result<Self> {
        let name = kind.model_name();
        let text = crate::input::read_text(path, crate::input::TEXT, kind.a_model())?;
        let m: TextTagger = serde_json::from_str(&text).map_err(|e| {
            Error::invalid(format!(
                "{}: not a captag {name} ({})",
                path.display(),
                crate::input::one_line(e)
            ))
        })?;
        if m.kind != kind {
            return Err(Error::invalid(format!(
                "{}: {}, not {} (`{}` trains and reads it)",
                path.display(),
                m.kind.a_model(),
                kind.a_model(),
                m.kind.command()
            )));
        }
        if m.tags.len() != m.tag_posts.len()
            || m.words
                .values()
                .any(|(_, l)| l.iter().any(|&(t, _)| t as usize >= m.tags.len()))
        {
            return Err(Error::invalid(format!(
                "{}: corrupt {name} (label ids out of range)",
                path.display()
            )));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::emoji::emoji_labels;

    fn post(text: &str, tags: &[&str]) -> (String, Vec<String>) {
        (text.into(), tags.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn words_predict_their_tags_and_prior_breaks_ties() {
        let posts = vec![
            post("Sunset at the beach", &["beach", "sunset"]),
            post("beach day with friends", &["beach", "friends"]),
            post("Morning coffee", &["coffee", "love"]),
            post("coffee and a book", &["coffee", "love"]),
            post("my love", &["love"]),
            post("no tags here", &[]),
        ];
        let m = TextTagger::train(LabelKind::Hashtag, &posts, 1.0, 0.01);
        assert_eq!(m.posts, 5);
        // "beaches" folds to "beach": #beach 2/3 − 2/5 beats #friends and #sunset 1/3 − 1/5.
        let s = m.suggest("A long walk on the beaches", 2);
        assert_eq!(s[0].0, "beach");
        // "day" (1 post, with #beach and #friends) lifts the rarer #friends more: 1/2 − 1/5
        // against 1/2 − 2/5, enough to pass #beach's 0.267 + 0.1.
        assert_eq!(m.suggest("a day on the beach", 1)[0].0, "friends");
        let s = m.suggest("coffee please", 2);
        let names: Vec<&str> = s.iter().map(|x| x.0.as_str()).collect();
        // Both co-occur with "coffee" in 2 of 2 posts; a word votes only for the lift over the
        // base rate, so #coffee (2/3 − 2/5) outranks the more frequent #love (2/3 − 3/5).
        assert_eq!(names, vec!["coffee", "love"]);
        // Nothing known: the prior orders tags, the most frequent first.
        assert_eq!(m.suggest("zzz", 1)[0].0, "love");
        assert_eq!(m.most_frequent(2), vec!["love".to_string(), "beach".into()]);
    }

    /// Emoji posts as `captag emoji train` builds them: labels from the raw text, which the model
    /// then reads without its emoji.
    fn emoji_post(raw: &str) -> (String, Vec<String>) {
        (raw.to_string(), emoji_labels(raw))
    }

    #[test]
    fn emoji_model_learns_emoji_from_words() {
        let posts: Vec<_> = [
            "Sunset at the beach🌅🌊",
            "beach day 🌊☀️",
            "love you ❤️",
            "my love❤",
            "so much love ❤️😍",
            "new shoes 😍",
            "just words",
        ]
        .iter()
        .map(|r| emoji_post(r))
        .collect();
        let m = TextTagger::train(LabelKind::Emoji, &posts, 1.0, 0.01);
        assert_eq!(m.kind, LabelKind::Emoji);
        assert_eq!(m.posts, 6, "the post without emoji is skipped");
        // ❤ and ❤️ are one label; a word glued to an emoji (`love❤`, `beach🌅`) is still read.
        assert_eq!(m.tags.iter().filter(|t| t.starts_with('❤')).count(), 1);
        assert!(m.words.contains_key("love") && m.words.contains_key("beach"));
        assert!(m.words.keys().all(|w| emoji_labels(w).is_empty()));
        assert_eq!(m.suggest("a walk on the beach", 1)[0].0, "🌊");
        assert_eq!(m.suggest("love it", 1)[0].0, "❤\u{FE0F}");
        // Emoji in the query are not words either.
        assert_eq!(m.suggest("🌊🌊 love", 1), m.suggest("love", 1));
        assert_eq!(m.most_frequent(1), vec!["❤\u{FE0F}".to_string()]);
        assert_eq!(LabelKind::Emoji.show("🌊"), "🌊");
        assert_eq!(LabelKind::Hashtag.show("beach"), "#beach");
    }

    #[test]
    fn save_load_and_corrupt_file() {
        let m = TextTagger::train(LabelKind::Hashtag, &[post("cat nap", &["cat"])], 1.0, 0.0);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("text_tags.json");
        m.save(&p).unwrap();
        let back = TextTagger::load(&p).unwrap();
        assert_eq!(back.suggest("cat", 1), m.suggest("cat", 1));
        std::fs::write(&p, "[1,2]").unwrap();
        let e = TextTagger::load(&p).unwrap_err().to_string();
        assert!(e.contains("not a captag text-hashtag model"), "{e}");
        let bad = r#"{"beta":1,"prior":0,"posts":1,"tags":["a"],"tag_posts":[1],"words":{"x":[1,[[3,1]]]}}"#;
        std::fs::write(&p, bad).unwrap();
        let e = TextTagger::load(&p).unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn kind_is_recorded_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (tags, emoji) = (dir.path().join("tags.json"), dir.path().join("emoji.json"));
        TextTagger::train(LabelKind::Hashtag, &[post("cat nap", &["cat"])], 1.0, 0.0)
            .save(&tags)
            .unwrap();
        TextTagger::train(LabelKind::Emoji, &[emoji_post("cat nap 😺")], 1.0, 0.0)
            .save(&emoji)
            .unwrap();
        assert!(std::fs::read_to_string(&emoji)
            .unwrap()
            .contains(r#""kind":"emoji""#));
        let m = TextTagger::load_as(&emoji, LabelKind::Emoji).unwrap();
        assert_eq!(m.suggest("cat", 1)[0].0, "😺");
        let e = TextTagger::load(&emoji).unwrap_err().to_string();
        assert!(
            e.contains("an emoji model, not a text-hashtag model"),
            "{e}"
        );
        assert!(e.contains("captag emoji"), "{e}");
        let e = TextTagger::load_as(&tags, LabelKind::Emoji)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a text-hashtag model, not an emoji model"),
            "{e}"
        );
        // A file from before emoji models (no `kind`) is a hashtag model.
        let old = r#"{"beta":1,"prior":0,"posts":1,"tags":["cat"],"tag_posts":[1],"words":{"cat":[1,[[0,1]]]}}"#;
        std::fs::write(&tags, old).unwrap();
        assert_eq!(TextTagger::load(&tags).unwrap().kind, LabelKind::Hashtag);
        assert!(TextTagger::load_as(&tags, LabelKind::Emoji).is_err());
    }
}
