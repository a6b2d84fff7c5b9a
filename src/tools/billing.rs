//! `billing`: what calls cost and who pays — balance (credits and dollars),
//! usage over time (bucketed, grouped, read from the hourly rollup so it stays
//! fast on a large ledger), charge receipts (paged), top-ups (admin,
//! idempotent), budgets (get; set/remove by admin) and the cost circuit breaker
//! (state; reset by admin). Amounts in inputs name their unit: `credits` or
//! `usd_nanos`.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ActionSpec, CallCtx, ToolOutput, ToolSpec, check_len, decode_cursor, encode_cursor, need, page,
    parse, read, schema_of,
};
use crate::auth::Role;
use crate::error::{Error, Result};
use crate::metering::ledger::{Balance, Entry, Kind, NANOS_PER_CREDIT, NewEntry, balance};
use crate::metering::meter::BreakerState;
use crate::metering::usage::{Period, Scope, day_key, month_key};
use crate::money::{MAX_NANOS, fmt_usd};
use crate::store::{AuditEntry, Budget, ChargeReceipt, HourRow, page_limit};

pub static SPEC: ToolSpec = ToolSpec {
    action_field: true,
    name: "billing",
    description: "Costs and credits (1 credit = $0.001). balance; usage (from/to, bucket hour|day|week|month, group_by model|key|workflow|tool|none); receipts (paged charges); topup (admin; credits or usd_nanos + idempotency_key); budget (op get|set|remove; scope org|key|task, period day|month|total; set/remove admin); breaker (op state|reset; reset admin, window day|month|task).",
    actions: &ACTIONS,
    input: schema_of::<Params>,
    output: schema_of::<Output>,
    destructive: false,
    idempotent: true,
};

static ACTIONS: [ActionSpec; 6] = [
    read("balance", &[]),
    read("usage", &[]),
    read("receipts", &[]),
    ActionSpec {
        name: "topup",
        aliases: &[],
        role: Role::Admin,
        writes: true,
    },
    // get is a read; set/remove check admin and read-only mode themselves.
    read("budget", &[]),
    read("breaker", &[]),
];

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Hour,
    Day,
    Week,
    Month,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Model,
    Key,
    Workflow,
    Tool,
    None,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Get,
    Set,
    Remove,
    State,
    Reset,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Day,
    Month,
    Task,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[allow(dead_code)] // checked by the registry
    action: String,
    /// budget: get|set|remove (default get); breaker: state|reset (default state).
    op: Option<Op>,
    /// usage: start (RFC 3339 or YYYY-MM-DD, inclusive; default 30 days ago).
    from: Option<String>,
    /// usage: end (exclusive; default now).
    to: Option<String>,
    /// usage: bucket size (default day).
    bucket: Option<Bucket>,
    /// usage: grouping (default none).
    group_by: Option<GroupBy>,
    /// receipts: page size (default 50, max 500).
    limit: Option<u32>,
    cursor: Option<String>,
    /// topup / budget set: amount in credits (1 credit = $0.001).
    credits: Option<i64>,
    /// topup / budget set: amount in nano-dollars (10^-9 USD), instead of credits.
    usd_nanos: Option<i64>,
    /// topup: required; the same key applied twice lands once.
    idempotency_key: Option<String>,
    note: Option<String>,
    /// budget: org (default), key or task.
    scope: Option<Scope>,
    /// budget: the key id (scope key) or task id (scope task).
    scope_id: Option<String>,
    /// budget: day or month (org, key), total (task).
    period: Option<Period>,
    /// breaker reset: day (default), month, or task (with task_id).
    window: Option<Window>,
    task_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct BalanceOut {
    #[serde(flatten)]
    balance: Balance,
    /// Markup in basis points (20000 = 2.0x).
    markup_bp: u32,
    /// prepaid or postpaid.
    mode: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct UsageRow {
    /// Start of the bucket (RFC 3339).
    bucket: String,
    /// The group's value (model, key id, workflow id, tool); absent with group_by none.
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    calls: i64,
    /// Failed calls (tool group only: run units that ended in an error).
    errors: i64,
    tokens_in: i64,
    tokens_out: i64,
    tokens_cached: i64,
    cost_nanos: i64,
    billed_nanos: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct UsageOut {
    from: String,
    to: String,
    bucket: String,
    group_by: String,
    rows: Vec<UsageRow>,
    total_calls: i64,
    total_cost_nanos: i64,
    total_billed_nanos: i64,
    /// True when the range held more rollup rows than one answer reads.
    truncated: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    balance: Option<BalanceOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receipts: Option<Vec<ChargeReceipt>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
    /// topup: the ledger entry, and whether this call created it (false = replay).
    #[serde(skip_serializing_if = "Option::is_none")]
    entry: Option<Entry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    budgets: Option<Vec<Budget>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    breaker: Option<BreakerState>,
}

impl Output {
    fn new(action: &str) -> Output {
        Output {
            action: action.into(),
            balance: None,
            usage: None,
            receipts: None,
            next_cursor: None,
            entry: None,
            created: None,
            budgets: None,
            breaker: None,
        }
    }
}

/// Most rollup rows one usage answer reads (per dimension).
const MAX_ROLLUP_ROWS: u32 = 100_000;

/// An amount given as credits or usd_nanos (exactly one), as nano-dollars.
fn amount(p: &Params, action: &str, allow_zero: bool) -> Result<i64> {
    let nanos = match (p.credits, p.usd_nanos) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "credits",
                "give the amount as credits or usd_nanos, not both",
            ));
        }
        (None, None) => {
            return Err(Error::invalid(
                "credits",
                format!("an amount (credits or usd_nanos) is required for `{action}`"),
            ));
        }
        (Some(c), None) => c
            .checked_mul(NANOS_PER_CREDIT)
            .filter(|n| n.abs() <= MAX_NANOS)
            .ok_or_else(|| {
                Error::invalid("credits", "exceeds 1,000,000,000 credits ($1,000,000)")
            })?,
        (None, Some(n)) => n,
    };
    let field = if p.credits.is_some() {
        "credits"
    } else {
        "usd_nanos"
    };
    if nanos < 0 || (nanos == 0 && !allow_zero) {
        return Err(Error::invalid(
            field,
            if allow_zero {
                "must not be negative"
            } else {
                "must be greater than zero"
            },
        ));
    }
    if nanos > MAX_NANOS {
        return Err(Error::invalid(field, "exceeds $1,000,000"));
    }
    Ok(nanos)
}

