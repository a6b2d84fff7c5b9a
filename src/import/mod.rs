//! `vaultline import`: vault-mcp's data (a `wrangler d1 export` SQL dump or the
//! `backup` tool's JSON document) into one org.
//!
//! Three steps. `sql.rs` and `backup.rs` read a file into rows of vault-mcp's
//! tables, each row knowing where it came from (a line, a JSON path). `map.rs`
//! turns those rows into a [`Plan`]: vaultline rows to write, pure and without
//! I/O (float dollars become nano-dollars here, once per row, through
//! `money::usd_to_nanos`). The store writes a plan in one write job
//! (`Store::import_plan`): all of it or nothing. Each source row also leaves an
//! import record (its table, id and content hash), which makes a second import
//! add nothing and a changed row (same id, different content) a refusal.
//!
//! This module never touches SQL of vaultline's own; the `INSERT` text it reads
//! is vault-mcp's dump, parsed as data.

mod backup;
mod map;
pub mod sql;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::app::App;
use crate::checkpoints::Redactor;

pub use map::{plan, title_of};

/// Which export form a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Auto,
    D1,
    Backup,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "auto" => Some(Format::Auto),
            "d1" => Some(Format::D1),
            "backup" => Some(Format::Backup),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::D1 => "d1",
            Format::Backup => "backup",
        }
    }
}

/// The vault-mcp tables the importer knows, in the order they are written
/// (a stage needs its workflow; a decision links to one).
pub const TABLES: [&str; 9] = [
    "tasks",
    "kv_tasks",
    "stages",
    "decisions",
    "checkpoints",
    "transcripts",
    "tool_calls",
    "model_stats",
    "circuit_breaker",
];

/// A row of a vault-mcp table as JSON values, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRow {
    pub table: &'static str,
    /// `line 42` (a dump) or `d1.tasks.data[3]` (a backup).
    pub at: String,
    pub values: Map<String, Value>,
}

/// A table of the file the importer does not write, with why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OtherTable {
    pub table: String,
    pub rows: usize,
    pub reason: String,
}

/// What a file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub format: Format,
    pub rows: Vec<SourceRow>,
    pub other: Vec<OtherTable>,
}

/// Why an import failed. Every variant names the file and the place in it.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: cannot read: {message}")]
    Read { file: String, message: String },
    #[error("{file}: {message}")]
    Format { file: String, message: String },
    #[error("{file}: line {line}: {message}")]
    Parse {
        file: String,
        line: usize,
        message: String,
    },
    /// A row's field: the message names the table, the row's id and the field.
    #[error("{file}: {at}: {message}")]
    Row {
        file: String,
        at: String,
        message: String,
    },
    #[error("{file}: {message}")]
    Refused { file: String, message: String },
}

/// A workflow and the task it holds (a vault-mcp `tasks` row).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportWorkflow {
    pub id: String,
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
    /// open, in_progress or closed (the workflow's); the task's is derived.
    pub status: String,
    pub task_status: String,
    pub title: String,
    pub final_model: Option<String>,
    pub first_attempt_success: Option<bool>,
    pub human_correction_needed: Option<bool>,
    pub quality_score: Option<f64>,
    pub consensus_type: Option<String>,
    pub consensus_result: Option<String>,
    /// JSON array text.
    pub models_used: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
}

/// A human task (a vault-mcp KV `task:<ulid>` object).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportTask {
    pub id: String,
    pub title: String,
    pub project: String,
    pub source: Option<String>,
    pub context: Option<String>,
    pub status: String,
    pub occurred_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
}

/// A stage of the task its `task_id` names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportStage {
    pub id: String,
    pub task_id: String,
    pub name: String,
    pub stage_type: Option<String>,
    pub model: Option<String>,
    /// JSON text.
    pub output: Option<String>,
    pub tokens_input: Option<i64>,
    pub tokens_output: Option<i64>,
    pub cost_nanos: i64,
    pub latency_ms: Option<i64>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportDecision {
    pub id: String,
    pub decision: String,
    pub rationale: Option<String>,
    pub task_id: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportCheckpoint {
    pub id: String,
    pub hash: String,
    pub objective: Option<String>,
    pub blockers: Vec<String>,
    pub recent_actions: Vec<String>,
    /// JSON object text.
    pub state: String,
    /// The Markdown as vault-mcp stored it.
    pub markdown: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportTranscript {
    pub id: String,
    pub conversation_id: String,
    pub title: Option<String>,
    pub session_date: Option<String>,
    pub role: String,
    /// Redacted.
    pub content: String,
    pub turn_number: i64,
    pub is_branch: bool,
    pub parent_message_uuid: Option<String>,
    pub history_hash: Option<String>,
    pub created_at: String,
}

/// Where a source row lands.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Workflow(Box<ImportWorkflow>),
    HumanTask(ImportTask),
    Stage(ImportStage),
    Decision(ImportDecision),
    Checkpoint(ImportCheckpoint),
    Transcript(ImportTranscript),
    /// A tool call: counted in run units (hour of `created_at`) besides its record.
    ToolCall {
        tool: String,
        created_at: String,
    },
    /// Kept in the import record only (model_stats, circuit_breaker).
    RecordOnly,
}

impl Target {
    /// Where the row lands, for the report.
    pub fn lands_in(&self) -> &'static str {
        match self {
            Target::Workflow(_) => "workflows + tasks",
            Target::HumanTask(_) => "tasks (human)",
            Target::Stage(_) => "stages + usage_records (self-reported)",
            Target::Decision(_) => "decisions",
            Target::Checkpoint(_) => "checkpoints",
            Target::Transcript(_) => "transcripts",
            Target::ToolCall { .. } => "import_records + run_units",
            Target::RecordOnly => "import_records",
        }
    }
}

