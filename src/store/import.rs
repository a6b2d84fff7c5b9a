//! Store verb for `vaultline import`: writes a whole import plan in one write
//! job, so an import lands entirely or not at all. Each source row is looked up
//! in `import_records` first: the same content is "already present", other
//! content under the same id refuses the import. A dry run does all the same
//! work inside a savepoint that is then rolled back, so its report is exact.

use rusqlite::{Connection, OptionalExtension, params};

use super::Store;
use super::metering::{UsageInsert, record};
use crate::error::{Error, Result};
use crate::import::{Outcome, PlanRow, Target};
use crate::metering::pricing::Usage;
use crate::metering::usage::{BillingMode, Call, CostSource, Reason, hour_of};

const SOURCE: &str = "vault-mcp";
/// `created_by` of imported rows, and the key of their usage and run units.
const ACTOR: &str = "import:vault-mcp";

impl Store {
    /// Writes `rows` into `org` (in order) in one transaction; returns what
    /// happened to each row. With `dry_run` nothing stays written.
    pub async fn import_plan(
        &self,
        org: &str,
        rows: Vec<PlanRow>,
        now: String,
        dry_run: bool,
    ) -> Result<Vec<Outcome>> {
        let o = org.to_string();
        self.write(move |c| {
            let known: Option<i64> = c
                .prepare_cached("SELECT 1 FROM orgs WHERE id = ?1")?
                .query_row([&o], |r| r.get(0))
                .optional()?;
            if known.is_none() {
                return Err(Error::invalid(
                    "org",
                    format!("unknown org {o:?}; create it with `vaultline orgs create {o}`"),
                ));
            }
            c.execute_batch("SAVEPOINT import")?;
            let r = rows
                .iter()
                .map(|row| one(c, &o, row, &now))
                .collect::<Result<Vec<_>>>();
            if r.is_ok() && !dry_run {
                c.execute_batch("RELEASE import")?;
            } else {
                c.execute_batch("ROLLBACK TO import; RELEASE import")?;
            }
            r
        })
        .await
    }

