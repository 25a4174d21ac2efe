//! The load generator of `autoglm bench-serve`: streaming completion requests
//! against any server speaking llama.cpp's `/completion` or OpenAI's
//! `/v1/completions` (ours speaks both), in three modes — sequential requests,
//! open-loop Poisson arrivals at given rates, and closed-loop clients — with the
//! figures of `shared/bench/serving/loadgen.py` (same fields, same percentile rule)
//! plus goodput against a latency target.
//!
//! Each request opens its own connection (as the reference generator does), sends a
//! token-id prompt with greedy decoding and `ignore_eos`, and reads the event stream:
//! time to first token is the first event, end-to-end the last.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Exp};
use rand_pcg::Pcg64Mcg;
use serde::Serialize;
use serde_json::{json, Value};

/// Which API to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// llama.cpp's `POST /completion` (`n_predict`).
    Llama,
    /// OpenAI's `POST /v1/completions` (`max_tokens`).
    OpenAi,
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// `n` requests one after another.
    Single {
        /// Requests.
        n: usize,
    },
    /// Open loop: Poisson arrivals at each rate (requests/s) for at most `max_s`
    /// seconds or `max_req` requests, then up to `drain_s` for stragglers; with
    /// `stop_when_saturated`, higher rates are skipped once one saturates.
    Poisson {
        /// Rates, requests per second.
        rates: Vec<f64>,
        /// Seconds of arrivals per rate.
        max_s: f64,
        /// Requests per rate at most.
        max_req: usize,
        /// Seconds to wait for in-flight requests after the last arrival.
        drain_s: f64,
        /// Stop at the first saturated rate.
        stop_when_saturated: bool,
    },
    /// Closed loop: `concurrency` clients back to back for `max_s` seconds or
    /// `max_req` requests.
    Closed {
        /// Clients.
        concurrency: usize,
        /// Seconds.
        max_s: f64,
        /// Requests at most.
        max_req: usize,
    },
}

/// Load generator settings.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Server address.
    pub addr: SocketAddr,
    /// API.
    pub api: Api,
    /// Model name to send (OpenAI API; optional when the server has one model).
    pub model: Option<String>,
    /// Bearer token.
    pub token: Option<String>,
    /// Prompts (token ids), used round-robin.
    pub prompts: Vec<Vec<u32>>,
    /// Tokens to generate per request.
    pub gen_tokens: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Goodput counts requests finishing within this.
    pub latency_target: Duration,
    /// Label of the result lines.
    pub label: String,
    /// Seed of the arrival times.
    pub seed: u64,
}

/// One request's record.
#[derive(Debug, Clone, Default)]
struct Record {
    sent: Option<Instant>,
    ttft: Option<f64>,
    e2e: Option<f64>,
    tokens: usize,
    err: Option<String>,
}

/// The summary of one level (one rate, or one closed/single run).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Label.
    pub label: String,
    /// `single`, `poisson` or `closed`.
    pub mode: String,
    /// Offered rate (Poisson).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered_rps: Option<f64>,
    /// The sample's own arrival rate (Poisson).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realised_rps: Option<f64>,
    /// Clients (closed) or 1 (single).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Requests sent.
    pub sent: usize,
    /// Requests that completed with every token.
    pub completed: usize,
    /// Requests that failed.
    pub errors: usize,
    /// Up to five distinct error messages.
    pub error_kinds: Vec<String>,
    /// Seconds from the first send to the last completion.
    pub duration_s: f64,
    /// Completed requests per second.
    pub req_per_s: f64,
    /// Generated tokens per second.
    pub gen_tok_per_s: f64,
    /// Requests completed within the latency target.
    pub good: usize,
    /// Completed within the latency target, per second.
    pub goodput_rps: f64,
    /// The latency target, seconds.
    pub latency_target_s: f64,
    /// End-to-end latency percentiles, seconds.
    pub e2e_p50_s: f64,
    /// 99th percentile.
    pub e2e_p99_s: f64,
    /// Time to first token, seconds.
    pub ttft_p50_s: f64,
    /// 99th percentile.
    pub ttft_p99_s: f64,
    /// Time per output token after the first, milliseconds.
    pub tpot_p50_ms: f64,
}

/// Linear-interpolation percentile (numpy's default), `NaN` for no samples.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let k = (v.len() - 1) as f64 * p / 100.0;
    let (lo, hi) = (
        k.floor() as usize,
        (k.floor() as usize + 1).min(v.len() - 1),
    );
    v[lo] + (v[hi] - v[lo]) * (k - lo as f64)
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

async fn one(cfg: &LoadConfig, prompt: &[u32]) -> Record {
    let mut rec = Record {
        sent: Some(Instant::now()),
        ..Record::default()
    };
    match tokio::time::timeout(cfg.timeout, request(cfg, prompt, &mut rec)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => rec.err = Some(e),
        Err(_) => rec.err = Some("timeout".into()),
    }
    if rec.err.is_none() && rec.tokens != cfg.gen_tokens {
        rec.err = Some(format!("short: {} tokens", rec.tokens));
    }
    rec
}

