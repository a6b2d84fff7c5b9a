//! A fake LLM provider: a real HTTP server on 127.0.0.1 speaking three wire
//! formats on their real routes, scripted per model, for tests and benchmarks.
//!
//! - OpenAI chat completions: `POST /v1/chat/completions` (`Authorization: Bearer`),
//!   so a client's base URL is `http://127.0.0.1:P/v1`;
//! - Anthropic Messages: `POST /v1/messages` (`x-api-key`), base `http://127.0.0.1:P`;
//! - Gemini: `POST /v1beta/models/{model}:generateContent` (`x-goog-api-key`),
//!   base `http://127.0.0.1:P/v1beta`.
//!
//! Each model has a queue of [`Step`]s: a request takes the next one; the last
//! step repeats once the queue is down to it; a model with no script gets a
//! default answer. A request header `x-fake-step` carrying a step as JSON wins
//! over the queue. A wrong key gets that format's own auth error (Gemini's is a
//! 400 `API_KEY_INVALID`, as the real API answers); the OpenAI one echoes the
//! key in full, unlike OpenAI, so clients' scrubbing is tested over the wire.
//! Every request is recorded ([`Recorded`]; the key only as an index).
//!
//! Control from Rust ([`FakeProvider`]) or over HTTP: `POST /_fake/script`
//! (`{"model": "m", "steps": [..]}`), `GET /_fake/requests`, `POST /_fake/reset`.
//!
//! Token counts are one per whitespace-separated word (at least one), so tests
//! can predict them. This crate must not depend on vaultline: it follows the
//! providers' documents, not the adapters' reading of them.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The key [`FakeProvider::start`] accepts.
pub const DEFAULT_KEY: &str = "fake-key-0000000001";
/// The header that carries one step for one request, as JSON.
pub const STEP_HEADER: &str = "x-fake-step";
/// How long a `hang` step waits if the client never goes away.
pub const HANG_LIMIT: Duration = Duration::from_secs(300);

/// The wire format of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Openai,
    Anthropic,
    Gemini,
}

/// What the fake does with one request.
///
/// As JSON: `{"answer": {"text": "hi", "usage": true, "cost_usd": 0.001}}`,
/// `"bad_json"`, `{"status": {"code": 429, "retry_after": "2", "body": ..}}`,
/// `"hang"`, `{"delay": {"ms": 50, "answer": {"text": "late"}}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// A 200 answer in the request's format.
    Answer(Reply),
    /// A 200 whose body is not JSON.
    BadJson,
    /// An error status. Without `body`, the format's own error body for the code;
    /// a string `body` is sent as text, anything else as JSON. `retry_after` is
    /// sent as the `Retry-After` header (OpenAI, Anthropic) or as the 429's
    /// `RetryInfo.retryDelay` (Gemini, which sends no header). A 3xx carries a
    /// `Location` on this server that answers 404.
    Status {
        code: u16,
        #[serde(default)]
        body: Option<Value>,
        #[serde(default)]
        retry_after: Option<String>,
    },
    /// Never answers: waits until the client drops the request (at most [`HANG_LIMIT`]).
    Hang,
    /// Waits `ms` milliseconds, then answers.
    Delay { ms: u64, answer: Reply },
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The text; default `fake answer from {model}`.
    #[serde(default)]
    pub text: Option<String>,
    /// Whether the answer reports token usage (default true).
    #[serde(default = "yes")]
    pub usage: bool,
    /// A cost to report (OpenAI format only): `usage.cost` as OpenRouter sends it
    /// when usage is on, and LiteLLM's `x-litellm-response-cost` header always.
    #[serde(default)]
    pub cost_usd: Option<f64>,
}

fn yes() -> bool {
    true
}

impl Default for Reply {
    fn default() -> Reply {
        Reply {
            text: None,
            usage: true,
            cost_usd: None,
        }
    }
}

impl Step {
    /// An answer with this text and usage.
    pub fn answer(text: &str) -> Step {
        Step::Answer(Reply {
            text: Some(text.to_string()),
            ..Reply::default()
        })
    }

