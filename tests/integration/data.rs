//! synth, data stats, vocab build, bleu — and their bad-input behaviour.
use std::fs;

use super::common::{bad_input, ok, s, synth};

#[test]
fn synth_is_deterministic_and_loadable() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    synth(&a, 30, 48, "flickr8k");
    synth(&b, 30, 48, "flickr8k");
    assert_eq!(
        fs::read(a.join("captions.txt")).unwrap(),
        fs::read(b.join("captions.txt")).unwrap()
    );
    assert_eq!(
        fs::read(a.join("Images/synth_00007.jpg")).unwrap(),
        fs::read(b.join("Images/synth_00007.jpg")).unwrap()
    );
    let st: serde_json::Value =
        serde_json::from_str(&ok(&["data", "stats", s(&a), "--json"])).unwrap();
    assert_eq!(st["images_found"], 30);
    assert_eq!(st["images_missing"], 0);
    assert_eq!(st["captions"], 150);
    assert_eq!(st["samples_per_split"]["train"], 24);
}

#[test]
fn instagram_layout_has_hashtags_and_counted_noise() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("insta");
    synth(&d, 200, 32, "instagram");
    let st: serde_json::Value =
        serde_json::from_str(&ok(&["data", "stats", s(&d), "--json"])).unwrap();
    assert!(st["distinct_hashtags"].as_u64().unwrap() >= 8, "{st}");
    assert!(
        st["images_missing"].as_u64().unwrap() >= 1,
        "synth drops ~1% of images: {st}"
    );
    let top: Vec<&str> = st["top_hashtags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert!(
        top.iter().all(|t| t.chars().all(|c| !c.is_uppercase())),
        "tags are lowercased: {top:?}"
    );
}

#[test]
fn corrupt_and_missing_images_are_counted_not_fatal() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("d");
    synth(&d, 20, 32, "flickr8k");
    fs::write(d.join("Images/synth_00001.jpg"), b"not a jpeg at all").unwrap();
    fs::remove_file(d.join("Images/synth_00002.jpg")).unwrap();
    let st: serde_json::Value =
        serde_json::from_str(&ok(&["data", "stats", s(&d), "--verify", "--json"])).unwrap();
    assert_eq!(st["images_missing"], 1, "{st}");
    assert_eq!(st["skipped"]["unreadable image"], 1, "{st}");
}

#[test]
fn vocab_build_writes_specials_first() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("d");
    synth(&d, 20, 32, "flickr8k");
    let out = t.path().join("vocab.json");
    ok(&[
        "vocab",
        "build",
        s(&d),
        "--out",
        s(&out),
        "--min-count",
        "1",
    ]);
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&out).unwrap()).unwrap();
    let words: Vec<&str> = v["words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(&words[..4], &["<pad>", "<start>", "<end>", "<unk>"]);
    assert!(words.contains(&"circle") || words.contains(&"square") || words.contains(&"triangle"));
}

#[test]
fn bleu_scores_a_reference_as_perfect_and_a_constant_as_poor() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("d");
    synth(&d, 40, 32, "flickr8k");
    // References from the dataset's dev split; predictions = each image's first reference.
    let csv = fs::read_to_string(d.join("captions.txt")).unwrap();
    let dev: Vec<String> = fs::read_to_string(d.join("Flickr_8k.devImages.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let mut preds = vec![];
    for id in &dev {
        let line = csv
            .lines()
            .find(|l| l.starts_with(&format!("{id},")))
            .unwrap();
        let caption = line.split_once(',').unwrap().1.trim_matches('"');
        preds.push(serde_json::json!({"image_id": id, "caption": caption}));
    }
    let p = t.path().join("preds.json");
    fs::write(&p, serde_json::to_string(&preds).unwrap()).unwrap();
    let r: serde_json::Value = serde_json::from_str(&ok(&[
        "bleu",
        "--predictions",
        s(&p),
        "--references",
        s(&d),
        "--split",
        "dev",
        "--json",
    ]))
    .unwrap();
    assert!((r["bleu"][3].as_f64().unwrap() - 1.0).abs() < 1e-9, "{r}");
    // Plain text, one line per image in id order: a constant caption scores low.
    let lines = t.path().join("preds.txt");
    fs::write(&lines, "a picture of a red circle\n".repeat(dev.len())).unwrap();
    let r: serde_json::Value = serde_json::from_str(&ok(&[
        "bleu",
        "--predictions",
        s(&lines),
        "--references",
        s(&d),
        "--split",
        "dev",
        "--mode",
        "nltk",
        "--json",
    ]))
    .unwrap();
    assert!(r["bleu"][0].as_f64().unwrap() < 0.9, "{r}");
}

#[test]
fn bad_inputs_exit_2_with_one_line() {
    let t = tempfile::tempdir().unwrap();
    bad_input(&["data", "stats", "/definitely/not/here"]);
    let empty = t.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let e = bad_input(&["data", "stats", s(&empty)]);
    assert!(e.contains("no dataset"), "{e}");
    let garbage = t.path().join("garbage");
    fs::create_dir(&garbage).unwrap();
    fs::write(
        garbage.join("captions.txt"),
        [0u8, 159, 146, 150, 255, 0, 1],
    )
    .unwrap();
    bad_input(&["data", "stats", s(&garbage)]);
    let bad_json = t.path().join("p.json");
    fs::write(&bad_json, "[{\"image_id\": 1, \"caption\": ").unwrap();
    bad_input(&[
        "bleu",
        "--predictions",
        s(&bad_json),
        "--references",
        s(&bad_json),
    ]);
    bad_input(&["synth", "--out", s(&t.path().join("x")), "--size", "8"]);
    // A directory with other content is not overwritten by synth.
    fs::write(empty.join("precious.txt"), "keep me").unwrap();
    bad_input(&["synth", "--out", s(&empty), "--count", "3"]);
    assert_eq!(
        fs::read_to_string(empty.join("precious.txt")).unwrap(),
        "keep me"
    );
    // The device flag is validated.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_captag"))
        .args(["--device", "tpu", "data", "stats", s(&empty)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--device tpu"));
}
