//! Agent CLIs as providers: `claude -p`, `codex exec`, `gemini -p`, each run as a
//! child process in its own process group, in the request's working directory
//! (an isolated worktree for repository work, see [`super::worktree`]) or a
//! scratch directory.
//!
//! [`invocation`] decides the command line, environment and stdin (pure);
//! [`process::run`] runs it under the request's timeout and the caller's
//! cancellation, killing the whole group; the parsers ([`claude`], [`codex`],
//! [`gemini`]) turn what the CLI printed into an [`Answer`] or a [`Failure`]
//! (pure, golden-tested against `fixtures/cli/outputs/`). This module never
//! judges an answer's quality (an empty answer is still an answer), never retries
//! and never puts the prompt or the secret on a command line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::{Answer, Failure, FailureKind, Kind, Request, Target};

pub mod claude;
pub mod codex;
pub mod gemini;
pub mod process;
pub mod signals;

#[cfg(test)]
mod golden;

/// What a finished CLI left behind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    /// `None` when the process was ended by a signal.
    pub exit_code: Option<i32>,
    /// True when stdout went past [`process::MAX_STDOUT`] and was cut.
    pub truncated: bool,
}

/// One run of a CLI, decided before anything is spawned.
#[derive(Clone, PartialEq)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The child's whole environment (it does not inherit the server's).
    pub env: Vec<(String, OsString)>,
    /// Written to the child's stdin, then stdin is closed.
    pub stdin: String,
}

impl std::fmt::Debug for Invocation {
    // The environment may hold the account's secret: name the variables only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Invocation")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &names)
            .field("stdin_bytes", &self.stdin.len())
            .finish()
    }
}

/// Variables passed through from the server's environment to every CLI: what a
/// program needs to run, find its config and login under `HOME`, and reach the
/// network through the operator's proxy. Nothing else is inherited, so a secret
/// the server holds in its environment (another account's key) never reaches an
/// agent that runs arbitrary commands.
const PASS_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "XDG_STATE_HOME",
    "XDG_RUNTIME_DIR",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
];

impl Kind {
    /// The program run when the target names none.
    fn default_program(self) -> &'static str {
        match self {
            Kind::CodexCli => "codex",
            Kind::GeminiCli => "gemini",
            _ => "claude",
        }
    }

    /// The environment variable the CLI reads its API key from: Claude Code reads
    /// `ANTHROPIC_API_KEY`; `codex exec` reads `CODEX_API_KEY` (exec only; plain
    /// `OPENAI_API_KEY` is for `codex login`); Gemini CLI reads `GEMINI_API_KEY`.
    pub fn secret_env(self) -> &'static str {
        match self {
            Kind::CodexCli => "CODEX_API_KEY",
            Kind::GeminiCli => "GEMINI_API_KEY",
            _ => "ANTHROPIC_API_KEY",
        }
    }

    /// Each CLI's own config locations, passed through when the operator set them.
    fn own_env(self) -> &'static [&'static str] {
        match self {
            Kind::CodexCli => &["CODEX_HOME"],
            Kind::GeminiCli => &[
                "GEMINI_CLI_HOME",
                "GOOGLE_CLOUD_PROJECT",
                "GOOGLE_CLOUD_LOCATION",
                "GOOGLE_GENAI_USE_VERTEXAI",
                "GOOGLE_GENAI_USE_GCA",
                "GOOGLE_APPLICATION_CREDENTIALS",
            ],
            _ => &["CLAUDE_CONFIG_DIR"],
        }
    }
}

