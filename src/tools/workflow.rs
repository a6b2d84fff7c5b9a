//! `workflow`: create a piece of work with its classification, write its spec and
//! stages, close or cancel it, read it, list, query and graph it. vault-mcp's
//! action names (`init`, `write`) are aliases; `workflow_query`'s queries are the
//! `query` action.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{
    ActionSpec, CallCtx, ToolOutput, ToolSpec, check_len, check_time, decode_cursor, encode_cursor,
    need, page, parse, read, schema_of, write,
};
use crate::app::Change;
use crate::error::{Error, Result};
use crate::money::{check_nanos, fmt_usd, usd_to_nanos};
use crate::store::{CloseRecord, NewStage, NewWorkflow, WorkflowFilter, page_limit};
use crate::workflows::{
    self, Complexity, Stage, TaskRef, TaskType, Workflow, WorkflowStatus, chooser, graph,
};

pub static SPEC: ToolSpec = ToolSpec {
    action_field: true,
    name: "workflow",
    description: "The record of a piece of work: create it with its classification, write its spec and stages (model, output, tokens, cost, latency), close or cancel it; get, list, query (summary|state|stats|consensus|chooser|stage_read) and graph (compact Mermaid).",
    actions: &ACTIONS,
    input: schema_of::<Params>,
    output: schema_of::<Output>,
    destructive: true,
    idempotent: false,
};

static ACTIONS: [ActionSpec; 9] = [
    write("create", &["init"]),
    write("spec", &[]),
    write("stage", &["write"]),
    write("close", &[]),
    read("get", &[]),
    read("list", &[]),
    write("cancel", &[]),
    read("query", &[]),
    read("graph", &[]),
];

/// What `query` answers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    Summary,
    State,
    Stats,
    Consensus,
    Chooser,
    StageRead,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[allow(dead_code)] // checked by the registry; kept so strict parsing accepts it
    action: String,
    workflow_id: Option<String>,
    /// Short title (create).
    title: Option<String>,
    task_type: Option<TaskType>,
    complexity: Option<Complexity>,
    language: Option<String>,
    stack: Option<String>,
    domain: Option<String>,
    scope: Option<String>,
    is_greenfield: Option<bool>,
    has_tests: Option<bool>,
    description: Option<String>,
    spec: Option<String>,
    /// stage: the task this stage belongs to.
    task_id: Option<String>,
    stage_name: Option<String>,
    /// stage: impl, review, test, error, …
    stage_type: Option<String>,
    model: Option<String>,
    output: Option<Map<String, Value>>,
    #[schemars(range(min = 0))]
    tokens_input: Option<i64>,
    #[schemars(range(min = 0))]
    tokens_output: Option<i64>,
    /// stage cost in USD (self-reported; converted to nano-dollars).
    cost_usd: Option<f64>,
    /// stage cost in nano-dollars (1e-9 USD).
    #[schemars(range(min = 0))]
    cost_usd_nanos: Option<i64>,
    #[schemars(range(min = 0))]
    latency_ms: Option<i64>,
    final_model: Option<String>,
    first_attempt_success: Option<bool>,
    human_correction_needed: Option<bool>,
    #[schemars(range(min = 0, max = 1))]
    quality_score: Option<f64>,
    consensus_type: Option<String>,
    consensus_result: Option<String>,
    models_used: Option<Vec<String>>,
    /// cancel: why.
    reason: Option<String>,
    status: Option<WorkflowStatus>,
    /// Lower bound of created_at (RFC 3339 or YYYY-MM-DD).
    since: Option<String>,
    /// Upper bound (exclusive).
    until: Option<String>,
    #[schemars(range(min = 1, max = 100))]
    limit: Option<u32>,
    cursor: Option<String>,
    query: Option<Query>,
    /// stage_read: a key or JSON Pointer into the stage output.
    field: Option<String>,
    #[schemars(range(min = 0))]
    context_tokens: Option<u64>,
}

#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct Output {
    #[serde(skip_serializing_if = "Option::is_none")]
    workflow: Option<Workflow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workflows: Option<Vec<Workflow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<Stage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stages: Option<Vec<Stage>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tasks: Option<Vec<TaskRef>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled_tasks: Option<usize>,
    /// The query answered, and its result.
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mermaid: Option<String>,
}

const MAX_TEXT: usize = 200;
const MAX_LONG: usize = 65_536;
const MAX_OUTPUT_BYTES: usize = 262_144;

