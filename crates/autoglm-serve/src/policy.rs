//! Batching policies: what the engine may admit before each step.
//!
//! The engine runs iteration-level (continuous) batching: between two decode steps
//! sequences finish and leave, and waiting requests may join. A [`BatchPolicy`]
//! decides, before each step, how many sequences may run together (the batch cap),
//! how many waiting requests to admit now, and which waiting requests to refuse
//! because they can no longer finish in time. It is told what happened — arrivals,
//! step durations, finished requests — and may adapt.
//!
//! Four policies ship ([`PolicyConfig`] selects one per model):
//! - [`Feedback`] (the default): continuous batching whose cap and admission follow
//!   a latency target, from a step-time model measured online and corrected by the
//!   measured latencies (see its docs).
//! - [`RateTable`]: the design's table — batch 1 under 50 requests/s of measured
//!   arrivals, 4 from 50 to 200, 16 above.
//! - [`Static`]: Triton's dynamic batcher — a batch starts when `max_batch` requests
//!   wait or the oldest has waited `max_queue_delay`, and runs until all its
//!   requests finish; nothing joins a running batch.
//! - [`Continuous`]: continuous batching with a fixed cap (llama.cpp's slots, vLLM's
//!   `max_num_seqs`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A waiting request as a policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Waiting {
    /// When it arrived.
    pub arrived: Instant,
    /// Tokens to run before its first new token (its prompt).
    pub prefill: usize,
    /// Tokens it may still generate.
    pub max_new: usize,
}

/// A running sequence as a policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Running {
    /// When it arrived.
    pub arrived: Instant,
    /// Tokens it may still generate.
    pub remaining: usize,
}

/// What the engine knows before a step.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// Now.
    pub now: Instant,
    /// Sequences in the running batch.
    pub running: &'a [Running],
    /// The queue, oldest first.
    pub waiting: &'a [Waiting],
}

/// A policy's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// Admit this many requests from the head of the queue (fewer if the cap, the
    /// token budget or the cache does not allow).
    pub admit: usize,
    /// The batch cap: sequences that may run together after admission.
    pub cap: usize,
    /// Refuse these queue positions now (HTTP 503 with Retry-After): requests that
    /// cannot finish in time.
    pub shed: Vec<usize>,
    /// Call again at the latest then, even if nothing arrives (a queue delay
    /// expiring).
    pub wake_at: Option<Instant>,
}

/// A batching policy (see the module docs).
pub trait BatchPolicy: Send {
    /// The policy's name, as configured and reported in metrics.
    fn name(&self) -> &'static str;
    /// Decides before a step.
    fn decide(&mut self, view: &View<'_>) -> Decision;
    /// A request arrived.
    fn on_arrival(&mut self, _now: Instant) {}
    /// A step ran `batch` sequences (`tokens` tokens in all) in `took`.
    fn on_step(&mut self, _batch: usize, _tokens: usize, _took: Duration) {}
    /// A request finished.
    fn on_finish(&mut self, _finished: &Finished) {}
}

/// A finished request, as reported to [`BatchPolicy::on_finish`].
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// Arrival to last token.
    pub latency: Duration,
    /// Arrival to admission into the running batch.
    pub queued: Duration,
    /// Prompt tokens run.
    pub prefill: usize,
    /// Tokens generated.
    pub generated: usize,
    /// Mean batch size over the steps it ran in.
    pub batch: f64,
}

/// A policy and its settings, as written in configuration (`serve.yaml`, the
/// register call).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PolicyConfig {
    /// [`Feedback`].
    Feedback {
        /// End-to-end latency target per request, milliseconds.
        #[serde(default = "default_target_ms")]
        latency_target_ms: u64,
        /// Largest batch ever run.
        #[serde(default = "default_max_batch")]
        max_batch: usize,
    },
    /// [`RateTable`].
    RateTable,
    /// [`Static`].
    Static {
        /// Requests per batch.
        #[serde(default = "default_static_batch")]
        max_batch: usize,
        /// Longest wait for a batch to fill, milliseconds.
        #[serde(default = "default_queue_delay_ms")]
        max_queue_delay_ms: u64,
    },
    /// [`Continuous`].
    Continuous {
        /// Sequences that may run together.
        #[serde(default = "default_max_batch")]
        max_batch: usize,
    },
}

