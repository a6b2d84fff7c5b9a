//! Reading what an agent CLI's error text says: a usage limit (and when it
//! resets), a bad credential, a failing API or network. Pure functions over text,
//! shared by the three parsers; no clock (a reset given as an epoch becomes
//! `reset_at`, one given as a span becomes `retry_after`; wall-clock times such as
//! "resets 3pm" or "try again at 3:28 PM" carry no time zone and are not guessed).

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use regex::Regex;

use crate::providers::{Failure, FailureKind, RateSignal};

/// What an error text says about the failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub kind: FailureKind,
    pub retry_after: Option<Duration>,
    pub reset_at: Option<DateTime<Utc>>,
}

impl Reading {
    /// The failure this reading describes, with `message`.
    pub fn failure(&self, message: impl Into<String>) -> Failure {
        let mut f = Failure::new(self.kind, message);
        f.retry_after = self.retry_after;
        if self.reset_at.is_some() {
            f.rate = Some(RateSignal {
                reset_at: self.reset_at,
                ..RateSignal::default()
            });
        }
        f
    }
}

/// Phrases the CLIs print when an account's usage limit or the API's rate limit
/// is reached (Claude Code: "Claude AI usage limit reached|<epoch>", "5-hour
/// limit reached ∙ resets 3pm"; Codex: "You've hit your usage limit … try again
/// in 3 days 6 hours"; Gemini: "RESOURCE_EXHAUSTED", "Quota exceeded for metric",
/// "You have exhausted your capacity on this model").
static RATE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)usage limit|limit reached|rate[ _-]?limit|\b429\b|resource_exhausted|quota exceeded|exceeded your current quota|exhausted your (?:capacity|daily quota|quota)|too many requests|terminalquotaerror|retryablequotaerror",
    )
    .ok()
});

/// Phrases for a missing, bad or expired credential (Claude Code: "Invalid API key
/// · Please run /login"; Codex: 401 Unauthorized; Gemini: exit status 41).
static AUTH: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)invalid api key|invalid_api_key|api key not valid|/login|not logged in|unauthori[sz]ed|\b401\b|\b403\b|authentication[ _](?:error|failed|required)|oauth token (?:has )?expired|token (?:is )?expired|permission_denied|please (?:log ?in|sign in|set an auth method)",
    )
    .ok()
});

/// Phrases for a failing API (5xx, Anthropic's 529 "overloaded").
static SERVER: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:500|502|503|504|529)\b|overloaded|internal server error|service unavailable|bad gateway|server error",
    )
    .ok()
});

/// Phrases for a network failure on the CLI's side.
static CONNECT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)econnrefused|econnreset|enotfound|etimedout|connection refused|connection reset|error sending request|stream disconnected|fetch failed|network error|dns error",
    )
    .ok()
});

/// An HTTP status the CLI quotes: "API Error: 400 …", "unexpected status 401".
static STATUS: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:api error|status|status code|error code)[: ]+(\d{3})\b").ok()
});

/// Claude Code's "usage limit reached|1767225600": the reset as a Unix epoch.
static EPOCH: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)limit reached\|(\d{9,11})\b").ok());

/// Where a relative reset span starts.
static SPAN_START: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:try again in|retry in|retry after|reset after|resets in|reset in)\s+").ok()
});

/// One `<number><unit>` of a span; longest unit names first so `ms` is not `m`.
static SPAN_PART: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(\d+(?:\.\d+)?)\s*(milliseconds?|ms|seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d)",
    )
    .ok()
});

/// Gemini's `"retryDelay": "40s"` inside a quoted API error.
static RETRY_DELAY: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r#"(?i)retryDelay\\?"\s*:\s*\\?"(\d+(?:\.\d+)?)s"#).ok());

// The patterns are constants, compiled on first use; `all_patterns_compile`
// proves they do. Were one ever not to, it matches nothing (the failure is then
// read as Malformed) rather than panicking in a server.
fn is_match(re: &LazyLock<Option<Regex>>, text: &str) -> bool {
    re.as_ref().is_some_and(|re| re.is_match(text))
}

fn captures<'t>(re: &LazyLock<Option<Regex>>, text: &'t str) -> Option<regex::Captures<'t>> {
    re.as_ref()?.captures(text)
}

