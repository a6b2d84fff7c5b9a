//! `task`: units of work for an agent or a person — create (vault-mcp's `add`, and
//! `retro` for work already done), get, list (JSON or a Markdown checklist),
//! update, done, cancel, classify (rule-based), and resolve (a person answers a
//! task that waits in needs_human).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    ActionSpec, CallCtx, ToolOutput, ToolSpec, check_len, check_time, decode_cursor, encode_cursor,
    need, page, parse, read, schema_of, write,
};
use crate::error::{Error, Result};
use crate::money::fmt_usd;
use crate::store::{NewTask, TaskFilter, TaskUpdate, page_limit};
use crate::tasks::classify::{Classification, classify};
use crate::tasks::{Task, TaskStatus};
use crate::workflows::{Complexity, TaskType};

pub static SPEC: ToolSpec = ToolSpec {
    action_field: true,
    name: "task",
    description: "Units of work for an agent or a person: create (add; retro = already done), get, list (format json|md), update, done, cancel, classify (rule-based task_type/complexity/language/stack/domain), resolve (answer a needs_human task).",
    actions: &ACTIONS,
    input: schema_of::<Params>,
    output: schema_of::<Output>,
    destructive: true,
    idempotent: false,
};

static ACTIONS: [ActionSpec; 9] = [
    write("create", &["add"]),
    // vault-mcp's retroactive log of work already done: create, source retroactive, status done.
    write("retro", &[]),
    read("get", &[]),
    read("list", &[]),
    write("update", &[]),
    write("done", &[]),
    write("cancel", &[]),
    // With task_id it stores the result; without, it only computes.
    write("classify", &[]),
    write("resolve", &[]),
];

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Md,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[allow(dead_code)] // checked by the registry; kept so strict parsing accepts it
    action: String,
    task_id: Option<String>,
    workflow_id: Option<String>,
    title: Option<String>,
    instruction: Option<String>,
    /// Default "inbox".
    project: Option<String>,
    /// Who made it: cc, claude.ai, iphone, auto (needs context), …
    source: Option<String>,
    context: Option<String>,
    repo: Option<String>,
    paths: Option<Vec<String>>,
    /// A JSON Schema the answer must satisfy.
    answer_schema: Option<Map<String, Value>>,
    status: Option<TaskStatus>,
    /// When the work happened (retro, update).
    occurred_at: Option<String>,
    format: Option<Format>,
    /// done/resolve: the answer.
    answer: Option<String>,
    reason: Option<String>,
    task_type: Option<TaskType>,
    complexity: Option<Complexity>,
    language: Option<String>,
    stack: Option<String>,
    domain: Option<String>,
    #[schemars(range(min = 1, max = 100))]
    limit: Option<u32>,
    cursor: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct Output {
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<Task>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tasks: Option<Vec<Task>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    classification: Option<Classification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    markdown: Option<String>,
}

const MAX_SHORT: usize = 200;
const MAX_LONG: usize = 65_536;
const MAX_PATHS: usize = 200;

fn line(t: &Task) -> String {
    format!(
        "{} [{}] {} ({}){}",
        t.id,
        t.status,
        t.title,
        t.project,
        if t.cost_nanos > 0 {
            format!(" {}", fmt_usd(t.cost_nanos))
        } else {
            String::new()
        }
    )
}

fn checklist(tasks: &[Task]) -> String {
    let mut md = String::new();
    for t in tasks {
        let mark = if t.status == "done" { "x" } else { " " };
        let status = if matches!(t.status.as_str(), "open" | "done") {
            String::new()
        } else {
            format!(" — {}", t.status)
        };
        md.push_str(&format!(
            "- [{mark}] {} ({}) `{}`{status}\n",
            t.title, t.project, t.id
        ));
    }
    if md.is_empty() {
        md.push_str("_no tasks_\n");
    }
    md
}

/// The schema must itself compile as a JSON Schema.
fn schema_text(s: &Option<Map<String, Value>>) -> Result<Option<String>> {
    match s {
        None => Ok(None),
        Some(m) => {
            let v = Value::Object(m.clone());
            jsonschema::validator_for(&v).map_err(|e| {
                Error::invalid("answer_schema", format!("is not a valid JSON Schema: {e}"))
            })?;
            Ok(Some(v.to_string()))
        }
    }
}

