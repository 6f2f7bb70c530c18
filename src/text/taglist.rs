//! Hashtag labels: what counts as an image's true tags, and the label list a run's hashtag model
//! predicts over (saved as `hashtags.json` in the run directory, docs/ARCHITECTURE.md "Run directory").
//!
//! Two sources, one per kind of dataset:
//! - **Instagram** rows carry real `#tags` ([`super::extract_tags`] already lower-cases them and
//!   strips trailing punctuation and emoji); an image's truth is its tags.
//! - **Caption-only data** (Flickr8k, the synthetic set): tags are derived from the reference
//!   captions. A word becomes a tag of the image when at least `min_agree` (default 2) of its
//!   captions use it, after tokenizing, dropping stopwords (English function words, number words,
//!   a few spatial words), dropping tokens shorter than 3 letters or not purely alphabetic, and
//!   folding simple plurals (`dogs`→`dog`, `puppies`→`puppy`, `dresses`→`dress`, `men`→`man`).
//!   So `#dog #beach #running` come from what annotators agreed on, not from one writer's words.
//!
//! The label list keeps the tags seen on at least `min_count` training images, most frequent
//! first. Truth sets are *not* cut to the list: a tag outside it is a miss every model shares.
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::tokenize;
use crate::error::{Error, Result};

/// How an image's true tags are obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum TagRule {
    /// The `#tags` written in the post.
    Instagram,
    /// Content words that at least `min_agree` of the image's captions use.
    Captions { min_agree: usize },
}

/// What the tag rules read of a sample: its captions and its own hashtags (Instagram). The
/// dataset's `Sample` implements it; text code never needs the rest of a sample.
pub trait Tagged {
    fn captions(&self) -> &[String];
    fn hashtags(&self) -> &[String];
}

impl<T: Tagged + ?Sized> Tagged for &T {
    fn captions(&self) -> &[String] {
        (**self).captions()
    }
    fn hashtags(&self) -> &[String] {
        (**self).hashtags()
    }
}

impl TagRule {
    /// Instagram-style samples (they carry hashtags) use their tags, others derive them.
    pub fn for_samples<S: Tagged>(samples: &[&S], min_agree: usize) -> Self {
        if samples.iter().any(|s| !s.hashtags().is_empty()) {
            TagRule::Instagram
        } else {
            TagRule::Captions {
                min_agree: min_agree.max(1),
            }
        }
    }

    /// The true tags of one sample, strongest first (caption rule: most captions agreeing).
    pub fn truth<S: Tagged + ?Sized>(&self, s: &S) -> Vec<String> {
        match *self {
            TagRule::Instagram => s.hashtags().to_vec(),
            TagRule::Captions { min_agree } => derive_tags(s.captions(), min_agree),
        }
    }
}

/// Words that never become tags: English function words (NLTK's list), number words, and
/// positional words that say where, not what.
const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "while",
    "onto",
    "its",
    // number words
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "single",
    "several",
    "many",
    "another",
    "others",
    "group",
    "couple",
    "lot",
    // position and framing
    "front",
    "back",
    "behind",
    "near",
    "next",
    "top",
    "bottom",
    "side",
    "left",
    "right",
    "along",
    "across",
    "around",
    "beside",
    "toward",
    "towards",
    "image",
    "picture",
    "photo",
    "background",
    "there",
];

/// Whether a (lower-case) word is on the stopword list above.
pub fn is_stopword(w: &str) -> bool {
    STOPWORDS.contains(&w)
}

/// Plural-looking words that are singular or have no useful singular.
const KEEP_S: &[&str] = &[
    "glasses",
    "sunglasses",
    "jeans",
    "shorts",
    "pants",
    "trousers",
    "stairs",
    "clothes",
    "goggles",
    "tennis",
    "bus",
    "grass",
    "dress",
    "process",
    "chess",
    "cross",
    "gas",
    "series",
    "species",
    "news",
    "physics",
    "this",
    "its",
    "his",
    "is",
    "was",
    "has",
];

const IRREGULAR: &[(&str, &str)] = &[
    ("men", "man"),
    ("women", "woman"),
    ("children", "child"),
    ("feet", "foot"),
    ("teeth", "tooth"),
    ("geese", "goose"),
    ("mice", "mouse"),
    ("people", "people"),
];

