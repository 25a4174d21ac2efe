//! Starting a real server on a loopback port, and a small HTTP client.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use autoglm_serve::{ModelSpec, Server, ServerConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;

/// The models crate's transformers-made fixture (GQA, biases, partial rotary).
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../autoglm-models/tests/fixtures/glm_gqa_bias")
}

/// A repository root holding copies of the fixture as `a/` and `b/`.
pub fn repo_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b"] {
        let to = dir.path().join(name);
        std::fs::create_dir(&to).unwrap();
        for e in std::fs::read_dir(fixture()).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    dir
}

pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

/// Starts a server on 127.0.0.1:0 over `root`, loading `models`.
pub async fn start(
    root: &Path,
    models: &[ModelSpec],
    tweak: impl FnOnce(&mut ServerConfig),
) -> Running {
    let mut cfg = ServerConfig::new(root.to_path_buf());
    cfg.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.repo.engine.kv_cache_bytes = 4 << 20;
    tweak(&mut cfg);
    let (server, warnings) = Server::bind(cfg, models).await.unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let addr = server.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        stop: Some(tx),
        task: Some(task),
    }
}

pub fn spec(name: &str, path: &str) -> ModelSpec {
    ModelSpec {
        name: name.into(),
        path: path.into(),
        version: None,
        policy: None,
        version_policy: None,
    }
}

/// A response: status, headers, body.
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A POST of a JSON body, without a token.
pub async fn post(addr: SocketAddr, path: &str, body: &str) -> Resp {
    call(addr, "POST", path, Some(body), None).await
}

/// One request on its own connection.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Resp {
    call_raw(
        addr,
        method,
        path,
        body.map(|b| b.as_bytes().to_vec()),
        token,
    )
    .await
}

pub async fn call_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    token: Option<&str>,
) -> Resp {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// The `data:` payloads of an SSE body.
pub fn sse_events(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim().to_string())
        .collect()
}