fn audit(ctx: &CallCtx, action: &str, subject: String, detail: Option<String>) -> AuditEntry {
    AuditEntry {
        org_id: ctx.principal.org.clone(),
        id: ctx.app.ids.next(),
        actor: format!("key:{}", ctx.principal.key_id),
        action: action.into(),
        subject: Some(subject),
        detail,
        created_at: ctx.app.clock.now_text(),
    }
}

pub async fn call(ctx: &CallCtx, action: &str, args: serde_json::Value) -> Result<ToolOutput> {
    let p: Params = parse(args)?;
    check_len("note", &p.note, 500)?;
    check_len("scope_id", &p.scope_id, 200)?;
    check_len("task_id", &p.task_id, 200)?;
    match action {
        "balance" => balance_out(ctx).await,
        "usage" => usage(ctx, &p).await,
        "receipts" => receipts(ctx, &p).await,
        "topup" => topup(ctx, &p).await,
        "budget" => budget(ctx, &p).await,
        _ => breaker(ctx, &p).await,
    }
}

/// The org's balance with its billing account's markup and mode.
async fn balance_of(ctx: &CallCtx) -> Result<BalanceOut> {
    let org = &ctx.principal.org;
    let nanos = ctx.app.store.ledger_balance_fast(org).await?;
    let acct = ctx.app.store.billing_account(org).await?;
    Ok(BalanceOut {
        balance: balance(nanos),
        markup_bp: acct.markup_bp,
        mode: if acct.prepaid { "prepaid" } else { "postpaid" }.into(),
    })
}

async fn balance_out(ctx: &CallCtx) -> Result<ToolOutput> {
    let b = balance_of(ctx).await?;
    let text = format!(
        "balance {} credits ({}), {}, markup {:.2}x",
        b.balance.credits_exact,
        fmt_usd(b.balance.nanos),
        b.mode,
        f64::from(b.markup_bp) / 10_000.0
    );
    let mut out = Output::new("balance");
    out.balance = Some(b);
    ToolOutput::new(out, text)
}

/// A bound in RFC 3339 or YYYY-MM-DD, as a time.
fn bound(field: &str, v: &Option<String>) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
    v.as_ref()
        .map(|s| {
            crate::clock::parse_time(s).ok_or_else(|| {
                Error::invalid(field, "is not an RFC 3339 time or a YYYY-MM-DD date")
            })
        })
        .transpose()
}

