//! Store verbs for `execute` runs and their attempts (stage rows).
//!
//! A run's start, each attempt and its finish are one write job each, so a
//! crash leaves a run whose last committed attempt is its last attempt. A
//! running run's heartbeat is refreshed by its holder; runs whose heartbeat
//! stopped are marked `interrupted` by [`Store::runs_interrupt_stale`].

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Store;
use super::tasks::{get_task, status_of};
use crate::dispatch::{Run, RunState};
use crate::error::{Error, Result};
use crate::tasks::{Task, TaskStatus};
use crate::workflows::WorkflowStatus;

/// A run to start.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub task_id: String,
    pub key_id: String,
    pub idempotency_key: Option<String>,
    pub request_sha256: String,
    pub detached: bool,
    pub start_rung: Option<String>,
    pub start_reason: Option<String>,
    pub holder: String,
    /// Id for the workflow made to hold a task that has none.
    pub new_workflow_id: String,
    pub now: String,
}

/// What `run_start` did.
#[derive(Debug, Clone)]
pub enum Started {
    /// A new run, with the task as it now is (boxed: a task is large).
    New(Run, Box<Task>),
    /// The idempotency key names an earlier run of the same request.
    Existing(Run),
}

/// One attempt (or a skipped rung) as a stage row of the run's task.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub stage_id: String,
    pub run_id: String,
    pub attempt: i64,
    pub rung: String,
    pub provider: String,
    pub model: String,
    pub account_id: Option<String>,
    /// ok, quality, infra, terminal, skipped
    pub outcome: String,
    pub failure_kind: Option<String>,
    pub error: Option<String>,
    /// The answer (or its start), kept as the stage's output.
    pub output: Option<serde_json::Value>,
    pub tokens_input: Option<i64>,
    pub tokens_output: Option<i64>,
    pub cost_nanos: i64,
    pub billed_nanos: i64,
    pub latency_ms: Option<i64>,
    pub usage_id: Option<String>,
    /// Counts against the quality budget.
    pub quality_failure: bool,
    pub created_by: String,
    pub now: String,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Finish {
    pub state: RunState,
    pub answer: Option<String>,
    pub reason: Option<String>,
    pub final_rung: Option<String>,
    pub final_model: Option<String>,
    pub consensus: Option<serde_json::Value>,
    pub now: String,
}

const RUN_COLS: &str = "id, task_id, workflow_id, key_id, idempotency_key, state, detached, start_rung, start_reason,
    attempts, quality_failures, cost_nanos, billed_nanos, final_rung, final_model, consensus, answer, reason,
    created_at, updated_at, finished_at, request_sha256";

fn run_row(r: &Row<'_>) -> rusqlite::Result<Run> {
    let state: String = r.get(5)?;
    let consensus: Option<String> = r.get(15)?;
    Ok(Run {
        id: r.get(0)?,
        task_id: r.get(1)?,
        workflow_id: r.get(2)?,
        key_id: r.get(3)?,
        idempotency_key: r.get(4)?,
        state: RunState::parse(&state).unwrap_or(RunState::Failed),
        detached: r.get(6)?,
        start_rung: r.get(7)?,
        start_reason: r.get(8)?,
        attempts: r.get(9)?,
        quality_failures: r.get(10)?,
        cost_nanos: r.get(11)?,
        billed_nanos: r.get(12)?,
        final_rung: r.get(13)?,
        final_model: r.get(14)?,
        consensus: consensus.and_then(|c| serde_json::from_str(&c).ok()),
        answer: r.get(16)?,
        reason: r.get(17)?,
        created_at: r.get(18)?,
        updated_at: r.get(19)?,
        finished_at: r.get(20)?,
        request_sha256: r.get(21)?,
    })
}

fn get_run(c: &Connection, org: &str, id: &str) -> Result<Run> {
    c.prepare_cached(&format!(
        "SELECT {RUN_COLS} FROM runs WHERE org_id = ?1 AND id = ?2"
    ))?
    .query_row([org, id], run_row)
    .optional()?
    .ok_or_else(|| Error::not_found("run", id))
}

