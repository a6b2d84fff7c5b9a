//! Quota over the store: the figures of an org's accounts now (or as of a past
//! instant), and the account choice the dispatch ladder asks for. These glue the
//! pure rules of `quota` to store verbs; they hold no SQL and no policy of their own.

use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use super::choose::{Candidate, Choice, Health, choose};
use super::{Account, Figures, figures, spans};
use crate::app::App;
use crate::clock::fmt_time;
use crate::error::Result;
use crate::store::{ObserveSpan, Store};

/// How far back the error rate and latency of an account are measured.
pub const HEALTH_SPAN: Duration = Duration::hours(6);

/// An account with its figures, as tools and reports show it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AccountView {
    #[serde(flatten)]
    pub account: Account,
    /// Absent for removed accounts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub figures: Option<Figures>,
}

/// The figures of `accounts` (all of `org`) as of `at`.
pub async fn figures_of(
    store: &Store,
    org: &str,
    accounts: Vec<Account>,
    at: DateTime<Utc>,
) -> Result<Vec<AccountView>> {
    let live: Vec<&Account> = accounts.iter().filter(|a| a.removed_at.is_none()).collect();
    let obs = store
        .quota_observe(
            org,
            live.iter()
                .map(|a| {
                    let (w, b) = spans(a, at);
                    ObserveSpan {
                        account_id: a.id.clone(),
                        window_start: fmt_time(w),
                        burn_start: fmt_time(b),
                    }
                })
                .collect(),
            &fmt_time(at),
        )
        .await?;
    let mut obs = obs.into_iter();
    Ok(accounts
        .into_iter()
        .map(|a| {
            let f = if a.removed_at.is_none() {
                obs.next().map(|o| figures(&a, o, at))
            } else {
                None
            };
            AccountView {
                account: a,
                figures: f,
            }
        })
        .collect())
}

/// Publishes the accounts' percentages on the admin-only metrics.
pub fn publish_gauges(app: &App, views: &[AccountView]) {
    for v in views {
        match &v.figures {
            Some(f) => app
                .metrics
                .set_quota_percent(&v.account.org, &v.account.id, f.percent),
            None => app.metrics.forget_quota(&v.account.org, &v.account.id),
        }
    }
}

/// Refreshes the quota gauges of every org (for the metrics page).
pub async fn refresh_gauges(app: &App) -> Result<()> {
    let now = app.clock.now();
    for org in app.store.quota_orgs().await? {
        let accounts = app.store.quota_accounts(&org, None, false).await?;
        let views = figures_of(&app.store, &org, accounts, now).await?;
        publish_gauges(app, &views);
    }
    Ok(())
}

/// The account of `provider` the ladder should call next for `org`, keeping
/// `session` on its previous account while that one is usable. Returns the
/// account (never its secret: resolve `secret_ref` with `quota::secret`) and the
/// ranking, or None when no account of the provider is usable.
pub async fn choose_account(
    app: &App,
    org: &str,
    provider: &str,
    session: Option<&str>,
    exclude: &[String],
) -> Result<Option<(Account, Choice)>> {
    let now = app.clock.now();
    let mut candidates = match app.quota_candidates.get(org, provider) {
        Some(c) => c,
        None => {
            let c = candidates_of(app, org, provider, now).await?;
            app.quota_candidates.put(org, provider, c.clone());
            c
        }
    };
    candidates.retain(|c| !exclude.contains(&c.account.id));
    let prev = session.and_then(|s| app.quota_sessions.get(org, provider, s));
    let Some(choice) = choose(&candidates, now, prev.as_deref()) else {
        return Ok(None);
    };
    if let Some(s) = session {
        app.quota_sessions.set(org, provider, s, &choice.account_id);
    }
    // Until the cache is rebuilt, the chosen account counts as just used, so
    // concurrent runs spread over the accounts instead of piling onto one.
    app.quota_candidates
        .touch(org, provider, &choice.account_id, &fmt_time(now));
    let account = candidates
        .into_iter()
        .map(|c| c.account)
        .find(|a| a.id == choice.account_id);
    Ok(account.map(|a| (a, choice)))
}

/// Rests an account until `until` (after an infra failure) and forgets the
/// org's cached figures, so the next choice sees it at once.
pub async fn cooldown(app: &App, org: &str, account: &str, until: &str) -> Result<()> {
    app.store.quota_cooldown(org, account, until).await?;
    app.quota_candidates.forget(org);
    Ok(())
}

