//! Datasets: one in-memory representation ([`Dataset`] of [`Sample`]s) that every on-disk layout
//! (Flickr8k Kaggle/UIUC, Karpathy JSON, Instagram CSV, the built-in synthetic set) loads into.
//! Bad rows are skipped and counted in a [`SkipReport`], never fatal; a directory holding no
//! recognizable dataset is an error.
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which part of the data a sample belongs to. Karpathy's `val` is `Dev`, `restval` is `Train`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Dev,
    Test,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One image and everything known about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Stable id: the image file name (`1000268201_693b08cb74.jpg`, `insta2.jpg`).
    pub id: String,
    /// Where the image should be; it may be missing (see `Dataset::skipped`).
    pub path: PathBuf,
    /// Raw reference captions as written in the source (hashtags removed for Instagram).
    pub captions: Vec<String>,
    /// Hashtag labels (lowercase, without `#`); empty for caption-only datasets.
    pub hashtags: Vec<String>,
    pub split: Split,
}

/// Why an input row or image was not used. Counted in one summary line, listed with `-v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    MissingImage,
    UnreadableImage,
    MalformedRow,
    EmptyCaption,
    OrphanKey,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::MissingImage => "missing image",
            SkipReason::UnreadableImage => "unreadable image",
            SkipReason::MalformedRow => "malformed row",
            SkipReason::EmptyCaption => "empty caption",
            SkipReason::OrphanKey => "orphan key",
        }
    }
}

/// Counted skips with their details (file:line or image name) for `-v`.
#[derive(Debug, Default, Clone)]
pub struct SkipReport {
    pub items: Vec<(SkipReason, String)>,
}

impl SkipReport {
    pub fn push(&mut self, reason: SkipReason, detail: impl Into<String>) {
        self.items.push((reason, detail.into()));
    }
    pub fn counts(&self) -> BTreeMap<SkipReason, usize> {
        let mut m = BTreeMap::new();
        for (r, _) in &self.items {
            *m.entry(*r).or_insert(0) += 1;
        }
        m
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// `skipped 1000 missing image, 1 orphan key` — or `skipped nothing`.
    pub fn summary(&self) -> String {
        if self.items.is_empty() {
            return "skipped nothing".to_string();
        }
        let parts: Vec<String> =
            self.counts().iter().map(|(r, n)| format!("{n} {}", r.as_str())).collect();
        format!("skipped {}", parts.join(", "))
    }
}

pub mod flickr8k;
pub mod image;
pub mod instagram;
pub mod karpathy;
pub mod loader;
pub mod stats;
pub mod synth;
