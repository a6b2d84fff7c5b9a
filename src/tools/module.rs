//! `module`: the registry of tool modules. Drafts are written and compared by
//! operators; validation, promotion, installation, rollback and uninstall need
//! an admin. Every step appends a module audit row (in the same transaction as
//! the step). A promoted version is the RFC 8785 text of the manifest, frozen
//! with its SHA-256 and an attestation (hash, validation report, who, when);
//! install and rollback re-hash the stored bytes and refuse a missing
//! attestation or a mismatch. `generate` asks the ladder for a manifest and
//! repairs it in a bounded loop; its result is a draft, never installed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ActionSpec, CallCtx, ToolOutput, ToolSpec, need, parse, read, schema_of};
use crate::app::Change;
use crate::auth::Role;
use crate::error::{Error, Result};
use crate::modules::validate::{self, Report};
use crate::modules::{bundle, manifest::Manifest, runtime};
use crate::store::ModuleAudit;

pub static SPEC: ToolSpec = ToolSpec {
    action_field: true,
    name: "module",
    description: "Tool modules (manifests adding tools at run time). list, get (versions, audit); operator: draft, edit, diff, generate (ladder writes a draft); admin: validate (schema + recorded examples; live: true also calls the hosts), promote (freeze a validated draft: SHA-256 + attestation), install, rollback, uninstall. Installed tools appear as namespace__name.",
    actions: &ACTIONS,
    input: schema_of::<Params>,
    output: schema_of::<Output>,
    destructive: true,
    idempotent: false,
};

const fn by(name: &'static str, role: Role, writes: bool) -> ActionSpec {
    ActionSpec {
        name,
        aliases: &[],
        role,
        writes,
    }
}

static ACTIONS: [ActionSpec; 11] = [
    read("list", &[]),
    read("get", &[]),
    by("draft", Role::Operator, true),
    by("edit", Role::Operator, true),
    by("diff", Role::Operator, false),
    by("generate", Role::Operator, true),
    by("validate", Role::Admin, true),
    by("promote", Role::Admin, true),
    by("install", Role::Admin, true),
    by("uninstall", Role::Admin, true),
    by("rollback", Role::Admin, true),
];

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[allow(dead_code)]
    action: String,
    /// Module id `namespace/name` (all but list, draft, generate).
    module: Option<String>,
    /// The manifest: a JSON object, or its text (draft, edit).
    manifest: Option<Value>,
    /// A promoted version (install, rollback target; diff: from).
    version: Option<String>,
    /// diff: the other version (default: the draft).
    to_version: Option<String>,
    /// validate: also run the http examples against the live hosts.
    live: Option<bool>,
    /// generate: what the module should do.
    description: Option<String>,
    /// generate: the API it wraps (endpoints, fields), as text.
    api_description: Option<String>,
    /// get: at most this many audit rows (default 100).
    limit: Option<u32>,
}

/// Fields present depend on the action.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct Output {
    #[serde(skip_serializing_if = "Option::is_none")]
    modules: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    module: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    draft: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    versions: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audit: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<Value>,
    /// The version a step produced or activated.
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<Value>,
}

/// Names no module tool may take: every built-in tool, listed or not.
pub fn core_names() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = super::CORE.iter().map(|(_, s)| s.name).collect();
    v.extend(super::compat::SPECS.iter().map(|(_, s)| s.name));
    v
}

pub async fn call(ctx: &CallCtx, action: &str, args: Value) -> Result<ToolOutput> {
    let p: Params = parse(args)?;
    super::check_len("description", &p.description, 4000)?;
    super::check_len("api_description", &p.api_description, 20_000)?;
    match action {
        "list" => list(ctx).await,
        "get" => get(ctx, need(&p.module, "module", action)?, p.limit).await,
        "draft" | "edit" => put(ctx, &p, action == "draft").await,
        "diff" => diff(ctx, need(&p.module, "module", action)?, &p).await,
        "validate" => {
            validate_draft(
                ctx,
                need(&p.module, "module", action)?,
                p.live == Some(true),
            )
            .await
        }
        "promote" => promote(ctx, need(&p.module, "module", action)?).await,
        "install" => {
            install(
                ctx,
                need(&p.module, "module", action)?,
                p.version.as_deref(),
            )
            .await
        }
        "rollback" => {
            rollback(
                ctx,
                need(&p.module, "module", action)?,
                p.version.as_deref(),
            )
            .await
        }
        "uninstall" => uninstall(ctx, need(&p.module, "module", action)?).await,
        "generate" => generate(ctx, &p).await,
        other => Err(Error::invalid("action", format!("unknown action {other}"))),
    }
}