async fn request(cfg: &LoadConfig, prompt: &[u32], rec: &mut Record) -> Result<(), String> {
    let t0 = rec.sent.unwrap_or_else(Instant::now);
    let (path, body) = match cfg.api {
        Api::Llama => (
            "/completion",
            json!({"prompt": prompt, "n_predict": cfg.gen_tokens, "temperature": 0.0,
                   "ignore_eos": true, "stream": true}),
        ),
        Api::OpenAi => {
            let mut b = json!({"prompt": prompt, "max_tokens": cfg.gen_tokens, "temperature": 0.0,
                               "ignore_eos": true, "stream": true});
            if let Some(m) = &cfg.model {
                b["model"] = json!(m);
            }
            ("/v1/completions", b)
        }
    };
    let stream = tokio::net::TcpStream::connect(cfg.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).ok();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let mut req = Request::post(path)
        .header("host", cfg.addr.to_string())
        .header("content-type", "application/json");
    if let Some(t) = &cfg.token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| format!("request: {e}"))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        return Err(format!(
            "http {}: {}",
            status.as_u16(),
            text.chars().take(200).collect::<String>()
        ));
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut events = 0usize;
    let mut finished = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buf.extend_from_slice(data);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(payload) = line.trim().strip_prefix("data:") else {
                continue;
            };
            let payload = payload.trim();
            if payload == "[DONE]" {
                continue;
            }
            let ev: Value = serde_json::from_str(payload).map_err(|e| format!("bad event: {e}"))?;
            if let Some(e) = ev.get("error") {
                return Err(e.to_string().chars().take(200).collect());
            }
            let now = t0.elapsed().as_secs_f64();
            let (n, stop) = match cfg.api {
                Api::Llama => {
                    let stop = ev.get("stop").and_then(Value::as_bool).unwrap_or(false);
                    if stop {
                        if let Some(n) = ev.get("tokens_predicted").and_then(Value::as_u64) {
                            rec.tokens = n as usize;
                        }
                    }
                    (usize::from(!stop), stop)
                }
                Api::OpenAi => {
                    let c = &ev["choices"][0];
                    let n = c.get("tokens").and_then(Value::as_array).map_or_else(
                        || usize::from(c["text"].as_str().is_some_and(|t| !t.is_empty())),
                        Vec::len,
                    );
                    (n, !c["finish_reason"].is_null())
                }
            };
            if n > 0 {
                events += n;
                if rec.ttft.is_none() {
                    rec.ttft = Some(now);
                }
            }
            if stop {
                finished = true;
            }
        }
    }
    rec.e2e = Some(t0.elapsed().as_secs_f64());
    if cfg.api == Api::OpenAi || rec.tokens == 0 {
        rec.tokens = events;
    }
    conn.abort();
    if !finished {
        return Err("stream ended without a final event".into());
    }
    Ok(())
}

fn summarize(
    cfg: &LoadConfig,
    mode: &str,
    recs: &[Record],
    t0: Instant,
    t_end: Instant,
    extra: (Option<f64>, Option<f64>, Option<usize>),
) -> Summary {
    let ok: Vec<&Record> = recs
        .iter()
        .filter(|r| r.err.is_none() && r.e2e.is_some())
        .collect();
    let mut kinds: Vec<String> = recs.iter().filter_map(|r| r.err.clone()).collect();
    kinds.sort();
    kinds.dedup();
    kinds.truncate(5);
    let dur = t_end.duration_since(t0).as_secs_f64().max(1e-9);
    let e2e: Vec<f64> = ok.iter().filter_map(|r| r.e2e).collect();
    let ttft: Vec<f64> = ok.iter().filter_map(|r| r.ttft).collect();
    let tpot: Vec<f64> = ok
        .iter()
        .filter(|r| r.tokens > 1)
        .filter_map(|r| Some((r.e2e? - r.ttft?) / (r.tokens - 1) as f64))
        .collect();
    let target = cfg.latency_target.as_secs_f64();
    let good = e2e.iter().filter(|&&x| x <= target).count();
    Summary {
        label: format!("{} {mode}", cfg.label),
        mode: mode.into(),
        offered_rps: extra.0,
        realised_rps: extra.1.map(|x| round(x, 3)),
        concurrency: extra.2,
        sent: recs.len(),
        completed: ok.len(),
        errors: recs.len() - ok.len(),
        error_kinds: kinds,
        duration_s: round(dur, 2),
        req_per_s: round(ok.len() as f64 / dur, 3),
        gen_tok_per_s: round(ok.iter().map(|r| r.tokens).sum::<usize>() as f64 / dur, 1),
        good,
        goodput_rps: round(good as f64 / dur, 3),
        latency_target_s: target,
        e2e_p50_s: round(percentile(&e2e, 50.0), 3),
        e2e_p99_s: round(percentile(&e2e, 99.0), 3),
        ttft_p50_s: round(percentile(&ttft, 50.0), 3),
        ttft_p99_s: round(percentile(&ttft, 99.0), 3),
        tpot_p50_ms: round(1000.0 * percentile(&tpot, 50.0), 2),
    }
}

