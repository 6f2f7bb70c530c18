//! kill -9 at every fault point of a small training (`CAPTAG_FAULT_AT`, docs/ARCHITECTURE.md
//! "Fault injection"): between every file operation of the run's creation and of each epoch's
//! commit, and after every optimizer step. Each killed run is resumed (or, killed before its
//! config existed, started again, as the README tells users) and must end bit for bit equal to
//! the uninterrupted run, with exactly one valid metrics line per epoch and no leftovers. The
//! same holds for `restore train`, which commits its epochs through the same journal.
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use super::common::{one_caption_set, s, synth, tiny_train_args};

const EPOCHS: usize = 2;

/// Run `captag ARGS [--resume]` with the fault hook at `fault_at`; it must succeed or die by
/// SIGKILL.
fn run(args: &[String], resume: bool, fault_at: Option<usize>) -> std::process::ExitStatus {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_captag"));
    cmd.args(["--device", "cpu", "--threads", "1", "-q"])
        .args(args);
    if resume {
        cmd.arg("--resume");
    }
    match fault_at {
        Some(n) => cmd.env("CAPTAG_FAULT_AT", n.to_string()),
        None => cmd.env_remove("CAPTAG_FAULT_AT"),
    };
    let out = cmd.output().expect("failed to start captag");
    assert!(
        out.status.success() || out.status.signal() == Some(9),
        "captag {args:?} (fault at {fault_at:?}, resume {resume}) failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.status
}

/// What must be identical: the files' bytes, and the metrics lines without their timings.
fn outcome(run: &Path, files: &[&str]) -> (Vec<Vec<u8>>, Vec<serde_json::Value>) {
    let files = files
        .iter()
        .map(|f| fs::read(run.join(f)).unwrap_or_else(|e| panic!("{f}: {e}")))
        .collect();
    let metrics = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let lines = metrics
        .lines()
        .map(|l| {
            let mut v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad metrics line {l:?}: {e}"));
            let o = v.as_object_mut().unwrap();
            for timing in ["seconds", "captions_per_s", "images_per_s"] {
                o.remove(timing);
            }
            v
        })
        .collect();
    (files, lines)
}

/// Kill the training `args_for(out)` describes at fault point 1, 2, ... until a run passes
/// the last one; resume each killed run and compare it with an uninterrupted one. Returns how
/// many points were hit.
fn kill_at_every_point(
    root: &Path,
    args_for: &dyn Fn(&Path) -> Vec<String>,
    files: &[&str],
) -> usize {
    let reference = root.join("reference");
    assert!(run(&args_for(&reference), false, None).success());
    let want = outcome(&reference, files);
    assert_eq!(want.1.len(), EPOCHS);
    let mut killed = 0;
    for n in 1.. {
        let dir = root.join(format!("killed_at_{n}"));
        let args = args_for(&dir);
        if run(&args, false, Some(n)).success() {
            // Past the last fault point: the whole run finished.
            assert_eq!(
                outcome(&dir, files),
                want,
                "uninterrupted run with the hook set"
            );
            break;
        }
        killed += 1;
        let resume = dir.join("config.json").exists();
        assert!(run(&args, resume, None).success());
        assert_eq!(
            outcome(&dir, files),
            want,
            "killed at fault point {n}, then resumed"
        );
        let left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp.") || n.starts_with(".epoch"))
            .collect();
        assert!(left.is_empty(), "killed at {n}: left {left:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
    killed
}

#[test]
fn kill_9_at_every_fault_point_then_resume_is_exact() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    one_caption_set(&data, 6);
    let args = |out: &Path| tiny_train_args(&data, out, EPOCHS, "gru", "16");
    let files = [
        "last.safetensors",
        "model.safetensors",
        "train_state.safetensors",
        "train_state.json",
        "config.json",
        "vocab.json",
    ];
    let killed = kill_at_every_point(t.path(), &args, &files);
    // Creation, two epochs of steps and two commits: dozens of points, not a handful.
    assert!(killed >= 30, "only {killed} fault points were hit");
}

/// The same for `restore train` (both restoration networks, 32-px images, two steps an epoch).
#[test]
fn kill_9_during_restore_training_then_resume_is_exact() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 12, 32, "flickr8k");
    let args = |out: &Path| -> Vec<String> {
        let epochs = EPOCHS.to_string();
        [
            "restore",
            "train",
            "--data",
            s(&data),
            "--out",
            s(out),
            "--epochs",
            &epochs,
            "--batch-size",
            "5",
            "--lr",
            "3e-3",
            "--size",
            "32",
            "--mask-channels",
            "4",
            "--mask-depth",
            "2",
            "--inpaint-channels",
            "4",
            "--inpaint-depth",
            "2",
            "--dev-limit",
            "2",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    let files = [
        "last.safetensors",
        "model.safetensors",
        "train_state.safetensors",
        "train_state.json",
        "config.json",
    ];
    let killed = kill_at_every_point(t.path(), &args, &files);
    // config.json, two epochs of two optimizer steps and two commits.
    assert!(killed >= 20, "only {killed} fault points were hit");
}
