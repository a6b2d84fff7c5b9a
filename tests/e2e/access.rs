//! HTTP access control, end to end: keys, roles, org isolation, session binding,
//! Host/Origin, body and rate limits, anonymous discovery, the side routes,
//! stale sessions and graceful shutdown.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn keys_roles_and_revocation() {
    let env = Env::new();
    env.org("acme");
    let op = env.key("acme", "operator");
    let viewer = env.key("acme", "viewer");
    let srv = Server::start(&env, &[], &[]);
    let raw = Raw::new(&srv.url);

    // No key, a malformed key, an unknown well-formed key: 401 with a Bearer challenge.
    let wrong = format!("vl_{}_{}", "A".repeat(10), "b".repeat(40));
    for key in [None, Some("nonsense"), Some(wrong.as_str())] {
        let r = raw.post(key, None, &[], INIT).await;
        assert_eq!(r.status, 401, "{key:?}: {}", r.body);
        let challenge = r.headers.get("www-authenticate").unwrap().to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }

    let v = http_client(&srv.url, &viewer).await;
    let msg = fails(
        &v,
        "workflow",
        json!({"action": "create", "task_type": "fix", "complexity": "simple"}),
    )
    .await;
    assert!(
        msg.contains("needs role operator") && msg.contains("viewer"),
        "{msg}"
    );
    v.cancel().await.ok();

    // Revocation takes effect (the test server caches keys for 0 ms).
    let list = cli(&env.db(), &["keys", "list", "--org", "acme"]);
    let op_prefix = op.split('_').nth(1).unwrap();
    let op_id = list
        .lines()
        .find(|l| l.contains(op_prefix))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let sid = raw.session(Some(&op)).await;
    assert_eq!(
        raw.call(Some(&op), &sid, "health", json!({"action": "status"}))
            .await
            .status,
        200
    );
    cli(&env.db(), &["keys", "revoke", &op_id]);
    let r = raw
        .call(Some(&op), &sid, "health", json!({"action": "status"}))
        .await;
    assert_eq!(r.status, 401, "revoked key refused: {}", r.body);
    assert!(cli(&env.db(), &["keys", "list"]).contains("revoked"));
}

#[tokio::test]
async fn rotation_keeps_the_old_key_for_the_grace_period_only() {
    let env = Env::new();
    env.org("acme");
    let old = env.key("acme", "operator");
    let list = cli(&env.db(), &["keys", "list"]);
    let old_id = list
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let new = cli(&env.db(), &["keys", "rotate", &old_id]);
    assert_ne!(old, new);
    let srv = Server::start(&env, &[], &[]);
    let raw = Raw::new(&srv.url);
    raw.session(Some(&old)).await;
    raw.session(Some(&new)).await;
    drop(srv);
    // A zero-day grace period ends the old key at once.
    let newer = cli(&env.db(), &["keys", "rotate", &old_id, "--grace-days", "0"]);
    let srv = Server::start(&env, &[], &[]);
    let raw = Raw::new(&srv.url);
    assert_eq!(raw.post(Some(&old), None, &[], INIT).await.status, 401);
    raw.session(Some(&newer)).await;
    raw.session(Some(&new)).await;
}

#[tokio::test]
async fn orgs_are_isolated_and_sessions_belong_to_their_key() {
    let env = Env::new();
    env.org("a");
    env.org("b");
    let ka = env.key("a", "operator");
    let ka2 = env.key("a", "operator");
    let kb = env.key("b", "owner");
    let srv = Server::start(&env, &[], &[]);
    let ca = http_client(&srv.url, &ka).await;
    let cb = http_client(&srv.url, &kb).await;
    let w = ok(
        &ca,
        "workflow",
        json!({"action": "create", "task_type": "fix", "complexity": "simple"}),
    )
    .await;
    let id = w["workflow"]["id"].as_str().unwrap();
    let missing = fails(&cb, "workflow", json!({"action": "get", "workflow_id": id})).await;
    let truly_missing = fails(
        &cb,
        "workflow",
        json!({"action": "get", "workflow_id": "01JZZZZZZZZZZZZZZZZZZZZZZZ"}),
    )
    .await;
    assert_eq!(
        missing.replace(id, "ID"),
        truly_missing.replace("01JZZZZZZZZZZZZZZZZZZZZZZZ", "ID"),
        "another org's id looks exactly like a missing one"
    );
    assert_eq!(
        ok(&cb, "workflow", json!({"action": "list"})).await["workflows"],
        json!([])
    );

    // A session opened by one key is not usable by another, even of the same org.
    let raw = Raw::new(&srv.url);
    let sid = raw.session(Some(&ka)).await;
    let r = raw
        .call(Some(&ka2), &sid, "health", json!({"action": "status"}))
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = raw
        .call(Some(&kb), &sid, "health", json!({"action": "status"}))
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = raw
        .call(Some(&ka), &sid, "health", json!({"action": "status"}))
        .await;
    assert_eq!(r.status, 200, "the owner still can: {}", r.body);
    ca.cancel().await.ok();
    cb.cancel().await.ok();
}

