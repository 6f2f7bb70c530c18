//! Datasets: one in-memory representation ([`Dataset`] of [`Sample`]s) that every on-disk layout
//! (Flickr8k Kaggle/UIUC, Karpathy JSON, Instagram CSV, the built-in synthetic set) loads into.
//! Bad rows are skipped and counted in a [`SkipReport`], never fatal; a directory holding no
//! recognizable dataset is an error.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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
    /// Flickr8k: the image is in the captions file but in none of the split lists.
    NotInSplit,
    /// The image reference leaves the dataset folder (`..`, an absolute path, or a symlink
    /// that resolves elsewhere).
    OutsideDataset,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::MissingImage => "missing image",
            SkipReason::UnreadableImage => "unreadable image",
            SkipReason::MalformedRow => "malformed row",
            SkipReason::EmptyCaption => "empty caption",
            SkipReason::OrphanKey => "orphan key",
            SkipReason::NotInSplit => "not in any split list",
            SkipReason::OutsideDataset => "image outside the dataset folder",
        }
    }
}

/// Counted skips with their details (file:line or image name) for `-v`.
#[derive(Debug, Default, Clone)]
pub struct SkipReport {
    pub items: Vec<(SkipReason, String)>,
}

impl SkipReport {
    /// `detail` quotes the input, so it is made printable (one line, no control characters).
    pub fn push(&mut self, reason: SkipReason, detail: impl Into<String>) {
        let detail = detail.into();
        let detail = if detail.chars().any(char::is_control) {
            crate::input::printable(&detail, 300)
        } else {
            detail
        };
        self.items.push((reason, detail));
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
        let parts: Vec<String> = self
            .counts()
            .iter()
            .map(|(r, n)| format!("{n} {}", r.as_str()))
            .collect();
        format!("skipped {}", parts.join(", "))
    }
}

/// The on-disk layouts captag reads (docs/ARCHITECTURE.md "Data formats").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Flickr8kKaggle,
    Flickr8kUiuc,
    Karpathy,
    Instagram,
}

impl Format {
    pub const ALL: [Format; 4] = [
        Format::Flickr8kKaggle,
        Format::Flickr8kUiuc,
        Format::Karpathy,
        Format::Instagram,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Flickr8kKaggle => "flickr8k-kaggle",
            Format::Flickr8kUiuc => "flickr8k-uiuc",
            Format::Karpathy => "karpathy",
            Format::Instagram => "instagram",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Format {
    type Err = Error;
    /// The `as_str` names (case and `_`/`-` do not matter), plus `kaggle`/`flickr8k` and `uiuc`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "flickr8k-kaggle" | "flickr8k" | "kaggle" => Ok(Format::Flickr8kKaggle),
            "flickr8k-uiuc" | "uiuc" => Ok(Format::Flickr8kUiuc),
            "karpathy" => Ok(Format::Karpathy),
            "instagram" => Ok(Format::Instagram),
            _ => Err(Error::invalid(format!(
                "unknown dataset format '{s}' (expected flickr8k-kaggle, flickr8k-uiuc, karpathy or instagram)"
            ))),
        }
    }
}

/// How [`load`] reads a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// Force a layout instead of detecting it.
    pub format: Option<Format>,
    /// train/dev/test shares for sources without split information (normalized by their sum).
    pub ratios: [f64; 3],
    /// Seed of that split.
    pub seed: u64,
    /// Keep samples whose image file is missing (caption-only statistics); they are still
    /// counted in `Dataset::images_missing`.
    pub keep_missing: bool,
    /// Decode every image fully (2 threads) and skip the ones that fail; otherwise only check
    /// that the file exists.
    pub verify_images: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            format: None,
            ratios: [0.8, 0.1, 0.1],
            seed: 0,
            keep_missing: false,
            verify_images: false,
        }
    }
}

/// A loaded dataset: the usable samples and an account of everything that was not used.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub format: Format,
    /// The directory given, or the captions file's directory.
    pub root: PathBuf,
    /// In source order (first appearance of each image).
    pub samples: Vec<Sample>,
    pub skipped: SkipReport,
    /// Distinct images the captions file(s) list with at least one usable caption or hashtag.
    pub images_listed: usize,
    /// How many of those have no image file (counted whether or not `keep_missing` kept them).
    pub images_missing: usize,
}

