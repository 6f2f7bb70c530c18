//! Dynamic loss scaling for fp16 training (`--precision fp16`), PyTorch's `GradScaler`: the
//! loss is multiplied by a scale (2¹⁶ to start) so that small gradients survive float16; before
//! the update the gradients are divided by it, and a step whose gradients hold an inf or NaN is
//! skipped and the scale halved; after 2,000 good steps in a row it doubles. The update of the
//! scale is libtorch's own kernel (`_amp_update_scale_`), so the numbers are GradScaler's. The
//! scale and the count of good steps are saved with the run for exact resume.
use tch::{Device, Kind, Tensor};

pub use crate::config::precision::ScalerState;

#[derive(Debug)]
pub struct LossScaler {
    /// `(1,)` float32.
    scale: Tensor,
    /// `(1,)` int32.
    growth_tracker: Tensor,
}

const GROWTH: f64 = 2.0;
const BACKOFF: f64 = 0.5;
const INTERVAL: i64 = 2000;

impl LossScaler {
    pub fn new(state: ScalerState, device: Device) -> Self {
        LossScaler {
            scale: Tensor::from_slice(&[state.scale as f32]).to_device(device),
            growth_tracker: Tensor::from_slice(&[state.growth_tracker as i32]).to_device(device),
        }
    }

    pub fn state(&self) -> ScalerState {
        ScalerState {
            scale: self.scale.double_value(&[0]),
            growth_tracker: self.growth_tracker.int64_value(&[0]),
        }
    }

    /// `loss · scale` (backward of this gives scaled gradients).
    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        loss * &self.scale.to_kind(loss.kind())
    }

    /// Divides `grads` by the scale in place; returns whether every one is finite (a `(1,)`
    /// float tensor `found_inf`, 1.0 when one is not, and its value on the host).
    pub fn unscale(&self, grads: &mut [Tensor]) -> (Tensor, bool) {
        let inv = self.scale.reciprocal();
        let mut bad = Tensor::zeros([1], (Kind::Float, self.scale.device()));
        tch::no_grad(|| {
            for g in grads.iter_mut().filter(|g| g.defined()) {
                let _ = g.g_mul_(&inv);
                bad = &bad + g.isfinite().all().logical_not().to_kind(Kind::Float);
            }
        });
        let found = bad.clamp_max(1.0);
        let any = found.double_value(&[0]) > 0.0;
        (found, any)
    }

    /// After a step: back off on `found_inf`, else count a good step and grow every
    /// `INTERVAL` of them.
    pub fn update(&mut self, found_inf: &Tensor) {
        tch::no_grad(|| {
            let _ = self.scale.internal_amp_update_scale_(
                &self.growth_tracker,
                found_inf,
                GROWTH,
                BACKOFF,
                INTERVAL,
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grads(values: &[f32]) -> Vec<Tensor> {
        vec![Tensor::from_slice(values)]
    }

    #[test]
    fn an_overflow_skips_the_step_and_halves_the_scale() {
        let mut s = LossScaler::new(ScalerState::default(), Device::Cpu);
        let mut g = grads(&[1.0, f32::INFINITY]);
        let (found, any) = s.unscale(&mut g);
        assert!(any);
        s.update(&found);
        assert_eq!(
            s.state(),
            ScalerState {
                scale: 32768.0,
                growth_tracker: 0
            }
        );
        let mut g = grads(&[65536.0, -131072.0]);
        let (found, any) = s.unscale(&mut g);
        assert!(!any);
        assert_eq!(Vec::<f32>::try_from(&g[0]).unwrap(), vec![2.0, -4.0]);
        s.update(&found);
        assert_eq!(
            s.state(),
            ScalerState {
                scale: 32768.0,
                growth_tracker: 1
            }
        );
    }

    #[test]
    fn the_scale_doubles_after_the_growth_interval_and_resumes_exactly() {
        let state = ScalerState {
            scale: 1024.0,
            growth_tracker: INTERVAL - 1,
        };
        let mut s = LossScaler::new(state, Device::Cpu);
        let (found, _) = s.unscale(&mut grads(&[1.0]));
        s.update(&found);
        assert_eq!(
            s.state(),
            ScalerState {
                scale: 2048.0,
                growth_tracker: 0
            }
        );
        let back = LossScaler::new(s.state(), Device::Cpu);
        assert_eq!(back.state(), s.state());
        let loss = Tensor::from_slice(&[0.5f32]);
        assert_eq!(s.scale_loss(&loss).double_value(&[0]), 1024.0);
    }
}
