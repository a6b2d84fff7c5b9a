//! The Mermaid `graph LR` of a workflow: the workflow node, its stages in order
//! (model, outcome, latency, cost) and its tasks. Bounded so an agent reads it
//! at a glance: at most 12 stages and 8 tasks, with a node saying what was left out.

use super::{Stage, TaskRef, Workflow};
use crate::money::fmt_usd;

const MAX_STAGES: usize = 12;
const MAX_TASKS: usize = 8;

/// Mermaid-safe label text: quotes and brackets would end the label early.
fn esc(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| match c {
            '"' => '\'',
            '[' | '{' | '<' => '(',
            ']' | '}' | '>' => ')',
            '\n' | '\r' | '|' => ' ',
            c => c,
        })
        .collect();
    if out.chars().count() > 40 {
        out = out.chars().take(39).collect::<String>() + "…";
    }
    out
}

pub fn render(w: &Workflow, stages: &[Stage], tasks: &[TaskRef]) -> String {
    let mut out = String::from("graph LR\n");
    let kind = match (&w.task_type, &w.complexity) {
        (Some(t), Some(c)) => format!("{t}/{c}"),
        (Some(t), None) => t.clone(),
        _ => "workflow".into(),
    };
    let title = w.title.as_deref().or(w.description.as_deref()).map(esc);
    let mark = match w.status.as_str() {
        "closed" => "✓",
        "cancelled" => "✗",
        _ => "…",
    };
    out.push_str(&format!(
        "  W[\"{kind}{} {mark}{} {}\"]\n",
        title.map(|t| format!(": {t}")).unwrap_or_default(),
        w.status,
        fmt_usd(w.cost_nanos)
    ));
    let skipped = stages.len().saturating_sub(MAX_STAGES);
    let mut prev = "W".to_string();
    if skipped > 0 {
        out.push_str(&format!("  W --> S0[\"…{skipped} earlier stages\"]\n"));
        prev = "S0".into();
    }
    for (i, s) in stages.iter().skip(skipped).enumerate() {
        let id = format!("S{}", i + 1);
        let ok = if s.failed() { "✗" } else { "✓" };
        let latency = s
            .latency_ms
            .map(|ms| format!(" {:.1}s", ms as f64 / 1000.0))
            .unwrap_or_default();
        let model = s
            .model
            .as_deref()
            .map(|m| format!(" {}", esc(m)))
            .unwrap_or_default();
        // An `execute` attempt says its rung and, when it failed, why.
        let name = match &s.attempt {
            Some(a) => match &a.failure_kind {
                Some(k) => format!("{} {} {}: {k}", s.name, a.rung, a.outcome),
                None => format!("{} {}", s.name, a.rung),
            },
            None => s.name.clone(),
        };
        out.push_str(&format!(
            "  {prev} --> {id}[\"{}{model} {ok}{latency} {}\"]\n",
            esc(&name),
            fmt_usd(s.cost_nanos)
        ));
        prev = id;
    }
    for (i, t) in tasks.iter().take(MAX_TASKS).enumerate() {
        out.push_str(&format!(
            "  W -.-> T{}[\"task: {} · {}\"]\n",
            i + 1,
            esc(&t.title),
            t.status
        ));
    }
    if tasks.len() > MAX_TASKS {
        out.push_str(&format!(
            "  W -.-> T0[\"…{} more tasks\"]\n",
            tasks.len() - MAX_TASKS
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf() -> Workflow {
        Workflow {
            id: "W1".into(),
            title: Some("Fix \"login\" bug [urgent]".into()),
            task_type: Some("fix".into()),
            complexity: Some("simple".into()),
            language: None,
            stack: None,
            domain: None,
            scope: None,
            is_greenfield: None,
            has_tests: None,
            description: None,
            spec: None,
            status: "in_progress".into(),
            final_model: None,
            first_attempt_success: None,
            human_correction_needed: None,
            quality_score: None,
            consensus_type: None,
            consensus_result: None,
            models_used: vec![],
            cancel_reason: None,
            created_at: "t".into(),
            updated_at: "t".into(),
            closed_at: None,
            stages: 0,
            cost_nanos: 420_000_000,
            tokens_input: 0,
            tokens_output: 0,
            latency_ms: 0,
        }
    }

    fn st(i: usize) -> Stage {
        Stage {
            id: format!("s{i}"),
            workflow_id: "W1".into(),
            task_id: None,
            name: format!("impl-{i}"),
            stage_type: Some(if i == 1 { "error" } else { "impl" }.into()),
            model: Some("sonnet".into()),
            output: None,
            tokens_input: None,
            tokens_output: None,
            cost_nanos: 10_000_000,
            cost_self_reported: true,
            latency_ms: Some(3200),
            created_at: "t".into(),
            attempt: None,
        }
    }

    #[test]
    fn renders_a_short_escaped_graph() {
        let tasks = vec![TaskRef {
            id: "T1".into(),
            title: "Write tests".into(),
            status: "open".into(),
        }];
        let g = render(&wf(), &[st(1), st(2)], &tasks);
        let expected = "graph LR
  W[\"fix/simple: Fix 'login' bug (urgent) …in_progress $0.4200\"]
  W --> S1[\"impl-1 sonnet ✗ 3.2s $0.0100\"]
  S1 --> S2[\"impl-2 sonnet ✓ 3.2s $0.0100\"]
  W -.-> T1[\"task: Write tests · open\"]
";
        assert_eq!(g, expected);
    }

    #[test]
    fn long_workflows_are_bounded() {
        let stages: Vec<Stage> = (0..40).map(st).collect();
        let g = render(&wf(), &stages, &[]);
        assert!(g.contains("…28 earlier stages"), "{g}");
        assert!(g.lines().count() <= 2 + MAX_STAGES + 1, "{g}");
    }
}