/// Fold a simple English plural to its singular (`dogs`→`dog`, `puppies`→`puppy`,
/// `boxes`→`box`, `dresses`→`dress`, `men`→`man`); other words are returned unchanged.
pub fn fold_plural(w: &str) -> String {
    if let Some((_, s)) = IRREGULAR.iter().find(|(p, _)| *p == w) {
        return s.to_string();
    }
    if KEEP_S.contains(&w) || w.len() <= 3 || w.ends_with("ss") || w.ends_with("us") {
        return w.to_string();
    }
    if let Some(stem) = w.strip_suffix("ies") {
        if stem.len() >= 2 {
            return format!("{stem}y");
        }
    }
    for suf in ["sses", "xes", "ches", "shes", "zzes"] {
        if w.ends_with(suf) {
            return w[..w.len() - 2].to_string();
        }
    }
    match w.strip_suffix('s') {
        Some(stem) if !stem.ends_with('s') => stem.to_string(),
        _ => w.to_string(),
    }
}

/// The content words of one caption, as tags: tokenized, stopwords and short or non-alphabetic
/// tokens dropped, plurals folded, duplicates removed (first-seen order).
pub fn content_words(caption: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for w in tokenize(caption) {
        if w.len() < 3
            || !w.chars().all(|c| c.is_ascii_lowercase())
            || STOPWORDS.contains(&w.as_str())
        {
            continue;
        }
        let w = fold_plural(&w);
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// Tags agreed by at least `min_agree` captions, ordered by how many captions use them (then
/// by first use), so the strongest tag comes first.
pub fn derive_tags(captions: &[String], min_agree: usize) -> Vec<String> {
    let mut votes: Vec<(String, usize)> = vec![];
    for c in captions {
        for w in content_words(c) {
            match votes.iter_mut().find(|(t, _)| *t == w) {
                Some((_, n)) => *n += 1,
                None => votes.push((w, 1)),
            }
        }
    }
    // Stable sort keeps first-use order among equal votes.
    votes.sort_by_key(|v| std::cmp::Reverse(v.1));
    votes
        .into_iter()
        .filter(|(_, n)| *n >= min_agree.max(1))
        .map(|(t, _)| t)
        .collect()
}

/// The label list of a run: `hashtags.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TagList {
    pub rule: TagRule,
    /// Tags on fewer training images than this were left out.
    pub min_count: usize,
    /// Most frequent first; the index is the label id.
    pub tags: Vec<String>,
    /// Training images carrying each tag.
    pub counts: Vec<usize>,
    /// Training images the list was built from.
    pub images: usize,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

impl TagList {
    /// Build from the training samples' truth sets: tags on ≥ `min_count` images, by descending
    /// count then alphabetically (the same data always gives the same ids).
    pub fn build<S: Tagged>(rule: TagRule, train: &[&S], min_count: usize) -> Self {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for s in train {
            for t in rule.truth(s) {
                *counts.entry(t).or_insert(0) += 1;
            }
        }
        let mut v: Vec<(String, usize)> = counts
            .into_iter()
            .filter(|(_, n)| *n >= min_count.max(1))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let (tags, counts) = v.into_iter().unzip();
        TagList {
            rule,
            min_count: min_count.max(1),
            tags,
            counts,
            images: train.len(),
            index: HashMap::new(),
        }
        .indexed()
    }

    fn indexed(mut self) -> Self {
        self.index = self
            .tags
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i))
            .collect();
        self
    }

    pub fn len(&self) -> usize {
        self.tags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    pub fn id(&self, tag: &str) -> Option<usize> {
        self.index.get(tag).copied()
    }

    /// Label ids of a truth set (tags outside the list are dropped).
    pub fn ids(&self, tags: &[String]) -> Vec<usize> {
        tags.iter().filter_map(|t| self.id(t)).collect()
    }

    /// `(N, T)` 0/1 targets as a flat row-major vector.
    pub fn multi_hot(&self, truths: &[Vec<String>]) -> Vec<f32> {
        let t = self.len();
        let mut out = vec![0f32; truths.len() * t];
        for (i, truth) in truths.iter().enumerate() {
            for id in self.ids(truth) {
                out[i * t + id] = 1.0;
            }
        }
        out
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid(format!("hashtags.json: {e}")))?;
        crate::fsio::write_atomic(path, text.as_bytes(), true)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::input::read_text(path, crate::input::TEXT, "a hashtag list")?;
        let list: TagList = serde_json::from_str(&text).map_err(|e| {
            Error::invalid(format!(
                "{}: not a captag hashtag list ({})",
                path.display(),
                crate::input::one_line(e)
            ))
        })?;
        if list.tags.len() != list.counts.len() {
            return Err(Error::invalid(format!(
                "{}: tags and counts differ in length",
                path.display()
            )));
        }
        Ok(list.indexed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plural_folding() {
        for (p, s) in [
            ("dogs", "dog"),
            ("puppies", "puppy"),
            ("dresses", "dress"),
            ("boxes", "box"),
            ("beaches", "beach"),
            ("men", "man"),
            ("children", "child"),
            ("grass", "grass"),
            ("sunglasses", "sunglasses"),
            ("bus", "bus"),
            ("dog", "dog"),
            ("toys", "toy"),
        ] {
            assert_eq!(fold_plural(p), s, "{p}");
        }
    }

    #[test]
    fn content_words_drop_stopwords_numbers_and_fold() {
        assert_eq!(
            content_words("Two dogs are running on the beach in front of 3 men ."),
            caps(&["dog", "running", "beach", "man"])
        );
        assert_eq!(content_words("a dog and a Dog's dogs"), caps(&["dog"]));
    }

    #[test]
    fn tags_need_agreement() {
        let c = caps(&[
            "A black dog runs on the beach .",
            "Two dogs running along the beach",
            "a dog is running in the sand",
            "The black and white dog plays",
            "A puppy at the sea",
        ]);
        // dog: 4 captions, beach: 2, running: 2, black: 2; sand/sea/puppy/runs: 1.
        assert_eq!(
            derive_tags(&c, 2),
            caps(&["dog", "black", "beach", "running"])
        );
        assert_eq!(derive_tags(&c, 4), caps(&["dog"]));
        assert!(derive_tags(&c, 5).is_empty());
        assert_eq!(derive_tags(&c, 1).len(), 10);
    }

    struct Post {
        captions: Vec<String>,
        hashtags: Vec<String>,
    }

    impl Tagged for Post {
        fn captions(&self) -> &[String] {
            &self.captions
        }
        fn hashtags(&self) -> &[String] {
            &self.hashtags
        }
    }

    fn sample(_id: &str, captions: &[&str], tags: &[&str]) -> Post {
        Post {
            captions: caps(captions),
            hashtags: caps(tags),
        }
    }

    #[test]
    fn list_orders_by_count_and_applies_min_count() {
        let a = sample("a", &["x"], &["love", "beach"]);
        let b = sample("b", &["x"], &["beach", "sun"]);
        let c = sample("c", &["x"], &["beach", "love"]);
        let s = [&a, &b, &c];
        let rule = TagRule::for_samples(&s, 2);
        assert_eq!(rule, TagRule::Instagram);
        let list = TagList::build(rule, &s, 2);
        assert_eq!(list.tags, caps(&["beach", "love"]));
        assert_eq!(list.counts, vec![3, 2]);
        assert_eq!(list.multi_hot(&[caps(&["love", "sun"])]), vec![0.0, 1.0]);
    }

    #[test]
    fn save_load_round_trip() {
        let a = sample("a", &["a red circle", "the red circles"], &[]);
        let rule = TagRule::for_samples(&[&a], 2);
        assert_eq!(rule, TagRule::Captions { min_agree: 2 });
        let list = TagList::build(rule, &[&a], 1);
        // Equal counts: alphabetical.
        assert_eq!(list.tags, caps(&["circle", "red"]));
        let dir = std::env::temp_dir().join(format!("captag-taglist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("hashtags.json");
        list.save(&p).unwrap();
        let back = TagList::load(&p).unwrap();
        assert_eq!(back, list);
        assert_eq!(back.id("red"), Some(1));
        std::fs::write(&p, "{\"tags\": 3}").unwrap();
        assert!(TagList::load(&p).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
