//! Store verbs for tasks. Status changes read the current status and apply the
//! domain's transition check inside the same write job.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Store;
use crate::error::{Error, Result};
use crate::tasks::{self, Task, TaskStatus};
use crate::workflows::WorkflowStatus;

/// A new task.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    pub id: String,
    pub workflow_id: Option<String>,
    pub title: String,
    pub instruction: Option<String>,
    pub project: String,
    pub source: Option<String>,
    pub context: Option<String>,
    pub repo: Option<String>,
    pub paths: Vec<String>,
    pub answer_schema: Option<String>,
    pub task_type: Option<String>,
    pub complexity: Option<String>,
    pub language: Option<String>,
    pub stack: Option<String>,
    pub domain: Option<String>,
    pub status: String,
    pub occurred_at: Option<String>,
    pub created_by: String,
    pub now: String,
}

/// Fields `update` may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TaskUpdate {
    pub title: Option<String>,
    pub instruction: Option<String>,
    pub project: Option<String>,
    pub context: Option<String>,
    pub repo: Option<String>,
    pub paths: Option<Vec<String>>,
    pub answer_schema: Option<String>,
    pub task_type: Option<String>,
    pub complexity: Option<String>,
    pub language: Option<String>,
    pub stack: Option<String>,
    pub domain: Option<String>,
    pub status: Option<TaskStatus>,
    pub answer: Option<String>,
    pub resolved_by: Option<String>,
    pub occurred_at: Option<String>,
}

/// Filters of `task list`.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<String>,
    pub project: Option<String>,
    pub workflow_id: Option<String>,
    pub source: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub after: Option<(String, String)>,
    pub limit: u32,
}

const TASK_SELECT: &str = "SELECT t.id, t.workflow_id, t.title, t.instruction, t.project, t.source, t.context, t.repo,
  t.paths, t.answer_schema, t.task_type, t.complexity, t.language, t.stack, t.domain, t.status, t.answer,
  t.resolved_by, t.occurred_at, t.created_at, t.updated_at, t.completed_at,
  (SELECT count(*) FROM stages s WHERE s.org_id = t.org_id AND s.task_id = t.id),
  (SELECT coalesce(sum(cost_nanos), 0) FROM stages s WHERE s.org_id = t.org_id AND s.task_id = t.id)
FROM tasks t";

fn task_row(r: &Row<'_>) -> rusqlite::Result<Task> {
    let paths: Option<String> = r.get(8)?;
    let schema: Option<String> = r.get(9)?;
    Ok(Task {
        id: r.get(0)?,
        workflow_id: r.get(1)?,
        title: r.get(2)?,
        instruction: r.get(3)?,
        project: r.get(4)?,
        source: r.get(5)?,
        context: r.get(6)?,
        repo: r.get(7)?,
        paths: paths
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or_default(),
        answer_schema: schema.and_then(|s| serde_json::from_str(&s).ok()),
        task_type: r.get(10)?,
        complexity: r.get(11)?,
        language: r.get(12)?,
        stack: r.get(13)?,
        domain: r.get(14)?,
        status: r.get(15)?,
        answer: r.get(16)?,
        resolved_by: r.get(17)?,
        occurred_at: r.get(18)?,
        created_at: r.get(19)?,
        updated_at: r.get(20)?,
        completed_at: r.get(21)?,
        attempts: r.get(22)?,
        cost_nanos: r.get(23)?,
    })
}

pub(super) fn get_task(c: &Connection, org: &str, id: &str) -> Result<Task> {
    c.prepare_cached(&format!("{TASK_SELECT} WHERE t.org_id = ?1 AND t.id = ?2"))?
        .query_row([org, id], task_row)
        .optional()?
        .ok_or_else(|| Error::not_found("task", id))
}

pub(super) fn status_of(c: &Connection, org: &str, id: &str) -> Result<TaskStatus> {
    let s: Option<String> = c
        .prepare_cached("SELECT status FROM tasks WHERE org_id = ?1 AND id = ?2")?
        .query_row([org, id], |r| r.get(0))
        .optional()?;
    let s = s.ok_or_else(|| Error::not_found("task", id))?;
    TaskStatus::parse(&s)
        .ok_or_else(|| Error::Internal(format!("task {id} has unknown status {s}")))
}

fn is_final(s: TaskStatus) -> bool {
    matches!(s, TaskStatus::Done | TaskStatus::Cancelled)
}

