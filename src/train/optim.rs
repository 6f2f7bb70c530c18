//! Adam (Kingma & Ba 2015, PyTorch's `torch.optim.Adam` update, L2 `weight_decay` added to the
//! gradient) and global-norm gradient clipping, with the state kept by captag so a run resumes
//! exactly: `tch::nn::Optimizer` cannot save its moments.
//!
//! Why flat buffers: a step is a handful of element-wise ops per parameter, and for the small
//! decoders trained here the cost on a GPU is the number of kernel launches, not arithmetic
//! (PyTorch's answer is its multi-tensor `foreach` Adam, which tch does not expose). The moments
//! live in two flat buffers (each variable's moments are views into them), the gradients are
//! concatenated once per step, and clipping and the update run on the whole flat vector: ~10
//! launches plus one per variable instead of ~10 per variable. The arithmetic is the same.
use std::collections::BTreeMap;
use std::path::Path;

use tch::{nn::VarStore, Kind, Tensor};

use crate::{Error, Result};

#[derive(Debug)]
pub struct Adam {
    pub lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    /// AdamW (Loshchilov & Hutter 2019, `torch.optim.AdamW`): the weights shrink by
    /// `lr · weight_decay` before the update instead of the decay entering the gradient.
    decoupled: bool,
    /// Number of updates done so far (the bias-correction `t`).
    pub step: i64,
    /// Trainable variables by name (sorted, so saved state is stable).
    params: Vec<(String, Tensor)>,
    /// First and second moments of all variables, concatenated: `(P,)`.
    m_flat: Tensor,
    v_flat: Tensor,
    /// Per variable: its offset in the flat buffers and its shape.
    layout: Vec<(i64, Vec<i64>)>,
    /// Per variable: views into `m_flat` / `v_flat` with the variable's shape.
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Scratch `(P,)` buffers reused every step (the gradient, then the update): fresh
    /// multi-megabyte temporaries cost page faults on every CPU step.
    g_flat: Tensor,
    scratch: Tensor,
    /// Per variable: its learning rate as a multiple of `lr` (1 but for a parameter group with
    /// its own rate: a fine-tuned encoder's `--encoder-lr`, [`Adam::scale_lr`]).
    lr_scale: Vec<f64>,
}

