//! The feature cache: a frozen encoder is run once over a dataset's images and its pooled
//! vectors (and optionally conv grids) are stored in one safetensors file, keyed by image id
//! (safetensors metadata). A fingerprint of encoder + weights + preprocessing + image list is
//! stored with them; training reuses a cache only when the fingerprint matches.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tch::{Device, Kind, Tensor};

use crate::config::EncoderKind;
use crate::data::image::Preprocess;
use crate::data::loader::{BatchLoader, THREADS_BESIDE_MODEL};
use crate::model::Encoder;
use crate::train::checkpoint::Fingerprint;
use crate::{Error, Result};

#[derive(Debug)]
pub struct FeatureCache {
    pub fingerprint: String,
    pub encoder: EncoderKind,
    /// Image ids, row order of `pooled`.
    pub ids: Vec<String>,
    /// `(N, D)` float32 on the CPU.
    pub pooled: Tensor,
    /// `(N, C, H, W)`, when asked for.
    pub grid: Option<Tensor>,
}

/// What a cache must have been computed from.
pub fn fingerprint(
    encoder: EncoderKind,
    weights_fp: &str,
    pre: &Preprocess,
    ids: &[String],
) -> String {
    let mut f = Fingerprint::default();
    f.update(encoder.as_str().as_bytes())
        .update(weights_fp.as_bytes());
    f.update(serde_json::to_string(pre).unwrap_or_default().as_bytes());
    let mut sorted: Vec<&String> = ids.iter().collect();
    sorted.sort();
    for id in sorted {
        f.update(id.as_bytes());
    }
    f.hex()
}

/// Outcome of running an encoder over a list of images.
pub struct Extracted {
    pub cache: FeatureCache,
    /// `(image id, reason)` for images that could not be decoded (skipped).
    pub failed: Vec<(String, String)>,
}

/// Run `encoder` (already loaded, frozen) over `images` = `(id, path)`.
#[allow(clippy::too_many_arguments)]
pub fn extract(
    encoder: &Encoder,
    kind: EncoderKind,
    weights_fp: &str,
    pre: &Preprocess,
    images: &[(String, PathBuf)],
    batch_size: usize,
    device: Device,
    keep_grid: bool,
    progress: &indicatif::ProgressBar,
) -> Result<Extracted> {
    let paths: Vec<PathBuf> = images.iter().map(|(_, p)| p.clone()).collect();
    let (mut ids, mut pooled, mut grids, mut failed) = (vec![], vec![], vec![], vec![]);
    for batch in BatchLoader::new(paths, *pre, batch_size, THREADS_BESIDE_MODEL) {
        for (i, reason) in &batch.failed {
            failed.push((images[*i].0.clone(), reason.clone()));
        }
        progress.inc((batch.indices.len() + batch.failed.len()) as u64);
        if batch.indices.is_empty() {
            continue;
        }
        let xs = batch.to_tensor().to_device(device); // (B, 3, S, S)
        let out = tch::no_grad(|| encoder.forward_t(&xs, false));
        pooled.push(out.pooled.to_device(Device::Cpu)); // (B, D)
        if keep_grid {
            grids.push(out.grid.to_device(Device::Cpu)); // (B, C, H, W)
        }
        ids.extend(batch.indices.iter().map(|&i| images[i].0.clone()));
    }
    if ids.is_empty() {
        return Err(Error::invalid(
            "no image could be decoded: nothing to extract features from",
        ));
    }
    let fp = fingerprint(kind, weights_fp, pre, &ids);
    let grid = if keep_grid {
        Some(Tensor::cat(&grids, 0))
    } else {
        None
    };
    let cache = FeatureCache {
        fingerprint: fp,
        encoder: kind,
        ids,
        pooled: Tensor::cat(&pooled, 0),
        grid,
    };
    Ok(Extracted { cache, failed })
}

fn to_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let flat = t.to_kind(Kind::Float).contiguous().view([-1]);
    let v: Vec<f32> = Vec::<f32>::try_from(&flat).map_err(Error::Torch)?;
    Ok(v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

impl FeatureCache {
    pub fn save(&self, path: &Path) -> Result<()> {
        let dims = |t: &Tensor| t.size().iter().map(|&d| d as usize).collect::<Vec<_>>();
        let pooled = to_bytes(&self.pooled)?;
        let grid = self.grid.as_ref().map(to_bytes).transpose()?;
        let mut views = vec![(
            "pooled".to_string(),
            TensorView::new(Dtype::F32, dims(&self.pooled), &pooled)
                .map_err(|e| Error::invalid(e.to_string()))?,
        )];
        if let (Some(g), Some(bytes)) = (&self.grid, &grid) {
            views.push((
                "grid".to_string(),
                TensorView::new(Dtype::F32, dims(g), bytes)
                    .map_err(|e| Error::invalid(e.to_string()))?,
            ));
        }
        let ids = serde_json::to_string(&self.ids).map_err(|e| Error::invalid(e.to_string()))?;
        let meta: HashMap<String, String> = [
            ("format".to_string(), "captag-features-1".to_string()),
            ("fingerprint".to_string(), self.fingerprint.clone()),
            ("encoder".to_string(), self.encoder.as_str().to_string()),
            ("ids".to_string(), ids),
        ]
        .into();
        let bytes = safetensors::tensor::serialize(views, &Some(meta))
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        crate::train::checkpoint::atomic_write(path, &bytes)
    }

    pub fn load(path: &Path) -> Result<FeatureCache> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad = |m: &str| {
            Error::invalid(format!(
                "{}: not a captag feature cache: {m}",
                path.display()
            ))
        };
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(&e.to_string()))?;
        let meta = meta.metadata().clone().ok_or_else(|| bad("no metadata"))?;
        if meta.get("format").map(String::as_str) != Some("captag-features-1") {
            return Err(bad("missing format tag"));
        }
        let get = |k: &str| {
            meta.get(k)
                .cloned()
                .ok_or_else(|| bad(&format!("no `{k}`")))
        };
        let ids: Vec<String> =
            serde_json::from_str(&get("ids")?).map_err(|e| bad(&e.to_string()))?;
        let encoder: EncoderKind =
            serde_json::from_value(serde_json::Value::String(get("encoder")?))
                .map_err(|e| bad(&e.to_string()))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(&e.to_string()))?;
        let tensor = |name: &str| -> Result<Tensor> {
            let v = st.tensor(name).map_err(|e| bad(&e.to_string()))?;
            let floats: Vec<f32> = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let shape: Vec<i64> = v.shape().iter().map(|&d| d as i64).collect();
            Ok(Tensor::from_slice(&floats).reshape(shape))
        };
        let pooled = tensor("pooled")?;
        if pooled.size().first().copied() != Some(ids.len() as i64) {
            return Err(bad("row count differs from the id list"));
        }
        let grid = if st.names().iter().any(|n| *n == "grid") {
            Some(tensor("grid")?)
        } else {
            None
        };
        Ok(FeatureCache {
            fingerprint: get("fingerprint")?,
            encoder,
            ids,
            pooled,
            grid,
        })
    }

    /// Row of every id (for aligning samples with features).
    pub fn index(&self) -> HashMap<&str, i64> {
        self.ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i as i64))
            .collect()
    }
}
