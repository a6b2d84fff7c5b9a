//! Tasks: units of work for an agent or a person. The status machine and the
//! task record as clients see it; the rule-based classifier lives in `classify`.
//! Pure: no SQL here.

pub mod classify;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Task status. `done` and `cancelled` are final; `failed` may be reopened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Open,
    InProgress,
    NeedsHuman,
    Done,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Open,
        TaskStatus::InProgress,
        TaskStatus::NeedsHuman,
        TaskStatus::Done,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Open => "open",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::NeedsHuman => "needs_human",
            TaskStatus::Done => "done",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Where a task may go from here through `update`, `done` or `cancel`.
    /// (`needs_human` → `done` only through `resolve`.)
    pub fn next(self) -> &'static [TaskStatus] {
        use TaskStatus::*;
        match self {
            Open => &[InProgress, NeedsHuman, Done, Failed, Cancelled],
            InProgress => &[Open, NeedsHuman, Done, Failed, Cancelled],
            NeedsHuman => &[Cancelled],
            Failed => &[Open, Cancelled],
            Done | Cancelled => &[],
        }
    }
}

/// Checks a status change; the error names both states and what is allowed.
pub fn check_transition(id: &str, from: TaskStatus, to: TaskStatus) -> Result<()> {
    if from == to || from.next().contains(&to) {
        return Ok(());
    }
    let allowed: Vec<&str> = from.next().iter().map(|s| s.as_str()).collect();
    let hint = if from == TaskStatus::NeedsHuman && to == TaskStatus::Done {
        " (a task waiting for a person is answered with `resolve`)"
    } else {
        ""
    };
    Err(Error::Conflict(format!(
        "task {id} cannot go from {} to {}; allowed: {}{hint}",
        from.as_str(),
        to.as_str(),
        if allowed.is_empty() {
            "none (final)".to_string()
        } else {
            allowed.join(", ")
        }
    )))
}

/// A task as stored, with attempts and cost derived from its stages.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Task {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
    pub project: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub paths: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_schema: Option<serde_json::Map<String, serde_json::Value>>,
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
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Stages written for this task.
    pub attempts: i64,
    /// Sum of its stages' cost, nano-dollars.
    pub cost_nanos: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskStatus::*;

    #[test]
    fn transition_table() {
        let ok = [
            (Open, InProgress),
            (Open, Done),
            (Open, NeedsHuman),
            (InProgress, Failed),
            (InProgress, Open),
            (Failed, Open),
            (NeedsHuman, Cancelled),
            (Open, Open),
        ];
        for (a, b) in ok {
            assert!(check_transition("T", a, b).is_ok(), "{a:?} -> {b:?}");
        }
        let refused = [
            (Done, Open),
            (Cancelled, InProgress),
            (NeedsHuman, Done),
            (Failed, Done),
            (Done, Cancelled),
        ];
        for (a, b) in refused {
            assert!(check_transition("T", a, b).is_err(), "{a:?} -> {b:?}");
        }
        let msg = check_transition("T9", NeedsHuman, Done)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("T9") && msg.contains("resolve"), "{msg}");
        let msg = check_transition("T9", Done, Open).unwrap_err().to_string();
        assert!(msg.contains("none (final)"), "{msg}");
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
        }
    }
}
