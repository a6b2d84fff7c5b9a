//! Conformance fixture mode. This module owns [`FixtureServer`], a hand-written
//! [`ServerHandler`] that exposes exactly the tools, resources, resource template
//! and prompts the server scenarios of `@modelcontextprotocol/conformance@0.1.16`
//! call by name (`test_simple_text`, `test://static-text`, `test_simple_prompt`, …),
//! plus the Streamable HTTP wiring those scenarios need ([`fixture_router`]: stateful
//! sessions, SSE priming and `Last-Event-ID` resumption, loopback-only Host/Origin
//! checks) and the listener that serves it ([`serve_fixtures`]). Fixture mode is off
//! by default and only starts with `vaultline serve --http ADDR --conformance-fixtures`;
//! it binds loopback addresses only, asks for no key, and never reads or serves real
//! vaultline data: every answer below is a canned test value.

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use axum::{
    Router,
    body::{Body, BodyDataStream},
    extract::{Request, State},
    http::{Method, header::CONTENT_TYPE},
    middleware::Next,
    response::Response,
    serve::ListenerExt as _,
};
use futures::{Stream, StreamExt as _};
use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams,
        CompleteResult, CompletionInfo, ContentBlock, ElicitRequestParams, ElicitResult,
        ElicitationSchema, GetPromptRequestParams, GetPromptResponse, GetPromptResult,
        Implementation, JsonObject, ListPromptsResult, ListResourceTemplatesResult,
        ListResourcesResult, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
        Prompt, PromptArgument, PromptMessage, ProtocolVersion, ReadResourceRequestParams,
        ReadResourceResponse, ReadResourceResult, Reference, Resource, ResourceContents,
        ResourceTemplate, Role, ServerCapabilities, ServerConfig, SubscribeRequestParams, Tool,
        UnsubscribeRequestParams,
    },
    service::RequestContext,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
        session::local::{LocalSessionManager, SessionConfig},
    },
};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// A 1x1 red PNG, base64.
const RED_PIXEL_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
/// Eight samples of 8 kHz mono 8-bit silence as a WAV file, base64.
const SILENT_WAV: &str = "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA==";

/// `retry:` hint sent with every SSE priming event.
const SSE_RETRY: Duration = Duration::from_secs(1);
/// Idle sessions are reaped after this long (conformance clients never DELETE theirs).
const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `test_reconnection` waits for the client's `Last-Event-ID` GET.
const RESUME_WAIT: Duration = Duration::from_secs(10);
/// Delay between the notifications of the logging and progress fixtures.
const NOTIFICATION_GAP: Duration = Duration::from_millis(50);

const SESSION_ID_HEADER: &str = "mcp-session-id";
const LAST_EVENT_ID_HEADER: &str = "last-event-id";
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
const LOOPBACK_ORIGINS: [&str; 3] = ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"];
/// MCP log levels from least to most severe (RFC 5424 order).
const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// The conformance fixture handler. Each session gets its own instance (log level and
/// resource subscriptions are per session); the reconnection hub is shared.
#[derive(Clone, Debug, Default)]
pub struct FixtureServer {
    hub: Arc<ReconnectHub>,
    /// Index into [`LOG_LEVELS`] of the lowest level the client wants (0 = everything).
    min_log_level: Arc<AtomicU8>,
    subscriptions: Arc<Mutex<HashSet<String>>>,
}

