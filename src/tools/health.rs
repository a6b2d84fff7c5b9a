//! `health`: liveness and the state of every part (status), and a canary that
//! writes, reads back and deletes a row so an agent can tell at session start
//! whether its memory works. `status` reads only in-memory state and one cheap
//! probe result, so it stays as fast as an echo; that includes the last good
//! backup's time (read from the store once, then kept current by the backup
//! schedule loop).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ActionSpec, CallCtx, ToolOutput, ToolSpec, parse, read, schema_of};
use crate::app::VERSION;
use crate::error::Result;

pub static SPEC: ToolSpec = ToolSpec {
    action_field: true,
    name: "health",
    description: "Server health. status: store, migrations, uptime, version, sessions, last backup. canary: write, read back and delete a row to prove memory works (reports failure instead of throwing).",
    actions: &ACTIONS,
    input: schema_of::<Params>,
    output: schema_of::<Output>,
    destructive: false,
    idempotent: true,
};

static ACTIONS: [ActionSpec; 2] = [
    read("status", &[]),
    // The canary writes (and removes) a scratch row: it needs write access.
    super::write("canary", &[]),
];

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[allow(dead_code)]
    action: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// `ok` or `degraded`.
    status: String,
    version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<StoreState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uptime_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sessions: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backup: Option<BackupState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    canary: Option<Canary>,
}

#[derive(Debug, Serialize, JsonSchema)]
struct BackupState {
    /// When the newest good backup finished (RFC 3339 UTC); absent if never.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_ok_at: Option<String>,
    /// Its age in seconds; absent if never.
    #[serde(skip_serializing_if = "Option::is_none")]
    age_s: Option<i64>,
    /// The in-process schedule: `off`, `every N h` or `daily at HH:MM UTC`.
    schedule: String,
}

#[derive(Debug, Serialize, JsonSchema)]
struct StoreState {
    ok: bool,
    schema_version: u32,
    schema_latest: u32,
    errors: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
struct Canary {
    ok: bool,
    latency_ms: f64,
    /// The step that failed: write, read or delete.
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub async fn call(ctx: &CallCtx, action: &str, args: serde_json::Value) -> Result<ToolOutput> {
    let _p: Params = parse(args)?;
    let app = &ctx.app;
    let m = app.store.migration_status();
    let errors = app.store.error_count();
    match action {
        "canary" => {
            let t = std::time::Instant::now();
            let id = app.ids.next();
            let r = app
                .store
                .canary(&ctx.principal.org, &id, &app.clock.now_text())
                .await;
            let latency_ms = t.elapsed().as_secs_f64() * 1000.0;
            let (ok, failed_at, error) = match r {
                Ok(()) => (true, None, None),
                Err((step, e)) => (false, Some(step.to_string()), Some(e)),
            };
            let text = if ok {
                format!("canary ok: wrote, read back and deleted a row in {latency_ms:.1} ms")
            } else {
                format!(
                    "canary FAILED at {}: {} — treat memory as unavailable",
                    failed_at.as_deref().unwrap_or("?"),
                    error.as_deref().unwrap_or("")
                )
            };
            ToolOutput::new(
                Output {
                    status: if ok { "ok" } else { "degraded" }.into(),
                    version: VERSION.into(),
                    store: None,
                    uptime_s: None,
                    sessions: None,
                    backup: None,
                    canary: Some(Canary {
                        ok,
                        latency_ms,
                        failed_at,
                        error,
                    }),
                },
                text,
            )
        }
        _ => {
            let store_ok =
                m.current == m.latest && app.store_ok.load(std::sync::atomic::Ordering::Relaxed);
            let uptime = app.started.elapsed().as_secs();
            let sessions = app.session_count() as u64;
            let status = if store_ok { "ok" } else { "degraded" };
            let last_ok_at = app.last_backup.get(&app.store).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read the last backup's time");
                None
            });
            let age_s = last_ok_at
                .as_deref()
                .and_then(crate::clock::parse_time)
                .map(|t| (app.clock.now() - t).num_seconds().max(0));
            let backup_text = match age_s {
                Some(a) => format!("last backup: {}h{:02}m ago", a / 3600, a / 60 % 60),
                None => "last backup: never".into(),
            };
            let text = format!(
                "{status}: vaultline {VERSION}, schema v{}/{}, up {uptime}s, {sessions} sessions, {backup_text}",
                m.current, m.latest
            );
            ToolOutput::new(
                Output {
                    status: status.into(),
                    version: VERSION.into(),
                    store: Some(StoreState {
                        ok: store_ok,
                        schema_version: m.current,
                        schema_latest: m.latest,
                        errors,
                    }),
                    uptime_s: Some(uptime),
                    sessions: Some(sessions),
                    backup: Some(BackupState {
                        last_ok_at,
                        age_s,
                        schedule: crate::backup::schedule_text(&app.config.backup),
                    }),
                    canary: None,
                },
                text,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::auth::{Principal, Role};
    use crate::tools::{call_as, test_app};
    use serde_json::json;

    #[tokio::test]
    async fn status_and_canary_and_roles() {
        let (app, _dir) = test_app();
        app.store
            .ensure_org("acme", "2026-01-01T00:00:00.000Z")
            .await
            .unwrap();
        let viewer = Principal::local("acme", Role::Viewer);
        let op = Principal::local("acme", Role::Operator);
        let out = call_as(&app, &viewer, "health", json!({"action": "status"}))
            .await
            .unwrap();
        assert_eq!(out.structured["status"], "ok");
        assert_eq!(
            out.structured["store"]["schema_version"],
            crate::store::MIGRATIONS.len()
        );
        assert_eq!(out.structured["backup"]["schedule"], "off");
        assert!(out.structured["backup"].get("last_ok_at").is_none());
        assert!(out.text.contains("last backup: never"), "{}", out.text);
        let err = call_as(&app, &viewer, "health", json!({"action": "canary"}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("needs role operator"), "{err}");
        let out = call_as(&app, &op, "health", json!({"action": "canary"}))
            .await
            .unwrap();
        assert_eq!(out.structured["canary"]["ok"], true, "{}", out.structured);
        let err = call_as(&app, &op, "health", json!({"action": "explode"}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("action"), "{err}");
    }
}
