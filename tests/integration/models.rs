//! train / eval / caption on tiny synthetic sets: overfitting, round trips of each decoder,
//! attention maps, old runs, the demo; the run directory's own promises (exact resume, one
//! trainer, damaged or mismatched checkpoints) are in `runs.rs`.
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::common::{
    bad_input, captag, ok, one_caption_set, s, synth, tiny_flags, tiny_train_args,
};

pub(super) fn train(data: &Path, out: &Path, decoder: &str, epochs: usize, extra: &[&str]) {
    train_with(data, out, decoder, "0", epochs, extra)
}

pub(super) fn train_with(
    data: &Path,
    out: &Path,
    decoder: &str,
    dropout: &str,
    epochs: usize,
    extra: &[&str],
) {
    let mut args: Vec<String> = vec![
        "train".into(),
        "--data".into(),
        s(data).into(),
        "--out".into(),
        s(out).into(),
    ];
    args.extend(["--epochs".to_string(), epochs.to_string()]);
    let mut flags = tiny_flags(decoder, dropout, "128");
    if let Some(i) = extra.iter().position(|x| *x == "--schedule") {
        // The caller's schedule replaces the tiny model's constant one.
        let at = flags.iter().position(|x| x == "--schedule").unwrap();
        flags.drain(at..at + 2);
        assert!(i + 1 < extra.len());
    }
    args.extend(flags);
    args.extend(extra.iter().map(|x| x.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&a);
}

/// Train-split BLEU-4 of the last epoch's weights (the best-on-dev ones are not the point here).
fn train_bleu4(run: &Path, data: &Path) -> f64 {
    let r: serde_json::Value = serde_json::from_str(&ok(&[
        "eval",
        s(run),
        "--data",
        s(data),
        "--split",
        "train",
        "--last",
        "--json",
    ]))
    .unwrap();
    r["bleu"]["bleu"][3].as_f64().unwrap()
}

fn overfit(decoder: &str) {
    let t = tempfile::tempdir().unwrap();
    let (data, run) = (t.path().join("data"), t.path().join("run"));
    one_caption_set(&data, 10);
    train(&data, &run, decoder, 40, &[]);
    let b4 = train_bleu4(&run, &data);
    assert!(
        b4 >= 0.9,
        "{decoder} should memorise 8 training images: train BLEU-4 {b4}"
    );
}

#[test]
fn overfit_tiny_set_lstm() {
    overfit("lstm");
}

#[test]
fn overfit_tiny_set_gru() {
    overfit("gru");
}

#[test]
fn overfit_tiny_set_attention() {
    overfit("attention");
}

#[test]
fn overfit_tiny_set_transformer() {
    overfit("transformer");
}

/// One trained run shared by the checkpoint tests: (data dir, run dir).
pub(super) fn shared_run() -> &'static (PathBuf, PathBuf) {
    static RUN: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    RUN.get_or_init(|| {
        let t = tempfile::tempdir().unwrap().keep();
        let (data, run) = (t.join("data"), t.join("run"));
        synth(&data, 12, 32, "flickr8k");
        train(&data, &run, "lstm", 3, &[]);
        (data, run)
    })
}

pub(super) fn copy_run(dst: &Path) -> PathBuf {
    let (_, run) = shared_run();
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(run).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    dst.to_path_buf()
}