/// Reads `text` (an error message, stderr, or both). `None` when it names none
/// of the known failures.
pub fn read(text: &str) -> Option<Reading> {
    let quoted = captures(&STATUS, text)
        .and_then(|c| c.get(1)?.as_str().parse::<u16>().ok())
        .and_then(from_status);
    let kind = if is_match(&RATE, text) {
        FailureKind::RateLimited
    } else if let Some(kind) = quoted {
        kind
    } else if is_match(&AUTH, text) {
        FailureKind::Auth
    } else if is_match(&CONNECT, text) {
        FailureKind::Connect
    } else if is_match(&SERVER, text) {
        FailureKind::Server
    } else {
        return None;
    };
    let (retry_after, reset_at) = if kind == FailureKind::RateLimited {
        (retry_span(text), reset_epoch(text))
    } else {
        (None, None)
    };
    Some(Reading {
        kind,
        retry_after,
        reset_at,
    })
}

/// The failure kind an HTTP status reported by a CLI means.
pub fn from_status(status: u16) -> Option<FailureKind> {
    match status {
        429 => Some(FailureKind::RateLimited),
        401 | 403 => Some(FailureKind::Auth),
        500..=599 => Some(FailureKind::Server),
        400..=499 => Some(FailureKind::Rejected),
        _ => None,
    }
}

fn reset_epoch(text: &str) -> Option<DateTime<Utc>> {
    let secs: i64 = captures(&EPOCH, text)?.get(1)?.as_str().parse().ok()?;
    DateTime::from_timestamp(secs, 0)
}

/// The first reset span in `text`: "try again in 3 days 6 hours 57 minutes",
/// "Please retry in 40.02s", "reset after 19h14m47s", or a `retryDelay`.
pub fn retry_span(text: &str) -> Option<Duration> {
    if let Some(m) = SPAN_START.as_ref().and_then(|re| re.find(text)) {
        let tail = span_tail(&text[m.end()..]);
        let mut total = 0.0_f64;
        let mut any = false;
        for c in SPAN_PART.iter().flat_map(|re| re.captures_iter(tail)) {
            let (Some(n), Some(unit)) = (c.get(1), c.get(2)) else {
                continue;
            };
            let Ok(n) = n.as_str().parse::<f64>() else {
                continue;
            };
            total += n * unit_seconds(unit.as_str());
            any = true;
        }
        if any && total.is_finite() && total >= 0.0 {
            return Some(Duration::from_secs_f64(total));
        }
    }
    let secs: f64 = captures(&RETRY_DELAY, text)?
        .get(1)?
        .as_str()
        .parse()
        .ok()?;
    Some(Duration::from_secs_f64(secs))
}

/// The span's own words: digits, letters, spaces, commas and decimal points, up
/// to the end of its sentence.
fn span_tail(s: &str) -> &str {
    let bytes = s.as_bytes();
    let mut end = 0;
    while end < bytes.len() {
        let b = bytes[end];
        let decimal_point = b == b'.' && bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
        if b.is_ascii_alphanumeric() || b == b' ' || b == b',' || decimal_point {
            end += 1;
        } else {
            break;
        }
    }
    &s[..end]
}

fn unit_seconds(unit: &str) -> f64 {
    let u = unit.to_ascii_lowercase();
    if u.starts_with("ms") || u.starts_with("milli") {
        0.001
    } else if u.starts_with('s') {
        1.0
    } else if u.starts_with('m') {
        60.0
    } else if u.starts_with('h') {
        3600.0
    } else {
        86_400.0
    }
}

/// Dollars as a CLI reports them (`total_cost_usd`) → nano-dollars, rounded up
/// to a whole nano-dollar. The CLIs sum float dollars, so a last-bit artefact
/// (0.30000000000000004) is float noise, not a fraction of a nano-dollar: within a
/// millionth of a whole nano-dollar counts as that whole.
pub fn usd_to_nanos_ceil(usd: f64) -> Option<i64> {
    if !usd.is_finite() || !(0.0..=1e9).contains(&usd) {
        return None;
    }
    let x = usd * 1e9;
    let nearest = x.round();
    let nanos = if (x - nearest).abs() < 1e-6 {
        nearest
    } else {
        x.ceil()
    };
    Some(nanos as i64)
}

