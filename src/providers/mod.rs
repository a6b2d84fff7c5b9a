//! Provider adapters: a closed set of wire formats behind one interface.
//!
//! The ladder (`crate::dispatch`) calls [`call`] with a [`Target`] (which adapter,
//! where, with which credential) and a [`Request`] (model, prompt, limits). An
//! adapter answers with an [`Answer`] (text, usage, reported cost, rate-limit
//! signals) or a [`Failure`] whose [`FailureKind`] decides what the ladder does
//! next. Adapters never meter, never retry and never log secrets: the ladder does
//! the first two, and a [`Failure`]'s message is short and secret-free.
//!
//! Each HTTP adapter is split into a pure request builder and a pure response
//! parser (golden-tested against recorded pairs in `fixtures/providers/`) around
//! one shared sender in [`http`]. CLI adapters run the agent CLIs as child
//! processes in their own process group ([`cli`]); repository work runs in an
//! isolated git worktree that vaultline owns ([`worktree`]).

// `Failure` is the one error of every adapter and is returned once per model
// call, next to an HTTP request or a process spawn: its size (about 200 bytes,
// the rate signal and usage it carries are billable facts) costs nothing there,
// and boxing it would make every adapter and test awkward for no gain.
#![allow(clippy::result_large_err)]

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::metering::pricing::Usage;
use crate::quota::secret::Secret;

pub mod anthropic;
pub mod cli;
pub mod gemini;
#[cfg(test)]
mod golden;
pub mod http;
pub mod openai;
pub mod worktree;

/// The adapters. A closed set: config naming anything else is refused at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// OpenAI-compatible chat completions (OpenAI, DeepSeek, OpenRouter, Ollama,
    /// vLLM, a LiteLLM proxy, Gemini's compatible endpoint).
    Openai,
    /// Anthropic Messages.
    Anthropic,
    /// Gemini generateContent.
    Gemini,
    /// `claude -p … --output-format json`.
    ClaudeCli,
    /// `codex exec --json`.
    CodexCli,
    /// `gemini -p … --output-format json`.
    GeminiCli,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Openai,
        Kind::Anthropic,
        Kind::Gemini,
        Kind::ClaudeCli,
        Kind::CodexCli,
        Kind::GeminiCli,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Openai => "openai",
            Kind::Anthropic => "anthropic",
            Kind::Gemini => "gemini",
            Kind::ClaudeCli => "claude_cli",
            Kind::CodexCli => "codex_cli",
            Kind::GeminiCli => "gemini_cli",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// True for the agent CLIs (child processes, not HTTP).
    pub fn is_cli(self) -> bool {
        matches!(self, Kind::ClaudeCli | Kind::CodexCli | Kind::GeminiCli)
    }
}

/// Where and how to call: one account of one rung.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: Kind,
    /// HTTP adapters: the API base, e.g. `https://api.openai.com/v1`,
    /// `https://api.anthropic.com`, `https://generativelanguage.googleapis.com/v1beta`.
    pub base_url: Option<String>,
    /// CLI adapters: the program to run (default `claude`, `codex`, `gemini` on PATH).
    pub command: Option<PathBuf>,
    /// Extra arguments for a CLI adapter, placed before the prompt.
    pub extra_args: Vec<String>,
    /// The credential: an API key for HTTP adapters; for CLIs it is passed in the
    /// CLI's own environment variable when present (never on the command line).
    pub secret: Option<Secret>,
}

/// One model call.
#[derive(Debug, Clone)]
pub struct Request {
    pub model: String,
    pub system: Option<String>,
    pub prompt: String,
    pub max_output_tokens: u32,
    /// The JSON Schema the answer must satisfy, when the task has one. Adapters
    /// whose API can ask for structured output may pass it on; the ladder
    /// validates the answer either way.
    pub answer_schema: Option<serde_json::Value>,
    /// The whole call, connect to last byte (for a CLI: until the process exits).
    pub timeout: Duration,
    /// CLI adapters: the directory the child runs in (an isolated worktree for
    /// repository work, else a scratch directory).
    pub workdir: Option<PathBuf>,
}

/// What a response said about the account's limits (rate-limit headers, or the
/// limits and used percentages an agent CLI prints). The ladder turns it into
/// the quota module's `Reported` in the account's own unit.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RateSignal {
    pub requests_limit: Option<i64>,
    pub requests_remaining: Option<i64>,
    pub tokens_limit: Option<i64>,
    pub tokens_remaining: Option<i64>,
    /// Percent of the account's window used, as a CLI reports it.
    pub used_percent: Option<f64>,
    /// When the limit that is nearest to running out resets.
    pub reset_at: Option<DateTime<Utc>>,
}