fn audit(ctx: &CallCtx, module: &str, action: &str) -> ModuleAudit {
    ModuleAudit {
        org_id: ctx.principal.org.clone(),
        id: ctx.app.ids.next(),
        module_id: module.to_string(),
        actor: ctx.principal.key_id.clone(),
        action: action.to_string(),
        version: None,
        sha256: None,
        detail: None,
        created_at: ctx.app.clock.now_text(),
    }
}

/// A refused manifest: the report's every problem in the message, nothing stored.
fn refused(report: &Report) -> Error {
    Error::invalid("manifest", report.summary())
}

/// The manifest argument as a JSON value (text is parsed).
fn manifest_value(v: &Value) -> std::result::Result<Value, Report> {
    match v {
        Value::String(text) => validate::parse_text(text),
        other => Ok(other.clone()),
    }
}

async fn list(ctx: &CallCtx) -> Result<ToolOutput> {
    let rows = ctx.app.store.module_list(&ctx.principal.org).await?;
    let text = if rows.is_empty() {
        "no modules".to_string()
    } else {
        rows.iter()
            .map(|m| {
                format!(
                    "{} active={} versions={}{}",
                    m.id,
                    m.active_version.as_deref().unwrap_or("-"),
                    m.versions,
                    if m.has_draft { " (draft)" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    ToolOutput::new(
        Output {
            modules: Some(serde_json::to_value(&rows)?),
            ..Default::default()
        },
        text,
    )
}

async fn get(ctx: &CallCtx, id: &str, limit: Option<u32>) -> Result<ToolOutput> {
    let org = &ctx.principal.org;
    let store = &ctx.app.store;
    let m = store.module_get(org, id).await?;
    let draft = store.module_draft_get(org, id).await?;
    let versions = store.module_versions(org, id).await?;
    let audit = store
        .module_audit_list(org, Some(id), crate::store::page_limit(limit, 100, 1000))
        .await?;
    let draft = draft.map(|d| {
        json!({
            "manifest": serde_json::from_str::<Value>(&d.manifest).unwrap_or(Value::Null),
            "report": d.report.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok()),
            "validated": d.validated_sha256.is_some(),
            "updated_at": d.updated_at,
            "updated_by": d.updated_by,
        })
    });
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            json!({
                "version": v.version,
                "sha256": v.sha256,
                "attestation": v.attestation.as_deref().and_then(|a| serde_json::from_str::<Value>(a).ok()),
                "promoted_by": v.promoted_by,
                "promoted_at": v.promoted_at,
            })
        })
        .collect();
    let text = format!(
        "{} active={} versions={} audit rows={}",
        m.id,
        m.active_version.as_deref().unwrap_or("-"),
        versions.len(),
        audit.len()
    );
    ToolOutput::new(
        Output {
            module: Some(serde_json::to_value(&m)?),
            draft,
            versions: Some(Value::Array(versions)),
            audit: Some(serde_json::to_value(&audit)?),
            ..Default::default()
        },
        text,
    )
}

/// Validates a manifest for draft/edit/generate: the report, and the manifest
/// when it passed.
fn check(doc: &Value) -> (Report, Option<Manifest>) {
    validate::check(doc, &core_names())
}

async fn put(ctx: &CallCtx, p: &Params, create: bool) -> Result<ToolOutput> {
    let action = if create { "draft" } else { "edit" };
    let raw = need(&p.manifest, "manifest", action)?;
    let doc = manifest_value(raw).map_err(|r| refused(&r))?;
    let (report, m) = check(&doc);
    let Some(m) = m.filter(|_| report.ok) else {
        return Err(refused(&report));
    };
    if let Some(id) = &p.module
        && id != &m.id
    {
        return Err(Error::invalid(
            "module",
            format!("names {id}, but the manifest's id is {}", m.id),
        ));
    }
    store_draft(ctx, &m, &doc, create, action, &report).await?;
    ToolOutput::new(
        Output {
            module: Some(json!(m.id)),
            version: Some(m.version.clone()),
            sha256: report.sha256.clone(),
            report: Some(serde_json::to_value(&report)?),
            ..Default::default()
        },
        format!(
            "{action}: {} {} stored; {}",
            m.id,
            m.version,
            report.summary()
        ),
    )
}

async fn store_draft(
    ctx: &CallCtx,
    m: &Manifest,
    doc: &Value,
    create: bool,
    action: &str,
    report: &Report,
) -> Result<()> {
    let mut a = audit(ctx, &m.id, action);
    a.version = Some(m.version.clone());
    a.sha256 = report.sha256.clone();
    ctx.app
        .store
        .module_draft_put(
            &ctx.principal.org,
            &m.id,
            m.namespace(),
            serde_json::to_string(doc)?,
            create,
            a,
        )
        .await
}

async fn diff(ctx: &CallCtx, id: &str, p: &Params) -> Result<ToolOutput> {
    let org = &ctx.principal.org;
    let store = &ctx.app.store;
    let load_version = |v: String| async move {
        let row = store.module_version_get(org, id, &v).await?;
        serde_json::from_slice::<Value>(&row.bundle)
            .map_err(|e| Error::Internal(format!("bundle of {id}@{v} does not read: {e}")))
    };
    let draft = || async {
        let d = store
            .module_draft_get(org, id)
            .await?
            .ok_or_else(|| Error::not_found("module draft", id))?;
        Ok::<Value, Error>(serde_json::from_str(&d.manifest)?)
    };
    let (from_name, from, to_name, to) = match (&p.version, &p.to_version) {
        (Some(a), Some(b)) => (
            a.clone(),
            load_version(a.clone()).await?,
            b.clone(),
            load_version(b.clone()).await?,
        ),
        (Some(a), None) => (
            a.clone(),
            load_version(a.clone()).await?,
            "draft".into(),
            draft().await?,
        ),
        (None, _) => {
            let m = store.module_get(org, id).await?;
            let from = match &m.active_version {
                Some(v) => load_version(v.clone()).await?,
                None => Value::Null,
            };
            (
                m.active_version
                    .unwrap_or_else(|| "nothing installed".into()),
                from,
                "draft".into(),
                draft().await?,
            )
        }
    };
    let mut changes = Vec::new();
    json_diff("", &from, &to, &mut changes);
    let text = if changes.is_empty() {
        format!("{from_name} → {to_name}: no change")
    } else {
        let mut t = format!("{from_name} → {to_name}: {} change(s)", changes.len());
        for c in changes.iter().take(50) {
            t.push_str(&format!(
                "\n{} {}",
                c["op"].as_str().unwrap_or_default(),
                c["path"].as_str().unwrap_or_default()
            ));
        }
        t
    };
    ToolOutput::new(
        Output {
            module: Some(json!(id)),
            changes: Some(json!({"from": from_name, "to": to_name, "changes": changes})),
            ..Default::default()
        },
        text,
    )
}

/// Structural difference as JSON Pointer paths: added, removed, changed.
fn json_diff(path: &str, a: &Value, b: &Value, out: &mut Vec<Value>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                match y.get(k) {
                    Some(vb) => json_diff(&p, va, vb, out),
                    None => out.push(json!({"op": "removed", "path": p, "from": va})),
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                    out.push(json!({"op": "added", "path": p, "to": vb}));
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                json_diff(&format!("{path}/{i}"), va, vb, out);
            }
        }
        _ if a == b => {}
        _ => out.push(json!({"op": "changed", "path": path, "from": a, "to": b})),
    }
}

