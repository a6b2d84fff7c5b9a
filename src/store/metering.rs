//! Store verbs for metering: usage records (with their hourly rollup and their
//! charge, in one transaction), reservations checked against every limit inside
//! the writer (so concurrent reservations are serialised and cannot overspend
//! together), budgets, breaker resets, receipts, run units and the usage query.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::Store;
use super::keys::{AuditEntry, insert_audit};
use crate::error::{Error, Result};
use crate::metering::pricing::{Price, billed_nanos};
use crate::metering::usage::{
    Ask, Breaker, Call, CostSource, Figures, Period, Receipt, Scope, Snapshot, check, day_key,
    hour_of, month_key,
};

/// A call with its cost decided by the meter.
pub struct UsageInsert {
    pub id: String,
    pub ledger_id: String,
    pub call: Call,
    pub cost_nanos: i64,
    pub cost_source: CostSource,
    /// The price row used, with its id (written once, then referenced).
    pub price: Option<(String, Price)>,
    pub price_is_new: bool,
    /// The billed price when it is set, not derived (a priced tool call).
    pub billed_override: Option<i64>,
    pub now: String,
}

/// A reservation to make.
pub struct ReserveInsert {
    pub id: String,
    pub key_id: String,
    pub workflow_id: Option<String>,
    pub task_id: Option<String>,
    pub holder: String,
    /// Worst-case provider cost.
    pub cost_nanos: i64,
    /// Whether the call would be billed (metered) or not (seat).
    pub billable: bool,
    pub breaker: Breaker,
    pub now: DateTime<Utc>,
    pub expires_at: String,
}

// A stored reservation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Reservation {
    pub id: String,
    pub cost_nanos: i64,
    pub billed_nanos: i64,
    pub state: String,
    pub expires_at: String,
}

/// One row of the hourly rollup (or of run units, for the tool dimension).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HourRow {
    pub hour: String,
    pub value: String,
    pub calls: i64,
    pub errors: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub tokens_cached: i64,
    pub cost_nanos: i64,
    pub billed_nanos: i64,
}

// A billed call: its ledger charge joined with the usage record it bills.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct ChargeReceipt {
    pub id: String,
    pub created_at: String,
    pub reason: String,
    pub source_system: String,
    pub source_reference: String,
    pub usage_id: String,
    pub billed_nanos: i64,
    pub cost_nanos: i64,
    pub provider: String,
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    pub key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub tokens_in: i64,
    pub tokens_out: i64,
}

// A budget row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Budget {
    pub scope: Scope,
    /// `""` for the org scope; the key or task id otherwise.
    pub scope_id: String,
    pub period: Period,
    pub limit_nanos: i64,
    pub updated_by: String,
    pub updated_at: String,
}

/// The breaker's counters of one org at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BreakerFigures {
    pub day_cost: i64,
    pub month_cost: i64,
    pub reserved_cost: i64,
    pub reset_day: bool,
    pub reset_month: bool,
}

fn markup(c: &Connection, org: &str) -> Result<u32> {
    let m: Option<i64> = c
        .prepare_cached("SELECT markup_bp FROM billing_accounts WHERE org_id = ?1")?
        .query_row([org], |r| r.get(0))
        .optional()?;
    Ok(m.and_then(|m| u32::try_from(m).ok())
        .unwrap_or(crate::metering::pricing::DEFAULT_MARKUP_BP))
}

