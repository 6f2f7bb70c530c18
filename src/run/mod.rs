//! The run directory (docs/ARCHITECTURE.md, "Run directory"): `config.json`, `vocab.json` (or
//! `lm/`, a pretrained GPT-2's tokenizer), `hashtags.json`, `model.safetensors` (best), `last.safetensors`, `encoder.safetensors` (frozen
//! encoders; a fine-tuned encoder's starting weights), `train_state.json` + `train_state.safetensors` (exact resume), `metrics.jsonl`.
//! This module is the only one that knows the layout: training creates and reopens runs through
//! [`create`] and [`reopen`], evaluation and inference load them with [`open`].
//!
//! Every write goes to a temporary file in the same directory, is fsynced and renamed over the
//! target, so a crash never leaves a half-written checkpoint; the files of one epoch are
//! committed together by one rename ([`commit_epoch`], `epoch.rs`).
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::config::{EncoderKind, ModelConfig, Plateau, TrainConfig};
use crate::model::captioner::Captioner;
use crate::text::taglist::TagList;
use crate::text::tokens::{BpeTokens, Tokens};
use crate::text::vocab::Vocab;
use crate::{Error, Result};

pub const CONFIG: &str = "config.json";
pub const VOCAB: &str = "vocab.json";
pub const BEST: &str = "model.safetensors";
pub const LAST: &str = "last.safetensors";
pub const ENCODER: &str = "encoder.safetensors";
/// Where the loop stands after the last committed epoch ([`TrainState`]: epoch, step, learning
/// rate, best epoch, early-stopping and plateau counters).
pub const STATE: &str = "train_state.json";
/// The optimizer's state beside it: Adam's moments (`train::optim::Adam::save`).
pub const OPTIMIZER: &str = "train_state.safetensors";
pub const METRICS: &str = "metrics.jsonl";
pub const HASHTAGS: &str = "hashtags.json";
/// A pretrained GPT-2's `config.json` and tokenizer files (ClipCap with `--lm-weights`).
pub const LM: &str = "lm";
/// The files of a Hugging Face `gpt2` folder copied into [`LM`] (those it has; the weights are
/// in the run's own checkpoints).
pub const LM_FILES: [&str; 6] = [
    "config.json",
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// The run's hashtag label list, checked against its config.
pub fn load_tag_list(dir: &Path, run: &RunConfig) -> Result<TagList> {
    let list = TagList::load(&dir.join(HASHTAGS))?;
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
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunConfig {
    pub captag_version: String,
    pub model: ModelConfig,
    pub train: TrainConfig,
    /// Where the training data came from and a fingerprint of its captions and splits.
    pub data_path: String,
    pub data_fingerprint: String,
    /// Fingerprint of the frozen encoder's weights, or of a fine-tuned encoder's starting
    /// weights (None for end-to-end encoders).
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
    /// Best dev value of the selection score (`train::SelectionScore`: `--select`, BLEU-4 by
    /// default or CIDEr-D; dev mAP for hashtag-only runs).
    #[serde(alias = "best_bleu4")]
    pub best_score: f64,
    /// Dev loss of the best epoch (breaks ties, e.g. BLEU-4 0 = 0 early on).
    #[serde(default)]
    pub best_dev_loss: f64,
    pub best_epoch: usize,
    /// Epochs since the best selection score (early stopping).
    pub bad_epochs: usize,
    /// Lowest dev loss so far and epochs since it (plateau schedule).
    #[serde(flatten)]
    pub plateau: Plateau,
    pub stopped_early: bool,
    /// fp16 runs: the loss scale (`train::scaler`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<crate::config::precision::ScalerState>,
}

pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::fsio::write_atomic(path, bytes, true)
}

pub fn write_json<T: Serialize>(value: &T, path: &Path) -> Result<()> {
    let s = serde_json::to_string_pretty(value).map_err(|e| Error::invalid(e.to_string()))?;
    atomic_write(path, s.as_bytes())
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let s = crate::input::read_text(path, crate::input::TEXT, "a JSON file")?;
    serde_json::from_str(&s)
        .map_err(|e| Error::invalid(format!("{}: {}", path.display(), crate::input::one_line(e))))
}

mod epoch;
pub mod vl;
pub use epoch::{commit_epoch, committed_path, recover, Epoch, Recovered};

pub use crate::fsio::Fingerprint;
pub use crate::model::weights::{load_vars, save_vars, write_tensors};

/// Read `config.json`, upgrading the model section of older captag versions.
pub fn read_config(path: &Path) -> Result<RunConfig> {
    #[derive(Deserialize)]
    struct Raw {
        captag_version: String,
        model: serde_json::Value,
        train: TrainConfig,
        data_path: String,
        data_fingerprint: String,
        encoder_fingerprint: Option<String>,
    }
    let raw: Raw = read_json(path)?;
    let model = ModelConfig::from_json(raw.model).map_err(|e| {
        Error::invalid(format!(
            "{}: model config written by captag {} cannot be read by {}: {}",
            path.display(),
            raw.captag_version,
            env!("CARGO_PKG_VERSION"),
            crate::input::one_line(e)
        ))
    })?;
    Ok(RunConfig {
        captag_version: raw.captag_version,
        model,
        train: raw.train,
        data_path: raw.data_path,
        data_fingerprint: raw.data_fingerprint,
        encoder_fingerprint: raw.encoder_fingerprint,
    })
}

/// What a new run directory starts with.
pub struct NewRun<'a> {
    pub dir: &'a Path,
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub data_path: &'a Path,
    pub data_fingerprint: &'a str,
    pub vocab: &'a Tokens,
    pub tags: Option<&'a TagList>,
    /// A pretrained GPT-2 folder (ClipCap `--lm-weights`): its files are copied into `lm/`.
    pub lm: Option<&'a Path>,
    /// The user's pretrained encoder weights (frozen or fine-tuned encoders), installed as
    /// `encoder.safetensors`.
    pub encoder_weights: Option<&'a Path>,
}

