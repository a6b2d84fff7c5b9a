//! The MCP tools: one file per tool, and this registry that lists and dispatches them.
//!
//! A tool is a flat object schema with an `action` enum (several clients reject
//! `oneOf`/`anyOf` at the root), checked strictly here before any handler runs:
//! the JSON Schema first (so the caller reads the validator's message, naming the
//! field), then read-only mode and the role the action needs. Handlers parse their
//! parameters, make domain and store calls, and shape a result; they contain no SQL
//! and know nothing of rmcp (progress and cancellation reach them as plain values).

pub mod billing;
pub mod checkpoint;
pub mod compat;
pub mod execute;
pub mod health;
pub mod module;
pub mod quota;
pub mod task;
pub mod workflow;

use std::collections::HashMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::auth::{Principal, Role};
use crate::config::ToolsConfig;
use crate::error::{Error, Result};

/// Toolset names accepted by `--toolsets`.
pub const KNOWN_TOOLSETS: &[&str] = &[
    "all",
    "workflow",
    "task",
    "checkpoint",
    "billing",
    "quota",
    "health",
    "module",
    "compat",
];

pub fn is_known_toolset(s: &str) -> bool {
    KNOWN_TOOLSETS.contains(&s)
}

/// One action of a tool: its name, old names it also answers to, the role it
/// needs, and whether it writes.
#[derive(Debug)]
pub struct ActionSpec {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub role: Role,
    pub writes: bool,
}

/// Shorthand for action tables.
pub const fn read(name: &'static str, aliases: &'static [&'static str]) -> ActionSpec {
    ActionSpec {
        name,
        aliases,
        role: Role::Viewer,
        writes: false,
    }
}

pub const fn write(name: &'static str, aliases: &'static [&'static str]) -> ActionSpec {
    ActionSpec {
        name,
        aliases,
        role: Role::Operator,
        writes: true,
    }
}

/// The closed set of built-in tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolId {
    Workflow,
    Health,
    Task,
    Checkpoint,
    Billing,
    Quota,
    Execute,
    Module,
    /// vault-mcp's old tool names, mapped onto the new tools.
    Compat(compat::Old),
}

/// What a tool declares about itself.
pub struct ToolSpec {
    pub name: &'static str,
    /// Tools without an `action` field (vault-mcp's old single-purpose tools) have
    /// exactly one action and this set to false.
    pub action_field: bool,
    pub description: &'static str,
    pub actions: &'static [ActionSpec],
    /// Schema of the fields (the registry adds `action`).
    pub input: fn() -> Value,
    pub output: fn() -> Value,
    pub destructive: bool,
    pub idempotent: bool,
}

/// What a handler returns: the structured result and a short text rendering.
#[derive(Debug)]
pub struct ToolOutput {
    pub structured: Value,
    pub text: String,
}

impl ToolOutput {
    pub fn new(structured: impl serde::Serialize, text: impl Into<String>) -> Result<ToolOutput> {
        Ok(ToolOutput {
            structured: serde_json::to_value(structured)?,
            text: text.into(),
        })
    }
}

/// Progress reports from a long action; the transport turns them into notifications.
pub type ProgressFn = Arc<dyn Fn(f64, Option<f64>, Option<String>) + Send + Sync>;

/// Everything a handler may use besides its parameters.
pub struct CallCtx {
    pub app: Arc<App>,
    pub principal: Principal,
    pub ct: CancellationToken,
    pub progress: Option<ProgressFn>,
    /// The connected person (client name, and a way to ask), when the client
    /// supports elicitation and config counts it as interactive.
    pub person: Option<(String, crate::dispatch::engine::PersonFn)>,
}

impl CallCtx {
    pub fn report(&self, done: f64, total: Option<f64>, message: Option<String>) {
        if let Some(p) = &self.progress {
            p(done, total, message);
        }
    }
}

/// A tool as listed: name, description, schemas, annotations, for one server mode.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: &'static str,
    pub description: &'static str,
    pub input_schema: Map<String, Value>,
    pub output_schema: Map<String, Value>,
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
}

struct Entry {
    id: ToolId,
    spec: &'static ToolSpec,
    listed: Listed,
    validator: jsonschema::Validator,
    actions: HashMap<&'static str, &'static ActionSpec>,
}

