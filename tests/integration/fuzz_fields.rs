//! Property tests of the shapes a user or a crafted file gives fields: size fields (flags and
//! Hugging Face configs) are answered at once and 10¹² of anything is refused, path fields
//! never reach outside the dataset folder, and quoting never merges lines — with the seeds and
//! the one-line check of `fuzz.rs`.
use proptest::prelude::*;

use super::fuzz::{check, clear, config, seeds, workdir};
use captag::config::{DecoderPreset, EncoderKind, ModelConfig};
use captag::data::{self, LoadOptions};

/// Whether field `k` of `section` of `json` is at least 10¹².
fn obj_huge(json: &serde_json::Value, section: &str, k: &str) -> bool {
    let s = if section.is_empty() {
        json
    } else {
        &json[section]
    };
    s[k].as_i64().is_some_and(|v| v >= 1_000_000_000_000)
}

/// Sizes as a user or a crafted file may give them: small, typical, huge, negative.
fn a_size() -> impl Strategy<Value = i64> {
    prop_oneof![
        1i64..600,
        Just(0i64),
        Just(-1i64),
        Just(1_000_000i64),
        Just(1_000_000_000i64),
        Just(1_000_000_000_000i64),
        Just(i64::MAX),
    ]
}

proptest! {
    #![proptest_config(config(96))]

    /// Any size flags: `validate` and the memory estimate answer at once, with one clear line,
    /// and a model of ≥ 10¹² parameters is always refused.
    #[test]
    fn model_size_flags(
        preset in prop_oneof![
            Just(DecoderPreset::Lstm), Just(DecoderPreset::Attention),
            Just(DecoderPreset::Transformer), Just(DecoderPreset::Clipcap)
        ],
        embed in a_size(), hidden in a_size(), layers in a_size(),
        image in prop_oneof![Just(32u32), Just(224u32), Just(100_000u32), Just(u32::MAX)],
        batch in prop_oneof![Just(1usize), Just(64usize), Just(1usize << 40)],
    ) {
        let mut m = ModelConfig::preset(EncoderKind::SmallCnn, false, preset, 100);
        m.decoder.apply(&captag::config::decoder::DecoderOverrides {
            embed: Some(embed),
            hidden: Some(hidden),
            layers: Some(layers),
            ..Default::default()
        });
        m.preprocess.size = image;
        let t = std::time::Instant::now();
        check(m.validate());
        let r = m.check_memory(batch, true);
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        if m.param_estimate() >= 1_000_000_000_000 {
            let e = r.expect_err("a 10^12-parameter model must be refused");
            clear(&e);
            assert!(e.to_string().contains("memory"), "{e}");
        } else {
            check(r);
        }
    }

    /// Any dimension fields in a Hugging Face `config.json` (CLIP sections or GPT-2's flat
    /// names): one clear line or a config, never a panic; 10¹² of anything is refused.
    #[test]
    fn hugging_face_size_fields(
        section in prop_oneof![Just(""), Just("vision_config"), Just("text_config")],
        fields in proptest::collection::vec(
            (prop_oneof![
                Just("hidden_size"), Just("intermediate_size"), Just("num_hidden_layers"),
                Just("vocab_size"), Just("n_embd"), Just("n_layer"), Just("n_inner"),
                Just("max_position_embeddings"), Just("projection_dim"),
            ], a_size()),
            0..5,
        ),
    ) {
        let mut obj = serde_json::Map::new();
        for (k, v) in &fields {
            obj.insert(k.to_string(), serde_json::json!(v));
        }
        let json = if section.is_empty() {
            serde_json::Value::Object(obj)
        } else {
            serde_json::json!({ section: obj })
        };
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("config.json"), json.to_string()).unwrap();
        let r = captag::model::hf::read_config::<serde_json::Value>(d.path(), "test");
        // The width is `hidden_size`, or GPT-2's `n_embd` when there is none.
        let sec = if section.is_empty() { &json } else { &json[section] };
        let huge = obj_huge(&json, section, "hidden_size")
            || (sec["hidden_size"].is_null() && obj_huge(&json, section, "n_embd"));
        match r {
            Ok(_) => assert!(!huge, "{json} was accepted"),
            Err(e) => clear(&e),
        }
    }

    /// Image paths from a Karpathy JSON, however spelled: every sample loaded is a file inside
    /// the dataset folder (symlinks resolved).
    #[test]
    fn karpathy_path_fields(
        names in proptest::collection::vec(prop_oneof![
            Just("ok.jpg"), Just("../x.jpg"), Just("../../secret.jpg"), Just("a/../../b.jpg"),
            Just("/etc/passwd"), Just("link.jpg"), Just("./ok.jpg"), Just("Images/../ok.jpg"),
            Just(""), Just("C:\\\\x.jpg"),
        ], 1..6),
        filepath in prop_oneof![Just(None), Just(Some("")), Just(Some("..")), Just(Some("/")), Just(Some("Images"))],
    ) {
        let root = tempfile::tempdir().unwrap();
        let secret = root.path().join("secret.jpg");
        std::fs::write(&secret, "x").unwrap();
        let dir = root.path().join("ds");
        std::fs::create_dir_all(dir.join("Images")).unwrap();
        std::fs::write(dir.join("Images/ok.jpg"), "x").unwrap();
        std::os::unix::fs::symlink(&secret, dir.join("Images/link.jpg")).unwrap();
        let images: Vec<serde_json::Value> = names.iter().map(|n| {
            let mut e = serde_json::json!({"filename": n, "split": "train", "sentences": [{"raw": "a dog"}]});
            if let Some(fp) = filepath {
                e["filepath"] = serde_json::json!(fp);
            }
            e
        }).collect();
        let json = serde_json::json!({ "images": images });
        std::fs::write(dir.join("dataset_flickr8k.json"), json.to_string()).unwrap();
        let inside = dir.canonicalize().unwrap();
        for keep_missing in [false, true] {
            let opts = LoadOptions { keep_missing, ..LoadOptions::default() };
            if let Some(ds) = check(data::load(&dir, &opts)) {
                for s in &ds.samples {
                    if let Ok(c) = s.path.canonicalize() {
                        assert!(c.starts_with(&inside), "{} is outside", c.display());
                    } else {
                        assert!(keep_missing, "{}", s.path.display());
                    }
                }
            }
        }
    }

    /// Quotes anywhere in a Kaggle captions file: a caption is never several lines of the
    /// file (an unclosed quote is an error, not one caption swallowing the rest).
    #[test]
    fn kaggle_quoting(
        rows in proptest::collection::vec((0usize..4, any::<bool>(), any::<bool>()), 1..8),
    ) {
        let d = workdir(&seeds().flickr_dir, "Images");
        let mut names: Vec<String> = std::fs::read_dir(d.path().join("Images")).unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        let mut text = String::from("image,caption\n");
        for (i, open, close) in &rows {
            let name = &names[i % names.len()];
            let q = if *open { "\"" } else { "" };
            let c = if *close { "\"" } else { "" };
            text += &format!("{name},{q}a dog, running{c}\n");
        }
        std::fs::write(d.path().join("captions.txt"), &text).unwrap();
        if let Some(ds) = check(data::load(d.path(), &LoadOptions::default())) {
            for s in &ds.samples {
                for c in &s.captions {
                    assert!(!c.contains('\n'), "{c:?} from {text:?}");
                }
            }
        }
    }
}
