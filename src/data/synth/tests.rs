//! Tests of `generate`: determinism, both on-disk layouts read back with the csv crate, captions
//! true for the scenes drawn, and the safety rules of the output directory.
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::caption::tests::check_caption;
use super::*;

fn cfg(count: usize, layout: SynthLayout) -> SynthConfig {
    SynthConfig {
        count,
        size: 64,
        seed: 11,
        layout,
        noise: true,
    }
}

/// Every file under `dir` (relative path → bytes).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

#[test]
fn same_config_gives_byte_identical_files() {
    for layout in [SynthLayout::Flickr8k, SynthLayout::Instagram] {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let c = cfg(40, layout);
        generate(a.path(), &c).unwrap();
        generate(b.path(), &c).unwrap();
        let (fa, fb) = (files(a.path()), files(b.path()));
        assert!(fa.len() > 40);
        assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
        for (name, bytes) in &fa {
            assert!(bytes == &fb[name], "{name} differs between runs");
        }
        // A different seed gives a different dataset.
        let d = tempfile::tempdir().unwrap();
        generate(d.path(), &SynthConfig { seed: 12, ..c }).unwrap();
        assert_ne!(files(d.path()), fa);
    }
}

#[test]
fn flickr8k_layout_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(50, SynthLayout::Flickr8k);
    let summary = generate(dir.path(), &c).unwrap();
    assert_eq!((summary.images, summary.captions), (50, 250));
    assert_eq!(summary.splits, Some([40, 5, 5]));
    let (header, rows) = read_csv(&dir.path().join("captions.txt"));
    assert_eq!(header, ["image", "caption"]);
    assert_eq!(rows.len(), 250);
    for (i, chunk) in rows.chunks(5).enumerate() {
        let name = format!("synth_{:05}.jpg", i + 1);
        let scene = scene_for(&c, i);
        for row in chunk {
            assert_eq!(row[0], name);
            if let Err(e) = check_caption(&scene, &row[1]) {
                panic!("{name}: false caption {:?}: {e}", row[1]);
            }
        }
        let img = image::open(dir.path().join("Images").join(&name)).unwrap();
        assert_eq!((img.width(), img.height()), (64, 64));
    }
    // The split lists partition the images.
    let mut all: Vec<String> = Vec::new();
    for (file, n) in [("train", 40), ("dev", 5), ("test", 5)] {
        let text =
            fs::read_to_string(dir.path().join(format!("Flickr_8k.{file}Images.txt"))).unwrap();
        let names: Vec<String> = text.lines().map(String::from).collect();
        assert_eq!(names.len(), n);
        all.extend(names);
    }
    all.sort();
    let expected: Vec<String> = (1..=50).map(|i| format!("synth_{i:05}.jpg")).collect();
    assert_eq!(all, expected);
    let marker: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join(MARKER)).unwrap()).unwrap();
    assert_eq!(marker["complete"], true);
    assert_eq!(marker["summary"]["captions"], 250);
}

#[test]
fn instagram_layout_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(dir.path(), &cfg(400, SynthLayout::Instagram)).unwrap();
    let (header, rows) = read_csv(&dir.path().join("captions_csv.csv"));
    assert_eq!(header, ["Sr No", "Image File", "Caption"]);
    assert_eq!(rows.len(), 400);
    let mut missing = 0;
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], (i + 1).to_string());
        assert_eq!(row[1], format!("img/insta{}", i + 1));
        missing += usize::from(!dir.path().join(format!("{}.jpg", row[1])).is_file());
    }
    assert_eq!(missing, summary.missing_images);
    assert!((1..=12).contains(&missing), "{missing}");
    assert_eq!(summary.images + missing, 400);
    let empty = rows.iter().filter(|r| r[2].is_empty()).count();
    assert_eq!(empty, summary.empty_captions);
    assert!(empty >= 3, "{empty}");
    assert!(rows.iter().any(|r| r[2].contains('\n')));
    assert!(rows.iter().any(|r| r[2].contains("#")));
    assert!(!dir.path().join("Images").exists());
}

#[test]
fn refuses_a_foreign_directory_and_cleans_its_own() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let err = generate(dir.path(), &cfg(3, SynthLayout::Flickr8k)).unwrap_err();
    assert!(err.to_string().contains("refusing"), "{err}");
    assert_eq!(files(dir.path()).len(), 1);
    fs::write(dir.path().join(MARKER), "{\"generator\": \"someone else\"}").unwrap();
    assert!(generate(dir.path(), &cfg(3, SynthLayout::Flickr8k)).is_err());

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synth");
    generate(&out, &cfg(20, SynthLayout::Flickr8k)).unwrap();
    fs::write(out.join("README.md"), "user file").unwrap();
    // A smaller rerun leaves no stale images; switching layout leaves no `Images/`.
    generate(&out, &cfg(10, SynthLayout::Flickr8k)).unwrap();
    assert_eq!(fs::read_dir(out.join("Images")).unwrap().count(), 10);
    generate(&out, &cfg(10, SynthLayout::Instagram)).unwrap();
    assert!(!out.join("Images").exists() && !out.join("captions.txt").exists());
    assert!(out.join("README.md").is_file());
}

#[test]
fn invalid_configs_are_rejected_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    for bad in [
        SynthConfig {
            size: 31,
            ..SynthConfig::default()
        },
        SynthConfig {
            count: 0,
            ..SynthConfig::default()
        },
    ] {
        assert!(generate(&out, &bad).is_err());
        assert!(!out.exists());
    }
    let partial: SynthConfig =
        serde_json::from_str("{\"count\": 5, \"layout\": \"instagram\"}").unwrap();
    assert_eq!((partial.count, partial.size, partial.noise), (5, 96, true));
}

#[test]
fn splits_are_80_10_10() {
    let lens = |n| split_indices(n, 0).map(|p| p.len());
    assert_eq!(lens(1000), [800, 100, 100]);
    assert_eq!(lens(3), [1, 1, 1]);
    assert_eq!(lens(1), [1, 0, 0]);
    assert_eq!(lens(14), [12, 1, 1]);
}

/// Not a timed test: `cargo test --release --lib synth::tests::speed -- --ignored --nocapture`;
/// with `SYNTH_KEEP=DIR` the two datasets are kept in `DIR/{flickr8k,instagram}` for a look.
#[test]
#[ignore]
fn speed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::env::var_os("SYNTH_KEEP").map_or(tmp.path().to_path_buf(), Into::into);
    for (name, layout) in [
        ("flickr8k", SynthLayout::Flickr8k),
        ("instagram", SynthLayout::Instagram),
    ] {
        let t = std::time::Instant::now();
        let c = SynthConfig {
            layout,
            ..SynthConfig::default()
        };
        let s = generate(&root.join(name), &c).unwrap();
        println!("{s} in {:.2?}", t.elapsed());
    }
}
