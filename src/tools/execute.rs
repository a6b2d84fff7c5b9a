//! `execute`: send a task up the dispatch ladder — run (synchronous with a
//! progress notification per attempt, switching to detached after
//! `execute.detach_after_secs`, or detached at once), status, cancel, and
//! estimate (the price of a run before it runs).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ActionSpec, CallCtx, ProgressFn, ToolOutput, ToolSpec, check_len, need, parse, read, schema_of,
    write,
};
use crate::dispatch::engine::{self, Begun, Hooks, RunRequest};
use crate::dispatch::summary::{self, Verbosity};
use crate::dispatch::{Run, RunState, Start};
use crate::error::{Error, Result};
use crate::money::fmt_usd;
use crate::workflows::{Complexity, Stage, TaskType};

pub static SPEC: ToolSpec = ToolSpec {
    action_field: true,
    name: "execute",
    description: "Send a task up the dispatch ladder (cheap models first, stronger on bad answers, then consensus, then a person). run (task_id; idempotency_key; pin = rung or model; detach; verbosity summary|mermaid|standard|full; verifier argv), status (run_id), cancel (run_id), estimate (task_id, or task_type/complexity/context_tokens: starting rung and worst-case price before it runs).",
    actions: &ACTIONS,
    input: schema_of::<Params>,
    output: schema_of::<Output>,
    destructive: false,
    idempotent: false,
};

static ACTIONS: [ActionSpec; 4] = [
    write("run", &[]),
    read("status", &[]),
    write("cancel", &[]),
    read("estimate", &["pricing"]),
];

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[allow(dead_code)] // checked by the registry
    action: String,
    /// run / estimate: the task to send.
    task_id: Option<String>,
    /// status / cancel: the run.
    run_id: Option<String>,
    /// run: a retry with the same key returns the first run and bills nothing again.
    idempotency_key: Option<String>,
    /// run / estimate: start at this rung (by name) or model instead of where the ladder would.
    pin: Option<String>,
    /// run: return the run id at once and let it go on in the background.
    detach: Option<bool>,
    /// run / status: how much to return (default mermaid).
    verbosity: Option<Verbosity>,
    /// run: a command (program and arguments, no shell) run in a worktree of
    /// the task's `repo` after each answer that passes the other checks; exit 0
    /// passes. The answer is in the file `$VAULTLINE_ANSWER_FILE`.
    verifier: Option<Vec<String>>,
    /// estimate without task_id: the kind of work to price (vault-mcp's `pricing`).
    task_type: Option<TaskType>,
    complexity: Option<Complexity>,
    /// estimate without task_id: the prompt's size in tokens (default 2,000).
    #[schemars(range(max = 10_000_000))]
    context_tokens: Option<u64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// One line: state, final rung, attempts, cost.
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<Run>,
    /// The attempts as a Mermaid `graph LR` (verbosity mermaid and above).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mermaid: Option<String>,
    /// The attempts as stage rows (verbosity standard and full; answers in full only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<Stage>>,
    /// run: true when the run goes on in the background (poll `status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detached: Option<bool>,
    /// run: true when the idempotency key returned an earlier run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
}

/// What a run would cost before it runs.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Estimate {
    pub start: Start,
    /// The prompt's size as estimated for pricing (4 characters a token).
    pub prompt_tokens: u64,
    /// Worst case of the first attempt (the starting rung, full output limit).
    pub expected_nanos: i64,
    pub expected_usd: String,
    /// Worst case of the whole run: the quality budget's attempts up the ladder
    /// from the start, then consensus among the strongest rungs.
    pub worst_case_nanos: i64,
    pub worst_case_usd: String,
    pub rungs: Vec<RungEstimate>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RungEstimate {
    pub rung: String,
    pub provider: String,
    pub model: String,
    /// Worst-case provider cost of one call on this rung.
    pub worst_case_nanos: i64,
    /// In the path of this run before consensus.
    pub on_path: bool,
    /// Among the consensus rungs.
    pub consensus: bool,
}

pub async fn call(ctx: &CallCtx, action: &str, args: serde_json::Value) -> Result<ToolOutput> {
    let p: Params = parse(args)?;
    check_len("idempotency_key", &p.idempotency_key, 200)?;
    check_len("pin", &p.pin, 200)?;
    let verbosity = p.verbosity.unwrap_or_default();
    match action {
        "run" => run(ctx, &p, verbosity).await,
        "status" => {
            let id = need(&p.run_id, "run_id", action)?;
            let run = ctx.app.store.run_get(&ctx.principal.org, id).await?;
            render(ctx, run, verbosity, None, None).await
        }
        "cancel" => {
            let id = need(&p.run_id, "run_id", action)?;
            let org = &ctx.principal.org;
            let run = ctx.app.store.run_get(org, id).await?;
            if run.state != RunState::Running {
                return Err(Error::Conflict(format!(
                    "run {id} is {}; only a running run can be cancelled",
                    run.state.as_str()
                )));
            }
            if !ctx.app.dispatch.cancel(org, id) {
                return Err(Error::Conflict(format!(
                    "run {id} is held by another vaultline process; cancel it there"
                )));
            }
            // The run stops its provider call and writes its end; wait for it briefly.
            let mut run = run;
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                run = ctx.app.store.run_get(org, id).await?;
                if run.state != RunState::Running {
                    break;
                }
            }
            render(ctx, run, verbosity, None, None).await
        }
        "estimate" => estimate(ctx, &p).await,
        other => Err(Error::invalid("action", format!("unknown action {other}"))),
    }
}

