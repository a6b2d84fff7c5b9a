//! The command line: `serve`, `keys`, `orgs`, `migrate`, `audit`, `module audit`, `call`,
//! `quota report`, `backup`, `restore`, `import`. Parses flags, layers them
//! over the loaded config (the last layer), and runs the command. Start-up code:
//! `anyhow` is used here and in `main` only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::auth::{self, Principal, Role};
use crate::config::{Config, LogFormat};
use crate::store::{AuditEntry, KeyInsert};

#[derive(Parser, Debug)]
#[command(
    name = "vaultline",
    version,
    about = "An MCP control plane for AI coding agents"
)]
pub struct Cli {
    /// Config file (TOML). Default: the platform config dir's vaultline/config.toml, if present.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Database file (overrides db_path).
    #[arg(long, global = true)]
    pub db: Option<PathBuf>,
    /// Log format: plain or json (overrides log.format).
    #[arg(long, global = true)]
    pub log_format: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve MCP over stdio or Streamable HTTP.
    Serve(ServeArgs),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Manage orgs.
    #[command(subcommand)]
    Orgs(OrgsCmd),
    /// Apply pending migrations and print the schema version.
    Migrate,
    /// Run one tool action in-process as the owner of an org and print its
    /// structured result as JSON (e.g. `call billing '{"action":"balance"}' --org acme`).
    Call {
        /// Tool name: workflow, task, checkpoint, billing, health, ...
        tool: String,
        /// The tool's arguments as a JSON object (default `{}`).
        args: Option<String>,
        #[arg(long)]
        org: String,
    },
    /// Quota accounts: the daily report.
    #[command(subcommand)]
    Quota(QuotaCmd),
    /// Take a consistent copy of the database (safe while servers run), verify
    /// it, prune old copies (backup.keep) and print a JSON report.
    Backup {
        /// A new file, or a directory (default: backup.dir, else backups/ beside
        /// the database).
        #[arg(long)]
        to: Option<PathBuf>,
    },
    /// Replace the database with a checked backup copy. Refuses while a server
    /// runs on it; keeps the replaced file as <db>.replaced-<time>.
    Restore {
        /// The backup file to restore.
        path: PathBuf,
    },
    /// Import vault-mcp's data (a `wrangler d1 export` dump or its `backup` JSON)
    /// into an org, in one transaction; a second import of the same file adds nothing.
    Import(ImportArgs),
    /// Modules: the lifecycle audit.
    #[command(subcommand)]
    Module(ModuleCmd),
    /// Print the append-only audit trail (key and admin actions) as JSON Lines.
    Audit {
        #[arg(long)]
        org: Option<String>,
        /// At most this many entries (oldest first).
        #[arg(long, default_value_t = 10_000)]
        limit: u32,
    },
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The file: a `wrangler d1 export` SQL dump or a vault-mcp backup JSON document.
    pub path: PathBuf,
    #[arg(long)]
    pub org: String,
    /// Print the report without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// auto (by the first character), d1 or backup.
    #[arg(long, default_value = "auto", value_parser = parse_format)]
    pub format: crate::import::Format,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Serve one local user over stdin/stdout.
    #[arg(long, conflicts_with = "http")]
    pub stdio: bool,
    /// Serve Streamable HTTP on this address (e.g. 127.0.0.1:8787).
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Stateless HTTP: no sessions, plain JSON replies, for several replicas.
    #[arg(long)]
    pub stateless: bool,
    /// Comma-separated toolsets to list (tool names, all, compat).
    #[arg(long, value_delimiter = ',')]
    pub toolsets: Option<Vec<String>>,
    /// Hide and refuse every action that writes.
    #[arg(long)]
    pub read_only: bool,
    /// Serve only the MCP conformance-suite fixtures, without keys, on loopback.
    /// Never serves real data. For the conformance test runner only.
    #[arg(long, requires = "http")]
    pub conformance_fixtures: bool,
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Create a key and print it once on stdout.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long)]
        name: Option<String>,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        org: Option<String>,
    },
    /// Revoke a key at once.
    Revoke { key_id: String },
    /// Make a new key; the old one keeps working for the grace period, then stops.
    Rotate {
        key_id: String,
        /// Grace period in days (default: auth.rotation_grace_days, 7).
        #[arg(long)]
        grace_days: Option<u32>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModuleCmd {
    /// Print an org's module audit (draft, validate, promote, install, rollback,
    /// uninstall: actor, module, version, hash, time) as JSON Lines, oldest first.
    Audit {
        #[arg(long)]
        org: String,
        /// Only this module (namespace/name).
        #[arg(long)]
        module: Option<String>,
        #[arg(long, default_value_t = 100_000)]
        limit: u32,
    },
}

#[derive(Subcommand, Debug)]
pub enum QuotaCmd {
    /// Run the daily quota audit now: write quota-report-DATE.json and .yaml,
    /// raise its alerts, print the JSON on stdout (for system timers).
    Report {
        /// Only this org (default: every org with accounts).
        #[arg(long)]
        org: Option<String>,
        /// Directory for the files (default: quota.report_dir, with /ORG for --org).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The day to report, YYYY-MM-DD (UTC; default today). A past day is
        /// reported as of its last millisecond and raises no alerts.
        #[arg(long)]
        date: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum OrgsCmd {
    /// Create an org (an id of a-z, 0-9, - and _).
    Create { org: String },
    /// List orgs.
    List,
    /// Show an org's billing account, or change its markup and mode.
    Billing {
        org: String,
        /// Markup in basis points: 20000 = 2.0x (the default); at least 10000.
        #[arg(long)]
        markup_bp: Option<u32>,
        /// prepaid (reservations also need credit) or postpaid (the default).
        #[arg(long, value_parser = ["prepaid", "postpaid"])]
        mode: Option<String>,
    },
}

fn parse_format(s: &str) -> Result<crate::import::Format, String> {
    crate::import::Format::parse(s)
        .ok_or_else(|| format!("unknown format {s:?} (auto, d1, backup)"))
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("unknown role {s:?} (viewer, operator, admin, owner)"))
}

/// Loads config and applies the flags layer.
pub fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut cfg = Config::load(cli.config.as_deref())?;
    if let Some(db) = &cli.db {
        cfg.db_path = db.clone();
    }
    if let Some(f) = &cli.log_format {
        cfg.log.format = match f.as_str() {
            "plain" => LogFormat::Plain,
            "json" => LogFormat::Json,
            other => bail!("--log-format: unknown format {other:?} (plain, json)"),
        };
    }
    if let Command::Serve(s) = &cli.command {
        if s.stateless {
            cfg.http.stateless = true;
        }
        if let Some(t) = &s.toolsets {
            cfg.tools.toolsets = t.clone();
        }
        if s.read_only {
            cfg.tools.read_only = true;
        }
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Logs to stderr only (stdout is the stdio transport).
pub fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Plain => builder.try_init(),
    };
}

/// Cancels the token on SIGINT or SIGTERM.
fn shutdown_on_signals(ct: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        ct.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        tracing::info!("shutting down");
        ct.cancel();
    });
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = load_config(&cli)?;
    init_logging(&cfg);
    // A mistyped path would otherwise create, and back up, an empty database.
    if matches!(cli.command, Command::Backup { .. }) && !cfg.db_path.is_file() {
        bail!(
            "no database at {} (check --db or db_path)",
            cfg.db_path.display()
        );
    }
    // Every command that opens the database holds a shared lock on `<db>.lock`
    // until it exits, so `restore` (which takes it exclusively) never swaps the
    // file under a server or a command, and neither starts during a restore.
    let lock = match &cli.command {
        Command::Restore { .. } => None,
        Command::Serve(s) if s.conformance_fixtures => None,
        _ => Some(crate::backup::lock_shared(&cfg.db_path)?),
    };
    if let (Command::Serve(_), Some(l)) = (&cli.command, &lock)
        && l.shared_with_another
    {
        tracing::info!(db = %cfg.db_path.display(), "another vaultline process has this database open too (scheduled work is shared through leases)");
    }
    match cli.command {
        Command::Serve(args) => serve(cfg, args).await,
        Command::Keys(cmd) => keys(cfg, cmd).await,
        Command::Orgs(cmd) => orgs(cfg, cmd).await,
        Command::Call { tool, args, org } => {
            let app = App::new(cfg)?;
            let r = call_tool(&app, &tool, args.as_deref(), &org).await;
            app.meter.flush_runs().await;
            app.store.shutdown();
            println!("{}", serde_json::to_string_pretty(&r?)?);
            Ok(())
        }
        Command::Quota(cmd) => quota(cfg, cmd).await,
        Command::Import(args) => {
            let app = App::new(cfg)?;
            let format = args.format;
            let r = crate::import::run(&app, &args.path, &args.org, format, args.dry_run).await;
            app.store.shutdown();
            let report = r?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.text());
            }
            Ok(())
        }
        Command::Module(ModuleCmd::Audit { org, module, limit }) => {
            let app = App::new(cfg)?;
            let rows = app
                .store
                .module_audit_list(&org, module.as_deref(), limit)
                .await;
            app.store.shutdown();
            for r in rows? {
                println!("{}", serde_json::to_string(&r)?);
            }
            Ok(())
        }
        Command::Audit { org, limit } => {
            let app = App::new(cfg)?;
            let rows = app.store.audit_list(org.as_deref(), limit).await;
            app.store.shutdown();
            for r in rows? {
                println!("{}", serde_json::to_string(&r)?);
            }
            Ok(())
        }
        Command::Backup { to } => {
            // An older database is copied before anything migrates it (the copy
            // to take before an upgrade); otherwise the recorded path below.
            let latest = crate::store::MIGRATIONS.last().map_or(0, |m| m.0);
            let (bcfg, db, dest) = (cfg.backup.clone(), cfg.db_path.clone(), to.clone());
            let early = tokio::task::spawn_blocking(move || {
                crate::backup::run_unmigrated(
                    &bcfg,
                    &db,
                    dest.as_deref(),
                    latest,
                    chrono::Utc::now(),
                )
            })
            .await??;
            if let Some(r) = early {
                eprintln!(
                    "the database is at schema version {} (this binary: {latest}): copied as it is, not migrated",
                    r.schema_version
                );
                for p in &r.pruned {
                    eprintln!("pruned {p}");
                }
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            let app = App::new(cfg)?;
            let key = app.clock.now_text();
            let r = crate::backup::run(&app, to.as_deref(), "cli", &key).await;
            let pending = app.alerts.flush(std::time::Duration::from_secs(30)).await;
            if pending > 0 {
                eprintln!("{pending} alert webhook deliveries were still pending at exit");
            }
            app.store.shutdown();
            let r = r?;
            for p in &r.pruned {
                eprintln!("pruned {p}");
            }
            println!("{}", serde_json::to_string_pretty(&r)?);
            Ok(())
        }
        Command::Restore { path } => {
            let latest = crate::store::MIGRATIONS.last().map_or(0, |m| m.0);
            let db = cfg.db_path.clone();
            let now = chrono::Utc::now();
            let r = tokio::task::spawn_blocking(move || {
                crate::backup::restore(&db, &path, latest, now)
            })
            .await??;
            match &r.replaced {
                Some(old) => eprintln!("restored {}; the replaced database is kept as {old}", r.db),
                None => eprintln!("restored {}", r.db),
            }
            println!("{}", serde_json::to_string_pretty(&r)?);
            Ok(())
        }
        Command::Migrate => {
            let app = App::new(cfg)?;
            let m = app.store.migration_status();
            println!(
                "schema version {} (latest {}); applied now: {:?}",
                m.current, m.latest, m.applied_now
            );
            app.store.shutdown();
            Ok(())
        }
    }
}

