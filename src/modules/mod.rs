//! Modules: versioned tool modules that become MCP tools at run time. `net` is
//! the deny-by-default HTTP client their `http` tools call through.

pub mod net;