impl FixtureServer {
    /// A fixture handler with its own reconnection hub. [`fixture_router`] shares one
    /// hub between the handlers and the HTTP layer that closes and resumes SSE streams.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_hub(hub: Arc<ReconnectHub>) -> Self {
        Self {
            hub,
            ..Self::default()
        }
    }

    fn log_enabled(&self, level: &str) -> bool {
        level_index(level) >= self.min_log_level.load(Ordering::Relaxed)
    }

    #[allow(deprecated)] // SEP-2577 deprecates server logging; conformance 0.1.16 still tests it.
    async fn tool_with_logging(&self, ctx: &RequestContext<RoleServer>) -> CallToolResult {
        let messages = [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed",
        ];
        for (i, message) in messages.into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(NOTIFICATION_GAP).await;
            }
            if !self.log_enabled("info") {
                continue;
            }
            let param = rmcp::model::LoggingMessageNotificationParam::new(
                rmcp::model::LoggingLevel::Info,
                json!(message),
            )
            .with_logger("conformance-fixtures");
            if let Err(e) = ctx.peer.notify_logging_message(param).await {
                return tool_error(format!("failed to send log notification: {e}"));
            }
        }
        tool_text("Tool with logging executed successfully")
    }

    /// Closes this call's POST SSE stream right after its priming event, waits until
    /// the client has reconnected with `Last-Event-ID`, then returns, so the result
    /// travels on the resumed stream (SEP-1699 polling).
    async fn tool_reconnection(&self, ctx: &RequestContext<RoleServer>) -> CallToolResult {
        let done = tool_text("Reconnection test completed: result delivered after resume");
        let Some(parts) = ctx.extensions.get::<http::request::Parts>() else {
            return done;
        };
        let (Some(cut), Some(session)) = (
            parts.extensions.get::<PostStreamCut>(),
            parts
                .headers
                .get(SESSION_ID_HEADER)
                .and_then(|v| v.to_str().ok()),
        ) else {
            return done;
        };
        let resumed = self.hub.expect_resume(session);
        cut.0.cancel();
        if tokio::time::timeout(RESUME_WAIT, resumed).await.is_err() {
            self.hub.forget(session);
            tracing::debug!(session, "test_reconnection: client did not resume in time");
        }
        done
    }
}