/// `root/rel` when `rel` (an image reference from a CSV cell or JSON field) stays inside `root`:
/// a relative path of plain components (no `..`, no root, no drive), and, when the file exists,
/// one whose symlinks resolve inside `root` too. `None` otherwise. The one place captag turns a
/// path found in data into a file to open (docs/ARCHITECTURE.md, "Data formats").
pub fn resolve_inside(root: &Path, rel: &str) -> Option<PathBuf> {
    use std::path::Component;
    let p = Path::new(rel);
    if rel.is_empty()
        || rel.contains('\\')
        || !p.components().all(|c| matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let full = root.join(p);
    match (full.canonicalize(), root.canonicalize()) {
        (Ok(f), Ok(r)) if !f.starts_with(&r) => None,
        _ => Some(full),
    }
}

impl crate::text::taglist::Tagged for Sample {
    fn captions(&self) -> &[String] {
        &self.captions
    }
    fn hashtags(&self) -> &[String] {
        &self.hashtags
    }
}

impl Dataset {
    /// Every found image, as `(id, path)`, sorted by id (the row order of feature caches).
    pub fn image_list(&self) -> Vec<(String, PathBuf)> {
        let mut v: Vec<(String, PathBuf)> = self
            .samples
            .iter()
            .map(|s| (s.id.clone(), s.path.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// One stderr line on what was loaded and skipped (unless `quiet`); every skip with `verbose`.
    pub fn report(&self, path: &Path, quiet: bool, verbose: bool) {
        if !quiet {
            crate::fsio::errln!(
                "{}: {} images, {}",
                path.display(),
                self.samples.len(),
                self.skipped.summary()
            );
        }
        if verbose {
            for (r, d) in &self.skipped.items {
                crate::fsio::errln!("  skipped ({}): {d}", r.as_str());
            }
        }
    }

    pub fn split(&self, s: Split) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |x| x.split == s)
    }

    /// Number of samples in train, dev, test.
    pub fn split_counts(&self) -> [usize; 3] {
        let mut n = [0; 3];
        for s in &self.samples {
            n[s.split as usize] += 1;
        }
        n
    }

    /// Every caption of a split, tokenized with [`crate::text::tokenize`].
    pub fn tokenized_captions(&self, s: Split) -> impl Iterator<Item = Vec<String>> + '_ {
        self.split(s)
            .flat_map(|x| x.captions.iter().map(|c| crate::text::tokenize(c)))
    }

    /// The caption vocabulary of the training split.
    pub fn build_vocab(&self, min_count: usize) -> crate::text::Vocab {
        crate::text::Vocab::build(self.tokenized_captions(Split::Train), min_count)
    }
}

/// Which layout `path` (a directory or a captions file) holds.
pub fn detect(path: &Path) -> Result<Format> {
    Ok(resolve(path, None)?.0)
}

/// Load a dataset from a directory or a captions file. Bad rows and images are skipped and
/// recorded in `skipped`; an unreadable or unrecognizable source is an error.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let r = opts.ratios;
    if r.iter().any(|x| !x.is_finite() || *x < 0.0) || r.iter().sum::<f64>() <= 0.0 {
        return Err(Error::invalid(format!(
            "split ratios must be non-negative and not all zero (got {}/{}/{})",
            r[0], r[1], r[2]
        )));
    }
    let (format, files) = resolve(path, opts.format)?;
    let first = files
        .first()
        .ok_or_else(|| Error::invalid(format!("{}: no captions file", path.display())))?;
    let parsed = match format {
        Format::Flickr8kKaggle => flickr8k::parse_kaggle(first)?,
        Format::Flickr8kUiuc => flickr8k::parse_uiuc(first)?,
        Format::Karpathy => karpathy::parse(first)?,
        Format::Instagram => instagram::parse(&files)?,
    };
    let root = if path.is_dir() {
        path.to_path_buf()
    } else {
        parent_dir(path)
    };
    Ok(finish(format, root, parsed, opts))
}

/// One image as a layout parser found it, before splits, existence and decoding are settled.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub id: String,
    pub path: PathBuf,
    pub captions: Vec<String>,
    pub hashtags: Vec<String>,
    /// `None`: no split known (with `Parsed::has_splits` the image is then dropped).
    pub split: Option<Split>,
}

/// What a layout parser hands to the shared part of [`load`].
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub entries: Vec<Entry>,
    pub skipped: SkipReport,
    /// The source says which split each image is in; otherwise a seeded split is drawn.
    pub has_splits: bool,
}

/// Groups rows by image id, keeping first-appearance order.
#[derive(Debug, Default)]
pub(crate) struct Grouper {
    pub entries: Vec<Entry>,
    by_id: HashMap<String, usize>,
}

impl Grouper {
    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// Add a caption (and hashtags, de-duplicated) to the image `id`, creating it on first sight.
    pub fn add(
        &mut self,
        id: &str,
        path: impl FnOnce() -> PathBuf,
        caption: Option<String>,
        hashtags: &[String],
    ) {
        let i = match self.by_id.get(id) {
            Some(&i) => i,
            None => {
                self.by_id.insert(id.to_string(), self.entries.len());
                self.entries.push(Entry {
                    id: id.to_string(),
                    path: path(),
                    captions: Vec::new(),
                    hashtags: Vec::new(),
                    split: None,
                });
                self.entries.len() - 1
            }
        };
        let e = &mut self.entries[i];
        e.captions.extend(caption);
        for h in hashtags {
            if !e.hashtags.contains(h) {
                e.hashtags.push(h.clone());
            }
        }
    }
}