/// The bucket a rollup hour (`2026-11-24T03`) falls in, as an RFC 3339 start.
fn bucket_of(hour: &str, b: Bucket) -> String {
    let date =
        NaiveDate::parse_from_str(hour.get(..10).unwrap_or(""), "%Y-%m-%d").unwrap_or_default();
    match b {
        Bucket::Hour => format!("{hour}:00:00.000Z"),
        Bucket::Day => format!("{date}T00:00:00.000Z"),
        Bucket::Week => {
            let monday = date - Duration::days(i64::from(date.weekday().num_days_from_monday()));
            format!("{monday}T00:00:00.000Z")
        }
        Bucket::Month => format!("{:04}-{:02}-01T00:00:00.000Z", date.year(), date.month()),
    }
}

async fn usage(ctx: &CallCtx, p: &Params) -> Result<ToolOutput> {
    let now = ctx.app.clock.now();
    let to = bound("to", &p.to)?.unwrap_or(now);
    let from = bound("from", &p.from)?.unwrap_or(to - Duration::days(30));
    if from >= to {
        return Err(Error::invalid("from", "must be before `to`"));
    }
    let bucket = p.bucket.unwrap_or(Bucket::Day);
    let span = to - from;
    let (max_days, name) = match bucket {
        Bucket::Hour => (31, "hour"),
        Bucket::Day => (400, "day"),
        Bucket::Week | Bucket::Month => (
            1830,
            if bucket == Bucket::Week {
                "week"
            } else {
                "month"
            },
        ),
    };
    if span > Duration::days(max_days) {
        return Err(Error::invalid(
            "from",
            format!(
                "a {name}-bucketed range is at most {max_days} days; narrow the range or use a larger bucket"
            ),
        ));
    }
    let group = p.group_by.unwrap_or(GroupBy::None);
    let (dim, gname) = match group {
        GroupBy::Model | GroupBy::None => (
            "model",
            if group == GroupBy::None {
                "none"
            } else {
                "model"
            },
        ),
        GroupBy::Key => ("key", "key"),
        GroupBy::Workflow => ("workflow", "workflow"),
        GroupBy::Tool => ("tool", "tool"),
    };
    // Hours are whole: a partial first or last hour counts whole.
    let from_hour = crate::metering::usage::hour_of(&crate::clock::fmt_time(from)).to_string();
    let to_t = crate::clock::fmt_time(to);
    let to_hour = crate::metering::usage::hour_of(&to_t).to_string();
    // `to` is exclusive, but a `to` inside an hour includes that hour.
    let to_key = if to_t.get(13..).is_some_and(|r| r != ":00:00.000Z") {
        format!("{to_hour}~")
    } else {
        to_hour
    };
    let rows = ctx
        .app
        .store
        .usage_hours(
            &ctx.principal.org,
            dim,
            from_hour,
            to_key,
            MAX_ROLLUP_ROWS + 1,
        )
        .await?;
    let truncated = rows.len() > MAX_ROLLUP_ROWS as usize;
    let mut agg: BTreeMap<(String, Option<String>), HourRow> = BTreeMap::new();
    for r in rows.into_iter().take(MAX_ROLLUP_ROWS as usize) {
        let key = (
            bucket_of(&r.hour, bucket),
            (group != GroupBy::None).then(|| r.value.clone()),
        );
        let a = agg.entry(key).or_default();
        a.calls += r.calls;
        a.errors += r.errors;
        a.tokens_in += r.tokens_in;
        a.tokens_out += r.tokens_out;
        a.tokens_cached += r.tokens_cached;
        a.cost_nanos += r.cost_nanos;
        a.billed_nanos += r.billed_nanos;
    }
    let rows: Vec<UsageRow> = agg
        .into_iter()
        .map(|((bucket, group), a)| UsageRow {
            bucket,
            group,
            calls: a.calls,
            errors: a.errors,
            tokens_in: a.tokens_in,
            tokens_out: a.tokens_out,
            tokens_cached: a.tokens_cached,
            cost_nanos: a.cost_nanos,
            billed_nanos: a.billed_nanos,
        })
        .collect();
    let total_calls = rows.iter().map(|r| r.calls).sum();
    let total_cost: i64 = rows.iter().map(|r| r.cost_nanos).sum();
    let total_billed: i64 = rows.iter().map(|r| r.billed_nanos).sum();
    let text = format!(
        "usage {} → {} by {name}{}: {} rows, {total_calls} calls, provider cost {}, billed {}{}",
        crate::clock::fmt_time(from),
        to_t,
        if group == GroupBy::None {
            String::new()
        } else {
            format!(" and {gname}")
        },
        rows.len(),
        fmt_usd(total_cost),
        fmt_usd(total_billed),
        if truncated {
            " (truncated: narrow the range)"
        } else {
            ""
        }
    );
    let mut out = Output::new("usage");
    out.usage = Some(UsageOut {
        from: crate::clock::fmt_time(from),
        to: to_t,
        bucket: name.into(),
        group_by: gname.into(),
        rows,
        total_calls,
        total_cost_nanos: total_cost,
        total_billed_nanos: total_billed,
        truncated,
    });
    ToolOutput::new(out, text)
}

