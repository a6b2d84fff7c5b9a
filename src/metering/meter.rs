//! The metering API: the one way the rest of the server (the ladder, priced
//! tools, client-reported stages, the `billing` tool, the benchmark) records
//! calls, reserves and settles spending, and counts run units.
//!
//! - `record` prices a call (provider-reported cost wins, else tokens × the price
//!   row in effect, else 0 and flagged) and stores it once, with its charge.
//! - `reserve` / `heartbeat` / `release` hold worst-case spending against every
//!   budget, the breaker and a prepaid balance; `record` with the reservation id
//!   settles it. Expired reservations are reclaimed by a leased background job.
//! - `count_run` counts a tool call in memory; a background task writes the
//!   counters in batches. Nothing here can fail a tool call (fail-open).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::alerts::Alerts;
use crate::clock::{Clock, Ids, fmt_time};
use crate::config::BillingConfig;
use crate::dispatch::Run;
use crate::error::{Error, Result};
use crate::metering::pricing::{Price, PriceBook, Usage, cost_nanos};
use crate::metering::usage::{
    BillingMode, Breaker, Call, CostSource, Reason, Receipt, day_end, hour_of, month_end,
};
use crate::metrics::{Metrics, OrgMetrics, OrgModelLabels, OrgToolLabels, OrgWindowLabels};
use crate::store::{
    BreakerFigures, Finish, NewAttempt, Reservation, ReserveInsert, Store, UsageInsert,
};

/// What a reservation is for.
#[derive(Debug, Clone)]
pub struct ReserveRequest {
    pub org: String,
    pub key_id: String,
    pub workflow_id: Option<String>,
    pub task_id: Option<String>,
    /// Who holds it (a run id), for the record.
    pub holder: String,
    /// Worst-case provider cost in nano-dollars.
    pub cost_nanos: i64,
    pub billing_mode: BillingMode,
}

// The breaker of one org, as the `billing breaker` action and health show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct BreakerState {
    /// `closed` (spending allowed), `open` (a halt is in force) or `reset` (an
    /// admin overrode today's or this month's halt).
    pub state: String,
    pub day_cost_nanos: i64,
    pub day_limit_nanos: i64,
    pub day_resets_at: String,
    pub month_cost_nanos: i64,
    pub month_alert_nanos: i64,
    pub month_halts: bool,
    pub month_resets_at: String,
    pub reserved_nanos: i64,
    pub task_alert_nanos: i64,
    pub task_halt_nanos: i64,
    pub reset_day: bool,
    pub reset_month: bool,
}

type RunKey = (String, String, String, String);

/// A call's provider cost, where it came from, and the price row behind it.
type Costing = (i64, CostSource, Option<(String, Price)>);

pub struct Meter {
    store: Store,
    clock: Clock,
    ids: Ids,
    book: PriceBook,
    /// Each row's id, computed once: (provider, model, effective_from) → id.
    price_ids: HashMap<(String, String, String), String>,
    /// Price rows known to be in the database already.
    synced: Mutex<HashSet<String>>,
    cfg: BillingConfig,
    metrics: OrgMetrics,
    usage_missing: prometheus_client::metrics::counter::Counter,
    runs_dropped: prometheus_client::metrics::counter::Counter,
    runs: Mutex<HashMap<RunKey, (u64, u64)>>,
    /// Alerts raised by this process (kind, subject, period), so the store is
    /// asked once; its unique index dedupes across processes and restarts.
    raised: Mutex<HashSet<(String, String, String)>>,
    alerts: Option<Arc<Alerts>>,
    /// Orgs (and tasks) that spent since the last alert check.
    dirty: Mutex<HashSet<(String, Option<String>)>>,
    /// This process, as a lease holder.
    holder: String,
}

/// A price row's id: derived from its content, so it is stable across restarts
/// and a changed price is a new row.
pub fn price_id(p: &Price) -> String {
    let canon = format!(
        "{}|{}|{}|{}|{}|{:?}|{:?}|{}",
        p.provider,
        p.model,
        p.effective_from,
        p.input,
        p.output,
        p.cache_read,
        p.cache_write,
        p.source
    );
    let digest = Sha256::digest(canon.as_bytes());
    format!("pr_{}", hex::encode(&digest[..8]))
}

/// Most distinct run-unit keys held in memory between flushes; past it new keys
/// are dropped (and counted) rather than growing without bound.
const MAX_RUN_KEYS: usize = 100_000;