/// The tools this server lists and answers, fixed at start-up.
pub struct Registry {
    entries: Vec<Entry>,
    read_only: bool,
}

/// The result of resolving a call before it runs.
pub struct Resolved {
    pub id: ToolId,
    /// The tool's name as listed.
    pub tool: &'static str,
    pub action: &'static ActionSpec,
    pub args: Value,
}

/// Why a call could not be routed at all (a JSON-RPC error, not a tool error).
#[derive(Debug)]
pub struct UnknownTool(pub String);

/// The eight core tools, in listing order.
pub static CORE: &[(ToolId, &ToolSpec)] = &[
    (ToolId::Workflow, &workflow::SPEC),
    (ToolId::Task, &task::SPEC),
    (ToolId::Execute, &execute::SPEC),
    (ToolId::Checkpoint, &checkpoint::SPEC),
    (ToolId::Billing, &billing::SPEC),
    (ToolId::Quota, &quota::SPEC),
    (ToolId::Health, &health::SPEC),
    (ToolId::Module, &module::SPEC),
];

impl Registry {
    pub fn new(cfg: &ToolsConfig) -> Registry {
        let all = cfg.toolsets.iter().any(|t| t == "all");
        let wanted = |name: &str| all || cfg.toolsets.iter().any(|t| t == name);
        let mut entries = Vec::new();
        for &(id, spec) in CORE {
            if wanted(spec.name) {
                entries.extend(Entry::build(id, spec, cfg.read_only));
            }
        }
        if cfg.toolsets.iter().any(|t| t == "compat") {
            for (old, spec) in &compat::SPECS {
                entries.extend(Entry::build(ToolId::Compat(*old), spec, cfg.read_only));
            }
        }
        Registry {
            entries,
            read_only: cfg.read_only,
        }
    }

    /// The listed name equal to `name`, as a static string (for metric labels).
    pub fn static_name(&self, name: &str) -> Option<&'static str> {
        self.entries
            .iter()
            .map(|e| e.spec.name)
            .find(|n| *n == name)
    }

    /// The tools to list.
    pub fn list(&self) -> impl Iterator<Item = &Listed> {
        self.entries.iter().map(|e| &e.listed)
    }

    /// Validates a call and checks mode and role. `Err(Ok(unknown))` for a tool
    /// that is not listed; `Err(Err(error))` for a call the caller should fix.
    pub fn resolve(
        &self,
        name: &str,
        args: Option<Map<String, Value>>,
        principal: &Principal,
    ) -> std::result::Result<Resolved, std::result::Result<UnknownTool, Error>> {
        let entry = self
            .entries
            .iter()
            .find(|e| e.listed.name == name)
            .ok_or_else(|| Ok(UnknownTool(name.to_string())))?;
        let mut args = args.unwrap_or_default();
        // Absent and null mean the same: many agents send null for unset fields.
        args.retain(|_, v| !v.is_null());
        let args = Value::Object(args);
        if let Some(err) = entry.validator.iter_errors(&args).next() {
            return Err(Err(crate::error::schema_error(&err)));
        }
        let action = if entry.spec.action_field {
            let action_name = args
                .get("action")
                .and_then(Value::as_str)
                .unwrap_or_default();
            *entry.actions.get(action_name).ok_or_else(|| {
                Err(Error::invalid(
                    "action",
                    format!("unknown action {action_name:?}"),
                ))
            })?
        } else {
            &entry.spec.actions[0]
        };
        let what = format!("{} {}", entry.spec.name, action.name);
        allowed(
            &what,
            action.writes && self.read_only,
            action.role,
            principal,
        )
        .map_err(Err)?;
        Ok(Resolved {
            id: entry.id,
            tool: entry.spec.name,
            action,
            args,
        })
    }
}

