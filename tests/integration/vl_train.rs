//! Fine-tuning BLIP and GIT Hugging Face folders (`train --init-from HF_DIR`,
//! docs/vision-language.md "Fine-tuning") on the tiny random folders of
//! `notebooks/make_blip_git_fixtures.py` and a `captag synth` set: the loss falls, the run
//! captions and evaluates from its own files once the folder is gone, a resumed run ends with
//! the weights of an uninterrupted one, and flags that do not apply are one error line.
use std::fs;
use std::path::{Path, PathBuf};

use super::common::{bad_input, ok, s, synth};
use super::serve::{caption_raw, Server};

fn folder(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

fn train(data: &Path, init: Option<&Path>, out: &Path, epochs: usize, extra: &[&str]) -> String {
    let epochs = epochs.to_string();
    let mut args = vec![
        "train",
        "--data",
        s(data),
        "--out",
        s(out),
        "--epochs",
        &epochs,
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--threads",
        "1",
        "-q",
    ];
    if let Some(i) = init {
        args.extend(["--init-from", s(i)]);
    }
    args.extend(extra);
    ok(&args)
}

fn metrics(run: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn weights(file: &Path) -> Vec<(String, tch::Tensor)> {
    let mut v = tch::Tensor::read_safetensors(file).unwrap();
    v.sort_by(|x, y| x.0.cmp(&y.0));
    v
}

#[test]
fn blip_and_git_folders_fine_tune_and_caption_from_the_run_alone() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 24, 32, "flickr8k");
    // Each architecture fully fine-tuned (gradients through the image tower) and with
    // --freeze-vision.
    for (name, frozen) in [
        ("git", false),
        ("blip", false),
        ("git", true),
        ("blip", true),
    ] {
        let tag = format!("{name}{}", if frozen { "-frozen" } else { "" });
        // A copy of the folder, removed after training: the run must not need it.
        let src = t.path().join(format!("{tag}-folder"));
        fs::create_dir(&src).unwrap();
        for e in fs::read_dir(folder(name)).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), src.join(e.file_name())).unwrap();
        }
        let run = t.path().join(&tag);
        let extra: &[&str] = if frozen { &["--freeze-vision"] } else { &[] };
        train(&data, Some(&src), &run, 2, extra);
        let m = metrics(&run);
        assert_eq!(m.len(), 2, "{tag}");
        let loss = |i: usize, k: &str| m[i][k].as_f64().unwrap();
        assert!(
            loss(1, "train_loss") < loss(0, "train_loss"),
            "{tag}: {m:?}"
        );
        assert!(loss(1, "dev_loss") < loss(0, "dev_loss"), "{tag}: {m:?}");
        let cfg: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["vl"]["architecture"], name);
        assert_eq!(cfg["freeze_vision"], frozen);
        fs::remove_dir_all(&src).unwrap();
        // --freeze-vision: the image tower is the folder's; the text side moved either way.
        let (w0, w1) = (
            weights(&folder(name).join("model.safetensors")),
            weights(&run.join("model.safetensors")),
        );
        let moved = |prefix: &str| {
            w1.iter().any(|(n, t1)| {
                n.starts_with(prefix)
                    && w0
                        .iter()
                        .find(|(m, _)| m == n)
                        .is_some_and(|(_, t0)| (t1 - t0).abs().max().double_value(&[]) > 0.0)
            })
        };
        let (vision, text) = match name {
            "blip" => ("vision_model.", "text_decoder."),
            _ => ("git.image_encoder.", "git.encoder."),
        };
        assert_eq!(moved(vision), !frozen, "{tag} vision tower");
        assert!(moved(text), "{tag} text side");
        let pic = data.join("Images/synth_00001.jpg");
        if name == "git" && !frozen {
            served_as_the_cli_captions(&run, &pic, &t.path().join("ratings.db"));
        }
        let out = ok(&["caption", s(&run), s(&pic), "--json"]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert!(v["caption"].is_string(), "{out}");
        let e: serde_json::Value =
            serde_json::from_str(&ok(&["eval", s(&run), "--data", s(&data), "--json"])).unwrap();
        assert_eq!(e["images"].as_u64().unwrap() as usize, dev_images(&data));
        assert!(e["cider"].as_f64().unwrap().is_finite(), "{e}");
    }
}

