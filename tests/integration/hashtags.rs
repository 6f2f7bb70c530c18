//! Hashtags end to end on synthetic sets: the head learns an image's colour/shape tags, the GRU
//! tag generator trains on the Instagram layout, tags survive the checkpoint round trip, a bad
//! hashtags.json is a clear error, and the caption-text model learns tags from post text.
use std::collections::HashSet;
use std::fs;
use std::path::Path;

use captag::data::{load, LoadOptions, Split};
use captag::text::taglist::TagRule;

use super::common::{bad_input, ok, s, synth};

fn train_tags(data: &Path, run: &Path, epochs: usize, batch: usize, extra: &[&str]) {
    let (epochs, batch) = (epochs.to_string(), batch.to_string());
    let mut args = vec![
        "train",
        "--data",
        s(data),
        "--out",
        s(run),
        "--epochs",
        &epochs,
        "--image-size",
        "32",
        "--schedule",
        "constant",
        "--early-stop",
        "0",
        "--min-count",
        "1",
        "--batch-size",
        &batch,
        "--lr",
        "5e-3",
        "--embed",
        "64",
        "--hidden",
        "128",
        "--dropout",
        "0",
        "--tag-hidden",
        "128",
        "--tag-min-count",
        "1",
    ];
    args.extend_from_slice(extra);
    ok(&args);
}

/// `(image file name, [tags])` from `captag caption --json` lines.
fn caption_tags(out: &str) -> Vec<(String, Vec<String>, serde_json::Value)> {
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let name = Path::new(v["image"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let tags = v["hashtags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["tag"].as_str().unwrap().to_string())
                .collect();
            (name, tags, v)
        })
        .collect()
}

#[test]
fn head_learns_the_colour_and_shape_tags() {
    let t = tempfile::tempdir().unwrap();
    let (data, run) = (t.path().join("data"), t.path().join("run"));
    synth(&data, 24, 32, "flickr8k");
    train_tags(&data, &run, 100, 8, &["--hashtags-only"]);
    // The last weights: the best ones are chosen on dev, and memorising is the point here.
    let out = ok(&[
        "caption",
        s(&run),
        s(&data.join("Images")),
        "--json",
        "--hashtags",
        "20",
        "--last",
    ]);
    let ds = load(&data, &LoadOptions::default()).unwrap();
    let rule = TagRule::Captions { min_agree: 2 };
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (name, tags, v) in caption_tags(&out) {
        assert!(
            v.get("caption").is_none(),
            "hashtags-only runs print no caption"
        );
        let sample = ds.samples.iter().find(|x| x.id == name).unwrap();
        if sample.split != Split::Train {
            continue;
        }
        let truth: HashSet<String> = rule.truth(sample).into_iter().collect();
        let got: HashSet<String> = tags.into_iter().collect();
        tp += got.intersection(&truth).count();
        fp += got.difference(&truth).count();
        fn_ += truth.difference(&got).count();
    }
    let f1 = 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64;
    assert!(
        f1 >= 0.9,
        "head tag F1 on training images {f1:.3} (tp {tp} fp {fp} fn {fn_})"
    );
}

#[test]
fn gru_tag_generator_on_instagram_layout_and_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let (data, run) = (t.path().join("data"), t.path().join("run"));
    synth(&data, 30, 32, "instagram");
    train_tags(
        &data,
        &run,
        3,
        40,
        &["--hashtags", "--hashtag-model", "gru"],
    );
    let list: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("hashtags.json")).unwrap()).unwrap();
    assert_eq!(list["rule"]["source"], "instagram");
    let images = data.join("img");
    let a = ok(&["caption", s(&run), s(&images), "--json"]);
    let b = ok(&["caption", s(&run), s(&images), "--json"]);
    assert_eq!(a, b);
    for (_, _, v) in caption_tags(&a) {
        assert!(v["caption"].is_string());
        for tag in v["hashtags"].as_array().unwrap() {
            assert_eq!(tag["model"], "gru");
        }
    }
    let r: serde_json::Value = serde_json::from_str(&ok(&[
        "eval",
        s(&run),
        "--data",
        s(&data),
        "--split",
        "train",
        "--json",
    ]))
    .unwrap();
    let rows = r["hashtags"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0][0], "GRU tag generator");
}

#[test]
fn hashtags_survive_the_round_trip_and_bad_lists_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let (data, run) = (t.path().join("data"), t.path().join("run"));
    synth(&data, 12, 32, "flickr8k");
    train_tags(&data, &run, 2, 40, &["--hashtags"]);
    let images = data.join("Images");
    let before = ok(&[
        "caption",
        s(&run),
        s(&images),
        "--json",
        "--tag-threshold",
        "0",
    ]);
    let copy = t.path().join("copy");
    fs::create_dir_all(&copy).unwrap();
    for e in fs::read_dir(&run).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    let after = ok(&[
        "caption",
        s(&copy),
        s(&images),
        "--json",
        "--tag-threshold",
        "0",
    ]);
    assert_eq!(before.replace(s(&run), ""), after.replace(s(&copy), ""));
    let tags = caption_tags(&before);
    assert!(
        tags.iter().all(|(_, t, _)| t.len() == 5),
        "threshold 0 prints 5 tags"
    );
    // A label list that does not match the weights, and a corrupt one.
    fs::write(
        copy.join("hashtags.json"),
        r#"{"rule":{"source":"instagram"},"min_count":1,"tags":["a"],"counts":[1],"images":1}"#,
    )
    .unwrap();
    let e = bad_input(&["caption", s(&copy), s(&images)]);
    assert!(e.contains("hashtags.json"), "{e}");
    fs::write(copy.join("hashtags.json"), "not json").unwrap();
    let e = bad_input(&["caption", s(&copy), s(&images)]);
    assert!(e.contains("hashtag list"), "{e}");
}

#[test]
fn text_model_learns_tags_from_post_text() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 300, 32, "instagram");
    let model = t.path().join("text_tags.json");
    ok(&["tags", "train", "--data", s(&data), "--out", s(&model)]);
    let r: serde_json::Value = serde_json::from_str(&ok(&[
        "tags",
        "eval",
        s(&model),
        "--data",
        s(&data),
        "--split",
        "test",
        "--json",
    ]))
    .unwrap();
    let (m, base) = (&r["rows"][0][1], &r["rows"][1][1]);
    // Colour/shape tags follow from the text; the 1–2 generic tags per post do not.
    let gain = |k: &str| m[k].as_f64().unwrap() - base[k].as_f64().unwrap();
    assert!(
        gain("recall") > 0.1 && gain("map") > 0.15,
        "text model should beat the most-frequent baseline: {r}"
    );
    let out = ok(&[
        "tags",
        "suggest",
        s(&model),
        "a red circle and a blue square",
        "-n",
        "4",
    ]);
    for tag in ["#red", "#circle", "#blue", "#square"] {
        assert!(out.contains(tag), "{out}");
    }
    let bad = t.path().join("bad.json");
    fs::write(&bad, "{}").unwrap();
    bad_input(&["tags", "suggest", s(&bad), "x"]);
}
