//! Store verbs for checkpoints, decisions and transcripts, their full-text
//! search, and the read of open tasks that the handoff needs.
//!
//! Every statement is scoped by `org_id`: another org's id behaves exactly like
//! a missing one. A checkpoint's content hash is unique per org, so saving the
//! same content again returns the existing row with `last_saved_at` bumped.
//! `last_saved_at` strictly increases within an org (the writer is the only
//! writer, and bumps a same-millisecond save by 1 ms), so "latest" is a total
//! order even for saves in the same millisecond. User search text never reaches
//! FTS5 as syntax: every term is quoted as an FTS5 string.

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::Store;
use crate::checkpoints::{Checkpoint, Content, Decision, OpenTask, SearchHit};
use crate::clock::{fmt_time, parse_time};
use crate::error::{Error, Result};

/// A checkpoint to save: its id (used if the content is new), hash, content and
/// Markdown rendering.
pub struct CheckpointSave {
    pub id: String,
    pub hash: String,
    pub content: Content,
    pub markdown: String,
    pub created_by: String,
    pub now: String,
}

/// A decision to record.
pub struct DecisionInsert {
    pub id: String,
    pub decision: String,
    pub rationale: Option<String>,
    pub task_id: Option<String>,
    pub workflow_id: Option<String>,
    pub agent: Option<String>,
    pub project: Option<String>,
    pub created_by: String,
    pub created_at: String,
}

/// One transcript chunk to store.
pub struct TranscriptChunk {
    pub id: String,
    pub conversation_id: String,
    pub title: Option<String>,
    pub session_date: Option<String>,
    pub role: String,
    pub content: String,
    pub turn_number: i64,
    pub chunk_index: i64,
    pub created_by: String,
    pub created_at: String,
}

/// A full-text search over transcripts and/or decisions.
#[derive(Debug, Clone)]
pub struct TextSearch {
    /// The caller's words, as typed.
    pub query: String,
    pub transcripts: bool,
    pub decisions: bool,
    /// `YYYY-MM-DD`: transcripts of that session date, decisions made that day (UTC).
    pub session_date: Option<String>,
    pub limit: u32,
}

/// Turns free text into an FTS5 query that cannot be a syntax error: each
/// whitespace-separated term becomes an FTS5 string (`"` doubled inside), and
/// the terms are ANDed. `None` when there is no term at all.
pub fn fts_query(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split_whitespace()
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

fn json_col<T: DeserializeOwned>(r: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = r.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

const CP_COLS: &str = "id, content_sha256, agent, project, objective, blockers, recent_actions, refs, state, content, created_at, last_saved_at";

fn cp_row(r: &Row<'_>) -> rusqlite::Result<Checkpoint> {
    let state: Option<String> = r.get(8)?;
    let state =
        match state {
            Some(s) => Some(serde_json::from_str(&s).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(8, Type::Text, Box::new(e))
            })?),
            None => None,
        };
    Ok(Checkpoint {
        id: r.get(0)?,
        hash: r.get(1)?,
        agent: r.get(2)?,
        project: r.get(3)?,
        objective: r.get(4)?,
        blockers: json_col(r, 5)?,
        recent_actions: json_col(r, 6)?,
        refs: json_col(r, 7)?,
        state,
        content: Some(r.get(9)?),
        created_at: r.get(10)?,
        last_saved_at: r.get(11)?,
    })
}

const DECISION_COLS: &str =
    "id, decision, rationale, task_id, workflow_id, agent, project, created_at";

fn decision_row(r: &Row<'_>) -> rusqlite::Result<Decision> {
    Ok(Decision {
        id: r.get(0)?,
        decision: r.get(1)?,
        rationale: r.get(2)?,
        task_id: r.get(3)?,
        workflow_id: r.get(4)?,
        agent: r.get(5)?,
        project: r.get(6)?,
        created_at: r.get(7)?,
    })
}

fn get_cp(c: &Connection, org: &str, id: &str) -> Result<Checkpoint> {
    c.prepare_cached(&format!(
        "SELECT {CP_COLS} FROM checkpoints WHERE org_id = ?1 AND id = ?2"
    ))?
    .query_row((org, id), cp_row)
    .optional()?
    .ok_or_else(|| Error::not_found("checkpoint", id))
}

/// `now`, or 1 ms after the org's newest `last_saved_at` if that is not earlier.
fn next_save_time(c: &Connection, org: &str, now: &str) -> Result<String> {
    let newest: Option<String> = c.query_row(
        "SELECT max(last_saved_at) FROM checkpoints WHERE org_id = ?1",
        [org],
        |r| r.get(0),
    )?;
    Ok(match newest.filter(|n| n.as_str() >= now) {
        Some(n) => parse_time(&n)
            .map(|t| fmt_time(t + chrono::Duration::milliseconds(1)))
            .unwrap_or_else(|| now.to_string()),
        None => now.to_string(),
    })
}