impl ServerHandler for FixtureServer {
    #[allow(deprecated)] // enable_logging() is SEP-2577-deprecated; the suite still calls logging/setLevel.
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_tools()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "vaultline-conformance-fixtures",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "vaultline conformance fixture mode: canned MCP test fixtures only, no real data.",
            )
    }

    /// Sampling, elicitation and SSE resumption need the session model, which
    /// 2026-07-28 removed, so the fixtures stop at 2025-11-25 (what the suite speaks).
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(fixture_tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        fixture_tools().into_iter().find(|tool| tool.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.unwrap_or_default();
        let result = match request.name.as_ref() {
            "test_simple_text" => tool_text("This is a simple text response for testing."),
            "test_image_content" => CallToolResult::success(vec![red_pixel()]),
            "test_audio_content" => {
                CallToolResult::success(vec![ContentBlock::audio(SILENT_WAV, "audio/wav")])
            }
            "test_embedded_resource" => {
                CallToolResult::success(vec![ContentBlock::resource(ResourceContents::text(
                    "This is an embedded resource content.",
                    "test://embedded-resource",
                ))])
            }
            "test_multiple_content_types" => CallToolResult::success(vec![
                ContentBlock::text("Multiple content types test:"),
                red_pixel(),
                ContentBlock::resource(
                    ResourceContents::text(
                        json!({"test": "data", "value": 123}).to_string(),
                        "test://mixed-content-resource",
                    )
                    .with_mime_type("application/json"),
                ),
            ]),
            "test_tool_with_logging" => self.tool_with_logging(&ctx).await,
            "test_error_handling" => {
                tool_error("This tool intentionally returns an error for testing")
            }
            "test_tool_with_progress" => tool_with_progress(&ctx).await,
            "test_sampling" => tool_sampling(&args, &ctx).await,
            "test_elicitation" => {
                let Some(message) = args.get("message").and_then(Value::as_str) else {
                    return Ok(tool_error("missing required string argument `message`").into());
                };
                match elicit(&ctx, message, user_info_schema()).await {
                    Ok(r) => tool_text(format!("User response: {}", describe_elicitation(&r))),
                    Err(e) => tool_error(e),
                }
            }
            "test_elicitation_sep1034_defaults" => {
                let message = "Please review and update the form fields with defaults";
                match elicit(&ctx, message, sep1034_defaults_schema()).await {
                    Ok(r) => tool_text(format!(
                        "Elicitation completed: {}",
                        describe_elicitation(&r)
                    )),
                    Err(e) => tool_error(e),
                }
            }
            "test_elicitation_sep1330_enums" => {
                let message = "Please select options from the enum fields";
                match elicit(&ctx, message, sep1330_enums_schema()).await {
                    Ok(r) => tool_text(format!(
                        "Elicitation completed: {}",
                        describe_elicitation(&r)
                    )),
                    Err(e) => tool_error(e),
                }
            }
            "json_schema_2020_12_tool" => {
                tool_text(format!("Received arguments: {}", Value::Object(args)))
            }
            "test_reconnection" => self.tool_reconnection(&ctx).await,
            other => {
                return Err(McpError::invalid_params(
                    format!("unknown fixture tool: {other}"),
                    None,
                ));
            }
        };
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult::with_all_items(vec![
            Resource::new("test://static-text", "static-text")
                .with_description("A static text resource for testing")
                .with_mime_type("text/plain"),
            Resource::new("test://static-binary", "static-binary")
                .with_description("A static binary resource (1x1 PNG) for testing")
                .with_mime_type("image/png"),
            Resource::new("test://watched-resource", "watched-resource")
                .with_description("A resource that can be subscribed to")
                .with_mime_type("text/plain"),
        ]))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("test://template/{id}/data", "template-data")
                .with_description("A templated resource that echoes its {id}")
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri;
        let contents = match uri.as_str() {
            "test://static-text" => ResourceContents::text(
                "This is the content of the static text resource.",
                uri.as_str(),
            ),
            "test://static-binary" => {
                ResourceContents::blob(RED_PIXEL_PNG, uri.as_str()).with_mime_type("image/png")
            }
            "test://watched-resource" => {
                ResourceContents::text("Watched resource content.", uri.as_str())
            }
            _ => match template_id(&uri) {
                Some(id) => ResourceContents::text(
                    json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")})
                        .to_string(),
                    uri.as_str(),
                )
                .with_mime_type("application/json"),
                None => {
                    return Err(McpError::resource_not_found(
                        format!("unknown fixture resource: {uri}"),
                        None,
                    ));
                }
            },
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        lock(&self.subscriptions).insert(request.uri);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        lock(&self.subscriptions).remove(&request.uri);
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let required = |name: &str, description: &str| {
            PromptArgument::new(name)
                .with_description(description)
                .with_required(true)
        };
        Ok(ListPromptsResult::with_all_items(vec![
            Prompt::new(
                "test_simple_prompt",
                Some("A simple prompt without arguments"),
                None,
            ),
            Prompt::new(
                "test_prompt_with_arguments",
                Some("A prompt that substitutes two arguments"),
                Some(vec![
                    required("arg1", "First test argument"),
                    required("arg2", "Second test argument"),
                ]),
            ),
            Prompt::new(
                "test_prompt_with_embedded_resource",
                Some("A prompt that embeds a resource"),
                Some(vec![required(
                    "resourceUri",
                    "URI of the resource to embed",
                )]),
            ),
            Prompt::new(
                "test_prompt_with_image",
                Some("A prompt that includes an image"),
                None,
            ),
        ]))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let args = request.arguments.unwrap_or_default();
        let arg = |name: &str| {
            args.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    McpError::invalid_params(format!("missing required argument `{name}`"), None)
                })
                .map(str::to_owned)
        };
        let messages = match request.name.as_str() {
            "test_simple_prompt" => vec![PromptMessage::new_text(
                Role::User,
                "This is a simple prompt for testing.",
            )],
            "test_prompt_with_arguments" => {
                let (arg1, arg2) = (arg("arg1")?, arg("arg2")?);
                vec![PromptMessage::new_text(
                    Role::User,
                    format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"),
                )]
            }
            "test_prompt_with_embedded_resource" => {
                let uri = arg("resourceUri")?;
                vec![
                    PromptMessage::new(
                        Role::User,
                        ContentBlock::resource(ResourceContents::text(
                            "Embedded resource content for testing.",
                            uri,
                        )),
                    ),
                    PromptMessage::new_text(
                        Role::User,
                        "Please process the embedded resource above.",
                    ),
                ]
            }
            "test_prompt_with_image" => vec![
                PromptMessage::new(Role::User, red_pixel()),
                PromptMessage::new_text(Role::User, "Please analyze the image above."),
            ],
            other => {
                return Err(McpError::invalid_params(
                    format!("unknown fixture prompt: {other}"),
                    None,
                ));
            }
        };
        Ok(GetPromptResult::new(messages).into())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let argument = request.argument.name.as_str();
        let candidates: &[&str] = match &request.r#ref {
            Reference::Prompt(prompt) if prompt.name == "test_prompt_with_arguments" => {
                match argument {
                    "arg1" => &["paris", "park", "party"],
                    "arg2" => &["testValue1", "testValue2"],
                    _ => &[],
                }
            }
            Reference::Resource(template)
                if template.uri == "test://template/{id}/data" && argument == "id" =>
            {
                &["123", "456"]
            }
            _ => &[],
        };
        let values = candidates
            .iter()
            .filter(|value| value.starts_with(request.argument.value.as_str()))
            .map(|value| (*value).to_owned())
            .collect();
        let completion =
            CompletionInfo::new(values).map_err(|e| McpError::internal_error(e, None))?;
        Ok(CompleteResult::new(completion))
    }

    #[allow(deprecated)] // logging/setLevel is SEP-2577-deprecated; conformance 0.1.16 still tests it.
    async fn set_level(
        &self,
        request: rmcp::model::SetLevelRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let name = serde_json::to_value(request.level)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.min_log_level
            .store(level_index(&name), Ordering::Relaxed);
        Ok(())
    }
}

