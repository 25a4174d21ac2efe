//! Prometheus metrics (`GET /metrics`, text exposition format), per model and
//! version: queue depth, running batch, batch sizes, step times, tokens, latency and
//! time-to-first-token histograms, refusals; and HTTP requests by route and status.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

#[derive(Clone)]
struct Buckets(Vec<f64>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// Every metric family of a server.
pub struct Metrics {
    registry: Registry,
    arrivals: Family<Labels, Counter>,
    finished: Family<Labels, Counter>,
    shed: Family<Labels, Counter>,
    cancelled: Family<Labels, Counter>,
    preempted: Family<Labels, Counter>,
    generated_tokens: Family<Labels, Counter>,
    prefill_tokens: Family<Labels, Counter>,
    queue_depth: Family<Labels, Gauge>,
    running: Family<Labels, Gauge>,
    free_blocks: Family<Labels, Gauge>,
    tokens_per_second: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    step_seconds: Family<Labels, Histogram, Buckets>,
    batch_size: Family<Labels, Histogram, Buckets>,
    latency_seconds: Family<Labels, Histogram, Buckets>,
    ttft_seconds: Family<Labels, Histogram, Buckets>,
    queue_seconds: Family<Labels, Histogram, Buckets>,
    http: Family<Labels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// One model version's handles (cheap clones sharing the server's counters).
#[derive(Clone)]
pub struct ModelMetrics {
    /// Requests queued.
    pub arrivals: Counter,
    /// Requests finished.
    pub finished: Counter,
    /// Requests refused by the policy (could not finish in time).
    pub shed: Counter,
    /// Requests whose client went away.
    pub cancelled: Counter,
    /// Sequences preempted for memory.
    pub preempted: Counter,
    /// Tokens generated.
    pub generated_tokens: Counter,
    /// Prompt tokens run (recomputation included).
    pub prefill_tokens: Counter,
    /// Requests waiting.
    pub queue_depth: Gauge,
    /// Sequences in the running batch.
    pub running: Gauge,
    /// Free key/value blocks.
    pub free_blocks: Gauge,
    /// Generated tokens per second over the last second or so.
    pub tokens_per_second: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Seconds per engine step.
    pub step_seconds: Histogram,
    /// Sequences per step.
    pub batch_size: Histogram,
    /// Arrival to last token.
    pub latency_seconds: Histogram,
    /// Arrival to first token.
    pub ttft_seconds: Histogram,
    /// Arrival to admission.
    pub queue_seconds: Histogram,
}

impl std::fmt::Debug for ModelMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelMetrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("autoglm");
        let secs = Buckets(exponential_buckets(0.001, 2.0, 18).collect());
        let lat = Buckets(exponential_buckets(0.01, 1.6, 20).collect());
        let batch = Buckets((0..11).map(|i| f64::from(1u32 << i)).collect());
        let m = Metrics {
            arrivals: Family::default(),
            finished: Family::default(),
            shed: Family::default(),
            cancelled: Family::default(),
            preempted: Family::default(),
            generated_tokens: Family::default(),
            prefill_tokens: Family::default(),
            queue_depth: Family::default(),
            running: Family::default(),
            free_blocks: Family::default(),
            tokens_per_second: Family::default(),
            step_seconds: Family::new_with_constructor(secs.clone()),
            batch_size: Family::new_with_constructor(batch),
            latency_seconds: Family::new_with_constructor(lat.clone()),
            ttft_seconds: Family::new_with_constructor(lat.clone()),
            queue_seconds: Family::new_with_constructor(lat),
            http: Family::default(),
            registry: Registry::default(),
        };
        let Metrics {
            arrivals,
            finished,
            shed,
            cancelled,
            preempted,
            generated_tokens,
            prefill_tokens,
            queue_depth,
            running,
            free_blocks,
            tokens_per_second,
            step_seconds,
            batch_size,
            latency_seconds,
            ttft_seconds,
            queue_seconds,
            http,
            ..
        } = &m;
        registry.register("requests_arrived", "Requests queued", arrivals.clone());
        registry.register("requests_finished", "Requests finished", finished.clone());
        registry.register(
            "requests_shed",
            "Requests refused by the batching policy (could not finish within the latency target)",
            shed.clone(),
        );
        registry.register(
            "requests_cancelled",
            "Requests whose client disconnected",
            cancelled.clone(),
        );
        registry.register(
            "preemptions",
            "Sequences preempted for key/value memory (recomputed later)",
            preempted.clone(),
        );
        registry.register(
            "generated_tokens",
            "Tokens generated",
            generated_tokens.clone(),
        );
        registry.register(
            "prefill_tokens",
            "Prompt tokens run, recomputation included",
            prefill_tokens.clone(),
        );
        registry.register("queue_depth", "Requests waiting", queue_depth.clone());
        registry.register(
            "running_sequences",
            "Sequences in the running batch",
            running.clone(),
        );
        registry.register(
            "kv_free_blocks",
            "Free key/value cache blocks",
            free_blocks.clone(),
        );
        registry.register(
            "generated_tokens_per_second",
            "Generated tokens per second, last second",
            tokens_per_second.clone(),
        );
        registry.register(
            "step_seconds",
            "Seconds per engine step",
            step_seconds.clone(),
        );
        registry.register(
            "batch_size",
            "Sequences per engine step",
            batch_size.clone(),
        );
        registry.register(
            "request_latency_seconds",
            "Arrival to last token",
            latency_seconds.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "Arrival to first token",
            ttft_seconds.clone(),
        );
        registry.register(
            "queue_seconds",
            "Arrival to admission into the running batch",
            queue_seconds.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The handles of model `name` version `version`.
    pub fn model(&self, name: &str, version: u64) -> ModelMetrics {
        let l: Labels = vec![
            ("model", name.to_string()),
            ("version", version.to_string()),
        ];
        ModelMetrics {
            arrivals: self.arrivals.get_or_create_owned(&l),
            finished: self.finished.get_or_create_owned(&l),
            shed: self.shed.get_or_create_owned(&l),
            cancelled: self.cancelled.get_or_create_owned(&l),
            preempted: self.preempted.get_or_create_owned(&l),
            generated_tokens: self.generated_tokens.get_or_create_owned(&l),
            prefill_tokens: self.prefill_tokens.get_or_create_owned(&l),
            queue_depth: self.queue_depth.get_or_create_owned(&l),
            running: self.running.get_or_create_owned(&l),
            free_blocks: self.free_blocks.get_or_create_owned(&l),
            tokens_per_second: self.tokens_per_second.get_or_create_owned(&l),
            step_seconds: self.step_seconds.get_or_create_owned(&l),
            batch_size: self.batch_size.get_or_create_owned(&l),
            latency_seconds: self.latency_seconds.get_or_create_owned(&l),
            ttft_seconds: self.ttft_seconds.get_or_create_owned(&l),
            queue_seconds: self.queue_seconds.get_or_create_owned(&l),
        }
    }

    /// Counts an HTTP request.
    pub fn http(&self, route: &str, status: u16) {
        self.http
            .get_or_create(&vec![
                ("route", route.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut s, &self.registry);
        s
    }
}

/// Shared metrics.
pub type SharedMetrics = Arc<Metrics>;
