//! Streamable HTTP: the axum router, its middleware and the server loop.
//!
//! Order of checks on `/mcp`: Host and Origin (DNS-rebinding protection) → body
//! limit (413) → bearer key (401 with `WWW-Authenticate: Bearer`) → per-key rate
//! limit (429 with `Retry-After`) → session-to-key binding (a session used with
//! another key looks exactly like a missing one: 404) → rmcp. Malformed JSON is
//! answered with a JSON-RPC -32700 error. `/health` is open and says nothing
//! private (one answer for vault-mcp's scripts — `status` ok/degraded, `version`,
//! `timestamp` — and vaultline's own fields); `/ready` reports store and
//! migrations; `/metrics` needs an admin key unless `metrics.public`. vault-mcp's
//! `/tasks` routes live in `rest`, behind the same key check as `/mcp`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::handler::{Handler, listed_tools};
use super::rest;
use crate::app::App;
use crate::auth::{Principal, Rejection, Role};
use crate::metrics::HttpLabels;

const SESSION_HEADER: &str = "mcp-session-id";
const ANONYMOUS: &str = "anonymous";

/// Which key opened which session.
#[derive(Default)]
struct Bindings {
    map: Mutex<HashMap<String, String>>,
}

impl Bindings {
    fn owner(&self, sid: &str) -> Option<String> {
        self.map.lock().ok().and_then(|m| m.get(sid).cloned())
    }
    fn bind(&self, sid: String, owner: String) {
        if let Ok(mut m) = self.map.lock() {
            m.insert(sid, owner);
        }
    }
    fn unbind(&self, sid: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(sid);
        }
    }
}

struct Gate {
    app: Arc<App>,
    bindings: Bindings,
}

/// The built HTTP application and the handles its background chores need.
pub struct HttpApp {
    pub router: Router,
    sessions: Option<Arc<LocalSessionManager>>,
    gate: Arc<Gate>,
}

/// Builds the router. `ct` ends SSE streams and sessions on shutdown.
pub fn build(app: Arc<App>, ct: CancellationToken) -> HttpApp {
    let handler = Handler::new(app.clone(), None, listed_tools(&app));
    let cfg = &app.config.http;
    let base = StreamableHttpServerConfig::default()
        // Host and Origin are checked by `host_origin` below, with our config.
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_max_request_body_bytes(cfg.max_body_bytes)
        .with_sse_keep_alive(Some(Duration::from_secs(cfg.sse_ping_secs.max(1))))
        .with_cancellation_token(ct.child_token());
    let gate = Arc::new(Gate {
        app: app.clone(),
        bindings: Bindings::default(),
    });
    let factory = move || Ok(handler.for_session());
    let (mcp, sessions) = if cfg.stateless {
        let svc = StreamableHttpService::new(
            factory,
            Arc::new(NeverSessionManager::default()),
            base.with_legacy_session_mode(false)
                .with_json_response(true),
        );
        (Router::new().nest_service("/mcp", svc), None)
    } else {
        let mut sm = LocalSessionManager::default();
        sm.session_config.keep_alive =
            Some(Duration::from_secs(cfg.session_keep_alive_secs.max(1)));
        let sm = Arc::new(sm);
        let svc =
            StreamableHttpService::new(factory, sm.clone(), base.with_legacy_session_mode(true));
        (Router::new().nest_service("/mcp", svc), Some(sm))
    };
    let mcp = mcp.layer(middleware::from_fn_with_state(gate.clone(), mcp_gate));
    let router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(app.clone())
        .merge(mcp)
        .merge(rest::router(app.clone()))
        .layer(middleware::from_fn_with_state(app.clone(), host_origin))
        .layer(middleware::from_fn_with_state(app.clone(), count_requests));
    HttpApp {
        router,
        sessions,
        gate,
    }
}

/// Serves until `ct` is cancelled. Prints the bound address on stderr.
pub async fn serve(app: Arc<App>, addr: SocketAddr, ct: CancellationToken) -> anyhow::Result<()> {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let built = build(app.clone(), ct.clone());
    tokio::spawn(chores(
        app.clone(),
        built.sessions.clone(),
        built.gate.clone(),
        ct.clone(),
    ));
    tracing::info!(addr = %local, stateless = app.config.http.stateless, "serving MCP over HTTP at /mcp");
    eprintln!("vaultline listening on http://{local}/mcp");
    // Without TCP_NODELAY, SSE replies wait on delayed ACKs (~40 ms each).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, built.router)
        .with_graceful_shutdown(ct.cancelled_owned())
        .await?;
    Ok(())
}

