//! The rmcp `ServerHandler` behind both transports.
//!
//! It finds the principal (over HTTP, what the bearer middleware put in the
//! request's extensions; over stdio, the configured local user), lists the tools
//! the registry built at start-up, routes `tools/call` through the registry's
//! strict checks, meters every call, and serves resources, the `resume` prompt,
//! completions and logging levels. Business rules live in `tools` and below.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rmcp::model::*;
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::Value;

use super::{errors, surface};
use crate::app::App;
use crate::auth::Principal;
use crate::tools::{self, CallCtx};

/// Protocol versions served, newest first. 2026-07-28 is left out on purpose:
/// its sessionless era cannot yet keep the session-to-key binding.
pub const PROTOCOL_VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2025_11_25,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_03_26,
];

/// Per-session state (one handler instance serves one session).
#[derive(Default)]
pub struct SessionState {
    pub subscriptions: Arc<super::surface::Subscriptions>,
    /// The level the client asked for with `logging/setLevel` (lowercase name).
    pub log_level: Mutex<Option<String>>,
    /// Whether this session already forwards tool-list changes of its org.
    pub tools_forwarding: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
pub struct Handler {
    pub app: Arc<App>,
    /// The stdio user; `None` over HTTP, where the middleware supplies the principal.
    local: Option<Principal>,
    tools: Arc<Vec<Tool>>,
    pub session: Arc<SessionState>,
}

/// The tools as rmcp types, built once from the registry.
pub fn listed_tools(app: &App) -> Arc<Vec<Tool>> {
    Arc::new(
        app.registry
            .list()
            .map(|l| {
                Tool::new(l.name, l.description, Arc::new(l.input_schema.clone()))
                    .with_raw_output_schema(Arc::new(l.output_schema.clone()))
                    .with_annotations(
                        ToolAnnotations::new()
                            .read_only(l.read_only)
                            .destructive(l.destructive)
                            .idempotent(l.idempotent)
                            .open_world(false),
                    )
            })
            .collect(),
    )
}

impl Handler {
    pub fn new(app: Arc<App>, local: Option<Principal>, tools: Arc<Vec<Tool>>) -> Handler {
        Handler {
            app,
            local,
            tools,
            session: Arc::new(SessionState::default()),
        }
    }

    /// A fresh handler for a new session, sharing everything but session state.
    pub fn for_session(&self) -> Handler {
        Handler {
            session: Arc::new(SessionState::default()),
            ..self.clone()
        }
    }

    pub fn principal(&self, ctx: &RequestContext<RoleServer>) -> Option<Principal> {
        if let Some(p) = &self.local {
            return Some(p.clone());
        }
        ctx.extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Principal>())
            .cloned()
    }

