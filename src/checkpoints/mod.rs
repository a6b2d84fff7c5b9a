//! Checkpoints: session continuity for agents. Canonical content hashing, field
//! diffs, the Markdown renderings (a checkpoint's own `content` and the handoff
//! "Recovery Checkpoint" document), transcript chunking and secret redaction.
//! Pure functions over plain data; the store keeps the rows and this module
//! knows no SQL.

mod canonical;
mod chunk;
mod diff;
mod redact;
mod render;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub use canonical::canonical_json;
pub use chunk::chunk;
pub use diff::{CheckpointDiff, ListChange, StateChange, TextChange, diff};
pub use redact::Redactor;
pub use render::{Scope, handoff, render_content};

// A saved checkpoint as callers see it. (Plain comments on the output types:
// doc comments would become schema descriptions, repeated in tools/list.)
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Checkpoint {
    pub id: String,
    /// SHA-256 of the canonical content.
    pub hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objective: Option<String>,
    pub blockers: Vec<String>,
    pub recent_actions: Vec<String>,
    pub refs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<Map<String, Value>>,
    /// Markdown (not in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    pub created_at: String,
    pub last_saved_at: String,
}

impl Checkpoint {
    /// The hashed part of this checkpoint.
    pub fn content_fields(&self) -> Content {
        Content {
            agent: self.agent.clone(),
            project: self.project.clone(),
            objective: self.objective.clone(),
            blockers: self.blockers.clone(),
            recent_actions: self.recent_actions.clone(),
            refs: self.refs.clone(),
            state: self.state.clone(),
        }
    }
}

/// What a checkpoint says: the fields that make up its identity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Content {
    pub agent: Option<String>,
    pub project: Option<String>,
    pub objective: Option<String>,
    pub blockers: Vec<String>,
    pub recent_actions: Vec<String>,
    pub refs: Vec<String>,
    pub state: Option<Map<String, Value>>,
}

fn trimmed(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn trimmed_list(v: Vec<String>) -> Vec<String> {
    v.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

impl Content {
    /// Trims every string; empty strings, empty list items and an empty state
    /// object count as absent. The state's own strings are kept as given: they
    /// are the caller's data.
    pub fn normalized(self) -> Content {
        Content {
            agent: trimmed(self.agent),
            project: trimmed(self.project),
            objective: trimmed(self.objective),
            blockers: trimmed_list(self.blockers),
            recent_actions: trimmed_list(self.recent_actions),
            refs: trimmed_list(self.refs),
            state: self.state.filter(|m| !m.is_empty()),
        }
    }

    /// True when nothing at all would be saved.
    pub fn is_empty(&self) -> bool {
        self.objective.is_none()
            && self.blockers.is_empty()
            && self.recent_actions.is_empty()
            && self.refs.is_empty()
            && self.state.is_none()
    }

    /// The canonical JSON text that is hashed (of the normalized content).
    pub fn canonical(&self) -> String {
        let n = self.clone().normalized();
        let mut m = Map::new();
        let opt = |m: &mut Map<String, Value>, k: &str, v: &Option<String>| {
            if let Some(s) = v {
                m.insert(k.into(), Value::from(s.as_str()));
            }
        };
        opt(&mut m, "agent", &n.agent);
        opt(&mut m, "project", &n.project);
        opt(&mut m, "objective", &n.objective);
        m.insert("blockers".into(), json!(n.blockers));
        m.insert("recent_actions".into(), json!(n.recent_actions));
        m.insert("refs".into(), json!(n.refs));
        if let Some(s) = n.state {
            m.insert("state".into(), Value::Object(s));
        }
        canonical_json(&Value::Object(m))
    }

    /// Lowercase hex SHA-256 of the canonical JSON: same content, same hash.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical().as_bytes()))
    }
}

// A recorded decision with its rationale.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Decision {
    pub id: String,
    pub decision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    pub created_at: String,
}

/// A task that is not finished, as the handoff lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTask {
    pub id: String,
    pub title: String,
    pub task_type: Option<String>,
    pub complexity: Option<String>,
    /// `open`, `in_progress` or `needs_human`.
    pub status: String,
    pub project: String,
    /// Sum of its stages' provider cost.
    pub cost_nanos: i64,
}

// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct SearchHit {
    /// `transcript` or `decision`.
    pub kind: String,
    pub id: String,
    /// Matching text; matches wrapped in `**`.
    pub snippet: String,
    /// bm25 score: lower is better.
    pub rank: f64,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_date: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content() -> Content {
        Content {
            agent: Some("claude".into()),
            project: Some("vaultline".into()),
            objective: Some("ship checkpoints".into()),
            blockers: vec!["none yet".into()],
            recent_actions: vec!["wrote tests".into()],
            refs: vec!["git:abc123".into()],
            state: json!({"b": {"y": 1, "x": [1, 2]}, "a": "ü"})
                .as_object()
                .cloned(),
        }
    }

    #[test]
    fn same_content_same_hash_whatever_the_whitespace_and_key_order() {
        let a = content();
        let mut b = content();
        b.objective = Some("  ship checkpoints\n".into());
        b.blockers = vec![" none yet ".into(), "   ".into()];
        b.state = json!({"a": "ü", "b": {"x": [1, 2], "y": 1}})
            .as_object()
            .cloned();
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 64);
        assert_eq!(
            a.canonical(),
            r#"{"agent":"claude","blockers":["none yet"],"objective":"ship checkpoints","project":"vaultline","recent_actions":["wrote tests"],"refs":["git:abc123"],"state":{"a":"ü","b":{"x":[1,2],"y":1}}}"#
        );
    }

    #[test]
    fn any_field_changes_the_hash() {
        let base = content().hash();
        let mut changes: Vec<Content> = Vec::new();
        let mut c = content();
        c.agent = Some("codex".into());
        changes.push(c);
        let mut c = content();
        c.project = None;
        changes.push(c);
        let mut c = content();
        c.blockers.push("new".into());
        changes.push(c);
        let mut c = content();
        c.refs.reverse();
        c.refs.push("x".into());
        changes.push(c);
        let mut c = content();
        c.state = json!({"a": "u"}).as_object().cloned();
        changes.push(c);
        let mut c = content();
        // Moving an item from one list to another is a change.
        c.recent_actions = vec![];
        c.refs.push("wrote tests".into());
        changes.push(c);
        for c in changes {
            assert_ne!(c.hash(), base, "{c:?}");
        }
        // An empty state object is the same as none.
        let mut a = content();
        a.state = None;
        let mut b = content();
        b.state = Some(Map::new());
        assert_eq!(a.hash(), b.hash());
    }
}
