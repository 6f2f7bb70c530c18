//! Parity with `transformers`' `CLIPModel` on the tiny random model that
//! `notebooks/make_hf_fixtures.py` saved under `tests/fixtures/hf/clip/`, loaded like a user's
//! download; and the variable names and shapes of ViT-B/32 and ViT-B/16 against `transformers`'
//! state dicts (`tests/fixtures/hf/shapes.json`).
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::text::hf_tokenizer::HfTokenizer;

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

pub(crate) fn expected(dir: &Path) -> HashMap<String, Tensor> {
    crate::model::weights::read_tensors(&dir.join("expected.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

/// Largest absolute difference; fails above `1e-5 · max(1, max |want|)`.
pub(crate) fn close(what: &str, got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.size(), want.size(), "{what}: shapes");
    let got = got.to_kind(Kind::Double).to_device(Device::Cpu);
    let want = want.to_kind(Kind::Double);
    let diff = (&got - &want).abs().max().double_value(&[]);
    let scale = want.abs().max().double_value(&[]).max(1.0);
    eprintln!("{what}: max abs diff {diff:.3e} (max |value| {scale:.3})");
    assert!(
        diff <= 1e-5 * scale,
        "{what}: max abs diff {diff} > 1e-5 × {scale}"
    );
    diff
}

#[test]
fn image_and_text_embeddings_equal_transformers() {
    let dir = fixture("clip");
    let want = expected(&dir);
    let clip = Clip::load(&dir, Device::Cpu).unwrap();
    let (embeds, patches) = clip.image_features(&want["pixel_values"]).unwrap();
    close("clip image_embeds", &embeds, &want["image_embeds"]);
    let last = &want["vision_last_hidden_state"];
    close(
        "clip patch tokens",
        &patches,
        &last.narrow(1, 1, last.size()[1] - 1),
    );
    close(
        "clip vision last_hidden_state",
        &clip.vision_hidden(&want["pixel_values"]).unwrap(),
        last,
    );
    let text = clip.text_embeds(&want["input_ids"]).unwrap();
    close("clip text_embeds", &text, &want["text_embeds"]);
    close(
        "clip logits_per_image",
        &clip.logits_per_image(&embeds, &text),
        &want["logits_per_image"],
    );
}

#[test]
fn tokenized_captions_are_the_ids_transformers_fed_the_model() {
    let dir = fixture("clip");
    let clip = Clip::load(&dir, Device::Cpu).unwrap();
    let tok = HfTokenizer::clip(&dir).unwrap();
    let ids = clip.text_ids(
        &tok,
        &[
            "a dog runs on the grass",
            "Sunset vibes 🌅 #beach",
            "two kids",
        ],
    );
    assert_eq!(
        Vec::<i64>::try_from(ids.flatten(0, 1)).unwrap(),
        Vec::<i64>::try_from(expected(&dir)["input_ids"].flatten(0, 1)).unwrap()
    );
}

/// `eos_token_id: 2` in the config (the older OpenAI folders) pools at the largest id.
#[test]
fn legacy_eos_token_id_pools_at_the_largest_id() {
    let src = fixture("clip");
    let d = tempfile::tempdir().unwrap();
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["text_config"]["eos_token_id"] = Value::from(2);
    std::fs::write(d.path().join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(
        src.join("model.safetensors"),
        d.path().join("model.safetensors"),
    )
    .unwrap();
    let clip = Clip::load(d.path(), Device::Cpu).unwrap();
    let want = expected(&src);
    let got = clip.text_embeds(&want["input_ids"]).unwrap();
    close(
        "clip text_embeds (legacy eos 2)",
        &got,
        &want["text_embeds_legacy"],
    );
}

#[test]
fn preprocessing_equals_clip_image_processor() {
    let dir = fixture("clip");
    let clip = Clip::load(&dir, Device::Cpu).unwrap();
    assert_eq!(clip.preprocess.shortest_edge, 32);
    let img = crate::data::image::decode_rgb(&dir.join("picture.png")).unwrap();
    let got = clip.preprocess.tensor(&img).unsqueeze(0);
    let want = expected(&dir);
    close(
        "clip preprocessing (53×37 PNG, bicubic)",
        &got,
        &want["picture_pixel_values"],
    );
    let got = clip
        .preprocess
        .load(&dir.join("small.png"))
        .unwrap()
        .unsqueeze(0);
    close(
        "clip preprocessing (20×27 PNG, upscaled)",
        &got,
        &want["small_pixel_values"],
    );
}

/// Flickr8k photos at CLIP's default 224 pixels (`make_hf_fixtures.py --real-out DIR` writes
/// DIR/preprocess, not committed) when `CAPTAG_CLIP_PREPROCESS_DIR` names that folder.
#[test]
fn default_preprocessing_of_real_photos_equals_clip_image_processor() {
    let Some(dir) = std::env::var_os("CAPTAG_CLIP_PREPROCESS_DIR") else {
        eprintln!("skipped: set CAPTAG_CLIP_PREPROCESS_DIR to DIR/preprocess of --real-out DIR");
        return;
    };
    let dir = PathBuf::from(dir);
    let p = ClipPreprocess::default();
    let want = expected(&dir);
    for i in 0..want.len() {
        let got = p.load(&dir.join(format!("{i}.png"))).unwrap().unsqueeze(0);
        close(
            &format!("clip preprocessing, photo {i} (224)"),
            &got,
            &want[&i.to_string()],
        );
    }
}

#[test]
fn bad_folders_are_one_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let msg = |dir: &Path| Clip::load(dir, Device::Cpu).err().unwrap().to_string();
    assert!(
        msg(d.path()).contains("no config.json"),
        "{}",
        msg(d.path())
    );
    let src = fixture("clip");
    std::fs::copy(src.join("config.json"), d.path().join("config.json")).unwrap();
    assert!(
        msg(d.path()).contains("no model.safetensors"),
        "{}",
        msg(d.path())
    );

    // A tensor missing, and a config that disagrees with the weights.
    let mut named = crate::model::weights::read_tensors(&src.join("model.safetensors")).unwrap();
    named.retain(|(n, _)| n != "text_projection.weight");
    Tensor::write_safetensors(&named, d.path().join("model.safetensors")).unwrap();
    let e = msg(d.path());
    assert!(e.contains("no tensor `text_projection.weight`"), "{e}");
    assert!(!e.contains('\n'));
    std::fs::copy(
        src.join("model.safetensors"),
        d.path().join("model.safetensors"),
    )
    .unwrap();
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["vision_config"]["intermediate_size"] = Value::from(48);
    std::fs::write(d.path().join("config.json"), cfg.to_string()).unwrap();
    let e = msg(d.path());
    assert!(
        e.contains("fc1.bias` has shape [64], config.json implies [48]"),
        "{e}"
    );
    cfg["vision_config"]["hidden_act"] = Value::from("mish");
    std::fs::write(d.path().join("config.json"), cfg.to_string()).unwrap();
    let e = msg(d.path());
    assert!(e.contains("vision_config") && e.contains("mish"), "{e}");

    let clip = Clip::load(&src, Device::Cpu).unwrap();
    let e = clip.image_embeds(&Tensor::zeros([1, 3, 64, 64], (Kind::Float, Device::Cpu)));
    assert!(e.unwrap_err().to_string().contains("[N, 3, 32, 32]"));
    let e = clip.text_embeds(&Tensor::from_slice(&[5i64, 99_999]).view([1, 2]));
    assert!(e.unwrap_err().to_string().contains("0..914"));
}

/// The names and shapes `ClipModel` creates for the real ViT-B/32 and ViT-B/16 configs are
/// exactly the parameters of `transformers`' `CLIPModel` (buffers aside).
#[test]
fn vit_b32_and_b16_have_transformers_names_and_shapes() {
    let text = std::fs::read_to_string(fixture("shapes.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    for key in ["clip-vit-base-patch32", "clip-vit-base-patch16"] {
        let cfg = ClipConfig::from_json(&all[key]["config"], Path::new(key)).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let m = tch::no_grad(|| ClipModel::new(vs.root(), &cfg));
        let got: HashMap<String, Vec<i64>> = vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.size()))
            .collect();
        let want: HashMap<String, Vec<i64>> =
            serde_json::from_value(all[key]["shapes"].clone()).unwrap();
        assert_eq!(got.len(), want.len(), "{key}: parameter count");
        for (n, s) in &want {
            assert_eq!(got.get(n), Some(s), "{key}: {n}");
        }
        // And the towers run at that size: 224-pixel images, 77-token texts.
        let pixels = Tensor::zeros([1, 3, 224, 224], (Kind::Float, Device::Cpu));
        let (embeds, patches) = tch::no_grad(|| m.image.forward(&pixels));
        let grid = 224 / cfg.vision.patch_size;
        assert_eq!(patches.size(), [1, grid * grid, 768]);
        assert_eq!(embeds.size(), [1, 512]);
        let ids = Tensor::full([2, 77], 49407, (Kind::Int64, Device::Cpu));
        let (_, pooled) = tch::no_grad(|| m.text.forward(&ids));
        assert_eq!(pooled.apply(&m.text_projection).size(), [2, 512]);
        eprintln!(
            "{key}: {} parameters, names and shapes as transformers; runs at 224 px",
            want.len()
        );
    }
}

/// The `clip` encoder (`captag features --encoder clip`, runs trained on its cache) computes
/// `get_image_features` and the patch tokens of `transformers` on the fixture's pixels, and
/// keeps only the image half of the folder.
#[test]
fn the_clip_encoder_is_get_image_features_and_the_patch_tokens() {
    use crate::config::EncoderKind;
    let dir = fixture("clip");
    let want = expected(&dir);
    let pre = crate::model::encoder::pretrained(EncoderKind::Clip, &dir, Device::Cpu).unwrap();
    let cfg = pre.clip.clone().unwrap();
    assert_eq!((cfg.projection_dim, cfg.vision.hidden_size), (16, 32));
    assert_eq!(cfg.vision.patches(), 16);
    assert_eq!(
        pre.preprocess,
        Clip::load(&dir, Device::Cpu)
            .unwrap()
            .preprocess
            .preprocess()
    );
    let names: Vec<String> = pre.vs.variables().into_keys().collect();
    assert!(names
        .iter()
        .all(|n| n.starts_with("vision_model.") || n == "visual_projection.weight"));
    let f = tch::no_grad(|| pre.encoder.forward_t(&want["pixel_values"], false));
    close("clip encoder pooled", &f.pooled, &want["image_embeds"]);
    let last = &want["vision_last_hidden_state"];
    let grid = f.grid.as_ref().unwrap();
    close(
        "clip encoder grid",
        grid,
        &last.narrow(1, 1, last.size()[1] - 1),
    );

    // Rebuilt from the run's config and `encoder.safetensors` (what `caption RUN` does): the
    // same numbers; the fingerprint is of the image half only.
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("encoder.safetensors");
    crate::model::weights::save_vars(&pre.vs, &file).unwrap();
    let (enc, vs) =
        crate::model::Encoder::frozen(EncoderKind::Clip, Some(&cfg), &file, Device::Cpu).unwrap();
    assert_eq!(vision::fingerprint(&vs), pre.fingerprint);
    let g = tch::no_grad(|| enc.forward_t(&want["pixel_values"], false));
    assert_eq!(
        (&g.pooled - &f.pooled).abs().max().double_value(&[]),
        0.0,
        "the run's encoder computes the folder's features exactly"
    );
}

/// A `CLIPVisionModelWithProjection` folder (`model_type: clip_vision_model`, the vision
/// fields at the top) is read like a `CLIPModel` one; a text-only config is refused.
#[test]
fn vision_only_configs_are_read_and_text_only_ones_refused() {
    let src = fixture("clip");
    let full: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let want = ClipImageFolder::read(&src).unwrap().config;
    let d = tempfile::tempdir().unwrap();
    let write = |v: &Value| std::fs::write(d.path().join("config.json"), v.to_string()).unwrap();
    let mut vision = full["vision_config"].clone();
    vision["model_type"] = Value::from("clip_vision_model");
    vision["projection_dim"] = full["projection_dim"].clone();
    write(&vision);
    assert_eq!(ClipImageFolder::read(d.path()).unwrap().config, want);

    let mut text = full["text_config"].clone();
    text["model_type"] = Value::from("clip_text_model");
    write(&text);
    let e = ClipImageFolder::read(d.path()).unwrap_err().to_string();
    assert!(e.contains("text model") && !e.contains('\n'), "{e}");
    let mut no_vision = full.clone();
    no_vision.as_object_mut().unwrap().remove("vision_config");
    write(&no_vision);
    let e = ClipImageFolder::read(d.path()).unwrap_err().to_string();
    assert!(e.contains("no vision_config"), "{e}");
    let mut odd = full.clone();
    odd["vision_config"]["image_size"] = Value::from(30);
    write(&odd);
    let e = ClipImageFolder::read(d.path()).unwrap_err().to_string();
    assert!(e.contains("not a multiple of patch_size"), "{e}");
}
