//! The one HTTP sender for the HTTP adapters, and the helpers their parsers share.
//!
//! [`call`] builds the request with the adapter's pure `build`, POSTs it with
//! reqwest, reads the body under a size bound, and hands status, headers and body
//! to the adapter's pure `parse` through [`respond`], which also scrubs the
//! target's secret out of everything the parser sees. The request's `timeout`
//! bounds the whole call (connect to last byte); a cancelled token drops the
//! request at once. This module never retries, never meters and never logs a
//! secret, a header value or a body.
//!
//! The shared helpers map an HTTP status to a [`FailureKind`], read `Retry-After`
//! and the providers' rate-limit headers, and pull a provider's own error message
//! out of its JSON error body.

// `Failure` (defined in mod.rs) is ~200 bytes and is built at most once per
// provider round trip, so boxing it would buy nothing measurable.
#![allow(clippy::result_large_err)]

use std::time::{Duration, Instant};

use ::http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Answer, Failure, FailureKind, RateSignal, Request, Target};
use crate::quota::secret::Secret;

/// The largest response body read; a bigger one fails as `Malformed`. A
/// non-streaming answer is a few kilobytes, a long one well under a megabyte.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Header names that carry a credential; their values are sent marked sensitive
/// and never printed.
const CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "x-api-key", "x-goog-api-key", "api-key"];

/// A request an HTTP adapter built: where to send it, its headers (the
/// credential among them; never logged) and its JSON body.
#[derive(Clone)]
pub struct Built {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

impl std::fmt::Debug for Built {
    // Derived Debug would print the API key; credential values print as `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let shown = if is_credential_header(n) { "***" } else { v };
                (n.as_str(), shown)
            })
            .collect();
        f.debug_struct("Built")
            .field("url", &self.url)
            .field("headers", &headers)
            .field("body", &self.body)
            .finish()
    }
}

fn is_credential_header(name: &str) -> bool {
    CREDENTIAL_HEADERS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
}

/// The client settings the HTTP adapters assume; the ladder builds its one
/// shared `reqwest::Client` from this. No redirects: a redirect to another host
/// would carry `x-api-key` or `x-goog-api-key` along (reqwest strips only
/// `Authorization`), and no provider API redirects a POST; a 3xx comes back as
/// `Malformed`. The connect timeout only bounds a dead host inside the call's own
/// timeout.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("vaultline/", env!("CARGO_PKG_VERSION")))
}

/// Builds the wire request for a target and a call.
pub type Build = fn(&Target, &Request) -> Result<Built, Failure>;
/// Parses a response (status, headers, body) into an answer or a classified failure.
pub type Parse = fn(u16, &::http::HeaderMap, &[u8]) -> Result<Answer, Failure>;

/// Sends one call: build, POST, read at most [`MAX_BODY_BYTES`], parse.
/// Returns `Timeout` when `req.timeout` passes first and `Cancelled` when `ct`
/// is cancelled first; in both cases the request is dropped (its connection closed).
pub async fn call(
    client: &reqwest::Client,
    target: &Target,
    req: &Request,
    ct: &CancellationToken,
    build: Build,
    parse: Parse,
) -> Result<Answer, Failure> {
    let built = build(target, req)?;
    let started = Instant::now();
    let outcome = tokio::select! {
        biased;
        _ = ct.cancelled() => Err(Failure::new(FailureKind::Cancelled, "cancelled by the caller")),
        r = tokio::time::timeout(req.timeout, send(client, &built, req.timeout)) => match r {
            Err(_) => Err(timed_out(req.timeout)),
            Ok(Err(f)) => Err(f),
            Ok(Ok((status, headers, body))) => respond(target, parse, status, &headers, &body),
        },
    };
    let outcome = outcome.map_err(|f| scrub_failure(f, target.secret.as_ref()));
    tracing::debug!(
        provider = target.kind.as_str(),
        model = %req.model,
        outcome = outcome.as_ref().map_or_else(|f| f.kind.as_str(), |_| "ok"),
        status = outcome.as_ref().err().and_then(|f| f.status),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "provider call"
    );
    outcome
}

fn timed_out(limit: Duration) -> Failure {
    Failure::new(
        FailureKind::Timeout,
        format!(
            "no complete answer within the {} ms timeout",
            limit.as_millis()
        ),
    )
}

