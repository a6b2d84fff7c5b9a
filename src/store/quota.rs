//! Store verbs for quota accounts: add, update, rotate, remove (soft), list and
//! get; manual usage records; the usage of an account over a span (from
//! `usage_records` joined by account id, plus `quota_usage`); recent call health;
//! and the verbs for what a call teaches — `quota_touch` (the ladder's usage
//! record does the same in its own transaction), `quota_cooldown`,
//! `quota_signal`. Every statement filters on the org.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::Store;
use super::keys::{AuditEntry, insert_audit};
use crate::error::{Error, Result};
use crate::quota::choose::Health;
use crate::quota::{
    Account, BillingMode, LimitKind, Observed, Reported, Usage, Window, WindowKind,
};

const COLS: &str = "org_id, id, provider, name, billing_mode, secret_ref, limit_kind, limit_value, \
    window_kind, window_minutes, token_expires_at, refresh_at, rotated_at, cooldown_until, last_used_at, \
    reported_used, reported_limit, reported_used_percent, reported_reset_at, reported_at, \
    created_at, updated_at, removed_at";

fn corrupt(what: &str, v: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("quota_accounts.{what} holds {v:?}").into(),
    )
}

fn account_row(r: &Row<'_>) -> rusqlite::Result<Account> {
    let mode: String = r.get(4)?;
    let kind: String = r.get(6)?;
    let window: String = r.get(8)?;
    let reported_at: Option<String> = r.get(19)?;
    Ok(Account {
        org: r.get(0)?,
        id: r.get(1)?,
        provider: r.get(2)?,
        name: r.get(3)?,
        billing_mode: BillingMode::parse(&mode).ok_or_else(|| corrupt("billing_mode", &mode))?,
        secret_ref: r.get(5)?,
        limit_kind: LimitKind::parse(&kind).ok_or_else(|| corrupt("limit_kind", &kind))?,
        limit: r.get(7)?,
        window: WindowKind::parse(&window).ok_or_else(|| corrupt("window_kind", &window))?,
        window_minutes: r.get(9)?,
        token_expires_at: r.get(10)?,
        refresh_at: r.get(11)?,
        rotated_at: r.get(12)?,
        cooldown_until: r.get(13)?,
        last_used_at: r.get(14)?,
        reported: match reported_at {
            Some(at) => Some(Reported {
                used: r.get(15)?,
                limit: r.get(16)?,
                used_percent: r.get(17)?,
                reset_at: r.get(18)?,
                at,
            }),
            None => None,
        },
        created_at: r.get(20)?,
        updated_at: r.get(21)?,
        removed_at: r.get(22)?,
    })
}

/// A live (not removed) account of the org.
fn live(c: &Connection, org: &str, id: &str) -> Result<Account> {
    c.prepare_cached(&format!(
        "SELECT {COLS} FROM quota_accounts WHERE org_id = ?1 AND id = ?2 AND removed_at IS NULL"
    ))?
    .query_row([org, id], account_row)
    .optional()?
    .ok_or_else(|| Error::not_found("quota account", id))
}

fn name_taken(c: &Connection, org: &str, provider: &str, name: &str, except: &str) -> Result<bool> {
    Ok(c.prepare_cached(
        "SELECT 1 FROM quota_accounts WHERE org_id = ?1 AND provider = ?2 AND name = ?3
               AND removed_at IS NULL AND id <> ?4",
    )?
    .query_row([org, provider, name, except], |_| Ok(()))
    .optional()?
    .is_some())
}

/// A new account.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub id: String,
    pub provider: String,
    pub name: String,
    pub billing_mode: BillingMode,
    pub secret_ref: String,
    pub limit_kind: LimitKind,
    pub limit: i64,
    pub window: Window,
    pub token_expires_at: Option<String>,
    pub refresh_at: Option<String>,
}

