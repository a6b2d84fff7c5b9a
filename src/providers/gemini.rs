//! Gemini generateContent (`POST {base}/models/{model}:generateContent`).
//!
//! `build` and `parse` are pure (golden-tested in `fixtures/providers/gemini/`);
//! sending is [`super::http::call`]'s job. The key goes in `x-goog-api-key`, never
//! in the URL (a `?key=` query string ends up in proxy and access logs).
//!
//! Two wire facts shape the parser: `promptTokenCount` includes
//! `cachedContentTokenCount`, and thinking tokens (`thoughtsTokenCount`) are billed
//! as output but not counted in `candidatesTokenCount`. An invalid key is answered
//! with HTTP 400 `INVALID_ARGUMENT` and an `ErrorInfo` whose reason is
//! `API_KEY_INVALID`, which is an `Auth` failure here, not `Rejected`.

// `Failure` (defined in mod.rs) is ~200 bytes and is built at most once per
// provider round trip, so boxing it would buy nothing measurable.
#![allow(clippy::result_large_err)]

use ::http::HeaderMap;
use serde_json::{Value, json};

use super::http::{self as wire, Built};
use super::{Answer, Failure, FailureKind, Request, Target};
use crate::metering::pricing::Usage;

/// Finish and block reasons that mean the provider withheld the answer on policy.
const REFUSALS: [&str; 5] = [
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "IMAGE_SAFETY",
];

/// `POST {base_url}/models/{model}:generateContent` with `x-goog-api-key`.
pub fn build(target: &Target, req: &Request) -> Result<Built, Failure> {
    let base = wire::base_url(target, "gemini")?;
    let key = wire::api_key(target, "gemini")?;
    let model = req.model.strip_prefix("models/").unwrap_or(&req.model);
    // The model is a path segment: refuse anything that could change the path.
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if model.is_empty() || !model.chars().all(plain) {
        return Err(Failure::new(
            FailureKind::Rejected,
            format!(
                "model {:?} is not a Gemini model id (letters, digits, - . _)",
                req.model
            ),
        ));
    }
    let mut body = json!({
        "contents": [{"role": "user", "parts": [{"text": req.prompt}]}],
        "generationConfig": {"maxOutputTokens": req.max_output_tokens},
    });
    if let Some(system) = &req.system {
        body["systemInstruction"] = json!({"parts": [{"text": system}]});
    }
    Ok(Built {
        url: format!("{base}/models/{model}:generateContent"),
        headers: vec![("x-goog-api-key".to_string(), key.to_string())],
        body,
    })
}

/// Parses a `GenerateContentResponse` or a Google API error
/// (`{"error":{"code","message","status","details"}}`).
pub fn parse(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<Answer, Failure> {
    if !wire::is_success(status) {
        return Err(error(status, headers, body));
    }
    let v = wire::json_body(status, body)?;
    let usage = usage(v.get("usageMetadata"));
    let model = v
        .get("modelVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    let candidate = v
        .get("candidates")
        .and_then(Value::as_array)
        .and_then(|c| c.first());
    let Some(candidate) = candidate else {
        // A blocked prompt has no candidates, only the reason.
        if let Some(reason) = v
            .get("promptFeedback")
            .and_then(|p| p.get("blockReason"))
            .and_then(Value::as_str)
        {
            return Ok(Answer {
                text: String::new(),
                usage,
                reported_cost_nanos: None,
                model,
                finish_reason: Some(reason.to_string()),
                refused: true,
                rate: None,
            });
        }
        let mut f = Failure::new(
            FailureKind::Malformed,
            format!("HTTP {status} answer has no candidates"),
        );
        f.status = Some(status);
        return Err(f);
    };
    let text: String = candidate
        .get("content")
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let finish_reason = candidate
        .get("finishReason")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Answer {
        text,
        usage,
        reported_cost_nanos: None,
        model,
        refused: finish_reason
            .as_deref()
            .is_some_and(|r| REFUSALS.contains(&r)),
        finish_reason,
        rate: None,
    })
}

/// A Google API error: kind from the status (an invalid key's 400 is `Auth`),
/// `Retry-After` or else the `RetryInfo.retryDelay` a 429 carries.
fn error(status: u16, headers: &HeaderMap, body: &[u8]) -> Failure {
    let v = serde_json::from_slice::<Value>(body).ok();
    let detail = v.as_ref().and_then(wire::error_detail);
    let mut f = wire::status_failure(status, headers, body, detail);
    let details = v
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(|e| e.get("details"))
        .and_then(Value::as_array);
    for d in details.into_iter().flatten() {
        let kind = d.get("@type").and_then(Value::as_str).unwrap_or("");
        if kind.ends_with("google.rpc.ErrorInfo")
            && d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID")
        {
            f.kind = FailureKind::Auth;
        }
        if kind.ends_with("google.rpc.RetryInfo") && f.retry_after.is_none() {
            f.retry_after = d
                .get("retryDelay")
                .and_then(Value::as_str)
                .and_then(wire::parse_duration);
        }
    }
    f
}

fn usage(u: Option<&Value>) -> Option<Usage> {
    let u = u.filter(|u| u.is_object())?;
    let prompt = wire::count(u.get("promptTokenCount"));
    let candidates = wire::count(u.get("candidatesTokenCount"));
    let thoughts = wire::count(u.get("thoughtsTokenCount"));
    if prompt.is_none() && candidates.is_none() && thoughts.is_none() {
        return None;
    }
    let cached = wire::count(u.get("cachedContentTokenCount")).unwrap_or(0);
    Some(Usage {
        input: prompt.unwrap_or(0).saturating_sub(cached),
        output: candidates.unwrap_or(0) + thoughts.unwrap_or(0),
        cache_read: cached,
        cache_write: 0,
    })
}