/// Builds the fixture MCP endpoint: the [`FixtureServer`] behind rmcp's Streamable
/// HTTP service at `/mcp`, with stateful sessions, SSE priming (`retry:`), and
/// loopback-only Host and Origin allowlists (anything else gets 403).
pub fn fixture_router(ct: CancellationToken) -> Router {
    let hub = Arc::new(ReconnectHub::default());

    let mut session_config = SessionConfig::default();
    session_config.sse_retry = Some(SSE_RETRY);
    session_config.keep_alive = Some(SESSION_IDLE_TIMEOUT);
    let mut sessions = LocalSessionManager::default();
    sessions.session_config = session_config;

    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(LOOPBACK_HOSTS)
        .with_allowed_origins(LOOPBACK_ORIGINS)
        .with_sse_retry(Some(SSE_RETRY))
        .with_cancellation_token(ct.child_token());
    let factory_hub = Arc::clone(&hub);
    let service = StreamableHttpService::new(
        move || Ok(FixtureServer::with_hub(Arc::clone(&factory_hub))),
        Arc::new(sessions),
        config,
    );
    Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(hub, sse_polling_layer))
}

/// Serves the conformance fixtures on `addr` until `ct` is cancelled. Refuses any
/// address that is not loopback: fixture mode needs no key.
pub async fn serve_fixtures(addr: SocketAddr, ct: CancellationToken) -> anyhow::Result<()> {
    ensure_loopback(addr)?;
    tracing::warn!(
        %addr,
        "CONFORMANCE FIXTURE MODE IS ON: this endpoint serves canned MCP test fixtures only, \
         NO real vaultline data, and requires NO key. Use it for conformance testing only."
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind the conformance fixture listener on {addr}"))?;
    let local = listener
        .local_addr()
        .context("cannot read the fixture listener's bound address")?;
    println!("vaultline conformance fixtures listening on http://{local}/mcp");

    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("failed to set TCP_NODELAY on a fixture connection: {e}");
        }
    });
    axum::serve(listener, fixture_router(ct.clone()))
        .with_graceful_shutdown(ct.cancelled_owned())
        .await
        .context("conformance fixture server failed")
}

