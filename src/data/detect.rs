//! Finding a dataset: which layout a directory or file holds, and which captions files to read
//! (docs/ARCHITECTURE.md "Data formats"). Detection looks at file names first and sniffs a file's first
//! bytes only when it is given directly.
use std::path::{Path, PathBuf};

use super::{flickr8k, instagram, karpathy, Format};
use crate::{input, Error, Result};

/// Read a captions file as text: a clear error for binary files; stray invalid UTF-8 bytes in
/// an otherwise textual file are replaced rather than fatal.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = input::read_bytes(path, input::TEXT, "a captions file")?;
    if bytes.iter().take(8192).any(|&b| b == 0) {
        return Err(Error::invalid(format!(
            "{}: binary file, not a captions file",
            path.display()
        )));
    }
    let text = String::from_utf8_lossy(&bytes);
    Ok(text.strip_prefix('\u{feff}').unwrap_or(&text).to_string())
}

/// The directory a file lives in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Format plus the captions file(s) to read.
pub(crate) fn resolve(path: &Path, forced: Option<Format>) -> Result<(Format, Vec<PathBuf>)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_dir() {
        let format = match forced {
            Some(f) => f,
            None => sniff_file(path)?,
        };
        return Ok((format, vec![path.to_path_buf()]));
    }
    if let Some(f) = forced {
        let files = candidates(path, f);
        if files.is_empty() {
            return Err(Error::invalid(format!(
                "{}: no {f} dataset found (expected {})",
                path.display(),
                expected_files(f)
            )));
        }
        return Ok((f, files));
    }
    for f in Format::ALL {
        let files = candidates(path, f);
        if !files.is_empty() {
            return Ok((f, files));
        }
    }
    Err(Error::invalid(format!(
        "{}: no dataset found (expected captions.txt, Flickr8k.token.txt, dataset_*.json or captions_csv.csv)",
        path.display()
    )))
}

fn expected_files(f: Format) -> &'static str {
    match f {
        Format::Flickr8kKaggle => "captions.txt",
        Format::Flickr8kUiuc => "Flickr8k.token.txt or Flickr8k_text/Flickr8k.token.txt",
        Format::Karpathy => "dataset_*.json",
        Format::Instagram => {
            "captions_csv.csv, captions_csv2.csv or instagram_data*/ with one of them"
        }
    }
}

/// The captions files of layout `f` in directory `dir`, in reading order.
fn candidates(dir: &Path, f: Format) -> Vec<PathBuf> {
    match f {
        Format::Flickr8kKaggle => flickr8k::find_kaggle(dir),
        Format::Flickr8kUiuc => flickr8k::find_uiuc(dir),
        Format::Karpathy => karpathy::find(dir),
        Format::Instagram => instagram::find(dir),
    }
}

/// The files among `paths` that exist (anything but a directory: a FIFO or device named like a
/// captions file is then refused by the reader with a clear error, not silently looked past).
pub(crate) fn existing(paths: &[PathBuf]) -> Vec<PathBuf> {
    paths
        .iter()
        .filter(|p| input::is_readable_candidate(p))
        .cloned()
        .collect()
}

/// Directory entries sorted by path (empty when unreadable: detection then finds nothing).
pub(crate) fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Guess the layout of a captions file from its first bytes.
pub(crate) fn sniff_file(path: &Path) -> Result<Format> {
    let head = input::read_head(path, 64 * 1024, input::TEXT, "a captions file")?;
    let text = String::from_utf8_lossy(&head);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let first_line = text.lines().next().unwrap_or("").trim();
    let lower = first_line.to_ascii_lowercase();
    let unrecognized = || {
        Error::invalid(format!(
            "{}: unrecognized captions file (expected a Flickr8k captions.txt with header `image,caption`, \
             a Flickr8k.token.txt, a Karpathy dataset_*.json or an Instagram captions CSV)",
            path.display()
        ))
    };
    if head.contains(&0) {
        return Err(unrecognized());
    }
    if text.trim_start().starts_with('{') {
        return Ok(Format::Karpathy);
    }
    if lower.replace(' ', "") == "image,caption" {
        return Ok(Format::Flickr8kKaggle);
    }
    if first_line
        .split('\t')
        .next()
        .is_some_and(|k| k.contains('#'))
        && first_line.contains('\t')
    {
        return Ok(Format::Flickr8kUiuc);
    }
    if lower.starts_with("sr no") || lower.contains("image file") {
        return Ok(Format::Instagram);
    }
    // Headerless Instagram CSV: `1,img2/insta1,caption`.
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    if let Some(Ok(rec)) = rdr.records().next() {
        let f0 = rec.get(0).unwrap_or("").trim();
        let f1 = rec.get(1).unwrap_or("").trim();
        if rec.len() >= 3
            && f0.parse::<u64>().is_ok()
            && !f1.is_empty()
            && !f1.contains(char::is_whitespace)
        {
            return Ok(Format::Instagram);
        }
    }
    Err(unrecognized())
}
