//! The run directory's promises on tiny synthetic sets: exact resume (every decoder, one
//! caption per image, length buckets), one trainer at a time, killed and never-started runs,
//! checkpoint round trips, and clear errors for damaged, corrupt or mismatched checkpoints.
use std::fs;
use std::path::{Path, PathBuf};

use super::common::{bad_input, ok, s, synth, tiny_flags, tiny_train_args};
use super::models::{copy_run, shared_run, train, train_with};

#[test]
fn exact_resume_equals_uninterrupted_training() {
    exact_resume("lstm", &[]);
}

#[test]
fn exact_resume_attention() {
    exact_resume("attention", &[]);
}

#[test]
fn exact_resume_transformer_with_warmup() {
    exact_resume("transformer", &["--schedule", "warmup", "--warmup", "3"]);
}

#[test]
fn exact_resume_with_one_caption_per_image() {
    // (Not with --schedule cosine: this helper resumes a 2-epoch run to 4 epochs, and the
    // cosine's curve is drawn over the run's epochs, so raising --epochs re-shapes it.)
    let flags = ["--captions-per-image", "1"];
    let (_t, _a, b) = exact_resume("lstm", &flags);
    // A resume that does not name --captions-per-image keeps the run's setting.
    let cfg = std::fs::read_to_string(b.join("config.json")).unwrap();
    assert!(cfg.contains("\"captions_per_image\": 1"), "{cfg}");
    let e = captag_err_train(&b, &["--resume", "--captions-per-image", "2"]);
    assert!(
        e.contains("--captions-per-image") && e.contains("differs"),
        "{e}"
    );
}

#[test]
fn exact_resume_with_length_buckets_on_a_feature_cache() {
    // Length buckets apply where captions are batched one by one: a pooled decoder on cached
    // features of a frozen encoder (random SqueezeNet weights stand in for pretrained ones).
    let t = tempfile::tempdir().unwrap();
    let w = t.path().join("squeezenet.safetensors");
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _enc =
        captag::model::Encoder::new(vs.root(), captag::config::EncoderKind::Squeezenet1_1, None);
    captag::run::save_vars(&vs, &w).unwrap();
    let flags = ["--encoder", "squeezenet1_1", "--encoder-weights", s(&w)];
    let (_t, a, b) = exact_resume("lstm", &[&flags[..], &["--batching", "buckets"]].concat());
    for run in [&a, &b] {
        let cfg = std::fs::read_to_string(run.join("config.json")).unwrap();
        assert!(cfg.contains("\"batching\": \"buckets\""), "{cfg}");
    }
    // A resume that does not name --batching keeps the run's order; naming another is refused.
    let mut args = vec!["--resume", "--batching", "shuffle"];
    args.extend(flags);
    let e = captag_err_train(&b, &args);
    assert!(e.contains("--batching") && e.contains("differs"), "{e}");
}

/// Trains a copy of `run` for one more epoch with `extra` and returns its error line.
fn captag_err_train(run: &Path, extra: &[&str]) -> String {
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    let data = cfg["data_path"].as_str().unwrap().to_string();
    let mut args: Vec<String> = vec!["train".into(), "--data".into(), data, "--out".into()];
    args.push(s(run).into());
    args.extend(["--epochs".into(), "5".into()]);
    args.extend(tiny_flags("lstm", "0.3", "128"));
    args.extend(extra.iter().map(|x| x.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    bad_input(&a)
}

/// Trains 4 epochs into `a`, and 2 + `--resume` to 4 into `b`; asserts equal weights and
/// metrics. Returns the folder (kept alive) and both runs.
pub(super) fn exact_resume(decoder: &str, extra: &[&str]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 12, 32, "flickr8k");
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    train_with(&data, &a, decoder, "0.3", 4, extra);
    train_with(&data, &b, decoder, "0.3", 2, extra);
    let mut resume = extra.to_vec();
    resume.push("--resume");
    train_with(&data, &b, decoder, "0.3", 4, &resume);
    let load = |p: &Path| {
        let mut v = tch::Tensor::read_safetensors(p.join("last.safetensors")).unwrap();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    let (wa, wb) = (load(&a), load(&b));
    assert_eq!(wa.len(), wb.len());
    for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        let diff = (ta - tb).abs().max().double_value(&[]);
        assert!(
            diff < 1e-5,
            "{decoder}: {na} differs by {diff} after resume"
        );
    }
    let metrics = |p: &Path| {
        fs::read_to_string(p.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(metrics(&a), 4);
    assert_eq!(metrics(&b), 4);
    (t, a, b)
}

#[test]
fn checkpoint_round_trip_gives_identical_captions() {
    let (data, run) = shared_run();
    let dev = data.join("Images");
    let a = ok(&["caption", s(run), s(&dev), "--json"]);
    let b = ok(&["caption", s(run), s(&dev), "--beam", "1", "--json"]);
    assert_eq!(a, b);
    assert_eq!(a.lines().count(), 12);
    // eval's predictions come from the same weights: the same caption for the same image.
    let preds = run.parent().unwrap().join("preds.json");
    ok(&[
        "eval",
        s(run),
        "--data",
        s(data),
        "--split",
        "train",
        "--predictions",
        s(&preds),
    ]);
    let preds: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&preds).unwrap()).unwrap();
    let first = &preds[0];
    let id = first["image_id"].as_str().unwrap();
    let line = a.lines().find(|l| l.contains(id)).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["caption"], first["caption"]);
    let beam = ok(&["caption", s(run), s(&dev), "--beam", "3"]);
    assert_eq!(beam.lines().count(), 12);
}

