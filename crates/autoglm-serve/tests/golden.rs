//! The server's outputs on the fixture, byte for byte: streamed `/v1/completions`
//! and `/completion`, whole `/v1/models/{name}/infer`, and the JSON error bodies,
//! compared with the files in `tests/golden/` after replacing only what varies by
//! run (completion ids, `created`, timings).
//!
//! `AUTOGLM_BLESS=1 cargo test -p autoglm-serve --test golden` writes the files that
//! are missing (and rewrites those that differ); without it a missing or different
//! file is a failure.
//!
//! The key order of the JSON bodies is that of the `autoglm` binary, whose build
//! turns on serde_json's `preserve_order` (this crate's dev-dependencies do too, so
//! `cargo test -p autoglm-serve` and `cargo test --workspace` print the same bytes).

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use common::{call, call_raw, repo_root, spec, start, Resp};
use serde_json::{json, Value};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn bless() -> bool {
    std::env::var_os("AUTOGLM_BLESS").is_some_and(|v| v == "1")
}

/// Replaces what varies by run: `id`, `created`, and timing figures (keys ending
/// in `_ms`, `predicted_per_second`).
fn normalise(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                match k.as_str() {
                    "id" if x.is_string() => *x = json!("<id>"),
                    "created" if x.is_number() => *x = json!(0),
                    k if (k.ends_with("_ms") || k == "predicted_per_second") && x.is_number() => {
                        *x = json!(0)
                    }
                    _ => normalise(x),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalise),
        _ => {}
    }
}

/// A JSON text with its varying fields replaced; it must be compact serde_json
/// output (parsing and printing it again gives the same bytes).
fn normalise_json(text: &str) -> String {
    let mut v: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(v.to_string(), text, "not compact serde_json output");
    normalise(&mut v);
    v.to_string()
}

/// The body with each SSE `data:` payload (or the whole JSON body) normalised;
/// SSE comments (keep-alives) are dropped, everything else is kept byte for byte.
fn normalise_body(r: &Resp) -> String {
    let sse = header(r, "content-type").starts_with("text/event-stream");
    if !sse {
        return if r.body.is_empty() {
            String::new()
        } else {
            normalise_json(&r.body) + "\n"
        };
    }
    let mut out = String::new();
    for event in r.body.split_inclusive("\n\n") {
        if event.starts_with(':') {
            continue;
        }
        for line in event.split_inclusive('\n') {
            match line.strip_prefix("data: ") {
                Some(d) if d.trim_end() != "[DONE]" => {
                    let payload = d.strip_suffix('\n').unwrap_or(d);
                    out.push_str("data: ");
                    out.push_str(&normalise_json(payload));
                    if d.ends_with('\n') {
                        out.push('\n');
                    }
                }
                _ => out.push_str(line),
            }
        }
    }
    out
}

fn header(r: &Resp, name: &str) -> String {
    r.headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// What a golden file holds: the request, the status and the headers that matter,
/// the normalised body.
fn render(method: &str, path: &str, body: &str, r: &Resp) -> String {
    let mut s = format!("{method} {path}\n{body}\n\nHTTP {}\n", r.status);
    for h in ["content-type", "retry-after", "www-authenticate"] {
        let v = header(r, h);
        if !v.is_empty() {
            writeln!(s, "{h}: {v}").unwrap();
        }
    }
    s.push('\n');
    s.push_str(&normalise_body(r));
    s
}

/// Compares `got` with `tests/golden/{name}.txt` (writing it under AUTOGLM_BLESS=1);
/// returns a description of the mismatch.
fn check(name: &str, got: &str) -> Option<String> {
    let file = golden_dir().join(format!("{name}.txt"));
    match std::fs::read_to_string(&file) {
        Ok(want) if want == got => None,
        _ if bless() => {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&file, got).unwrap();
            eprintln!("blessed {}", file.display());
            None
        }
        Ok(want) => Some(format!(
            "{name}: differs from {}\n--- want\n{want}\n--- got\n{got}",
            file.display()
        )),
        Err(e) => Some(format!(
            "{name}: {} ({e}); run with AUTOGLM_BLESS=1 to write it\n--- got\n{got}",
            file.display()
        )),
    }
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: String,
}

fn case(name: &'static str, method: &'static str, path: &'static str, body: Value) -> Case {
    Case {
        name,
        method,
        path,
        body: body.to_string(),
    }
}

