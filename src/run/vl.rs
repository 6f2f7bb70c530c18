//! The run directory of a BLIP or GIT fine-tuned from a Hugging Face folder
//! (docs/vision-language.md, "Fine-tuning"): the same files and guarantees as every run —
//! `model.safetensors` (best), `last.safetensors`, `train_state.{json,safetensors}`,
//! `metrics.jsonl`, the lock and the epoch commit of `epoch.rs` — with the folder's
//! `config.json`, preprocessing and tokenizer files copied into `hf/` in place of `vocab.json`,
//! so the run captions, evaluates and resumes without the folder. `config.json` records the
//! folder's architecture (`vl.architecture`: `blip` or `git`, with its sizes) beside the
//! training settings; the weights keep the folder's own names.
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{atomic_write, ensure_new, read_json, write_json, CONFIG};
use crate::config::TrainConfig;
use crate::model::vl::{VlCaptioner, VlConfig};
use crate::{Error, Result};

/// The folder's files copied into the run (those it has; the weights are the run's own).
pub const HF: &str = "hf";
pub const HF_FILES: [&str; 8] = [
    "config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "added_tokens.json",
];

/// `config.json` of a BLIP/GIT run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VlRunConfig {
    pub captag_version: String,
    /// The architecture and sizes of the folder the run started from (`hf/config.json` too).
    pub vl: VlConfig,
    /// `--freeze-vision`: the image tower kept as loaded.
    pub freeze_vision: bool,
    pub train: TrainConfig,
    pub data_path: String,
    pub data_fingerprint: String,
}

/// Whether `dir` holds a BLIP/GIT run (its `config.json` has a `vl` section).
pub fn is_vl_run(dir: &Path) -> bool {
    let Ok(text) = fs::read_to_string(dir.join(CONFIG)) else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .map(|v| v["vl"].is_object() && v["train"].is_object())
        .unwrap_or(false)
}

/// Fingerprint of a Hugging Face folder: its `config.json` and weights file (or shard index).
pub fn folder_fingerprint(dir: &Path) -> Result<String> {
    let mut f = super::Fingerprint::default();
    for name in [
        "config.json",
        "model.safetensors",
        "model.safetensors.index.json",
    ] {
        let path = dir.join(name);
        if path.is_file() {
            f.update(name.as_bytes());
            f.update(super::Fingerprint::of_file(&path)?.as_bytes());
        }
    }
    Ok(f.hex())
}

/// A new run in `dir` from the folder `src`: its files into `hf/`, then `config.json` (last:
/// a directory without it holds no run).
pub fn create(dir: &Path, src: &Path, run: &VlRunConfig) -> Result<()> {
    ensure_new(dir)?;
    let hf = dir.join(HF);
    fs::create_dir_all(&hf).map_err(|e| Error::io(&hf, e))?;
    for name in HF_FILES {
        let from = src.join(name);
        if from.is_file() {
            let bytes = crate::input::read_bytes(&from, crate::input::TEXT, "a model file")?;
            atomic_write(&hf.join(name), &bytes)?;
        }
    }
    write_json(run, &dir.join(CONFIG))
}

pub fn read(dir: &Path) -> Result<VlRunConfig> {
    read_json(&dir.join(CONFIG))
}

/// `--resume` of a BLIP/GIT run: only `--epochs` may change (as for every run), and the data
/// must be the run's.
pub fn reopen(
    dir: &Path,
    asked: &TrainConfig,
    freeze_vision: bool,
    data_fp: &str,
) -> Result<VlRunConfig> {
    let mut c = read(dir)?;
    let mut want = asked.clone();
    // The source is recorded once, when the run is created.
    want.init_from = c.train.init_from.clone();
    if let Some(diff) = super::train_mismatch(&want, &c.train) {
        return Err(Error::invalid(format!(
            "--resume: {diff} (only --epochs can change when resuming; train into a new --out to \
             change it)"
        )));
    }
    if freeze_vision != c.freeze_vision {
        return Err(Error::invalid(format!(
            "--resume: --freeze-vision differs from the run's ({})",
            c.freeze_vision
        )));
    }
    if c.data_fingerprint != data_fp {
        return Err(Error::invalid(format!(
            "--resume: {} was trained on different data (captions or splits changed)",
            dir.display()
        )));
    }
    c.train.epochs = asked.epochs;
    write_json(&c, &dir.join(CONFIG))?;
    Ok(c)
}

/// The run's model with its best weights (`last`: the last epoch's), from the run alone.
pub fn open(dir: &Path, device: tch::Device, last: bool) -> Result<(VlRunConfig, VlCaptioner)> {
    let run = read(dir)?;
    let name = if last { super::LAST } else { super::BEST };
    let weights = super::committed_path(dir, name);
    if !weights.is_file() {
        return Err(Error::invalid(format!(
            "{}: no {name} yet (no epoch finished)",
            dir.display()
        )));
    }
    let mut m = VlCaptioner::load_with(&dir.join(HF), Some(&weights), device)?;
    if m.config != run.vl {
        return Err(Error::invalid(format!(
            "{}: hf/config.json no longer matches the run's config.json",
            dir.display()
        )));
    }
    m.dir = dir.to_path_buf();
    Ok((run, m))
}

/// Where a run that saved no epoch yet starts again: the folder it was created from, if it is
/// still the same folder.
pub fn source(run: &VlRunConfig) -> Result<PathBuf> {
    let init = run
        .train
        .init_from
        .as_ref()
        .ok_or_else(|| Error::invalid("the run records no --init-from folder"))?;
    let dir = PathBuf::from(&init.run);
    let now = match is_vl_run(&dir) {
        true => super::fingerprint(&dir),
        false => folder_fingerprint(&dir),
    };
    if !dir.is_dir() || now? != init.fingerprint {
        return Err(Error::invalid(format!(
            "no epoch was saved yet and the folder it started from ({}) is gone or changed: \
             start a new run with --init-from",
            dir.display()
        )));
    }
    Ok(dir)
}

/// What `--init-from` names, loaded: a folder as downloaded, or a BLIP/GIT run (its best
/// weights); with the folder whose config, preprocessing and tokenizer files a new run copies.
pub fn load_source(src: &Path, device: tch::Device) -> Result<(VlCaptioner, PathBuf)> {
    if is_vl_run(src) {
        return Ok((open(src, device, false)?.1, src.join(HF)));
    }
    Ok((VlCaptioner::load(src, device)?, src.to_path_buf()))
}
