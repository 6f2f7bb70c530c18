//! `captag translate` and `caption --translate` on the tiny random Marian, M2M100 and NLLB
//! folders of `notebooks/make_translation_fixtures.py` (tests/fixtures/hf/): the printed
//! translations are `transformers`' beam-4 texts (the folders' generation_config.json), and a
//! bad folder or language is one error line with exit code 2.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{bad_input, ok, s, synth, tiny_train_args};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

fn cases(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn translate_prints_transformers_beam_texts() {
    for name in ["marian", "nllb"] {
        let cases = cases(name);
        let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
        let dir = fixture(name);
        let mut args = vec!["translate", "--model", s(&dir)];
        args.extend(&texts);
        let out = ok(&args);
        let got: Vec<String> = out.lines().map(words).collect();
        let want: Vec<String> = cases
            .iter()
            .map(|c| words(c["beam_text"].as_str().unwrap()))
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn translate_reads_standard_input_and_writes_json() {
    let dir = fixture("m2m100");
    let mut child = Command::new(env!("CARGO_BIN_EXE_captag"))
        .args([
            "--device",
            "cpu",
            "--threads",
            "1",
            "-q",
            "translate",
            "--model",
            s(&dir),
        ])
        .args(["--lang", "hin_Deva", "--beam", "1", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all("a dog runs on the beach.\nSunset 🌅 #travel #sunset\n".as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["lang"], "hin_Deva");
    assert_eq!(
        lines[1]["hashtags"],
        serde_json::json!(["travel", "sunset"])
    );
    // Every regional tag is Devanagari; the others are listed as untranslated, never mixed in.
    let regional = lines[1]["regional_hashtags"].as_array().unwrap();
    let untranslated = lines[1]["untranslated_hashtags"].as_array().unwrap();
    assert_eq!(regional.len() + untranslated.len(), 2, "{:?}", lines[1]);
    for t in regional {
        let t = t.as_str().unwrap();
        assert!(
            t.chars()
                .all(|c| c == '_' || ('\u{900}'..='\u{97f}').contains(&c)),
            "{t}"
        );
    }
}

#[test]
fn translate_refuses_bad_folders_and_languages() {
    let e = bad_input(&["translate", "--model", s(&fixture("llama")), "x"]);
    assert!(e.contains("config.json"), "{e}");
    let e = bad_input(&["translate", "--model", "/no/such/folder", "x"]);
    assert!(e.contains("not a folder"), "{e}");
    let e = bad_input(&[
        "translate",
        "--model",
        s(&fixture("nllb")),
        "--lang",
        "xx_Yyyy",
        "x",
    ]);
    assert!(e.contains("xx_Yyyy"), "{e}");
    let e = bad_input(&[
        "translate",
        "--model",
        s(&fixture("marian")),
        "--lang",
        "tam_Taml",
        "x",
    ]);
    assert!(e.contains("translates into `hi` only"), "{e}");
    let t = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("nllb").join("config.json"),
        t.path().join("config.json"),
    )
    .unwrap();
    std::fs::write(t.path().join("model.safetensors"), b"not safetensors").unwrap();
    let e = bad_input(&["translate", "--model", s(t.path()), "x"]);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
}

#[test]
fn caption_translate_adds_the_translation_and_regional_tags() {
    let t = tempfile::tempdir().unwrap();
    let (data, run) = (t.path().join("data"), t.path().join("run"));
    synth(&data, 8, 32, "flickr8k");
    let args = tiny_train_args(&data, &run, 1, "lstm", "32");
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let img = std::fs::read_dir(data.join("Images"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let nllb = fixture("nllb");
    let out = ok(&[
        "caption",
        s(&run),
        s(&img),
        "--translate",
        s(&nllb),
        "--lang",
        "tam_Taml",
        "--json",
    ]);
    let v: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(v["caption"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
    assert_eq!(v["translation"]["lang"], "tam_Taml", "{v}");
    assert!(v["translation"]["text"].is_string(), "{v}");
    let plain = ok(&["caption", s(&run), s(&img), "--translate", s(&nllb)]);
    assert_eq!(plain.lines().count(), 2, "{plain}");
    assert!(
        plain.lines().nth(1).unwrap().contains("\thin_Deva: "),
        "{plain}"
    );
}

#[test]
fn serve_translate_answers_with_the_translation() {
    use crate::serve::{an_image, caption_raw, Server};
    let t = tempfile::tempdir().unwrap();
    let nllb = fixture("nllb");
    let srv = Server::start(
        &t.path().join("db.sqlite"),
        &["--translate", s(&nllb), "--lang", "ben_Beng"],
        &[],
    );
    let bytes = std::fs::read(an_image()).unwrap();
    let (st, v) = caption_raw(&srv.addr, &bytes, "");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["translation"]["lang"], "ben_Beng", "{v}");
    assert!(v["translation"]["text"].is_string(), "{v}");
    // Tags are listed only when some translated into Bengali script.
    for tag in v["translation"]["hashtags"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let tag = tag.as_str().unwrap();
        assert!(
            tag.chars()
                .all(|c| c == '_' || ('\u{980}'..='\u{9ff}').contains(&c)),
            "{tag}"
        );
    }
}