fn one_line(w: &Workflow) -> String {
    format!(
        "{} [{}] {}{} · {} stages · {}",
        w.id,
        w.status,
        match (&w.task_type, &w.complexity) {
            (Some(t), Some(c)) => format!("{t}/{c} "),
            _ => String::new(),
        },
        w.title
            .as_deref()
            .or(w.description.as_deref())
            .unwrap_or(""),
        w.stages,
        fmt_usd(w.cost_nanos)
    )
}

/// A client-reported stage cost feeds the breaker as self-reported provider
/// cost (never billed). Metering trouble is logged, never returned: the stage
/// is already written.
async fn record_stage_cost(ctx: &CallCtx, stage: &crate::workflows::Stage, workflow: &str) {
    let app = &ctx.app;
    let model = stage.model.clone().unwrap_or_else(|| "unknown".into());
    let provider = app
        .meter
        .book()
        .rows()
        .iter()
        .find(|r| r.model == model)
        .map_or_else(|| "client".to_string(), |r| r.provider.clone());
    let tokens = |v: Option<i64>| v.and_then(|t| u64::try_from(t).ok()).unwrap_or(0);
    let call = crate::metering::usage::Call {
        org: ctx.principal.org.clone(),
        key_id: ctx.principal.key_id.clone(),
        workflow_id: Some(workflow.to_string()),
        task_id: stage.task_id.clone(),
        stage_id: Some(stage.id.clone()),
        reason: crate::metering::usage::Reason::LlmCall,
        tool: None,
        provider,
        model,
        account_id: None,
        billing_mode: crate::metering::usage::BillingMode::SelfReported,
        usage: Some(crate::metering::pricing::Usage {
            input: tokens(stage.tokens_input),
            output: tokens(stage.tokens_output),
            ..Default::default()
        }),
        reported_cost_nanos: Some(stage.cost_nanos),
        latency_ms: tokens(stage.latency_ms),
        outcome: "ok".into(),
        source_system: "stage".into(),
        source_reference: stage.id.clone(),
        reservation_id: None,
    };
    if let Err(e) = app.meter.record(call).await {
        tracing::warn!(error = %e, stage = %stage.id, "could not meter a self-reported stage cost");
    }
}

