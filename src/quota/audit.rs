//! The daily quota audit: every account's figures and status, the alerts they
//! raise (WARNING / CRITICAL / EXHAUSTED, once per account, level and window;
//! a credential expired, expiring within 7 days, or due for refresh), written as `quota-report-YYYY-MM-DD.json` and a readable YAML twin.
//!
//! It runs three ways: `vaultline quota report` (for system timers), the `quota
//! report` tool, and an in-process schedule at `quota.audit_utc` that takes the
//! `quota-audit` lease row, so several processes on one database run it once a
//! day. A failed run raises an `audit_failed` alert.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::service::{AccountView, figures_of, publish_gauges};
use super::{Account, Status};
use crate::app::App;
use crate::clock::{fmt_time, parse_time};
use crate::error::{Error, Result};

/// The lease row the schedule takes.
pub const LEASE: &str = "quota-audit";
/// The org alerts about the audit itself are filed under when no org applies
/// (no real org can have this id: org ids start with a letter or digit).
pub const SYSTEM_ORG: &str = "_system";
/// How long a run may hold the lease before another process may take over.
const LEASE_TTL: Duration = Duration::minutes(30);
/// How often the schedule wakes to look at the clock and the lease.
const TICK: std::time::Duration = std::time::Duration::from_secs(60);
/// How often the schedule refreshes the quota gauges of /metrics.
const GAUGE_EVERY: u32 = 5;

/// One alert the report raised (or, for a report that raises none, would raise).
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Eq)]
pub struct AlertLine {
    pub org: String,
    pub kind: String,
    pub subject: String,
    pub period_key: String,
    pub message: String,
    /// True when this run raised it; false when it was raised before or the
    /// report only looked.
    pub raised: bool,
}

/// The audit's content.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub date: String,
    pub as_of: String,
    pub generated_at: String,
    pub accounts: Vec<AccountView>,
    pub alerts: Vec<AlertLine>,
}

/// The alert kind of a status, if it raises one.
pub fn alert_kind(s: Status) -> Option<&'static str> {
    match s {
        Status::Active => None,
        Status::Warning => Some("quota_warning"),
        Status::Critical => Some("quota_critical"),
        Status::Exhausted => Some("quota_exhausted"),
    }
}

/// Parses the report date (`YYYY-MM-DD`); the error names the field.
pub fn parse_date(field: &str, s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| Error::invalid(field, format!("{s:?} is not a date YYYY-MM-DD")))
}

/// The instant a report for `date` describes: now for today, the last
/// millisecond of the day for a past date. A future date is refused.
pub fn as_of(date: NaiveDate, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let today = now.date_naive();
    if date > today {
        return Err(Error::invalid(
            "date",
            format!("{date} is in the future (today is {today}, UTC)"),
        ));
    }
    if date == today {
        return Ok(now);
    }
    let next = date
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .ok_or_else(|| Error::invalid("date", "is out of range"))?;
    Ok(next - Duration::milliseconds(1))
}

fn alert_message(v: &AccountView, status: Status) -> String {
    let (a, f) = (&v.account, v.figures.as_ref());
    let (used, limit, percent) = f.map(|f| (f.used, f.limit, f.percent)).unwrap_or_default();
    let window = match a.window_minutes {
        Some(m) => format!("rolling {m}-minute"),
        None => a.window.as_str().to_string(),
    };
    let reset = f
        .and_then(|f| f.resets_at.as_deref())
        .map(|r| format!("; resets at {r}"))
        .unwrap_or_default();
    format!(
        "quota account {:?} ({}) is {}: {used} of {limit} {} used in its {window} window ({percent}%){reset}",
        a.name,
        a.provider,
        status.as_str(),
        a.limit_kind.as_str(),
    )
}

/// How far ahead the audit warns of a credential's expiry.
pub const EXPIRY_NOTICE: Duration = Duration::days(7);

/// An alert about the account's credential, if one is due at `at`: expired,
/// expiring within `EXPIRY_NOTICE`, or past its refresh date. The period key is
/// the date in question, so each expiry (or refresh date) alerts once.
pub fn credential_alert(a: &Account, at: DateTime<Utc>) -> Option<(&'static str, String, String)> {
    let when = |s: &Option<String>| s.as_deref().and_then(parse_time);
    let who = format!("quota account {:?} ({})", a.name, a.provider);
    if let Some(exp) = when(&a.token_expires_at) {
        let key = exp.date_naive().to_string();
        if exp <= at {
            return Some((
                "credential_expired",
                key,
                format!(
                    "{who}: its credential expired at {}; rotate it (quota rotate)",
                    fmt_time(exp)
                ),
            ));
        }
        if exp - at <= EXPIRY_NOTICE {
            return Some((
                "credential_expiring",
                key,
                format!(
                    "{who}: its credential expires at {}; rotate it before then",
                    fmt_time(exp)
                ),
            ));
        }
    }
    match when(&a.refresh_at) {
        Some(r) if r <= at => Some((
            "credential_refresh_due",
            r.date_naive().to_string(),
            format!(
                "{who}: its credential was due for refresh at {}",
                fmt_time(r)
            ),
        )),
        _ => None,
    }
}

