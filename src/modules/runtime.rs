//! Installed modules as callable tools: per org, the active versions' manifests
//! (re-hashed against the stored SHA-256 when loaded), their compiled schemas,
//! and the two ways a tool runs — an HTTP call through `net::Client` under the
//! module's host policy, or a prompt through the dispatch ladder.
//!
//! The catalog is keyed by a cheap stamp of what is installed, read from the
//! store on each use, so a change made by any process (or a rollback) is seen
//! by the next call; a call in flight keeps the snapshot it started with.
//! Credentials are resolved per call from config, sent only in headers and
//! scrubbed from every error; they are never returned or logged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Map, Value};

use super::manifest::{self, Kind, Manifest, ToolDecl};
use super::{bundle, net, validate};
use crate::app::App;
use crate::auth::Principal;
use crate::config::Profile;
use crate::error::{Error, Result};

/// One callable module tool.
pub struct LiveTool {
    /// `namespace__name`.
    pub exposed: String,
    pub module_id: String,
    pub version: String,
    pub sha256: String,
    pub decl: ToolDecl,
    pub manifest: Arc<Manifest>,
    input: jsonschema::Validator,
    output: jsonschema::Validator,
}

impl LiveTool {
    pub fn read_only(&self) -> bool {
        self.decl.annotations.read_only_hint.unwrap_or(false)
    }
}

/// The tools installed in one org, as of `stamp`.
pub struct OrgTools {
    stamp: String,
    pub tools: Vec<Arc<LiveTool>>,
}

impl OrgTools {
    pub fn find(&self, exposed: &str) -> Option<Arc<LiveTool>> {
        self.tools.iter().find(|t| t.exposed == exposed).cloned()
    }
}

/// The per-org catalogs and the HTTP client module tools use.
pub struct Catalog {
    cache: Mutex<HashMap<String, Arc<OrgTools>>>,
    pub net: net::Client,
}

/// Test-profile name overrides in front of the system resolver.
struct Overlay {
    fixed: HashMap<String, Vec<IpAddr>>,
}

impl net::Resolver for Overlay {
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'_, std::io::Result<Vec<IpAddr>>> {
        match self.fixed.get(&host.to_ascii_lowercase()) {
            Some(ips) => {
                let ips = ips.clone();
                Box::pin(async move { Ok(ips) })
            }
            None => net::SystemResolver.resolve(host, port),
        }
    }
}

impl Catalog {
    pub fn new(cfg: &crate::config::Config) -> Catalog {
        let resolver: Arc<dyn net::Resolver> =
            if cfg.profile == Profile::Test && !cfg.modules.resolve.is_empty() {
                let fixed = cfg
                    .modules
                    .resolve
                    .iter()
                    .filter_map(|(h, ip)| Some((h.to_ascii_lowercase(), vec![ip.parse().ok()?])))
                    .collect();
                Arc::new(Overlay { fixed })
            } else {
                Arc::new(net::SystemResolver)
            };
        Catalog {
            cache: Mutex::new(HashMap::new()),
            net: net::Client::new(resolver),
        }
    }

    /// The org's installed tools, rebuilt when what is installed changed.
    pub async fn for_org(&self, app: &App, org: &str) -> Result<Arc<OrgTools>> {
        let stamp = app.store.module_active_stamp(org).await?;
        if let Some(t) = self.cache.lock().ok().and_then(|c| c.get(org).cloned())
            && t.stamp == stamp
        {
            return Ok(t);
        }
        let mut tools = Vec::new();
        for m in app.store.module_active(org).await? {
            match build(&m) {
                Ok(mut ts) => tools.append(&mut ts),
                Err(e) => tracing::error!(
                    org,
                    module = %m.module_id,
                    version = %m.version,
                    error = %e,
                    "an installed module is not served"
                ),
            }
        }
        let built = Arc::new(OrgTools { stamp, tools });
        if let Ok(mut c) = self.cache.lock() {
            c.insert(org.to_string(), built.clone());
        }
        Ok(built)
    }
}