async fn validate_draft(ctx: &CallCtx, id: &str, live: bool) -> Result<ToolOutput> {
    let org = &ctx.principal.org;
    let d = ctx
        .app
        .store
        .module_draft_get(org, id)
        .await?
        .ok_or_else(|| Error::not_found("module draft", id))?;
    let doc: Value = serde_json::from_str(&d.manifest)?;
    let (mut report, m) = check(&doc);
    if live
        && report.ok
        && let Some(m) = &m
    {
        run_live(ctx, m, &mut report).await;
    }
    let mut a = audit(ctx, id, "validate");
    a.version = report.version.clone();
    a.sha256 = report.sha256.clone();
    a.detail = Some(format!(
        "ok={} problems={} live={live}",
        report.ok,
        report.problems.len()
    ));
    ctx.app
        .store
        .module_draft_validated(
            org,
            id,
            d.manifest,
            serde_json::to_string(&report)?,
            report.sha256.clone().filter(|_| report.ok),
            a,
        )
        .await?;
    ToolOutput::new(
        Output {
            module: Some(json!(id)),
            version: report.version.clone(),
            sha256: report.sha256.clone(),
            report: Some(serde_json::to_value(&report)?),
            ..Default::default()
        },
        format!("validate {id}: {}", report.summary()),
    )
}

