//! The engine: one thread per loaded model running iteration-level batching.
//!
//! Requests arrive over a channel and wait in a queue. Before every step the
//! model's [`BatchPolicy`] says how many may join the running batch and which to
//! refuse; the step then runs one token of every decoding sequence and as much of
//! the joining prompts as the per-step token budget leaves (a long prompt is
//! prefilled in chunks over several steps, so decoding never stalls behind it). Each
//! sequence's keys and values live in blocks of the model's [`PagedCache`]; when a
//! step needs a block and none is free, the most recently admitted sequence is
//! preempted — its blocks freed, the sequence put back at the head of the queue, to
//! be recomputed (prompt and tokens so far) when memory allows. Tokens stream to
//! each request's channel as they are chosen; a request whose receiver is dropped
//! (the client went away) is cancelled at the next step and its blocks freed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use autoglm_models::{Chunk, GenerationOptions, PagedCache, PagedModel, Sampler};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::ServeError;
use crate::metrics::ModelMetrics;
use crate::policy::{BatchPolicy, Finished, Running, View, Waiting};

/// Engine settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Tokens one step may run (decode tokens and prompt chunks together).
    pub token_budget: usize,
    /// Positions per cache block.
    pub block_size: usize,
    /// Bytes of the key/value cache.
    pub kv_cache_bytes: usize,
    /// Requests that may wait; more are refused with 503.
    pub max_waiting: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            token_budget: 512,
            block_size: 16,
            kv_cache_bytes: 256 << 20,
            max_waiting: 1024,
        }
    }
}

/// One generation request.
#[derive(Debug)]
pub struct GenRequest {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// How to pick tokens (`max_new_tokens`, stops, temperature…).
    pub sampling: GenerationOptions,
    /// Where events go; dropping the receiver cancels the request.
    pub events: UnboundedSender<Event>,
}

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token (EOS or one asked for) or a stop string.
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

impl FinishReason {
    /// OpenAI's name (`stop`, `length`).
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// What a finished request took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Why it stopped.
    pub finish: FinishReason,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Arrival to admission.
    pub queued: Duration,
    /// Arrival to first token.
    pub ttft: Duration,
    /// Arrival to last token.
    pub latency: Duration,
    /// Times it was preempted and recomputed.
    pub preempted: u32,
}

/// An event of one request.
#[derive(Debug)]
pub enum Event {
    /// A generated token.
    Token(u32),
    /// The request finished (the last event).
    Done(Summary),
    /// The request failed (the last event).
    Error(ServeError),
}

/// Live counters of an engine.
#[derive(Debug, Default)]
pub struct EngineState {
    /// Requests submitted and not yet admitted (or refused).
    pub waiting: AtomicUsize,
    /// Sequences in the running batch.
    pub running: AtomicUsize,
    /// Free cache blocks.
    pub free_blocks: AtomicUsize,
    /// Whether the engine stopped accepting requests (draining or stopped).
    pub closed: AtomicBool,
}

/// A running engine (its thread) for one model; dropping it finishes every queued
/// request and joins the thread.
pub struct Engine {
    tx: Option<mpsc::Sender<(GenRequest, Instant)>>,
    thread: Option<JoinHandle<()>>,
    state: Arc<EngineState>,
    max_waiting: usize,
    max_positions: usize,
    num_blocks: usize,
    block_size: usize,
    vocab: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

struct Seq {
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Tokens whose keys and values are in the cache.
    computed: usize,
    blocks: Vec<u32>,
    sampler: Sampler,
    stops: Vec<u32>,
    max_new: usize,
    events: UnboundedSender<Event>,
    arrived: Instant,
    admitted: Option<Instant>,
    first: Option<Instant>,
    preempted: u32,
    steps: usize,
    batch_sum: usize,
}

impl Seq {
    fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }
}