/// The lock file of a run directory.
pub const LOCK: &str = ".lock";

/// An exclusive `flock` on a run directory's `.lock`, held while a process trains into it, so a
/// second `train`/`--resume`/`compare` on the same directory is refused instead of interleaving
/// its writes. Released when dropped (and by the kernel if the process dies, even by SIGKILL).
pub struct Lock {
    dir: PathBuf,
    _file: fs::File,
}

/// Locks `dir` (created if needed) for training.
pub fn lock(dir: &Path) -> Result<Lock> {
    use std::os::fd::AsRawFd;
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(LOCK);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    // SAFETY: flock on a descriptor this function owns; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let holder = fs::read_to_string(&path).unwrap_or_default();
        return Err(Error::invalid(format!(
            "{}: another captag process (pid {}) is training into this run directory; wait \
             for it to finish or choose another --out",
            dir.display(),
            holder.trim()
        )));
    }
    // The holder's pid, for the message above (a lock whose process died is simply free).
    let _ = file.set_len(0);
    let _ = (&file).write_all(std::process::id().to_string().as_bytes());
    remove_stale_temps(dir);
    Ok(Lock {
        dir: dir.to_path_buf(),
        _file: file,
    })
}

/// Temp files (`.NAME.tmp.PID`, see `fsio::tmp_path`) of the files a trainer writes, left by a
/// trainer that died mid-write. Only the lock holder writes these names, so once it holds the
/// lock they are garbage.
fn remove_stale_temps(dir: &Path) {
    const OURS: [&str; 10] = [
        CONFIG,
        VOCAB,
        BEST,
        LAST,
        ENCODER,
        STATE,
        OPTIMIZER,
        METRICS,
        HASHTAGS,
        "teacher_captions.json",
    ];
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stale = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".tmp."))
            .is_some_and(|(file, pid)| {
                OURS.contains(&file) && pid.bytes().all(|b| b.is_ascii_digit())
            });
        if stale {
            let _ = fs::remove_file(e.path());
        }
    }
}