fn ensure_loopback(addr: SocketAddr) -> anyhow::Result<()> {
    if !addr.ip().to_canonical().is_loopback() {
        bail!(
            "refusing to serve conformance fixtures on non-loopback address {addr}: fixture \
             mode needs no key, so it only listens on 127.0.0.1 or [::1]"
        );
    }
    Ok(())
}

// --- SSE polling (server-sse-polling, SEP-1699) -------------------------------------
//
// rmcp can close a request's SSE stream (`LocalSessionHandle::close_sse_stream`) but a
// handler cannot learn its own stream's id, so the HTTP layer below does the cut: it
// hands every POST a `PostStreamCut` through the request extensions (rmcp forwards the
// HTTP `Parts` to handlers) and ends that POST's SSE body when the handler cancels it.
// rmcp drops a request's stream cache once the response is sent, so the handler waits
// until the client's `Last-Event-ID` GET has been resumed before it returns.

/// Lets a tool end the SSE body of the POST that carried its call.
#[derive(Clone, Debug)]
struct PostStreamCut(CancellationToken);

/// Sessions whose `test_reconnection` call waits for a `Last-Event-ID` reconnect.
#[derive(Debug, Default)]
struct ReconnectHub {
    waiting: Mutex<HashMap<String, oneshot::Sender<()>>>,
}

impl ReconnectHub {
    fn expect_resume(&self, session: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(session.to_owned(), tx);
        rx
    }

    fn resumed(&self, session: &str) {
        if let Some(tx) = lock(&self.waiting).remove(session) {
            let _ = tx.send(());
        }
    }

    fn forget(&self, session: &str) {
        lock(&self.waiting).remove(session);
    }
}

async fn sse_polling_layer(
    State(hub): State<Arc<ReconnectHub>>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.method() == Method::POST {
        let cut = CancellationToken::new();
        request.extensions_mut().insert(PostStreamCut(cut.clone()));
        let response = next.run(request).await;
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            return response;
        }
        let (parts, body) = response.into_parts();
        return Response::from_parts(
            parts,
            Body::from_stream(end_when_cut(body.into_data_stream(), cut)),
        );
    }
    let resuming_session = (request.method() == Method::GET
        && request.headers().contains_key(LAST_EVENT_ID_HEADER))
    .then(|| {
        request
            .headers()
            .get(SESSION_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    })
    .flatten();
    // rmcp has re-attached the stream by the time it answers the GET.
    let response = next.run(request).await;
    if let Some(session) = resuming_session
        && response.status().is_success()
    {
        hub.resumed(&session);
    }
    response
}

/// Forwards `body` until `cut` is cancelled. Pending data wins over the cut, so the
/// priming event already queued when the handler runs still goes out first.
fn end_when_cut(
    body: BodyDataStream,
    cut: CancellationToken,
) -> impl Stream<Item = Result<axum::body::Bytes, axum::Error>> + Send + 'static {
    futures::stream::unfold(Some((body, cut)), |state| async move {
        let (mut body, cut) = state?;
        let next = tokio::select! {
            biased;
            item = body.next() => item,
            () = cut.cancelled() => None,
        };
        next.map(|item| (item, Some((body, cut))))
    })
}

// --- fixture data ---------------------------------------------------------------------

