//! Test harness: the real `vaultline` binary on `127.0.0.1:0` or over stdio, a
//! real SQLite file in a temp dir, and rmcp's own client on the other end.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::RoleClient;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, Tool};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::Value;

pub type Client = RunningService<RoleClient, ()>;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vaultline")
}

/// Runs a CLI command against `db`; returns stdout (trimmed). Panics on failure.
pub fn cli(db: &Path, args: &[&str]) -> String {
    let out = Command::new(bin())
        .arg("--db")
        .arg(db)
        .args(args)
        .env("VAULTLINE_LOG__LEVEL", "warn")
        .output()
        .expect("run vaultline");
    assert!(
        out.status.success(),
        "vaultline {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Like `cli`, but returns (success, stdout, stderr).
pub fn cli_raw(db: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run vaultline");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("vaultline.db")
    }
    pub fn org(&self, org: &str) {
        cli(&self.db(), &["orgs", "create", org]);
    }
    pub fn key(&self, org: &str, role: &str) -> String {
        cli(
            &self.db(),
            &["keys", "create", "--org", org, "--role", role],
        )
    }
}

/// A running HTTP server; killed on drop.
pub struct Server {
    child: Child,
    pub base: String,
    pub url: String,
    pub log: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(env: &Env, extra: &[(&str, &str)], args: &[&str]) -> Server {
        let mut cmd = Command::new(bin());
        cmd.arg("--db")
            .arg(env.db())
            .args(["serve", "--http", "127.0.0.1:0"])
            .args(args)
            .env("VAULTLINE_LOG__LEVEL", "info,rmcp=warn")
            .env("VAULTLINE_AUTH__CACHE_TTL_MS", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn server");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("vaultline listening on ")
                    && let Some(t) = tx.take()
                {
                    let _ = t.send(rest.trim().to_string());
                }
                if let Ok(mut l) = log2.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("server did not start: {}", log.lock().unwrap()));
        let base = url.trim_end_matches("/mcp").to_string();
        Server {
            child,
            base,
            url,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn http_client(url: &str, key: &str) -> Client {
    let t = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).auth_header(key),
    );
    ().serve(t).await.expect("http client connects")
}

pub async fn stdio_client(env: &Env, extra: &[(&str, &str)]) -> Client {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.arg("--db")
        .arg(env.db())
        .args(["serve", "--stdio"])
        .env("VAULTLINE_LOG__LEVEL", "warn");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let t = TokioChildProcess::new(cmd).expect("spawn stdio server");
    ().serve(t).await.expect("stdio client connects")
}

/// The `/metrics` page as seen with `key` (which must be allowed to read it).
pub async fn metrics_page(base: &str, key: &str) -> String {
    let r = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "/metrics with this key");
    r.text().await.unwrap()
}

pub fn obj(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// Calls a tool; panics on a JSON-RPC error (not on an isError result).
pub async fn call(c: &Client, tool: &str, args: Value) -> CallToolResult {
    c.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(obj(args)))
        .await
        .unwrap_or_else(|e| panic!("{tool}: JSON-RPC error {e}"))
}

/// Calls a tool that must succeed and returns its structured content.
pub async fn ok(c: &Client, tool: &str, args: Value) -> Value {
    let r = call(c, tool, args.clone()).await;
    assert_ne!(r.is_error, Some(true), "{tool} {args} failed: {}", text(&r));
    r.structured_content
        .clone()
        .unwrap_or_else(|| panic!("{tool}: no structuredContent"))
}

/// Calls a tool that must fail in-band; returns the error text.
pub async fn fails(c: &Client, tool: &str, args: Value) -> String {
    let r = call(c, tool, args.clone()).await;
    assert_eq!(
        r.is_error,
        Some(true),
        "{tool} {args} should fail: {}",
        text(&r)
    );
    text(&r)
}

pub fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Output schemas by tool name, compiled.
pub struct Schemas(HashMap<String, jsonschema::Validator>);

impl Schemas {
    pub fn of(tools: &[Tool]) -> Schemas {
        let mut m = HashMap::new();
        for t in tools {
            let schema = Value::Object(
                t.output_schema
                    .as_ref()
                    .expect("every tool has an outputSchema")
                    .as_ref()
                    .clone(),
            );
            m.insert(
                t.name.to_string(),
                jsonschema::validator_for(&schema).expect("output schema compiles"),
            );
        }
        Schemas(m)
    }

    /// The structured result of a successful call must satisfy the tool's outputSchema.
    pub fn check(&self, tool: &str, structured: &Value) {
        let v = self
            .0
            .get(tool)
            .unwrap_or_else(|| panic!("no schema for {tool}"));
        let errors: Vec<String> = v
            .iter_errors(structured)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{tool} output violates its outputSchema: {errors:?}\n{structured}"
        );
    }
}

/// A raw HTTP exchange with `/mcp`, for what an MCP client library would hide.
pub struct Raw {
    pub http: reqwest::Client,
    pub url: String,
}

pub struct RawReply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl RawReply {
    /// The JSON-RPC message in a JSON or SSE body.
    pub fn json(&self) -> Value {
        if let Ok(v) = serde_json::from_str(&self.body) {
            return v;
        }
        for line in self.body.lines() {
            if let Some(d) = line.strip_prefix("data:")
                && let Ok(v) = serde_json::from_str::<Value>(d.trim())
            {
                return v;
            }
        }
        panic!("no JSON-RPC message in: {}", self.body)
    }
}

pub const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

impl Raw {
    pub fn new(url: &str) -> Raw {
        Raw {
            http: reqwest::Client::new(),
            url: url.to_string(),
        }
    }

    pub async fn post(
        &self,
        key: Option<&str>,
        sid: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> RawReply {
        let mut rb = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        if let Some(s) = sid {
            rb = rb
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let resp = rb.send().await.expect("http send");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        RawReply {
            status,
            headers,
            body,
        }
    }

    /// initialize + initialized; returns the session id.
    pub async fn session(&self, key: Option<&str>) -> String {
        let r = self.post(key, None, &[], INIT).await;
        assert_eq!(r.status, 200, "initialize: {}", r.body);
        let sid = r
            .headers
            .get("mcp-session-id")
            .expect("session id")
            .to_str()
            .unwrap()
            .to_string();
        let n = self
            .post(
                key,
                Some(&sid),
                &[],
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            )
            .await;
        assert_eq!(n.status, 202, "initialized: {}", n.body);
        sid
    }

    pub async fn call(&self, key: Option<&str>, sid: &str, tool: &str, args: Value) -> RawReply {
        let body = serde_json::json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":tool,"arguments":args}});
        self.post(key, Some(sid), &[], body.to_string()).await
    }
}
