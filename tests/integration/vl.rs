//! BLIP and GIT Hugging Face folders in place of run directories (docs/vision-language.md), on
//! the tiny random folders of `notebooks/make_blip_git_fixtures.py`: `caption` writes the
//! captions `transformers` wrote (greedy, beam 3, BLIP's prompt), a batch captions each image as
//! it would alone, `eval` scores a synthetic split zero-shot, and a broken folder is one error
//! line with exit code 2.
use std::fs;
use std::path::{Path, PathBuf};

use super::common::{bad_input, ok, s, synth};

fn folder(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

fn expected(name: &str) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(folder(name).join("captions.json")).unwrap()).unwrap()
}

/// The caption column of `caption`'s lines.
fn captions(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| l.split_once('\t').map_or("", |x| x.1).to_string())
        .collect()
}

#[test]
fn blip_and_git_folders_caption_as_transformers_generates() {
    for name in ["blip", "git"] {
        let d = folder(name);
        let pics = [d.join("picture.png"), d.join("small.png")];
        let want = expected(name);
        for (key, flags) in [("greedy", ["--beam", "1"]), ("beam3", ["--beam", "3"])] {
            let mut args = vec![
                "caption",
                s(&d),
                s(&pics[0]),
                s(&pics[1]),
                "--max-len",
                "12",
            ];
            args.extend(flags);
            args.extend(["--length-alpha", "1"]);
            let got = captions(&ok(&args));
            let want: Vec<String> = want[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            assert_eq!(got, want, "{name} {key}");
        }
    }
    let d = folder("blip");
    let out = ok(&[
        "caption",
        s(&d),
        s(&d.join("picture.png")),
        s(&d.join("small.png")),
        "--beam",
        "1",
        "--max-len",
        "12",
        "--prompt",
        "a picture of",
    ]);
    let want = expected("blip");
    for (got, w) in captions(&out)
        .iter()
        .zip(want["prompt_greedy"].as_array().unwrap())
    {
        assert_eq!(got, w.as_str().unwrap());
    }
}

#[test]
fn a_batch_captions_each_image_as_alone_and_eval_scores_a_split() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 40, 48, "flickr8k");
    let images: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = fs::read_dir(data.join("Images"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    let git = folder("git");
    // 20 images: two batches of the command's 16.
    let dir = tmp.path().join("pics");
    fs::create_dir(&dir).unwrap();
    for p in &images[..20] {
        fs::copy(p, dir.join(p.file_name().unwrap())).unwrap();
    }
    let all = ok(&["caption", s(&git), s(&dir), "--beam", "3", "--json"]);
    let rows: Vec<serde_json::Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 20);
    for i in [0, 17] {
        let one = ok(&[
            "caption",
            s(&git),
            rows[i]["image"].as_str().unwrap(),
            "--beam",
            "3",
            "--json",
        ]);
        let one: serde_json::Value = serde_json::from_str(one.trim()).unwrap();
        assert_eq!(one["caption"], rows[i]["caption"], "image {i}");
    }
    let preds = tmp.path().join("preds.json");
    let out = ok(&[
        "eval",
        s(&git),
        "--data",
        s(&data),
        "--split",
        "dev",
        "--predictions",
        s(&preds),
    ]);
    assert!(
        out.contains("GIT zero-shot") && out.contains("BLEU-4") && out.contains("CIDEr-D"),
        "{out}"
    );
    let p: Vec<serde_json::Value> =
        serde_json::from_str(&fs::read_to_string(&preds).unwrap()).unwrap();
    let n: usize = out.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(p.len(), n);
    assert!(n > 0 && p.iter().all(|x| x["caption"].is_string()));
}

#[test]
fn a_broken_folder_is_one_error_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("blip");
    fs::create_dir(&d).unwrap();
    for f in [
        "config.json",
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        fs::copy(folder("blip").join(f), d.join(f)).unwrap();
    }
    let pic = folder("blip").join("picture.png");
    let e = bad_input(&["caption", s(&d), s(&pic)]);
    assert!(e.contains("no model.safetensors"), "{e}");
    // A config whose sizes disagree with the weights.
    fs::copy(
        folder("blip").join("model.safetensors"),
        d.join("model.safetensors"),
    )
    .unwrap();
    let mut c: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    c["text_config"]["intermediate_size"] = 48.into();
    fs::write(d.join("config.json"), c.to_string()).unwrap();
    let e = bad_input(&["caption", s(&d), s(&pic)]);
    assert!(e.contains("config.json implies"), "{e}");
    let e = bad_input(&[
        "caption",
        s(&folder("git")),
        s(&pic),
        "--attention",
        s(tmp.path()),
    ]);
    assert!(e.contains("not available for BLIP/GIT"), "{e}");
}