impl Entry {
    fn build(id: ToolId, spec: &'static ToolSpec, read_only: bool) -> Option<Entry> {
        let visible: Vec<&ActionSpec> = spec
            .actions
            .iter()
            .filter(|a| !(read_only && a.writes))
            .collect();
        if visible.is_empty() {
            return None;
        }
        let full = input_schema(spec, &spec.actions.iter().collect::<Vec<_>>());
        let listed_schema = input_schema(spec, &visible);
        let validator = match jsonschema::validator_for(&Value::Object(full)) {
            Ok(v) => v,
            Err(e) => {
                // The schemas are generated from our own types; a failure is a bug
                // that the schema tests catch before release.
                tracing::error!(tool = spec.name, error = %e, "invalid generated input schema");
                return None;
            }
        };
        let mut actions = HashMap::new();
        for a in spec.actions {
            actions.insert(a.name, a);
            for alias in a.aliases {
                actions.insert(*alias, a);
            }
        }
        let output = match (spec.output)() {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let writes_visible = visible.iter().any(|a| a.writes);
        Some(Entry {
            id,
            spec,
            listed: Listed {
                name: spec.name,
                description: spec.description,
                input_schema: listed_schema,
                output_schema: output,
                read_only: !writes_visible,
                destructive: writes_visible && spec.destructive,
                idempotent: !writes_visible || spec.idempotent,
            },
            validator,
            actions,
        })
    }
}

/// The listed input schema: `action` (canonical names and aliases of the given
/// actions) first, then the tool's fields.
fn input_schema(spec: &ToolSpec, actions: &[&ActionSpec]) -> Map<String, Value> {
    let mut names = Vec::new();
    let mut doc = String::from("What to do.");
    let mut alias_notes = Vec::new();
    for a in actions {
        names.push(Value::from(a.name));
        for al in a.aliases {
            names.push(Value::from(*al));
            alias_notes.push(format!("{al}={}", a.name));
        }
    }
    if !alias_notes.is_empty() {
        doc.push_str(" Aliases: ");
        doc.push_str(&alias_notes.join(", "));
        doc.push('.');
    }
    let mut fields = match (spec.input)() {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let mut props = Map::new();
    if spec.action_field {
        props.insert(
            "action".into(),
            json!({"type": "string", "enum": names, "description": doc}),
        );
    }
    if let Some(Value::Object(p)) = fields.remove("properties") {
        for (k, v) in p {
            if k != "action" {
                props.insert(k, v);
            }
        }
    }
    let mut out = Map::new();
    out.insert("type".into(), "object".into());
    out.insert("properties".into(), Value::Object(props));
    let mut required: Vec<Value> = if spec.action_field {
        vec!["action".into()]
    } else {
        Vec::new()
    };
    if let Some(Value::Array(r)) = fields.remove("required") {
        required.extend(r.into_iter().filter(|v| v != "action"));
    }
    out.insert("required".into(), Value::Array(required));
    out.insert("additionalProperties".into(), false.into());
    out
}

/// Generates a compact schema for `T`: inlined, no `$schema`/`title`, no null
/// branches (absent means unset), no integer formats.
pub fn schema_of<T: JsonSchema>() -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
        s.inline_subschemas = true;
        s.meta_schema = None;
    });
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut v = schema.to_value();
    compact(&mut v, true);
    v
}

fn compact(v: &mut Value, root: bool) {
    match v {
        Value::Object(m) => {
            if root {
                m.remove("title");
            }
            m.remove("$schema");
            if m.get("type").and_then(Value::as_str) == Some("integer") {
                m.remove("format");
            }
            if let Some(Value::Array(types)) = m.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let t = types.remove(0);
                    m.insert("type".into(), t);
                }
                if m.get("type").and_then(Value::as_str) == Some("integer") {
                    m.remove("format");
                }
            }
            for key in ["anyOf", "oneOf"] {
                if let Some(Value::Array(branches)) = m.get_mut(key) {
                    branches.retain(|b| b.get("type").and_then(Value::as_str) != Some("null"));
                    if branches.len() == 1
                        && let Some(Value::Object(only)) = branches.pop()
                    {
                        m.remove(key);
                        for (k, val) in only {
                            m.entry(k).or_insert(val);
                        }
                    }
                }
            }
            if let Some(Value::Array(e)) = m.get_mut("enum") {
                e.retain(|x| !x.is_null());
            }
            // `additionalProperties: true` is the default; some clients reject boolean
            // schemas where they expect objects, so say it by leaving it out.
            if m.get("additionalProperties") == Some(&Value::Bool(true)) {
                m.remove("additionalProperties");
            }
            if let Some(Value::Object(props)) = m.get_mut("properties") {
                for (_, prop) in props.iter_mut() {
                    if *prop == Value::Bool(true) {
                        *prop = json!({});
                    }
                }
            }
            if m.get("items") == Some(&Value::Bool(true)) {
                m.insert("items".into(), json!({}));
            }
            for (_, child) in m.iter_mut() {
                compact(child, false);
            }
        }
        Value::Array(a) => {
            for child in a {
                compact(child, false);
            }
        }
        _ => {}
    }
}