    /// An answer with this text and no usage.
    pub fn answer_without_usage(text: &str) -> Step {
        Step::Answer(Reply {
            text: Some(text.to_string()),
            usage: false,
            cost_usd: None,
        })
    }

    /// The format's own error body for `code`.
    pub fn status(code: u16) -> Step {
        Step::Status {
            code,
            body: None,
            retry_after: None,
        }
    }

    /// The format's own error body for `code`, with a retry hint.
    pub fn status_retry_after(code: u16, retry_after: &str) -> Step {
        Step::Status {
            code,
            body: None,
            retry_after: Some(retry_after.to_string()),
        }
    }

    /// An answer after `ms` milliseconds.
    pub fn delay(ms: u64, text: &str) -> Step {
        Step::Delay {
            ms,
            answer: Reply {
                text: Some(text.to_string()),
                ..Reply::default()
            },
        }
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub format: Format,
    pub model: String,
    pub system: Option<String>,
    /// The user text (all user text parts, joined).
    pub prompt: String,
    /// Which accepted key was used (its index), or `None` for a missing or wrong key.
    pub key_index: Option<usize>,
    /// The request body as sent (keys travel in headers, never here).
    pub body: Value,
}

/// The body of `POST /_fake/script`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Script {
    pub model: String,
    pub steps: Vec<Step>,
}

#[derive(Default)]
struct Inner {
    scripts: HashMap<String, VecDeque<Step>>,
    requests: Vec<Recorded>,
}

struct Shared {
    keys: Vec<String>,
    inner: Mutex<Inner>,
    /// Hang steps that ended because the client went away.
    dropped: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the fake down with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn script(&self, model: &str, steps: Vec<Step>) {
        self.lock().scripts.insert(model.to_string(), steps.into());
    }

    fn next_step(&self, model: &str) -> Step {
        let mut inner = self.lock();
        match inner.scripts.get_mut(model) {
            Some(q) if q.len() > 1 => q.pop_front().unwrap_or_else(default_step),
            Some(q) => q.front().cloned().unwrap_or_else(default_step),
            None => default_step(),
        }
    }

    fn reset(&self) {
        *self.lock() = Inner::default();
        self.dropped.store(0, Ordering::Relaxed);
    }
}

fn default_step() -> Step {
    Step::Answer(Reply::default())
}

/// A running fake provider; stops when dropped.
pub struct FakeProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeProvider {
    /// Starts on `127.0.0.1:0` accepting [`DEFAULT_KEY`].
    pub async fn start() -> std::io::Result<FakeProvider> {
        FakeProvider::start_with_keys(vec![DEFAULT_KEY.to_string()]).await
    }

    /// Starts on `127.0.0.1:0` accepting these keys.
    pub async fn start_with_keys(keys: Vec<String>) -> std::io::Result<FakeProvider> {
        FakeProvider::bind(SocketAddr::from(([127, 0, 0, 1], 0)), keys).await
    }