/// Checks an answer against the task's schema, if it has one.
fn check_answer(task: &Task, answer: &str) -> Result<()> {
    let Some(schema) = &task.answer_schema else {
        return Ok(());
    };
    let v: Value = serde_json::from_str(answer).map_err(|e| {
        Error::invalid(
            "answer",
            format!("must be JSON for this task's answer_schema: {e}"),
        )
    })?;
    let validator = jsonschema::validator_for(&Value::Object(schema.clone()))
        .map_err(|e| Error::invalid("answer_schema", e.to_string()))?;
    if let Some(err) = validator.iter_errors(&v).next() {
        return Err(Error::invalid(
            "answer",
            format!(
                "does not satisfy the task's answer_schema at {}: {err}",
                err.instance_path()
            ),
        ));
    }
    Ok(())
}

pub async fn call(ctx: &CallCtx, action: &str, args: Value) -> Result<ToolOutput> {
    let p: Params = parse(args)?;
    let app = &ctx.app;
    let org = ctx.principal.org.as_str();
    let now = app.clock.now_text();
    for (f, v, max) in [
        ("title", &p.title, MAX_SHORT),
        ("project", &p.project, MAX_SHORT),
        ("source", &p.source, 100),
        ("language", &p.language, MAX_SHORT),
        ("stack", &p.stack, MAX_SHORT),
        ("domain", &p.domain, MAX_SHORT),
        ("repo", &p.repo, 500),
        ("task_id", &p.task_id, 64),
        ("workflow_id", &p.workflow_id, 64),
        ("reason", &p.reason, 2000),
        ("context", &p.context, MAX_LONG),
        ("instruction", &p.instruction, MAX_LONG),
        ("answer", &p.answer, MAX_LONG),
    ] {
        check_len(f, v, max)?;
    }
    if let Some(paths) = &p.paths {
        if paths.len() > MAX_PATHS {
            return Err(Error::invalid(
                "paths",
                format!("has more than {MAX_PATHS} items"),
            ));
        }
        if let Some(i) = paths.iter().position(|x| x.chars().count() > 1000) {
            return Err(Error::invalid(
                format!("paths.{i}"),
                "is longer than 1000 characters",
            ));
        }
    }
    match action {
        "create" | "retro" => {
            let title = need(&p.title, "title", "create")?.trim().to_string();
            if title.is_empty() {
                return Err(Error::invalid("title", "must not be empty"));
            }
            let retro = action == "retro" || p.source.as_deref() == Some("retroactive");
            if p.source.as_deref() == Some("auto") && p.context.is_none() {
                return Err(Error::invalid("context", "is required when source is auto"));
            }
            let status = if retro {
                TaskStatus::Done
            } else {
                match p.status {
                    None | Some(TaskStatus::Open) => TaskStatus::Open,
                    Some(s @ (TaskStatus::InProgress | TaskStatus::NeedsHuman)) => s,
                    Some(other) => {
                        return Err(Error::invalid(
                            "status",
                            format!(
                                "a new task starts open, in_progress or needs_human, not {}",
                                other.as_str()
                            ),
                        ));
                    }
                }
            };
            let task = app
                .store
                .task_create(
                    org,
                    NewTask {
                        id: app.ids.next(),
                        workflow_id: p.workflow_id,
                        title,
                        instruction: p.instruction,
                        project: p.project.unwrap_or_else(|| "inbox".into()),
                        source: if retro {
                            Some("retroactive".into())
                        } else {
                            p.source
                        },
                        context: p.context,
                        repo: p.repo,
                        paths: p.paths.unwrap_or_default(),
                        answer_schema: schema_text(&p.answer_schema)?,
                        task_type: p.task_type.map(|t| t.as_str().into()),
                        complexity: p.complexity.map(|c| c.as_str().into()),
                        language: p.language,
                        stack: p.stack,
                        domain: p.domain,
                        status: status.as_str().into(),
                        occurred_at: check_time("occurred_at", &p.occurred_at)?,
                        created_by: ctx.principal.key_id.clone(),
                        now,
                    },
                )
                .await?;
            changed(ctx, task, "created task")
        }
        "get" => {
            let id = need(&p.task_id, "task_id", action)?;
            let task = app.store.task_get(org, id).await?;
            let text = line(&task);
            ToolOutput::new(
                Output {
                    task: Some(task),
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
                .task_list(
                    org,
                    TaskFilter {
                        status: p.status.map(|s| s.as_str().to_string()),
                        project: p.project,
                        workflow_id: p.workflow_id,
                        source: p.source,
                        since: check_time("since", &p.since)?,
                        until: check_time("until", &p.until)?,
                        after,
                        limit: limit + 1,
                    },
                )
                .await?;
            let (rows, next) = page(rows, limit as usize, |t| {
                encode_cursor(&t.created_at, &t.id)
            });
            if p.format == Some(Format::Md) {
                let md = checklist(&rows);
                return ToolOutput::new(
                    Output {
                        tasks: Some(rows),
                        next_cursor: next,
                        markdown: Some(md.clone()),
                        ..Default::default()
                    },
                    md,
                );
            }
            let mut text = format!("{} tasks", rows.len());
            for t in &rows {
                text.push_str("\n- ");
                text.push_str(&line(t));
            }
            if next.is_some() {
                text.push_str("\n(more: pass next_cursor)");
            }
            ToolOutput::new(
                Output {
                    tasks: Some(rows),
                    next_cursor: next,
                    ..Default::default()
                },
                text,
            )
        }
        "update" => {
            let id = need(&p.task_id, "task_id", action)?;
            if p.status == Some(TaskStatus::Done) {
                return Err(Error::invalid(
                    "status",
                    "use action `done` (or `resolve` for needs_human) to finish a task",
                ));
            }
            let update = TaskUpdate {
                title: p.title,
                instruction: p.instruction,
                project: p.project,
                context: p.context,
                repo: p.repo,
                paths: p.paths,
                answer_schema: schema_text(&p.answer_schema)?,
                task_type: p.task_type.map(|t| t.as_str().into()),
                complexity: p.complexity.map(|c| c.as_str().into()),
                language: p.language,
                stack: p.stack,
                domain: p.domain,
                status: p.status,
                occurred_at: check_time("occurred_at", &p.occurred_at)?,
                ..Default::default()
            };
            changed(
                ctx,
                app.store.task_update(org, id, update, now).await?,
                "updated",
            )
        }
        "done" => {
            let id = need(&p.task_id, "task_id", action)?;
            if let Some(a) = &p.answer {
                check_answer(&app.store.task_get(org, id).await?, a)?;
            }
            let update = TaskUpdate {
                status: Some(TaskStatus::Done),
                answer: p.answer,
                ..Default::default()
            };
            changed(
                ctx,
                app.store.task_update(org, id, update, now).await?,
                "done:",
            )
        }
        "cancel" => {
            let id = need(&p.task_id, "task_id", action)?;
            let current = app.store.task_get(org, id).await?;
            let context = p.reason.map(|r| match &current.context {
                Some(c) => format!("{c}\ncancelled: {r}"),
                None => format!("cancelled: {r}"),
            });
            let update = TaskUpdate {
                status: Some(TaskStatus::Cancelled),
                context,
                ..Default::default()
            };
            changed(
                ctx,
                app.store.task_update(org, id, update, now).await?,
                "cancelled",
            )
        }
        "classify" => match &p.task_id {
            Some(id) => {
                let task = app.store.task_get(org, id).await?;
                let text_in = task
                    .instruction
                    .clone()
                    .unwrap_or_else(|| task.title.clone());
                let c = classify(&text_in, &task.paths);
                // Fill what is not set; a person's classification wins over the rules.
                let update = TaskUpdate {
                    task_type: task
                        .task_type
                        .is_none()
                        .then(|| c.task_type.as_str().to_string()),
                    complexity: task
                        .complexity
                        .is_none()
                        .then(|| c.complexity.as_str().to_string()),
                    language: if task.language.is_none() {
                        c.language.clone()
                    } else {
                        None
                    },
                    stack: if task.stack.is_none() {
                        c.stack.clone()
                    } else {
                        None
                    },
                    domain: if task.domain.is_none() {
                        c.domain.clone()
                    } else {
                        None
                    },
                    ..Default::default()
                };
                let task = app.store.task_update(org, id, update, now).await?;
                let text = format!(
                    "{} → {} / {}",
                    task.id,
                    c.task_type.as_str(),
                    c.complexity.as_str()
                );
                ToolOutput::new(
                    Output {
                        task: Some(task),
                        classification: Some(c),
                        ..Default::default()
                    },
                    text,
                )
            }
            None => {
                let instruction = p.instruction.clone().or(p.title.clone()).ok_or_else(|| {
                    Error::invalid(
                        "instruction",
                        "is required for action `classify` without task_id",
                    )
                })?;
                let c = classify(&instruction, p.paths.as_deref().unwrap_or(&[]));
                let text = format!(
                    "{} / {}{}{}",
                    c.task_type.as_str(),
                    c.complexity.as_str(),
                    c.language
                        .as_deref()
                        .map(|l| format!(" · {l}"))
                        .unwrap_or_default(),
                    c.domain
                        .as_deref()
                        .map(|d| format!(" · {d}"))
                        .unwrap_or_default()
                );
                ToolOutput::new(
                    Output {
                        classification: Some(c),
                        ..Default::default()
                    },
                    text,
                )
            }
        },
        "resolve" => {
            let id = need(&p.task_id, "task_id", action)?;
            let answer = need(&p.answer, "answer", action)?.clone();
            check_answer(&app.store.task_get(org, id).await?, &answer)?;
            // A person answers for the ladder: not the key that started the run.
            if let Some(run) = app.store.run_waiting(org, id).await?
                && run.key_id == ctx.principal.key_id
            {
                return Err(Error::Conflict(format!(
                    "task {id} was handed to a person by run {} started with this key; another key (operator or above) must resolve it",
                    run.id
                )));
            }
            let task = app
                .store
                .task_resolve(org, id, answer, ctx.principal.key_id.clone(), now)
                .await?;
            changed(ctx, task, "resolved")
        }
        other => Err(Error::invalid(
            "action",
            format!("unknown action {other:?}"),
        )),
    }
}

/// The answer to an action that changed a task: publish, then show it.
fn changed(ctx: &CallCtx, task: Task, verb: &str) -> Result<ToolOutput> {
    publish_workflow(ctx, &task);
    let text = format!("{verb} {}", line(&task));
    ToolOutput::new(
        Output {
            task: Some(task),
            ..Default::default()
        },
        text,
    )
}

/// A task change is a change of its workflow, for resource subscribers.
fn publish_workflow(ctx: &CallCtx, task: &Task) {
    if let Some(w) = &task.workflow_id {
        ctx.app.publish(crate::app::Change::Workflow {
            org: ctx.principal.org.clone(),
            id: w.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::auth::{Principal, Role};
    use crate::tools::{call_as, test_app};

    async fn ok(app: &std::sync::Arc<crate::app::App>, p: &Principal, args: Value) -> Value {
        match call_as(app, p, "task", args.clone()).await {
            Ok(o) => o.structured,
            Err(e) => panic!("{args}: {e}"),
        }
    }

    async fn err(app: &std::sync::Arc<crate::app::App>, p: &Principal, args: Value) -> String {
        call_as(app, p, "task", args.clone())
            .await
            .map(|o| panic!("{args} should fail: {}", o.text))
            .unwrap_err()
            .to_string()
    }

    #[tokio::test]
    async fn lifecycle_aliases_markdown_and_resolve() {
        let (app, _d) = test_app();
        for o in ["a", "b"] {
            app.store
                .ensure_org(o, "2026-01-01T00:00:00.000Z")
                .await
                .unwrap();
        }
        let op = Principal::local("a", Role::Operator);
        let viewer = Principal::local("a", Role::Viewer);
        let other = Principal::local("b", Role::Owner);
        let t = ok(
            &app,
            &op,
            json!({"action": "add", "title": "Write docs", "project": "vl",
            "instruction": "Update the README", "paths": ["README.md"]}),
        )
        .await;
        let id = t["task"]["id"].as_str().unwrap().to_string();
        assert_eq!(t["task"]["status"], "open");
        let c = ok(&app, &op, json!({"action": "classify", "task_id": id})).await;
        assert_eq!(c["task"]["task_type"], "docs");
        // update sets occurred_at (normalised), and names it when it is not a time.
        let u = ok(
            &app,
            &op,
            json!({"action": "update", "task_id": id, "occurred_at": "2026-10-31"}),
        )
        .await;
        assert_eq!(u["task"]["occurred_at"], "2026-10-31T00:00:00.000Z");
        let e = err(
            &app,
            &op,
            json!({"action": "update", "task_id": id, "occurred_at": "soon"}),
        )
        .await;
        assert!(e.contains("occurred_at"), "{e}");
        let r = ok(
            &app,
            &op,
            json!({"action": "retro", "title": "Fixed CI", "occurred_at": "2026-11-01"}),
        )
        .await;
        assert_eq!(r["task"]["status"], "done");
        assert_eq!(r["task"]["source"], "retroactive");
        let md = call_as(
            &app,
            &viewer,
            "task",
            json!({"action": "list", "format": "md"}),
        )
        .await
        .unwrap();
        assert!(
            md.text.contains("- [x] Fixed CI (inbox)") && md.text.contains("- [ ] Write docs (vl)"),
            "{}",
            md.text
        );
        // needs_human → resolve, with an answer schema.
        let h = ok(
            &app,
            &op,
            json!({"action": "create", "title": "Pick a name", "status": "needs_human",
            "answer_schema": {"type": "object", "required": ["name"]}}),
        )
        .await;
        let hid = h["task"]["id"].as_str().unwrap().to_string();
        let e = err(&app, &op, json!({"action": "done", "task_id": hid})).await;
        assert!(e.contains("resolve"), "{e}");
        let e = err(
            &app,
            &op,
            json!({"action": "resolve", "task_id": hid, "answer": "{\"nom\": 1}"}),
        )
        .await;
        assert!(e.contains("answer") && e.contains("name"), "{e}");
        let done = ok(
            &app,
            &op,
            json!({"action": "resolve", "task_id": hid, "answer": "{\"name\": \"vaultline\"}"}),
        )
        .await;
        assert_eq!(done["task"]["status"], "done");
        assert_eq!(done["task"]["resolved_by"], "local");
        let e = err(
            &app,
            &op,
            json!({"action": "resolve", "task_id": id, "answer": "x"}),
        )
        .await;
        assert!(e.contains("needs_human"), "{e}");
        // Invalid transition, nothing written.
        let e = err(
            &app,
            &op,
            json!({"action": "update", "task_id": hid, "title": "renamed"}),
        )
        .await;
        assert!(e.contains("no longer be changed"), "{e}");
        assert_eq!(
            ok(&app, &viewer, json!({"action": "get", "task_id": hid})).await["task"]["title"],
            "Pick a name"
        );
        // Roles and orgs.
        let e = err(&app, &viewer, json!({"action": "create", "title": "x"})).await;
        assert!(e.contains("needs role operator"), "{e}");
        for args in [
            json!({"action": "get", "task_id": id}),
            json!({"action": "update", "task_id": id, "title": "y"}),
            json!({"action": "done", "task_id": id}),
            json!({"action": "cancel", "task_id": id}),
            json!({"action": "resolve", "task_id": id, "answer": "z"}),
        ] {
            let e = err(&app, &other, args).await;
            assert!(e.contains("not found"), "{e}");
        }
        let c = ok(
            &app,
            &op,
            json!({"action": "cancel", "task_id": id, "reason": "dup"}),
        )
        .await;
        assert_eq!(c["task"]["status"], "cancelled");
        assert!(c["task"]["context"].as_str().unwrap().contains("dup"));
    }

    #[tokio::test]
    async fn bad_input_and_pages() {
        let (app, _d) = test_app();
        app.store
            .ensure_org("a", "2026-01-01T00:00:00.000Z")
            .await
            .unwrap();
        let op = Principal::local("a", Role::Operator);
        for (args, needle) in [
            (json!({"action": "create"}), "title"),
            (
                json!({"action": "create", "title": "t".repeat(201)}),
                "title",
            ),
            (
                json!({"action": "create", "title": "x", "source": "auto"}),
                "context",
            ),
            (
                json!({"action": "create", "title": "x", "answer_schema": {"type": 12}}),
                "answer_schema",
            ),
            (
                json!({"action": "create", "title": "x", "status": "done"}),
                "status",
            ),
            (
                json!({"action": "create", "title": "x", "workflow_id": "01JZZZZZZZZZZZZZZZZZZZZZZZ"}),
                "not found",
            ),
            (json!({"action": "classify"}), "instruction"),
            (json!({"action": "get"}), "task_id"),
            (json!({"action": "list", "since": "soon"}), "since"),
        ] {
            let e = err(&app, &op, args.clone()).await;
            assert!(e.contains(needle), "{args}: {e}");
        }
        let listed = ok(&app, &op, json!({"action": "list"})).await;
        assert_eq!(listed["tasks"], json!([]), "nothing was written");
        for i in 0..5 {
            ok(
                &app,
                &op,
                json!({"action": "create", "title": format!("t{i}")}),
            )
            .await;
        }
        let mut seen = 0;
        let mut cursor: Option<String> = None;
        loop {
            let mut args = json!({"action": "list", "limit": 2});
            if let Some(c) = &cursor {
                args["cursor"] = json!(c);
            }
            let page = ok(&app, &op, args).await;
            seen += page["tasks"].as_array().unwrap().len();
            match page.get("next_cursor").and_then(Value::as_str) {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(seen, 5);
        let c = ok(&app, &op, json!({"action": "classify", "instruction": "Fix the crash in login", "paths": ["src/auth.rs"]})).await;
        assert_eq!(c["classification"]["task_type"], "fix");
        assert_eq!(c["classification"]["language"], "rust");
    }
}
