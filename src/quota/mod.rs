//! Quota: provider accounts with a limit over a window, and the pure rules over
//! them — window bounds, the figures (used, remaining, percent, burn rate, days
//! left, status), where a secret lives (`secret`), and which account the ladder
//! should use next (`choose`). `audit` builds the daily report from store verbs.
//!
//! Everything here except `audit` is plain functions over plain data: no SQL, no
//! clock, no I/O besides reading a secret when asked to. Times are passed in.

pub mod audit;
pub mod choose;
pub mod secret;
pub mod service;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock::{fmt_time, parse_time};

/// Thresholds of the status, in percent of the limit.
pub const WARNING_PERCENT: u32 = 80;
pub const CRITICAL_PERCENT: u32 = 90;

/// The longest span the burn rate looks back over.
pub const BURN_SPAN_MAX: Duration = Duration::days(7);

/// The longest rolling window accepted (a leap year, in minutes).
pub const MAX_WINDOW_MINUTES: i64 = 366 * 24 * 60;

// What a limit counts. (Plain comments on the types of tool fields: a doc
// comment would become schema text that every client pays for in tools/list.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    Requests,
    Tokens,
    UsdNanos,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
            LimitKind::UsdNanos => "usd_nanos",
        }
    }

    pub fn parse(s: &str) -> Option<LimitKind> {
        match s {
            "requests" => Some(LimitKind::Requests),
            "tokens" => Some(LimitKind::Tokens),
            "usd_nanos" => Some(LimitKind::UsdNanos),
            _ => None,
        }
    }
}

// `seat` (a flat-rate subscription used through a CLI: counts only against its
// window) or `metered` (costs dollars per call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BillingMode {
    Seat,
    Metered,
}

impl BillingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingMode::Seat => "seat",
            BillingMode::Metered => "metered",
        }
    }

    pub fn parse(s: &str) -> Option<BillingMode> {
        match s {
            "seat" => Some(BillingMode::Seat),
            "metered" => Some(BillingMode::Metered),
            _ => None,
        }
    }
}

// The kind of a window, as stored and as clients name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    Day,
    Month,
    Rolling,
}

impl WindowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowKind::Day => "day",
            WindowKind::Month => "month",
            WindowKind::Rolling => "rolling",
        }
    }

    pub fn parse(s: &str) -> Option<WindowKind> {
        match s {
            "day" => Some(WindowKind::Day),
            "month" => Some(WindowKind::Month),
            "rolling" => Some(WindowKind::Rolling),
            _ => None,
        }
    }
}

/// A quota window: a calendar day or month (UTC), or the last N minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Day,
    Month,
    Rolling { minutes: i64 },
}

/// Why a window is not acceptable; names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowError {
    pub field: &'static str,
    pub message: String,
}

impl Window {
    /// Builds a window from its kind and, for rolling windows only, its length.
    pub fn new(kind: WindowKind, minutes: Option<i64>) -> Result<Window, WindowError> {
        let bad = |message: String| WindowError {
            field: "window_minutes",
            message,
        };
        match (kind, minutes) {
            (WindowKind::Rolling, None) => Err(bad(
                "is required for a rolling window (e.g. 300 for 5 hours, 10080 for a week)".into(),
            )),
            (WindowKind::Rolling, Some(m)) if !(1..=MAX_WINDOW_MINUTES).contains(&m) => Err(bad(
                format!("must be between 1 and {MAX_WINDOW_MINUTES} minutes, not {m}"),
            )),
            (WindowKind::Rolling, Some(m)) => Ok(Window::Rolling { minutes: m }),
            (k, Some(_)) => Err(bad(format!(
                "applies to rolling windows only; a {} window is a calendar {} (UTC)",
                k.as_str(),
                k.as_str()
            ))),
            (WindowKind::Day, None) => Ok(Window::Day),
            (WindowKind::Month, None) => Ok(Window::Month),
        }
    }

    pub fn kind(self) -> WindowKind {
        match self {
            Window::Day => WindowKind::Day,
            Window::Month => WindowKind::Month,
            Window::Rolling { .. } => WindowKind::Rolling,
        }
    }

