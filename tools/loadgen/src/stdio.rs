//! MCP over stdio: spawn the server as a child, speak line-delimited JSON-RPC on
//! its stdin/stdout, and keep C `tools/call` requests in flight (responses are
//! matched to requests by id).

use std::{
    collections::HashMap,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
    sync::mpsc,
    task::JoinHandle,
    time::timeout_at,
};

use crate::{Plan, http::show_error, jsonrpc, stats};

/// A spawned stdio server: its pid, a line writer and a line reader.
pub struct StdioChild {
    /// The child process (killed on drop).
    pub child: Child,
    /// Its pid, while it runs.
    pub pid: Option<u32>,
    tx: mpsc::UnboundedSender<String>,
    writer: JoinHandle<()>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl StdioChild {
    /// Spawn `cmd` (program and arguments) with piped stdin/stdout; stderr is inherited.
    pub fn spawn(cmd: &[String]) -> Result<Self> {
        let (program, args) = cmd
            .split_first()
            .ok_or_else(|| anyhow!("no command given after --"))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {program}"))?;
        let pid = child.id();
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("child has no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("child has no stdout"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_lines(stdin, rx));
        Ok(Self {
            child,
            pid,
            tx,
            writer,
            lines: BufReader::new(stdout).lines(),
        })
    }

    /// Queue one message (a line without its newline).
    pub fn send(&self, line: String) -> Result<()> {
        self.tx
            .send(line)
            .map_err(|_| anyhow!("the child's stdin is closed"))
    }

    /// Next message from the child, or an error at `deadline` / end of output.
    pub async fn recv(&mut self, deadline: Instant) -> Result<Value> {
        loop {
            let line = timeout_at(deadline.into(), self.lines.next_line())
                .await
                .map_err(|_| anyhow!("timed out waiting for the server"))??
                .ok_or_else(|| anyhow!("the server closed its stdout"))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(v) => return Ok(v),
                Err(_) => show_error("stdio", &format!("not JSON: {line}")),
            }
        }
    }

    /// Wait for the response to request `id`, skipping anything else.
    pub async fn response_to(&mut self, id: u64, deadline: Instant) -> Result<Value> {
        loop {
            let msg = self.recv(deadline).await?;
            if let Some(reply) = jsonrpc::take_response(msg, id) {
                return Ok(reply);
            }
        }
    }

    /// `initialize` (id 0) and `notifications/initialized`.
    pub async fn handshake(&mut self, protocol_version: &str, deadline: Instant) -> Result<()> {
        let init = jsonrpc::request(
            0,
            "initialize",
            jsonrpc::initialize_params(protocol_version),
        );
        self.send(init.to_string())?;
        let reply = self.response_to(0, deadline).await?;
        jsonrpc::result_ok(&reply).map_err(|e| anyhow!("initialize: {e}"))?;
        self.send(jsonrpc::notification("notifications/initialized").to_string())
    }

    /// Close stdin, give the child a moment to exit, then kill it.
    pub async fn shutdown(self) {
        let StdioChild {
            mut child,
            tx,
            writer,
            ..
        } = self;
        drop(tx);
        let _ = writer.await;
        if tokio::time::timeout(Duration::from_secs(2), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

/// Write queued lines to the child's stdin, flushing once per burst.
async fn write_lines(mut stdin: ChildStdin, mut rx: mpsc::UnboundedReceiver<String>) {
    while let Some(first) = rx.recv().await {
        let mut buf = first.into_bytes();
        buf.push(b'\n');
        while let Ok(more) = rx.try_recv() {
            buf.extend_from_slice(more.as_bytes());
            buf.push(b'\n');
        }
        if stdin.write_all(&buf).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
    }
}

/// Run `plan` over stdio against `cmd`. Returns the stats, the measured window
/// and the child's peak RSS (MB) read just before it is shut down.
pub async fn run(
    cmd: &[String],
    plan: &Plan,
    tool: &str,
    args: Value,
    protocol_version: &str,
    timeout: Duration,
) -> Result<(stats::Stats, Duration, Option<f64>)> {
    let mut server = StdioChild::spawn(cmd)?;
    let result = drive(&mut server, plan, tool, args, protocol_version, timeout).await;
    let rss = server.pid.and_then(|pid| stats::peak_rss_mb(pid).ok());
    server.shutdown().await;
    let (stats, window) = result?;
    Ok((stats, window, rss))
}

/// The load loop proper: keep `plan.concurrency` calls in flight until the deadline.
async fn drive(
    server: &mut StdioChild,
    plan: &Plan,
    tool: &str,
    args: Value,
    protocol_version: &str,
    timeout: Duration,
) -> Result<(stats::Stats, Duration)> {
    server
        .handshake(protocol_version, Instant::now() + timeout)
        .await?;
    let params = serde_json::json!({ "name": tool, "arguments": args }).to_string();

    let warm_end = Instant::now() + plan.warmup;
    let deadline = warm_end + plan.duration;
    let hard_deadline = deadline + timeout;
    let mut in_flight: HashMap<u64, (Instant, bool)> = HashMap::with_capacity(plan.concurrency);
    let mut next_id: u64 = 1;
    let mut measured_issued: u64 = 0;
    let mut stats = stats::Stats::default();

    loop {
        // Top up to C requests in flight while time and budget remain.
        while in_flight.len() < plan.concurrency {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let measured = now >= warm_end;
            if measured {
                if measured_issued >= plan.max_calls {
                    break;
                }
                measured_issued += 1;
            }
            let id = next_id;
            next_id += 1;
            server.send(format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{params}}}"#
            ))?;
            in_flight.insert(id, (Instant::now(), measured));
        }
        if in_flight.is_empty() {
            break;
        }
        let msg = match server.recv(hard_deadline).await {
            Ok(msg) => msg,
            Err(e) => {
                let lost = in_flight.values().filter(|(_, m)| *m).count() as u64;
                stats.errors += lost;
                show_error(
                    "stdio",
                    &format!("{e:#} ({} calls unanswered)", in_flight.len()),
                );
                break;
            }
        };
        let Some(id) = msg.get("id").and_then(Value::as_u64) else {
            continue;
        };
        if !jsonrpc::is_response_to(&msg, id) {
            continue;
        }
        let Some((start, measured)) = in_flight.remove(&id) else {
            continue;
        };
        let latency = start.elapsed();
        let outcome = jsonrpc::call_ok(&msg);
        if let Err(e) = &outcome {
            show_error("tools/call", e);
        }
        if measured {
            stats.record(latency, outcome.is_ok());
        }
    }
    if measured_issued == 0 && plan.max_calls > 0 {
        bail!("no measured calls were issued");
    }
    Ok((stats, Instant::now().saturating_duration_since(warm_end)))
}
