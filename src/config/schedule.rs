//! The learning-rate schedule (`train --schedule`): all of the learning-rate logic, per step
//! and per epoch, in one type saved in the run's `config.json`.
use serde::{Deserialize, Serialize};

use super::defaults;

/// Learning-rate schedule.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    /// Multiply by `gamma` every `every` epochs.
    Step {
        every: usize,
        gamma: f64,
    },
    /// Multiply by `factor` after `patience` epochs without a lower dev loss.
    Plateau {
        patience: usize,
        factor: f64,
    },
    /// Per step: linear warm-up over `warmup` steps, then inverse square-root decay
    /// (`lr · min(s/w, sqrt(w/s))`, Vaswani et al. 2017) — the transformer's schedule.
    Warmup {
        warmup: usize,
    },
    /// Per step: linear warm-up over `warmup` steps, then a cosine from `lr` down to zero at
    /// the end of the last epoch (Loshchilov & Hutter 2017, one cycle). The position in the run
    /// is `(epoch + batch / batches) / epochs`, so a resumed run continues the same curve.
    Cosine {
        warmup: usize,
    },
}

/// Where the plateau schedule stands: the lowest dev loss so far and the epochs since it. Saved
/// in `train_state.json` (flattened, under these names) so a resumed run decays on the same epoch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plateau {
    #[serde(default)]
    pub lowest_dev_loss: Option<f64>,
    #[serde(default)]
    pub loss_bad_epochs: usize,
}

/// All of the learning-rate logic: the per-step schedules (`warmup`, `cosine`) set the rate
/// before each optimizer step ([`Schedule::step_lr`]); the per-epoch ones (`step`, `plateau`)
/// change it after each validated epoch ([`Schedule::after_epoch`]). `constant` does neither.
impl Schedule {
    /// `--schedule step` with its default period and factor.
    pub fn step() -> Self {
        Schedule::Step {
            every: defaults::STEP_EVERY,
            gamma: defaults::STEP_GAMMA,
        }
    }

    /// `--schedule plateau` (the default) with its default patience and factor.
    pub fn plateau() -> Self {
        Schedule::Plateau {
            patience: defaults::PLATEAU_PATIENCE,
            factor: defaults::PLATEAU_FACTOR,
        }
    }

    /// The learning rate at optimizer step `step` (1-based) for per-step schedules; `progress`
    /// is the share of the run's epochs done before this step, in [0, 1).
    pub fn step_lr(&self, base: f64, step: i64, progress: f64) -> Option<f64> {
        match *self {
            Schedule::Warmup { warmup } => {
                let (s, w) = (step.max(1) as f64, warmup.max(1) as f64);
                Some(base * (s / w).min((w / s).sqrt()))
            }
            Schedule::Cosine { warmup } => {
                let ramp = (step.max(1) as f64 / warmup.max(1) as f64).min(1.0);
                let decay = 0.5 * (1.0 + (std::f64::consts::PI * progress.clamp(0.0, 1.0)).cos());
                Some(base * ramp * decay)
            }
            _ => None,
        }
    }

    /// The learning rate after epoch `epoch` (1-based, just finished) with dev loss `dev_loss`,
    /// for per-epoch schedules; the others return `lr` unchanged. `plateau` is the run's saved
    /// plateau bookkeeping (updated here).
    pub fn after_epoch(&self, lr: f64, epoch: usize, dev_loss: f64, plateau: &mut Plateau) -> f64 {
        match *self {
            Schedule::Constant | Schedule::Warmup { .. } | Schedule::Cosine { .. } => lr,
            Schedule::Step { every, gamma } => {
                if every > 0 && epoch.is_multiple_of(every) {
                    lr * gamma
                } else {
                    lr
                }
            }
            // On dev loss, which is far less noisy than dev BLEU on small dev sets.
            Schedule::Plateau { patience, factor } => {
                if plateau.lowest_dev_loss.is_none_or(|l| dev_loss < l) {
                    plateau.lowest_dev_loss = Some(dev_loss);
                    plateau.loss_bad_epochs = 0;
                    lr
                } else {
                    plateau.loss_bad_epochs += 1;
                    if patience > 0 && plateau.loss_bad_epochs.is_multiple_of(patience) {
                        lr * factor
                    } else {
                        lr
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_rises_then_decays() {
        let s = Schedule::Warmup { warmup: 100 };
        assert!((s.step_lr(1.0, 50, 0.0).unwrap() - 0.5).abs() < 1e-12);
        assert!((s.step_lr(1.0, 100, 0.0).unwrap() - 1.0).abs() < 1e-12);
        assert!((s.step_lr(1.0, 400, 0.9).unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(Schedule::Constant.step_lr(1.0, 5, 0.0), None);
    }

    #[test]
    fn cosine_ramps_up_then_falls_to_zero_at_the_end_of_the_run() {
        let s = Schedule::Cosine { warmup: 10 };
        assert!((s.step_lr(2.0, 5, 0.0).unwrap() - 1.0).abs() < 1e-12);
        assert!((s.step_lr(2.0, 10, 0.0).unwrap() - 2.0).abs() < 1e-12);
        assert!((s.step_lr(2.0, 500, 0.5).unwrap() - 1.0).abs() < 1e-12);
        assert!(s.step_lr(2.0, 900, 0.999).unwrap() < 1e-4);
        let mid = s.step_lr(2.0, 600, 0.25).unwrap();
        assert!(mid < 2.0 && mid > 1.0, "{mid}");
    }

    #[test]
    fn per_epoch_schedules_decay_after_the_epoch() {
        let mut p = Plateau::default();
        let s = Schedule::Step {
            every: 2,
            gamma: 0.5,
        };
        assert_eq!(s.after_epoch(1.0, 1, 3.0, &mut p), 1.0);
        assert_eq!(s.after_epoch(1.0, 2, 3.0, &mut p), 0.5);
        let s = Schedule::Plateau {
            patience: 2,
            factor: 0.1,
        };
        assert_eq!(s.after_epoch(1.0, 1, 3.0, &mut p), 1.0);
        assert_eq!(s.after_epoch(1.0, 2, 3.5, &mut p), 1.0);
        assert!((s.after_epoch(1.0, 3, 3.5, &mut p) - 0.1).abs() < 1e-12);
        assert_eq!(p.loss_bad_epochs, 2);
        assert_eq!(s.after_epoch(1.0, 4, 2.0, &mut p), 1.0);
        assert_eq!(p.lowest_dev_loss, Some(2.0));
        let c = Schedule::Cosine { warmup: 1 };
        assert_eq!(c.after_epoch(0.3, 5, 9.0, &mut p), 0.3);
    }
}