fn default_target_ms() -> u64 {
    5000
}
fn default_max_batch() -> usize {
    32
}
fn default_static_batch() -> usize {
    8
}
fn default_queue_delay_ms() -> u64 {
    100
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig::Feedback {
            latency_target_ms: default_target_ms(),
            max_batch: default_max_batch(),
        }
    }
}

impl PolicyConfig {
    /// Parses the command line's short form: `feedback[:TARGET_MS[:MAX_BATCH]]`,
    /// `rate-table`, `static[:MAX_BATCH[:DELAY_MS]]`, `continuous[:MAX_BATCH]`.
    ///
    /// # Errors
    /// A message naming the policy or the number that does not parse.
    pub fn parse(s: &str) -> Result<PolicyConfig, String> {
        let mut parts = s.split(':');
        let kind = parts.next().unwrap_or_default();
        let nums: Vec<u64> = parts
            .map(|p| {
                p.parse::<u64>()
                    .map_err(|_| format!("policy '{s}': '{p}' is not a number"))
            })
            .collect::<Result<_, _>>()?;
        let at = |i: usize, d: u64| nums.get(i).copied().unwrap_or(d);
        let max = |n: usize| -> Result<(), String> {
            if nums.len() > n {
                Err(format!("policy '{s}' takes at most {n} numbers"))
            } else {
                Ok(())
            }
        };
        let c = match kind {
            "feedback" => {
                max(2)?;
                PolicyConfig::Feedback {
                    latency_target_ms: at(0, default_target_ms()),
                    max_batch: at(1, default_max_batch() as u64) as usize,
                }
            }
            "rate-table" | "rate_table" => {
                max(0)?;
                PolicyConfig::RateTable
            }
            "static" => {
                max(2)?;
                PolicyConfig::Static {
                    max_batch: at(0, default_static_batch() as u64) as usize,
                    max_queue_delay_ms: at(1, default_queue_delay_ms()),
                }
            }
            "continuous" => {
                max(1)?;
                PolicyConfig::Continuous {
                    max_batch: at(0, default_max_batch() as u64) as usize,
                }
            }
            other => {
                return Err(format!(
                    "unknown policy '{other}' (feedback, rate-table, static, continuous)"
                ))
            }
        };
        c.check()?;
        Ok(c)
    }

    /// Checks the numbers.
    ///
    /// # Errors
    /// A message naming the field.
    pub fn check(&self) -> Result<(), String> {
        let batch = match self {
            PolicyConfig::Feedback {
                max_batch,
                latency_target_ms,
            } => {
                if *latency_target_ms == 0 {
                    return Err("latency_target_ms must be positive".into());
                }
                *max_batch
            }
            PolicyConfig::Static { max_batch, .. } | PolicyConfig::Continuous { max_batch } => {
                *max_batch
            }
            PolicyConfig::RateTable => 16,
        };
        if !(1..=1024).contains(&batch) {
            return Err(format!("max_batch {batch} is not in 1..=1024"));
        }
        Ok(())
    }