pub async fn call(ctx: &CallCtx, action: &str, args: Value) -> Result<ToolOutput> {
    let p: Params = parse(args)?;
    let app = &ctx.app;
    let org = ctx.principal.org.as_str();
    let now = app.clock.now_text();
    for (f, v, max) in [
        ("title", &p.title, MAX_TEXT),
        ("language", &p.language, MAX_TEXT),
        ("stack", &p.stack, MAX_TEXT),
        ("domain", &p.domain, MAX_TEXT),
        ("scope", &p.scope, MAX_TEXT),
        ("stage_name", &p.stage_name, MAX_TEXT),
        ("stage_type", &p.stage_type, MAX_TEXT),
        ("model", &p.model, MAX_TEXT),
        ("final_model", &p.final_model, MAX_TEXT),
        ("consensus_type", &p.consensus_type, MAX_TEXT),
        ("workflow_id", &p.workflow_id, 64),
        ("task_id", &p.task_id, 64),
        ("description", &p.description, MAX_LONG),
        ("spec", &p.spec, MAX_LONG),
        ("consensus_result", &p.consensus_result, MAX_LONG),
        ("reason", &p.reason, 2000),
        ("field", &p.field, 500),
    ] {
        check_len(f, v, max)?;
    }
    match action {
        "create" => {
            let task_type = *need(&p.task_type, "task_type", action)?;
            let complexity = *need(&p.complexity, "complexity", action)?;
            let w = app
                .store
                .workflow_create(
                    org,
                    NewWorkflow {
                        id: app.ids.next(),
                        title: p.title,
                        task_type: Some(task_type.as_str().into()),
                        complexity: Some(complexity.as_str().into()),
                        language: p.language,
                        stack: p.stack,
                        domain: p.domain,
                        scope: p.scope,
                        is_greenfield: p.is_greenfield,
                        has_tests: p.has_tests,
                        description: p.description,
                        spec: p.spec,
                        created_by: ctx.principal.key_id.clone(),
                        now,
                    },
                )
                .await?;
            let text = format!("created workflow {}", one_line(&w));
            ToolOutput::new(
                Output {
                    workflow: Some(w),
                    ..Default::default()
                },
                text,
            )
        }
        "spec" => {
            let id = need(&p.workflow_id, "workflow_id", action)?;
            let spec = need(&p.spec, "spec", action)?.clone();
            let w = app.store.workflow_spec(org, id, spec, now).await?;
            app.publish(Change::Workflow {
                org: org.into(),
                id: w.id.clone(),
            });
            let text = format!("spec written: {}", one_line(&w));
            ToolOutput::new(
                Output {
                    workflow: Some(w),
                    ..Default::default()
                },
                text,
            )
        }
        "stage" => {
            let id = need(&p.workflow_id, "workflow_id", action)?.clone();
            let name = need(&p.stage_name, "stage_name", action)?.clone();
            let output = p.output.map(Value::Object);
            if let Some(o) = &output
                && o.to_string().len() > MAX_OUTPUT_BYTES
            {
                return Err(Error::invalid(
                    "output",
                    format!("is larger than {MAX_OUTPUT_BYTES} bytes"),
                ));
            }
            let cost_nanos = match (p.cost_usd_nanos, p.cost_usd) {
                (Some(_), Some(_)) => {
                    return Err(Error::invalid(
                        "cost_usd",
                        "give cost_usd or cost_usd_nanos, not both",
                    ));
                }
                (Some(n), None) => check_nanos("cost_usd_nanos", n)?,
                (None, Some(usd)) => usd_to_nanos("cost_usd", usd)?,
                (None, None) => 0,
            };
            let (stage, w) = app
                .store
                .stage_write(
                    org,
                    NewStage {
                        id: app.ids.next(),
                        workflow_id: id,
                        task_id: p.task_id,
                        name,
                        stage_type: p.stage_type,
                        model: p.model,
                        output,
                        tokens_input: p.tokens_input,
                        tokens_output: p.tokens_output,
                        cost_nanos,
                        cost_self_reported: true,
                        latency_ms: p.latency_ms,
                        created_by: ctx.principal.key_id.clone(),
                        now,
                    },
                )
                .await?;
            if stage.cost_nanos > 0 {
                record_stage_cost(ctx, &stage, &w.id).await;
            }
            app.publish(Change::Workflow {
                org: org.into(),
                id: w.id.clone(),
            });
            let text = format!(
                "stage {} written ({}); workflow {}",
                stage.name,
                fmt_usd(stage.cost_nanos),
                one_line(&w)
            );
            ToolOutput::new(
                Output {
                    workflow: Some(w),
                    stage: Some(stage),
                    ..Default::default()
                },
                text,
            )
        }
        "close" => {
            let id = need(&p.workflow_id, "workflow_id", action)?;
            if let Some(q) = p.quality_score
                && !(0.0..=1.0).contains(&q)
            {
                return Err(Error::invalid("quality_score", "must be between 0 and 1"));
            }
            let rec = CloseRecord {
                final_model: p.final_model,
                first_attempt_success: p.first_attempt_success,
                human_correction_needed: p.human_correction_needed,
                quality_score: p.quality_score,
                consensus_type: p.consensus_type,
                consensus_result: p.consensus_result,
                models_used: p.models_used,
            };
            let w = app.store.workflow_close(org, id, rec, now).await?;
            app.publish(Change::Workflow {
                org: org.into(),
                id: w.id.clone(),
            });
            let text = format!("closed {}", one_line(&w));
            ToolOutput::new(
                Output {
                    workflow: Some(w),
                    ..Default::default()
                },
                text,
            )
        }
        "cancel" => {
            let id = need(&p.workflow_id, "workflow_id", action)?;
            let (w, n) = app.store.workflow_cancel(org, id, p.reason, now).await?;
            app.publish(Change::Workflow {
                org: org.into(),
                id: w.id.clone(),
            });
            let text = format!("cancelled {} and {n} open tasks", one_line(&w));
            ToolOutput::new(
                Output {
                    workflow: Some(w),
                    cancelled_tasks: Some(n),
                    ..Default::default()
                },
                text,
            )
        }
        "get" => {
            let id = need(&p.workflow_id, "workflow_id", action)?;
            let w = app.store.workflow_get(org, id).await?;
            let stages = app.store.workflow_stages(org, id, false).await?;
            let tasks = app.store.workflow_tasks(org, id).await?;
            let text = format!("{} · {} tasks", one_line(&w), tasks.len());
            ToolOutput::new(
                Output {
                    workflow: Some(w),
                    stages: Some(stages),
                    tasks: Some(tasks),
                    ..Default::default()
                },
                text,
            )
        }
        "list" => {
            let limit = page_limit(p.limit, 20, 100);
            let after = p.cursor.as_deref().map(decode_cursor).transpose()?;
            let rows = app
                .store
                .workflow_list(
                    org,
                    WorkflowFilter {
                        status: p.status.map(|s| s.as_str().to_string()),
                        task_type: p.task_type.map(|t| t.as_str().to_string()),
                        complexity: p.complexity.map(|c| c.as_str().to_string()),
                        since: check_time("since", &p.since)?,
                        until: check_time("until", &p.until)?,
                        after,
                        limit: limit + 1,
                    },
                )
                .await?;
            let (rows, next) = page(rows, limit as usize, |w| {
                encode_cursor(&w.created_at, &w.id)
            });
            let mut text = format!("{} workflows", rows.len());
            for w in &rows {
                text.push_str("\n- ");
                text.push_str(&one_line(w));
            }
            if next.is_some() {
                text.push_str("\n(more: pass next_cursor)");
            }
            ToolOutput::new(
                Output {
                    workflows: Some(rows),
                    next_cursor: next,
                    ..Default::default()
                },
                text,
            )
        }
        "graph" => {
            let id = need(&p.workflow_id, "workflow_id", action)?;
            let w = app.store.workflow_get(org, id).await?;
            let stages = app.store.workflow_stages(org, id, true).await?;
            let tasks = app.store.workflow_tasks(org, id).await?;
            let g = graph::render(&w, &stages, &tasks);
            ToolOutput::new(
                Output {
                    mermaid: Some(g.clone()),
                    ..Default::default()
                },
                g,
            )
        }
        "query" => query(ctx, p).await,
        other => Err(Error::invalid(
            "action",
            format!("unknown action {other:?}"),
        )),
    }
}

