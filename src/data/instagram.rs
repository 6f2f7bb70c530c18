//! The Kaggle "Instagram Images with Captions" layout (docs/ARCHITECTURE.md "Data formats"):
//! `instagram_data/captions_csv.csv` (header `Sr No,Image File,Caption`) with `img/`, and
//! `instagram_data2/captions_csv2.csv` (no header row) with `img2/`; `Image File` is relative
//! to the CSV's folder and has no extension (`img/insta2` → `img/insta2.jpg`).
//!
//! - The header is recognized by content (a field reading `Image File` or `Caption`), never
//!   assumed; without one the columns are `Sr No, Image File, Caption`, or `Image File, Caption`
//!   when the first field is not a number. Unquoted commas in a caption are tolerated (the rest
//!   of the row is the caption); quoted captions may span several lines.
//! - Each row's caption goes through [`crate::text::extract_tags`]: the sample's caption is the
//!   text without hashtags/mentions, its `hashtags` the labels. A row with neither words nor
//!   hashtags is [`SkipReason::EmptyCaption`]; a row with hashtags but no words is kept with no
//!   caption (useful to the hashtag head). A row without an image reference is malformed.
//! - Sample ids are the image path as the CSV gives it, with `.jpg`: `img/insta2.jpg`,
//!   `img2/insta2.jpg`. A later CSV that reuses an id of an earlier one gets its file stem in
//!   front (`captions_csv2/img/insta2.jpg`) so ids stay unique; repeated rows within one CSV
//!   add captions to the same image.
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{
    existing, has_words, parent_dir, read_text, sorted_entries, Grouper, Parsed, SkipReason,
    SkipReport,
};
use crate::error::{Error, Result};
use crate::text::extract_tags;

/// The Kaggle CSVs in `dir` and in its `instagram_data*/` folders. Only the Kaggle file names:
/// a folder that also holds `captions_csv_extended.csv` (a superset of `captions_csv.csv`) must
/// not load the same rows twice; give such a file by path instead.
pub(crate) fn find(dir: &Path) -> Vec<PathBuf> {
    let names = ["captions_csv.csv", "captions_csv2.csv"];
    let mut files = existing(&names.map(|n| dir.join(n)));
    for sub in sorted_entries(dir) {
        let name = sub
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if sub.is_dir() && name.starts_with("instagram_data") {
            files.extend(existing(&names.map(|n| sub.join(n))));
        }
    }
    files
}

pub(crate) fn parse(files: &[PathBuf]) -> Result<Parsed> {
    let mut g = Grouper::default();
    let mut skipped = SkipReport::default();
    for file in files {
        parse_one(file, &mut g, &mut skipped)?;
    }
    Ok(Parsed {
        entries: g.entries,
        skipped,
        has_splits: false,
    })
}

