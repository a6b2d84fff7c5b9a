//! Workflows: a piece of work with a classification, a spec, stages written as it
//! goes, and a close record. This module holds the rules as plain functions over
//! plain data — status transitions, the Mermaid graph, vault-mcp's consensus
//! comparison and the chooser — and never touches SQL.

pub mod chooser;
pub mod graph;

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The kind of work (vault-mcp's task_type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskType {
    Fix,
    Feature,
    Test,
    Refactor,
    Review,
    Docs,
}

impl TaskType {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Fix => "fix",
            TaskType::Feature => "feature",
            TaskType::Test => "test",
            TaskType::Refactor => "refactor",
            TaskType::Review => "review",
            TaskType::Docs => "docs",
        }
    }
}

/// How hard the work is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Complexity {
    Trivial,
    Simple,
    Moderate,
    Complex,
}

impl Complexity {
    pub fn as_str(self) -> &'static str {
        match self {
            Complexity::Trivial => "trivial",
            Complexity::Simple => "simple",
            Complexity::Moderate => "moderate",
            Complexity::Complex => "complex",
        }
    }
}

/// Workflow status. `closed` and `cancelled` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowStatus {
    Open,
    InProgress,
    Closed,
    Cancelled,
}

impl WorkflowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Open => "open",
            WorkflowStatus::InProgress => "in_progress",
            WorkflowStatus::Closed => "closed",
            WorkflowStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<WorkflowStatus> {
        match s {
            "open" => Some(WorkflowStatus::Open),
            "in_progress" => Some(WorkflowStatus::InProgress),
            "closed" => Some(WorkflowStatus::Closed),
            "cancelled" => Some(WorkflowStatus::Cancelled),
            _ => None,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, WorkflowStatus::Closed | WorkflowStatus::Cancelled)
    }
}

/// What an action does to a workflow's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Write the spec: allowed while the workflow is live; status unchanged.
    Spec,
    /// Write a stage: open becomes in_progress.
    Stage,
    Close,
    Cancel,
}

impl Transition {
    fn verb(self) -> &'static str {
        match self {
            Transition::Spec => "write a spec to",
            Transition::Stage => "write a stage to",
            Transition::Close => "close",
            Transition::Cancel => "cancel",
        }
    }
}

/// The status after `t`, or a conflict that names the current status and what is allowed.
pub fn transition(id: &str, from: WorkflowStatus, t: Transition) -> Result<WorkflowStatus> {
    use WorkflowStatus::*;
    let to = match (from, t) {
        (Open | InProgress, Transition::Spec) => from,
        (Open | InProgress, Transition::Stage) => InProgress,
        (Open | InProgress, Transition::Close) => Closed,
        (Open | InProgress, Transition::Cancel) => Cancelled,
        (Closed | Cancelled, _) => {
            return Err(Error::Conflict(format!(
                "cannot {} workflow {id}: it is {} (allowed only while open or in_progress)",
                t.verb(),
                from.as_str()
            )));
        }
    };
    Ok(to)
}

/// A workflow as stored, with totals derived from its stages.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Workflow {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complexity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_greenfield: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_tests: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_attempt_success: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub human_correction_needed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality_score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consensus_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consensus_result: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub models_used: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
    /// Stages written so far.
    pub stages: i64,
    /// Sum of stage costs, nano-dollars.
    pub cost_nanos: i64,
    pub tokens_input: i64,
    pub tokens_output: i64,
    pub latency_ms: i64,
}

/// A stage: one step of the work (an attempt, a review, a test run).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Stage {
    pub id: String,
    pub workflow_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The stage's output (any JSON); omitted in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_input: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_output: Option<i64>,
    pub cost_nanos: i64,
    /// The cost came from the client, not from a metered call.
    pub cost_self_reported: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    pub created_at: String,
    /// Set on the stages `execute` writes: one per attempt of a run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<Attempt>,
}

/// What an `execute` attempt adds to its stage row.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct Attempt {
    pub run_id: String,
    /// 1-based, in the order the attempts were made.
    pub attempt: i64,
    pub rung: String,
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// `ok`, `quality`, `infra`, `terminal` or `skipped`.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Stage {
    /// Did this stage fail? (`stage_type` error, or an `error` in its output.)
    pub fn failed(&self) -> bool {
        self.attempt.as_ref().is_some_and(|a| a.outcome != "ok")
            || self.stage_type.as_deref() == Some("error")
            || self
                .output
                .as_ref()
                .is_some_and(|o| o.get("error").is_some_and(|e| !e.is_null()))
    }
}

