//! The web page in a real headless Chromium, driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/install-browser.sh`, which `make test` runs): load
//! the page, upload an image through the file input, see the caption and hashtags appear,
//! rate it, and find the row in the database. Without a browser the test fails — it is skipped
//! only when CAPTAG_SKIP_BROWSER=1 is set on purpose.
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::common::s;
use super::serve::{an_image, http, Server};

struct Driver {
    child: std::process::Child,
    addr: String,
    session: String,
}

impl Driver {
    fn start() -> Option<Driver> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = match Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("CAPTAG_SKIP_BROWSER").as_deref() == Ok("1") {
                    eprintln!("browser test skipped (CAPTAG_SKIP_BROWSER=1)");
                    return None;
                }
                panic!(
                    "chromedriver not found ({e}): run scripts/install-browser.sh (make test does), \
                     or set CAPTAG_SKIP_BROWSER=1 to skip this test on purpose"
                );
            }
        };
        let addr = format!("127.0.0.1:{port}");
        let t0 = Instant::now();
        loop {
            if std::net::TcpStream::connect(&addr).is_ok()
                && http(&addr, "GET", "/status", "application/json", b"").1["value"]["ready"]
                    == true
            {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
            }
        }}});
        let (st, v) = http(
            &addr,
            "POST",
            "/session",
            "application/json",
            caps.to_string().as_bytes(),
        );
        assert_eq!(st, 200, "new session: {v}");
        let session = v["value"]["sessionId"].as_str().unwrap().to_string();
        Some(Driver {
            child,
            addr,
            session,
        })
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let (st, v) = http(
            &self.addr,
            method,
            &path,
            "application/json",
            body.as_bytes(),
        );
        assert_eq!(st, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    /// The element `css` selects, if the page has one now.
    fn try_find(&self, css: &str) -> Option<String> {
        let (st, v) = http(
            &self.addr,
            "POST",
            &format!("/session/{}/element", self.session),
            "application/json",
            json!({"using": "css selector", "value": css})
                .to_string()
                .as_bytes(),
        );
        if st == 404 && v["value"]["error"] == "no such element" {
            return None;
        }
        assert_eq!(st, 200, "find {css}: {v}");
        v["value"]
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    fn find(&self, css: &str) -> String {
        self.try_find(css)
            .unwrap_or_else(|| panic!("no element {css} on the page"))
    }

    fn try_text(&self, css: &str) -> Option<String> {
        let id = self.try_find(css)?;
        Some(
            self.call("GET", &format!("/element/{id}/text"), Value::Null)
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    }

    /// Polls until `css` exists and its text satisfies `pred` (the page renders results
    /// asynchronously), for at most 30 s.
    fn wait_text(&self, css: &str, pred: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let t = self.try_text(css);
            if let Some(t) = t.as_deref().filter(|t| pred(t)) {
                return t.to_string();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{css} never matched; last text {t:?}, status {:?}",
                self.try_text("#status")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = http(
            &self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            "application/json",
            b"",
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_page_captions_an_upload_and_stores_a_rating_in_a_real_browser() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("ratings.sqlite");
    let data = t.path().join("insta");
    super::common::synth(&data, 40, 32, "instagram");
    let tags = t.path().join("tags.json");
    super::common::ok(&["tags", "train", "--data", s(&data), "--out", s(&tags)]);
    let srv = Server::start(&db, &["--text-tags", s(&tags)], &[]);
    let t0 = Instant::now();
    let step = |what: &str| {
        eprintln!(
            "browser test: {what} at {:.1} s",
            t0.elapsed().as_secs_f64()
        )
    };
    let Some(d) = Driver::start() else { return };
    step("session");
    d.call(
        "POST",
        "/url",
        json!({"url": format!("http://{}/", srv.addr)}),
    );
    let input = d.find("#file");
    let img = an_image();
    d.call(
        "POST",
        &format!("/element/{input}/value"),
        json!({"text": s(&img)}),
    );
    step("uploaded");
    let caption = d.wait_text("#cards .caption-text", |t| !t.trim().is_empty());
    step("captioned");
    let hashtags = d.wait_text("#hashtags", |t| t.contains('#'));
    // The page shows what the API returns for the same image.
    let bytes = std::fs::read(&img).unwrap();
    let (_, v) = super::serve::caption_raw(&srv.addr, &bytes, "?beam=3");
    assert_eq!(caption.trim(), v["caption"].as_str().unwrap());
    assert!(hashtags.contains(&format!("#{}", v["hashtags"][0]["tag"].as_str().unwrap())));
    // Rate the first caption 4 stars and save.
    let star = d.find("#cards .card[data-index='0'] button[data-rating='4']");
    d.call("POST", &format!("/element/{star}/click"), json!({}));
    let save = d.find("#cards .card[data-index='0'] button.save");
    d.call("POST", &format!("/element/{save}/click"), json!({}));
    d.wait_text("#status", |t| t.starts_with("Saved rating #"));
    step("rated");
    drop(d);
    step("browser closed");
    drop(srv);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (stored, stars): (String, i64) = conn
        .query_row("SELECT caption, rating FROM ratings", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((stored.as_str(), stars), (caption.trim(), 4));
}

#[test]
fn the_page_shows_and_rates_the_llm_post_in_a_real_browser() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("ratings.sqlite");
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/llama");
    let srv = Server::start(&db, &["--llm", s(&model), "--timeout-s", "120"], &[]);
    let Some(d) = Driver::start() else { return };
    d.call(
        "POST",
        "/url",
        json!({"url": format!("http://{}/", srv.addr)}),
    );
    let input = d.find("#file");
    let img = an_image();
    d.call(
        "POST",
        &format!("/element/{input}/value"),
        json!({"text": s(&img)}),
    );
    // The plain caption and, beside it, the LLM's post: the one the API answers.
    let caption = d.wait_text("#cards .caption-text", |t| !t.trim().is_empty());
    let post = d.wait_text("#llm-post .caption-text", |t| !t.trim().is_empty());
    let bytes = std::fs::read(&img).unwrap();
    let (_, v) = super::serve::caption_raw(&srv.addr, &bytes, "?beam=3");
    assert_eq!(caption.trim(), v["caption"].as_str().unwrap());
    assert_eq!(post.trim(), v["llm_post"].as_str().unwrap());
    let star = d.find("#llm-post .card button[data-rating='5']");
    d.call("POST", &format!("/element/{star}/click"), json!({}));
    let save = d.find("#llm-post .card button.save");
    d.call("POST", &format!("/element/{save}/click"), json!({}));
    d.wait_text("#status", |t| t.starts_with("Saved rating #"));
    drop(d);
    drop(srv);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (stored, style, stars): (String, String, i64) = conn
        .query_row("SELECT caption, style, rating FROM ratings", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(
        (stored.as_str(), style.as_str(), stars),
        (post.trim(), "llm", 5)
    );
}