async fn receipts(ctx: &CallCtx, p: &Params) -> Result<ToolOutput> {
    let limit = page_limit(p.limit, 50, 500);
    let after = p.cursor.as_deref().map(decode_cursor).transpose()?;
    let rows = ctx
        .app
        .store
        .receipts(&ctx.principal.org, after, limit + 1)
        .await?;
    let (rows, next) = page(rows, limit as usize, |r| {
        encode_cursor(&r.created_at, &r.id)
    });
    let mut text = format!("{} receipts", rows.len());
    for r in rows.iter().take(20) {
        text.push_str(&format!(
            "\n- {} {} {} {} billed {} (cost {})",
            r.created_at,
            r.reason,
            r.source_reference,
            r.model,
            fmt_usd(r.billed_nanos),
            fmt_usd(r.cost_nanos)
        ));
    }
    if next.is_some() {
        text.push_str("\n(more: pass next_cursor)");
    }
    let mut out = Output::new("receipts");
    out.receipts = Some(rows);
    out.next_cursor = next;
    ToolOutput::new(out, text)
}

async fn topup(ctx: &CallCtx, p: &Params) -> Result<ToolOutput> {
    let key = need(&p.idempotency_key, "idempotency_key", "topup")?;
    check_len("idempotency_key", &p.idempotency_key, 200)?;
    let nanos = amount(p, "topup", false)?;
    let org = &ctx.principal.org;
    let e = NewEntry {
        idempotency_key: format!("topup:{key}"),
        kind: Kind::Topup,
        amount_nanos: nanos,
        reason: "topup".into(),
        source_system: None,
        source_reference: None,
        usage_id: None,
        actor: format!("key:{}", ctx.principal.key_id),
        note: p.note.clone(),
    };
    let a = audit(
        ctx,
        "billing.topup",
        key.clone(),
        Some(format!("amount_nanos={nanos}")),
    );
    let (entry, created) = ctx
        .app
        .store
        .ledger_append_audited(
            org,
            ctx.app.ids.next(),
            e,
            ctx.app.clock.now_text(),
            Some(a),
        )
        .await?;
    let bal = balance_of(ctx).await?;
    let text = format!(
        "{} {} credits ({}); balance {} credits",
        if created {
            "topped up"
        } else {
            "already applied:"
        },
        balance(entry.amount_nanos).credits_exact,
        fmt_usd(entry.amount_nanos),
        bal.balance.credits_exact
    );
    let mut out = Output::new("topup");
    out.entry = Some(entry);
    out.created = Some(created);
    out.balance = Some(bal);
    ToolOutput::new(out, text)
}

fn budget_text(budgets: &[Budget]) -> String {
    if budgets.is_empty() {
        return "no budgets set (the circuit breaker still applies)".into();
    }
    let mut t = format!("{} budgets", budgets.len());
    for b in budgets {
        t.push_str(&format!(
            "\n- {}{} {}: {}",
            b.scope.as_str(),
            if b.scope_id.is_empty() {
                String::new()
            } else {
                format!(" {}", b.scope_id)
            },
            b.period.as_str(),
            fmt_usd(b.limit_nanos)
        ));
    }
    t
}