#[test]
fn a_run_directory_has_one_trainer_at_a_time() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 12, 32, "flickr8k");
    let run = t.path().join("run");
    let mut args = tiny_train_args(&data, &run, 5000, "lstm", "128");
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_captag"))
        .args(["--device", "cpu", "--threads", "1", "-q"])
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first trainer has written its first epoch.
    let t0 = std::time::Instant::now();
    while !run.join("train_state.json").exists() {
        assert!(
            t0.elapsed().as_secs() < 120,
            "the first trainer did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    args.push("--resume".into());
    let e = bad_input(&args.iter().map(String::as_str).collect::<Vec<_>>());
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        e.contains("another captag process") && e.contains(&first.id().to_string()),
        "{e}"
    );
    // Once the first is gone (even killed), the lock is free and the run resumes.
    let pos = args.iter().position(|a| a == "5000").unwrap();
    args[pos] = "2".into();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&a);
}

#[test]
fn a_run_killed_in_its_first_epoch_resumes_from_the_start() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 12, 32, "flickr8k");
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    train(&data, &a, "lstm", 2, &[]);
    train(&data, &b, "lstm", 1, &[]);
    // What a kill during epoch 1 leaves: the config and the vocabulary only.
    for f in [
        "train_state.json",
        "train_state.safetensors",
        "last.safetensors",
        "model.safetensors",
        "metrics.jsonl",
    ] {
        fs::remove_file(b.join(f)).unwrap();
    }
    train(&data, &b, "lstm", 2, &["--resume"]);
    let load = |p: &Path| {
        let mut v = tch::Tensor::read_safetensors(p.join("last.safetensors")).unwrap();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    let (wa, wb) = (load(&a), load(&b));
    assert_eq!(wa.len(), wb.len());
    for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        assert_eq!((ta - tb).abs().max().double_value(&[]), 0.0, "{na}");
    }
    let lines = fs::read_to_string(b.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2);
}

#[test]
fn resume_refuses_a_damaged_best_checkpoint() {
    let t = tempfile::tempdir().unwrap();
    let run = copy_run(&t.path().join("run"));
    let (data, _) = shared_run();
    fs::write(run.join("model.safetensors"), b"\x08\0\0\0\0\0\0\0{}").unwrap();
    let mut args = tiny_train_args(data, &run, 4, "lstm", "128");
    args.push("--resume".into());
    let e = bad_input(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("best epoch's weights"), "{e}");
}

#[test]
fn resume_removes_temp_files_a_killed_trainer_left() {
    let t = tempfile::tempdir().unwrap();
    let run = copy_run(&t.path().join("run"));
    let (data, _) = shared_run();
    let stale = run.join(".last.safetensors.tmp.99999");
    let other = run.join(".predictions_dev.json.tmp.99999");
    fs::write(&stale, b"half a checkpoint").unwrap();
    fs::write(&other, b"not the trainer's").unwrap();
    let mut args = tiny_train_args(data, &run, 4, "lstm", "128");
    args.push("--resume".into());
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!stale.exists());
    assert!(
        other.exists(),
        "a file another command writes is not the trainer's to remove"
    );
}

#[test]
fn a_run_that_never_starts_leaves_no_directory() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("never");
    let e = bad_input(&[
        "train",
        "--data",
        s(&t.path().join("no-such-data")),
        "--out",
        s(&out),
    ]);
    assert!(e.contains("no-such-data"), "{e}");
    assert!(!out.exists(), "left {}", out.display());
}

#[test]
fn corrupt_checkpoint_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let run = copy_run(&t.path().join("run"));
    let (data, _) = shared_run();
    let w = run.join("model.safetensors");
    let bytes = fs::read(&w).unwrap();
    fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    let e = bad_input(&["caption", s(&run), s(&data.join("Images"))]);
    assert!(e.contains("model.safetensors"), "{e}");
    bad_input(&[
        "caption",
        s(&t.path().join("nope")),
        s(&data.join("Images")),
    ]);
}

#[test]
fn vocab_or_config_mismatch_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let run = copy_run(&t.path().join("run"));
    let (data, _) = shared_run();
    // A resume that asks for another architecture.
    let e = bad_input(&[
        "train",
        "--data",
        s(data),
        "--out",
        s(&run),
        "--epochs",
        "4",
        "--resume",
        "--decoder",
        "gru",
        "--image-size",
        "32",
        "--embed",
        "64",
        "--hidden",
        "128",
    ]);
    assert!(e.contains("architecture"), "{e}");
    // A resume that changes a training flag is refused, not ignored.
    let mut args: Vec<String> = vec![
        "train".into(),
        "--data".into(),
        s(data).into(),
        "--out".into(),
        s(&run).into(),
    ];
    args.extend([
        "--epochs".to_string(),
        "4".to_string(),
        "--resume".to_string(),
    ]);
    args.extend(tiny_flags("lstm", "0", "128"));
    let at = args.iter().position(|x| x == "--lr").unwrap();
    args[at + 1] = "1e-4".into();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = bad_input(&a);
    assert!(e.contains("--lr") && e.contains("differs"), "{e}");
    // A fresh run into an existing run directory.
    let e = bad_input(&[
        "train",
        "--data",
        s(data),
        "--out",
        s(&run),
        "--epochs",
        "1",
    ]);
    assert!(e.contains("--resume"), "{e}");
    // A vocabulary that does not belong to the weights.
    fs::write(
        run.join("vocab.json"),
        r#"{"min_count":1,"words":["<pad>","<start>","<end>","<unk>","a","b"]}"#,
    )
    .unwrap();
    let e = bad_input(&["caption", s(&run), s(&data.join("Images"))]);
    assert!(e.contains("vocab"), "{e}");
}
