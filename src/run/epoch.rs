//! The epoch commit point (docs/ARCHITECTURE.md, "Run directory"). An epoch's files —
//! `last.safetensors`, `model.safetensors` when the epoch is the new best,
//! `train_state.safetensors`, `train_state.json` and its `metrics.jsonl` line — are staged in
//! `.epoch.pending/`, fsynced, and the epoch exists the moment that folder is renamed to
//! `.epoch.commit/` (one atomic rename). The files are then moved to their fixed names and the
//! folder removed. A process killed at any instant leaves either a pending folder (the epoch
//! never happened: deleted) or a committed one (the epoch happened: the moves are finished) —
//! [`recover`] does either, and it is what the trainer that takes the run's lock runs first.
//!
//! Why a folder and not per-file renames: renaming four files one by one leaves windows where
//! `last.safetensors` is an epoch ahead of `train_state.json`, and a resume then trains an
//! epoch twice.
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tch::nn::VarStore;

use super::{read_json, save_vars, write_json, TrainState, BEST, LAST, METRICS, OPTIMIZER, STATE};
use crate::fsio::{fault_point, sync_dir, write_atomic};
use crate::{Error, Result};

pub const PENDING: &str = ".epoch.pending";
pub const COMMITTED: &str = ".epoch.commit";
/// The epoch's metrics line inside the journal folder.
const LINE: &str = "metrics.line.json";

/// What one finished epoch writes.
pub struct Epoch<'a> {
    pub state: &'a TrainState,
    /// The model after the epoch: `last.safetensors`, and `model.safetensors` with `best`.
    pub weights: &'a VarStore,
    pub best: bool,
    /// Writes the optimizer state to the given path.
    pub optimizer: &'a dyn Fn(&Path) -> Result<()>,
    /// The epoch's `metrics.jsonl` line (its `"epoch"` is `state.epoch`).
    pub metrics: &'a Value,
}

/// Stage, commit and apply one epoch.
pub fn commit_epoch(dir: &Path, epoch: Epoch) -> Result<()> {
    let pending = dir.join(PENDING);
    if pending.exists() {
        fs::remove_dir_all(&pending).map_err(|e| Error::io(&pending, e))?;
    }
    fs::create_dir(&pending).map_err(|e| Error::io(&pending, e))?;
    save_vars(epoch.weights, &pending.join(LAST))?;
    if epoch.best {
        // The same bytes under a second name: a hard link where the file system has them.
        let (src, dst) = (pending.join(LAST), pending.join(BEST));
        if fs::hard_link(&src, &dst).is_err() {
            save_vars(epoch.weights, &dst)?;
        }
        fault_point();
    }
    (epoch.optimizer)(&pending.join(OPTIMIZER))?;
    let line = serde_json::to_vec(epoch.metrics).map_err(|e| Error::invalid(e.to_string()))?;
    write_atomic(&pending.join(LINE), &line, true)?;
    write_json(epoch.state, &pending.join(STATE))?;
    sync_dir(&pending);
    fault_point();
    let committed = dir.join(COMMITTED);
    fs::rename(&pending, &committed).map_err(|e| Error::io(&committed, e))?;
    sync_dir(dir);
    fault_point();
    apply(dir)
}

/// Move a committed epoch's files to their fixed names. Every step can be repeated, so a kill
/// anywhere in here is finished by the next [`recover`].
fn apply(dir: &Path) -> Result<()> {
    let journal = dir.join(COMMITTED);
    let line_path = journal.join(LINE);
    if line_path.exists() {
        let line: Value = read_json(&line_path)?;
        let epoch = line.get("epoch").and_then(Value::as_u64).unwrap_or(0) as usize;
        write_metrics(dir, epoch.saturating_sub(1), Some(&line))?;
    }
    // train_state.json last: until it moves, the other files' old versions are never read
    // without the journal being finished first.
    for name in [LAST, BEST, OPTIMIZER, STATE] {
        let src = journal.join(name);
        if src.exists() {
            let dst = dir.join(name);
            fs::rename(&src, &dst).map_err(|e| Error::io(&dst, e))?;
            fault_point();
        }
    }
    sync_dir(dir);
    if line_path.exists() {
        fs::remove_file(&line_path).map_err(|e| Error::io(&line_path, e))?;
    }
    fs::remove_dir(&journal).map_err(|e| Error::io(&journal, e))?;
    sync_dir(dir);
    fault_point();
    Ok(())
}

/// Rewrite `metrics.jsonl` as its valid lines for epochs `1..=keep` (first of each, in epoch
/// order) followed by `extra`; removes the file when that leaves nothing. Unchanged content is
/// not rewritten.
fn write_metrics(dir: &Path, keep: usize, extra: Option<&Value>) -> Result<()> {
    let path = dir.join(METRICS);
    let old = if fs::symlink_metadata(&path).is_ok() {
        crate::input::read_bytes(&path, crate::input::TEXT, "a metrics file")?
    } else {
        Vec::new()
    };
    let mut lines: Vec<Option<String>> = vec![None; keep];
    for raw in String::from_utf8_lossy(&old).lines() {
        let Ok(v) = serde_json::from_str::<Value>(raw) else {
            continue;
        };
        let Some(e) = v.get("epoch").and_then(Value::as_u64) else {
            continue;
        };
        if let Some(slot @ None) = (e as usize).checked_sub(1).and_then(|i| lines.get_mut(i)) {
            *slot = Some(raw.to_string());
        }
    }
    let mut text: String = lines.into_iter().flatten().map(|l| l + "\n").collect();
    if let Some(v) = extra {
        text += &format!("{v}\n");
    }
    if text.as_bytes() == old.as_slice() {
        return Ok(());
    }
    if text.is_empty() {
        return fs::remove_file(&path).map_err(|e| Error::io(&path, e));
    }
    write_atomic(&path, text.as_bytes(), true)
}

