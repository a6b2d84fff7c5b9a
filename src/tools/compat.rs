//! vault-mcp's old tool names, listed only with the `compat` toolset (off by
//! default), so agent instructions written for vault-mcp keep working. Each old
//! tool translates its arguments and calls the new tool's handler; none has
//! behaviour of its own.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    CallCtx, ToolOutput, ToolSpec, checkpoint, execute, parse, read, schema_of, workflow, write,
};
use crate::error::Result;
use crate::workflows::{Complexity, TaskType};

/// The old tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Old {
    WorkflowQuery,
    Search,
    SessionStart,
    SessionEnd,
    Pricing,
}

pub static SPECS: [(Old, &ToolSpec); 5] = [
    (Old::WorkflowQuery, &WORKFLOW_QUERY),
    (Old::Search, &SEARCH),
    (Old::SessionStart, &SESSION_START),
    (Old::SessionEnd, &SESSION_END),
    (Old::Pricing, &PRICING),
];

static PRICING: ToolSpec = ToolSpec {
    name: "pricing",
    action_field: false,
    description: "vault-mcp compatibility: the same as `execute` with action `estimate` for a kind of work (task_type, complexity, context_tokens).",
    actions: &[read("estimate", &[])],
    input: schema_of::<Pricing>,
    output: schema_of::<execute::Output>,
    destructive: false,
    idempotent: true,
};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    task_type: Option<TaskType>,
    complexity: Option<Complexity>,
    /// Accepted for compatibility; prices do not depend on it.
    language: Option<String>,
    /// Accepted for compatibility; prices do not depend on it.
    stack: Option<String>,
    #[schemars(range(max = 10_000_000))]
    context_tokens: Option<u64>,
}

static SEARCH: ToolSpec = ToolSpec {
    name: "search",
    action_field: false,
    description: "vault-mcp compatibility: the same as `checkpoint` with action `search` (session = YYYY-MM-DD).",
    actions: &[read("search", &[])],
    input: schema_of::<Search>,
    output: schema_of::<checkpoint::Output>,
    destructive: false,
    idempotent: true,
};

static SESSION_START: ToolSpec = ToolSpec {
    name: "session_start",
    action_field: false,
    description: "vault-mcp compatibility: the same as `checkpoint` with action `handoff`.",
    actions: &[read("handoff", &[])],
    input: schema_of::<SessionStart>,
    output: schema_of::<checkpoint::Output>,
    destructive: false,
    idempotent: true,
};

