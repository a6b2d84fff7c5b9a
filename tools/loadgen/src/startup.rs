//! Cold-start time: from spawning a server to its first answered `tools/list`.
//!
//! HTTP: the server's address comes from `--url`, or from the first loopback
//! `host:port` it prints (stdout or stderr, e.g. `listening on 127.0.0.1:PORT`).
//! The port is then probed every 2 ms; once it accepts, a session is opened and
//! `tools/list` sent (retried every 2 ms until answered). Stdio: `initialize`
//! is written at once and `tools/list` follows the handshake.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use reqwest::Url;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    net::TcpStream,
    process::Command,
    sync::mpsc,
};

use crate::{
    check_loopback,
    http::{Session, Target},
    jsonrpc,
    stdio::StdioChild,
};

/// Delay between connection / readiness probes.
const POLL: Duration = Duration::from_millis(2);
/// Lines of server output kept for error messages.
const TAIL: usize = 8;

/// Last lines of the child's output, for diagnostics.
type Tail = Arc<Mutex<VecDeque<String>>>;

/// One HTTP cold start. `target.url` is used as is when `fixed_url`; otherwise
/// its path is kept and host:port comes from the server's output.
pub async fn http_once(
    cmd: &[String],
    target: &Target,
    fixed_url: bool,
    timeout: Duration,
) -> Result<Duration> {
    let (program, args) = cmd
        .split_first()
        .ok_or_else(|| anyhow!("no command given after --"))?;
    let started = Instant::now();
    let deadline = started + timeout;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {program}"))?;
    let tail: Tail = Arc::default();
    let (addr_tx, mut addr_rx) = mpsc::unbounded_channel();
    if let Some(out) = child.stdout.take() {
        tokio::spawn(scan_output(out, addr_tx.clone(), tail.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(scan_output(err, addr_tx, tail.clone()));
    }

    let result = async {
        let mut target = target.clone();
        if !fixed_url {
            let addr = tokio::time::timeout_at(deadline.into(), addr_rx.recv())
                .await
                .map_err(|_| anyhow!("no loopback address printed before the timeout"))?
                .ok_or_else(|| anyhow!("the server exited without printing an address"))?;
            target.url = Url::parse(&format!("http://{addr}{}", target.url.path()))?;
            check_loopback(&target.url)?;
        }
        let sock: SocketAddr = target
            .url
            .socket_addrs(|| Some(80))?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("cannot resolve {}", target.url))?;
        let target = Arc::new(target);
        loop {
            if Instant::now() >= deadline {
                bail!("not answered within {timeout:?}");
            }
            if let Some(status) = child.try_wait()? {
                bail!("the server exited early ({status})");
            }
            if TcpStream::connect(sock).await.is_ok() && probe(target.clone()).await.is_ok() {
                return Ok(started.elapsed());
            }
            tokio::time::sleep(POLL).await;
        }
    }
    .await;

    let _ = child.kill().await;
    result.map_err(|e| e.context(format!("server output (tail): {}", tail_text(&tail))))
}

/// Open a session and get an answer to `tools/list`.
async fn probe(target: Arc<Target>) -> Result<()> {
    let mut session = Session::open(target.clone()).await?;
    let params = crate::http::params_json(serde_json::json!({}), &target);
    let (_, reply) = session.call("tools/list", &params, "").await;
    let reply = reply?;
    jsonrpc::result_ok(&reply).map_err(|e| anyhow!(e))?;
    session.close().await;
    Ok(())
}

/// One stdio cold start: spawn, `initialize`, `tools/list` answered.
pub async fn stdio_once(
    cmd: &[String],
    protocol_version: &str,
    timeout: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut server = StdioChild::spawn(cmd)?;
    let result = async {
        server.handshake(protocol_version, deadline).await?;
        server.send(jsonrpc::request(1, "tools/list", serde_json::json!({})).to_string())?;
        let reply = server.response_to(1, deadline).await?;
        jsonrpc::result_ok(&reply).map_err(|e| anyhow!("tools/list: {e}"))?;
        Ok(started.elapsed())
    }
    .await;
    server.shutdown().await;
    result
}

/// Read a child's output line by line: keep a short tail, and report the first
/// loopback address seen. Keeps reading so the child never blocks on a full pipe.
async fn scan_output(
    out: impl AsyncRead + Unpin,
    addr_tx: mpsc::UnboundedSender<String>,
    tail: Tail,
) {
    let mut lines = BufReader::new(out).lines();
    let mut sent = false;
    while let Ok(Some(line)) = lines.next_line().await {
        if !sent && let Some(addr) = find_loopback_addr(&line) {
            sent = addr_tx.send(addr).is_ok();
        }
        if let Ok(mut t) = tail.lock() {
            if t.len() == TAIL {
                t.pop_front();
            }
            t.push_back(line);
        }
    }
}

/// The kept output lines joined with ` | `.
fn tail_text(tail: &Tail) -> String {
    tail.lock()
        .map(|t| t.iter().cloned().collect::<Vec<_>>().join(" | "))
        .unwrap_or_default()
}

/// The first `127.0.0.1:PORT`, `localhost:PORT` or `[::1]:PORT` in a line.
pub fn find_loopback_addr(line: &str) -> Option<String> {
    ["127.0.0.1:", "localhost:", "[::1]:"]
        .iter()
        .find_map(|host| {
            let at = line.find(host)?;
            let rest = &line[at + host.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let port: u16 = digits.parse().ok()?;
            (port != 0).then(|| format!("{host}{port}"))
        })
}

#[cfg(test)]
mod tests {
    use super::find_loopback_addr;

    #[test]
    fn finds_addresses() {
        assert_eq!(
            find_loopback_addr("listening on 127.0.0.1:4242").as_deref(),
            Some("127.0.0.1:4242")
        );
        assert_eq!(
            find_loopback_addr(r#"{"msg":"serving","url":"http://localhost:80/mcp"}"#).as_deref(),
            Some("localhost:80")
        );
        assert_eq!(
            find_loopback_addr("bound [::1]:9 ok").as_deref(),
            Some("[::1]:9")
        );
        assert_eq!(find_loopback_addr("127.0.0.1:0"), None);
        assert_eq!(find_loopback_addr("0.0.0.0:80"), None);
    }
}
