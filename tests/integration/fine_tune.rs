//! `train --fine-tune-encoder` on random pretrained-encoder weights (the real ones come from
//! `make weights`; tests never need them): the last blocks of EfficientNet-Lite0 train and the
//! rest, BatchNorm statistics included, stay as the file has them; the run resumes exactly
//! (the encoder's Adam moments included); `eval` and `caption` read the fine-tuned encoder from
//! the run alone; the flags that cannot go with it are one error line.
use std::collections::HashMap;
use std::fs;
use std::path::Path;

use tch::Tensor;

use super::common::{bad_input, ok, s, synth, tiny_flags};
use super::runs::exact_resume;
use captag::config::EncoderKind;

/// An encoder's randomly initialised weights under its pretrained names, as a user's file.
fn random_weights(kind: EncoderKind, path: &Path) {
    tch::manual_seed(7);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _enc = captag::model::Encoder::new(vs.root(), kind, None);
    captag::run::save_vars(&vs, path).unwrap();
}

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .collect()
}

/// Which encoder variables differ between the user's file and the run's weights (`encoder.*`).
fn changed(file: &Path, run_weights: &Path) -> Vec<String> {
    let (init, tuned) = (tensors(file), tensors(run_weights));
    let mut out: Vec<String> = init
        .iter()
        .filter(|(name, t0)| {
            let t1 = &tuned[&format!("encoder.{name}")];
            (*t0 - t1).abs().max().double_value(&[]) > 0.0
        })
        .map(|(name, _)| name.clone())
        .collect();
    out.sort();
    out
}

#[test]
fn fine_tuned_lite0_trains_its_last_blocks_resumes_exactly_and_captions_from_the_run() {
    let t = tempfile::tempdir().unwrap();
    let w = t.path().join("efficientnet_lite0.safetensors");
    random_weights(EncoderKind::EfficientnetLite0, &w);
    let flags = [
        "--encoder",
        "efficientnet_lite0",
        "--encoder-weights",
        s(&w),
        "--fine-tune-encoder",
        "--encoder-lr",
        "1e-3",
        "--fine-tune-blocks",
        "2",
    ];
    // Four epochs, and two + `--resume` to four: the same weights (encoder included).
    let (_keep, a, b) = exact_resume("attention", &flags);

    // Blocks 14 and 15 and the head trained; BatchNorm's running statistics, the earlier
    // blocks, the stem and the unused classifier did not.
    let moved = changed(&w, &a.join("last.safetensors"));
    let trains = |n: &str| {
        n.starts_with("_blocks.14.")
            || n.starts_with("_blocks.15.")
            || n.starts_with("_conv_head.")
            || n.starts_with("_bn1.")
    };
    for name in tensors(&w).keys() {
        let want = trains(name) && !name.contains("running_");
        assert_eq!(moved.contains(name), want, "{name}: moved {moved:?}");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(a.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model"]["fine_tune"]["blocks"], 2);
    assert_eq!(cfg["model"]["frozen_encoder"], false);
    assert_eq!(cfg["train"]["encoder_lr"], 1e-3);
    // The encoder's Adam moments are saved for the exact resume.
    let opt = tensors(&b.join("train_state.safetensors"));
    assert!(opt.contains_key("m.encoder._conv_head.weight"));
    assert!(opt.contains_key("v.encoder._blocks.15._project_conv.weight"));
    assert!(!opt.contains_key("m.encoder._blocks.13._project_conv.weight"));

    // A resume may not change the encoder's rate.
    let data = cfg["data_path"].as_str().unwrap().to_string();
    let mut again: Vec<String> = ["train", "--data", &data, "--out", s(&b), "--epochs", "5"]
        .iter()
        .map(|x| x.to_string())
        .collect();
    again.extend(tiny_flags("attention", "0.3", "128"));
    again.extend(flags.iter().map(|x| x.replace("1e-3", "5e-4")));
    again.push("--resume".into());
    let e = bad_input(&again.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("--encoder-lr"), "{e}");

    // eval and caption from the run alone: neither the user's file nor the run's copy of the
    // starting weights is read (the fine-tuned encoder is in model.safetensors).
    fs::remove_file(&w).unwrap();
    fs::remove_file(a.join("encoder.safetensors")).unwrap();
    let preds = t.path().join("preds.json");
    ok(&[
        "eval",
        s(&a),
        "--data",
        &data,
        "--split",
        "train",
        "--predictions",
        s(&preds),
    ]);
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&preds).unwrap()).unwrap();
    let first = &v[0];
    let id = first["image_id"].as_str().unwrap();
    let image = Path::new(&data).join("Images").join(id);
    let out = ok(&["caption", s(&a), s(&image)]);
    let caption = first["caption"].as_str().unwrap();
    assert!(out.trim_end().ends_with(caption), "{out} vs {caption}");
}

