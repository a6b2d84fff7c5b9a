//! Store verbs for workflows and their stages. Status changes read the current
//! status and apply the domain's transition rule inside the same write job, so
//! two racing writers cannot both pass the check.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Value, json};

use super::Store;
use crate::error::{Error, Result};
use crate::workflows::chooser::ModelStats;
use crate::workflows::{self, Attempt, Stage, TaskRef, Transition, Workflow, WorkflowStatus};

/// Fields of a new workflow.
#[derive(Debug, Clone, Default)]
pub struct NewWorkflow {
    pub id: String,
    pub title: Option<String>,
    pub task_type: Option<String>,
    pub complexity: Option<String>,
    pub language: Option<String>,
    pub stack: Option<String>,
    pub domain: Option<String>,
    pub scope: Option<String>,
    pub is_greenfield: Option<bool>,
    pub has_tests: Option<bool>,
    pub description: Option<String>,
    pub spec: Option<String>,
    pub created_by: String,
    pub now: String,
}

/// Fields of a new stage.
#[derive(Debug, Clone, Default)]
pub struct NewStage {
    pub id: String,
    pub workflow_id: String,
    pub task_id: Option<String>,
    pub name: String,
    pub stage_type: Option<String>,
    pub model: Option<String>,
    pub output: Option<Value>,
    pub tokens_input: Option<i64>,
    pub tokens_output: Option<i64>,
    pub cost_nanos: i64,
    pub cost_self_reported: bool,
    pub latency_ms: Option<i64>,
    pub created_by: String,
    pub now: String,
}

/// The close record.
#[derive(Debug, Clone, Default)]
pub struct CloseRecord {
    pub final_model: Option<String>,
    pub first_attempt_success: Option<bool>,
    pub human_correction_needed: Option<bool>,
    pub quality_score: Option<f64>,
    pub consensus_type: Option<String>,
    pub consensus_result: Option<String>,
    pub models_used: Option<Vec<String>>,
}

/// Filters of `workflow list`.
#[derive(Debug, Clone, Default)]
pub struct WorkflowFilter {
    pub status: Option<String>,
    pub task_type: Option<String>,
    pub complexity: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// (created_at, id) of the last row of the previous page.
    pub after: Option<(String, String)>,
    pub limit: u32,
}

const WF_SELECT: &str = "SELECT w.id, w.title, w.task_type, w.complexity, w.language, w.stack, w.domain, w.scope,
  w.is_greenfield, w.has_tests, w.description, w.spec, w.status, w.final_model, w.first_attempt_success,
  w.human_correction_needed, w.quality_score, w.consensus_type, w.consensus_result, w.models_used,
  w.cancel_reason, w.created_at, w.updated_at, w.closed_at,
  count(s.id), coalesce(sum(s.cost_nanos), 0), coalesce(sum(s.tokens_input), 0),
  coalesce(sum(s.tokens_output), 0), coalesce(sum(s.latency_ms), 0)
FROM workflows w LEFT JOIN stages s ON s.org_id = w.org_id AND s.workflow_id = w.id";

fn wf_row(r: &Row<'_>) -> rusqlite::Result<Workflow> {
    let models: Option<String> = r.get(19)?;
    Ok(Workflow {
        id: r.get(0)?,
        title: r.get(1)?,
        task_type: r.get(2)?,
        complexity: r.get(3)?,
        language: r.get(4)?,
        stack: r.get(5)?,
        domain: r.get(6)?,
        scope: r.get(7)?,
        is_greenfield: r.get(8)?,
        has_tests: r.get(9)?,
        description: r.get(10)?,
        spec: r.get(11)?,
        status: r.get(12)?,
        final_model: r.get(13)?,
        first_attempt_success: r.get(14)?,
        human_correction_needed: r.get(15)?,
        quality_score: r.get(16)?,
        consensus_type: r.get(17)?,
        consensus_result: r.get(18)?,
        models_used: models
            .and_then(|m| serde_json::from_str(&m).ok())
            .unwrap_or_default(),
        cancel_reason: r.get(20)?,
        created_at: r.get(21)?,
        updated_at: r.get(22)?,
        closed_at: r.get(23)?,
        stages: r.get(24)?,
        cost_nanos: r.get(25)?,
        tokens_input: r.get(26)?,
        tokens_output: r.get(27)?,
        latency_ms: r.get(28)?,
    })
}

