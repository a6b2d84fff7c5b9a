//! `quota`: provider accounts and what room they have left — accounts (op list,
//! add, update, remove), status (figures and ACTIVE/WARNING/CRITICAL/EXHAUSTED),
//! record (manual usage, e.g. a subscription seat), report (the daily audit;
//! `write` also writes its dated files), rotate (a new credential and expiry).
//!
//! Changes to accounts need admin, checked here because `accounts` also lists
//! for viewers. A secret reference is checked (the file private, the secret
//! well-formed) before anything is written; the secret itself never reaches a
//! result, a log or the database.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    ActionSpec, CallCtx, ToolOutput, ToolSpec, check_len, check_time, need, parse, read, schema_of,
    write,
};
use crate::auth::Role;
use crate::error::{Error, Result};
use crate::quota::audit::{self, AlertLine, alert_kind, parse_date};
use crate::quota::secret::SecretRef;
use crate::quota::service::{AccountView, figures_of, publish_gauges};
use crate::quota::{BillingMode, LimitKind, Window, WindowKind};
use crate::store::{AccountUpdate, AuditEntry, ManualUsage, NewAccount, Rotation};

pub static SPEC: ToolSpec = ToolSpec {
    action_field: true,
    name: "quota",
    description: "Provider accounts and their quota windows. accounts (op list|add|update|remove; changes need admin), status (used, remaining, percent, burn/day, days_left, ACTIVE/WARNING/CRITICAL/EXHAUSTED), record (manual usage), report (daily audit; write=true saves the files, admin), rotate (admin).",
    actions: &ACTIONS,
    input: schema_of::<Params>,
    output: output_schema,
    destructive: true,
    idempotent: false,
};

static ACTIONS: [ActionSpec; 5] = [
    // Lists for viewers; add/update/remove check admin and read-only mode below.
    read("accounts", &[]),
    read("status", &[]),
    write("record", &[]),
    // Reads for viewers; `write: true` checks admin and read-only mode below.
    read("report", &[]),
    ActionSpec {
        name: "rotate",
        aliases: &[],
        role: Role::Admin,
        writes: true,
    },
];

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    List,
    Add,
    Update,
    Remove,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::List => "list",
            Op::Add => "add",
            Op::Update => "update",
            Op::Remove => "remove",
        }
    }
}

/// Largest amounts accepted in one manual record.
const MAX_REQUESTS: i64 = 1_000_000_000;
const MAX_TOKENS: i64 = 1_000_000_000_000;
const MAX_USD_NANOS: i64 = 1_000_000_000_000_000;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[allow(dead_code)] // checked by the registry; kept so strict parsing accepts it
    action: String,
    /// accounts: list (default), add, update, remove.
    op: Option<Op>,
    account_id: Option<String>,
    provider: Option<String>,
    name: Option<String>,
    billing_mode: Option<BillingMode>,
    /// env:NAME or file:/abs/path (mode 600); never the secret.
    secret_ref: Option<String>,
    limit_kind: Option<LimitKind>,
    #[schemars(range(min = 1))]
    limit: Option<i64>,
    /// day, month (UTC) or rolling (needs window_minutes: 300 = 5 h, 10080 = week).
    window: Option<WindowKind>,
    window_minutes: Option<i64>,
    token_expires_at: Option<String>,
    refresh_at: Option<String>,
    #[schemars(range(min = 0, max = 1_000_000_000))]
    requests: Option<i64>,
    #[schemars(range(min = 0, max = 1_000_000_000_000_i64))]
    tokens: Option<i64>,
    #[schemars(range(min = 0, max = 1_000_000_000_000_000_i64))]
    usd_nanos: Option<i64>,
    note: Option<String>,
    idempotency_key: Option<String>,
    /// report: YYYY-MM-DD (UTC), default today.
    date: Option<String>,
    write: Option<bool>,
    include_removed: Option<bool>,
}

#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct Output {
    /// One item for actions on one account.
    #[serde(skip_serializing_if = "Option::is_none")]
    accounts: Option<Vec<AccountView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<ManualUsage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    as_of: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alerts: Option<Vec<AlertLine>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<Vec<String>>,
}