/// Builds the tools of an active version, refusing bytes that no longer hash
/// to the value recorded when it was installed.
fn build(m: &crate::store::ActiveModule) -> std::result::Result<Vec<Arc<LiveTool>>, String> {
    let actual = bundle::sha256_hex(&m.bundle);
    if actual != m.sha256 {
        return Err(format!(
            "its bundle hashes to {actual}, not the installed {}",
            m.sha256
        ));
    }
    Ok(
        tools_from_bundle(m.module_id.clone(), m.version.clone(), &m.bundle)?
            .into_iter()
            .map(Arc::new)
            .collect(),
    )
}

/// The tools a bundle defines, with their schemas compiled.
pub fn tools_from_bundle(
    module_id: String,
    version: String,
    bytes: &[u8],
) -> std::result::Result<Vec<LiveTool>, String> {
    let sha256 = bundle::sha256_hex(bytes);
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|e| format!("its bundle does not read: {e}"))?;
    let manifest = Arc::new(manifest);
    let mut out = Vec::new();
    for t in &manifest.tools {
        let compile = |s: &Value| jsonschema::validator_for(s).map_err(|e| e.to_string());
        out.push(LiveTool {
            exposed: manifest.exposed(&t.name),
            module_id: module_id.clone(),
            version: version.clone(),
            sha256: sha256.clone(),
            input: compile(&t.input_schema)?,
            output: compile(&t.output_schema)?,
            decl: t.clone(),
            manifest: manifest.clone(),
        });
    }
    Ok(out)
}

/// Checks a call's input against the tool's schema: the validator's message,
/// naming the field.
pub fn check_input(tool: &LiveTool, args: &Value) -> Result<()> {
    if let Some(e) = tool.input.iter_errors(args).next() {
        return Err(crate::error::schema_error(&e));
    }
    Ok(())
}

/// Runs a tool with checked input; returns its checked structured output.
pub async fn call(
    app: &Arc<App>,
    principal: &Principal,
    tool: &LiveTool,
    args: &Value,
) -> Result<Value> {
    check_input(tool, args)?;
    let out = match tool.decl.kind {
        Kind::Http => call_http(app, principal, tool, args).await?,
        Kind::Prompt => call_prompt(app, principal, tool, args).await?,
    };
    if let Some(e) = tool.output.iter_errors(&out).next() {
        return Err(Error::Conflict(format!(
            "{} produced output that does not satisfy its output_schema: {e} (at {})",
            tool.exposed,
            e.instance_path()
        )));
    }
    Ok(out)
}

/// An http tool's request, as it will be sent (secrets inside).
pub fn build_request(app: &App, org: &str, tool: &LiveTool, args: &Value) -> Result<net::Request> {
    let Some(h) = &tool.decl.http else {
        return Err(Error::Internal(format!(
            "{} has no http section",
            tool.exposed
        )));
    };
    let arg = |k: &str| {
        args.get(k)
            .filter(|v| !v.is_null())
            .map(manifest::value_text)
    };
    let mut url = manifest::fill(&h.url, &|k| arg(k).map(|v| encode(&v)));
    let mut sep = if url.contains('?') { '&' } else { '?' };
    for (k, v) in &h.query {
        let refs = manifest::placeholders(v);
        if !refs.is_empty() && refs.iter().all(|r| arg(r).is_none()) {
            continue;
        }
        url.push(sep);
        sep = '&';
        url.push_str(&encode(k));
        url.push('=');
        url.push_str(&encode(&manifest::fill(v, &arg)));
    }
    let mut secrets = Vec::new();
    let mut headers = Vec::new();
    for (k, v) in &h.headers {
        let mut creds = HashMap::new();
        for name in manifest::placeholders(v) {
            if let Some(cred) = name.strip_prefix("credentials.") {
                let s = credential(app, org, cred)?;
                secrets.push(s.clone());
                creds.insert(name.clone(), s);
            }
        }
        let value = manifest::fill(v, &|name| match creds.get(name) {
            Some(s) => Some(s.clone()),
            None => arg(name),
        });
        headers.push((k.clone(), value));
    }
    let body = match &h.body {
        None => None,
        Some(t) => {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                headers.push(("Content-Type".into(), "application/json".into()));
            }
            Some(serde_json::to_vec(&fill_value(t, args))?)
        }
    };
    Ok(net::Request {
        method: h.method.clone(),
        url,
        headers,
        body,
        timeout: Duration::from_millis(h.timeout_ms.unwrap_or(manifest::DEFAULT_TIMEOUT_MS)),
        max_bytes: usize::try_from(
            h.max_response_bytes
                .unwrap_or(manifest::DEFAULT_MAX_RESPONSE_BYTES),
        )
        .unwrap_or(usize::MAX),
        secrets,
    })
}

