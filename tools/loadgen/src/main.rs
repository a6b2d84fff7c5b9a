//! `loadgen`: a bounded load, cold-start and memory driver for MCP servers.
//!
//! Speaks MCP Streamable HTTP by hand (reqwest, no rmcp client) or stdio
//! (line-delimited JSON-RPC to a child process). Every run is bounded in time
//! and in calls, and only loopback addresses are accepted.
//!
//! ```text
//! loadgen --url http://127.0.0.1:PORT/mcp [--bearer T] [--tool echo] [--args JSON]
//!         [-c C] [--duration S | --calls N] [--warmup S] [--stateless] [--rss-pid PID]
//! loadgen --stdio [...same load options] -- CMD ARGS...
//! loadgen --startup [--url URL] [--repeat N] -- CMD ARGS...     # HTTP cold start
//! loadgen --startup --stdio [--repeat N] -- CMD ARGS...         # stdio cold start
//! ```
//!
//! Load runs print one line: `label mode tool c calls errors secs calls/s
//! p50_ms p90_ms p99_ms [peak_rss_mb]`, where `calls` counts every measured
//! call, `errors` the failed ones, and `calls/s` and the percentiles cover the
//! successful ones. A call succeeds only if its JSON-RPC result is present and
//! `isError` is not true.

mod http;
mod jsonrpc;
mod startup;
mod stats;
mod stdio;

use std::{net::IpAddr, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use clap::Parser;
use reqwest::Url;

use crate::stats::{Report, percentile};

/// Hard limits, so no invocation can run unbounded.
const MAX_CONCURRENCY: usize = 1024;
const MAX_SECS: f64 = 3600.0;
const MAX_CALLS: u64 = 1_000_000_000;
/// Time bound of a `--calls N` run when `--duration` is not given.
const CALLS_MODE_SECS: f64 = 600.0;
/// Default length of a timed run.
const DEFAULT_SECS: f64 = 5.0;

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Bounded MCP load / startup / memory driver (127.0.0.1 only)"
)]
struct Cli {
    /// MCP endpoint (loopback only). Required for HTTP load; optional for --startup
    /// (else taken from the address the server prints, with path /mcp).
    #[arg(long)]
    url: Option<String>,
    /// Bearer token sent as `Authorization: Bearer TOKEN`.
    #[arg(long, env = "LOADGEN_BEARER", hide_env_values = true)]
    bearer: Option<String>,
    /// Tool to call.
    #[arg(long, default_value = "echo")]
    tool: String,
    /// Tool arguments (a JSON object).
    #[arg(long, default_value = r#"{"message":"hello"}"#)]
    args: String,
    /// Calls in flight (HTTP: one worker and session each).
    #[arg(short = 'c', long, default_value_t = 1)]
    concurrency: usize,
    /// Measured seconds (default 5; with --calls, a cap of 600).
    #[arg(long)]
    duration: Option<f64>,
    /// Stop after N measured calls.
    #[arg(long)]
    calls: Option<u64>,
    /// Unmeasured seconds before the measured window.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// No initialize and no session: POST tools/call directly.
    #[arg(long)]
    stateless: bool,
    /// Protocol version offered (2026-07-28 or later implies --stateless).
    #[arg(long, default_value = "2025-11-25")]
    protocol_version: String,
    /// Per-request timeout (and startup timeout), seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Drive a stdio server spawned from the command after `--`.
    #[arg(long)]
    stdio: bool,
    /// Measure spawn → first answered tools/list of the command after `--`.
    #[arg(long)]
    startup: bool,
    /// Cold starts to measure with --startup.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// After the run, report this process's peak RSS (VmHWM) in MB.
    #[arg(long)]
    rss_pid: Option<u32>,
    /// Name printed as `label=` on the result line.
    #[arg(long, default_value = "-")]
    label: String,
    /// Server command and its arguments (after `--`).
    #[arg(last = true)]
    command: Vec<String>,
}

/// How long and how hard to drive.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Calls in flight.
    pub concurrency: usize,
    /// Unmeasured lead-in.
    pub warmup: Duration,
    /// Measured window (upper bound).
    pub duration: Duration,
    /// Measured calls (upper bound).
    pub max_calls: u64,
}

/// Refuse anything but loopback targets.
pub fn check_loopback(url: &Url) -> Result<()> {
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ok = bare == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !ok || !matches!(url.scheme(), "http" | "https") {
        bail!("refusing {url}: only http(s) to 127.0.0.1 / localhost / ::1 is allowed");
    }
    Ok(())
}