/// Every live account of `provider` with its figures and recent health, read
/// from the store (sums over the account's usage records).
async fn candidates_of(
    app: &App,
    org: &str,
    provider: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Candidate>> {
    let accounts = app.store.quota_accounts(org, Some(provider), false).await?;
    if accounts.is_empty() {
        return Ok(vec![]);
    }
    let health = app
        .store
        .quota_health(
            org,
            accounts.iter().map(|a| a.id.clone()).collect(),
            &fmt_time(now - HEALTH_SPAN),
        )
        .await?;
    let views = figures_of(&app.store, org, accounts, now).await?;
    Ok(views
        .into_iter()
        .filter_map(|v| {
            let h = health
                .get(&v.account.id)
                .copied()
                .unwrap_or(Health::default());
            v.figures.map(|f| Candidate {
                account: v.account,
                figures: f,
                health: h,
            })
        })
        .collect())
}

/// The ranking inputs of each (org, provider), kept for a short time: the
/// ladder chooses an account before every call, and rebuilding them sums the
/// accounts' usage records, which grows with history. A change to an org's
/// accounts (the quota tool, a cooldown) forgets that org's entries; within
/// the time to live, used figures may lag by the calls made meanwhile.
pub struct CandidateCache {
    ttl: std::time::Duration,
    map: std::sync::Mutex<std::collections::HashMap<OrgProvider, Cached>>,
}

/// (org, provider).
type OrgProvider = (String, String);
/// When the candidates were read, and the candidates.
type Cached = (std::time::Instant, Vec<Candidate>);

impl CandidateCache {
    pub fn new(ttl: std::time::Duration) -> CandidateCache {
        CandidateCache {
            ttl,
            map: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn get(&self, org: &str, provider: &str) -> Option<Vec<Candidate>> {
        let map = self.map.lock().ok()?;
        let (at, c) = map.get(&(org.to_string(), provider.to_string()))?;
        (at.elapsed() < self.ttl).then(|| c.clone())
    }

    fn put(&self, org: &str, provider: &str, c: Vec<Candidate>) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut map) = self.map.lock() {
            map.retain(|_, (at, _)| at.elapsed() < self.ttl);
            map.insert(
                (org.to_string(), provider.to_string()),
                (std::time::Instant::now(), c),
            );
        }
    }

    fn touch(&self, org: &str, provider: &str, account: &str, at: &str) {
        if let Ok(mut map) = self.map.lock()
            && let Some((_, c)) = map.get_mut(&(org.to_string(), provider.to_string()))
            && let Some(c) = c.iter_mut().find(|c| c.account.id == account)
        {
            c.account.last_used_at = Some(at.to_string());
        }
    }

    /// Forgets every entry of `org` (its accounts changed).
    pub fn forget(&self, org: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.retain(|(o, _), _| o != org);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::{BillingMode, LimitKind, Window};
    use crate::store::{AuditEntry, NewAccount};
    use crate::tools::test_app;

    #[tokio::test]
    async fn the_ladder_gets_a_usable_account_and_keeps_its_session_on_it() {
        let (app, _d) = test_app();
        app.store
            .ensure_org("acme", "2026-01-01T00:00:00.000Z")
            .await
            .unwrap();
        let now = app.clock.now_text();
        for (id, name) in [("a1", "one"), ("a2", "two")] {
            app.store
                .quota_account_add(
                    "acme",
                    NewAccount {
                        id: id.into(),
                        provider: "anthropic".into(),
                        name: name.into(),
                        billing_mode: BillingMode::Seat,
                        secret_ref: "env:K".into(),
                        limit_kind: LimitKind::Requests,
                        limit: 10,
                        window: Window::Rolling { minutes: 300 },
                        token_expires_at: None,
                        refresh_at: None,
                    },
                    &now,
                    AuditEntry {
                        org_id: "acme".into(),
                        id: app.ids.next(),
                        actor: "t".into(),
                        action: "quota.account.add".into(),
                        subject: None,
                        detail: None,
                        created_at: now.clone(),
                    },
                )
                .await
                .unwrap();
        }
        assert!(
            choose_account(&app, "acme", "openai", None, &[])
                .await
                .unwrap()
                .is_none()
        );
        let (a, c) = choose_account(&app, "acme", "anthropic", Some("s1"), &[])
            .await
            .unwrap()
            .unwrap();
        assert_eq!((a.id.as_str(), c.sticky), ("a1", false));
        // a1 was just used: the next session gets a2 (least recently used) …
        app.store.quota_touch("acme", "a1", &now).await.unwrap();
        let (b, _) = choose_account(&app, "acme", "anthropic", Some("s2"), &[])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.id, "a2");
        // … while s1 stays on a1, until a1 cools down.
        let (again, c) = choose_account(&app, "acme", "anthropic", Some("s1"), &[])
            .await
            .unwrap()
            .unwrap();
        assert_eq!((again.id.as_str(), c.sticky), ("a1", true));
        let later = fmt_time(app.clock.now() + Duration::minutes(5));
        cooldown(&app, "acme", "a1", &later).await.unwrap();
        let (moved, c) = choose_account(&app, "acme", "anthropic", Some("s1"), &[])
            .await
            .unwrap()
            .unwrap();
        assert_eq!((moved.id.as_str(), c.sticky), ("a2", false));
        assert_eq!(c.ranking.skipped.len(), 1);
        // Another org sees none of it.
        assert!(
            choose_account(&app, "other", "anthropic", None, &[])
                .await
                .unwrap()
                .is_none()
        );
    }
}
