//! `captag features --encoder clip` (CLIP's image half as a frozen encoder, docs/ARCHITECTURE.md
//! "Features") with the tiny random CLIP fixture `tests/fixtures/hf/clip`: the cached vectors
//! are the CLIP module's `get_image_features` and patch tokens on CLIP-preprocessed pictures
//! (and on `transformers`' own preprocessing of the fixture's pictures); ClipCap, LSTM and
//! attention decoders train on the cache; the run captions photos without the folder, like
//! captioning from the cache; bad folders are one error line and exit code 2.
use std::fs;
use std::path::{Path, PathBuf};

use captag::data::features::FeatureCache;
use captag::model::clip::Clip;
use tch::{Device, Kind, Tensor};

use super::common::{bad_input, ok, s, synth};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/clip")
}

/// A synthetic Flickr8k-layout set of `count` 48-px images (CLIP's 32-px crop of them is a
/// real resize) plus the fixture's two PNGs (53×37 and 20×27) in the dev split.
fn dataset(dir: &Path, count: usize) {
    synth(dir, count, 48, "flickr8k");
    let mut csv = fs::read_to_string(dir.join("captions.txt")).unwrap();
    let mut dev = fs::read_to_string(dir.join("Flickr_8k.devImages.txt")).unwrap();
    for name in ["picture.png", "small.png"] {
        fs::copy(fixture().join(name), dir.join("Images").join(name)).unwrap();
        csv.push_str(&format!("{name},a small picture of a red square\n"));
        dev.push_str(&format!("{name}\n"));
    }
    fs::write(dir.join("captions.txt"), csv).unwrap();
    fs::write(dir.join("Flickr_8k.devImages.txt"), dev).unwrap();
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

#[test]
fn features_encoder_clip_caches_get_image_features_and_patch_tokens() {
    let t = tempfile::tempdir().unwrap();
    let (data, cache) = (t.path().join("data"), t.path().join("clip.safetensors"));
    dataset(&data, 6);
    let out = ok(&[
        "features",
        "--data",
        s(&data),
        "--encoder",
        "clip",
        "--encoder-weights",
        s(&fixture()),
        "--grid",
        "--out",
        s(&cache),
    ]);
    assert!(
        out.contains("8 images") && out.contains("16 features each + grids"),
        "{out}"
    );
    let c = FeatureCache::load(&cache).unwrap();
    assert_eq!(c.encoder, "clip");
    assert_eq!(c.pooled.size(), [8, 16]); // projection_dim
    let grid = c.grid.as_ref().unwrap();
    assert_eq!(grid.size(), [8, 16, 32]); // (32 / 8)² patches × width

    // The CLIP module (transformers parity: model::clip::tests) on each picture preprocessed
    // by CLIP's own path.
    let clip = Clip::load(&fixture(), Device::Cpu).unwrap();
    for (row, id) in c.ids.iter().enumerate() {
        let pixels = clip
            .preprocess
            .load(&data.join("Images").join(id))
            .unwrap()
            .unsqueeze(0);
        let (embeds, patches) = clip.image_features(&pixels).unwrap();
        let row = row as i64;
        let d = max_diff(&c.pooled.get(row).unsqueeze(0), &embeds);
        assert!(d <= 1e-5, "{id}: pooled differs by {d}");
        // The grid is stored as float16.
        let scale = patches.abs().max().double_value(&[]);
        let d = max_diff(&grid.get(row).unsqueeze(0), &patches);
        assert!(d <= 1e-3 * scale, "{id}: grid differs by {d} (max {scale})");
    }
    // And on transformers' own CLIPImageProcessor output for the fixture's two pictures.
    let want = captag::model::weights::read_tensors(&fixture().join("expected.safetensors"))
        .unwrap()
        .into_iter()
        .collect::<std::collections::HashMap<_, _>>();
    for (id, key) in [
        ("picture.png", "picture_pixel_values"),
        ("small.png", "small_pixel_values"),
    ] {
        let row = c.ids.iter().position(|i| i == id).unwrap() as i64;
        let embeds = clip.image_embeds(&want[key]).unwrap();
        let d = max_diff(&c.pooled.get(row).unsqueeze(0), &embeds);
        assert!(
            d <= 1e-4,
            "{id}: pooled vs transformers' pixels differs by {d}"
        );
    }
}

/// Captions of `eval --predictions` by image id.
fn predictions(path: &Path) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    let mut out: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["image_id"].as_str().unwrap().to_string(),
                p["caption"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn train(data: &Path, clip: &Path, cache: &Path, run: &Path, decoder: &str, extra: &[&str]) {
    let mut a = vec![
        "train",
        "--data",
        s(data),
        "--out",
        s(run),
        "--encoder",
        "clip",
        "--encoder-weights",
        s(clip),
        "--features",
        s(cache),
        "--decoder",
        decoder,
        "--min-count",
        "1",
        "--batch-size",
        "20",
        "--schedule",
        "constant",
        "--early-stop",
        "0",
    ];
    a.extend(extra);
    ok(&a);
}

#[test]
fn clipcap_trains_on_clip_embeddings_and_captions_photos_like_the_cache() {
    let t = tempfile::tempdir().unwrap();
    let (data, cache, run) = (
        t.path().join("data"),
        t.path().join("clip.safetensors"),
        t.path().join("run"),
    );
    dataset(&data, 14);
    // The user's folder, removed once the run exists: the run must not need it.
    let folder = t.path().join("clip-folder");
    fs::create_dir(&folder).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ] {
        fs::copy(fixture().join(f), folder.join(f)).unwrap();
    }
    ok(&[
        "features",
        "--data",
        s(&data),
        "--encoder",
        "clip",
        "--encoder-weights",
        s(&folder),
        "--out",
        s(&cache),
    ]);
    // Long enough to tell the training images apart (distinct captions), so that agreeing
    // captions mean agreeing features.
    let small = [
        "--embed",
        "32",
        "--heads",
        "2",
        "--layers",
        "1",
        "--epochs",
        "30",
        "--lr",
        "5e-3",
        "--dropout",
        "0",
    ];
    train(&data, &folder, &cache, &run, "clipcap", &small);
    let cfg: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model"]["encoder"], "clip");
    assert_eq!(cfg["model"]["clip"]["projection_dim"], 16);
    assert_eq!(cfg["model"]["decoder"]["feature_dim"], 16);
    let names: Vec<String> = Tensor::read_safetensors(run.join("encoder.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.contains(&"visual_projection.weight".to_string()));
    assert!(
        !names.iter().any(|n| n.starts_with("text_model.")),
        "{names:?}"
    );
    fs::remove_dir_all(&folder).unwrap();

    // Dev captions from the cache, from the image files, and `caption` photo by photo agree.
    let (from_cache, from_images) = (t.path().join("cache.json"), t.path().join("images.json"));
    let eval = |out: &Path, features: Option<&Path>| {
        let mut a = vec![
            "eval",
            s(&run),
            "--data",
            s(&data),
            "--split",
            "train",
            "--predictions",
            s(out),
        ];
        if let Some(f) = features {
            a.extend(["--features", s(f)]);
        }
        ok(&a);
        predictions(out)
    };
    let cached = eval(&from_cache, Some(&cache));
    let distinct: std::collections::HashSet<&String> = cached.iter().map(|(_, c)| c).collect();
    assert!(distinct.len() >= 3, "{cached:?}");
    assert_eq!(eval(&from_images, None), cached);
    for (id, caption) in &cached {
        let photo = data.join("Images").join(id);
        let v: serde_json::Value =
            serde_json::from_str(ok(&["caption", s(&run), s(&photo), "--json"]).trim()).unwrap();
        assert_eq!(v["caption"].as_str().unwrap(), caption, "{id}");
    }

    // Show and Tell reads the same pooled embeddings.
    let lstm = t.path().join("lstm");
    let cache_copy = t.path().join("clip2.safetensors");
    fs::copy(&cache, &cache_copy).unwrap();
    let folder = fixture();
    let flags = ["--hidden", "32", "--embed", "16", "--epochs", "1"];
    train(&data, &folder, &cache_copy, &lstm, "lstm", &flags);
    let photo = data.join("Images/picture.png");
    assert!(!ok(&["caption", s(&lstm), s(&photo)]).trim().is_empty());
}

#[test]
fn attention_and_transformer_decoders_read_the_patch_grid() {
    let t = tempfile::tempdir().unwrap();
    let (data, pooled, grid) = (
        t.path().join("data"),
        t.path().join("pooled.safetensors"),
        t.path().join("grid.safetensors"),
    );
    dataset(&data, 10);
    let clip = fixture();
    let features = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "features",
            "--data",
            s(&data),
            "--encoder",
            "clip",
            "--encoder-weights",
            s(&clip),
            "--out",
            s(out),
        ];
        a.extend(extra);
        ok(&a);
    };
    features(&pooled, &[]);
    features(&grid, &["--grid"]);
    // A pooled-only cache cannot feed a grid decoder.
    let e = bad_input(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&t.path().join("refused")),
        "--encoder",
        "clip",
        "--encoder-weights",
        s(&clip),
        "--features",
        s(&pooled),
        "--decoder",
        "attention",
    ]);
    assert!(e.contains("--grid"), "{e}");
    let photo = data.join("Images/small.png");
    for (decoder, extra) in [
        (
            "attention",
            &[
                "--hidden",
                "32",
                "--embed",
                "16",
                "--attention-dim",
                "16",
                "--epochs",
                "1",
            ][..],
        ),
        (
            "transformer",
            &[
                "--embed", "32", "--heads", "2", "--layers", "1", "--ff-dim", "32", "--epochs", "1",
            ][..],
        ),
    ] {
        let run = t.path().join(decoder);
        train(&data, &clip, &grid, &run, decoder, extra);
        let v: serde_json::Value =
            serde_json::from_str(ok(&["caption", s(&run), s(&photo), "--json"]).trim()).unwrap();
        assert!(v["caption"].is_string(), "{decoder}: {v}");
    }
}