async fn query(ctx: &CallCtx, p: Params) -> Result<ToolOutput> {
    let app = &ctx.app;
    let org = ctx.principal.org.as_str();
    let q = *need(&p.query, "query", "query")?;
    let (name, result, text) = match q {
        Query::Summary => match &p.workflow_id {
            Some(id) => {
                let w = app.store.workflow_get(org, id).await?;
                let stages = app.store.workflow_stages(org, id, false).await?;
                let models: std::collections::BTreeSet<&str> =
                    stages.iter().filter_map(|s| s.model.as_deref()).collect();
                let text = one_line(&w);
                let r = json!({
                    "workflow_id": w.id, "status": w.status, "stages": w.stages, "cost_nanos": w.cost_nanos,
                    "tokens_input": w.tokens_input, "tokens_output": w.tokens_output,
                    "latency_ms": w.latency_ms, "models": models,
                });
                ("summary", r, text)
            }
            None => {
                let r = app
                    .store
                    .workflow_summary(
                        org,
                        check_time("since", &p.since)?,
                        check_time("until", &p.until)?,
                        Some(ctx.ct.clone()),
                    )
                    .await?;
                let statuses: Vec<String> = r["by_status"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|s| {
                                format!("{} {}", s["workflows"], s["status"].as_str().unwrap_or(""))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let text = format!(
                    "workflows: {}",
                    if statuses.is_empty() {
                        "none".into()
                    } else {
                        statuses.join(", ")
                    }
                );
                ("summary", r, text)
            }
        },
        Query::State => {
            let id = need(&p.workflow_id, "workflow_id", "query state")?;
            let w = app.store.workflow_get(org, id).await?;
            let stages = app.store.workflow_stages(org, id, false).await?;
            let tasks = app.store.workflow_tasks(org, id).await?;
            let last = stages.last().map(|s| s.name.clone());
            let text = format!(
                "{} · last stage: {} · {} tasks",
                one_line(&w),
                last.as_deref().unwrap_or("none"),
                tasks.len()
            );
            let r = json!({"workflow": w, "stage_names": stages.iter().map(|s| &s.name).collect::<Vec<_>>(),
                           "last_stage": last, "tasks": tasks});
            ("state", r, text)
        }
        Query::Stats => {
            let (total, stats) = app
                .store
                .model_stats(
                    org,
                    p.task_type.map(|t| t.as_str().into()),
                    p.complexity.map(|c| c.as_str().into()),
                    p.language.clone(),
                )
                .await?;
            let text = format!("{total} closed workflows; {} models", stats.len());
            (
                "stats",
                json!({"closed_workflows": total, "models": stats}),
                text,
            )
        }
        Query::Chooser => {
            let (total, stats) = app
                .store
                .model_stats(
                    org,
                    p.task_type.map(|t| t.as_str().into()),
                    p.complexity.map(|c| c.as_str().into()),
                    None,
                )
                .await?;
            let rec = chooser::by_history(total, &stats).unwrap_or_else(|| {
                chooser::by_rules(
                    p.task_type.map(TaskType::as_str),
                    p.complexity.map(Complexity::as_str),
                    p.context_tokens,
                )
            });
            let text = format!(
                "start with {} ({}, {} confidence): {}",
                rec.model, rec.basis, rec.confidence, rec.reason
            );
            ("chooser", serde_json::to_value(&rec)?, text)
        }
        Query::Consensus => {
            let id = need(&p.workflow_id, "workflow_id", "query consensus")?;
            app.store.workflow_get(org, id).await?;
            let stages: Vec<Stage> = app
                .store
                .workflow_stages(org, id, true)
                .await?
                .into_iter()
                .filter(|s| s.stage_type.as_deref() == Some("impl"))
                .collect();
            let r = workflows::consensus(&stages);
            let text = format!(
                "{} impl stages; agreed: {}; diverged: {}",
                stages.len(),
                r["agreed"],
                r["diverged"].as_array().map_or(0, Vec::len)
            );
            ("consensus", r, text)
        }
        Query::StageRead => {
            let name = need(&p.stage_name, "stage_name", "query stage_read")?;
            let stage = app
                .store
                .stage_by_name(org, p.workflow_id.clone(), name)
                .await?;
            let out = stage.output.clone().unwrap_or(Value::Null);
            let value = match &p.field {
                Some(f) => workflows::project(&out, f).ok_or_else(|| {
                    Error::invalid(
                        "field",
                        format!("{f:?} is not in the output of stage {name}"),
                    )
                })?,
                None => out,
            };
            let mut text = value.to_string();
            if text.len() > 2000 {
                text.truncate(text.floor_char_boundary(2000));
                text.push('…');
            }
            (
                "stage_read",
                json!({"stage_id": stage.id, "workflow_id": stage.workflow_id, "stage_name": stage.name, "value": value}),
                text,
            )
        }
    };
    ToolOutput::new(
        Output {
            query: Some(name.into()),
            result: Some(result),
            ..Default::default()
        },
        text,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::auth::{Principal, Role};
    use crate::tools::{call_as, test_app};

    async fn call(app: &std::sync::Arc<crate::app::App>, p: &Principal, args: Value) -> Value {
        match call_as(app, p, "workflow", args.clone()).await {
            Ok(o) => o.structured,
            Err(e) => panic!("{args}: {e}"),
        }
    }

    #[tokio::test]
    async fn lifecycle_query_graph_and_isolation() {
        let (app, _d) = test_app();
        for org in ["a", "b"] {
            app.store
                .ensure_org(org, "2026-01-01T00:00:00.000Z")
                .await
                .unwrap();
        }
        let op = Principal::local("a", Role::Operator);
        let other = Principal::local("b", Role::Owner);
        let viewer = Principal::local("a", Role::Viewer);
        let w = call(
            &app,
            &op,
            json!({"action": "init", "task_type": "fix", "complexity": "simple",
            "language": "rust", "stack": "axum", "title": "Fix login"}),
        )
        .await;
        let id = w["workflow"]["id"].as_str().unwrap().to_string();
        assert_eq!(w["workflow"]["status"], "open");
        call(
            &app,
            &op,
            json!({"action": "spec", "workflow_id": id, "spec": "do it"}),
        )
        .await;
        let s = call(
            &app,
            &op,
            json!({"action": "write", "workflow_id": id, "stage_name": "impl-1",
            "stage_type": "impl", "model": "sonnet", "cost_usd": 0.1, "latency_ms": 1200,
            "output": {"files_changed": ["a.rs"]}}),
        )
        .await;
        assert_eq!(s["workflow"]["status"], "in_progress");
        assert_eq!(s["stage"]["cost_nanos"], 100_000_000);
        call(
            &app,
            &op,
            json!({"action": "stage", "workflow_id": id, "stage_name": "impl-2",
            "stage_type": "impl", "model": "opus", "cost_usd_nanos": 200000000,
            "output": {"files_changed": ["a.rs"], "test_targets": ["t"]}}),
        )
        .await;
        let q = call(
            &app,
            &viewer,
            json!({"action": "query", "query": "consensus", "workflow_id": id}),
        )
        .await;
        assert_eq!(q["result"]["agreed"], json!(["files_changed"]));
        let q = call(
            &app,
            &viewer,
            json!({"action": "query", "query": "stage_read", "workflow_id": id,
            "stage_name": "impl-1", "field": "files_changed"}),
        )
        .await;
        assert_eq!(q["result"]["value"], json!(["a.rs"]));
        let g = call(&app, &viewer, json!({"action": "graph", "workflow_id": id})).await;
        let m = g["mermaid"].as_str().unwrap();
        assert!(
            m.starts_with("graph LR\n") && m.contains("impl-2 opus"),
            "{m}"
        );
        let c = call(
            &app,
            &op,
            json!({"action": "close", "workflow_id": id, "final_model": "opus",
            "first_attempt_success": false, "quality_score": 0.9}),
        )
        .await;
        assert_eq!(c["workflow"]["status"], "closed");
        assert_eq!(c["workflow"]["cost_nanos"], 300_000_000);
        assert_eq!(c["workflow"]["models_used"], json!(["opus", "sonnet"]));
        // Invalid transition: refused, nothing written.
        let err = call_as(
            &app,
            &op,
            "workflow",
            json!({"action": "stage", "workflow_id": id, "stage_name": "late"}),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("closed"), "{err}");
        let got = call(&app, &viewer, json!({"action": "get", "workflow_id": id})).await;
        assert_eq!(got["stages"].as_array().unwrap().len(), 2);
        // Another org's id looks missing.
        for args in [
            json!({"action": "get", "workflow_id": id}),
            json!({"action": "cancel", "workflow_id": id}),
            json!({"action": "graph", "workflow_id": id}),
        ] {
            let err = call_as(&app, &other, "workflow", args)
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("not found"), "{err}");
        }
        let q = call(
            &app,
            &viewer,
            json!({"action": "query", "query": "summary"}),
        )
        .await;
        assert_eq!(q["result"]["by_status"][0]["status"], "closed");
        assert_eq!(q["result"]["by_model"][0]["model"], "opus");
        let q = call(&app, &viewer, json!({"action": "query", "query": "chooser", "task_type": "docs", "complexity": "simple"})).await;
        assert_eq!(q["result"]["basis"], "rules");
        let err = call_as(
            &app,
            &viewer,
            "workflow",
            json!({"action": "create", "task_type": "fix", "complexity": "simple"}),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("needs role operator"), "{err}");
    }

    #[tokio::test]
    async fn list_pages_and_cancel_cascades() {
        let (app, _d) = test_app();
        app.store
            .ensure_org("a", "2026-01-01T00:00:00.000Z")
            .await
            .unwrap();
        let op = Principal::local("a", Role::Operator);
        let mut ids = Vec::new();
        for i in 0..5 {
            let w = call(
                &app,
                &op,
                json!({"action": "create", "task_type": "feature", "complexity": "moderate",
                "title": format!("w{i}")}),
            )
            .await;
            ids.push(w["workflow"]["id"].as_str().unwrap().to_string());
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut args = json!({"action": "list", "limit": 2});
            if let Some(c) = &cursor {
                args["cursor"] = json!(c);
            }
            let page = call(&app, &op, args).await;
            for w in page["workflows"].as_array().unwrap() {
                seen.push(w["id"].as_str().unwrap().to_string());
            }
            match page.get("next_cursor") {
                Some(c) => cursor = Some(c.as_str().unwrap().to_string()),
                None => break,
            }
        }
        ids.reverse();
        assert_eq!(seen, ids, "newest first, every row once");
        let c = call(
            &app,
            &op,
            json!({"action": "cancel", "workflow_id": ids[0], "reason": "dup"}),
        )
        .await;
        assert_eq!(c["workflow"]["status"], "cancelled");
        let err = call_as(
            &app,
            &op,
            "workflow",
            json!({"action": "list", "cursor": "!!"}),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("cursor"), "{err}");
        let err = call_as(
            &app,
            &op,
            "workflow",
            json!({"action": "create", "task_type": "fix"}),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("complexity"), "{err}");
        let err = call_as(
            &app,
            &op,
            "workflow",
            json!({"action": "create", "task_type": "fix", "complexity": "simple",
            "title": "x".repeat(201)}),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("title"), "{err}");
        let err = call_as(
            &app,
            &op,
            "workflow",
            json!({"action": "create", "task_type": "bugfix", "complexity": "simple"}),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("task_type"), "{err}");
    }
}
