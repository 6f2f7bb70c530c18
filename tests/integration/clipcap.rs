//! `--decoder clipcap` (the word-level ClipCap prefix captioner, docs/ARCHITECTURE.md "The
//! decoder interface") end to end on tiny synthetic sets: it memorises a handful of images,
//! captions greedily, with beam search and by top-p sampling (every caption ended by `<end>`),
//! resumes exactly, keeps a frozen LM frozen, and runs in `compare`. `caption --moods` ranks
//! mood labels with the tiny random CLIP fixture (tests/fixtures/hf/clip) in cosine order.
use std::fs;
use std::path::Path;

use super::common::{bad_input, ok, one_caption_set, s, synth, tiny_train_args};
use super::runs::exact_resume;

fn weights(run: &Path, file: &str) -> Vec<(String, tch::Tensor)> {
    let mut v = tch::Tensor::read_safetensors(run.join(file)).unwrap();
    v.sort_by(|x, y| x.0.cmp(&y.0));
    v
}

#[test]
fn clipcap_memorises_in_80_epochs_and_captions_greedy_beam_and_top_p() {
    let t = tempfile::tempdir().unwrap();
    let (data, run) = (t.path().join("data"), t.path().join("run"));
    one_caption_set(&data, 10);
    let args = tiny_train_args(&data, &run, 80, "clipcap", "128");
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let cfg = fs::read_to_string(run.join("config.json")).unwrap();
    assert!(cfg.contains("\"kind\": \"clipcap\""), "{cfg}");
    // Train-split scores of the last epoch's weights, with extra decoding flags.
    let eval = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "eval",
            s(&run),
            "--data",
            s(&data),
            "--split",
            "train",
            "--last",
            "--json",
        ];
        args.extend(extra);
        serde_json::from_str(&ok(&args)).unwrap()
    };
    let r = eval(&[]);
    let b4 = r["bleu"]["bleu"][3].as_f64().unwrap();
    assert!(
        b4 >= 0.9,
        "clipcap should memorise 8 training images: BLEU-4 {b4}"
    );
    let beam = eval(&["--beam", "3"]);
    assert!(beam["bleu"]["bleu"][3].as_f64().unwrap() >= 0.9);

    let images = data.join("Images");
    let first = fs::read_dir(&images)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for extra in [
        vec![],
        vec!["--beam", "3"],
        vec!["--top-p", "0.9", "--samples", "3", "--temperature", "1.5"],
    ] {
        let mut a = vec!["caption", s(&run), s(&first), "--json", "--last"];
        a.extend(&extra);
        let v: serde_json::Value = serde_json::from_str(ok(&a).trim()).unwrap();
        let c = v["caption"].as_str().unwrap();
        assert!(!c.is_empty() && !c.contains('<'), "{extra:?}: {c:?}");
        // Ended by <end>, not by the length limit (30 words).
        assert!(c.split_whitespace().count() < 30, "{extra:?}: {c:?}");
    }
    // Sampling is seeded: the same seed gives the same samples.
    let sample = |seed: &str| {
        ok(&[
            "--seed",
            seed,
            "caption",
            s(&run),
            s(&images),
            "--top-p",
            "0.95",
            "--samples",
            "2",
            "--temperature",
            "2",
        ])
    };
    assert_eq!(sample("5"), sample("5"));
}

#[test]
fn exact_resume_clipcap_with_warmup() {
    exact_resume("clipcap", &["--schedule", "warmup", "--warmup", "3"]);
}

#[test]
fn exact_resume_clipcap_transformer_mapper() {
    exact_resume(
        "clipcap",
        &[
            "--mapper",
            "transformer",
            "--mapper-layers",
            "2",
            "--clip-len",
            "4",
            "--prefix-len",
            "3",
        ],
    );
}

/// `--lm frozen`: the mapper's variables move, the language model's never do (and are saved).
#[test]
fn a_frozen_lm_does_not_train() {
    let t = tempfile::tempdir().unwrap();
    let (data, run) = (t.path().join("data"), t.path().join("run"));
    synth(&data, 12, 32, "flickr8k");
    let mut args = tiny_train_args(&data, &run, 1, "clipcap", "128");
    args.extend(["--lm".to_string(), "frozen".to_string()]);
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let before = weights(&run, "last.safetensors");
    let at = args.iter().position(|a| a == "--epochs").unwrap();
    args[at + 1] = "2".into();
    args.push("--resume".into());
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let after = weights(&run, "last.safetensors");
    let (mut lm, mut mapper) = (0, 0);
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        let moved = (a - b).abs().max().double_value(&[]) > 0.0;
        if name.starts_with("decoder.lm.") {
            assert!(!moved, "{name} trained although the LM is frozen");
            lm += 1;
        } else if name.starts_with("decoder.mapper.") {
            mapper += moved as usize;
        }
    }
    assert!(
        lm > 0 && mapper > 0,
        "lm vars {lm}, moved mapper vars {mapper}"
    );
    let state = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(state.lines().count(), 2);
}

