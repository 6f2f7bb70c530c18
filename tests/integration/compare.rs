//! `captag compare` and `captag plot` end to end on a tiny synthetic set.
use std::fs;

use super::common::{bad_input, captag, ok, s, synth};

#[test]
fn compare_trains_evaluates_and_draws_then_skips_finished_runs() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 16, 32, "flickr8k");
    let out = t.path().join("cmp");
    let spec = t.path().join("spec.json");
    let flags = r#"["--image-size", "32", "--embed", "32", "--hidden", "64", "--min-count", "1",
                    "--epochs", "2", "--early-stop", "0", "--hashtags"]"#;
    fs::write(
        &spec,
        format!(
            r#"{{"data": "{}", "train": {flags},
                "runs": [{{"name": "lstm", "args": ["--decoder", "lstm"]}},
                         {{"name": "attention", "args": ["--decoder", "attention"]}}]}}"#,
            s(&data)
        ),
    )
    .unwrap();
    let table = ok(&[
        "compare",
        "--spec",
        s(&spec),
        "--out",
        s(&out),
        "--resamples",
        "200",
    ]);
    assert!(
        table.contains("| lstm |") && table.contains("| attention |"),
        "{table}"
    );
    for f in [
        "compare.md",
        "compare.json",
        "compare.csv",
        "curves.svg",
        "curves.png",
        "metrics.svg",
        "metrics.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(j["rows"].as_array().unwrap().len(), 2);
    assert!(j["rows"][0]["bleu4_vs_baseline"].is_null());
    let iv = &j["rows"][1]["cider_vs_baseline"];
    assert!(iv["lo"].as_f64().unwrap() <= iv["hi"].as_f64().unwrap());
    assert_eq!(j["rows"][1]["epochs"], 2);
    assert!(j["rows"][0]["tag_map"].is_number());
    // Synthetic data: the grounded-truth shares are columns of the table.
    let share = j["rows"][1]["true_claims"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&share), "{share}");
    assert!(table.contains("true captions"), "{table}");
    let csv = fs::read_to_string(out.join("compare.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3);
    assert!(fs::read_to_string(out.join("curves.svg"))
        .unwrap()
        .starts_with("<svg"));
    image::open(out.join("metrics.png")).unwrap();
    // A second call trains nothing and gives the same table.
    let last = out.join("runs/lstm/last.safetensors");
    let before = fs::metadata(&last).unwrap().modified().unwrap();
    let again = captag(&[
        "compare",
        "--spec",
        s(&spec),
        "--out",
        s(&out),
        "--resamples",
        "200",
    ]);
    assert!(again.status.success());
    let j2: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    for i in 0..2 {
        assert_eq!(j2["rows"][i]["bleu"], j["rows"][i]["bleu"]);
        assert_eq!(j2["rows"][i]["cider"], j["rows"][i]["cider"]);
        assert_eq!(
            j2["rows"][i]["cider_vs_baseline"],
            j["rows"][i]["cider_vs_baseline"]
        );
    }
    assert_eq!(fs::metadata(&last).unwrap().modified().unwrap(), before);
    let lines = fs::read_to_string(out.join("runs/lstm/metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2);
    // An ensemble of the two trained runs: a row of its own, nothing trained.
    fs::write(
        &spec,
        format!(
            r#"{{"data": "{}", "train": {flags},
                "runs": [{{"name": "lstm", "args": ["--decoder", "lstm"]}},
                         {{"name": "attention", "args": ["--decoder", "attention"]}},
                         {{"name": "both", "ensemble": ["attention", "lstm"]}}]}}"#,
            s(&data)
        ),
    )
    .unwrap();
    let table = ok(&[
        "compare",
        "--spec",
        s(&spec),
        "--out",
        s(&out),
        "--resamples",
        "50",
    ]);
    assert!(
        table.contains("| both | ensemble: small-cnn + attention, small-cnn + lstm"),
        "{table}"
    );
    let j3: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(j3["rows"].as_array().unwrap().len(), 3);
    assert_eq!(j3["rows"][1]["cider"], j["rows"][1]["cider"]);
    // Its parameters and training are its members'.
    let sum = |k: &str| j3["rows"][0][k].as_f64().unwrap() + j3["rows"][1][k].as_f64().unwrap();
    for k in ["parameters", "epochs", "train_seconds"] {
        // (seconds are summed per epoch, so only up to rounding)
        let got = j3["rows"][2][k].as_f64().unwrap();
        assert!(
            (got - sum(k)).abs() <= 1e-9 * sum(k).max(1.0),
            "{k}: {got} vs {}",
            sum(k)
        );
    }
    // `eval --ensemble`: a run with itself writes what it writes alone; with the other run, the
    // captions of the compare row.
    let (lstm, att) = (out.join("runs/lstm"), out.join("runs/attention"));
    let pred = t.path().join("p.json");
    let eval = |extra: &[&str]| -> serde_json::Value {
        let mut a = vec![
            "eval",
            s(&att),
            "--data",
            s(&data),
            "--json",
            "--predictions",
            s(&pred),
        ];
        a.extend_from_slice(extra);
        serde_json::from_str(&ok(&a)).unwrap()
    };
    let alone = eval(&[]);
    let twice = eval(&["--ensemble", s(&att)]);
    assert_eq!(alone["bleu"], twice["bleu"]);
    assert_eq!(alone["cider"], twice["cider"]);
    let pair = eval(&["--ensemble", s(&lstm)]);
    assert_eq!(pair["cider"], j3["rows"][2]["cider"]);
    let caption = ok(&[
        "caption",
        s(&att),
        "--ensemble",
        s(&lstm),
        s(&data.join("Images")),
    ]);
    assert!(caption.lines().count() >= 16, "{caption}");
    // Members must share one vocabulary; an ensemble names runs of the spec.
    let other = t.path().join("other");
    ok(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&other),
        "--image-size",
        "32",
        "--embed",
        "16",
        "--hidden",
        "16",
        "--min-count",
        "3",
        "--epochs",
        "1",
        "--decoder",
        "gru",
    ]);
    let e = bad_input(&["eval", s(&att), "--data", s(&data), "--ensemble", s(&other)]);
    assert!(e.contains("another vocabulary"), "{e}");
    fs::write(
        &spec,
        format!(
            r#"{{"data": "{}", "runs": [{{"name": "a", "dir": "{}"}},
                {{"name": "e", "ensemble": ["a", "nope"]}}]}}"#,
            s(&data),
            s(&att)
        ),
    )
    .unwrap();
    let e = bad_input(&["compare", "--spec", s(&spec), "--out", s(&out)]);
    assert!(e.contains("no run named \"nope\""), "{e}");
    // plot on its own.
    let stem = t.path().join("plots/curves");
    ok(&[
        "plot",
        s(&out.join("runs/lstm")),
        s(&out.join("runs/attention")),
        "--out",
        s(&stem),
    ]);
    image::open(t.path().join("plots/curves.png")).unwrap();
    // Bad specs are one clear line.
    fs::write(
        &spec,
        r#"{"data": "x", "runs": [{"name": "../x", "args": []}]}"#,
    )
    .unwrap();
    let e = bad_input(&["compare", "--spec", s(&spec), "--out", s(&out)]);
    assert!(e.contains("run name"), "{e}");
    fs::write(&spec, "{not json").unwrap();
    bad_input(&["compare", "--spec", s(&spec), "--out", s(&out)]);
}