fn fixture_tools() -> Vec<Tool> {
    let no_args = || schema(json!({"type": "object", "properties": {}}));
    let one_string = |name: &str, description: &str| {
        schema(json!({
            "type": "object",
            "properties": {name: {"type": "string", "description": description}},
            "required": [name],
        }))
    };
    vec![
        Tool::new("test_simple_text", "Returns a simple text block", no_args()),
        Tool::new("test_image_content", "Returns a 1x1 PNG image", no_args()),
        Tool::new("test_audio_content", "Returns a short WAV clip", no_args()),
        Tool::new(
            "test_embedded_resource",
            "Returns an embedded text resource",
            no_args(),
        ),
        Tool::new(
            "test_multiple_content_types",
            "Returns text, image and resource content",
            no_args(),
        ),
        Tool::new(
            "test_tool_with_logging",
            "Sends three info log notifications ~50 ms apart while running",
            no_args(),
        ),
        Tool::new(
            "test_error_handling",
            "Always returns a tool error (isError: true)",
            no_args(),
        ),
        Tool::new(
            "test_tool_with_progress",
            "Reports progress 0, 50, 100 of 100 to the request's progress token",
            no_args(),
        ),
        Tool::new(
            "test_sampling",
            "Asks the client to sample an LLM reply (sampling/createMessage)",
            one_string("prompt", "The prompt to send to the LLM"),
        ),
        Tool::new(
            "test_elicitation",
            "Asks the client for a username and email (elicitation/create)",
            one_string("message", "The message to show the user"),
        ),
        Tool::new(
            "test_elicitation_sep1034_defaults",
            "Elicits a form whose fields all carry defaults (SEP-1034)",
            no_args(),
        ),
        Tool::new(
            "test_elicitation_sep1330_enums",
            "Elicits a form with all five enum styles (SEP-1330)",
            no_args(),
        ),
        Tool::new(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features",
            json_schema_2020_12_input(),
        ),
        Tool::new(
            "test_reconnection",
            "Closes its SSE stream mid-call and answers after the client resumes (SEP-1699)",
            no_args(),
        ),
    ]
}

fn json_schema_2020_12_input() -> JsonObject {
    schema(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "type": "object",
                "properties": {
                    "street": {"type": "string"},
                    "city": {"type": "string"},
                },
            },
        },
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"},
        },
        "additionalProperties": false,
    }))
}

fn user_info_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        "required": ["username", "email"],
    })
}

fn sep1034_defaults_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verified user", "default": true},
        },
    })
}

fn sep1330_enums_schema() -> Value {
    let titled = |prefix: &str, noun: &str| {
        ["First", "Second", "Third"]
            .iter()
            .enumerate()
            .map(|(i, ordinal)| json!({"const": format!("{prefix}{}", i + 1), "title": format!("{ordinal} {noun}")}))
            .collect::<Vec<_>>()
    };
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Untitled single-select",
                "enum": ["option1", "option2", "option3"],
            },
            "titledSingle": {
                "type": "string",
                "description": "Titled single-select",
                "oneOf": titled("value", "Option"),
            },
            "legacyEnum": {
                "type": "string",
                "description": "Legacy titled enum",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Untitled multi-select",
                "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
            },
            "titledMulti": {
                "type": "array",
                "description": "Titled multi-select",
                "items": {"anyOf": titled("value", "Choice")},
            },
        },
    })
}

// --- helpers --------------------------------------------------------------------------

fn schema(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

fn red_pixel() -> ContentBlock {
    ContentBlock::image(RED_PIXEL_PNG, "image/png")
}

fn tool_text(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

fn tool_error(text: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text)])
}

