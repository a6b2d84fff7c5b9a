//! Markdown renderings: a checkpoint's own `content`, and the handoff document
//! in vault-mcp's "Recovery Checkpoint" format (objective, open tasks as a
//! Mermaid state diagram, blockers, recent actions, the latest decisions) that
//! a fresh session starts from. Compact on purpose: every line costs the reading
//! agent context. List items and rationales are flattened to one line.

use std::fmt::Write;

use super::{Checkpoint, Content, Decision, OpenTask};

/// Longest rationale shown in the handoff, in characters.
const RATIONALE_CHARS: usize = 300;
/// Longest task title shown in the handoff's diagram, in characters.
const TITLE_CHARS: usize = 60;

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn bullets(out: &mut String, mark: &str, items: &[String]) {
    for i in items {
        let _ = writeln!(out, "- {mark}{}", one_line(i));
    }
}

/// The Markdown `content` stored with a checkpoint. It depends only on the
/// content fields, so identical content renders identically.
pub fn render_content(c: &Content) -> String {
    let mut out = String::from("# Checkpoint\n");
    let scope: Vec<String> = [("Agent", &c.agent), ("Project", &c.project)]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}: {v}")))
        .collect();
    if !scope.is_empty() {
        let _ = writeln!(out, "{}", scope.join(" · "));
    }
    if let Some(o) = &c.objective {
        let _ = write!(out, "\n## Objective\n{o}\n");
    }
    if !c.blockers.is_empty() {
        out.push_str("\n## Blockers\n");
        bullets(&mut out, "⛔ ", &c.blockers);
    }
    if !c.recent_actions.is_empty() {
        out.push_str("\n## Recent Actions\n");
        bullets(&mut out, "✅ ", &c.recent_actions);
    }
    if !c.refs.is_empty() {
        out.push_str("\n## References\n");
        bullets(&mut out, "", &c.refs);
    }
    if let Some(s) = &c.state {
        let pretty = serde_json::to_string_pretty(s).unwrap_or_default();
        let _ = write!(out, "\n## State\n```json\n{pretty}\n```\n");
    }
    out
}

fn task_marker(status: &str) -> &'static str {
    match status {
        "in_progress" => "🔄",
        "needs_human" => "🙋",
        _ => "📋",
    }
}

/// Characters Mermaid state descriptions tolerate; the rest become spaces.
fn mermaid_safe(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || " -_.,()/'+&@".contains(c) {
                c
            } else {
                ' '
            }
        })
        .collect();
    clip(&one_line(&cleaned), TITLE_CHARS)
}

fn dollars(nanos: i64) -> String {
    format!("{:.4}", nanos as f64 / 1e9)
}

/// What the handoff is for: the caller's agent and project, if any.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    pub agent: Option<&'a str>,
    pub project: Option<&'a str>,
}

