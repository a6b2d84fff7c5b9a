//! execbench: the latency vaultline adds to one successful, single-attempt
//! `execute run` over calling the provider directly, beside the latency a
//! LiteLLM proxy adds in front of the same provider, measured in one run.
//!
//! The provider is the fake (`vaultline-fakeprovider`) in this process on
//! 127.0.0.1. vaultline is the real release binary, `vaultline serve --http
//! 127.0.0.1:0`, started as a child with a temporary config, database (a real
//! SQLite file, WAL, synchronous=NORMAL, as the server always runs), org,
//! operator key and one metered quota account; its ladder is one `openai`
//! rung (`deepseek` / `deepseek-chat`) whose base URL is the fake. So each
//! measured `execute run` includes the run, its stage, usage, reservation and
//! ledger writes, committed before the answer is returned.
//!
//! Rows, each at concurrency 1 and 16 (each worker its own connection and, for
//! vaultline, its own MCP session), after an unmeasured warm-up:
//! - direct: `POST /v1/chat/completions` to the fake, the body vaultline sends;
//! - vaultline: `tools/call execute {"action":"run","task_id":..,"verbosity":"summary"}`
//!   over Streamable HTTP; the tasks are created before the timed phase
//!   (`task create` is setup, timed apart and printed as a note);
//! - LiteLLM (with `--litellm-url`): the same body to the proxy, whose one model
//!   points at the fake. `tools/execbench/run.sh` installs and starts it.
//!
//! Added latency = row p50 − direct p50 (p99 likewise). Prints a Markdown
//! table and the ratio LiteLLM-added / vaultline-added p50 (target ≥ 20).
//! It is not a test and gates nothing, except that `--smoke` fails when a call
//! fails.
//!
//! Usage: execbench [--vaultline PATH] [--calls 2000] [--litellm-url URL --litellm-key K]
//!        execbench --smoke   (200 calls a row, no LiteLLM; a few seconds, for CI)

mod mcp;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::json;
use vaultline_fakeprovider::{DEFAULT_KEY, FakeProvider};

#[derive(Parser)]
#[command(name = "execbench")]
struct Args {
    /// The vaultline binary (default: `vaultline` beside this one).
    #[arg(long)]
    vaultline: Option<PathBuf>,
    /// Measured calls per row and concurrency, direct and vaultline.
    #[arg(long, default_value_t = 2000)]
    calls: usize,
    /// Measured calls per concurrency through LiteLLM (it is ~20× slower).
    #[arg(long, default_value_t = 500)]
    litellm_calls: usize,
    /// Unmeasured calls before each row.
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    /// The fake provider's port (0: any). run.sh fixes it so LiteLLM's config can name it.
    #[arg(long, default_value_t = 0)]
    fake_port: u16,
    /// A LiteLLM proxy in front of the fake (e.g. http://127.0.0.1:4000); absent: skipped.
    #[arg(long)]
    litellm_url: Option<String>,
    /// The proxy's master key.
    #[arg(long, env = "LITELLM_MASTER_KEY", hide_env_values = true)]
    litellm_key: Option<String>,
    /// The proxy's model name for the fake.
    #[arg(long, default_value = MODEL)]
    litellm_model: String,
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    concurrency: Vec<usize>,
    /// A quick run for CI: 200 calls a row, 20 warm-up, no LiteLLM.
    #[arg(long)]
    smoke: bool,
}

const ORG: &str = "bench";
const PROVIDER: &str = "deepseek";
const MODEL: &str = "deepseek-chat";
/// The system prompt vaultline's dispatcher sends (`dispatch/engine.rs`), so
/// the direct and proxied requests carry the same bytes as vaultline's.
const SYSTEM: &str = "You are a careful software engineer working for an automated dispatcher. Answer the task directly and completely.";
const TITLE: &str = "Explain the retry policy";
const INSTRUCTION: &str = "Say in one sentence when a failed provider call is retried.";
/// The rung's `max_output_tokens` default, sent as `max_tokens`.
const MAX_TOKENS: u32 = 8192;

/// The chat-completions body vaultline's `openai` adapter builds for the task.
fn chat_body(model: &str) -> String {
    let prompt = format!("# Task: {TITLE}\n\n{INSTRUCTION}\n");
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": prompt}
        ],
        "max_tokens": MAX_TOKENS
    })
    .to_string()
}

/// Latencies of one row, each with the moment its call ended.
#[derive(Default)]
struct Sample {
    lat: Vec<(Instant, Duration)>,
}

impl Sample {
    /// Nearest-rank percentile in milliseconds.
    fn pct(&self, p: f64) -> f64 {
        pct_ms(self.lat.iter().map(|(_, d)| *d), p)
    }