fn parse_one(file: &Path, g: &mut Grouper, skipped: &mut SkipReport) -> Result<()> {
    let text = read_text(file)?;
    let dir = parent_dir(file);
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut ids_here: HashSet<String> = HashSet::new();
    let (mut img_col, mut cap_col) = (1, 2);
    let (mut first, mut good, mut malformed) = (true, 0usize, 0usize);
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                malformed += 1;
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                skipped.push(
                    SkipReason::MalformedRow,
                    format!("{}:{line}: {e}", file.display()),
                );
                continue;
            }
        };
        let field = |i: usize| rec.get(i).unwrap_or("").trim();
        if std::mem::take(&mut first) {
            let lower: Vec<String> = rec.iter().map(|f| f.trim().to_ascii_lowercase()).collect();
            let find = |names: &[&str]| lower.iter().position(|f| names.contains(&f.as_str()));
            if find(&["caption", "image file"]).is_some() {
                img_col = find(&["image file", "image"]).unwrap_or(1);
                cap_col = find(&["caption"]).unwrap_or(img_col + 1);
                continue;
            }
            if field(0).parse::<u64>().is_err() && looks_like_image_ref(field(0)) {
                (img_col, cap_col) = (0, 1);
            }
        }
        let at = format!(
            "{}:{}",
            file.display(),
            rec.position().map(|p| p.line()).unwrap_or(0)
        );
        let image = field(img_col);
        if image.is_empty() || image.contains(char::is_whitespace) {
            malformed += 1;
            skipped.push(SkipReason::MalformedRow, at);
            continue;
        }
        good += 1;
        let raw = rec.iter().skip(cap_col).collect::<Vec<_>>().join(",");
        let tagged = extract_tags(&raw);
        let has_text = has_words(&tagged.text);
        if !has_text && tagged.hashtags.is_empty() {
            skipped.push(SkipReason::EmptyCaption, at);
            continue;
        }
        let rel = if has_image_ext(image) {
            image.to_string()
        } else {
            format!("{image}.jpg")
        };
        if super::resolve_inside(&dir, &rel).is_none() {
            skipped.push(SkipReason::OutsideDataset, format!("{at}: {rel}"));
            continue;
        }
        let mut id = rel.clone();
        if g.contains(&id) && !ids_here.contains(&id) {
            id = format!("{stem}/{rel}");
        }
        ids_here.insert(id.clone());
        g.add(
            &id,
            || dir.join(&rel),
            has_text.then_some(tagged.text),
            &tagged.hashtags,
        );
    }
    if good == 0 && malformed > 0 {
        return Err(Error::invalid(format!(
            "{}: not an Instagram captions CSV (expected rows `Sr No,Image File,Caption`)",
            file.display()
        )));
    }
    Ok(())
}

fn has_image_ext(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    [".jpg", ".jpeg", ".png"].iter().any(|e| lower.ends_with(e))
}

fn looks_like_image_ref(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_whitespace) && (s.contains('/') || has_image_ext(s))
}

#[cfg(test)]
mod tests {
    use crate::data::{detect, load, Dataset, Format, LoadOptions, SkipReason};
    use std::fs;
    use std::path::Path;

