//! `captag serve` over real HTTP on 127.0.0.1 (an ephemeral port) with a tiny synthetic
//! checkpoint: the caption round trip equals `captag caption`, each bad upload gets its status
//! and JSON message, a full queue gives 503 and recovers, SIGTERM finishes the request in
//! flight, ratings survive a restart and kill -9, and the export is a dataset captag loads.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::common::{ok, s, synth, tiny_train_args};

/// A trained tiny run and its synthetic data, shared by the tests (built once).
pub fn fixture() -> &'static (PathBuf, PathBuf) {
    static F: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    F.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("captag-serve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let data = root.join("data");
        synth(&data, 12, 32, "flickr8k");
        let run = root.join("run");
        let args = tiny_train_args(&data, &run, 3, "lstm", "64");
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        (data, run)
    })
}

pub fn an_image() -> PathBuf {
    let (data, _) = fixture();
    let dir = data.join("Images");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v.remove(0)
}

pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(db: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let (_, run) = fixture();
        Server::start_on(run, db, extra, env)
    }

    /// The server on another checkpoint (a run directory or a BLIP/GIT folder).
    pub fn start_on(run: &Path, db: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_captag"));
        cmd.args(["--device", "cpu", "--threads", "1", "-q", "serve", s(run)])
            .args(["--addr", "127.0.0.1:0", "--db", s(db)])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server { child, addr }
    }

    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: signals our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request; returns the status and the body parsed as JSON (Null if not JSON).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before reading everything; a reset then is fine.
    let _ = c.write_all(body);
    let (head, body) = read_response(&mut c);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {head:?}"));
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// Reads one response: the head, then exactly `Content-Length` bytes (or the chunks) — not
/// to end of stream, because some servers (chromedriver) keep the connection open despite
/// `Connection: close`, and waiting for the close would stall until the read timeout.
fn read_response(c: &mut TcpStream) -> (String, Vec<u8>) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let split = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return (String::from_utf8_lossy(&raw).into_owned(), Vec::new()),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_ascii_lowercase())
    };
    if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while body.len() < n {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => body.extend_from_slice(&buf[..k]),
            }
        }
        body.truncate(n);
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut out = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = body.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => return (head, out),
                    Ok(k) => body.extend_from_slice(&buf[..k]),
                }
            };
            let size_text = String::from_utf8_lossy(&body[..line_end]).into_owned();
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
            if size == 0 {
                return (head, out);
            }
            while body.len() < line_end + 2 + size + 2 {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => return (head, out),
                    Ok(k) => body.extend_from_slice(&buf[..k]),
                }
            }
            out.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
            body.drain(..line_end + 2 + size + 2);
        }
    } else {
        let _ = c.read_to_end(&mut body);
    }
    (head, body)
}

pub fn caption_raw(addr: &str, bytes: &[u8], query: &str) -> (u16, serde_json::Value) {
    http(
        addr,
        "POST",
        &format!("/api/caption{query}"),
        "application/octet-stream",
        bytes,
    )
}