async fn serve(cfg: Config, args: ServeArgs) -> anyhow::Result<()> {
    let ct = CancellationToken::new();
    shutdown_on_signals(ct.clone());
    if args.conformance_fixtures {
        let addr = args
            .http
            .context("--conformance-fixtures needs --http ADDR")?;
        return crate::transport::fixtures::serve_fixtures(addr, ct).await;
    }
    let app = App::new(cfg)?;
    app.spawn_probe(ct.clone());
    app.meter.spawn(ct.clone());
    crate::dispatch::engine::Dispatcher::spawn_reaper(app.clone(), ct.clone());
    // The daily quota audit (when enabled) and the quota gauges of /metrics.
    crate::quota::audit::spawn_schedule(app.clone(), ct.clone());
    crate::backup::spawn_schedule(app.clone(), ct.clone());
    let result = if args.stdio {
        let org = app.config.stdio.org.clone();
        app.store.ensure_org(&org, &app.clock.now_text()).await?;
        let principal = Principal::local(&org, app.config.stdio.role);
        tracing::info!(org = %org, role = %principal.role, "serving MCP over stdio");
        crate::transport::stdio::serve(app.clone(), principal, ct).await
    } else {
        let addr = args.http.unwrap_or(app.config.http.addr);
        crate::transport::http::serve(app.clone(), addr, ct).await
    };
    // Everything acknowledged is already committed; this writes the last run
    // units and drains what is queued.
    app.meter.flush_runs().await;
    app.store.shutdown();
    result
}