    /// Import records of an org (table, id, hash), for tests and audits.
    pub async fn import_records(&self, org: &str) -> Result<Vec<(String, String, String)>> {
        let o = org.to_string();
        self.read_cancellable(None, move |c| {
            let mut st = c.prepare_cached(
                "SELECT source_table, source_id, content_sha256 FROM import_records
                 WHERE org_id = ?1 ORDER BY source_table, source_id",
            )?;
            let rows = st
                .query_map([&o], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}

fn one(c: &Connection, org: &str, row: &PlanRow, now: &str) -> Result<Outcome> {
    let before: Option<(String, String)> = c
        .prepare_cached(
            "SELECT content_sha256, imported_at FROM import_records
             WHERE org_id = ?1 AND source = ?2 AND source_table = ?3 AND source_id = ?4",
        )?
        .query_row(params![org, SOURCE, row.table, row.id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    if let Some((hash, at)) = before {
        if hash == row.hash {
            return Ok(Outcome::AlreadyPresent);
        }
        return Err(Error::Conflict(format!(
            "{} row {:?} at {} differs from the row with the same id imported at {at}",
            row.table, row.id, row.at
        )));
    }
    let failed = |e: rusqlite::Error| -> Error {
        let detail = match &e {
            rusqlite::Error::SqliteFailure(_, Some(m)) => m.clone(),
            other => other.to_string(),
        };
        Error::Conflict(format!(
            "{} row {:?} at {}: {detail}",
            row.table, row.id, row.at
        ))
    };
    if let Some(skip) = write_target(c, org, row).map_err(|e| match e {
        WriteError::Sql(e) => failed(e),
        WriteError::App(e) => e,
    })? {
        return Ok(Outcome::Skipped(skip));
    }
    c.prepare_cached(
        "INSERT INTO import_records (org_id, source, source_table, source_id, content_sha256, row_json, lands_in, imported_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        org,
        SOURCE,
        row.table,
        row.id,
        row.hash,
        row.record,
        row.target.lands_in(),
        now
    ])
    .map_err(failed)?;
    Ok(Outcome::Imported)
}

enum WriteError {
    Sql(rusqlite::Error),
    App(Error),
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> Self {
        WriteError::Sql(e)
    }
}

fn exists(c: &Connection, table: &str, org: &str, id: &str) -> rusqlite::Result<bool> {
    // `table` is one of this file's constants, never input.
    Ok(c.prepare_cached(&format!(
        "SELECT 1 FROM {table} WHERE org_id = ?1 AND id = ?2"
    ))?
    .query_row([org, id], |_| Ok(()))
    .optional()?
    .is_some())
}

/// Writes a row's vaultline rows; returns why it was skipped, if it was.
fn write_target(
    c: &Connection,
    org: &str,
    row: &PlanRow,
) -> std::result::Result<Option<String>, WriteError> {
    match &row.target {
        Target::Workflow(w) => {
            c.prepare_cached(
                "INSERT INTO workflows (org_id, id, title, task_type, complexity, language, stack, domain, scope,
                   is_greenfield, has_tests, description, spec, status, final_model, first_attempt_success,
                   human_correction_needed, quality_score, consensus_type, consensus_result, models_used,
                   created_by, created_at, updated_at, closed_at)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25)",
            )?
            .execute(params![
                org, w.id, w.title, w.task_type, w.complexity, w.language, w.stack, w.domain, w.scope,
                w.is_greenfield, w.has_tests, w.description, w.spec, w.status, w.final_model,
                w.first_attempt_success, w.human_correction_needed, w.quality_score, w.consensus_type,
                w.consensus_result, w.models_used, ACTOR, w.created_at, w.updated_at, w.completed_at
            ])?;
            c.prepare_cached(
                "INSERT INTO tasks (org_id, id, workflow_id, title, instruction, project, source, task_type,
                   complexity, language, stack, domain, status, created_by, created_at, updated_at, completed_at)
                 VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?
            .execute(params![
                org, w.id, w.title, w.description, SOURCE, SOURCE, w.task_type, w.complexity,
                w.language, w.stack, w.domain, w.task_status, ACTOR, w.created_at, w.updated_at,
                w.completed_at
            ])?;
        }
        Target::HumanTask(t) => {
            c.prepare_cached(
                "INSERT INTO tasks (org_id, id, title, project, source, context, status, occurred_at,
                   created_by, created_at, updated_at, completed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                org, t.id, t.title, t.project, t.source, t.context, t.status, t.occurred_at, ACTOR,
                t.created_at, t.updated_at, t.completed_at
            ])?;
        }
        Target::Stage(s) => {
            if !exists(c, "workflows", org, &s.task_id)? {
                return Ok(Some(format!(
                    "orphan stage: its task {:?} is neither in the file nor in org {org}",
                    s.task_id
                )));
            }
            let task_id = exists(c, "tasks", org, &s.task_id)?.then(|| s.task_id.clone());
            c.prepare_cached(
                "INSERT INTO stages (org_id, id, workflow_id, task_id, name, stage_type, model, output,
                   tokens_input, tokens_output, cost_nanos, cost_self_reported, latency_ms, created_by, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1, ?12, ?13, ?14)",
            )?
            .execute(params![
                org, s.id, s.task_id, task_id, s.name, s.stage_type, s.model, s.output, s.tokens_input,
                s.tokens_output, s.cost_nanos, s.latency_ms, ACTOR, s.created_at
            ])?;
            if s.cost_nanos > 0 {
                // Self-reported spend, as `workflow stage` records it: never
                // billed, counted by the breaker in the stage's own hour.
                let tokens = |v: Option<i64>| v.and_then(|t| u64::try_from(t).ok()).unwrap_or(0);
                let u = UsageInsert {
                    id: s.id.clone(),
                    ledger_id: String::new(),
                    call: Call {
                        org: org.into(),
                        key_id: ACTOR.into(),
                        workflow_id: Some(s.task_id.clone()),
                        task_id,
                        stage_id: Some(s.id.clone()),
                        reason: Reason::LlmCall,
                        tool: None,
                        provider: SOURCE.into(),
                        model: s.model.clone().unwrap_or_else(|| "unknown".into()),
                        account_id: None,
                        billing_mode: BillingMode::SelfReported,
                        usage: Some(Usage {
                            input: tokens(s.tokens_input),
                            output: tokens(s.tokens_output),
                            ..Default::default()
                        }),
                        reported_cost_nanos: Some(s.cost_nanos),
                        latency_ms: tokens(s.latency_ms),
                        outcome: "ok".into(),
                        source_system: ACTOR.into(),
                        source_reference: s.id.clone(),
                        reservation_id: None,
                    },
                    cost_nanos: s.cost_nanos,
                    cost_source: CostSource::SelfReported,
                    price: None,
                    price_is_new: false,
                    billed_override: None,
                    now: s.created_at.clone(),
                };
                record(c, &u).map_err(WriteError::App)?;
            }
        }
        Target::Decision(d) => {
            let workflow_id = match &d.task_id {
                Some(t) if exists(c, "workflows", org, t)? => Some(t.clone()),
                _ => None,
            };
            c.prepare_cached(
                "INSERT INTO decisions (org_id, id, decision, rationale, task_id, workflow_id, created_by, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                org, d.id, d.decision, d.rationale, d.task_id, workflow_id, ACTOR, d.created_at
            ])?;
        }
        Target::Checkpoint(k) => {
            let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
            c.prepare_cached(
                "INSERT INTO checkpoints (org_id, id, content_sha256, objective, blockers, recent_actions, refs,
                   state, content, created_by, created_at, last_saved_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, '[]', ?7, ?8, ?9, ?10, ?10)",
            )?
            .execute(params![
                org,
                k.id,
                k.hash,
                k.objective,
                json(&k.blockers),
                json(&k.recent_actions),
                k.state,
                k.markdown,
                ACTOR,
                k.created_at
            ])?;
        }
        Target::Transcript(t) => {
            // A branch shares its turn number with the message it branches
            // from: it takes the next free chunk index of that turn.
            let chunk: i64 = c
                .prepare_cached(
                    "SELECT coalesce(max(chunk_index) + 1, 0) FROM transcripts
                     WHERE org_id = ?1 AND conversation_id = ?2 AND turn_number = ?3",
                )?
                .query_row(params![org, t.conversation_id, t.turn_number], |r| r.get(0))?;
            c.prepare_cached(
                "INSERT INTO transcripts (org_id, id, conversation_id, title, session_date, role, content,
                   turn_number, chunk_index, is_branch, parent_message_uuid, history_hash, created_by, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
                org, t.id, t.conversation_id, t.title, t.session_date, t.role, t.content, t.turn_number,
                chunk, t.is_branch, t.parent_message_uuid, t.history_hash, ACTOR, t.created_at
            ])?;
        }
        Target::ToolCall { tool, created_at } => {
            c.prepare_cached(
                "INSERT INTO run_units (org_id, hour, key_id, tool, calls, errors) VALUES (?1, ?2, ?3, ?4, 1, 0)
                 ON CONFLICT (org_id, hour, key_id, tool) DO UPDATE SET calls = calls + 1",
            )?
            .execute(params![org, hour_of(created_at), ACTOR, tool])?;
        }
        Target::RecordOnly => {}
    }
    Ok(None)
}