impl Meter {
    /// The shipped price book with config rows on top.
    pub fn new(
        store: Store,
        clock: Clock,
        cfg: &BillingConfig,
        metrics: &Metrics,
    ) -> Result<Meter> {
        let mut book = PriceBook::shipped()?;
        let rows = cfg
            .prices
            .iter()
            .map(|p| Price {
                provider: p.provider.clone(),
                model: p.model.clone(),
                effective_from: p.effective_from.clone(),
                input: p.input_usd_per_mtok.0,
                output: p.output_usd_per_mtok.0,
                cache_read: p.cache_read_usd_per_mtok.map(|u| u.0),
                cache_write: p.cache_write_usd_per_mtok.map(|u| u.0),
                source: "config".into(),
            })
            .collect();
        book.extend(rows)?;
        let price_ids = book
            .rows()
            .iter()
            .map(|p| {
                (
                    (
                        p.provider.clone(),
                        p.model.clone(),
                        p.effective_from.clone(),
                    ),
                    price_id(p),
                )
            })
            .collect();
        let ids = Ids::new();
        let holder = format!("pid{}-{}", std::process::id(), ids.next());
        Ok(Meter {
            store,
            clock,
            ids,
            book,
            price_ids,
            synced: Mutex::new(HashSet::new()),
            cfg: cfg.clone(),
            metrics: metrics.org.clone(),
            usage_missing: metrics.usage_missing.clone(),
            runs_dropped: metrics.run_units_dropped.clone(),
            runs: Mutex::new(HashMap::new()),
            raised: Mutex::new(HashSet::new()),
            alerts: None,
            dirty: Mutex::new(HashSet::new()),
            holder,
        })
    }

    /// Sends the breaker's alerts through `alerts` (else they are only logged).
    pub fn with_alerts(mut self, alerts: Arc<Alerts>) -> Meter {
        self.alerts = Some(alerts);
        self
    }

    pub fn book(&self) -> &PriceBook {
        &self.book
    }

    pub fn breaker(&self) -> Breaker {
        let b = &self.cfg.breaker;
        Breaker {
            daily_halt: b.daily_halt_usd.0,
            monthly_alert: b.monthly_alert_usd.0,
            monthly_halt: b.monthly_halt,
            task_alert: b.task_alert_usd.0,
            task_halt: b.task_halt_usd.0,
        }
    }

    pub fn source_system(&self) -> &str {
        &self.cfg.source_system
    }

    /// The price in effect for a model now.
    pub fn price(&self, provider: &str, model: &str) -> Option<&Price> {
        self.book.lookup(provider, model, &self.clock.now_text())
    }

    /// Worst-case provider cost of a call: `input` tokens in, at most
    /// `max_output` out, all at list price. `None` when the model has no price
    /// (the caller then uses the rung's configured maximum cost per call).
    pub fn estimate(
        &self,
        provider: &str,
        model: &str,
        input: u64,
        max_output: u64,
    ) -> Option<i64> {
        let p = self.price(provider, model)?;
        cost_nanos(
            p,
            Usage {
                input,
                output: max_output,
                ..Usage::default()
            },
        )
        .ok()
    }

    /// Decides a call's provider cost and the price row behind it.
    fn cost(&self, call: &Call, at: &str) -> Result<Costing> {
        let check = |n: i64| crate::money::check_nanos("reported_cost", n);
        if call.reason == Reason::ToolCall {
            // A priced tool has no provider cost; its configured price is billed.
            return Ok((0, CostSource::Priced, None));
        }
        match call.billing_mode {
            BillingMode::Seat => return Ok((0, CostSource::Seat, None)),
            BillingMode::SelfReported => {
                return Ok((
                    check(call.reported_cost_nanos.unwrap_or(0))?,
                    CostSource::SelfReported,
                    None,
                ));
            }
            BillingMode::Metered => {}
        }
        if let Some(c) = call.reported_cost_nanos {
            // The provider's own figure wins; no price row was used.
            return Ok((check(c)?, CostSource::Provider, None));
        }
        let row = self.book.lookup(&call.provider, &call.model, at);
        match (call.usage, row) {
            (Some(u), Some(p)) => {
                let id = self
                    .price_ids
                    .get(&(
                        p.provider.clone(),
                        p.model.clone(),
                        p.effective_from.clone(),
                    ))
                    .cloned()
                    .unwrap_or_else(|| price_id(p));
                Ok((cost_nanos(p, u)?, CostSource::Priced, Some((id, p.clone()))))
            }
            (usage, _) => {
                self.usage_missing.inc();
                tracing::warn!(
                    org = %call.org,
                    provider = %call.provider,
                    model = %call.model,
                    reference = %call.source_reference,
                    reason = if usage.is_some() { "no price for this model" } else { "no usage or cost reported" },
                    "call recorded at provider cost 0 and flagged for review"
                );
                Ok((0, CostSource::Missing, None))
            }
        }
    }

