//! A ladder rung that is an agent CLI on a subscription seat, end to end: the
//! real server runs the fake `claude` (fixtures/cli) in a fresh git worktree of
//! the task's repository, the verifier checks the agent's change in that
//! worktree, the worktree is gone afterwards, the seat costs no dollars but
//! counts against its quota window, and a failing verifier is a quality failure.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::common::*;

fn git(repo: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=e2e", "-c", "user.email=e2e@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A wrapper that runs the fake `claude` with `env` (the adapter gives the
/// child an allowlisted environment, so the fake's switches go through here).
fn fake_claude(dir: &Path, env: &[(&str, String)]) -> PathBuf {
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cli/claude");
    let mut script = String::from("#!/bin/sh\n");
    for (k, v) in env {
        script.push_str(&format!("export {k}='{v}'\n"));
    }
    script.push_str(&format!("exec '{}' \"$@\"\n", fake.display()));
    let path = dir.join("claude-wrapper");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn a_cli_rung_works_in_its_own_worktree_and_the_verifier_judges_it() {
    let env = Env::new();
    let dir = env.dir.path();
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README.md"), "a repository\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);

    let record = dir.join("record.json");
    let wrapper = fake_claude(
        dir,
        &[
            ("FAKE_CLI_MODE", "write_file".into()),
            ("FAKE_CLI_WRITE", "AGENT_WROTE.txt=done".into()),
            ("FAKE_CLI_TEXT", "I wrote the file".into()),
            ("FAKE_CLI_REQUIRE_SECRET", "1".into()),
            ("FAKE_CLI_RECORD", record.display().to_string()),
        ],
    );
    let trees = dir.join("worktrees");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[execute]
worktree_dir = "{}"
backoff_ms = 10

[[execute.rungs]]
name = "claude"
adapter = "claude_cli"
provider = "anthropic-seat"
model = "claude-sonnet-4-6"
command = "{}"
max_cost_usd = "1"
timeout_secs = 30
"#,
            trees.display(),
            wrapper.display()
        ),
    )
    .unwrap();
    let secret = dir.join("seat.key");
    std::fs::write(&secret, "sk-ant-e2e-seat-0123456789").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();

    env.org("acme");
    let admin = env.key("acme", "admin");
    let server = Server::start(&env, &[], &["--config", config.to_str().unwrap()]);
    let c = http_client(&server.url, &admin).await;
    let added = ok(
        &c,
        "quota",
        json!({"action": "accounts", "op": "add", "provider": "anthropic-seat", "name": "max-1",
               "billing_mode": "seat", "secret_ref": format!("file:{}", secret.display()),
               "limit_kind": "requests", "limit": 50, "window": "rolling", "window_minutes": 300}),
    )
    .await;
    let account = added["accounts"][0]["id"].as_str().unwrap().to_string();

    let task = |title: &str| {
        json!({"action": "create", "title": title, "instruction": "Write AGENT_WROTE.txt",
               "repo": repo.display().to_string()})
    };
    let t1 = ok(&c, "task", task("add the file")).await["task"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let verifier = json!([
        "sh",
        "-c",
        "test \"$(cat AGENT_WROTE.txt)\" = done && test -s \"$VAULTLINE_ANSWER_FILE\""
    ]);
    let done = ok(
        &c,
        "execute",
        json!({"action": "run", "task_id": t1, "verifier": verifier, "verbosity": "full"}),
    )
    .await;
    let run = &done["run"];
    assert_eq!(run["state"], "succeeded", "{done}");
    assert_eq!(run["final_rung"], "claude");
    assert_eq!(run["answer"], "I wrote the file");
    assert_eq!(run["cost_nanos"], 0, "a seat costs no dollars: {run}");
    assert_eq!(done["attempts"][0]["attempt"]["outcome"], "ok");

    // The fake ran in a worktree under the configured root, got the prompt on
    // stdin and the seat's secret in its own variable, never on the command line.
    let rec: Value = serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    let cwd = rec["cwd"].as_str().unwrap();
    assert!(cwd.starts_with(trees.to_str().unwrap()), "{cwd}");
    assert!(
        rec["stdin"].as_str().unwrap().contains("add the file"),
        "{rec}"
    );
    assert_eq!(rec["secret_env"], "ANTHROPIC_API_KEY");
    assert!(!rec["argv"].to_string().contains("sk-ant-e2e"), "{rec}");
    // The worktree is gone and the repository is as it was.
    assert!(
        !Path::new(cwd).exists(),
        "the attempt's worktree was removed"
    );
    assert!(!repo.join("AGENT_WROTE.txt").exists());

    // The seat's quota window counts the call.
    let status = ok(
        &c,
        "quota",
        json!({"action": "status", "account_id": account}),
    )
    .await;
    assert!(status.to_string().contains("\"used\":1"), "{status}");

    // A verifier that fails is a bad answer: with one rung and no consensus
    // possible, the task goes to a person.
    let t2 = ok(&c, "task", task("fail the check")).await["task"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let failed = ok(
        &c,
        "execute",
        json!({"action": "run", "task_id": t2, "verifier": ["sh", "-c", "echo nope >&2; exit 3"],
               "verbosity": "standard"}),
    )
    .await;
    assert_eq!(failed["run"]["state"], "needs_human", "{failed}");
    let a = &failed["attempts"][0]["attempt"];
    assert_eq!(
        (a["outcome"].as_str(), a["failure_kind"].as_str()),
        (Some("quality"), Some("verifier"))
    );
    let err = a["error"].as_str().unwrap();
    assert!(
        err.contains("exited with 3") && err.contains("nope"),
        "{err}"
    );
    let task = ok(&c, "task", json!({"action": "get", "task_id": t2})).await;
    assert_eq!(task["task"]["status"], "needs_human");
    let left: Vec<_> = std::fs::read_dir(&trees).unwrap().collect();
    assert!(left.is_empty(), "no worktree is left behind: {left:?}");
}