fn multipart(bytes: &[u8]) -> (String, Vec<u8>) {
    let b = "captagboundary7";
    let mut body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n\
         Content-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

fn rating(sha: &str, caption: &str, stars: u8) -> Vec<u8> {
    serde_json::json!({"image_sha256": sha, "caption": caption, "rating": stars})
        .to_string()
        .into_bytes()
}

#[test]
fn caption_round_trip_equals_the_cli_and_ratings_survive_a_restart() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("ratings.sqlite");
    let kept = t.path().join("kept");
    let img = an_image();
    let (_, run) = fixture();
    let cli = ok(&["caption", s(run), s(&img), "--beam", "3"]);
    let cli_caption = cli.trim_end().split_once('\t').unwrap().1.to_string();
    let srv = Server::start(&db, &["--keep-images", s(&kept)], &[]);
    let (st, health) = http(&srv.addr, "GET", "/healthz", "text/plain", b"");
    assert_eq!((st, health["status"].as_str()), (200, Some("ok")));
    let bytes = std::fs::read(&img).unwrap();
    let (st, v) = caption_raw(&srv.addr, &bytes, "?beam=3");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["caption"].as_str().unwrap(), cli_caption);
    assert_eq!(v["alternatives"][0]["text"], v["caption"]);
    assert!(v["alternatives"].as_array().unwrap().len() <= 3);
    // Top-p samples as alternatives: the CLI's samples for the same seed, in the same order.
    let q = "?top_p=0.9&samples=4&temperature=1.5&seed=7";
    let (st, p) = caption_raw(&srv.addr, &bytes, q);
    assert_eq!(st, 200, "{p}");
    assert!(
        p["decoding"].as_str().unwrap().starts_with("top-p 0.9"),
        "{p}"
    );
    let cli = ok(&[
        "--seed",
        "7",
        "caption",
        s(run),
        s(&img),
        "--top-p",
        "0.9",
        "--samples",
        "4",
        "--temperature",
        "1.5",
        "--json",
    ]);
    let cli: serde_json::Value = serde_json::from_str(cli.trim()).unwrap();
    // One result type for both: `alternatives` is the whole list, led by `caption`.
    assert_eq!(cli["alternatives"][0]["text"], cli["caption"], "{cli}");
    let want: Vec<serde_json::Value> = cli["alternatives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["text"].clone())
        .collect();
    let got: Vec<serde_json::Value> = p["alternatives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["text"].clone())
        .collect();
    assert_eq!(got, want);
    let (ct, body) = multipart(&bytes);
    let (st, m) = http(&srv.addr, "POST", "/api/caption?beam=3", &ct, &body);
    assert_eq!((st, &m["caption"]), (200, &v["caption"]), "{m}");
    let sha = v["image_sha256"].as_str().unwrap().to_string();
    assert!(kept.join(format!("{sha}.png")).is_file() || kept.join(format!("{sha}.jpg")).is_file());
    let (st, r) = http(
        &srv.addr,
        "POST",
        "/api/ratings",
        "application/json",
        &rating(&sha, v["caption"].as_str().unwrap(), 5),
    );
    assert_eq!(st, 200, "{r}");
    let edit =
        serde_json::json!({"image_sha256": sha, "caption": "x", "edited": "a fixed caption"});
    let (st, _) = http(
        &srv.addr,
        "POST",
        "/api/ratings",
        "application/json",
        edit.to_string().as_bytes(),
    );
    assert_eq!(st, 200);
    assert!(srv.terminate().success(), "SIGTERM is a clean exit");
    // Restart: the ratings are still there.
    let srv = Server::start(&db, &[], &[]);
    let (st, e) = http(&srv.addr, "GET", "/api/ratings/export", "text/plain", b"");
    assert_eq!(st, 200);
    let rows = e["ratings"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{e}");
    assert_eq!(rows[0]["rating"], 5);
    assert_eq!(rows[1]["edited"], "a fixed caption");
    drop(srv);
    // The export is a dataset captag reads.
    let ds = t.path().join("feedback");
    let out = ok(&[
        "ratings",
        "export",
        "--db",
        s(&db),
        "--out",
        s(&ds),
        "--images",
        s(&kept),
    ]);
    assert!(out.contains("wrote 2 captions of 1 images"), "{out}");
    let stats = ok(&["data", "stats", s(&ds), "--json"]);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["images_found"], 1, "{stats}");
    assert_eq!(stats["captions"], 2, "{stats}");
}

#[test]
fn bad_uploads_get_their_status_and_a_json_message() {
    let t = tempfile::tempdir().unwrap();
    let srv = Server::start(
        &t.path().join("r.sqlite"),
        &["--max-upload-mb", "1", "--max-megapixels", "1"],
        &[],
    );
    let png = std::fs::read(an_image()).unwrap();
    let big = {
        let img = image::RgbImage::from_pixel(1200, 1000, image::Rgb([9, 9, 9]));
        let mut c = std::io::Cursor::new(Vec::new());
        img.write_to(&mut c, image::ImageFormat::Png).unwrap();
        c.into_inner()
    };
    let cases: Vec<(&str, Vec<u8>, &str, u16)> = vec![
        ("text", b"hello, this is not an image".to_vec(), "", 415),
        (
            "gif",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
            "",
            415,
        ),
        ("empty", vec![], "", 400),
        ("truncated", png[..png.len() / 2].to_vec(), "", 400),
        ("too many pixels", big, "", 413),
        ("too large", vec![0xff; 2 << 20], "", 413),
        ("bad beam", png.clone(), "?beam=0", 400),
        ("bad style", png.clone(), "?style=loud", 400),
        ("bad top_p", png.clone(), "?top_p=1.5", 400),
        ("bad samples", png.clone(), "?top_p=0.9&samples=0", 400),
    ];
    for (what, body, q, want) in cases {
        let (st, v) = caption_raw(&srv.addr, &body, q);
        assert_eq!(st, want, "{what}: {v}");
        let msg = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no JSON error: {v}"));
        assert!(!msg.is_empty() && !msg.contains('\n'), "{what}: {msg}");
    }
    for (what, body) in [
        ("not json", b"{rating".to_vec()),
        ("bad sha", rating("../../etc/passwd", "a", 5)),
        ("bad stars", rating(&"a".repeat(64), "a", 9)),
    ] {
        let (st, v) = http(&srv.addr, "POST", "/api/ratings", "application/json", &body);
        assert_eq!(st, 400, "{what}: {v}");
        assert!(v["error"].is_string(), "{what}: {v}");
    }
    // Still serving after all of that.
    let (st, v) = caption_raw(&srv.addr, &png, "");
    assert_eq!(st, 200, "{v}");
}

#[test]
fn a_full_queue_is_503_and_the_server_recovers() {
    let t = tempfile::tempdir().unwrap();
    let srv = Server::start(
        &t.path().join("r.sqlite"),
        &["--queue", "1"],
        &[("CAPTAG_SERVE_DELAY_MS", "400")],
    );
    let png = std::fs::read(an_image()).unwrap();
    let statuses: Vec<u16> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..6)
            .map(|_| sc.spawn(|| caption_raw(&srv.addr, &png, "").0))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    let (st, _) = caption_raw(&srv.addr, &png, "");
    assert_eq!(st, 200, "recovers once the queue drains");
}