async fn budget(ctx: &CallCtx, p: &Params) -> Result<ToolOutput> {
    let op = p.op.unwrap_or(Op::Get);
    let org = &ctx.principal.org;
    let budgets = match op {
        Op::Get => ctx.app.store.budgets(org).await?,
        Op::Set | Op::Remove => {
            let what = if op == Op::Set {
                "billing budget set"
            } else {
                "billing budget remove"
            };
            super::require_write(ctx, what, Role::Admin)?;
            let scope = p.scope.unwrap_or(Scope::Org);
            let scope_id = match scope {
                Scope::Org => {
                    if p.scope_id.is_some() {
                        return Err(Error::invalid("scope_id", "is not used with scope org"));
                    }
                    String::new()
                }
                _ => need(&p.scope_id, "scope_id", "budget")?.clone(),
            };
            let period = *need(&p.period, "period", "budget")?;
            if !period.fits(scope) {
                return Err(Error::invalid(
                    "period",
                    format!(
                        "scope {} takes period {}",
                        scope.as_str(),
                        if scope == Scope::Task {
                            "total"
                        } else {
                            "day or month"
                        }
                    ),
                ));
            }
            let limit = if op == Op::Set {
                Some(amount(p, "budget set", true)?)
            } else {
                None
            };
            // A key budget names a key of this org (or `local`, the stdio user).
            if scope == Scope::Key
                && scope_id != "local"
                && ctx
                    .app
                    .store
                    .key_by_id(&scope_id)
                    .await?
                    .is_none_or(|k| k.org_id != *org)
            {
                return Err(Error::not_found("key", scope_id));
            }
            let who = format!("key:{}", ctx.principal.key_id);
            ctx.app
                .store
                .budget_set(
                    org,
                    scope,
                    scope_id,
                    period,
                    limit,
                    who,
                    ctx.app.ids.next(),
                    ctx.app.clock.now_text(),
                )
                .await?
        }
        _ => {
            return Err(Error::invalid("op", "budget takes op get, set or remove"));
        }
    };
    let text = budget_text(&budgets);
    let mut out = Output::new("budget");
    out.budgets = Some(budgets);
    ToolOutput::new(out, text)
}

async fn breaker(ctx: &CallCtx, p: &Params) -> Result<ToolOutput> {
    let op = p.op.unwrap_or(Op::State);
    let org = &ctx.principal.org;
    match op {
        Op::State => {}
        Op::Reset => {
            super::require_write(ctx, "billing breaker reset", Role::Admin)?;
            let now = ctx.app.clock.now();
            let (scope, key) = match p.window.unwrap_or(Window::Day) {
                Window::Day => ("day", day_key(now)),
                Window::Month => ("month", month_key(now)),
                Window::Task => (
                    "task",
                    need(&p.task_id, "task_id", "breaker reset")?.clone(),
                ),
            };
            if scope == "task" {
                ctx.app.store.task_get(org, &key).await?;
            }
            ctx.app
                .store
                .breaker_reset(
                    org,
                    scope,
                    key,
                    format!("key:{}", ctx.principal.key_id),
                    p.note.clone(),
                    ctx.app.ids.next(),
                    ctx.app.clock.now_text(),
                )
                .await?;
        }
        _ => return Err(Error::invalid("op", "breaker takes op state or reset")),
    }
    let s = ctx.app.meter.breaker_state(org).await?;
    let text = format!(
        "breaker {}: today {} of {} (resets {}), this month {} (alert at {}{}), reserved {}",
        s.state,
        fmt_usd(s.day_cost_nanos),
        fmt_usd(s.day_limit_nanos),
        s.day_resets_at,
        fmt_usd(s.month_cost_nanos),
        fmt_usd(s.month_alert_nanos),
        if s.month_halts { ", halts" } else { "" },
        fmt_usd(s.reserved_nanos)
    );
    let mut out = Output::new("breaker");
    out.breaker = Some(s);
    ToolOutput::new(out, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        let cases = [
            ("2026-11-24T03", Bucket::Hour, "2026-11-24T03:00:00.000Z"),
            ("2026-11-24T03", Bucket::Day, "2026-11-24T00:00:00.000Z"),
            ("2026-11-24T03", Bucket::Week, "2026-11-23T00:00:00.000Z"),
            ("2026-11-23T00", Bucket::Week, "2026-11-23T00:00:00.000Z"),
            ("2026-11-22T23", Bucket::Week, "2026-11-16T00:00:00.000Z"),
            ("2026-11-24T03", Bucket::Month, "2026-11-01T00:00:00.000Z"),
        ];
        for (hour, b, want) in cases {
            assert_eq!(bucket_of(hour, b), want, "{hour} {b:?}");
        }
    }
}
