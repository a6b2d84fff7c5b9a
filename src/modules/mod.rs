//! Modules: tools added at run time from versioned, validated manifests.
//!
//! `manifest` holds the types, `validate` the checks and the report, `bundle`
//! the canonical text and hash a promoted version is identified by, `net` the
//! deny-by-default HTTP client their `http` tools call through. This layer
//! names no rmcp and no SQL; the lifecycle lives in `tools/module.rs` over the
//! store's module verbs.

pub mod bundle;
pub mod manifest;
pub mod net;
pub mod runtime;
pub mod validate;