/// Builds the report for `org` (or every org with accounts) for `date` (default
/// today, UTC). With `raise`, and only for today, raises the alerts it finds.
pub async fn report(
    app: &App,
    org: Option<&str>,
    date: Option<NaiveDate>,
    raise: bool,
) -> Result<Report> {
    let now = app.clock.now();
    let date = date.unwrap_or_else(|| now.date_naive());
    let at = as_of(date, now)?;
    let live = date == now.date_naive();
    let orgs = match org {
        Some(o) => vec![o.to_string()],
        None => app.store.quota_orgs().await?,
    };
    let mut accounts = Vec::new();
    let mut alerts = Vec::new();
    for o in orgs {
        let views = figures_of(
            &app.store,
            &o,
            app.store.quota_accounts(&o, None, false).await?,
            at,
        )
        .await?;
        if live {
            publish_gauges(app, &views);
        }
        for v in &views {
            let Some(f) = &v.figures else { continue };
            let mut due = Vec::new();
            if let Some(kind) = alert_kind(f.status) {
                due.push((
                    kind,
                    v.account.window().period_key(at),
                    alert_message(v, f.status),
                ));
            }
            due.extend(credential_alert(&v.account, at));
            for (kind, period_key, message) in due {
                let raised = if raise && live {
                    app.alerts
                        .raise(&o, kind, &v.account.id, &period_key, &message)
                        .await?
                } else {
                    false
                };
                alerts.push(AlertLine {
                    org: o.clone(),
                    kind: kind.into(),
                    subject: v.account.id.clone(),
                    period_key,
                    message,
                    raised,
                });
            }
        }
        accounts.extend(views);
    }
    Ok(Report {
        date: date.to_string(),
        as_of: fmt_time(at),
        generated_at: fmt_time(now),
        accounts,
        alerts,
    })
}

/// The two file names of a report.
pub fn file_names(date: &str) -> [String; 2] {
    [
        format!("quota-report-{date}.json"),
        format!("quota-report-{date}.yaml"),
    ]
}

/// Writes the report's JSON and YAML files into `dir` (each written whole to a
/// temporary file, then renamed, so a reader never sees half a report).
pub async fn write_files(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    let json = serde_json::to_string_pretty(report)? + "\n";
    let yaml = format!(
        "# vaultline quota report for {} (as of {})\n{}",
        report.date,
        report.as_of,
        serde_norway::to_string(report).map_err(|e| Error::Internal(format!("yaml: {e}")))?
    );
    let [jn, yn] = file_names(&report.date);
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::Internal(format!(
                "cannot create report directory {}: {e}",
                dir.display()
            ))
        })?;
        let mut written = Vec::new();
        for (name, body) in [(jn, json), (yn, yaml)] {
            let path = dir.join(&name);
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, body)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))?;
            written.push(path);
        }
        Ok(written)
    })
    .await
    .map_err(|e| Error::Internal(format!("report writer failed: {e}")))?
}

/// One audit run: the report with its alerts raised, written to `dir`. A
/// failure raises `audit_failed` (under the org, or `_system`) and is returned.
pub async fn run(
    app: &App,
    org: Option<&str>,
    date: Option<NaiveDate>,
    dir: &Path,
) -> Result<(Report, Vec<PathBuf>)> {
    let result = async {
        let r = report(app, org, date, true).await?;
        let files = write_files(&r, dir).await?;
        Ok((r, files))
    }
    .await;
    // A caller's mistake (a bad date) is refused, not an audit failure.
    if let Err(e) = &result
        && !matches!(e, Error::Invalid { .. })
    {
        let day = date
            .unwrap_or_else(|| app.clock.now().date_naive())
            .to_string();
        tracing::error!(error = %e, "quota audit failed");
        let msg = format!("the quota audit for {day} failed: {e}");
        if let Err(e2) = app
            .alerts
            .raise(org.unwrap_or(SYSTEM_ORG), "audit_failed", LEASE, &day, &msg)
            .await
        {
            tracing::error!(error = %e2, "cannot raise the audit_failed alert");
        }
    }
    result
}

