//! vault-mcp rows → a [`Plan`] of vaultline rows. Pure: no I/O, no clock.
//!
//! The rules (wrangler-compat/MAPPING.md lists every column):
//! - a `tasks` row becomes a workflow holding one task with the same ULID; its
//!   `stages` become that task's stages;
//! - float dollars become nano-dollars once per row with `money::usd_to_nanos`
//!   (round half away from zero);
//! - times keep their instant and take vaultline's text form (RFC 3339, UTC,
//!   milliseconds); SQLite's `YYYY-MM-DD HH:MM:SS` is read as UTC;
//! - an id seen twice in the file with the same content is skipped and
//!   reported; with different content the whole import is refused.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{
    ImportCheckpoint, ImportDecision, ImportError, ImportStage, ImportTask, ImportTranscript,
    ImportWorkflow, Plan, PlanRow, Skipped, Source, SourceRow, TABLES, Target,
};
use crate::checkpoints::{Content, Redactor, canonical_json};
use crate::clock::fmt_time;

/// The longest task title taken from a description's first line.
const TITLE_CHARS: usize = 120;

/// Plans the import of `source`. Errors name the file, the row and the field.
pub fn plan(file: &str, source: Source, redactor: &Redactor) -> Result<Plan, ImportError> {
    let mut plan = Plan {
        other: source.other,
        ..Default::default()
    };
    // (table, id) → (hash, where first seen)
    let mut seen: HashMap<(&'static str, String), (String, String)> = HashMap::new();
    let mut rows = source.rows;
    rows.sort_by_key(|r| TABLES.iter().position(|t| *t == r.table));
    for row in rows {
        *plan.counts.entry(row.table).or_default() += 1;
        let id = source_id(file, &row)?;
        let hash = hex::encode(Sha256::digest(
            canonical_json(&Value::Object(row.values.clone())).as_bytes(),
        ));
        if let Some((h, first)) = seen.get(&(row.table, id.clone())) {
            if *h == hash {
                plan.skipped.entry(row.table).or_default().push(Skipped {
                    id,
                    at: row.at.clone(),
                    reason: format!("exact duplicate of the row at {first}"),
                });
                continue;
            }
            return Err(ImportError::Refused {
                file: file.into(),
                message: format!(
                    "conflicting duplicate: {} id {id:?} at {first} and at {} hold different content; nothing was imported",
                    row.table, row.at
                ),
            });
        }
        seen.insert((row.table, id.clone()), (hash.clone(), row.at.clone()));
        let f = Fields {
            file,
            row: &row,
            id: &id,
        };
        let (target, record) = target(&f, redactor)?;
        plan.rows.push(PlanRow {
            table: row.table,
            id,
            at: row.at.clone(),
            hash,
            record: record.to_string(),
            target,
        });
    }
    Ok(plan)
}

/// A row's id: its `id` column, or `period_type:period_key` for the breaker.
fn source_id(file: &str, row: &SourceRow) -> Result<String, ImportError> {
    let f = Fields { file, row, id: "?" };
    if row.table == "circuit_breaker" {
        return Ok(format!(
            "{}:{}",
            f.req_text("period_type")?,
            f.req_text("period_key")?
        ));
    }
    f.req_text("id")
}

/// A task's title: the first non-empty line of its description (at most 120
/// characters), else `<task_type> task <id>`.
pub fn title_of(description: Option<&str>, task_type: Option<&str>, id: &str) -> String {
    if let Some(line) = description
        .into_iter()
        .flat_map(str::lines)
        .map(str::trim)
        .find(|l| !l.is_empty())
    {
        let mut t: String = line.chars().take(TITLE_CHARS).collect();
        if line.chars().count() > TITLE_CHARS {
            t.push('…');
        }
        return t;
    }
    format!("{} task {id}", task_type.unwrap_or("vault-mcp"))
}

fn target(f: &Fields<'_>, redactor: &Redactor) -> Result<(Target, Value), ImportError> {
    let record = Value::Object(f.row.values.clone());
    let t = match f.row.table {
        "tasks" => {
            let status = f.text("status")?.unwrap_or_else(|| "open".into());
            let task_status = match status.as_str() {
                "open" | "in_progress" => status.clone(),
                "closed" => "done".into(),
                _ => return Err(f.bad("status", "must be open, in_progress or closed")),
            };
            let created_at = f.req_time("created_at")?;
            let completed_at = f.time("completed_at")?;
            let updated_at = f
                .time("updated_at")?
                .or_else(|| completed_at.clone())
                .unwrap_or_else(|| created_at.clone());
            let description = f.text("description")?;
            let task_type = f.text("task_type")?;
            let quality_score = f.float("quality_score")?;
            if let Some(q) = quality_score
                && !(0.0..=1.0).contains(&q)
            {
                return Err(f.bad("quality_score", "must be between 0 and 1"));
            }
            Target::Workflow(Box::new(ImportWorkflow {
                id: f.id.into(),
                title: title_of(description.as_deref(), task_type.as_deref(), f.id),
                task_type,
                complexity: f.text("complexity")?,
                language: f.text("language")?,
                stack: f.text("stack")?,
                domain: f.text("domain")?,
                scope: f.text("scope")?,
                is_greenfield: f.bool("is_greenfield")?,
                has_tests: f.bool("has_tests")?,
                description,
                spec: f.text("spec")?,
                status,
                task_status,
                final_model: f.text("final_model")?,
                first_attempt_success: f.bool("first_attempt_success")?,
                human_correction_needed: f.bool("human_correction_needed")?,
                quality_score,
                consensus_type: f.text("consensus_type")?,
                consensus_result: f.json_text("consensus_result")?,
                models_used: f.models("models_used")?,
                created_at,
                updated_at,
                completed_at,
            }))
        }
        "kv_tasks" => {
            let title = f
                .text("title")?
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| f.bad("title", "is required"))?;
            let status = f.text("status")?.unwrap_or_else(|| "open".into());
            if status != "open" && status != "done" {
                return Err(f.bad("status", "must be open or done"));
            }
            let created_at = f.req_time("created_at")?;
            let completed_at = f.time("completed_at")?;
            Target::HumanTask(ImportTask {
                id: f.id.into(),
                title,
                project: f
                    .text("project")?
                    .filter(|p| !p.trim().is_empty())
                    .unwrap_or_else(|| "inbox".into()),
                source: f.text("source")?,
                context: f.text("context")?,
                status,
                occurred_at: f.time("occurred_at")?,
                updated_at: completed_at.clone().unwrap_or_else(|| created_at.clone()),
                created_at,
                completed_at,
            })
        }
        "stages" => Target::Stage(ImportStage {
            id: f.id.into(),
            task_id: f.req_text("task_id")?,
            name: f.req_text("stage_name")?,
            stage_type: f.text("stage_type")?,
            model: f.text("model")?,
            output: f.output("output")?,
            tokens_input: f.count("tokens_input")?,
            tokens_output: f.count("tokens_output")?,
            cost_nanos: f.usd("cost_usd")?,
            latency_ms: f.count("latency_ms")?,
            created_at: f.req_time("created_at")?,
        }),
        "decisions" => Target::Decision(ImportDecision {
            id: f.id.into(),
            decision: f.req_text("decision")?,
            rationale: f.text("rationale")?,
            task_id: f.text("task_id")?,
            created_at: f.req_time("created_at")?,
        }),
        "checkpoints" => Target::Checkpoint(checkpoint(f)?),
        "transcripts" => {
            let content = f.req_text("content")?;
            let redacted = super::redact(redactor, &content);
            let mut record = f.row.values.clone();
            record.insert("content".into(), Value::String(redacted.clone()));
            let t = Target::Transcript(ImportTranscript {
                id: f.id.into(),
                conversation_id: f
                    .text("conversation_id")?
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| format!("vault-mcp-{}", f.id)),
                title: f.text("title")?,
                session_date: f.text("session_date")?,
                role: f.req_text("role")?,
                content: redacted,
                turn_number: f.count("turn_number")?.unwrap_or(0),
                is_branch: f.bool("is_branch")?.unwrap_or(false),
                parent_message_uuid: f.text("parent_message_uuid")?,
                history_hash: f.text("history_hash")?,
                created_at: f.req_time("created_at")?,
            });
            return Ok((t, Value::Object(record)));
        }
        "tool_calls" => Target::ToolCall {
            tool: f.req_text("tool_name")?,
            created_at: f.req_time("created_at")?,
        },
        "model_stats" | "circuit_breaker" => {
            // Checked like the rest, kept whole in the import record.
            for money in ["avg_cost_usd", "total_cost_usd"] {
                f.usd(money)?;
            }
            Target::RecordOnly
        }
        other => {
            return Err(ImportError::Format {
                file: f.file.into(),
                message: format!("no mapping for table {other}"),
            });
        }
    };
    Ok((t, record))
}

