//! `bare-echo`: the floor of what rmcp 3.11 costs, for vaultline's benchmarks.
//!
//! A bare rmcp server with exactly one tool, `echo` (`{message: string}` → text),
//! and nothing else: no auth, no store, no middleware. Whatever vaultline adds on
//! top of rmcp is measured against this.
//!
//! ```text
//! bare-echo --http 127.0.0.1:PORT [--stateless]   # Streamable HTTP at /mcp
//! bare-echo --stdio                               # line-delimited JSON-RPC on stdin/stdout
//! ```
//!
//! HTTP is stateful by default (`LocalSessionManager`, SSE replies). `--stateless`
//! turns legacy sessions off, prefers plain JSON replies and uses
//! `NeverSessionManager`. Accepted sockets get `TCP_NODELAY`: without it SSE
//! replies meet the delayed-ACK timer and every call waits about 40 ms. With
//! port 0 the bound address is printed as `listening on ADDR`.

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, serve::ListenerExt};
use clap::Parser;
use rmcp::{
    ServerHandler, ServiceExt,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    tool, tool_handler, tool_router,
    transport::{
        StreamableHttpServerConfig, StreamableHttpService,
        streamable_http_server::session::{local::LocalSessionManager, never::NeverSessionManager},
    },
};
use serde::Deserialize;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Command line.
#[derive(Parser, Debug)]
#[command(name = "bare-echo", about = "A bare rmcp server with one `echo` tool")]
struct Cli {
    /// Serve Streamable HTTP at http://ADDR/mcp (port 0 picks a free port).
    #[arg(
        long,
        value_name = "ADDR",
        conflicts_with = "stdio",
        required_unless_present = "stdio"
    )]
    http: Option<SocketAddr>,
    /// HTTP without sessions: legacy_session_mode=false, json_response=true, NeverSessionManager.
    #[arg(long, requires = "http")]
    stateless: bool,
    /// Serve over stdin/stdout.
    #[arg(long)]
    stdio: bool,
}

/// Arguments of the `echo` tool.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// The text to send back.
    message: String,
}

/// The server: one tool router, shared by every session (the factory runs per POST).
#[derive(Clone)]
struct Echo {
    tool_router: Arc<ToolRouter<Echo>>,
}

#[tool_router]
impl Echo {
    fn new(tool_router: Arc<ToolRouter<Echo>>) -> Self {
        Self { tool_router }
    }

    /// Return the message unchanged.
    #[tool(description = "Echo the message back")]
    async fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        args.message
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Echo {}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    let router = Arc::new(Echo::tool_router());
    match cli.http {
        Some(addr) => serve_http(addr, cli.stateless, router).await,
        None => serve_stdio(router).await,
    }
}

/// Serve over stdin/stdout until the client closes stdin.
async fn serve_stdio(router: Arc<ToolRouter<Echo>>) -> Result<(), BoxError> {
    let running = Echo::new(router).serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    Ok(())
}

/// Serve Streamable HTTP at `/mcp` until Ctrl-C.
async fn serve_http(
    addr: SocketAddr,
    stateless: bool,
    router: Arc<ToolRouter<Echo>>,
) -> Result<(), BoxError> {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(!stateless)
        .with_json_response(stateless);
    let ct = config.cancellation_token.clone();
    let factory = move || Ok(Echo::new(router.clone()));
    let app = if stateless {
        let svc =
            StreamableHttpService::new(factory, Arc::new(NeverSessionManager::default()), config);
        Router::new().nest_service("/mcp", svc)
    } else {
        let svc =
            StreamableHttpService::new(factory, Arc::new(LocalSessionManager::default()), config);
        Router::new().nest_service("/mcp", svc)
    };

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    if addr.port() == 0 {
        println!("listening on {bound}");
    }
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            eprintln!("bare-echo: TCP_NODELAY failed: {e}");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            // An error here means no signal handler; then run until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            ct.cancel();
        })
        .await?;
    Ok(())
}