fn run_by_key(c: &Connection, org: &str, key: &str) -> Result<Option<Run>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {RUN_COLS} FROM runs WHERE org_id = ?1 AND idempotency_key = ?2"
    ))?
    .query_row([org, key], run_row)
    .optional()?)
}

/// Closes the workflow a run made for its task, with the run's close record:
/// the final model, first-attempt success, whether a person had to answer,
/// and the consensus. Workflows the caller made are theirs to close.
fn close_owned(c: &Connection, org: &str, run: &str, now: &str) -> Result<()> {
    let r = get_run(c, org, run)?;
    let owned: bool = c
        .prepare_cached("SELECT owns_workflow FROM runs WHERE org_id = ?1 AND id = ?2")?
        .query_row([org, run], |x| x.get(0))?;
    let status: String = c
        .prepare_cached("SELECT status FROM workflows WHERE org_id = ?1 AND id = ?2")?
        .query_row([org, &r.workflow_id], |x| x.get(0))?;
    if !owned || matches!(status.as_str(), "closed" | "cancelled") {
        return Ok(());
    }
    let human = r.final_rung.as_deref() == Some("human");
    let rec = super::workflows::CloseRecord {
        final_model: r.final_model.clone(),
        // Provider failures are not the model's: first-attempt success means
        // no bad answer before the accepted one.
        first_attempt_success: Some(
            r.state == RunState::Succeeded
                && r.quality_failures == 0
                && r.consensus.is_none()
                && !human,
        ),
        human_correction_needed: Some(human),
        quality_score: None,
        consensus_type: r.consensus.as_ref().map(|_| "majority".to_string()),
        consensus_result: r.consensus.as_ref().map(|v| v.to_string()),
        models_used: None,
    };
    super::workflows::close(c, org, &r.workflow_id, rec, now)
}

/// Ends a running run and moves its task (see `Store::run_finish`).
fn finish_run(c: &Connection, o: &str, i: &str, f: &Finish) -> Result<Run> {
    let run = get_run(c, o, i)?;
    if run.state != RunState::Running {
        return Ok(run);
    }
    let consensus = f.consensus.as_ref().map(|v| v.to_string());
    c.prepare_cached(
        "UPDATE runs SET state = ?3, answer = ?4, reason = ?5, final_rung = ?6, final_model = ?7,
           consensus = ?8, updated_at = ?9, finished_at = CASE WHEN ?3 = 'needs_human' THEN NULL ELSE ?9 END
         WHERE org_id = ?1 AND id = ?2",
    )?
    .execute(params![o, i, f.state.as_str(), f.answer, f.reason, f.final_rung, f.final_model, consensus, f.now])?;
    if let Some(s) = task_status_after(f.state) {
        let done = s == TaskStatus::Done;
        c.prepare_cached(
            "UPDATE tasks SET status = ?3, answer = CASE WHEN ?4 THEN ?5 ELSE answer END,
               updated_at = ?6, completed_at = CASE WHEN ?4 THEN ?6 ELSE completed_at END
             WHERE org_id = ?1 AND id = ?2",
        )?
        .execute(params![o, run.task_id, s.as_str(), done, f.answer, f.now])?;
    }
    if matches!(f.state, RunState::Succeeded | RunState::Failed) {
        close_owned(c, o, i, &f.now)?;
    }
    get_run(c, o, i)
}