fn get_wf(c: &Connection, org: &str, id: &str) -> Result<Workflow> {
    c.prepare_cached(&format!(
        "{WF_SELECT} WHERE w.org_id = ?1 AND w.id = ?2 GROUP BY w.org_id, w.id"
    ))?
    .query_row([org, id], wf_row)
    .optional()?
    .ok_or_else(|| Error::not_found("workflow", id))
}

fn status_of(c: &Connection, org: &str, id: &str) -> Result<WorkflowStatus> {
    let s: Option<String> = c
        .prepare_cached("SELECT status FROM workflows WHERE org_id = ?1 AND id = ?2")?
        .query_row([org, id], |r| r.get(0))
        .optional()?;
    let s = s.ok_or_else(|| Error::not_found("workflow", id))?;
    WorkflowStatus::parse(&s)
        .ok_or_else(|| Error::Internal(format!("workflow {id} has unknown status {s}")))
}

pub(super) const STAGE_COLS: &str = "id, workflow_id, task_id, name, stage_type, model, output, tokens_input, tokens_output, cost_nanos, cost_self_reported, latency_ms, created_at";

/// The attempt columns of a stage the ladder wrote (indexes 13..=20 after STAGE_COLS).
pub(super) const ATTEMPT_COLS: &str =
    "run_id, attempt, rung, provider, account_id, outcome, failure_kind, error";