    /// p50 of the first and of the last tenth of the calls, in the order they
    /// ended: a path whose cost grows with the calls already made shows here.
    fn drift(&self) -> (f64, f64) {
        let mut v = self.lat.clone();
        v.sort_by_key(|(at, _)| *at);
        let tenth = (v.len() / 10).max(1).min(v.len());
        let first = pct_ms(v[..tenth].iter().map(|(_, d)| *d), 50.0);
        let last = pct_ms(v[v.len() - tenth..].iter().map(|(_, d)| *d), 50.0);
        (first, last)
    }
}

/// Nearest-rank percentile of latencies, in milliseconds.
fn pct_ms(lat: impl Iterator<Item = Duration>, p: f64) -> f64 {
    let mut v: Vec<f64> = lat.map(|d| d.as_secs_f64() * 1e3).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// What a worker does once; each worker owns one client.
enum Worker {
    Chat {
        client: reqwest::Client,
        url: String,
        key: String,
        body: String,
    },
    Execute {
        session: mcp::Session,
        tasks: Arc<Mutex<Vec<String>>>,
    },
}

impl Worker {
    async fn once(&mut self) -> Result<Duration> {
        match self {
            Worker::Chat {
                client,
                url,
                key,
                body,
            } => mcp::chat(client, url, key, body).await,
            Worker::Execute { session, tasks } => {
                let task_id = tasks
                    .lock()
                    .map_err(|_| anyhow::anyhow!("task pool poisoned"))?
                    .pop()
                    .context("ran out of pre-created tasks")?;
                let args = json!({"action": "run", "task_id": task_id, "verbosity": "summary"});
                let (latency, result) = session.call_tool("execute", &args).await?;
                let run = &result["structuredContent"]["run"];
                if run["state"] != "succeeded" || run["attempts"] != 1 {
                    bail!(
                        "not a successful single-attempt run: {}",
                        mcp::short(&result)
                    );
                }
                Ok(latency)
            }
        }
    }

    async fn close(self) {
        if let Worker::Execute { session, .. } = self {
            session.close().await;
        }
    }
}

/// `calls` calls spread over the workers (one per concurrency slot), each
/// calling back to back; returns the workers and the latencies. Any failed
/// call fails the row: the numbers are of successful calls only.
async fn round(workers: Vec<Worker>, calls: usize) -> Result<(Vec<Worker>, Sample)> {
    let left = Arc::new(AtomicUsize::new(calls));
    let mut handles = Vec::new();
    for mut w in workers {
        let left = left.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                match w.once().await {
                    Ok(d) => lat.push((Instant::now(), d)),
                    Err(e) => return (w, Err(e)),
                }
            }
            (w, Ok(lat))
        }));
    }
    let mut back = Vec::new();
    let mut sample = Sample::default();
    let mut failure = None;
    for h in handles {
        let (w, r) = h.await?;
        back.push(w);
        match r {
            Ok(lat) => sample.lat.extend(lat),
            Err(e) => failure = Some(e),
        }
    }
    if let Some(e) = failure {
        for w in back {
            w.close().await;
        }
        return Err(e);
    }
    Ok((back, sample))
}

/// A warm-up round, then the measured one; the workers are closed after.
async fn measure(workers: Vec<Worker>, warmup: usize, calls: usize) -> Result<Sample> {
    let (workers, _) = round(workers, warmup).await?;
    let (workers, sample) = round(workers, calls).await?;
    for w in workers {
        w.close().await;
    }
    Ok(sample)
}

/// The vaultline server, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything a vaultline child needs: the binary, the config file and the env.
struct Vaultline {
    bin: PathBuf,
    config: PathBuf,
    db: PathBuf,
}