/// Runs `mode`, calling `report` with each level's summary as it finishes.
///
/// # Errors
/// A message when there are no prompts.
pub async fn run(
    cfg: LoadConfig,
    mode: Mode,
    mut report: impl FnMut(&Summary),
) -> Result<Vec<Summary>, String> {
    if cfg.prompts.is_empty() {
        return Err("no prompts".into());
    }
    let cfg = std::sync::Arc::new(cfg);
    let mut out = Vec::new();
    match mode {
        Mode::Single { n } => {
            let last = cfg.prompts.len() - 1;
            let _ = one(&cfg, &cfg.prompts[last]).await; // warm-up, not recorded
            let t0 = Instant::now();
            let mut recs = Vec::new();
            for i in 0..n {
                recs.push(one(&cfg, &cfg.prompts[i % cfg.prompts.len()]).await);
            }
            let s = summarize(
                &cfg,
                "single",
                &recs,
                t0,
                Instant::now(),
                (None, None, Some(1)),
            );
            report(&s);
            out.push(s);
        }
        Mode::Poisson {
            rates,
            max_s,
            max_req,
            drain_s,
            stop_when_saturated,
        } => {
            for (li, &rate) in rates.iter().enumerate() {
                let Ok(exp) = Exp::new(rate) else {
                    return Err(format!("rate {rate} is not positive"));
                };
                let mut rng = Pcg64Mcg::seed_from_u64(cfg.seed + li as u64);
                let n_max = max_req.min(((rate * max_s) as usize).max(1));
                let mut arrivals = Vec::new();
                let mut t = 0.0;
                while arrivals.len() < n_max {
                    t += exp.sample(&mut rng);
                    if t > max_s {
                        break;
                    }
                    arrivals.push(t);
                }
                if arrivals.is_empty() {
                    arrivals.push(0.0);
                }
                let t0 = Instant::now();
                let mut tasks = Vec::new();
                for (i, &at) in arrivals.iter().enumerate() {
                    tokio::time::sleep_until((t0 + Duration::from_secs_f64(at)).into()).await;
                    let c = std::sync::Arc::clone(&cfg);
                    let p = c.prompts[(li * 997 + i) % c.prompts.len()].clone();
                    tasks.push(tokio::spawn(async move { one(&c, &p).await }));
                }
                let deadline = Instant::now() + Duration::from_secs_f64(drain_s);
                let mut recs = Vec::new();
                for t in tasks {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(left, t).await {
                        Ok(Ok(r)) => recs.push(r),
                        Ok(Err(e)) => recs.push(Record {
                            err: Some(format!("task: {e}")),
                            ..Record::default()
                        }),
                        Err(_) => recs.push(Record {
                            err: Some("cancelled at level deadline".into()),
                            ..Record::default()
                        }),
                    }
                }
                let t_end = recs
                    .iter()
                    .filter_map(|r| Some(r.sent? + Duration::from_secs_f64(r.e2e?)))
                    .max()
                    .unwrap_or_else(Instant::now);
                let realised =
                    arrivals.len() as f64 / arrivals.last().copied().unwrap_or(1.0).max(1e-9);
                let s = summarize(
                    &cfg,
                    "poisson",
                    &recs,
                    t0,
                    t_end,
                    (Some(rate), Some(realised), None),
                );
                report(&s);
                let saturated = s.errors > 0 || s.req_per_s < 0.85 * realised;
                out.push(s);
                if stop_when_saturated && saturated {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        Mode::Closed {
            concurrency,
            max_s,
            max_req,
        } => {
            let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let t0 = Instant::now();
            let stop_at = t0 + Duration::from_secs_f64(max_s);
            let mut clients = Vec::new();
            for _ in 0..concurrency.max(1) {
                let c = std::sync::Arc::clone(&cfg);
                let counter = std::sync::Arc::clone(&counter);
                clients.push(tokio::spawn(async move {
                    let mut recs = Vec::new();
                    loop {
                        let i = counter.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                        if i >= max_req || Instant::now() >= stop_at {
                            break;
                        }
                        let p = c.prompts[i % c.prompts.len()].clone();
                        recs.push(one(&c, &p).await);
                    }
                    recs
                }));
            }
            let mut recs = Vec::new();
            for c in clients {
                recs.extend(c.await.unwrap_or_default());
            }
            let s = summarize(
                &cfg,
                "closed",
                &recs,
                t0,
                Instant::now(),
                (None, None, Some(concurrency)),
            );
            report(&s);
            out.push(s);
        }
    }
    Ok(out)
}

/// `n` prompts of `len` token ids drawn uniformly from `[first, vocab)`, seeded.
pub fn random_prompts(n: usize, len: usize, first: u32, vocab: u32, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            (0..len)
                .map(|_| rng.random_range(first..vocab.max(first + 1)))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&xs, 50.0), 2.5);
        assert!((percentile(&xs, 99.0) - 3.97).abs() < 1e-12);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