impl Engine {
    /// Starts the engine thread for `model` with a cache of `config.kv_cache_bytes`.
    ///
    /// # Errors
    /// [`ServeError`] (500) if the cache or the thread cannot be made.
    pub fn start(
        model: PagedModel,
        config: EngineConfig,
        policy: Box<dyn BatchPolicy>,
        metrics: ModelMetrics,
    ) -> Result<Engine, ServeError> {
        let cache =
            PagedCache::with_memory(model.config(), config.block_size, config.kv_cache_bytes)
                .map_err(|e| ServeError::Engine {
                    context: "key/value cache",
                    source: Arc::new(e),
                })?;
        let state = Arc::new(EngineState::default());
        state
            .free_blocks
            .store(cache.free_blocks(), Ordering::Relaxed);
        metrics.free_blocks.set(cache.free_blocks() as i64);
        let (tx, rx) = mpsc::channel();
        let max_positions = model.config().max_position_embeddings;
        let vocab = model.config().vocab_size;
        let (num_blocks, block_size) = (cache.num_blocks(), cache.block_size());
        let st = Arc::clone(&state);
        let cfg = config.clone();
        let thread = std::thread::Builder::new()
            .name("autoglm-engine".into())
            .spawn(move || {
                Loop {
                    model,
                    cache,
                    policy,
                    metrics,
                    cfg,
                    state: st,
                    waiting: VecDeque::new(),
                    running: Vec::new(),
                    window: (Instant::now(), 0),
                }
                .run(rx)
            })
            .map_err(|source| ServeError::Io {
                context: "engine thread".into(),
                source,
            })?;
        Ok(Engine {
            tx: Some(tx),
            thread: Some(thread),
            state,
            max_waiting: config.max_waiting,
            max_positions,
            num_blocks,
            block_size,
            vocab,
        })
    }

    /// Queues a request.
    ///
    /// # Errors
    /// 400 for an empty prompt, ids outside the vocabulary, or a request longer than
    /// the model's positions or the whole cache; 503 (with Retry-After) when the
    /// queue is full or the engine is shutting down.
    pub fn submit(&self, req: GenRequest) -> Result<(), ServeError> {
        let total = req.prompt.len() + req.sampling.max_new_tokens;
        if req.prompt.is_empty() {
            return Err(ServeError::BadRequest("the prompt is empty".into()));
        }
        if let Some(bad) = req.prompt.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(ServeError::BadRequest(format!(
                "token id {bad} is outside the vocabulary (size {})",
                self.vocab
            )));
        }
        if total > self.max_positions {
            return Err(ServeError::BadRequest(format!(
                "prompt ({} tokens) + max_tokens ({}) exceeds the model's {} positions",
                req.prompt.len(),
                req.sampling.max_new_tokens,
                self.max_positions
            )));
        }
        if (total + 1).div_ceil(self.block_size) > self.num_blocks {
            return Err(ServeError::BadRequest(format!(
                "prompt + max_tokens = {total} tokens needs more key/value memory than this server has ({} positions)",
                self.num_blocks * self.block_size
            )));
        }
        if self.state.closed.load(Ordering::Acquire) {
            return Err(ServeError::Unavailable {
                message: "the model is shutting down".into(),
                retry_after: 1,
            });
        }
        if self.state.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.state.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(ServeError::Unavailable {
                message: "the queue is full".into(),
                retry_after: 1,
            });
        }
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send((req, Instant::now())).is_ok());
        if !sent {
            self.state.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(ServeError::Unavailable {
                message: "the engine stopped".into(),
                retry_after: 1,
            });
        }
        Ok(())
    }

    /// Live counters.
    pub fn state(&self) -> &EngineState {
        &self.state
    }

    /// Stops accepting requests, finishes every queued and running one, and joins
    /// the thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.state.closed.store(true, Ordering::Release);
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Loop {
    model: PagedModel,
    cache: PagedCache,
    policy: Box<dyn BatchPolicy>,
    metrics: ModelMetrics,
    cfg: EngineConfig,
    state: Arc<EngineState>,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    /// Start and generated tokens of the tokens-per-second window.
    window: (Instant, u64),
}

