//! `--encoder efficientnet_lite0` end to end on random weights (the real ones come from
//! `make weights`; tests never need them): a feature cache with 1280-d pooled vectors and 7×7
//! grids, an attention decoder trained on it, the run's preprocessing and encoder stored in the
//! run, `eval`/`caption` from the run alone agreeing with the cache, and `compare` reading a
//! run's own cache.
use std::fs;
use std::path::Path;

use tch::Tensor;

use super::common::{bad_input, ok, s, synth};

fn predictions(path: &Path) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    let mut out: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let id = p["image_id"].as_str().unwrap().to_string();
            (id, p["caption"].as_str().unwrap().to_string())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn efficientnet_lite0_features_train_eval_and_caption() {
    let t = tempfile::tempdir().unwrap();
    let (data, cache, run) = (
        t.path().join("data"),
        t.path().join("l0.safetensors"),
        t.path().join("run"),
    );
    synth(&data, 10, 48, "flickr8k");
    let weights = t.path().join("efficientnet_lite0.safetensors");
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _enc = captag::model::Encoder::new(
        vs.root(),
        captag::config::EncoderKind::EfficientnetLite0,
        None,
    );
    captag::run::save_vars(&vs, &weights).unwrap();
    let enc = [
        "--encoder",
        "efficientnet_lite0",
        "--encoder-weights",
        s(&weights),
    ];
    let mut a = vec!["features", "--data", s(&data), "--grid", "--out", s(&cache)];
    a.extend(enc);
    ok(&a);
    let named: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&cache)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(named["pooled"].size(), [10, 1280]);
    assert_eq!(named["grid"].size(), [10, 49, 1280]);

    let mut a = vec![
        "train",
        "--data",
        s(&data),
        "--out",
        s(&run),
        "--features",
        s(&cache),
    ];
    a.extend(enc);
    a.extend([
        "--decoder",
        "attention",
        "--embed",
        "32",
        "--hidden",
        "64",
        "--epochs",
        "3",
        "--min-count",
        "1",
        "--batch-size",
        "20",
        "--schedule",
        "constant",
        "--early-stop",
        "0",
    ]);
    ok(&a);
    let cfg: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    let m = &cfg["model"];
    assert_eq!(m["encoder"], "efficientnet_lite0");
    assert_eq!(m["preprocess"]["size"], 224);
    assert_eq!(m["preprocess"]["norm"], "Centered127");
    assert_eq!(m["preprocess"]["resize"]["ClipCrop"]["shortest_edge"], 256);
    assert_eq!(m["preprocess"]["resize"]["ClipCrop"]["filter"], "bicubic");
    fs::remove_file(&weights).unwrap(); // the run must not need the user's file

    let (p_cache, p_images) = (t.path().join("c.json"), t.path().join("i.json"));
    // Captions of 12 words at most: this briefly trained decoder writes near-tied words late
    // in a 30-word caption ("a a a big … a a a big"), where the last bits of a feature computed
    // in another batch can flip one word; 12 words keep the check on the pipeline, not on ties.
    let base = [
        "eval",
        s(&run),
        "--data",
        s(&data),
        "--split",
        "train",
        "--max-len",
        "12",
    ];
    ok(&[
        &base[..],
        &["--features", s(&cache), "--predictions", s(&p_cache)],
    ]
    .concat());
    ok(&[&base[..], &["--predictions", s(&p_images)]].concat());
    let (cached, images) = (predictions(&p_cache), predictions(&p_images));
    assert!(!cached.is_empty());
    assert_eq!(cached, images);
    let (id, caption) = &images[0];
    let out = ok(&[
        "caption",
        s(&run),
        s(&data.join("Images").join(id)),
        "--max-len",
        "12",
    ]);
    assert!(
        out.trim_end().ends_with(caption.as_str()),
        "{out} vs {caption}"
    );

    // `compare`: a run's own `features` replaces the spec's cache for that run (runs on
    // different encoders each read their own); here the spec's is a pooled-only cache, which the
    // attention run refuses unless its own grid cache is named.
    let pooled = t.path().join("pooled.safetensors");
    let weights = run.join("encoder.safetensors"); // the user's copy is gone
    ok(&[
        "features",
        "--data",
        s(&data),
        "--out",
        s(&pooled),
        "--encoder",
        "efficientnet_lite0",
        "--encoder-weights",
        s(&weights),
    ]);
    // An ensemble reads, per member, the cache its encoder computed, with grids when its
    // decoder reads them: the run beside itself writes its own captions.
    let p_ens = t.path().join("e.json");
    ok(&[
        &base[..],
        &[
            "--ensemble",
            s(&run),
            "--features",
            s(&pooled),
            "--features",
            s(&cache),
        ],
        &["--predictions", s(&p_ens)],
    ]
    .concat());
    assert_eq!(predictions(&p_ens), cached);
    let spec = t.path().join("spec.json");
    let write_spec = |own: Option<&Path>| {
        let own = own.map_or(String::new(), |p| format!(r#", "features": "{}""#, s(p)));
        let text = format!(
            r#"{{"data": "{}", "features": "{}",
                "runs": [{{"name": "l0", "dir": "{}"{own}}}]}}"#,
            s(&data),
            s(&pooled),
            s(&run)
        );
        fs::write(&spec, text).unwrap();
    };
    let cmp = t.path().join("cmp");
    let argv = [
        "compare",
        "--spec",
        s(&spec),
        "--out",
        s(&cmp),
        "--split",
        "train",
    ];
    write_spec(None);
    let e = bad_input(&argv);
    assert!(e.contains("grid"), "{e}");
    write_spec(Some(&cache));
    ok(&argv);
    let j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(cmp.join("compare.json")).unwrap()).unwrap();
    assert_eq!(j["rows"][0]["images"], cached.len());
}
