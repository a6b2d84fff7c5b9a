//! `checkpoint`: session continuity for agents. save/load/get/list/diff
//! checkpoints (objective, blockers, recent actions, refs, free JSON state;
//! identical content in an org is one checkpoint), decide (a decision with its
//! rationale), ingest (conversation transcripts, redacted then chunked), search
//! (full text over transcripts and decisions) and handoff (vault-mcp's Recovery
//! Checkpoint document). This file parses, checks limits, calls the domain and
//! the store, and shapes the result; the rules live in `crate::checkpoints`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    ActionSpec, CallCtx, ToolOutput, ToolSpec, check_len, decode_cursor, encode_cursor, need,
    parse, read, schema_of,
};
use crate::app::Change;
use crate::checkpoints::{
    self, Checkpoint, CheckpointDiff, Content, Decision, Scope, SearchHit, chunk,
};
use crate::error::{Error, Result};
use crate::store::{CheckpointSave, DecisionInsert, TextSearch, TranscriptChunk, page_limit};

pub static SPEC: ToolSpec = ToolSpec {
    action_field: true,
    name: "checkpoint",
    description: "Session continuity. save: objective, blockers, recent_actions, refs, state (same content = same checkpoint). load: latest by agent/project. get, list, diff (default: vs previous). decide: decision + rationale. ingest: conversation messages (secrets redacted). search: transcripts + decisions. handoff: Recovery Checkpoint Markdown to resume from.",
    actions: &ACTIONS,
    input: schema_of::<Params>,
    output: schema_of::<Output>,
    destructive: false,
    idempotent: false,
};

static ACTIONS: [ActionSpec; 9] = [
    super::write("save", &[]),
    read("load", &["latest"]),
    read("get", &[]),
    read("list", &[]),
    read("diff", &[]),
    super::write("decide", &[]),
    super::write("ingest", &[]),
    read("search", &[]),
    read("handoff", &[]),
];

const MAX_OBJECTIVE: usize = 4000;
const MAX_ITEMS: usize = 100;
const MAX_ITEM_CHARS: usize = 1000;
const MAX_STATE_BYTES: usize = 64 * 1024;
const MAX_DECISION: usize = 2000;
const MAX_RATIONALE: usize = 8000;
const MAX_QUERY: usize = 500;
const MAX_MESSAGES: usize = 2000;
const MAX_ID: usize = 200;
const PROGRESS_EVERY: usize = 50;
const HANDOFF_TASKS: u32 = 25;
const HANDOFF_DECISIONS: u32 = 10;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[allow(dead_code)]
    action: String,
    /// get, diff (default: latest).
    checkpoint_id: Option<String>,
    /// diff against (default: the previous one).
    other_id: Option<String>,
    agent: Option<String>,
    project: Option<String>,
    objective: Option<String>,
    blockers: Option<Vec<String>>,
    recent_actions: Option<Vec<String>>,
    /// Git refs, task ids, URLs.
    refs: Option<Vec<String>>,
    /// Free JSON object (≤ 64 KiB).
    state: Option<Map<String, Value>>,
    decision: Option<String>,
    rationale: Option<String>,
    task_id: Option<String>,
    workflow_id: Option<String>,
    conversation_id: Option<String>,
    /// vault-mcp name of conversation_id.
    conversation_uuid: Option<String>,
    title: Option<String>,
    /// YYYY-MM-DD.
    session_date: Option<String>,
    /// ingest: the conversation, in order.
    messages: Option<Vec<Message>>,
    query: Option<String>,
    /// search in (default all).
    kind: Option<Kind>,
    /// Default 20, max 100.
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct Message {
    role: String,
    content: String,
    /// Default: position in messages.
    turn_number: Option<u32>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Transcripts,
    Decisions,
    All,
}

#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct Output {
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<Checkpoint>,
    /// save: false when this content was already saved.
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoints: Option<Vec<Checkpoint>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<CheckpointDiff>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ingested: Option<Ingested>,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<Vec<SearchHit>>,
    /// Recovery Checkpoint Markdown.
    #[serde(skip_serializing_if = "Option::is_none")]
    handoff: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
struct Ingested {
    inserted: u64,
    /// Chunks already stored.
    skipped: u64,
    chunks: u64,
    /// Secrets replaced.
    redacted: u64,
}

pub async fn call(ctx: &CallCtx, action: &str, args: Value) -> Result<ToolOutput> {
    let p: Params = parse(args)?;
    check_common(&p)?;
    match action {
        "save" => save(ctx, p).await,
        "load" => load(ctx, p).await,
        "get" => get(ctx, p).await,
        "list" => list(ctx, p).await,
        "diff" => diff(ctx, p).await,
        "decide" => decide(ctx, p).await,
        "ingest" => ingest(ctx, p).await,
        "search" => search(ctx, p).await,
        _ => handoff(ctx, p).await,
    }
}

