//! vault-mcp's REST routes for human tasks, answered in vault-mcp's shapes so that
//! scripts written against it keep working.
//!
//! | route | vault-mcp | here |
//! |---|---|---|
//! | `GET /tasks?status=&project=&format=` | a JSON array (newest first) or `text/markdown` | the same; `status` defaults to open, empty or `all` lists every status; `limit` (≤ 1000) and `cursor` page, `X-Next-Cursor` says there is more |
//! | `GET /tasks/{id}` | — | one task |
//! | `POST /tasks` | 201 and the task | `task create` |
//! | `POST /tasks/retroactive` | 201 and the task (done, source retroactive) | `task retro` |
//! | `PUT /tasks/{id}` | the updated task | `task update` |
//! | `POST /tasks/{id}/done` | the finished task | `task done` |
//!
//! Errors are `{"error": "..."}` as in vault-mcp (plus `field` for bad input and
//! `id` for an unknown task), with a real status code. Every route goes through
//! the `task` tool's own path (`tools::call_as`): the same JSON Schema check,
//! read-only mode, role check and store verbs as the MCP tool, and the same
//! run-unit metering. Keys work exactly as on `/mcp` (bearer only, 401 with a
//! challenge, per-key rate limit); the org comes from the key. No business rule
//! lives here: this file only translates HTTP to tool calls and back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{Map, Value};

use super::errors::http_error;
use super::http::{bearer, unauthorized};
use crate::app::App;
use crate::auth::{Principal, Rejection};
use crate::error::Error;
use crate::tools;

const TOOL: &str = "task";
/// vault-mcp listed at most one KV page (1,000 keys); so does a page here.
const MAX_LIST: u32 = 1000;

/// The `/tasks` routes, behind the same key check as `/mcp`.
pub fn router(app: Arc<App>) -> Router {
    // The gate has already bounded the body; the extractor must not bound it lower.
    let limit = app.config.http.max_body_bytes;
    Router::new()
        .route("/tasks", get(list).post(create))
        .route("/tasks/retroactive", post(retro))
        .route("/tasks/{id}", get(get_one).put(update))
        .route("/tasks/{id}/done", post(done))
        .with_state(app.clone())
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(app, gate))
}

/// Bearer key → principal, the per-key rate limit, then the body limit: the same
/// answers as `/mcp`, in vault-mcp's `{"error": …}` shape.
async fn gate(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Some(token) = bearer(req.headers()) else {
        return unauthorized(
            &app,
            "missing API key: send Authorization: Bearer <key>",
            false,
        );
    };
    let principal = match app.keys.verify(token).await {
        Ok(p) => p,
        Err(Rejection::StoreUnavailable) => {
            return fail(503, "key store unreachable", None);
        }
        Err(_) => return unauthorized(&app, "invalid, expired or revoked API key", true),
    };
    if let Err(wait) = app.limiter.check(&principal.key_id) {
        app.metrics.rate_limited.inc();
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut resp = fail(
            429,
            &format!("rate limit for this key exceeded; retry after {secs} s"),
            None,
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return resp;
    }
    let limit = app.config.http.max_body_bytes;
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return fail(
            413,
            &format!("request body exceeds {limit} bytes (http.max_body_bytes)"),
            None,
        );
    };
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// vault-mcp's error shape, `{"error": message}`, with extra keys.
fn fail(status: u16, message: &str, extra: Option<(&str, &str)>) -> Response {
    let mut body = Map::new();
    body.insert("error".into(), Value::from(message));
    if let Some((k, v)) = extra {
        body.insert(k.into(), Value::from(v));
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(Value::Object(body)),
    )
        .into_response()
}

fn error_response(action: &str, id: Option<&str>, err: &Error) -> Response {
    let (status, message) = http_error(&format!("{TOOL} {action}"), err);
    match (err, id) {
        (Error::Invalid { field, .. }, _) => fail(status, &message, Some(("field", field))),
        (Error::NotFound { .. }, Some(id)) => fail(status, &message, Some(("id", id))),
        _ => fail(status, &message, None),
    }
}

/// Runs one `task` action as the caller, the way the MCP handler does: resolve
/// (schema, read-only, role), dispatch, then `settle`.
async fn run(
    app: &Arc<App>,
    who: &Principal,
    action: &'static str,
    args: Map<String, Value>,
) -> Result<Value, Error> {
    let started = Instant::now();
    let out = call(app, who, action, args).await;
    settle(app, who, action, started, out).await
}

/// One `task` action, not yet counted or billed.
async fn call(
    app: &Arc<App>,
    who: &Principal,
    action: &'static str,
    mut args: Map<String, Value>,
) -> Result<Value, Error> {
    if app.registry.static_name(TOOL).is_none() {
        return Err(Error::not_found("tool", TOOL));
    }
    args.insert("action".into(), Value::from(action));
    Ok(tools::call_as(app, who, TOOL, Value::Object(args))
        .await?
        .structured)
}

/// Once per HTTP request, however many tool pages it took: the run unit, the
/// call metric, and the charge when config prices the tool.
async fn settle<T>(
    app: &Arc<App>,
    who: &Principal,
    action: &'static str,
    started: Instant,
    out: Result<T, Error>,
) -> Result<T, Error> {
    app.meter
        .count_run(&who.org, &who.key_id, TOOL, out.is_ok());
    let outcome = match &out {
        Ok(_) => "ok",
        Err(Error::Internal(_)) => "error",
        Err(_) => "refused",
    };
    app.metrics
        .tool_call(TOOL, action, outcome, started.elapsed().as_secs_f64());
    let out = out?;
    if app.meter.tool_price(TOOL).is_some()
        && let Err(e) = app.meter.charge_tool(&who.org, &who.key_id, TOOL).await
    {
        tracing::warn!(error = %e, tool = TOOL, "could not bill a priced REST task call");
    }
    Ok(out)
}

/// The request body as a JSON object; an empty body is `{}`. Route-owned fields
/// (`action`, and `task_id` where the path names the task) are refused.
fn body_object(body: &Bytes, owned: &[&str]) -> Result<Map<String, Value>, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Error::invalid("body", format!("is not valid JSON: {e}")))?;
    let Value::Object(m) = v else {
        return Err(Error::invalid("body", "must be a JSON object"));
    };
    if let Some(f) = owned.iter().find(|f| m.contains_key(**f)) {
        return Err(Error::invalid(
            *f,
            "is set by the route and must not be in the body",
        ));
    }
    Ok(m)
}