    /// Records a call once, with its charge when billed, settling its
    /// reservation. Acknowledged means committed.
    pub async fn record(&self, call: Call) -> Result<Receipt> {
        self.record_at(call, None, None).await
    }

    /// `record`, with the ladder's attempt row (and, for an accepted answer,
    /// the run's end) written in the same transaction. Returns the run when it
    /// ended here.
    pub async fn record_attempt(
        &self,
        call: Call,
        attempt: NewAttempt,
        finish: Option<Finish>,
    ) -> Result<(Receipt, Option<Run>)> {
        let mut ended = None;
        let r = self
            .record_at(call, None, Some((attempt, finish, &mut ended)))
            .await?;
        Ok((r, ended))
    }

    async fn record_at(
        &self,
        call: Call,
        billed_override: Option<i64>,
        attempt: Option<(NewAttempt, Option<Finish>, &mut Option<Run>)>,
    ) -> Result<Receipt> {
        if call.source_system.trim().is_empty() || call.source_reference.trim().is_empty() {
            return Err(Error::invalid(
                "source_reference",
                "a call needs a source system and reference",
            ));
        }
        let now = self.clock.now_text();
        let (cost, source, price) = self.cost(&call, &now)?;
        let price_is_new = match &price {
            Some((id, _)) => !self.synced.lock().map(|s| s.contains(id)).unwrap_or(false),
            None => false,
        };
        let (org, model) = (
            call.org.clone(),
            format!("{}/{}", call.provider, call.model),
        );
        let task = call.task_id.clone();
        let insert = UsageInsert {
            id: self.ids.next(),
            ledger_id: self.ids.next(),
            call,
            cost_nanos: cost,
            cost_source: source,
            price,
            price_is_new,
            billed_override,
            now,
        };
        let receipt = match attempt {
            Some((a, finish, ended)) => {
                let (r, run) = self
                    .store
                    .record_with_attempt(&org, insert, a, finish)
                    .await?;
                *ended = run;
                r
            }
            None => self.store.record_usage(insert).await?,
        };
        if price_is_new
            && let Some(id) = &receipt.price_id
            && let Ok(mut synced) = self.synced.lock()
        {
            synced.insert(id.clone());
        }
        if receipt.created {
            let labels = OrgModelLabels {
                org: org.clone(),
                model,
            };
            self.metrics
                .cost_nanos
                .get_or_create(&labels)
                .inc_by(receipt.cost_nanos as u64);
            self.metrics
                .billed_nanos
                .get_or_create(&labels)
                .inc_by(receipt.billed_nanos as u64);
            if receipt.cost_nanos > 0
                && let Ok(mut d) = self.dirty.lock()
            {
                // Checked by the background loop, off the charge's path.
                d.insert((org, task));
            }
        }
        Ok(receipt)
    }

    /// Checks the breaker's alert thresholds for every org and task that spent
    /// since the last check (the background loop calls this a few times a
    /// second, so charges never wait for it).
    pub async fn check_alerts(&self) {
        let dirty: Vec<_> = match self.dirty.lock() {
            Ok(mut d) => d.drain().collect(),
            Err(_) => return,
        };
        for (org, task) in dirty {
            self.after_spend(&org, task.as_deref()).await;
        }
    }

    /// Raises the breaker's alerts once per period when spend crosses them and
    /// keeps the breaker gauge current. Failures are logged, never returned.
    async fn after_spend(&self, org: &str, task: Option<&str>) {
        let now = self.clock.now();
        let b = self.breaker();
        let Ok(f) = self.store.breaker_figures(org, now).await else {
            return;
        };
        self.set_gauges(org, &b, &f);
        if b.month_alerted(f.month_cost) {
            self.alert(
                org,
                "breaker.monthly",
                org,
                &crate::metering::usage::month_key(now),
                &format!(
                    "provider cost this month {} reached the monthly alert of {}",
                    crate::money::fmt_usd(f.month_cost),
                    crate::money::fmt_usd(b.monthly_alert)
                ),
            )
            .await;
        }
        if b.day_reached(f.day_cost) && !f.reset_day {
            self.alert(
                org,
                "breaker.daily",
                org,
                &crate::metering::usage::day_key(now),
                &format!(
                    "provider cost today {} reached the daily halt of {}: spending is refused until {}",
                    crate::money::fmt_usd(f.day_cost),
                    crate::money::fmt_usd(b.daily_halt),
                    fmt_time(day_end(now))
                ),
            ).await;
        }
        if let Some(t) = task
            && b.task_alert > 0
            && let Ok((cost, _)) = self.store.task_spend(org, t).await
            && cost >= b.task_alert
        {
            self.alert(
                org,
                if b.task_halt > 0 && cost >= b.task_halt {
                    "breaker.task_halt"
                } else {
                    "breaker.task"
                },
                t,
                t,
                &format!(
                    "task {t} has cost {} (alert at {}, halt at {})",
                    crate::money::fmt_usd(cost),
                    crate::money::fmt_usd(b.task_alert),
                    crate::money::fmt_usd(b.task_halt)
                ),
            )
            .await;
        }
    }

