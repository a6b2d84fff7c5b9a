//! Usage records and spending limits, as plain data and pure rules.
//!
//! A `Call` is what a caller (the ladder, a priced tool, a client-reported stage)
//! hands the meter; `Limits::check` decides whether a reservation fits every
//! budget, the circuit breaker and a prepaid balance, and says why not. The
//! store gathers the figures (`Snapshot`) inside the writer transaction, so the
//! check and the reservation it admits are one atomic step.

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::metering::pricing::Usage;
use crate::money::fmt_usd;

/// Why a usage record exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    LlmCall,
    ToolCall,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::LlmCall => "llm_call",
            Reason::ToolCall => "tool_call",
        }
    }
}

/// How a call is paid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BillingMode {
    /// Dollars at the provider, billed to the org with its markup.
    Metered,
    /// A flat-rate subscription seat: no dollars, only the account's quota window.
    Seat,
    /// A cost a client reported (vault-mcp's `cost_usd`): feeds the breaker, never billed.
    SelfReported,
}

impl BillingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingMode::Metered => "metered",
            BillingMode::Seat => "seat",
            BillingMode::SelfReported => "self_reported",
        }
    }
}

/// Where a record's provider cost came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostSource {
    /// Tokens × the price row the record points at.
    Priced,
    /// The provider (or CLI) reported the cost.
    Provider,
    /// Neither usage nor cost was reported: recorded at 0 and flagged.
    Missing,
    Seat,
    SelfReported,
}

impl CostSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CostSource::Priced => "priced",
            CostSource::Provider => "provider",
            CostSource::Missing => "missing",
            CostSource::Seat => "seat",
            CostSource::SelfReported => "self_reported",
        }
    }
}

/// One call to record (a model call, or a tool call priced by config).
#[derive(Debug, Clone)]
pub struct Call {
    pub org: String,
    pub key_id: String,
    pub workflow_id: Option<String>,
    pub task_id: Option<String>,
    pub stage_id: Option<String>,
    pub reason: Reason,
    pub tool: Option<String>,
    pub provider: String,
    pub model: String,
    pub account_id: Option<String>,
    pub billing_mode: BillingMode,
    /// Tokens as the provider reported them; `None` when it reported none.
    pub usage: Option<Usage>,
    /// A cost the provider reported (nano-dollars), which wins over pricing.
    pub reported_cost_nanos: Option<i64>,
    pub latency_ms: u64,
    /// `ok`, or the failure class (`quality`, `infra`, `terminal`, `cancelled`).
    pub outcome: String,
    /// The call's identity: a record (and its charge) exists once per pair.
    pub source_system: String,
    pub source_reference: String,
    /// The reservation this call settles, if any.
    pub reservation_id: Option<String>,
}

/// What the meter decided a call costs, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Costed {
    pub cost_nanos: i64,
    pub billed_nanos: i64,
    pub cost_source: CostSource,
    pub price_id: Option<String>,
}

/// A stored usage record's answer to its caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Receipt {
    pub usage_id: String,
    pub cost_nanos: i64,
    pub billed_nanos: i64,
    /// `priced`, `provider`, `missing` (flagged: recorded at 0), `seat`, `self_reported`.
    pub cost_source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_id: Option<String>,
    /// The ledger entry of the charge, when the call was billed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_entry_id: Option<String>,
    /// False when this call was already recorded (a retry): nothing new was written.
    pub created: bool,
}

/// The hour bucket of a stored time: `2026-11-24T03`.
pub fn hour_of(time: &str) -> &str {
    time.get(..13).unwrap_or(time)
}

/// UTC day and month keys of a time (`2026-11-24`, `2026-11`).
pub fn day_key(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

pub fn month_key(t: DateTime<Utc>) -> String {
    t.format("%Y-%m").to_string()
}

/// When the current UTC day / month ends.
pub fn day_end(t: DateTime<Utc>) -> DateTime<Utc> {
    let d = t.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default();
    Utc.from_utc_datetime(&d) + Duration::days(1)
}

pub fn month_end(t: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(t)
}

// A limit's scope and period, for messages and budget rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Org,
    Key,
    Task,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Org => "org",
            Scope::Key => "key",
            Scope::Task => "task",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Month,
    Total,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
            Period::Total => "total",
        }
    }

    /// Which periods a scope may have: org and key budgets are per day or month,
    /// a task budget covers the whole task.
    pub fn fits(self, scope: Scope) -> bool {
        matches!(
            (scope, self),
            (Scope::Org | Scope::Key, Period::Day | Period::Month) | (Scope::Task, Period::Total)
        )
    }
}

/// Spent and reserved amounts (nano-dollars) of one scope and period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub spent: i64,
    pub reserved: i64,
}

