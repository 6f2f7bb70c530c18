//! Caption text ⇒ hashtags: a smoothed word–tag co-occurrence model learnt from real Instagram
//! posts (their text and the `#tags` their authors chose). Pure Rust, no tch: it is a table of
//! counts, saved as `text_tags.json`.
//!
//! Why this model: the Kaggle Instagram set has ~6.5k tagged posts and ~6.4k distinct tags, most
//! used once; a table of counts is what such data supports, trains in milliseconds and is easy to
//! audit. Score of tag `t` for a text with content words `W` (each counted once):
//!
//! `score(t) = Σ_{w∈W} max(0, n(w,t) / (n(w) + β) − P(t))  +  λ · P(t)`,  `P(t) = n(t) / N`
//!
//! where `n(w,t)` counts training posts whose text has `w` and whose tags have `t`, `n(w)` posts
//! with `w`, `n(t)` posts with `t`, `N` posts. A word only votes for tags it makes *more* likely
//! than their base rate (without that, every common word votes for the common tags and
//! `#square` outranks `#red` for "a red circle and a blue square"). `β` damps words seen in few
//! posts; the prior term `λ` orders tags when no word is informative (λ large ⇒ the
//! most-frequent-tags baseline).
use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::text::taglist::{fold_plural, is_stopword};
use crate::text::tokenize;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TextTagger {
    pub beta: f64,
    pub prior: f64,
    /// Training posts.
    pub posts: usize,
    pub tags: Vec<String>,
    /// Posts carrying each tag.
    pub tag_posts: Vec<u32>,
    /// word ⇒ (posts with the word, [(tag id, posts with both)]).
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
    /// Count co-occurrences over `(text, tags)` training posts; posts without tags are skipped.
    pub fn train(posts: &[(String, Vec<String>)], beta: f64, prior: f64) -> Self {
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
            for w in text_words(text) {
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
            beta,
            prior,
            posts: n,
            tags,
            tag_posts,
            words,
        }
    }

    /// The `k` best tags for a text with their scores, best first (ties: more posts, then name).
    pub fn suggest(&self, text: &str, k: usize) -> Vec<(String, f64)> {
        let n = self.posts.max(1) as f64;
        let mut score: Vec<f64> = self
            .tag_posts
            .iter()
            .map(|&c| self.prior * c as f64 / n)
            .collect();
        for w in text_words(text) {
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

    /// The `k` most frequent training tags (the baseline every suggestion must beat).
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
            .map_err(|e| Error::invalid(format!("text_tags.json: {e}")))?;
        crate::fsio::write_atomic(path, text.as_bytes(), true)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let m: TextTagger = serde_json::from_str(&text).map_err(|e| {
            Error::invalid(format!(
                "{}: not a captag text-hashtag model ({e})",
                path.display()
            ))
        })?;
        if m.tags.len() != m.tag_posts.len()
            || m.words
                .values()
                .any(|(_, l)| l.iter().any(|&(t, _)| t as usize >= m.tags.len()))
        {
            return Err(Error::invalid(format!(
                "{}: corrupt text-hashtag model (tag ids out of range)",
                path.display()
            )));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let m = TextTagger::train(&posts, 1.0, 0.01);
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

    #[test]
    fn save_load_and_corrupt_file() {
        let m = TextTagger::train(&[post("cat nap", &["cat"])], 1.0, 0.0);
        let dir = std::env::temp_dir().join(format!("captag-texttags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("text_tags.json");
        m.save(&p).unwrap();
        let back = TextTagger::load(&p).unwrap();
        assert_eq!(back.suggest("cat", 1), m.suggest("cat", 1));
        std::fs::write(&p, "[1,2]").unwrap();
        assert!(TextTagger::load(&p).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
