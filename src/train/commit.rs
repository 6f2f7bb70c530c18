//! The end of every epoch, shared by captioning training ([`super::run`]) and restoration
//! training (`restore::train`): the epoch's `metrics.jsonl` line, its one atomic commit with the
//! weights, the optimizer moments and `train_state.json` ([`run::commit_epoch`]), and its console
//! line. One copy, so both kinds of run keep the same files and the same guarantees.
use std::path::Path;

use serde_json::Value;
use tch::nn::VarStore;

use super::optim::Adam;
use crate::run::{self, TrainState};
use crate::Result;

/// What a run's examples are: the unit of its throughput.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Captions,
    Images,
}

impl Unit {
    /// The throughput's `metrics.jsonl` key.
    fn key(self) -> &'static str {
        match self {
            Unit::Captions => "captions_per_s",
            Unit::Images => "images_per_s",
        }
    }

    /// The throughput as the console shows it.
    pub(super) fn show(self, rate: f64) -> String {
        match self {
            Unit::Captions => format!("{rate:.0} captions/s"),
            Unit::Images => format!("{rate:.1} images/s"),
        }
    }
}

/// One finished epoch as it is logged.
#[derive(Clone, Debug)]
pub struct EpochLog {
    /// Mean training loss of the epoch.
    pub train_loss: f64,
    /// Examples trained on, and the seconds the training half of the epoch took.
    pub seen: usize,
    pub seconds: f64,
    pub unit: Unit,
    /// The run's own `metrics.jsonl` fields (dev scores, loss parts), beside the common ones
    /// (`epoch`, `step`, `lr`, `train_loss`, `seconds`, the throughput).
    pub metrics: Vec<(&'static str, Value)>,
    /// The console line between `epoch N` and the throughput.
    pub console: String,
}

/// Commit the epoch (its state, weights, optimizer moments and metrics line together) and
/// print its console line. `best`: the epoch is the run's new best (`model.safetensors`).
pub fn commit_and_log(
    dir: &Path,
    state: &TrainState,
    weights: &VarStore,
    adam: &Adam,
    best: bool,
    log: &EpochLog,
    quiet: bool,
) -> Result<()> {
    let rate = log.seen as f64 / log.seconds.max(1e-9);
    let mut line = serde_json::json!({
        "epoch": state.epoch, "step": state.step, "lr": state.lr,
        "train_loss": log.train_loss, "seconds": log.seconds,
    });
    line[log.unit.key()] = rate.into();
    for (k, v) in &log.metrics {
        line[*k] = v.clone();
    }
    // The epoch's one commit point: weights, optimizer, state and metrics line together.
    run::commit_epoch(
        dir,
        run::Epoch {
            state,
            weights,
            best,
            optimizer: &|p| adam.save(p),
            metrics: &line,
        },
    )?;
    if !quiet {
        let star = if best { "  *best" } else { "" };
        crate::fsio::errln!(
            "epoch {:>3}  {}  {}{star}",
            state.epoch,
            log.console,
            log.unit.show(rate)
        );
    }
    Ok(())
}
