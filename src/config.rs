//! Configuration: one explicit struct, built once at start-up and passed down.
//!
//! Layers, lowest first: built-in defaults → TOML file (`--config`, else the
//! default path if it exists) → `VAULTLINE_*` environment → command-line flags
//! (applied by `cli`). Nested keys use `__` in the environment:
//! `VAULTLINE_HTTP__RATE_LIMIT_PER_SECOND=50`. This module reads no global state
//! besides the environment at build time and holds no secrets.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::auth::Role;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Path of the SQLite database file. Default: `<data dir>/vaultline/vaultline.db`.
    pub db_path: PathBuf,
    /// `normal` (a commit survives a crash of the process) or `full` (also power loss).
    pub db_synchronous: Synchronous,
    /// Profile: `production`, `development` or `test`. Tests may set the clock only in `test`.
    pub profile: Profile,
    pub log: LogConfig,
    pub http: HttpConfig,
    pub stdio: StdioConfig,
    pub auth: AuthConfig,
    pub metrics: MetricsConfig,
    pub tools: ToolsConfig,
    pub checkpoints: CheckpointConfig,
    pub billing: BillingConfig,
    pub quota: QuotaConfig,
    pub alerts: AlertsConfig,
    /// Online backups: where they go, how many are kept, the optional schedule.
    pub backup: BackupConfig,
    /// The dispatch ladder and how `execute` runs it.
    pub execute: ExecuteConfig,
    /// Modules: credentials their tools may use, and their run-time limits.
    pub modules: ModulesConfig,
    /// Fixed clock for tests (RFC 3339), honoured only with `profile = "test"`.
    pub test_clock: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Normal,
    Full,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Production,
    Development,
    Test,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `plain` or `json`; logs always go to stderr.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `vaultline=debug`; `RUST_LOG` wins when set.
    pub level: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address for `serve --http` when the flag gives none.
    pub addr: SocketAddr,
    /// Host header values accepted (DNS-rebinding protection). Loopback by default.
    pub allowed_hosts: Vec<String>,
    /// Origin values accepted when a request carries `Origin` (scheme://host:port).
    /// Loopback origins on any port are accepted by default.
    pub allowed_origins: Vec<String>,
    /// Largest request body in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Sustained requests per second allowed per key (0 = no limit).
    pub rate_limit_per_second: u32,
    /// Burst allowance per key.
    pub rate_limit_burst: u32,
    /// Stateless mode: no sessions, plain JSON replies, any replica can answer.
    pub stateless: bool,
    /// Idle time after which a stateful session is dropped (seconds).
    pub session_keep_alive_secs: u64,
    /// Interval of SSE keep-alive pings (seconds).
    pub sse_ping_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StdioConfig {
    /// Org the local stdio user acts in; created on first use.
    pub org: String,
    /// Role of the local stdio user.
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Let `initialize` and `tools/list` through without a key (for portals that
    /// list tools before they authenticate). Off by default.
    pub allow_anonymous_discovery: bool,
    /// How long a verified key stays cached in memory (milliseconds). A key revoked
    /// from another process stops working within this time.
    pub cache_ttl_ms: u64,
    /// Default grace period of `keys rotate`, in days.
    pub rotation_grace_days: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` without a key. Public metrics carry no org labels.
    pub public: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolsConfig {
    /// Toolsets listed and callable: tool names, `all`, and `compat` (vault-mcp's old tool names).
    pub toolsets: Vec<String>,
    /// Hide and refuse every action that writes.
    pub read_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Extra regular expressions redacted from transcripts at ingest.
    pub redact_patterns: Vec<String>,
    /// Largest transcript chunk in characters.
    pub chunk_chars: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// UTC time of the daily quota audit, `HH:MM`.
    pub audit_utc: String,
    /// Where the audit writes `quota-report-YYYY-MM-DD.{json,yaml}`.
    /// Default: `<data dir>/vaultline/reports`.
    pub report_dir: Option<PathBuf>,
    /// Run the audit on its schedule inside `serve`. Default: on, except in the
    /// `test` profile.
    pub audit_enabled: Option<bool>,
    /// How long the ladder reuses an org's account figures when choosing an
    /// account (milliseconds; 0 = read them for every call).
    pub candidate_cache_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// POST each alert as JSON here (besides the `vaultline::alert` log event).
    pub webhook_url: Option<String>,
    /// Retries of a failed webhook delivery, with exponential backoff.
    pub webhook_retries: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// Where `vaultline backup` and the schedule write
    /// `vaultline-YYYYMMDDTHHMMSSZ.db`. Default: `backups/` beside the database.
    pub dir: Option<PathBuf>,
    /// How many copies to keep in that directory (newest first); older ones are
    /// pruned, and only after a good copy. At least 1.
    pub keep: u32,
    /// Take a backup every N hours inside `serve` (1..=168). Off by default.
    pub every_hours: Option<u32>,
    /// Or once a day at this UTC time, `HH:MM`. Off by default.
    pub daily_utc: Option<String>,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            dir: None,
            keep: 7,
            every_hours: None,
            daily_utc: None,
        }
    }
}

impl BackupConfig {
    pub fn dir(&self, db_path: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| {
            db_path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| Path::new("."))
                .join("backups")
        })
    }

    /// The daily time, when set and valid (`validate` has checked it).
    pub fn daily_time(&self) -> Option<chrono::NaiveTime> {
        self.daily_utc
            .as_deref()
            .and_then(|t| chrono::NaiveTime::parse_from_str(t, "%H:%M").ok())
    }

    fn validate(&self) -> Result<(), String> {
        if self.keep == 0 {
            return Err("backup.keep must be at least 1".into());
        }
        if let Some(h) = self.every_hours
            && !(1..=168).contains(&h)
        {
            return Err(format!(
                "backup.every_hours: {h} is out of range (1 to 168)"
            ));
        }
        if let Some(t) = &self.daily_utc
            && self.daily_time().is_none()
        {
            return Err(format!(
                "backup.daily_utc: {t:?} is not a UTC time HH:MM (e.g. \"03:30\")"
            ));
        }
        if self.every_hours.is_some() && self.daily_utc.is_some() {
            return Err("backup: set every_hours or daily_utc, not both".into());
        }
        Ok(())
    }
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            audit_utc: "02:00".into(),
            report_dir: None,
            audit_enabled: None,
            candidate_cache_ms: 1000,
        }
    }
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhook_url: None,
            webhook_retries: 5,
        }
    }
}

impl QuotaConfig {
    /// The audit time as (hour, minute); `validate` has checked it.
    pub fn audit_time(&self) -> Option<chrono::NaiveTime> {
        chrono::NaiveTime::parse_from_str(&self.audit_utc, "%H:%M").ok()
    }

    pub fn report_dir(&self) -> PathBuf {
        self.report_dir
            .clone()
            .unwrap_or_else(|| default_data_dir().join("reports"))
    }
}

impl Config {
    /// Does `serve` run the daily quota audit?
    pub fn audit_enabled(&self) -> bool {
        self.quota
            .audit_enabled
            .unwrap_or(self.profile != Profile::Test)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db_path: default_data_dir().join("vaultline.db"),
            db_synchronous: Synchronous::Normal,
            profile: Profile::Production,
            log: LogConfig::default(),
            http: HttpConfig::default(),
            stdio: StdioConfig::default(),
            auth: AuthConfig::default(),
            metrics: MetricsConfig::default(),
            tools: ToolsConfig::default(),
            checkpoints: CheckpointConfig::default(),
            billing: BillingConfig::default(),
            quota: QuotaConfig::default(),
            alerts: AlertsConfig::default(),
            backup: BackupConfig::default(),
            execute: ExecuteConfig::default(),
            modules: ModulesConfig::default(),
            test_clock: None,
        }
    }
}

/// Modules (tools added at run time).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModulesConfig {
    /// Where each credential a module names lives, by `"<org>/<NAME>"`: an
    /// `env:VAR` or `file:/path` reference (the file readable by the owner only).
    /// The secret itself is never stored, returned or logged.
    pub credentials: std::collections::BTreeMap<String, String>,
    /// Test profile only: fixed name resolution (`"api.weather.test" = "127.0.0.1"`),
    /// so tests can prove the private-address refusal without a network.
    pub resolve: std::collections::BTreeMap<String, String>,
    /// How long a prompt tool waits for the ladder's answer.
    pub prompt_wait_secs: u64,
    /// Attempts of `module generate`'s repair loop (at most 10).
    pub generate_tries: u32,
}

impl Default for ModulesConfig {
    fn default() -> Self {
        ModulesConfig {
            credentials: Default::default(),
            resolve: Default::default(),
            prompt_wait_secs: 60,
            generate_tries: 10,
        }
    }
}

/// The dispatch ladder: rungs in order (cheapest first), then consensus, then a
/// person. Each rung names an adapter, a provider (whose quota accounts form its
/// pool and whose prices the meter uses), a model and its limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecuteConfig {
    pub rungs: Vec<RungConfig>,
    /// Quality failures a run may have before consensus.
    pub quality_budget: u32,
    /// How many rungs (the strongest usable) answer side by side in consensus.
    pub consensus_k: u32,
    /// `execute run` waits this long, then returns the run id and goes on detached.
    pub detach_after_secs: u64,
    /// Client names (MCP `clientInfo.name`) whose elicitation answers count as a
    /// person's answer at the human rung.
    pub interactive_clients: Vec<String>,
    /// First backoff after an infra failure (milliseconds); doubles per retry, at most 8×.
    pub backoff_ms: u64,
    /// How long an account rests after an infra failure without a Retry-After (seconds).
    pub infra_cooldown_secs: u64,
    /// Where attempt worktrees live (default: `worktrees/` beside the database).
    pub worktree_dir: Option<PathBuf>,
    /// Longest a verifier command may run (seconds).
    pub verifier_timeout_secs: u64,
    /// A running run refreshes its heartbeat this often (seconds); one silent
    /// for three periods is marked interrupted.
    pub heartbeat_secs: u64,
}

/// One rung of the ladder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RungConfig {
    /// How the rung is named in runs and pins (default: the model).
    #[serde(default)]
    pub name: Option<String>,
    /// `openai` (any OpenAI-compatible endpoint), `anthropic`, `gemini`,
    /// `claude_cli`, `codex_cli`, `gemini_cli`.
    pub adapter: String,
    /// The provider: its quota accounts are the rung's pool, its price rows price the calls.
    pub provider: String,
    pub model: String,
    /// HTTP adapters: the API base URL (default: the provider's public API).
    #[serde(default)]
    pub base_url: Option<String>,
    /// CLI adapters: the program (default `claude`, `codex`, `gemini`).
    #[serde(default)]
    pub command: Option<PathBuf>,
    /// CLI adapters: extra arguments.
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default = "default_rung_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_max_output")]
    pub max_output_tokens: u32,
    /// Worst-case cost of one call; required for CLI rungs and for models
    /// without a price row.
    #[serde(default)]
    pub max_cost_usd: Option<Usd>,
}

fn default_rung_timeout() -> u64 {
    300
}

fn default_max_output() -> u32 {
    8192
}

impl RungConfig {
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.model)
    }

    fn http(name: &str, adapter: &str, provider: &str, model: &str, base: &str) -> RungConfig {
        RungConfig {
            name: Some(name.into()),
            adapter: adapter.into(),
            provider: provider.into(),
            model: model.into(),
            base_url: Some(base.into()),
            command: None,
            args: vec![],
            timeout_secs: default_rung_timeout(),
            max_output_tokens: default_max_output(),
            max_cost_usd: None,
        }
    }
}

impl Default for ExecuteConfig {
    fn default() -> Self {
        // vault-mcp's intended ladder: DeepSeek, Gemini Flash, Gemini Pro, Codex,
        // Claude Sonnet, Claude Opus (then consensus, then a person).
        let gemini = "https://generativelanguage.googleapis.com/v1beta";
        ExecuteConfig {
            rungs: vec![
                RungConfig::http(
                    "deepseek",
                    "openai",
                    "deepseek",
                    "deepseek-chat",
                    "https://api.deepseek.com",
                ),
                RungConfig::http(
                    "gemini-flash",
                    "gemini",
                    "gemini",
                    "gemini-2.5-flash",
                    gemini,
                ),
                RungConfig::http("gemini-pro", "gemini", "gemini", "gemini-2.5-pro", gemini),
                RungConfig::http(
                    "codex",
                    "openai",
                    "openai",
                    "gpt-5-codex",
                    "https://api.openai.com/v1",
                ),
                RungConfig::http(
                    "sonnet",
                    "anthropic",
                    "anthropic",
                    "claude-sonnet-4-6",
                    "https://api.anthropic.com",
                ),
                RungConfig::http(
                    "opus",
                    "anthropic",
                    "anthropic",
                    "claude-opus-4-6",
                    "https://api.anthropic.com",
                ),
            ],
            quality_budget: 3,
            consensus_k: 3,
            detach_after_secs: 45,
            interactive_clients: vec![],
            backoff_ms: 250,
            infra_cooldown_secs: 60,
            worktree_dir: None,
            verifier_timeout_secs: 300,
            heartbeat_secs: 10,
        }
    }
}

impl ExecuteConfig {
    pub fn worktree_dir(&self, db_path: &Path) -> PathBuf {
        self.worktree_dir.clone().unwrap_or_else(|| {
            db_path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join("worktrees")
        })
    }

    /// Checks the ladder; errors name the rung and field.
    fn validate(&self) -> Result<(), String> {
        if self.rungs.is_empty() {
            return Err("execute.rungs: the ladder needs at least one rung".into());
        }
        if self.quality_budget == 0 || self.quality_budget > 20 {
            return Err("execute.quality_budget must be between 1 and 20".into());
        }
        if self.consensus_k == 0 || self.consensus_k > 9 {
            return Err("execute.consensus_k must be between 1 and 9".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.rungs.iter().enumerate() {
            let at = format!("execute.rungs[{i}] ({})", r.name());
            let Some(kind) = crate::providers::Kind::parse(&r.adapter) else {
                let known: Vec<&str> = crate::providers::Kind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect();
                return Err(format!(
                    "{at}.adapter: unknown adapter {:?} (known: {})",
                    r.adapter,
                    known.join(", ")
                ));
            };
            if r.provider.trim().is_empty() || r.model.trim().is_empty() {
                return Err(format!("{at}: provider and model are required"));
            }
            if !names.insert(r.name().to_string()) {
                return Err(format!("{at}.name: two rungs are named {:?}", r.name()));
            }
            if matches!(r.name(), "consensus" | "human") {
                return Err(format!(
                    "{at}.name: {:?} is the ladder's own step, not a rung",
                    r.name()
                ));
            }
            if kind.is_cli() {
                if r.max_cost_usd.is_none() {
                    return Err(format!(
                        "{at}.max_cost_usd is required for a CLI rung (its worst case cannot be priced from tokens)"
                    ));
                }
            } else {
                let ok = r
                    .base_url
                    .as_deref()
                    .and_then(|u| reqwest::Url::parse(u).ok())
                    .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
                if !ok {
                    return Err(format!("{at}.base_url must be an http(s) URL"));
                }
            }
            if r.timeout_secs == 0 || r.timeout_secs > 3600 {
                return Err(format!("{at}.timeout_secs must be between 1 and 3600"));
            }
            if r.max_output_tokens == 0 || r.max_output_tokens > 1_000_000 {
                return Err(format!(
                    "{at}.max_output_tokens must be between 1 and 1000000"
                ));
            }
        }
        Ok(())
    }
}

/// Metering and billing: the circuit breaker, reservations, price overrides and
/// tool prices. Amounts are exact decimal dollars (`"20"`, `"0.15"`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BillingConfig {
    /// Source system written on the charges this server makes.
    pub source_system: String,
    pub breaker: BreakerConfig,
    /// A reservation without a heartbeat for this long expires (seconds).
    pub reservation_ttl_secs: u64,
    /// Price rows added to (or, same provider/model/effective time, replacing)
    /// the shipped price book.
    pub prices: Vec<PriceConfig>,
    /// Tools billed per call (`checkpoint = "0.001"`); the others cost nothing
    /// and are counted as run units only.
    pub tool_prices_usd: std::collections::BTreeMap<String, Usd>,
    /// How often the in-memory run-unit counters are written (milliseconds).
    pub run_unit_flush_ms: u64,
}

/// The cost circuit breaker, per org, on provider cost, in UTC days and months.
/// An amount of 0 turns that limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Provider cost per org per UTC day at which spending halts.
    pub daily_halt_usd: Usd,
    /// Provider cost per org per UTC month at which an alert is raised.
    pub monthly_alert_usd: Usd,
    /// Also halt at the monthly alert amount.
    pub monthly_halt: bool,
    /// Provider cost of one task at which an alert is raised.
    pub task_alert_usd: Usd,
    /// Provider cost of one task at which its spending halts.
    pub task_halt_usd: Usd,
}

/// One price row from config, in dollars per million tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub provider: String,
    pub model: String,
    /// RFC 3339 time from which the row applies.
    pub effective_from: String,
    pub input_usd_per_mtok: Usd,
    pub output_usd_per_mtok: Usd,
    #[serde(default)]
    pub cache_read_usd_per_mtok: Option<Usd>,
    #[serde(default)]
    pub cache_write_usd_per_mtok: Option<Usd>,
}

/// An exact dollar amount held as nano-dollars. Written as a decimal string
/// (`"0.15"`); integers and plain decimals from the environment are accepted and
/// parsed exactly from their shortest text form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usd(pub i64);

impl Usd {
    fn dollars(d: i64) -> Usd {
        Usd(d * crate::money::NANOS_PER_USD)
    }
}

impl Serialize for Usd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::money::usd_text(self.0))
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Usd, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(u64),
            Float(f64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(t) => t,
            Raw::Int(i) => i.to_string(),
            // Display gives the shortest text that round-trips, so 0.15 stays "0.15".
            Raw::Float(f) => f.to_string(),
        };
        crate::money::parse_usd("amount", &text)
            .map(Usd)
            .map_err(serde::de::Error::custom)
    }
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            source_system: "vaultline".into(),
            breaker: BreakerConfig::default(),
            reservation_ttl_secs: 120,
            prices: Vec::new(),
            tool_prices_usd: Default::default(),
            run_unit_flush_ms: 1000,
        }
    }
}

impl Default for BreakerConfig {
    /// vault-mcp's thresholds.
    fn default() -> Self {
        BreakerConfig {
            daily_halt_usd: Usd::dollars(20),
            monthly_alert_usd: Usd::dollars(80),
            monthly_halt: false,
            task_alert_usd: Usd::dollars(2),
            task_halt_usd: Usd::dollars(5),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Plain,
            level: "info,rmcp=warn".into(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8787)),
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: Vec::new(),
            max_body_bytes: 4 << 20,
            rate_limit_per_second: 100,
            rate_limit_burst: 200,
            stateless: false,
            session_keep_alive_secs: 3600,
            sse_ping_secs: 15,
        }
    }
}

impl Default for StdioConfig {
    fn default() -> Self {
        StdioConfig {
            org: "default".into(),
            role: Role::Owner,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            allow_anonymous_discovery: false,
            cache_ttl_ms: 1000,
            rotation_grace_days: 7,
        }
    }
}

impl Default for ToolsConfig {
    fn default() -> Self {
        ToolsConfig {
            toolsets: vec!["all".into()],
            read_only: false,
        }
    }
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            redact_patterns: Vec::new(),
            chunk_chars: 4000,
        }
    }
}

/// `$XDG_DATA_HOME/vaultline` (or the platform's equivalent), else `./.vaultline`.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("vaultline"))
        .unwrap_or_else(|| PathBuf::from(".vaultline"))
}

/// `$XDG_CONFIG_HOME/vaultline/config.toml` (or the platform's equivalent).
pub fn default_config_path() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("vaultline").join("config.toml"))
}

impl Config {
    /// Defaults → file → environment. `explicit` is `--config`; a missing explicit
    /// file is an error, a missing default file is not.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        let file = explicit
            .map(Path::to_path_buf)
            .or_else(|| default_config_path().filter(|p| p.exists()));
        match explicit {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError(format!(
                        "config file {} does not exist",
                        path.display()
                    )));
                }
                fig = fig.merge(Toml::file(path));
            }
            None => {
                if let Some(path) = default_config_path().filter(|p| p.exists()) {
                    fig = fig.merge(Toml::file(path));
                }
            }
        }
        // VAULTLINE_BLESS is the test suite's switch for regenerating schema
        // files, not a setting.
        fig = fig.merge(Env::prefixed("VAULTLINE_").ignore(&["bless"]).split("__"));
        let cfg: Config = fig
            .extract()
            .map_err(|e| ConfigError(format!("invalid configuration: {e}")))?;
        cfg.validate().map_err(|e| match &file {
            Some(f) => with_line(e, f),
            None => e,
        })?;
        Ok(cfg)
    }

    /// Checks that cannot be expressed in the types.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::auth::validate_org_slug(&self.stdio.org)
            .map_err(|e| ConfigError(format!("stdio.org: {e}")))?;
        if self.http.max_body_bytes < 1024 {
            return Err(ConfigError(
                "http.max_body_bytes must be at least 1024".into(),
            ));
        }
        if !(1..=10).contains(&self.modules.generate_tries) {
            return Err(ConfigError(
                "modules.generate_tries must be between 1 and 10".into(),
            ));
        }
        for (k, v) in &self.modules.credentials {
            if k.split_once('/').is_none() {
                return Err(ConfigError(format!(
                    "modules.credentials: key {k:?} must be \"<org>/<NAME>\""
                )));
            }
            crate::quota::secret::SecretRef::parse(v)
                .map_err(|e| ConfigError(format!("modules.credentials.\"{k}\": {e}")))?;
        }
        for (host, ip) in &self.modules.resolve {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(ConfigError(format!(
                    "modules.resolve.\"{host}\": {ip:?} is not an IP address"
                )));
            }
        }
        if self.checkpoints.chunk_chars < 200 {
            return Err(ConfigError(
                "checkpoints.chunk_chars must be at least 200".into(),
            ));
        }
        for p in &self.checkpoints.redact_patterns {
            regex::Regex::new(p).map_err(|e| {
                ConfigError(format!(
                    "checkpoints.redact_patterns: {p:?} is not a regex: {e}"
                ))
            })?;
        }
        for t in &self.tools.toolsets {
            if !crate::tools::is_known_toolset(t) {
                return Err(ConfigError(format!(
                    "tools.toolsets: unknown toolset {t:?} (known: {})",
                    crate::tools::KNOWN_TOOLSETS.join(", ")
                )));
            }
        }
        if self.billing.reservation_ttl_secs < 5 {
            return Err(ConfigError(
                "billing.reservation_ttl_secs must be at least 5".into(),
            ));
        }
        if self.billing.source_system.trim().is_empty() {
            return Err(ConfigError(
                "billing.source_system must not be empty".into(),
            ));
        }
        for (i, p) in self.billing.prices.iter().enumerate() {
            if crate::clock::parse_time(&p.effective_from).is_none() {
                return Err(ConfigError(format!(
                    "billing.prices[{i}].effective_from: {:?} is not an RFC 3339 time",
                    p.effective_from
                )));
            }
            if p.provider.trim().is_empty() || p.model.trim().is_empty() {
                return Err(ConfigError(format!(
                    "billing.prices[{i}]: provider and model are required"
                )));
            }
        }
        if self.quota.audit_time().is_none() {
            return Err(ConfigError(format!(
                "quota.audit_utc: {:?} is not a UTC time HH:MM (e.g. \"02:00\")",
                self.quota.audit_utc
            )));
        }
        if let Some(url) = &self.alerts.webhook_url {
            let ok = reqwest::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(ConfigError(
                    "alerts.webhook_url must be an http(s) URL".into(),
                ));
            }
        }
        if self.alerts.webhook_retries > 20 {
            return Err(ConfigError(
                "alerts.webhook_retries must be at most 20".into(),
            ));
        }
        self.execute.validate().map_err(ConfigError)?;
        self.backup.validate().map_err(ConfigError)?;
        if self.test_clock.is_some() && self.profile != Profile::Test {
            return Err(ConfigError(
                "test_clock is honoured only with profile = \"test\"".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Adds the config file's line to a ladder error (`execute.rungs[2].adapter: …`):
/// the line of that field inside the third `[[execute.rungs]]` table, or the
/// table's header when the field is not written there.
fn with_line(e: ConfigError, file: &Path) -> ConfigError {
    let Some(rest) = e.0.strip_prefix("execute.rungs[") else {
        return e;
    };
    let Some(index) = rest.split(']').next().and_then(|i| i.parse::<usize>().ok()) else {
        return e;
    };
    // Errors name the rung as `execute.rungs[0] (cheap).adapter`: the rung's
    // name, in brackets, sits between the index and the field.
    let after = rest.split_once(']').map_or("", |(_, a)| a);
    let after = match after.strip_prefix(" (") {
        Some(named) => [").", "):", ") "]
            .iter()
            .filter_map(|end| named.find(end))
            .min()
            .map_or("", |i| &named[i + 1..]),
        None => after,
    };
    let field = after
        .strip_prefix('.')
        .map(|f| {
            f.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("")
        })
        .filter(|f| !f.is_empty());
    let Ok(text) = std::fs::read_to_string(file) else {
        return e;
    };
    let mut seen = 0;
    let mut header = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            if header.is_some() {
                break;
            }
            if t.replace(' ', "") == "[[execute.rungs]]" {
                if seen == index {
                    header = Some(n + 1);
                }
                seen += 1;
            }
            continue;
        }
        if let (Some(_), Some(f)) = (header, field)
            && t.split('=').next().map(str::trim) == Some(f)
        {
            return ConfigError(format!("{} ({}:{})", e.0, file.display(), n + 1));
        }
    }
    match header {
        Some(n) => ConfigError(format!("{} ({}:{n})", e.0, file.display())),
        None => e,
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file_and_validate() {
        let cfg = Config::default();
        cfg.validate().unwrap();
        assert!(cfg.db_path.ends_with("vaultline.db"));
        assert_eq!(cfg.http.session_keep_alive_secs, 3600);
        assert!(!cfg.auth.allow_anonymous_discovery);
        assert!(cfg.audit_enabled());
        assert_eq!(cfg.quota.audit_utc, "02:00");
        assert!(cfg.quota.report_dir().ends_with("vaultline/reports"));
        assert_eq!(cfg.backup.keep, 7);
        assert!(cfg.backup.every_hours.is_none() && cfg.backup.daily_utc.is_none());
        assert_eq!(
            cfg.backup.dir(Path::new("/srv/vl/vaultline.db")),
            PathBuf::from("/srv/vl/backups")
        );
        let test = Config {
            profile: Profile::Test,
            ..Config::default()
        };
        assert!(!test.audit_enabled(), "off in the test profile unless set");
    }

    #[test]
    fn file_then_env_layering() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "db_path = \"/tmp/x.db\"\n[http]\nrate_limit_per_second = 5\nmax_body_bytes = 2048\n",
            )?;
            jail.set_env("VAULTLINE_HTTP__RATE_LIMIT_PER_SECOND", "7");
            let cfg = Config::load(Some(Path::new("c.toml"))).map_err(|e| e.0)?;
            assert_eq!(cfg.db_path, PathBuf::from("/tmp/x.db"));
            assert_eq!(cfg.http.rate_limit_per_second, 7, "env wins over file");
            assert_eq!(cfg.http.max_body_bytes, 2048, "file wins over defaults");
            Ok(())
        });
    }

    #[test]
    fn dollar_amounts_are_exact_from_file_and_env() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[billing.breaker]\ndaily_halt_usd = \"12.5\"\n[billing.tool_prices_usd]\ncheckpoint = \"0.001\"\n[[billing.prices]]\nprovider = \"x\"\nmodel = \"m\"\neffective_from = \"2026-01-01T00:00:00Z\"\ninput_usd_per_mtok = \"0.28\"\noutput_usd_per_mtok = 0.42\n",
            )?;
            jail.set_env("VAULTLINE_BILLING__BREAKER__TASK_HALT_USD", "7");
            jail.set_env("VAULTLINE_BILLING__BREAKER__TASK_ALERT_USD", "0.1");
            let cfg = Config::load(Some(Path::new("c.toml"))).map_err(|e| e.0)?;
            let b = &cfg.billing;
            assert_eq!(b.breaker.daily_halt_usd, Usd(12_500_000_000));
            assert_eq!(b.breaker.task_halt_usd, Usd(7_000_000_000));
            assert_eq!(b.breaker.task_alert_usd, Usd(100_000_000));
            assert_eq!(
                b.breaker.monthly_alert_usd,
                Usd(80_000_000_000),
                "default kept"
            );
            assert_eq!(b.tool_prices_usd["checkpoint"], Usd(1_000_000));
            assert_eq!(b.prices[0].input_usd_per_mtok, Usd(280_000_000));
            assert_eq!(
                b.prices[0].output_usd_per_mtok,
                Usd(420_000_000),
                "a float 0.42 parses exactly"
            );
            jail.create_file("bad.toml", "[billing.breaker]\ndaily_halt_usd = \"-3\"\n")?;
            let err = Config::load(Some(Path::new("bad.toml"))).unwrap_err();
            assert!(err.0.contains("daily_halt_usd"), "{}", err.0);
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "nonsense = 1\n")?;
            let err = Config::load(Some(Path::new("c.toml"))).unwrap_err();
            assert!(err.0.contains("nonsense"), "{}", err.0);
            jail.create_file("q.toml", "[quota]\naudit_utc = \"25:00\"\n")?;
            let err = Config::load(Some(Path::new("q.toml"))).unwrap_err();
            assert!(err.0.contains("quota.audit_utc"), "{}", err.0);
            jail.create_file("w.toml", "[alerts]\nwebhook_url = \"ftp://x\"\n")?;
            let err = Config::load(Some(Path::new("w.toml"))).unwrap_err();
            assert!(err.0.contains("alerts.webhook_url"), "{}", err.0);
            jail.create_file("x.toml", "[quota]\nschedule = 1\n")?;
            let err = Config::load(Some(Path::new("x.toml"))).unwrap_err();
            assert!(err.0.contains("schedule"), "{}", err.0);
            jail.create_file("b.toml", "[backup]\nkeep = 0\n")?;
            let err = Config::load(Some(Path::new("b.toml"))).unwrap_err();
            assert!(err.0.contains("backup.keep"), "{}", err.0);
            jail.create_file("b2.toml", "[backup]\ndaily_utc = \"3am\"\n")?;
            let err = Config::load(Some(Path::new("b2.toml"))).unwrap_err();
            assert!(err.0.contains("backup.daily_utc"), "{}", err.0);
            jail.create_file(
                "b3.toml",
                "[backup]\nevery_hours = 6\ndaily_utc = \"03:00\"\n",
            )?;
            let err = Config::load(Some(Path::new("b3.toml"))).unwrap_err();
            assert!(err.0.contains("not both"), "{}", err.0);
            jail.create_file("b4.toml", "[backup]\nevery_hours = 0\n")?;
            let err = Config::load(Some(Path::new("b4.toml"))).unwrap_err();
            assert!(err.0.contains("backup.every_hours"), "{}", err.0);
            jail.create_file("d.toml", "[tools]\ntoolsets = [\"bogus\"]\n")?;
            let err = Config::load(Some(Path::new("d.toml"))).unwrap_err();
            assert!(err.0.contains("bogus"), "{}", err.0);
            Ok(())
        });
    }

    #[test]
    fn a_rung_error_names_the_fields_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[execute]\nbackoff_ms = 1\n\n[[execute.rungs]]\nname = \"a\"\nadapter = \"openai\"\n\n[[execute.rungs]]\nname = \"b (x)\"\nmodel = \"m\"\nadapter = \"pigeon\"\n",
        )
        .unwrap();
        let at = |msg: &str| with_line(ConfigError(msg.into()), &f).0;
        let shown = f.display();
        // The field's own line, whether or not the rung's name is in the message.
        assert!(
            at("execute.rungs[1] (b (x)).adapter: unknown adapter")
                .ends_with(&format!("({shown}:11)"))
        );
        assert!(
            at("execute.rungs[1].adapter: unknown adapter").ends_with(&format!("({shown}:11)"))
        );
        assert!(at("execute.rungs[0] (a).adapter: bad").ends_with(&format!("({shown}:6)")));
        // No field, or a field not written in the table: the table's header.
        assert!(
            at("execute.rungs[1] (b (x)): provider and model are required")
                .ends_with(&format!("({shown}:8)"))
        );
        assert!(
            at("execute.rungs[0] (a).base_url must be an http(s) URL")
                .ends_with(&format!("({shown}:4)"))
        );
        assert_eq!(at("quota.audit_utc: bad"), "quota.audit_utc: bad");
    }
}