async fn run(ctx: &CallCtx, p: &Params, verbosity: Verbosity) -> Result<ToolOutput> {
    let task_id = need(&p.task_id, "task_id", "run")?;
    let detach = p.detach.unwrap_or(false);
    let req = RunRequest {
        org: ctx.principal.org.clone(),
        key_id: ctx.principal.key_id.clone(),
        task_id: task_id.clone(),
        idempotency_key: p.idempotency_key.clone(),
        pin: p.pin.clone(),
        detached: detach,
        session: Some(ctx.principal.key_id.clone()),
        verifier: p.verifier.clone(),
    };
    // Held until this call returns: a run that goes on detached stops
    // reporting progress on a request that has already been answered.
    let leash = Leash::new(if detach { None } else { ctx.progress.clone() });
    let hooks = Hooks {
        progress: leash.hook(),
        person: if detach { None } else { ctx.person.clone() },
    };
    let (run, rx, replayed) = match engine::begin(&ctx.app, req, hooks).await? {
        Begun::New(run, rx) => (run, Some(rx), false),
        Begun::Existing(run, rx) => (run, rx, true),
    };
    let Some(mut rx) = rx.filter(|_| run.state == RunState::Running) else {
        return render(ctx, run, verbosity, Some(false), Some(replayed)).await;
    };
    let wait = if detach {
        Duration::ZERO
    } else {
        Duration::from_secs(ctx.app.config.execute.detach_after_secs)
    };
    if let Some(done) = engine::wait(&mut rx, wait, &ctx.ct).await {
        return render(ctx, done, verbosity, Some(false), Some(replayed)).await;
    }
    if ctx.ct.is_cancelled() && !detach {
        // The caller cancelled its request: the run stops with it.
        ctx.app.dispatch.cancel(&ctx.principal.org, &run.id);
        let run = engine::wait(
            &mut rx,
            Duration::from_secs(5),
            &tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap_or(run);
        return render(ctx, run, verbosity, Some(false), Some(replayed)).await;
    }
    let run = ctx.app.store.run_get(&ctx.principal.org, &run.id).await?;
    render(ctx, run, verbosity, Some(true), Some(replayed)).await
}

/// The caller's progress channel, lent to a run only while the caller waits.
///
/// The transport flushes a call's progress before it answers, by waiting for
/// every sender to go; a run that outlived the call (detached, or past
/// `detach_after_secs`) used to keep its sender, so the answer waited for the
/// flush to time out and the client could see progress after the answer.
struct Leash(Arc<Mutex<Option<ProgressFn>>>);

impl Leash {
    fn new(progress: Option<ProgressFn>) -> Leash {
        Leash(Arc::new(Mutex::new(progress)))
    }

    /// A hook for the run that reports while the leash holds, and then not.
    fn hook(&self) -> Option<ProgressFn> {
        let slot = self.0.clone();
        let has = slot.lock().is_ok_and(|g| g.is_some());
        has.then(|| -> ProgressFn {
            Arc::new(move |done, total, message| {
                let p = slot.lock().ok().and_then(|g| g.clone());
                if let Some(p) = p {
                    p(done, total, message);
                }
            })
        })
    }
}

impl Drop for Leash {
    fn drop(&mut self) {
        if let Ok(mut g) = self.0.lock() {
            g.take();
        }
    }
}

async fn render(
    ctx: &CallCtx,
    run: Run,
    verbosity: Verbosity,
    detached: Option<bool>,
    replayed: Option<bool>,
) -> Result<ToolOutput> {
    let line = summary::line(&run);
    let mut text = line.clone();
    if detached == Some(true) {
        text.push_str(&format!(
            "\nthe run goes on in the background; poll with execute status run_id={}",
            run.id
        ));
    }
    let (mermaid, attempts) = match verbosity {
        Verbosity::Summary => (None, None),
        v => {
            let mut stages = ctx
                .app
                .store
                .run_attempts(&ctx.principal.org, &run.id)
                .await?;
            let m = summary::mermaid(&run, &stages);
            text.push('\n');
            text.push_str(&m);
            let rows = match v {
                Verbosity::Standard => {
                    for s in &mut stages {
                        s.output = None;
                    }
                    Some(stages)
                }
                Verbosity::Full => Some(stages),
                _ => None,
            };
            (Some(m), rows)
        }
    };
    if let Some(a) = &run.answer
        && verbosity != Verbosity::Summary
    {
        text.push_str(&format!("\nanswer:\n{a}"));
    }
    let out = Output {
        summary: line,
        run: Some(run),
        mermaid,
        attempts,
        detached,
        replayed,
        estimate: None,
    };
    ToolOutput::new(out, text)
}

/// What an estimate prices: a stored task, or a kind of work and a prompt size.
struct Work {
    task_type: Option<String>,
    complexity: Option<String>,
    /// The prompt's size in characters.
    chars: usize,
}

async fn estimate(ctx: &CallCtx, p: &Params) -> Result<ToolOutput> {
    let app = &ctx.app;
    let org = &ctx.principal.org;
    let work = match &p.task_id {
        Some(id) => {
            let task = app.store.task_get(org, id).await?;
            let schema = task.answer_schema.as_ref().map_or(0, |s| {
                serde_json::Value::Object(s.clone()).to_string().len()
            });
            let text = [
                Some(task.title.as_str()),
                task.instruction.as_deref(),
                task.context.as_deref(),
            ];
            Work {
                chars: text.into_iter().flatten().map(str::len).sum::<usize>() + schema,
                task_type: task.task_type,
                complexity: task.complexity,
            }
        }
        None => Work {
            task_type: p.task_type.map(|t| t.as_str().to_string()),
            complexity: p.complexity.map(|c| c.as_str().to_string()),
            chars: p.context_tokens.unwrap_or(2_000) as usize * 4,
        },
    };
    let ladder = &app.dispatch.ladder;
    let history = match (&work.task_type, &work.complexity) {
        (Some(t), Some(c)) => Some(
            app.store
                .model_stats(org, Some(t.clone()), Some(c.clone()), None)
                .await?,
        ),
        _ => None,
    };
    let start = crate::dispatch::start(
        ladder,
        p.pin.as_deref(),
        work.complexity.as_deref(),
        history.as_ref().map(|(n, s)| (*n, s.as_slice())),
    )
    .map_err(|e| Error::invalid("pin", e))?;
    // The prompt adds headings and the system line (~400 characters) to the task's text.
    let tokens = ((work.chars + 400) as u64).div_ceil(4) + 64;
    let cfg = &app.config.execute;
    let path_len = cfg.quality_budget as usize;
    let n = ladder.rungs.len();
    let consensus_from = n.saturating_sub(cfg.consensus_k as usize);
    let mut rungs = Vec::new();
    let (mut expected, mut worst) = (0i64, 0i64);
    for r in &ladder.rungs {
        let w = r.worst_case_nanos(&app.meter, tokens).unwrap_or(0);
        let on_path = r.index >= start.index && r.index < start.index + path_len;
        let consensus = r.index >= consensus_from;
        if r.index == start.index {
            expected = w;
        }
        if on_path {
            worst = worst.saturating_add(w);
        }
        if consensus {
            worst = worst.saturating_add(w);
        }
        rungs.push(RungEstimate {
            rung: r.name.clone(),
            provider: r.provider().to_string(),
            model: r.model().to_string(),
            worst_case_nanos: w,
            on_path,
            consensus,
        });
    }
    let est = Estimate {
        start,
        prompt_tokens: tokens,
        expected_nanos: expected,
        expected_usd: fmt_usd(expected),
        worst_case_nanos: worst,
        worst_case_usd: fmt_usd(worst),
        rungs,
    };
    let text = format!(
        "starts at {} ({}); first attempt at most {}, whole run at most {}",
        est.start.rung, est.start.reason, est.expected_usd, est.worst_case_usd
    );
    let out = Output {
        summary: text.clone(),
        run: None,
        mermaid: None,
        attempts: None,
        detached: None,
        replayed: None,
        estimate: Some(est),
    };
    ToolOutput::new(out, text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::auth::{Principal, Role};
    use crate::tools::{call_as, test_app};

    #[tokio::test]
    async fn estimate_prices_a_task_or_a_kind_of_work_before_any_call() {
        let (app, _d) = test_app();
        app.store
            .ensure_org("acme", "2026-01-01T00:00:00.000Z")
            .await
            .unwrap();
        let op = Principal::local("acme", Role::Operator);
        let simple = call_as(
            &app,
            &op,
            "execute",
            json!({"action": "estimate", "task_type": "docs", "complexity": "simple", "context_tokens": 1000}),
        )
        .await
        .unwrap()
        .structured;
        let e = &simple["estimate"];
        assert_eq!(e["start"]["rung"], "deepseek", "{e}");
        assert_eq!(e["start"]["basis"], "rules");
        let (expected, worst) = (
            e["expected_nanos"].as_i64().unwrap(),
            e["worst_case_nanos"].as_i64().unwrap(),
        );
        assert!(expected > 0 && worst > expected, "{e}");
        let complex = call_as(
            &app,
            &op,
            "execute",
            json!({"action": "estimate", "complexity": "complex", "context_tokens": 1000}),
        )
        .await
        .unwrap()
        .structured;
        assert_eq!(complex["estimate"]["start"]["rung"], "codex");
        assert!(complex["estimate"]["expected_nanos"].as_i64().unwrap() > expected);
        // A pin wins; an unknown one names the rungs.
        let pinned = call_as(
            &app,
            &op,
            "execute",
            json!({"action": "estimate", "pin": "claude-opus-4-6"}),
        )
        .await
        .unwrap()
        .structured;
        assert_eq!(pinned["estimate"]["start"]["rung"], "opus");
        let e = call_as(
            &app,
            &op,
            "execute",
            json!({"action": "estimate", "pin": "gpt-2"}),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("pin") && e.contains("deepseek, gemini-flash"),
            "{e}"
        );
        // Nothing was billed or recorded.
        let receipts = call_as(&app, &op, "billing", json!({"action": "receipts"}))
            .await
            .unwrap()
            .structured;
        assert_eq!(receipts["receipts"], json!([]), "{receipts}");
    }

    #[tokio::test]
    async fn a_run_without_any_usable_account_fails_saying_which_providers_need_one() {
        let (app, _d) = test_app();
        app.store
            .ensure_org("acme", "2026-01-01T00:00:00.000Z")
            .await
            .unwrap();
        let op = Principal::local("acme", Role::Operator);
        let t = call_as(
            &app,
            &op,
            "task",
            json!({"action": "create", "title": "t", "complexity": "complex"}),
        )
        .await
        .unwrap()
        .structured;
        let id = t["task"]["id"].as_str().unwrap();
        let out = call_as(
            &app,
            &op,
            "execute",
            json!({"action": "run", "task_id": id, "verbosity": "standard"}),
        )
        .await
        .unwrap()
        .structured;
        let run = &out["run"];
        assert_eq!(run["state"], "failed", "{out}");
        assert_eq!(run["start_rung"], "codex");
        let reason = run["reason"].as_str().unwrap();
        assert!(
            reason.contains("add quota accounts for: openai, anthropic"),
            "{reason}"
        );
        // Each skipped rung is on record with its reason; nothing was called.
        let attempts = out["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 3, "{out}");
        assert!(
            attempts
                .iter()
                .all(|a| a["attempt"]["outcome"] == "skipped")
        );
        assert_eq!(run["attempts"], 0);
        let task = call_as(&app, &op, "task", json!({"action": "get", "task_id": id}))
            .await
            .unwrap()
            .structured;
        assert_eq!(task["task"]["status"], "failed");
    }

    #[tokio::test]
    async fn a_run_refuses_bad_input_before_anything_is_written() {
        let (app, _d) = test_app();
        for org in ["acme", "other"] {
            app.store
                .ensure_org(org, "2026-01-01T00:00:00.000Z")
                .await
                .unwrap();
        }
        let op = Principal::local("acme", Role::Operator);
        let e = call_as(
            &app,
            &op,
            "execute",
            json!({"action": "run", "task_id": "01NOPE"}),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("not found"), "{e}");
        let theirs = call_as(
            &app,
            &Principal::local("other", Role::Operator),
            "task",
            json!({"action": "create", "title": "theirs"}),
        )
        .await
        .unwrap()
        .structured;
        let id = theirs["task"]["id"].as_str().unwrap();
        let e = call_as(
            &app,
            &op,
            "execute",
            json!({"action": "run", "task_id": id}),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("not found"),
            "another org's task looks missing: {e}"
        );
        let mine = call_as(
            &app,
            &op,
            "task",
            json!({"action": "create", "title": "mine"}),
        )
        .await
        .unwrap()
        .structured;
        let id = mine["task"]["id"].as_str().unwrap();
        let e = call_as(
            &app,
            &op,
            "execute",
            json!({"action": "run", "task_id": id, "verifier": ["cargo", "test"]}),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("verifier") && e.contains("repo"), "{e}");
        let viewer = Principal::local("acme", Role::Viewer);
        let e = call_as(
            &app,
            &viewer,
            "execute",
            json!({"action": "run", "task_id": id}),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("operator"), "{e}");
        let task = call_as(&app, &op, "task", json!({"action": "get", "task_id": id}))
            .await
            .unwrap()
            .structured;
        assert_eq!(task["task"]["status"], "open", "nothing started: {task}");
        assert!(
            task["task"].get("workflow_id").is_none(),
            "no workflow was made: {task}"
        );
    }
}
