//! Special files where captag expects a regular one (a FIFO, a symlink to `/dev/zero`, a huge
//! sparse file): every command refuses them at once with exit 2 and an error naming the path,
//! instead of blocking forever, growing memory without bound or reading gigabytes first.
//! Each command runs under a watchdog, so a hang fails the test instead of the suite.
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::{ok, s, synth, tiny_train_args};

/// Longer than any of these commands takes when it refuses the file (well under a second plus
/// loading libtorch), far shorter than a hang.
const WATCHDOG: Duration = Duration::from_secs(20);

fn mkfifo(p: &Path) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {p:?}"
    );
}

/// Run captag with a watchdog; returns (exit code, stderr, elapsed). A run past [`WATCHDOG`] is
/// killed and fails the test.
fn run_guarded(args: &[&str]) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_captag"))
        .args(["--device", "cpu", "--threads", "1", "-q"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start captag");
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err, start.elapsed());
        }
        if start.elapsed() > WATCHDOG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("captag {args:?} still running after {WATCHDOG:?} (blocked on a special file?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Exit 2, no panic, and an `error:` line saying `needle` about `path`; returns that line and
/// the whole stderr.
fn refused(args: &[&str], path: &Path, needle: &str) -> (String, String) {
    let (code, err, _) = run_guarded(args);
    assert_eq!(
        code,
        Some(2),
        "captag {args:?} should exit 2, stderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "panic:\n{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error:") && l.contains(needle))
        .unwrap_or_else(|| panic!("no error line with {needle:?}, stderr:\n{err}"))
        .to_string();
    assert!(line.contains(&path.display().to_string()), "{line}");
    (line, err)
}

/// Like [`refused`], and the error is the only `error:` line.
fn refused_one_line(args: &[&str], path: &Path, needle: &str) -> String {
    let (line, err) = refused(args, path, needle);
    let n = err.lines().filter(|l| l.starts_with("error:")).count();
    assert_eq!(n, 1, "expected one error line, got:\n{err}");
    line
}

const FIFO: &str = "not a regular file (a FIFO)";
const DEVICE: &str = "not a regular file (a character device)";

/// A tiny trained run (data dir, run dir), shared by the caption tests.
fn trained() -> &'static (PathBuf, PathBuf) {
    static RUN: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    RUN.get_or_init(|| {
        let t = tempfile::tempdir().unwrap().keep();
        let (data, run) = (t.join("data"), t.join("run"));
        synth(&data, 8, 32, "flickr8k");
        let args = tiny_train_args(&data, &run, 1, "lstm", "32");
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        (data, run)
    })
}

#[test]
fn caption_refuses_a_fifo_image_without_blocking() {
    let t = tempfile::tempdir().unwrap();
    let (_, run) = trained();
    let fifo = t.path().join("x.jpg");
    mkfifo(&fifo);
    refused(&["caption", s(run), s(&fifo)], &fifo, FIFO);
}

#[test]
fn caption_refuses_a_symlink_to_dev_zero() {
    let t = tempfile::tempdir().unwrap();
    let (_, run) = trained();
    let zero = t.path().join("zero.jpg");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    refused(&["caption", s(run), s(&zero)], &zero, DEVICE);
}

#[test]
fn caption_refuses_a_huge_sparse_image_without_reading_it() {
    let t = tempfile::tempdir().unwrap();
    let (data, run) = trained();
    let big = t.path().join("big.jpg");
    fs::File::create(&big)
        .unwrap()
        .set_len(3_000_000_000)
        .unwrap();
    let (_, _, baseline) = run_guarded(&["caption", s(run), s(&data.join("Images"))]);
    let start = Instant::now();
    refused(
        &["caption", s(run), s(&big)],
        &big,
        "2.8 GiB is over the 256 MiB limit for an image",
    );
    // Refused from its size: no slower than captioning a few real images.
    assert!(
        start.elapsed() < baseline + Duration::from_secs(5),
        "{:?} vs {baseline:?}",
        start.elapsed()
    );
}

#[test]
fn a_special_file_among_images_costs_only_itself() {
    let t = tempfile::tempdir().unwrap();
    let (data, run) = trained();
    let dir = t.path().join("imgs");
    fs::create_dir(&dir).unwrap();
    fs::copy(data.join("Images/synth_00001.jpg"), dir.join("a.jpg")).unwrap();
    mkfifo(&dir.join("b.jpg"));
    let (code, err, _) = run_guarded(&["caption", s(run), s(&dir)]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains(FIFO), "{err}");
}

#[test]
fn caption_refuses_a_fifo_vocabulary_in_the_run() {
    let t = tempfile::tempdir().unwrap();
    let (data, run) = trained();
    let copy = t.path().join("run");
    fs::create_dir(&copy).unwrap();
    for e in fs::read_dir(run).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        }
    }
    let vocab = copy.join("vocab.json");
    fs::remove_file(&vocab).unwrap();
    mkfifo(&vocab);
    refused_one_line(
        &["caption", s(&copy), s(&data.join("Images/synth_00001.jpg"))],
        &vocab,
        FIFO,
    );
}

#[test]
fn bleu_refuses_fifo_predictions_and_references() {
    let t = tempfile::tempdir().unwrap();
    let refs = t.path().join("refs.json");
    fs::write(&refs, r#"{"1": ["a red circle"]}"#).unwrap();
    let preds = t.path().join("preds.json");
    fs::write(&preds, r#"[{"image_id": 1, "caption": "a red circle"}]"#).unwrap();
    let fifo = t.path().join("fifo.json");
    mkfifo(&fifo);
    refused_one_line(
        &["bleu", "--predictions", s(&fifo), "--references", s(&refs)],
        &fifo,
        FIFO,
    );
    refused_one_line(
        &["bleu", "--predictions", s(&preds), "--references", s(&fifo)],
        &fifo,
        FIFO,
    );
    let zero = t.path().join("zero.txt");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    refused_one_line(
        &["bleu", "--predictions", s(&zero), "--references", s(&refs)],
        &zero,
        DEVICE,
    );
}

#[test]
fn data_stats_refuses_a_fifo_captions_file() {
    let t = tempfile::tempdir().unwrap();
    // Named directly.
    let fifo = t.path().join("captions.txt");
    mkfifo(&fifo);
    refused_one_line(&["data", "stats", s(&fifo)], &fifo, FIFO);
    // Found in a dataset folder: refused by name, not looked past ("no dataset found").
    refused_one_line(&["data", "stats", s(t.path())], &fifo, FIFO);
    let d = t.path().join("uiuc");
    fs::create_dir(&d).unwrap();
    let zero = d.join("Flickr8k.token.txt");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    refused_one_line(&["data", "stats", s(&d)], &zero, DEVICE);
}

#[test]
fn data_stats_refuses_a_fifo_split_list() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("d");
    synth(&d, 6, 32, "flickr8k");
    let list = d.join("Flickr_8k.devImages.txt");
    fs::remove_file(&list).unwrap();
    mkfifo(&list);
    refused_one_line(&["data", "stats", s(&d)], &list, FIFO);
}