/// The command line, environment and stdin for `req` on `target`, with `inherit`
/// reading the server's environment (a seam for tests).
///
/// - claude: `claude -p --output-format json --model M [--append-system-prompt S]
///   <extra_args>`, the prompt on stdin (`claude -p` reads its prompt from stdin
///   when none is given as an argument).
/// - codex: `codex exec --json --skip-git-repo-check --model M <extra_args> -`,
///   the prompt on stdin (`-` asks for it). The repo check is skipped because a
///   scratch directory is not a git repository; a worktree is.
/// - gemini: `gemini --output-format json --model M <extra_args> --prompt ""`,
///   the prompt on stdin (headless mode reads stdin and puts it before the
///   `--prompt` text, which is empty).
///
/// codex and gemini have no system-prompt flag, so a system prompt goes first on
/// stdin, separated from the prompt by a blank line.
pub fn invocation(
    target: &Target,
    req: &Request,
    inherit: impl Fn(&str) -> Option<OsString>,
) -> Invocation {
    let kind = target.kind;
    let program = target
        .command
        .clone()
        .unwrap_or_else(|| PathBuf::from(kind.default_program()));
    let mut args: Vec<String> = Vec::new();
    let mut stdin = String::new();
    match kind {
        Kind::CodexCli => {
            args.extend(["exec", "--json", "--skip-git-repo-check", "--model"].map(String::from));
            args.push(req.model.clone());
            args.extend(target.extra_args.iter().cloned());
            args.push("-".into());
        }
        Kind::GeminiCli => {
            args.extend(["--output-format", "json", "--model"].map(String::from));
            args.push(req.model.clone());
            args.extend(target.extra_args.iter().cloned());
            args.extend(["--prompt", ""].map(String::from));
        }
        _ => {
            args.extend(["-p", "--output-format", "json", "--model"].map(String::from));
            args.push(req.model.clone());
            if let Some(system) = &req.system {
                args.push("--append-system-prompt".into());
                args.push(system.clone());
            }
            args.extend(target.extra_args.iter().cloned());
        }
    }
    if kind != Kind::ClaudeCli
        && let Some(system) = &req.system
    {
        stdin.push_str(system);
        stdin.push_str("\n\n");
    }
    stdin.push_str(&req.prompt);

    let mut env: Vec<(String, OsString)> = PASS_ENV
        .iter()
        .chain(kind.own_env())
        .filter_map(|name| inherit(name).map(|v| (name.to_string(), v)))
        .collect();
    env.push(("NO_COLOR".into(), "1".into()));
    if let Some(secret) = &target.secret {
        env.push((kind.secret_env().into(), secret.expose().into()));
    }
    Invocation {
        program,
        args,
        env,
        stdin,
    }
}

/// Runs `req` on the CLI `target` names. See [`super::call`].
pub async fn call(
    target: &Target,
    req: &Request,
    ct: &CancellationToken,
) -> Result<Answer, Failure> {
    let inv = invocation(target, req, |name| std::env::var_os(name));
    let result = run_in_dir(target.kind, &inv, req, ct).await;
    // A CLI may echo what it was given; a failure's message never carries the key.
    result.map_err(|mut f| {
        if let Some(secret) = &target.secret
            && !secret.expose().is_empty()
        {
            f.message = f.message.replace(secret.expose(), "***");
        }
        f
    })
}

async fn run_in_dir(
    kind: Kind,
    inv: &Invocation,
    req: &Request,
    ct: &CancellationToken,
) -> Result<Answer, Failure> {
    // The scratch directory lives until the child is gone (dropped at the end).
    let scratch;
    let dir: &Path = match &req.workdir {
        Some(dir) => {
            if !dir.is_dir() {
                return Err(Failure::new(
                    FailureKind::Rejected,
                    format!("working directory {} does not exist", dir.display()),
                ));
            }
            dir
        }
        None => {
            scratch = tempfile::Builder::new()
                .prefix("vaultline-cli-")
                .tempdir()
                .map_err(|e| {
                    Failure::new(
                        FailureKind::Connect,
                        format!("could not make a scratch directory: {e}"),
                    )
                })?;
            scratch.path()
        }
    };
    let out = process::run(inv, dir, req.timeout, ct).await?;
    parse(kind, &out)
}

/// The parser for `kind`'s output.
pub fn parse(kind: Kind, out: &Output) -> Result<Answer, Failure> {
    match kind {
        Kind::CodexCli => codex::parse(out),
        Kind::GeminiCli => gemini::parse(out),
        _ => claude::parse(out),
    }
}

/// The failure for output a parser could not read: what the error text says
/// (usage limit, credential, API or network), else `Malformed`. A non-zero exit
/// whose text names nothing known is `Malformed` too, not `Server`: the ladder
/// treats both as infra, and "the output was not what we expect" is the claim
/// we can actually back.
pub(crate) fn unreadable(program: &str, out: &Output, what: &str) -> Failure {
    if out.truncated {
        return Failure::new(
            FailureKind::Malformed,
            format!(
                "`{program}` printed more than {} bytes",
                process::MAX_STDOUT
            ),
        );
    }
    let text = format!("{}\n{}", out.stderr, out.stdout);
    if let Some(reading) = signals::read(&text) {
        let line = out
            .stderr
            .lines()
            .chain(out.stdout.lines())
            .find(|l| signals::read(l).is_some())
            .map(signals::last_line)
            .unwrap_or_default();
        return reading.failure(format!("`{program}`: {line}"));
    }
    let message = match out.exit_code {
        Some(0) => format!("`{program}` exited 0 but printed {what}"),
        Some(code) => {
            let line = signals::last_line(if out.stderr.trim().is_empty() {
                &out.stdout
            } else {
                &out.stderr
            });
            format!("`{program}` exited with status {code}: {line}")
        }
        None => format!("`{program}` was ended by a signal"),
    };
    Failure::new(FailureKind::Malformed, message)
}