/// Writes one attempt as a stage of the run's task and adds it to the run.
fn attempt_row(c: &Connection, o: &str, a: &NewAttempt) -> Result<()> {
    let (workflow_id, task_id): (String, String) = c
        .prepare_cached("SELECT workflow_id, task_id FROM runs WHERE org_id = ?1 AND id = ?2")?
        .query_row([o, &a.run_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or_else(|| Error::not_found("run", &a.run_id))?;
    let output = a.output.as_ref().map(|v| v.to_string());
    c.prepare_cached(
        "INSERT INTO stages (org_id, id, workflow_id, task_id, name, stage_type, model, output, tokens_input,
           tokens_output, cost_nanos, cost_self_reported, latency_ms, created_by, created_at,
           run_id, attempt, rung, provider, account_id, outcome, failure_kind, error, usage_id)
         VALUES (?1, ?2, ?3, ?4, ?5, 'attempt', ?6, ?7, ?8, ?9, ?10, 0, ?11, ?12, ?13,
           ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
    )?
    .execute(params![o, a.stage_id, workflow_id, task_id, format!("attempt {}", a.attempt), a.model, output,
                     a.tokens_input, a.tokens_output, a.cost_nanos, a.latency_ms, a.created_by, a.now,
                     a.run_id, a.attempt, a.rung, a.provider, a.account_id, a.outcome, a.failure_kind,
                     a.error, a.usage_id])?;
    c.prepare_cached(
        "UPDATE runs SET attempts = attempts + ?3, quality_failures = quality_failures + ?4,
           cost_nanos = cost_nanos + ?5, billed_nanos = billed_nanos + ?6, heartbeat_at = ?7, updated_at = ?7
         WHERE org_id = ?1 AND id = ?2",
    )?
    .execute(params![o, a.run_id, i64::from(a.usage_id.is_some()), i64::from(a.quality_failure),
                     a.cost_nanos, a.billed_nanos, a.now])?;
    c.prepare_cached(
        "UPDATE workflows SET status = CASE WHEN status = 'open' THEN 'in_progress' ELSE status END,
           updated_at = ?3 WHERE org_id = ?1 AND id = ?2 AND status = 'open'",
    )?
    .execute(params![o, workflow_id, a.now])?;
    Ok(())
}

/// The task's status after its run ends in `state` (None: leave it).
fn task_status_after(state: RunState) -> Option<TaskStatus> {
    match state {
        RunState::Running => None,
        RunState::Succeeded => Some(TaskStatus::Done),
        RunState::Failed => Some(TaskStatus::Failed),
        RunState::NeedsHuman => Some(TaskStatus::NeedsHuman),
        RunState::Cancelled | RunState::Interrupted => Some(TaskStatus::Open),
    }
}

impl Store {
    /// Starts a run of a task, or returns the earlier run of the same
    /// idempotency key. The task must exist in the org, be open (or in progress
    /// without another run, or failed) and belong to an open workflow; a task
    /// without a workflow gets one, named after it, to hold its attempts.
    pub async fn run_start(&self, org: &str, n: NewRun) -> Result<Started> {
        let o = org.to_string();
        self.write(move |c| {
            if let Some(k) = &n.idempotency_key
                && let Some(run) = run_by_key(c, &o, k)?
            {
                if run.request_sha256 != n.request_sha256 {
                    return Err(Error::Conflict(format!(
                        "idempotency_key {k:?} was used for a different request (run {}); use a new key",
                        run.id
                    )));
                }
                return Ok(Started::Existing(run));
            }
            let task = get_task(c, &o, &n.task_id)?;
            let status = status_of(c, &o, &n.task_id)?;
            match status {
                TaskStatus::Open | TaskStatus::Failed | TaskStatus::InProgress => {}
                TaskStatus::NeedsHuman => {
                    return Err(Error::Conflict(format!(
                        "task {} waits for a person; answer it with `task resolve`",
                        n.task_id
                    )));
                }
                TaskStatus::Done | TaskStatus::Cancelled => {
                    return Err(Error::Conflict(format!(
                        "task {} is {}; only an open, in-progress or failed task can run",
                        n.task_id,
                        status.as_str()
                    )));
                }
            }
            let running: Option<String> = c
                .prepare_cached("SELECT id FROM runs WHERE org_id = ?1 AND task_id = ?2 AND state = 'running'")?
                .query_row([&o, &n.task_id], |r| r.get(0))
                .optional()?;
            if let Some(r) = running {
                return Err(Error::Conflict(format!(
                    "task {} already has a running run ({r}); wait for it or cancel it",
                    n.task_id
                )));
            }
            let owns_workflow = task.workflow_id.is_none();
            let workflow_id = match &task.workflow_id {
                Some(w) => {
                    let ws: String = c
                        .prepare_cached("SELECT status FROM workflows WHERE org_id = ?1 AND id = ?2")?
                        .query_row([&o, w], |r| r.get(0))?;
                    let ws = WorkflowStatus::parse(&ws).unwrap_or(WorkflowStatus::Closed);
                    if matches!(ws, WorkflowStatus::Closed | WorkflowStatus::Cancelled) {
                        return Err(Error::Conflict(format!(
                            "task {} belongs to workflow {w}, which is {}; attempts cannot be added to it",
                            n.task_id,
                            ws.as_str()
                        )));
                    }
                    w.clone()
                }
                None => {
                    c.prepare_cached(
                        "INSERT INTO workflows (org_id, id, title, task_type, complexity, language, stack, domain,
                           status, created_by, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', ?9, ?10, ?10)",
                    )?
                    .execute(params![o, n.new_workflow_id, task.title, task.task_type, task.complexity, task.language,
                                task.stack, task.domain, n.key_id, n.now])?;
                    c.prepare_cached(
                        "UPDATE tasks SET workflow_id = ?3 WHERE org_id = ?1 AND id = ?2",
                    )?
                    .execute(params![o, n.task_id, n.new_workflow_id])?;
                    n.new_workflow_id.clone()
                }
            };
            c.prepare_cached(
                "UPDATE tasks SET status = 'in_progress', updated_at = ?3 WHERE org_id = ?1 AND id = ?2",
            )?
            .execute(params![o, n.task_id, n.now])?;
            c.prepare_cached(
                "INSERT INTO runs (org_id, id, task_id, workflow_id, key_id, idempotency_key, request_sha256, state,
                   detached, start_rung, start_reason, holder, heartbeat_at, created_at, updated_at, owns_workflow)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8, ?9, ?10, ?11, ?12, ?12, ?12, ?13)",
            )?
            .execute(params![o, n.id, n.task_id, workflow_id, n.key_id, n.idempotency_key, n.request_sha256,
                        n.detached, n.start_rung, n.start_reason, n.holder, n.now, owns_workflow])?;
            Ok(Started::New(
                get_run(c, &o, &n.id)?,
                Box::new(get_task(c, &o, &n.task_id)?),
            ))
        })
        .await
    }

    /// Writes one attempt as a stage of the run's task and adds it to the run.
    pub async fn run_attempt(&self, org: &str, a: NewAttempt) -> Result<()> {
        let o = org.to_string();
        self.write(move |c| attempt_row(c, &o, &a)).await
    }

    /// Records a call (its usage record, charge and reservation settlement)
    /// and its attempt row in one transaction; the row takes the record's id,
    /// cost and billed price. A replayed record writes no second row.
    /// With `finish`, the run ends in the same transaction (an accepted answer
    /// on the ladder: one commit instead of two).
    pub async fn record_with_attempt(
        &self,
        org: &str,
        u: super::UsageInsert,
        mut a: NewAttempt,
        finish: Option<Finish>,
    ) -> Result<(crate::metering::usage::Receipt, Option<Run>)> {
        let o = org.to_string();
        self.write(move |c| {
            let r = super::metering::record(c, &u)?;
            if r.created {
                a.usage_id = Some(r.usage_id.clone());
                a.cost_nanos = r.cost_nanos;
                a.billed_nanos = r.billed_nanos;
                attempt_row(c, &o, &a)?;
            }
            let run = match &finish {
                Some(f) => Some(finish_run(c, &o, &a.run_id, f)?),
                None => None,
            };
            Ok((r, run))
        })
        .await
    }

    /// Ends a running run and moves its task: succeeded → done (with the
    /// answer), failed → failed, needs_human → needs_human, cancelled or
    /// interrupted → open. A run that is no longer running is left as it is
    /// (returns it unchanged).
    pub async fn run_finish(&self, org: &str, id: &str, f: Finish) -> Result<Run> {
        let (o, i) = (org.to_string(), id.to_string());
        self.write(move |c| finish_run(c, &o, &i, &f)).await
    }

    /// Completes the run that handed `task` to a person, with the person's
    /// answer (called in the same job as `task_resolve`'s update).
    pub(super) fn run_resolved(
        c: &Connection,
        org: &str,
        task: &str,
        answer: &str,
        now: &str,
    ) -> Result<()> {
        c.prepare_cached(
            "UPDATE runs SET state = 'succeeded', answer = ?3, final_rung = 'human', final_model = NULL,
               updated_at = ?4, finished_at = ?4
             WHERE org_id = ?1 AND task_id = ?2 AND state = 'needs_human'",
        )?
        .execute(params![org, task, answer, now])?;
        let resolved: Vec<String> = c
            .prepare_cached(
                "SELECT id FROM runs WHERE org_id = ?1 AND task_id = ?2 AND state = 'succeeded' AND final_rung = 'human'
                   AND finished_at = ?3",
            )?
            .query_map(params![org, task, now], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for run in resolved {
            close_owned(c, org, &run, now)?;
        }
        Ok(())
    }

    /// The run waiting for a person on `task`, if any.
    pub async fn run_waiting(&self, org: &str, task: &str) -> Result<Option<Run>> {
        let (o, t) = (org.to_string(), task.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {RUN_COLS} FROM runs WHERE org_id = ?1 AND task_id = ?2 AND state = 'needs_human'
                 ORDER BY created_at DESC LIMIT 1"
            ))?
            .query_row([&o, &t], run_row)
            .optional()?)
        })
        .await
    }

    pub async fn run_get(&self, org: &str, id: &str) -> Result<Run> {
        let (o, i) = (org.to_string(), id.to_string());
        self.read(move |c| get_run(c, &o, &i)).await
    }

    /// A run's attempts, in order.
    pub async fn run_attempts(&self, org: &str, id: &str) -> Result<Vec<crate::workflows::Stage>> {
        let (o, i) = (org.to_string(), id.to_string());
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {}, {} FROM stages WHERE org_id = ?1 AND run_id = ?2 ORDER BY attempt, created_at",
                super::workflows::STAGE_COLS,
                super::workflows::ATTEMPT_COLS
            ))?;
            let rows = st
                .query_map([&o, &i], |r| super::workflows::stage_row(r, true))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Refreshes a running run's heartbeat.
    pub async fn run_heartbeat(&self, org: &str, id: &str, now: String) -> Result<()> {
        let (o, i) = (org.to_string(), id.to_string());
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE runs SET heartbeat_at = ?3 WHERE org_id = ?1 AND id = ?2 AND state = 'running'",
            )?
            .execute(params![o, i, now])?;
            Ok(())
        })
        .await
    }

    /// Marks running runs whose heartbeat is older than `before` (their process
    /// died) as interrupted and reopens their tasks. Returns (org, run id) of each.
    pub async fn runs_interrupt_stale(
        &self,
        before: String,
        now: String,
    ) -> Result<Vec<(String, String)>> {
        self.write(move |c| {
            let stale: Vec<(String, String, String)> = c
                .prepare_cached(
                    "SELECT org_id, id, task_id FROM runs WHERE state = 'running' AND heartbeat_at < ?1",
                )?
                .query_map([&before], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (o, id, task) in &stale {
                c.prepare_cached(
                    "UPDATE runs SET state = 'interrupted', reason = 'the server stopped while the run was in flight',
                       updated_at = ?3, finished_at = ?3 WHERE org_id = ?1 AND id = ?2",
                )?
                .execute(params![o, id, now])?;
                c.prepare_cached(
                    "UPDATE tasks SET status = 'open', updated_at = ?3 WHERE org_id = ?1 AND id = ?2 AND status = 'in_progress'",
                )?
                .execute(params![o, task, now])?;
            }
            Ok(stale.into_iter().map(|(o, id, _)| (o, id)).collect())
        })
        .await
    }
}