    /// Starts on `addr` accepting these keys.
    pub async fn bind(addr: SocketAddr, keys: Vec<String>) -> std::io::Result<FakeProvider> {
        let shared = Arc::new(Shared {
            keys,
            inner: Mutex::new(Inner::default()),
            dropped: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            // Serving ends only with an accept error; nothing to report to.
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeProvider {
            addr,
            shared,
            server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:P`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL an OpenAI-compatible client is given: `http://127.0.0.1:P/v1`.
    pub fn openai_base(&self) -> String {
        format!("{}/v1", self.url())
    }

    /// The base URL an Anthropic client is given: `http://127.0.0.1:P`.
    pub fn anthropic_base(&self) -> String {
        self.url()
    }

    /// The base URL a Gemini client is given: `http://127.0.0.1:P/v1beta`.
    pub fn gemini_base(&self) -> String {
        format!("{}/v1beta", self.url())
    }

    /// Replaces `model`'s queue of steps.
    pub fn script(&self, model: &str, steps: Vec<Step>) {
        self.shared.script(model, steps);
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// How many `hang` steps ended because the client dropped the request.
    pub fn dropped_hangs(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Forgets scripts and recorded requests.
    pub fn reset(&self) {
        self.shared.reset();
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai))
        .route("/v1/messages", post(anthropic))
        .route("/v1beta/models/{spec}", post(gemini))
        .route("/_fake/script", post(set_script))
        .route("/_fake/requests", get(list_requests))
        .route("/_fake/reset", post(reset))
        .with_state(shared)
}

async fn set_script(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Script>(&body) {
        Ok(script) => {
            s.script(&script.model, script.steps);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("bad script: {e}")).into_response(),
    }
}

async fn list_requests(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(s.lock().requests.clone()).into_response()
}

async fn reset(State(s): State<Arc<Shared>>) -> Response {
    s.reset();
    StatusCode::NO_CONTENT.into_response()
}

/// The text of an OpenAI or Anthropic `content`: a string, or text blocks.
fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn join_nonempty(parts: Vec<String>) -> Option<String> {
    let parts: Vec<String> = parts.into_iter().filter(|p| !p.is_empty()).collect();
    (!parts.is_empty()).then(|| parts.join("\n"))
}

async fn openai(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error_response(Format::Openai, 400, None, None);
    };
    let model = v["model"].as_str().unwrap_or("").to_string();
    let messages = v["messages"].as_array().cloned().unwrap_or_default();
    let of_role = |roles: &[&str]| {
        messages
            .iter()
            .filter(|m| roles.contains(&m["role"].as_str().unwrap_or("")))
            .map(|m| content_text(&m["content"]))
            .collect::<Vec<_>>()
    };
    let system = join_nonempty(of_role(&["system", "developer"]));
    let prompt = of_role(&["user"]).join("\n");
    handle(&s, Format::Openai, &headers, key, model, system, prompt, v).await
}

async fn anthropic(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error_response(Format::Anthropic, 400, None, None);
    };
    let model = v["model"].as_str().unwrap_or("").to_string();
    let system = join_nonempty(vec![content_text(&v["system"])]);
    let prompt = v["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .map(|m| content_text(&m["content"]))
        .collect::<Vec<_>>()
        .join("\n");
    handle(
        &s,
        Format::Anthropic,
        &headers,
        key,
        model,
        system,
        prompt,
        v,
    )
    .await
}

async fn gemini(
    State(s): State<Arc<Shared>>,
    Path(spec): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(model) = spec.strip_suffix(":generateContent") else {
        return error_response(Format::Gemini, 404, None, None);
    };
    let key = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query.get("key").cloned());
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error_response(Format::Gemini, 400, None, None);
    };
    let parts_text = |c: &Value| {
        c["parts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("")
    };
    let system = join_nonempty(vec![parts_text(&v["systemInstruction"])]);
    let prompt = v["contents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["role"].as_str().unwrap_or("user") == "user")
        .map(parts_text)
        .collect::<Vec<_>>()
        .join("\n");
    let model = model.to_string();
    handle(&s, Format::Gemini, &headers, key, model, system, prompt, v).await
}

/// Counts a hang step as dropped unless it ran to its limit.
struct HangGuard<'a> {
    shared: &'a Shared,
    finished: bool,
}

impl Drop for HangGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    s: &Shared,
    format: Format,
    headers: &HeaderMap,
    key: Option<String>,
    model: String,
    system: Option<String>,
    prompt: String,
    body: Value,
) -> Response {
    let key_index = key
        .as_deref()
        .and_then(|k| s.keys.iter().position(|a| a == k));
    s.lock().requests.push(Recorded {
        format,
        model: model.clone(),
        system: system.clone(),
        prompt: prompt.clone(),
        key_index,
        body,
    });
    if key_index.is_none() {
        return auth_error(format, key.as_deref());
    }
    let step = match headers.get(STEP_HEADER).map(|v| v.to_str()) {
        Some(Ok(text)) => match serde_json::from_str::<Step>(text) {
            Ok(step) => step,
            Err(e) => {
                return (StatusCode::BAD_REQUEST, format!("bad {STEP_HEADER}: {e}"))
                    .into_response();
            }
        },
        Some(Err(_)) => {
            return (StatusCode::BAD_REQUEST, format!("bad {STEP_HEADER}")).into_response();
        }
        None => s.next_step(&model),
    };
    let input = words(system.as_deref().unwrap_or("")) + words(&prompt);
    match step {
        Step::Answer(reply) => success(format, &model, input, &reply),
        Step::Delay { ms, answer } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            success(format, &model, input, &answer)
        }
        Step::BadJson => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"this is\": not json",
        )
            .into_response(),
        Step::Status {
            code,
            body,
            retry_after,
        } => error_response(format, code, body, retry_after),
        Step::Hang => {
            let mut guard = HangGuard {
                shared: s,
                finished: false,
            };
            tokio::time::sleep(HANG_LIMIT).await;
            guard.finished = true;
            error_response(format, 504, None, None)
        }
    }
}