/// Every few seconds: session count, stale bindings, idle rate-limit buckets.
async fn chores(
    app: Arc<App>,
    sessions: Option<Arc<LocalSessionManager>>,
    gate: Arc<Gate>,
    ct: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = ct.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Some(sm) = &sessions {
            let live = sm.sessions.read().await;
            app.sessions
                .store(live.len(), std::sync::atomic::Ordering::Relaxed);
            app.metrics.sessions.set(live.len() as i64);
            if let Ok(mut m) = gate.bindings.map.lock() {
                m.retain(|sid, _| live.contains_key(sid.as_str()));
            }
        }
        app.metrics.store_errors.set(app.store.error_count());
        app.limiter.sweep();
    }
}

async fn count_requests(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let route = match req.uri().path() {
        "/mcp" => "/mcp",
        "/health" => "/health",
        "/ready" => "/ready",
        "/metrics" => "/metrics",
        p if p == "/tasks" || p.starts_with("/tasks/") => "/tasks",
        _ => "other",
    };
    let resp = next.run(req).await;
    app.metrics
        .http_requests
        .get_or_create(&HttpLabels {
            route,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}

fn plain(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg.to_string(),
    )
        .into_response()
}

/// The host part of a Host header value (no port, no IPv6 brackets), lowercased.
fn host_name(value: &str) -> String {
    let v = value.trim();
    let host = if let Some(rest) = v.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        v.rsplit_once(':').map_or(v, |(h, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                v
            }
        })
    };
    host.to_ascii_lowercase()
}

fn is_loopback_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    if scheme != "http" && scheme != "https" {
        return false;
    }
    matches!(host_name(rest).as_str(), "localhost" | "127.0.0.1" | "::1")
}

async fn host_origin(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let cfg = &app.config.http;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let Some(host) = host else {
        return plain(StatusCode::BAD_REQUEST, "Bad Request: missing Host header");
    };
    let name = host_name(&host);
    let host_ok = cfg
        .allowed_hosts
        .iter()
        .any(|h| h == "*" || h.eq_ignore_ascii_case(&name) || host_name(h) == name);
    if !host_ok {
        return plain(
            StatusCode::FORBIDDEN,
            "Forbidden: Host header is not allowed (configure http.allowed_hosts)",
        );
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin
            .to_str()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_ascii_lowercase();
        let ok = if cfg.allowed_origins.is_empty() {
            is_loopback_origin(&origin)
        } else {
            cfg.allowed_origins
                .iter()
                .any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(&origin))
        };
        if !ok {
            return plain(
                StatusCode::FORBIDDEN,
                "Forbidden: Origin is not allowed (configure http.allowed_origins)",
            );
        }
    }
    next.run(req).await
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub(super) fn unauthorized(app: &App, detail: &str, invalid_token: bool) -> Response {
    app.metrics.auth_failures.inc();
    let challenge = if invalid_token {
        "Bearer realm=\"vaultline\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"vaultline\""
    };
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        Json(json!({"error": "unauthorized", "message": detail})),
    )
        .into_response()
}