/// One tool call in-process as the org's owner (the operator at the console).
async fn call_tool(
    app: &Arc<App>,
    tool: &str,
    args: Option<&str>,
    org: &str,
) -> anyhow::Result<serde_json::Value> {
    if !app
        .store
        .list_orgs()
        .await?
        .iter()
        .any(|(id, _, _)| id == org)
    {
        bail!("unknown org {org:?}; create it with `vaultline orgs create {org}`");
    }
    let args: serde_json::Value = match args {
        Some(a) => serde_json::from_str(a).context("the arguments are not a JSON object")?,
        None => serde_json::json!({}),
    };
    let principal = Principal {
        org: org.to_string(),
        role: Role::Owner,
        key_id: format!("cli:{}", whoami()),
    };
    let out = crate::tools::call_as(app, &principal, tool, args)
        .await
        .map_err(|e| anyhow::anyhow!("{tool}: {e}"))?;
    Ok(out.structured)
}

async fn keys(cfg: Config, cmd: KeysCmd) -> anyhow::Result<()> {
    let app = App::new(cfg)?;
    let r = keys_inner(&app, cmd).await;
    app.store.shutdown();
    r
}

fn audit(app: &App, org: &str, action: &str, subject: &str, detail: Option<String>) -> AuditEntry {
    AuditEntry {
        org_id: org.to_string(),
        id: app.ids.next(),
        actor: format!("cli:{}", whoami()),
        action: action.to_string(),
        subject: Some(subject.to_string()),
        detail,
        created_at: app.clock.now_text(),
    }
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
}

