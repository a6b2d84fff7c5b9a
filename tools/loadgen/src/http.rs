//! MCP Streamable HTTP, spoken by hand with reqwest, and the HTTP load loop.
//!
//! A [`Session`] is one client: its own connection (HTTP/1.1 keep-alive,
//! `TCP_NODELAY`), and unless stateless, its own MCP session (`initialize` →
//! `mcp-session-id` → `notifications/initialized`, `DELETE` at the end).
//! Replies may be plain JSON or SSE; SSE bodies are parsed incrementally and the
//! clock stops as soon as the response to the request id has arrived.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{Method, RequestBuilder, Response, Url, header};
use serde_json::Value;
use tokio::task::JoinSet;

use crate::{
    Plan,
    jsonrpc::{self, SseParser},
    stats::Stats,
};

/// Longest wait for the rest of an SSE body after its response arrived (so the
/// connection can be reused); only paid when a server keeps the stream open.
const DRAIN: Duration = Duration::from_millis(500);
/// A worker stops after this many failures in a row (the server is gone or broken).
const MAX_CONSECUTIVE_ERRORS: u32 = 200;
/// At most this many error messages are printed per process.
const MAX_ERRORS_SHOWN: u64 = 5;

static ERRORS_SHOWN: AtomicU64 = AtomicU64::new(0);

/// Print one of the first few errors to stderr.
pub fn show_error(context: &str, err: &str) {
    if ERRORS_SHOWN.fetch_add(1, Ordering::Relaxed) < MAX_ERRORS_SHOWN {
        eprintln!("loadgen: {context}: {err}");
    }
}

/// Where and how to talk to the server.
#[derive(Debug, Clone)]
pub struct Target {
    /// The MCP endpoint, e.g. `http://127.0.0.1:8080/mcp` (loopback only).
    pub url: Url,
    /// Optional `Authorization: Bearer` token.
    pub bearer: Option<String>,
    /// Protocol version offered in `initialize` and sent in `MCP-Protocol-Version`.
    pub protocol_version: String,
    /// No `initialize`, no session: every POST stands alone.
    pub stateless: bool,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Target {
    /// True when requests carry no session (explicitly, or because the version has none).
    pub fn sessionless(&self) -> bool {
        self.stateless || jsonrpc::is_sessionless(&self.protocol_version)
    }
}

/// One MCP client over Streamable HTTP.
#[derive(Debug)]
pub struct Session {
    client: reqwest::Client,
    target: Arc<Target>,
    session_id: Option<String>,
    version: String,
    next_id: u64,
}

impl Session {
    /// Connect and, unless sessionless, run the `initialize` handshake.
    pub async fn open(target: Arc<Target>) -> Result<Self> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .timeout(target.timeout)
            .build()?;
        let mut s = Session {
            client,
            version: target.protocol_version.clone(),
            target,
            session_id: None,
            next_id: 1,
        };
        if s.target.sessionless() {
            return Ok(s);
        }
        let init = jsonrpc::request(
            0,
            "initialize",
            jsonrpc::initialize_params(&s.target.protocol_version),
        );
        let resp = s.post(init.to_string(), None).await?;
        s.session_id = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (_, reply) = read_response(resp, 0, Instant::now()).await?;
        let result = jsonrpc::result_ok(&reply).map_err(|e| anyhow!("initialize: {e}"))?;
        if let Some(v) = result.get("protocolVersion").and_then(Value::as_str) {
            s.version = v.to_owned();
        }
        let resp = s
            .post(
                jsonrpc::notification("notifications/initialized").to_string(),
                None,
            )
            .await?;
        drain(resp).await;
        Ok(s)
    }

    /// A request with the headers every message carries.
    fn builder(&self, method: Method) -> RequestBuilder {
        let mut b = self
            .client
            .request(method, self.target.url.clone())
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header("MCP-Protocol-Version", &self.version);
        if let Some(sid) = &self.session_id {
            b = b.header("mcp-session-id", sid);
        }
        if let Some(tok) = &self.target.bearer {
            b = b.bearer_auth(tok);
        }
        b
    }

    /// POST a JSON body; any non-2xx status is an error carrying the start of the body.
    async fn post(&self, body: String, method_headers: Option<(&str, &str)>) -> Result<Response> {
        let mut b = self
            .builder(Method::POST)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some((method, name)) = method_headers {
            b = b.header("Mcp-Method", method);
            if !name.is_empty() {
                b = b.header("Mcp-Name", name);
            }
        }
        let resp = b.send().await?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let text: String = text.chars().take(300).collect();
            bail!("HTTP {status}: {text}");
        }
        Ok(resp)
    }

    /// Send request `method` with pre-serialized `params`; returns the latency up
    /// to the response and the response object. `name` goes in `Mcp-Name`
    /// (sessionless versions only).
    pub async fn call(
        &mut self,
        method: &str,
        params: &str,
        name: &str,
    ) -> (Duration, Result<Value>) {
        let id = self.next_id;
        self.next_id += 1;
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#);
        let headers = jsonrpc::is_sessionless(&self.version).then_some((method, name));
        let start = Instant::now();
        let result = match self.post(body, headers).await {
            Ok(resp) => read_response(resp, id, start).await,
            Err(e) => Err(e),
        };
        match result {
            Ok((latency, v)) => (latency, Ok(v)),
            Err(e) => (start.elapsed(), Err(e)),
        }
    }

    /// End the session (`DELETE`), ignoring failures.
    pub async fn close(self) {
        if self.session_id.is_some()
            && let Ok(resp) = self.builder(Method::DELETE).send().await
        {
            drain(resp).await;
        }
    }
}