fn check_list(field: &str, v: &Option<Vec<String>>) -> Result<()> {
    let Some(items) = v else { return Ok(()) };
    if items.len() > MAX_ITEMS {
        return Err(Error::invalid(
            field,
            format!("has more than {MAX_ITEMS} items"),
        ));
    }
    for (i, s) in items.iter().enumerate() {
        if s.chars().count() > MAX_ITEM_CHARS {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                format!("is longer than {MAX_ITEM_CHARS} characters"),
            ));
        }
    }
    Ok(())
}

/// Limits that hold whatever the action.
fn check_common(p: &Params) -> Result<()> {
    for (field, v) in [
        ("checkpoint_id", &p.checkpoint_id),
        ("other_id", &p.other_id),
        ("agent", &p.agent),
        ("project", &p.project),
        ("task_id", &p.task_id),
        ("workflow_id", &p.workflow_id),
        ("conversation_id", &p.conversation_id),
        ("conversation_uuid", &p.conversation_uuid),
        ("cursor", &p.cursor),
    ] {
        check_len(field, v, MAX_ID)?;
    }
    check_len("objective", &p.objective, MAX_OBJECTIVE)?;
    check_len("decision", &p.decision, MAX_DECISION)?;
    check_len("rationale", &p.rationale, MAX_RATIONALE)?;
    check_len("query", &p.query, MAX_QUERY)?;
    check_len("title", &p.title, MAX_ITEM_CHARS)?;
    check_list("blockers", &p.blockers)?;
    check_list("recent_actions", &p.recent_actions)?;
    check_list("refs", &p.refs)?;
    if let Some(s) = &p.state
        && serde_json::to_string(s)?.len() > MAX_STATE_BYTES
    {
        return Err(Error::invalid(
            "state",
            format!("is larger than {MAX_STATE_BYTES} bytes serialized"),
        ));
    }
    if let Some(d) = &p.session_date
        && (d.len() != 10 || chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err())
    {
        return Err(Error::invalid("session_date", "must be a date YYYY-MM-DD"));
    }
    if let Some(m) = &p.messages
        && m.len() > MAX_MESSAGES
    {
        return Err(Error::invalid(
            "messages",
            format!("has more than {MAX_MESSAGES} items"),
        ));
    }
    Ok(())
}

/// Empty strings in agent/project mean "not given".
fn key(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn clip(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= max {
        return one;
    }
    let mut out: String = one.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn scope_text(agent: Option<&str>, project: Option<&str>) -> String {
    match (agent, project) {
        (None, None) => "in this org".into(),
        (Some(a), None) => format!("for agent {a}"),
        (None, Some(p)) => format!("for project {p}"),
        (Some(a), Some(p)) => format!("for agent {a}, project {p}"),
    }
}

/// A checkpoint without its bulky parts, for lists and save receipts.
fn summary(mut c: Checkpoint) -> Checkpoint {
    c.content = None;
    c.state = None;
    c
}

async fn save(ctx: &CallCtx, p: Params) -> Result<ToolOutput> {
    let content = Content {
        agent: p.agent,
        project: p.project,
        objective: p.objective,
        blockers: p.blockers.unwrap_or_default(),
        recent_actions: p.recent_actions.unwrap_or_default(),
        refs: p.refs.unwrap_or_default(),
        state: p.state,
    }
    .normalized();
    if content.is_empty() {
        return Err(Error::invalid(
            "objective",
            "save needs at least one of objective, blockers, recent_actions, refs or state",
        ));
    }
    let app = &ctx.app;
    let org = &ctx.principal.org;
    let save = CheckpointSave {
        id: app.ids.next(),
        hash: content.hash(),
        markdown: checkpoints::render_content(&content),
        content,
        created_by: ctx.principal.key_id.clone(),
        now: app.clock.now_text(),
    };
    let (cp, created) = app.store.save_checkpoint(org, save).await?;
    app.publish(Change::Checkpoint {
        org: org.clone(),
        id: cp.id.clone(),
    });
    let text = if created {
        format!("saved checkpoint {}", cp.id)
    } else {
        format!(
            "checkpoint {} already had this content; marked as the latest save",
            cp.id
        )
    };
    ToolOutput::new(
        Output {
            checkpoint: Some(summary(cp)),
            created: Some(created),
            ..Default::default()
        },
        text,
    )
}

async fn load(ctx: &CallCtx, p: Params) -> Result<ToolOutput> {
    let (agent, project) = (key(&p.agent), key(&p.project));
    let latest = ctx
        .app
        .store
        .latest_checkpoint(&ctx.principal.org, agent, project)
        .await?;
    let text = match &latest {
        Some(c) => c.content.clone().unwrap_or_default(),
        None => format!("no checkpoint saved yet {}", scope_text(agent, project)),
    };
    ToolOutput::new(
        Output {
            checkpoint: latest,
            ..Default::default()
        },
        text,
    )
}

async fn get(ctx: &CallCtx, p: Params) -> Result<ToolOutput> {
    let id = need(&p.checkpoint_id, "checkpoint_id", "get")?;
    let cp = ctx.app.store.get_checkpoint(&ctx.principal.org, id).await?;
    let text = cp.content.clone().unwrap_or_default();
    ToolOutput::new(
        Output {
            checkpoint: Some(cp),
            ..Default::default()
        },
        text,
    )
}

async fn list(ctx: &CallCtx, p: Params) -> Result<ToolOutput> {
    let limit = page_limit(p.limit, 20, 100);
    let after = p.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut rows = ctx
        .app
        .store
        .list_checkpoints(
            &ctx.principal.org,
            key(&p.agent),
            key(&p.project),
            after,
            limit + 1,
        )
        .await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|c| encode_cursor(&c.last_saved_at, &c.id))
    } else {
        None
    };
    let mut text = format!("{} checkpoints", rows.len());
    for c in &rows {
        text.push_str(&format!(
            "\n{} {} {}: {}",
            c.id,
            c.last_saved_at,
            [c.agent.as_deref(), c.project.as_deref()]
                .iter()
                .flatten()
                .copied()
                .collect::<Vec<_>>()
                .join("/"),
            clip(c.objective.as_deref().unwrap_or("-"), 80)
        ));
    }
    if next_cursor.is_some() {
        text.push_str("\nmore: pass next_cursor as cursor");
    }
    ToolOutput::new(
        Output {
            checkpoints: Some(rows.into_iter().map(summary).collect()),
            next_cursor,
            ..Default::default()
        },
        text,
    )
}