/// One source row to write.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRow {
    pub table: &'static str,
    pub id: String,
    pub at: String,
    /// SHA-256 of the source row's canonical JSON.
    pub hash: String,
    /// The row as kept in `import_records` (transcript content redacted).
    pub record: String,
    pub target: Target,
}

/// A row left out before the store sees it, with why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub id: String,
    pub at: String,
    pub reason: String,
}

/// What to write, in order, and what was left out already.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub rows: Vec<PlanRow>,
    /// Per table: rows left out by the mapping (exact duplicates in the file).
    pub skipped: BTreeMap<&'static str, Vec<Skipped>>,
    pub other: Vec<OtherTable>,
    /// Source rows per table.
    pub counts: BTreeMap<&'static str, usize>,
}

/// What the store did with a plan row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Imported,
    AlreadyPresent,
    Skipped(String),
}

/// The report of one table.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct TableReport {
    pub table: String,
    pub rows: usize,
    pub imported: usize,
    pub already_present: usize,
    pub lands_in: String,
    pub skipped: Vec<Skipped>,
}

/// The report of an import (or of a dry run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub file: String,
    pub format: String,
    pub org: String,
    pub dry_run: bool,
    pub tables: Vec<TableReport>,
    pub other_tables: Vec<OtherTable>,
    pub imported: usize,
    pub already_present: usize,
    pub skipped: usize,
    pub money_rule: String,
}

/// The rounding rule, as the report and MAPPING.md state it.
pub const MONEY_RULE: &str = "float USD -> integer nano-dollars: round(usd x 1e9) half away from zero, once per row (money::usd_to_nanos)";

impl Report {
    /// The report as text, one table per line.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{} {} ({}) into org {}\n",
            if self.dry_run {
                "dry run: would import"
            } else {
                "imported"
            },
            self.file,
            self.format,
            self.org
        );
        for t in &self.tables {
            out.push_str(&format!(
                "  {:<16} {:>5} rows: {:>5} {}, {:>5} already present, {:>3} skipped  -> {}\n",
                t.table,
                t.rows,
                t.imported,
                if self.dry_run { "new" } else { "imported" },
                t.already_present,
                t.skipped.len(),
                t.lands_in
            ));
            for s in &t.skipped {
                out.push_str(&format!(
                    "      skipped {} ({}): {}\n",
                    s.id, s.at, s.reason
                ));
            }
        }
        for o in &self.other_tables {
            out.push_str(&format!(
                "  {:<16} {:>5} rows: skipped, {}\n",
                o.table, o.rows, o.reason
            ));
        }
        if self.imported == 0 && self.already_present > 0 {
            out.push_str("nothing new: every row is already present\n");
        }
        out.push_str(&format!(
            "total: {} {}, {} already present, {} skipped; money: {}\n",
            self.imported,
            if self.dry_run { "new" } else { "imported" },
            self.already_present,
            self.skipped,
            self.money_rule
        ));
        out
    }
}

/// Reads a file of either form.
pub fn read(path: &Path, format: Format) -> Result<Source, ImportError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ImportError::Read {
        file: file.clone(),
        message: e.to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| ImportError::Format {
        file: file.clone(),
        message: format!(
            "is not UTF-8 text (byte {}): neither a D1 dump nor a backup document",
            e.utf8_error().valid_up_to()
        ),
    })?;
    let format = match format {
        Format::Auto if text.trim_start().starts_with('{') => Format::Backup,
        Format::Auto => Format::D1,
        f => f,
    };
    match format {
        Format::Backup => backup::read(&file, &text),
        _ => read_dump(&file, &text),
    }
}