/// The JSON object in `text`: the whole text, else the first line that starts
/// one (the CLIs may print warnings before it), read to the end of that value.
pub(crate) fn json_object(text: &str) -> Option<serde_json::Value> {
    let trimmed = text.trim();
    if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_str(trimmed) {
        return Some(v);
    }
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('{') {
            let mut values = serde_json::Deserializer::from_str(&text[offset..])
                .into_iter::<serde_json::Value>();
            if let Some(Ok(v @ serde_json::Value::Object(_))) = values.next() {
                return Some(v);
            }
        }
        offset += line.len();
    }
    None
}

/// A JSON number as a token count (floats and negatives read as 0).
pub(crate) fn count(v: Option<&serde_json::Value>) -> u64 {
    v.and_then(serde_json::Value::as_u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::quota::secret::Secret;

    fn target(kind: Kind) -> Target {
        Target {
            kind,
            base_url: None,
            command: None,
            extra_args: vec!["--extra".into()],
            secret: Some(Secret::new("sk-test-secret-123")),
        }
    }

    fn request() -> Request {
        Request {
            model: "m-1".into(),
            system: Some("be brief".into()),
            prompt: "the prompt".into(),
            max_output_tokens: 100,
            answer_schema: None,
            timeout: Duration::from_secs(5),
            workdir: None,
        }
    }

    fn inherit(name: &str) -> Option<OsString> {
        match name {
            "PATH" => Some("/bin".into()),
            "HOME" => Some("/home/x".into()),
            "CODEX_HOME" => Some("/home/x/.codex".into()),
            _ => None,
        }
    }

    #[test]
    fn command_lines_keep_prompt_and_secret_off_argv() {
        let cases: &[(Kind, &[&str], &str, &str)] = &[
            (
                Kind::ClaudeCli,
                &[
                    "-p",
                    "--output-format",
                    "json",
                    "--model",
                    "m-1",
                    "--append-system-prompt",
                    "be brief",
                    "--extra",
                ],
                "the prompt",
                "ANTHROPIC_API_KEY",
            ),
            (
                Kind::CodexCli,
                &[
                    "exec",
                    "--json",
                    "--skip-git-repo-check",
                    "--model",
                    "m-1",
                    "--extra",
                    "-",
                ],
                "be brief\n\nthe prompt",
                "CODEX_API_KEY",
            ),
            (
                Kind::GeminiCli,
                &[
                    "--output-format",
                    "json",
                    "--model",
                    "m-1",
                    "--extra",
                    "--prompt",
                    "",
                ],
                "be brief\n\nthe prompt",
                "GEMINI_API_KEY",
            ),
        ];
        for (kind, args, stdin, key_var) in cases {
            let inv = invocation(&target(*kind), &request(), inherit);
            assert_eq!(inv.args, *args, "{kind:?}");
            assert_eq!(inv.stdin, *stdin, "{kind:?}");
            assert!(!inv.args.iter().any(|a| a.contains("sk-test-secret")));
            let key = inv.env.iter().find(|(k, _)| k == key_var);
            assert_eq!(
                key.map(|(_, v)| v.clone()),
                Some("sk-test-secret-123".into())
            );
            assert!(!format!("{inv:?}").contains("sk-test-secret"));
        }
    }

    #[test]
    fn environment_is_an_allowlist() {
        let inv = invocation(&target(Kind::CodexCli), &request(), inherit);
        let names: Vec<&str> = inv.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["PATH", "HOME", "CODEX_HOME", "NO_COLOR", "CODEX_API_KEY"]
        );
        let mut no_secret = target(Kind::ClaudeCli);
        no_secret.secret = None;
        let inv = invocation(&no_secret, &request(), |_| Some("leak".into()));
        assert!(!inv.env.iter().any(|(k, _)| k == "ANTHROPIC_API_KEY"));
    }

    #[test]
    fn json_object_after_warnings() {
        let v = json_object("warning: x\n{\"a\": 1}\ntrailing").unwrap();
        assert_eq!(v["a"], 1);
        assert!(json_object("no json here").is_none());
    }
}