/// POSTs `built` and reads the whole body (bounded). Transport errors are
/// classified here; the status is the parser's business.
async fn send(
    client: &reqwest::Client,
    built: &Built,
    timeout: Duration,
) -> Result<(u16, HeaderMap, Vec<u8>), Failure> {
    let mut headers = HeaderMap::new();
    for (name, value) in &built.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            Failure::new(
                FailureKind::Rejected,
                format!("header name {name:?} is not valid"),
            )
        })?;
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            // Never echo the value: it may be the credential.
            Failure::new(
                FailureKind::Rejected,
                format!("the value of header {name} is not a valid header value"),
            )
        })?;
        if is_credential_header(name.as_str()) {
            value.set_sensitive(true);
        }
        headers.insert(name, value);
    }
    let mut resp = client
        .post(&built.url)
        .headers(headers)
        .json(&built.body)
        .timeout(timeout)
        .send()
        .await
        .map_err(transport_failure)?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(too_big(status));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport_failure)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_big(status));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, headers, body))
}

fn too_big(status: u16) -> Failure {
    let mut f = Failure::new(
        FailureKind::Malformed,
        format!(
            "response body exceeds the {} MiB limit",
            MAX_BODY_BYTES / (1024 * 1024)
        ),
    );
    f.status = Some(status);
    f
}

/// A reqwest error as a failure: its timeout as `Timeout`, anything else on the
/// wire (refused, DNS, TLS, a body cut short) as `Connect`. The message is the
/// innermost cause, without the URL.
fn transport_failure(e: reqwest::Error) -> Failure {
    let kind = if e.is_timeout() {
        FailureKind::Timeout
    } else if e.is_builder() {
        FailureKind::Rejected
    } else {
        FailureKind::Connect
    };
    let what = if e.is_body() || e.is_decode() {
        "connection broke while reading the answer"
    } else if e.is_builder() {
        "could not build the request"
    } else if e.is_timeout() {
        "timed out"
    } else {
        "could not reach the provider"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        cause = e.without_url().to_string();
    }
    Failure::new(kind, format!("{what}: {cause}"))
}

/// Hands a response to `parse` with the target's secret scrubbed out of the body
/// first (providers echo keys in error messages), then scrubs the failure's
/// message again. Pure: the golden tests call it with recorded responses.
pub fn respond(
    target: &Target,
    parse: Parse,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Answer, Failure> {
    let secret = target.secret.as_ref();
    let scrubbed;
    let body = match secret.map(Secret::expose) {
        Some(key) if !key.is_empty() => {
            // Borrowed (no copy) when the body is UTF-8, as JSON is.
            let text = String::from_utf8_lossy(body);
            if text.contains(key) {
                scrubbed = text.replace(key, "***");
                scrubbed.as_bytes()
            } else {
                body
            }
        }
        _ => body,
    };
    parse(status, headers, body).map_err(|f| scrub_failure(f, secret))
}

/// Replaces every occurrence of the secret in `text` with `***`.
pub fn scrub(text: &str, secret: Option<&Secret>) -> String {
    match secret.map(Secret::expose) {
        Some(key) if !key.is_empty() => text.replace(key, "***"),
        _ => text.to_string(),
    }
}

fn scrub_failure(mut f: Failure, secret: Option<&Secret>) -> Failure {
    f.message = scrub(&f.message, secret);
    f
}

// ---- helpers for the adapters' builders ----

/// The target's base URL without a trailing slash, or a `Rejected` failure naming
/// the adapter (a config error: the ladder skips the rung).
pub fn base_url<'a>(target: &'a Target, adapter: &str) -> Result<&'a str, Failure> {
    match target.base_url.as_deref().map(|u| u.trim_end_matches('/')) {
        Some(u) if !u.is_empty() => Ok(u),
        _ => Err(Failure::new(
            FailureKind::Rejected,
            format!("the {adapter} target has no base_url"),
        )),
    }
}

/// The target's API key, or an `Auth` failure: the adapter's API always needs one.
pub fn api_key<'a>(target: &'a Target, adapter: &str) -> Result<&'a str, Failure> {
    match target.secret.as_ref().map(Secret::expose) {
        Some(k) if !k.is_empty() => Ok(k),
        _ => Err(Failure::new(
            FailureKind::Auth,
            format!("the {adapter} target has no API key"),
        )),
    }
}

// ---- helpers for the adapters' parsers ----