/// The module's network policy: its declared hosts; loopback http only outside production.
pub fn policy(app: &App, m: &Manifest) -> net::Policy {
    net::Policy {
        hosts: m
            .hosts
            .iter()
            .map(|h| net::HostRule {
                host: h.host.clone(),
                port: h.port,
                allow_private: h.allow_private,
            })
            .collect(),
        allow_loopback_http: app.config.profile != Profile::Production,
        max_redirects: net::DEFAULT_MAX_REDIRECTS,
    }
}

async fn call_http(
    app: &Arc<App>,
    principal: &Principal,
    tool: &LiveTool,
    args: &Value,
) -> Result<Value> {
    let req = build_request(app, &principal.org, tool, args)?;
    let resp = app
        .modules
        .net
        .send(&policy(app, &tool.manifest), req)
        .await
        .map_err(|e| {
            if e.is_policy_violation() {
                tracing::warn!(org = %principal.org, tool = %tool.exposed, error = %e, "module network policy refused a request");
            }
            Error::Conflict(format!("{}: {e}", tool.exposed))
        })?;
    if !(200..300).contains(&resp.status) {
        return Err(Error::Conflict(format!(
            "{}: the upstream answered HTTP {}",
            tool.exposed, resp.status
        )));
    }
    let body: Value = serde_json::from_slice(&resp.body).map_err(|_| {
        Error::Conflict(format!(
            "{}: the upstream's answer is not JSON",
            tool.exposed
        ))
    })?;
    let Some(h) = &tool.decl.http else {
        return Err(Error::Internal(format!(
            "{} has no http section",
            tool.exposed
        )));
    };
    Ok(Value::Object(validate::map_output(h, &body)))
}

async fn call_prompt(
    app: &Arc<App>,
    principal: &Principal,
    tool: &LiveTool,
    args: &Value,
) -> Result<Value> {
    let Some(p) = &tool.decl.prompt else {
        return Err(Error::Internal(format!(
            "{} has no prompt section",
            tool.exposed
        )));
    };
    let arg = |k: &str| {
        args.get(k)
            .filter(|v| !v.is_null())
            .map(manifest::value_text)
    };
    let prompt = manifest::fill(&p.template, &arg);
    let answer = ask_ladder(
        app,
        principal,
        &format!("module tool {}", tool.exposed),
        &tool.module_id,
        prompt,
        Some(&tool.decl.output_schema),
        p.task_type.clone(),
        p.complexity.clone(),
    )
    .await?;
    validate::parse_answer(&answer).ok_or_else(|| {
        Error::Conflict(format!(
            "{}: the ladder's answer is not a JSON object",
            tool.exposed
        ))
    })
}

