//! Optimizers as update kernels over f32 master weights (AdamW with decoupled weight
//! decay and SGD with momentum, step for step as PyTorch's single-tensor
//! implementations), learning-rate schedules as transformers'
//! `get_*_schedule_with_warmup`, and clipping by global norm as
//! `torch.nn.utils.clip_grad_norm_`.

use std::collections::BTreeMap;

use autoglm_ops::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The shape of the learning rate over the run (after the warm-up, which rises
/// linearly from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Linear decay to 0 at the last step.
    Linear,
    /// Half a cosine from the base rate to 0 at the last step.
    Cosine,
}

impl std::str::FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "linear" => Ok(Schedule::Linear),
            "cosine" => Ok(Schedule::Cosine),
            other => Err(format!(
                "unknown schedule '{other}' (constant, linear or cosine)"
            )),
        }
    }
}

/// A learning-rate schedule over `total_steps` optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// The peak rate.
    pub base: f64,
    /// The shape after the warm-up.
    pub schedule: Schedule,
    /// Steps of linear warm-up from 0.
    pub warmup_steps: u64,
    /// The length of the run.
    pub total_steps: u64,
}

impl LrSchedule {
    /// The rate of optimizer step `step` (counting from 0), as transformers' scheduler
    /// gives it: step 0 of a warm-up runs at rate 0.
    pub fn lr(&self, step: u64) -> f64 {
        let (s, w, n) = (
            step as f64,
            self.warmup_steps as f64,
            self.total_steps as f64,
        );
        if step < self.warmup_steps {
            return self.base * s / w.max(1.0);
        }
        let factor = match self.schedule {
            Schedule::Constant => 1.0,
            Schedule::Linear => ((n - s) / (n - w).max(1.0)).max(0.0),
            Schedule::Cosine => {
                let progress = (s - w) / (n - w).max(1.0);
                (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
        };
        self.base * factor
    }
}

/// The update rule and its hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam with decoupled weight decay (`torch.optim.AdamW`).
    AdamW {
        /// β₁, β₂.
        betas: (f64, f64),
        /// Added to the denominator.
        eps: f64,
        /// Decoupled decay: each step multiplies the weights by `1 − lr · decay`.
        weight_decay: f64,
    },
    /// Stochastic gradient descent (`torch.optim.SGD`).
    Sgd {
        /// Momentum factor (0: none).
        momentum: f64,
        /// Dampening of the gradient in the momentum buffer.
        dampening: f64,
        /// Nesterov momentum.
        nesterov: bool,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
    },
}

impl OptimizerKind {
    /// AdamW with PyTorch's defaults (betas 0.9/0.999, eps 1e-8, decay 0.01).
    pub fn adamw() -> OptimizerKind {
        OptimizerKind::AdamW {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// An optimizer with its per-parameter state (moments or momentum buffers).
#[derive(Debug, Clone)]
pub struct Optimizer {
    kind: OptimizerKind,
    /// Steps taken.
    step: u64,
    /// Per parameter: first moment / momentum buffer, and second moment.
    state: BTreeMap<String, (Vec<f32>, Vec<f32>)>,
}

impl Optimizer {
    /// A fresh optimizer.
    pub fn new(kind: OptimizerKind) -> Optimizer {
        Optimizer {
            kind,
            step: 0,
            state: BTreeMap::new(),
        }
    }

    /// The update rule.
    pub fn kind(&self) -> OptimizerKind {
        self.kind
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One step at rate `lr` over every parameter: `params[i]` (name, weights) with
    /// gradient `grads[i]`.
    ///
    /// # Errors
    /// [`Error::Input`] if a gradient's length differs from its parameter's.
    pub fn step(
        &mut self,
        lr: f64,
        params: &mut [(&str, &mut [f32])],
        grads: &[&[f32]],
    ) -> Result<()> {
        self.step_scaled(lr, 1.0, params, grads)
    }

    /// [`Optimizer::step`] with every gradient multiplied by `scale` as it is read
    /// (a clipping factor or an accumulation average, without a pass of its own).
    ///
    /// # Errors
    /// As [`Optimizer::step`].
    pub fn step_scaled(
        &mut self,
        lr: f64,
        scale: f32,
        params: &mut [(&str, &mut [f32])],
        grads: &[&[f32]],
    ) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        for ((name, p), g) in params.iter_mut().zip(grads) {
            if p.len() != g.len() {
                return Err(Error::Input(format!(
                    "gradient of '{name}' has {} elements, the parameter {}",
                    g.len(),
                    p.len()
                )));
            }
            let (m, v) = self.state.entry((*name).to_owned()).or_insert_with(|| {
                let v = match self.kind {
                    OptimizerKind::AdamW { .. } => vec![0.0; p.len()],
                    OptimizerKind::Sgd { .. } => Vec::new(),
                };
                (Vec::new(), v)
            });
            match self.kind {
                OptimizerKind::AdamW {
                    betas: (b1, b2),
                    eps,
                    weight_decay,
                } => {
                    if m.is_empty() {
                        m.resize(p.len(), 0.0);
                    }
                    adamw(p, g, scale, m, v, lr, b1, b2, eps, weight_decay, t);
                }
                OptimizerKind::Sgd {
                    momentum,
                    dampening,
                    nesterov,
                    weight_decay,
                } => sgd(
                    p,
                    g,
                    scale,
                    m,
                    lr,
                    momentum,
                    dampening,
                    nesterov,
                    weight_decay,
                ),
            }
        }
        Ok(())
    }

    /// The state as tensors (`{name}.m`, `{name}.v`, and `step`), for a checkpoint.
    pub fn state_tensors(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (name, (m, v)) in &self.state {
            for (suffix, x) in [("m", m), ("v", v)] {
                if !x.is_empty() {
                    let t = Tensor::from_f32(&[x.len()], x.clone()).expect("1-d");
                    out.insert(format!("{name}.{suffix}"), t);
                }
            }
        }
        out.insert(
            "step".into(),
            Tensor::new(&[1], autoglm_ops::Data::I64(vec![self.step as i64])).expect("1-d"),
        );
        out
    }

    /// Restores the state [`Optimizer::state_tensors`] saved.
    ///
    /// # Errors
    /// [`Error::Input`] naming a tensor of the wrong type or a missing step.
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
        let step = tensors
            .get("step")
            .ok_or_else(|| Error::Input("optimizer state: no 'step'".into()))?;
        self.step = step.data().get_f64(0) as u64;
        self.state.clear();
        for (key, t) in tensors {
            let Some((name, which)) = key.rsplit_once('.') else {
                continue;
            };
            let x = t
                .as_f32()
                .ok_or_else(|| Error::Input(format!("optimizer state '{key}' is not f32")))?
                .to_vec();
            let e = self.state.entry(name.to_owned()).or_default();
            match which {
                "m" => e.0 = x,
                "v" => e.1 = x,
                _ => {
                    return Err(Error::Input(format!(
                        "optimizer state: unexpected tensor '{key}'"
                    )))
                }
            }
        }
        Ok(())
    }
}

/// One AdamW step, in the order of operations of PyTorch's single-tensor Adam.
#[allow(clippy::too_many_arguments)]
fn adamw(
    p: &mut [f32],
    g: &[f32],
    scale: f32,
    m: &mut [f32],
    v: &mut [f32],
    lr: f64,
    b1: f64,
    b2: f64,
    eps: f64,
    weight_decay: f64,
    t: i32,
) {
    let decay = (1.0 - lr * weight_decay) as f32;
    let w1 = (1.0 - b1) as f32;
    let (b2f, w2) = (b2 as f32, (1.0 - b2) as f32);
    let step_size = (lr / (1.0 - b1.powi(t))) as f32;
    let bc2_sqrt = ((1.0 - b2.powi(t)).sqrt()) as f32;
    let eps = eps as f32;
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = g * scale;
        *p *= decay;
        // torch.lerp with a weight below ½: m + w · (g − m).
        *m += w1 * (g - *m);
        *v = *v * b2f + w2 * (g * g);
        let denom = v.sqrt() / bc2_sqrt + eps;
        *p += -step_size * (*m / denom);
    }
}

/// One SGD step (PyTorch's order: decay into the gradient, then momentum).
#[allow(clippy::too_many_arguments)]
fn sgd(
    p: &mut [f32],
    g: &[f32],
    scale: f32,
    buf: &mut Vec<f32>,
    lr: f64,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    weight_decay: f64,
) {
    let (lr, mo, damp, wd) = (
        lr as f32,
        momentum as f32,
        (1.0 - dampening) as f32,
        weight_decay as f32,
    );
    let first = buf.is_empty() && momentum != 0.0;
    if first {
        buf.resize(p.len(), 0.0);
    }
    for (i, (p, &g)) in p.iter_mut().zip(g).enumerate() {
        let g = g * scale;
        let mut d = if wd != 0.0 { g + wd * *p } else { g };
        if momentum != 0.0 {
            let b = &mut buf[i];
            *b = if first { d } else { *b * mo + damp * d };
            d = if nesterov { d + mo * *b } else { *b };
        }
        *p += -lr * d;
    }
}

/// Scales the gradients so their global L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_` (factor `max_norm / (norm + 1e-6)`, capped at 1);
/// returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [&mut [f32]], max_norm: f64) -> f64 {
    let norm = global_norm(grads.iter().map(|g| &**g));
    let coef = clip_coefficient(norm, max_norm);
    for g in grads.iter_mut() {
        for x in g.iter_mut() {
            *x *= coef;
        }
    }
    norm
}

/// The factor clipping to `max_norm` multiplies gradients of global norm `norm` by
/// (`max_norm / (norm + 1e-6)`, at most 1).
pub fn clip_coefficient(norm: f64, max_norm: f64) -> f32 {
    (max_norm / (norm + 1e-6)).min(1.0) as f32
}

/// The L2 norm of all gradients together (per-tensor norms in f64, then their norm).
pub fn global_norm<'a>(grads: impl Iterator<Item = &'a [f32]>) -> f64 {
    grads
        .map(|g| g.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>())
        .sum::<f64>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_transformers() {
        let s = |schedule| LrSchedule {
            base: 1.0,
            schedule,
            warmup_steps: 2,
            total_steps: 10,
        };
        // get_cosine_schedule_with_warmup(opt, 2, 10): 0, 0.5, 1, then half a cosine.
        let c = s(Schedule::Cosine);
        assert_eq!(c.lr(0), 0.0);
        assert_eq!(c.lr(1), 0.5);
        assert_eq!(c.lr(2), 1.0);
        assert!((c.lr(6) - 0.5).abs() < 1e-12);
        assert!(c.lr(10).abs() < 1e-12);
        let l = s(Schedule::Linear);
        assert!((l.lr(6) - 0.5).abs() < 1e-12);
        assert_eq!(s(Schedule::Constant).lr(7), 1.0);
    }

    #[test]
    fn clipping_scales_to_the_bound() {
        let (mut a, mut b) = (vec![3.0f32, 0.0], vec![4.0f32]);
        let n = clip_grad_norm(&mut [&mut a, &mut b], 1.0);
        assert_eq!(n, 5.0);
        let after = global_norm([&a[..], &b[..]].into_iter());
        assert!((after - 1.0).abs() < 1e-5, "{after}");
    }

    #[test]
    fn adamw_first_step_moves_by_lr() {
        // With bias correction the first step is lr · sign(g) (up to eps).
        let mut opt = Optimizer::new(OptimizerKind::AdamW {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        });
        let mut p = vec![1.0f32, -1.0];
        opt.step(0.1, &mut [("w", &mut p)], &[&[0.5, -2.0]])
            .unwrap();
        assert!(
            (p[0] - 0.9).abs() < 1e-6 && (p[1] + 0.9).abs() < 1e-6,
            "{p:?}"
        );
        let saved = opt.state_tensors();
        let mut back = Optimizer::new(opt.kind());
        back.load_state(&saved).unwrap();
        assert_eq!(back.steps(), 1);
        assert_eq!(back.state, opt.state);
    }
}
