//! Alerts: raised once per (org, kind, subject, period) — the `alerts` table's
//! unique index decides — then written as a structured `tracing` event (target
//! `vaultline::alert`) and, when `alerts.webhook_url` is set, POSTed as JSON by
//! a background task with bounded retries and exponential backoff.
//!
//! `raise` never waits for the webhook: the caller hears back once the alert row
//! is committed. An alert carries what the caller wrote in its message and the
//! ids it names, never a secret: callers build messages from account names,
//! figures and limits only.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::clock::{Clock, Ids};
use crate::config::AlertsConfig;
use crate::error::Result;
use crate::store::{AlertRecord, Store};

/// The longest a webhook delivery may take, per attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Backoff before the first retry; it doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The JSON body POSTed to the webhook.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AlertEvent {
    pub source: &'static str,
    pub id: String,
    pub org: String,
    pub kind: String,
    pub subject: String,
    pub period_key: String,
    pub message: String,
    pub raised_at: String,
}

/// The alert handle shared through `App`.
pub struct Alerts {
    store: Store,
    clock: Clock,
    ids: Ids,
    webhook: Option<Webhook>,
    pending: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct Webhook {
    url: String,
    retries: u32,
    client: reqwest::Client,
    first_backoff: Duration,
}

impl Alerts {
    pub fn new(store: Store, clock: Clock, cfg: &AlertsConfig) -> Alerts {
        let webhook = cfg.webhook_url.as_ref().and_then(|url| {
            match reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).build() {
                Ok(client) => Some(Webhook {
                    url: url.clone(),
                    retries: cfg.webhook_retries,
                    client,
                    first_backoff: FIRST_BACKOFF,
                }),
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the alert webhook client; alerts go to the log only");
                    None
                }
            }
        });
        Alerts {
            store,
            clock,
            ids: Ids::new(),
            webhook,
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Raises an alert once per (org, kind, subject, period_key). Returns true
    /// when this call raised it (and logged it and queued the webhook); false
    /// when it had been raised before.
    pub async fn raise(
        &self,
        org: &str,
        kind: &str,
        subject: &str,
        period_key: &str,
        message: &str,
    ) -> Result<bool> {
        let event = AlertEvent {
            source: "vaultline",
            id: self.ids.next(),
            org: org.to_string(),
            kind: kind.to_string(),
            subject: subject.to_string(),
            period_key: period_key.to_string(),
            message: message.to_string(),
            raised_at: self.clock.now_text(),
        };
        let raised = self
            .store
            .alert_insert(AlertRecord {
                org_id: event.org.clone(),
                id: event.id.clone(),
                kind: event.kind.clone(),
                subject: event.subject.clone(),
                period_key: event.period_key.clone(),
                message: event.message.clone(),
                created_at: event.raised_at.clone(),
            })
            .await?;
        if !raised {
            return Ok(false);
        }
        tracing::warn!(
            target: "vaultline::alert",
            alert_id = %event.id,
            org = %event.org,
            kind = %event.kind,
            subject = %event.subject,
            period_key = %event.period_key,
            message = %event.message,
            "alert"
        );
        if let Some(w) = &self.webhook {
            self.pending.fetch_add(1, Ordering::SeqCst);
            let (w, pending) = (w.clone(), self.pending.clone());
            tokio::spawn(async move {
                w.deliver(&event).await;
                pending.fetch_sub(1, Ordering::SeqCst);
            });
        }
        Ok(true)
    }

    /// Waits up to `timeout` for queued webhook deliveries (a CLI run does this
    /// before it exits). Returns how many were still pending.
    pub async fn flush(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let n = self.pending.load(Ordering::SeqCst);
            if n == 0 || tokio::time::Instant::now() >= deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Webhook {
    /// POSTs the event; retries connection errors, 429 and 5xx with backoff.
    async fn deliver(&self, event: &AlertEvent) {
        let mut backoff = self.first_backoff;
        for attempt in 0..=self.retries {
            let outcome = self.client.post(&self.url).json(event).send().await;
            let retry = match outcome {
                Ok(r) if r.status().is_success() => {
                    tracing::debug!(alert_id = %event.id, attempt, "alert webhook delivered");
                    return;
                }
                Ok(r) => {
                    let s = r.status();
                    tracing::warn!(alert_id = %event.id, attempt, status = s.as_u16(), "alert webhook refused");
                    s.is_server_error() || s == reqwest::StatusCode::TOO_MANY_REQUESTS
                }
                Err(e) => {
                    // The URL may carry a token in its query: log the error kind only.
                    let what = if e.is_timeout() {
                        "timeout"
                    } else if e.is_connect() {
                        "connect"
                    } else {
                        "request"
                    };
                    tracing::warn!(alert_id = %event.id, attempt, error = what, "alert webhook failed");
                    true
                }
            };
            if !retry || attempt == self.retries {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        tracing::error!(alert_id = %event.id, kind = %event.kind, "alert webhook gave up; the alert is in the log and the alerts table");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Synchronous;
    use std::sync::Mutex;

    /// A local webhook receiver that answers 500 to the first `fail` requests.
    async fn receiver(fail: usize) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(AtomicUsize::new(0));
        let (g, s) = (got.clone(), seen.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
                let (g, s) = (g.clone(), s.clone());
                async move {
                    if s.fetch_add(1, Ordering::SeqCst) < fail {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    g.lock().unwrap().push(v);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}/hook"), got)
    }

    fn alerts(dir: &std::path::Path, url: Option<String>, retries: u32) -> Alerts {
        let store = Store::open(&dir.join("a.db"), Synchronous::Normal).unwrap();
        let mut a = Alerts::new(
            store,
            Clock::Fixed(crate::clock::parse_time("2026-11-24T02:00:00Z").unwrap()),
            &AlertsConfig {
                webhook_url: url,
                webhook_retries: retries,
            },
        );
        if let Some(w) = &mut a.webhook {
            w.first_backoff = Duration::from_millis(10);
        }
        a
    }

    #[tokio::test]
    async fn raised_once_and_delivered_with_retries() {
        let dir = tempfile::tempdir().unwrap();
        let (url, got) = receiver(2).await;
        let a = alerts(dir.path(), Some(url), 3);
        assert!(
            a.raise("acme", "quota_warning", "acct1", "2026-11-24", "at 81 %")
                .await
                .unwrap()
        );
        assert!(
            !a.raise("acme", "quota_warning", "acct1", "2026-11-24", "at 85 %")
                .await
                .unwrap()
        );
        assert_eq!(a.flush(Duration::from_secs(10)).await, 0);
        let got = got.lock().unwrap().clone();
        assert_eq!(got.len(), 1, "two 500s, then delivered once: {got:?}");
        assert_eq!(got[0]["kind"], "quota_warning");
        assert_eq!(got[0]["org"], "acme");
        assert_eq!(got[0]["message"], "at 81 %");
        assert_eq!(got[0]["raised_at"], "2026-11-24T02:00:00.000Z");
    }

    #[tokio::test]
    async fn gives_up_after_bounded_retries_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let (url, got) = receiver(usize::MAX).await;
        let a = alerts(dir.path(), Some(url), 2);
        let t = std::time::Instant::now();
        assert!(
            a.raise("acme", "audit_failed", "quota-audit", "2026-11-24", "x")
                .await
                .unwrap()
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "raise does not wait for the webhook"
        );
        assert_eq!(a.flush(Duration::from_secs(10)).await, 0);
        assert!(got.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn without_a_webhook_alerts_are_stored_and_logged() {
        let dir = tempfile::tempdir().unwrap();
        let a = alerts(dir.path(), None, 0);
        assert!(a.raise("acme", "k", "s", "p", "m").await.unwrap());
        assert_eq!(a.store.alerts_list("acme", 10).await.unwrap().len(), 1);
        assert_eq!(a.flush(Duration::from_millis(1)).await, 0);
    }
}
