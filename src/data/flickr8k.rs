//! Flickr8k in its two distributions (docs/ARCHITECTURE.md "Data formats"):
//! - Kaggle: `captions.txt`, CSV with header `image,caption`, 5 rows per image, captions with
//!   commas double-quoted (an unquoted comma is tolerated: everything after the first comma is
//!   the caption);
//! - original UIUC: `Flickr8k.token.txt`, `NAME.jpg#N<TAB>caption`; the known orphan key
//!   `2258277193_586949ec62.jpg.1#N` (a file name with `.1` after the extension) is skipped as
//!   [`SkipReason::OrphanKey`], one per line.
//!
//! Both use the standard split lists `Flickr_8k.{train,dev,test}Images.txt` next to the captions
//! file when there are any: an image in none of them is skipped as [`SkipReason::NotInSplit`]
//! (the real data has 91 such images), an image in two lists goes to the first of train, dev,
//! test. Without lists, `load` draws a seeded split. Images are looked up in `Images/`,
//! `Flicker8k_Dataset/` (sic, the UIUC zip), `Flickr8k_Dataset/` or `images/`, next to the
//! captions file or one level up (the UIUC text zip unpacks into `Flickr8k_text/`).
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{
    existing, has_words, parent_dir, read_text, Grouper, Parsed, SkipReason, SkipReport, Split,
};
use crate::error::{Error, Result};

/// `captions.txt` in `dir`.
pub(crate) fn find_kaggle(dir: &Path) -> Vec<PathBuf> {
    existing(&[dir.join("captions.txt")])
}

/// `Flickr8k.token.txt` in `dir`, or in `dir/Flickr8k_text/` (how the UIUC zip unpacks).
pub(crate) fn find_uiuc(dir: &Path) -> Vec<PathBuf> {
    let mut v = existing(&[
        dir.join("Flickr8k.token.txt"),
        dir.join("Flickr8k_text/Flickr8k.token.txt"),
    ]);
    v.truncate(1);
    v
}

pub(crate) fn parse_kaggle(file: &Path) -> Result<Parsed> {
    let text = read_text(file)?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = rdr.records();
    let header = match records.next() {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            return Err(Error::invalid(format!(
                "{}: not a CSV file: {}",
                file.display(),
                crate::input::one_line(e)
            )))
        }
        None => {
            return Err(Error::invalid(format!(
                "{}: empty captions file",
                file.display()
            )))
        }
    };
    let fields: Vec<String> = header
        .iter()
        .map(|f| f.trim().to_ascii_lowercase())
        .collect();
    if fields != ["image", "caption"] {
        let found = crate::input::printable(&header.iter().collect::<Vec<_>>().join(","), 80);
        return Err(Error::invalid(format!(
            "{}: not a Flickr8k captions.txt (expected header `image,caption`, found `{found}`)",
            file.display()
        )));
    }
    let dir = parent_dir(file);
    let images = images_dir(&dir);
    let mut g = Grouper::default();
    let mut skipped = SkipReport::default();
    for rec in records {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                skipped.push(
                    SkipReason::MalformedRow,
                    format!("{}:{line}: {e}", file.display()),
                );
                continue;
            }
        };
        let at = format!(
            "{}:{}",
            file.display(),
            rec.position().map(|p| p.line()).unwrap_or(0)
        );
        // A Flickr8k caption is one line: a field spanning lines is a quote that does not
        // close, and the reader would take every following row as part of this caption.
        if rec.iter().any(|f| f.contains(['\n', '\r'])) {
            return Err(Error::invalid(format!(
                "{at}: a quote opened on this row does not close on it (the rest of the file \
                 would be read as one caption)"
            )));
        }
        let id = rec.get(0).unwrap_or("").trim();
        if rec.len() < 2 || !is_image_name(id) {
            skipped.push(SkipReason::MalformedRow, at);
            continue;
        }
        let caption = rec.iter().skip(1).collect::<Vec<_>>().join(",");
        let caption = caption.trim();
        if !has_words(caption) {
            skipped.push(SkipReason::EmptyCaption, at);
            continue;
        }
        // The one resolver for paths found in data: `..`, absolute names and symlinks that
        // leave the image folder are skipped and counted.
        let Some(path) = super::resolve_inside(&images, id) else {
            skipped.push(SkipReason::OutsideDataset, format!("{at}: {id}"));
            continue;
        };
        g.add(id, || path, Some(caption.to_string()), &[]);
    }
    finish_flickr(&dir, g, skipped)
}