/// A vault-mcp checkpoint: its Markdown kept as written, its Objective,
/// Blockers and Recent Actions sections read into vaultline's fields, and its
/// trigger signals, weight and id in `state.vault_mcp`.
fn checkpoint(f: &Fields<'_>) -> Result<ImportCheckpoint, ImportError> {
    let markdown = f.req_text("content")?;
    let (objective, blockers, recent_actions) = sections(&markdown);
    let signals = match f.row.values.get("trigger_signals") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        Some(v) => v.clone(),
        None => Value::Null,
    };
    let mut vm = Map::new();
    vm.insert("id".into(), Value::String(f.id.into()));
    vm.insert("trigger_signals".into(), signals);
    if let Some(w) = f.float("cumulative_weight")? {
        vm.insert("cumulative_weight".into(), json!(w));
    }
    vm.insert(
        "markdown_sha256".into(),
        Value::String(hex::encode(Sha256::digest(markdown.as_bytes()))),
    );
    let mut state = Map::new();
    state.insert("vault_mcp".into(), Value::Object(vm));
    let content = Content {
        objective,
        blockers,
        recent_actions,
        state: Some(state),
        ..Default::default()
    }
    .normalized();
    Ok(ImportCheckpoint {
        id: f.id.into(),
        hash: content.hash(),
        objective: content.objective.clone(),
        blockers: content.blockers.clone(),
        recent_actions: content.recent_actions.clone(),
        state: Value::Object(content.state.clone().unwrap_or_default()).to_string(),
        markdown,
        created_at: f.req_time("created_at")?,
    })
}