fn words(s: &str) -> u64 {
    (s.split_whitespace().count() as u64).max(1)
}

fn success(format: Format, model: &str, input: u64, reply: &Reply) -> Response {
    let text = reply
        .text
        .clone()
        .unwrap_or_else(|| format!("fake answer from {model}"));
    let output = words(&text);
    let mut headers = HeaderMap::new();
    let body = match format {
        Format::Openai => {
            for (n, v) in [
                ("x-ratelimit-limit-requests", "1000"),
                ("x-ratelimit-remaining-requests", "999"),
                ("x-ratelimit-reset-requests", "60ms"),
                ("x-ratelimit-limit-tokens", "100000"),
                ("x-ratelimit-remaining-tokens", "99000"),
                ("x-ratelimit-reset-tokens", "600ms"),
            ] {
                headers.insert(n, HeaderValue::from_static(v));
            }
            if let Some(cost) = reply.cost_usd
                && let Ok(v) = HeaderValue::from_str(&cost.to_string())
            {
                headers.insert("x-litellm-response-cost", v);
            }
            let mut b = json!({
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1_750_000_000,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": null},
                    "logprobs": null,
                    "finish_reason": "stop",
                }],
            });
            if reply.usage {
                b["usage"] = json!({
                    "prompt_tokens": input,
                    "completion_tokens": output,
                    "total_tokens": input + output,
                    "prompt_tokens_details": {"cached_tokens": 0},
                });
                if let Some(cost) = reply.cost_usd {
                    b["usage"]["cost"] = json!(cost);
                }
            }
            b
        }
        Format::Anthropic => {
            for (n, v) in [
                ("anthropic-ratelimit-requests-limit", "1000"),
                ("anthropic-ratelimit-requests-remaining", "999"),
                ("anthropic-ratelimit-requests-reset", "2030-01-01T00:00:00Z"),
            ] {
                headers.insert(n, HeaderValue::from_static(v));
            }
            let mut b = json!({
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": null,
            });
            if reply.usage {
                b["usage"] = json!({
                    "input_tokens": input,
                    "output_tokens": output,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                });
            }
            b
        }
        Format::Gemini => {
            let mut b = json!({
                "candidates": [{
                    "content": {"parts": [{"text": text}], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }],
                "modelVersion": model,
                "responseId": "fake",
            });
            if reply.usage {
                b["usageMetadata"] = json!({
                    "promptTokenCount": input,
                    "candidatesTokenCount": output,
                    "totalTokenCount": input + output,
                });
            }
            b
        }
    };
    (StatusCode::OK, headers, axum::Json(body)).into_response()
}

/// A wrong or missing key, as each provider answers it.
fn auth_error(format: Format, key: Option<&str>) -> Response {
    let body = match format {
        // OpenAI masks the key it echoes; the fake echoes it whole on purpose.
        Format::Openai => json!({"error": {
            "message": format!("Incorrect API key provided: {}.", key.unwrap_or("")),
            "type": "invalid_request_error", "param": null, "code": "invalid_api_key",
        }}),
        Format::Anthropic => json!({"type": "error", "error": {
            "type": "authentication_error", "message": "invalid x-api-key",
        }}),
        Format::Gemini => json!({"error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }],
        }}),
    };
    let status = if format == Format::Gemini { 400 } else { 401 };
    json_response(status, HeaderMap::new(), body)
}