/// The "Recovery Checkpoint" document: the latest checkpoint, the open tasks
/// and the latest decisions (at most 10 are shown).
pub fn handoff(
    generated: &str,
    scope: Scope<'_>,
    latest: Option<&Checkpoint>,
    tasks: &[OpenTask],
    decisions: &[Decision],
) -> String {
    let mut out = String::from("# Recovery Checkpoint\n");
    let _ = writeln!(out, "Generated: {generated}");
    let mut about: Vec<String> = Vec::new();
    if let Some(a) = scope.agent {
        about.push(format!("agent {a}"));
    }
    if let Some(p) = scope.project {
        about.push(format!("project {p}"));
    }
    if !about.is_empty() {
        let _ = writeln!(out, "Scope: {}", about.join(", "));
    }
    if let Some(c) = latest {
        let _ = writeln!(out, "Checkpoint: {} (saved {})", c.id, c.last_saved_at);
    }

    out.push_str("\n## Objective\n");
    match latest.and_then(|c| c.objective.as_deref()) {
        Some(o) => {
            let _ = writeln!(out, "{o}");
        }
        None if latest.is_none() => out.push_str("_No checkpoint saved yet._\n"),
        None => out.push_str("_None recorded._\n"),
    }

    out.push_str("\n## Open Tasks\n");
    if tasks.is_empty() {
        out.push_str("_None._\n");
    } else {
        out.push_str("```mermaid\nstateDiagram-v2\n");
        for t in tasks {
            let _ = writeln!(
                out,
                "  {} : {} {} ({}) ${} {}",
                t.id,
                task_marker(&t.status),
                t.task_type.as_deref().unwrap_or("task"),
                t.complexity.as_deref().unwrap_or("unrated"),
                dollars(t.cost_nanos),
                mermaid_safe(&t.title),
            );
        }
        out.push_str("```\n");
    }

    out.push_str("\n## Blockers\n");
    match latest.filter(|c| !c.blockers.is_empty()) {
        Some(c) => bullets(&mut out, "⛔ ", &c.blockers),
        None => out.push_str("_None._\n"),
    }

    out.push_str("\n## Recent Actions\n");
    match latest.filter(|c| !c.recent_actions.is_empty()) {
        Some(c) => bullets(&mut out, "✅ ", &c.recent_actions),
        None => out.push_str("_None._\n"),
    }

    out.push_str("\n## Recent Decisions\n");
    if decisions.is_empty() {
        out.push_str("_None._\n");
    }
    for d in decisions.iter().take(10) {
        let _ = write!(out, "- **{}**", one_line(&d.decision));
        match &d.rationale {
            Some(r) => {
                let _ = writeln!(out, ": {}", clip(&one_line(r), RATIONALE_CHARS));
            }
            None => out.push('\n'),
        }
    }

    if let Some(c) = latest {
        if !c.refs.is_empty() {
            out.push_str("\n## References\n");
            bullets(&mut out, "", &c.refs);
        }
        if let Some(s) = &c.state {
            let keys: Vec<&str> = s.keys().map(String::as_str).take(20).collect();
            let _ = writeln!(
                out,
                "\nState keys: {} (`checkpoint get` for the values)",
                keys.join(", ")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn latest() -> Checkpoint {
        Checkpoint {
            id: "01CP".into(),
            hash: "h".into(),
            agent: Some("claude".into()),
            project: Some("vaultline".into()),
            objective: Some("Ship the checkpoint tool".into()),
            blockers: vec!["CI is red\non main".into()],
            recent_actions: vec!["wrote the store verbs".into()],
            refs: vec!["git:abc123".into()],
            state: json!({"step": 3}).as_object().cloned(),
            content: None,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            last_saved_at: "2026-01-02T00:00:00.000Z".into(),
        }
    }

    fn task(id: &str, status: &str, cost: i64) -> OpenTask {
        OpenTask {
            id: id.into(),
            title: "Fix the \"login\" bug; {now}".into(),
            task_type: Some("fix".into()),
            complexity: Some("simple".into()),
            status: status.into(),
            project: "vaultline".into(),
            cost_nanos: cost,
        }
    }

    fn decision(i: usize) -> Decision {
        Decision {
            id: format!("D{i}"),
            decision: format!("decision {i}"),
            rationale: i.is_multiple_of(2).then(|| format!("because {i}\nreally")),
            task_id: None,
            workflow_id: None,
            agent: None,
            project: None,
            created_at: "t".into(),
        }
    }

    #[test]
    fn handoff_has_the_recovery_checkpoint_sections_in_order() {
        let decisions: Vec<Decision> = (0..12).map(decision).collect();
        let doc = handoff(
            "2026-01-03T00:00:00.000Z",
            Scope {
                agent: Some("claude"),
                project: Some("vaultline"),
            },
            Some(&latest()),
            &[task("T1", "open", 12_345_000), task("T2", "in_progress", 0)],
            &decisions,
        );
        let order = [
            "# Recovery Checkpoint\nGenerated: 2026-01-03T00:00:00.000Z\n",
            "## Objective\nShip the checkpoint tool\n",
            "## Open Tasks\n```mermaid\nstateDiagram-v2\n",
            "  T1 : 📋 fix (simple) $0.0123 Fix the login bug now\n",
            "  T2 : 🔄 fix (simple) $0.0000",
            "## Blockers\n- ⛔ CI is red on main\n",
            "## Recent Actions\n- ✅ wrote the store verbs\n",
            "## Recent Decisions\n- **decision 0**: because 0 really\n- **decision 1**\n",
            "## References\n- git:abc123\n",
            "State keys: step",
        ];
        let mut at = 0;
        for part in order {
            let found = doc[at..].find(part).map(|i| i + at);
            assert!(found.is_some(), "missing after byte {at}: {part:?}\n{doc}");
            at = found.unwrap_or(0) + part.len();
        }
        assert!(doc.contains("decision 9"));
        assert!(!doc.contains("decision 10"), "only the latest 10");
    }

    #[test]
    fn handoff_without_anything_says_so() {
        let doc = handoff("now", Scope::default(), None, &[], &[]);
        assert!(doc.contains("## Objective\n_No checkpoint saved yet._"));
        assert!(doc.contains("## Open Tasks\n_None._"));
        assert!(doc.contains("## Recent Decisions\n_None._"));
        assert!(!doc.contains("Scope:"));
    }

    #[test]
    fn content_rendering_is_compact_and_skips_empty_sections() {
        let c = latest().content_fields();
        let md = render_content(&c);
        assert!(md.starts_with("# Checkpoint\nAgent: claude · Project: vaultline\n"));
        assert!(md.contains("## Blockers\n- ⛔ CI is red on main\n"));
        assert!(md.contains("## State\n```json\n{\n  \"step\": 3\n}\n```\n"));
        let bare = Content {
            objective: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(render_content(&bare), "# Checkpoint\n\n## Objective\nx\n");
    }
}
