//! Karpathy's split files (`dataset_flickr8k.json`, `dataset_coco.json`, ...; docs/ARCHITECTURE.md "Data
//! formats"): `{"images": [{"filename", "split": "train|val|test|restval", "sentences":
//! [{"raw", "tokens"}], "filepath"?}]}`. `val` is [`Split::Dev`], `restval` is [`Split::Train`].
//!
//! A caption is the sentence's `raw` text, or its `tokens` joined by spaces when `raw` is
//! missing or empty. An image entry that does not have this shape, or has another split name,
//! is skipped as a malformed row (`FILE: images[i]: why`); a file that is not JSON or has no
//! `images` list is an error. Images are looked up under `filepath/` (COCO) when the entry has
//! one, else in the Flickr8k image folders next to the file.
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::flickr8k::images_dir;
use super::{
    has_words, parent_dir, read_text, sorted_entries, Entry, Parsed, SkipReason, SkipReport, Split,
};
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct KarpathyFile {
    images: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct KImage {
    filename: String,
    split: String,
    sentences: Vec<KSentence>,
    #[serde(default)]
    filepath: Option<String>,
}

#[derive(Deserialize)]
struct KSentence {
    #[serde(default)]
    raw: Option<String>,
    #[serde(default)]
    tokens: Option<Vec<String>>,
}

/// `dataset_flickr8k.json` in `dir`, else the first `dataset_*.json` (one dataset at a time).
pub(crate) fn find(dir: &Path) -> Vec<PathBuf> {
    let preferred = dir.join("dataset_flickr8k.json");
    if crate::input::is_readable_candidate(&preferred) {
        return vec![preferred];
    }
    let is_split_file = |p: &PathBuf| {
        let n = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        crate::input::is_readable_candidate(p) && n.starts_with("dataset_") && n.ends_with(".json")
    };
    sorted_entries(dir)
        .into_iter()
        .filter(is_split_file)
        .take(1)
        .collect()
}

pub(crate) fn parse(file: &Path) -> Result<Parsed> {
    let text = read_text(file)?;
    let kf: KarpathyFile = serde_json::from_str(&text).map_err(|e| {
        Error::invalid(format!(
            "{}: not a Karpathy split file (expected {{\"images\": [{{\"filename\", \"split\", \"sentences\"}}]}}): {}",
            file.display(),
            crate::input::one_line(e)
        ))
    })?;
    let dir = parent_dir(file);
    let flickr_images = images_dir(&dir);
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut skipped = SkipReport::default();
    for (i, value) in kf.images.into_iter().enumerate() {
        let at = format!("{}: images[{i}]", file.display());
        let img: KImage = match serde_json::from_value(value) {
            Ok(img) => img,
            Err(e) => {
                skipped.push(SkipReason::MalformedRow, format!("{at}: {e}"));
                continue;
            }
        };
        let split = match img.split.as_str() {
            "train" | "restval" => Split::Train,
            "val" | "dev" => Split::Dev,
            "test" => Split::Test,
            other => {
                skipped.push(
                    SkipReason::MalformedRow,
                    format!("{at}: unknown split '{other}'"),
                );
                continue;
            }
        };
        let id = img.filename.trim().to_string();
        if id.is_empty() || !seen.insert(id.clone()) {
            skipped.push(
                SkipReason::MalformedRow,
                format!("{at}: empty or repeated filename '{id}'"),
            );
            continue;
        }
        let mut captions = Vec::new();
        for (j, s) in img.sentences.into_iter().enumerate() {
            let raw = s.raw.unwrap_or_default();
            let caption = if raw.trim().is_empty() {
                s.tokens.unwrap_or_default().join(" ")
            } else {
                raw
            };
            let caption = caption.trim();
            if has_words(caption) {
                captions.push(caption.to_string());
            } else {
                skipped.push(SkipReason::EmptyCaption, format!("{at}.sentences[{j}]"));
            }
        }
        if captions.is_empty() {
            continue;
        }
        let Some(path) = image_path(&dir, &flickr_images, img.filepath.as_deref(), &id) else {
            skipped.push(
                SkipReason::OutsideDataset,
                format!("{at}: {}", crate::input::printable(&id, 100)),
            );
            continue;
        };
        entries.push(Entry {
            id,
            path,
            captions,
            hashtags: Vec::new(),
            split: Some(split),
        });
    }
    Ok(Parsed {
        entries,
        skipped,
        has_splits: true,
    })
}

/// Where an entry's image is, through the one resolver for paths found in data
/// (`super::resolve_inside`): `None` when `filepath/filename` or `filename` leaves the dataset
/// (`..`, an absolute path, a symlink to elsewhere).
fn image_path(
    dir: &Path,
    flickr_images: &Path,
    filepath: Option<&str>,
    name: &str,
) -> Option<PathBuf> {
    if let Some(fp) = filepath.filter(|f| !f.is_empty()) {
        let p = super::resolve_inside(dir, &format!("{fp}/{name}"))?;
        if p.is_file() {
            return Some(p);
        }
    }
    super::resolve_inside(flickr_images, name)
}

#[cfg(test)]
mod tests {
    use crate::data::{detect, load, Format, LoadOptions, SkipReason, Split};
    use std::fs;

    #[test]
    fn splits_sentences_and_bad_entries() {
        let d = tempfile::tempdir().unwrap();
        let json = r#"{"dataset": "flickr8k", "images": [
            {"filename": "a.jpg", "split": "train", "sentences": [{"raw": "A dog runs.", "tokens": ["a","dog","runs"]}]},
            {"filename": "b.jpg", "split": "val", "sentences": [{"raw": "", "tokens": ["a","cat"]}, {"raw": " "}]},
            {"filename": "c.jpg", "split": "restval", "sentences": [{"tokens": ["a","bird"]}]},
            {"filename": "d.jpg", "split": "test", "sentences": [{"raw": "A fish ."}]},
            {"filename": "e.jpg", "split": "holdout", "sentences": [{"raw": "x"}]},
            {"split": "train", "sentences": []},
            {"filename": "a.jpg", "split": "train", "sentences": [{"raw": "again"}]},
            {"filename": "f.jpg", "split": "train", "sentences": [{"raw": "..."}]}
        ]}"#;
        fs::write(d.path().join("dataset_flickr8k.json"), json).unwrap();
        assert_eq!(detect(d.path()).unwrap(), Format::Karpathy);
        let ds = load(
            d.path(),
            &LoadOptions {
                keep_missing: true,
                ..Default::default()
            },
        )
        .unwrap();
        let got: Vec<(&str, Split)> = ds
            .samples
            .iter()
            .map(|s| (s.id.as_str(), s.split))
            .collect();
        assert_eq!(
            got,
            [
                ("a.jpg", Split::Train),
                ("b.jpg", Split::Dev),
                ("c.jpg", Split::Train),
                ("d.jpg", Split::Test)
            ]
        );
        assert_eq!(ds.samples[1].captions, ["a cat"]);
        assert_eq!(ds.samples[0].captions, ["A dog runs."]);
        assert_eq!(ds.samples[0].path, d.path().join("Images/a.jpg"));
        let c = ds.skipped.counts();
        assert_eq!(c.get(&SkipReason::MalformedRow), Some(&3));
        assert_eq!(c.get(&SkipReason::EmptyCaption), Some(&2));
        assert_eq!(ds.images_missing, 4);
        // Without keep_missing every one of them is a missing image.
        let strict = load(d.path(), &LoadOptions::default()).unwrap();
        assert!(strict.samples.is_empty());
        assert_eq!(
            strict.skipped.counts().get(&SkipReason::MissingImage),
            Some(&4)
        );
    }

    #[test]
    fn not_json_or_wrong_shape_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("dataset_coco.json");
        fs::write(&p, "{not json").unwrap();
        assert!(load(&p, &LoadOptions::default())
            .unwrap_err()
            .to_string()
            .contains("not a Karpathy split file"));
        fs::write(&p, r#"{"annotations": []}"#).unwrap();
        assert!(load(d.path(), &LoadOptions::default())
            .unwrap_err()
            .to_string()
            .contains("not a Karpathy split file"));
        // Any JSON object given directly is taken for a Karpathy file.
        let json = d.path().join("anything.json");
        fs::write(&json, " {\"images\": []}").unwrap();
        assert_eq!(detect(&json).unwrap(), Format::Karpathy);
    }
}
