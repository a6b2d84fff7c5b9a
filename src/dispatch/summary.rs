//! A run rendered for an agent: a one-line summary, a Mermaid `graph LR` of
//! its attempts (the default: a few lines instead of pages of JSON), a
//! standard view with the attempts as rows, or everything.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Run;
use crate::money::fmt_usd;
use crate::workflows::Stage;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    Summary,
    #[default]
    Mermaid,
    Standard,
    Full,
}

/// One line: the state, where it ended, attempts and cost.
pub fn line(run: &Run) -> String {
    let at = run
        .final_rung
        .as_deref()
        .map(|r| format!(" at {r}"))
        .unwrap_or_default();
    let why = run
        .reason
        .as_deref()
        .map(|r| format!(" — {r}"))
        .unwrap_or_default();
    format!(
        "run {} {}{at}: {} attempt(s), {} quality failure(s), cost {} (billed {}){why}",
        run.id,
        run.state.as_str(),
        run.attempts,
        run.quality_failures,
        fmt_usd(run.cost_nanos),
        fmt_usd(run.billed_nanos),
    )
}

/// The attempts as a Mermaid flowchart, left to right, ending in the run's state.
pub fn mermaid(run: &Run, attempts: &[Stage]) -> String {
    let mut out = String::from("graph LR\n");
    let mut prev = "S".to_string();
    out.push_str(&format!(
        "  S([start: {}])\n",
        esc(run.start_rung.as_deref().unwrap_or("?"))
    ));
    for (i, s) in attempts.iter().enumerate() {
        let Some(a) = &s.attempt else { continue };
        let id = format!("A{}", i + 1);
        let what = match (&a.outcome[..], &a.failure_kind) {
            ("ok", _) => "ok".to_string(),
            (o, Some(k)) => format!("{o}: {k}"),
            (o, None) => o.to_string(),
        };
        let cost = if s.cost_nanos > 0 {
            format!(" {}", fmt_usd(s.cost_nanos))
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  {id}[\"{} {}<br/>{}{cost}\"]\n  {prev} --> {id}\n",
            a.attempt,
            esc(&a.rung),
            esc(&what)
        ));
        prev = id;
    }
    let end = match run.state.as_str() {
        "succeeded" => match &run.consensus {
            Some(c) => format!("succeeded: consensus {}/{}", c["agreed"], c["of"]),
            None => "succeeded".into(),
        },
        other => other.to_string(),
    };
    out.push_str(&format!("  E([{}])\n  {prev} --> E\n", esc(&end)));
    out
}

/// Mermaid labels: no quotes, brackets or pipes that would end the label.
fn esc(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '[' | ']' | '(' | ')' | '{' | '}' | '|' | '<' | '>' => ' ',
            c => c,
        })
        .collect()
}