/// A repository root with the fixture as `glm/` and, without its tokenizer, as
/// `ids/`.
fn root_with_untokenized() -> tempfile::TempDir {
    let root = repo_root();
    for (to, skip) in [("glm", ""), ("ids", "tokenizer.json")] {
        let to = root.path().join(to);
        std::fs::create_dir(&to).unwrap();
        for e in std::fs::read_dir(common::fixture()).unwrap() {
            let e = e.unwrap();
            if e.file_name() != skip {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
    root
}

async fn run_cases(addr: std::net::SocketAddr, cases: &[Case], token: Option<&str>) -> Vec<String> {
    let mut failures = Vec::new();
    for c in cases {
        let r = call_raw(
            addr,
            c.method,
            c.path,
            (c.method != "GET").then(|| c.body.clone().into_bytes()),
            token,
        )
        .await;
        let got = render(c.method, c.path, &c.body, &r);
        failures.extend(check(c.name, &got));
    }
    failures
}

const TEXT: &str = "The friendly cat is";
const IDS: [u32; 6] = [276, 297, 264, 268, 5, 9];
/// Greedy continuations that are byte-level pieces of multi-byte characters: a
/// three-byte character from three tokens, then bytes that never complete one.
const MULTIBYTE: [u32; 2] = [190, 100];
/// A two-byte character from two tokens first.
const MULTIBYTE2: [u32; 2] = [223, 100];

fn streaming_cases() -> Vec<Case> {
    vec![
        // OpenAI completions, streamed, greedy.
        case(
            "openai_stream_text",
            "POST",
            "/v1/completions",
            json!({"model": "glm", "prompt": TEXT, "max_tokens": 40, "temperature": 0,
                   "ignore_eos": true, "stream": true}),
        ),
        case(
            "openai_stream_ids",
            "POST",
            "/v1/completions",
            json!({"model": "glm", "prompt": IDS, "max_tokens": 24, "temperature": 0,
                   "ignore_eos": true, "stream": true}),
        ),
        case(
            "openai_stream_stop",
            "POST",
            "/v1/completions",
            json!({"model": "glm", "prompt": TEXT, "max_tokens": 40, "temperature": 0,
                   "ignore_eos": true, "stream": true, "stop": ["ve"]}),
        ),
        case(
            "openai_stream_stop_across",
            "POST",
            "/v1/completions",
            json!({"model": "glm", "prompt": IDS, "max_tokens": 24, "temperature": 0,
                   "ignore_eos": true, "stream": true, "stop": ["Jver", "never"]}),
        ),
        case(
            "openai_stream_multibyte",
            "POST",
            "/v1/completions",
            json!({"model": "glm", "prompt": MULTIBYTE, "max_tokens": 24, "temperature": 0,
                   "ignore_eos": true, "stream": true}),
        ),
        case(
            "openai_stream_multibyte_stop",
            "POST",
            "/v1/completions",
            json!({"model": "glm", "prompt": MULTIBYTE, "max_tokens": 24, "temperature": 0,
                   "ignore_eos": true, "stream": true, "stop": " fo"}),
        ),
        case(
            "openai_stream_untokenized",
            "POST",
            "/v1/completions",
            json!({"model": "ids", "prompt": IDS, "max_tokens": 8, "temperature": 0,
                   "ignore_eos": true, "stream": true}),
        ),
        case(
            "openai_stream_eos",
            "POST",
            "/v1/completions",
            json!({"model": "glm", "prompt": TEXT, "max_tokens": 40, "temperature": 0,
                   "stream": true}),
        ),
        case(
            "openai_whole_text",
            "POST",
            "/v1/completions",
            json!({"model": "glm", "prompt": TEXT, "max_tokens": 40, "temperature": 0,
                   "ignore_eos": true}),
        ),
        // llama.cpp's /completion, streamed.
        case(
            "llama_stream_text",
            "POST",
            "/completion",
            json!({"model": "glm", "prompt": TEXT, "n_predict": 40, "temperature": 0,
                   "ignore_eos": true, "stream": true}),
        ),
        case(
            "llama_stream_ids",
            "POST",
            "/completion",
            json!({"model": "glm", "prompt": IDS, "n_predict": 24, "temperature": 0,
                   "ignore_eos": true, "stream": true}),
        ),
        case(
            "llama_stream_stop",
            "POST",
            "/completion",
            json!({"model": "glm", "prompt": TEXT, "n_predict": 40, "temperature": 0,
                   "ignore_eos": true, "stream": true, "stop": "ve"}),
        ),
        case(
            "llama_stream_multibyte",
            "POST",
            "/completion",
            json!({"model": "glm", "prompt": MULTIBYTE2, "n_predict": 24, "temperature": 0,
                   "ignore_eos": true, "stream": true}),
        ),
        case(
            "llama_stream_untokenized",
            "POST",
            "/completion",
            json!({"model": "ids", "prompt": IDS, "n_predict": 8, "temperature": 0,
                   "ignore_eos": true, "stream": true}),
        ),
        case(
            "llama_whole_text",
            "POST",
            "/completion",
            json!({"model": "glm", "prompt": TEXT, "n_predict": 40, "temperature": 0,
                   "ignore_eos": true}),
        ),
        // Whole inference.
        case(
            "infer_text",
            "POST",
            "/v1/models/glm/infer",
            json!({"prompt": TEXT, "max_tokens": 40, "ignore_eos": true}),
        ),
        case(
            "infer_ids",
            "POST",
            "/v1/models/glm/infer",
            json!({"prompt": IDS, "max_tokens": 24, "ignore_eos": true}),
        ),
        case(
            "infer_stop",
            "POST",
            "/v1/models/glm/infer",
            json!({"prompt": TEXT, "max_tokens": 40, "ignore_eos": true, "stop": "Jver"}),
        ),
        case(
            "infer_multibyte",
            "POST",
            "/v1/models/glm/infer",
            json!({"prompt": MULTIBYTE, "max_tokens": 24, "ignore_eos": true}),
        ),
        case(
            "infer_untokenized",
            "POST",
            "/v1/models/ids/infer",
            json!({"prompt": IDS, "max_tokens": 8, "ignore_eos": true}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_bodies_match_the_golden_files() {
    let root = root_with_untokenized();
    let s = start(
        root.path(),
        &[spec("glm", "glm"), spec("ids", "ids")],
        |_| {},
    )
    .await;
    let cases = streaming_cases();
    let mut failures = run_cases(s.addr, &cases, None).await;
    // Again: greedy requests without stop strings now come from the response
    // cache, with the same bytes.
    failures.extend(run_cases(s.addr, &cases, None).await);
    s.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_match_the_golden_files() {
    let root = root_with_untokenized();
    let s = start(
        root.path(),
        &[spec("glm", "glm"), spec("ids", "ids")],
        |_| {},
    )
    .await;
    let bad = |name, path, body: &str| Case {
        name,
        method: "POST",
        path,
        body: body.to_string(),
    };
    let cases = [
        bad("error_not_json", "/v1/completions", "{\"prompt\": [1, 2"),
        bad(
            "error_wrong_shape",
            "/v1/completions",
            r#"{"prompt": {"a": 1}}"#,
        ),
        bad(
            "error_unknown_field",
            "/v1/models/glm/infer",
            r#"{"prompt": [1], "bogus": 1}"#,
        ),
        bad(
            "error_unknown_model",
            "/v1/completions",
            r#"{"prompt": [1], "model": "ghost"}"#,
        ),
        bad(
            "error_model_required",
            "/v1/completions",
            r#"{"prompt": [1]}"#,
        ),
        bad(
            "error_n",
            "/v1/completions",
            r#"{"prompt": [1], "model": "glm", "n": 2}"#,
        ),
        bad(
            "error_max_tokens",
            "/v1/completions",
            r#"{"prompt": [1], "model": "glm", "max_tokens": 99999999}"#,
        ),
        bad(
            "error_text_without_tokenizer",
            "/v1/models/ids/infer",
            r#"{"prompt": "hello"}"#,
        ),
        bad(
            "error_stop_without_tokenizer",
            "/v1/models/ids/infer",
            r#"{"prompt": [1], "stop": "x"}"#,
        ),
        bad("error_bad_version", "/v1/models/glm/versions/x/load", ""),
        bad("error_no_route", "/v2/nothing", "{}"),
        Case {
            name: "error_method",
            method: "GET",
            path: "/v1/completions",
            body: String::new(),
        },
        bad(
            "error_too_large",
            "/v1/completions",
            &format!("{{\"prompt\": \"{}\"}}", "x".repeat(2 << 20)),
        ),
        bad(
            "error_infer_stream",
            "/v1/models/glm/infer",
            r#"{"prompt": [1], "stream": true}"#,
        ),
        bad(
            "error_temperature",
            "/v1/completions",
            r#"{"prompt": [1], "model": "glm", "temperature": 1e300}"#,
        ),
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let r = call_raw(
            s.addr,
            c.method,
            c.path,
            (c.method != "GET").then(|| c.body.clone().into_bytes()),
            None,
        )
        .await;
        // The 2 MiB body is not repeated in the file.
        let shown = if c.body.len() > 200 {
            "<2 MiB prompt>"
        } else {
            &c.body
        };
        failures.extend(check(c.name, &render(c.method, c.path, shown, &r)));
    }
    s.stop().await;

    // A server with a token, and one with no model loaded.
    let s = start(root.path(), &[spec("glm", "glm")], |c| {
        c.token = Some("secret".into());
    })
    .await;
    let r = call(s.addr, "GET", "/v1/models", None, Some("wrong")).await;
    failures.extend(check(
        "error_unauthorized",
        &render("GET", "/v1/models", "", &r),
    ));
    s.stop().await;
    let empty = tempfile::tempdir().unwrap();
    let s = start(empty.path(), &[], |_| {}).await;
    let r = call(s.addr, "GET", "/ready", None, None).await;
    failures.extend(check("error_not_ready", &render("GET", "/ready", "", &r)));
    s.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
