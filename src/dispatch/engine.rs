//! Running a run: the ladder loop, one rung's account rotation, consensus and
//! the human rung.
//!
//! Each provider call is: choose an account (the quota module scores them),
//! resolve its secret, reserve the worst-case cost (refused → the run stops
//! with the limit's message), call, record usage once under `run/attempt/1`
//! (which settles the reservation and charges when billable), write the
//! attempt as a stage row, then judge the answer. Quality failures climb;
//! infra failures rotate accounts (with backoff and a cooldown on the failing
//! account) and are not quality attempts; cancellation and limits stop the run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::quality::{self, Rejection};
use super::{Ladder, Run, RunState, Rung, Start, prompt_tokens};
use crate::app::App;
use crate::clock::fmt_time;
use crate::error::{Error, Result};
use crate::metering::meter::ReserveRequest;
use crate::metering::usage::{BillingMode, Call, Reason};
use crate::providers::{
    self, Answer, Failure, FailureClass, FailureKind, RateSignal, Request, Target,
};
use crate::quota::secret::SecretRef;
use crate::quota::{self, Account, LimitKind, Reported};
use crate::store::{Finish, NewAttempt, NewRun, Started};
use crate::tasks::Task;
use crate::tools::ProgressFn;

/// Asks the connected person a question; `Ok(None)` when they declined.
pub type PersonFn = Arc<
    dyn Fn(String) -> BoxFuture<'static, std::result::Result<Option<String>, String>> + Send + Sync,
>;

/// Who asked for a run and what they asked.
#[derive(Clone)]
pub struct RunRequest {
    pub org: String,
    pub key_id: String,
    pub task_id: String,
    pub idempotency_key: Option<String>,
    /// A rung name or a model to start at.
    pub pin: Option<String>,
    pub detached: bool,
    /// Keeps this caller on the same account of a provider (warm caches).
    pub session: Option<String>,
    /// A command (argv, no shell) run in a worktree of the task's repository
    /// after an answer passes the other checks; exit 0 passes.
    pub verifier: Option<Vec<String>>,
}

/// How the caller hears about a run while it goes.
#[derive(Clone, Default)]
pub struct Hooks {
    pub progress: Option<ProgressFn>,
    /// Present when the client can be asked (elicitation) and counts as a person.
    pub person: Option<(String, PersonFn)>,
}

/// What `begin` did.
pub enum Begun {
    /// A new run, going on in the background; the receiver sees it end.
    New(Run, watch::Receiver<Option<Run>>),
    /// The idempotency key names an earlier run (finished, or still going:
    /// then with a receiver when it runs in this process).
    Existing(Run, Option<watch::Receiver<Option<Run>>>),
}

struct Live {
    org: String,
    ct: CancellationToken,
    done: watch::Receiver<Option<Run>>,
}

/// The ladder and the runs in flight in this process.
pub struct Dispatcher {
    pub ladder: Ladder,
    http: reqwest::Client,
    /// This process, as written on the runs it holds.
    holder: String,
    live: Mutex<HashMap<String, Live>>,
}

