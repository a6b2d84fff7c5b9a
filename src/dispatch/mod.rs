//! The dispatch ladder: sends a task to language models, cheapest rung first,
//! climbing on bad answers, rotating accounts on provider failures, then
//! consensus, then a person.
//!
//! - [`Ladder`] is the configured rungs, checked at start-up.
//! - [`start`] decides where a run begins (a pin, the chooser's history, or the
//!   task's complexity) and says why.
//! - [`quality`] judges answers (empty, refusal, schema) and compares them for consensus.
//! - [`engine`] runs a run: reservations, provider calls, attempts, usage records.
//! - [`summary`] renders a run at the caller's verbosity (Mermaid by default).
//!
//! Every provider call goes through the meter's reservation first (the
//! breaker and budgets are checked atomically there) and is recorded once,
//! under the reference `run/attempt/1`, so a retried `execute run` never bills twice.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{ExecuteConfig, RungConfig};
use crate::metering::meter::Meter;
use crate::providers::Kind;
use crate::workflows::chooser::{self, ModelStats};

pub mod engine;
pub mod quality;
pub mod summary;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
    NeedsHuman,
    Cancelled,
    /// The process died while the run was in flight.
    Interrupted,
}

impl RunState {
    pub const ALL: [RunState; 6] = [
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::NeedsHuman,
        RunState::Cancelled,
        RunState::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::NeedsHuman => "needs_human",
            RunState::Cancelled => "cancelled",
            RunState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A run as stored.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Run {
    pub id: String,
    pub task_id: String,
    pub workflow_id: String,
    pub key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub state: RunState,
    pub detached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_rung: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_reason: Option<String>,
    /// Provider calls made (skipped rungs and refusals before a call are not calls).
    pub attempts: i64,
    pub quality_failures: i64,
    pub cost_nanos: i64,
    pub billed_nanos: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_rung: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consensus: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip)]
    pub request_sha256: String,
}

/// One configured rung, checked.
#[derive(Debug, Clone)]
pub struct Rung {
    pub index: usize,
    pub name: String,
    pub kind: Kind,
    pub cfg: RungConfig,
}

impl Rung {
    /// The model as usage records and statistics name it.
    pub fn model(&self) -> &str {
        &self.cfg.model
    }

    pub fn provider(&self) -> &str {
        &self.cfg.provider
    }

    /// Worst-case provider cost of one call with `prompt_tokens` in: the price
    /// of the prompt and the rung's full output limit, or the rung's configured
    /// maximum when that is lower or the model has no price.
    pub fn worst_case_nanos(&self, meter: &Meter, prompt_tokens: u64) -> Option<i64> {
        let priced = meter.estimate(
            self.provider(),
            self.model(),
            prompt_tokens,
            u64::from(self.cfg.max_output_tokens),
        );
        let cap = self.cfg.max_cost_usd.map(|u| u.0);
        match (priced, cap) {
            (Some(p), Some(c)) => Some(p.min(c)),
            (p, c) => p.or(c),
        }
    }
}

/// The ladder from config. Every rung must be priceable: a model in the price
/// book, or a configured maximum cost per call.
#[derive(Debug, Clone)]
pub struct Ladder {
    pub rungs: Vec<Rung>,
}

impl Ladder {
    pub fn from_config(cfg: &ExecuteConfig, meter: &Meter) -> Result<Ladder, String> {
        let mut rungs = Vec::new();
        for (index, r) in cfg.rungs.iter().enumerate() {
            let kind = Kind::parse(&r.adapter).ok_or_else(|| {
                format!(
                    "execute.rungs[{index}].adapter: unknown adapter {:?}",
                    r.adapter
                )
            })?;
            let rung = Rung {
                index,
                name: r.name().to_string(),
                kind,
                cfg: r.clone(),
            };
            if rung.worst_case_nanos(meter, 0).is_none() {
                return Err(format!(
                    "execute.rungs[{index}] ({}): no price for {}/{} in the price book; add one under billing.prices or set max_cost_usd",
                    rung.name, r.provider, r.model
                ));
            }
            rungs.push(rung);
        }
        Ok(Ladder { rungs })
    }

    /// The rung a caller pinned by name or by model.
    pub fn find(&self, name_or_model: &str) -> Option<&Rung> {
        self.rungs
            .iter()
            .find(|r| r.name == name_or_model)
            .or_else(|| self.rungs.iter().find(|r| r.model() == name_or_model))
    }

    pub fn names(&self) -> Vec<&str> {
        self.rungs.iter().map(|r| r.name.as_str()).collect()
    }
}

/// Where a run starts, and why.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Start {
    pub rung: String,
    pub index: usize,
    /// `pin`, `history` or `rules`.
    pub basis: String,
    pub reason: String,
}

/// Decides the starting rung: a pinned rung or model wins; then the chooser,
/// once the (task_type, complexity) pair has enough closed history and some
/// rung's model has enough of it; else the task's complexity (trivial and simple
/// start at the bottom, moderate a third of the way up, complex half way up).
pub fn start(
    ladder: &Ladder,
    pin: Option<&str>,
    complexity: Option<&str>,
    history: Option<(i64, &[ModelStats])>,
) -> Result<Start, String> {
    if let Some(p) = pin {
        let r = ladder.find(p).ok_or_else(|| {
            format!(
                "no rung is named or runs model {p:?} (rungs: {})",
                ladder.names().join(", ")
            )
        })?;
        return Ok(Start {
            rung: r.name.clone(),
            index: r.index,
            basis: "pin".into(),
            reason: format!("pinned by the caller to {p}"),
        });
    }
    if let Some((total, stats)) = history {
        // Only models the ladder can run are candidates.
        let on_ladder: Vec<ModelStats> = stats
            .iter()
            .filter(|s| ladder.rungs.iter().any(|r| r.model() == s.model))
            .cloned()
            .collect();
        if let Some(rec) = chooser::by_history(total, &on_ladder)
            && let Some(r) = ladder.rungs.iter().find(|r| r.model() == rec.model)
        {
            return Ok(Start {
                rung: r.name.clone(),
                index: r.index,
                basis: "history".into(),
                reason: rec.reason,
            });
        }
    }
    let n = ladder.rungs.len();
    let (index, why) = match complexity {
        Some("complex") => (n / 2, "complex work starts half way up the ladder"),
        Some("moderate") => (n / 3, "moderate work starts a third of the way up"),
        Some(c) => (
            0,
            if c == "trivial" {
                "trivial work starts at the bottom"
            } else {
                "simple work starts at the bottom"
            },
        ),
        None => (0, "unclassified work starts at the bottom"),
    };
    let r = &ladder.rungs[index.min(n - 1)];
    Ok(Start {
        rung: r.name.clone(),
        index: r.index,
        basis: "rules".into(),
        reason: why.into(),
    })
}

/// A rough token count of a prompt (4 characters a token, rounded up), for
/// worst-case estimates before a call.
pub fn prompt_tokens(prompt: &str) -> u64 {
    (prompt.chars().count() as u64).div_ceil(4)
}