pub(crate) fn parse_uiuc(file: &Path) -> Result<Parsed> {
    let text = read_text(file)?;
    let dir = parent_dir(file);
    let images = images_dir(&dir);
    let mut g = Grouper::default();
    let mut skipped = SkipReport::default();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", file.display(), n + 1);
        let Some((key, caption)) = line.split_once('\t') else {
            skipped.push(SkipReason::MalformedRow, at);
            continue;
        };
        let key = key.trim();
        // `NAME.jpg#3`: the caption number is not needed (order is kept).
        let name = key.rsplit_once('#').map_or(key, |(name, _)| name);
        if !is_image_name(name) {
            let reason = if is_orphan_key(name) {
                SkipReason::OrphanKey
            } else {
                SkipReason::MalformedRow
            };
            skipped.push(reason, format!("{at}: {key}"));
            continue;
        }
        let caption = caption.trim();
        if !has_words(caption) {
            skipped.push(SkipReason::EmptyCaption, at);
            continue;
        }
        let Some(path) = super::resolve_inside(&images, name) else {
            skipped.push(SkipReason::OutsideDataset, format!("{at}: {name}"));
            continue;
        };
        g.add(name, || path, Some(caption.to_string()), &[]);
    }
    if g.entries.is_empty()
        && skipped
            .counts()
            .get(&SkipReason::MalformedRow)
            .copied()
            .unwrap_or(0)
            > 0
    {
        return Err(Error::invalid(format!(
            "{}: not a Flickr8k token file (no `NAME.jpg#N<TAB>caption` line)",
            file.display()
        )));
    }
    finish_flickr(&dir, g, skipped)
}

fn finish_flickr(dir: &Path, g: Grouper, skipped: SkipReport) -> Result<Parsed> {
    let mut entries = g.entries;
    let has_splits = match read_split_lists(dir)? {
        Some(lists) => {
            for e in &mut entries {
                e.split = lists.get(&e.id).copied();
            }
            true
        }
        None => false,
    };
    Ok(Parsed {
        entries,
        skipped,
        has_splits,
    })
}

/// Image name → split from the standard lists in `dir`; `None` when there are no lists.
fn read_split_lists(dir: &Path) -> Result<Option<HashMap<String, Split>>> {
    let lists = [
        ("Flickr_8k.trainImages.txt", Split::Train),
        ("Flickr_8k.devImages.txt", Split::Dev),
        ("Flickr_8k.testImages.txt", Split::Test),
    ];
    let mut map = HashMap::new();
    let mut any = false;
    for (name, split) in lists {
        let p = dir.join(name);
        if !crate::input::is_readable_candidate(&p) {
            continue;
        }
        any = true;
        for line in read_text(&p)?.lines() {
            let id = line.trim();
            if !id.is_empty() {
                map.entry(id.to_string()).or_insert(split);
            }
        }
    }
    Ok(any.then_some(map))
}

/// Where the images of a Flickr8k copy whose captions live in `dir` are.
pub(crate) fn images_dir(dir: &Path) -> PathBuf {
    let names = ["Images", "Flicker8k_Dataset", "Flickr8k_Dataset", "images"];
    let bases = std::iter::once(dir).chain(dir.parent().filter(|p| !p.as_os_str().is_empty()));
    for base in bases {
        for n in names {
            let d = base.join(n);
            if d.is_dir() {
                return d;
            }
        }
    }
    dir.join("Images")
}

/// A plain image file name: no directories, an image extension.
pub(crate) fn is_image_name(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    !s.contains(['/', '\\'])
        && [".jpg", ".jpeg", ".png"]
            .iter()
            .any(|ext| lower.len() > ext.len() && lower.ends_with(ext))
}