/// The failure kind an HTTP status means: 429 rate limited; 5xx (and 529
/// overloaded) server; 401/403 credential; any other 4xx rejected; anything else
/// that is not a success (1xx, 3xx: we follow no redirects to a provider) malformed.
pub fn status_kind(status: u16) -> FailureKind {
    match status {
        429 => FailureKind::RateLimited,
        401 | 403 => FailureKind::Auth,
        400..=499 => FailureKind::Rejected,
        500..=599 => FailureKind::Server,
        _ => FailureKind::Malformed,
    }
}

/// True for a 2xx status.
pub fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// The body as JSON, or `Malformed` saying it is not.
/// The JSON body of a 2xx, or the classified failure of any other status (its
/// message from the provider's error body); `rate` goes on the failure.
pub fn success_json(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    rate: &Option<RateSignal>,
) -> Result<Value, Failure> {
    let r = if is_success(status) {
        json_body(status, body)
    } else {
        let detail = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| error_detail(&v));
        Err(status_failure(status, headers, body, detail))
    };
    r.map_err(|mut f| {
        f.rate = rate.clone();
        f
    })
}

pub fn json_body(status: u16, body: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(body).map_err(|e| {
        let mut f = Failure::new(
            FailureKind::Malformed,
            format!(
                "HTTP {status} answer is not JSON ({} bytes): {e}",
                body.len()
            ),
        );
        f.status = Some(status);
        f
    })
}

/// A failure for a non-success status: kind from the status, `Retry-After`, and
/// `detail` (the provider's error type and message, already extracted) or a
/// short snippet of the body.
pub fn status_failure(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    detail: Option<String>,
) -> Failure {
    let detail = detail.unwrap_or_else(|| body_snippet(body));
    let mut f = Failure::new(status_kind(status), format!("HTTP {status}: {detail}"));
    f.status = Some(status);
    f.retry_after = retry_after(headers);
    f
}

/// `type: message` from the common JSON error shapes: `{"error": {"message",
/// "type"|"status"|"code"}}` (OpenAI, Anthropic, Gemini), `{"error": "text"}`
/// (Ollama), `{"message": ..}`, `{"detail": ..}` (FastAPI servers such as vLLM).
pub fn error_detail(v: &Value) -> Option<String> {
    let err = v.get("error");
    let (label, message) = match err {
        Some(Value::String(s)) => (None, Some(s.clone())),
        Some(e @ Value::Object(_)) => {
            let label = ["type", "status", "code"]
                .iter()
                .find_map(|k| e.get(*k).and_then(Value::as_str))
                .map(str::to_string);
            (label, e.get("message").map(text_of))
        }
        _ => (
            None,
            v.get("message").or_else(|| v.get("detail")).map(text_of),
        ),
    };
    match (label, message) {
        (Some(l), Some(m)) => Some(format!("{l}: {m}")),
        (None, Some(m)) => Some(m),
        (Some(l), None) => Some(l),
        (None, None) => None,
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The start of a body that is not a known error shape, on one line, or its size
/// when it is not text. A proxy's HTML error page is told apart by this.
fn body_snippet(body: &[u8]) -> String {
    const SNIPPET: usize = 120;
    if body.is_empty() {
        return "empty body".to_string();
    }
    match std::str::from_utf8(body) {
        Ok(text) => {
            let one_line: String = text
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(SNIPPET)
                .collect();
            let one_line = one_line.trim();
            if text.chars().count() > SNIPPET {
                format!("{one_line}…")
            } else {
                one_line.to_string()
            }
        }
        Err(_) => format!("non-text body of {} bytes", body.len()),
    }
}

/// `Retry-After` (or the `retry-after-ms` both OpenAI and Anthropic send) as a
/// wait from now.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, Utc::now())
}

/// [`retry_after`] against a given clock: delta seconds, or an HTTP date (a
/// date in the past means "now": zero).
pub fn retry_after_at(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    if let Some(ms) = header_str(headers, "retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

fn header_i64(headers: &HeaderMap, name: &str) -> Option<i64> {
    header_str(headers, name)?.parse().ok()
}

/// A Go-style duration as OpenAI writes it: `1s`, `6m0s`, `20ms`, `1h2m3.5s`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs_per = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * secs_per;
    }
    (total.is_finite() && total >= 0.0).then(|| Duration::from_secs_f64(total))
}

/// One limit as a response states it.
struct Limit {
    limit: Option<i64>,
    remaining: Option<i64>,
    reset_at: Option<DateTime<Utc>>,
}

impl Limit {
    /// Fraction left; unknown counts as full, so a limit we know little about
    /// is never taken as the nearest to running out.
    fn left(&self) -> f64 {
        match (self.limit, self.remaining) {
            (Some(l), Some(r)) if l > 0 => r as f64 / l as f64,
            (_, Some(0)) => 0.0,
            _ => 1.0,
        }
    }
}

/// The reset of the limit nearest to running out (ties: the earliest reset).
fn nearest_reset(limits: &[&Limit]) -> Option<DateTime<Utc>> {
    limits
        .iter()
        .filter(|l| l.reset_at.is_some())
        .min_by(|a, b| {
            a.left()
                .total_cmp(&b.left())
                .then(a.reset_at.cmp(&b.reset_at))
        })
        .and_then(|l| l.reset_at)
}

fn signal(requests: &Limit, tokens: &Limit) -> Option<RateSignal> {
    let s = RateSignal {
        requests_limit: requests.limit,
        requests_remaining: requests.remaining,
        tokens_limit: tokens.limit,
        tokens_remaining: tokens.remaining,
        used_percent: None,
        reset_at: nearest_reset(&[requests, tokens]),
    };
    (!s.is_empty()).then_some(s)
}

/// OpenAI's `x-ratelimit-{limit,remaining}-{requests,tokens}` and
/// `x-ratelimit-reset-{requests,tokens}` (durations from now).
pub fn openai_rate(headers: &HeaderMap) -> Option<RateSignal> {
    openai_rate_at(headers, Utc::now())
}

/// [`openai_rate`] against a given clock.
pub fn openai_rate_at(headers: &HeaderMap, now: DateTime<Utc>) -> Option<RateSignal> {
    let limit = |what: &str| Limit {
        limit: header_i64(headers, &format!("x-ratelimit-limit-{what}")),
        remaining: header_i64(headers, &format!("x-ratelimit-remaining-{what}")),
        reset_at: header_str(headers, &format!("x-ratelimit-reset-{what}"))
            .and_then(parse_duration)
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| now + d),
    };
    signal(&limit("requests"), &limit("tokens"))
}

