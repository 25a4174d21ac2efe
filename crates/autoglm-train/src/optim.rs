//! Optimizers as update kernels over f32 master weights (AdamW with decoupled weight
//! decay and SGD with momentum, step for step as PyTorch's single-tensor
//! implementations), learning-rate schedules as transformers'
//! `get_*_schedule_with_warmup` and `get_wsd_schedule` (warmup–stable–decay), and
//! clipping by global norm as `torch.nn.utils.clip_grad_norm_`.

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
    /// Warmup–stable–decay (Hägele et al. 2024, "Scaling Laws and Compute-Optimal
    /// Training Beyond Fixed Training Durations"; transformers' `get_wsd_schedule`):
    /// the base rate until the cooldown, which takes the last
    /// [`LrSchedule::decay_steps`] steps of the run down to
    /// [`LrSchedule::min_lr_ratio`] of the base rate in the shape
    /// [`LrSchedule::decay_shape`]. Before the cooldown the rate does not depend on
    /// the run's length, so a run can be extended, or cooled down from any step of its
    /// stable phase and continued from there ([`crate::Trainer::cooldown_branch`]).
    #[serde(alias = "warmup_stable_decay")]
    Wsd,
}

/// The shape of a warmup–stable–decay cooldown, as transformers' `decay_type`
/// (`progress` runs from 0 at the cooldown's first step to `(n − 1)/n` at its last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DecayShape {
    /// `1 − progress`.
    Linear,
    /// Half a cosine, `½ (1 + cos(π · progress))` (transformers' default, with
    /// `num_cycles = 0.5`).
    Cosine,
    /// `1 − √progress`, the cooldown Hägele et al. found best (the default here).
    #[default]
    #[serde(rename = "1-sqrt", alias = "one_minus_sqrt")]
    OneMinusSqrt,
}