impl Store {
    /// Saves a checkpoint; identical content in the same org returns the
    /// existing checkpoint with `last_saved_at` bumped. Returns the row and
    /// whether it was created now.
    pub async fn save_checkpoint(
        &self,
        org: &str,
        s: CheckpointSave,
    ) -> Result<(Checkpoint, bool)> {
        let o = org.to_string();
        self.write(move |c| {
            let saved_at = next_save_time(c, &o, &s.now)?;
            let k = &s.content;
            let state = k.state.as_ref().map(serde_json::to_string).transpose()?;
            let cp = c
                .prepare_cached(&format!(
                    "INSERT INTO checkpoints (org_id, id, content_sha256, agent, project, objective, blockers,
                       recent_actions, refs, state, content, created_by, created_at, last_saved_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                     ON CONFLICT(org_id, content_sha256) DO UPDATE SET last_saved_at = excluded.last_saved_at
                     RETURNING {CP_COLS}"
                ))?
                .query_row(
                    rusqlite::params![
                        o,
                        s.id,
                        s.hash,
                        k.agent,
                        k.project,
                        k.objective,
                        serde_json::to_string(&k.blockers)?,
                        serde_json::to_string(&k.recent_actions)?,
                        serde_json::to_string(&k.refs)?,
                        state,
                        s.markdown,
                        s.created_by,
                        s.now,
                        saved_at,
                    ],
                    cp_row,
                )?;
            let created = cp.id == s.id;
            Ok((cp, created))
        })
        .await
    }

    /// The most recently saved checkpoint, optionally of one agent and/or project.
    pub async fn latest_checkpoint(
        &self,
        org: &str,
        agent: Option<&str>,
        project: Option<&str>,
    ) -> Result<Option<Checkpoint>> {
        let mut page = self.list_checkpoints(org, agent, project, None, 1).await?;
        Ok(page.pop())
    }

    /// One checkpoint; `NotFound` if it does not exist in this org.
    pub async fn get_checkpoint(&self, org: &str, id: &str) -> Result<Checkpoint> {
        let (o, i) = (org.to_string(), id.to_string());
        self.read(move |c| get_cp(c, &o, &i)).await
    }