fn level_index(level: &str) -> u8 {
    LOG_LEVELS
        .iter()
        .position(|l| *l == level)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(0)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `123` for `test://template/123/data`.
fn template_id(uri: &str) -> Option<&str> {
    let id = uri
        .strip_prefix("test://template/")?
        .strip_suffix("/data")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

async fn tool_with_progress(ctx: &RequestContext<RoleServer>) -> CallToolResult {
    let Some(token) = ctx.meta.get_progress_token() else {
        return tool_text("No progress token was given; nothing to report");
    };
    for (i, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(NOTIFICATION_GAP).await;
        }
        let param = ProgressNotificationParam::new(token.clone(), progress).with_total(100.0);
        if let Err(e) = ctx.peer.notify_progress(param).await {
            return tool_error(format!("failed to send progress notification: {e}"));
        }
    }
    tool_text("Progress tool completed")
}

#[allow(deprecated)] // SEP-2577 deprecates sampling; conformance 0.1.16 still tests it.
async fn tool_sampling(args: &JsonObject, ctx: &RequestContext<RoleServer>) -> CallToolResult {
    let Some(prompt) = args.get("prompt").and_then(Value::as_str) else {
        return tool_error("missing required string argument `prompt`");
    };
    let supported = ctx
        .peer
        .peer_info()
        .is_some_and(|info| info.capabilities.sampling.is_some());
    if !supported {
        return tool_error("the client did not declare the sampling capability");
    }
    let params = rmcp::model::CreateMessageRequestParams::new(
        vec![rmcp::model::SamplingMessage::user_text(prompt)],
        100,
    );
    match ctx.peer.create_message(params).await {
        Ok(result) => {
            let content = serde_json::to_value(&result.message.content).unwrap_or(Value::Null);
            let text = content
                .get("text")
                .and_then(Value::as_str)
                .map_or_else(|| content.to_string(), str::to_owned);
            tool_text(format!("LLM response: {text}"))
        }
        Err(e) => tool_error(format!("sampling request failed: {e}")),
    }
}

async fn elicit(
    ctx: &RequestContext<RoleServer>,
    message: &str,
    requested_schema: Value,
) -> Result<ElicitResult, String> {
    if ctx.peer.supported_elicitation_modes().is_empty() {
        return Err("the client did not declare the elicitation capability".to_owned());
    }
    let requested_schema: ElicitationSchema = serde_json::from_value(requested_schema)
        .map_err(|e| format!("invalid fixture elicitation schema: {e}"))?;
    let params = ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: message.to_owned(),
        requested_schema,
    };
    ctx.peer
        .create_elicitation(params)
        .await
        .map_err(|e| format!("elicitation request failed: {e}"))
}

fn describe_elicitation(result: &ElicitResult) -> String {
    let action = serde_json::to_value(&result.action).unwrap_or(Value::Null);
    let action = action.as_str().unwrap_or("unknown");
    let content = result.content.clone().unwrap_or(Value::Null);
    format!("action={action}, content={content}")
}