    /// Raises an alert once per (kind, subject, period).
    async fn alert(&self, org: &str, kind: &str, subject: &str, period: &str, message: &str) {
        let first = self
            .raised
            .lock()
            .map(|mut r| r.insert((kind.to_string(), subject.to_string(), period.to_string())))
            .unwrap_or(true);
        if !first {
            return;
        }
        match &self.alerts {
            Some(a) => {
                if let Err(e) = a.raise(org, kind, subject, period, message).await {
                    tracing::warn!(error = %e, kind, "could not record an alert");
                }
            }
            None => {
                tracing::warn!(target: "vaultline::alert", org, kind, subject, period, message, "alert")
            }
        }
    }

    fn set_gauges(&self, org: &str, b: &Breaker, f: &BreakerFigures) {
        let day = i64::from(b.day_reached(f.day_cost) && !f.reset_day);
        let month = i64::from(b.month_reached(f.month_cost) && !f.reset_month);
        for (window, v) in [("day", day), ("month", month)] {
            self.metrics
                .breaker_open
                .get_or_create(&OrgWindowLabels {
                    org: org.to_string(),
                    window,
                })
                .set(v);
        }
    }

    /// The org's breaker now.
    pub async fn breaker_state(&self, org: &str) -> Result<BreakerState> {
        let now = self.clock.now();
        let b = self.breaker();
        let f = self.store.breaker_figures(org, now).await?;
        self.set_gauges(org, &b, &f);
        let day_open = b.day_reached(f.day_cost);
        let month_open = b.month_reached(f.month_cost);
        let state = if (day_open && !f.reset_day) || (month_open && !f.reset_month) {
            "open"
        } else if (day_open && f.reset_day) || (month_open && f.reset_month) {
            "reset"
        } else {
            "closed"
        };
        Ok(BreakerState {
            state: state.into(),
            day_cost_nanos: f.day_cost,
            day_limit_nanos: b.daily_halt,
            day_resets_at: fmt_time(day_end(now)),
            month_cost_nanos: f.month_cost,
            month_alert_nanos: b.monthly_alert,
            month_halts: b.monthly_halt,
            month_resets_at: fmt_time(month_end(now)),
            reserved_nanos: f.reserved_cost,
            task_alert_nanos: b.task_alert,
            task_halt_nanos: b.task_halt,
            reset_day: f.reset_day,
            reset_month: f.reset_month,
        })
    }

    /// Reserves a worst-case cost, or refuses naming the limit.
    pub async fn reserve(&self, r: ReserveRequest) -> Result<Reservation> {
        crate::money::check_nanos("cost_nanos", r.cost_nanos)?;
        let now = self.clock.now();
        let expires = now + chrono::Duration::seconds(self.cfg.reservation_ttl_secs as i64);
        let billable = r.billing_mode == BillingMode::Metered;
        let cost = if r.billing_mode == BillingMode::Seat {
            0
        } else {
            r.cost_nanos
        };
        self.store
            .reserve(
                &r.org,
                ReserveInsert {
                    id: self.ids.next(),
                    key_id: r.key_id,
                    workflow_id: r.workflow_id,
                    task_id: r.task_id,
                    holder: r.holder,
                    cost_nanos: cost,
                    billable,
                    breaker: self.breaker(),
                    now,
                    expires_at: fmt_time(expires),
                },
            )
            .await
    }

    /// Keeps a reservation alive while its holder runs.
    pub async fn heartbeat(&self, org: &str, id: &str) -> Result<()> {
        let now = self.clock.now();
        let expires = now + chrono::Duration::seconds(self.cfg.reservation_ttl_secs as i64);
        self.store
            .reservation_heartbeat(org, id, fmt_time(expires), fmt_time(now))
            .await
    }