/// Dev images of a synth set (the split its captions file says).
fn dev_images(data: &Path) -> usize {
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "eval",
        s(&folder("git")),
        "--data",
        s(data),
        "--json",
    ]))
    .unwrap();
    v["images"].as_u64().unwrap() as usize
}

/// Two epochs, then `--resume` (without --init-from) to four, equal four uninterrupted epochs:
/// weights, optimizer moments and the dev metrics (dropout is on in the GIT folder: the random
/// streams are restored too).
#[test]
fn a_fine_tuned_git_run_resumes_exactly() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 16, 32, "flickr8k");
    let git = folder("git");
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    train(&data, Some(&git), &a, 4, &[]);
    train(&data, Some(&git), &b, 2, &[]);
    train(&data, None, &b, 4, &["--resume"]);
    for file in ["last.safetensors", "train_state.safetensors"] {
        let (wa, wb) = (weights(&a.join(file)), weights(&b.join(file)));
        assert_eq!(wa.len(), wb.len());
        for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
            assert_eq!(na, nb);
            let diff = (ta - tb).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "{file}: {na} differs by {diff} after resume");
        }
    }
    let dev = |r: &Path| -> Vec<(f64, f64)> {
        metrics(r)
            .iter()
            .map(|m| {
                (
                    m["dev_loss"].as_f64().unwrap(),
                    m["cider"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(dev(&a), dev(&b));
    // Other training flags on resume are refused, as for every run.
    let e = bad_input(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&b),
        "--epochs",
        "5",
        "--lr",
        "1e-2",
        "--resume",
    ]);
    assert!(e.contains("differs"), "{e}");
}

#[test]
fn flags_of_captags_own_models_are_refused_for_a_folder() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 8, 32, "flickr8k");
    let out = t.path().join("run");
    let git = folder("git");
    for extra in [&["--hashtags"][..], &["--features", "x.safetensors"][..]] {
        let mut args = vec![
            "train",
            "--data",
            s(&data),
            "--out",
            s(&out),
            "--init-from",
            s(&git),
        ];
        args.extend(extra);
        let e = bad_input(&args);
        assert!(e.contains("does not apply"), "{e}");
        assert!(!out.exists());
    }
    let e = bad_input(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--freeze-vision",
    ]);
    assert!(e.contains("--freeze-vision"), "{e}");
}