    fn touch(p: &Path) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"x").unwrap();
    }

    fn count(ds: &Dataset, r: SkipReason) -> usize {
        ds.skipped.counts().get(&r).copied().unwrap_or(0)
    }

    fn kaggle_layout() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("instagram_data");
        let b = d.path().join("instagram_data2");
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        let csv1 = "Sr No,Image File,Caption\n\
            1,img/insta1,\n\
            2,img/insta2,bye \n\
            3,img/insta3,\"Ok, a few more... sorry #Fun #fun\"\n\
            4,img/insta4,\"Walk the walk @vogueindia Jan 2020\n\nStory link in bio\"\n\
            5,,orphan caption\n\
            6,img/insta6,😍🔥\n\
            7,img/insta7,#love #InstaGood\n";
        fs::write(a.join("captions_csv.csv"), csv1).unwrap();
        // Headerless second CSV, reusing an id of the first one.
        let csv2 = "1,img2/insta1,Sunset 🌅 #beach.\n2,img/insta2,Not the same picture\n";
        fs::write(b.join("captions_csv2.csv"), csv2).unwrap();
        for n in [
            "img/insta2.jpg",
            "img/insta3.jpg",
            "img/insta4.jpg",
            "img/insta7.jpg",
        ] {
            touch(&a.join(n));
        }
        touch(&b.join("img2/insta1.jpg"));
        d
    }

    #[test]
    fn kaggle_layout_with_both_csvs() {
        let d = kaggle_layout();
        assert_eq!(detect(d.path()).unwrap(), Format::Instagram);
        let headerless = d.path().join("instagram_data2/captions_csv2.csv");
        assert_eq!(detect(&headerless).unwrap(), Format::Instagram);
        let ds = load(
            d.path(),
            &LoadOptions {
                keep_missing: true,
                ..Default::default()
            },
        )
        .unwrap();
        let ids: Vec<&str> = ds.samples.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "img/insta2.jpg",
                "img/insta3.jpg",
                "img/insta4.jpg",
                "img/insta7.jpg",
                "img2/insta1.jpg",
                "captions_csv2/img/insta2.jpg"
            ]
        );
        let s = |id: &str| ds.samples.iter().find(|s| s.id == id).unwrap();
        assert_eq!(s("img/insta3.jpg").captions, ["Ok, a few more... sorry"]);
        assert_eq!(s("img/insta3.jpg").hashtags, ["fun"]);
        assert_eq!(
            s("img/insta4.jpg").captions,
            ["Walk the walk Jan 2020 Story link in bio"]
        );
        assert!(s("img/insta7.jpg").captions.is_empty());
        assert_eq!(s("img/insta7.jpg").hashtags, ["love", "instagood"]);
        assert_eq!(s("img2/insta1.jpg").captions, ["Sunset 🌅"]);
        assert_eq!(s("img2/insta1.jpg").hashtags, ["beach"]);
        assert_eq!(
            s("img2/insta1.jpg").path,
            d.path().join("instagram_data2/img2/insta1.jpg")
        );
        assert_eq!(
            s("img/insta2.jpg").path,
            d.path().join("instagram_data/img/insta2.jpg")
        );
        assert_eq!(count(&ds, SkipReason::EmptyCaption), 2);
        assert_eq!(count(&ds, SkipReason::MalformedRow), 1);
        assert_eq!(ds.images_missing, 1);

        let strict = load(d.path(), &LoadOptions::default()).unwrap();
        assert_eq!(strict.samples.len(), 5);
        assert_eq!(count(&strict, SkipReason::MissingImage), 1);
    }

    #[test]
    fn image_references_outside_the_dataset_are_skipped_and_counted() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret.jpg");
        touch(&secret);
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("instagram_data");
        fs::create_dir_all(dir.join("img")).unwrap();
        touch(&dir.join("img/ok.jpg"));
        std::os::unix::fs::symlink(&secret, dir.join("img/link.jpg")).unwrap();
        let csv = format!(
            "Sr No,Image File,Caption\n1,../../../../tmp/x,a\n2,{},b\n3,img/ok,c\n4,img/link,d\n5,img/../../x,e\n",
            secret.with_extension("").display()
        );
        fs::write(dir.join("captions_csv.csv"), csv).unwrap();
        let ds = load(d.path(), &LoadOptions::default()).unwrap();
        let ids: Vec<&str> = ds.samples.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["img/ok.jpg"]);
        assert_eq!(count(&ds, SkipReason::OutsideDataset), 4);
    }

    #[test]
    fn csv_file_given_directly_and_two_column_headerless() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("captions_csv_extended.csv");
        fs::write(
            &p,
            "Sr No,Image File,Caption\n1,img/insta1,Hello there, world #hi\n",
        )
        .unwrap();
        assert_eq!(detect(&p).unwrap(), Format::Instagram);
        let ds = load(
            &p,
            &LoadOptions {
                keep_missing: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(ds.samples[0].captions, ["Hello there, world"]);
        assert_eq!(ds.samples[0].path, d.path().join("img/insta1.jpg"));

        let p2 = d.path().join("two.csv");
        fs::write(&p2, "img/a.jpg,\"first line\nsecond line\"\nimg/b,plain\n").unwrap();
        let o = LoadOptions {
            format: Some(Format::Instagram),
            keep_missing: true,
            ..Default::default()
        };
        let ds = load(&p2, &o).unwrap();
        let got: Vec<(&str, &str)> = ds
            .samples
            .iter()
            .map(|s| (s.id.as_str(), s.captions[0].as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("img/a.jpg", "first line second line"),
                ("img/b.jpg", "plain")
            ]
        );

        let p3 = d.path().join("bad.csv");
        fs::write(&p3, "a b c,\n,\n").unwrap();
        let e = load(&p3, &o).unwrap_err().to_string();
        assert!(e.contains("not an Instagram captions CSV"), "{e}");
    }
}