/// Parses validated arguments into a tool's parameter struct.
pub fn parse<T: DeserializeOwned>(args: Value) -> Result<T> {
    serde_json::from_value(args).map_err(|e| Error::invalid("arguments", e.to_string()))
}

/// The access rule every call passes: refused in read-only mode when it
/// writes, then refused below `needed`. `what` names the action in the error.
pub(crate) fn allowed(
    what: &str,
    read_only_write: bool,
    needed: Role,
    p: &Principal,
) -> Result<()> {
    if read_only_write {
        return Err(Error::ReadOnly(what.to_string()));
    }
    if p.role < needed {
        return Err(Error::Forbidden {
            what: what.to_string(),
            needed,
            have: p.role,
        });
    }
    Ok(())
}

/// The same rule for an operation inside an action (`billing budget set`,
/// `quota accounts add`) whose action as a whole is open to lower roles.
pub fn require_write(ctx: &CallCtx, what: &str, needed: Role) -> Result<()> {
    allowed(what, ctx.app.config.tools.read_only, needed, &ctx.principal)
}

/// Requires an optional field for an action.
pub fn need<'a, T>(v: &'a Option<T>, field: &str, action: &str) -> Result<&'a T> {
    v.as_ref().ok_or_else(|| Error::missing(field, action))
}

/// Runs a resolved call.
pub async fn dispatch(ctx: &CallCtx, r: Resolved) -> Result<ToolOutput> {
    let action = r.action.name;
    match r.id {
        ToolId::Workflow => workflow::call(ctx, action, r.args).await,
        ToolId::Health => health::call(ctx, action, r.args).await,
        ToolId::Task => task::call(ctx, action, r.args).await,
        ToolId::Checkpoint => checkpoint::call(ctx, action, r.args).await,
        ToolId::Billing => billing::call(ctx, action, r.args).await,
        ToolId::Quota => quota::call(ctx, action, r.args).await,
        ToolId::Execute => execute::call(ctx, action, r.args).await,
        ToolId::Module => module::call(ctx, action, r.args).await,
        ToolId::Compat(old) => compat::call(ctx, old, r.args).await,
    }
}