static SESSION_END: ToolSpec = ToolSpec {
    name: "session_end",
    action_field: false,
    description: "vault-mcp compatibility: the same as `checkpoint` with action `save`.",
    actions: &[write("save", &[])],
    input: schema_of::<SessionEnd>,
    output: schema_of::<checkpoint::Output>,
    destructive: false,
    idempotent: true,
};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Search {
    query: String,
    /// YYYY-MM-DD
    session: Option<String>,
    #[schemars(range(min = 1, max = 100))]
    limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionStart {
    project: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionEnd {
    objective: String,
    recent_actions: Vec<String>,
    blockers: Option<Vec<String>>,
    /// Accepted for compatibility; transcripts are stored with `checkpoint ingest`.
    capture_transcript: Option<bool>,
    project: Option<String>,
}

static WORKFLOW_QUERY: ToolSpec = ToolSpec {
    name: "workflow_query",
    action_field: false,
    description: "vault-mcp compatibility: the same as `workflow` with action `query` (task_id is the workflow id).",
    actions: &[read("query", &[])],
    input: schema_of::<WorkflowQuery>,
    output: schema_of::<workflow::Output>,
    destructive: false,
    idempotent: true,
};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowQuery {
    query: workflow::Query,
    /// The workflow id (vault-mcp called workflows tasks).
    task_id: Option<String>,
    stage_name: Option<String>,
    task_type: Option<TaskType>,
    complexity: Option<Complexity>,
    language: Option<String>,
    stack: Option<String>,
    context_tokens: Option<u64>,
    field: Option<String>,
}

pub async fn call(ctx: &CallCtx, old: Old, args: Value) -> Result<ToolOutput> {
    match old {
        Old::Pricing => {
            let p: Pricing = parse(args)?;
            let _ = (p.language, p.stack);
            let mut new = json!({"action": "estimate"});
            if let Some(t) = p.task_type {
                new["task_type"] = t.as_str().into();
            }
            if let Some(c) = p.complexity {
                new["complexity"] = c.as_str().into();
            }
            if let Some(n) = p.context_tokens {
                new["context_tokens"] = n.into();
            }
            execute::call(ctx, "estimate", new).await
        }
        Old::WorkflowQuery => {
            let p: WorkflowQuery = parse(args)?;
            // `stack` was accepted by vault-mcp's chooser but never changed its answer.
            let _ = p.stack;
            let mut new = json!({"action": "query", "query": p.query});
            let fields = [
                ("workflow_id", p.task_id.map(Value::from)),
                ("stage_name", p.stage_name.map(Value::from)),
                ("task_type", p.task_type.map(|t| Value::from(t.as_str()))),
                ("complexity", p.complexity.map(|c| Value::from(c.as_str()))),
                ("language", p.language.map(Value::from)),
                ("context_tokens", p.context_tokens.map(Value::from)),
                ("field", p.field.map(Value::from)),
            ];
            for (k, v) in fields {
                if let Some(v) = v {
                    new[k] = v;
                }
            }
            workflow::call(ctx, "query", new).await
        }
        Old::Search => {
            let p: Search = parse(args)?;
            let mut new = json!({"action": "search", "query": p.query});
            if let Some(s) = p.session {
                new["session_date"] = s.into();
            }
            if let Some(l) = p.limit {
                new["limit"] = l.into();
            }
            checkpoint::call(ctx, "search", new).await
        }
        Old::SessionStart => {
            let p: SessionStart = parse(args)?;
            let mut new = json!({"action": "handoff"});
            if let Some(project) = p.project {
                new["project"] = project.into();
            }
            checkpoint::call(ctx, "handoff", new).await
        }
        Old::SessionEnd => {
            let p: SessionEnd = parse(args)?;
            let _ = p.capture_transcript;
            let mut new = json!({"action": "save", "objective": p.objective, "recent_actions": p.recent_actions});
            if let Some(b) = p.blockers {
                new["blockers"] = b.into();
            }
            if let Some(project) = p.project {
                new["project"] = project.into();
            }
            checkpoint::call(ctx, "save", new).await
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::auth::{Principal, Role};
    use crate::config::{Config, ToolsConfig};
    use crate::tools::call_as;

    #[tokio::test]
    async fn workflow_query_maps_onto_workflow_query() {
        let dir = crate::tools::tempfile_dir::TempDir::new();
        let app = crate::app::App::new(Config {
            db_path: dir.path().join("t.db"),
            tools: ToolsConfig {
                toolsets: vec!["all".into(), "compat".into()],
                read_only: false,
            },
            ..Default::default()
        })
        .unwrap();
        app.store
            .ensure_org("a", "2026-01-01T00:00:00.000Z")
            .await
            .unwrap();
        let op = Principal::local("a", Role::Operator);
        let w = call_as(
            &app,
            &op,
            "workflow",
            json!({"action": "init", "task_type": "fix", "complexity": "simple"}),
        )
        .await
        .unwrap();
        let id = w.structured["workflow"]["id"].as_str().unwrap().to_string();
        let old = call_as(
            &app,
            &op,
            "workflow_query",
            json!({"query": "state", "task_id": id}),
        )
        .await
        .unwrap();
        assert_eq!(old.structured["result"]["workflow"]["id"], id.as_str());
        let err = call_as(&app, &op, "workflow_query", json!({"task_id": id}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("query"), "{err}");
        assert!(app.registry.list().any(|l| l.name == "workflow_query"));
        let saved = call_as(
            &app,
            &op,
            "session_end",
            json!({"objective": "ship", "recent_actions": ["merged"], "project": "vl"}),
        )
        .await
        .unwrap();
        assert!(
            saved.structured["checkpoint"]["id"].is_string(),
            "{}",
            saved.structured
        );
        let start = call_as(&app, &op, "session_start", json!({"project": "vl"}))
            .await
            .unwrap();
        assert!(
            start.text.contains("# Recovery Checkpoint") && start.text.contains("ship"),
            "{}",
            start.text
        );
        call_as(
            &app,
            &op,
            "checkpoint",
            json!({"action": "decide", "decision": "use sqlite", "rationale": "one file"}),
        )
        .await
        .unwrap();
        let found = call_as(&app, &op, "search", json!({"query": "sqlite"}))
            .await
            .unwrap();
        assert_eq!(
            found.structured["results"][0]["kind"], "decision",
            "{}",
            found.structured
        );
        let viewer = Principal::local("a", Role::Viewer);
        let err = call_as(
            &app,
            &viewer,
            "session_end",
            json!({"objective": "x", "recent_actions": []}),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("needs role operator"), "{err}");
    }
}