async fn keys_inner(app: &Arc<App>, cmd: KeysCmd) -> anyhow::Result<()> {
    match cmd {
        KeysCmd::Create { org, role, name } => {
            auth::validate_org_slug(&org).map_err(anyhow::Error::msg)?;
            let k = auth::generate_key();
            let id = app.ids.next();
            let now = app.clock.now_text();
            app.store
                .insert_key(
                    KeyInsert {
                        id: id.clone(),
                        org_id: org.clone(),
                        name: name.clone(),
                        role: role.as_str().into(),
                        prefix: k.prefix.clone(),
                        secret_sha256: k.sha256_hex.clone(),
                        created_at: now,
                    },
                    audit(app, &org, "key.create", &id, Some(format!("role={role}"))),
                )
                .await
                .map_err(|e| match e {
                    crate::error::Error::NotFound { .. } => {
                        anyhow::anyhow!("org {org:?} does not exist; create it with `vaultline orgs create {org}`")
                    }
                    other => other.into(),
                })?;
            eprintln!(
                "created key {id} (prefix {}, org {org}, role {role}); it is shown once:",
                k.prefix
            );
            println!("{}", k.full);
        }
        KeysCmd::List { org } => {
            let keys = app.store.list_keys(org.as_deref()).await?;
            let now = app.clock.now();
            println!(
                "{:<26}  {:<12}  {:<10}  {:<8}  {:<8}  {:<24}  name",
                "id", "org", "prefix", "role", "state", "last used"
            );
            for k in keys {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else if k
                    .expires_at
                    .as_deref()
                    .and_then(crate::clock::parse_time)
                    .is_some_and(|t| t <= now)
                {
                    "expired"
                } else if k.expires_at.is_some() {
                    "grace"
                } else {
                    "active"
                };
                println!(
                    "{:<26}  {:<12}  {:<10}  {:<8}  {:<8}  {:<24}  {}",
                    k.id,
                    k.org_id,
                    k.prefix,
                    k.role,
                    state,
                    k.last_used_at.as_deref().unwrap_or("-"),
                    k.name.as_deref().unwrap_or("")
                );
            }
        }
        KeysCmd::Revoke { key_id } => {
            let k = app
                .store
                .key_by_id(&key_id)
                .await?
                .with_context(|| format!("no key with id {key_id}"))?;
            app.store
                .revoke_key(
                    &key_id,
                    &app.clock.now_text(),
                    audit(app, &k.org_id, "key.revoke", &key_id, None),
                )
                .await?;
            eprintln!(
                "revoked key {key_id}; a running server stops accepting it within {} ms",
                app.config.auth.cache_ttl_ms
            );
        }
        KeysCmd::Rotate { key_id, grace_days } => {
            let old = app
                .store
                .key_by_id(&key_id)
                .await?
                .with_context(|| format!("no key with id {key_id}"))?;
            let days = grace_days.unwrap_or(app.config.auth.rotation_grace_days);
            let grace_end =
                crate::clock::fmt_time(app.clock.now() + chrono::Duration::days(i64::from(days)));
            let k = auth::generate_key();
            let id = app.ids.next();
            app.store
                .rotate_key(
                    &key_id,
                    KeyInsert {
                        id: id.clone(),
                        org_id: old.org_id.clone(),
                        name: old.name.clone(),
                        role: old.role.clone(),
                        prefix: k.prefix.clone(),
                        secret_sha256: k.sha256_hex.clone(),
                        created_at: app.clock.now_text(),
                    },
                    &grace_end,
                    audit(
                        app,
                        &old.org_id,
                        "key.rotate",
                        &key_id,
                        Some(format!("new={id} grace_end={grace_end}")),
                    ),
                )
                .await?;
            eprintln!(
                "rotated key {key_id} → {id}; the old key works until {grace_end}. The new key is shown once:"
            );
            println!("{}", k.full);
        }
    }
    Ok(())
}

