//! Anthropic Messages (`POST /v1/messages`, API version 2023-06-01).
//!
//! `build` and `parse` are pure (golden-tested in `fixtures/providers/anthropic/`);
//! sending is [`super::http::call`]'s job. Anthropic's `input_tokens` already
//! excludes cache reads and writes, so its usage maps one to one.

// `Failure` (defined in mod.rs) is ~200 bytes and is built at most once per
// provider round trip, so boxing it would buy nothing measurable.
#![allow(clippy::result_large_err)]

use ::http::HeaderMap;
use serde_json::{Value, json};

use super::http::{self as wire, Built};
use super::{Answer, Failure, FailureKind, Request, Target};
use crate::metering::pricing::Usage;

/// The API version this adapter speaks.
pub const API_VERSION: &str = "2023-06-01";

/// `POST {base_url}/v1/messages` with `x-api-key` and `anthropic-version`.
pub fn build(target: &Target, req: &Request) -> Result<Built, Failure> {
    let base = wire::base_url(target, "anthropic")?;
    let key = wire::api_key(target, "anthropic")?;
    let mut body = json!({
        "model": req.model,
        "max_tokens": req.max_output_tokens,
        "messages": [{"role": "user", "content": req.prompt}],
    });
    if let Some(system) = &req.system {
        body["system"] = json!(system);
    }
    Ok(Built {
        url: format!("{base}/v1/messages"),
        headers: vec![
            ("x-api-key".to_string(), key.to_string()),
            ("anthropic-version".to_string(), API_VERSION.to_string()),
        ],
        body,
    })
}

/// Parses a message or an error (`{"type":"error","error":{"type","message"}}`;
/// 529 `overloaded_error` is a server failure like any 5xx).
pub fn parse(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<Answer, Failure> {
    let rate = wire::anthropic_rate(headers);
    let with_rate = |mut f: Failure| {
        f.rate = rate.clone();
        f
    };
    let v = wire::success_json(status, headers, body, &rate)?;
    let Some(blocks) = v.get("content").and_then(Value::as_array) else {
        let detail = wire::error_detail(&v).unwrap_or_else(|| "no content".to_string());
        let mut f = Failure::new(
            FailureKind::Malformed,
            format!("HTTP {status} answer is not a message: {detail}"),
        );
        f.status = Some(status);
        return Err(with_rate(f));
    };
    // Text blocks only (thinking and tool blocks are not the answer), joined as
    // they stand: consecutive text blocks (around citations) are one text.
    let text: String = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let stop_reason = v
        .get("stop_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Answer {
        text,
        usage: usage(v.get("usage")),
        reported_cost_nanos: None,
        model: v.get("model").and_then(Value::as_str).map(str::to_string),
        refused: stop_reason.as_deref() == Some("refusal"),
        finish_reason: stop_reason,
        rate,
    })
}

fn usage(u: Option<&Value>) -> Option<Usage> {
    let u = u.filter(|u| u.is_object())?;
    let input = wire::count(u.get("input_tokens"));
    let output = wire::count(u.get("output_tokens"));
    if input.is_none() && output.is_none() {
        return None;
    }
    Some(Usage {
        input: input.unwrap_or(0),
        output: output.unwrap_or(0),
        cache_read: wire::count(u.get("cache_read_input_tokens")).unwrap_or(0),
        cache_write: wire::count(u.get("cache_creation_input_tokens")).unwrap_or(0),
    })
}