fn jsonrpc_error(status: StatusCode, code: i64, message: &str) -> Response {
    (
        status,
        Json(json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// `initialize`, `notifications/initialized` and `tools/list`: what the
/// anonymous-discovery switch lets through without a key.
fn is_discovery(body: &Bytes) -> bool {
    #[derive(serde::Deserialize)]
    struct Msg {
        method: Option<String>,
    }
    serde_json::from_slice::<Msg>(body).is_ok_and(|m| {
        matches!(
            m.method.as_deref(),
            Some("initialize" | "notifications/initialized" | "tools/list")
        )
    })
}

async fn mcp_gate(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    let app = &gate.app;
    let (parts, body) = req.into_parts();
    let limit = app.config.http.max_body_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "Payload Too Large: request body exceeds {limit} bytes (http.max_body_bytes)"
                ),
            );
        }
    };
    let sid = parts
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let principal: Option<Principal> = match bearer(&parts.headers) {
        Some(token) => match app.keys.verify(token).await {
            Ok(p) => Some(p),
            Err(Rejection::StoreUnavailable) => {
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service Unavailable: key store unreachable",
                );
            }
            Err(_) => return unauthorized(app, "invalid, expired or revoked API key", true),
        },
        None => {
            let anonymous_ok = app.config.auth.allow_anonymous_discovery
                && match parts.method {
                    Method::POST => is_discovery(&bytes),
                    Method::GET | Method::DELETE => sid
                        .as_deref()
                        .and_then(|s| gate.bindings.owner(s))
                        .is_some_and(|o| o == ANONYMOUS),
                    _ => false,
                };
            if !anonymous_ok {
                return unauthorized(
                    app,
                    "missing API key: send Authorization: Bearer <key>",
                    false,
                );
            }
            None
        }
    };
    if let Some(p) = &principal
        && let Err(wait) = app.limiter.check(&p.key_id)
    {
        app.metrics.rate_limited.inc();
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, HeaderValue::from(secs))],
            format!("Too Many Requests: rate limit for this key exceeded; retry after {secs} s"),
        )
            .into_response();
    }
    let owner = principal
        .as_ref()
        .map_or(ANONYMOUS, |p| p.key_id.as_str())
        .to_string();
    if let Some(s) = &sid
        && let Some(bound) = gate.bindings.owner(s)
        && bound != owner
    {
        // Another key's session looks exactly like one that does not exist.
        return plain(StatusCode::NOT_FOUND, "Not Found: Session not found");
    }
    let is_delete = parts.method == Method::DELETE;
    let sent_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
    let mut req = Request::from_parts(parts, Body::from(bytes.clone()));
    if let Some(p) = principal {
        req.extensions_mut().insert(p);
    }
    let mut resp = next.run(req).await;
    // rmcp answers a session DELETE with 202; clients expect 200 or 204 for a
    // finished termination (the Python SDK warns on 202).
    if is_delete && resp.status() == StatusCode::ACCEPTED {
        *resp.status_mut() = StatusCode::NO_CONTENT;
    }
    match &sid {
        None => {
            if let Some(new_sid) = resp
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
            {
                gate.bindings.bind(new_sid.to_string(), owner);
            }
        }
        Some(s) if is_delete && resp.status().is_success() => gate.bindings.unbind(s),
        _ => {}
    }
    // rmcp answers 415 both for a wrong Content-Type and for a body it could not
    // parse; with a JSON Content-Type it can only be the second, a JSON-RPC matter.
    if resp.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE && sent_json {
        return match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            Err(e) => jsonrpc_error(
                StatusCode::BAD_REQUEST,
                -32700,
                &format!("Parse error: {e}"),
            ),
            Ok(_) => jsonrpc_error(
                StatusCode::BAD_REQUEST,
                -32600,
                "Invalid Request: not a JSON-RPC 2.0 message",
            ),
        };
    }
    resp
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let store_ok = tokio::time::timeout(Duration::from_secs(2), app.store.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let m = app.store.migration_status();
    let ok = store_ok && m.current == m.latest;
    Json(json!({
        "status": if ok { "ok" } else { "degraded" },
        "service": "vaultline",
        "version": crate::app::VERSION,
        "timestamp": app.clock.now_text(),
        "store": if store_ok { "ok" } else { "unreachable" },
        "uptime_s": app.started.elapsed().as_secs(),
    }))
    .into_response()
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    let store_ok = tokio::time::timeout(Duration::from_secs(2), app.store.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let m = app.store.migration_status();
    let ready = store_ok && m.current == m.latest;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "ready": ready,
            "store": store_ok,
            "schema_version": m.current,
            "schema_latest": m.latest,
        })),
    )
        .into_response()
}

async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let mut org = None;
    if !app.config.metrics.public {
        let Some(token) = bearer(&headers) else {
            return unauthorized(
                &app,
                "metrics need an admin key (or metrics.public = true)",
                false,
            );
        };
        match app.keys.verify(token).await {
            Ok(p) if p.role >= Role::Admin => org = Some(p.org),
            Ok(p) => {
                return plain(
                    StatusCode::FORBIDDEN,
                    &format!(
                        "Forbidden: metrics need role admin or above; this key has role {}",
                        p.role
                    ),
                );
            }
            Err(_) => return unauthorized(&app, "invalid, expired or revoked API key", true),
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(org.as_deref()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(host_name("localhost:8787"), "localhost");
        assert_eq!(host_name("[::1]:80"), "::1");
        assert_eq!(host_name("Example.COM"), "example.com");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn loopback_origins() {
        assert!(is_loopback_origin("http://localhost:3000"));
        assert!(is_loopback_origin("https://127.0.0.1"));
        assert!(is_loopback_origin("http://[::1]:5173"));
        assert!(!is_loopback_origin("http://evil.example.com"));
        assert!(!is_loopback_origin("null"));
        assert!(!is_loopback_origin("file://localhost"));
    }
}