#[test]
fn fine_tuned_squeezenet_trains_its_last_fire_module_only() {
    let t = tempfile::tempdir().unwrap();
    let (data, run, w) = (
        t.path().join("data"),
        t.path().join("run"),
        t.path().join("squeezenet.safetensors"),
    );
    synth(&data, 8, 48, "flickr8k");
    random_weights(EncoderKind::Squeezenet1_1, &w);
    ok(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&run),
        "--encoder",
        "squeezenet1_1",
        "--encoder-weights",
        s(&w),
        "--fine-tune-encoder",
        "--fine-tune-blocks",
        "1",
        "--image-size",
        "64",
        "--decoder",
        "lstm",
        "--epochs",
        "1",
        "--min-count",
        "1",
        "--embed",
        "32",
        "--hidden",
        "32",
    ]);
    let moved = changed(&w, &run.join("last.safetensors"));
    assert!(!moved.is_empty());
    assert!(
        moved.iter().all(|n| n.starts_with("features.12.")),
        "{moved:?}"
    );
    // Self-critical training from the fine-tuned run keeps fine-tuning the same module.
    let scst = t.path().join("scst");
    ok(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&scst),
        "--init-from",
        s(&run),
        "--objective",
        "scst",
        "--epochs",
        "1",
        "--batch-size",
        "4",
    ]);
    let (before, after) = (
        tensors(&run.join("model.safetensors")),
        tensors(&scst.join("last.safetensors")),
    );
    let mut moved: Vec<&String> = before
        .iter()
        .filter(|(n, t)| {
            n.starts_with("encoder.") && (*t - &after[*n]).abs().max().double_value(&[]) > 0.0
        })
        .map(|(n, _)| n)
        .collect();
    moved.sort();
    assert!(!moved.is_empty());
    assert!(
        moved.iter().all(|n| n.starts_with("encoder.features.12.")),
        "{moved:?}"
    );
}

#[test]
fn flags_that_cannot_go_with_fine_tuning_are_one_error_line() {
    let t = tempfile::tempdir().unwrap();
    let (data, w) = (t.path().join("data"), t.path().join("w.safetensors"));
    synth(&data, 6, 32, "flickr8k");
    random_weights(EncoderKind::EfficientnetLite0, &w);
    let out = t.path().join("run");
    let base = [
        "train",
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--encoder",
        "efficientnet_lite0",
        "--encoder-weights",
        s(&w),
    ];
    for (extra, want) in [
        (
            &["--fine-tune-encoder", "--features", s(&w)][..],
            "--features",
        ),
        (&["--encoder-lr", "1e-4"][..], "need --fine-tune-encoder"),
        (
            &["--fine-tune-encoder", "--fine-tune-blocks", "17"][..],
            "has 16 blocks",
        ),
    ] {
        let e = bad_input(&[&base[..], extra].concat());
        assert!(e.contains(want), "{extra:?}: {e}");
    }
    let vgg = [
        "--encoder",
        "vgg19",
        "--encoder-weights",
        s(&w),
        "--fine-tune-encoder",
    ];
    let e = bad_input(&[&base[..5], &vgg[..]].concat());
    assert!(e.contains("cannot be fine-tuned"), "{e}");
    let e = bad_input(&[&base[..5], &["--fine-tune-encoder"][..]].concat());
    assert!(e.contains("--encoder-weights"), "{e}");
    assert!(!out.exists(), "no run folder is left behind");
}