/// Read the response to `id` from a JSON or SSE body; the latency is measured
/// from `start` to the moment that response was parsed.
async fn read_response(mut resp: Response, id: u64, start: Instant) -> Result<(Duration, Value)> {
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if !is_sse {
        let bytes = resp.bytes().await?;
        let latency = start.elapsed();
        let msg: Value = serde_json::from_slice(&bytes).context("response body is not JSON")?;
        let reply = jsonrpc::take_response(msg, id)
            .ok_or_else(|| anyhow!("no response to id {id} in JSON body"))?;
        return Ok((latency, reply));
    }
    let mut parser = SseParser::default();
    while let Some(chunk) = resp.chunk().await? {
        for data in parser.push(&chunk) {
            let Ok(msg) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            if let Some(reply) = jsonrpc::take_response(msg, id) {
                let latency = start.elapsed();
                drain(resp).await;
                return Ok((latency, reply));
            }
        }
    }
    bail!("SSE stream ended without a response to id {id}")
}

/// Read what is left of a body (bounded by [`DRAIN`]) so the connection is reused.
async fn drain(mut resp: Response) {
    let _ = tokio::time::timeout(DRAIN, async move {
        while let Ok(Some(_)) = resp.chunk().await {}
    })
    .await;
}

/// `params` as sent: `value`, plus the per-request `_meta` that sessionless versions need.
pub fn params_json(mut value: Value, target: &Target) -> String {
    if jsonrpc::is_sessionless(&target.protocol_version)
        && let Some(obj) = value.as_object_mut()
    {
        obj.insert(
            "_meta".to_owned(),
            jsonrpc::sessionless_meta(&target.protocol_version),
        );
    }
    value.to_string()
}

/// Run `plan` against `target`: open C sessions, then C workers call `tool` in a
/// loop. Returns the measured-window stats and the window's length.
pub async fn run(
    target: Arc<Target>,
    plan: &Plan,
    tool: &str,
    args: Value,
) -> Result<(Stats, Duration)> {
    let params: Arc<str> = params_json(
        serde_json::json!({ "name": tool, "arguments": args }),
        &target,
    )
    .into();
    let tool: Arc<str> = tool.into();

    let mut opening = JoinSet::new();
    for _ in 0..plan.concurrency {
        opening.spawn(Session::open(target.clone()));
    }
    let mut sessions = Vec::with_capacity(plan.concurrency);
    let mut open_error = None;
    while let Some(joined) = opening.join_next().await {
        match joined? {
            Ok(s) => sessions.push(s),
            Err(e) => open_error = Some(e),
        }
    }
    if let Some(e) = open_error {
        close_all(sessions).await;
        return Err(e.context("opening a session"));
    }

    let warm_end = Instant::now() + plan.warmup;
    let deadline = warm_end + plan.duration;
    let issued = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for session in sessions {
        let w = Worker {
            tool: tool.clone(),
            params: params.clone(),
            warm_end,
            deadline,
            max_calls: plan.max_calls,
            issued: issued.clone(),
        };
        workers.spawn(w.run(session));
    }
    let mut stats = Stats::default();
    let mut end = warm_end;
    let mut done = Vec::with_capacity(plan.concurrency);
    while let Some(joined) = workers.join_next().await {
        let (session, worker_stats, finished) = joined?;
        stats.merge(worker_stats);
        end = end.max(finished);
        done.push(session);
    }
    close_all(done).await;
    Ok((stats, end.saturating_duration_since(warm_end)))
}

/// End every session concurrently.
async fn close_all(sessions: Vec<Session>) {
    let mut closing = JoinSet::new();
    for s in sessions {
        closing.spawn(s.close());
    }
    while closing.join_next().await.is_some() {}
}

/// One worker's share of the plan.
struct Worker {
    tool: Arc<str>,
    params: Arc<str>,
    warm_end: Instant,
    deadline: Instant,
    max_calls: u64,
    issued: Arc<AtomicU64>,
}

impl Worker {
    /// Call until the deadline or the shared call budget is spent.
    async fn run(self, mut session: Session) -> (Session, Stats, Instant) {
        let mut stats = Stats::default();
        let mut failures_in_a_row = 0;
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                break;
            }
            let measured = now >= self.warm_end;
            if measured && self.issued.fetch_add(1, Ordering::Relaxed) >= self.max_calls {
                break;
            }
            let (latency, reply) = session.call("tools/call", &self.params, &self.tool).await;
            let outcome = reply
                .map_err(|e| format!("{e:#}"))
                .and_then(|v| jsonrpc::call_ok(&v));
            match &outcome {
                Ok(()) => failures_in_a_row = 0,
                Err(e) => {
                    failures_in_a_row += 1;
                    show_error("tools/call", e);
                }
            }
            if measured {
                stats.record(latency, outcome.is_ok());
            }
            if failures_in_a_row >= MAX_CONSECUTIVE_ERRORS {
                eprintln!("loadgen: worker stops after {MAX_CONSECUTIVE_ERRORS} failures in a row");
                break;
            }
        }
        (session, stats, Instant::now())
    }
}
