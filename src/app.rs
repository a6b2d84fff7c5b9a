//! The application state shared by every transport and session: config, store,
//! clock, ids, key verification, rate limits, metrics, the tool registry, the
//! change feed that drives resource subscriptions, alerts, and which quota
//! account each ladder session used last.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::alerts::Alerts;
use crate::auth::{KeyVerifier, RateLimiter};
use crate::checkpoints::Redactor;
use crate::clock::{Clock, Ids};
use crate::config::{Config, Profile};
use crate::dispatch::engine::Dispatcher;
use crate::error::{Error, Result};
use crate::metering::meter::Meter;
use crate::metrics::Metrics;
use crate::quota::choose::Sticky;
use crate::store::Store;
use crate::tools::Registry;

/// Something that changed, for resource subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Workflow {
        org: String,
        id: String,
    },
    Checkpoint {
        org: String,
        id: String,
    },
    /// The org's installed module tools changed (install, rollback, uninstall).
    Tools {
        org: String,
    },
}

pub struct App {
    pub config: Config,
    pub store: Store,
    pub clock: Clock,
    pub ids: Ids,
    pub keys: KeyVerifier,
    pub limiter: RateLimiter,
    pub metrics: Metrics,
    /// Usage records, charges, reservations and run units.
    pub meter: Arc<Meter>,
    pub registry: Registry,
    pub redactor: Redactor,
    pub changes: broadcast::Sender<Change>,
    /// Alerts: once per (org, kind, subject, period), logged and sent to the webhook.
    pub alerts: Arc<Alerts>,
    /// Which quota account each ladder session used last.
    pub quota_sessions: Sticky,
    /// Quota accounts' ranking inputs per (org, provider), briefly reused.
    pub quota_candidates: crate::quota::service::CandidateCache,
    /// The dispatch ladder and the runs in flight in this process.
    pub dispatch: Dispatcher,
    /// Installed modules' tools per org, and the HTTP client they call through.
    pub modules: crate::modules::runtime::Catalog,
    pub started: Instant,
    /// Live MCP sessions, kept current by the HTTP transport.
    pub sessions: AtomicUsize,
    /// Did the last store probe answer? Kept current by `spawn_probe`.
    pub store_ok: AtomicBool,
    /// The last good backup's time, for `health status`.
    pub last_backup: crate::backup::LastBackup,
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

impl App {
    /// Opens the store (applying migrations) and builds the shared state.
    pub fn new(config: Config) -> Result<Arc<App>> {
        let clock = match (&config.test_clock, config.profile) {
            (Some(t), Profile::Test) => Clock::Fixed(
                crate::clock::parse_time(t)
                    .ok_or_else(|| Error::invalid("test_clock", "is not an RFC 3339 time"))?,
            ),
            _ => Clock::System,
        };
        let store = Store::open(&config.db_path, config.db_synchronous)?;
        let keys = KeyVerifier::new(
            store.clone(),
            clock.clone(),
            Duration::from_millis(config.auth.cache_ttl_ms),
        );
        let limiter = RateLimiter::new(
            config.http.rate_limit_per_second,
            config.http.rate_limit_burst,
        );
        let registry = Registry::new(&config.tools);
        let redactor = Redactor::new(&config.checkpoints.redact_patterns)?;
        let (changes, _) = broadcast::channel(1024);
        let metrics = Metrics::new();
        let alerts = Arc::new(Alerts::new(store.clone(), clock.clone(), &config.alerts));
        let meter = Arc::new(
            Meter::new(store.clone(), clock.clone(), &config.billing, &metrics)?
                .with_alerts(alerts.clone()),
        );
        let ladder = crate::dispatch::Ladder::from_config(&config.execute, &meter)
            .map_err(|e| Error::invalid("execute", e))?;
        let ids = Ids::new();
        let dispatch = Dispatcher::new(ladder, format!("{}:{}", std::process::id(), ids.next()))?;
        let modules = crate::modules::runtime::Catalog::new(&config);
        Ok(Arc::new(App {
            modules,
            dispatch,
            alerts,
            quota_sessions: Sticky::default(),
            quota_candidates: crate::quota::service::CandidateCache::new(Duration::from_millis(
                config.quota.candidate_cache_ms,
            )),
            metrics,
            meter,
            config,
            store,
            clock,
            ids,
            keys,
            limiter,
            registry,
            redactor,
            changes,
            started: Instant::now(),
            sessions: AtomicUsize::new(0),
            store_ok: AtomicBool::new(true),
            last_backup: crate::backup::LastBackup::default(),
        }))
    }

    pub fn publish(&self, change: Change) {
        // No receiver means no subscriber: nothing to do.
        let _ = self.changes.send(change);
    }

    /// Probes the store every few seconds so `health status` can report it
    /// without touching the disk on the request path.
    pub fn spawn_probe(self: &Arc<Self>, ct: tokio_util::sync::CancellationToken) {
        let app = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = ct.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let ok = tokio::time::timeout(Duration::from_secs(2), app.store.ping())
                    .await
                    .is_ok_and(|r| r.is_ok());
                if !ok {
                    tracing::warn!("store probe failed");
                }
                app.store_ok.store(ok, Ordering::Relaxed);
            }
        });
    }

    pub fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }
}
