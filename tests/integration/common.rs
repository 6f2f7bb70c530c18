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