/// A caption is usable when it has at least one token (`"."` or only emoji is empty).
pub(crate) fn has_words(caption: &str) -> bool {
    !crate::text::tokenize(caption).is_empty()
}

/// The shared second half of [`load`]: splits, image existence and decoding, skip accounting.
fn finish(format: Format, root: PathBuf, parsed: Parsed, opts: &LoadOptions) -> Dataset {
    let Parsed {
        mut entries,
        mut skipped,
        has_splits,
    } = parsed;
    if !has_splits {
        draw_splits(&mut entries, opts.ratios, opts.seed);
    }
    let images_listed = entries.len();
    let exists: Vec<bool> = entries.iter().map(|e| e.path.is_file()).collect();
    let images_missing = exists.iter().filter(|x| !**x).count();
    let mut samples = Vec::with_capacity(entries.len());
    let mut present = Vec::with_capacity(entries.len());
    for (e, ex) in entries.into_iter().zip(exists) {
        let Some(split) = e.split else {
            skipped.push(SkipReason::NotInSplit, e.id);
            continue;
        };
        if !ex && !opts.keep_missing {
            skipped.push(SkipReason::MissingImage, e.path.display().to_string());
            continue;
        }
        present.push(ex);
        samples.push(Sample {
            id: e.id,
            path: e.path,
            captions: e.captions,
            hashtags: e.hashtags,
            split,
        });
    }
    if opts.verify_images {
        let to_check: Vec<usize> = (0..samples.len()).filter(|&i| present[i]).collect();
        let paths: Vec<&Path> = to_check
            .iter()
            .map(|&i| samples[i].path.as_path())
            .collect();
        let errors = decode_errors(&paths);
        let mut bad = vec![false; samples.len()];
        for (&i, err) in to_check.iter().zip(errors) {
            if let Some(reason) = err {
                // The reason names the file already (the path once per line).
                skipped.push(SkipReason::UnreadableImage, reason);
                bad[i] = true;
            }
        }
        let mut i = 0;
        samples.retain(|_| {
            i += 1;
            !bad[i - 1]
        });
    }
    Dataset {
        format,
        root,
        samples,
        skipped,
        images_listed,
        images_missing,
    }
}

/// Seeded split by image id: ids are sorted first, so row order does not matter; then shuffled
/// with ChaCha8 (stable across platforms and rand 0.8 versions) and cut by the ratios.
fn draw_splits(entries: &mut [Entry], ratios: [f64; 3], seed: u64) {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let n = entries.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| entries[a].id.cmp(&entries[b].id));
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let total: f64 = ratios.iter().sum();
    let cut = |share: f64| ((share / total * n as f64).round() as usize).min(n);
    let (c1, c2) = (cut(ratios[0]), cut(ratios[0] + ratios[1]));
    for (pos, &i) in order.iter().enumerate() {
        entries[i].split = Some(if pos < c1 {
            Split::Train
        } else if pos < c2 {
            Split::Dev
        } else {
            Split::Test
        });
    }
}

/// Fully decode each image on 2 threads; `Some(reason)` for the ones that fail.
fn decode_errors(paths: &[&Path]) -> Vec<Option<String>> {
    let mut out = vec![None; paths.len()];
    let mid = paths.len().div_ceil(2);
    let (a, b) = out.split_at_mut(mid);
    let check_all = |slots: &mut [Option<String>], ps: &[&Path]| {
        for (slot, p) in slots.iter_mut().zip(ps) {
            *slot = decode_error(p);
        }
    };
    std::thread::scope(|s| {
        s.spawn(|| check_all(a, &paths[..mid]));
        check_all(b, &paths[mid..]);
    });
    out
}

/// Why an image cannot be used, via the same decoder training uses (which also rejects
/// truncated JPEGs that the `image` crate alone would grey-fill).
fn decode_error(p: &Path) -> Option<String> {
    // Decoders are fuzzed but not promised panic-free; a panicking file is just unreadable.
    match std::panic::catch_unwind(|| crate::data::image::decode_rgb(p)) {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("{}: image decoder panicked", p.display())),
    }
}

mod detect;
use detect::resolve;
pub(crate) use detect::{existing, parent_dir, read_text, sorted_entries};
pub mod feature_file;
pub mod feature_merge;
pub mod features;
pub mod flickr8k;
pub mod image;
pub mod instagram;
pub mod karpathy;
pub mod llm_pairs;
pub mod loader;
pub mod shard;
pub mod stats;
pub mod synth;