impl Vaultline {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--config")
            .arg(&self.config)
            .env("VAULTLINE_DB_PATH", &self.db)
            .env("VAULTLINE_HTTP__RATE_LIMIT_PER_SECOND", "0")
            .env("VAULTLINE_BILLING__BREAKER__DAILY_HALT_USD", "100000")
            .env("VAULTLINE_BILLING__BREAKER__TASK_HALT_USD", "100000")
            .env("VAULTLINE_BILLING__BREAKER__TASK_ALERT_USD", "100000")
            .env("VAULTLINE_BILLING__BREAKER__MONTHLY_ALERT_USD", "1000000")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        c
    }

    /// Runs a CLI command to its end; returns its stdout.
    fn run(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command()
            .args(args)
            .output()
            .with_context(|| format!("run {}", self.bin.display()))?;
        if !out.status.success() {
            bail!(
                "vaultline {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `serve --http 127.0.0.1:0`, up when it prints its address.
    fn serve(&self) -> Result<Server> {
        let mut child = self
            .command()
            .args(["serve", "--http", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start vaultline serve")?;
        let stderr = child.stderr.take().context("the child's stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the server's stderr to its end so the pipe never fills; the
        // address goes back on the channel, warnings are shown.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.trim().to_string());
                } else {
                    eprintln!("vaultline: {line}");
                }
            }
        });
        let mut server = Server {
            child,
            url: String::new(),
        };
        // On failure `server` drops here and the child is killed.
        server.url = rx
            .recv_timeout(Duration::from_secs(30))
            .context("vaultline serve did not print its address within 30 s")?;
        Ok(server)
    }
}

/// One table row.
struct Row {
    name: &'static str,
    c: usize,
    sample: Sample,
}

fn ms(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        format!("{x:.2} ms")
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.calls = 200;
        args.warmup = 20;
        args.litellm_url = None;
    }
    let bin = match &args.vaultline {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench's directory")?
            .join("vaultline"),
    };
    if !bin.exists() {
        bail!(
            "no vaultline binary at {}; build it (cargo build --release) or pass --vaultline",
            bin.display()
        );
    }

    let fake = FakeProvider::bind(
        SocketAddr::from(([127, 0, 0, 1], args.fake_port)),
        vec![DEFAULT_KEY.to_string()],
    )
    .await
    .context("start the fake provider")?;
    let fake_base = format!("{}/v1", fake.url().trim_end_matches('/'));

    let dir = tempfile::Builder::new()
        .prefix("vaultline-execbench-")
        .tempdir()?;
    let key_file = dir.path().join("deepseek.key");
    write_private(&key_file, DEFAULT_KEY)?;
    let config = dir.path().join("vaultline.toml");
    std::fs::write(
        &config,
        format!(
            "[[execute.rungs]]\nadapter = \"openai\"\nprovider = \"{PROVIDER}\"\nmodel = \"{MODEL}\"\nbase_url = \"{fake_base}\"\n"
        ),
    )?;
    let vl = Vaultline {
        bin,
        config,
        db: dir.path().join("vaultline.db"),
    };
    vl.run(&["orgs", "create", ORG])?;
    // An admin key adds the quota account; the measured calls use an operator key.
    let admin_key = create_key(&vl, "admin")?;
    let key = create_key(&vl, "operator")?;
    let server = vl.serve()?;
    let mut admin = mcp::Session::open(&server.url, &admin_key).await?;
    admin
        .call_tool(
            "quota",
            &json!({"action": "accounts", "op": "add", "provider": PROVIDER, "name": "a1",
                "billing_mode": "metered", "secret_ref": format!("file:{}", key_file.display()),
                "limit_kind": "requests", "limit": 100_000_000u64, "window": "day"}),
        )
        .await
        .context("add the quota account")?;
    admin.close().await;

    println!(
        "execbench: fake provider {fake_base}; vaultline {} (database {}, WAL, synchronous=NORMAL)",
        server.url,
        vl.db.display()
    );
    let body = chat_body(MODEL);
    let direct_url = format!("{fake_base}/chat/completions");
    let mut rows: Vec<Row> = Vec::new();
    let mut create_notes = Vec::new();
    let mut skipped = None;
    for &c in &args.concurrency {
        // direct
        let workers = (0..c)
            .map(|_| {
                Ok(Worker::Chat {
                    client: mcp::client()?,
                    url: direct_url.clone(),
                    key: DEFAULT_KEY.into(),
                    body: body.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let sample = measure(workers, args.warmup, args.calls)
            .await
            .context("direct")?;
        rows.push(Row {
            name: "direct",
            c,
            sample,
        });

        // vaultline: the tasks first (setup), with the same concurrency.
        let n = args.warmup + args.calls;
        let (tasks, creates) = create_tasks(&server.url, &key, c, n).await?;
        create_notes.push((c, creates));
        let tasks = Arc::new(Mutex::new(tasks));
        let mut workers = Vec::new();
        for _ in 0..c {
            workers.push(Worker::Execute {
                session: mcp::Session::open(&server.url, &key).await?,
                tasks: tasks.clone(),
            });
        }
        let sample = measure(workers, args.warmup, args.calls)
            .await
            .context("vaultline execute run")?;
        rows.push(Row {
            name: "vaultline execute",
            c,
            sample,
        });

        // LiteLLM
        if let (Some(url), Some(lkey)) = (&args.litellm_url, &args.litellm_key) {
            let workers = (0..c)
                .map(|_| {
                    Ok(Worker::Chat {
                        client: mcp::client()?,
                        url: format!("{}/v1/chat/completions", url.trim_end_matches('/')),
                        key: lkey.clone(),
                        body: chat_body(&args.litellm_model),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let warm = args.warmup.min(args.litellm_calls / 5).max(10);
            match measure(workers, warm, args.litellm_calls).await {
                Ok(sample) => rows.push(Row {
                    name: "LiteLLM proxy",
                    c,
                    sample,
                }),
                Err(e) => skipped = Some(format!("LiteLLM failed at c={c}: {e:#}")),
            }
        } else if args.litellm_url.is_some() {
            skipped = Some("--litellm-url without --litellm-key (or LITELLM_MASTER_KEY)".into());
        } else {
            skipped = Some("no --litellm-url given".into());
        }
    }
    drop(server);

    print_report(&rows, &create_notes, skipped.as_deref());
    Ok(())
}

/// `keys create` with this role; returns the key.
fn create_key(vl: &Vaultline, role: &str) -> Result<String> {
    let out = vl.run(&["keys", "create", "--org", ORG, "--role", role])?;
    match out.lines().last().map(str::trim) {
        Some(k) if !k.is_empty() => Ok(k.to_string()),
        _ => bail!("keys create --role {role} printed no key"),
    }
}

/// Creates `n` tasks over `c` sessions; returns their ids and the create latencies.
async fn create_tasks(url: &str, key: &str, c: usize, n: usize) -> Result<(Vec<String>, Sample)> {
    let left = Arc::new(AtomicUsize::new(n));
    let mut handles = Vec::new();
    for _ in 0..c {
        let (left, url, key) = (left.clone(), url.to_string(), key.to_string());
        handles.push(tokio::spawn(async move {
            let mut s = mcp::Session::open(&url, &key).await?;
            let mut out = Vec::new();
            let args = json!({"action": "create", "title": TITLE, "instruction": INSTRUCTION});
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let (d, r) = s.call_tool("task", &args).await.context("task create")?;
                let id = r["structuredContent"]["task"]["id"]
                    .as_str()
                    .context("task create returned no task id")?
                    .to_string();
                out.push((id, d));
            }
            s.close().await;
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut ids = Vec::new();
    let mut sample = Sample::default();
    for h in handles {
        for (id, d) in h.await?? {
            ids.push(id);
            sample.lat.push((Instant::now(), d));
        }
    }
    Ok((ids, sample))
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{text}")?;
    Ok(())
}

fn print_report(rows: &[Row], creates: &[(usize, Sample)], skipped: Option<&str>) {
    let direct = |c: usize| rows.iter().find(|r| r.name == "direct" && r.c == c);
    let added =
        |r: &Row, p: f64| direct(r.c).map_or(f64::NAN, |d| r.sample.pct(p) - d.sample.pct(p));
    println!();
    println!("| path | c | calls | p50 | p99 | added p50 | added p99 |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for name in ["direct", "vaultline execute", "LiteLLM proxy"] {
        for r in rows.iter().filter(|r| r.name == name) {
            let (a50, a99) = if name == "direct" {
                ("".to_string(), "".to_string())
            } else {
                (ms(added(r, 50.0)), ms(added(r, 99.0)))
            };
            println!(
                "| {} | {} | {} | {} | {} | {a50} | {a99} |",
                r.name,
                r.c,
                r.sample.lat.len(),
                ms(r.sample.pct(50.0)),
                ms(r.sample.pct(99.0)),
            );
        }
    }
    println!();
    for (c, s) in creates {
        println!(
            "setup, not in the added latency: task create at c={c}: p50 {}, p99 {} ({} calls)",
            ms(s.pct(50.0)),
            ms(s.pct(99.0)),
            s.lat.len()
        );
    }
    for r in rows.iter().filter(|r| r.name != "direct") {
        let (first, last) = r.sample.drift();
        println!(
            "{} at c={}: p50 of the first tenth of the calls {}, of the last tenth {}",
            r.name,
            r.c,
            ms(first),
            ms(last)
        );
    }
    let find = |name: &str, c: usize| rows.iter().find(|r| r.name == name && r.c == c);
    let mut any = false;
    for r in rows.iter().filter(|r| r.name == "vaultline execute") {
        let Some(l) = find("LiteLLM proxy", r.c) else {
            continue;
        };
        any = true;
        let (v, lp) = (added(r, 50.0), added(l, 50.0));
        // A vaultline that adds nothing measurable meets any ratio.
        let (ratio, met) = if v > 0.0 {
            (format!("{:.1}", lp / v), lp / v >= 20.0)
        } else {
            ("∞".to_string(), lp > 0.0)
        };
        println!(
            "c={}: LiteLLM added p50 / vaultline added p50 = {lp:.2} ms / {v:.2} ms = {ratio} (target >= 20: {})",
            r.c,
            if met { "met" } else { "NOT met" }
        );
    }
    if !any {
        println!("LiteLLM skipped: {}", skipped.unwrap_or("no LiteLLM row"));
    } else if let Some(s) = skipped {
        println!("note: {s}");
    }
}