    pub fn minutes(self) -> Option<i64> {
        match self {
            Window::Rolling { minutes } => Some(minutes),
            _ => None,
        }
    }

    /// `[start, end)` of the window holding `now`. A rolling window ends at `now`.
    pub fn bounds(self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        match self {
            Window::Day => {
                let start = day_start(now.date_naive());
                (start, start + Duration::days(1))
            }
            Window::Month => {
                let first = month_first(now.year(), now.month());
                let next = if now.month() == 12 {
                    month_first(now.year() + 1, 1)
                } else {
                    month_first(now.year(), now.month() + 1)
                };
                (day_start(first), day_start(next))
            }
            Window::Rolling { minutes } => (now - Duration::minutes(minutes), now),
        }
    }

    /// The whole length of the window holding `now`.
    pub fn length(self, now: DateTime<Utc>) -> Duration {
        match self {
            Window::Rolling { minutes } => Duration::minutes(minutes),
            _ => {
                let (s, e) = self.bounds(now);
                e - s
            }
        }
    }

    /// When the count starts over: the end of a calendar window; none for a
    /// rolling one (its usage ages out gradually).
    pub fn resets_at(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Window::Rolling { .. } => None,
            _ => Some(self.bounds(now).1),
        }
    }

    /// A key naming the window holding `now`, for raising an alert once per
    /// window: `2026-11-24` for a day, `2026-11` for a month, and the date for a
    /// rolling window (so a rolling account alerts at most once a day per level).
    pub fn period_key(self, now: DateTime<Utc>) -> String {
        match self {
            Window::Month => now.format("%Y-%m").to_string(),
            Window::Day | Window::Rolling { .. } => now.format("%Y-%m-%d").to_string(),
        }
    }

    /// The span the burn rate looks back over: the last 7 days, or the window's
    /// length if shorter.
    pub fn burn_span(self, now: DateTime<Utc>) -> Duration {
        self.length(now).min(BURN_SPAN_MAX)
    }
}

fn day_start(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN))
}

fn month_first(year: i32, month: u32) -> NaiveDate {
    // Day 1 of a month in 1..=12 always exists; the fallback is unreachable.
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(NaiveDate::MIN)
}

/// Usage counted in every unit a limit can have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub requests: i64,
    pub tokens: i64,
    pub usd_nanos: i64,
}

impl Usage {
    pub fn of(&self, kind: LimitKind) -> i64 {
        match kind {
            LimitKind::Requests => self.requests,
            LimitKind::Tokens => self.tokens,
            LimitKind::UsdNanos => self.usd_nanos,
        }
    }

    pub fn plus(self, o: Usage) -> Usage {
        Usage {
            requests: self.requests.saturating_add(o.requests),
            tokens: self.tokens.saturating_add(o.tokens),
            usd_nanos: self.usd_nanos.saturating_add(o.usd_nanos),
        }
    }
}

/// What a provider last reported about an account (rate-limit headers, the
/// limits and used percentages an agent CLI prints). Counts are in the account's
/// limit unit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reported {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_at: Option<String>,
    pub at: String,
}

/// A quota account as stored (never its secret, only where the secret lives).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Account {
    pub org: String,
    pub id: String,
    pub provider: String,
    pub name: String,
    pub billing_mode: BillingMode,
    /// Where the secret lives (`env:NAME`, `file:/path`); never the secret.
    pub secret_ref: String,
    pub limit_kind: LimitKind,
    pub limit: i64,
    pub window: WindowKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_minutes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported: Option<Reported>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<String>,
}

impl Account {
    /// The account's window. Rows are checked on the way in, so a bad one is a
    /// corrupt row; it falls back to a calendar day rather than failing a report.
    pub fn window(&self) -> Window {
        Window::new(self.window, self.window_minutes).unwrap_or(Window::Day)
    }

    pub fn token_expired(&self, now: DateTime<Utc>) -> bool {
        before_or_at(self.token_expires_at.as_deref(), now)
    }

    pub fn in_cooldown(&self, now: DateTime<Utc>) -> bool {
        self.cooldown_until
            .as_deref()
            .and_then(parse_time)
            .is_some_and(|t| t > now)
    }
}