async fn diff(ctx: &CallCtx, p: Params) -> Result<ToolOutput> {
    let store = &ctx.app.store;
    let org = &ctx.principal.org;
    let to = match &p.checkpoint_id {
        Some(id) => store.get_checkpoint(org, id).await?,
        None => store
            .latest_checkpoint(org, key(&p.agent), key(&p.project))
            .await?
            .ok_or_else(|| {
                Error::not_found(
                    "checkpoint",
                    format!("latest {}", scope_text(key(&p.agent), key(&p.project))),
                )
            })?,
    };
    let from = match &p.other_id {
        Some(id) => store.get_checkpoint(org, id).await?,
        None => store.previous_checkpoint(org, &to).await?.ok_or_else(|| {
            Error::invalid(
                "other_id",
                format!(
                    "checkpoint {} has no earlier checkpoint with the same agent and project; pass other_id",
                    to.id
                ),
            )
        })?,
    };
    let d = checkpoints::diff(&from, &to);
    let text = diff_text(&d);
    ToolOutput::new(
        Output {
            diff: Some(d),
            ..Default::default()
        },
        text,
    )
}

fn diff_text(d: &CheckpointDiff) -> String {
    if d.same {
        return format!("{} → {}: identical content", d.from, d.to);
    }
    let mut parts = Vec::new();
    for (name, c) in [
        ("agent", &d.agent),
        ("project", &d.project),
        ("objective", &d.objective),
    ] {
        if c.is_some() {
            parts.push(format!("{name} changed"));
        }
    }
    for (name, c) in [
        ("blockers", &d.blockers),
        ("recent_actions", &d.recent_actions),
        ("refs", &d.refs),
    ] {
        if let Some(c) = c {
            parts.push(format!("{name} +{} -{}", c.added.len(), c.removed.len()));
        }
    }
    if !d.state.is_empty() {
        parts.push(format!("state: {} paths changed", d.state.len()));
    }
    format!("{} → {}: {}", d.from, d.to, parts.join("; "))
}

async fn decide(ctx: &CallCtx, p: Params) -> Result<ToolOutput> {
    let decision = need(&p.decision, "decision", "decide")?.trim().to_string();
    if decision.is_empty() {
        return Err(Error::invalid("decision", "is empty"));
    }
    let app = &ctx.app;
    let d = app
        .store
        .insert_decision(
            &ctx.principal.org,
            DecisionInsert {
                id: app.ids.next(),
                decision,
                rationale: p
                    .rationale
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty()),
                task_id: p.task_id,
                workflow_id: p.workflow_id,
                agent: key(&p.agent).map(str::to_string),
                project: key(&p.project).map(str::to_string),
                created_by: ctx.principal.key_id.clone(),
                created_at: app.clock.now_text(),
            },
        )
        .await?;
    let text = format!("recorded decision {}: {}", d.id, clip(&d.decision, 80));
    ToolOutput::new(
        Output {
            decision: Some(d),
            ..Default::default()
        },
        text,
    )
}