/// Runs each http example against the live host, through the same request
/// building and network policy as a real call.
async fn run_live(ctx: &CallCtx, m: &Manifest, report: &mut Report) {
    let tools = match tools_of(m) {
        Ok(t) => t,
        Err(e) => {
            report.problems.push(validate::Problem {
                path: String::new(),
                message: e,
                hint: "fix the schemas".into(),
            });
            report.ok = false;
            return;
        }
    };
    for (j, ex) in m.examples.iter().enumerate() {
        let Some(t) = tools.iter().find(|t| t.decl.name == ex.tool) else {
            continue;
        };
        if t.decl.http.is_none() {
            continue;
        }
        match runtime::call(&ctx.app, &ctx.principal, t, &ex.input).await {
            Ok(_) => report.live_checked += 1,
            Err(e) => {
                report.problems.push(validate::Problem {
                    path: format!("/examples/{j}"),
                    message: format!("live call failed: {e}"),
                    hint: "check the host, the credential configuration and the mapping against the live API".into(),
                });
                report.ok = false;
            }
        }
    }
}

fn tools_of(m: &Manifest) -> std::result::Result<Vec<runtime::LiveTool>, String> {
    let text = bundle::canonical(&serde_json::to_value(m).map_err(|e| e.to_string())?);
    runtime::tools_from_bundle(m.id.clone(), m.version.clone(), text.as_bytes())
}

async fn promote(ctx: &CallCtx, id: &str) -> Result<ToolOutput> {
    let org = &ctx.principal.org;
    let d = ctx
        .app
        .store
        .module_draft_get(org, id)
        .await?
        .ok_or_else(|| Error::not_found("module draft", id))?;
    let doc: Value = serde_json::from_str(&d.manifest)?;
    let (bytes, hash) = bundle::seal(&doc);
    let report: Value = d
        .report
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or(Value::Null);
    let version = doc
        .get("version")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let now = ctx.app.clock.now_text();
    let attestation = json!({
        "module": id,
        "version": version,
        "sha256": hash,
        "canonicalization": "RFC 8785",
        "report": report,
        "promoted_by": ctx.principal.key_id,
        "promoted_at": now,
    });
    let mut a = audit(ctx, id, "promote");
    a.version = Some(version.clone());
    a.sha256 = Some(hash.clone());
    ctx.app
        .store
        .module_promote(
            org,
            crate::store::NewVersion {
                module_id: id.to_string(),
                version: version.clone(),
                bundle: bytes,
                sha256: hash.clone(),
                attestation: attestation.to_string(),
                promoted_by: ctx.principal.key_id.clone(),
                now,
            },
            a,
        )
        .await?;
    ToolOutput::new(
        Output {
            module: Some(json!(id)),
            version: Some(version.clone()),
            sha256: Some(hash.clone()),
            ..Default::default()
        },
        format!("promoted {id} {version} sha256={hash}"),
    )
}

/// Loads a version and proves it: an attestation that names this module,
/// version and hash, and bytes that hash to it. Returns the exposed tool names.
async fn verified(ctx: &CallCtx, id: &str, version: &str) -> Result<(String, Vec<String>)> {
    let v = ctx
        .app
        .store
        .module_version_get(&ctx.principal.org, id, version)
        .await?;
    let refuse = |why: String| {
        tracing::warn!(org = %ctx.principal.org, module = id, version, reason = %why, "module version refused");
        Error::Conflict(format!("{id} {version} refused: {why}"))
    };
    let Some(att) = v
        .attestation
        .as_deref()
        .and_then(|a| serde_json::from_str::<Value>(a).ok())
    else {
        return Err(refuse("it has no attestation".into()));
    };
    let attested = att
        .get("sha256")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if att.get("module").and_then(Value::as_str) != Some(id)
        || att.get("version").and_then(Value::as_str) != Some(version)
    {
        return Err(refuse(
            "its attestation names another module or version".into(),
        ));
    }
    let actual = bundle::sha256_hex(&v.bundle);
    if actual != attested || actual != v.sha256 {
        return Err(refuse(format!(
            "its bytes hash to {actual}, not the attested {attested}"
        )));
    }
    let tools = runtime::tools_from_bundle(id.to_string(), version.to_string(), &v.bundle)
        .map_err(refuse)?;
    Ok((actual, tools.into_iter().map(|t| t.exposed).collect()))
}