/// Everything a reservation is checked against, read in the writer transaction.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Provider cost (the breaker counts this).
    pub org_day_cost: Figures,
    pub org_month_cost: Figures,
    pub task_cost: Figures,
    /// Billed amounts (budgets count these).
    pub org_day_billed: Figures,
    pub org_month_billed: Figures,
    pub key_day_billed: Figures,
    pub key_month_billed: Figures,
    pub task_billed: Figures,
    /// Budgets that apply: (scope, period, limit in billed nano-dollars).
    pub budgets: Vec<(Scope, Period, i64)>,
    /// Admin resets in force for today, this month, this task.
    pub reset_day: bool,
    pub reset_month: bool,
    pub reset_task: bool,
    pub prepaid: bool,
    /// Ledger balance minus open billed reservations.
    pub balance: i64,
    pub open_billed: i64,
}

/// The breaker's thresholds in nano-dollars of provider cost (0 = off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    pub daily_halt: i64,
    pub monthly_alert: i64,
    pub monthly_halt: bool,
    pub task_alert: i64,
    pub task_halt: i64,
}

/// `limit` reached by `spent` (a limit of 0 is off).
fn reached(spent: i64, limit: i64) -> bool {
    limit > 0 && spent >= limit
}

impl Breaker {
    /// Has a day's provider cost reached the daily halt?
    pub fn day_reached(&self, day_cost: i64) -> bool {
        reached(day_cost, self.daily_halt)
    }

    /// Has a month's provider cost reached the monthly alert?
    pub fn month_alerted(&self, month_cost: i64) -> bool {
        reached(month_cost, self.monthly_alert)
    }

    /// Does the month's provider cost halt spending (only when configured to)?
    pub fn month_reached(&self, month_cost: i64) -> bool {
        self.monthly_halt && self.month_alerted(month_cost)
    }
}

/// What a reservation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub cost: i64,
    pub billed: i64,
    pub has_task: bool,
}

fn refusal(limit: &str, amount: i64, f: Figures, ask: i64, resets: &str, hint: &str) -> String {
    format!(
        "refused: {limit} of {} would be exceeded (spent {}, reserved {}, this call up to {}); {resets}{hint}",
        fmt_usd(amount),
        fmt_usd(f.spent),
        fmt_usd(f.reserved),
        fmt_usd(ask)
    )
}