/// Answers the `task` object of a tool result, vault-mcp's single-task shape.
fn task_reply(status: StatusCode, structured: &Value) -> Response {
    (
        status,
        Json(structured.get("task").cloned().unwrap_or(Value::Null)),
    )
        .into_response()
}

async fn create(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Response {
    write_new(&app, &who, "create", &body).await
}

async fn retro(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Response {
    write_new(&app, &who, "retro", &body).await
}

async fn write_new(
    app: &Arc<App>,
    who: &Principal,
    action: &'static str,
    body: &Bytes,
) -> Response {
    let result = match body_object(body, &["action", "task_id"]) {
        Ok(args) => run(app, who, action, args).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(v) => task_reply(StatusCode::CREATED, &v),
        Err(e) => error_response(action, None, &e),
    }
}

async fn get_one(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    on_task(&app, &who, "get", id, Map::new()).await
}

async fn update(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match body_object(&body, &["action", "task_id"]) {
        Ok(args) => on_task(&app, &who, "update", id, args).await,
        Err(e) => error_response("update", None, &e),
    }
}

async fn done(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match body_object(&body, &["action", "task_id"]) {
        Ok(args) => on_task(&app, &who, "done", id, args).await,
        Err(e) => error_response("done", None, &e),
    }
}

async fn on_task(
    app: &Arc<App>,
    who: &Principal,
    action: &'static str,
    id: String,
    mut args: Map<String, Value>,
) -> Response {
    args.insert("task_id".into(), Value::from(id.clone()));
    match run(app, who, action, args).await {
        Ok(v) => task_reply(StatusCode::OK, &v),
        Err(e) => error_response(action, Some(&id), &e),
    }
}

/// `GET /tasks`: vault-mcp's query parameters, plus `limit` and `cursor`.
async fn list(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    match list_tasks(&app, &who, &q).await {
        Ok(r) => r,
        Err(e) => error_response("list", None, &e),
    }
}

async fn list_tasks(
    app: &Arc<App>,
    who: &Principal,
    q: &BTreeMap<String, String>,
) -> Result<Response, Error> {
    let markdown = match q.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("md") => true,
        Some(other) => {
            return Err(Error::invalid(
                "format",
                format!("must be json or md, not {other:?}"),
            ));
        }
    };
    let wanted = match q.get("limit") {
        None => MAX_LIST,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIST).contains(n))
            .ok_or_else(|| {
                Error::invalid("limit", format!("must be an integer from 1 to {MAX_LIST}"))
            })?,
    };
    let mut filter = Map::new();
    // vault-mcp: status defaults to open; an empty value lists every status.
    match q.get("status").map(String::as_str) {
        None => {
            filter.insert("status".into(), Value::from("open"));
        }
        Some("" | "all") => {}
        Some(s) => {
            filter.insert("status".into(), Value::from(s));
        }
    }
    if let Some(p) = q.get("project").filter(|p| !p.is_empty()) {
        filter.insert("project".into(), Value::from(p.as_str()));
    }
    let started = Instant::now();
    let pages = async {
        let mut cursor = q.get("cursor").filter(|c| !c.is_empty()).cloned();
        let mut tasks: Vec<Value> = Vec::new();
        // The tool pages by 100; walk its pages up to the wanted count.
        loop {
            let room = wanted - tasks.len() as u32;
            let mut args = filter.clone();
            args.insert("limit".into(), Value::from(room.min(100)));
            if let Some(c) = &cursor {
                args.insert("cursor".into(), Value::from(c.as_str()));
            }
            let out = call(app, who, "list", args).await?;
            if let Some(Value::Array(page)) = out.get("tasks") {
                tasks.extend(page.iter().cloned());
            }
            cursor = out
                .get("next_cursor")
                .and_then(Value::as_str)
                .map(str::to_string);
            if cursor.is_none() || tasks.len() as u32 >= wanted {
                return Ok((tasks, cursor));
            }
        }
    };
    let (tasks, cursor) = settle(app, who, "list", started, pages.await).await?;
    let mut resp = if markdown {
        (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            checklist(&tasks),
        )
            .into_response()
    } else {
        Json(Value::Array(tasks)).into_response()
    };
    if let Some(c) = cursor
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        resp.headers_mut().insert("x-next-cursor", v);
    }
    Ok(resp)
}