#[test]
fn compare_runs_clipcap_beside_lstm() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 16, 32, "flickr8k");
    let (out, spec) = (t.path().join("cmp"), t.path().join("spec.json"));
    let flags = r#"["--image-size", "32", "--embed", "32", "--hidden", "64", "--min-count", "1",
                    "--epochs", "2", "--early-stop", "0"]"#;
    fs::write(
        &spec,
        format!(
            r#"{{"data": "{}", "train": {flags},
                "runs": [{{"name": "lstm", "args": ["--decoder", "lstm"]}},
                         {{"name": "clipcap", "args": ["--decoder", "clipcap"]}}]}}"#,
            s(&data)
        ),
    )
    .unwrap();
    let table = ok(&[
        "compare",
        "--spec",
        s(&spec),
        "--out",
        s(&out),
        "--resamples",
        "100",
        "--beam",
        "2",
    ]);
    assert!(table.contains("| clipcap |"), "{table}");
    let j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(j["rows"][1]["epochs"], 2);
}

/// Cosine similarities of the picture with every prompted label, computed here from CLIP's
/// embeddings, sorted high to low.
fn cosine_order(clip_dir: &Path, picture: &Path, labels: &[&str]) -> Vec<(String, f64)> {
    use captag::model::clip::Clip;
    let clip = Clip::load(clip_dir, tch::Device::Cpu).unwrap();
    let tok = captag::text::hf_tokenizer::HfTokenizer::clip(clip_dir).unwrap();
    let prompts: Vec<String> = labels
        .iter()
        .map(|l| format!("a photo that feels {l}."))
        .collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let text = clip.text_embeds(&clip.text_ids(&tok, &refs)).unwrap(); // (L, proj)
    let img = clip
        .image_embeds(&clip.preprocess.load(picture).unwrap().unsqueeze(0))
        .unwrap(); // (1, proj)
    let mut out: Vec<(String, f64)> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let (t, v) = (text.get(i as i64), img.get(0));
            let cos = (&t * &v).sum(tch::Kind::Double).double_value(&[])
                / (t.norm().double_value(&[]) * v.norm().double_value(&[]));
            (l.to_string(), cos)
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

#[test]
fn caption_ranks_moods_in_cosine_order_with_the_tiny_clip() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/clip");
    let picture = fixtures.join("picture.png");
    let t = tempfile::tempdir().unwrap();
    let (data, run) = (t.path().join("data"), t.path().join("run"));
    synth(&data, 12, 32, "flickr8k");
    let args = tiny_train_args(&data, &run, 1, "lstm", "32");
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let defaults =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/infer/moods.txt"))
            .unwrap();
    let labels: Vec<&str> = defaults.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(labels.len(), 40);
    let want = cosine_order(&fixtures, &picture, &labels);
    let out = ok(&[
        "caption",
        s(&run),
        s(&picture),
        "--json",
        "--clip",
        s(&fixtures),
        "--top-moods",
        "5",
        "--moods",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let got = v["moods"].as_array().unwrap();
    assert_eq!(got.len(), 5);
    assert!(v["caption"].is_string() && v["hashtags"].is_array());
    for (g, (label, cos)) in got.iter().zip(&want) {
        assert_eq!(g["label"].as_str().unwrap(), label);
        let d = (g["score"].as_f64().unwrap() - cos).abs();
        assert!(d < 1e-5, "{label}: {} vs {cos}", g["score"]);
    }
    // Text output: the caption, then the top labels.
    let line = ok(&[
        "caption",
        s(&run),
        s(&picture),
        "--clip",
        s(&fixtures),
        "--moods",
    ]);
    assert!(
        line.contains(&format!("\tmoods: {} (", want[0].0)),
        "{line}"
    );

    // A label file of its own, fewer labels than --top-moods.
    let file = t.path().join("labels.txt");
    fs::write(&file, "# mine\nsunny\n\ngloomy\nneon noir\n").unwrap();
    let moods = format!("--moods={}", s(&file));
    let out = ok(&[
        "caption",
        s(&run),
        s(&picture),
        "--json",
        "--clip",
        s(&fixtures),
        &moods,
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let got: Vec<&str> = v["moods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["label"].as_str().unwrap())
        .collect();
    let want: Vec<String> = cosine_order(&fixtures, &picture, &["sunny", "gloomy", "neon noir"])
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    assert_eq!(got, want);

    // Clear errors: no CLIP folder, a folder that is not one, an empty list.
    let e = bad_input(&["caption", s(&run), s(&picture), "--moods"]);
    assert!(e.contains("--clip"), "{e}");
    let e = bad_input(&[
        "caption",
        s(&run),
        s(&picture),
        "--clip",
        s(&data),
        "--moods",
    ]);
    assert!(e.contains("config.json"), "{e}");
    let empty = t.path().join("empty.txt");
    fs::write(&empty, "# nothing\n").unwrap();
    let e = bad_input(&[
        "caption",
        s(&run),
        s(&picture),
        "--clip",
        s(&fixtures),
        &format!("--moods={}", s(&empty)),
    ]);
    assert!(e.contains("no labels"), "{e}");
}

/// A clipcap teacher has positions for `max_len - 2` words: a student with longer captions is
/// refused with one line (not a failure inside the teacher's forward pass).
#[test]
fn a_clipcap_teacher_refuses_a_student_with_longer_captions() {
    let t = tempfile::tempdir().unwrap();
    let (data, teacher, student) = (
        t.path().join("data"),
        t.path().join("teacher"),
        t.path().join("student"),
    );
    synth(&data, 12, 32, "flickr8k");
    let args = tiny_train_args(&data, &teacher, 1, "clipcap", "64");
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut args = tiny_train_args(&data, &student, 1, "lstm", "64");
    args.extend(["--teacher", s(&teacher), "--max-words", "45"].map(String::from));
    let e = bad_input(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("positions for 38 words"), "{e}");
}