fn read_dump(file: &str, text: &str) -> Result<Source, ImportError> {
    let dump = sql::parse(text).map_err(|e| ImportError::Parse {
        file: file.into(),
        line: e.line,
        message: e.message,
    })?;
    if dump.tables.is_empty() {
        return Err(ImportError::Format {
            file: file.into(),
            message: "holds no CREATE TABLE or INSERT INTO statement: this is not a D1 dump".into(),
        });
    }
    let mut rows = Vec::new();
    let mut other = Vec::new();
    let mut known = 0;
    for (name, table) in dump.tables {
        let Some(t) = known_table(&name) else {
            other.push(OtherTable {
                table: name.clone(),
                rows: table.rows.len(),
                reason: other_reason(&name),
            });
            continue;
        };
        known += 1;
        for r in table.rows {
            let mut values = Map::new();
            for (col, v) in r.values {
                let v = match v {
                    sql::SqlValue::Null => Value::Null,
                    sql::SqlValue::Int(i) => Value::from(i),
                    sql::SqlValue::Real(f) => Value::from(f),
                    sql::SqlValue::Text(s) => Value::String(s),
                    sql::SqlValue::Blob(b) => match String::from_utf8(b) {
                        Ok(s) => Value::String(s),
                        Err(_) => {
                            return Err(ImportError::Parse {
                                file: file.into(),
                                line: r.line,
                                message: format!(
                                    "{name}.{col} holds a binary value that is not UTF-8 text"
                                ),
                            });
                        }
                    },
                };
                values.insert(col, v);
            }
            rows.push(SourceRow {
                table: t,
                at: format!("line {}", r.line),
                values,
            });
        }
    }
    if known == 0 && !dump.d1_marks {
        return Err(ImportError::Format {
            file: file.into(),
            message: format!(
                "has none of vault-mcp's tables ({}) and no D1 markers: not a vault-mcp D1 dump",
                TABLES.join(", ")
            ),
        });
    }
    Ok(Source {
        format: Format::D1,
        rows,
        other,
    })
}

/// The importer's name of a vault-mcp table, if it is one.
fn known_table(name: &str) -> Option<&'static str> {
    TABLES
        .iter()
        .find(|t| t.eq_ignore_ascii_case(name) && **t != "kv_tasks")
        .copied()
}

fn other_reason(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    if n == "d1_migrations" || n == "sqlite_sequence" || n.starts_with("_cf_") {
        "D1 bookkeeping, not vault-mcp data".into()
    } else {
        "not a vault-mcp table; vaultline has no place for it".into()
    }
}

/// Reads, maps and writes (or, for a dry run, writes inside a savepoint that is
/// rolled back) one file into `org`; returns the report.
pub async fn run(
    app: &App,
    path: &Path,
    org: &str,
    format: Format,
    dry_run: bool,
) -> Result<Report, ImportError> {
    let file = path.display().to_string();
    let source = read(path, format)?;
    let fmt = source.format;
    let plan = plan(&file, source, &app.redactor)?;
    let outcomes = app
        .store
        .import_plan(org, plan.rows.clone(), app.clock.now_text(), dry_run)
        .await
        .map_err(|e| ImportError::Refused {
            file: file.clone(),
            message: format!("{e}; nothing was imported"),
        })?;
    Ok(report(&file, fmt, org, dry_run, &plan, &outcomes))
}

/// Builds the report from the plan and what the store did with each row.
pub fn report(
    file: &str,
    format: Format,
    org: &str,
    dry_run: bool,
    plan: &Plan,
    outcomes: &[Outcome],
) -> Report {
    let mut tables: Vec<TableReport> = TABLES
        .iter()
        .filter(|t| plan.counts.contains_key(*t))
        .map(|t| TableReport {
            table: (*t).to_string(),
            rows: plan.counts[t],
            skipped: plan.skipped.get(t).cloned().unwrap_or_default(),
            ..Default::default()
        })
        .collect();
    for (row, outcome) in plan.rows.iter().zip(outcomes) {
        let Some(t) = tables.iter_mut().find(|t| t.table == row.table) else {
            continue;
        };
        t.lands_in = row.target.lands_in().into();
        match outcome {
            Outcome::Imported => t.imported += 1,
            Outcome::AlreadyPresent => t.already_present += 1,
            Outcome::Skipped(reason) => t.skipped.push(Skipped {
                id: row.id.clone(),
                at: row.at.clone(),
                reason: reason.clone(),
            }),
        }
    }
    let sum = |f: fn(&TableReport) -> usize| tables.iter().map(f).sum();
    Report {
        file: file.into(),
        format: format.as_str().into(),
        org: org.into(),
        dry_run,
        imported: sum(|t| t.imported),
        already_present: sum(|t| t.already_present),
        skipped: sum(|t| t.skipped.len()),
        tables,
        other_tables: plan.other.clone(),
        money_rule: MONEY_RULE.into(),
    }
}

/// The redactor's view of a transcript row's content (for tests and the mapping).
pub fn redact(r: &Redactor, text: &str) -> String {
    r.redact(text).0
}