/// Does the ask fit? `Err` carries the message for the caller.
pub fn check(s: &Snapshot, b: &Breaker, ask: Ask, now: DateTime<Utc>) -> Result<(), String> {
    let over = |f: Figures, limit: i64, add: i64| limit > 0 && f.spent + f.reserved + add > limit;
    let day_reset = format!("resets at {}", crate::clock::fmt_time(day_end(now)));
    let month_reset = format!("resets at {}", crate::clock::fmt_time(month_end(now)));
    let admin = "; an admin can reset the breaker (billing breaker, op reset)";
    if !s.reset_day && over(s.org_day_cost, b.daily_halt, ask.cost) {
        return Err(refusal(
            "the circuit breaker's daily limit (provider cost per org per UTC day)",
            b.daily_halt,
            s.org_day_cost,
            ask.cost,
            &day_reset,
            admin,
        ));
    }
    if b.monthly_halt && !s.reset_month && over(s.org_month_cost, b.monthly_alert, ask.cost) {
        return Err(refusal(
            "the circuit breaker's monthly limit (provider cost per org per UTC month)",
            b.monthly_alert,
            s.org_month_cost,
            ask.cost,
            &month_reset,
            admin,
        ));
    }
    if ask.has_task && !s.reset_task && over(s.task_cost, b.task_halt, ask.cost) {
        return Err(refusal(
            "the circuit breaker's per-task limit (provider cost of one task)",
            b.task_halt,
            s.task_cost,
            ask.cost,
            "it does not reset with time",
            admin,
        ));
    }
    for &(scope, period, limit) in &s.budgets {
        let (f, resets) = match (scope, period) {
            (Scope::Org, Period::Day) => (s.org_day_billed, &day_reset),
            (Scope::Org, Period::Month) => (s.org_month_billed, &month_reset),
            (Scope::Key, Period::Day) => (s.key_day_billed, &day_reset),
            (Scope::Key, Period::Month) => (s.key_month_billed, &month_reset),
            (Scope::Task, _) if ask.has_task => {
                (s.task_billed, &"it does not reset with time".to_string())
            }
            _ => continue,
        };
        // A budget of 0 allows nothing billable; seat calls (billed 0) still pass.
        if f.spent + f.reserved + ask.billed > limit && ask.billed > 0 {
            return Err(refusal(
                &format!(
                    "the {} {} budget (billed price)",
                    scope.as_str(),
                    match period {
                        Period::Day => "daily",
                        Period::Month => "monthly",
                        Period::Total => "total",
                    }
                ),
                limit,
                f,
                ask.billed,
                resets,
                "; an admin can raise it (billing budget, op set)",
            ));
        }
    }
    if s.prepaid && ask.billed > 0 && s.balance - s.open_billed - ask.billed < 0 {
        return Err(format!(
            "refused: the prepaid balance of {} (minus {} reserved) cannot cover this call's {}; top up with billing topup",
            fmt_usd(s.balance),
            fmt_usd(s.open_billed),
            fmt_usd(ask.billed)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: i64 = 1_000_000_000;

    fn breaker() -> Breaker {
        Breaker {
            daily_halt: 20 * D,
            monthly_alert: 80 * D,
            monthly_halt: false,
            task_alert: 2 * D,
            task_halt: 5 * D,
        }
    }

    fn now() -> DateTime<Utc> {
        crate::clock::parse_time("2026-11-24T03:00:00Z").unwrap()
    }

    fn f(spent: i64, reserved: i64) -> Figures {
        Figures { spent, reserved }
    }

    fn ask(cost: i64) -> Ask {
        Ask {
            cost,
            billed: cost * 2,
            has_task: true,
        }
    }

    #[test]
    fn the_breaker_and_budgets_refuse_with_reasons() {
        let base = Snapshot::default();
        assert!(check(&base, &breaker(), ask(D), now()).is_ok());

        let day = Snapshot {
            org_day_cost: f(19 * D, D / 2),
            ..base.clone()
        };
        assert!(
            check(&day, &breaker(), ask(D / 2), now()).is_ok(),
            "exactly at the limit fits"
        );
        let err = check(&day, &breaker(), ask(D / 2 + 1), now()).unwrap_err();
        for want in [
            "daily limit",
            "$20.0000",
            "spent $19.0000",
            "reserved $0.5000",
            "resets at 2026-11-25T00:00:00.000Z",
        ] {
            assert!(err.contains(want), "{want}: {err}");
        }
        let reset = Snapshot {
            reset_day: true,
            ..day.clone()
        };
        assert!(
            check(&reset, &breaker(), ask(D), now()).is_ok(),
            "an admin reset overrides the halt"
        );

        let month = Snapshot {
            org_month_cost: f(80 * D, 0),
            ..base.clone()
        };
        assert!(
            check(&month, &breaker(), ask(D), now()).is_ok(),
            "the monthly limit only alerts by default"
        );
        let halting = Breaker {
            monthly_halt: true,
            ..breaker()
        };
        let err = check(&month, &halting, ask(D), now()).unwrap_err();
        assert!(
            err.contains("monthly") && err.contains("2026-12-01T00:00:00.000Z"),
            "{err}"
        );

        let task = Snapshot {
            task_cost: f(4 * D, D),
            ..base.clone()
        };
        let err = check(&task, &breaker(), ask(1), now()).unwrap_err();
        assert!(
            err.contains("per-task limit") && err.contains("$5.0000"),
            "{err}"
        );
        let no_task = Ask {
            has_task: false,
            ..ask(1)
        };
        assert!(check(&task, &breaker(), no_task, now()).is_ok());

        let budget = Snapshot {
            budgets: vec![(Scope::Key, Period::Day, 3 * D)],
            key_day_billed: f(2 * D, 0),
            ..base.clone()
        };
        let err = check(&budget, &breaker(), ask(D), now()).unwrap_err();
        assert!(
            err.contains("key daily budget") && err.contains("spent $2.0000"),
            "{err}"
        );
        assert!(check(&budget, &breaker(), ask(D / 2), now()).is_ok());
        let seat = Ask {
            cost: 0,
            billed: 0,
            has_task: true,
        };
        let zero = Snapshot {
            budgets: vec![(Scope::Org, Period::Month, 0)],
            ..base.clone()
        };
        assert!(
            check(&zero, &breaker(), seat, now()).is_ok(),
            "seat calls bill nothing"
        );
        assert!(check(&zero, &breaker(), ask(1), now()).is_err());

        let prepaid = Snapshot {
            prepaid: true,
            balance: 10 * D,
            open_billed: 9 * D,
            ..base.clone()
        };
        assert!(check(&prepaid, &breaker(), ask(D / 2), now()).is_ok());
        let err = check(&prepaid, &breaker(), ask(D), now()).unwrap_err();
        assert!(err.contains("prepaid balance"), "{err}");

        let off = Breaker {
            daily_halt: 0,
            ..breaker()
        };
        let huge = Snapshot {
            org_day_cost: f(1_000 * D, 0),
            ..base
        };
        assert!(
            check(&huge, &off, ask(D), now()).is_ok(),
            "0 turns a limit off"
        );
    }

    #[test]
    fn periods() {
        let t = crate::clock::parse_time("2026-12-31T23:59:59Z").unwrap();
        assert_eq!(day_key(t), "2026-12-31");
        assert_eq!(month_key(t), "2026-12");
        assert_eq!(
            crate::clock::fmt_time(day_end(t)),
            "2027-01-01T00:00:00.000Z"
        );
        assert_eq!(
            crate::clock::fmt_time(month_end(t)),
            "2027-01-01T00:00:00.000Z"
        );
        assert_eq!(hour_of("2026-11-24T03:04:05.000Z"), "2026-11-24T03");
        assert!(Period::Day.fits(Scope::Key) && !Period::Total.fits(Scope::Org));
        assert!(Period::Total.fits(Scope::Task) && !Period::Day.fits(Scope::Task));
    }
}