/// `2258277193_586949ec62.jpg.1`: an image name with a numeric suffix after the extension.
fn is_orphan_key(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(stem, n)| {
        !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && is_image_name(stem)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{detect, load, Dataset, Format, LoadOptions};
    use std::fs;

    fn png(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(2, 2, image::Rgb([10, 20, 30]))
            .save_with_format(path, image::ImageFormat::Png)
            .unwrap();
    }

    fn opts() -> LoadOptions {
        LoadOptions::default()
    }

    fn count(ds: &Dataset, r: SkipReason) -> usize {
        ds.skipped.counts().get(&r).copied().unwrap_or(0)
    }

    const KAGGLE: &str = "image,caption\n\
        a.jpg,A dog runs .\n\
        a.jpg,\"A dog, brown, runs .\"\n\
        b.jpg,A cat sits\n\
        b.jpg,\n\
        b.jpg, . \n\
        justonefield\n\
        notanimage,caption here\n\
        c.jpg,A bird flies , high\n\
        gone.jpg,A missing image .\n";

    fn kaggle_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("captions.txt"), KAGGLE).unwrap();
        for n in ["a.jpg", "b.jpg", "c.jpg"] {
            png(&d.path().join("Images").join(n));
        }
        d
    }

    #[test]
    fn kaggle_rows_quotes_and_skips() {
        let d = kaggle_dir();
        assert_eq!(detect(d.path()).unwrap(), Format::Flickr8kKaggle);
        let ds = load(d.path(), &opts()).unwrap();
        let ids: Vec<&str> = ds.samples.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a.jpg", "b.jpg", "c.jpg"]);
        assert_eq!(
            ds.samples[0].captions,
            ["A dog runs .", "A dog, brown, runs ."]
        );
        assert_eq!(ds.samples[1].captions, ["A cat sits"]);
        // Unquoted comma: the rest of the row is the caption.
        assert_eq!(ds.samples[2].captions, ["A bird flies , high"]);
        assert_eq!(ds.samples[0].path, d.path().join("Images/a.jpg"));
        assert_eq!(count(&ds, SkipReason::EmptyCaption), 2);
        assert_eq!(count(&ds, SkipReason::MalformedRow), 2);
        assert_eq!(count(&ds, SkipReason::MissingImage), 1);
        assert_eq!((ds.images_listed, ds.images_missing), (4, 1));
        assert!(ds
            .skipped
            .items
            .iter()
            .any(|(_, d)| d.ends_with("captions.txt:7")));
        // No split lists: a seeded split over all listed images.
        assert_eq!(ds.split_counts().iter().sum::<usize>(), 3);

        let kept = load(
            &d.path().join("captions.txt"),
            &LoadOptions {
                keep_missing: true,
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(kept.samples.len(), 4);
        assert_eq!(kept.images_missing, 1);
        assert_eq!(count(&kept, SkipReason::MissingImage), 0);
    }

    #[test]
    fn verify_images_skips_undecodable_files() {
        let d = kaggle_dir();
        fs::write(d.path().join("Images/b.jpg"), b"not a jpeg at all").unwrap();
        let ds = load(
            d.path(),
            &LoadOptions {
                verify_images: true,
                ..opts()
            },
        )
        .unwrap();
        let ids: Vec<&str> = ds.samples.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a.jpg", "c.jpg"]);
        assert_eq!(count(&ds, SkipReason::UnreadableImage), 1);
        // Without verification the broken file only has to exist.
        assert_eq!(load(d.path(), &opts()).unwrap().samples.len(), 3);
    }

    #[test]
    fn seeded_split_ignores_row_order() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let rows: Vec<String> = (0..50)
            .map(|i| format!("img{i}.jpg,caption number {i}"))
            .collect();
        let mut rev = rows.clone();
        rev.reverse();
        fs::write(
            d1.path().join("captions.txt"),
            format!("image,caption\n{}\n", rows.join("\n")),
        )
        .unwrap();
        fs::write(
            d2.path().join("captions.txt"),
            format!("image,caption\n{}\n", rev.join("\n")),
        )
        .unwrap();
        let o = LoadOptions {
            keep_missing: true,
            seed: 7,
            ..opts()
        };
        let split_of = |ds: &Dataset| {
            let mut v: Vec<(String, Split)> =
                ds.samples.iter().map(|s| (s.id.clone(), s.split)).collect();
            v.sort();
            v
        };
        let (a, b) = (load(d1.path(), &o).unwrap(), load(d2.path(), &o).unwrap());
        assert_eq!(split_of(&a), split_of(&b));
        assert_eq!(a.split_counts(), [40, 5, 5]);
        let c = load(
            d1.path(),
            &LoadOptions {
                seed: 8,
                ..o.clone()
            },
        )
        .unwrap();
        assert_ne!(split_of(&a), split_of(&c));
        let bad = LoadOptions {
            ratios: [0.0, 0.0, 0.0],
            ..o
        };
        assert!(load(d1.path(), &bad)
            .unwrap_err()
            .to_string()
            .contains("split ratios"));
    }

    #[test]
    fn uiuc_orphan_key_and_split_lists() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        let token = "a.jpg#0\tA dog runs .\na.jpg#1\tA dog plays\n\
            2258277193_586949ec62.jpg.1#0\tpeople waiting for the subway\n\
            b.jpg#0\tA cat .\nc.jpg#0\tA bird .\nd.jpg#0\tNo split for me\n\
            garbage line without tab\n\ne.jpg#0\t \n";
        fs::write(p.join("Flickr8k.token.txt"), token).unwrap();
        fs::write(p.join("Flickr_8k.trainImages.txt"), "a.jpg\r\nb.jpg\n").unwrap();
        fs::write(p.join("Flickr_8k.devImages.txt"), "c.jpg\n").unwrap();
        fs::write(p.join("Flickr_8k.testImages.txt"), "b.jpg\n").unwrap();
        for n in ["a.jpg", "b.jpg", "c.jpg", "d.jpg"] {
            png(&p.join("Flicker8k_Dataset").join(n));
        }
        assert_eq!(detect(p).unwrap(), Format::Flickr8kUiuc);
        let ds = load(p, &opts()).unwrap();
        let got: Vec<(&str, Split, usize)> = ds
            .samples
            .iter()
            .map(|s| (s.id.as_str(), s.split, s.captions.len()))
            .collect();
        assert_eq!(
            got,
            [
                ("a.jpg", Split::Train, 2),
                ("b.jpg", Split::Train, 1),
                ("c.jpg", Split::Dev, 1)
            ]
        );
        assert_eq!(ds.samples[0].path, p.join("Flicker8k_Dataset/a.jpg"));
        assert_eq!(count(&ds, SkipReason::OrphanKey), 1);
        assert_eq!(count(&ds, SkipReason::NotInSplit), 1);
        assert_eq!(count(&ds, SkipReason::MalformedRow), 1);
        assert_eq!(count(&ds, SkipReason::EmptyCaption), 1);
        assert_eq!(ds.images_missing, 0);

        // Kaggle file beside it wins unless the format is forced; a file path is sniffed.
        fs::write(p.join("captions.txt"), "image,caption\na.jpg,A dog .\n").unwrap();
        assert_eq!(detect(p).unwrap(), Format::Flickr8kKaggle);
        let forced = LoadOptions {
            format: Some(Format::Flickr8kUiuc),
            ..opts()
        };
        assert_eq!(load(p, &forced).unwrap().format, Format::Flickr8kUiuc);
        assert_eq!(
            detect(&p.join("Flickr8k.token.txt")).unwrap(),
            Format::Flickr8kUiuc
        );
    }

    #[test]
    fn unparseable_sources_are_clear_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        let e = detect(p).unwrap_err().to_string();
        assert!(e.ends_with("no dataset found (expected captions.txt, Flickr8k.token.txt, dataset_*.json or captions_csv.csv)"), "{e}");
        assert!(detect(&p.join("nope")).is_err());
        let forced = LoadOptions {
            format: Some(Format::Karpathy),
            ..opts()
        };
        assert!(load(p, &forced)
            .unwrap_err()
            .to_string()
            .contains("no karpathy dataset found"));

        fs::write(p.join("captions.txt"), "file,text\na.jpg,hello\n").unwrap();
        let e = load(p, &opts()).unwrap_err().to_string();
        assert!(
            e.contains("expected header `image,caption`, found `file,text`"),
            "{e}"
        );
        fs::write(
            p.join("captions.txt"),
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        )
        .unwrap();
        assert!(load(p, &opts())
            .unwrap_err()
            .to_string()
            .contains("binary file"));
        fs::write(p.join("captions.txt"), "").unwrap();
        assert!(load(p, &opts())
            .unwrap_err()
            .to_string()
            .contains("empty captions file"));

        let tok = p.join("x.token.txt");
        fs::write(&tok, "no tabs here\nnor here\n").unwrap();
        let uiuc = LoadOptions {
            format: Some(Format::Flickr8kUiuc),
            ..opts()
        };
        assert!(load(&tok, &uiuc)
            .unwrap_err()
            .to_string()
            .contains("not a Flickr8k token file"));
        assert!(detect(&tok)
            .unwrap_err()
            .to_string()
            .contains("unrecognized captions file"));
    }

    #[test]
    fn names() {
        assert!(is_image_name("1000268201_693b08cb0e.jpg"));
        assert!(is_image_name("X.PNG"));
        assert!(!is_image_name(".jpg"));
        assert!(!is_image_name("dir/a.jpg"));
        assert!(is_orphan_key("2258277193_586949ec62.jpg.1"));
        assert!(!is_orphan_key("a.jpg.x"));
        assert_eq!(
            "Flickr8k-UIUC".parse::<Format>().unwrap(),
            Format::Flickr8kUiuc
        );
        assert_eq!("kaggle".parse::<Format>().unwrap(), Format::Flickr8kKaggle);
        assert!("coco"
            .parse::<Format>()
            .unwrap_err()
            .to_string()
            .contains("expected flickr8k-kaggle"));
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>().unwrap(), f);
        }
    }
}
