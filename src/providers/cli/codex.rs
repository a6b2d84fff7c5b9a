//! `codex exec --json`: JSON Lines events on stdout. Pure: output in, answer or
//! failure out.
//!
//! Events read (from the `exec` crate's `ThreadEvent`): `thread.started`,
//! `turn.started`, `item.started` / `item.updated` / `item.completed` (items
//! `agent_message` {text}, `reasoning`, `command_execution`, `file_change`,
//! `mcp_tool_call`, `web_search`, `todo_list`, `error`), `turn.completed`
//! {usage: `input_tokens`, `cached_input_tokens`, `output_tokens`},
//! `turn.failed` {error.message} and `error` {message}. The last completed
//! `agent_message` is the answer. `input_tokens` includes the cached ones, so the
//! uncached input is the difference. Codex reports no cost.
//!
//! An `error` event alone does not fail the call (codex also reports retried
//! stream errors that way); a `turn.failed` without a later `turn.completed` does.

use serde_json::Value;

use super::{Output, count, signals, unreadable};
use crate::metering::pricing::Usage;
use crate::providers::{Answer, Failure, FailureKind};

pub fn parse(out: &Output) -> Result<Answer, Failure> {
    let mut events = 0usize;
    let mut text: Option<String> = None;
    let mut usage: Option<Usage> = None;
    let mut failed: Option<String> = None;
    let mut last_error: Option<String> = None;
    let mut completed = false;

    for line in out.stdout.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        let Some(kind) = v.get("type").and_then(Value::as_str) else {
            continue;
        };
        events += 1;
        match kind {
            "item.completed" => {
                let item = &v["item"];
                if item.get("type").and_then(Value::as_str) == Some("agent_message") {
                    text = Some(
                        item.get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
            }
            "turn.completed" => {
                let u = &v["usage"];
                let input = count(u.get("input_tokens"));
                let cached = count(u.get("cached_input_tokens"));
                let sum = usage.get_or_insert_with(Usage::default);
                sum.input += input.saturating_sub(cached);
                sum.cache_read += cached.min(input);
                sum.output += count(u.get("output_tokens"));
                completed = true;
                failed = None;
            }
            "turn.failed" => {
                let message = v["error"]
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("turn failed");
                failed = Some(message.to_string());
                completed = false;
            }
            "error" => {
                if let Some(m) = v.get("message").and_then(Value::as_str) {
                    last_error = Some(m.to_string());
                }
            }
            _ => {}
        }
    }

    if events == 0 {
        return Err(unreadable("codex", out, "no JSON events"));
    }
    if !completed && let Some(message) = failed.or(last_error) {
        let mut f = match signals::read(&message) {
            Some(reading) => reading.failure(""),
            None => Failure::new(FailureKind::Server, ""),
        };
        f.message = crate::providers::short(format!("codex: {}", signals::first_line(&message)));
        f.usage = usage;
        return Err(f);
    }
    if !completed {
        return Err(unreadable("codex", out, "no turn.completed event"));
    }
    Ok(Answer {
        text: text.unwrap_or_default(),
        usage,
        reported_cost_nanos: None,
        model: None,
        finish_reason: None,
        refused: false,
        rate: None,
    })
}