/// `--objective scst` on a GIT run fine-tuned with cross-entropy: the mean CIDEr-D reward of
/// the drawn captions rises, the run is selected by dev CIDEr-D and logs the reward and the
/// time shares; two epochs + `--resume` to eight equal eight uninterrupted epochs; SCST
/// straight from the folder works too (with the greedy baseline).
#[test]
fn scst_on_a_fine_tuned_git_run_raises_the_reward_and_resumes_exactly() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 40, 32, "flickr8k");
    let git = folder("git");
    let ce = t.path().join("ce");
    let all_epochs = ["--early-stop", "0", "--select", "cider"];
    train(&data, Some(&git), &ce, 30, &all_epochs);
    let scst = [
        "--objective",
        "scst",
        "--scst-samples",
        "5",
        "--early-stop",
        "0",
    ];
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    train(&data, Some(&ce), &a, 8, &scst);
    train(&data, Some(&ce), &b, 2, &scst);
    // As for every run, a resumed run repeats its training flags.
    train(
        &data,
        Some(&ce),
        &b,
        8,
        &[&scst[..], &["--resume"]].concat(),
    );
    let reward = |r: &Path| -> Vec<f64> {
        metrics(r)
            .iter()
            .map(|m| m["reward"].as_f64().unwrap())
            .collect()
    };
    let r = reward(&a);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        mean(&r[5..]) > mean(&r[..2]) + 0.03,
        "reward per epoch {r:?}"
    );
    assert_eq!(r, reward(&b));
    assert!(metrics(&a)[0]["draw_share"].as_f64().unwrap() > 0.0);
    let cfg: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(a.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["train"]["select"], "cider");
    assert_eq!(cfg["train"]["scst"]["samples"], 5);
    assert_eq!(cfg["vl"]["architecture"], "git");
    for file in ["last.safetensors", "train_state.safetensors"] {
        let (wa, wb) = (weights(&a.join(file)), weights(&b.join(file)));
        assert_eq!(wa.len(), wb.len());
        for ((na, ta), (_, tb)) in wa.iter().zip(&wb) {
            let diff = (ta - tb).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "{file}: {na} differs by {diff} after resume");
        }
    }
    // Straight from the folder, greedy baseline; the run captions from its own files.
    let c = t.path().join("c");
    train(
        &data,
        Some(&git),
        &c,
        1,
        &["--objective", "scst", "--scst-baseline", "greedy"],
    );
    assert!(metrics(&c)[0]["greedy_reward"].is_number());
    ok(&["caption", s(&c), s(&data.join("Images/synth_00001.jpg"))]);
}

/// `compare` puts a fine-tuned GIT run (trained from the spec's args) and a folder as given
/// beside a classic LSTM run: one table, every run scored on the same dev images and words.
#[test]
fn compare_puts_git_runs_and_folders_beside_classic_runs() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 16, 32, "flickr8k");
    let (out, spec) = (t.path().join("cmp"), t.path().join("spec.json"));
    fs::write(
        &spec,
        format!(
            r#"{{"data": "{}", "train": ["--epochs", "2", "--early-stop", "0"],
                "runs": [
                  {{"name": "lstm", "args": ["--decoder", "lstm", "--image-size", "32",
                     "--embed", "32", "--hidden", "64", "--min-count", "1"]}},
                  {{"name": "git-ft", "args": ["--init-from", "{}", "--batch-size", "8",
                     "--lr", "1e-3"]}},
                  {{"name": "git-folder", "dir": "{}"}}]}}"#,
            s(&data),
            s(&folder("git")),
            s(&folder("git"))
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
        "50",
    ]);
    for row in ["| lstm |", "| git-ft |", "| git-folder |"] {
        assert!(table.contains(row), "{row} missing:\n{table}");
    }
    let j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["epochs"], 2);
    assert!(
        rows[1]["architecture"].as_str().unwrap().contains("GIT"),
        "{j}"
    );
    assert!(rows[2]["cider_vs_baseline"]["lo"].is_number(), "{j}");
    // The fine-tuned run is finished: a second compare evaluates it without training.
    let again = ok(&[
        "compare",
        "--spec",
        s(&spec),
        "--out",
        s(&out),
        "--resamples",
        "50",
    ]);
    assert!(again.contains("| git-ft |"), "{again}");
    assert_eq!(metrics(&out.join("runs/git-ft")).len(), 2);
}

/// `serve RUN` on a fine-tuned run: the page's answer (beam 3, the server's default) is the
/// caption `caption RUN --beam 3` writes.
fn served_as_the_cli_captions(run: &Path, pic: &Path, db: &Path) {
    let cli: serde_json::Value =
        serde_json::from_str(ok(&["caption", s(run), s(pic), "--beam", "3", "--json"]).trim())
            .unwrap();
    let server = Server::start_on(run, db, &[], &[]);
    let (status, v) = caption_raw(&server.addr, &fs::read(pic).unwrap(), "");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["caption"], cli["caption"], "{v}");
    assert!(server.terminate().success());
}