#[tokio::test]
async fn host_origin_body_and_rate_limits() {
    let env = Env::new();
    env.org("acme");
    let key = env.key("acme", "operator");
    let srv = Server::start(
        &env,
        &[
            ("VAULTLINE_HTTP__MAX_BODY_BYTES", "4096"),
            ("VAULTLINE_HTTP__RATE_LIMIT_PER_SECOND", "1"),
            ("VAULTLINE_HTTP__RATE_LIMIT_BURST", "8"),
        ],
        &[],
    );
    let raw = Raw::new(&srv.url);
    let r = raw
        .post(Some(&key), None, &[("host", "evil.example.com")], INIT)
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = raw
        .post(
            Some(&key),
            None,
            &[("origin", "https://evil.example.com")],
            INIT,
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = raw
        .post(
            Some(&key),
            None,
            &[("origin", "http://localhost:5173")],
            INIT,
        )
        .await;
    assert_eq!(
        r.status, 200,
        "loopback origins pass by default: {}",
        r.body
    );
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#,
        "x".repeat(5000)
    );
    let r = raw.post(Some(&key), None, &[], big).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("4096"), "{}", r.body);
    let mut limited = None;
    for _ in 0..20 {
        let r = raw.post(Some(&key), None, &[], INIT).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the per-key rate limit answers 429");
    let retry: u64 = r
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // The server keeps serving.
    let h = reqwest::get(format!("{}/health", srv.base)).await.unwrap();
    assert_eq!(h.status(), 200);
}