/// Seconds from the command line, checked against [`MAX_SECS`].
fn secs(name: &str, value: f64) -> Result<Duration> {
    if !(0.0..=MAX_SECS).contains(&value) {
        bail!("--{name} must be between 0 and {MAX_SECS} seconds");
    }
    Ok(Duration::from_secs_f64(value))
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    if !(1..=MAX_CONCURRENCY).contains(&cli.concurrency) {
        bail!("--concurrency must be 1..={MAX_CONCURRENCY}");
    }
    let max_calls = cli.calls.unwrap_or(MAX_CALLS);
    if max_calls > MAX_CALLS {
        bail!("--calls must be at most {MAX_CALLS}");
    }
    let default_secs = if cli.calls.is_some() {
        CALLS_MODE_SECS
    } else {
        DEFAULT_SECS
    };
    let plan = Plan {
        concurrency: cli.concurrency,
        warmup: secs("warmup", cli.warmup)?,
        duration: secs("duration", cli.duration.unwrap_or(default_secs))?,
        max_calls,
    };
    let timeout = secs("timeout", cli.timeout)?;
    let args: serde_json::Value = serde_json::from_str(&cli.args).context("--args is not JSON")?;
    if !args.is_object() {
        bail!("--args must be a JSON object");
    }
    let url = cli
        .url
        .as_deref()
        .map(Url::parse)
        .transpose()
        .context("--url")?;
    if let Some(u) = &url {
        check_loopback(u)?;
    }
    let target = |url: Url| http::Target {
        url,
        bearer: cli.bearer.clone(),
        protocol_version: cli.protocol_version.clone(),
        stateless: cli.stateless,
        timeout,
    };

    if cli.startup {
        if !(1..=1000).contains(&cli.repeat) {
            bail!("--repeat must be 1..=1000");
        }
        if cli.command.is_empty() {
            bail!("--startup needs a server command after --");
        }
        let mut runs = Vec::with_capacity(cli.repeat as usize);
        for _ in 0..cli.repeat {
            let took = if cli.stdio {
                startup::stdio_once(&cli.command, &cli.protocol_version, timeout).await?
            } else {
                let fixed = url.is_some();
                let u = match &url {
                    Some(u) => u.clone(),
                    None => Url::parse("http://127.0.0.1/mcp")?,
                };
                startup::http_once(&cli.command, &target(u), fixed, timeout).await?
            };
            runs.push(took);
        }
        runs.sort_unstable();
        let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
        println!(
            "label={} mode=startup-{} runs={} min_ms={:.1} p50_ms={:.1} max_ms={:.1}",
            cli.label,
            if cli.stdio { "stdio" } else { "http" },
            runs.len(),
            ms(runs.first().copied()),
            ms(percentile(&runs, 50.0)),
            ms(runs.last().copied()),
        );
        return Ok(());
    }

    let (stats, elapsed, mode, child_rss) = if cli.stdio {
        if cli.command.is_empty() {
            bail!("--stdio needs a server command after --");
        }
        let (s, e, rss) = stdio::run(
            &cli.command,
            &plan,
            &cli.tool,
            args,
            &cli.protocol_version,
            timeout,
        )
        .await?;
        (s, e, "stdio", rss)
    } else {
        let Some(u) = url else {
            bail!("--url is required for an HTTP run");
        };
        let t = Arc::new(target(u));
        let mode = if t.sessionless() {
            "http-stateless"
        } else {
            "http"
        };
        let (s, e) = http::run(t, &plan, &cli.tool, args).await?;
        (s, e, mode, None)
    };
    let peak_rss_mb = match cli.rss_pid {
        Some(pid) => Some(stats::peak_rss_mb(pid).with_context(|| format!("--rss-pid {pid}"))?),
        None => child_rss,
    };
    let report = Report {
        label: &cli.label,
        mode,
        tool: &cli.tool,
        concurrency: cli.concurrency,
        elapsed,
        peak_rss_mb,
    };
    println!("{}", report.line(stats));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        for ok in [
            "http://127.0.0.1:1/mcp",
            "http://localhost:2/mcp",
            "http://[::1]:3/mcp",
        ] {
            assert!(check_loopback(&Url::parse(ok).unwrap()).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1/mcp",
            "http://example.com/mcp",
            "ftp://127.0.0.1/",
        ] {
            assert!(check_loopback(&Url::parse(bad).unwrap()).is_err(), "{bad}");
        }
    }
}