/// Anthropic's `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-
/// {limit,remaining,reset}` (resets in RFC 3339). The token figures are the
/// combined `tokens` limit when sent, else the input-token limit (the one a
/// prompt-heavy call runs out of first), else the output-token limit; the reset
/// is that of whichever limit is nearest to running out.
pub fn anthropic_rate(headers: &HeaderMap) -> Option<RateSignal> {
    let limit = |what: &str| Limit {
        limit: header_i64(headers, &format!("anthropic-ratelimit-{what}-limit")),
        remaining: header_i64(headers, &format!("anthropic-ratelimit-{what}-remaining")),
        reset_at: header_str(headers, &format!("anthropic-ratelimit-{what}-reset"))
            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
            .map(|d| d.with_timezone(&Utc)),
    };
    let requests = limit("requests");
    let token_limits = [
        limit("tokens"),
        limit("input-tokens"),
        limit("output-tokens"),
    ];
    let tokens = token_limits
        .iter()
        .find(|l| l.limit.is_some() || l.remaining.is_some())
        .unwrap_or(&token_limits[0]);
    let mut s = signal(&requests, tokens)?;
    let all: Vec<&Limit> = std::iter::once(&requests).chain(&token_limits).collect();
    s.reset_at = nearest_reset(&all);
    Some(s)
}

