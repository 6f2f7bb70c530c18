//! CLIP's image half (`vision_model` + `visual_projection`), the `clip` encoder of
//! `captag features --encoder clip` and of runs trained on its cache (docs/ARCHITECTURE.md,
//! "Features"). Only these tensors are read from the user's folder: a `CLIPModel` download
//! (`openai/clip-vit-base-patch32`: `vision_config` inside `config.json`) or a
//! `CLIPVisionModelWithProjection` one (`model_type: clip_vision_model`, the vision fields at the
//! top). The pooled vector is `get_image_features` (the class token after `post_layernorm`,
//! projected: what ClipCap reads); the grid is `last_hidden_state[:, 1:]`, the patch tokens as
//! `transformers` returns them, without `post_layernorm` (which CLIP applies to the class token
//! only).
use std::path::Path;

use serde_json::Value;
use tch::{nn, Device, Kind, Tensor};

use super::{ClipImageConfig, ClipPreprocess, ClipVisionConfig, VisionTower};
use crate::fsio::Fingerprint;
use crate::model::hf::{read_config, HfWeights};
use crate::{Error, Result};

/// The image tower and its projection, under `transformers`' names.
#[derive(Debug)]
pub struct ClipImage {
    pub vision: VisionTower,
    visual_projection: nn::Linear,
}

impl ClipImage {
    /// `vision_model.*` and `visual_projection` under `p`.
    pub fn new(p: &nn::Path, cfg: &ClipImageConfig) -> Self {
        let no_bias = nn::LinearConfig {
            bias: false,
            ..Default::default()
        };
        ClipImage {
            vision: VisionTower::new(p / "vision_model", &cfg.vision),
            visual_projection: nn::linear(
                p / "visual_projection",
                cfg.vision.hidden_size,
                cfg.projection_dim,
                no_bias,
            ),
        }
    }

    /// `pixels (N, C, S, S)`, preprocessed ⇒ `(image_embeds (N, proj), patch tokens (N, P, width))`.
    pub fn forward(&self, pixels: &Tensor) -> (Tensor, Tensor) {
        let (last, pooled) = self.vision.forward(pixels); // (N, 1 + P, width), (N, width)
        let embeds = pooled.apply(&self.visual_projection); // (N, proj)
        let p = last.size()[1] - 1;
        (embeds, last.narrow(1, 1, p)) // (N, proj), (N, P, width)
    }
}

/// A user's CLIP folder, read for its image half.
#[derive(Debug, Clone)]
pub struct ClipImageFolder {
    pub config: ClipImageConfig,
    pub preprocess: ClipPreprocess,
}

impl ClipImageFolder {
    /// `dir/config.json` (and `preprocessor_config.json` when present); refuses a folder that
    /// is not CLIP or has no image tower, in one line.
    pub fn read(dir: &Path) -> Result<Self> {
        let (v, _) = read_config::<Value>(dir, "CLIP")?;
        let config = image_config(&v, &dir.join("config.json"))?;
        let preprocess = ClipPreprocess::read(dir, config.vision.image_size)?;
        if preprocess.crop as i64 != config.vision.image_size {
            return Err(Error::invalid(format!(
                "{}: preprocessor_config.json crops to {} pixels, the model takes {}",
                dir.display(),
                preprocess.crop,
                config.vision.image_size
            )));
        }
        Ok(ClipImageFolder { config, preprocess })
    }

    /// The image half's weights of `dir` in a frozen store on `device` (text weights are not
    /// kept) and their fingerprint.
    pub fn load(&self, dir: &Path, device: Device) -> Result<(ClipImage, nn::VarStore, String)> {
        let mut vs = nn::VarStore::new(device);
        let image = ClipImage::new(&vs.root(), &self.config);
        HfWeights::read(dir)?.load_into(&mut vs, |name| vec![name.to_string()])?;
        vs.freeze();
        let fp = fingerprint(&vs);
        Ok((image, vs, fp))
    }
}

/// What identifies a CLIP encoder's weights: every variable's name and float32 bytes, in name
/// order (so a folder with other text weights, shards or dtype gives the same fingerprint when
/// its image half is the same).
pub fn fingerprint(vs: &nn::VarStore) -> String {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut f = Fingerprint::default();
    for (name, t) in named {
        let flat = t.to_kind(Kind::Float).contiguous().view([-1]);
        let n = flat.numel();
        let mut bytes = vec![0u8; n * 4];
        flat.to_device(Device::Cpu).copy_data_u8(&mut bytes, n);
        f.update(name.as_bytes())
            .update(&format!("{:?}", t.size()).into_bytes());
        f.update(&bytes);
    }
    f.hex()
}

/// The image tower's sizes from a `CLIPModel` or `CLIPVisionModelWithProjection` config.
fn image_config(v: &Value, place: &Path) -> Result<ClipImageConfig> {
    let bad = |why: String| Error::invalid(format!("{}: {why}", place.display()));
    let model_type = v["model_type"].as_str().unwrap_or("clip");
    let (vision, top) = match model_type {
        "clip" => {
            let section = ["vision_config", "vision_config_dict"]
                .iter()
                .map(|k| &v[*k])
                .find(|s| s.is_object())
                .ok_or_else(|| {
                    bad(
                        "has no vision_config (a text-only CLIP config): --encoder clip needs \
                         CLIP's image tower"
                            .into(),
                    )
                })?;
            (section.clone(), v)
        }
        "clip_vision_model" => (v.clone(), v),
        "clip_text_model" => {
            return Err(bad(
                "is a CLIP text model (model_type clip_text_model) without an image tower: \
                 --encoder clip needs a CLIPModel or CLIPVisionModelWithProjection folder"
                    .into(),
            ))
        }
        other => {
            return Err(bad(format!(
                "model_type is `{other}`, not a CLIP model (--encoder clip reads CLIPModel \
                 folders such as openai/clip-vit-base-patch32)"
            )))
        }
    };
    let vision: ClipVisionConfig = serde_json::from_value(vision)
        .map_err(|e| bad(format!("vision_config: {}", crate::input::one_line(e))))?;
    let projection_dim = match &top["projection_dim"] {
        Value::Null => ClipImageConfig::default().projection_dim,
        p => p
            .as_i64()
            .ok_or_else(|| bad("projection_dim is not an integer".into()))?,
    };
    let cfg = ClipImageConfig {
        vision,
        projection_dim,
    };
    cfg.check().map_err(bad)?;
    Ok(cfg)
}
