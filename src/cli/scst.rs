//! `captag train`'s self-critical flags (docs/training.md, "Self-critical training").
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::config::{defaults, scst::Baseline};

/// `train --init-from RUN --objective scst`.
#[derive(Debug, Clone, Args)]
pub struct ScstArgs {
    /// Start a new run (--out) from this run's best weights: its architecture, vocabulary,
    /// encoder weights, hashtag list and feature cache come with them.
    #[arg(long, value_name = "PATH")]
    pub init_from: Option<PathBuf>,
    /// ce: teacher-forced cross-entropy; scst: self-critical training with the CIDEr-D reward
    /// (needs --init-from; selects the best epoch by dev CIDEr-D; --lr defaults to 5e-5).
    #[arg(long, value_enum, default_value = "ce")]
    pub objective: Objective,
    /// scst: captions sampled per image and step.
    #[arg(long, default_value_t = defaults::SCST_SAMPLES)]
    pub scst_samples: usize,
    /// scst: a sample's reward is compared with the mean of the image's other samples, or with
    /// its greedy caption's.
    #[arg(long, value_enum, default_value = "mean")]
    pub scst_baseline: Baseline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Objective {
    Ce,
    Scst,
}

impl Default for ScstArgs {
    fn default() -> Self {
        ScstArgs {
            init_from: None,
            objective: Objective::Ce,
            scst_samples: defaults::SCST_SAMPLES,
            scst_baseline: Baseline::Mean,
        }
    }
}