fn cancelled() -> Error {
    Error::Conflict("the request was cancelled; nothing was stored".into())
}

async fn ingest(ctx: &CallCtx, p: Params) -> Result<ToolOutput> {
    let conversation = match (&p.conversation_id, &p.conversation_uuid) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::invalid(
                "conversation_uuid",
                "differs from conversation_id; pass one of them",
            ));
        }
        (Some(a), _) | (None, Some(a)) => a.trim().to_string(),
        (None, None) => return Err(Error::missing("conversation_id", "ingest")),
    };
    if conversation.is_empty() {
        return Err(Error::invalid("conversation_id", "is empty"));
    }
    let messages = need(&p.messages, "messages", "ingest")?;
    let app = &ctx.app;
    let now = app.clock.now_text();
    let session_date = p
        .session_date
        .clone()
        .unwrap_or_else(|| now.chars().take(10).collect());
    let mut redacted = 0u64;
    let title = p.title.as_deref().map(|t| {
        let (t, n) = app.redactor.redact(t);
        redacted += n as u64;
        t
    });
    let total = messages.len();
    let max = app.config.checkpoints.chunk_chars;
    let mut rows = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        if total > PROGRESS_EVERY && i > 0 && i.is_multiple_of(PROGRESS_EVERY) {
            ctx.report(i as f64, Some(total as f64), None);
            tokio::task::yield_now().await;
            if ctx.ct.is_cancelled() {
                return Err(cancelled());
            }
        }
        let role = m.role.trim();
        if role.is_empty() || role.chars().count() > 50 {
            return Err(Error::invalid(
                format!("messages[{i}].role"),
                "must be 1 to 50 characters",
            ));
        }
        let (text, n) = app.redactor.redact(&m.content);
        redacted += n as u64;
        let turn = m.turn_number.map(i64::from).unwrap_or(i as i64);
        for (ci, piece) in chunk(&text, max).into_iter().enumerate() {
            rows.push(TranscriptChunk {
                id: app.ids.next(),
                conversation_id: conversation.clone(),
                title: title.clone(),
                session_date: Some(session_date.clone()),
                role: role.to_string(),
                content: piece,
                turn_number: turn,
                chunk_index: ci as i64,
                created_by: ctx.principal.key_id.clone(),
                created_at: now.clone(),
            });
        }
    }
    if ctx.ct.is_cancelled() {
        return Err(cancelled());
    }
    let chunks = rows.len() as u64;
    let (inserted, skipped) = app
        .store
        .ingest_transcript(&ctx.principal.org, rows)
        .await?;
    if total > PROGRESS_EVERY {
        ctx.report(total as f64, Some(total as f64), None);
    }
    let text = format!(
        "ingested conversation {conversation}: {total} messages, {chunks} chunks, {inserted} new, {skipped} already stored, {redacted} secrets redacted"
    );
    ToolOutput::new(
        Output {
            ingested: Some(Ingested {
                inserted,
                skipped,
                chunks,
                redacted,
            }),
            ..Default::default()
        },
        text,
    )
}

async fn search(ctx: &CallCtx, p: Params) -> Result<ToolOutput> {
    let query = need(&p.query, "query", "search")?;
    let kind = p.kind.unwrap_or(Kind::All);
    let q = TextSearch {
        query: query.clone(),
        transcripts: matches!(kind, Kind::Transcripts | Kind::All),
        decisions: matches!(kind, Kind::Decisions | Kind::All),
        session_date: p.session_date,
        limit: page_limit(p.limit, 20, 100),
    };
    let hits = ctx
        .app
        .store
        .search_text(&ctx.principal.org, q, Some(ctx.ct.clone()))
        .await?;
    let mut text = format!("{} results for {:?}", hits.len(), clip(query, 60));
    for h in &hits {
        text.push_str(&format!(
            "\n[{}] {}: {}",
            h.kind,
            h.id,
            clip(&h.snippet, 160)
        ));
    }
    ToolOutput::new(
        Output {
            results: Some(hits),
            ..Default::default()
        },
        text,
    )
}

async fn handoff(ctx: &CallCtx, p: Params) -> Result<ToolOutput> {
    let doc =
        handoff_document(&ctx.app, &ctx.principal.org, key(&p.agent), key(&p.project)).await?;
    ToolOutput::new(
        Output {
            handoff: Some(doc.clone()),
            ..Default::default()
        },
        doc,
    )
}