/// Refuses names another installed module of the org already exposes.
async fn check_clash(ctx: &CallCtx, id: &str, names: &[String]) -> Result<()> {
    let installed = ctx
        .app
        .modules
        .for_org(&ctx.app, &ctx.principal.org)
        .await?;
    for t in &installed.tools {
        if t.module_id != id && names.contains(&t.exposed) {
            return Err(Error::Conflict(format!(
                "tool {} is already provided by installed module {}",
                t.exposed, t.module_id
            )));
        }
    }
    Ok(())
}

async fn activate(
    ctx: &CallCtx,
    id: &str,
    action: &str,
    expected: Option<String>,
    to: Option<(String, String)>,
    tools: Vec<String>,
) -> Result<ToolOutput> {
    let mut a = audit(ctx, id, action);
    if let Some((v, h)) = &to {
        a.version = Some(v.clone());
        a.sha256 = Some(h.clone());
    }
    a.detail = expected.as_ref().map(|e| format!("from {e}"));
    ctx.app
        .store
        .module_activate(&ctx.principal.org, id, expected.clone(), to.clone(), a)
        .await?;
    ctx.app.publish(Change::Tools {
        org: ctx.principal.org.clone(),
    });
    let (version, sha256) = to.unzip();
    let text = match &version {
        Some(v) => format!("{action}: {id} {v} active; tools: {}", tools.join(", ")),
        None => format!("{action}: {id} has no active version"),
    };
    ToolOutput::new(
        Output {
            module: Some(json!(id)),
            version,
            sha256,
            tools: Some(tools),
            ..Default::default()
        },
        text,
    )
}

async fn install(ctx: &CallCtx, id: &str, version: Option<&str>) -> Result<ToolOutput> {
    let m = ctx.app.store.module_get(&ctx.principal.org, id).await?;
    let version = match version {
        Some(v) => v.to_string(),
        None => ctx
            .app
            .store
            .module_versions(&ctx.principal.org, id)
            .await?
            .last()
            .map(|v| v.version.clone())
            .ok_or_else(|| {
                Error::Conflict(format!("{id} has no promoted version; promote one first"))
            })?,
    };
    let (hash, tools) = verified(ctx, id, &version).await?;
    check_clash(ctx, id, &tools).await?;
    activate(
        ctx,
        id,
        "install",
        m.active_version,
        Some((version, hash)),
        tools,
    )
    .await
}

async fn rollback(ctx: &CallCtx, id: &str, version: Option<&str>) -> Result<ToolOutput> {
    let org = &ctx.principal.org;
    let m = ctx.app.store.module_get(org, id).await?;
    let Some(current) = m.active_version.clone() else {
        return Err(Error::Conflict(format!(
            "{id} is not installed; install a version instead"
        )));
    };
    let versions = ctx.app.store.module_versions(org, id).await?;
    let pos = versions.iter().position(|v| v.version == current);
    let target = match version {
        Some(v) => v.to_string(),
        None => pos
            .filter(|p| *p > 0)
            .map(|p| versions[p - 1].version.clone())
            .ok_or_else(|| {
                Error::Conflict(format!(
                    "{id} {current} is its first version: there is nothing earlier to roll back to"
                ))
            })?,
    };
    if target == current {
        return Err(Error::invalid(
            "version",
            format!("{target} is already the active version"),
        ));
    }
    let (hash, tools) = verified(ctx, id, &target).await?;
    check_clash(ctx, id, &tools).await?;
    activate(
        ctx,
        id,
        "rollback",
        Some(current),
        Some((target, hash)),
        tools,
    )
    .await
}

async fn uninstall(ctx: &CallCtx, id: &str) -> Result<ToolOutput> {
    let m = ctx.app.store.module_get(&ctx.principal.org, id).await?;
    let Some(current) = m.active_version else {
        return Err(Error::Conflict(format!("{id} is not installed")));
    };
    activate(ctx, id, "uninstall", Some(current), None, Vec::new()).await
}