    /// The policy's short name.
    pub fn name(&self) -> &'static str {
        match self {
            PolicyConfig::Feedback { .. } => "feedback",
            PolicyConfig::RateTable => "rate-table",
            PolicyConfig::Static { .. } => "static",
            PolicyConfig::Continuous { .. } => "continuous",
        }
    }

    /// The latency target goodput is counted against (the feedback policy's own, or
    /// `fallback` for the others).
    pub fn latency_target(&self, fallback: Duration) -> Duration {
        match self {
            PolicyConfig::Feedback {
                latency_target_ms, ..
            } => Duration::from_millis(*latency_target_ms),
            _ => fallback,
        }
    }

    /// A fresh policy.
    pub fn build(&self) -> Box<dyn BatchPolicy> {
        match *self {
            PolicyConfig::Feedback {
                latency_target_ms,
                max_batch,
            } => Box::new(Feedback::new(
                Duration::from_millis(latency_target_ms),
                max_batch,
            )),
            PolicyConfig::RateTable => Box::new(RateTable::default()),
            PolicyConfig::Static {
                max_batch,
                max_queue_delay_ms,
            } => Box::new(Static {
                max_batch,
                max_queue_delay: Duration::from_millis(max_queue_delay_ms),
            }),
            PolicyConfig::Continuous { max_batch } => Box::new(Continuous { max_batch }),
        }
    }
}

/// Admits as many as the cap leaves room for.
fn fill(view: &View<'_>, cap: usize) -> Decision {
    Decision {
        admit: cap
            .saturating_sub(view.running.len())
            .min(view.waiting.len()),
        cap,
        ..Decision::default()
    }
}

/// Continuous batching with a fixed cap.
#[derive(Debug, Clone)]
pub struct Continuous {
    /// Sequences that may run together.
    pub max_batch: usize,
}

impl BatchPolicy for Continuous {
    fn name(&self) -> &'static str {
        "continuous"
    }
    fn decide(&mut self, view: &View<'_>) -> Decision {
        fill(view, self.max_batch)
    }
}

/// Triton-style static batching (see the module docs).
#[derive(Debug, Clone)]
pub struct Static {
    /// Requests per batch.
    pub max_batch: usize,
    /// Longest wait of the oldest request for a batch to fill.
    pub max_queue_delay: Duration,
}

impl BatchPolicy for Static {
    fn name(&self) -> &'static str {
        "static"
    }
    fn decide(&mut self, view: &View<'_>) -> Decision {
        let cap = self.max_batch;
        if !view.running.is_empty() || view.waiting.is_empty() {
            return Decision {
                cap,
                ..Decision::default()
            };
        }
        let due = view.waiting[0].arrived + self.max_queue_delay;
        if view.waiting.len() >= cap || view.now >= due {
            fill(view, cap)
        } else {
            Decision {
                cap,
                wake_at: Some(due),
                ..Decision::default()
            }
        }
    }
}

/// The design's arrival-rate table (see the module docs), over the arrivals of the
/// last [`RateTable::WINDOW`].
#[derive(Debug, Clone, Default)]
pub struct RateTable {
    arrivals: VecDeque<Instant>,
}

impl RateTable {
    /// The window arrival rates are measured over.
    pub const WINDOW: Duration = Duration::from_secs(5);

    /// The batch the table gives for `rate` requests per second.
    pub fn batch_for(rate: f64) -> usize {
        if rate < 50.0 {
            1
        } else if rate <= 200.0 {
            4
        } else {
            16
        }
    }

    fn rate(&mut self, now: Instant) -> f64 {
        while self
            .arrivals
            .front()
            .is_some_and(|&t| now.duration_since(t) > Self::WINDOW)
        {
            self.arrivals.pop_front();
        }
        self.arrivals.len() as f64 / Self::WINDOW.as_secs_f64()
    }
}

impl BatchPolicy for RateTable {
    fn name(&self) -> &'static str {
        "rate-table"
    }
    fn on_arrival(&mut self, now: Instant) {
        self.arrivals.push_back(now);
    }
    fn decide(&mut self, view: &View<'_>) -> Decision {
        let cap = Self::batch_for(self.rate(view.now));
        fill(view, cap)
    }
}