/// When today's audit is due (`quota.audit_utc` on `now`'s UTC date).
pub fn due_at(app: &App, now: DateTime<Utc>) -> DateTime<Utc> {
    let t = app
        .config
        .quota
        .audit_time()
        .unwrap_or(chrono::NaiveTime::MIN);
    now.date_naive().and_time(t).and_utc()
}

/// The in-process schedule: wakes every minute; once today's audit time has
/// passed and the lease says today has not run, takes the lease, runs the audit
/// for all orgs into `quota.report_dir`, and marks the day done. A server that
/// starts after the audit time catches up the same day. Also refreshes the
/// /metrics quota gauges every few minutes.
pub fn spawn_schedule(app: Arc<App>, ct: CancellationToken) {
    let holder = format!("pid{}-{}", std::process::id(), app.ids.next());
    tokio::spawn(async move {
        let mut ticks: u32 = 0;
        let mut failed_day: Option<String> = None;
        loop {
            if app.config.audit_enabled()
                && let Err(e) = tick(&app, &holder, &mut failed_day).await
            {
                tracing::warn!(error = %e, "quota audit schedule: cannot check the lease");
            }
            if ticks.is_multiple_of(GAUGE_EVERY)
                && let Err(e) = super::service::refresh_gauges(&app).await
            {
                tracing::warn!(error = %e, "cannot refresh quota gauges");
            }
            ticks = ticks.wrapping_add(1);
            tokio::select! {
                _ = ct.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    });
}

async fn tick(app: &App, holder: &str, failed_day: &mut Option<String>) -> Result<()> {
    let now = app.clock.now();
    if now < due_at(app, now) {
        return Ok(());
    }
    let day = now.date_naive().to_string();
    // A failed run is retried once the lease it held expires, not every minute.
    if failed_day.as_deref() == Some(day.as_str()) {
        return Ok(());
    }
    if let Some(l) = app.store.lease_get(LEASE).await?
        && l.last_run_key.as_deref() == Some(day.as_str())
    {
        return Ok(());
    }
    let expires = fmt_time(now + LEASE_TTL);
    if !app
        .store
        .lease_acquire(LEASE, holder, &day, &fmt_time(now), &expires)
        .await?
    {
        return Ok(());
    }
    let dir = app.config.quota.report_dir();
    match run(app, None, Some(now.date_naive()), &dir).await {
        Ok((r, files)) => {
            app.store
                .lease_finish(LEASE, holder, &day, &app.clock.now_text())
                .await?;
            tracing::info!(
                date = %day,
                accounts = r.accounts.len(),
                alerts = r.alerts.iter().filter(|a| a.raised).count(),
                files = ?files,
                "quota audit done"
            );
        }
        Err(_) => {
            // Logged and alerted by `run`; the lease expires and another tick
            // (of this process after a restart, or of another one) retries.
            *failed_day = Some(day);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Principal, Role};
    use crate::tools::{call_as, test_app};
    use serde_json::json;

    #[test]
    fn credential_alert_cases() {
        use crate::quota::tests::{account, t};
        use crate::quota::{LimitKind, Window};
        let at = t("2026-11-24T02:00:00Z");
        // (token_expires_at, refresh_at, expected (kind, period key))
        type Case = (
            Option<&'static str>,
            Option<&'static str>,
            Option<(&'static str, &'static str)>,
        );
        let cases: &[Case] = &[
            (None, None, None),
            (Some("2027-01-01T00:00:00Z"), None, None),
            (
                Some("2026-11-30T00:00:00Z"),
                None,
                Some(("credential_expiring", "2026-11-30")),
            ),
            (
                Some("2026-11-24T01:00:00Z"),
                None,
                Some(("credential_expired", "2026-11-24")),
            ),
            (
                None,
                Some("2026-11-20T00:00:00Z"),
                Some(("credential_refresh_due", "2026-11-20")),
            ),
            (None, Some("2026-11-25T00:00:00Z"), None),
            // Expiry says more than refresh.
            (
                Some("2026-11-23T00:00:00Z"),
                Some("2026-11-20T00:00:00Z"),
                Some(("credential_expired", "2026-11-23")),
            ),
        ];
        for (exp, refresh, want) in cases {
            let mut a = account(LimitKind::Requests, 1, Window::Day);
            a.token_expires_at = exp.map(String::from);
            a.refresh_at = refresh.map(String::from);
            let got = credential_alert(&a, at);
            assert_eq!(
                got.as_ref().map(|(k, p, _)| (*k, p.as_str())),
                *want,
                "{exp:?} {refresh:?}"
            );
            if let Some((_, _, m)) = got {
                assert!(m.contains("seat-1") && m.contains("anthropic"), "{m}");
            }
        }
    }

    #[test]
    fn as_of_cases() {
        let now = crate::quota::tests::t("2026-11-24T02:00:00Z");
        let d = |s: &str| parse_date("date", s).unwrap();
        assert_eq!(
            fmt_time(as_of(d("2026-11-24"), now).unwrap()),
            "2026-11-24T02:00:00.000Z"
        );
        assert_eq!(
            fmt_time(as_of(d("2026-11-20"), now).unwrap()),
            "2026-11-20T23:59:59.999Z"
        );
        let e = as_of(d("2026-11-25"), now).unwrap_err().to_string();
        assert!(e.contains("date") && e.contains("future"), "{e}");
        assert!(
            parse_date("date", "24/11/2026")
                .unwrap_err()
                .to_string()
                .contains("`date`")
        );
    }

    #[tokio::test]
    async fn a_run_writes_both_files_and_raises_once() {
        let (app, dir) = test_app();
        app.store
            .ensure_org("acme", "2026-01-01T00:00:00.000Z")
            .await
            .unwrap();
        let admin = Principal::local("acme", Role::Admin);
        let secret = dir.path().join("seat.key");
        std::fs::write(&secret, "sk-ant-oat-seat-secret-0042\n").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let secret_ref = format!("file:{}", secret.display());
        let out = call_as(
            &app,
            &admin,
            "quota",
            json!({"action": "accounts", "op": "add", "provider": "anthropic", "name": "max-1",
                   "billing_mode": "seat", "secret_ref": secret_ref, "limit_kind": "requests",
                   "limit": 10, "window": "day"}),
        )
        .await
        .unwrap();
        let id = out.structured["accounts"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        // Through the tool, a record that crosses a threshold alerts at once …
        call_as(
            &app,
            &admin,
            "quota",
            json!({"action": "record", "account_id": id, "requests": 9}),
        )
        .await
        .unwrap();
        // … while usage the tool did not see (here written by the store verb)
        // is caught by the audit.
        let other = call_as(
            &app,
            &admin,
            "quota",
            json!({"action": "accounts", "op": "add", "provider": "anthropic", "name": "max-2",
                   "billing_mode": "seat", "secret_ref": secret_ref, "limit_kind": "tokens",
                   "limit": 1000, "window": "rolling", "window_minutes": 300}),
        )
        .await
        .unwrap();
        let other_id = other.structured["accounts"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        app.store
            .quota_record(
                "acme",
                crate::store::ManualUsage {
                    id: app.ids.next(),
                    account_id: other_id.clone(),
                    requests: 1,
                    tokens: 850,
                    usd_nanos: 0,
                    note: None,
                    actor: "t".into(),
                    idempotency_key: None,
                    created_at: app.clock.now_text(),
                },
            )
            .await
            .unwrap();
        let reports = dir.path().join("reports");
        let (r, files) = run(&app, None, None, &reports).await.unwrap();
        assert_eq!(r.accounts.len(), 2);
        let got: Vec<(&str, &str, bool)> = r
            .alerts
            .iter()
            .map(|a| (a.subject.as_str(), a.kind.as_str(), a.raised))
            .collect();
        assert_eq!(
            got,
            vec![
                (id.as_str(), "quota_critical", false),
                (other_id.as_str(), "quota_warning", true)
            ]
        );
        assert_eq!(app.store.alerts_list("acme", 10).await.unwrap().len(), 2);
        assert_eq!(files.len(), 2);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
        assert_eq!(json["accounts"][0]["figures"]["status"], "CRITICAL");
        assert_eq!(json["accounts"][0]["secret_ref"], secret_ref.as_str());
        let yaml = std::fs::read_to_string(&files[1]).unwrap();
        assert!(
            yaml.contains("status: CRITICAL") && yaml.contains("name: max-1"),
            "{yaml}"
        );
        let back: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(back, json, "the YAML twin holds the same content");
        // A second run the same day raises nothing new.
        let (r2, _) = run(&app, Some("acme"), None, &reports).await.unwrap();
        assert!(r2.alerts.iter().all(|a| !a.raised));
        // The reference is shown, the secret itself is nowhere.
        assert!(!yaml.contains("seat-secret") && !json.to_string().contains("seat-secret"));
    }

    #[tokio::test]
    async fn a_failed_run_raises_audit_failed() {
        let (app, dir) = test_app();
        // A file where the directory should be: the write fails.
        let blocker = dir.path().join("blocked");
        std::fs::write(&blocker, "x").unwrap();
        let e = run(&app, None, None, &blocker.join("reports"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("report directory"), "{e}");
        let alerts = app.store.alerts_list(SYSTEM_ORG, 10).await.unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].kind, "audit_failed");
    }
}
