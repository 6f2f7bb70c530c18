//! Adam (Kingma & Ba 2015, PyTorch's `torch.optim.Adam` update, L2 `weight_decay` added to the
//! gradient) and global-norm gradient clipping, with the state kept by captag so a run resumes
//! exactly: `tch::nn::Optimizer` cannot save its moments.
use std::collections::BTreeMap;
use std::path::Path;

use tch::{nn::VarStore, Tensor};

use crate::{Error, Result};

#[derive(Debug)]
pub struct Adam {
    pub lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    /// Number of updates done so far (the bias-correction `t`).
    pub step: i64,
    /// Trainable variables by name (sorted, so saved state is stable).
    params: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    pub fn new(vs: &VarStore, lr: f64, weight_decay: f64) -> Self {
        let vars: BTreeMap<String, Tensor> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        let params: Vec<(String, Tensor)> = vars.into_iter().collect();
        let m = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let v = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
            params,
            m,
            v,
        }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// Scale gradients so their global L2 norm is at most `max` (as
    /// `torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max: f64) -> f64 {
        let grads: Vec<Tensor> = self
            .params
            .iter()
            .map(|(_, p)| p.grad())
            .filter(|g| g.defined())
            .collect();
        if grads.is_empty() {
            return 0.0;
        }
        let norm = tch::no_grad(|| {
            let sq: Vec<Tensor> = grads
                .iter()
                .map(|g| g.pow_tensor_scalar(2).sum(tch::Kind::Float))
                .collect();
            Tensor::stack(&sq, 0)
                .sum(tch::Kind::Float)
                .sqrt()
                .double_value(&[])
        });
        if max > 0.0 {
            let coef = max / (norm + 1e-6);
            if coef < 1.0 {
                tch::no_grad(|| {
                    for mut g in grads {
                        let _ = g.g_mul_scalar_(coef);
                    }
                });
            }
        }
        norm
    }

    pub fn step(&mut self) {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        let step_size = self.lr / bc1;
        tch::no_grad(|| {
            for ((_, p), (m, v)) in self
                .params
                .iter_mut()
                .zip(self.m.iter_mut().zip(self.v.iter_mut()))
            {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                if self.weight_decay != 0.0 {
                    g = &g + &*p * self.weight_decay;
                }
                let _ = m.lerp_(&g, 1.0 - self.beta1); // m = β1 m + (1-β1) g
                let _ = v
                    .g_mul_scalar_(self.beta2)
                    .addcmul_(&(&g * (1.0 - self.beta2)), &g);
                let denom = (v.sqrt() / bc2.sqrt()) + self.eps;
                let _ = p.g_sub_(&(m.as_ref() / denom * step_size));
            }
        });
    }

    /// Moments as named tensors (`m.<var>`, `v.<var>`) for the run directory.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for ((name, _), (m, v)) in self.params.iter().zip(self.m.iter().zip(&self.v)) {
            named.push((format!("m.{name}"), m.shallow_clone()));
            named.push((format!("v.{name}"), v.shallow_clone()));
        }
        crate::train::checkpoint::write_tensors(&named, path)
    }

    pub fn load(&mut self, path: &Path, step: i64, lr: f64) -> Result<()> {
        let named: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)
            .map_err(|e| {
                Error::invalid(format!(
                    "{}: cannot read optimizer state: {e}",
                    path.display()
                ))
            })?
            .into_iter()
            .collect();
        tch::no_grad(|| {
            for ((name, p), (m, v)) in self
                .params
                .iter()
                .zip(self.m.iter_mut().zip(self.v.iter_mut()))
            {
                for (prefix, dst) in [("m", &mut *m), ("v", &mut *v)] {
                    let src = named.get(&format!("{prefix}.{name}")).ok_or_else(|| {
                        Error::invalid(format!(
                            "{}: optimizer state lacks {prefix}.{name}",
                            path.display()
                        ))
                    })?;
                    if src.size() != p.size() {
                        return Err(Error::invalid(format!(
                            "{}: optimizer state for {name} has the wrong shape",
                            path.display()
                        )));
                    }
                    dst.copy_(&src.to_device(p.device()));
                }
            }
            Ok(())
        })?;
        self.step = step;
        self.lr = lr;
        Ok(())
    }
}