    /// Checkpoints newest-saved first, optionally of one agent and/or project.
    /// `after` is the (last_saved_at, id) of the last row of the previous page.
    pub async fn list_checkpoints(
        &self,
        org: &str,
        agent: Option<&str>,
        project: Option<&str>,
        after: Option<(String, String)>,
        limit: u32,
    ) -> Result<Vec<Checkpoint>> {
        let (o, a, p) = (
            org.to_string(),
            agent.map(str::to_string),
            project.map(str::to_string),
        );
        let (after_t, after_id) = after.unzip();
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {CP_COLS} FROM checkpoints
                 WHERE org_id = ?1 AND (?2 IS NULL OR agent = ?2) AND (?3 IS NULL OR project = ?3)
                   AND (?4 IS NULL OR (last_saved_at, id) < (?4, ?5))
                 ORDER BY last_saved_at DESC, id DESC LIMIT ?6"
            ))?;
            let rows = st
                .query_map(rusqlite::params![o, a, p, after_t, after_id, limit], cp_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// The checkpoint saved just before `cp` with the same agent and project.
    pub async fn previous_checkpoint(
        &self,
        org: &str,
        cp: &Checkpoint,
    ) -> Result<Option<Checkpoint>> {
        let (o, a, p, t, i) = (
            org.to_string(),
            cp.agent.clone(),
            cp.project.clone(),
            cp.last_saved_at.clone(),
            cp.id.clone(),
        );
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {CP_COLS} FROM checkpoints
                 WHERE org_id = ?1 AND agent IS ?2 AND project IS ?3 AND (last_saved_at, id) < (?4, ?5)
                 ORDER BY last_saved_at DESC, id DESC LIMIT 1"
            ))?
            .query_row(rusqlite::params![o, a, p, t, i], cp_row)
            .optional()?)
        })
        .await
    }

    /// Records a decision.
    pub async fn insert_decision(&self, org: &str, d: DecisionInsert) -> Result<Decision> {
        let o = org.to_string();
        self.write(move |c| {
            c.prepare_cached(&format!(
                "INSERT INTO decisions (org_id, id, decision, rationale, task_id, workflow_id, agent, project, created_by, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING {DECISION_COLS}"
            ))?
            .query_row(
                rusqlite::params![
                    o, d.id, d.decision, d.rationale, d.task_id, d.workflow_id, d.agent, d.project,
                    d.created_by, d.created_at
                ],
                decision_row,
            )
            .map_err(Error::from)
        })
        .await
    }

    /// The latest decisions, newest first, optionally of one agent and/or project.
    pub async fn recent_decisions(
        &self,
        org: &str,
        agent: Option<&str>,
        project: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Decision>> {
        let (o, a, p) = (
            org.to_string(),
            agent.map(str::to_string),
            project.map(str::to_string),
        );
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {DECISION_COLS} FROM decisions
                 WHERE org_id = ?1 AND (?2 IS NULL OR agent = ?2) AND (?3 IS NULL OR project = ?3)
                 ORDER BY created_at DESC, id DESC LIMIT ?4"
            ))?;
            let rows = st
                .query_map(rusqlite::params![o, a, p, limit], decision_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Stores transcript chunks in one transaction. A chunk whose (conversation,
    /// turn, chunk index) is already stored is skipped, so re-ingesting a
    /// conversation adds only what is new. Returns (inserted, skipped).
    pub async fn ingest_transcript(
        &self,
        org: &str,
        chunks: Vec<TranscriptChunk>,
    ) -> Result<(u64, u64)> {
        let o = org.to_string();
        self.write(move |c| {
            let mut st = c.prepare_cached(
                "INSERT INTO transcripts (org_id, id, conversation_id, title, session_date, role, content,
                   turn_number, chunk_index, created_by, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT(org_id, conversation_id, turn_number, chunk_index) DO NOTHING",
            )?;
            let mut inserted = 0u64;
            for k in &chunks {
                inserted += st.execute(rusqlite::params![
                    o,
                    k.id,
                    k.conversation_id,
                    k.title,
                    k.session_date,
                    k.role,
                    k.content,
                    k.turn_number,
                    k.chunk_index,
                    k.created_by,
                    k.created_at
                ])? as u64;
            }
            Ok((inserted, chunks.len() as u64 - inserted))
        })
        .await
    }

    /// Full-text search (FTS5, bm25 ranking) over this org's transcripts and/or
    /// decisions, best first. Interrupted when `ct` is cancelled.
    pub async fn search_text(
        &self,
        org: &str,
        q: TextSearch,
        ct: Option<CancellationToken>,
    ) -> Result<Vec<SearchHit>> {
        let Some(fts) = fts_query(&q.query) else {
            return Err(Error::invalid("query", "has no search terms"));
        };
        let o = org.to_string();
        self.read_cancellable(ct, move |c| {
            let mut hits = Vec::new();
            if q.transcripts {
                let mut st = c.prepare_cached(
                    "SELECT t.id, snippet(transcripts_fts, -1, '**', '**', '…', 16), bm25(transcripts_fts),
                            t.created_at, t.conversation_id, t.title, t.session_date
                     FROM transcripts_fts JOIN transcripts t ON t.rowid = transcripts_fts.rowid
                     WHERE transcripts_fts MATCH ?1 AND t.org_id = ?2 AND (?3 IS NULL OR t.session_date = ?3)
                     ORDER BY bm25(transcripts_fts) LIMIT ?4",
                )?;
                let rows = st.query_map(
                    rusqlite::params![fts, o, q.session_date, q.limit],
                    |r| {
                        Ok(SearchHit {
                            kind: "transcript".into(),
                            id: r.get(0)?,
                            snippet: r.get(1)?,
                            rank: r.get(2)?,
                            created_at: r.get(3)?,
                            conversation_id: r.get(4)?,
                            title: r.get(5)?,
                            session_date: r.get(6)?,
                        })
                    },
                )?;
                for h in rows {
                    hits.push(h?);
                }
            }
            if q.decisions {
                let mut st = c.prepare_cached(
                    "SELECT d.id, snippet(decisions_fts, -1, '**', '**', '…', 16), bm25(decisions_fts), d.created_at
                     FROM decisions_fts JOIN decisions d ON d.rowid = decisions_fts.rowid
                     WHERE decisions_fts MATCH ?1 AND d.org_id = ?2
                       AND (?3 IS NULL OR substr(d.created_at, 1, 10) = ?3)
                     ORDER BY bm25(decisions_fts) LIMIT ?4",
                )?;
                let rows = st.query_map(
                    rusqlite::params![fts, o, q.session_date, q.limit],
                    |r| {
                        Ok(SearchHit {
                            kind: "decision".into(),
                            id: r.get(0)?,
                            snippet: r.get(1)?,
                            rank: r.get(2)?,
                            created_at: r.get(3)?,
                            conversation_id: None,
                            title: None,
                            session_date: None,
                        })
                    },
                )?;
                for h in rows {
                    hits.push(h?);
                }
            }
            hits.sort_by(|a, b| a.rank.total_cmp(&b.rank));
            hits.truncate(q.limit as usize);
            Ok(hits)
        })
        .await
    }

    /// Unfinished tasks (open, in progress, waiting for a person), oldest first,
    /// with the summed cost of their stages; optionally of one project.
    pub async fn open_tasks(
        &self,
        org: &str,
        project: Option<&str>,
        limit: u32,
    ) -> Result<Vec<OpenTask>> {
        let (o, p) = (org.to_string(), project.map(str::to_string));
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT t.id, t.title, t.task_type, t.complexity, t.status, t.project,
                        coalesce((SELECT sum(s.cost_nanos) FROM stages s
                                  WHERE s.org_id = t.org_id AND s.task_id = t.id), 0)
                 FROM tasks t
                 WHERE t.org_id = ?1 AND t.status IN ('open', 'in_progress', 'needs_human')
                   AND (?2 IS NULL OR t.project = ?2)
                 ORDER BY t.created_at, t.id LIMIT ?3",
            )?;
            let rows = st
                .query_map(rusqlite::params![o, p, limit], |r| {
                    Ok(OpenTask {
                        id: r.get(0)?,
                        title: r.get(1)?,
                        task_type: r.get(2)?,
                        complexity: r.get(3)?,
                        status: r.get(4)?,
                        project: r.get(5)?,
                        cost_nanos: r.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Test-only: a workflow holding one task with one stage of the given cost,
    /// so the handoff can be tested before the task tool exists on this branch.
    #[cfg(test)]
    pub async fn insert_test_task(
        &self,
        org: &str,
        id: &str,
        title: &str,
        project: &str,
        status: &str,
        cost_nanos: i64,
    ) -> Result<()> {
        let (o, i, t, p, s) = (
            org.to_string(),
            id.to_string(),
            title.to_string(),
            project.to_string(),
            status.to_string(),
        );
        self.write(move |c| {
            let now = "2026-01-01T00:00:00.000Z";
            let wf = format!("wf-{i}");
            c.execute(
                "INSERT INTO workflows (org_id, id, status, created_at, updated_at) VALUES (?1, ?2, 'open', ?3, ?3)",
                (&o, &wf, now),
            )?;
            c.execute(
                "INSERT INTO tasks (org_id, id, workflow_id, title, project, task_type, complexity, status, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'fix', 'simple', ?6, ?7, ?7)",
                (&o, &i, &wf, &t, &p, &s, now),
            )?;
            c.execute(
                "INSERT INTO stages (org_id, id, workflow_id, task_id, name, cost_nanos, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'impl', ?5, ?6)",
                (&o, format!("st-{i}"), &wf, &i, cost_nanos, now),
            )?;
            Ok(())
        })
        .await
    }
}

impl Store {
    /// Ids of the org's checkpoints starting with `prefix`, newest first (for completions).
    pub async fn checkpoint_ids_with_prefix(
        &self,
        org: &str,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>> {
        let (o, p) = (org.to_string(), prefix.to_uppercase());
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id FROM checkpoints WHERE org_id = ?1 AND id >= ?2 AND id < ?2 || '~'
                 ORDER BY last_saved_at DESC, id DESC LIMIT ?3",
            )?;
            let rows = st
                .query_map(rusqlite::params![o, p, limit], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Distinct agent or project names used in the org's checkpoints, starting with
    /// `prefix` (for completions of the `resume` prompt).
    pub async fn checkpoint_scopes(
        &self,
        org: &str,
        projects: bool,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>> {
        let (o, p) = (org.to_string(), prefix.to_string());
        let col = if projects { "project" } else { "agent" };
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT DISTINCT {col} FROM checkpoints WHERE org_id = ?1 AND {col} IS NOT NULL
                   AND substr({col}, 1, length(?2)) = ?2 ORDER BY {col} LIMIT ?3"
            ))?;
            let rows = st
                .query_map(rusqlite::params![o, p, limit], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_query_quotes_every_term() {
        assert_eq!(fts_query("  "), None);
        assert_eq!(fts_query("a b"), Some("\"a\" \"b\"".into()));
        assert_eq!(
            fts_query("say \"hi\" OR -x* col:y NEAR("),
            Some("\"say\" \"\"\"hi\"\"\" \"OR\" \"-x*\" \"col:y\" \"NEAR(\"".into())
        );
    }
}