#[test]
fn sigterm_finishes_the_request_in_flight() {
    let t = tempfile::tempdir().unwrap();
    let srv = Server::start(
        &t.path().join("r.sqlite"),
        &[],
        &[("CAPTAG_SERVE_DELAY_MS", "1500")],
    );
    let png = std::fs::read(an_image()).unwrap();
    let addr = srv.addr.clone();
    let pending = std::thread::spawn(move || caption_raw(&addr, &png, ""));
    std::thread::sleep(Duration::from_millis(500));
    let status = srv.terminate();
    let (st, v) = pending.join().unwrap();
    assert_eq!(st, 200, "the in-flight request is answered: {v}");
    assert!(status.success(), "{status:?}");
}

#[test]
fn kill_9_while_rating_leaves_a_consistent_database() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("r.sqlite");
    let srv = Server::start(&db, &[], &[]);
    let addr = srv.addr.clone();
    let sha = "c".repeat(64);
    let acked = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| {
                for i in 0..400 {
                    let Ok(mut c) = TcpStream::connect(&addr) else { return };
                    let body = rating(&sha, &format!("caption {i}"), 4);
                    let head = format!(
                        "POST /api/ratings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    if c.write_all(head.as_bytes()).and_then(|_| c.write_all(&body)).is_err() {
                        return;
                    }
                    let mut raw = String::new();
                    let _ = c.read_to_string(&mut raw);
                    if raw.starts_with("HTTP/1.1 200") {
                        acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    } else {
                        return;
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(700));
        let mut srv = srv;
        srv.child.kill().unwrap(); // SIGKILL
        srv.child.wait().unwrap();
    });
    let acked = acked.load(std::sync::atomic::Ordering::SeqCst);
    assert!(acked > 0, "no rating was stored before the kill");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let n: i64 = conn
        .query_row("SELECT count(*) FROM ratings", [], |r| r.get(0))
        .unwrap();
    assert!(n as usize >= acked, "{n} rows but {acked} acknowledged");
    drop(conn);
    // And the server opens it again.
    let srv = Server::start(&db, &[], &[]);
    let (st, e) = http(&srv.addr, "GET", "/api/ratings/export", "text/plain", b"");
    assert_eq!(st, 200);
    assert_eq!(e["ratings"].as_array().unwrap().len() as i64, n);
}

#[test]
fn serve_refuses_bad_flags_with_one_line() {
    let t = tempfile::tempdir().unwrap();
    let (_, run) = fixture();
    let e = super::common::bad_input(&["serve", s(t.path()), "--addr", "127.0.0.1:0"]);
    assert!(e.contains("not a captag run directory"), "{e}");
    let e = super::common::bad_input(&["serve", s(run), "--addr", "localhost"]);
    assert!(e.contains("--addr"), "{e}");
    let not_db = t.path().join("x.sqlite");
    std::fs::write(&not_db, vec![b'x'; 4096]).unwrap();
    let e =
        super::common::bad_input(&["serve", s(run), "--addr", "127.0.0.1:0", "--db", s(&not_db)]);
    assert!(e.contains("ratings database"), "{e}");
}

#[test]
fn an_ensemble_serves_the_captions_the_cli_writes() {
    let t = tempfile::tempdir().unwrap();
    let (data, run) = fixture();
    let other = t.path().join("gru");
    let args = tiny_train_args(data, &other, 2, "gru", "32");
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let img = an_image();
    let cli = ok(&[
        "caption",
        s(run),
        s(&img),
        "--beam",
        "3",
        "--ensemble",
        s(&other),
    ]);
    let cli_caption = cli.trim_end().split_once('\t').unwrap().1.to_string();
    let db = t.path().join("ratings.sqlite");
    let srv = Server::start(&db, &["--ensemble", s(&other)], &[]);
    let (st, v) = caption_raw(&srv.addr, &std::fs::read(&img).unwrap(), "?beam=3");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["caption"].as_str().unwrap(), cli_caption);
    // The alternatives' log-probabilities are the ensemble's, not the leading run's alone, and
    // ratings name both runs.
    let alone = ok(&["caption", s(run), s(&img), "--beam", "3", "--json"]);
    let alone: serde_json::Value = serde_json::from_str(alone.trim()).unwrap();
    assert_ne!(
        alone["alternatives"][0]["logp"],
        v["alternatives"][0]["logp"]
    );
    assert!(v["run_id"].as_str().unwrap().contains("gru@"), "{v}");
}