/// A task as a workflow shows it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TaskRef {
    pub id: String,
    pub title: String,
    pub status: String,
}

/// The structured fields vault-mcp compared across implementation stages.
pub const STRUCTURED_FIELDS: [&str; 5] = [
    "files_changed",
    "test_targets",
    "dependencies_added",
    "breaking_changes",
    "security_surface",
];

/// vault-mcp's consensus query: for each structured field present in the
/// stages' outputs, do all stages agree on the set of values?
pub fn consensus(stages: &[Stage]) -> Value {
    let mut agreed = Vec::new();
    let mut diverged = Vec::new();
    for field in STRUCTURED_FIELDS {
        let mut sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for s in stages {
            if let Some(v) = s.output.as_ref().and_then(|o| o.get(field)) {
                let set = match v {
                    Value::Array(items) => items.iter().map(normalise).collect(),
                    other => std::iter::once(normalise(other)).collect(),
                };
                sets.insert(s.name.clone(), set);
            }
        }
        if sets.len() < 2 {
            continue;
        }
        let first = sets.values().next().cloned().unwrap_or_default();
        if sets.values().all(|s| *s == first) {
            agreed.push(Value::from(field));
        } else {
            diverged.push(serde_json::json!({"field": field, "values": sets}));
        }
    }
    serde_json::json!({
        "stages_compared": stages.len(),
        "agreed": agreed,
        "diverged": diverged,
    })
}

fn normalise(v: &Value) -> String {
    match v {
        Value::String(s) => s.split_whitespace().collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

/// Projects a JSON value: a top-level key, or a JSON Pointer (`/a/0/b`).
pub fn project(v: &Value, field: &str) -> Option<Value> {
    if field.starts_with('/') {
        v.pointer(field).cloned()
    } else {
        v.get(field).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transitions_table() {
        use Transition::*;
        use WorkflowStatus::*;
        let cases = [
            (Open, Spec, Ok(Open)),
            (Open, Stage, Ok(InProgress)),
            (InProgress, Stage, Ok(InProgress)),
            (Open, Close, Ok(Closed)),
            (InProgress, Cancel, Ok(Cancelled)),
            (Closed, Stage, Err(())),
            (Closed, Close, Err(())),
            (Cancelled, Spec, Err(())),
            (Cancelled, Cancel, Err(())),
        ];
        for (from, t, want) in cases {
            let got = transition("W1", from, t).map_err(|_| ());
            assert_eq!(got, want, "{from:?} {t:?}");
        }
        let msg = transition("W1", Closed, Stage).unwrap_err().to_string();
        assert!(msg.contains("W1") && msg.contains("closed"), "{msg}");
    }

    fn stage(name: &str, output: Value) -> Stage {
        Stage {
            id: name.into(),
            workflow_id: "w".into(),
            task_id: None,
            name: name.into(),
            stage_type: Some("impl".into()),
            model: None,
            output: Some(output),
            tokens_input: None,
            tokens_output: None,
            cost_nanos: 0,
            cost_self_reported: true,
            latency_ms: None,
            created_at: "t".into(),
            attempt: None,
        }
    }

    #[test]
    fn consensus_compares_sets() {
        let a = stage(
            "a",
            json!({"files_changed": ["x.rs", "y.rs"], "test_targets": ["t1"]}),
        );
        let b = stage(
            "b",
            json!({"files_changed": ["y.rs", "x.rs"], "test_targets": ["t2"]}),
        );
        let r = consensus(&[a, b]);
        assert_eq!(r["agreed"], json!(["files_changed"]));
        assert_eq!(r["diverged"][0]["field"], "test_targets");
    }

    #[test]
    fn projection() {
        let v = json!({"a": {"b": [1, 2]}});
        assert_eq!(project(&v, "a"), Some(json!({"b": [1, 2]})));
        assert_eq!(project(&v, "/a/b/1"), Some(json!(2)));
        assert_eq!(project(&v, "zz"), None);
    }
}
