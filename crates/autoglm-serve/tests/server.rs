//! The real server on a loopback port, over HTTP.

mod common;

use autoglm_models::{GenerationOptions, LoadOptions, Model, PagedModel};
use common::{call, call_raw, post, repo_root, spec, sse_events, start};
use serde_json::{json, Value};

fn greedy(prompt: &[u32], n: usize) -> Vec<u32> {
    let mut m = Model::load(&common::fixture(), &LoadOptions::default()).unwrap();
    let o = GenerationOptions {
        max_new_tokens: n,
        ignore_eos: true,
        ..GenerationOptions::default()
    };
    m.generate(&[prompt.to_vec()], &o, |_, _| {})
        .unwrap()
        .remove(0)
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inference_endpoints_give_the_models_greedy_tokens() {
    let root = repo_root();
    let s = start(root.path(), &[spec("glm", "a")], |_| {}).await;
    let prompt = [5u32, 9, 2, 7, 11];
    let want = greedy(&prompt, 12);

    let r = call(s.addr, "GET", "/health", None, None).await;
    assert_eq!((r.status, r.json()["status"].clone()), (200, json!("ok")));
    assert_eq!(call(s.addr, "GET", "/ready", None, None).await.status, 200);

    let body = json!({"prompt": prompt, "max_tokens": 12, "ignore_eos": true}).to_string();
    let r = post(s.addr, "/v1/models/glm/infer", &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ids(&r.json()["tokens"]), want);
    assert_eq!(r.json()["finish_reason"], "length");

    // OpenAI completions, whole and streamed (greedy at temperature 0).
    let body = json!({"model": "glm", "prompt": prompt, "max_tokens": 12, "temperature": 0,
                      "ignore_eos": true})
    .to_string();
    let r = call(s.addr, "POST", "/v1/completions", Some(&body), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(ids(&v["choices"][0]["tokens"]), want);
    assert_eq!(v["usage"]["completion_tokens"], 12);
    let body = json!({"prompt": prompt, "max_tokens": 12, "temperature": 0, "ignore_eos": true,
                      "stream": true})
    .to_string();
    let r = call(s.addr, "POST", "/v1/completions", Some(&body), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events = sse_events(&r.body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let mut streamed = Vec::new();
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(e).unwrap();
        if let Some(t) = v["choices"][0].get("tokens") {
            streamed.extend(ids(t));
        }
    }
    assert_eq!(streamed, want);
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");

    // llama.cpp's /completion, streamed.
    let body = json!({"prompt": prompt, "n_predict": 12, "temperature": 0, "ignore_eos": true,
                      "stream": true})
    .to_string();
    let r = call(s.addr, "POST", "/completion", Some(&body), None).await;
    let events: Vec<Value> = sse_events(&r.body)
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let toks: Vec<u32> = events.iter().flat_map(|e| ids(&e["tokens"])).collect();
    assert_eq!(toks, want);
    assert_eq!(events.last().unwrap()["stop"], true);
    assert_eq!(events.last().unwrap()["tokens_predicted"], 12);

    // Text prompts go through the model's tokenizer.
    let body = json!({"prompt": "hello there", "max_tokens": 4, "temperature": 0}).to_string();
    let r = call(s.addr, "POST", "/v1/completions", Some(&body), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["choices"][0]["text"].is_string());

    // Metrics saw all of it.
    let m = call(s.addr, "GET", "/metrics", None, None).await.body;
    for name in [
        "autoglm_generated_tokens_total{",
        "autoglm_batch_size_bucket{",
        "autoglm_request_latency_seconds_count{",
        "autoglm_time_to_first_token_seconds_bucket{",
        "autoglm_queue_depth{",
        "autoglm_http_requests_total{",
        "autoglm_response_cache_hits_total",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics:\n{m}");
    }
    // The OpenAPI document is JSON and lists the routes.
    let doc = call(s.addr, "GET", "/openapi.json", None, None)
        .await
        .json();
    for p in ["/v1/completions", "/v1/models", "/health", "/metrics"] {
        assert!(doc["paths"].get(p).is_some(), "{p}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_batch_and_each_gets_its_own_answer() {
    let root = repo_root();
    let s = start(root.path(), &[spec("glm", "a")], |c| c.cache_bytes = 0).await;
    let prompts: Vec<Vec<u32>> = (0..6u32)
        .map(|i| (0..(3 + i)).map(|j| (i * 7 + j * 3 + 1) % 100).collect())
        .collect();
    let tasks: Vec<_> = prompts
        .iter()
        .map(|p| {
            let body = json!({"prompt": p, "max_tokens": 10, "ignore_eos": true}).to_string();
            let addr = s.addr;
            tokio::spawn(async move {
                call(addr, "POST", "/v1/models/glm/infer", Some(&body), None).await
            })
        })
        .collect();
    for (p, t) in prompts.iter().zip(tasks) {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(ids(&r.json()["tokens"]), greedy(p, 10), "prompt {p:?}");
    }
    let m = call(s.addr, "GET", "/metrics", None, None).await.body;
    // At least one step ran more than one sequence.
    let single = m
        .lines()
        .find(|l| l.starts_with("autoglm_batch_size_bucket{") && l.contains("le=\"1.0\""))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap();
    let all = m
        .lines()
        .find(|l| l.starts_with("autoglm_batch_size_count{"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap();
    assert!(
        single < all,
        "every step ran one sequence: {single} of {all}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_registers_loads_unloads_and_persists() {
    let root = repo_root();
    let s = start(root.path(), &[], |c| c.repo.memory_budget = 64 << 20).await;
    assert_eq!(call(s.addr, "GET", "/ready", None, None).await.status, 503);
    let reg = |name: &str, path: &str, load: bool| {
        json!({"name": name, "path": path, "load": load}).to_string()
    };
    let r = post(s.addr, "/v1/models", &reg("glm", "a", true)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["version"], 1);
    let r = post(s.addr, "/v1/models", &reg("glm", "b", false)).await;
    assert_eq!(r.json()["version"], 2);
    assert_eq!(call(s.addr, "GET", "/ready", None, None).await.status, 200);
    // Paths are confined to the root.
    let r = post(s.addr, "/v1/models", &reg("evil", "../", false)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = post(s.addr, "/v1/models", &reg("evil", "/etc", false)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = post(s.addr, "/v1/models", &reg("../x", "a", false)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Version 2 loads; the latest policy then serves it, and version 1 is not served.
    let r = call(s.addr, "POST", "/v1/models/glm/versions/2/load", None, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = call(s.addr, "GET", "/v1/models", None, None).await.json();
    let serving: Vec<u64> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["serving"] == true)
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(serving, vec![2]);
    let body = json!({"prompt": [1, 2, 3], "max_tokens": 2, "version": 1}).to_string();
    let r = post(s.addr, "/v1/models/glm/infer", &body).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = call(
        s.addr,
        "POST",
        "/v1/models/glm/versions/1/unload",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    s.stop().await;
    // The registry survives a restart: version 2 comes back loaded, version 1 not.
    let s = start(root.path(), &[], |c| c.repo.memory_budget = 64 << 20).await;
    let list = call(s.addr, "GET", "/v1/models", None, None).await.json();
    let loaded: Vec<(u64, bool)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["loaded"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(loaded, vec![(1, false), (2, true)]);
    let body = json!({"prompt": [1, 2, 3], "max_tokens": 2}).to_string();
    assert_eq!(
        post(s.addr, "/v1/models/glm/infer", &body).await.status,
        200
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_over_the_memory_budget_is_refused() {
    let root = repo_root();
    // Room for one copy of the fixture and its cache, not two.
    let s = start(root.path(), &[spec("one", "a")], |c| {
        c.repo.memory_budget = 6 << 20
    })
    .await;
    let body = json!({"name": "two", "path": "b"}).to_string();
    let r = call(s.addr, "POST", "/v1/models", Some(&body), None).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("budget"),
        "{}",
        r.body
    );
    // Unloading the first makes room.
    let r = call(
        s.addr,
        "POST",
        "/v1/models/one/versions/1/unload",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = call(s.addr, "POST", "/v1/models/two/versions/1/load", None, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_guard_everything_but_health() {
    let root = repo_root();
    let s = start(root.path(), &[spec("glm", "a")], |c| {
        c.token = Some("s3cret".into())
    })
    .await;
    assert_eq!(call(s.addr, "GET", "/health", None, None).await.status, 200);
    let r = call(s.addr, "GET", "/v1/models", None, None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    assert_eq!(
        call(s.addr, "GET", "/v1/models", None, Some("wrong"))
            .await
            .status,
        401
    );
    assert_eq!(
        call(s.addr, "GET", "/v1/models", None, Some("s3cret"))
            .await
            .status,
        200
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_naming_the_problem() {
    let root = repo_root();
    let s = start(root.path(), &[spec("glm", "a")], |c| {
        c.limits.max_body_bytes = 4096;
        c.limits.max_tokens = 64;
    })
    .await;
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "POST",
            "/v1/completions",
            b"{not json".to_vec(),
            400,
            "invalid",
        ),
        (
            "POST",
            "/v1/completions",
            br#"{"prompt": 5}"#.to_vec(),
            400,
            "prompt",
        ),
        (
            "POST",
            "/v1/completions",
            br#"{"prompt": [1], "max_tokens": "x"}"#.to_vec(),
            400,
            "invalid type",
        ),
        (
            "POST",
            "/v1/completions",
            br#"{"prompt": [1], "max_tokens": 100000}"#.to_vec(),
            400,
            "max_tokens",
        ),
        (
            "POST",
            "/v1/completions",
            br#"{"prompt": [1], "model": "nope"}"#.to_vec(),
            404,
            "nope",
        ),
        (
            "POST",
            "/v1/completions",
            br#"{"prompt": [], "max_tokens": 2}"#.to_vec(),
            400,
            "empty",
        ),
        (
            "POST",
            "/v1/completions",
            br#"{"prompt": [4000000000]}"#.to_vec(),
            400,
            "vocabulary",
        ),
        (
            "POST",
            "/v1/completions",
            br#"{"prompt": [1], "temperature": -1}"#.to_vec(),
            400,
            "temperature",
        ),
        (
            "POST",
            "/v1/completions",
            br#"{"prompt": [1], "n": 3}"#.to_vec(),
            400,
            "n = 1",
        ),
        ("POST", "/v1/completions", vec![b'x'; 10_000], 413, "over"),
        (
            "POST",
            "/v1/models/glm/versions/x/load",
            vec![],
            400,
            "not a number",
        ),
        (
            "POST",
            "/v1/models/glm/versions/1/explode",
            vec![],
            404,
            "explode",
        ),
        ("GET", "/v1/completions", vec![], 405, "method"),
        ("GET", "/nowhere", vec![], 404, "route"),
    ];
    for (method, path, body, status, needle) in cases {
        let r = call_raw(s.addr, method, path, Some(body.clone()), None).await;
        assert_eq!(
            r.status,
            status,
            "{method} {path} {:?}: {}",
            String::from_utf8_lossy(&body[..body.len().min(60)]),
            r.body
        );
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(needle), "{path}: '{msg}' lacks '{needle}'");
    }
    // The server still answers.
    let body = json!({"prompt": [1, 2], "max_tokens": 2}).to_string();
    assert_eq!(
        post(s.addr, "/v1/models/glm/infer", &body).await.status,
        200
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_answers_come_from_the_response_cache_the_second_time() {
    let root = repo_root();
    let s = start(root.path(), &[spec("glm", "a")], |_| {}).await;
    let body = json!({"prompt": [3, 1, 4, 1, 5], "max_tokens": 6, "ignore_eos": true}).to_string();
    let a = post(s.addr, "/v1/models/glm/infer", &body).await.json();
    let b = post(s.addr, "/v1/models/glm/infer", &body).await.json();
    assert_eq!(a["tokens"], b["tokens"]);
    let m = call(s.addr, "GET", "/metrics", None, None).await.body;
    assert!(m.contains("autoglm_response_cache_hits_total 1"), "{m}");
    // Sampling is not cached.
    let body =
        json!({"prompt": [3, 1, 4], "max_tokens": 3, "temperature": 1.0, "seed": 1}).to_string();
    post(s.addr, "/v1/models/glm/infer", &body).await;
    post(s.addr, "/v1/models/glm/infer", &body).await;
    let m = call(s.addr, "GET", "/metrics", None, None).await.body;
    assert!(m.contains("autoglm_response_cache_hits_total 1"), "{m}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests() {
    // The fixture generates 250 tokens in milliseconds, so a poll can miss the window
    // in which every request has arrived and some still run. An attempt that misses
    // it (all finished before the stop) still checks every answer and tries again
    // with more requests; one attempt must stop the server mid-generation.
    const N: [usize; 5] = [4, 8, 16, 32, 64];
    let mut stopped_while_running = None;
    for (attempt, n) in N.into_iter().enumerate() {
        let root = repo_root();
        let s = start(root.path(), &[spec("glm", "a")], |c| c.cache_bytes = 0).await;
        let addr = s.addr;
        let tasks: Vec<_> = (0..n as u32)
            .map(|i| {
                let body = json!({"prompt": [i % 300 + 1, 2, 3], "max_tokens": 250,
                                  "ignore_eos": true, "stream": true, "temperature": 0})
                .to_string();
                tokio::spawn(async move {
                    call(addr, "POST", "/v1/completions", Some(&body), None).await
                })
            })
            .collect();
        // Stop the server while they run, once all have arrived (a connection the
        // server has not accepted yet when it stops accepting is reset, not drained).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut running = false;
        while std::time::Instant::now() < deadline {
            if tasks.iter().all(|t| t.is_finished()) {
                break;
            }
            let m = call(addr, "GET", "/metrics", None, None).await.body;
            let arrived: f64 = m
                .lines()
                .filter(|l| l.starts_with("autoglm_requests_arrived"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            running = arrived >= n as f64
                && m.lines()
                    .any(|l| l.starts_with("autoglm_running_sequences{") && !l.ends_with(" 0"));
            if running {
                break;
            }
        }
        s.stop().await;
        for t in tasks {
            let r = t.await.unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
            let events = sse_events(&r.body);
            assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
            let got: usize = events[..events.len() - 1]
                .iter()
                .filter_map(|e| serde_json::from_str::<Value>(e).ok())
                .filter_map(|v| v["choices"][0]["tokens"].as_array().map(Vec::len))
                .sum();
            assert_eq!(got, 250);
        }
        if running {
            stopped_while_running = Some(attempt);
            break;
        }
    }
    assert!(
        stopped_while_running.is_some(),
        "no attempt stopped the server while its requests ran"
    );
}

/// The memory budget counts the weights as they are stored: the same model takes
/// fewer bytes in f16 than in f32 and fewer again in q8_0, by what its matrices save,
/// and a budget that f32 overflows holds the quantized copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_counts_the_stored_bytes() {
    use autoglm_models::Storage;
    let root = repo_root();
    let mut used = Vec::new();
    for weights in [Storage::F32, Storage::F16, Storage::Q8_0] {
        let s = start(root.path(), &[spec("glm", "a")], |c| {
            c.repo.weights = Some(weights)
        })
        .await;
        let r = call(s.addr, "GET", "/v1/models", None, None).await;
        used.push(r.json()["memory_used_bytes"].as_u64().unwrap());
        // It still generates.
        let body = json!({"prompt": [1, 2, 3], "max_tokens": 4, "temperature": 0}).to_string();
        assert_eq!(post(s.addr, "/v1/completions", &body).await.status, 200);
        s.stop().await;
    }
    assert!(used[0] > used[1] && used[1] > used[2], "{used:?}");
    // Exactly what the loaded models hold: the f32 and f16 weight bytes differ by the
    // matrices' halves (the cache is the same).
    let model = |s| PagedModel::load_as(&root.path().join("a"), 1, Some(s)).unwrap();
    let (w32, w16) = (
        model(Storage::F32).weight_bytes(),
        model(Storage::F16).weight_bytes(),
    );
    assert_eq!(used[0] - used[1], (w32 - w16) as u64);
    // A budget between the two: f32 is refused, q8_0 loads.
    let budget = (used[0] + used[2]) as usize / 2;
    let tight = |w: Storage| {
        move |c: &mut autoglm_serve::ServerConfig| {
            c.repo.memory_budget = budget;
            c.repo.weights = Some(w);
        }
    };
    // (Fresh repositories: a registry remembers what it loaded.)
    let (fresh32, fresh8) = (repo_root(), repo_root());
    let s = start(fresh32.path(), &[], tight(Storage::F32)).await;
    let body = json!({"name": "glm", "path": "a"}).to_string();
    let r = call(s.addr, "POST", "/v1/models", Some(&body), None).await;
    assert_eq!(r.status, 409, "{}", r.body);
    s.stop().await;
    let s = start(fresh8.path(), &[], tight(Storage::Q8_0)).await;
    let r = call(s.addr, "POST", "/v1/models", Some(&body), None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    s.stop().await;
}