/// The last non-empty line of `s`, cut short: where a log ends with its error.
pub fn last_line(s: &str) -> &str {
    cut(s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(""))
}

/// The first non-empty line of `s`, cut short: the summary of an error message.
pub fn first_line(s: &str) -> &str {
    cut(s.lines().find(|l| !l.trim().is_empty()).unwrap_or(""))
}

fn cut(line: &str) -> &str {
    let line = line.trim();
    let mut end = line.len().min(200);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_patterns_compile() {
        for re in [
            &RATE,
            &AUTH,
            &SERVER,
            &CONNECT,
            &STATUS,
            &EPOCH,
            &SPAN_START,
            &SPAN_PART,
            &RETRY_DELAY,
        ] {
            assert!(re.is_some());
        }
    }

    #[test]
    fn readings_of_known_texts() {
        let cases: &[(&str, Option<FailureKind>, Option<u64>)] = &[
            (
                "Claude AI usage limit reached|1767225600",
                Some(FailureKind::RateLimited),
                None,
            ),
            (
                "5-hour limit reached ∙ resets 3pm",
                Some(FailureKind::RateLimited),
                None,
            ),
            (
                "You've hit your usage limit. To get more access now, send a request to your admin or try again in 3 days 6 hours 57 minutes.",
                Some(FailureKind::RateLimited),
                Some(3 * 86_400 + 6 * 3600 + 57 * 60),
            ),
            (
                "You've hit your usage limit. Visit https://chatgpt.com/codex/settings/usage to purchase more credits or try again at 3:28 PM.",
                Some(FailureKind::RateLimited),
                None,
            ),
            (
                "Quota exceeded for metric: generate_content_free_tier_requests, limit: 2\nPlease retry in 40.5s.",
                Some(FailureKind::RateLimited),
                Some(40),
            ),
            (
                "You have exhausted your capacity on this model. Your quota will reset after 19h14m47s.",
                Some(FailureKind::RateLimited),
                Some(19 * 3600 + 14 * 60 + 47),
            ),
            (
                "Invalid API key · Please run /login",
                Some(FailureKind::Auth),
                None,
            ),
            (
                "unexpected status 401 Unauthorized: Missing bearer",
                Some(FailureKind::Auth),
                None,
            ),
            (
                "API Error: 529 {\"type\":\"overloaded_error\"}",
                Some(FailureKind::Server),
                None,
            ),
            (
                "stream disconnected before completion: error sending request",
                Some(FailureKind::Connect),
                None,
            ),
            (
                "API Error: 400 prompt is too long",
                Some(FailureKind::Rejected),
                None,
            ),
            ("the model wrote a poem", None, None),
        ];
        for (text, kind, secs) in cases {
            let r = read(text);
            assert_eq!(r.as_ref().map(|r| r.kind), *kind, "{text}");
            let got = r.and_then(|r| r.retry_after).map(|d| d.as_secs());
            assert_eq!(got, *secs, "{text}");
        }
    }

    #[test]
    fn epoch_reset_becomes_reset_at() {
        let r = read("Claude AI usage limit reached|1767225600").unwrap();
        assert_eq!(r.reset_at.unwrap().timestamp(), 1_767_225_600);
    }

    #[test]
    fn retry_in_milliseconds() {
        let d = retry_span("Please retry in 900.2ms.").unwrap();
        assert_eq!(d.as_millis(), 900);
    }

    #[test]
    fn dollars_round_up_to_whole_nanos() {
        assert_eq!(usd_to_nanos_ceil(0.0123), Some(12_300_000));
        assert_eq!(usd_to_nanos_ceil(0.1 + 0.2), Some(300_000_000));
        assert_eq!(usd_to_nanos_ceil(0.000_000_000_2), Some(1));
        assert_eq!(usd_to_nanos_ceil(0.0000000015), Some(2));
        assert_eq!(usd_to_nanos_ceil(2.0), Some(2_000_000_000));
        assert_eq!(usd_to_nanos_ceil(0.0), Some(0));
        assert_eq!(usd_to_nanos_ceil(-1.0), None);
        assert_eq!(usd_to_nanos_ceil(f64::NAN), None);
    }
}