/// The Recovery Checkpoint document for an org, optionally narrowed to an agent
/// and/or project. Also behind the `resume` prompt.
pub async fn handoff_document(
    app: &crate::app::App,
    org: &str,
    agent: Option<&str>,
    project: Option<&str>,
) -> Result<String> {
    let store = &app.store;
    let (latest, tasks, decisions) = tokio::try_join!(
        store.latest_checkpoint(org, agent, project),
        store.open_tasks(org, project, HANDOFF_TASKS),
        store.recent_decisions(org, agent, project, HANDOFF_DECISIONS),
    )?;
    Ok(checkpoints::handoff(
        &app.clock.now_text(),
        Scope { agent, project },
        latest.as_ref(),
        &tasks,
        &decisions,
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use crate::app::App;
    use crate::auth::{Principal, Role};
    use crate::tools::{call_as, test_app};

    async fn setup() -> (Arc<App>, crate::tools::tempfile_dir::TempDir) {
        let (app, dir) = test_app();
        for org in ["acme", "other"] {
            app.store
                .ensure_org(org, "2026-01-01T00:00:00.000Z")
                .await
                .unwrap();
        }
        (app, dir)
    }

    fn op(org: &str) -> Principal {
        Principal::local(org, Role::Operator)
    }

    async fn ok(app: &Arc<App>, who: &Principal, args: Value) -> Value {
        match call_as(app, who, "checkpoint", args.clone()).await {
            Ok(out) => out.structured,
            Err(e) => panic!("{args}: {e}"),
        }
    }

    async fn err(app: &Arc<App>, who: &Principal, args: Value) -> String {
        match call_as(app, who, "checkpoint", args.clone()).await {
            Ok(out) => panic!("{args} should fail, got {}", out.structured),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn save_is_content_addressed_and_latest_follows_resave() {
        let (app, _dir) = setup().await;
        let me = op("acme");
        let a = json!({"action": "save", "agent": "claude", "project": "vl",
            "objective": "ship it", "blockers": ["ci red"], "state": {"step": 1}});
        let first = ok(&app, &me, a.clone()).await;
        assert_eq!(first["created"], true);
        let id_a = first["checkpoint"]["id"].as_str().unwrap().to_string();
        assert_eq!(first["checkpoint"]["hash"].as_str().unwrap().len(), 64);

        let mut a2 = a.clone();
        a2["objective"] = json!("  ship it \n");
        let again = ok(&app, &me, a2).await;
        assert_eq!(again["created"], false);
        assert_eq!(again["checkpoint"]["id"], id_a.as_str());

        let b = ok(
            &app,
            &me,
            json!({"action": "save", "agent": "claude", "project": "vl", "objective": "next"}),
        )
        .await;
        let id_b = b["checkpoint"]["id"].as_str().unwrap().to_string();
        let latest = ok(&app, &me, json!({"action": "latest", "agent": "claude"})).await;
        assert_eq!(latest["checkpoint"]["id"], id_b.as_str());

        // Re-saving the old content makes it the latest again.
        ok(&app, &me, a).await;
        let latest = ok(&app, &me, json!({"action": "load", "project": "vl"})).await;
        assert_eq!(latest["checkpoint"]["id"], id_a.as_str());
        assert_eq!(latest["checkpoint"]["state"]["step"], 1);
        assert!(
            latest["checkpoint"]["content"]
                .as_str()
                .unwrap()
                .contains("## Objective\nship it")
        );
        let out = call_as(
            &app,
            &me,
            "checkpoint",
            json!({"action": "get", "checkpoint_id": id_b}),
        )
        .await
        .unwrap();
        assert!(out.text.contains("next"), "{}", out.text);

        let err = err(&app, &me, json!({"action": "save", "objective": "  "})).await;
        assert!(err.contains("at least one of"), "{err}");
    }

    #[tokio::test]
    async fn load_by_agent_and_by_project_and_list_pages() {
        let (app, _dir) = setup().await;
        let me = op("acme");
        for (agent, project, obj) in [
            ("claude", "p1", "c1"),
            ("codex", "p1", "x1"),
            ("claude", "p2", "c2"),
        ] {
            ok(
                &app,
                &me,
                json!({"action": "save", "agent": agent, "project": project, "objective": obj}),
            )
            .await;
        }
        let q = |args: Value| {
            let app = app.clone();
            let me = me.clone();
            async move { ok(&app, &me, args).await["checkpoint"]["objective"].clone() }
        };
        assert_eq!(q(json!({"action": "load", "agent": "claude"})).await, "c2");
        assert_eq!(q(json!({"action": "load", "agent": "codex"})).await, "x1");
        assert_eq!(q(json!({"action": "load", "project": "p1"})).await, "x1");
        assert_eq!(
            q(json!({"action": "load", "agent": "claude", "project": "p1"})).await,
            "c1"
        );
        assert_eq!(q(json!({"action": "load"})).await, "c2");
        let none = call_as(
            &app,
            &me,
            "checkpoint",
            json!({"action": "load", "agent": "gemini"}),
        )
        .await
        .unwrap();
        assert!(none.structured.get("checkpoint").is_none());
        assert!(none.text.contains("no checkpoint"), "{}", none.text);

        let page1 = ok(&app, &me, json!({"action": "list", "limit": 2})).await;
        let items = page1["checkpoints"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert!(items[0].get("content").is_none(), "lists omit content");
        let cursor = page1["next_cursor"].as_str().unwrap();
        let page2 = ok(
            &app,
            &me,
            json!({"action": "list", "limit": 2, "cursor": cursor}),
        )
        .await;
        let items2 = page2["checkpoints"].as_array().unwrap();
        assert_eq!(items2.len(), 1);
        assert_eq!(items2[0]["objective"], "c1");
        assert!(page2.get("next_cursor").is_none());
        let e = err(&app, &me, json!({"action": "list", "cursor": "!!"})).await;
        assert!(e.contains("cursor"), "{e}");
        let filtered = ok(&app, &me, json!({"action": "list", "agent": "claude"})).await;
        assert_eq!(filtered["checkpoints"].as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn diff_against_previous_and_explicit() {
        let (app, _dir) = setup().await;
        let me = op("acme");
        let a = ok(
            &app,
            &me,
            json!({"action": "save", "agent": "claude", "objective": "one",
                "blockers": ["b1"], "state": {"n": 1, "keep": true}}),
        )
        .await;
        let b = ok(
            &app,
            &me,
            json!({"action": "save", "agent": "claude", "objective": "two",
                "blockers": ["b2"], "state": {"n": 2, "keep": true}}),
        )
        .await;
        let (ia, ib) = (
            a["checkpoint"]["id"].as_str().unwrap(),
            b["checkpoint"]["id"].as_str().unwrap(),
        );
        let d = ok(&app, &me, json!({"action": "diff", "agent": "claude"})).await["diff"].clone();
        assert_eq!(d["from"], ia);
        assert_eq!(d["to"], ib);
        assert_eq!(d["objective"], json!({"old": "one", "new": "two"}));
        assert_eq!(d["blockers"], json!({"added": ["b2"], "removed": ["b1"]}));
        assert_eq!(d["state"], json!([{"path": "/n", "old": 1, "new": 2}]));
        let d = ok(
            &app,
            &me,
            json!({"action": "diff", "checkpoint_id": ia, "other_id": ib}),
        )
        .await["diff"]
            .clone();
        assert_eq!(d["objective"], json!({"old": "two", "new": "one"}));
        let e = err(&app, &me, json!({"action": "diff", "checkpoint_id": ia})).await;
        assert!(e.contains("other_id"), "{e}");
    }

    #[tokio::test]
    async fn decide_then_search_and_hostile_queries() {
        let (app, _dir) = setup().await;
        let me = op("acme");
        let d = ok(
            &app,
            &me,
            json!({"action": "decide", "decision": "Use SQLite FTS5",
                "rationale": "one file, bm25 ranking built in", "task_id": "T1"}),
        )
        .await;
        assert_eq!(d["decision"]["task_id"], "T1");
        let r = ok(
            &app,
            &me,
            json!({"action": "search", "query": "bm25 ranking"}),
        )
        .await;
        let hits = r["results"].as_array().unwrap();
        assert_eq!(hits.len(), 1, "{r}");
        assert_eq!(hits[0]["kind"], "decision");
        assert!(hits[0]["snippet"].as_str().unwrap().contains("**bm25**"));
        let none = ok(
            &app,
            &me,
            json!({"action": "search", "query": "bm25", "kind": "transcripts"}),
        )
        .await;
        assert_eq!(none["results"], json!([]));
        for q in [
            "\"unbalanced",
            "a OR",
            "NOT",
            "-x",
            "col:val",
            "pre*",
            "NEAR(a b)",
            "(",
            "\"",
            "*",
            "AND AND",
            "^start",
            "{a b}",
        ] {
            ok(&app, &me, json!({"action": "search", "query": q})).await;
        }
        let e = err(&app, &me, json!({"action": "search", "query": "   "})).await;
        assert!(e.contains("query"), "{e}");
        let e = err(
            &app,
            &me,
            json!({"action": "search", "query": "x", "session_date": "2026-13-01"}),
        )
        .await;
        assert!(e.contains("session_date"), "{e}");
    }

    #[tokio::test]
    async fn ingest_redacts_chunks_and_is_idempotent() {
        let (app, _dir) = setup().await;
        let me = op("acme");
        let secret = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";
        let long = "The quick brown fox jumps over the lazy dog. ".repeat(200);
        let args = json!({"action": "ingest", "conversation_uuid": "conv-1",
        "title": "Setup session", "session_date": "2026-03-04",
        "messages": [
            {"role": "user", "content": format!("my key is {secret} please store it")},
            {"role": "assistant", "content": "Noted, the zebra protocol is configured."},
            {"role": "user", "content": long},
        ]});
        let out = ok(&app, &me, args.clone()).await;
        let ing = &out["ingested"];
        assert_eq!(ing["redacted"], 1);
        let chunks = ing["chunks"].as_u64().unwrap();
        assert!(chunks >= 4, "9000 chars at 4000 per chunk: {ing}");
        assert_eq!(ing["inserted"], chunks);
        assert_eq!(ing["skipped"], 0);

        let again = ok(&app, &me, args).await;
        assert_eq!(again["ingested"]["inserted"], 0);
        assert_eq!(again["ingested"]["skipped"], chunks);

        let r = ok(&app, &me, json!({"action": "search", "query": "zebra"})).await;
        let hits = r["results"].as_array().unwrap();
        assert_eq!(hits.len(), 1, "{r}");
        assert_eq!(hits[0]["conversation_id"], "conv-1");
        assert_eq!(hits[0]["session_date"], "2026-03-04");
        let dated = ok(
            &app,
            &me,
            json!({"action": "search", "query": "zebra", "session_date": "2026-03-05"}),
        )
        .await;
        assert_eq!(dated["results"], json!([]));
        for q in [secret, "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"] {
            let r = ok(&app, &me, json!({"action": "search", "query": q})).await;
            assert_eq!(r["results"], json!([]), "secret found by {q}");
        }
        let r = ok(&app, &me, json!({"action": "search", "query": "REDACTED"})).await;
        assert_eq!(r["results"].as_array().unwrap().len(), 1);

        let e = err(
            &app,
            &me,
            json!({"action": "ingest", "conversation_id": "a", "conversation_uuid": "b", "messages": []}),
        )
        .await;
        assert!(e.contains("conversation_uuid"), "{e}");
        let e = err(&app, &me, json!({"action": "ingest", "messages": []})).await;
        assert!(e.contains("conversation_id"), "{e}");
    }

    #[tokio::test]
    async fn handoff_has_sections_tasks_and_decisions() {
        let (app, _dir) = setup().await;
        let me = op("acme");
        app.store
            .insert_test_task(
                "acme",
                "TASKOPEN1",
                "Fix login",
                "vl",
                "open",
                2_500_000_000,
            )
            .await
            .unwrap();
        app.store
            .insert_test_task("acme", "TASKDONE1", "Old work", "vl", "done", 0)
            .await
            .unwrap();
        app.store
            .insert_test_task("acme", "TASKELSE1", "Elsewhere", "other-proj", "open", 0)
            .await
            .unwrap();
        ok(
            &app,
            &me,
            json!({"action": "save", "project": "vl", "objective": "Finish auth",
                "blockers": ["token expiry unclear"], "recent_actions": ["added tests"]}),
        )
        .await;
        ok(
            &app,
            &me,
            json!({"action": "decide", "project": "vl", "decision": "JWT off", "rationale": "keys suffice"}),
        )
        .await;
        let out = call_as(
            &app,
            &me,
            "checkpoint",
            json!({"action": "handoff", "project": "vl"}),
        )
        .await
        .unwrap();
        let doc = out.structured["handoff"].as_str().unwrap();
        assert_eq!(out.text, doc);
        for part in [
            "# Recovery Checkpoint\nGenerated: ",
            "## Objective\nFinish auth",
            "## Open Tasks\n```mermaid\nstateDiagram-v2\n  TASKOPEN1 : 📋 fix (simple) $2.5000 Fix login\n```",
            "## Blockers\n- ⛔ token expiry unclear",
            "## Recent Actions\n- ✅ added tests",
            "## Recent Decisions\n- **JWT off**: keys suffice",
        ] {
            assert!(doc.contains(part), "missing {part:?} in\n{doc}");
        }
        assert!(
            !doc.contains("TASKDONE1") && !doc.contains("TASKELSE1"),
            "{doc}"
        );
    }

    #[tokio::test]
    async fn viewer_cannot_write_and_schema_is_small() {
        let (app, _dir) = setup().await;
        let viewer = Principal::local("acme", Role::Viewer);
        for action in ["save", "decide", "ingest"] {
            let e = err(&app, &viewer, json!({"action": action, "objective": "x"})).await;
            assert!(e.contains("needs role operator"), "{e}");
        }
        ok(&app, &viewer, json!({"action": "handoff"})).await;
        let e = err(&app, &viewer, json!({"action": "save", "bogus": 1})).await;
        assert!(e.contains("bogus"), "{e}");

        let listed = app
            .registry
            .list()
            .find(|t| t.name == "checkpoint")
            .unwrap();
        let size = serde_json::to_string(&listed.input_schema).unwrap().len()
            + serde_json::to_string(&listed.output_schema).unwrap().len();
        // This tool's share of the tools/list budget (all tools < 24 KiB).
        assert!(size < 6 * 1024, "checkpoint schemas are {size} bytes");
    }

    #[tokio::test]
    async fn long_ingest_reports_progress_and_stops_when_cancelled() {
        use std::sync::Mutex;

        use tokio_util::sync::CancellationToken;

        use crate::tools::CallCtx;

        let (app, _dir) = setup().await;
        let messages: Vec<Value> = (0..120)
            .map(|i| json!({"role": "user", "content": format!("message {i}")}))
            .collect();
        let args = json!({"action": "ingest", "conversation_id": "big", "messages": messages});
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let ctx = CallCtx {
            app: app.clone(),
            principal: op("acme"),
            ct: CancellationToken::new(),
            progress: Some(Arc::new(move |done, total, _| {
                sink.lock().unwrap().push((done, total));
            })),
            person: None,
        };
        let cancelled = CallCtx {
            ct: CancellationToken::new(),
            progress: None,
            person: None,
            app: app.clone(),
            principal: op("acme"),
        };
        cancelled.ct.cancel();
        let e = super::call(&cancelled, "ingest", args.clone())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cancelled"), "{e}");
        let r = ok(
            &app,
            &op("acme"),
            json!({"action": "search", "query": "message"}),
        )
        .await;
        assert_eq!(r["results"], json!([]), "nothing half-written");

        let out = super::call(&ctx, "ingest", args).await.unwrap();
        assert_eq!(out.structured["ingested"]["inserted"], 120);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                (50.0, Some(120.0)),
                (100.0, Some(120.0)),
                (120.0, Some(120.0))
            ]
        );
    }

    #[tokio::test]
    async fn other_orgs_see_nothing() {
        let (app, _dir) = setup().await;
        let a = op("acme");
        let b = op("other");
        let s1 = ok(
            &app,
            &a,
            json!({"action": "save", "agent": "claude", "objective": "secret plan"}),
        )
        .await;
        let s2 = ok(
            &app,
            &a,
            json!({"action": "save", "agent": "claude", "objective": "plan two"}),
        )
        .await;
        let (i1, i2) = (
            s1["checkpoint"]["id"].as_str().unwrap(),
            s2["checkpoint"]["id"].as_str().unwrap(),
        );
        ok(
            &app,
            &a,
            json!({"action": "decide", "decision": "classified choice"}),
        )
        .await;
        ok(
            &app,
            &a,
            json!({"action": "ingest", "conversation_id": "c", "messages": [{"role": "user", "content": "classified words"}]}),
        )
        .await;
        app.store
            .insert_test_task("acme", "ACMETASK", "Acme task", "vl", "open", 0)
            .await
            .unwrap();

        let e = err(&app, &b, json!({"action": "get", "checkpoint_id": i1})).await;
        assert!(e.contains("checkpoint") && e.contains("not found"), "{e}");
        let e = err(&app, &b, json!({"action": "diff", "checkpoint_id": i2})).await;
        assert!(e.contains("not found"), "{e}");
        let e = err(
            &app,
            &b,
            json!({"action": "diff", "checkpoint_id": i2, "other_id": i1}),
        )
        .await;
        assert!(e.contains("not found"), "{e}");
        let r = ok(&app, &b, json!({"action": "search", "query": "classified"})).await;
        assert_eq!(r["results"], json!([]));
        let l = ok(&app, &b, json!({"action": "load"})).await;
        assert!(l.get("checkpoint").is_none());
        let h = ok(&app, &b, json!({"action": "handoff"})).await;
        let doc = h["handoff"].as_str().unwrap();
        assert!(doc.contains("_No checkpoint saved yet._"), "{doc}");
        assert!(
            !doc.contains("ACMETASK") && !doc.contains("classified"),
            "{doc}"
        );
        // The same content in another org is another checkpoint.
        let s3 = ok(
            &app,
            &b,
            json!({"action": "save", "agent": "claude", "objective": "secret plan"}),
        )
        .await;
        assert_eq!(s3["created"], true);
        assert_ne!(s3["checkpoint"]["id"], i1);
        // Org A still sees its own.
        let r = ok(&app, &a, json!({"action": "search", "query": "classified"})).await;
        assert_eq!(r["results"].as_array().unwrap().len(), 2);
    }
}