/// Sum of the rollup over the hours that start with `prefix` (a day or month key).
fn rollup_sum(
    c: &Connection,
    org: &str,
    dim: &str,
    value: Option<&str>,
    prefix: &str,
) -> Result<(i64, i64)> {
    Ok(c.prepare_cached(
        "SELECT coalesce(sum(cost_nanos), 0), coalesce(sum(billed_nanos), 0) FROM usage_hourly
         WHERE org_id = ?1 AND dim = ?2 AND hour >= ?3 AND hour < ?3 || '~' AND (?4 IS NULL OR value = ?4)",
    )?
    .query_row(params![org, dim, prefix, value], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// Adds a record to the hourly rollup of each of its dimensions, in one statement.
fn bump(
    c: &Connection,
    org: &str,
    hour: &str,
    dims: &[(&str, &str)],
    u: &UsageInsert,
    billed: i64,
) -> Result<()> {
    let t = u.call.usage.unwrap_or_default();
    let rows = vec!["(?, ?, ?, ?, 1, ?, ?, ?, ?, ?)"; dims.len()].join(", ");
    let mut st = c.prepare_cached(&format!(
        "INSERT INTO usage_hourly (org_id, dim, hour, value, calls, tokens_in, tokens_out, tokens_cached, cost_nanos, billed_nanos)
         VALUES {rows}
         ON CONFLICT DO UPDATE SET calls = calls + 1, tokens_in = tokens_in + excluded.tokens_in,
           tokens_out = tokens_out + excluded.tokens_out, tokens_cached = tokens_cached + excluded.tokens_cached,
           cost_nanos = cost_nanos + excluded.cost_nanos, billed_nanos = billed_nanos + excluded.billed_nanos"
    ))?;
    let (tin, tout, tcached) = (
        tokens(t.input, "tokens_in")?,
        tokens(t.output, "tokens_out")?,
        tokens(t.cache_read + t.cache_write, "tokens_cached")?,
    );
    let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(dims.len() * 9);
    for (dim, value) in dims {
        params.extend_from_slice(&[
            &org,
            dim,
            &hour,
            value,
            &tin,
            &tout,
            &tcached,
            &u.cost_nanos,
            &billed,
        ]);
    }
    st.execute(params.as_slice())?;
    Ok(())
}

fn tokens(v: u64, field: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid(field, "is too large"))
}

/// The receipt of a call recorded before (a retry), or a conflict if the retry
/// differs from what was recorded.
fn replay(c: &Connection, u: &UsageInsert, charge_key: &str) -> Result<Receipt> {
    let call = &u.call;
    let org = call.org.as_str();
    let existing: Option<(String, i64, i64, String, Option<String>, String)> = c
        .prepare_cached(
            "SELECT id, cost_nanos, billed_nanos, cost_source, price_id, model FROM usage_records
             WHERE org_id = ?1 AND source_system = ?2 AND source_reference = ?3",
        )?
        .query_row(
            params![org, call.source_system, call.source_reference],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .optional()?;
    if let Some((id, cost, billed, source, price_id, model)) = existing {
        if cost != u.cost_nanos || model != call.model {
            return Err(Error::Conflict(format!(
                "call {}/{} was already recorded with another model or cost ({model}, {cost} nanos)",
                call.source_system, call.source_reference
            )));
        }
        let ledger_entry_id: Option<String> = c
            .prepare_cached(
                "SELECT id FROM credit_ledger WHERE org_id = ?1 AND idempotency_key = ?2",
            )?
            .query_row(params![org, charge_key], |r| r.get(0))
            .optional()?;
        return Ok(Receipt {
            usage_id: id,
            cost_nanos: cost,
            billed_nanos: billed,
            cost_source: source,
            price_id,
            ledger_entry_id,
            created: false,
        });
    }
    Err(Error::Internal("a recorded call vanished".into()))
}

pub(super) fn record(c: &Connection, u: &UsageInsert) -> Result<Receipt> {
    let call = &u.call;
    let org = call.org.as_str();
    let charge_key = format!("charge:{}:{}", call.source_system, call.source_reference);
    let billed = match (u.billed_override, call.billing_mode) {
        (Some(b), _) => b,
        (None, crate::metering::usage::BillingMode::Metered) => {
            billed_nanos(u.cost_nanos, markup(c, org)?)?
        }
        _ => 0,
    };
    if let Some((id, p)) = &u.price
        && u.price_is_new
    {
        c.prepare_cached(
            "INSERT OR IGNORE INTO price_rows (id, provider, model, effective_from, input_nanos_per_mtok, output_nanos_per_mtok,
               cache_read_nanos_per_mtok, cache_write_nanos_per_mtok, source) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
        )?
        .execute(params![id, p.provider, p.model, p.effective_from, p.input, p.output, p.cache_read, p.cache_write, p.source])?;
    }
    let t = call.usage.unwrap_or_default();
    let price_id = u.price.as_ref().map(|(id, _)| id.clone());
    let inserted = c.prepare_cached(
        "INSERT INTO usage_records (org_id, id, key_id, workflow_id, task_id, stage_id, reason, tool, provider, model, account_id,
           billing_mode, tokens_in, tokens_out, tokens_cache_read, tokens_cache_write, cost_nanos, billed_nanos, cost_source,
           price_id, latency_ms, outcome, source_system, source_reference, created_at)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25)
         ON CONFLICT (org_id, source_system, source_reference) DO NOTHING",
    )?
    .execute(params![
        org,
        u.id,
        call.key_id,
        call.workflow_id,
        call.task_id,
        call.stage_id,
        call.reason.as_str(),
        call.tool,
        call.provider,
        call.model,
        call.account_id,
        call.billing_mode.as_str(),
        tokens(t.input, "tokens_in")?,
        tokens(t.output, "tokens_out")?,
        tokens(t.cache_read, "tokens_cache_read")?,
        tokens(t.cache_write, "tokens_cache_write")?,
        u.cost_nanos,
        billed,
        u.cost_source.as_str(),
        price_id,
        i64::try_from(call.latency_ms).unwrap_or(i64::MAX),
        call.outcome,
        call.source_system,
        call.source_reference,
        u.now,
    ])?;
    if inserted == 0 {
        // Already recorded (a retry): answer with the first receipt, write nothing.
        return replay(c, u, &charge_key);
    }
    let model = format!("{}/{}", call.provider, call.model);
    let mut dims = vec![("model", model.as_str()), ("key", call.key_id.as_str())];
    if let Some(w) = &call.workflow_id {
        dims.push(("workflow", w));
    }
    if let Some(tool) = &call.tool {
        dims.push(("tool", tool));
    }
    bump(c, org, hour_of(&u.now), &dims, u, billed)?;
    let mut ledger_entry_id = None;
    if billed > 0 {
        let n = c
            .prepare_cached(
                "INSERT INTO credit_ledger (org_id, id, idempotency_key, kind, amount_nanos, reason, source_system,
                   source_reference, usage_id, actor, created_at)
                 VALUES (?1, ?2, ?3, 'charge', ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
            )?
            .execute(params![
                org,
                u.ledger_id,
                charge_key,
                -billed,
                call.reason.as_str(),
                call.source_system,
                call.source_reference,
                u.id,
                call.key_id,
                u.now
            ])?;
        if n == 0 {
            return Err(Error::Conflict(format!(
                "the ledger already holds a charge for {}/{}",
                call.source_system, call.source_reference
            )));
        }
        ledger_entry_id = Some(u.ledger_id.clone());
    }
    if let Some(a) = &call.account_id {
        // The quota account was just used (least recently used wins a tie).
        c.prepare_cached(
            "UPDATE quota_accounts SET last_used_at = ?3
             WHERE org_id = ?1 AND id = ?2 AND (last_used_at IS NULL OR last_used_at < ?3)",
        )?
        .execute(params![org, a, u.now])?;
    }
    if let Some(r) = &call.reservation_id {
        let n = c
            .prepare_cached(
                "UPDATE reservations SET state = 'settled', closed_at = ?3, usage_id = ?4
                 WHERE org_id = ?1 AND id = ?2 AND state IN ('open', 'expired')",
            )?
            .execute(params![org, r, u.now, u.id])?;
        if n == 0 {
            tracing::warn!(org, reservation = %r, "settled a call against a reservation that is not open");
        }
    }
    Ok(Receipt {
        usage_id: u.id.clone(),
        cost_nanos: u.cost_nanos,
        billed_nanos: billed,
        cost_source: u.cost_source.as_str().into(),
        price_id,
        ledger_entry_id,
        created: true,
    })
}

