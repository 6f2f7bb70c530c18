//! The output rules (README, "Guarantees"): a failed write to standard output is one error line
//! and exit code 2, never a panic or a silent success; no command overwrites its own input.
use std::fs;
use std::process::{Command, Stdio};

use super::common::{bad_input, s, synth};

fn captag_with_stdout(args: &[&str], stdout: Stdio) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_captag"))
        .args(["--device", "cpu", "--threads", "1", "-q"])
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("failed to start captag")
}

fn one_error_line(out: &std::process::Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{what}: {err}");
    lines[0].to_string()
}

#[test]
fn stdout_on_a_full_device_is_an_error_not_a_panic() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 4, 32, "flickr8k");
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = captag_with_stdout(&["data", "stats", s(&data)], Stdio::from(full));
    let e = one_error_line(&out, "stdout = /dev/full");
    assert!(
        e.contains("standard output") && e.contains("No space left"),
        "{e}"
    );
    assert!(!e.contains("os error") && !e.contains("Os {"), "{e}");
}

#[test]
fn a_closed_stdout_is_an_error_not_a_silent_success() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 4, 32, "flickr8k");
    // Close fd 1 in the child before it runs (`>&-` in a shell).
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec {} --device cpu -q data stats {} >&-",
            env!("CARGO_BIN_EXE_captag"),
            s(&data)
        ))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let e = one_error_line(&out, "stdout closed");
    assert!(e.contains("standard output"), "{e}");
}

#[test]
fn a_read_write_dev_null_stdout_is_not_mistaken_for_a_closed_one() {
    // Python's `subprocess.DEVNULL` opens /dev/null read-write, as Rust's runtime does for a
    // closed descriptor: the output is discarded on purpose and the command succeeds.
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 4, 32, "flickr8k");
    let null = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .unwrap();
    let out = captag_with_stdout(&["data", "stats", s(&data)], Stdio::from(null));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn no_command_overwrites_its_own_input() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 6, 32, "flickr8k");
    let captions = data.join("captions.txt");
    let before = fs::read(&captions).unwrap();
    let e = bad_input(&["vocab", "build", s(&captions), "--out", s(&captions)]);
    assert!(e.contains("is also an input"), "{e}");
    let insta = t.path().join("insta");
    synth(&insta, 6, 32, "instagram");
    let csv = fs::read_dir(&insta)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "csv"))
        .unwrap();
    let csv_before = fs::read(&csv).unwrap();
    let e = bad_input(&["tags", "train", "--data", s(&csv), "--out", s(&csv)]);
    assert!(e.contains("is also an input"), "{e}");
    // A new run written over the run it starts from (`--init-from`, SCST or fine-tuning).
    let run = t.path().join("run");
    fs::create_dir(&run).unwrap();
    fs::write(run.join("config.json"), "{}").unwrap();
    let e = bad_input(&[
        "train",
        "--data",
        s(&data),
        "--init-from",
        s(&run),
        "--out",
        s(&run),
        "--objective",
        "scst",
    ]);
    assert!(e.contains("is also an input"), "{e}");
    assert_eq!(fs::read(run.join("config.json")).unwrap(), b"{}");
    assert_eq!(fs::read(&captions).unwrap(), before);
    assert_eq!(fs::read(&csv).unwrap(), csv_before);
}
