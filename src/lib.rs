//! vaultline: an MCP control plane for AI coding agents.
//!
//! Module map (outermost first):
//! - `cli` — the command line (`serve`, `keys`, `orgs`, `migrate`); start-up only.
//! - `transport` — the only code that knows HTTP, stdio, JSON-RPC and rmcp.
//! - `tools` — one file per MCP tool, and the registry that lists, checks and dispatches them.
//! - domain modules — `workflows`, `tasks`, `checkpoints`, `quota`: rules as plain functions over plain data.
//! - `import` — `vaultline import` of vault-mcp's D1 dump or backup JSON.
//! - `auth` — roles, principals, API keys, rate limits.
//! - `store` — the only importer of rusqlite: typed verbs over one SQLite file.
//! - `backup` — online backup, retention, the backup schedule, restore.
//! - `app`, `config`, `clock`, `error`, `metrics`, `alerts` — shared plumbing.
//!
//! See `docs/ARCHITECTURE.md` for the invariants.

pub mod alerts;
pub mod app;
pub mod auth;
pub mod backup;
pub mod checkpoints;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod import;
pub mod metering;
pub mod metrics;
pub mod modules;
pub mod money;
pub mod providers;
pub mod quota;
pub mod store;
pub mod tasks;
pub mod tools;
pub mod transport;
pub mod workflows;

#[cfg(test)]
mod tidy;