impl Loop {
    fn run(mut self, rx: mpsc::Receiver<(GenRequest, Instant)>) {
        let mut open = true;
        let mut wake: Option<Instant> = None;
        loop {
            // Intake: block when idle, else take what has arrived.
            if open && self.running.is_empty() {
                let got = match wake {
                    Some(at) => {
                        match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                            Ok(m) => Some(m),
                            Err(mpsc::RecvTimeoutError::Timeout) => None,
                            Err(mpsc::RecvTimeoutError::Disconnected) => {
                                open = false;
                                None
                            }
                        }
                    }
                    None if self.waiting.is_empty() => match rx.recv() {
                        Ok(m) => Some(m),
                        Err(_) => {
                            open = false;
                            None
                        }
                    },
                    None => None,
                };
                if let Some((req, at)) = got {
                    self.accept(req, at);
                }
            }
            while open {
                match rx.try_recv() {
                    Ok((req, at)) => self.accept(req, at),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => open = false,
                }
            }
            if !open && self.running.is_empty() && self.waiting.is_empty() {
                break;
            }
            self.drop_cancelled();
            wake = self.admit(!open);
            if self.running.is_empty() && !self.waiting.is_empty() && wake.is_none() {
                // Nothing could start (the policy holds back): look again shortly
                // rather than spin.
                wake = Some(Instant::now() + Duration::from_millis(5));
            }
            if !self.running.is_empty() {
                self.step();
            }
            self.publish();
        }
        self.publish();
    }

    fn accept(&mut self, req: GenRequest, arrived: Instant) {
        self.policy.on_arrival(arrived);
        self.metrics.arrivals.inc();
        let stops = req.sampling.stops(self.model.config());
        let max_new = req.sampling.max_new_tokens;
        let sampler = match Sampler::new(req.sampling) {
            Ok(s) => s,
            Err(e) => {
                self.state.waiting.fetch_sub(1, Ordering::AcqRel);
                let _ = req.events.send(Event::Error(ServeError::Model(e)));
                return;
            }
        };
        self.waiting.push_back(Seq {
            prompt_len: req.prompt.len(),
            tokens: req.prompt,
            computed: 0,
            blocks: Vec::new(),
            sampler,
            stops,
            max_new,
            events: req.events,
            arrived,
            admitted: None,
            first: None,
            preempted: 0,
            steps: 0,
            batch_sum: 0,
        });
    }

    fn drop_cancelled(&mut self) {
        let before = self.running.len() + self.waiting.len();
        let cache = &mut self.cache;
        let state = &self.state;
        let mut gone = |s: &mut Seq| {
            let closed = s.events.is_closed();
            if closed {
                cache.release(&mut s.blocks);
                if s.admitted.is_none() {
                    state.waiting.fetch_sub(1, Ordering::AcqRel);
                }
            }
            !closed
        };
        self.running.retain_mut(&mut gone);
        self.waiting.retain_mut(&mut gone);
        let n = before - self.running.len() - self.waiting.len();
        if n > 0 {
            self.metrics.cancelled.inc_by(n as u64);
        }
    }

    /// Asks the policy, sheds and admits; returns when to wake if idle.
    fn admit(&mut self, draining: bool) -> Option<Instant> {
        if self.waiting.is_empty() {
            return None;
        }
        let now = Instant::now();
        let running: Vec<Running> = self
            .running
            .iter()
            .map(|s| Running {
                arrived: s.arrived,
                remaining: s.max_new - s.generated(),
            })
            .collect();
        let waiting: Vec<Waiting> = self
            .waiting
            .iter()
            .map(|s| Waiting {
                arrived: s.arrived,
                prefill: s.tokens.len() - s.computed,
                max_new: s.max_new - s.generated(),
            })
            .collect();
        let mut d = self.policy.decide(&View {
            now,
            running: &running,
            waiting: &waiting,
        });
        if draining && d.admit == 0 && self.running.is_empty() {
            // Draining: whatever the policy waits for will not come.
            d.admit = d.cap.max(1);
        }
        // Shed from the back so positions stay valid.
        let mut shed = d.shed.clone();
        shed.sort_unstable();
        shed.dedup();
        for &i in shed.iter().rev() {
            if let Some(mut s) = self.waiting.remove(i) {
                self.cache.release(&mut s.blocks);
                if s.admitted.is_none() {
                    self.state.waiting.fetch_sub(1, Ordering::AcqRel);
                }
                self.metrics.shed.inc();
                let _ = s.events.send(Event::Error(ServeError::Unavailable {
                    message: "the server cannot finish this request within its latency target now"
                        .into(),
                    retry_after: 1,
                }));
            }
        }
        let mut admitted = 0;
        while admitted < d.admit && self.running.len() < d.cap.max(1) {
            let Some(next) = self.waiting.front() else {
                break;
            };
            // Blocks for the whole prompt (and the token it adds) must be free
            // without preempting anyone.
            let need = next.tokens.len() + 1;
            if self.cache.blocks_for(need) > self.cache.free_blocks() + next.blocks.len() {
                break;
            }
            let Some(mut s) = self.waiting.pop_front() else {
                break;
            };
            if !self.cache.reserve(&mut s.blocks, need) {
                self.waiting.push_front(s);
                break;
            }
            if s.admitted.is_none() {
                s.admitted = Some(now);
                self.state.waiting.fetch_sub(1, Ordering::AcqRel);
                self.metrics
                    .queue_seconds
                    .observe(now.duration_since(s.arrived).as_secs_f64());
            }
            self.running.push(s);
            admitted += 1;
        }
        d.wake_at
    }

    /// Frees the last-admitted running sequence's blocks and requeues it at the head.
    fn preempt_last(&mut self) -> bool {
        if self.running.len() <= 1 {
            return false;
        }
        let Some(mut s) = self.running.pop() else {
            return false;
        };
        self.cache.release(&mut s.blocks);
        s.computed = 0;
        s.preempted += 1;
        self.metrics.preempted.inc();
        self.waiting.push_front(s);
        true
    }

    /// Plans a step: decoding sequences first, then prompts in admission order,
    /// within the token budget; every chunk's blocks reserved, preempting the most
    /// recently admitted sequences when the cache runs out.
    fn plan(&mut self) -> Vec<(usize, usize)> {
        loop {
            let mut budget = self.cfg.token_budget.max(1);
            let mut plan: Vec<(usize, usize)> = Vec::with_capacity(self.running.len());
            let mut order: Vec<usize> = (0..self.running.len()).collect();
            order.sort_by_key(|&i| self.running[i].tokens.len() - self.running[i].computed > 1);
            for i in order {
                if budget == 0 {
                    break;
                }
                let s = &self.running[i];
                let n = (s.tokens.len() - s.computed).min(budget);
                budget -= n;
                plan.push((i, n));
            }
            let mut short = false;
            for &(si, n) in &plan {
                let s = &mut self.running[si];
                let end = s.computed + n + 1;
                if !self.cache.reserve(&mut s.blocks, end) {
                    short = true;
                    break;
                }
            }
            if !short {
                return plan;
            }
            if !self.preempt_last() {
                // One sequence alone cannot get its blocks (the submit check makes
                // this unreachable): fail it cleanly.
                if let Some(mut s) = self.running.pop() {
                    self.cache.release(&mut s.blocks);
                    let _ = s.events.send(Event::Error(ServeError::Unavailable {
                        message: "out of key/value memory".into(),
                        retry_after: 1,
                    }));
                }
                return Vec::new();
            }
        }
    }

    fn step(&mut self) {
        let plan = self.plan();
        if plan.is_empty() {
            return;
        }
        let batch = plan.len();
        let tokens: usize = plan.iter().map(|&(_, n)| n).sum();
        let decodes = plan
            .iter()
            .filter(|&&(si, n)| n == 1 && self.running[si].computed >= self.running[si].prompt_len)
            .count();
        let chunks: Vec<Chunk<'_>> = plan
            .iter()
            .map(|&(si, n)| {
                let s = &self.running[si];
                Chunk {
                    tokens: &s.tokens[s.computed..s.computed + n],
                    start: s.computed,
                    blocks: &s.blocks,
                    logits: s.computed + n == s.tokens.len(),
                }
            })
            .collect();
        let t0 = Instant::now();
        let result = self.model.step(&mut self.cache, &chunks);
        let took = t0.elapsed();
        drop(chunks);
        self.policy.on_step(batch, tokens, took);
        self.metrics.step_seconds.observe(took.as_secs_f64());
        self.metrics.batch_size.observe(batch as f64);
        self.metrics
            .prefill_tokens
            .inc_by((tokens - decodes) as u64);
        let mut logits = match result {
            Ok(l) => l,
            Err(e) => {
                // Not expected (inputs are checked on submit): fail the batch, keep
                // serving.
                let e = Arc::new(e);
                let mut failed: Vec<usize> = plan.iter().map(|&(si, _)| si).collect();
                failed.sort_unstable_by(|a, b| b.cmp(a));
                for si in failed {
                    let mut s = self.running.remove(si);
                    self.cache.release(&mut s.blocks);
                    let _ = s.events.send(Event::Error(ServeError::Engine {
                        context: "model step",
                        source: Arc::clone(&e),
                    }));
                }
                return;
            }
        };
        let vocab = self.model.config().vocab_size;
        let now = Instant::now();
        let mut row = 0;
        let mut finished = Vec::new();
        for &(si, n) in &plan {
            let s = &mut self.running[si];
            s.computed += n;
            s.steps += 1;
            s.batch_sum += batch;
            if s.computed < s.tokens.len() {
                continue;
            }
            let l = &mut logits[row * vocab..(row + 1) * vocab];
            row += 1;
            let tok = s.sampler.next(l, &s.tokens);
            s.tokens.push(tok);
            self.metrics.generated_tokens.inc();
            self.window.1 += 1;
            if s.first.is_none() {
                s.first = Some(now);
                self.metrics
                    .ttft_seconds
                    .observe(now.duration_since(s.arrived).as_secs_f64());
            }
            let _ = s.events.send(Event::Token(tok));
            if s.stops.contains(&tok) {
                finished.push((si, FinishReason::Stop));
            } else if s.generated() >= s.max_new {
                finished.push((si, FinishReason::Length));
            }
        }
        finished.sort_by_key(|&(si, _)| std::cmp::Reverse(si));
        for (si, reason) in finished {
            let mut s = self.running.remove(si);
            self.cache.release(&mut s.blocks);
            let latency = now.duration_since(s.arrived);
            let queued = s
                .admitted
                .map_or(Duration::ZERO, |a| a.duration_since(s.arrived));
            let summary = Summary {
                finish: reason,
                prompt_tokens: s.prompt_len,
                completion_tokens: s.generated(),
                queued,
                ttft: s.first.map_or(latency, |f| f.duration_since(s.arrived)),
                latency,
                preempted: s.preempted,
            };
            self.policy.on_finish(&Finished {
                latency,
                queued,
                prefill: s.prompt_len,
                generated: s.generated(),
                batch: s.batch_sum as f64 / s.steps.max(1) as f64,
            });
            self.metrics.latency_seconds.observe(latency.as_secs_f64());
            self.metrics.finished.inc();
            let _ = s.events.send(Event::Done(summary));
        }
    }

    fn publish(&mut self) {
        self.state
            .running
            .store(self.running.len(), Ordering::Release);
        self.state
            .free_blocks
            .store(self.cache.free_blocks(), Ordering::Release);
        self.metrics.queue_depth.set(self.waiting.len() as i64);
        self.metrics.running.set(self.running.len() as i64);
        self.metrics
            .free_blocks
            .set(self.cache.free_blocks() as i64);
        let el = self.window.0.elapsed().as_secs_f64();
        if el >= 1.0 || self.running.is_empty() && self.waiting.is_empty() {
            let rate = if el > 0.0 {
                self.window.1 as f64 / el
            } else {
                0.0
            };
            self.metrics.tokens_per_second.set(rate);
            self.window = (Instant::now(), 0);
        }
    }
}