impl Store {
    pub async fn task_create(&self, org: &str, t: NewTask) -> Result<Task> {
        let o = org.to_string();
        self.write(move |c| {
            if let Some(w) = &t.workflow_id {
                let status: Option<String> = c
                    .prepare_cached("SELECT status FROM workflows WHERE org_id = ?1 AND id = ?2")?
                    .query_row([&o, w], |r| r.get(0))
                    .optional()?;
                let status = status.ok_or_else(|| Error::not_found("workflow", w))?;
                if WorkflowStatus::parse(&status).is_some_and(WorkflowStatus::is_final) {
                    return Err(Error::Conflict(format!(
                        "cannot add a task to workflow {w}: it is {status}"
                    )));
                }
            }
            let done = matches!(t.status.as_str(), "done" | "cancelled").then(|| t.now.clone());
            c.execute(
                "INSERT INTO tasks (org_id, id, workflow_id, title, instruction, project, source, context, repo, paths,
                   answer_schema, task_type, complexity, language, stack, domain, status, occurred_at, created_by,
                   created_at, updated_at, completed_at)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?20,?21)",
                params![
                    o, t.id, t.workflow_id, t.title, t.instruction, t.project, t.source, t.context, t.repo,
                    serde_json::to_string(&t.paths)?, t.answer_schema, t.task_type, t.complexity, t.language,
                    t.stack, t.domain, t.status, t.occurred_at, t.created_by, t.now, done
                ],
            )?;
            get_task(c, &o, &t.id)
        })
        .await
    }

    pub async fn task_get(&self, org: &str, id: &str) -> Result<Task> {
        let (o, i) = (org.to_string(), id.to_string());
        self.read(move |c| get_task(c, &o, &i)).await
    }

    /// A page of tasks, newest first.
    pub async fn task_list(&self, org: &str, f: TaskFilter) -> Result<Vec<Task>> {
        let o = org.to_string();
        self.read_cancellable(None, move |c| {
            let (ac, ai) = f.after.clone().unzip();
            let mut st = c.prepare_cached(&format!(
                "{TASK_SELECT} WHERE t.org_id = ?1
                   AND (?2 IS NULL OR t.status = ?2) AND (?3 IS NULL OR t.project = ?3)
                   AND (?4 IS NULL OR t.workflow_id = ?4) AND (?5 IS NULL OR t.source = ?5)
                   AND (?6 IS NULL OR t.created_at >= ?6) AND (?7 IS NULL OR t.created_at < ?7)
                   AND (?8 IS NULL OR t.created_at < ?8 OR (t.created_at = ?8 AND t.id < ?9))
                 ORDER BY t.created_at DESC, t.id DESC LIMIT ?10"
            ))?;
            let rows = st
                .query_map(
                    params![
                        o,
                        f.status,
                        f.project,
                        f.workflow_id,
                        f.source,
                        f.since,
                        f.until,
                        ac,
                        ai,
                        f.limit
                    ],
                    task_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Applies an update; a status change must pass the transition check. A task
    /// that is done or cancelled only accepts no-op updates.
    pub async fn task_update(
        &self,
        org: &str,
        id: &str,
        u: TaskUpdate,
        now: String,
    ) -> Result<Task> {
        let (o, i) = (org.to_string(), id.to_string());
        self.write(move |c| {
            let from = status_of(c, &o, &i)?;
            let to = u.status.unwrap_or(from);
            tasks::check_transition(&i, from, to)?;
            let changes_fields = u.title.is_some()
                || u.instruction.is_some()
                || u.project.is_some()
                || u.context.is_some()
                || u.repo.is_some()
                || u.paths.is_some()
                || u.answer_schema.is_some()
                || u.task_type.is_some()
                || u.complexity.is_some()
                || u.language.is_some()
                || u.stack.is_some()
                || u.domain.is_some()
                || u.occurred_at.is_some();
            if is_final(from) && changes_fields {
                return Err(Error::Conflict(format!(
                    "task {i} is {} and can no longer be changed",
                    from.as_str()
                )));
            }
            let completed = (is_final(to) && !is_final(from)).then(|| now.clone());
            let paths = u.paths.as_ref().map(serde_json::to_string).transpose()?;
            c.execute(
                "UPDATE tasks SET title = coalesce(?3, title), instruction = coalesce(?4, instruction),
                   project = coalesce(?5, project), context = coalesce(?6, context), repo = coalesce(?7, repo),
                   paths = coalesce(?8, paths), answer_schema = coalesce(?9, answer_schema),
                   task_type = coalesce(?10, task_type), complexity = coalesce(?11, complexity),
                   language = coalesce(?12, language), stack = coalesce(?13, stack), domain = coalesce(?14, domain),
                   status = ?15, answer = coalesce(?16, answer), resolved_by = coalesce(?17, resolved_by),
                   updated_at = ?18, completed_at = coalesce(?19, completed_at),
                   occurred_at = coalesce(?20, occurred_at)
                 WHERE org_id = ?1 AND id = ?2",
                params![
                    o, i, u.title, u.instruction, u.project, u.context, u.repo, paths, u.answer_schema,
                    u.task_type, u.complexity, u.language, u.stack, u.domain, to.as_str(), u.answer,
                    u.resolved_by, now, completed, u.occurred_at
                ],
            )?;
            get_task(c, &o, &i)
        })
        .await
    }

    /// Answers a task that waits for a person; it becomes done.
    pub async fn task_resolve(
        &self,
        org: &str,
        id: &str,
        answer: String,
        by: String,
        now: String,
    ) -> Result<Task> {
        let (o, i) = (org.to_string(), id.to_string());
        self.write(move |c| {
            let from = status_of(c, &o, &i)?;
            if from != TaskStatus::NeedsHuman {
                return Err(Error::Conflict(format!(
                    "task {i} is {}; only a task in needs_human can be resolved",
                    from.as_str()
                )));
            }
            c.execute(
                "UPDATE tasks SET status = 'done', answer = ?3, resolved_by = ?4, updated_at = ?5, completed_at = ?5
                 WHERE org_id = ?1 AND id = ?2",
                params![o, i, answer, by, now],
            )?;
            Store::run_resolved(c, &o, &i, &answer, &now)?;
            get_task(c, &o, &i)
        })
        .await
    }
}