    /// Gives a reservation back without a call.
    pub async fn release(&self, org: &str, id: &str) -> Result<bool> {
        self.store
            .reservation_release(org, id, self.clock.now_text())
            .await
    }

    /// Reclaims reservations whose holder stopped heartbeating.
    pub async fn expire(&self) -> Result<usize> {
        self.store.reservations_expire(self.clock.now_text()).await
    }

    /// The price config gives a tool per call, if any.
    pub fn tool_price(&self, tool: &str) -> Option<i64> {
        self.cfg
            .tool_prices_usd
            .get(tool)
            .map(|u| u.0)
            .filter(|n| *n > 0)
    }

    /// Bills a call of a priced tool (the configured price is the billed price;
    /// there is no provider cost). `None` when the tool is not priced.
    pub async fn charge_tool(
        &self,
        org: &str,
        key_id: &str,
        tool: &str,
    ) -> Result<Option<Receipt>> {
        let Some(price) = self.tool_price(tool) else {
            return Ok(None);
        };
        let call = Call {
            org: org.into(),
            key_id: key_id.into(),
            workflow_id: None,
            task_id: None,
            stage_id: None,
            reason: Reason::ToolCall,
            tool: Some(tool.into()),
            provider: "vaultline".into(),
            model: format!("tool:{tool}"),
            account_id: None,
            billing_mode: BillingMode::Metered,
            usage: None,
            reported_cost_nanos: Some(0),
            latency_ms: 0,
            outcome: "ok".into(),
            source_system: self.cfg.source_system.clone(),
            source_reference: format!("tool/{}", self.ids.next()),
            reservation_id: None,
        };
        self.record_at(call, Some(price), None).await.map(Some)
    }

    /// Counts one tool call (a run unit). Never fails; written in batches.
    pub fn count_run(&self, org: &str, key_id: &str, tool: &str, ok: bool) {
        self.metrics
            .run_units
            .get_or_create(&OrgToolLabels {
                org: org.into(),
                tool: tool.into(),
            })
            .inc();
        let hour = hour_of(&self.clock.now_text()).to_string();
        let Ok(mut runs) = self.runs.lock() else {
            return;
        };
        let key = (org.to_string(), hour, key_id.to_string(), tool.to_string());
        if runs.len() >= MAX_RUN_KEYS && !runs.contains_key(&key) {
            self.runs_dropped.inc();
            return;
        }
        let e = runs.entry(key).or_default();
        e.0 += 1;
        e.1 += u64::from(!ok);
    }

    /// Writes the counted run units. On failure they are dropped, counted and
    /// logged: metering never blocks or fails the tools.
    pub async fn flush_runs(&self) {
        let batch: Vec<_> = match self.runs.lock() {
            Ok(mut runs) => runs
                .drain()
                .map(|((o, h, k, t), (c, e))| (o, h, k, t, c, e))
                .collect(),
            Err(_) => return,
        };
        if batch.is_empty() {
            return;
        }
        let n: u64 = batch.iter().map(|r| r.4).sum();
        if let Err(e) = self.store.run_units_add(batch).await {
            self.runs_dropped.inc_by(n);
            tracing::warn!(error = %e, calls = n, "run units could not be written; dropped (fail-open)");
        }
    }

    /// Background work: flush run units, and (under a lease, so one process per
    /// database does it) expire reservations whose holder died.
    pub fn spawn(self: &Arc<Self>, ct: CancellationToken) {
        let m = self.clone();
        tokio::spawn(async move {
            let mut flush =
                tokio::time::interval(Duration::from_millis(m.cfg.run_unit_flush_ms.max(10)));
            let mut expiry = tokio::time::interval(Duration::from_secs(10));
            let mut alerts = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = ct.cancelled() => {
                        m.flush_runs().await;
                        return;
                    }
                    _ = flush.tick() => m.flush_runs().await,
                    _ = expiry.tick() => m.expire_leased().await,
                    _ = alerts.tick() => m.check_alerts().await,
                }
            }
        });
    }

    async fn expire_leased(&self) {
        let now = self.clock.now();
        let until = fmt_time(now + chrono::Duration::seconds(30));
        let now_text = fmt_time(now);
        // The run key is the time itself: every tick is a new period to run.
        match self
            .store
            .lease_acquire(
                "reservation-expiry",
                &self.holder,
                &now_text,
                &now_text,
                &until,
            )
            .await
        {
            Ok(true) => match self.expire().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "reclaimed reservations whose holder stopped"),
                Err(e) => tracing::warn!(error = %e, "reservation expiry failed"),
            },
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "reservation expiry lease failed"),
        }
    }
}

#[cfg(test)]
mod tests;