#[cfg(test)]
mod tests {
    use axum::http::{Request as HttpRequest, StatusCode};
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test]
    async fn refuses_non_loopback_addresses() {
        for addr in [
            "0.0.0.0:0",
            "192.168.1.20:8080",
            "[::]:0",
            "[2001:db8::1]:443",
        ] {
            let addr: SocketAddr = addr.parse().expect("test address");
            let err = serve_fixtures(addr, CancellationToken::new())
                .await
                .expect_err("non-loopback address must be refused");
            assert!(err.to_string().contains("non-loopback"), "{addr}: {err}");
        }
    }

    #[test]
    fn accepts_loopback_addresses() {
        for addr in [
            "127.0.0.1:0",
            "127.0.0.2:9",
            "[::1]:0",
            "[::ffff:127.0.0.1]:80",
        ] {
            let addr: SocketAddr = addr.parse().expect("test address");
            assert!(ensure_loopback(addr).is_ok(), "{addr}");
        }
    }

    #[tokio::test]
    async fn serves_on_loopback_and_stops_on_cancel() {
        let ct = CancellationToken::new();
        let server = tokio::spawn(serve_fixtures(
            "127.0.0.1:0".parse().expect("addr"),
            ct.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        ct.cancel();
        let outcome = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops after cancellation")
            .expect("server task joins");
        assert!(outcome.is_ok(), "{outcome:?}");
    }

    fn initialize(host: &str, origin: Option<&str>) -> HttpRequest<Body> {
        let mut builder = HttpRequest::post("/mcp")
            .header("host", host)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(origin) = origin {
            builder = builder.header("origin", origin);
        }
        let body = json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "fixture-test", "version": "0"},
            },
        });
        builder.body(Body::from(body.to_string())).expect("request")
    }

    #[tokio::test]
    async fn rejects_foreign_host_and_origin() {
        let ct = CancellationToken::new();
        let cases = [
            (
                "evil.example.com",
                Some("http://evil.example.com"),
                StatusCode::FORBIDDEN,
            ),
            (
                "127.0.0.1:3000",
                Some("http://evil.example.com"),
                StatusCode::FORBIDDEN,
            ),
            ("evil.example.com", None, StatusCode::FORBIDDEN),
            (
                "127.0.0.1:3000",
                Some("http://127.0.0.1:3000"),
                StatusCode::OK,
            ),
            (
                "localhost:3000",
                Some("http://localhost:3000"),
                StatusCode::OK,
            ),
            ("[::1]:3000", None, StatusCode::OK),
        ];
        for (host, origin, expected) in cases {
            let response = fixture_router(ct.clone())
                .oneshot(initialize(host, origin))
                .await
                .expect("infallible");
            assert_eq!(response.status(), expected, "host={host} origin={origin:?}");
        }
        ct.cancel();
    }

    #[test]
    fn elicitation_schemas_keep_every_field() {
        let defaults = serde_json::from_value::<ElicitationSchema>(sep1034_defaults_schema())
            .expect("SEP-1034 schema parses");
        let defaults = serde_json::to_value(defaults).expect("serializes");
        let props = &defaults["properties"];
        assert_eq!(props["name"]["default"], "John Doe");
        assert_eq!(props["age"]["type"], "integer");
        assert_eq!(props["age"]["default"], 30);
        assert_eq!(props["score"]["default"], 95.5);
        assert_eq!(props["status"]["default"], "active");
        assert_eq!(props["status"]["enum"][2], "pending");
        assert_eq!(props["verified"]["default"], true);

        let enums = serde_json::from_value::<ElicitationSchema>(sep1330_enums_schema())
            .expect("SEP-1330 schema parses");
        let enums = serde_json::to_value(enums).expect("serializes");
        assert_eq!(enums["properties"], sep1330_enums_schema()["properties"]);

        let user = serde_json::from_value::<ElicitationSchema>(user_info_schema())
            .expect("user schema parses");
        let user = serde_json::to_value(user).expect("serializes");
        assert_eq!(user["required"], json!(["username", "email"]));
    }

    #[test]
    fn json_schema_2020_12_keywords_survive_listing() {
        let tool = fixture_tools()
            .into_iter()
            .find(|t| t.name == "json_schema_2020_12_tool")
            .expect("tool exists");
        let listed = serde_json::to_value(&tool).expect("serializes");
        let schema = &listed["inputSchema"];
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert!(schema["$defs"]["address"].is_object());
        assert_eq!(schema["additionalProperties"], false);
    }

    #[test]
    fn every_fixture_tool_has_a_description_and_object_schema() {
        let tools = fixture_tools();
        assert_eq!(tools.len(), 14);
        for tool in tools {
            assert!(tool.description.is_some(), "{}", tool.name);
            assert_eq!(tool.input_schema.get("type"), Some(&json!("object")));
        }
    }

    #[test]
    fn template_ids_are_parsed() {
        assert_eq!(template_id("test://template/123/data"), Some("123"));
        assert_eq!(template_id("test://template//data"), None);
        assert_eq!(template_id("test://template/1/2/data"), None);
        assert_eq!(template_id("test://static-text"), None);
    }

    #[test]
    fn log_levels_are_ordered() {
        assert_eq!(level_index("debug"), 0);
        assert!(level_index("warning") > level_index("info"));
        assert_eq!(level_index("emergency"), 7);
    }
}