/// Runs `prompt` up the dispatch ladder as a task of the caller's org and
/// returns the accepted answer.
#[allow(clippy::too_many_arguments)]
pub async fn ask_ladder(
    app: &Arc<App>,
    principal: &Principal,
    title: &str,
    project: &str,
    prompt: String,
    answer_schema: Option<&Value>,
    task_type: Option<String>,
    complexity: Option<String>,
) -> Result<String> {
    use crate::dispatch::RunState;
    use crate::dispatch::engine::{self, Begun, Hooks, RunRequest};
    let org = &principal.org;
    let task = app
        .store
        .task_create(
            org,
            crate::store::NewTask {
                id: app.ids.next(),
                workflow_id: None,
                title: title.to_string(),
                instruction: Some(prompt),
                project: project.to_string(),
                source: Some("module".into()),
                context: None,
                repo: None,
                paths: Vec::new(),
                answer_schema: answer_schema.map(Value::to_string),
                task_type,
                complexity,
                language: None,
                stack: None,
                domain: None,
                status: "open".into(),
                occurred_at: None,
                created_by: principal.key_id.clone(),
                now: app.clock.now_text(),
            },
        )
        .await?;
    let req = RunRequest {
        org: org.clone(),
        key_id: principal.key_id.clone(),
        task_id: task.id.clone(),
        idempotency_key: None,
        pin: None,
        detached: false,
        session: Some(principal.key_id.clone()),
        verifier: None,
    };
    let (run, rx) = match engine::begin(app, req, Hooks::default()).await? {
        Begun::New(run, rx) => (run, Some(rx)),
        Begun::Existing(run, rx) => (run, rx),
    };
    let wait = Duration::from_secs(app.config.modules.prompt_wait_secs.max(1));
    let run = match rx {
        Some(mut rx) if run.state == RunState::Running => {
            engine::wait(&mut rx, wait, &tokio_util::sync::CancellationToken::new())
                .await
                .unwrap_or(run)
        }
        _ => run,
    };
    match (run.state, run.answer) {
        (RunState::Succeeded, Some(a)) => Ok(a),
        (state, _) => Err(Error::Conflict(format!(
            "the ladder gave no answer: run {} is {}{}",
            run.id,
            state.as_str(),
            run.reason.map(|r| format!(" ({r})")).unwrap_or_default()
        ))),
    }
}

/// A credential's secret for this org, from `modules.credentials."<org>/<NAME>"`.
fn credential(app: &App, org: &str, name: &str) -> Result<String> {
    let key = format!("{org}/{name}");
    let Some(r) = app.config.modules.credentials.get(&key) else {
        return Err(Error::invalid(
            "credentials",
            format!(
                "credential {name} is not configured for this org: set modules.credentials.\"{key}\" to an env: or file: reference"
            ),
        ));
    };
    let secret = crate::quota::secret::SecretRef::parse(r)
        .and_then(|r| r.resolve())
        .map_err(|e| Error::invalid("credentials", format!("credential {name}: {e}")))?;
    Ok(secret.expose().to_string())
}

/// A body template: a string that is exactly `{field}` becomes the field's
/// JSON value; other strings are filled as text.
fn fill_value(t: &Value, args: &Value) -> Value {
    match t {
        Value::String(s) => {
            let refs = manifest::placeholders(s);
            if refs.len() == 1 && s.trim() == format!("{{{}}}", refs[0]) {
                return args.get(&refs[0]).cloned().unwrap_or(Value::Null);
            }
            Value::String(manifest::fill(s, &|k| {
                args.get(k)
                    .filter(|v| !v.is_null())
                    .map(manifest::value_text)
            }))
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| fill_value(x, args)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), fill_value(v, args)))
                .collect::<Map<String, Value>>(),
        ),
        other => other.clone(),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encoding_and_body_templates() {
        assert_eq!(encode("São Paulo/x"), "S%C3%A3o%20Paulo%2Fx");
        let args = json!({"n": 3, "city": "Oslo"});
        assert_eq!(
            fill_value(
                &json!({"count": "{n}", "q": "in {city}", "x": [1, "{city}"]}),
                &args
            ),
            json!({"count": 3, "q": "in Oslo", "x": [1, "Oslo"]})
        );
    }
}