impl Dispatcher {
    pub fn new(ladder: Ladder, holder: String) -> Result<Dispatcher> {
        let http = providers::http::client_builder()
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Internal(format!("cannot build the provider HTTP client: {e}")))?;
        Ok(Dispatcher {
            ladder,
            http,
            holder,
            live: Mutex::new(HashMap::new()),
        })
    }

    /// Cancels a run in flight in this process. False when it is not running here.
    pub fn cancel(&self, org: &str, run: &str) -> bool {
        let live = self.live.lock().ok();
        match live.as_ref().and_then(|l| l.get(run)) {
            Some(l) if l.org == org => {
                l.ct.cancel();
                true
            }
            _ => false,
        }
    }

    fn watch(&self, run: &str) -> Option<watch::Receiver<Option<Run>>> {
        self.live.lock().ok()?.get(run).map(|l| l.done.clone())
    }

    /// Sweeps orphaned worktrees, then marks runs whose holder stopped
    /// heart-beating as interrupted, now and every heartbeat period, until `ct`
    /// is cancelled.
    pub fn spawn_reaper(app: Arc<App>, ct: CancellationToken) {
        tokio::spawn(async move {
            // Worktrees left by runs of a process that died: no run of this
            // process exists yet, so every marked worktree is an orphan.
            let root = app.config.execute.worktree_dir(&app.config.db_path);
            if root.exists() {
                let n = providers::worktree::sweep(&root, &std::collections::HashSet::new()).await;
                if n > 0 {
                    tracing::info!(removed = n, "swept worktrees left by an earlier process");
                }
            }
            let beat = Duration::from_secs(app.config.execute.heartbeat_secs.max(1));
            loop {
                let now = app.clock.now();
                let stale = now - chrono::Duration::from_std(beat * 3).unwrap_or_default();
                match app
                    .store
                    .runs_interrupt_stale(fmt_time(stale), fmt_time(now))
                    .await
                {
                    Ok(runs) => {
                        for (org, id) in runs {
                            tracing::warn!(org, run = %id, "run interrupted: its process stopped while it was in flight");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not reap interrupted runs"),
                }
                tokio::select! {
                    _ = ct.cancelled() => return,
                    _ = tokio::time::sleep(beat) => {}
                }
            }
        });
    }
}

/// Starts a run of a task (or finds the earlier run of its idempotency key).
/// Bad input and refusals that need no provider call are errors here; the run
/// itself goes on in a task of its own, so it survives the caller going away.
pub async fn begin(app: &Arc<App>, req: RunRequest, hooks: Hooks) -> Result<Begun> {
    let d = &app.dispatch;
    let task = app.store.task_get(&req.org, &req.task_id).await?;
    let schema = compile_schema(&task)?;
    if let Some(v) = &req.verifier {
        check_verifier(&task, v)?;
    }
    let history = match (&task.task_type, &task.complexity) {
        (Some(t), Some(c)) => Some(
            app.store
                .model_stats(&req.org, Some(t.clone()), Some(c.clone()), None)
                .await?,
        ),
        _ => None,
    };
    let start = super::start(
        &d.ladder,
        req.pin.as_deref(),
        task.complexity.as_deref(),
        history.as_ref().map(|(n, s)| (*n, s.as_slice())),
    )
    .map_err(|e| Error::invalid("pin", e))?;
    let request_sha256 = {
        use sha2::Digest;
        let h = sha2::Sha256::digest(
            json!({"task": req.task_id, "pin": req.pin, "verifier": req.verifier})
                .to_string()
                .as_bytes(),
        );
        hex::encode(h)
    };
    let now = app.clock.now_text();
    let started = app
        .store
        .run_start(
            &req.org,
            NewRun {
                id: app.ids.next(),
                task_id: req.task_id.clone(),
                key_id: req.key_id.clone(),
                idempotency_key: req.idempotency_key.clone(),
                request_sha256,
                detached: req.detached,
                start_rung: Some(start.rung.clone()),
                start_reason: Some(format!("{}: {}", start.basis, start.reason)),
                holder: d.holder.clone(),
                new_workflow_id: app.ids.next(),
                now,
            },
        )
        .await?;
    let (run, task) = match started {
        Started::Existing(run) => {
            let rx = d.watch(&run.id);
            return Ok(Begun::Existing(run, rx));
        }
        Started::New(run, task) => (run, *task),
    };
    let ct = CancellationToken::new();
    let (tx, rx) = watch::channel(None);
    if let Ok(mut live) = d.live.lock() {
        live.insert(
            run.id.clone(),
            Live {
                org: req.org.clone(),
                ct: ct.clone(),
                done: rx.clone(),
            },
        );
    }
    let job = Job {
        app: app.clone(),
        run: run.clone(),
        task,
        schema,
        start,
        req,
        hooks,
        ct,
        attempts: AtomicI64::new(0),
        ended: Mutex::new(None),
    };
    tokio::spawn(async move {
        let app = job.app.clone();
        let id = job.run.id.clone();
        let end = job.drive().await;
        if let Ok(mut live) = app.dispatch.live.lock() {
            live.remove(&id);
        }
        let _ = tx.send(Some(end));
    });
    Ok(Begun::New(run, rx))
}

/// A verifier needs a command and a task whose `repo` is a git working copy.
fn check_verifier(task: &Task, argv: &[String]) -> Result<()> {
    if argv.is_empty() || argv[0].trim().is_empty() {
        return Err(Error::invalid(
            "verifier",
            "needs a program and its arguments, e.g. [\"cargo\", \"test\"]",
        ));
    }
    let Some(repo) = &task.repo else {
        return Err(Error::invalid(
            "verifier",
            format!(
                "runs in the task's working copy, and task {} has no `repo`; set one with `task update`",
                task.id
            ),
        ));
    };
    let path = std::path::Path::new(repo);
    if !path.is_absolute() || !path.join(".git").exists() {
        return Err(Error::invalid(
            "verifier",
            format!(
                "task {}'s repo {repo:?} is not an absolute path to a git working copy on this server",
                task.id
            ),
        ));
    }
    Ok(())
}

/// The task's answer schema, compiled; an invalid one is the caller's error.
fn compile_schema(task: &Task) -> Result<Option<jsonschema::Validator>> {
    let Some(s) = &task.answer_schema else {
        return Ok(None);
    };
    jsonschema::validator_for(&serde_json::Value::Object(s.clone()))
        .map(Some)
        .map_err(|e| {
            Error::invalid(
                "answer_schema",
                format!("the task's answer schema is not a valid JSON Schema: {e}"),
            )
        })
}

/// One run in flight.
struct Job {
    app: Arc<App>,
    run: Run,
    task: Task,
    schema: Option<jsonschema::Validator>,
    start: Start,
    req: RunRequest,
    hooks: Hooks,
    ct: CancellationToken,
    attempts: AtomicI64,
    /// Set when an accepted answer ended the run in its call's transaction.
    ended: Mutex<Option<Run>>,
}

/// How one rung ended.
enum RungEnd {
    Answer {
        text: String,
        rung: String,
        model: String,
    },
    Quality(Rejection),
    /// No account could be used (none, or every one failed).
    Skipped,
    Stop(Stop),
}

/// Why a run stops before an answer.
struct Stop {
    state: RunState,
    reason: String,
}

impl Job {
    async fn drive(self) -> Run {
        let end = self.beating(None, self.ladder()).await;
        if let Some(run) = self.ended.lock().ok().and_then(|mut e| e.take()) {
            self.app.publish(crate::app::Change::Workflow {
                org: self.req.org.clone(),
                id: run.workflow_id.clone(),
            });
            return run;
        }
        let now = self.app.clock.now_text();
        let finish = match end {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(run = %self.run.id, error = %e, "run failed on an internal error");
                Finish {
                    state: RunState::Failed,
                    answer: None,
                    reason: Some("internal error; see the server log".into()),
                    final_rung: None,
                    final_model: None,
                    consensus: None,
                    now: now.clone(),
                }
            }
        };
        match self
            .app
            .store
            .run_finish(&self.req.org, &self.run.id, finish)
            .await
        {
            Ok(run) => {
                self.app.publish(crate::app::Change::Workflow {
                    org: self.req.org.clone(),
                    id: run.workflow_id.clone(),
                });
                run
            }
            Err(e) => {
                tracing::error!(run = %self.run.id, error = %e, "could not write the end of a run");
                self.run.clone()
            }
        }
    }

    fn finish(&self, state: RunState, answer: Option<String>, reason: Option<String>) -> Finish {
        Finish {
            state,
            answer,
            reason,
            final_rung: None,
            final_model: None,
            consensus: None,
            now: self.app.clock.now_text(),
        }
    }

    async fn ladder(&self) -> Result<Finish> {
        let cfg = &self.app.config.execute;
        let rungs = &self.app.dispatch.ladder.rungs;
        let mut quality_failures = 0u32;
        let mut feedback: Option<String> = None;
        let mut index = self.start.index;
        while index < rungs.len() && quality_failures < cfg.quality_budget {
            match self.rung(&rungs[index], feedback.as_deref(), true).await? {
                RungEnd::Answer { text, rung, model } => {
                    let mut f = self.finish(RunState::Succeeded, Some(text), None);
                    f.final_rung = Some(rung);
                    f.final_model = Some(model);
                    return Ok(f);
                }
                RungEnd::Quality(r) => {
                    quality_failures += 1;
                    feedback = Some(r.message);
                }
                RungEnd::Skipped => {}
                RungEnd::Stop(s) => return Ok(self.finish(s.state, None, Some(s.reason))),
            }
            index += 1;
        }
        if self.attempts.load(Ordering::Relaxed) == 0 {
            // Not one call could be made: that is a setup problem, not a
            // question for a person.
            let mut providers: Vec<&str> = rungs[self.start.index..]
                .iter()
                .map(|r| r.provider())
                .collect();
            providers.dedup();
            return Ok(self.finish(
                RunState::Failed,
                None,
                Some(format!(
                    "no rung from {} up has a usable account; add quota accounts for: {}",
                    self.start.rung,
                    providers.join(", ")
                )),
            ));
        }
        if let Some(f) = self.consensus(feedback.as_deref()).await? {
            return Ok(f);
        }
        self.human().await
    }

    /// The K strongest rungs that have a usable account answer side by side; an
    /// answer a strict majority of them agree on wins.
    async fn consensus(&self, feedback: Option<&str>) -> Result<Option<Finish>> {
        let k = self.app.config.execute.consensus_k as usize;
        let mut members = Vec::new();
        for rung in self.app.dispatch.ladder.rungs.iter().rev() {
            if members.len() == k {
                break;
            }
            let usable = quota::service::choose_account(
                &self.app,
                &self.req.org,
                rung.provider(),
                None,
                &[],
            )
            .await?
            .is_some();
            if usable {
                members.push(rung);
            }
        }
        if members.len() < 2 {
            self.report(format!(
                "consensus skipped: {} usable rung(s), at least 2 are needed",
                members.len()
            ));
            return Ok(None);
        }
        let ends =
            futures::future::join_all(members.iter().map(|r| self.rung(r, feedback, false))).await;
        let mut answers = Vec::new();
        for end in ends {
            match end? {
                RungEnd::Answer { text, rung, model } => answers.push((text, rung, model)),
                RungEnd::Stop(s) => return Ok(Some(self.finish(s.state, None, Some(s.reason)))),
                RungEnd::Quality(_) | RungEnd::Skipped => {}
            }
        }
        let texts: Vec<String> = answers.iter().map(|a| a.0.clone()).collect();
        let code_work = matches!(
            self.task.task_type.as_deref(),
            Some("fix" | "feature" | "refactor" | "test")
        );
        let of = members.len();
        match quality::majority(&texts, code_work, of) {
            Some((i, agreed)) => {
                let (text, rung, model) = answers.swap_remove(i);
                let mut f = self.finish(RunState::Succeeded, Some(text), None);
                f.final_rung = Some(rung);
                f.final_model = Some(model);
                f.consensus = Some(json!({"agreed": agreed, "of": of, "answered": texts.len()}));
                self.report(format!("consensus reached: {agreed} of {of} agree"));
                Ok(Some(f))
            }
            None => {
                self.report(format!(
                    "consensus failed: {} answer(s) from {of} rungs, no majority",
                    texts.len()
                ));
                Ok(None)
            }
        }
    }

    /// The human rung: ask the connected person when the client can be asked
    /// and counts as a person; otherwise the task waits for `task resolve`.
    async fn human(&self) -> Result<Finish> {
        if let Some((client, ask)) = &self.hooks.person {
            let question = format!(
                "vaultline could not get an accepted answer from the models for task {} ({}). Please answer it.{}",
                self.task.id,
                self.task.title,
                if self.schema.is_some() {
                    " The answer must be JSON matching the task's schema."
                } else {
                    ""
                }
            );
            self.report("asking the person (elicitation)".into());
            let asked = tokio::select! {
                r = ask(question) => Some(r),
                _ = self.ct.cancelled() => None,
            };
            match asked {
                None => {
                    return Ok(self.finish(
                        RunState::Cancelled,
                        None,
                        Some("cancelled by the caller".into()),
                    ));
                }
                Some(Ok(Some(answer))) => {
                    match quality::check(&answer, false, self.schema.as_ref()) {
                        Ok(()) => {
                            let mut f = self.finish(
                                RunState::Succeeded,
                                Some(answer),
                                Some(format!(
                                    "answered by a person through elicitation ({client})"
                                )),
                            );
                            f.final_rung = Some("human".into());
                            return Ok(f);
                        }
                        Err(r) => {
                            self.report(format!(
                                "the person's answer was not accepted: {}",
                                r.message
                            ));
                        }
                    }
                }
                Some(Ok(None)) => self.report("the person declined to answer".into()),
                Some(Err(e)) => {
                    tracing::warn!(run = %self.run.id, error = %e, "elicitation failed");
                    self.report("elicitation failed; the task waits for `task resolve`".into());
                }
            }
        }
        Ok(self.finish(
            RunState::NeedsHuman,
            None,
            Some(
                "no model answer was accepted; the task waits for a person (`task resolve`)".into(),
            ),
        ))
    }

    fn report(&self, message: String) {
        if let Some(p) = &self.hooks.progress {
            let n = self.attempts.load(Ordering::Relaxed) as f64;
            p(n, None, Some(message));
        }
    }

    /// One rung: accounts in score order until one answers or none is left.
    /// `last`: an accepted answer ends the run (false for consensus members).
    async fn rung(&self, rung: &Rung, feedback: Option<&str>, last: bool) -> Result<RungEnd> {
        let cfg = &self.app.config.execute;
        let mut tried: Vec<String> = Vec::new();
        let mut last_failure: Option<String> = None;
        loop {
            if self.ct.is_cancelled() {
                return Ok(RungEnd::Stop(Stop {
                    state: RunState::Cancelled,
                    reason: "cancelled by the caller".into(),
                }));
            }
            let chosen = quota::service::choose_account(
                &self.app,
                &self.req.org,
                rung.provider(),
                self.req.session.as_deref(),
                &tried,
            )
            .await?;
            let Some((account, _)) = chosen else {
                let reason = match &last_failure {
                    None => format!("no usable account of provider {}", rung.provider()),
                    Some(f) => format!(
                        "every usable account of provider {} failed; last: {f}",
                        rung.provider()
                    ),
                };
                if tried.is_empty() {
                    self.attempt(rung, None, Outcome::skipped(&reason), None)
                        .await?;
                }
                self.report(format!("{}: skipped ({reason})", rung.name));
                return Ok(RungEnd::Skipped);
            };
            tried.push(account.id.clone());
            match self.call(rung, &account, feedback, last).await? {
                Called::Answer(text) => {
                    return Ok(RungEnd::Answer {
                        text,
                        rung: rung.name.clone(),
                        model: rung.model().to_string(),
                    });
                }
                Called::Quality(r) => return Ok(RungEnd::Quality(r)),
                Called::Stop(s) => return Ok(RungEnd::Stop(s)),
                Called::Infra(f) => {
                    let now = self.app.clock.now();
                    let reset = f
                        .rate
                        .as_ref()
                        .and_then(|r| r.reset_at)
                        .filter(|t| *t > now)
                        .and_then(|t| (t - now).to_std().ok());
                    let rest = if f.kind == FailureKind::Auth {
                        Duration::from_secs(cfg.infra_cooldown_secs.saturating_mul(10))
                    } else if let (FailureKind::RateLimited, None, Some(reset)) =
                        (f.kind, f.retry_after, reset)
                    {
                        // A CLI that says when its window resets rests until then.
                        reset
                    } else {
                        // A provider's Retry-After is honoured up to an hour.
                        f.retry_after
                            .unwrap_or(Duration::from_secs(cfg.infra_cooldown_secs))
                            .min(Duration::from_secs(3600))
                    };
                    let until = now + chrono::Duration::from_std(rest).unwrap_or_default();
                    if let Err(e) = quota::service::cooldown(
                        &self.app,
                        &self.req.org,
                        &account.id,
                        &fmt_time(until),
                    )
                    .await
                    {
                        tracing::warn!(error = %e, account = %account.id, "could not set an account's cooldown");
                    }
                    last_failure = Some(format!("{}: {}", f.kind.as_str(), f.message));
                    let backoff = Duration::from_millis(
                        cfg.backoff_ms.saturating_mul(1 << (tried.len() - 1).min(3)),
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.ct.cancelled() => {}
                    }
                }
            }
        }
    }

    /// One provider call on one account, recorded and judged.
    async fn call(
        &self,
        rung: &Rung,
        account: &Account,
        feedback: Option<&str>,
        last: bool,
    ) -> Result<Called> {
        let secret = match SecretRef::parse(&account.secret_ref).and_then(|r| r.resolve()) {
            Ok(s) => s,
            Err(e) => {
                let f = Failure::new(FailureKind::Auth, format!("the account's secret: {e}"));
                self.attempt(rung, Some(account), Outcome::failed(&f), None)
                    .await?;
                return Ok(Called::Infra(f));
            }
        };
        let prompt = self.prompt(feedback);
        let metered = account.billing_mode == quota::BillingMode::Metered;
        let mode = if metered {
            BillingMode::Metered
        } else {
            BillingMode::Seat
        };
        let worst = rung
            .worst_case_nanos(&self.app.meter, prompt_tokens(&prompt) + 64)
            .unwrap_or(0);
        let reservation = match self
            .app
            .meter
            .reserve(ReserveRequest {
                org: self.req.org.clone(),
                key_id: self.req.key_id.clone(),
                workflow_id: Some(self.run.workflow_id.clone()),
                task_id: Some(self.task.id.clone()),
                holder: self.run.id.clone(),
                cost_nanos: worst,
                billing_mode: mode,
            })
            .await
        {
            Ok(r) => r,
            Err(Error::Limit(msg)) => {
                self.attempt(rung, Some(account), Outcome::terminal("limit", &msg), None)
                    .await?;
                return Ok(Called::Stop(Stop {
                    state: RunState::Failed,
                    reason: format!("refused before calling {}: {msg}", rung.name),
                }));
            }
            Err(e) => return Err(e),
        };
        let n = self.attempts.fetch_add(1, Ordering::Relaxed) + 1;
        // Repository work gets its own worktree per attempt: a CLI agent works
        // in it and the verifier checks it; it is removed after the attempt.
        let needs_tree =
            self.task.repo.is_some() && (rung.kind.is_cli() || self.req.verifier.is_some());
        let tree = if needs_tree {
            match self.worktree(n).await {
                Ok(t) => Some(t),
                Err(e) => {
                    let _ = self.app.meter.release(&self.req.org, &reservation.id).await;
                    return Ok(Called::Stop(Stop {
                        state: RunState::Failed,
                        reason: format!("could not make a worktree of the task's repo: {e}"),
                    }));
                }
            }
        } else {
            None
        };
        let target = Target {
            kind: rung.kind,
            base_url: rung.cfg.base_url.clone(),
            command: rung.cfg.command.clone(),
            extra_args: rung.cfg.args.clone(),
            secret: Some(secret),
        };
        let request = Request {
            model: rung.model().to_string(),
            system: Some(SYSTEM.into()),
            prompt,
            max_output_tokens: rung.cfg.max_output_tokens,
            answer_schema: self
                .task
                .answer_schema
                .clone()
                .map(serde_json::Value::Object),
            timeout: Duration::from_secs(rung.cfg.timeout_secs),
            workdir: tree.as_ref().map(|t| t.path().to_path_buf()),
        };
        let started = Instant::now();
        let result = self
            .beating(
                Some(&reservation.id),
                providers::call(&self.app.dispatch.http, &target, &request, &self.ct),
            )
            .await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let (usage, reported, rate) = match &result {
            Ok(a) => (a.usage, a.reported_cost_nanos, a.rate.clone()),
            // A failed call the provider reported nothing for cost nothing.
            Err(f) => (
                Some(f.usage.unwrap_or_default()),
                f.reported_cost_nanos,
                f.rate.clone(),
            ),
        };
        let stage_id = self.app.ids.next();
        let outcome_word = match &result {
            Ok(_) => "ok",
            Err(f) => match f.kind.class() {
                FailureClass::Quality => "quality",
                FailureClass::Infra => "infra",
                FailureClass::Terminal => "terminal",
            },
        };
        let call = Call {
            org: self.req.org.clone(),
            key_id: self.req.key_id.clone(),
            workflow_id: Some(self.run.workflow_id.clone()),
            task_id: Some(self.task.id.clone()),
            stage_id: Some(stage_id.clone()),
            reason: Reason::LlmCall,
            tool: None,
            provider: rung.provider().to_string(),
            model: rung.model().to_string(),
            account_id: Some(account.id.clone()),
            billing_mode: mode,
            usage,
            reported_cost_nanos: reported,
            latency_ms,
            outcome: outcome_word.into(),
            source_system: self.app.meter.source_system().to_string(),
            source_reference: format!("{}/{n}/1", self.run.id),
            reservation_id: Some(reservation.id.clone()),
        };
        let tokens_in = usage.map(|u| (u.input + u.cache_read + u.cache_write) as i64);
        let tokens_out = usage.map(|u| u.output as i64);
        // Without a verifier the answer is judged at once, and its usage record,
        // charge and stage row are written in one transaction.
        let quick = match (&result, &self.req.verifier) {
            (Ok(a), None) => Some(self.outcome_of(a)),
            (Ok(_), Some(_)) => None,
            (Err(f), _) => Some((Outcome::failed(f), None)),
        };
        if let Some((o, rejection)) = quick {
            let (outcome, error) = (o.outcome, o.error.clone());
            let mut row = self.attempt_row(rung, Some(account), o, n, None);
            row.stage_id = stage_id;
            row.tokens_input = tokens_in;
            row.tokens_output = tokens_out;
            row.latency_ms = Some(latency_ms as i64);
            // An accepted answer on the ladder ends the run in the same transaction.
            let finish = match (&result, &rejection, last) {
                (Ok(a), None, true) => {
                    let mut f = self.finish(RunState::Succeeded, Some(a.text.clone()), None);
                    f.final_rung = Some(rung.name.clone());
                    f.final_model = Some(rung.model().to_string());
                    Some(f)
                }
                _ => None,
            };
            match self.app.meter.record_attempt(call, row, finish).await {
                Ok((_, Some(run))) => {
                    if let Ok(mut e) = self.ended.lock() {
                        *e = Some(run);
                    }
                }
                Ok((_, None)) => {}
                Err(e) => {
                    let _ = self.app.meter.release(&self.req.org, &reservation.id).await;
                    return Err(e);
                }
            }
            self.observe(account, rate.as_ref()).await;
            self.report_attempt(rung, n, outcome, error.as_deref());
            if let Some(t) = tree
                && let Err(e) = t.remove().await
            {
                tracing::warn!(error = %e, run = %self.run.id, "could not remove an attempt's worktree");
            }
            return Ok(match (result, rejection) {
                (Ok(a), None) => Called::Answer(a.text),
                (Ok(_), Some(r)) => Called::Quality(r),
                (Err(f), _) => match f.kind.class() {
                    FailureClass::Terminal => Called::Stop(Stop {
                        state: RunState::Cancelled,
                        reason: "cancelled by the caller".into(),
                    }),
                    _ => Called::Infra(f),
                },
            });
        }
        let receipt = self.app.meter.record(call).await;
        let receipt = match receipt {
            Ok(r) => r,
            Err(e) => {
                let _ = self.app.meter.release(&self.req.org, &reservation.id).await;
                return Err(e);
            }
        };
        self.observe(account, rate.as_ref()).await;
        let billed = Billed {
            usage_id: receipt.usage_id.clone(),
            cost_nanos: receipt.cost_nanos,
            billed_nanos: receipt.billed_nanos,
            tokens_in,
            tokens_out,
            latency_ms: latency_ms as i64,
            stage_id,
            n,
        };
        let judged = match result {
            Ok(answer) => {
                self.judge(rung, account, answer, billed, tree.as_ref())
                    .await
            }
            Err(f) => {
                self.attempt(rung, Some(account), Outcome::failed(&f), Some(billed))
                    .await?;
                Ok(match f.kind.class() {
                    FailureClass::Terminal => Called::Stop(Stop {
                        state: RunState::Cancelled,
                        reason: "cancelled by the caller".into(),
                    }),
                    _ => Called::Infra(f),
                })
            }
        };
        if let Some(t) = tree
            && let Err(e) = t.remove().await
        {
            tracing::warn!(error = %e, run = %self.run.id, "could not remove an attempt's worktree");
        }
        judged
    }

    async fn worktree(&self, n: i64) -> std::result::Result<providers::worktree::Worktree, String> {
        let repo = self.task.repo.as_deref().unwrap_or_default();
        let root = self
            .app
            .config
            .execute
            .worktree_dir(&self.app.config.db_path);
        providers::worktree::Worktree::create(
            std::path::Path::new(repo),
            &root,
            &format!("{}-{n}", self.run.id),
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// Runs the verifier in the attempt's worktree, the answer in the file
    /// `VAULTLINE_ANSWER_FILE` names. Exit 0 passes.
    async fn verify(
        &self,
        argv: &[String],
        tree: &providers::worktree::Worktree,
        answer: &str,
    ) -> std::result::Result<(), Rejection> {
        let fail = |message: String| Rejection {
            kind: "verifier",
            message,
        };
        let answer_file = tree
            .path()
            .parent()
            .unwrap_or(tree.path())
            .join("answer.txt");
        std::fs::write(&answer_file, answer)
            .map_err(|e| fail(format!("could not write the answer for the verifier: {e}")))?;
        let mut env: Vec<(String, std::ffi::OsString)> = ["PATH", "HOME", "LANG"]
            .iter()
            .filter_map(|k| std::env::var_os(k).map(|v| (k.to_string(), v)))
            .collect();
        env.push(("VAULTLINE_ANSWER_FILE".into(), answer_file.into_os_string()));
        let inv = providers::cli::Invocation {
            program: argv[0].clone().into(),
            args: argv[1..].to_vec(),
            env,
            stdin: String::new(),
        };
        let timeout = Duration::from_secs(self.app.config.execute.verifier_timeout_secs);
        match providers::cli::process::run(&inv, tree.path(), timeout, &self.ct).await {
            Ok(out) if out.exit_code == Some(0) => Ok(()),
            Ok(out) => {
                let tail: String = out
                    .stderr
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                Err(fail(format!(
                    "the verifier `{}` exited with {}{}",
                    argv.join(" "),
                    out.exit_code
                        .map_or("a signal".to_string(), |c| c.to_string()),
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", clip(&tail, 500))
                    }
                )))
            }
            Err(f) => Err(fail(format!(
                "the verifier `{}` did not finish: {}",
                argv.join(" "),
                f.message
            ))),
        }
    }

    /// The judged outcome of an answer without a verifier: ok, or a quality
    /// failure with its rejection.
    fn outcome_of(&self, answer: &Answer) -> (Outcome, Option<Rejection>) {
        let output =
            json!({"answer": clip(&answer.text, 4000), "finish_reason": answer.finish_reason});
        match quality::check(&answer.text, answer.refused, self.schema.as_ref()) {
            Ok(()) => {
                let mut o = Outcome::ok();
                o.output = Some(output);
                (o, None)
            }
            Err(r) => {
                let mut o = Outcome::quality(&r);
                o.output = Some(output);
                (o, Some(r))
            }
        }
    }

    async fn judge(
        &self,
        rung: &Rung,
        account: &Account,
        answer: Answer,
        billed: Billed,
        tree: Option<&providers::worktree::Worktree>,
    ) -> Result<Called> {
        let (mut o, mut rejection) = self.outcome_of(&answer);
        if rejection.is_none()
            && let (Some(argv), Some(tree)) = (&self.req.verifier, tree)
            && let Err(r) = self.verify(argv, tree, &answer.text).await
        {
            let output = o.output.take();
            o = Outcome::quality(&r);
            o.output = output;
            rejection = Some(r);
        }
        self.attempt(rung, Some(account), o, Some(billed)).await?;
        Ok(match rejection {
            None => Called::Answer(answer.text),
            Some(r) => Called::Quality(r),
        })
    }

    /// Awaits `fut`, refreshing one heartbeat every period: the run's (`None`),
    /// around the whole run, or a reservation's (`Some`), around its call.
    ///
    /// The run's beat used to be refreshed only during provider calls, so a
    /// run waiting longer than three beats on a person (elicitation), a
    /// verifier or a backoff was reaped as interrupted, and the answer it then
    /// got was dropped.
    async fn beating<T>(
        &self,
        reservation: Option<&str>,
        fut: impl std::future::Future<Output = T>,
    ) -> T {
        let beat = Duration::from_secs(self.app.config.execute.heartbeat_secs.max(1));
        tokio::pin!(fut);
        loop {
            tokio::select! {
                r = &mut fut => return r,
                _ = tokio::time::sleep(beat) => match reservation {
                    None => {
                        let now = self.app.clock.now_text();
                        if let Err(e) = self.app.store.run_heartbeat(&self.req.org, &self.run.id, now).await {
                            tracing::warn!(error = %e, run = %self.run.id, "run heartbeat failed");
                        }
                    }
                    Some(r) => {
                        if let Err(e) = self.app.meter.heartbeat(&self.req.org, r).await {
                            tracing::warn!(error = %e, run = %self.run.id, "reservation heartbeat failed");
                        }
                    }
                },
            }
        }
    }

    /// Feeds what the provider said about the account's limits to the quota
    /// module (the usage record already marked the account used).
    async fn observe(&self, account: &Account, rate: Option<&RateSignal>) {
        let now = self.app.clock.now_text();
        let Some(r) = rate.filter(|r| !r.is_empty()) else {
            return;
        };
        let (limit, remaining) = match account.limit_kind {
            LimitKind::Requests => (r.requests_limit, r.requests_remaining),
            LimitKind::Tokens => (r.tokens_limit, r.tokens_remaining),
            _ => (None, None),
        };
        let reported = Reported {
            used: limit.zip(remaining).map(|(l, rem)| (l - rem).max(0)),
            limit,
            used_percent: r.used_percent,
            reset_at: r.reset_at.map(fmt_time),
            at: now,
        };
        if let Err(e) = self
            .app
            .store
            .quota_signal(&self.req.org, &account.id, reported)
            .await
        {
            tracing::warn!(error = %e, account = %account.id, "could not store an account's rate-limit signal");
        }
    }

    /// Writes one attempt (or a skipped rung) as a stage row and reports it.
    async fn attempt(
        &self,
        rung: &Rung,
        account: Option<&Account>,
        o: Outcome,
        billed: Option<Billed>,
    ) -> Result<()> {
        let n = match &billed {
            Some(b) => b.n,
            None if o.outcome == "skipped" => self.attempts.load(Ordering::Relaxed),
            None => self.attempts.fetch_add(1, Ordering::Relaxed) + 1,
        };
        let (outcome, error) = (o.outcome, o.error.clone());
        let row = self.attempt_row(rung, account, o, n, billed.as_ref());
        self.app.store.run_attempt(&self.req.org, row).await?;
        self.report_attempt(rung, n, outcome, error.as_deref());
        Ok(())
    }

    /// An attempt's stage row (its usage fields come from `billed`, or from the
    /// usage record written in the same job).
    fn attempt_row(
        &self,
        rung: &Rung,
        account: Option<&Account>,
        o: Outcome,
        n: i64,
        b: Option<&Billed>,
    ) -> NewAttempt {
        NewAttempt {
            stage_id: b
                .map(|b| b.stage_id.clone())
                .unwrap_or_else(|| self.app.ids.next()),
            run_id: self.run.id.clone(),
            attempt: n,
            rung: rung.name.clone(),
            provider: rung.provider().to_string(),
            model: rung.model().to_string(),
            account_id: account.map(|a| a.id.clone()),
            outcome: o.outcome.into(),
            failure_kind: o.kind,
            error: o.error,
            output: o.output,
            tokens_input: b.and_then(|b| b.tokens_in),
            tokens_output: b.and_then(|b| b.tokens_out),
            cost_nanos: b.map_or(0, |b| b.cost_nanos),
            billed_nanos: b.map_or(0, |b| b.billed_nanos),
            latency_ms: b.map(|b| b.latency_ms),
            usage_id: b.map(|b| b.usage_id.clone()),
            quality_failure: o.outcome == "quality",
            created_by: self.req.key_id.clone(),
            now: self.app.clock.now_text(),
        }
    }

    fn report_attempt(&self, rung: &Rung, n: i64, outcome: &str, error: Option<&str>) {
        self.report(format!(
            "attempt {n}: {} ({}) → {outcome}{}",
            rung.name,
            rung.model(),
            error.map(|e| format!(": {e}")).unwrap_or_default()
        ));
    }

    /// The prompt: the task, its context and paths, the answer's schema, and
    /// why the previous answer was rejected.
    fn prompt(&self, feedback: Option<&str>) -> String {
        let t = &self.task;
        let mut p = format!("# Task: {}\n", t.title);
        if let Some(i) = &t.instruction {
            p.push_str(&format!("\n{i}\n"));
        }
        if let Some(c) = &t.context {
            p.push_str(&format!("\n## Context\n{c}\n"));
        }
        if !t.paths.is_empty() {
            p.push_str(&format!("\n## Paths\n{}\n", t.paths.join("\n")));
        }
        if let Some(s) = &t.answer_schema {
            p.push_str(&format!(
                "\n## Answer format\nAnswer with one JSON value, and nothing else, that validates against this JSON Schema:\n{}\n",
                serde_json::Value::Object(s.clone())
            ));
        }
        if let Some(f) = feedback {
            p.push_str(&format!("\n## Your previous answer was rejected\n{f}\n"));
        }
        p
    }
}

const SYSTEM: &str = "You are a careful software engineer working for an automated dispatcher. Answer the task directly and completely.";

/// What a single call came to.
enum Called {
    Answer(String),
    Quality(Rejection),
    Infra(Failure),
    Stop(Stop),
}

/// The metered side of an attempt.
struct Billed {
    usage_id: String,
    cost_nanos: i64,
    billed_nanos: i64,
    tokens_in: Option<i64>,
    tokens_out: Option<i64>,
    latency_ms: i64,
    stage_id: String,
    n: i64,
}

/// The judged side of an attempt.
struct Outcome {
    outcome: &'static str,
    kind: Option<String>,
    error: Option<String>,
    output: Option<serde_json::Value>,
}

impl Outcome {
    fn ok() -> Outcome {
        Outcome {
            outcome: "ok",
            kind: None,
            error: None,
            output: None,
        }
    }

    fn skipped(reason: &str) -> Outcome {
        Outcome {
            outcome: "skipped",
            kind: Some("no_account".into()),
            error: Some(providers::short(reason.to_string())),
            output: None,
        }
    }

    fn quality(r: &Rejection) -> Outcome {
        Outcome {
            outcome: "quality",
            kind: Some(r.kind.into()),
            error: Some(providers::short(r.message.clone())),
            output: None,
        }
    }

    fn terminal(kind: &str, msg: &str) -> Outcome {
        Outcome {
            outcome: "terminal",
            kind: Some(kind.into()),
            error: Some(providers::short(msg.to_string())),
            output: None,
        }
    }

    fn failed(f: &Failure) -> Outcome {
        Outcome {
            outcome: match f.kind.class() {
                FailureClass::Quality => "quality",
                FailureClass::Infra => "infra",
                FailureClass::Terminal => "terminal",
            },
            kind: Some(f.kind.as_str().into()),
            error: Some(f.message.clone()),
            output: None,
        }
    }
}

/// At most `max` characters of `s`.
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Waits for a run to end, at most `wait`; None when it is still going.
pub async fn wait(
    rx: &mut watch::Receiver<Option<Run>>,
    wait: Duration,
    ct: &CancellationToken,
) -> Option<Run> {
    let done = async {
        loop {
            if let Some(r) = rx.borrow().clone() {
                return Some(r);
            }
            if rx.changed().await.is_err() {
                return rx.borrow().clone();
            }
        }
    };
    tokio::select! {
        r = done => r,
        _ = tokio::time::sleep(wait) => None,
        _ = ct.cancelled() => None,
    }
}