/// Changes to an account; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AccountUpdate {
    pub name: Option<String>,
    pub billing_mode: Option<BillingMode>,
    pub secret_ref: Option<String>,
    pub limit_kind: Option<LimitKind>,
    pub limit: Option<i64>,
    pub window: Option<Window>,
    pub token_expires_at: Option<String>,
    pub refresh_at: Option<String>,
}

/// A rotated credential: its new expiry, refresh date and location, where given.
#[derive(Debug, Clone, Default)]
pub struct Rotation {
    pub token_expires_at: Option<String>,
    pub refresh_at: Option<String>,
    pub secret_ref: Option<String>,
}

/// A manual usage record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ManualUsage {
    pub id: String,
    pub account_id: String,
    pub requests: i64,
    pub tokens: i64,
    pub usd_nanos: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub created_at: String,
}

fn manual_row(r: &Row<'_>) -> rusqlite::Result<ManualUsage> {
    Ok(ManualUsage {
        id: r.get(0)?,
        account_id: r.get(1)?,
        requests: r.get(2)?,
        tokens: r.get(3)?,
        usd_nanos: r.get(4)?,
        note: r.get(5)?,
        actor: r.get(6)?,
        idempotency_key: r.get(7)?,
        created_at: r.get(8)?,
    })
}

const MANUAL_COLS: &str =
    "id, account_id, requests, tokens, usd_nanos, note, actor, idempotency_key, created_at";

/// The spans to sum for one account: its window and its burn span, both ending
/// at the `until` given to `quota_observe`.
#[derive(Debug, Clone)]
pub struct ObserveSpan {
    pub account_id: String,
    pub window_start: String,
    pub burn_start: String,
}

