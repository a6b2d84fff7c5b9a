//! The module manifest as Rust types (the contract is
//! `schemas/module-manifest.schema.json`, checked first by `validate`; these types
//! only read what that schema already allowed). No I/O, no policy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The manifest's JSON Schema, compiled into the binary.
pub const SCHEMA: &str = include_str!("../../schemas/module-manifest.schema.json");

/// A whole manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `namespace/name`.
    pub id: String,
    pub version: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default)]
    pub credentials: Vec<Credential>,
    #[serde(default)]
    pub hosts: Vec<HostDecl>,
    pub tools: Vec<ToolDecl>,
    #[serde(default)]
    pub examples: Vec<Example>,
}

/// A credential the module may use, by name only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A host an http tool may reach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostDecl {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default)]
    pub allow_private: bool,
}

/// MCP tool annotations, as the manifest states them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Annotations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_hint: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destructive_hint: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent_hint: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_world_hint: Option<bool>,
}

/// One tool the module adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDecl {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
    pub output_schema: Value,
    #[serde(default)]
    pub annotations: Annotations,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Http,
    Prompt,
}

/// A declarative HTTP call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpSpec {
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
    /// Output field → JSON Pointer into the response body.
    pub output: BTreeMap<String, String>,
}

/// A prompt run through the dispatch ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptSpec {
    pub template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complexity: Option<String>,
}

/// An example: an input and what came back when it was recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub tool: String,
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Recorded>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub status: u16,
    pub body: Value,
}

/// Default bounds of an http tool.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1 << 20;

impl Manifest {
    /// The namespace part of the id.
    pub fn namespace(&self) -> &str {
        self.id.split('/').next().unwrap_or_default()
    }

    /// The name a tool is listed under: `namespace__tool`.
    pub fn exposed(&self, tool: &str) -> String {
        exposed_name(self.namespace(), tool)
    }
}

pub fn exposed_name(namespace: &str, tool: &str) -> String {
    format!("{namespace}__{tool}")
}

/// The placeholders `{…}` of a template, in order. `{{` and `}}` are literal braces.
pub fn placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        if rest[i..].starts_with("{{") {
            rest = &rest[i + 2..];
            continue;
        }
        let after = &rest[i + 1..];
        match after.find('}') {
            Some(j) => {
                out.push(after[..j].trim().to_string());
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
}

/// Fills a template: each `{name}` becomes `lookup(name)` (None leaves it empty).
pub fn fill(template: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if let Some(after) = tail.strip_prefix('}') {
            out.push('}');
            rest = after;
            continue;
        }
        match tail[1..].find('}') {
            Some(j) => {
                out.push_str(&lookup(tail[1..1 + j].trim()).unwrap_or_default());
                rest = &tail[j + 2..];
            }
            None => {
                out.push_str(tail);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Text form of an input value for a template: strings as they are, others as JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_fill() {
        assert_eq!(
            placeholders("https://x/{city}/{ units }?{{literal}}"),
            vec!["city", "units"]
        );
        let f = |k: &str| (k == "city").then(|| "Oslo".to_string());
        assert_eq!(fill("a/{city}/{x}/{{y}}", &f), "a/Oslo//{y}");
        assert_eq!(fill("no braces", &f), "no braces");
    }

    #[test]
    fn the_fixture_parses() {
        let text = include_str!("../../fixtures/modules/weather.json");
        let m: Manifest = serde_json::from_str(text).unwrap();
        assert_eq!(m.namespace(), "acme");
        assert_eq!(m.exposed("forecast"), "acme__forecast");
    }
}
