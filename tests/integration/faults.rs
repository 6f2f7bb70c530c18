//! kill -9 at every fault point of a small training (`CAPTAG_FAULT_AT`, docs/ARCHITECTURE.md
//! "Fault injection"): between every file operation of the run's creation and of each epoch's
//! commit, and after every optimizer step. Each killed run is resumed (or, killed before its
//! config existed, started again, as the README tells users) and must end bit for bit equal to
//! the uninterrupted run, with exactly one valid metrics line per epoch and no leftovers.
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use super::common::{one_caption_set, tiny_train_args};

const EPOCHS: usize = 2;

fn train(
    data: &Path,
    out: &Path,
    resume: bool,
    fault_at: Option<usize>,
) -> std::process::ExitStatus {
    let mut args = tiny_train_args(data, out, EPOCHS, "gru", "16");
    if resume {
        args.push("--resume".into());
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_captag"));
    cmd.args(["--device", "cpu", "--threads", "1", "-q"])
        .args(&args);
    match fault_at {
        Some(n) => cmd.env("CAPTAG_FAULT_AT", n.to_string()),
        None => cmd.env_remove("CAPTAG_FAULT_AT"),
    };
    let out = cmd.output().expect("failed to start captag");
    assert!(
        out.status.success() || out.status.signal() == Some(9),
        "captag train (fault at {fault_at:?}, resume {resume}) failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.status
}

/// What must be identical: the files' bytes, and the metrics lines without their timings.
fn outcome(run: &Path) -> (Vec<Vec<u8>>, Vec<serde_json::Value>) {
    let files = [
        "last.safetensors",
        "model.safetensors",
        "train_state.safetensors",
        "train_state.json",
        "config.json",
        "vocab.json",
    ]
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
            o.remove("seconds");
            o.remove("captions_per_s");
            v
        })
        .collect();
    (files, lines)
}

#[test]
fn kill_9_at_every_fault_point_then_resume_is_exact() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    one_caption_set(&data, 6);
    let reference = t.path().join("reference");
    assert!(train(&data, &reference, false, None).success());
    let want = outcome(&reference);
    assert_eq!(want.1.len(), EPOCHS);
    let mut killed = 0;
    for n in 1.. {
        let run = t.path().join(format!("killed_at_{n}"));
        if train(&data, &run, false, Some(n)).success() {
            // Past the last fault point: the whole run finished.
            assert_eq!(outcome(&run), want, "uninterrupted run with the hook set");
            break;
        }
        killed += 1;
        let resume = run.join("config.json").exists();
        assert!(train(&data, &run, resume, None).success());
        assert_eq!(
            outcome(&run),
            want,
            "killed at fault point {n}, then resumed"
        );
        let left: Vec<String> = fs::read_dir(&run)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp.") || n.starts_with(".epoch"))
            .collect();
        assert!(left.is_empty(), "killed at {n}: left {left:?}");
        fs::remove_dir_all(&run).unwrap();
    }
    // Creation, two epochs of steps and two commits: dozens of points, not a handful.
    assert!(killed >= 30, "only {killed} fault points were hit");
}