impl Drop for Lock {
    /// A directory this lock created for a run that never started (bad data, bad flags) is
    /// not left behind: without `config.json` the lock file goes, and the directory if empty.
    fn drop(&mut self) {
        if !self.dir.join(CONFIG).exists() {
            let _ = fs::remove_file(self.dir.join(LOCK));
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

/// A new run may not overwrite an old one.
pub fn ensure_new(dir: &Path) -> Result<()> {
    if dir.join(CONFIG).exists() {
        return Err(Error::invalid(format!(
            "{} already holds a run: pass --resume to continue it, or choose another --out",
            dir.display()
        )));
    }
    Ok(())
}

/// Create a run directory; refuses one that already holds a run.
pub fn create(new: NewRun) -> Result<RunConfig> {
    let dir = new.dir;
    ensure_new(dir)?;
    new.model.validate()?;
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // A fine-tuned encoder starts from the user's weights too: the run keeps them (its own
    // weights file holds the fine-tuned ones).
    let pretrained = new.model.frozen_encoder || new.model.fine_tune.is_some();
    let encoder_fingerprint = match (new.encoder_weights, pretrained) {
        (Some(w), true) if new.model.encoder == EncoderKind::Clip => {
            Some(install_clip_weights(w, &new.model, &dir.join(ENCODER))?)
        }
        (Some(w), true) => Some(install_encoder_weights(w, &dir.join(ENCODER))?),
        _ => None,
    };
    let run = RunConfig {
        captag_version: env!("CARGO_PKG_VERSION").to_string(),
        model: new.model,
        train: new.train,
        data_path: new.data_path.display().to_string(),
        data_fingerprint: new.data_fingerprint.to_string(),
        encoder_fingerprint,
    };
    match (new.vocab, new.lm) {
        (Tokens::Words(v), _) => v.save(&dir.join(VOCAB))?,
        (Tokens::Bpe(_), Some(src)) => install_lm_files(src, &dir.join(LM))?,
        (Tokens::Bpe(_), None) => {
            return Err(Error::invalid(
                "a BPE run needs its GPT-2 folder (--lm-weights)",
            ))
        }
    }
    if let Some(list) = new.tags {
        list.save(&dir.join(HASHTAGS))?;
    }
    write_json(&run, &dir.join(CONFIG))?;
    Ok(run)
}

/// Copy (or hard-link) the user's encoder weights into the run so it is self-contained.
fn install_encoder_weights(src: &Path, dst: &Path) -> Result<String> {
    if !src.is_file() {
        return Err(Error::invalid(format!(
            "--encoder-weights: {}: no such file",
            src.display()
        )));
    }
    let fp = Fingerprint::of_file(src)?;
    let _ = fs::remove_file(dst);
    if fs::hard_link(src, dst).is_err() {
        let tmp = crate::fsio::tmp_path(dst);
        fs::copy(src, &tmp).map_err(|e| Error::io(src, e))?;
        crate::fsio::commit(&tmp, dst, true)?;
    }
    Ok(fp)
}

/// CLIP's image half of the user's Hugging Face folder, written as `encoder.safetensors` under
/// the frozen store's names (`vision_model.*`, `visual_projection.weight`; the text tower is left
/// out), so the run needs the folder no more. Its fingerprint is the one `captag features`
/// records for the folder.
fn install_clip_weights(src: &Path, model: &ModelConfig, dst: &Path) -> Result<String> {
    let pre = crate::model::encoder::pretrained(EncoderKind::Clip, src, tch::Device::Cpu)?;
    if pre.clip != model.clip {
        return Err(Error::invalid(format!(
            "--encoder-weights {}: the CLIP folder changed while the run was being set up",
            src.display()
        )));
    }
    let _ = fs::remove_file(dst);
    save_vars(&pre.vs, dst)?;
    Ok(pre.fingerprint)
}

/// Copies the tokenizer and config files of a GPT-2 folder into the run's `lm/`, so the run
/// decodes without the folder.
fn install_lm_files(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
    for name in LM_FILES {
        let from = src.join(name);
        if from.exists() {
            let bytes = crate::input::read_bytes(&from, crate::input::TEXT, "a tokenizer file")?;
            atomic_write(&dst.join(name), &bytes)?;
        }
    }
    Ok(())
}

/// The run's tokens: `lm/`'s BPE for a pretrained GPT-2, else `vocab.json`.
fn read_tokens(dir: &Path, model: &ModelConfig) -> Result<Tokens> {
    match &model.decoder {
        crate::config::DecoderConfig::ClipCap(c) => match &c.pretrained {
            Some(p) => Ok(Tokens::Bpe(Box::new(BpeTokens::load(
                &dir.join(LM),
                p.config.vocab_size,
                (c.max_len - 2).max(0) as usize,
            )?))),
            None => Ok(Tokens::Words(Vocab::load(&dir.join(VOCAB))?)),
        },
        _ => Ok(Tokens::Words(Vocab::load(&dir.join(VOCAB))?)),
    }
}

/// A run's config with its vocabulary and hashtag list, checked against each other: the one
/// "run + vocabulary + tags" bundle. Training starts from it (`train::Prepared` adds the
/// encoded data), inference adds the model (`infer::Loaded`).
pub struct Contents {
    pub run: RunConfig,
    pub vocab: Tokens,
    pub tags: Option<TagList>,
}

/// Read and cross-check `config.json`, `vocab.json` and `hashtags.json`.
pub fn read(dir: &Path) -> Result<Contents> {
    let path = dir.join(CONFIG);
    if !path.is_file() {
        return Err(Error::invalid(format!(
            "{}: not a captag run directory (no config.json)",
            dir.display()
        )));
    }
    if vl::is_vl_run(dir) {
        return Err(Error::invalid(format!(
            "{}: a BLIP/GIT run fine-tuned from a Hugging Face folder; caption, eval, serve, \
             compare and train --resume read it, this does not",
            dir.display()
        )));
    }
    let run = read_config(&path)?;
    run.model.validate()?;
    let vocab = read_tokens(dir, &run.model)?;
    if vocab.len() as i64 != run.model.vocab_size {
        return Err(Error::invalid(format!(
            "{}: the vocabulary has {} ids but config.json says {}",
            dir.display(),
            vocab.len(),
            run.model.vocab_size
        )));
    }
    let tags = match &run.model.hashtags {
        Some(_) => Some(load_tag_list(dir, &run)?),
        None => None,
    };
    Ok(Contents { run, vocab, tags })
}

/// `--resume`: reopen `dir`, refusing another architecture (`asked`, sizes known only once
/// the vocabulary exists are ignored), other training flags than the run's (only `--epochs` may
/// change: a resumed run must continue the same run, so a changed `--lr` or `--batch-size` is
/// refused rather than silently ignored), or other data; records the new epoch total.
pub fn reopen(
    dir: &Path,
    asked: &ModelConfig,
    asked_train: &TrainConfig,
    data_fp: &str,
) -> Result<Contents> {
    if !dir.join(CONFIG).is_file() {
        return Err(Error::invalid(format!(
            "--resume: {} holds no run (no config.json)",
            dir.display()
        )));
    }
    let mut c = read(dir)?;
    let mut asked = asked.clone();
    asked.vocab_size = c.run.model.vocab_size;
    if let (Some(a), Some(r)) = (asked.hashtags.as_mut(), c.run.model.hashtags.as_ref()) {
        a.num_tags = r.num_tags;
    }
    if let Some(diff) = asked.mismatch(&c.run.model) {
        return Err(Error::invalid(format!(
            "--resume: the requested architecture differs from the run in {} ({diff})",
            dir.display()
        )));
    }
    if let Some(diff) = train_mismatch(asked_train, &c.run.train) {
        return Err(Error::invalid(format!(
            "--resume: {diff} (only --epochs can change when resuming; train into a new --out to \
             change it)"
        )));
    }
    if c.run.data_fingerprint != data_fp {
        return Err(Error::invalid(format!(
            "--resume: {} was trained on different data (captions or splits changed)",
            dir.display()
        )));
    }
    c.run.train.epochs = asked_train.epochs;
    write_json(&c.run, &dir.join(CONFIG))?;
    Ok(c)
}

/// The first training setting (other than the epoch total) where `asked` differs from the run.
fn train_mismatch(asked: &TrainConfig, run: &TrainConfig) -> Option<String> {
    let mut asked = asked.clone();
    asked.epochs = run.epochs;
    let a = serde_json::to_value(&asked).ok()?;
    let b = serde_json::to_value(run).ok()?;
    let (a, b) = (a.as_object()?, b.as_object()?);
    // Both ways: a setting only one side has (a teacher) differs too.
    let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
    keys.into_iter().find(|k| a.get(*k) != b.get(*k)).map(|k| {
        let show = |v: Option<&serde_json::Value>| v.cloned().unwrap_or_default();
        format!(
            "--{} {} differs from the run's {}",
            k.replace('_', "-"),
            show(a.get(k)),
            show(b.get(k))
        )
    })
}

/// Fingerprint of a trained run: its `config.json` and best weights (a teacher's identity in a
/// student's config; the model id the web server stores with each rating).
pub fn fingerprint(dir: &Path) -> Result<String> {
    let mut f = Fingerprint::default();
    for name in [CONFIG, BEST] {
        let path = epoch::committed_path(dir, name);
        let bytes = crate::input::read_bytes(&path, crate::input::CHECKPOINT, "a run file")?;
        f.update(&bytes);
    }
    Ok(f.hex())
}

/// Open `dir` for evaluation or inference: its [`Contents`] and its model with the best weights
/// (`model.safetensors`), or `last.safetensors` with `last`. `infer::Loaded` is the run made
/// ready to caption from these; a distillation teacher uses them as they are.
pub fn open(dir: &Path, device: tch::Device, last: bool) -> Result<(Contents, Captioner)> {
    let contents = read(dir)?;
    let mut model = Captioner::new(&contents.run.model, device, true);
    // A run killed after committing an epoch but before moving its files: the commit is what
    // counts (docs/ARCHITECTURE.md, "Run directory").
    load_vars(
        &mut model.vs,
        &epoch::committed_path(dir, if last { LAST } else { BEST }),
    )?;
    if let Some(fvs) = model.frozen_vs.as_mut() {
        load_vars(fvs, &dir.join(ENCODER))?;
    }
    Ok((contents, model))
}
