//! Running the built `captag` binary and making fixtures.
use std::path::Path;
use std::process::{Command, Output};

pub fn captag(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_captag"))
        // A fixed thread count: the default follows the machine's load, and float sums in
        // another order would make outputs that tests compare differ in the last digits.
        .args(["--device", "cpu", "--threads", "1", "-q"])
        .args(args)
        .output()
        .expect("failed to start captag")
}

/// Run and require success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = captag(args);
    assert!(
        out.status.success(),
        "captag {args:?} failed ({:?}):\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run and require exit code 2 with a one-line `error:` message; returns that line.
pub fn bad_input(args: &[&str]) -> String {
    let out = captag(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "captag {args:?} should exit 2, stderr:\n{err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{err}");
    assert!(!err.contains("panicked"), "panic:\n{err}");
    lines[0].to_string()
}

pub fn synth(dir: &Path, count: usize, size: u32, layout: &str) {
    ok(&[
        "synth",
        "--out",
        dir.to_str().unwrap(),
        "--count",
        &count.to_string(),
        "--size",
        &size.to_string(),
        "--layout",
        layout,
    ]);
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Flags for a small, fast model on 32-px images that can memorise a handful of images.
pub fn tiny_flags(decoder: &str, dropout: &str, hidden: &str) -> Vec<String> {
    [
        "--decoder",
        decoder,
        "--image-size",
        "32",
        "--dropout",
        dropout,
        "--schedule",
        "constant",
        "--early-stop",
        "0",
        "--min-count",
        "1",
        "--batch-size",
        "40",
        "--lr",
        "5e-3",
        "--embed",
        "64",
        "--hidden",
        hidden,
    ]
    .iter()
    .map(|x| x.to_string())
    .collect()
}

/// `train --data DATA --out OUT --epochs N` with [`tiny_flags`] (dropout 0).
pub fn tiny_train_args(
    data: &Path,
    out: &Path,
    epochs: usize,
    decoder: &str,
    hidden: &str,
) -> Vec<String> {
    let mut a: Vec<String> = ["train", "--data", s(data), "--out", s(out), "--epochs"]
        .iter()
        .map(|x| x.to_string())
        .collect();
    a.push(epochs.to_string());
    a.extend(tiny_flags(decoder, "0", hidden));
    a
}

/// A synthetic Flickr8k-layout set with one caption per image: a memorised caption then scores
/// BLEU 1 against its reference.
pub fn one_caption_set(dir: &Path, count: usize) {
    synth(dir, count, 32, "flickr8k");
    let csv = dir.join("captions.txt");
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut seen = std::collections::HashSet::new();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| seen.insert(l.split(',').next().unwrap().to_string()))
        .collect();
    std::fs::write(&csv, kept.join("\n") + "\n").unwrap();
}
