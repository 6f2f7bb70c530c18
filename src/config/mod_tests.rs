//! Config upgrades and the CLIP tower checks.
use super::*;

#[test]
fn old_flat_configs_upgrade_to_show_tell() {
    let old = serde_json::json!({
        "encoder": "small-cnn", "frozen_encoder": false, "decoder": "gru",
        "feed": "init-state", "vocab_size": 30, "embed_dim": 16, "hidden_dim": 32,
        "layers": 2, "dropout": 0.1,
        "preprocess": serde_json::to_value(EncoderKind::SmallCnn.default_preprocess()).unwrap()
    });
    let m = ModelConfig::from_json(old).unwrap();
    assert_eq!(
        m.decoder,
        DecoderConfig::ShowTell(ShowTellConfig {
            cell: CellKind::Gru,
            feed: ImageFeed::InitState,
            embed_dim: 16,
            hidden_dim: 32,
            layers: 2,
            dropout: 0.1
        })
    );
    let new = serde_json::to_value(&m).unwrap();
    assert_eq!(ModelConfig::from_json(new).unwrap(), m);
}

#[test]
fn a_clip_encoder_is_frozen_and_takes_its_towers_size() {
    let mut m = ModelConfig::preset(EncoderKind::Clip, true, DecoderPreset::Clipcap, 30);
    let err = |m: &ModelConfig| m.validate().unwrap_err().to_string();
    assert!(err(&m).contains("without its `clip` tower"), "{}", err(&m));
    let mut tower = ClipImageConfig {
        projection_dim: 24,
        ..Default::default()
    };
    m.set_clip(tower.clone(), Preprocess::clip_default());
    m.validate().unwrap();
    assert_eq!(
        m.dims(),
        FeatureDims {
            pooled: 24,
            grid: 768
        }
    );
    let DecoderConfig::ClipCap(c) = &m.decoder else {
        panic!("clipcap preset")
    };
    assert_eq!(c.feature_dim, 24, "the mapper reads the projection");
    // Stored and read back as config.json does.
    let back = ModelConfig::from_json(serde_json::to_value(&m).unwrap()).unwrap();
    assert_eq!(back, m);
    let mut small = m.clone();
    small.preprocess.size = 32;
    assert!(
        err(&small).contains("CLIP takes 224 px images"),
        "{}",
        err(&small)
    );
    let mut trained = m.clone();
    trained.frozen_encoder = false;
    assert!(err(&trained).contains("frozen"), "{}", err(&trained));
    let mut odd = m.clone();
    tower.vision.patch_size = 0;
    odd.clip = Some(tower);
    assert!(err(&odd).contains("patch_size is 0"), "{}", err(&odd));
    let mut cnn = ModelConfig::preset(EncoderKind::Vgg19, true, DecoderPreset::Lstm, 30);
    cnn.clip = m.clip.clone();
    assert!(err(&cnn).contains("encoder vgg19"), "{}", err(&cnn));
}