/// Closes a workflow with its close record (models used default to the
/// models of its stages), inside the caller's write job.
pub(super) fn close(c: &Connection, o: &str, i: &str, rec: CloseRecord, now: &str) -> Result<()> {
    workflows::transition(i, status_of(c, o, i)?, Transition::Close)?;
    let models = match rec.models_used {
        Some(m) => m,
        None => c
            .prepare_cached(
                "SELECT DISTINCT model FROM stages WHERE org_id = ?1 AND workflow_id = ?2 AND model IS NOT NULL ORDER BY model",
            )?
            .query_map([o, i], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?,
    };
    c.execute(
        "UPDATE workflows SET status = 'closed', final_model = ?3, first_attempt_success = ?4,
           human_correction_needed = ?5, quality_score = ?6, consensus_type = ?7, consensus_result = ?8,
           models_used = ?9, updated_at = ?10, closed_at = ?10
         WHERE org_id = ?1 AND id = ?2",
        params![
            o, i, rec.final_model, rec.first_attempt_success, rec.human_correction_needed,
            rec.quality_score, rec.consensus_type, rec.consensus_result,
            serde_json::to_string(&models)?, now
        ],
    )?;
    Ok(())
}

pub(super) fn stage_row(r: &Row<'_>, with_output: bool) -> rusqlite::Result<Stage> {
    let output: Option<String> = if with_output { r.get(6)? } else { None };
    let run_id: Option<String> = r.get(13)?;
    let attempt = match run_id {
        Some(run_id) => Some(Attempt {
            run_id,
            attempt: r.get(14)?,
            rung: r.get(15)?,
            provider: r.get(16)?,
            account_id: r.get(17)?,
            outcome: r.get(18)?,
            failure_kind: r.get(19)?,
            error: r.get(20)?,
        }),
        None => None,
    };
    Ok(Stage {
        id: r.get(0)?,
        workflow_id: r.get(1)?,
        task_id: r.get(2)?,
        name: r.get(3)?,
        stage_type: r.get(4)?,
        model: r.get(5)?,
        output: output.and_then(|o| serde_json::from_str(&o).ok()),
        tokens_input: r.get(7)?,
        tokens_output: r.get(8)?,
        cost_nanos: r.get(9)?,
        cost_self_reported: r.get(10)?,
        latency_ms: r.get(11)?,
        created_at: r.get(12)?,
        attempt,
    })
}

impl Store {
    pub async fn workflow_create(&self, org: &str, w: NewWorkflow) -> Result<Workflow> {
        let org = org.to_string();
        self.write(move |c| {
            c.execute(
                "INSERT INTO workflows (org_id, id, title, task_type, complexity, language, stack, domain, scope,
                   is_greenfield, has_tests, description, spec, status, created_by, created_at, updated_at)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,'open',?14,?15,?15)",
                params![
                    org, w.id, w.title, w.task_type, w.complexity, w.language, w.stack, w.domain, w.scope,
                    w.is_greenfield, w.has_tests, w.description, w.spec, w.created_by, w.now
                ],
            )?;
            get_wf(c, &org, &w.id)
        })
        .await
    }

    pub async fn workflow_get(&self, org: &str, id: &str) -> Result<Workflow> {
        let (o, i) = (org.to_string(), id.to_string());
        self.read(move |c| get_wf(c, &o, &i)).await
    }

    /// A page of workflows, newest first.
    pub async fn workflow_list(&self, org: &str, f: WorkflowFilter) -> Result<Vec<Workflow>> {
        let o = org.to_string();
        self.read_cancellable(None, move |c| {
            let (ac, ai) = f.after.clone().unzip();
            let mut st = c.prepare_cached(&format!(
                "{WF_SELECT} WHERE w.org_id = ?1
                   AND (?2 IS NULL OR w.status = ?2) AND (?3 IS NULL OR w.task_type = ?3)
                   AND (?4 IS NULL OR w.complexity = ?4) AND (?5 IS NULL OR w.created_at >= ?5)
                   AND (?6 IS NULL OR w.created_at < ?6)
                   AND (?7 IS NULL OR w.created_at < ?7 OR (w.created_at = ?7 AND w.id < ?8))
                 GROUP BY w.org_id, w.id ORDER BY w.created_at DESC, w.id DESC LIMIT ?9"
            ))?;
            let rows = st
                .query_map(
                    params![
                        o,
                        f.status,
                        f.task_type,
                        f.complexity,
                        f.since,
                        f.until,
                        ac,
                        ai,
                        f.limit
                    ],
                    wf_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    pub async fn workflow_spec(
        &self,
        org: &str,
        id: &str,
        spec: String,
        now: String,
    ) -> Result<Workflow> {
        let (o, i) = (org.to_string(), id.to_string());
        self.write(move |c| {
            workflows::transition(&i, status_of(c, &o, &i)?, Transition::Spec)?;
            c.execute(
                "UPDATE workflows SET spec = ?3, updated_at = ?4 WHERE org_id = ?1 AND id = ?2",
                params![o, i, spec, now],
            )?;
            get_wf(c, &o, &i)
        })
        .await
    }

    /// Writes a stage; an open workflow becomes in_progress.
    pub async fn stage_write(&self, org: &str, s: NewStage) -> Result<(Stage, Workflow)> {
        let o = org.to_string();
        self.write(move |c| {
            let to = workflows::transition(&s.workflow_id, status_of(c, &o, &s.workflow_id)?, Transition::Stage)?;
            if let Some(t) = &s.task_id {
                let belongs: Option<Option<String>> = c
                    .prepare_cached("SELECT workflow_id FROM tasks WHERE org_id = ?1 AND id = ?2")?
                    .query_row([&o, t], |r| r.get(0))
                    .optional()?;
                match belongs {
                    None => return Err(Error::not_found("task", t)),
                    Some(w) if w.as_deref() != Some(s.workflow_id.as_str()) => {
                        return Err(Error::invalid(
                            "task_id",
                            format!("task {t} does not belong to workflow {}", s.workflow_id),
                        ));
                    }
                    Some(_) => {}
                }
            }
            let output = s.output.as_ref().map(Value::to_string);
            c.execute(
                &format!(
                    "INSERT INTO stages ({STAGE_COLS}, org_id, created_by) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)"
                ),
                params![
                    s.id, s.workflow_id, s.task_id, s.name, s.stage_type, s.model, output, s.tokens_input,
                    s.tokens_output, s.cost_nanos, s.cost_self_reported, s.latency_ms, s.now, o, s.created_by
                ],
            )?;
            c.execute(
                "UPDATE workflows SET status = ?3, updated_at = ?4 WHERE org_id = ?1 AND id = ?2",
                params![o, s.workflow_id, to.as_str(), s.now],
            )?;
            let stage = c
                .prepare_cached(&format!("SELECT {STAGE_COLS}, {ATTEMPT_COLS} FROM stages WHERE org_id = ?1 AND id = ?2"))?
                .query_row([&o, &s.id], |r| stage_row(r, true))?;
            Ok((stage, get_wf(c, &o, &s.workflow_id)?))
        })
        .await
    }

    pub async fn workflow_close(
        &self,
        org: &str,
        id: &str,
        rec: CloseRecord,
        now: String,
    ) -> Result<Workflow> {
        let (o, i) = (org.to_string(), id.to_string());
        self.write(move |c| {
            close(c, &o, &i, rec, &now)?;
            get_wf(c, &o, &i)
        })
        .await
    }

    /// Cancels a workflow and its unfinished tasks; returns how many tasks it cancelled.
    pub async fn workflow_cancel(
        &self,
        org: &str,
        id: &str,
        reason: Option<String>,
        now: String,
    ) -> Result<(Workflow, usize)> {
        let (o, i) = (org.to_string(), id.to_string());
        self.write(move |c| {
            workflows::transition(&i, status_of(c, &o, &i)?, Transition::Cancel)?;
            c.execute(
                "UPDATE workflows SET status = 'cancelled', cancel_reason = ?3, updated_at = ?4, closed_at = ?4
                 WHERE org_id = ?1 AND id = ?2",
                params![o, i, reason, now],
            )?;
            let n = c.execute(
                "UPDATE tasks SET status = 'cancelled', updated_at = ?3, completed_at = ?3
                 WHERE org_id = ?1 AND workflow_id = ?2 AND status IN ('open', 'in_progress', 'needs_human')",
                params![o, i, now],
            )?;
            Ok((get_wf(c, &o, &i)?, n))
        })
        .await
    }

    /// Stages of a workflow in order; outputs only if asked.
    pub async fn workflow_stages(
        &self,
        org: &str,
        id: &str,
        with_output: bool,
    ) -> Result<Vec<Stage>> {
        let (o, i) = (org.to_string(), id.to_string());
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {STAGE_COLS}, {ATTEMPT_COLS} FROM stages WHERE org_id = ?1 AND workflow_id = ?2 ORDER BY created_at, id"
            ))?;
            let rows = st
                .query_map([&o, &i], |r| stage_row(r, with_output))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Tasks of a workflow, oldest first.
    pub async fn workflow_tasks(&self, org: &str, id: &str) -> Result<Vec<TaskRef>> {
        let (o, i) = (org.to_string(), id.to_string());
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, title, status FROM tasks WHERE org_id = ?1 AND workflow_id = ?2 ORDER BY created_at, id",
            )?;
            let rows = st
                .query_map([&o, &i], |r| {
                    Ok(TaskRef {
                        id: r.get(0)?,
                        title: r.get(1)?,
                        status: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// The latest stage of that name (in one workflow, or the org's latest).
    pub async fn stage_by_name(
        &self,
        org: &str,
        workflow_id: Option<String>,
        name: &str,
    ) -> Result<Stage> {
        let (o, n) = (org.to_string(), name.to_string());
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {STAGE_COLS}, {ATTEMPT_COLS} FROM stages WHERE org_id = ?1 AND name = ?2 AND (?3 IS NULL OR workflow_id = ?3)
                 ORDER BY created_at DESC, id DESC LIMIT 1"
            ))?
            .query_row(params![o, n, workflow_id], |r| stage_row(r, true))
            .optional()?
            .ok_or_else(|| Error::not_found("stage", &n))
        })
        .await
    }

    /// Org-wide counts and sums: workflows by status, workflows and stage cost by
    /// day (UTC), stages by model. Bounded: at most 62 days and 20 models.
    pub async fn workflow_summary(
        &self,
        org: &str,
        since: Option<String>,
        until: Option<String>,
        ct: Option<tokio_util::sync::CancellationToken>,
    ) -> Result<Value> {
        let o = org.to_string();
        self.read_cancellable(ct, move |c| {
            let by_status: Vec<Value> = c
                .prepare_cached(
                    "SELECT status, count(*) FROM workflows WHERE org_id = ?1
                       AND (?2 IS NULL OR created_at >= ?2) AND (?3 IS NULL OR created_at < ?3)
                     GROUP BY status ORDER BY status",
                )?
                .query_map(params![o, since, until], |r| {
                    Ok(json!({"status": r.get::<_, String>(0)?, "workflows": r.get::<_, i64>(1)?}))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let by_day: Vec<Value> = c
                .prepare_cached(
                    "SELECT day, sum(wf), sum(stages), sum(cost) FROM (
                       SELECT substr(created_at, 1, 10) day, 1 wf, 0 stages, 0 cost FROM workflows
                         WHERE org_id = ?1 AND (?2 IS NULL OR created_at >= ?2) AND (?3 IS NULL OR created_at < ?3)
                       UNION ALL
                       SELECT substr(created_at, 1, 10), 0, 1, cost_nanos FROM stages
                         WHERE org_id = ?1 AND (?2 IS NULL OR created_at >= ?2) AND (?3 IS NULL OR created_at < ?3))
                     GROUP BY day ORDER BY day DESC LIMIT 62",
                )?
                .query_map(params![o, since, until], |r| {
                    Ok(json!({"day": r.get::<_, String>(0)?, "workflows": r.get::<_, i64>(1)?,
                              "stages": r.get::<_, i64>(2)?, "cost_nanos": r.get::<_, i64>(3)?}))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let by_model: Vec<Value> = c
                .prepare_cached(
                    "SELECT coalesce(model, '(none)'), count(*), sum(cost_nanos), coalesce(sum(tokens_input), 0),
                            coalesce(sum(tokens_output), 0), coalesce(avg(latency_ms), 0)
                     FROM stages WHERE org_id = ?1 AND (?2 IS NULL OR created_at >= ?2) AND (?3 IS NULL OR created_at < ?3)
                     GROUP BY model ORDER BY sum(cost_nanos) DESC, count(*) DESC LIMIT 20",
                )?
                .query_map(params![o, since, until], |r| {
                    Ok(json!({"model": r.get::<_, String>(0)?, "stages": r.get::<_, i64>(1)?,
                              "cost_nanos": r.get::<_, i64>(2)?, "tokens_input": r.get::<_, i64>(3)?,
                              "tokens_output": r.get::<_, i64>(4)?, "avg_latency_ms": r.get::<_, f64>(5)?}))
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(json!({"by_status": by_status, "by_day": by_day, "by_model": by_model}))
        })
        .await
    }

    /// Per-model statistics of closed workflows, for `stats` and the chooser.
    /// Returns the number of closed workflows matching the filter and one row per final model.
    pub async fn model_stats(
        &self,
        org: &str,
        task_type: Option<String>,
        complexity: Option<String>,
        language: Option<String>,
    ) -> Result<(i64, Vec<ModelStats>)> {
        let o = org.to_string();
        self.read_cancellable(None, move |c| {
            let filter = "w.org_id = ?1 AND w.status = 'closed' AND (?2 IS NULL OR w.task_type = ?2)
                AND (?3 IS NULL OR w.complexity = ?3) AND (?4 IS NULL OR w.language = ?4)";
            let total: i64 = c
                .prepare_cached(&format!("SELECT count(*) FROM workflows w WHERE {filter}"))?
                .query_row(params![o, task_type, complexity, language], |r| r.get(0))?;
            let mut st = c.prepare_cached(&format!(
                "SELECT w.final_model, count(*),
                        avg(coalesce(w.first_attempt_success, 0)), avg(coalesce(w.human_correction_needed, 0)),
                        avg(coalesce((SELECT sum(cost_nanos) FROM stages s WHERE s.org_id = w.org_id AND s.workflow_id = w.id), 0)),
                        avg(coalesce((SELECT sum(latency_ms) FROM stages s WHERE s.org_id = w.org_id AND s.workflow_id = w.id), 0))
                 FROM workflows w WHERE {filter} AND w.final_model IS NOT NULL
                 GROUP BY w.final_model ORDER BY count(*) DESC, w.final_model LIMIT 50"
            ))?;
            let rows = st
                .query_map(params![o, task_type, complexity, language], |r| {
                    Ok(ModelStats {
                        model: r.get(0)?,
                        workflows: r.get(1)?,
                        first_attempt_success_rate: r.get(2)?,
                        human_correction_rate: r.get(3)?,
                        avg_cost_nanos: r.get(4)?,
                        avg_latency_ms: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((total, rows))
        })
        .await
    }
}

impl Store {
    /// Ids of the org's workflows starting with `prefix`, newest first (for completions).
    pub async fn workflow_ids_with_prefix(
        &self,
        org: &str,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>> {
        let (o, p) = (org.to_string(), prefix.to_uppercase());
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id FROM workflows WHERE org_id = ?1 AND id >= ?2 AND id < ?2 || '~'
                 ORDER BY created_at DESC, id DESC LIMIT ?3",
            )?;
            let rows = st
                .query_map(params![o, p, limit], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(rows)
        })
        .await
    }
}
