//! Running one CLI invocation: a child in its own process group, stdin fed and
//! closed, stdout and stderr read to a bound, and the whole group killed when the
//! request's timeout passes, the caller cancels, the future is dropped, or the
//! leader exits (so nothing the agent started outlives the call).
//!
//! Killing the group rather than the child matters because the agents run tools
//! (shells, test runners, servers) as grandchildren; `kill_on_drop` alone would
//! leave them running. A grandchild that starts its own session escapes any group
//! kill; that is the one case this does not cover.

use std::io::ErrorKind;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::{Invocation, Output};
use crate::providers::{Failure, FailureKind};

/// The most stdout kept; an agent's final JSON is far smaller.
pub const MAX_STDOUT: usize = 16 * 1024 * 1024;
/// The most stderr kept: enough for the error that matters.
pub const MAX_STDERR: usize = 256 * 1024;
/// How long a group has between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// Kills a process group when dropped, unless disarmed: covers the caller
/// dropping the future mid-call.
struct Group {
    pgid: Option<Pid>,
}

impl Group {
    fn signal(&self, sig: Signal) {
        if let Some(pgid) = self.pgid {
            // ESRCH (the group is already gone) is the expected end.
            let _ = killpg(pgid, sig);
        }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

enum Stop {
    Done(
        std::io::Result<std::process::ExitStatus>,
        (Vec<u8>, bool),
        (Vec<u8>, bool),
    ),
    Timeout,
    Cancelled,
}

/// Runs `inv` in `dir`. `Err` for a program that cannot start (`Connect`), the
/// timeout (`Timeout`) or cancellation (`Cancelled`); the group is dead before
/// this returns in every case.
pub async fn run(
    inv: &Invocation,
    dir: &Path,
    timeout: Duration,
    ct: &CancellationToken,
) -> Result<Output, Failure> {
    let program = inv.program.display().to_string();
    let mut cmd = Command::new(&inv.program);
    cmd.args(&inv.args)
        .current_dir(dir)
        .env_clear()
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| spawn_failure(&program, &e))?;
    let mut group = Group {
        pgid: child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    };

    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let prompt = inv.stdin.as_bytes();

    let stop = {
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // A CLI that exits without reading its stdin gives EPIPE: not our failure.
                let _ = stdin.write_all(prompt).await;
                let _ = stdin.shutdown().await;
            }
        };
        let wait = async {
            let status = child.wait().await;
            // The leader is gone; whatever it left running in its group goes too,
            // which also closes the pipes those strays hold open.
            group.signal(Signal::SIGKILL);
            status
        };
        let exchange = async {
            let ((), out, err, status) = tokio::join!(
                feed,
                read_bounded(stdout, MAX_STDOUT),
                read_bounded(stderr, MAX_STDERR),
                wait
            );
            Stop::Done(status, out, err)
        };
        tokio::select! {
            stop = exchange => stop,
            () = tokio::time::sleep(timeout) => Stop::Timeout,
            () = ct.cancelled() => Stop::Cancelled,
        }
    };

    match stop {
        Stop::Done(status, (stdout, truncated), (stderr, _)) => {
            group.disarm();
            let status = status.map_err(|e| {
                Failure::new(
                    FailureKind::Connect,
                    format!("lost track of `{program}`: {e}"),
                )
            })?;
            Ok(Output {
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
                exit_code: status.code(),
                truncated,
            })
        }
        Stop::Timeout => {
            terminate(&mut child, &mut group).await;
            Err(Failure::new(
                FailureKind::Timeout,
                format!(
                    "`{program}` did not finish within {} s; its process group was killed",
                    timeout.as_secs_f64()
                ),
            ))
        }
        Stop::Cancelled => {
            terminate(&mut child, &mut group).await;
            Err(Failure::new(
                FailureKind::Cancelled,
                format!("cancelled; `{program}` and its process group were killed"),
            ))
        }
    }
}

/// SIGTERM to the group, a grace period for the leader, then SIGKILL to the group
/// (tools that ignore SIGTERM, or outlive their leader, die here) and reap.
async fn terminate(child: &mut Child, group: &mut Group) {
    group.signal(Signal::SIGTERM);
    let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
    group.signal(Signal::SIGKILL);
    let _ = child.start_kill();
    let _ = child.wait().await;
    group.disarm();
}

fn spawn_failure(program: &str, e: &std::io::Error) -> Failure {
    let message = match e.kind() {
        ErrorKind::NotFound => format!(
            "program `{program}` was not found (install it, or set the rung's command to its path)"
        ),
        ErrorKind::PermissionDenied => format!("program `{program}` is not executable"),
        _ => format!("could not start `{program}`: {e}"),
    };
    Failure::new(FailureKind::Connect, message)
}

/// Reads `r` to its end, keeping at most `max` bytes (the rest is read and
/// dropped so the child never blocks on a full pipe). Returns the bytes and
/// whether any were dropped.
async fn read_bounded<R: AsyncRead + Unpin>(r: Option<R>, max: usize) -> (Vec<u8>, bool) {
    let Some(mut r) = r else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}
