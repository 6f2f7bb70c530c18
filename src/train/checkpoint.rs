//! The run directory (DESIGN.md, "Run directory"): `config.json`, `vocab.json`,
//! `model.safetensors` (best), `last.safetensors`, `encoder.safetensors` (frozen encoders),
//! `train_state.json` + `train_state.safetensors` (exact resume), `metrics.jsonl`.
//!
//! Every write goes to a temporary file in the same directory, is fsynced and renamed over the
//! target, so a crash never leaves a half-written checkpoint.
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tch::{nn::VarStore, Tensor};

use crate::config::{ModelConfig, TrainConfig};
use crate::{Error, Result};

pub const CONFIG: &str = "config.json";
pub const VOCAB: &str = "vocab.json";
pub const BEST: &str = "model.safetensors";
pub const LAST: &str = "last.safetensors";
pub const ENCODER: &str = "encoder.safetensors";
pub const STATE: &str = "train_state.json";
pub const OPTIM: &str = "train_state.safetensors";
pub const METRICS: &str = "metrics.jsonl";
pub const HASHTAGS: &str = "hashtags.json";

/// The run's hashtag label list, checked against its config.
pub fn load_tag_list(dir: &Path, run: &RunConfig) -> Result<crate::text::taglist::TagList> {
    let list = crate::text::taglist::TagList::load(&dir.join(HASHTAGS))?;
    let want = run.model.hashtags.as_ref().map_or(0, |t| t.num_tags);
    if list.len() as i64 != want {
        return Err(crate::Error::invalid(format!(
            "{}: hashtags.json has {} tags but config.json says {want}",
            dir.display(),
            list.len()
        )));
    }
    Ok(list)
}

/// `config.json`: everything needed to rebuild, resume and audit a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub captag_version: String,
    pub model: ModelConfig,
    pub train: TrainConfig,
    /// Where the training data came from and a fingerprint of its captions and splits.
    pub data_path: String,
    pub data_fingerprint: String,
    /// Fingerprint of the frozen encoder's weights (None for end-to-end encoders).
    pub encoder_fingerprint: Option<String>,
}

/// `train_state.json`: where the last completed epoch left the loop.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Completed epochs.
    pub epoch: usize,
    /// Optimizer updates so far.
    pub step: i64,
    pub lr: f64,
    pub best_bleu4: f64,
    /// Dev loss of the best epoch (breaks BLEU-4 ties, e.g. 0 = 0 early on).
    #[serde(default)]
    pub best_dev_loss: f64,
    pub best_epoch: usize,
    /// Epochs since the best dev BLEU-4 (early stopping).
    pub bad_epochs: usize,
    /// Lowest dev loss so far and epochs since it (plateau schedule).
    #[serde(default)]
    pub lowest_dev_loss: Option<f64>,
    #[serde(default)]
    pub loss_bad_epochs: usize,
    pub stopped_early: bool,
}

pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::fsio::write_atomic(path, bytes, true)
}

pub fn write_json<T: Serialize>(value: &T, path: &Path) -> Result<()> {
    let s = serde_json::to_string_pretty(value).map_err(|e| Error::invalid(e.to_string()))?;
    atomic_write(path, s.as_bytes())
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let s = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&s).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
}

pub fn write_tensors(named: &[(String, Tensor)], path: &Path) -> Result<()> {
    let tmp = crate::fsio::tmp_path(path);
    Tensor::write_safetensors(named, &tmp)
        .map_err(|e| Error::invalid(format!("{}: cannot write tensors: {e}", tmp.display())))?;
    crate::fsio::commit(&tmp, path, true)
}

pub fn save_vars(vs: &VarStore, path: &Path) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    write_tensors(&named, path)
}

/// Load every variable of `vs` from a safetensors file, with a clear error for a file that is
/// not a checkpoint, a missing name, or a shape that does not match (another vocabulary or
/// architecture).
pub fn load_vars(vs: &mut VarStore, path: &Path) -> Result<()> {
    if !path.is_file() {
        return Err(Error::invalid(format!(
            "{}: no such weights file",
            path.display()
        )));
    }
    let named: HashMap<String, Tensor> = Tensor::read_safetensors(path)
        .map_err(|_| {
            Error::invalid(format!(
                "{}: not a valid safetensors file (corrupt or truncated?)",
                path.display()
            ))
        })?
        .into_iter()
        .collect();
    let mut vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let dst = &vars[name];
        let src = named.get(name).ok_or_else(|| {
            Error::invalid(format!(
                "{}: has no tensor `{name}` — it was written for another architecture",
                path.display()
            ))
        })?;
        if src.size() != dst.size() {
            return Err(Error::invalid(format!(
                "{}: `{name}` has shape {:?}, the model expects {:?} (vocabulary or config mismatch)",
                path.display(),
                src.size(),
                dst.size()
            )));
        }
    }
    tch::no_grad(|| {
        for (name, dst) in vars.iter_mut() {
            dst.copy_(&named[name].to_kind(dst.kind()).to_device(dst.device()));
        }
    });
    Ok(())
}

pub fn append_metrics(dir: &Path, line: &serde_json::Value) -> Result<()> {
    let path = dir.join(METRICS);
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    writeln!(f, "{line}").map_err(|e| Error::io(&path, e))?;
    f.sync_all().map_err(|e| Error::io(&path, e))
}

/// Short stable fingerprint (FNV-1a, 64 bit, hex) of a byte stream.
#[derive(Clone, Copy, Debug)]
pub struct Fingerprint(u64);

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint(0xcbf2_9ce4_8422_2325)
    }
}

impl Fingerprint {
    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
        // Separator so ("ab","c") and ("a","bc") differ.
        self.0 = (self.0 ^ 0xff).wrapping_mul(0x100_0000_01b3);
        self
    }
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
    pub fn of_file(path: &Path) -> Result<String> {
        let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
        Ok(Fingerprint::default().update(&bytes).hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_separates_fields() {
        let a = Fingerprint::default().update(b"ab").update(b"c").hex();
        let b = Fingerprint::default().update(b"a").update(b"bc").hex();
        assert_ne!(a, b);
        assert_eq!(a, Fingerprint::default().update(b"ab").update(b"c").hex());
    }
}