#[test]
fn an_unreadable_image_is_an_error_line_and_the_others_are_captioned() {
    let t = tempfile::tempdir().unwrap();
    let (data, run) = shared_run();
    let dir = t.path().join("imgs");
    fs::create_dir(&dir).unwrap();
    fs::copy(data.join("Images/synth_00001.jpg"), dir.join("a.jpg")).unwrap();
    fs::write(dir.join("b.jpg"), b"\xff\xd8\xff truncated").unwrap();
    fs::copy(data.join("Images/synth_00002.jpg"), dir.join("c.jpg")).unwrap();
    let out = captag(&["caption", s(run), s(&dir)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Exit code 3: some inputs failed, the others were captioned; a summary line ends stderr.
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stderr.contains("b.jpg"), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .is_some_and(|l| l.contains("1 of 3 images could not be read")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

#[test]
fn attention_and_transformer_runs_round_trip_and_caption() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 12, 32, "flickr8k");
    for decoder in ["attention", "transformer"] {
        let run = t.path().join(decoder);
        train(&data, &run, decoder, 2, &["--hashtags"]);
        let dev = data.join("Images");
        let a = ok(&["caption", s(&run), s(&dev), "--json", "--beam", "3"]);
        let b = ok(&["caption", s(&run), s(&dev), "--json", "--beam", "3"]);
        assert_eq!(a, b, "{decoder}: captions differ between two loads");
        assert_eq!(a.lines().count(), 12);
        let v: serde_json::Value = serde_json::from_str(a.lines().next().unwrap()).unwrap();
        assert!(v["hashtags"].is_array(), "{decoder}: {v}");
        let words = v["caption"].as_str().unwrap().split_whitespace().count();
        if decoder == "attention" {
            // One distribution over the 2×2 grid cells per word and one for <end>.
            let att = v["attention"].as_array().expect("attention weights");
            assert_eq!(att.len(), words + 1);
            let sum: f64 = att[0]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .sum();
            assert!((sum - 1.0).abs() < 1e-4, "{sum}");
        } else {
            assert!(v.get("attention").is_none());
        }
        let r: serde_json::Value = serde_json::from_str(&ok(&[
            "eval",
            s(&run),
            "--data",
            s(&data),
            "--split",
            "dev",
            "--beam",
            "2",
            "--json",
        ]))
        .unwrap();
        assert!(r["bleu"]["bleu"][3].as_f64().is_some());
    }
}

#[test]
fn attention_maps_are_written_as_png() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 12, 32, "flickr8k");
    let run = t.path().join("run");
    train(&data, &run, "attention", 1, &[]);
    let maps = t.path().join("maps");
    let img = data.join("Images/synth_00001.jpg");
    ok(&["caption", s(&run), s(&img), "--attention", s(&maps)]);
    let pngs: Vec<_> = fs::read_dir(&maps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(pngs.len(), 1, "{pngs:?}");
    let im = image::open(&pngs[0]).unwrap();
    assert!(im.width() > im.height(), "one tile per word side by side");
    // A decoder without attention weights says so.
    let (_, lstm) = shared_run();
    let e = bad_input(&["caption", s(lstm), s(&img), "--attention", s(&maps)]);
    assert!(e.contains("attention"), "{e}");
}

#[test]
fn runs_written_by_captag_0_1_still_load() {
    let t = tempfile::tempdir().unwrap();
    let run = copy_run(&t.path().join("run"));
    let (data, _) = shared_run();
    let dev = data.join("Images");
    let before = ok(&["caption", s(&run), s(&dev), "--json"]);
    // Rewrite the model section in the flat layout captag 0.1 wrote.
    let path = run.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let dec = cfg["model"]["decoder"].clone();
    assert_eq!(dec["kind"], "show-tell");
    let m = cfg["model"].as_object_mut().unwrap();
    m.insert("decoder".into(), dec["cell"].clone());
    for k in ["feed", "embed_dim", "hidden_dim", "layers", "dropout"] {
        m.insert(k.into(), dec[k].clone());
    }
    fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    assert_eq!(ok(&["caption", s(&run), s(&dev), "--json"]), before);
    // A model section this version cannot read names the version that wrote it.
    cfg["model"]["decoder"] = serde_json::json!({"kind": "mamba"});
    fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    let e = bad_input(&["caption", s(&run), s(&dev)]);
    assert!(e.contains("written by captag"), "{e}");
}

#[test]
fn demo_trains_the_new_decoders() {
    for decoder in ["attention", "transformer"] {
        let t = tempfile::tempdir().unwrap();
        let out = ok(&[
            "demo",
            "--out",
            s(t.path()),
            "--count",
            "60",
            "--epochs",
            "1",
            "--decoder",
            decoder,
        ]);
        assert!(out.contains("BLEU"), "{decoder}: {out}");
    }
}

/// The target the demo's defaults were chosen for (README, "Built-in synthetic set"): at least
/// 80% of the model's greedy test captions are fully true of their pictures. Trains the whole
/// default demo (a few minutes on one thread).
#[test]
fn the_default_demo_model_writes_mostly_true_captions() {
    let t = tempfile::tempdir().unwrap();
    let out = ok(&["demo", "--out", s(t.path())]);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("greedy:"))
        .unwrap_or_else(|| panic!("no grounded-truth line:\n{out}"));
    // "greedy: 266/300 captions fully true (88.7%), ..."
    let frac = line.split_whitespace().nth(1).unwrap();
    let (held, all) = frac.split_once('/').unwrap();
    let (held, all): (f64, f64) = (held.parse().unwrap(), all.parse().unwrap());
    assert!(all >= 300.0, "{line}");
    assert!(
        held / all >= 0.8,
        "fewer than 80% fully true captions: {line}"
    );
}

/// 16-bit precision is for CUDA: on the CPU it is one error line and no run folder; fp32 is
/// stored in no config (runs written before `--precision` are fp32) and resumes as fp32.
#[test]
fn sixteen_bit_precision_is_refused_on_the_cpu_before_the_run_exists() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 8, 32, "flickr8k");
    let out = t.path().join("run");
    let mut args = tiny_train_args(&data, &out, 1, "gru", "16");
    args.extend(["--precision".to_string(), "bf16".to_string()]);
    // `captag(...)` runs on the CPU (`--device cpu`).
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = bad_input(&argv);
    assert!(e.contains("--precision bf16 needs a CUDA device"), "{e}");
    assert!(!out.exists(), "a refused run left {}", out.display());
    // Decoding too: caption, eval and serve refuse 16-bit weights on the CPU in one line, and
    // `--precision fp32` is today's decoding.
    let args = tiny_train_args(&data, &out, 1, "gru", "16");
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&argv);
    let image = data.join("Images/synth_00001.jpg");
    let (run, img, d) = (s(&out), s(&image), s(&data));
    for (argv, p) in [
        (vec!["caption", run, img, "--precision", "fp16"], "fp16"),
        (
            vec!["eval", run, "--data", d, "--precision", "bf16"],
            "bf16",
        ),
        (
            vec!["serve", run, "--addr", "127.0.0.1:0", "--precision", "bf16"],
            "bf16",
        ),
    ] {
        let e = bad_input(&argv);
        assert!(
            e.contains(&format!("--precision {p} needs a CUDA device")),
            "{argv:?}: {e}"
        );
    }
    assert_eq!(
        ok(&["caption", run, img, "--precision", "fp32"]),
        ok(&["caption", run, img])
    );
}
