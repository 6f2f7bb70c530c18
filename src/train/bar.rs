//! What a training epoch shows on standard error: a progress bar on a terminal, and where
//! standard error is no terminal (a log file, `nohup`) a plain line every tenth of an epoch,
//! so long runs say how far they are either way.
use std::time::Instant;

use super::Trained;

/// An epoch's progress on standard error: the bar, and where standard error is no terminal
/// (logs, CI), which shows no bar, a line every tenth of the epoch. One copy for captag's loop
/// and the BLIP/GIT one.
pub(super) struct EpochBar {
    bar: indicatif::ProgressBar,
    plain: bool,
    steps: usize,
    epoch: usize,
    epochs: usize,
    t0: Instant,
}

impl EpochBar {
    /// `t0`: when the epoch began (its training seconds count from there).
    pub(super) fn new(quiet: bool, steps: usize, epoch: usize, epochs: usize, t0: Instant) -> Self {
        EpochBar {
            bar: progress(
                quiet,
                steps as u64,
                &format!("epoch {}/{epochs}", epoch + 1),
            ),
            plain: !quiet && !std::io::IsTerminal::is_terminal(&std::io::stderr()),
            steps,
            epoch,
            epochs,
            t0,
        }
    }

    /// Step `b` (from 0) had mean loss `loss` over `n` examples: added to `done`, shown.
    pub(super) fn step(&self, done: &mut Trained, b: usize, loss: f64, n: usize) {
        done.loss_sum += loss * n as f64;
        done.seen += n;
        self.bar.set_position(b as u64 + 1);
        let rate = done.seen as f64 / self.t0.elapsed().as_secs_f64().max(1e-9);
        let rate = done.unit.show(rate);
        let steps = self.steps;
        if self.plain && (b + 1).is_multiple_of(steps.div_ceil(10).max(1)) && b + 1 < steps {
            crate::fsio::errln!(
                "epoch {}/{}: step {}/{steps}  loss {:.3}  {rate}",
                self.epoch + 1,
                self.epochs,
                b + 1,
                done.loss()
            );
        }
        self.bar
            .set_message(format!("loss {:.3} · {rate}", done.loss()));
    }

    /// The bar cleared; the epoch's training seconds into `done`.
    pub(super) fn finish(self, done: &mut Trained) {
        self.bar.finish_and_clear();
        done.seconds = self.t0.elapsed().as_secs_f64();
    }
}

/// A progress bar with captag's style (hidden with `--quiet`).
pub fn progress(quiet: bool, len: u64, prefix: &str) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} {msg} (eta {eta})",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(prefix.to_string());
    bar
}
