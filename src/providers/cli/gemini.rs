//! `gemini --output-format json`: one JSON object (gemini-cli's `JsonOutput`).
//! Pure: output in, answer or failure out.
//!
//! Shape: `{ session_id, response, stats: { models: { <model>: { api: {…},
//! tokens: { input, prompt, candidates, total, cached, thoughts, tool } } },
//! tools, files }, error: { type, message, code } }`. A fatal error is printed as
//! the same object with only `error` (and `session_id`), on stderr, and the
//! process exits non-zero (41 for authentication), so both streams are read.
//!
//! Tokens: `prompt` includes `cached` (Gemini's promptTokenCount), so uncached
//! input is `prompt - cached`, plus `tool` (tool-use prompt tokens, billed as
//! input); output is `candidates + thoughts` (thinking is billed as output).
//! gemini-cli reports no cost.

use serde_json::Value;

use super::{Output, count, json_object, signals, unreadable};
use crate::metering::pricing::Usage;
use crate::providers::{Answer, Failure, FailureKind};

/// gemini-cli's exit code for an authentication failure (`ExitCodes`).
const EXIT_AUTH: i64 = 41;
/// gemini-cli's exit codes for a bad input and a bad config.
const EXIT_INPUT: i64 = 42;
const EXIT_CONFIG: i64 = 52;

pub fn parse(out: &Output) -> Result<Answer, Failure> {
    let v = json_object(&out.stdout)
        .filter(|v| v.get("response").is_some() || v.get("error").is_some())
        .or_else(|| json_object(&out.stderr).filter(|v| v.get("error").is_some()));
    let Some(v) = v else {
        return Err(unreadable("gemini", out, "no JSON object"));
    };
    let usage = usage_of(&v);

    if let Some(err) = v.get("error").filter(|e| e.is_object()) {
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("error");
        let kind_name = err.get("type").and_then(Value::as_str).unwrap_or("");
        let code = err.get("code").and_then(Value::as_i64);
        let status = code
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (400..600).contains(c));
        let reading = signals::read(&format!("{kind_name} {message}"));
        let kind = match (&reading, code, status) {
            (Some(r), _, _) if r.kind == FailureKind::RateLimited => r.kind,
            (_, Some(EXIT_AUTH), _) => FailureKind::Auth,
            (_, _, Some(s)) => signals::from_status(s).unwrap_or(FailureKind::Rejected),
            (Some(r), _, _) => r.kind,
            (None, Some(EXIT_INPUT | EXIT_CONFIG), _) => FailureKind::Rejected,
            (None, _, _) => FailureKind::Server,
        };
        let mut f = match reading {
            Some(r) if r.kind == kind => r.failure(""),
            _ => Failure::new(kind, ""),
        };
        f.message = crate::providers::short(format!(
            "gemini: {}{}",
            if kind_name.is_empty() {
                String::new()
            } else {
                format!("{kind_name}: ")
            },
            signals::first_line(message)
        ));
        f.status = status;
        f.usage = usage;
        return Err(f);
    }

    Ok(Answer {
        text: v
            .get("response")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        usage,
        reported_cost_nanos: None,
        model: main_model(&v),
        finish_reason: None,
        refused: false,
        rate: None,
    })
}

fn models(v: &Value) -> Option<&serde_json::Map<String, Value>> {
    v.get("stats")?.get("models")?.as_object()
}

fn usage_of(v: &Value) -> Option<Usage> {
    let models = models(v).filter(|m| !m.is_empty())?;
    let mut u = Usage::default();
    for m in models.values() {
        let t = &m["tokens"];
        let prompt = count(t.get("prompt"));
        let cached = count(t.get("cached"));
        u.input += prompt.saturating_sub(cached) + count(t.get("tool"));
        u.cache_read += cached.min(prompt);
        u.output += count(t.get("candidates")) + count(t.get("thoughts"));
    }
    Some(u)
}

/// The model that wrote the answer: the one with the most candidate tokens
/// (gemini-cli also calls a small model to route and summarise).
fn main_model(v: &Value) -> Option<String> {
    models(v)?
        .iter()
        .max_by_key(|(_, m)| count(m["tokens"].get("candidates")))
        .map(|(name, _)| name.clone())
}