/// Limits on free-text fields, checked where the schema cannot say them cheaply.
pub fn check_len(field: &str, v: &Option<String>, max: usize) -> Result<()> {
    if let Some(s) = v
        && s.chars().count() > max
    {
        return Err(Error::invalid(
            field,
            format!("is longer than {max} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_boolean_schemas_in_any_listed_tool() {
        fn walk(v: &Value, path: &str) {
            if let Value::Object(m) = v {
                for (k, child) in m {
                    let here = format!("{path}/{k}");
                    if k == "properties" {
                        for (name, prop) in child.as_object().into_iter().flatten() {
                            assert!(prop.is_object(), "{here}/{name} is not an object schema");
                            walk(prop, &format!("{here}/{name}"));
                        }
                    } else {
                        assert!(
                            !(matches!(k.as_str(), "items" | "additionalProperties")
                                && child == &Value::Bool(true)),
                            "{here} is a boolean schema"
                        );
                        walk(child, &here);
                    }
                }
            }
        }
        let mut cfg = ToolsConfig::default();
        cfg.toolsets.push("compat".into());
        for l in Registry::new(&cfg).list() {
            walk(
                &Value::Object(l.input_schema.clone()),
                &format!("{}/input", l.name),
            );
            walk(
                &Value::Object(l.output_schema.clone()),
                &format!("{}/output", l.name),
            );
        }
    }

    #[test]
    fn compact_strips_nulls_and_formats() {
        let mut v = json!({"title": "X", "type": "object", "properties": {
            "a": {"type": ["string", "null"]},
            "n": {"type": ["integer", "null"], "format": "uint32", "minimum": 0},
            "e": {"anyOf": [{"type": "string", "enum": ["x"]}, {"type": "null"}]}
        }});
        compact(&mut v, true);
        assert_eq!(
            v,
            json!({"type": "object", "properties": {
                "a": {"type": "string"},
                "n": {"type": "integer", "minimum": 0},
                "e": {"type": "string", "enum": ["x"]}
            }})
        );
    }
}

/// Splits a page fetched with limit+1 rows into the page and the next cursor.
pub fn page<T>(
    mut rows: Vec<T>,
    limit: usize,
    cursor: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(cursor);
        (rows, next)
    } else {
        (rows, None)
    }
}

/// An opaque cursor over (created_at, id).
pub fn encode_cursor(created_at: &str, id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{created_at}|{id}"))
}

pub fn decode_cursor(c: &str) -> Result<(String, String)> {
    use base64::Engine;
    let bad = || Error::invalid("cursor", "is not a cursor this server issued");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| bad())?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    let (a, b) = s.split_once('|').ok_or_else(bad)?;
    Ok((a.to_string(), b.to_string()))
}

/// Normalises an optional time filter; the error names the field.
pub fn check_time(field: &str, v: &Option<String>) -> Result<Option<String>> {
    match v {
        None => Ok(None),
        Some(s) => crate::clock::parse_time(s)
            .map(|t| Some(crate::clock::fmt_time(t)))
            .ok_or_else(|| Error::invalid(field, "is not an RFC 3339 time or a YYYY-MM-DD date")),
    }
}

/// Resolves and runs one call as `principal`, the way the transports do, minus
/// the wire. For in-process callers and tests; unknown tools are `Invalid`.
pub async fn call_as(
    app: &Arc<App>,
    principal: &Principal,
    tool: &str,
    args: Value,
) -> Result<ToolOutput> {
    let args = match args {
        Value::Object(m) => Some(m),
        _ => None,
    };
    let resolved = match app.registry.resolve(tool, args, principal) {
        Ok(r) => r,
        Err(Ok(unknown)) => {
            return Err(Error::invalid(
                "name",
                format!("unknown tool: {}", unknown.0),
            ));
        }
        Err(Err(e)) => return Err(e),
    };
    let ctx = CallCtx {
        app: app.clone(),
        principal: principal.clone(),
        ct: CancellationToken::new(),
        progress: None,
        person: None,
    };
    dispatch(&ctx, resolved).await
}

/// A fresh app on a temporary database, for tests: returns the app and the
/// directory that must outlive it.
pub fn test_app() -> (Arc<App>, tempfile_dir::TempDir) {
    let dir = tempfile_dir::TempDir::new();
    let cfg = crate::config::Config {
        db_path: dir.path().join("test.db"),
        ..Default::default()
    };
    let app = App::new(cfg).unwrap_or_else(|e| panic!("test app: {e}"));
    (app, dir)
}

/// A minimal temporary directory (removed on drop), so test helpers need no
/// dev-dependency in the library.
pub mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> TempDir {
            let p = std::env::temp_dir().join(format!("vaultline-test-{}", ulid::Ulid::new()));
            let _ = std::fs::create_dir_all(&p);
            TempDir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Default for TempDir {
        fn default() -> Self {
            TempDir::new()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod schema_files {
    //! The published schemas in `schemas/tools/` are generated from the code; this
    //! test fails when they drift. Regenerate with `VAULTLINE_BLESS=1 cargo test --lib schema_files`.

    use super::*;

    #[test]
    fn schemas_dir_matches_the_code() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/tools");
        let reg = Registry::new(&ToolsConfig::default());
        let bless = std::env::var_os("VAULTLINE_BLESS").is_some();
        let mut expected_files = Vec::new();
        for l in reg.list() {
            let doc = json!({
                "name": l.name,
                "description": l.description,
                "annotations": {"readOnlyHint": l.read_only, "destructiveHint": l.destructive, "idempotentHint": l.idempotent},
                "inputSchema": l.input_schema,
                "outputSchema": l.output_schema,
            });
            let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
            let path = dir.join(format!("{}.json", l.name));
            expected_files.push(format!("{}.json", l.name));
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            } else {
                let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
                assert!(
                    on_disk == text,
                    "{} is out of date with the code; run VAULTLINE_BLESS=1 cargo test --lib schema_files",
                    path.display()
                );
            }
        }
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        on_disk.sort();
        expected_files.sort();
        assert_eq!(
            on_disk, expected_files,
            "schemas/tools holds exactly the listed tools"
        );
    }
}