/// The default policy: continuous batching steered by a latency target.
///
/// It keeps a model of the step time as a function of the batch size — an
/// exponentially weighted average per size, measured on every step, interpolated
/// between measured sizes and extrapolated by the slope of the two largest — and a
/// correction factor: the measured latency of finished requests over the latency the model predicted for them when they were
/// admitted (so queueing effects and prefill the model does not see are learned).
/// Before each step:
/// - **Cap**: the largest batch (up to `max_batch`) at which a typical request —
///   the recent average of generated tokens — still finishes within the target, by
///   the corrected model. Throughput grows with the batch while each request's steps
///   slow down, so this is the batch that moves the most requests within the target.
/// - **Admission**: in arrival order, a waiting request joins if the cap has room
///   and, with it in the batch, every running request that can still meet its
///   deadline (arrival + target) still does by the model; requests already late
///   count towards nothing and do not hold admission back.
/// - **Shedding**: a waiting request that would miss its deadline even if admitted
///   now is refused at once (503 with Retry-After) rather than left to grow the
///   queue: it could not count towards goodput, and serving it would make the
///   requests behind it late too. Under overload the queue therefore stays short
///   and the server keeps finishing requests within the target, where a fixed cap
///   lets every latency grow without bound.
#[derive(Debug, Clone)]
pub struct Feedback {
    target: Duration,
    max_batch: usize,
    /// Seconds per step, by batch size (index = size), EWMA; `None` until measured.
    step_s: Vec<Option<f64>>,
    /// Seconds per prefill token, EWMA.
    prefill_s: Option<f64>,
    /// Measured over predicted latency, EWMA (≥ 1 means the model is optimistic).
    correction: f64,
    /// Generated tokens per request, EWMA.
    typical_new: f64,
    /// Recent latencies, for the p99 fed back into the cap.
    recent: VecDeque<f64>,
}

impl Feedback {
    /// A policy for `target` end-to-end latency and at most `max_batch` sequences.
    pub fn new(target: Duration, max_batch: usize) -> Feedback {
        Feedback {
            target,
            max_batch: max_batch.max(1),
            step_s: vec![None; max_batch.max(1) + 1],
            prefill_s: None,
            correction: 1.0,
            typical_new: 0.0,
            recent: VecDeque::new(),
        }
    }

    /// Predicted seconds per step at batch `b`: measured, else interpolated between
    /// the nearest measured sizes, else extrapolated above the largest by the slope
    /// between the two largest (proportionally with only one measured).
    pub fn step_time(&self, b: usize) -> Option<f64> {
        let b = b.clamp(1, self.max_batch);
        if let Some(t) = self.step_s[b] {
            return Some(t);
        }
        let below = (1..b).rev().find_map(|i| self.step_s[i].map(|t| (i, t)));
        let above = (b + 1..=self.max_batch).find_map(|i| self.step_s[i].map(|t| (i, t)));
        match (below, above) {
            (Some((i, ti)), Some((j, tj))) => {
                let f = (b - i) as f64 / (j - i) as f64;
                Some(ti + f * (tj - ti))
            }
            // Above what was seen: the slope between the two largest measured
            // sizes (a step's time grows about linearly in the batch, from a fixed
            // cost), or proportional to the batch with one measurement.
            (Some((i, ti)), None) => {
                let slope = (1..i)
                    .rev()
                    .find_map(|h| self.step_s[h].map(|th| (ti - th) / (i - h) as f64))
                    .filter(|s| *s > 0.0)
                    .unwrap_or(ti / i as f64);
                Some(ti + slope * (b - i) as f64)
            }
            (None, Some((_, tj))) => Some(tj),
            (None, None) => None,
        }
    }

    /// Predicted seconds from now for a request needing `prefill` prompt tokens and
    /// `new` generated tokens in a batch of `b`, corrected.
    fn service(&self, prefill: usize, new: usize, b: usize) -> f64 {
        let step = self.step_time(b).unwrap_or(0.0);
        let pre = self.prefill_s.unwrap_or(0.0) * prefill as f64;
        self.correction * (pre + step * new as f64)
    }

    fn p99(&self) -> Option<f64> {
        if self.recent.len() < 20 {
            return None;
        }
        let mut v: Vec<f64> = self.recent.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        Some(v[((v.len() - 1) as f64 * 0.99).round() as usize])
    }

