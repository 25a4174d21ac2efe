//! 1,000 malformed or hostile requests under load: every one gets a well-formed
//! JSON error or a clean close, the server keeps serving, and its resources (cache
//! blocks, queue, memory) return to their baseline.

mod common;

use std::time::Duration;

use common::{call, call_raw, repo_root, spec, start};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn hostile_case(i: usize) -> (&'static str, String, Vec<u8>) {
    let long_prompt: Vec<u32> = (0..3000).map(|j| j % 50).collect();
    match i % 12 {
        0 => (
            "POST",
            "/v1/completions".into(),
            b"{\"prompt\": [1, 2".to_vec(),
        ),
        1 => (
            "POST",
            "/v1/completions".into(),
            br#"{"prompt": {"a": 1}}"#.to_vec(),
        ),
        2 => (
            "POST",
            "/v1/completions".into(),
            br#"{"prompt": [1], "max_tokens": -5}"#.to_vec(),
        ),
        3 => (
            "POST",
            "/v1/completions".into(),
            br#"{"prompt": [1], "max_tokens": 99999999}"#.to_vec(),
        ),
        4 => (
            "POST",
            "/v1/completions".into(),
            json!({"prompt": long_prompt, "max_tokens": 4})
                .to_string()
                .into_bytes(),
        ),
        5 => ("POST", "/v1/completions".into(), vec![b'['; 200_000]),
        6 => (
            "POST",
            "/v1/completions".into(),
            br#"{"prompt": [1], "model": "ghost"}"#.to_vec(),
        ),
        7 => (
            "POST",
            format!("/v1/models/ghost{i}/infer"),
            br#"{"prompt": [1]}"#.to_vec(),
        ),
        8 => (
            "POST",
            "/v1/completions".into(),
            br#"{"prompt": [1], "top_p": 7, "temperature": 1}"#.to_vec(),
        ),
        9 => (
            "POST",
            "/v1/models".into(),
            br#"{"name": "x", "path": "../../etc"}"#.to_vec(),
        ),
        10 => (
            "POST",
            "/completion".into(),
            b"\xff\xfe\x00garbage".to_vec(),
        ),
        _ => ("POST", "/v1/models/glm/versions/99/load".into(), Vec::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_hostile_requests_under_load() {
    let root = repo_root();
    let s = start(root.path(), &[spec("glm", "a"), spec("other", "b")], |c| {
        c.limits.max_body_bytes = 64 << 10;
        c.limits.max_tokens = 256;
        c.cache_bytes = 0;
    })
    .await;
    let addr = s.addr;
    let baseline_blocks = blocks_free(addr).await;
    // Warm up so the baseline includes the runtime's and engines' steady state.
    for _ in 0..20 {
        let body = json!({"prompt": [1, 2, 3], "max_tokens": 8}).to_string();
        call(addr, "POST", "/v1/models/glm/infer", Some(&body), None).await;
    }
    let rss0 = rss_bytes();

    // Background load: well-formed streaming requests the whole time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for c in 0..4u32 {
        let stop = std::sync::Arc::clone(&stop);
        load.push(tokio::spawn(async move {
            let mut ok = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = json!({"prompt": [c + 1, 5, 7], "max_tokens": 12, "stream": true,
                                  "temperature": 0, "model": "glm"})
                .to_string();
                let r = call(addr, "POST", "/v1/completions", Some(&body), None).await;
                assert_eq!(r.status, 200, "{}", r.body);
                assert!(r.body.contains("[DONE]"));
                ok += 1;
            }
            ok
        }));
    }

    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..1000 {
        match i % 10 {
            // Clients that disconnect mid-stream.
            0 => {
                let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
                let body =
                    json!({"prompt": [3, 4], "max_tokens": 200, "stream": true, "model": "glm",
                                  "ignore_eos": true})
                    .to_string();
                let req = format!(
                    "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                sock.write_all(req.as_bytes()).await.unwrap();
                let mut buf = [0u8; 256];
                let _ = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await;
                drop(sock);
                *statuses.entry("disconnect").or_insert(0) += 1;
            }
            // A body cut off before its announced length.
            5 => {
                let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
                sock.write_all(b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n{\"prompt\"")
                    .await
                    .unwrap();
                drop(sock);
                *statuses.entry("cut").or_insert(0) += 1;
            }
            // Load and unload of the other model during traffic.
            7 => {
                let action = if (i / 10) % 2 == 0 { "unload" } else { "load" };
                let r = call(
                    addr,
                    "POST",
                    &format!("/v1/models/other/versions/1/{action}"),
                    None,
                    None,
                )
                .await;
                assert_eq!(r.status, 200, "{action}: {}", r.body);
                *statuses.entry("load/unload").or_insert(0) += 1;
            }
            _ => {
                let (method, path, body) = hostile_case(i);
                let r = call_raw(addr, method, &path, Some(body), None).await;
                assert!(
                    r.status >= 400 && r.status < 500,
                    "{path} case {}: {} {}",
                    i % 12,
                    r.status,
                    r.body
                );
                let v: Value = serde_json::from_str(&r.body)
                    .unwrap_or_else(|e| panic!("case {}: not JSON ({e}): {}", i % 12, r.body));
                assert!(
                    v["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()),
                    "{}",
                    r.body
                );
                *statuses.entry("error").or_insert(0) += 1;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut served = 0;
    for l in load {
        served += l.await.unwrap();
    }
    assert!(served > 0);
    // Everything drains back: blocks free, nothing queued or running.
    let mut blocks = 0;
    for _ in 0..100 {
        blocks = blocks_free(addr).await;
        if blocks == baseline_blocks {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(blocks, baseline_blocks, "key/value blocks leaked");
    let m = call(addr, "GET", "/metrics", None, None).await.body;
    assert!(m.contains("autoglm_requests_cancelled_total{"), "{m}");
    let growth = rss_bytes().saturating_sub(rss0);
    eprintln!(
        "{statuses:?}; {served} well-formed streams served; RSS growth {} MiB",
        growth >> 20
    );
    assert!(growth < 64 << 20, "RSS grew by {} MiB", growth >> 20);
    assert_eq!(call(addr, "GET", "/health", None, None).await.status, 200);
    s.stop().await;
}

/// Free key/value blocks of every loaded version, summed from the metrics.
async fn blocks_free(addr: std::net::SocketAddr) -> u64 {
    let m = call(addr, "GET", "/metrics", None, None).await.body;
    let queue: u64 = sum(&m, "autoglm_queue_depth{") + sum(&m, "autoglm_running_sequences{");
    if queue > 0 {
        return 0;
    }
    sum(&m, "autoglm_kv_free_blocks{model=\"glm\"")
}

fn sum(m: &str, prefix: &str) -> u64 {
    m.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
