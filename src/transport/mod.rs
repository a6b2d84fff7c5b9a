//! Transports: the only code that knows HTTP, stdio, JSON-RPC and rmcp types.
//!
//! `handler` is the rmcp `ServerHandler` shared by both transports; `http` is the
//! axum router with its middleware (Host/Origin, body limit, bearer auth, rate
//! limit, session-to-key binding, metrics); `rest` answers vault-mcp's `/tasks`
//! routes through the `task` tool; `stdio` serves one local user; `errors` is the
//! single mapping from domain errors to MCP results, JSON-RPC and HTTP errors.

pub mod errors;
pub mod fixtures;
pub mod handler;
pub mod http;
pub mod rest;
pub mod stdio;
pub mod surface;