/// Asks the ladder for a manifest, validates it, and feeds the report back
/// until it passes, the tries run out, or the same failure comes back.
async fn generate(ctx: &CallCtx, p: &Params) -> Result<ToolOutput> {
    let description = need(&p.description, "description", "generate")?;
    let tries = ctx.app.config.modules.generate_tries.clamp(1, 10);
    let schema = crate::modules::manifest::SCHEMA;
    let example = include_str!("../../fixtures/modules/weather.json");
    let mut prompt = format!(
        "Write a vaultline module manifest as one JSON object, nothing else.\n\
         It must satisfy this JSON Schema:\n{schema}\n\
         Every tool needs at least one example with a recorded response (http) or answer (prompt).\n\
         A complete valid example:\n{example}\n\
         The module should: {description}\n"
    );
    if let Some(api) = &p.api_description {
        prompt.push_str(&format!("The API it wraps:\n{api}\n"));
    }
    let mut attempts = Vec::new();
    let mut last_fingerprint = None;
    for n in 1..=tries {
        ctx.report(
            n as f64 - 1.0,
            Some(tries as f64),
            Some(format!("attempt {n}")),
        );
        let answer = runtime::ask_ladder(
            &ctx.app,
            &ctx.principal,
            "module generate",
            "modules",
            prompt.clone(),
            None,
            Some("feature".into()),
            Some("moderate".into()),
        )
        .await?;
        let (report, m) = match validate::parse_answer(&answer) {
            Some(doc) => {
                let (r, m) = check(&doc);
                (r, m.map(|m| (m, doc)))
            }
            None => (
                Report::failed(vec![validate::problem(
                    "",
                    "the answer is not a JSON object",
                    "answer with the manifest as one JSON object and nothing else",
                )]),
                None,
            ),
        };
        attempts.push(json!({"attempt": n, "ok": report.ok, "problems": report.problems.len()}));
        if report.ok
            && let Some((m, doc)) = m
        {
            store_draft(ctx, &m, &doc, true, "generate", &report).await?;
            return ToolOutput::new(
                Output {
                    module: Some(json!(m.id)),
                    version: Some(m.version.clone()),
                    sha256: report.sha256.clone(),
                    report: Some(serde_json::to_value(&report)?),
                    attempts: Some(Value::Array(attempts)),
                    draft: Some(doc),
                    ..Default::default()
                },
                format!(
                    "generated a draft of {} {} in {n} attempt(s); review it, then validate and promote",
                    m.id, m.version
                ),
            );
        }
        let fp = report.fingerprint();
        if last_fingerprint.as_ref() == Some(&fp) {
            return Err(Error::Conflict(format!(
                "generate stopped after {n} attempts: the same failure came back; nothing stored. Last report: {}",
                report.summary()
            )));
        }
        last_fingerprint = Some(fp);
        prompt.push_str(&format!(
            "\nYour previous answer (attempt {n}) failed validation:\n{}\nAnswer again with the whole corrected manifest as JSON only.\n",
            report.summary()
        ));
    }
    Err(Error::Conflict(format!(
        "generate gave up after {tries} attempts without a valid manifest; nothing stored"
    )))
}

/// Runs an installed module's tool: read-only mode and role first (a tool
/// that says it only reads needs viewer, any other operator), then the
/// module runtime's strict input check, the run, and the output check.
pub async fn call_installed(
    ctx: &CallCtx,
    tool: &runtime::LiveTool,
    args: Value,
) -> Result<ToolOutput> {
    let (needed, writes) = if tool.read_only() {
        (Role::Viewer, false)
    } else {
        (Role::Operator, true)
    };
    super::allowed(
        &tool.exposed,
        writes && ctx.app.config.tools.read_only,
        needed,
        &ctx.principal,
    )?;
    let out = runtime::call(&ctx.app, &ctx.principal, tool, &args).await?;
    let text = serde_json::to_string(&out)?;
    Ok(ToolOutput {
        structured: out,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_paths() {
        let mut out = Vec::new();
        json_diff(
            "",
            &json!({"a": 1, "b": {"c": [1, 2]}, "gone": true}),
            &json!({"a": 2, "b": {"c": [1, 3]}, "new": "x"}),
            &mut out,
        );
        let paths: Vec<(String, String)> = out
            .iter()
            .map(|c| {
                (
                    c["op"].as_str().unwrap().into(),
                    c["path"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert!(paths.contains(&("changed".into(), "/a".into())));
        assert!(paths.contains(&("changed".into(), "/b/c/1".into())));
        assert!(paths.contains(&("removed".into(), "/gone".into())));
        assert!(paths.contains(&("added".into(), "/new".into())));
    }
}