impl RateSignal {
    pub fn is_empty(&self) -> bool {
        *self == RateSignal::default()
    }
}

/// A successful call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// The model's final text (for a CLI: its final result message).
    pub text: String,
    /// Token counts, when the provider reported them.
    pub usage: Option<Usage>,
    /// Cost in nano-dollars, when the provider reported one (the CLIs' `total_cost_usd`).
    pub reported_cost_nanos: Option<i64>,
    /// The model that answered, as the provider named it.
    pub model: Option<String>,
    /// Why generation stopped, as the provider said it (`stop`, `length`,
    /// `end_turn`, `max_tokens`, `refusal`, `SAFETY`, …).
    pub finish_reason: Option<String>,
    /// True when the provider itself marked the answer as a refusal.
    pub refused: bool,
    pub rate: Option<RateSignal>,
}

/// Why a call failed; decides the ladder's next step (see [`FailureKind::class`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// No answer within the request's timeout (the child process group is killed).
    Timeout,
    /// Could not connect (refused, DNS, TLS), or the connection broke mid-answer.
    Connect,
    /// HTTP 429, or a CLI saying its usage limit is reached.
    RateLimited,
    /// HTTP 5xx (and 529 overloaded).
    Server,
    /// HTTP 401/403, or a CLI that is not logged in: the credential is bad or expired.
    Auth,
    /// Other 4xx: the provider refused the request as we sent it (unknown model,
    /// context too long, bad parameter).
    Rejected,
    /// A 2xx whose body is not the documented shape, or a CLI whose output cannot be parsed.
    Malformed,
    /// The caller cancelled: the request was dropped or the process group killed.
    Cancelled,
}

/// What the ladder does with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The answer was bad: climb a rung; counts against the quality budget.
    Quality,
    /// The provider or account failed: another account of the rung, else the next
    /// rung; not a quality attempt.
    Infra,
    /// Stop the run at once.
    Terminal,
}

impl FailureKind {
    pub fn class(self) -> FailureClass {
        match self {
            FailureKind::Cancelled => FailureClass::Terminal,
            FailureKind::Timeout
            | FailureKind::Connect
            | FailureKind::RateLimited
            | FailureKind::Server
            | FailureKind::Auth
            | FailureKind::Rejected
            | FailureKind::Malformed => FailureClass::Infra,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Connect => "connect",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::Server => "server",
            FailureKind::Auth => "auth",
            FailureKind::Rejected => "rejected",
            FailureKind::Malformed => "malformed",
            FailureKind::Cancelled => "cancelled",
        }
    }
}

/// A failed call. `message` is short (at most [`MAX_MESSAGE`] bytes), names what
/// went wrong and never carries a secret or a whole response body.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    /// The HTTP status, when there was one.
    pub status: Option<u16>,
    /// From `Retry-After` (seconds or an HTTP date) or a CLI's reset time.
    pub retry_after: Option<Duration>,
    pub message: String,
    pub rate: Option<RateSignal>,
    /// Tokens the provider reported even though the call failed (billable).
    pub usage: Option<Usage>,
    pub reported_cost_nanos: Option<i64>,
}

/// The longest failure message kept.
pub const MAX_MESSAGE: usize = 300;

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            status: None,
            retry_after: None,
            message: short(message.into()),
            rate: None,
            usage: None,
            reported_cost_nanos: None,
        }
    }
}

/// Cuts `s` to at most [`MAX_MESSAGE`] bytes on a character boundary.
pub fn short(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Calls `target` with `req`. Returns when the provider answered, failed, the
/// request's timeout passed, or `ct` was cancelled (then with `Cancelled`, after
/// the HTTP request was dropped or the child's process group killed).
pub async fn call(
    client: &reqwest::Client,
    target: &Target,
    req: &Request,
    ct: &CancellationToken,
) -> Result<Answer, Failure> {
    match target.kind {
        Kind::Openai => http::call(client, target, req, ct, openai::build, openai::parse).await,
        Kind::Anthropic => {
            http::call(client, target, req, ct, anthropic::build, anthropic::parse).await
        }
        Kind::Gemini => http::call(client, target, req, ct, gemini::build, gemini::parse).await,
        Kind::ClaudeCli | Kind::CodexCli | Kind::GeminiCli => cli::call(target, req, ct).await,
    }
}
