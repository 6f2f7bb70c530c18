//! The README's "Guarantees" while a command runs (issue 23, continued from `guarantees.rs`):
//! every image decode has the header pixel limit, a full stderr is exit 2, bad decoding flags
//! are refused, the server ends on SIGTERM and answers bad requests in JSON, and structure a
//! loader does not expect is refused rather than read wrongly.
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use super::guarantees::bounded;
use crate::common::{bad_input, ok, s, synth};

// ------------------------------------------------------- 4. decompression bombs

/// A PNG whose header says `w × h` (8-bit RGB) with a token of compressed data: 60 bytes on
/// disk that a decoder without a header check would allocate `3·w·h` bytes for.
pub fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut c = kind.to_vec();
        c.extend_from_slice(data);
        out.extend_from_slice(&c);
        out.extend_from_slice(&crc32(&c).to_be_bytes());
    }
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn every_decode_checks_the_header_pixel_limit() {
    let d = tempfile::tempdir().unwrap();
    let bomb = d.path().join("bomb.png");
    fs::write(&bomb, png_header_only(30000, 30000)).unwrap();
    // The one decode function every command uses.
    let e = captag::data::image::decode_rgb(&bomb)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("30000×30000") && e.contains("--max-megapixels"),
        "{e}"
    );
    // A dataset image: a counted skip, with the reason, in `data stats --verify` and `damage`.
    let data = d.path().join("data");
    synth(&data, 4, 32, "flickr8k");
    let caps = fs::read_to_string(data.join("captions.txt")).unwrap();
    let first = caps.lines().nth(1).unwrap().split(',').next().unwrap();
    fs::write(
        data.join("Images").join(first),
        png_header_only(30000, 30000),
    )
    .unwrap();
    let out = bounded(&["-v", "data", "stats", s(&data), "--verify"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("megapixels"), "{err}");
    // One line per unreadable image, naming it once.
    let line = err.lines().find(|l| l.contains("megapixels")).unwrap();
    assert_eq!(line.matches(first).count(), 1, "{line}");
    let out = bounded(&[
        "-v",
        "damage",
        "--data",
        s(&data),
        "--out",
        s(&d.path().join("dm")),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("megapixels"), "{err}");
    // The limit is a global flag.
    let e = bad_input(&["--max-megapixels", "0", "data", "stats", s(&data)]);
    assert!(e.contains("--max-megapixels"), "{e}");
}

// ------------------------------------------------------------ 6. stderr write errors

#[test]
fn a_full_stderr_is_exit_2_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    synth(&data, 4, 32, "flickr8k");
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_captag"))
        .args(["--threads", "1", "data", "stats", s(&data)])
        .stderr(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // And an error with stderr full is still exit 2.
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_captag"))
        .args(["data", "stats", "/no/such/dir"])
        .stderr(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let _ = std::io::stdout().flush();
}

// ------------------------------------------------------------------- small ones

#[test]
fn beam_0_and_a_nan_alpha_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    fs::create_dir(&run).unwrap();
    let img = d.path().join("x.png");
    fs::write(&img, "x").unwrap();
    let e = bad_input(&["caption", s(&run), s(&img), "--beam", "0"]);
    assert!(e.contains("--beam"), "{e}");
    let e = bad_input(&["caption", s(&run), s(&img), "--beam", "3", "--alpha", "NaN"]);
    assert!(e.contains("--length-alpha"), "{e}"); // `--alpha` is its old spelling
}

// ----------------------------------------------------------------------- 5. the server

/// Whether `child` exits within `secs`.
fn exits_within(child: &mut std::process::Child, secs: u64) -> bool {
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_secs(secs) {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

#[test]
fn sigterm_ends_the_server_while_a_client_holds_partial_headers() {
    use crate::serve::Server;
    use std::io::Read;
    let t = tempfile::tempdir().unwrap();
    let mut srv = Server::start(&t.path().join("r.sqlite"), &["--timeout-s", "1"], &[]);
    let mut c = std::net::TcpStream::connect(&srv.addr).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: signals our own child.
    unsafe { libc::kill(srv.child.id() as i32, libc::SIGTERM) };
    assert!(
        exits_within(&mut srv.child, 20),
        "the server is still up 20 s after SIGTERM"
    );
    // And a connection that sends nothing more is closed by the header-read timeout.
    let srv = Server::start(&t.path().join("r2.sqlite"), &["--timeout-s", "1"], &[]);
    let mut c = std::net::TcpStream::connect(&srv.addr).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let t0 = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = c.read(&mut buf).unwrap_or(0);
    assert!(
        n == 0 || buf.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        &buf[..n]
    );
    assert!(t0.elapsed() < std::time::Duration::from_secs(25));
}

#[test]
fn unknown_paths_methods_and_bad_queries_are_json_errors() {
    use crate::serve::{http, Server};
    let t = tempfile::tempdir().unwrap();
    let srv = Server::start(&t.path().join("r.sqlite"), &[], &[]);
    let (st, v) = http(&srv.addr, "GET", "/no/such/page", "text/plain", b"");
    assert_eq!(st, 404);
    assert!(v["error"].as_str().is_some(), "{v}");
    let (st, v) = http(&srv.addr, "DELETE", "/api/caption", "text/plain", b"");
    assert_eq!(st, 405);
    assert!(v["error"].as_str().is_some(), "{v}");
    let (st, v) = http(
        &srv.addr,
        "POST",
        "/api/caption?beam=many",
        "image/png",
        b"x",
    );
    assert_eq!(st, 400);
    assert!(v["error"].as_str().unwrap().contains("query"), "{v}");
}

#[test]
fn resume_without_lr_continues_with_the_runs_rate() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    synth(&data, 6, 32, "flickr8k");
    let run = d.path().join("run");
    // tiny_train_args trains with --lr 5e-3, not the default 2e-3.
    let args = crate::common::tiny_train_args(&data, &run, 1, "lstm", "32");
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut resume: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--lr" => {
                it.next();
            }
            "--epochs" => {
                it.next();
                resume.extend(["--epochs".to_string(), "2".to_string()]);
            }
            _ => resume.push(a.clone()),
        }
    }
    resume.push("--resume".into());
    ok(&resume.iter().map(String::as_str).collect::<Vec<_>>());
}

