//! Time and identifiers, behind small seams so tests can fix them.
//!
//! Every timestamp vaultline stores is an RFC 3339 UTC string with millisecond
//! precision (`2026-11-23T22:54:00.123Z`): sortable as text, and the form
//! vault-mcp used. Ids are ULIDs from one monotonic generator per process.

use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};

/// The source of "now".
#[derive(Debug, Clone)]
pub enum Clock {
    System,
    /// A fixed instant (test profile only).
    Fixed(DateTime<Utc>),
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Fixed(t) => *t,
        }
    }

    /// `now()` in the stored text form.
    pub fn now_text(&self) -> String {
        fmt_time(self.now())
    }
}

/// The stored text form of a time.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 time, or a bare `YYYY-MM-DD` date (midnight UTC).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc())
}

/// Monotonic ULID generator: ids made in one millisecond still sort in order.
#[derive(Default)]
pub struct Ids {
    generator: Mutex<ulid::Generator>,
}

impl Ids {
    pub fn new() -> Ids {
        Ids::default()
    }

    /// A new ULID as text.
    pub fn next(&self) -> String {
        let mut g = match self.generator.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        // The generator fails only when 2^80 ids are made in one millisecond;
        // a fresh random ULID is still unique then.
        g.generate()
            .unwrap_or_else(|_| ulid::Ulid::new())
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_monotonic_and_26_chars() {
        let ids = Ids::new();
        let a = ids.next();
        let b = ids.next();
        assert_eq!(a.len(), 26);
        assert!(b > a);
    }

    #[test]
    fn times_round_trip_and_dates_parse() {
        let t = parse_time("2026-11-23T22:54:00.123Z").unwrap();
        assert_eq!(fmt_time(t), "2026-11-23T22:54:00.123Z");
        assert_eq!(
            fmt_time(parse_time("2026-01-02").unwrap()),
            "2026-01-02T00:00:00.000Z"
        );
        assert!(parse_time("yesterday").is_none());
    }
}