/// The output schema without descriptions and number formats: it is for
/// validating results, and every byte of it is paid by each client that lists
/// tools (the field names say enough).
fn output_schema() -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("description");
                if m.get("type").and_then(Value::as_str) == Some("number") {
                    m.remove("format");
                }
                for (k, child) in m.iter_mut() {
                    // A property may itself be named like a keyword.
                    if k != "properties" || child.is_object() {
                        strip(child);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = schema_of::<Output>();
    strip(&mut v);
    v
}

/// Parses a secret reference and reads the secret once, to refuse a bad one
/// before anything is written. The secret is dropped at once.
fn check_secret(r: &str) -> Result<String> {
    let parsed = SecretRef::parse(r.trim()).map_err(|e| Error::invalid("secret_ref", e.0))?;
    parsed
        .resolve()
        .map_err(|e| Error::invalid("secret_ref", e.0))?;
    Ok(parsed.to_string())
}

fn check_provider(p: &str) -> Result<String> {
    let p = p.trim().to_ascii_lowercase();
    let ok = !p.is_empty()
        && p.len() <= 64
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(Error::invalid(
            "provider",
            "must be 1–64 of a-z, 0-9, '-', '_', '.' (e.g. anthropic, openai, gemini)",
        ));
    }
    Ok(p)
}

fn check_name(n: &str) -> Result<String> {
    let n = n.trim();
    if n.is_empty() {
        return Err(Error::invalid("name", "must not be empty"));
    }
    Ok(n.to_string())
}

fn window_of(kind: WindowKind, minutes: Option<i64>) -> Result<Window> {
    Window::new(kind, minutes).map_err(|e| Error::invalid(e.field, e.message))
}

fn line(v: &AccountView) -> String {
    let a = &v.account;
    let window = match a.window_minutes {
        Some(m) => format!("rolling {m} min"),
        None => a.window.as_str().to_string(),
    };
    match &v.figures {
        Some(f) => format!(
            "{} {} ({}) {} {}% — {}/{} {} per {window}, {} left, burn {}/day{}",
            a.id,
            a.name,
            a.provider,
            f.status.as_str(),
            f.percent,
            f.used,
            f.limit,
            a.limit_kind.as_str(),
            f.remaining,
            f.burn_per_day,
            f.days_left
                .map(|d| format!(", ~{d} days to exhaustion"))
                .unwrap_or_default()
        ),
        None => format!("{} {} ({}) removed", a.id, a.name, a.provider),
    }
}

fn lines(head: String, views: &[AccountView]) -> String {
    let mut text = head;
    for v in views {
        text.push_str("\n- ");
        text.push_str(&line(v));
    }
    text
}