// ---------------------------------------------------------- 7. silent wrong results

#[test]
fn structure_that_is_not_what_the_loader_expects_is_refused() {
    let d = tempfile::tempdir().unwrap();
    // A Kaggle row whose quote does not close would swallow the rest of the file.
    let data = d.path().join("data");
    synth(&data, 4, 32, "flickr8k");
    let caps = fs::read_to_string(data.join("captions.txt")).unwrap();
    let mut lines: Vec<String> = caps.lines().map(String::from).collect();
    lines[2] = lines[2].replacen(',', ",\"", 1);
    fs::write(data.join("captions.txt"), lines.join("\n") + "\n").unwrap();
    let e = bad_input(&["data", "stats", s(&data)]);
    assert!(e.contains("does not close"), "{e}");

    // NaN weights are refused where they are loaded.
    let w = d.path().join("w.safetensors");
    let t = tch::Tensor::from_slice(&[1.0f32, f32::NAN]);
    tch::Tensor::write_safetensors(&[("x", &t)], &w).unwrap();
    let e = captag::model::weights::read_tensors(&w)
        .unwrap_err()
        .to_string();
    assert!(e.contains("NaN or infinite"), "{e}");

    // A CLIP preprocessor with image_std 0.
    let clip = d.path().join("clip");
    fs::create_dir(&clip).unwrap();
    fs::write(
        clip.join("preprocessor_config.json"),
        r#"{"crop_size": 224, "size": {"shortest_edge": 224}, "image_std": [0, 0, 0]}"#,
    )
    .unwrap();
    let e = captag::data::image::clip::ClipPreprocess::read(&clip, 224)
        .expect_err("image_std 0 was accepted")
        .to_string();
    assert!(e.contains("image_std"), "{e}");

    // A feature cache's fingerprint covers the pictures, not only their names.
    let other = d.path().join("other");
    synth(&other, 4, 32, "flickr8k");
    let list = |dir: &Path| -> Vec<(String, std::path::PathBuf)> {
        let mut v: Vec<_> = fs::read_dir(dir.join("Images"))
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (p.file_name().unwrap().to_string_lossy().into_owned(), p)
            })
            .collect();
        v.sort();
        v
    };
    let (a, mut b) = (list(&data), list(&other));
    let pre = captag::data::image::Preprocess::clip_default();
    let fp = |l: &[(String, std::path::PathBuf)]| {
        captag::data::features::fingerprint("clip", "w", &pre, l)
    };
    assert_eq!(fp(&a), fp(&a));
    // Same names, other pictures (one rewritten with other bytes).
    fs::write(&b[0].1, b"other bytes, other size").unwrap();
    b.iter_mut().zip(&a).for_each(|(x, y)| x.0 = y.0.clone());
    assert_ne!(fp(&a), fp(&b));

    // compare: two runs in one directory with different args.
    let spec = d.path().join("spec.json");
    fs::write(
        &spec,
        format!(
            r#"{{"data": "{}", "runs": [
                {{"name": "a", "dir": "runs/x", "args": ["--decoder", "lstm"]}},
                {{"name": "b", "dir": "runs/x", "args": ["--decoder", "gru"]}}]}}"#,
            s(&data)
        ),
    )
    .unwrap();
    let e = captag::experiments::compare::Spec::load(&spec)
        .expect_err("two runs in one dir with other args")
        .to_string();
    assert!(e.contains("share the directory"), "{e}");
}
