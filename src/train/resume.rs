//! Opening the loop's state: a fresh model (ClipCap's pretrained LM, `--init-from`'s weights or
//! a fine-tuned encoder's pretrained weights loaded), its optimizer (the encoder's own rate as
//! a scaled parameter group), or with `--resume` the run's last epoch exactly.
use tch::Device;

use super::scaler::LossScaler;
use super::{init, optim, Prepared, TrainJob, Training};
use crate::config::TrainConfig;
use crate::model::captioner::Captioner;
use crate::model::tagger::Tagger;
use crate::run::{self, TrainState};
use crate::{Error, Result};

/// A fresh model (ClipCap's pretrained LM loaded when asked), or with `--resume` the run's last
/// epoch: its weights, optimizer moments and state.
pub(super) fn open_or_resume(job: &TrainJob, prep: &Prepared) -> Result<Training> {
    let (cfg, tc, dir) = (&prep.run.model, &prep.run.train, &job.out);
    let mut model = Captioner::new(cfg, job.device, false);
    if let (Some(Tagger::Head(head)), Some(td)) = (model.tagger.as_mut(), &prep.tags) {
        head.set_pos_weight(&td.pos_weight);
    }
    let mut adam = optim::Adam::new(&model.vs, tc.lr, 0.0);
    if let (Some(_), Some(lr)) = (&cfg.fine_tune, tc.encoder_lr) {
        adam.scale_lr("encoder.", lr / tc.lr);
    }
    let state = TrainState {
        lr: tc.lr,
        ..Default::default()
    };
    let saved = dir.join(run::STATE).is_file();
    if let (Some(lm), false) = (&job.lm_weights, job.resume && saved) {
        crate::model::decoder::clipcap::load_pretrained_lm(&mut model.vs, lm)?;
    }
    if let (Some(src), false) = (&job.init_from, job.resume && saved) {
        init::load_weights(src, &mut model.vs)?;
    } else if cfg.fine_tune.is_some() && !(job.resume && saved) {
        // The pretrained weights the run installed; from the first epoch on, the run's own.
        crate::model::weights::load_under(&mut model.vs, &dir.join(run::ENCODER), "encoder.")?;
    }
    if job.resume && !saved {
        // Stopped during its first epoch (killed, diverged, disk full): no epoch was saved, so
        // there is nothing to continue; the run starts over under its saved config.
        if !job.quiet {
            crate::fsio::errln!(
                "{}: no epoch was saved yet; training from the first epoch",
                dir.display()
            );
        }
    }
    if !(job.resume && saved) {
        let scaler = loss_scaler(tc, &state, job.device);
        return Ok(Training {
            model,
            adam,
            state,
            scaler,
        });
    }
    let state: TrainState = run::read_json(&dir.join(run::STATE))?;
    // The best epoch's weights are what the run's score stands for: check they load before
    // training on (a damaged file would otherwise surface only at eval time).
    let mut best = Captioner::new(cfg, job.device, false);
    run::load_vars(&mut best.vs, &dir.join(run::BEST)).map_err(|e| {
        Error::invalid(format!(
            "--resume: the best epoch's weights cannot be read ({e}); restore {}, or copy {} \
             over it to make the last epoch the best",
            run::BEST,
            run::LAST
        ))
    })?;
    run::load_vars(&mut model.vs, &dir.join(run::LAST))?;
    adam.load(&dir.join(run::OPTIMIZER), state.step, state.lr)?;
    if !job.quiet {
        crate::fsio::errln!(
            "resuming {} after epoch {} (step {})",
            dir.display(),
            state.epoch,
            state.step
        );
    }
    let scaler = loss_scaler(tc, &state, job.device);
    Ok(Training {
        model,
        adam,
        state,
        scaler,
    })
}

/// fp16 runs: the loss scale where the run left it (or GradScaler's start).
pub(super) fn loss_scaler(
    tc: &TrainConfig,
    state: &TrainState,
    device: Device,
) -> Option<LossScaler> {
    tc.precision
        .scales_loss()
        .then(|| LossScaler::new(state.loss_scale.unwrap_or_default(), device))
}