#[test]
fn folders_that_are_not_clip_are_one_error_line() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    dataset(&data, 4);
    let features = |weights: &Path| {
        bad_input(&[
            "features",
            "--data",
            s(&data),
            "--encoder",
            "clip",
            "--encoder-weights",
            s(weights),
            "--out",
            s(&t.path().join("out.safetensors")),
        ])
    };
    let gpt2 = fixture().parent().unwrap().join("gpt2");
    let e = features(&gpt2);
    assert!(e.contains("model_type is `gpt2`, not a CLIP model"), "{e}");
    let e = features(&fixture().join("model.safetensors"));
    assert!(e.contains("not a folder"), "{e}");
    let e = features(&data);
    assert!(e.contains("no config.json"), "{e}");

    let full: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(fixture().join("config.json")).unwrap()).unwrap();
    let folder = t.path().join("folder");
    fs::create_dir(&folder).unwrap();
    // A text-only config.
    let mut text = full["text_config"].clone();
    text["model_type"] = "clip_text_model".into();
    fs::write(folder.join("config.json"), text.to_string()).unwrap();
    let e = features(&folder);
    assert!(e.contains("text model"), "{e}");
    // The weights of the text half only.
    fs::write(folder.join("config.json"), full.to_string()).unwrap();
    let mut named = Tensor::read_safetensors(fixture().join("model.safetensors")).unwrap();
    named.retain(|(n, _)| !n.starts_with("vision_model.") && n != "visual_projection.weight");
    Tensor::write_safetensors(&named, folder.join("model.safetensors")).unwrap();
    let e = features(&folder);
    assert!(e.contains("has no tensor `vision_model."), "{e}");
    // The folder's weights are an input, never the output.
    let weights = folder.join("model.safetensors");
    let e = bad_input(&[
        "features",
        "--data",
        s(&data),
        "--encoder",
        "clip",
        "--encoder-weights",
        s(&folder),
        "--out",
        s(&weights),
    ]);
    assert!(e.contains("is also an input"), "{e}");
    // Corrupt weights.
    let bytes = fs::read(fixture().join("model.safetensors")).unwrap();
    fs::write(folder.join("model.safetensors"), &bytes[..bytes.len() / 3]).unwrap();
    let e = features(&folder);
    assert!(e.contains("not a valid safetensors file"), "{e}");

    // train: CLIP is frozen (needs its folder), at its own image size.
    let run = t.path().join("run");
    let train = |extra: &[&str]| {
        let mut a = vec![
            "train",
            "--data",
            s(&data),
            "--out",
            s(&run),
            "--encoder",
            "clip",
            "--decoder",
            "clipcap",
        ];
        a.extend(extra);
        bad_input(&a)
    };
    let e = train(&[]);
    assert!(e.contains("--encoder-weights HF_DIR"), "{e}");
    let clip = fixture();
    let e = train(&["--encoder-weights", s(&clip), "--image-size", "64"]);
    assert!(e.contains("takes 32 px images"), "{e}");
    let e = train(&["--encoder-weights", s(&gpt2)]);
    assert!(e.contains("not a CLIP model"), "{e}");
    assert!(!run.exists());
}