impl Adam {
    pub fn new(vs: &VarStore, lr: f64, weight_decay: f64) -> Self {
        let vars: BTreeMap<String, Tensor> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        let params: Vec<(String, Tensor)> = vars.into_iter().collect();
        let mut total = 0;
        let layout: Vec<(i64, Vec<i64>)> = params
            .iter()
            .map(|(_, p)| {
                total += p.numel() as i64;
                (total - p.numel() as i64, p.size())
            })
            .collect();
        let zeros = || Tensor::zeros([total], (Kind::Float, vs.device()));
        let (m_flat, v_flat, g_flat, scratch) = (zeros(), zeros(), zeros(), zeros());
        let m = (0..params.len())
            .map(|i| slot(&m_flat, &layout, i))
            .collect();
        let v = (0..params.len())
            .map(|i| slot(&v_flat, &layout, i))
            .collect();
        let lr_scale = vec![1.0; params.len()];
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            decoupled: false,
            step: 0,
            params,
            m_flat,
            v_flat,
            layout,
            m,
            v,
            g_flat,
            scratch,
            lr_scale,
        }
    }

    /// The variables named `prefix*` update at `factor × lr` from now on: a parameter group
    /// with its own rate that the schedule scales as it scales `lr` (PyTorch's parameter
    /// groups under one scheduler). Not saved: the run's config gives it again on resume.
    pub fn scale_lr(&mut self, prefix: &str, factor: f64) {
        for (i, (name, _)) in self.params.iter().enumerate() {
            if name.starts_with(prefix) {
                self.lr_scale[i] = factor;
            }
        }
    }

    /// `torch.optim.AdamW`: decoupled weight decay (BLIP/GIT fine-tuning).
    pub fn adamw(vs: &VarStore, lr: f64, weight_decay: f64) -> Self {
        Adam {
            decoupled: true,
            ..Adam::new(vs, lr, weight_decay)
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

    /// One update: clip the gradients to global L2 norm `clip` (0 = off; computed as
    /// `torch.nn.utils.clip_grad_norm_` does, the factor `min(1, clip / (norm + 1e-6))` staying
    /// on the device so a GPU step never waits for the host), then Adam. Variables without a
    /// gradient this step are left alone, as PyTorch does. Returns the norm before clipping
    /// (a 0-d tensor; reading it is a sync), `None` when no variable has a gradient.
    pub fn step(&mut self, clip: f64) -> Option<Tensor> {
        let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).collect();
        let defined = grads.iter().filter(|g| g.defined()).count();
        if defined == 0 {
            return None;
        }
        self.step += 1;
        let t = self.step as i32;
        let c = Coefs {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            bc2_sqrt: (1.0 - self.beta2.powi(t)).sqrt(),
            step_size: self.lr / (1.0 - self.beta1.powi(t)),
        };
        let wd = if self.decoupled {
            0.0
        } else {
            self.weight_decay
        };
        let shrink = 1.0 - self.lr * self.weight_decay;
        tch::no_grad(|| {
            if self.decoupled && self.weight_decay != 0.0 {
                // As PyTorch: a variable without a gradient this step is not decayed either.
                for ((_, p), g) in self.params.iter_mut().zip(&grads) {
                    if g.defined() {
                        let _ = p.g_mul_scalar_(shrink);
                    }
                }
            }
            let live: Vec<usize> = (0..grads.len()).filter(|&i| grads[i].defined()).collect();
            let flat: Vec<Tensor> = live.iter().map(|&i| grads[i].view(-1)).collect();
            if live.len() == grads.len() {
                // The usual case: the whole update on the flat buffers.
                let _ = Tensor::cat_out(&self.g_flat, &flat, 0);
                let norm = clip_flat(&mut self.g_flat, clip);
                if wd != 0.0 {
                    let ps: Vec<Tensor> = self.params.iter().map(|(_, p)| p.view(-1)).collect();
                    let _ = self.g_flat.g_add_(&(Tensor::cat(&ps, 0) * wd));
                }
                let (m, v, g, s) = (
                    &mut self.m_flat,
                    &mut self.v_flat,
                    &self.g_flat,
                    &mut self.scratch,
                );
                adam_into(m, v, g, s, &c);
                for (i, (_, p)) in self.params.iter_mut().enumerate() {
                    let update = slot(&self.scratch, &self.layout, i);
                    let k = self.lr_scale[i];
                    let _ = if k == 1.0 {
                        p.g_sub_(&update)
                    } else {
                        p.g_sub_(&(update * k))
                    };
                }
                Some(norm)
            } else {
                // A part of the model unused this step: the same update, variable by variable.
                let mut g = Tensor::cat(&flat, 0);
                let norm = clip_flat(&mut g, clip);
                let mut off = 0;
                for i in live {
                    let p = &mut self.params[i].1;
                    let shape = &self.layout[i].1;
                    let n = p.numel() as i64;
                    let mut gi = g.narrow(0, off, n).view(shape.as_slice());
                    off += n;
                    if wd != 0.0 {
                        gi = &gi + &*p * wd;
                    }
                    let mut s = slot(&self.scratch, &self.layout, i);
                    adam_into(&mut self.m[i], &mut self.v[i], &gi, &mut s, &c);
                    let k = self.lr_scale[i];
                    let _ = if k == 1.0 {
                        p.g_sub_(&s)
                    } else {
                        p.g_sub_(&(&s * k))
                    };
                }
                Some(norm)
            }
        })
    }

    /// Moments as named tensors (`m.<var>`, `v.<var>`) for the run directory.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for ((name, _), (m, v)) in self.params.iter().zip(self.m.iter().zip(&self.v)) {
            named.push((format!("m.{name}"), m.copy()));
            named.push((format!("v.{name}"), v.copy()));
        }
        crate::run::write_tensors(&named, path)
    }

    pub fn load(&mut self, path: &Path, step: i64, lr: f64) -> Result<()> {
        let named: BTreeMap<String, Tensor> = crate::model::weights::read_tensors(path)?
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

/// Variable `i`'s part of a flat buffer, with its shape (a view).
fn slot(flat: &Tensor, layout: &[(i64, Vec<i64>)], i: usize) -> Tensor {
    let (off, shape) = &layout[i];
    let n: i64 = shape.iter().product();
    flat.narrow(0, *off, n).view(shape.as_slice())
}

/// Adam's constants for one step.
struct Coefs {
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// `√(1 − β2^t)`
    bc2_sqrt: f64,
    /// `lr / (1 − β1^t)`
    step_size: f64,
}

/// One Adam update in place on tensors of one shape, without temporaries:
/// `m ← β1 m + (1-β1) g;  v ← β2 v + (1-β2) g²;  s ← lr/bc1 · m / (√v/√bc2 + ε)`, the amount to
/// subtract from the parameter.
fn adam_into(m: &mut Tensor, v: &mut Tensor, g: &Tensor, s: &mut Tensor, c: &Coefs) {
    let _ = m.lerp_(g, 1.0 - c.beta1);
    s.copy_(g);
    let _ = s.g_mul_scalar_(1.0 - c.beta2);
    let _ = v.g_mul_scalar_(c.beta2).addcmul_(s, g);
    let _ = v.sqrt_out(s);
    let _ = s.g_div_scalar_(c.bc2_sqrt).g_add_scalar_(c.eps);
    let _ = m.div_out(s, s); // m / denom
    let _ = s.g_mul_scalar_(c.step_size);
}

/// Global-norm clipping of a flat gradient in place; returns the norm before clipping.
fn clip_flat(g: &mut Tensor, max: f64) -> Tensor {
    let norm = g.norm(); // ()
    if max > 0.0 {
        let coef = ((&norm + 1e-6).reciprocal() * max).clamp_max(1.0); // ()
        let _ = g.g_mul_(&coef);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn;

    /// Two variables; `a` gets gradient `ga`, `b` gets `gb` unless `None` (unused this step).
    fn one_step(ga: &[f32], gb: Option<&[f32]>, clip: f64) -> (Vec<f32>, Vec<f32>, f64) {
        let vs = VarStore::new(tch::Device::Cpu);
        let a = vs.root().var("a", &[ga.len() as i64], nn::Init::Const(1.0));
        let b = vs.root().var("b", &[2, 1], nn::Init::Const(1.0));
        let mut adam = Adam::new(&vs, 0.1, 0.0);
        let mut loss = (&a * Tensor::from_slice(ga)).sum(Kind::Float);
        if let Some(gb) = gb {
            loss += (&b * Tensor::from_slice(gb).view([2, 1])).sum(Kind::Float);
        }
        adam.zero_grad();
        loss.backward();
        let norm = adam.step(clip).map(|n| n.double_value(&[])).unwrap_or(-1.0);
        let get = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
        (get(&a), get(&b), norm)
    }

    #[test]
    fn first_step_moves_each_weight_by_lr_against_its_gradient_sign() {
        // Step 1: m̂ = g, v̂ = g², so the update is lr · g / (|g| + ε) ≈ ±lr.
        let (a, b, norm) = one_step(&[3.0, -4.0], Some(&[0.5, 0.0]), 0.0);
        assert!(
            (a[0] - 0.9).abs() < 1e-5 && (a[1] - 1.1).abs() < 1e-5,
            "{a:?}"
        );
        assert!(
            (b[0] - 0.9).abs() < 1e-5 && (b[1] - 1.0).abs() < 1e-6,
            "{b:?}"
        );
        assert!((norm - (9.0f64 + 16.0 + 0.25).sqrt()).abs() < 1e-5);
    }

    #[test]
    fn adamw_shrinks_the_weights_before_the_update() {
        // torch.optim.AdamW(lr=0.1, weight_decay=0.5), one step from 1 with gradient 3:
        // 1 · (1 − 0.1 · 0.5) − 0.1 · 3 / (3 + ε) = 0.85.
        let vs = VarStore::new(tch::Device::Cpu);
        let x = vs.root().var("x", &[1], nn::Init::Const(1.0));
        let mut adam = Adam::adamw(&vs, 0.1, 0.5);
        adam.zero_grad();
        (&x * 3.0).sum(Kind::Float).backward();
        adam.step(0.0);
        assert!((x.double_value(&[0]) - 0.85).abs() < 1e-6);
    }

    #[test]
    fn unused_variables_stay_put_and_clipping_reports_the_raw_norm() {
        let (a, b, norm) = one_step(&[3.0, -4.0], None, 1.0);
        assert!((norm - 5.0).abs() < 1e-5);
        // Clipping scales g but Adam's first step is scale-free: still ±lr.
        assert!(
            (a[0] - 0.9).abs() < 1e-4 && (a[1] - 1.1).abs() < 1e-4,
            "{a:?}"
        );
        assert_eq!(b, vec![1.0, 1.0]);
    }

    #[test]
    fn a_scaled_group_moves_by_its_own_rate() {
        // Adam's first step is ±lr per weight: `enc.*` at a tenth of the rate moves ±0.01.
        let vs = VarStore::new(tch::Device::Cpu);
        let a = vs.root().var("dec", &[2], nn::Init::Const(1.0));
        let b = (vs.root() / "enc").var("w", &[2], nn::Init::Const(1.0));
        let mut adam = Adam::new(&vs, 0.1, 0.0);
        adam.scale_lr("enc.", 0.1);
        let g = Tensor::from_slice(&[1.0f32, -1.0]);
        adam.zero_grad();
        ((&a * &g).sum(Kind::Float) + (&b * &g).sum(Kind::Float)).backward();
        adam.step(0.0);
        let get = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
        let (a, b) = (get(&a), get(&b));
        assert!(
            (a[0] - 0.9).abs() < 1e-5 && (a[1] - 1.1).abs() < 1e-5,
            "{a:?}"
        );
        assert!(
            (b[0] - 0.99).abs() < 1e-5 && (b[1] - 1.01).abs() < 1e-5,
            "{b:?}"
        );
    }

    #[test]
    fn second_step_uses_the_moments() {
        let vs = VarStore::new(tch::Device::Cpu);
        let x = vs.root().var("x", &[1], nn::Init::Const(0.0));
        let mut adam = Adam::new(&vs, 0.1, 0.0);
        for g in [1.0f64, -1.0] {
            adam.zero_grad();
            (&x * g).sum(Kind::Float).backward();
            adam.step(0.0);
        }
        // m = 0.9·0.1 − 0.1 = −0.01 → m̂ = −0.01/0.19; v̂ = 1: x = −0.1 + 0.1 · 0.01/0.19.
        let want = -0.1 + 0.1 * (0.01 / 0.19) / (1.0 + 1e-8);
        assert!(
            (x.double_value(&[0]) - want).abs() < 1e-6,
            "{}",
            x.double_value(&[0])
        );
    }
}