/// The Objective text and the Blockers and Recent Actions items of a vault-mcp
/// "Recovery Checkpoint" document.
fn sections(md: &str) -> (Option<String>, Vec<String>, Vec<String>) {
    let mut section = String::new();
    let mut objective: Vec<&str> = Vec::new();
    let (mut blockers, mut actions) = (Vec::new(), Vec::new());
    for line in md.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = h.trim().to_ascii_lowercase();
            continue;
        }
        if line.starts_with("# ") {
            section.clear();
            continue;
        }
        let item = line.trim().strip_prefix("- ").map(|i| {
            i.trim_start_matches(['⛔', '✅', '\u{fe0f}'])
                .trim()
                .to_string()
        });
        match section.as_str() {
            "objective" if !line.trim().is_empty() => objective.push(line.trim()),
            "blockers" => blockers.extend(item),
            "recent actions" => actions.extend(item),
            _ => {}
        }
    }
    let objective = (!objective.is_empty()).then(|| objective.join("\n"));
    (objective, blockers, actions)
}

/// Typed access to one source row's fields; errors name the row and field.
struct Fields<'a> {
    file: &'a str,
    row: &'a SourceRow,
    id: &'a str,
}

impl Fields<'_> {
    fn bad(&self, field: &str, message: impl Into<String>) -> ImportError {
        ImportError::Row {
            file: self.file.into(),
            at: self.row.at.clone(),
            message: format!(
                "{} row {:?}: `{field}` {}",
                self.row.table,
                self.id,
                message.into()
            ),
        }
    }

    fn get(&self, field: &str) -> Option<&Value> {
        self.row.values.get(field).filter(|v| !v.is_null())
    }

    fn text(&self, field: &str) -> Result<Option<String>, ImportError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(self.bad(field, "must be text")),
        }
    }

    fn req_text(&self, field: &str) -> Result<String, ImportError> {
        self.text(field)?
            .ok_or_else(|| self.bad(field, "is required"))
    }

    /// Text, or a JSON value kept as its JSON text.
    fn json_text(&self, field: &str) -> Result<Option<String>, ImportError> {
        Ok(match self.get(field) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => Some(v.to_string()),
        })
    }

    /// A stage output: JSON text kept as JSON; anything else kept as a JSON string.
    fn output(&self, field: &str) -> Result<Option<String>, ImportError> {
        Ok(match self.get(field) {
            None => None,
            Some(Value::String(s)) => Some(match serde_json::from_str::<Value>(s) {
                Ok(v) => v.to_string(),
                Err(_) => Value::String(s.clone()).to_string(),
            }),
            Some(v) => Some(v.to_string()),
        })
    }

    /// A JSON array of model names (text or array), as JSON text.
    fn models(&self, field: &str) -> Result<Option<String>, ImportError> {
        let v = match self.get(field) {
            None => return Ok(None),
            Some(Value::String(s)) => serde_json::from_str::<Value>(s)
                .map_err(|_| self.bad(field, "is not a JSON array of model names"))?,
            Some(v) => v.clone(),
        };
        let names: Vec<String> = serde_json::from_value(v)
            .map_err(|_| self.bad(field, "is not a JSON array of model names"))?;
        Ok(Some(Value::from(names).to_string()))
    }

    fn float(&self, field: &str) -> Result<Option<f64>, ImportError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .map(Some)
                .map_err(|_| self.bad(field, format!("{s:?} is not a number"))),
            Some(_) => Err(self.bad(field, "must be a number")),
        }
    }

    /// A non-negative whole number (tokens, milliseconds, turns).
    fn count(&self, field: &str) -> Result<Option<i64>, ImportError> {
        let Some(f) = self.float(field)? else {
            return Ok(None);
        };
        if f.fract() != 0.0 || f.abs() > 9.0e15 {
            return Err(self.bad(field, format!("{f} is not a whole number")));
        }
        if f < 0.0 {
            return Err(self.bad(field, format!("{f} must not be negative")));
        }
        Ok(Some(f as i64))
    }

    fn bool(&self, field: &str) -> Result<Option<bool>, ImportError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) if n.as_f64() == Some(0.0) => Ok(Some(false)),
            Some(Value::Number(n)) if n.as_f64() == Some(1.0) => Ok(Some(true)),
            Some(_) => Err(self.bad(field, "must be 0, 1, true or false")),
        }
    }

    /// Float dollars → nano-dollars (absent → 0), by the one rule in money.rs.
    fn usd(&self, field: &str) -> Result<i64, ImportError> {
        match self.float(field)? {
            None => Ok(0),
            Some(usd) => crate::money::usd_to_nanos(field, usd).map_err(|e| match e {
                crate::error::Error::Invalid { message, .. } => self.bad(field, message),
                other => self.bad(field, other.to_string()),
            }),
        }
    }

    fn time(&self, field: &str) -> Result<Option<String>, ImportError> {
        let Some(s) = self.text(field)? else {
            return Ok(None);
        };
        let s = s.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(Some(fmt_time(t.with_timezone(&Utc))));
        }
        for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
            if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
                return Ok(Some(fmt_time(t.and_utc())));
            }
        }
        Err(self.bad(
            field,
            format!("{s:?} is not an ISO-8601 time such as 2026-11-03T14:22:05.123Z"),
        ))
    }

    fn req_time(&self, field: &str) -> Result<String, ImportError> {
        self.time(field)?
            .ok_or_else(|| self.bad(field, "is required"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{Format, SourceRow};

    fn row(table: &'static str, at: &str, v: Value) -> SourceRow {
        SourceRow {
            table,
            at: at.into(),
            values: v.as_object().unwrap().clone(),
        }
    }

    fn plan_of(rows: Vec<SourceRow>) -> Result<Plan, ImportError> {
        plan(
            "f.sql",
            Source {
                format: Format::D1,
                rows,
                other: vec![],
            },
            &Redactor::new(&[]).unwrap(),
        )
    }

    #[test]
    fn stage_money_is_rounded_once_per_row() {
        let cases = [
            (json!(0.1), 100_000_000),
            (json!(0.2), 200_000_000),
            (json!(0.30000000000000004), 300_000_000),
            (json!(0.0000000015), 2),
            (json!(0.0000000014), 1),
            (json!(12.345678901), 12_345_678_901),
            (json!("0.25"), 250_000_000),
            (Value::Null, 0),
        ];
        for (usd, nanos) in cases {
            let p = plan_of(vec![row(
                "stages",
                "line 1",
                json!({"id": "S", "task_id": "T", "stage_name": "impl", "cost_usd": usd,
                       "created_at": "2026-11-03T10:00:00.000Z"}),
            )])
            .unwrap();
            let Target::Stage(s) = &p.rows[0].target else {
                panic!()
            };
            assert_eq!(s.cost_nanos, nanos, "{usd}");
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (
                json!({"id": "S", "task_id": "T", "stage_name": "x", "cost_usd": -0.5, "created_at": "2026-11-03T10:00:00Z"}),
                "`cost_usd` must not be negative",
            ),
            (
                json!({"id": "S", "task_id": "T", "stage_name": "x", "tokens_input": -3, "created_at": "2026-11-03T10:00:00Z"}),
                "`tokens_input` -3 must not be negative",
            ),
            (
                json!({"id": "S", "task_id": "T", "created_at": "2026-11-03T10:00:00Z"}),
                "`stage_name` is required",
            ),
            (
                json!({"id": "S", "task_id": "T", "stage_name": "x", "created_at": "yesterday"}),
                "`created_at` \"yesterday\" is not an ISO-8601 time",
            ),
        ];
        for (v, needle) in cases {
            let e = plan_of(vec![row("stages", "line 7", v)])
                .unwrap_err()
                .to_string();
            assert!(e.contains("f.sql: line 7: stages row \"S\""), "{e}");
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn duplicates_exact_are_skipped_conflicting_refuse() {
        let d = json!({"id": "D1", "decision": "x", "created_at": "2026-11-03 10:00:00"});
        let p = plan_of(vec![
            row("decisions", "line 3", d.clone()),
            row("decisions", "line 9", d.clone()),
        ])
        .unwrap();
        assert_eq!(p.rows.len(), 1);
        assert_eq!(
            p.skipped["decisions"][0].reason,
            "exact duplicate of the row at line 3"
        );
        let mut d2 = d.clone();
        d2["decision"] = json!("y");
        let e = plan_of(vec![
            row("decisions", "line 3", d),
            row("decisions", "line 9", d2),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("conflicting duplicate: decisions id \"D1\" at line 3 and at line 9"),
            "{e}"
        );
    }

    #[test]
    fn times_keep_their_instant() {
        let p = plan_of(vec![row(
            "decisions",
            "line 1",
            json!({"id": "D", "decision": "x", "created_at": "2026-11-03 10:00:00"}),
        )])
        .unwrap();
        let Target::Decision(d) = &p.rows[0].target else {
            panic!()
        };
        assert_eq!(d.created_at, "2026-11-03T10:00:00.000Z");
    }

    #[test]
    fn tasks_map_status_and_title() {
        let p = plan_of(vec![row(
            "tasks",
            "line 1",
            json!({"id": "T", "status": "closed", "description": "\n  Fix the parser\nmore", "task_type": "fix",
                   "models_used": "[\"a\",\"b\"]", "created_at": "2026-11-03T10:00:00Z", "is_greenfield": 0}),
        )])
        .unwrap();
        let Target::Workflow(w) = &p.rows[0].target else {
            panic!()
        };
        assert_eq!(
            (w.status.as_str(), w.task_status.as_str()),
            ("closed", "done")
        );
        assert_eq!(w.title, "Fix the parser");
        assert_eq!(w.models_used.as_deref(), Some("[\"a\",\"b\"]"));
        assert_eq!(w.is_greenfield, Some(false));
        assert_eq!(title_of(None, Some("docs"), "X"), "docs task X");
    }

    #[test]
    fn checkpoint_sections_are_read() {
        let md = "# Recovery Checkpoint\nGenerated: x\n\n## Objective\nShip the importer\n\n## Blockers\n- ⛔ D1 is slow\n\n## Recent Actions\n- ✅ wrote the parser\n- ✅ wrote tests\n";
        let (o, b, a) = sections(md);
        assert_eq!(o.as_deref(), Some("Ship the importer"));
        assert_eq!(b, vec!["D1 is slow"]);
        assert_eq!(a, vec!["wrote the parser", "wrote tests"]);
    }
}
