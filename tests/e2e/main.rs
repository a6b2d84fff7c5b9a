//! End-to-end tests: the real binary, a real SQLite file, rmcp's client over
//! Streamable HTTP and stdio. One test binary, so the suite links once.

mod access;
mod backup;
mod bad_input;
mod billing;
mod common;
mod execute;
mod execute_cli;
mod import;
mod mcp_surface;
mod modules;
mod quota;
mod rest;
mod surface;