fn usage_between(
    c: &Connection,
    org: &str,
    account: &str,
    from: &str,
    until: &str,
) -> Result<Usage> {
    let own: (i64, i64, i64) = c
        .prepare_cached(
            "SELECT count(*),
                    coalesce(sum(tokens_in + tokens_out + tokens_cache_read + tokens_cache_write), 0),
                    coalesce(sum(cost_nanos), 0)
             FROM usage_records
             WHERE org_id = ?1 AND account_id = ?2 AND created_at >= ?3 AND created_at <= ?4",
        )?
        .query_row([org, account, from, until], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let manual: (i64, i64, i64) = c
        .prepare_cached(
            "SELECT coalesce(sum(requests), 0), coalesce(sum(tokens), 0), coalesce(sum(usd_nanos), 0)
             FROM quota_usage
             WHERE org_id = ?1 AND account_id = ?2 AND created_at >= ?3 AND created_at <= ?4",
        )?
        .query_row([org, account, from, until], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    Ok(Usage {
        requests: own.0,
        tokens: own.1,
        usd_nanos: own.2,
    }
    .plus(Usage {
        requests: manual.0,
        tokens: manual.1,
        usd_nanos: manual.2,
    }))
}

impl Store {
    /// Adds an account (with its audit entry). A live account of the same
    /// provider and name is a conflict.
    pub async fn quota_account_add(
        &self,
        org: &str,
        a: NewAccount,
        now: &str,
        audit: AuditEntry,
    ) -> Result<Account> {
        let (o, n) = (org.to_string(), now.to_string());
        self.write(move |c| {
            if name_taken(c, &o, &a.provider, &a.name, &a.id)? {
                return Err(Error::invalid(
                    "name",
                    format!(
                        "a quota account named {:?} already exists for provider {:?}",
                        a.name, a.provider
                    ),
                ));
            }
            c.execute(
                "INSERT INTO quota_accounts (org_id, id, provider, name, billing_mode, secret_ref,
                   limit_kind, limit_value, window_kind, window_minutes, token_expires_at, refresh_at,
                   created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
                params![
                    o,
                    a.id,
                    a.provider,
                    a.name,
                    a.billing_mode.as_str(),
                    a.secret_ref,
                    a.limit_kind.as_str(),
                    a.limit,
                    a.window.kind().as_str(),
                    a.window.minutes(),
                    a.token_expires_at,
                    a.refresh_at,
                    n
                ],
            )?;
            insert_audit(c, &audit)?;
            live(c, &o, &a.id)
        })
        .await
    }

    /// Changes a live account (with its audit entry).
    pub async fn quota_account_update(
        &self,
        org: &str,
        id: &str,
        u: AccountUpdate,
        now: &str,
        audit: AuditEntry,
    ) -> Result<Account> {
        let (o, i, n) = (org.to_string(), id.to_string(), now.to_string());
        self.write(move |c| {
            let cur = live(c, &o, &i)?;
            let window = u.window.unwrap_or_else(|| cur.window());
            let name = u.name.unwrap_or(cur.name);
            if name_taken(c, &o, &cur.provider, &name, &i)? {
                return Err(Error::invalid(
                    "name",
                    format!(
                        "a quota account named {name:?} already exists for provider {:?}",
                        cur.provider
                    ),
                ));
            }
            c.execute(
                "UPDATE quota_accounts SET name = ?3, billing_mode = ?4, secret_ref = ?5, limit_kind = ?6,
                   limit_value = ?7, window_kind = ?8, window_minutes = ?9, token_expires_at = ?10,
                   refresh_at = ?11, updated_at = ?12
                 WHERE org_id = ?1 AND id = ?2",
                params![
                    o,
                    i,
                    name,
                    u.billing_mode.unwrap_or(cur.billing_mode).as_str(),
                    u.secret_ref.unwrap_or(cur.secret_ref),
                    u.limit_kind.unwrap_or(cur.limit_kind).as_str(),
                    u.limit.unwrap_or(cur.limit),
                    window.kind().as_str(),
                    window.minutes(),
                    u.token_expires_at.or(cur.token_expires_at),
                    u.refresh_at.or(cur.refresh_at),
                    n
                ],
            )?;
            insert_audit(c, &audit)?;
            live(c, &o, &i)
        })
        .await
    }

    /// Marks a live account's credential rotated: a new expiry (and refresh
    /// date, and secret location, when given); any cooldown is lifted, since the
    /// failures it answered were the old credential's.
    pub async fn quota_rotate(
        &self,
        org: &str,
        id: &str,
        r: Rotation,
        now: &str,
        audit: AuditEntry,
    ) -> Result<Account> {
        let Rotation {
            token_expires_at,
            refresh_at,
            secret_ref,
        } = r;
        let (o, i, n) = (org.to_string(), id.to_string(), now.to_string());
        self.write(move |c| {
            let cur = live(c, &o, &i)?;
            c.execute(
                "UPDATE quota_accounts SET rotated_at = ?3, token_expires_at = ?4, refresh_at = ?5,
                   secret_ref = ?6, cooldown_until = NULL, updated_at = ?3
                 WHERE org_id = ?1 AND id = ?2",
                params![
                    o,
                    i,
                    n,
                    token_expires_at.or(cur.token_expires_at),
                    refresh_at.or(cur.refresh_at),
                    secret_ref.unwrap_or(cur.secret_ref)
                ],
            )?;
            insert_audit(c, &audit)?;
            live(c, &o, &i)
        })
        .await
    }

    /// Removes a live account softly: it leaves lists and choices, its usage
    /// history keeps pointing at it.
    pub async fn quota_account_remove(
        &self,
        org: &str,
        id: &str,
        now: &str,
        audit: AuditEntry,
    ) -> Result<Account> {
        let (o, i, n) = (org.to_string(), id.to_string(), now.to_string());
        self.write(move |c| {
            live(c, &o, &i)?;
            c.execute(
                "UPDATE quota_accounts SET removed_at = ?3, updated_at = ?3 WHERE org_id = ?1 AND id = ?2",
                params![o, i, n],
            )?;
            insert_audit(c, &audit)?;
            Ok(c.prepare_cached(&format!(
                "SELECT {COLS} FROM quota_accounts WHERE org_id = ?1 AND id = ?2"
            ))?
            .query_row([&o, &i], account_row)?)
        })
        .await
    }

    /// A live account of the org.
    pub async fn quota_account(&self, org: &str, id: &str) -> Result<Account> {
        let (o, i) = (org.to_string(), id.to_string());
        self.read(move |c| live(c, &o, &i)).await
    }

    /// The org's accounts (of one provider, if given), by provider and name.
    pub async fn quota_accounts(
        &self,
        org: &str,
        provider: Option<&str>,
        include_removed: bool,
    ) -> Result<Vec<Account>> {
        let (o, p) = (org.to_string(), provider.map(String::from));
        self.read_cancellable(None, move |c| {
            let rows = c
                .prepare_cached(&format!(
                    "SELECT {COLS} FROM quota_accounts WHERE org_id = ?1
                       AND (?2 IS NULL OR provider = ?2) AND (?3 OR removed_at IS NULL)
                     ORDER BY provider, name, id"
                ))?
                .query_map(params![o, p, include_removed], account_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Records manual usage against a live account. With an idempotency key, a
    /// replay with the same figures returns the first record (false); the same
    /// key with other figures is refused.
    pub async fn quota_record(&self, org: &str, u: ManualUsage) -> Result<(ManualUsage, bool)> {
        let o = org.to_string();
        self.write(move |c| {
            live(c, &o, &u.account_id)?;
            if let Some(key) = &u.idempotency_key {
                let existing = c
                    .prepare_cached(&format!(
                        "SELECT {MANUAL_COLS} FROM quota_usage WHERE org_id = ?1 AND idempotency_key = ?2"
                    ))?
                    .query_row([&o, key], manual_row)
                    .optional()?;
                if let Some(e) = existing {
                    let same = (e.account_id.as_str(), e.requests, e.tokens, e.usd_nanos)
                        == (u.account_id.as_str(), u.requests, u.tokens, u.usd_nanos);
                    return if same {
                        Ok((e, false))
                    } else {
                        Err(Error::invalid(
                            "idempotency_key",
                            format!("{key:?} was already used for a different record ({})", e.id),
                        ))
                    };
                }
            }
            c.execute(
                &format!(
                    "INSERT INTO quota_usage (org_id, {MANUAL_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ),
                params![
                    o,
                    u.id,
                    u.account_id,
                    u.requests,
                    u.tokens,
                    u.usd_nanos,
                    u.note,
                    u.actor,
                    u.idempotency_key,
                    u.created_at
                ],
            )?;
            Ok((u, true))
        })
        .await
    }

    /// Usage of each account over its window and its burn span, both ending at
    /// `until`: usage records (requests = calls, tokens = in + out + cache read
    /// + cache write, dollars = provider cost) plus manual records.
    pub async fn quota_observe(
        &self,
        org: &str,
        spans: Vec<ObserveSpan>,
        until: &str,
    ) -> Result<Vec<Observed>> {
        let (o, u) = (org.to_string(), until.to_string());
        self.read_cancellable(None, move |c| {
            spans
                .iter()
                .map(|s| {
                    Ok(Observed {
                        window: usage_between(c, &o, &s.account_id, &s.window_start, &u)?,
                        burn: usage_between(c, &o, &s.account_id, &s.burn_start, &u)?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Recent call health per account since `since`: calls, infra failures
    /// (outcome `infra`), mean latency.
    pub async fn quota_health(
        &self,
        org: &str,
        ids: Vec<String>,
        since: &str,
    ) -> Result<HashMap<String, Health>> {
        let (o, s) = (org.to_string(), since.to_string());
        self.read_cancellable(None, move |c| {
            let mut st = c.prepare_cached(
                "SELECT count(*), coalesce(sum(outcome = 'infra'), 0), coalesce(avg(latency_ms), 0.0)
                 FROM usage_records WHERE org_id = ?1 AND account_id = ?2 AND created_at >= ?3",
            )?;
            let mut out = HashMap::new();
            for id in ids {
                let h = st.query_row([&o, &id, &s], |r| {
                    Ok(Health {
                        calls: r.get(0)?,
                        infra_errors: r.get(1)?,
                        avg_latency_ms: r.get(2)?,
                    })
                })?;
                out.insert(id, h);
            }
            Ok(out)
        })
        .await
    }

    /// The ladder, after an infra failure: skip this account until `until`.
    pub async fn quota_cooldown(&self, org: &str, account: &str, until: &str) -> Result<()> {
        let (o, i, u) = (org.to_string(), account.to_string(), until.to_string());
        self.write(move |c| {
            let n = c.execute(
                "UPDATE quota_accounts SET cooldown_until = ?3 WHERE org_id = ?1 AND id = ?2 AND removed_at IS NULL",
                params![o, i, u],
            )?;
            if n == 0 {
                return Err(Error::not_found("quota account", i));
            }
            Ok(())
        })
        .await
    }

    /// The ladder, after using an account: its last use moves to `at` (never back).
    pub async fn quota_touch(&self, org: &str, account: &str, at: &str) -> Result<()> {
        let (o, i, a) = (org.to_string(), account.to_string(), at.to_string());
        self.write(move |c| {
            live(c, &o, &i)?;
            c.execute(
                "UPDATE quota_accounts SET last_used_at = ?3
                 WHERE org_id = ?1 AND id = ?2 AND (last_used_at IS NULL OR last_used_at < ?3)",
                params![o, i, a],
            )?;
            Ok(())
        })
        .await
    }

    /// The ladder, when a provider reported usage (rate-limit headers, a CLI's
    /// usage line): replaces the account's last report.
    pub async fn quota_signal(&self, org: &str, account: &str, r: Reported) -> Result<()> {
        let (o, i) = (org.to_string(), account.to_string());
        self.write(move |c| {
            let n = c.execute(
                "UPDATE quota_accounts SET reported_used = ?3, reported_limit = ?4, reported_used_percent = ?5,
                   reported_reset_at = ?6, reported_at = ?7
                 WHERE org_id = ?1 AND id = ?2 AND removed_at IS NULL",
                params![o, i, r.used, r.limit, r.used_percent, r.reset_at, r.at],
            )?;
            if n == 0 {
                return Err(Error::not_found("quota account", i));
            }
            Ok(())
        })
        .await
    }

    /// Orgs that have at least one live quota account.
    pub async fn quota_orgs(&self) -> Result<Vec<String>> {
        self.read_cancellable(None, |c| {
            let rows = c
                .prepare_cached(
                    "SELECT DISTINCT org_id FROM quota_accounts WHERE removed_at IS NULL ORDER BY org_id",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Synchronous;

    fn audit(org: &str, id: &str) -> AuditEntry {
        AuditEntry {
            org_id: org.into(),
            id: id.into(),
            actor: "test".into(),
            action: "quota.test".into(),
            subject: None,
            detail: None,
            created_at: "2026-11-24T00:00:00.000Z".into(),
        }
    }

    fn new(id: &str, name: &str) -> NewAccount {
        NewAccount {
            id: id.into(),
            provider: "openai".into(),
            name: name.into(),
            billing_mode: BillingMode::Metered,
            secret_ref: "env:OPENAI_KEY".into(),
            limit_kind: LimitKind::Requests,
            limit: 100,
            window: Window::Day,
            token_expires_at: None,
            refresh_at: None,
        }
    }

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("q.db"), Synchronous::Normal).unwrap();
        for o in ["a", "b"] {
            s.ensure_org(o, "2026-01-01T00:00:00.000Z").await.unwrap();
        }
        (dir, s)
    }

    const NOW: &str = "2026-11-24T12:00:00.000Z";

    #[tokio::test]
    async fn accounts_lifecycle_and_org_isolation() {
        let (_d, s) = store().await;
        let a = s
            .quota_account_add("a", new("q1", "main"), NOW, audit("a", "au1"))
            .await
            .unwrap();
        assert_eq!(
            (a.limit, a.window, a.removed_at.clone()),
            (100, WindowKind::Day, None)
        );
        // Same provider and name: refused, nothing written.
        let e = s
            .quota_account_add("a", new("q2", "main"), NOW, audit("a", "au2"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        // Another org may use the name, and cannot see ours.
        s.quota_account_add("b", new("q1", "main"), NOW, audit("b", "au3"))
            .await
            .unwrap();
        let u = s
            .quota_account_update(
                "a",
                "q1",
                AccountUpdate {
                    limit: Some(500),
                    window: Some(Window::Rolling { minutes: 300 }),
                    ..Default::default()
                },
                "2026-11-24T12:01:00.000Z",
                audit("a", "au4"),
            )
            .await
            .unwrap();
        assert_eq!(
            (u.limit, u.window, u.window_minutes),
            (500, WindowKind::Rolling, Some(300))
        );
        assert_eq!(
            s.quota_account("b", "q1").await.unwrap().limit,
            100,
            "b's account untouched"
        );
        assert!(matches!(
            s.quota_account("b", "nope").await,
            Err(Error::NotFound { .. })
        ));
        let r = s
            .quota_account_remove("a", "q1", NOW, audit("a", "au5"))
            .await
            .unwrap();
        assert!(r.removed_at.is_some());
        assert!(matches!(
            s.quota_account("a", "q1").await,
            Err(Error::NotFound { .. })
        ));
        assert!(s.quota_accounts("a", None, false).await.unwrap().is_empty());
        assert_eq!(s.quota_accounts("a", None, true).await.unwrap().len(), 1);
        // A removed name may be reused.
        s.quota_account_add("a", new("q3", "main"), NOW, audit("a", "au6"))
            .await
            .unwrap();
        let audits = s.audit_list(Some("a"), 100).await.unwrap();
        assert_eq!(audits.len(), 4, "add, update, remove, add");
    }

    #[tokio::test]
    async fn usage_health_and_ladder_verbs() {
        let (_d, s) = store().await;
        s.quota_account_add("a", new("q1", "main"), NOW, audit("a", "au1"))
            .await
            .unwrap();
        s.quota_account_add("b", new("q1", "main"), NOW, audit("b", "au2"))
            .await
            .unwrap();
        // Usage records as the metering side writes them.
        s.write(|c| {
            for (org, id, outcome, at, lat) in [
                ("a", "u1", "ok", "2026-11-24T01:00:00.000Z", 100),
                ("a", "u2", "infra", "2026-11-24T02:00:00.000Z", 300),
                ("a", "u3", "ok", "2026-11-23T10:00:00.000Z", 200),
                ("b", "u4", "ok", "2026-11-24T03:00:00.000Z", 100),
            ] {
                c.execute(
                    "INSERT INTO usage_records (org_id, id, key_id, reason, provider, model, account_id, billing_mode,
                       tokens_in, tokens_out, tokens_cache_read, tokens_cache_write, cost_nanos, billed_nanos, cost_source,
                       latency_ms, outcome, source_system, source_reference, created_at)
                     VALUES (?1, ?2, 'k', 'llm_call', 'openai', 'gpt', 'q1', 'metered', 10, 20, 3, 4, 1000, 2000, 'provider',
                       ?5, ?3, 'test', ?2, ?4)",
                    params![org, id, outcome, at, lat],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
        let manual = ManualUsage {
            id: "m1".into(),
            account_id: "q1".into(),
            requests: 5,
            tokens: 100,
            usd_nanos: 0,
            note: None,
            actor: "k".into(),
            idempotency_key: Some("idem-1".into()),
            created_at: "2026-11-24T05:00:00.000Z".into(),
        };
        let (_, created) = s.quota_record("a", manual.clone()).await.unwrap();
        assert!(created);
        let (again, created) = s
            .quota_record(
                "a",
                ManualUsage {
                    id: "m2".into(),
                    ..manual.clone()
                },
            )
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(again.id, "m1");
        let e = s
            .quota_record(
                "a",
                ManualUsage {
                    id: "m3".into(),
                    requests: 6,
                    ..manual.clone()
                },
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("idempotency_key"), "{e}");
        let e = s
            .quota_record(
                "b",
                ManualUsage {
                    account_id: "nope".into(),
                    idempotency_key: None,
                    ..manual.clone()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e}");
        let obs = s
            .quota_observe(
                "a",
                vec![ObserveSpan {
                    account_id: "q1".into(),
                    window_start: "2026-11-24T00:00:00.000Z".into(),
                    burn_start: "2026-11-17T12:00:00.000Z".into(),
                }],
                NOW,
            )
            .await
            .unwrap();
        assert_eq!(
            obs[0].window,
            Usage {
                requests: 7,
                tokens: 174,
                usd_nanos: 2000
            }
        );
        assert_eq!(
            obs[0].burn,
            Usage {
                requests: 8,
                tokens: 211,
                usd_nanos: 3000
            }
        );
        let h = s
            .quota_health("a", vec!["q1".into()], "2026-11-24T00:00:00.000Z")
            .await
            .unwrap();
        assert_eq!(
            h["q1"],
            Health {
                calls: 2,
                infra_errors: 1,
                avg_latency_ms: 200.0
            }
        );
        // Ladder verbs.
        s.quota_touch("a", "q1", "2026-11-24T12:00:00.000Z")
            .await
            .unwrap();
        s.quota_touch("a", "q1", "2026-11-24T11:00:00.000Z")
            .await
            .unwrap();
        s.quota_cooldown("a", "q1", "2026-11-24T12:10:00.000Z")
            .await
            .unwrap();
        s.quota_signal(
            "a",
            "q1",
            Reported {
                used: Some(42),
                limit: Some(50),
                used_percent: None,
                reset_at: Some("2026-11-25T00:00:00.000Z".into()),
                at: NOW.into(),
            },
        )
        .await
        .unwrap();
        let a = s.quota_account("a", "q1").await.unwrap();
        assert_eq!(
            a.last_used_at.as_deref(),
            Some("2026-11-24T12:00:00.000Z"),
            "touch never moves back"
        );
        assert_eq!(
            a.cooldown_until.as_deref(),
            Some("2026-11-24T12:10:00.000Z")
        );
        assert_eq!(a.reported.as_ref().and_then(|r| r.used), Some(42));
        let b = s.quota_account("b", "q1").await.unwrap();
        assert!(
            b.last_used_at.is_none() && b.reported.is_none(),
            "other org untouched"
        );
        for r in [
            s.quota_touch("a", "nope", NOW).await,
            s.quota_cooldown("a", "nope", NOW).await,
            s.quota_signal(
                "a",
                "nope",
                Reported {
                    at: NOW.into(),
                    ..Default::default()
                },
            )
            .await,
        ] {
            assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
        }
        let rot = s
            .quota_rotate(
                "a",
                "q1",
                Rotation {
                    token_expires_at: Some("2027-01-01T00:00:00.000Z".into()),
                    ..Default::default()
                },
                NOW,
                audit("a", "au3"),
            )
            .await
            .unwrap();
        assert_eq!(rot.rotated_at.as_deref(), Some(NOW));
        assert!(rot.cooldown_until.is_none(), "rotation lifts the cooldown");
        assert_eq!(
            s.quota_orgs().await.unwrap(),
            vec!["a".to_string(), "b".to_string()]
        );
    }
}
