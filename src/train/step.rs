//! One optimizer update, shared by the cross-entropy loop and self-critical training: the
//! schedule's per-step learning rate, backward (scaled for fp16, the step skipped on inf/NaN
//! gradients), clipping and Adam, the fault point of the crash tests, and divergence.
use tch::nn::VarStore;
use tch::Tensor;

use super::optim::Adam;
use super::scaler::LossScaler;
use super::Training;
use crate::config::TrainConfig;
use crate::run::TrainState;
use crate::{Error, Result};

/// Update `t` on `loss` at `progress` (epochs done / total, fractional). Returns the loss value;
/// a non-finite one is an error (the epoch is not committed).
pub(super) fn update(
    t: &mut Training,
    tc: &TrainConfig,
    loss: &Tensor,
    progress: f64,
) -> Result<f64> {
    let mut parts = Parts {
        adam: &mut t.adam,
        scaler: t.scaler.as_mut(),
        vs: &t.model.vs,
        state: &mut t.state,
    };
    update_parts(&mut parts, tc, loss, progress)
}

/// What one update touches, for loops whose model is not a [`crate::model::captioner::Captioner`]
/// (BLIP/GIT fine-tuning, `vl.rs`).
pub(super) struct Parts<'a> {
    pub adam: &'a mut Adam,
    pub scaler: Option<&'a mut LossScaler>,
    pub vs: &'a VarStore,
    pub state: &'a mut TrainState,
}

/// [`update`] on its parts.
pub(super) fn update_parts(
    t: &mut Parts,
    tc: &TrainConfig,
    loss: &Tensor,
    progress: f64,
) -> Result<f64> {
    if let Some(lr) = tc.schedule.step_lr(tc.lr, t.adam.step + 1, progress) {
        t.adam.lr = lr;
    }
    t.adam.zero_grad();
    match t.scaler.as_mut() {
        None => {
            loss.f_backward()?;
            t.adam.step(tc.grad_clip);
        }
        Some(scaler) => {
            // GradScaler: scaled backward, unscaled gradients, the step skipped on inf/NaN.
            scaler.scale_loss(loss).f_backward()?;
            let mut grads: Vec<Tensor> =
                t.vs.trainable_variables()
                    .iter()
                    .map(Tensor::grad)
                    .collect();
            let (found_inf, overflow) = scaler.unscale(&mut grads);
            if !overflow {
                t.adam.step(tc.grad_clip);
            }
            scaler.update(&found_inf);
            t.state.loss_scale = Some(scaler.state());
        }
    }
    crate::fsio::fault_point();
    let l = loss.double_value(&[]);
    if !l.is_finite() {
        return Err(Error::invalid(format!(
            "training diverged (loss {l}) at epoch {}: lower --lr",
            t.state.epoch + 1
        )));
    }
    Ok(l)
}