/// The figures of one account just added, changed or rotated, with its gauge updated.
async fn changed(
    app: &crate::app::App,
    org: &str,
    a: crate::quota::Account,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<AccountView> {
    let mut v = figures_of(&app.store, org, vec![a], now).await?;
    publish_gauges(app, &v);
    v.pop()
        .ok_or_else(|| Error::Internal("a changed account vanished".into()))
}

pub async fn call(ctx: &CallCtx, action: &str, args: Value) -> Result<ToolOutput> {
    let out = act(ctx, action, args).await;
    // Accounts, usage or rotations may have changed: the ladder's cached
    // figures of this org are rebuilt on its next choice.
    ctx.app.quota_candidates.forget(&ctx.principal.org);
    out
}

async fn act(ctx: &CallCtx, action: &str, args: Value) -> Result<ToolOutput> {
    let p: Params = parse(args)?;
    for (f, v, max) in [
        ("account_id", &p.account_id, 64),
        ("provider", &p.provider, 64),
        ("name", &p.name, 100),
        ("secret_ref", &p.secret_ref, 1024),
        ("note", &p.note, 1000),
        ("idempotency_key", &p.idempotency_key, 200),
    ] {
        check_len(f, v, max)?;
    }
    let app = &ctx.app;
    let org = ctx.principal.org.as_str();
    let now = app.clock.now();
    let now_text = crate::clock::fmt_time(now);
    let audit_entry = |action: &str, subject: &str, detail: String| AuditEntry {
        org_id: org.to_string(),
        id: app.ids.next(),
        actor: ctx.principal.key_id.clone(),
        action: action.to_string(),
        subject: Some(subject.to_string()),
        detail: Some(detail),
        created_at: now_text.clone(),
    };
    let one = |v: AccountView, verb: &str| {
        let text = format!("{verb} {}", line(&v));
        ToolOutput::new(
            Output {
                accounts: Some(vec![v]),
                ..Default::default()
            },
            text,
        )
    };
    match action {
        "accounts" => {
            let op = p.op.unwrap_or(Op::List);
            if op != Op::List {
                super::require_write(ctx, &format!("quota accounts {}", op.as_str()), Role::Admin)?;
            }
            match op {
                Op::List => {
                    let accounts = app
                        .store
                        .quota_accounts(org, None, p.include_removed.unwrap_or(false))
                        .await?;
                    let views = figures_of(&app.store, org, accounts, now).await?;
                    publish_gauges(app, &views);
                    let text = lines(format!("{} quota accounts", views.len()), &views);
                    ToolOutput::new(
                        Output {
                            accounts: Some(views),
                            ..Default::default()
                        },
                        text,
                    )
                }
                Op::Add => {
                    let provider = check_provider(need(&p.provider, "provider", "accounts add")?)?;
                    let name = check_name(need(&p.name, "name", "accounts add")?)?;
                    let kind = *need(&p.window, "window", "accounts add")?;
                    let window = window_of(kind, p.window_minutes)?;
                    let limit_kind = *need(&p.limit_kind, "limit_kind", "accounts add")?;
                    let limit = *need(&p.limit, "limit", "accounts add")?;
                    let billing_mode = *need(&p.billing_mode, "billing_mode", "accounts add")?;
                    let secret_ref =
                        check_secret(need(&p.secret_ref, "secret_ref", "accounts add")?)?;
                    let new = NewAccount {
                        id: app.ids.next(),
                        provider,
                        name,
                        billing_mode,
                        secret_ref,
                        limit_kind,
                        limit,
                        window,
                        token_expires_at: check_time("token_expires_at", &p.token_expires_at)?,
                        refresh_at: check_time("refresh_at", &p.refresh_at)?,
                    };
                    let detail = format!(
                        "{}/{} {} {} per {}",
                        new.provider,
                        new.name,
                        new.limit,
                        new.limit_kind.as_str(),
                        new.window.kind().as_str()
                    );
                    let id = new.id.clone();
                    let a = app
                        .store
                        .quota_account_add(
                            org,
                            new,
                            &now_text,
                            audit_entry("quota.account.add", &id, detail),
                        )
                        .await?;
                    one(changed(app, org, a, now).await?, "added")
                }
                Op::Update => {
                    let id = need(&p.account_id, "account_id", "accounts update")?;
                    if p.provider.is_some() {
                        return Err(Error::invalid(
                            "provider",
                            "cannot change; remove the account and add one for the other provider",
                        ));
                    }
                    let cur = app.store.quota_account(org, id).await?;
                    let window = match (p.window, p.window_minutes) {
                        (Some(k), m) => Some(window_of(k, m)?),
                        (None, Some(m)) => Some(window_of(cur.window, Some(m))?),
                        (None, None) => None,
                    };
                    let u = AccountUpdate {
                        name: p.name.as_deref().map(check_name).transpose()?,
                        billing_mode: p.billing_mode,
                        secret_ref: p.secret_ref.as_deref().map(check_secret).transpose()?,
                        limit_kind: p.limit_kind,
                        limit: p.limit,
                        window,
                        token_expires_at: check_time("token_expires_at", &p.token_expires_at)?,
                        refresh_at: check_time("refresh_at", &p.refresh_at)?,
                    };
                    let detail = format!("{u:?}");
                    let a = app
                        .store
                        .quota_account_update(
                            org,
                            id,
                            u,
                            &now_text,
                            audit_entry("quota.account.update", id, detail),
                        )
                        .await?;
                    one(changed(app, org, a, now).await?, "updated")
                }
                Op::Remove => {
                    let id = need(&p.account_id, "account_id", "accounts remove")?;
                    let a = app
                        .store
                        .quota_account_remove(
                            org,
                            id,
                            &now_text,
                            audit_entry("quota.account.remove", id, String::new()),
                        )
                        .await?;
                    app.metrics.forget_quota(org, id);
                    one(
                        AccountView {
                            account: a,
                            figures: None,
                        },
                        "removed",
                    )
                }
            }
        }
        "status" => {
            let accounts = match &p.account_id {
                Some(id) => vec![app.store.quota_account(org, id).await?],
                None => app.store.quota_accounts(org, None, false).await?,
            };
            let mut views = figures_of(&app.store, org, accounts, now).await?;
            publish_gauges(app, &views);
            if p.account_id.is_some()
                && let Some(v) = views.pop()
            {
                return one(v, "status:");
            }
            let text = lines(format!("{} quota accounts", views.len()), &views);
            ToolOutput::new(
                Output {
                    accounts: Some(views),
                    ..Default::default()
                },
                text,
            )
        }
        "record" => {
            let id = need(&p.account_id, "account_id", action)?.clone();
            let (requests, tokens, usd_nanos) = (
                p.requests.unwrap_or(0),
                p.tokens.unwrap_or(0),
                p.usd_nanos.unwrap_or(0),
            );
            for (f, v, max) in [
                ("requests", requests, MAX_REQUESTS),
                ("tokens", tokens, MAX_TOKENS),
                ("usd_nanos", usd_nanos, MAX_USD_NANOS),
            ] {
                if !(0..=max).contains(&v) {
                    return Err(Error::invalid(f, format!("must be between 0 and {max}")));
                }
            }
            if requests == 0 && tokens == 0 && usd_nanos == 0 {
                return Err(Error::invalid(
                    "requests",
                    "record needs requests, tokens or usd_nanos above 0",
                ));
            }
            let (usage, created) = app
                .store
                .quota_record(
                    org,
                    ManualUsage {
                        id: app.ids.next(),
                        account_id: id.clone(),
                        requests,
                        tokens,
                        usd_nanos,
                        note: p.note,
                        actor: ctx.principal.key_id.clone(),
                        idempotency_key: p.idempotency_key,
                        created_at: now_text.clone(),
                    },
                )
                .await?;
            let account = app.store.quota_account(org, &id).await?;
            let mut views = figures_of(&app.store, org, vec![account], now).await?;
            publish_gauges(app, &views);
            let view = views
                .pop()
                .ok_or_else(|| Error::Internal("recorded account vanished".into()))?;
            // A record can push an account over a threshold: alert now, not at
            // the next audit (once per level and window, as the audit would).
            if let Some(f) = &view.figures
                && let Some(kind) = alert_kind(f.status)
            {
                let period = view.account.window().period_key(now);
                let message = format!("{} after a manual record", line(&view));
                if let Err(e) = app.alerts.raise(org, kind, &id, &period, &message).await {
                    tracing::warn!(error = %e, "cannot raise a quota alert");
                }
            }
            let text = format!(
                "{} {}",
                if created {
                    "recorded;"
                } else {
                    "already recorded (same idempotency_key);"
                },
                line(&view)
            );
            ToolOutput::new(
                Output {
                    accounts: Some(vec![view]),
                    usage: Some(usage),
                    created: Some(created),
                    ..Default::default()
                },
                text,
            )
        }
        "report" => {
            let date = p
                .date
                .as_deref()
                .map(|d| parse_date("date", d))
                .transpose()?;
            let (r, files) = if p.write.unwrap_or(false) {
                super::require_write(ctx, "quota report write", Role::Admin)?;
                let dir = app.config.quota.report_dir().join(org);
                let (r, files) = audit::run(app, Some(org), date, &dir).await?;
                (
                    r,
                    Some(files.iter().map(|f| f.display().to_string()).collect()),
                )
            } else {
                (audit::report(app, Some(org), date, false).await?, None)
            };
            let mut text = lines(
                format!(
                    "quota report {} (as of {}): {} accounts, {} alerts",
                    r.date,
                    r.as_of,
                    r.accounts.len(),
                    r.alerts.len()
                ),
                &r.accounts,
            );
            for a in &r.alerts {
                text.push_str(&format!("\n! {} {}", a.kind, a.message));
            }
            ToolOutput::new(
                Output {
                    accounts: Some(r.accounts),
                    date: Some(r.date),
                    as_of: Some(r.as_of),
                    alerts: Some(r.alerts),
                    files,
                    ..Default::default()
                },
                text,
            )
        }
        "rotate" => {
            let id = need(&p.account_id, "account_id", action)?;
            let expires = check_time("token_expires_at", &p.token_expires_at)?;
            if let Some(t) = expires.as_deref().and_then(crate::clock::parse_time)
                && t <= now
            {
                return Err(Error::invalid(
                    "token_expires_at",
                    "is not in the future; a rotated credential must outlive now",
                ));
            }
            let secret_ref = p.secret_ref.as_deref().map(check_secret).transpose()?;
            let detail = format!("token_expires_at={}", expires.as_deref().unwrap_or("-"));
            let a = app
                .store
                .quota_rotate(
                    org,
                    id,
                    Rotation {
                        token_expires_at: expires,
                        refresh_at: check_time("refresh_at", &p.refresh_at)?,
                        secret_ref,
                    },
                    &now_text,
                    audit_entry("quota.account.rotate", id, detail),
                )
                .await?;
            one(changed(app, org, a, now).await?, "rotated")
        }
        other => Err(Error::invalid(
            "action",
            format!("unknown action {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use serde_json::{Value, json};

    use crate::app::App;
    use crate::auth::{Principal, Role};
    use crate::tools::{call_as, test_app};

    async fn ok(app: &Arc<App>, p: &Principal, args: Value) -> Value {
        match call_as(app, p, "quota", args.clone()).await {
            Ok(o) => o.structured,
            Err(e) => panic!("{args}: {e}"),
        }
    }

    async fn err(app: &Arc<App>, p: &Principal, args: Value) -> String {
        call_as(app, p, "quota", args.clone())
            .await
            .map(|o| panic!("{args} should fail: {}", o.text))
            .unwrap_err()
            .to_string()
    }

    fn secret_file(dir: &std::path::Path, name: &str, mode: u32) -> String {
        let p = dir.join(name);
        std::fs::write(&p, "sk-test-0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        format!("file:{}", p.display())
    }

    fn add(secret_ref: &str) -> Value {
        json!({"action": "accounts", "op": "add", "provider": "openai", "name": "key-1",
               "billing_mode": "metered", "secret_ref": secret_ref, "limit_kind": "requests",
               "limit": 10, "window": "day"})
    }

    #[tokio::test]
    async fn statuses_roles_and_isolation() {
        let (app, dir) = test_app();
        for o in ["a", "b"] {
            app.store
                .ensure_org(o, "2026-01-01T00:00:00.000Z")
                .await
                .unwrap();
        }
        let admin = Principal::local("a", Role::Admin);
        let op = Principal::local("a", Role::Operator);
        let viewer = Principal::local("a", Role::Viewer);
        let other = Principal::local("b", Role::Owner);
        let good = secret_file(dir.path(), "good", 0o600);
        let out = ok(&app, &admin, add(&good)).await;
        let id = out["accounts"][0]["id"].as_str().unwrap().to_string();
        assert_eq!(out["accounts"][0]["secret_ref"], good.as_str());
        assert_eq!(out["accounts"][0]["figures"]["status"], "ACTIVE");
        for (n, want) in [
            (5, "ACTIVE"),
            (3, "WARNING"),
            (1, "CRITICAL"),
            (1, "EXHAUSTED"),
        ] {
            let r = ok(
                &app,
                &op,
                json!({"action": "record", "account_id": id, "requests": n}),
            )
            .await;
            assert_eq!(r["accounts"][0]["figures"]["status"], want, "{r}");
        }
        let s = ok(&app, &viewer, json!({"action": "status", "account_id": id})).await;
        assert_eq!(s["accounts"][0]["figures"]["remaining"], 0);
        assert_eq!(s["accounts"][0]["figures"]["percent"], 100.0);
        // Manual records alerted once per level.
        let kinds: Vec<String> = app
            .store
            .alerts_list("a", 10)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.kind)
            .collect();
        assert_eq!(kinds.len(), 3, "{kinds:?}");
        // Idempotent records.
        let r1 = ok(
            &app,
            &op,
            json!({"action": "record", "account_id": id, "tokens": 7, "idempotency_key": "k1"}),
        )
        .await;
        let r2 = ok(
            &app,
            &op,
            json!({"action": "record", "account_id": id, "tokens": 7, "idempotency_key": "k1"}),
        )
        .await;
        assert_eq!(
            (r1["created"].clone(), r2["created"].clone()),
            (json!(true), json!(false))
        );
        assert_eq!(r1["usage"]["id"], r2["usage"]["id"]);
        // Roles.
        for (who, args, needle) in [
            (&viewer, add(&good), "needs role admin"),
            (
                &op,
                json!({"action": "accounts", "op": "remove", "account_id": id}),
                "needs role admin",
            ),
            (
                &viewer,
                json!({"action": "record", "account_id": id, "requests": 1}),
                "needs role operator",
            ),
            (
                &op,
                json!({"action": "rotate", "account_id": id}),
                "needs role admin",
            ),
            (
                &viewer,
                json!({"action": "report", "write": true}),
                "needs role admin",
            ),
        ] {
            let e = err(&app, who, args.clone()).await;
            assert!(e.contains(needle), "{args}: {e}");
        }
        ok(&app, &viewer, json!({"action": "accounts"})).await;
        ok(&app, &viewer, json!({"action": "report"})).await;
        // Another org's id is simply not found.
        for args in [
            json!({"action": "status", "account_id": id}),
            json!({"action": "record", "account_id": id, "requests": 1}),
            json!({"action": "accounts", "op": "update", "account_id": id, "limit": 5}),
            json!({"action": "accounts", "op": "remove", "account_id": id}),
            json!({"action": "rotate", "account_id": id}),
        ] {
            let e = err(&app, &other, args.clone()).await;
            assert!(e.contains("not found"), "{args}: {e}");
        }
        assert_eq!(
            ok(&app, &other, json!({"action": "accounts"})).await["accounts"],
            json!([])
        );
        // Update, rotate, remove.
        let u = ok(
            &app,
            &admin,
            json!({"action": "accounts", "op": "update", "account_id": id,
            "limit": 100, "window": "rolling", "window_minutes": 300}),
        )
        .await;
        assert_eq!(u["accounts"][0]["figures"]["status"], "ACTIVE");
        assert_eq!(u["accounts"][0]["window_minutes"], 300);
        let r = ok(
            &app,
            &admin,
            json!({"action": "rotate", "account_id": id,
            "token_expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
        assert_eq!(
            r["accounts"][0]["token_expires_at"],
            "2099-01-01T00:00:00.000Z"
        );
        assert!(r["accounts"][0]["rotated_at"].is_string());
        let gone = ok(
            &app,
            &admin,
            json!({"action": "accounts", "op": "remove", "account_id": id}),
        )
        .await;
        assert!(gone["accounts"][0]["removed_at"].is_string());
        assert_eq!(
            ok(&app, &viewer, json!({"action": "accounts"})).await["accounts"],
            json!([])
        );
        let all = ok(
            &app,
            &viewer,
            json!({"action": "accounts", "include_removed": true}),
        )
        .await;
        assert_eq!(all["accounts"].as_array().unwrap().len(), 1);
        // The audit trail has the admin changes.
        let actions: Vec<String> = app
            .store
            .audit_list(Some("a"), 100)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.action)
            .collect();
        assert_eq!(
            actions,
            [
                "quota.account.add",
                "quota.account.update",
                "quota.account.rotate",
                "quota.account.remove"
            ]
        );
    }

    #[tokio::test]
    async fn bad_input_names_the_field_and_writes_nothing() {
        let (app, dir) = test_app();
        app.store
            .ensure_org("a", "2026-01-01T00:00:00.000Z")
            .await
            .unwrap();
        let admin = Principal::local("a", Role::Admin);
        let good = secret_file(dir.path(), "good", 0o600);
        let open = secret_file(dir.path(), "open", 0o644);
        let with = |k: &str, v: Value| {
            let mut a = add(&good);
            a[k] = v;
            a
        };
        let cases: Vec<(Value, &str)> = vec![
            (add(&open), "chmod 600"),
            (add("sk-live-pasted-secret"), "secret_ref"),
            (add("env:VL_SURELY_UNSET_VAR_93"), "not set"),
            (add("env:VAULTLINE_DB_PATH"), "configuration"),
            (with("limit", json!(0)), "limit"),
            (with("limit", json!(-5)), "limit"),
            (with("window", json!("rolling")), "window_minutes"),
            (with("window_minutes", json!(60)), "window_minutes"),
            (with("window", json!("week")), "window"),
            (with("provider", json!("Open AI!")), "provider"),
            (with("name", json!("  ")), "name"),
            (with("token_expires_at", json!("soon")), "token_expires_at"),
            (with("limit_kind", json!("dollars")), "limit_kind"),
            (
                json!({"action": "accounts", "op": "add", "provider": "x"}),
                "name",
            ),
            (
                json!({"action": "status", "account_id": "01NOPE"}),
                "not found",
            ),
            (
                json!({"action": "record", "account_id": "01NOPE", "requests": 1}),
                "not found",
            ),
            (
                json!({"action": "record", "account_id": "01NOPE", "requests": -1}),
                "requests",
            ),
            (
                json!({"action": "record", "account_id": "01NOPE", "usd_nanos": 1e18}),
                "usd_nanos",
            ),
            (json!({"action": "report", "date": "yesterday"}), "date"),
            (json!({"action": "report", "date": "2999-01-01"}), "future"),
            (json!({"action": "accounts", "op": "explode"}), "op"),
        ];
        for (args, needle) in cases {
            let e = err(&app, &admin, args.clone()).await;
            assert!(e.contains(needle), "{args}: {e}");
            assert!(
                !e.contains("sk-test") && !e.contains("sk-live"),
                "no secret in errors: {e}"
            );
        }
        assert_eq!(
            ok(
                &app,
                &admin,
                json!({"action": "accounts", "include_removed": true})
            )
            .await["accounts"],
            json!([])
        );
        assert!(
            app.store
                .audit_list(Some("a"), 10)
                .await
                .unwrap()
                .is_empty(),
            "nothing half-written"
        );
        // A zero record and a past expiry, on a real account.
        let id = ok(&app, &admin, add(&good)).await["accounts"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let e = err(&app, &admin, json!({"action": "record", "account_id": id})).await;
        assert!(e.contains("above 0"), "{e}");
        let e = err(
            &app,
            &admin,
            json!({"action": "rotate", "account_id": id, "token_expires_at": "2001-01-01"}),
        )
        .await;
        assert!(e.contains("token_expires_at"), "{e}");
        let e = err(
            &app,
            &admin,
            json!({"action": "accounts", "op": "update", "account_id": id, "provider": "x"}),
        )
        .await;
        assert!(e.contains("provider"), "{e}");
        let e = err(
            &app,
            &admin,
            json!({"action": "accounts", "op": "update", "account_id": id, "window_minutes": 5}),
        )
        .await;
        assert!(e.contains("window_minutes"), "{e}");
        let e = err(
            &app,
            &admin,
            json!({"action": "accounts", "op": "update", "account_id": id, "secret_ref": open}),
        )
        .await;
        assert!(e.contains("chmod 600"), "{e}");
        let e = err(&app, &admin, add(&good)).await;
        assert!(e.contains("already exists"), "{e}");
    }

    #[tokio::test]
    async fn read_only_mode_refuses_changes_but_lists() {
        let dir = crate::tools::tempfile_dir::TempDir::new();
        let mut cfg = crate::config::Config {
            db_path: dir.path().join("ro.db"),
            ..Default::default()
        };
        cfg.tools.read_only = true;
        let app = App::new(cfg).unwrap();
        app.store
            .ensure_org("a", "2026-01-01T00:00:00.000Z")
            .await
            .unwrap();
        let owner = Principal::local("a", Role::Owner);
        let good = secret_file(dir.path(), "good", 0o600);
        let e = err(&app, &owner, add(&good)).await;
        assert!(e.contains("read-only"), "{e}");
        let e = err(&app, &owner, json!({"action": "report", "write": true})).await;
        assert!(e.contains("read-only"), "{e}");
        ok(&app, &owner, json!({"action": "accounts"})).await;
        ok(&app, &owner, json!({"action": "report"})).await;
    }
}