fn before_or_at(t: Option<&str>, now: DateTime<Utc>) -> bool {
    t.and_then(parse_time).is_some_and(|t| t <= now)
}

/// ACTIVE below 80 %, WARNING from 80 %, CRITICAL from 90 %, EXHAUSTED at 100 %.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Active,
    Warning,
    Critical,
    Exhausted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "ACTIVE",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Exhausted => "EXHAUSTED",
        }
    }

    /// From exact integers, so 80 of 100 is WARNING with no float in the way.
    pub fn of_counts(used: i64, limit: i64) -> Status {
        if limit <= 0 {
            return Status::Exhausted;
        }
        let (u, l) = (i128::from(used) * 100, i128::from(limit));
        if u >= 100 * l {
            Status::Exhausted
        } else if u >= i128::from(CRITICAL_PERCENT) * l {
            Status::Critical
        } else if u >= i128::from(WARNING_PERCENT) * l {
            Status::Warning
        } else {
            Status::Active
        }
    }

    /// From a percentage a provider reported.
    pub fn of_percent(p: f64) -> Status {
        if p >= 100.0 {
            Status::Exhausted
        } else if p >= f64::from(CRITICAL_PERCENT) {
            Status::Critical
        } else if p >= f64::from(WARNING_PERCENT) {
            Status::Warning
        } else {
            Status::Active
        }
    }
}

/// Whose count the figures use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    // Our usage records and manual records.
    Own,
    // What the provider last reported (fresher than the window start, before its reset).
    Provider,
}

/// An account's figures at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Figures {
    pub used: i64,
    pub limit: i64,
    pub remaining: i64,
    pub percent: f64,
    /// Usage per day over the burn span (the last 7 days, or the window if shorter).
    pub burn_per_day: f64,
    /// Days until the limit is reached at the burn rate; absent when nothing burns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<f64>,
    pub status: Status,
    pub source: Source,
    pub window_start: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<String>,
}

/// What the store observed for one account: our own usage since the window
/// start, and over the burn span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    pub window: Usage,
    pub burn: Usage,
}

/// The spans the store must sum for an account at `now`: (window start, burn start).
pub fn spans(account: &Account, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let w = account.window();
    (w.bounds(now).0, now - w.burn_span(now))
}

