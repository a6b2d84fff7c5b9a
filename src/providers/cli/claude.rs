//! `claude -p --output-format json`: one result object (the Agent SDK's result
//! message) on stdout. Pure: output in, answer or failure out.
//!
//! Fields read: `type` (`result`), `subtype` (`success`, `error_max_turns`,
//! `error_during_execution`, `error_max_budget_usd`,
//! `error_max_structured_output_retries`), `is_error`, `result`, `errors`,
//! `api_error_status`, `stop_reason`, `total_cost_usd`, `usage`
//! (`input_tokens`, `output_tokens`, `cache_read_input_tokens`,
//! `cache_creation_input_tokens`) and `modelUsage` (per model, camelCase, summed
//! over the whole session and over every model the session used, so it is
//! preferred to `usage` when present). With `--verbose` the CLI prints an array
//! of messages; its last `result` element is read.
//!
//! An API failure arrives as `subtype: success, is_error: true` with the message
//! in `result`. Running out of turns or budget is an answer (possibly empty) with
//! the subtype as its finish reason: the ladder judges it, as any weak answer.

use serde_json::Value;

use super::{Output, count, signals, unreadable};
use crate::metering::pricing::Usage;
use crate::providers::{Answer, Failure, FailureKind};

/// Subtypes where the agent stopped on its own limits: an answer for the ladder to judge.
const STOPPED_SHORT: &[&str] = &[
    "error_max_turns",
    "error_max_budget_usd",
    "error_max_structured_output_retries",
];

pub fn parse(out: &Output) -> Result<Answer, Failure> {
    let Some(v) = result_message(&out.stdout) else {
        return Err(unreadable("claude", out, "no result object"));
    };
    let usage = usage_of(&v);
    let cost = v
        .get("total_cost_usd")
        .and_then(Value::as_f64)
        .and_then(signals::usd_to_nanos_ceil);
    let text = v.get("result").and_then(Value::as_str).unwrap_or_default();
    let subtype = v.get("subtype").and_then(Value::as_str).unwrap_or_default();
    let is_error = v.get("is_error").and_then(Value::as_bool).unwrap_or(false);

    if is_error || subtype.starts_with("error") {
        let errors: Vec<&str> = v
            .get("errors")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let message = if !text.trim().is_empty() {
            text.to_string()
        } else if !errors.is_empty() {
            errors.join("; ")
        } else {
            subtype.to_string()
        };
        let status = v
            .get("api_error_status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok());
        let reading = signals::read(&message);
        let kind = match (status.and_then(signals::from_status), &reading) {
            // The text names a usage limit even when the status is generic.
            (_, Some(r)) if r.kind == FailureKind::RateLimited => Some(r.kind),
            (Some(kind), _) => Some(kind),
            (None, Some(r)) => Some(r.kind),
            (None, None) => None,
        };
        match kind {
            Some(kind) => {
                let mut f = match reading {
                    Some(r) if r.kind == kind => r.failure(""),
                    _ => Failure::new(kind, ""),
                };
                f.message =
                    crate::providers::short(format!("claude: {}", signals::first_line(&message)));
                f.status = status;
                f.usage = usage;
                f.reported_cost_nanos = cost;
                return Err(f);
            }
            None if STOPPED_SHORT.contains(&subtype) => {}
            None => {
                let mut f = Failure::new(
                    FailureKind::Server,
                    format!(
                        "claude reported an error: {}",
                        signals::first_line(&message)
                    ),
                );
                f.usage = usage;
                f.reported_cost_nanos = cost;
                return Err(f);
            }
        }
    }

    let stop_reason = v.get("stop_reason").and_then(Value::as_str);
    let finish_reason = if STOPPED_SHORT.contains(&subtype) {
        Some(subtype.to_string())
    } else {
        stop_reason.map(str::to_string)
    };
    Ok(Answer {
        text: text.to_string(),
        usage,
        reported_cost_nanos: cost,
        model: main_model(&v),
        finish_reason,
        refused: stop_reason == Some("refusal"),
        rate: None,
    })
}

/// The result message: the whole stdout, the last `result` element of a
/// `--verbose` array, or the last line that is a result object.
fn result_message(stdout: &str) -> Option<Value> {
    let is_result = |v: &Value| v.get("type").and_then(Value::as_str) == Some("result");
    match serde_json::from_str::<Value>(stdout.trim()) {
        Ok(v @ Value::Object(_)) if is_result(&v) => return Some(v),
        Ok(Value::Array(items)) => return items.into_iter().rev().find(is_result),
        _ => {}
    }
    stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(is_result)
}

/// Tokens over every model the session used (`modelUsage`), else `usage`.
fn usage_of(v: &Value) -> Option<Usage> {
    if let Some(models) = v.get("modelUsage").and_then(Value::as_object)
        && !models.is_empty()
    {
        let mut u = Usage::default();
        for m in models.values() {
            u.input += count(m.get("inputTokens"));
            u.output += count(m.get("outputTokens"));
            u.cache_read += count(m.get("cacheReadInputTokens"));
            u.cache_write += count(m.get("cacheCreationInputTokens"));
        }
        return Some(u);
    }
    let u = v.get("usage")?.as_object()?;
    Some(Usage {
        input: count(u.get("input_tokens")),
        output: count(u.get("output_tokens")),
        cache_read: count(u.get("cache_read_input_tokens")),
        cache_write: count(u.get("cache_creation_input_tokens")),
    })
}

/// The model that did the work: the one with the most output tokens (Claude Code
/// also calls a small model for side tasks).
fn main_model(v: &Value) -> Option<String> {
    v.get("modelUsage")?
        .as_object()?
        .iter()
        .max_by_key(|(_, m)| count(m.get("outputTokens")))
        .map(|(name, _)| name.clone())
}