/// A JSON number or numeric string as u64 (token counts).
pub fn count(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn statuses_map_to_kinds() {
        let cases = [
            (429, FailureKind::RateLimited),
            (500, FailureKind::Server),
            (502, FailureKind::Server),
            (503, FailureKind::Server),
            (529, FailureKind::Server),
            (401, FailureKind::Auth),
            (403, FailureKind::Auth),
            (400, FailureKind::Rejected),
            (404, FailureKind::Rejected),
            (413, FailureKind::Rejected),
            (302, FailureKind::Malformed),
        ];
        for (status, kind) in cases {
            assert_eq!(status_kind(status), kind, "{status}");
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = at("2025-06-01T12:00:00Z");
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<Duration>);
        let cases: &[Case] = &[
            (&[("retry-after", "7")], Some(Duration::from_secs(7))),
            (
                &[("retry-after", "Sun, 01 Jun 2025 12:00:30 GMT")],
                Some(Duration::from_secs(30)),
            ),
            (
                &[("retry-after", "Sun, 01 Jun 2025 11:00:00 GMT")],
                Some(Duration::ZERO),
            ),
            (
                &[("retry-after", "7"), ("retry-after-ms", "1500")],
                Some(Duration::from_millis(1500)),
            ),
            (&[("retry-after", "soon")], None),
            (&[], None),
        ];
        for (h, want) in cases {
            assert_eq!(retry_after_at(&headers(h), now), *want, "{h:?}");
        }
    }

    #[test]
    fn durations() {
        let cases = [
            ("1s", Some(1000)),
            ("6m0s", Some(360_000)),
            ("20ms", Some(20)),
            ("1h2m3.5s", Some(3_723_500)),
            ("59.713s", Some(59_713)),
            ("", None),
            ("5 parsecs", None),
            ("s", None),
        ];
        for (s, ms) in cases {
            assert_eq!(parse_duration(s).map(|d| d.as_millis() as u64), ms, "{s:?}");
        }
    }

    #[test]
    fn openai_rate_headers_pick_the_tighter_reset() {
        let now = at("2025-06-01T12:00:00Z");
        let h = headers(&[
            ("x-ratelimit-limit-requests", "500"),
            ("x-ratelimit-remaining-requests", "499"),
            ("x-ratelimit-reset-requests", "120ms"),
            ("x-ratelimit-limit-tokens", "30000"),
            ("x-ratelimit-remaining-tokens", "100"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]);
        let s = openai_rate_at(&h, now).unwrap();
        assert_eq!(s.requests_limit, Some(500));
        assert_eq!(s.requests_remaining, Some(499));
        assert_eq!(s.tokens_limit, Some(30000));
        assert_eq!(s.tokens_remaining, Some(100));
        assert_eq!(s.reset_at, Some(at("2025-06-01T12:06:00Z")));
        assert_eq!(openai_rate_at(&HeaderMap::new(), now), None);
    }

    #[test]
    fn anthropic_rate_headers() {
        let h = headers(&[
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-requests-reset", "2025-06-01T12:00:30Z"),
            ("anthropic-ratelimit-input-tokens-limit", "40000"),
            ("anthropic-ratelimit-input-tokens-remaining", "39000"),
            (
                "anthropic-ratelimit-input-tokens-reset",
                "2025-06-01T12:00:01Z",
            ),
        ]);
        let s = anthropic_rate(&h).unwrap();
        assert_eq!(s.requests_remaining, Some(0));
        assert_eq!(s.tokens_limit, Some(40000));
        assert_eq!(s.tokens_remaining, Some(39000));
        assert_eq!(s.reset_at, Some(at("2025-06-01T12:00:30Z")));
    }

    #[test]
    fn error_details_from_the_common_shapes() {
        let cases = [
            (
                r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#,
                Some("requests: Rate limit reached"),
            ),
            (
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                Some("overloaded_error: Overloaded"),
            ),
            (
                r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#,
                Some("RESOURCE_EXHAUSTED: Quota exceeded"),
            ),
            (
                r#"{"error":"model 'x' not found"}"#,
                Some("model 'x' not found"),
            ),
            (r#"{"detail":"Not Found"}"#, Some("Not Found")),
            (r#"{"choices":[]}"#, None),
        ];
        for (body, want) in cases {
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(error_detail(&v).as_deref(), want, "{body}");
        }
    }

    #[test]
    fn scrubbing_and_snippets() {
        let key = Secret::new("sk-live-abcdefgh12345678");
        assert_eq!(
            scrub("bad key sk-live-abcdefgh12345678 given", Some(&key)),
            "bad key *** given"
        );
        assert_eq!(scrub("no key here", None), "no key here");
        assert_eq!(body_snippet(b""), "empty body");
        assert_eq!(body_snippet(b"<html>\n<b>502</b>"), "<html> <b>502</b>");
        assert_eq!(body_snippet(&[0xff, 0xfe]), "non-text body of 2 bytes");
        let long = "x".repeat(500);
        assert!(body_snippet(long.as_bytes()).chars().count() <= 121);
    }

    #[test]
    fn built_debug_hides_credentials() {
        let b = Built {
            url: "https://example.test/v1".into(),
            headers: vec![
                ("Authorization".into(), "Bearer sk-secret-123456".into()),
                ("x-api-key".into(), "sk-ant-secret".into()),
                ("anthropic-version".into(), "2023-06-01".into()),
            ],
            body: serde_json::json!({}),
        };
        let text = format!("{b:?}");
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("2023-06-01"));
    }
}