/// Does the provider's last report still describe the current window?
/// Only when it was taken inside this window and its reset time has not passed.
fn reported_applies(r: &Reported, window_start: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    let Some(at) = parse_time(&r.at) else {
        return false;
    };
    if at < window_start || at > now {
        return false;
    }
    if before_or_at(r.reset_at.as_deref(), now) {
        return false;
    }
    r.used.is_some() || r.used_percent.is_some()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The figures of `account` at `now` from what the store observed.
pub fn figures(account: &Account, observed: Observed, now: DateTime<Utc>) -> Figures {
    let w = account.window();
    let (start, _) = w.bounds(now);
    let kind = account.limit_kind;
    let span_days = w.burn_span(now).num_seconds() as f64 / 86_400.0;
    let burn_per_day = if span_days > 0.0 {
        observed.burn.of(kind) as f64 / span_days
    } else {
        0.0
    };
    let mut resets_at = w.resets_at(now);
    let (used, limit, percent, status, source) = match &account.reported {
        Some(r) if reported_applies(r, start, now) => {
            let limit = r.limit.filter(|l| *l > 0).unwrap_or(account.limit);
            let used = match (r.used, r.used_percent) {
                (Some(u), _) => u.max(0),
                (None, Some(p)) => (p.max(0.0) * limit as f64 / 100.0).round() as i64,
                (None, None) => 0,
            };
            let (percent, status) = match r.used_percent {
                Some(p) => (p.max(0.0), Status::of_percent(p)),
                None => (
                    used as f64 * 100.0 / limit as f64,
                    Status::of_counts(used, limit),
                ),
            };
            if let Some(reset) = r.reset_at.as_deref().and_then(parse_time) {
                resets_at = Some(reset);
            }
            (used, limit, percent, status, Source::Provider)
        }
        _ => {
            let used = observed.window.of(kind);
            let limit = account.limit;
            (
                used,
                limit,
                used as f64 * 100.0 / limit.max(1) as f64,
                Status::of_counts(used, limit),
                Source::Own,
            )
        }
    };
    let remaining = (limit - used).max(0);
    let days_left = if remaining == 0 {
        Some(0.0)
    } else if burn_per_day > 0.0 {
        Some(round2(remaining as f64 / burn_per_day))
    } else {
        None
    };
    Figures {
        used,
        limit,
        remaining,
        percent: round2(percent),
        burn_per_day: round2(burn_per_day),
        days_left,
        status,
        source,
        window_start: fmt_time(start),
        resets_at: resets_at.map(fmt_time),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap_or_else(|| panic!("bad time {s}"))
    }

    pub(crate) fn account(kind: LimitKind, limit: i64, window: Window) -> Account {
        Account {
            org: "acme".into(),
            id: "a1".into(),
            provider: "anthropic".into(),
            name: "seat-1".into(),
            billing_mode: BillingMode::Seat,
            secret_ref: "env:X".into(),
            limit_kind: kind,
            limit,
            window: window.kind(),
            window_minutes: window.minutes(),
            token_expires_at: None,
            refresh_at: None,
            rotated_at: None,
            cooldown_until: None,
            last_used_at: None,
            reported: None,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            removed_at: None,
        }
    }

    #[test]
    fn window_bounds() {
        let cases: &[(Window, &str, &str, &str)] = &[
            (
                Window::Day,
                "2026-11-24T13:45:00Z",
                "2026-11-24T00:00:00.000Z",
                "2026-11-25T00:00:00.000Z",
            ),
            (
                Window::Day,
                "2026-12-31T23:59:59.999Z",
                "2026-12-31T00:00:00.000Z",
                "2027-01-01T00:00:00.000Z",
            ),
            (
                Window::Month,
                "2026-11-24T13:45:00Z",
                "2026-11-01T00:00:00.000Z",
                "2026-12-01T00:00:00.000Z",
            ),
            (
                Window::Month,
                "2026-12-15T00:00:00Z",
                "2026-12-01T00:00:00.000Z",
                "2027-01-01T00:00:00.000Z",
            ),
            (
                Window::Month,
                "2028-02-29T12:00:00Z",
                "2028-02-01T00:00:00.000Z",
                "2028-03-01T00:00:00.000Z",
            ),
            (
                Window::Rolling { minutes: 300 },
                "2026-11-24T13:00:00Z",
                "2026-11-24T08:00:00.000Z",
                "2026-11-24T13:00:00.000Z",
            ),
            (
                Window::Rolling { minutes: 10080 },
                "2026-11-24T13:00:00Z",
                "2026-11-17T13:00:00.000Z",
                "2026-11-24T13:00:00.000Z",
            ),
        ];
        for (w, now, start, end) in cases {
            let (s, e) = w.bounds(t(now));
            assert_eq!(
                (fmt_time(s).as_str(), fmt_time(e).as_str()),
                (*start, *end),
                "{w:?} at {now}"
            );
        }
    }

    #[test]
    fn window_lengths_burn_spans_and_keys() {
        let now = t("2026-02-10T10:00:00Z");
        let cases: &[(Window, i64, i64, &str)] = &[
            // (window, length in minutes, burn span in minutes, period key)
            (Window::Day, 1440, 1440, "2026-02-10"),
            (Window::Month, 28 * 1440, 7 * 1440, "2026-02"),
            (Window::Rolling { minutes: 300 }, 300, 300, "2026-02-10"),
            (
                Window::Rolling { minutes: 43200 },
                43200,
                7 * 1440,
                "2026-02-10",
            ),
        ];
        for (w, len, burn, key) in cases {
            assert_eq!(w.length(now).num_minutes(), *len, "{w:?}");
            assert_eq!(w.burn_span(now).num_minutes(), *burn, "{w:?}");
            assert_eq!(w.period_key(now), *key, "{w:?}");
        }
        assert_eq!(Window::Rolling { minutes: 5 }.resets_at(now), None);
        assert_eq!(
            Window::Day.resets_at(now).map(fmt_time).as_deref(),
            Some("2026-02-11T00:00:00.000Z")
        );
    }

    #[test]
    fn window_validation_names_the_field() {
        let cases: &[(WindowKind, Option<i64>, Option<&str>)] = &[
            (WindowKind::Day, None, None),
            (WindowKind::Month, None, None),
            (WindowKind::Rolling, Some(300), None),
            (WindowKind::Rolling, None, Some("is required")),
            (WindowKind::Rolling, Some(0), Some("between 1")),
            (
                WindowKind::Rolling,
                Some(MAX_WINDOW_MINUTES + 1),
                Some("between 1"),
            ),
            (WindowKind::Day, Some(60), Some("rolling windows only")),
        ];
        for (k, m, err) in cases {
            match (Window::new(*k, *m), err) {
                (Ok(_), None) => {}
                (Err(e), Some(needle)) => {
                    assert_eq!(e.field, "window_minutes");
                    assert!(e.message.contains(needle), "{k:?} {m:?}: {}", e.message);
                }
                (r, _) => panic!("{k:?} {m:?}: unexpected {r:?}"),
            }
        }
    }

    #[test]
    fn status_thresholds() {
        let cases: &[(i64, i64, Status)] = &[
            (0, 100, Status::Active),
            (79, 100, Status::Active),
            (80, 100, Status::Warning),
            (89, 100, Status::Warning),
            (90, 100, Status::Critical),
            (99, 100, Status::Critical),
            (100, 100, Status::Exhausted),
            (250, 100, Status::Exhausted),
            (7_999_999, 10_000_000, Status::Active),
            (8_000_000, 10_000_000, Status::Warning),
            (i64::MAX, i64::MAX, Status::Exhausted),
        ];
        for (used, limit, want) in cases {
            assert_eq!(Status::of_counts(*used, *limit), *want, "{used}/{limit}");
        }
        for (p, want) in [
            (79.99, Status::Active),
            (80.0, Status::Warning),
            (90.0, Status::Critical),
            (100.0, Status::Exhausted),
        ] {
            assert_eq!(Status::of_percent(p), want, "{p}");
        }
    }

    fn usage(requests: i64) -> Usage {
        Usage {
            requests,
            tokens: requests * 1000,
            usd_nanos: requests * 7,
        }
    }

    #[test]
    fn own_figures() {
        let now = t("2026-11-24T12:00:00Z");
        // (kind, limit, window, used in window, used over the burn span,
        //  want used, remaining, percent, burn/day, days_left, status)
        type Case = (
            LimitKind,
            i64,
            Window,
            i64,
            i64,
            i64,
            i64,
            f64,
            f64,
            Option<f64>,
            Status,
        );
        let cases: &[Case] = &[
            (
                LimitKind::Requests,
                100,
                Window::Day,
                0,
                0,
                0,
                100,
                0.0,
                0.0,
                None,
                Status::Active,
            ),
            (
                LimitKind::Requests,
                100,
                Window::Day,
                50,
                50,
                50,
                50,
                50.0,
                50.0,
                Some(1.0),
                Status::Active,
            ),
            (
                LimitKind::Requests,
                100,
                Window::Day,
                85,
                85,
                85,
                15,
                85.0,
                85.0,
                Some(0.18),
                Status::Warning,
            ),
            (
                LimitKind::Requests,
                100,
                Window::Day,
                120,
                120,
                120,
                0,
                120.0,
                120.0,
                Some(0.0),
                Status::Exhausted,
            ),
            // A month: 70,000 tokens in the last 7 days burn 10,000 a day → 65 days left.
            (
                LimitKind::Tokens,
                1_000_000,
                Window::Month,
                350,
                70,
                350_000,
                650_000,
                35.0,
                10_000.0,
                Some(65.0),
                Status::Active,
            ),
            // A 5-hour rolling window: 4.5 per 300 minutes = 21.6 a day.
            (
                LimitKind::UsdNanos,
                100,
                Window::Rolling { minutes: 300 },
                13,
                13,
                91,
                9,
                91.0,
                436.8,
                Some(0.02),
                Status::Critical,
            ),
        ];
        for (
            i,
            (kind, limit, w, in_window, in_burn, used, remaining, percent, burn, days, status),
        ) in cases.iter().enumerate()
        {
            let a = account(*kind, *limit, *w);
            let f = figures(
                &a,
                Observed {
                    window: usage(*in_window),
                    burn: usage(*in_burn),
                },
                now,
            );
            assert_eq!(
                (
                    f.used,
                    f.remaining,
                    f.percent,
                    f.burn_per_day,
                    f.days_left,
                    f.status,
                    f.source
                ),
                (
                    *used,
                    *remaining,
                    *percent,
                    *burn,
                    *days,
                    *status,
                    Source::Own
                ),
                "case {i}: {f:?}"
            );
        }
    }

    #[test]
    fn provider_reports_win_while_fresh() {
        let now = t("2026-11-24T12:00:00Z");
        let mut a = account(LimitKind::Requests, 100, Window::Day);
        let own = Observed {
            window: usage(10),
            burn: usage(10),
        };
        let cases: &[(Reported, Source, i64, f64, Status)] = &[
            // Fresh, with counts: wins, with the provider's own limit.
            (
                Reported {
                    used: Some(190),
                    limit: Some(200),
                    at: "2026-11-24T11:00:00Z".into(),
                    ..Default::default()
                },
                Source::Provider,
                190,
                95.0,
                Status::Critical,
            ),
            // Fresh, a percentage only (what agent CLIs print).
            (
                Reported {
                    used_percent: Some(81.5),
                    at: "2026-11-24T11:00:00Z".into(),
                    ..Default::default()
                },
                Source::Provider,
                82,
                81.5,
                Status::Warning,
            ),
            // Taken before this window started: ours.
            (
                Reported {
                    used: Some(99),
                    at: "2026-11-23T23:59:00Z".into(),
                    ..Default::default()
                },
                Source::Own,
                10,
                10.0,
                Status::Active,
            ),
            // Past its reset time: no longer applies.
            (
                Reported {
                    used: Some(100),
                    reset_at: Some("2026-11-24T11:30:00Z".into()),
                    at: "2026-11-24T11:00:00Z".into(),
                    ..Default::default()
                },
                Source::Own,
                10,
                10.0,
                Status::Active,
            ),
            // Reset still ahead: applies, and the reset becomes resets_at.
            (
                Reported {
                    used: Some(100),
                    reset_at: Some("2026-11-24T15:00:00Z".into()),
                    at: "2026-11-24T11:00:00Z".into(),
                    ..Default::default()
                },
                Source::Provider,
                100,
                100.0,
                Status::Exhausted,
            ),
            // Nothing usable in it.
            (
                Reported {
                    limit: Some(5),
                    at: "2026-11-24T11:00:00Z".into(),
                    ..Default::default()
                },
                Source::Own,
                10,
                10.0,
                Status::Active,
            ),
        ];
        for (r, source, used, percent, status) in cases {
            a.reported = Some(r.clone());
            let f = figures(&a, own, now);
            assert_eq!(
                (f.source, f.used, f.percent, f.status),
                (*source, *used, *percent, *status),
                "{r:?}"
            );
        }
        a.reported = Some(cases[4].0.clone());
        assert_eq!(
            figures(&a, own, now).resets_at.as_deref(),
            Some("2026-11-24T15:00:00.000Z")
        );
    }

    #[test]
    fn expiry_and_cooldown() {
        let now = t("2026-11-24T12:00:00Z");
        let mut a = account(LimitKind::Requests, 1, Window::Day);
        assert!(!a.token_expired(now) && !a.in_cooldown(now));
        a.token_expires_at = Some("2026-11-24T12:00:00.000Z".into());
        a.cooldown_until = Some("2026-11-24T12:00:01.000Z".into());
        assert!(a.token_expired(now) && a.in_cooldown(now));
        a.cooldown_until = Some("2026-11-24T11:00:00.000Z".into());
        assert!(!a.in_cooldown(now));
    }
}