/// What [`recover`] found.
#[derive(Debug, Default, PartialEq)]
pub struct Recovered {
    /// An epoch that was staged but never committed was deleted.
    pub rolled_back: bool,
    /// A committed epoch whose files were not all in place was finished.
    pub rolled_forward: bool,
    /// `metrics.jsonl` was rewritten to one valid line per saved epoch.
    pub metrics_repaired: bool,
}

/// Bring a run directory killed at any instant back to its last committed epoch: delete an
/// uncommitted epoch, finish a committed one, and make `metrics.jsonl` exactly one valid line
/// per saved epoch (a partial last line, or a line of an epoch that was never committed, goes).
/// Only the holder of the run's lock may call it.
pub fn recover(dir: &Path) -> Result<Recovered> {
    let mut r = Recovered::default();
    let pending = dir.join(PENDING);
    if pending.exists() {
        fs::remove_dir_all(&pending).map_err(|e| Error::io(&pending, e))?;
        r.rolled_back = true;
    }
    if dir.join(COMMITTED).exists() {
        apply(dir)?;
        r.rolled_forward = true;
    }
    let epochs = if dir.join(STATE).is_file() {
        read_json::<TrainState>(&dir.join(STATE))?.epoch
    } else {
        0
    };
    let before = fs::read(dir.join(METRICS)).ok();
    write_metrics(dir, epochs, None)?;
    r.metrics_repaired = fs::read(dir.join(METRICS)).ok() != before;
    Ok(r)
}

/// The file a reader should load for `name`: the committed journal's copy while an epoch is
/// committed but not yet moved into place (a run killed mid-apply, not resumed since).
pub fn committed_path(dir: &Path, name: &str) -> PathBuf {
    let staged = dir.join(COMMITTED).join(name);
    if staged.is_file() {
        staged
    } else {
        dir.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(e: u64) -> Value {
        serde_json::json!({ "epoch": e, "loss": 1.0 })
    }

    fn state(epoch: usize) -> TrainState {
        TrainState {
            epoch,
            ..Default::default()
        }
    }

    #[test]
    fn metrics_keep_one_valid_line_per_saved_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(METRICS);
        let text = format!(
            "{}\nnot json\n{}\n{}\n{}\n{{\"epoch\": 3, \"lo",
            line(1),
            line(2),
            line(2),
            line(3)
        );
        fs::write(&p, text).unwrap();
        write_json(&state(2), &dir.path().join(STATE)).unwrap();
        let r = recover(dir.path()).unwrap();
        assert!(r.metrics_repaired && !r.rolled_back && !r.rolled_forward);
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            format!("{}\n{}\n", line(1), line(2))
        );
        // Nothing left to repair the second time.
        assert_eq!(recover(dir.path()).unwrap(), Recovered::default());
    }

    #[test]
    fn no_saved_epoch_means_no_metrics() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(METRICS), format!("{}\n", line(1))).unwrap();
        recover(dir.path()).unwrap();
        assert!(!dir.path().join(METRICS).exists());
    }

    #[test]
    fn pending_rolls_back_and_committed_rolls_forward() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_json(&state(1), &d.join(STATE)).unwrap();
        fs::write(d.join(METRICS), format!("{}\n", line(1))).unwrap();
        // An uncommitted epoch 2: deleted, epoch 1 stays.
        fs::create_dir(d.join(PENDING)).unwrap();
        write_json(&state(2), &d.join(PENDING).join(STATE)).unwrap();
        let r = recover(d).unwrap();
        assert!(r.rolled_back && !r.rolled_forward);
        assert_eq!(read_json::<TrainState>(&d.join(STATE)).unwrap().epoch, 1);
        // A committed epoch 2 whose state was not moved yet: finished, metrics line added.
        let j = d.join(COMMITTED);
        fs::create_dir(&j).unwrap();
        write_json(&state(2), &j.join(STATE)).unwrap();
        fs::write(j.join(LINE), line(2).to_string()).unwrap();
        assert_eq!(committed_path(d, STATE), j.join(STATE));
        let r = recover(d).unwrap();
        assert!(r.rolled_forward && !r.rolled_back);
        assert!(!j.exists());
        assert_eq!(read_json::<TrainState>(&d.join(STATE)).unwrap().epoch, 2);
        assert_eq!(
            fs::read_to_string(d.join(METRICS)).unwrap(),
            format!("{}\n{}\n", line(1), line(2))
        );
        assert_eq!(committed_path(d, STATE), d.join(STATE));
    }
}
