//! OpenAI-compatible chat completions: OpenAI, DeepSeek, OpenRouter, Ollama, vLLM,
//! a LiteLLM proxy and Gemini's compatible endpoint all speak it.
//!
//! `build` and `parse` are pure (golden-tested in `fixtures/providers/openai/`);
//! sending is [`super::http::call`]'s job. No `response_format` is sent: the
//! ladder puts the answer schema in the prompt and validates the answer itself,
//! which works the same on every compatible server.
//!
//! The output limit: OpenAI's own API (`api.openai.com`, and Azure OpenAI) gets
//! `max_completion_tokens`, because its reasoning models refuse the deprecated
//! `max_tokens`; every other server gets `max_tokens`, the field the compatible
//! servers (DeepSeek, Ollama, vLLM, OpenRouter, LiteLLM, Gemini's endpoint) all take.

// `Failure` (defined in mod.rs) is ~200 bytes and is built at most once per
// provider round trip, so boxing it would buy nothing measurable.
#![allow(clippy::result_large_err)]

use ::http::HeaderMap;
use serde_json::{Value, json};

use super::http::{self as wire, Built};
use super::{Answer, Failure, FailureKind, Request, Target};
use crate::metering::pricing::Usage;
use crate::money::reported_usd_to_nanos_ceil;

/// The header a LiteLLM proxy reports a call's cost in (USD).
const LITELLM_COST: &str = "x-litellm-response-cost";

/// `POST {base_url}/chat/completions`; `Authorization: Bearer` when the target has
/// a key (local servers such as Ollama need none).
pub fn build(target: &Target, req: &Request) -> Result<Built, Failure> {
    let base = wire::base_url(target, "openai")?;
    let mut headers = Vec::new();
    if let Some(key) = target.secret.as_ref().map(|s| s.expose())
        && !key.is_empty()
    {
        headers.push(("authorization".to_string(), format!("Bearer {key}")));
    }
    let mut messages = Vec::new();
    if let Some(system) = &req.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({"role": "user", "content": req.prompt}));
    let mut body = json!({"model": req.model, "messages": messages});
    body[limit_field(base)] = json!(req.max_output_tokens);
    Ok(Built {
        url: format!("{base}/chat/completions"),
        headers,
        body,
    })
}

/// Which output-limit field the server at `base` takes (see the module doc).
pub fn limit_field(base: &str) -> &'static str {
    let host = reqwest::Url::parse(base)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    match host.as_deref() {
        Some("api.openai.com") => "max_completion_tokens",
        Some(h) if h.ends_with(".openai.azure.com") => "max_completion_tokens",
        _ => "max_tokens",
    }
}

/// Parses a chat completion or an error response.
pub fn parse(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<Answer, Failure> {
    let rate = wire::openai_rate(headers);
    let with_rate = |mut f: Failure| {
        f.rate = rate.clone();
        f
    };
    let v = wire::success_json(status, headers, body, &rate)?;
    let Some(choice) = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
    else {
        return Err(with_rate(no_choices(status, &v)));
    };
    let message = choice.get("message").unwrap_or(&Value::Null);
    let refusal = message
        .get("refusal")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty());
    let finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    // With no content, a refusal's own text is the most useful answer text.
    let text =
        content_text(message.get("content")).unwrap_or_else(|| refusal.unwrap_or("").to_string());
    Ok(Answer {
        text,
        usage: usage(v.get("usage")),
        reported_cost_nanos: cost(v.get("usage"), headers),
        model: v.get("model").and_then(Value::as_str).map(str::to_string),
        // Azure and some proxies filter content and say so only in finish_reason.
        refused: refusal.is_some() || finish_reason.as_deref() == Some("content_filter"),
        finish_reason,
        rate,
    })
}

/// A 2xx without choices. OpenRouter and some proxies answer an upstream error
/// with 200 and an `error` object whose `code` is the real HTTP status.
fn no_choices(status: u16, v: &Value) -> Failure {
    if let Some(detail) = v.get("error").and_then(|_| wire::error_detail(v)) {
        let code = v["error"]
            .get("code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (400..600).contains(c));
        let kind = code.map_or(FailureKind::Malformed, wire::status_kind);
        let mut f = Failure::new(kind, format!("HTTP {status} with an error: {detail}"));
        f.status = Some(status);
        return f;
    }
    let mut f = Failure::new(
        FailureKind::Malformed,
        format!("HTTP {status} answer has no choices"),
    );
    f.status = Some(status);
    f
}

/// `content` as a string, or the text parts of a content array (some compatible
/// servers); `None` when null or absent.
fn content_text(content: Option<&Value>) -> Option<String> {
    match content? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
        ),
        _ => None,
    }
}

/// Token counts, each kind once. `prompt_tokens` includes cached tokens (OpenAI's
/// `prompt_tokens_details.cached_tokens`, DeepSeek's `prompt_cache_hit_tokens`)
/// and cache writes (OpenRouter's `prompt_tokens_details.cache_write_tokens`,
/// LiteLLM's `cache_creation_input_tokens`), so `input` is what is left.
fn usage(u: Option<&Value>) -> Option<Usage> {
    let u = u.filter(|u| u.is_object())?;
    let prompt = wire::count(u.get("prompt_tokens"));
    let output = wire::count(u.get("completion_tokens"));
    if prompt.is_none() && output.is_none() {
        return None;
    }
    let details = u.get("prompt_tokens_details");
    let detail = |k: &str| details.and_then(|d| wire::count(d.get(k)));
    let cache_read = wire::count(u.get("prompt_cache_hit_tokens"))
        .or_else(|| detail("cached_tokens"))
        .unwrap_or(0);
    let cache_write = detail("cache_write_tokens")
        .or_else(|| wire::count(u.get("cache_creation_input_tokens")))
        .unwrap_or(0);
    let input = match wire::count(u.get("prompt_cache_miss_tokens")) {
        Some(miss) => miss,
        None => prompt
            .unwrap_or(0)
            .saturating_sub(cache_read)
            .saturating_sub(cache_write),
    };
    Some(Usage {
        input,
        output: output.unwrap_or(0),
        cache_read,
        cache_write,
    })
}

/// OpenRouter's `usage.cost`, else LiteLLM's cost header; USD, rounded up to a
/// nano-dollar.
fn cost(u: Option<&Value>, headers: &HeaderMap) -> Option<i64> {
    let from_usage = u
        .and_then(|u| u.get("cost"))
        .and_then(|c| match c {
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) => Some(s.clone()),
            _ => None,
        })
        .and_then(|t| reported_usd_to_nanos_ceil(&t));
    from_usage.or_else(|| {
        headers
            .get(LITELLM_COST)
            .and_then(|v| v.to_str().ok())
            .and_then(reported_usd_to_nanos_ceil)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_limit_field_follows_the_host() {
        let cases = [
            ("https://api.openai.com/v1", "max_completion_tokens"),
            (
                "https://my-res.openai.azure.com/openai/deployments/x",
                "max_completion_tokens",
            ),
            ("https://api.deepseek.com", "max_tokens"),
            ("https://openrouter.ai/api/v1", "max_tokens"),
            ("http://127.0.0.1:11434/v1", "max_tokens"),
            (
                "https://generativelanguage.googleapis.com/v1beta/openai",
                "max_tokens",
            ),
            ("not a url", "max_tokens"),
        ];
        for (base, field) in cases {
            assert_eq!(limit_field(base), field, "{base}");
        }
    }
}
