//! `captag emoji`: the caption-text ⇒ emoji model learns a synthetic Instagram set's colour
//! emoji from the colour words, normalises the spellings of one emoji into one label end to end,
//! and refuses bad input (missing or malformed data, a model of the wrong kind) with one
//! `error:` line and exit code 2.
use std::fs;
use std::path::Path;

use super::common::{bad_input, ok, s, synth};

fn train(data: &Path, model: &Path) -> String {
    ok(&["emoji", "train", "--data", s(data), "--out", s(model)])
}

fn eval_json(model: &Path, data: &Path, split: &str) -> serde_json::Value {
    let out = ok(&[
        "emoji",
        "eval",
        s(model),
        "--data",
        s(data),
        "--split",
        split,
        "--json",
    ]);
    serde_json::from_str(&out).unwrap()
}

#[test]
fn emoji_model_learns_colour_emoji_on_synthetic_posts() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 600, 32, "instagram");
    let csv = fs::read_to_string(data.join("captions_csv.csv")).unwrap();
    assert!(
        csv.contains('🔴') || csv.contains('🔵'),
        "synthetic captions carry emoji"
    );
    let model = t.path().join("emoji.json");
    let line = train(&data, &model);
    assert!(
        line.contains("training posts") && line.contains("emoji"),
        "{line}"
    );
    let saved: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&model).unwrap()).unwrap();
    assert_eq!(saved["kind"], "emoji");

    let r = eval_json(&model, &data, "test");
    assert_eq!(r["kind"], "emoji");
    assert!(r["posts"].as_u64().unwrap() > 0);
    let (m, base) = (&r["rows"][0][1], &r["rows"][1][1]);
    assert_eq!(r["rows"][1][0], "baseline: most frequent training emoji");
    // 70% of the emoji are the colour of a shape the text names; the rest are generic.
    let gain = |k: &str| m[k].as_f64().unwrap() - base[k].as_f64().unwrap();
    assert!(
        gain("recall") > 0.1 && gain("map") > 0.1,
        "emoji model should beat the most-frequent baseline: {r}"
    );
    let table = ok(&["emoji", "eval", s(&model), "--data", s(&data), "--k", "3"]);
    assert!(table.contains("posts with emoji of test"), "{table}");
    assert!(
        table.contains("caption text ⇒ emoji") && table.contains("P@3"),
        "{table}"
    );

    let out = ok(&["emoji", "suggest", s(&model), "a red circle", "-n", "3"]);
    assert_eq!(out.split_whitespace().count(), 3, "{out}");
    assert!(out.starts_with('🔴'), "{out}");
    assert!(!out.contains('#'), "{out}");
}

/// A captions CSV whose posts write one emoji several ways.
fn spelling_fixture(path: &Path) {
    let mut csv = String::from("Sr No,Image File,Caption\n");
    let posts = [
        "Beach day with the crew 🌊",
        "beach waves🌊 #summer",
        "I love you ❤ #love",
        "\"love this, love you ❤️\"",
        "Working late 👩🏽\u{200D}💻 #work",
        "working from home 👩\u{200D}💻",
        "Go team 🇺🇸🇺🇸",
    ];
    for i in 0..210 {
        let p = posts[i % posts.len()];
        csv += &format!("{},img/insta{},{p}\n", i + 1, i + 1);
    }
    fs::write(path, csv).unwrap();
}

#[test]
fn spellings_of_one_emoji_are_one_label() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("captions_csv_extended.csv");
    spelling_fixture(&data);
    let model = t.path().join("emoji.json");
    train(&data, &model);
    let saved: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&model).unwrap()).unwrap();
    let mut labels: Vec<&str> = saved["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    labels.sort_unstable();
    // ❤ and ❤️ one label, the skin tone folded, the flag one emoji; no emoji left in the words.
    assert_eq!(labels, ["❤\u{FE0F}", "🇺🇸", "🌊", "👩\u{200D}💻"], "{saved}");
    let words = saved["words"].as_object().unwrap();
    assert!(words.contains_key("love") && words.contains_key("wave"));
    let suggest = |text: &str| ok(&["emoji", "suggest", s(&model), text, "-n", "1"]);
    assert_eq!(suggest("love").trim(), "❤\u{FE0F}");
    assert_eq!(suggest("a beach").trim(), "🌊");
    assert_eq!(suggest("working").trim(), "👩\u{200D}💻");
    assert_eq!(suggest("team").trim(), "🇺🇸");
}

#[test]
fn bad_input_is_one_error_line() {
    let t = tempfile::tempdir().unwrap();
    let model = t.path().join("emoji.json");
    let missing = t.path().join("missing.csv");
    let e = bad_input(&["emoji", "train", "--data", s(&missing), "--out", s(&model)]);
    assert!(e.contains("missing.csv"), "{e}");
    assert!(!model.exists());

    let malformed = t.path().join("bad.csv");
    fs::write(&malformed, "a b c,\n,\n").unwrap();
    let e = bad_input(&[
        "emoji",
        "train",
        "--data",
        s(&malformed),
        "--format",
        "instagram",
        "--out",
        s(&model),
    ]);
    assert!(e.contains("not an Instagram captions CSV"), "{e}");

    let plain = t.path().join("plain.csv");
    fs::write(
        &plain,
        "Sr No,Image File,Caption\n1,img/a,no emoji here #tag\n2,img/b,none here\n",
    )
    .unwrap();
    let e = bad_input(&["emoji", "train", "--data", s(&plain), "--out", s(&model)]);
    assert!(e.contains("no post has an emoji"), "{e}");

    // Models: missing, not a model, and a model of the other kind (both ways).
    let data = t.path().join("captions_csv_extended.csv");
    spelling_fixture(&data);
    let e = bad_input(&["emoji", "suggest", s(&model), "x"]);
    assert!(e.contains("emoji.json"), "{e}");
    let junk = t.path().join("junk.json");
    fs::write(&junk, "{}").unwrap();
    let e = bad_input(&["emoji", "suggest", s(&junk), "x"]);
    assert!(e.contains("not a captag emoji model"), "{e}");
    let tags = t.path().join("text_tags.json");
    ok(&["tags", "train", "--data", s(&data), "--out", s(&tags)]);
    let e = bad_input(&["emoji", "suggest", s(&tags), "love"]);
    assert!(
        e.contains("a text-hashtag model, not an emoji model"),
        "{e}"
    );
    let e = bad_input(&["emoji", "eval", s(&tags), "--data", s(&data)]);
    assert!(e.contains("not an emoji model"), "{e}");
    train(&data, &model);
    let e = bad_input(&["tags", "suggest", s(&model), "love"]);
    assert!(
        e.contains("an emoji model, not a text-hashtag model"),
        "{e}"
    );
}
