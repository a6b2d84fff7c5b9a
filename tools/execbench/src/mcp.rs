//! A minimal MCP Streamable HTTP client spoken by hand with reqwest, and the
//! plain chat-completions client the baselines use.
//!
//! The approach is `tools/loadgen`'s (a binary package, so it is not linked):
//! one connection per client (HTTP/1.1 keep-alive, `TCP_NODELAY`), `initialize`
//! → `mcp-session-id` → `notifications/initialized`, replies read as JSON or SSE
//! and the clock stopped as soon as the response to the request id is parsed.
//! It knows nothing about vaultline's tools; `main.rs` decides what to call.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{Response, header};
use serde_json::{Value, json};

/// The protocol version offered in `initialize`.
const PROTOCOL_VERSION: &str = "2025-11-25";
/// Longest wait for the rest of an SSE body after its response arrived.
const DRAIN: Duration = Duration::from_millis(500);

/// A client as every measured call uses it: its own connection pool, no proxy,
/// `TCP_NODELAY`, a generous timeout.
pub fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// One MCP session with a bearer key.
pub struct Session {
    client: reqwest::Client,
    url: String,
    bearer: String,
    session_id: Option<String>,
    next_id: u64,
}

impl Session {
    /// Connect and run the `initialize` handshake.
    pub async fn open(url: &str, bearer: &str) -> Result<Session> {
        let mut s = Session {
            client: client()?,
            url: url.to_string(),
            bearer: bearer.to_string(),
            session_id: None,
            next_id: 1,
        };
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "vaultline-execbench", "version": env!("CARGO_PKG_VERSION")}
        }});
        let resp = s.post(init.to_string()).await?;
        s.session_id = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let reply = read_response(resp, 0).await?;
        if reply.get("result").is_none() {
            bail!("initialize failed: {reply}");
        }
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        drain(s.post(note.to_string()).await?).await;
        Ok(s)
    }

    async fn post(&self, body: String) -> Result<Response> {
        let mut b = self
            .client
            .post(&self.url)
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(header::CONTENT_TYPE, "application/json")
            .header("MCP-Protocol-Version", PROTOCOL_VERSION)
            .bearer_auth(&self.bearer)
            .body(body);
        if let Some(sid) = &self.session_id {
            b = b.header("mcp-session-id", sid);
        }
        let resp = b.send().await?;
        let status = resp.status();
        if !status.is_success() {
            let text: String = resp
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            bail!("HTTP {status}: {text}");
        }
        Ok(resp)
    }

    /// `tools/call name arguments`; returns the latency to the parsed response
    /// and the tool's result. A JSON-RPC error or an `isError` result is an error.
    pub async fn call_tool(&mut self, name: &str, arguments: &Value) -> Result<(Duration, Value)> {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}})
        .to_string();
        let start = Instant::now();
        let resp = self.post(body).await?;
        let reply = read_response(resp, id).await?;
        let latency = start.elapsed();
        let result = reply
            .get("result")
            .ok_or_else(|| anyhow!("{name}: JSON-RPC error {}", short(&reply)))?;
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            bail!("{name}: isError {}", short(result));
        }
        Ok((latency, result.clone()))
    }

    /// End the session (`DELETE`), ignoring failures.
    pub async fn close(self) {
        if let Some(sid) = &self.session_id
            && let Ok(resp) = self
                .client
                .delete(&self.url)
                .header("mcp-session-id", sid)
                .header("MCP-Protocol-Version", PROTOCOL_VERSION)
                .bearer_auth(&self.bearer)
                .send()
                .await
        {
            drain(resp).await;
        }
    }
}

/// Reads the response to `id` from a JSON or an SSE body.
async fn read_response(mut resp: Response, id: u64) -> Result<Value> {
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if !is_sse {
        let msg: Value = serde_json::from_slice(&resp.bytes().await?).context("a non-JSON body")?;
        return take_response(msg, id).ok_or_else(|| anyhow!("no response to id {id}"));
    }
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        buf.extend(chunk.iter().copied().filter(|&b| b != b'\r'));
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&block[..end]);
            let data: Vec<&str> = text
                .split('\n')
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            let Ok(msg) = serde_json::from_str::<Value>(&data.join("\n")) else {
                continue;
            };
            if let Some(reply) = take_response(msg, id) {
                drain(resp).await;
                return Ok(reply);
            }
        }
    }
    bail!("the SSE stream ended without a response to id {id}")
}

/// The response to `id` in a message or a batch.
fn take_response(msg: Value, id: u64) -> Option<Value> {
    match msg {
        Value::Array(items) => items.into_iter().find_map(|m| take_response(m, id)),
        Value::Object(_)
            if msg.get("id").and_then(Value::as_u64) == Some(id) && msg.get("method").is_none() =>
        {
            Some(msg)
        }
        _ => None,
    }
}

/// Reads what is left of a body so the connection is reused.
async fn drain(mut resp: Response) {
    let _ = tokio::time::timeout(DRAIN, async move {
        while let Ok(Some(_)) = resp.chunk().await {}
    })
    .await;
}

/// A JSON value as text, cut to 300 characters for error messages.
pub fn short(v: &Value) -> String {
    v.to_string().chars().take(300).collect()
}

/// One `POST {base}/chat/completions` (the fake directly, or a proxy in front of
/// it); returns the latency to the whole parsed body. Anything but a 200 with
/// a choice is an error.
pub async fn chat(client: &reqwest::Client, url: &str, key: &str, body: &str) -> Result<Duration> {
    let start = Instant::now();
    let resp = client
        .post(url)
        .bearer_auth(key)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    let latency = start.elapsed();
    if !status.is_success() {
        bail!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        );
    }
    let v: Value = serde_json::from_slice(&bytes).context("a non-JSON completion")?;
    if v["choices"][0]["message"]["content"].as_str().is_none() {
        bail!("a completion without content: {}", short(&v));
    }
    Ok(latency)
}