    /// The connected person, when the client declared elicitation and config
    /// names it in `execute.interactive_clients`: the human rung asks them.
    fn person(
        &self,
        ctx: &RequestContext<RoleServer>,
    ) -> Option<(String, crate::dispatch::engine::PersonFn)> {
        let name = ctx.peer.peer_info()?.client_info.name.clone();
        if !self.app.config.execute.interactive_clients.contains(&name)
            || ctx.peer.supported_elicitation_modes().is_empty()
        {
            return None;
        }
        let peer = ctx.peer.clone();
        let ask: crate::dispatch::engine::PersonFn = Arc::new(move |question: String| {
            let peer = peer.clone();
            Box::pin(async move {
                let schema: ElicitationSchema = serde_json::from_value(serde_json::json!({
                    "type": "object",
                    "properties": {"answer": {"type": "string", "description": "Your answer to the task"}},
                    "required": ["answer"]
                }))
                .map_err(|e| format!("elicitation schema: {e}"))?;
                let params = ElicitRequestParams::FormElicitationParams {
                    meta: None,
                    message: question,
                    requested_schema: schema,
                };
                let r = peer
                    .create_elicitation(params)
                    .await
                    .map_err(|e| format!("elicitation request failed: {e}"))?;
                Ok(match r.action {
                    ElicitationAction::Accept => r
                        .content
                        .as_ref()
                        .and_then(|c| c.get("answer"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    _ => None,
                })
            })
        });
        Some((name, ask))
    }

    fn require_principal(&self, ctx: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
        self.principal(ctx)
            .ok_or_else(|| ErrorData::invalid_request("this request needs an API key", None))
    }
}

/// An installed module's tool as rmcp lists it.
fn module_tool(t: &crate::modules::runtime::LiveTool) -> Tool {
    let a = &t.decl.annotations;
    let mut ann = ToolAnnotations::new()
        .read_only(a.read_only_hint.unwrap_or(false))
        .destructive(a.destructive_hint.unwrap_or(false))
        .idempotent(a.idempotent_hint.unwrap_or(false))
        .open_world(a.open_world_hint.unwrap_or(true));
    if let Some(title) = &a.title {
        ann.title = Some(title.clone());
    }
    Tool::new(
        t.exposed.clone(),
        t.decl.description.clone(),
        Arc::new(as_object(t.decl.input_schema.clone())),
    )
    .with_raw_output_schema(Arc::new(as_object(t.decl.output_schema.clone())))
    .with_annotations(ann)
}

impl Handler {
    /// Sends `notifications/tools/list_changed` to this session whenever its
    /// org's installed tools change; started once per session, ends with it.
    fn forward_tool_changes(&self, org: &str, peer: rmcp::Peer<RoleServer>) {
        use std::sync::atomic::Ordering;
        if self.session.tools_forwarding.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut rx = self.app.changes.subscribe();
        let org = org.to_string();
        let session = self.session.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(crate::app::Change::Tools { org: o }) if o == org => {
                        if peer.notify_tool_list_changed().await.is_err() {
                            break;
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
            session.tools_forwarding.store(false, Ordering::SeqCst);
        });
    }

    /// Runs an installed module's tool: strict input, run, checked output,
    /// metered as a tool call (run units; billed when config prices it).
    async fn call_module_tool(
        &self,
        tool: &crate::modules::runtime::LiveTool,
        args: Option<JsonObject>,
        principal: Principal,
        ctx: &RequestContext<RoleServer>,
        started: Instant,
    ) -> CallToolResult {
        let mut args = args.unwrap_or_default();
        args.retain(|_, v| !v.is_null());
        let (org, key_id) = (principal.org.clone(), principal.key_id.clone());
        let call = CallCtx {
            app: self.app.clone(),
            principal,
            ct: ctx.ct.clone(),
            progress: None,
            person: None,
        };
        let out = tools::module::call_installed(&call, tool, Value::Object(args)).await;
        let done = Done {
            org: &org,
            key_id: &key_id,
            metric: ("module_tool", ""),
            name: &tool.exposed,
            shown: &tool.exposed,
            action: None,
        };
        self.settle(done, out, started.elapsed().as_secs_f64())
            .await
    }

    /// What every tool call does once it ran: its run unit and metric; for a
    /// success the answer, billed first when config prices the tool (so an
    /// answered call is a committed charge; `_meta` says which); for a failure
    /// the tool error.
    async fn settle(
        &self,
        d: Done<'_>,
        out: crate::error::Result<tools::ToolOutput>,
        secs: f64,
    ) -> CallToolResult {
        let (tool, action) = d.metric;
        self.app
            .meter
            .count_run(d.org, d.key_id, d.name, out.is_ok());
        match out {
            Ok(out) => {
                self.app.metrics.tool_call(tool, action, "ok", secs);
                // Built by hand: `CallToolResult::structured` would serialise the
                // value once more into a text block we replace anyway.
                let mut r = CallToolResult::success(vec![ContentBlock::text(out.text)]);
                r.structured_content = Some(out.structured);
                if self.app.meter.tool_price(d.name).is_some() {
                    match self.app.meter.charge_tool(d.org, d.key_id, d.name).await {
                        Ok(Some(receipt)) => {
                            let mut m = serde_json::Map::new();
                            m.insert(
                                "vaultline/charge".into(),
                                serde_json::to_value(&receipt).unwrap_or_default(),
                            );
                            r.meta = Some(rmcp::model::MetaObject(m));
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, tool = d.name, "could not bill a priced tool call")
                        }
                    }
                }
                r
            }
            Err(e) => {
                let outcome = match e {
                    crate::error::Error::Internal(_) => "error",
                    _ => "refused",
                };
                self.app.metrics.tool_call(tool, action, outcome, secs);
                errors::tool_error(d.shown, d.action, &e)
            }
        }
    }
}

/// Who a finished call belongs to and how it is named: `name` for run units,
/// prices and errors, `metric` the (tool, action) labels of the call metric.
struct Done<'a> {
    org: &'a str,
    key_id: &'a str,
    metric: (&'static str, &'static str),
    name: &'a str,
    shown: &'a str,
    action: Option<&'a str>,
}

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        #[allow(deprecated)]
        // logging is deprecated by SEP-2577 but still part of the versions we serve
        let caps = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        ServerConfig::new(caps)
            .with_server_info(Implementation::new("vaultline", crate::app::VERSION))
            .with_instructions(
                "vaultline keeps the record of agent work. Start a session with `checkpoint handoff` \
                 (or `health canary` to check memory works), record work with `workflow` and `task`, \
                 and save a `checkpoint` before your context is compacted.",
            )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(PROTOCOL_VERSIONS)
    }

    async fn discover(
        &self,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, ErrorData> {
        // Clients that probe the sessionless era first fall back to `initialize` on an error.
        Err(ErrorData::method_not_found::<DiscoverRequestMethod>())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = self.tools.as_ref().clone();
        // Installed modules' tools, for the caller's org only.
        if let Some(p) = self.principal(&ctx) {
            match self.app.modules.for_org(&self.app, &p.org).await {
                Ok(installed) => {
                    let read_only = self.app.config.tools.read_only;
                    tools.extend(
                        installed
                            .tools
                            .iter()
                            .filter(|t| !read_only || t.read_only())
                            .map(|t| module_tool(t)),
                    );
                }
                Err(e) => tracing::warn!(error = %e, "could not list module tools"),
            }
            self.forward_tool_changes(&p.org, ctx.peer.clone());
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let principal = self.require_principal(&ctx)?;
        let started = Instant::now();
        let name = request.name.to_string();
        // Only module tools are named namespace__name; keep their arguments.
        let module_args = if name.contains("__") {
            request.arguments.clone()
        } else {
            None
        };
        let resolved = match self
            .app
            .registry
            .resolve(&name, request.arguments, &principal)
        {
            Ok(r) => r,
            Err(Ok(unknown)) => {
                let installed = match self.app.modules.for_org(&self.app, &principal.org).await {
                    Ok(t) => t.find(&unknown.0),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not load module tools");
                        None
                    }
                };
                let Some(tool) = installed else {
                    self.app
                        .metrics
                        .tool_call("unknown", "", "unknown_tool", 0.0);
                    return Err(errors::unknown_tool(&unknown.0));
                };
                return Ok(self
                    .call_module_tool(&tool, module_args, principal, &ctx, started)
                    .await
                    .into());
            }
            Err(Err(e)) => {
                self.app.metrics.tool_call(
                    self.app.registry.static_name(&name).unwrap_or("unknown"),
                    "",
                    "invalid",
                    started.elapsed().as_secs_f64(),
                );
                return Ok(errors::tool_error(&name, None, &e).into());
            }
        };
        let action = resolved.action.name;
        let tool = resolved.tool;
        // Progress goes out in order, through one forwarder per call, and is flushed
        // before the result so a client never sees progress after the answer.
        let mut forwarder = None;
        let progress = ctx.meta.get_progress_token().map(|token| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ProgressNotificationParam>();
            let peer = ctx.peer.clone();
            forwarder = Some(tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    if peer.notify_progress(p).await.is_err() {
                        break;
                    }
                }
            }));
            let f: tools::ProgressFn = Arc::new(move |done, total, message| {
                let mut p = ProgressNotificationParam::new(token.clone(), done);
                if let Some(t) = total {
                    p = p.with_total(t);
                }
                if let Some(m) = message {
                    p = p.with_message(m);
                }
                let _ = tx.send(p);
            });
            f
        });
        let (org, key_id) = (principal.org.clone(), principal.key_id.clone());
        let call = CallCtx {
            app: self.app.clone(),
            principal,
            ct: ctx.ct.clone(),
            progress,
            person: self.person(&ctx),
        };
        let out = tools::dispatch(&call, resolved).await;
        drop(call);
        if let Some(f) = forwarder {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), f).await;
        }
        let done = Done {
            org: &org,
            key_id: &key_id,
            metric: (tool, action),
            name: tool,
            shown: &name,
            action: Some(action),
        };
        let result = self
            .settle(done, out, started.elapsed().as_secs_f64())
            .await;
        Ok(result.into())
    }

    // Logging is deprecated by SEP-2577 but part of the protocol versions we serve.
    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let level = serde_json::to_value(request.level)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        if let Ok(mut l) = self.session.log_level.lock() {
            *l = level;
        }
        Ok(())
    }

    async fn on_initialized(&self, _ctx: NotificationContext<RoleServer>) {}

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let p = self.require_principal(&ctx)?;
        surface::list(&self.app, &p).await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(surface::templates())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let p = self.require_principal(&ctx)?;
        Ok(surface::read(&self.app, &p, &request.uri).await?.into())
    }

    // resources/subscribe is legacy-only in rmcp's eyes; it is current in the versions we serve.
    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let p = self.require_principal(&ctx)?;
        self.session
            .subscriptions
            .subscribe(&self.app, &p, &request.uri, ctx.peer.clone())
            .await
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.session.subscriptions.unsubscribe(&request.uri);
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(surface::prompts())
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let p = self.require_principal(&ctx)?;
        Ok(surface::get_prompt(&self.app, &p, &request).await?.into())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let p = self.require_principal(&ctx)?;
        surface::complete(&self.app, &p, &request).await
    }
}

/// Turns a JSON object value into the map rmcp wants.
pub fn as_object(v: Value) -> JsonObject {
    match v {
        Value::Object(m) => m,
        _ => JsonObject::new(),
    }
}
