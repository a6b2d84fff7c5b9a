//! Field-by-field difference between two checkpoints: changed text fields with
//! old and new values, added and removed list items, and the JSON Pointer paths
//! of the state that changed. Only differences are emitted, so an agent reads
//! what moved, not both checkpoints.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};

use super::Checkpoint;

// What changed from `from` to `to`. (Plain comments: see `Checkpoint`.)
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct CheckpointDiff {
    pub from: String,
    pub to: String,
    /// True when the content is identical.
    pub same: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<TextChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<TextChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objective: Option<TextChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blockers: Option<ListChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recent_actions: Option<ListChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refs: Option<ListChange>,
    /// Changed paths; `old` absent = added, `new` absent = removed.
    pub state: Vec<StateChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TextChange {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ListChange {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

// One changed place in the state; `old` absent = added, `new` absent = removed.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct StateChange {
    /// JSON Pointer (RFC 6901).
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// The difference from `a` (older) to `b` (newer).
pub fn diff(a: &Checkpoint, b: &Checkpoint) -> CheckpointDiff {
    let mut state = Vec::new();
    let empty = Map::new();
    diff_objects(
        "",
        a.state.as_ref().unwrap_or(&empty),
        b.state.as_ref().unwrap_or(&empty),
        &mut state,
    );
    CheckpointDiff {
        from: a.id.clone(),
        to: b.id.clone(),
        same: a.hash == b.hash,
        agent: text(&a.agent, &b.agent),
        project: text(&a.project, &b.project),
        objective: text(&a.objective, &b.objective),
        blockers: list(&a.blockers, &b.blockers),
        recent_actions: list(&a.recent_actions, &b.recent_actions),
        refs: list(&a.refs, &b.refs),
        state,
    }
}

fn text(a: &Option<String>, b: &Option<String>) -> Option<TextChange> {
    (a != b).then(|| TextChange {
        old: a.clone(),
        new: b.clone(),
    })
}

fn list(a: &[String], b: &[String]) -> Option<ListChange> {
    let added: Vec<String> = b.iter().filter(|x| !a.contains(x)).cloned().collect();
    let removed: Vec<String> = a.iter().filter(|x| !b.contains(x)).cloned().collect();
    (!added.is_empty() || !removed.is_empty()).then_some(ListChange { added, removed })
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn diff_objects(
    path: &str,
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    out: &mut Vec<StateChange>,
) {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let p = format!("{path}/{}", escape(k));
        diff_values(&p, a.get(k), b.get(k), out);
    }
}

fn diff_values(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<StateChange>) {
    match (a, b) {
        (Some(x), Some(y)) if x == y => {}
        (Some(Value::Object(x)), Some(Value::Object(y))) => diff_objects(path, x, y, out),
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            for i in 0..x.len().max(y.len()) {
                diff_values(&format!("{path}/{i}"), x.get(i), y.get(i), out);
            }
        }
        (None, None) => {}
        (old, new) => out.push(StateChange {
            path: path.to_string(),
            old: old.cloned(),
            new: new.cloned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cp(id: &str, hash: &str, objective: &str, blockers: &[&str], state: Value) -> Checkpoint {
        Checkpoint {
            id: id.into(),
            hash: hash.into(),
            agent: Some("claude".into()),
            project: None,
            objective: Some(objective.into()),
            blockers: blockers.iter().map(|s| s.to_string()).collect(),
            recent_actions: vec![],
            refs: vec!["r1".into()],
            state: state.as_object().cloned(),
            content: None,
            created_at: "t".into(),
            last_saved_at: "t".into(),
        }
    }

    #[test]
    fn reports_only_what_changed() {
        let a = cp(
            "A",
            "h1",
            "old goal",
            &["b1", "b2"],
            json!({"step": 1, "files": ["a.rs"], "a/b": {"x": true}, "gone": null}),
        );
        let b = cp(
            "B",
            "h2",
            "new goal",
            &["b2", "b3"],
            json!({"step": 2, "files": ["a.rs", "b.rs"], "a/b": {"x": true, "y": "ü"}}),
        );
        let d = diff(&a, &b);
        assert!(!d.same);
        assert_eq!(d.agent, None);
        assert_eq!(
            d.objective,
            Some(TextChange {
                old: Some("old goal".into()),
                new: Some("new goal".into())
            })
        );
        assert_eq!(
            d.blockers,
            Some(ListChange {
                added: vec!["b3".into()],
                removed: vec!["b1".into()]
            })
        );
        assert_eq!(d.refs, None);
        let v = serde_json::to_value(&d.state).unwrap();
        assert_eq!(
            v,
            json!([
                {"path": "/a~1b/y", "new": "ü"},
                {"path": "/files/1", "new": "b.rs"},
                {"path": "/gone", "old": null},
                {"path": "/step", "old": 1, "new": 2}
            ])
        );
    }

    #[test]
    fn identical_checkpoints_have_an_empty_diff() {
        let a = cp("A", "h", "g", &["b"], json!({"k": [1, {"z": 0}]}));
        let d = diff(&a, &a.clone());
        assert!(d.same);
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(
            v,
            json!({"from": "A", "to": "A", "same": true, "state": []})
        );
    }
}