/// Provider cost and billed total of one task so far.
fn task_spent(c: &Connection, org: &str, task: &str) -> Result<(i64, i64)> {
    Ok(c.prepare_cached(
        "SELECT cost_nanos, billed_nanos FROM task_spend WHERE org_id = ?1 AND task_id = ?2",
    )?
    .query_row(params![org, task], |x| Ok((x.get(0)?, x.get(1)?)))
    .optional()?
    .unwrap_or((0, 0)))
}

/// Which admin breaker resets are in force: (this day, this month, this task).
fn resets(
    c: &Connection,
    org: &str,
    day: &str,
    month: &str,
    task: Option<&str>,
) -> Result<(bool, bool, bool)> {
    let mut reset = (false, false, false);
    let mut st = c.prepare_cached(
        "SELECT scope FROM breaker_resets WHERE org_id = ?1
           AND ((scope = 'day' AND period_key = ?2) OR (scope = 'month' AND period_key = ?3)
             OR (scope = 'task' AND ?4 IS NOT NULL AND period_key = ?4))",
    )?;
    for s in st.query_map(params![org, day, month, task], |x| x.get::<_, String>(0))? {
        match s?.as_str() {
            "day" => reset.0 = true,
            "month" => reset.1 = true,
            _ => reset.2 = true,
        }
    }
    Ok(reset)
}