    /// The cap for the current model.
    fn cap(&self) -> usize {
        let target = self.target.as_secs_f64();
        let typical = self.typical_new.max(1.0).round() as usize;
        let mut cap = self.max_batch;
        if self.step_time(1).is_some() {
            cap = (1..=self.max_batch)
                .rev()
                .find(|&b| self.service(0, typical, b) <= target)
                .unwrap_or(1);
        }
        // Measured p99 over the target: the model is optimistic somewhere; back off.
        if self.p99().is_some_and(|p| p > target) {
            cap = (cap * 3 / 4).max(1);
        }
        cap
    }
}

impl BatchPolicy for Feedback {
    fn name(&self) -> &'static str {
        "feedback"
    }

    fn decide(&mut self, view: &View<'_>) -> Decision {
        let target = self.target.as_secs_f64();
        let cap = self.cap();
        let now = view.now;
        let left = |arrived: Instant| target - now.saturating_duration_since(arrived).as_secs_f64();
        let known = self.step_time(1).is_some();
        let mut batch = view.running.len();
        // The running requests that can still finish in time (time left, tokens
        // left); those already late count towards nothing, so they do not hold
        // admission back.
        let mut alive: Vec<(f64, usize)> = view
            .running
            .iter()
            .map(|r| (left(r.arrived), r.remaining))
            .filter(|&(l, rem)| l - self.service(0, rem, batch.max(1)) >= 0.0)
            .collect();
        let mut shed = Vec::new();
        let mut admit = 0;
        let mut blocked = false;
        for (i, w) in view.waiting.iter().enumerate() {
            let b = batch + 1;
            let own = left(w.arrived) - self.service(w.prefill, w.max_new, b);
            if own < 0.0 && known {
                // Misses its deadline even if admitted now (while the step-time model
                // is still empty, nothing is shed).
                shed.push(i);
                continue;
            }
            if blocked || b > cap {
                blocked = true;
                continue;
            }
            // Admitting slows every live request to batch `b` and delays it by this
            // prompt's prefill.
            let delay = self.correction * self.prefill_s.unwrap_or(0.0) * w.prefill as f64;
            let fits = alive
                .iter()
                .all(|&(l, rem)| l - self.service(0, rem, b) - delay >= 0.0);
            if fits || !known {
                admit += 1;
                batch = b;
                alive.push((left(w.arrived), w.max_new));
            } else {
                // First come, first served: nobody overtakes a request held back.
                blocked = true;
            }
        }
        Decision {
            admit,
            cap,
            shed,
            wake_at: None,
        }
    }

    fn on_step(&mut self, batch: usize, tokens: usize, took: Duration) {
        let t = took.as_secs_f64();
        let prefill = tokens.saturating_sub(batch);
        if prefill == 0 && batch >= 1 && batch <= self.max_batch {
            let slot = &mut self.step_s[batch];
            *slot = Some(match *slot {
                Some(old) => 0.8 * old + 0.2 * t,
                None => t,
            });
        } else if prefill > 0 {
            // The prefill's share over the decode steps' time at this batch.
            let decode = self.step_time(batch).unwrap_or(0.0);
            let per = ((t - decode) / prefill as f64).max(0.0);
            self.prefill_s = Some(match self.prefill_s {
                Some(old) => 0.8 * old + 0.2 * per,
                None => per,
            });
        }
    }

    fn on_finish(&mut self, f: &Finished) {
        let l = f.latency.as_secs_f64();
        self.recent.push_back(l);
        if self.recent.len() > 200 {
            self.recent.pop_front();
        }
        self.typical_new = if self.typical_new == 0.0 {
            f.generated as f64
        } else {
            0.9 * self.typical_new + 0.1 * f.generated as f64
        };
        let b = f.batch.round().max(1.0) as usize;
        if let Some(step) = self.step_time(b) {
            let predicted = f.queued.as_secs_f64()
                + self.prefill_s.unwrap_or(0.0) * f.prefill as f64
                + step * f.generated as f64;
            if predicted > 0.0 {
                let r = (l / predicted).clamp(0.5, 4.0);
                self.correction = 0.9 * self.correction + 0.1 * r;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(now: Instant, n: usize) -> Vec<Waiting> {
        (0..n)
            .map(|_| Waiting {
                arrived: now,
                prefill: 32,
                max_new: 64,
            })
            .collect()
    }

    #[test]
    fn rate_table_follows_the_design() {
        assert_eq!(RateTable::batch_for(10.0), 1);
        assert_eq!(RateTable::batch_for(100.0), 4);
        assert_eq!(RateTable::batch_for(500.0), 16);
        let mut p = RateTable::default();
        let now = Instant::now();
        for _ in 0..300 {
            p.on_arrival(now);
        }
        let w = waiting(now, 10);
        let d = p.decide(&View {
            now,
            running: &[],
            waiting: &w,
        });
        assert_eq!((d.cap, d.admit), (4, 4));
    }

    #[test]
    fn static_waits_for_a_full_batch_or_the_delay() {
        let mut p = Static {
            max_batch: 4,
            max_queue_delay: Duration::from_millis(100),
        };
        let now = Instant::now();
        let w = waiting(now, 2);
        let d = p.decide(&View {
            now,
            running: &[],
            waiting: &w,
        });
        assert_eq!(d.admit, 0);
        assert_eq!(d.wake_at, Some(now + Duration::from_millis(100)));
        let later = now + Duration::from_millis(150);
        let d = p.decide(&View {
            now: later,
            running: &[],
            waiting: &w,
        });
        assert_eq!(d.admit, 2);
        // Nothing joins a running batch.
        let r = [Running {
            arrived: now,
            remaining: 3,
        }];
        let w = waiting(now, 8);
        let d = p.decide(&View {
            now: later,
            running: &r,
            waiting: &w,
        });
        assert_eq!(d.admit, 0);
    }

    #[test]
    fn feedback_sheds_what_cannot_make_it_and_caps_by_the_target() {
        let mut p = Feedback::new(Duration::from_secs(1), 32);
        let now = Instant::now();
        // Unmeasured: admits up to the cap, sheds nothing.
        let w = waiting(now, 40);
        let d = p.decide(&View {
            now,
            running: &[],
            waiting: &w,
        });
        assert_eq!((d.admit, d.cap, d.shed.len()), (32, 32, 0));
        // 10 ms per step at batch 1, 20 ms at 16: 64 tokens take 0.64 s / 1.28 s.
        p.on_step(1, 1, Duration::from_millis(10));
        p.on_step(16, 16, Duration::from_millis(20));
        p.on_finish(&Finished {
            latency: Duration::from_millis(640),
            queued: Duration::ZERO,
            prefill: 0,
            generated: 64,
            batch: 1.0,
        });
        let cap = p.cap();
        assert!((4..16).contains(&cap), "cap {cap}");
        assert!(p.step_time(8).unwrap() > 0.010 && p.step_time(8).unwrap() < 0.020);
        // A request that already waited 0.9 s cannot finish 64 tokens in 0.1 s.
        let old = vec![Waiting {
            arrived: now - Duration::from_millis(900),
            prefill: 32,
            max_new: 64,
        }];
        let d = p.decide(&View {
            now,
            running: &[],
            waiting: &old,
        });
        assert_eq!((d.admit, d.shed.clone()), (0, vec![0]));
    }

    #[test]
    fn short_forms_parse() {
        assert_eq!(
            PolicyConfig::parse("static:4:50").unwrap(),
            PolicyConfig::Static {
                max_batch: 4,
                max_queue_delay_ms: 50
            }
        );
        assert_eq!(
            PolicyConfig::parse("feedback").unwrap(),
            PolicyConfig::default()
        );
        assert!(PolicyConfig::parse("fifo").is_err());
        assert!(PolicyConfig::parse("continuous:0").is_err());
        assert!(PolicyConfig::parse("continuous:x").is_err());
    }
}
