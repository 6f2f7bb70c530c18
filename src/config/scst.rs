//! `train --objective scst` (self-critical sequence training, Rennie et al. 2017) and
//! `--init-from RUN`: the settings saved in `config.json`, so `--resume` continues the same
//! run and the run says what it started from (docs/training.md, "Self-critical training").
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// `--scst-baseline`: what a sample's reward is compared with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    /// The reward of the image's greedy caption (Rennie et al.'s self-critical baseline).
    Greedy,
    /// The mean reward of the image's other samples (ruotianluo's "new SCST"; needs ≥ 2).
    #[default]
    Mean,
}

/// SCST's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scst {
    /// Captions sampled per image and step.
    pub samples: usize,
    pub baseline: Baseline,
}

impl Scst {
    pub fn validate(&self) -> Result<()> {
        if self.samples == 0 {
            return Err(Error::invalid("--scst-samples must be at least 1"));
        }
        if self.baseline == Baseline::Mean && self.samples < 2 {
            return Err(Error::invalid(
                "--scst-baseline mean compares a sample with the image's other samples: \
                 --scst-samples must be at least 2",
            ));
        }
        Ok(())
    }
}

/// `--init-from`: the run whose best weights a new run starts from, and its fingerprint
/// (`config.json` and weights) at the time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InitFrom {
    pub run: String,
    pub fingerprint: String,
}