#[tokio::test]
async fn side_routes_and_metrics_access() {
    let env = Env::new();
    env.org("acme");
    let admin = env.key("acme", "admin");
    let viewer = env.key("acme", "viewer");
    let srv = Server::start(&env, &[], &[]);
    let h: serde_json::Value = reqwest::get(format!("{}/health", srv.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    assert!(
        h.get("org").is_none() && h.to_string().len() < 300,
        "nothing private: {h}"
    );
    let r: serde_json::Value = reqwest::get(format!("{}/ready", srv.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["ready"], true);
    let http = reqwest::Client::new();
    let m = http
        .get(format!("{}/metrics", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 401);
    let m = http
        .get(format!("{}/metrics", srv.base))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 403);
    let c = http_client(&srv.url, &admin).await;
    ok(&c, "health", json!({"action": "status"})).await;
    let body = metrics_page(&srv.base, &admin).await;
    assert!(
        body.contains(
            "vaultline_tool_calls_total{tool=\"health\",action=\"status\",outcome=\"ok\"} 1"
        ),
        "{body}"
    );
    assert!(
        body.contains("vaultline_tool_call_seconds_bucket"),
        "{body}"
    );
    assert!(body.contains("vaultline_http_requests_total"), "{body}");
    c.cancel().await.ok();
}

#[tokio::test]
async fn anonymous_discovery_is_off_by_default_and_exactly_scoped_when_on() {
    let env = Env::new();
    env.org("acme");
    let key = env.key("acme", "operator");
    let srv = Server::start(
        &env,
        &[("VAULTLINE_AUTH__ALLOW_ANONYMOUS_DISCOVERY", "true")],
        &[],
    );
    let raw = Raw::new(&srv.url);
    let sid = raw.session(None).await;
    let list = raw
        .post(
            None,
            Some(&sid),
            &[],
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        )
        .await;
    assert_eq!(list.status, 200);
    assert!(list.json()["result"]["tools"].as_array().unwrap().len() >= 2);
    let r = raw
        .call(None, &sid, "health", json!({"action": "status"}))
        .await;
    assert_eq!(r.status, 401, "tools/call still needs a key");
    let r = raw
        .call(Some(&key), &sid, "health", json!({"action": "status"}))
        .await;
    assert_eq!(
        r.status, 404,
        "a keyed caller cannot take over an anonymous session"
    );
    drop(srv);
    let srv = Server::start(&env, &[], &[]);
    assert_eq!(
        Raw::new(&srv.url).post(None, None, &[], INIT).await.status,
        401,
        "off by default"
    );
}

#[tokio::test]
async fn a_stale_session_gets_404_and_the_client_reinitialises() {
    let env = Env::new();
    env.org("acme");
    let key = env.key("acme", "operator");
    let srv = Server::start(
        &env,
        &[("VAULTLINE_HTTP__SESSION_KEEP_ALIVE_SECS", "1")],
        &[],
    );
    let raw = Raw::new(&srv.url);
    let sid = raw.session(Some(&key)).await;
    let c = http_client(&srv.url, &key).await;
    ok(&c, "health", json!({"action": "status"})).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = raw
        .call(Some(&key), &sid, "health", json!({"action": "status"}))
        .await;
    assert_eq!(r.status, 404, "idle session reaped: {}", r.body);
    // rmcp's client re-initialises on 404 and the call goes through.
    let out = ok(&c, "health", json!({"action": "status"})).await;
    assert_eq!(out["status"], "ok");
    c.cancel().await.ok();
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let env = Env::new();
    let mut srv = Server::start(&env, &[], &[]);
    let pid = srv.pid();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = srv
        .wait_exit(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    assert!(
        exit.success(),
        "clean exit: {exit:?}\n{}",
        srv.log.lock().unwrap()
    );
}

#[test]
fn cli_refuses_unknown_orgs_roles_and_bad_slugs_clearly() {
    let env = Env::new();
    let (ok, out, err) = cli_raw(
        &env.db(),
        &["keys", "create", "--org", "nope", "--role", "viewer"],
    );
    assert!(!ok && out.is_empty(), "no key printed");
    assert!(err.contains("vaultline orgs create nope"), "{err}");
    let (ok, _, err) = cli_raw(
        &env.db(),
        &["keys", "create", "--org", "nope", "--role", "root"],
    );
    assert!(!ok && err.contains("unknown role"), "{err}");
    let (ok, _, err) = cli_raw(&env.db(), &["orgs", "create", "Bad Org"]);
    assert!(!ok && err.contains("not a valid org id"), "{err}");
    env.org("acme");
    let (ok, _, err) = cli_raw(&env.db(), &["orgs", "create", "acme"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let key = env.key("acme", "viewer");
    let listed = cli(&env.db(), &["keys", "list"]);
    assert!(!listed.contains(&key), "keys list never shows a secret");
    let secret_part = key.rsplit('_').next().unwrap();
    let prefix = key.split('_').nth(1).unwrap();
    let mut stored = std::fs::read(env.db()).unwrap();
    stored.extend(std::fs::read(env.db().with_extension("db-wal")).unwrap_or_default());
    let stored = String::from_utf8_lossy(&stored);
    assert!(
        stored.contains(prefix),
        "the public prefix is stored (so this check reads the right files)"
    );
    assert!(
        !stored.contains(secret_part),
        "the database holds only a digest"
    );
}

#[tokio::test]
async fn stateless_mode_answers_plain_json_without_sessions() {
    let env = Env::new();
    env.org("acme");
    let key = env.key("acme", "operator");
    let srv = Server::start(&env, &[], &["--stateless"]);
    let raw = Raw::new(&srv.url);
    let init = raw.post(Some(&key), None, &[], INIT).await;
    assert_eq!(init.status, 200, "{}", init.body);
    assert!(
        init.headers.get("mcp-session-id").is_none(),
        "no session in stateless mode"
    );
    let ct = init
        .headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(ct.starts_with("application/json"), "plain JSON reply: {ct}");
    let body = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"workflow",
        "arguments":{"action":"create","task_type":"docs","complexity":"trivial"}}});
    let r = raw
        .post(
            Some(&key),
            None,
            &[("mcp-protocol-version", "2025-11-25")],
            body.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        v["result"]["structuredContent"]["workflow"]["status"], "open",
        "{v}"
    );
    let r = raw.post(None, None, &[], body.to_string()).await;
    assert_eq!(r.status, 401, "keys still required");
}

#[test]
fn logs_go_to_stderr_as_plain_or_json_and_never_to_stdout() {
    let env = Env::new();
    let out = std::process::Command::new(bin())
        .arg("--db")
        .arg(env.db())
        .args(["--log-format", "json", "migrate"])
        .env("VAULTLINE_LOG__LEVEL", "info")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().expect("a log line");
    let v: serde_json::Value =
        serde_json::from_str(first).unwrap_or_else(|e| panic!("{first}: {e}"));
    assert_eq!(v["level"], "INFO", "{v}");
    assert!(
        v["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("migration"),
        "{v}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("schema version "),
        "stdout carries only the command's answer: {stdout}"
    );
    assert!(!stdout.contains("INFO"), "{stdout}");
}

#[test]
fn key_actions_are_in_the_append_only_audit_trail() {
    let env = Env::new();
    env.org("a");
    env.org("b");
    env.key("a", "admin");
    env.key("b", "viewer");
    let id = cli(&env.db(), &["keys", "list", "--org", "a"])
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    cli(&env.db(), &["keys", "rotate", &id, "--grace-days", "1"]);
    cli(&env.db(), &["keys", "revoke", &id]);
    let lines = cli(&env.db(), &["audit", "--org", "a"]);
    let entries: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["key.create", "key.rotate", "key.revoke"],
        "{lines}"
    );
    assert!(
        entries
            .iter()
            .all(|e| e["org_id"] == "a" && e["actor"].as_str().unwrap().starts_with("cli:"))
    );
    assert_eq!(entries[1]["subject"], id.as_str());
    assert!(!lines.contains("vl_"), "no key material in the audit trail");
    assert_eq!(
        cli(&env.db(), &["audit"]).lines().count(),
        4,
        "all orgs: a's three and b's one"
    );
}