impl std::str::FromStr for DecayShape {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "linear" => Ok(DecayShape::Linear),
            "cosine" => Ok(DecayShape::Cosine),
            "1-sqrt" | "one_minus_sqrt" => Ok(DecayShape::OneMinusSqrt),
            other => Err(format!(
                "unknown cooldown shape '{other}' (linear, cosine or 1-sqrt)"
            )),
        }
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "linear" => Ok(Schedule::Linear),
            "cosine" => Ok(Schedule::Cosine),
            "wsd" | "warmup_stable_decay" => Ok(Schedule::Wsd),
            other => Err(format!(
                "unknown schedule '{other}' (constant, linear, cosine or wsd)"
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
    /// [`Schedule::Wsd`]: the cooldown's length, the last steps of the run
    /// (transformers' `num_decay_steps`).
    #[serde(default)]
    pub decay_steps: u64,
    /// [`Schedule::Wsd`]: the cooldown's shape (transformers' `decay_type`).
    #[serde(default)]
    pub decay_shape: DecayShape,
    /// [`Schedule::Wsd`]: the rate at the end of the cooldown, and at the start of
    /// the warm-up, as a fraction of the base rate (transformers' `min_lr_ratio`).
    #[serde(default)]
    pub min_lr_ratio: f64,
}

impl LrSchedule {
    /// The rate of optimizer step `step` (counting from 0), as transformers' scheduler
    /// gives it: step 0 of a warm-up runs at rate 0.
    ///
    /// [`Schedule::Wsd`] is transformers' `get_wsd_schedule(optimizer,
    /// num_warmup_steps=warmup_steps, num_decay_steps=decay_steps,
    /// num_training_steps=total_steps, warmup_type="linear", decay_type=…,
    /// min_lr_ratio=…)` operation for operation (`_get_wsd_scheduler_lambda`, then
    /// `LambdaLR`'s `base · factor`): the warm-up rises linearly from
    /// `min_lr_ratio · base` (not from 0, unlike the other shapes), the cooldown
    /// starts at step `total_steps − decay_steps`, and steps from `total_steps` on run
    /// at `min_lr_ratio · base`.
    pub fn lr(&self, step: u64) -> f64 {
        let (s, w, n) = (
            step as f64,
            self.warmup_steps as f64,
            self.total_steps as f64,
        );
        if step < self.warmup_steps && self.schedule != Schedule::Wsd {
            return self.base * s / w.max(1.0);
        }
        let factor = match self.schedule {
            Schedule::Constant => 1.0,
            Schedule::Linear => ((n - s) / (n - w).max(1.0)).max(0.0),
            Schedule::Cosine => {
                let progress = (s - w) / (n - w).max(1.0);
                (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
            Schedule::Wsd => self.wsd_factor(step),
        };
        self.base * factor
    }

    /// The step at which a [`Schedule::Wsd`] cooldown starts (`total_steps −
    /// decay_steps`, at least 0); none for the other shapes. The rate of every step
    /// before it depends on the warm-up and the base rate only.
    pub fn cooldown_start(&self) -> Option<u64> {
        (self.schedule == Schedule::Wsd).then(|| self.total_steps.saturating_sub(self.decay_steps))
    }

    /// The factor of transformers' `_get_wsd_scheduler_lambda` with a linear warm-up
    /// (the number of stable steps is `total − warmup − decay`, signed as in Python).
    fn wsd_factor(&self, step: u64) -> f64 {
        let r = self.min_lr_ratio;
        let (t, w, d) = (
            i128::from(step),
            i128::from(self.warmup_steps),
            i128::from(self.decay_steps),
        );
        // num_warmup_steps + num_stable_steps.
        let decay_start = i128::from(self.total_steps) - d;
        if t < w {
            let progress = t as f64 / w.max(1) as f64;
            return (progress * (1.0 - r) + r).max(0.0);
        }
        if t < decay_start {
            return 1.0;
        }
        if t < decay_start + d {
            let progress = (t - decay_start) as f64 / d.max(1) as f64;
            let factor = match self.decay_shape {
                DecayShape::Linear => 1.0 - progress,
                // transformers: cos(π · num_cycles · 2 · progress) with num_cycles ½;
                // the factors of two are exact, so this is the same number.
                DecayShape::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
                DecayShape::OneMinusSqrt => 1.0 - progress.sqrt(),
            };
            return (factor * (1.0 - r) + r).max(0.0);
        }
        r
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
            ..wsd(0, DecayShape::Linear, 0.0)
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

    /// A warmup–stable–decay schedule: base 3e-3, 3 warm-up steps, 13 in all.
    fn wsd(decay_steps: u64, decay_shape: DecayShape, min_lr_ratio: f64) -> LrSchedule {
        LrSchedule {
            base: 3e-3,
            schedule: Schedule::Wsd,
            warmup_steps: 3,
            total_steps: 13,
            decay_steps,
            decay_shape,
            min_lr_ratio,
        }
    }

    #[test]
    fn wsd_follows_transformers_get_wsd_schedule() {
        // get_wsd_schedule(opt, num_warmup_steps=3, num_decay_steps=5,
        // num_training_steps=13, decay_type=…, min_lr_ratio=0.1) with lr 3e-3: the
        // warm-up rises from 0.1 · lr, 5 stable steps (3..8), the cooldown over steps
        // 8..13 at progress (t − 8)/5, then 0.1 · lr. Expected values are
        // `3e-3 * _get_wsd_scheduler_lambda(t, …)` evaluated in Python (its formula
        // transcribed; the repr of each float), and by hand: linear at t = 9,
        // 1 − 0.2 = 0.8 → (0.8 · 0.9 + 0.1) · 3e-3 = 0.00246.
        let head = [
            0.00030000000000000003,
            0.0012000000000000001,
            0.0021,
            0.003,
            0.003,
            0.003,
            0.003,
            0.003,
            0.003,
        ];
        let tails = [
            (
                DecayShape::Linear,
                [
                    0.0024600000000000004,
                    0.00192,
                    0.0013800000000000002,
                    0.0008399999999999999,
                ],
            ),
            (
                DecayShape::OneMinusSqrt,
                [
                    0.0017925232921501139,
                    0.001292370063509075,
                    0.0009085889930479949,
                    0.0005850465843002272,
                ],
            ),
            (
                DecayShape::Cosine,
                [
                    0.002742172942406179,
                    0.002067172942406179,
                    0.0012328270575938213,
                    0.0005578270575938212,
                ],
            ),
        ];
        for (shape, tail) in tails {
            let s = wsd(5, shape, 0.1);
            let got: Vec<f64> = (0..15).map(|t| s.lr(t)).collect();
            let want: Vec<f64> = head
                .iter()
                .chain(&tail)
                .chain(&[0.00030000000000000003; 2])
                .copied()
                .collect();
            for (t, (g, w)) in got.iter().zip(&want).enumerate() {
                // Sums, products and square roots round exactly as Python's; the
                // cosine is libm's, equal to within an ulp.
                let tol = if shape == DecayShape::Cosine {
                    1e-18
                } else {
                    0.0
                };
                assert!((g - w).abs() <= tol, "{shape:?} step {t}: {g:e} vs {w:e}");
            }
            assert_eq!(s.cooldown_start(), Some(8));
        }
        // min_lr_ratio 0, no warm-up, 1-sqrt: a cooldown of 3 from step 4 of 7
        // (1 − √(1/3), 1 − √(2/3)), then 0.
        let s = LrSchedule {
            base: 1e-3,
            warmup_steps: 0,
            total_steps: 7,
            ..wsd(3, DecayShape::OneMinusSqrt, 0.0)
        };
        let got: Vec<f64> = (0..8).map(|t| s.lr(t)).collect();
        let want = [
            0.001,
            0.001,
            0.001,
            0.001,
            0.001,
            0.0004226497308103743,
            0.00018350341907227396,
            0.0,
        ];
        assert_eq!(got, want);
        assert_eq!("1-sqrt".parse(), Ok(DecayShape::OneMinusSqrt));
        assert_eq!("wsd".parse(), Ok(Schedule::Wsd));
        assert_eq!(
            serde_json::to_string(&DecayShape::OneMinusSqrt).unwrap(),
            "\"1-sqrt\""
        );
        assert_eq!(
            serde_json::from_str::<Schedule>("\"warmup_stable_decay\"").unwrap(),
            Schedule::Wsd
        );
    }

    #[test]
    fn wsd_before_the_cooldown_does_not_depend_on_the_length() {
        // The key property for continuation: a run planned longer has the same rates
        // up to the shorter plan's cooldown start.
        for shape in [DecayShape::Linear, DecayShape::OneMinusSqrt] {
            let short = LrSchedule {
                total_steps: 10,
                ..wsd(2, shape, 0.05)
            };
            for (total, decay) in [(20, 4), (100, 2), (11, 1), (1_000_000, 10_000)] {
                let long = LrSchedule {
                    total_steps: total,
                    decay_steps: decay,
                    ..short
                };
                for t in 0..8 {
                    assert_eq!(short.lr(t).to_bits(), long.lr(t).to_bits(), "{t}");
                }
                // The cooldown from the same stable point is the same whatever the
                // length of the longer plan around it.
                let branch = LrSchedule {
                    total_steps: 8 + decay,
                    ..long
                };
                assert_eq!(branch.lr(8), branch.base);
                for t in 9..8 + decay {
                    assert!(branch.lr(t) < branch.lr(t - 1), "{t}");
                }
                assert_eq!(branch.lr(8 + decay), branch.base * 0.05);
            }
            // transformers' cooldown starts at progress 0: its first step is at the peak.
            assert_eq!(short.lr(8), short.lr(7));
            assert!(short.lr(9) < short.lr(8));
            assert_eq!(short.lr(10), short.base * 0.05);
        }
        // Old checkpoints' schedules (no WSD fields) still parse.
        let old = r#"{"base":0.001,"schedule":"cosine","warmup_steps":2,"total_steps":10}"#;
        let s: LrSchedule = serde_json::from_str(old).unwrap();
        assert_eq!((s.decay_steps, s.min_lr_ratio), (0, 0.0));
        assert_eq!(s.cooldown_start(), None);
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