/// vault-mcp's Markdown list: one `## project` section per project (sorted), a
/// checkbox line per task with its context and id, "No tasks found." when empty.
fn checklist(tasks: &[Value]) -> String {
    if tasks.is_empty() {
        return "No tasks found.".into();
    }
    let field = |t: &Value, k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut by_project: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for t in tasks {
        let project = field(t, "project");
        let project = if project.is_empty() {
            "inbox".to_string()
        } else {
            project
        };
        by_project.entry(project).or_default().push(t);
    }
    let mut lines = Vec::new();
    for (project, items) in by_project {
        lines.push(format!("## {project}"));
        for t in items {
            let check = if field(t, "status") == "done" {
                "x"
            } else {
                " "
            };
            let context = field(t, "context");
            let context = if context.is_empty() {
                String::new()
            } else {
                format!(" — {context}")
            };
            lines.push(format!(
                "- [{check}] {}{context} `{}`",
                field(t, "title"),
                field(t, "id")
            ));
        }
        lines.push(String::new());
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn checklist_groups_by_project_like_vault_mcp() {
        assert_eq!(checklist(&[]), "No tasks found.");
        let tasks = vec![
            json!({"id": "B", "title": "ship", "project": "web", "status": "open"}),
            json!({"id": "A", "title": "fix \"quotes\"", "project": "api", "status": "done", "context": "ctx"}),
            json!({"id": "C", "title": "later", "project": "web", "status": "in_progress"}),
        ];
        assert_eq!(
            checklist(&tasks),
            "## api\n- [x] fix \"quotes\" — ctx `A`\n\n## web\n- [ ] ship `B`\n- [ ] later `C`\n"
        );
    }

    #[test]
    fn bodies_must_be_objects_without_route_fields() {
        assert!(
            body_object(&Bytes::from_static(b"  "), &[])
                .unwrap()
                .is_empty()
        );
        let err = body_object(&Bytes::from_static(b"[1]"), &[]).unwrap_err();
        assert!(
            err.to_string().contains("`body`: must be a JSON object"),
            "{err}"
        );
        let err = body_object(&Bytes::from_static(b"{\"title\": "), &[]).unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        let err = body_object(
            &Bytes::from_static(b"{\"action\": \"cancel\"}"),
            &["action"],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("`action`: is set by the route"),
            "{err}"
        );
    }
}