fn json_response(code: u16, headers: HeaderMap, body: Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, headers, axum::Json(body)).into_response()
}

/// An error status with the given body, else the format's own body for the code.
fn error_response(
    format: Format,
    code: u16,
    body: Option<Value>,
    retry_after: Option<String>,
) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = HeaderMap::new();
    if status.is_redirection() {
        // Somewhere a client that follows redirects would go (and get a 404).
        headers.insert(
            header::LOCATION,
            HeaderValue::from_static("/_fake/redirected"),
        );
    }
    if format != Format::Gemini
        && let Some(v) = retry_after
            .as_deref()
            .and_then(|r| HeaderValue::from_str(r).ok())
    {
        headers.insert(header::RETRY_AFTER, v);
    }
    match body {
        Some(Value::String(text)) => (status, headers, text).into_response(),
        Some(v) => (status, headers, axum::Json(v)).into_response(),
        None => json_response(code, headers, default_error(format, code, retry_after)),
    }
}

fn default_error(format: Format, code: u16, retry_after: Option<String>) -> Value {
    let message = format!("fake provider: HTTP {code}");
    match format {
        Format::Openai => {
            let (kind, err_code) = match code {
                429 => ("requests", Some("rate_limit_exceeded")),
                401 => ("invalid_request_error", Some("invalid_api_key")),
                500..=599 => ("server_error", None),
                _ => ("invalid_request_error", None),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": err_code}})
        }
        Format::Anthropic => {
            let kind = match code {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                500..=599 => "api_error",
                _ => "invalid_request_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        Format::Gemini => {
            let status = match code {
                400 => "INVALID_ARGUMENT",
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                429 => "RESOURCE_EXHAUSTED",
                503 => "UNAVAILABLE",
                504 => "DEADLINE_EXCEEDED",
                _ => "INTERNAL",
            };
            let mut e = json!({"error": {"code": code, "message": message, "status": status}});
            if let Some(delay) = retry_after {
                // Gemini states the wait as a protobuf Duration ("37s").
                let delay = if delay.ends_with('s') {
                    delay
                } else {
                    format!("{delay}s")
                };
                e["error"]["details"] = json!([{
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": delay,
                }]);
            }
            e
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_read_from_json() {
        let cases = [
            (
                r#"{"answer": {"text": "hi"}}"#,
                Step::Answer(Reply {
                    text: Some("hi".into()),
                    usage: true,
                    cost_usd: None,
                }),
            ),
            (
                r#"{"answer": {"text": "hi", "usage": false, "cost_usd": 0.5}}"#,
                Step::Answer(Reply {
                    text: Some("hi".into()),
                    usage: false,
                    cost_usd: Some(0.5),
                }),
            ),
            (r#""bad_json""#, Step::BadJson),
            (r#""hang""#, Step::Hang),
            (
                r#"{"status": {"code": 429, "retry_after": "2"}}"#,
                Step::status_retry_after(429, "2"),
            ),
            (
                r#"{"delay": {"ms": 50, "answer": {"text": "late"}}}"#,
                Step::delay(50, "late"),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(serde_json::from_str::<Step>(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn the_queue_repeats_its_last_step() {
        let s = Shared {
            keys: vec![],
            inner: Mutex::new(Inner::default()),
            dropped: AtomicU64::new(0),
        };
        assert_eq!(s.next_step("m"), default_step());
        s.script("m", vec![Step::status(500), Step::answer("ok")]);
        assert_eq!(s.next_step("m"), Step::status(500));
        assert_eq!(s.next_step("m"), Step::answer("ok"));
        assert_eq!(s.next_step("m"), Step::answer("ok"));
        assert_eq!(s.next_step("other"), default_step());
    }
}