async fn quota(cfg: Config, cmd: QuotaCmd) -> anyhow::Result<()> {
    let app = App::new(cfg)?;
    let r = async {
        match cmd {
            QuotaCmd::Report { org, dir, date } => {
                if let Some(o) = &org {
                    auth::validate_org_slug(o).map_err(|e| anyhow::anyhow!("--org: {e}"))?;
                }
                let date = date
                    .as_deref()
                    .map(|d| crate::quota::audit::parse_date("--date", d))
                    .transpose()?;
                let dir = dir.unwrap_or_else(|| {
                    let base = app.config.quota.report_dir();
                    match &org {
                        Some(o) => base.join(o),
                        None => base,
                    }
                });
                let (report, files) =
                    crate::quota::audit::run(&app, org.as_deref(), date, &dir).await?;
                // An operator's run counts as the day's audit for the schedule.
                let today = app.clock.now().date_naive().to_string();
                if org.is_none() && report.date == today {
                    app.store
                        .lease_mark_done(
                            crate::quota::audit::LEASE,
                            &format!("cli:{}", whoami()),
                            &today,
                            &app.clock.now_text(),
                        )
                        .await?;
                }
                for f in &files {
                    eprintln!("wrote {}", f.display());
                }
                let raised = report.alerts.iter().filter(|a| a.raised).count();
                eprintln!(
                    "{} accounts, {} alerts ({raised} raised now)",
                    report.accounts.len(),
                    report.alerts.len()
                );
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
        }
        anyhow::Ok(())
    }
    .await;
    // Give queued webhook deliveries a moment before the process exits.
    let pending = app.alerts.flush(std::time::Duration::from_secs(30)).await;
    if pending > 0 {
        eprintln!("{pending} alert webhook deliveries were still pending at exit");
    }
    app.store.shutdown();
    r
}

async fn orgs(cfg: Config, cmd: OrgsCmd) -> anyhow::Result<()> {
    let app = App::new(cfg)?;
    let r = async {
        match cmd {
            OrgsCmd::Create { org } => {
                auth::validate_org_slug(&org).map_err(anyhow::Error::msg)?;
                app.store.create_org(&org, &app.clock.now_text()).await?;
                eprintln!("created org {org}");
            }
            OrgsCmd::List => {
                for (id, created, keys) in app.store.list_orgs().await? {
                    println!("{id}\tcreated {created}\t{keys} live keys");
                }
            }
            OrgsCmd::Billing {
                org,
                markup_bp,
                mode,
            } => {
                if !app
                    .store
                    .list_orgs()
                    .await?
                    .iter()
                    .any(|(id, _, _)| *id == org)
                {
                    bail!("unknown org {org:?}; create it with `vaultline orgs create {org}`");
                }
                let mut acct = app.store.billing_account(&org).await?;
                if markup_bp.is_some() || mode.is_some() {
                    let markup = markup_bp.unwrap_or(acct.markup_bp);
                    let prepaid = mode.as_deref().map_or(acct.prepaid, |m| m == "prepaid");
                    let detail = format!(
                        "markup_bp={markup} mode={}",
                        if prepaid { "prepaid" } else { "postpaid" }
                    );
                    acct = app
                        .store
                        .set_billing_account_audited(
                            &org,
                            markup,
                            prepaid,
                            &app.clock.now_text(),
                            Some(audit(&app, &org, "billing.account", &org, Some(detail))),
                        )
                        .await?;
                }
                println!(
                    "{}",
                    serde_json::json!({
                        "org": acct.org_id,
                        "markup_bp": acct.markup_bp,
                        "mode": if acct.prepaid { "prepaid" } else { "postpaid" },
                    })
                );
            }
        }
        Ok(())
    }
    .await;
    app.store.shutdown();
    r
}
