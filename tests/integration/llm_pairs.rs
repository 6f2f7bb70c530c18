//! `captag llm pairs --captioner RUN [--clip HF_DIR]`: the image recipe's prompts are the ones
//! `caption RUN IMAGE --llm` builds (its caption, hashtags and moods), the responses the posts'
//! captions; pictures that are missing or unreadable are left out and counted.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::common::{bad_input, ok, s, synth, tiny_train_args};

fn clip() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/clip")
}

/// `(id, caption)` of the CSV's rows with a caption.
fn captioned_rows(csv: &Path) -> Vec<(String, String)> {
    let mut rdr = csv::Reader::from_path(csv).unwrap();
    rdr.records()
        .map(|r| r.unwrap())
        .map(|r| (r[1].to_string(), r[2].trim().to_string()))
        .filter(|(_, c)| !c.is_empty())
        .collect()
}

fn read_jsonl(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The prompt `caption --llm` gives the LLM for one `caption --json` result.
fn prompt_of(v: &serde_json::Value) -> String {
    let caption = v["caption"].as_str().unwrap();
    let mut p = format!(
        "Write an Instagram caption for my photo. What the photo shows: {}.",
        caption.trim().trim_end_matches('.')
    );
    let moods: Vec<&str> = v["moods"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m["label"].as_str().unwrap())
        .collect();
    if !moods.is_empty() {
        p += &format!(" Mood: {}.", moods.join(", "));
    }
    let tags: Vec<String> = v["hashtags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("#{}", t["tag"].as_str().unwrap()))
        .collect();
    if !tags.is_empty() {
        p += &format!(" Hashtags: {}.", tags.join(" "));
    }
    p
}

#[test]
fn llm_pairs_with_a_captioner_prompt_with_its_captions_moods_and_hashtags() {
    let d = tempfile::tempdir().unwrap();
    let (data, run) = (d.path().join("data"), d.path().join("run"));
    synth(&data, 12, 32, "instagram");
    let csv = data.join("captions_csv.csv");
    let rows = captioned_rows(&csv);
    assert!(rows.len() >= 6, "{rows:?}");
    let mut args = tiny_train_args(&data, &run, 1, "lstm", "32");
    args.push("--hashtags".into());
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // One picture removed, one made unreadable: both are left out and counted.
    let picture = |id: &str| data.join(format!("{id}.jpg"));
    std::fs::remove_file(picture(&rows[0].0)).unwrap();
    std::fs::write(picture(&rows[1].0), b"not a jpeg").unwrap();
    let out = d.path().join("pairs.jsonl");
    let said = ok(&[
        "llm",
        "pairs",
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--captioner",
        s(&run),
        "--clip",
        s(&clip()),
        "--test-share",
        "0.3",
    ]);
    let kept = rows.len() - 2;
    assert!(said.contains(&format!("{kept} pairs")), "{said}");
    assert!(said.contains("image recipe"), "{said}");
    assert!(said.contains("1 without their picture"), "{said}");
    assert!(said.contains("1 whose picture could not be read"), "{said}");
    let pairs = read_jsonl(&out);
    assert_eq!(pairs.len(), kept);

    // `caption RUN IMAGES --json --moods --clip` on the same pictures.
    let mut a: Vec<String> = vec!["caption".into(), s(&run).into()];
    a.extend(rows[2..].iter().map(|(id, _)| s(&picture(id)).to_string()));
    a.extend(["--json", "--clip", s(&clip()), "--moods"].map(String::from));
    let captioned: HashMap<String, serde_json::Value> =
        ok(&a.iter().map(String::as_str).collect::<Vec<_>>())
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| (v["image"].as_str().unwrap().to_string(), v))
            .collect();
    let truth: HashMap<&str, &str> = rows.iter().map(|(i, c)| (i.as_str(), c.as_str())).collect();
    let (mut splits, mut tagged) = (std::collections::HashSet::new(), 0);
    for p in &pairs {
        let id = p["id"].as_str().unwrap();
        assert_eq!(p["recipe"], "image");
        assert_eq!(p["response"].as_str().unwrap(), truth[id], "{id}");
        let c = &captioned[s(&picture(id))];
        assert_eq!(c["moods"].as_array().unwrap().len(), 3);
        tagged += usize::from(!c["hashtags"].as_array().unwrap().is_empty());
        assert_eq!(p["prompt"].as_str().unwrap(), prompt_of(c), "{id}");
        splits.insert(p["split"].as_str().unwrap().to_string());
    }
    assert_eq!(splits.len(), 2, "both splits: {splits:?}");
    assert!(tagged > 0, "the hashtag head tagged no picture");

    // Without --clip: no moods; without --captioner: the text recipe, every captioned post.
    let plain = d.path().join("plain.jsonl");
    ok(&[
        "llm",
        "pairs",
        "--data",
        s(&data),
        "--out",
        s(&plain),
        "--captioner",
        s(&run),
    ]);
    for p in read_jsonl(&plain) {
        let id = p["id"].as_str().unwrap();
        let mut c = captioned[s(&picture(id))].clone();
        c["moods"] = serde_json::Value::Null;
        assert_eq!(p["prompt"].as_str().unwrap(), prompt_of(&c), "{id}");
    }
    let text = d.path().join("text.jsonl");
    let said = ok(&["llm", "pairs", "--data", s(&data), "--out", s(&text)]);
    assert!(said.contains("text recipe"), "{said}");
    let text = read_jsonl(&text);
    assert_eq!(text.len(), rows.len());
    assert!(text.iter().all(|p| p["recipe"] == "text"
        && p["prompt"]
            .as_str()
            .unwrap()
            .contains("No picture is available")));

    // A bad --captioner, and a captioner over posts with no pictures: one line, nothing written.
    let none = d.path().join("none.jsonl");
    let e = bad_input(&[
        "llm",
        "pairs",
        "--data",
        s(&data),
        "--out",
        s(&none),
        "--captioner",
        s(&data),
    ]);
    assert!(e.contains("config.json"), "{e}");
    let bare = d.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    std::fs::copy(&csv, bare.join("captions_csv.csv")).unwrap();
    let e = bad_input(&[
        "llm",
        "pairs",
        "--data",
        s(&bare),
        "--out",
        s(&none),
        "--captioner",
        s(&run),
    ]);
    assert!(e.contains("has its picture here"), "{e}");
    assert!(!none.exists());
}