fn snapshot(c: &Connection, org: &str, r: &ReserveInsert, now_text: &str) -> Result<Snapshot> {
    let (day, month) = (day_key(r.now), month_key(r.now));
    let (od_cost, od_billed) = rollup_sum(c, org, "model", None, &day)?;
    let (om_cost, om_billed) = rollup_sum(c, org, "model", None, &month)?;
    let (_, kd_billed) = rollup_sum(c, org, "key", Some(&r.key_id), &day)?;
    let (_, km_billed) = rollup_sum(c, org, "key", Some(&r.key_id), &month)?;
    let task = r.task_id.as_deref().unwrap_or("");
    let (t_cost, t_billed) = match &r.task_id {
        Some(t) => task_spent(c, org, t)?,
        None => (0, 0),
    };
    let (res_cost, res_billed, res_key_billed, res_task_cost, res_task_billed): (
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = c
        .prepare_cached(
            "SELECT coalesce(sum(cost_nanos), 0), coalesce(sum(billed_nanos), 0),
                    coalesce(sum(CASE WHEN key_id = ?2 THEN billed_nanos END), 0),
                    coalesce(sum(CASE WHEN task_id = ?3 THEN cost_nanos END), 0),
                    coalesce(sum(CASE WHEN task_id = ?3 THEN billed_nanos END), 0)
             FROM reservations WHERE org_id = ?1 AND state = 'open' AND expires_at > ?4",
        )?
        .query_row(params![org, r.key_id, task, now_text], |x| {
            Ok((x.get(0)?, x.get(1)?, x.get(2)?, x.get(3)?, x.get(4)?))
        })?;
    let mut budgets = Vec::new();
    {
        let mut st = c.prepare_cached(
            "SELECT scope, period, limit_nanos FROM budgets WHERE org_id = ?1
               AND ((scope = 'org' AND scope_id = '') OR (scope = 'key' AND scope_id = ?2) OR (scope = 'task' AND scope_id = ?3))",
        )?;
        let rows = st.query_map(params![org, r.key_id, task], |x| {
            Ok((
                x.get::<_, String>(0)?,
                x.get::<_, String>(1)?,
                x.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (scope, period, limit) = row?;
            if let (Some(s), Some(p)) = (parse_scope(&scope), parse_period(&period)) {
                budgets.push((s, p, limit));
            }
        }
    }
    let reset = resets(c, org, &day, &month, r.task_id.as_deref())?;
    let prepaid: bool = c
        .prepare_cached("SELECT mode = 'prepaid' FROM billing_accounts WHERE org_id = ?1")?
        .query_row([org], |x| x.get(0))
        .optional()?
        .unwrap_or(false);
    let balance: i64 = c
        .prepare_cached("SELECT balance_nanos FROM ledger_balances WHERE org_id = ?1")?
        .query_row([org], |x| x.get(0))
        .optional()?
        .unwrap_or(0);
    let f = |spent, reserved| Figures { spent, reserved };
    Ok(Snapshot {
        org_day_cost: f(od_cost, res_cost),
        org_month_cost: f(om_cost, res_cost),
        task_cost: f(t_cost, res_task_cost),
        org_day_billed: f(od_billed, res_billed),
        org_month_billed: f(om_billed, res_billed),
        key_day_billed: f(kd_billed, res_key_billed),
        key_month_billed: f(km_billed, res_key_billed),
        task_billed: f(t_billed, res_task_billed),
        budgets,
        reset_day: reset.0,
        reset_month: reset.1,
        reset_task: reset.2,
        prepaid,
        balance,
        open_billed: res_billed,
    })
}

pub fn parse_scope(s: &str) -> Option<Scope> {
    [Scope::Org, Scope::Key, Scope::Task]
        .into_iter()
        .find(|x| x.as_str() == s)
}

pub fn parse_period(s: &str) -> Option<Period> {
    [Period::Day, Period::Month, Period::Total]
        .into_iter()
        .find(|x| x.as_str() == s)
}

impl Store {
    /// Records a call once (by its source system and reference), with its rollup,
    /// its charge when billed, and the settlement of its reservation, in one
    /// transaction. A retry returns the first receipt with `created: false`.
    pub async fn record_usage(&self, u: UsageInsert) -> Result<Receipt> {
        self.write(move |c| record(c, &u)).await
    }

    /// Reserves a worst-case cost if it fits every limit; refuses with
    /// `Error::Limit` naming the limit otherwise. Runs on the writer thread, so
    /// no other write (reservation or charge) interleaves with the check.
    pub async fn reserve(&self, org: &str, r: ReserveInsert) -> Result<Reservation> {
        let o = org.to_string();
        self.write(move |c| {
            let now = crate::clock::fmt_time(r.now);
            let billed = if r.billable { billed_nanos(r.cost_nanos, markup(c, &o)?)? } else { 0 };
            let snap = snapshot(c, &o, &r, &now)?;
            let ask = Ask {
                cost: r.cost_nanos,
                billed,
                has_task: r.task_id.is_some(),
            };
            check(&snap, &r.breaker, ask, r.now).map_err(Error::Limit)?;
            c.prepare_cached(
                "INSERT INTO reservations (org_id, id, key_id, workflow_id, task_id, holder, cost_nanos, billed_nanos, state, created_at, expires_at)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,'open',?9,?10)",
            )?
            .execute(params![o, r.id, r.key_id, r.workflow_id, r.task_id, r.holder, r.cost_nanos, billed, now, r.expires_at])?;
            Ok(Reservation {
                id: r.id,
                cost_nanos: r.cost_nanos,
                billed_nanos: billed,
                state: "open".into(),
                expires_at: r.expires_at,
            })
        })
        .await
    }

    /// Extends an open reservation's life; an expired or closed one is an error.
    pub async fn reservation_heartbeat(
        &self,
        org: &str,
        id: &str,
        expires_at: String,
        now: String,
    ) -> Result<()> {
        let (o, i) = (org.to_string(), id.to_string());
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE reservations SET expires_at = ?3 WHERE org_id = ?1 AND id = ?2 AND state = 'open' AND expires_at > ?4",
                )?
                .execute(params![o, i, expires_at, now])?;
            if n == 0 {
                return Err(Error::Conflict(format!("reservation {i:?} is not open (settled, released or expired)")));
            }
            Ok(())
        })
        .await
    }

    /// Releases an open reservation without a call (nothing was spent).
    pub async fn reservation_release(&self, org: &str, id: &str, now: String) -> Result<bool> {
        let (o, i) = (org.to_string(), id.to_string());
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE reservations SET state = 'released', closed_at = ?3 WHERE org_id = ?1 AND id = ?2 AND state = 'open'",
            )?
            .execute(params![o, i, now])?
                > 0)
        })
        .await
    }

    /// Expires every open reservation past its time, in every org (the
    /// scheduled reclaim of reservations whose holder died). Returns how many.
    pub async fn reservations_expire(&self, now: String) -> Result<usize> {
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE reservations SET state = 'expired', closed_at = ?1 WHERE state = 'open' AND expires_at <= ?1",
            )?
            .execute([now])?)
        })
        .await
    }

    /// A reservation by id.
    pub async fn reservation(&self, org: &str, id: &str) -> Result<Reservation> {
        let (o, i) = (org.to_string(), id.to_string());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id, cost_nanos, billed_nanos, state, expires_at FROM reservations WHERE org_id = ?1 AND id = ?2",
            )?
            .query_row(params![o, i], |r| {
                Ok(Reservation {
                    id: r.get(0)?,
                    cost_nanos: r.get(1)?,
                    billed_nanos: r.get(2)?,
                    state: r.get(3)?,
                    expires_at: r.get(4)?,
                })
            })
            .optional()?
            .ok_or_else(|| Error::not_found("reservation", i))
        })
        .await
    }

    /// Sets (or, with `None`, removes) a budget, audited in the same transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn budget_set(
        &self,
        org: &str,
        scope: Scope,
        scope_id: String,
        period: Period,
        limit: Option<i64>,
        actor: String,
        audit_id: String,
        now: String,
    ) -> Result<Vec<Budget>> {
        let o = org.to_string();
        self.write(move |c| {
            match limit {
                Some(l) => c.execute(
                    "INSERT INTO budgets (org_id, scope, scope_id, period, limit_nanos, updated_by, updated_at)
                     VALUES (?1,?2,?3,?4,?5,?6,?7)
                     ON CONFLICT DO UPDATE SET limit_nanos = ?5, updated_by = ?6, updated_at = ?7",
                    params![o, scope.as_str(), scope_id, period.as_str(), l, actor, now],
                )?,
                None => c.execute(
                    "DELETE FROM budgets WHERE org_id = ?1 AND scope = ?2 AND scope_id = ?3 AND period = ?4",
                    params![o, scope.as_str(), scope_id, period.as_str()],
                )?,
            };
            insert_audit(
                c,
                &AuditEntry {
                    org_id: o.clone(),
                    id: audit_id,
                    actor,
                    action: if limit.is_some() { "budget.set" } else { "budget.remove" }.into(),
                    subject: Some(format!("{}:{}:{}", scope.as_str(), scope_id, period.as_str())),
                    detail: limit.map(|l| format!("limit_nanos={l}")),
                    created_at: now,
                },
            )?;
            budgets(c, &o)
        })
        .await
    }

    pub async fn budgets(&self, org: &str) -> Result<Vec<Budget>> {
        let o = org.to_string();
        self.read(move |c| budgets(c, &o)).await
    }

    /// Records an admin reset of the breaker for a day, month or task, audited.
    #[allow(clippy::too_many_arguments)]
    pub async fn breaker_reset(
        &self,
        org: &str,
        scope: &'static str,
        period_key: String,
        actor: String,
        note: Option<String>,
        audit_id: String,
        now: String,
    ) -> Result<()> {
        let o = org.to_string();
        self.write(move |c| {
            c.execute(
                "INSERT INTO breaker_resets (org_id, scope, period_key, actor, note, created_at) VALUES (?1,?2,?3,?4,?5,?6)
                 ON CONFLICT DO UPDATE SET actor = ?4, note = ?5, created_at = ?6",
                params![o, scope, period_key, actor, note, now],
            )?;
            insert_audit(
                c,
                &AuditEntry {
                    org_id: o,
                    id: audit_id,
                    actor,
                    action: "breaker.reset".into(),
                    subject: Some(format!("{scope}:{period_key}")),
                    detail: note,
                    created_at: now,
                },
            )
        })
        .await
    }

    /// The breaker's counters for an org at `now`.
    pub async fn breaker_figures(&self, org: &str, now: DateTime<Utc>) -> Result<BreakerFigures> {
        let o = org.to_string();
        self.read(move |c| {
            let (day, month) = (day_key(now), month_key(now));
            let (day_cost, _) = rollup_sum(c, &o, "model", None, &day)?;
            let (month_cost, _) = rollup_sum(c, &o, "model", None, &month)?;
            let reserved_cost: i64 = c
                .prepare_cached(
                    "SELECT coalesce(sum(cost_nanos), 0) FROM reservations WHERE org_id = ?1 AND state = 'open' AND expires_at > ?2",
                )?
                .query_row(params![o, crate::clock::fmt_time(now)], |r| r.get(0))?;
            let (reset_day, reset_month, _) = resets(c, &o, &day, &month, None)?;
            Ok(BreakerFigures {
                day_cost,
                month_cost,
                reserved_cost,
                reset_day,
                reset_month,
            })
        })
        .await
    }

    /// Provider cost and billed total of one task.
    pub async fn task_spend(&self, org: &str, task: &str) -> Result<(i64, i64)> {
        let (o, t) = (org.to_string(), task.to_string());
        self.read(move |c| task_spent(c, &o, &t)).await
    }

    /// The ledger balance as kept by the trigger (O(1)); `ledger_balance` is the sum.
    pub async fn ledger_balance_fast(&self, org: &str) -> Result<i64> {
        let o = org.to_string();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT balance_nanos FROM ledger_balances WHERE org_id = ?1")?
                    .query_row([&o], |r| r.get(0))
                    .optional()?
                    .unwrap_or(0),
            )
        })
        .await
    }

    /// Rollup rows of one dimension for hours in `[from_hour, to_hour)`, at most
    /// `limit` rows (the caller reports truncation). The tool dimension merges
    /// run units (every call) with the cost of priced tool calls.
    pub async fn usage_hours(
        &self,
        org: &str,
        dim: &'static str,
        from_hour: String,
        to_hour: String,
        limit: u32,
    ) -> Result<Vec<HourRow>> {
        let o = org.to_string();
        self.read_cancellable(None, move |c| {
            let mut out = Vec::new();
            {
                let mut st = c.prepare_cached(
                    "SELECT hour, value, calls, tokens_in, tokens_out, tokens_cached, cost_nanos, billed_nanos FROM usage_hourly
                     WHERE org_id = ?1 AND dim = ?2 AND hour >= ?3 AND hour < ?4 ORDER BY hour, value LIMIT ?5",
                )?;
                let rows = st.query_map(params![o, dim, from_hour, to_hour, limit], |r| {
                    Ok(HourRow {
                        hour: r.get(0)?,
                        value: r.get(1)?,
                        calls: r.get(2)?,
                        errors: 0,
                        tokens_in: r.get(3)?,
                        tokens_out: r.get(4)?,
                        tokens_cached: r.get(5)?,
                        cost_nanos: r.get(6)?,
                        billed_nanos: r.get(7)?,
                    })
                })?;
                for row in rows {
                    out.push(row?);
                }
            }
            if dim == "tool" {
                // Calls come from run units; the rollup only adds cost.
                for r in &mut out {
                    r.calls = 0;
                }
                let mut st = c.prepare_cached(
                    "SELECT hour, tool, sum(calls), sum(errors) FROM run_units
                     WHERE org_id = ?1 AND hour >= ?2 AND hour < ?3 GROUP BY hour, tool ORDER BY hour, tool LIMIT ?4",
                )?;
                let rows = st.query_map(params![o, from_hour, to_hour, limit], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
                })?;
                for row in rows {
                    let (hour, tool, calls, errors) = row?;
                    match out.iter_mut().find(|r| r.hour == hour && r.value == tool) {
                        Some(r) => {
                            r.calls = calls;
                            r.errors = errors;
                        }
                        None => out.push(HourRow {
                            hour,
                            value: tool,
                            calls,
                            errors,
                            ..Default::default()
                        }),
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Charge receipts newest first, in id (ULID, so time) order along the
    /// primary key; `after` is the previous page's last (created_at, id).
    pub async fn receipts(
        &self,
        org: &str,
        after: Option<(String, String)>,
        limit: u32,
    ) -> Result<Vec<ChargeReceipt>> {
        let o = org.to_string();
        self.read_cancellable(None, move |c| {
            let (ac, ai) = after.unzip();
            let mut st = c.prepare_cached(
                "SELECT l.id, l.created_at, l.reason, l.source_system, l.source_reference, l.usage_id, -l.amount_nanos,
                        u.cost_nanos, u.provider, u.model, u.tool, u.key_id, u.task_id, u.tokens_in, u.tokens_out
                 FROM credit_ledger l JOIN usage_records u ON u.org_id = l.org_id AND u.id = l.usage_id
                 WHERE l.org_id = ?1 AND l.kind = 'charge'
                   AND (?3 IS NULL OR l.id < ?3)
                 ORDER BY l.id DESC LIMIT ?4",
            )?;
            let rows = st
                .query_map(params![o, ac, ai, limit], |r| {
                    Ok(ChargeReceipt {
                        id: r.get(0)?,
                        created_at: r.get(1)?,
                        reason: r.get(2)?,
                        source_system: r.get(3)?,
                        source_reference: r.get(4)?,
                        usage_id: r.get(5)?,
                        billed_nanos: r.get(6)?,
                        cost_nanos: r.get(7)?,
                        provider: r.get(8)?,
                        model: r.get(9)?,
                        tool: r.get(10)?,
                        key_id: r.get(11)?,
                        task_id: r.get(12)?,
                        tokens_in: r.get(13)?,
                        tokens_out: r.get(14)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Adds run-unit counts: (org, hour, key, tool, calls, errors).
    pub async fn run_units_add(
        &self,
        rows: Vec<(String, String, String, String, u64, u64)>,
    ) -> Result<()> {
        self.write(move |c| {
            let mut st = c.prepare_cached(
                "INSERT INTO run_units (org_id, hour, key_id, tool, calls, errors) VALUES (?1,?2,?3,?4,?5,?6)
                 ON CONFLICT DO UPDATE SET calls = calls + excluded.calls, errors = errors + excluded.errors",
            )?;
            for (org, hour, key, tool, calls, errors) in &rows {
                st.execute(params![org, hour, key, tool, *calls as i64, *errors as i64])?;
            }
            Ok(())
        })
        .await
    }

    /// Counts per (org, provider/model) of all time, for the metrics page at start-up.
    pub async fn usage_totals(&self) -> Result<Vec<(String, String, i64, i64)>> {
        self.read_cancellable(None, |c| {
            let mut st = c.prepare(
                "SELECT org_id, value, sum(cost_nanos), sum(billed_nanos) FROM usage_hourly WHERE dim = 'model' GROUP BY org_id, value",
            )?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}

fn budgets(c: &Connection, org: &str) -> Result<Vec<Budget>> {
    let mut st = c.prepare_cached(
        "SELECT scope, scope_id, period, limit_nanos, updated_by, updated_at FROM budgets WHERE org_id = ?1 ORDER BY scope, scope_id, period",
    )?;
    let rows = st.query_map([org], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (scope, scope_id, period, limit_nanos, updated_by, updated_at) = row?;
        let (Some(scope), Some(period)) = (parse_scope(&scope), parse_period(&period)) else {
            continue;
        };
        out.push(Budget {
            scope,
            scope_id,
            period,
            limit_nanos,
            updated_by,
            updated_at,
        });
    }
    Ok(out)
}
