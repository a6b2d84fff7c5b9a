//! The agent-CLI adapters end to end: the fake `claude`, `codex` and `gemini`
//! scripts of `fixtures/cli/` run through `providers::call` as real child
//! processes (what they were given is recorded and asserted), and worktrees made
//! from a real `git init` repository. No network.
//!
//! Each test scripts its fake through a small wrapper that sets the fake's
//! environment and `exec`s it, because the adapter gives a child only an
//! allowlisted environment (and tests must not change the process's own).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use vaultline::providers::worktree::{self, Worktree, WorktreeError};
use vaultline::providers::{self, Answer, Failure, FailureKind, Kind, Request, Target};
use vaultline::quota::secret::Secret;

// Named `providers` so that `cargo test providers` (the gate's filter) runs these.
mod providers_cli {
    use super::*;

    const SECRET: &str = "sk-fake-0123456789abcdef";

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cli")
    }

    /// A wrapper that runs the fake `cli` with `env` set; returns its path.
    fn fake(dir: &Path, cli: &str, env: &[(&str, &str)]) -> PathBuf {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let mut script = String::from("#!/bin/sh\n");
        for (k, v) in env {
            assert!(!v.contains('\''), "keep test values free of quotes");
            script.push_str(&format!("export {k}='{v}'\n"));
        }
        script.push_str(&format!(
            "exec '{}' \"$@\"\n",
            fixtures().join(cli).display()
        ));
        let path = bin.join(cli);
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn target(kind: Kind, command: PathBuf, secret: Option<&str>) -> Target {
        Target {
            kind,
            base_url: None,
            command: Some(command),
            extra_args: vec![],
            secret: secret.map(Secret::new),
        }
    }

    fn request(model: &str, workdir: Option<&Path>, timeout: Duration) -> Request {
        Request {
            model: model.into(),
            system: None,
            prompt: "Summarise the change in one line.".into(),
            max_output_tokens: 256,
            answer_schema: None,
            timeout,
            workdir: workdir.map(Path::to_path_buf),
        }
    }

    async fn call(t: &Target, r: &Request) -> Result<Answer, Failure> {
        providers::call(&reqwest::Client::new(), t, r, &CancellationToken::new()).await
    }

    fn record(path: &Path) -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    async fn wait_for(path: &Path) {
        let start = Instant::now();
        while !path.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{path:?} never appeared"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// True once `pid` has exited (gone, or a zombie awaiting its reaper).
    fn dead(pid: i64) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    async fn assert_dies(pid: i64) {
        let start = Instant::now();
        while !dead(pid) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "pid {pid} still alive"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn claude_answer_with_usage_cost_prompt_on_stdin_and_secret_in_env() {
        let tmp = tempfile::tempdir().unwrap();
        let rec = tmp.path().join("rec.json");
        let work = tmp.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let cmd = fake(
            tmp.path(),
            "claude",
            &[
                ("FAKE_CLI_RECORD", rec.to_str().unwrap()),
                ("FAKE_CLI_REQUIRE_SECRET", "1"),
                ("FAKE_CLI_TEXT", "It adds the CLI adapters."),
            ],
        );
        let t = target(Kind::ClaudeCli, cmd, Some(SECRET));
        let r = request("claude-sonnet-4-5", Some(&work), Duration::from_secs(20));
        let a = call(&t, &r).await.unwrap();
        assert_eq!(a.text, "It adds the CLI adapters.");
        let u = a.usage.unwrap();
        assert_eq!(
            (u.input, u.output, u.cache_read, u.cache_write),
            (120, 40, 1000, 50)
        );
        assert_eq!(a.reported_cost_nanos, Some(12_300_000));
        assert_eq!(a.model.as_deref(), Some("claude-sonnet-4-5"));

        let rec = record(&rec);
        assert_eq!(rec["stdin"], r.prompt);
        let argv: Vec<&str> = rec["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            argv,
            [
                "-p",
                "--output-format",
                "json",
                "--model",
                "claude-sonnet-4-5"
            ]
        );
        assert!(
            !argv
                .iter()
                .any(|a| a.contains(SECRET) || a.contains("Summarise"))
        );
        assert_eq!(rec["secret_env"], "ANTHROPIC_API_KEY");
        assert_eq!(rec["secret"], SECRET);
        assert_eq!(
            Path::new(rec["cwd"].as_str().unwrap()),
            work.canonicalize().unwrap()
        );
        // Its own process group.
        assert_eq!(rec["pid"], rec["pgid"]);
    }

    #[tokio::test]
    async fn codex_and_gemini_answers_with_their_usage() {
        let tmp = tempfile::tempdir().unwrap();
        let rec = tmp.path().join("rec.json");
        let codex = fake(
            tmp.path(),
            "codex",
            &[
                ("FAKE_CLI_RECORD", rec.to_str().unwrap()),
                ("FAKE_CLI_REQUIRE_SECRET", "1"),
            ],
        );
        let t = target(Kind::CodexCli, codex, Some(SECRET));
        let mut r = request("gpt-5-codex", None, Duration::from_secs(20));
        r.system = Some("Answer tersely.".into());
        let a = call(&t, &r).await.unwrap();
        assert_eq!(a.text, "fake answer");
        let u = a.usage.unwrap();
        assert_eq!((u.input, u.cache_read, u.output), (500, 1000, 60));
        let rec_v = record(&rec);
        assert_eq!(rec_v["secret_env"], "CODEX_API_KEY");
        assert_eq!(rec_v["secret"], SECRET);
        assert_eq!(
            rec_v["stdin"],
            "Answer tersely.\n\nSummarise the change in one line."
        );
        assert_eq!(rec_v["argv"].as_array().unwrap().last().unwrap(), "-");
        // No workdir: a scratch directory, gone after the call.
        let cwd = PathBuf::from(rec_v["cwd"].as_str().unwrap());
        assert!(
            cwd.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("vaultline-cli-")
        );
        assert!(!cwd.exists());

        let gemini = fake(tmp.path(), "gemini", &[("FAKE_CLI_REQUIRE_SECRET", "1")]);
        let t = target(Kind::GeminiCli, gemini, Some(SECRET));
        let a = call(
            &t,
            &request("gemini-2.5-pro", None, Duration::from_secs(20)),
        )
        .await
        .unwrap();
        let u = a.usage.unwrap();
        assert_eq!((u.input, u.cache_read, u.output), (300, 1000, 60));
        assert_eq!(a.model.as_deref(), Some("gemini-2.5-pro"));
    }

    #[tokio::test]
    async fn missing_secret_is_a_loud_failure_not_an_answer() {
        let tmp = tempfile::tempdir().unwrap();
        let cmd = fake(tmp.path(), "gemini", &[("FAKE_CLI_REQUIRE_SECRET", "1")]);
        let t = target(Kind::GeminiCli, cmd, None);
        let f = call(
            &t,
            &request("gemini-2.5-pro", None, Duration::from_secs(20)),
        )
        .await
        .unwrap_err();
        assert_eq!(f.kind, FailureKind::Malformed, "{f:?}");
        assert!(f.message.contains("GEMINI_API_KEY"), "{}", f.message);
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let tmp = tempfile::tempdir().unwrap();
        let rec = tmp.path().join("rec.json");
        let cmd = fake(
            tmp.path(),
            "codex",
            &[
                ("FAKE_CLI_MODE", "hang"),
                ("FAKE_CLI_RECORD", rec.to_str().unwrap()),
            ],
        );
        let t = target(Kind::CodexCli, cmd, None);
        let start = Instant::now();
        let f = call(&t, &request("m", None, Duration::from_secs(2)))
            .await
            .unwrap_err();
        assert_eq!(f.kind, FailureKind::Timeout, "{f:?}");
        assert!(start.elapsed() < Duration::from_secs(10));
        let rec = record(&rec);
        assert_dies(rec["pid"].as_i64().unwrap()).await;
        assert_dies(rec["grandchild_pid"].as_i64().unwrap()).await;
    }

    #[tokio::test]
    async fn cancel_kills_the_group_and_says_cancelled() {
        let tmp = tempfile::tempdir().unwrap();
        let rec = tmp.path().join("rec.json");
        let cmd = fake(
            tmp.path(),
            "claude",
            &[
                ("FAKE_CLI_MODE", "hang"),
                ("FAKE_CLI_RECORD", rec.to_str().unwrap()),
            ],
        );
        let t = target(Kind::ClaudeCli, cmd, None);
        let r = request("m", None, Duration::from_secs(60));
        let ct = CancellationToken::new();
        let client = reqwest::Client::new();
        let call = providers::call(&client, &t, &r, &ct);
        let cancel = async {
            wait_for(&rec).await;
            ct.cancel();
        };
        let start = Instant::now();
        let (result, ()) = tokio::join!(call, cancel);
        assert_eq!(result.unwrap_err().kind, FailureKind::Cancelled);
        assert!(start.elapsed() < Duration::from_secs(20));
        assert_dies(record(&rec)["grandchild_pid"].as_i64().unwrap()).await;
    }

    #[tokio::test]
    async fn dropping_the_call_kills_the_group() {
        let tmp = tempfile::tempdir().unwrap();
        let rec = tmp.path().join("rec.json");
        let cmd = fake(
            tmp.path(),
            "gemini",
            &[
                ("FAKE_CLI_MODE", "hang"),
                ("FAKE_CLI_RECORD", rec.to_str().unwrap()),
            ],
        );
        let t = target(Kind::GeminiCli, cmd, None);
        let r = request("m", None, Duration::from_secs(60));
        let client = reqwest::Client::new();
        let ct = CancellationToken::new();
        {
            let call = providers::call(&client, &t, &r, &ct);
            tokio::pin!(call);
            tokio::select! {
                _ = &mut call => panic!("a hanging CLI answered"),
                () = wait_for(&rec) => {}
            }
            // The future is dropped here, mid-call.
        }
        assert_dies(record(&rec)["grandchild_pid"].as_i64().unwrap()).await;
    }

    #[tokio::test]
    async fn failures_are_classified() {
        let tmp = tempfile::tempdir().unwrap();
        let cases = [
            (
                "claude",
                Kind::ClaudeCli,
                "malformed",
                FailureKind::Malformed,
            ),
            (
                "codex",
                Kind::CodexCli,
                "exit_nonzero",
                FailureKind::Malformed,
            ),
            (
                "claude",
                Kind::ClaudeCli,
                "rate_limit",
                FailureKind::RateLimited,
            ),
            (
                "codex",
                Kind::CodexCli,
                "rate_limit",
                FailureKind::RateLimited,
            ),
            (
                "gemini",
                Kind::GeminiCli,
                "rate_limit",
                FailureKind::RateLimited,
            ),
            ("claude", Kind::ClaudeCli, "auth", FailureKind::Auth),
            ("codex", Kind::CodexCli, "auth", FailureKind::Auth),
            ("gemini", Kind::GeminiCli, "auth", FailureKind::Auth),
        ];
        for (i, (cli, kind, mode, want)) in cases.into_iter().enumerate() {
            let dir = tmp.path().join(i.to_string());
            let cmd = fake(&dir, cli, &[("FAKE_CLI_MODE", mode)]);
            let f = call(
                &target(kind, cmd, Some(SECRET)),
                &request("m", None, Duration::from_secs(20)),
            )
            .await
            .unwrap_err();
            assert_eq!(f.kind, want, "{cli} {mode}: {f:?}");
            assert!(!f.message.contains(SECRET));
            if (cli, mode) == ("claude", "rate_limit") {
                let reset = f.rate.and_then(|r| r.reset_at).unwrap();
                assert_eq!(reset.timestamp(), 1_767_225_600);
            }
            if (cli, mode) == ("codex", "rate_limit") {
                assert_eq!(
                    f.retry_after,
                    Some(Duration::from_secs(2 * 86_400 + 4 * 3600 + 5 * 60))
                );
            }
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_a_connect_failure_naming_it() {
        let t = target(
            Kind::CodexCli,
            PathBuf::from("vaultline-no-such-cli-xyz"),
            None,
        );
        let f = call(&t, &request("m", None, Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert_eq!(f.kind, FailureKind::Connect);
        assert!(
            f.message.contains("vaultline-no-such-cli-xyz"),
            "{}",
            f.message
        );
    }

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn repo(dir: &Path) -> PathBuf {
        let repo = dir.join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        git(&repo, &["init", "-q"]);
        std::fs::write(repo.join("README"), "hello\n").unwrap();
        git(&repo, &["add", "README"]);
        git(&repo, &["commit", "-q", "-m", "first"]);
        repo
    }

    #[tokio::test]
    async fn an_agent_writes_in_its_worktree_and_a_verifier_sees_it() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = repo(tmp.path());
        let root = tmp.path().join("worktrees");
        let wt = Worktree::create(&repo, &root, "task-1").await.unwrap();
        assert!(wt.path().join("README").exists());
        assert!(root.join("task-1").join(worktree::MARKER).exists());
        assert!(matches!(
            Worktree::create(&repo, &root, "task-1").await,
            Err(WorktreeError::Exists(_))
        ));

        let cmd = fake(tmp.path(), "codex", &[("FAKE_CLI_MODE", "write_file")]);
        let t = target(Kind::CodexCli, cmd, None);
        let r = request("m", Some(wt.path()), Duration::from_secs(20));
        call(&t, &r).await.unwrap();
        // A verifier run in the worktree sees the change; the operator's copy does not.
        let verifier = std::process::Command::new("test")
            .args(["-f", "AGENT_WROTE.txt"])
            .current_dir(wt.path())
            .status()
            .unwrap();
        assert!(verifier.success());
        assert!(!repo.join("AGENT_WROTE.txt").exists());

        let path = wt.path().to_path_buf();
        wt.remove().await.unwrap();
        assert!(!path.exists());
        assert!(!root.join("task-1").exists());
        assert!(!git(&repo, &["worktree", "list"]).contains("task-1"));
    }

    #[tokio::test]
    async fn sweep_removes_orphans_and_keeps_the_live_and_the_unmarked() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = repo(tmp.path());
        let root = tmp.path().join("worktrees");
        let live = Worktree::create(&repo, &root, "live").await.unwrap();
        let orphan = Worktree::create(&repo, &root, "orphan").await.unwrap();
        // A crash: the process dies without removing (or dropping) the worktree.
        std::mem::forget(orphan);
        std::fs::create_dir_all(root.join("not-ours")).unwrap();

        let names: HashSet<String> = ["live".to_string()].into();
        assert_eq!(worktree::sweep(&root, &names).await, 1);
        assert!(!root.join("orphan").exists());
        assert!(root.join("not-ours").exists());
        assert!(live.path().exists());
        let list = git(&repo, &["worktree", "list"]);
        assert!(!list.contains("orphan"), "{list}");
        assert!(list.contains("live"), "{list}");
        live.remove().await.unwrap();
        assert_eq!(worktree::sweep(&root, &HashSet::new()).await, 0);
    }

    #[tokio::test]
    async fn a_dropped_worktree_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = repo(tmp.path());
        let root = tmp.path().join("worktrees");
        let wt = Worktree::create(&repo, &root, "dropped").await.unwrap();
        let dir = root.join("dropped");
        drop(wt);
        let start = Instant::now();
        while dir.exists() {
            assert!(start.elapsed() < Duration::from_secs(10), "not removed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_directory_that_is_not_a_repository_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let plain = tmp.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        let err = Worktree::create(&plain, &tmp.path().join("wt"), "x")
            .await
            .unwrap_err();
        assert!(matches!(err, WorktreeError::NotARepo(..)), "{err}");
        assert!(err.to_string().contains("not a git working copy"));
        assert!(matches!(
            Worktree::create(&plain, &tmp.path().join("wt"), "../escape").await,
            Err(WorktreeError::BadName(_))
        ));
    }
}
