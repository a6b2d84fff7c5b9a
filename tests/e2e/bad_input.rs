//! Bad input, table-driven, over both transports: each case gets a clear error
//! naming the field, id, limit or role; nothing is written; the server keeps serving.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::common::*;

/// Counts what a bad call could have written: workflows listed, stages of `wid`.
async fn snapshot(c: &Client, wid: &str) -> (usize, i64, String) {
    let list = ok(c, "workflow", json!({"action": "list", "limit": 100})).await;
    let w = ok(c, "workflow", json!({"action": "get", "workflow_id": wid})).await;
    (
        list["workflows"].as_array().unwrap().len(),
        w["workflow"]["stages"].as_i64().unwrap(),
        w["workflow"]["status"].as_str().unwrap().to_string(),
    )
}

/// Runs the tool-level table. `op` may write in its org, `viewer` is a viewer of
/// the same org, `foreign` is a workflow id of another org.
async fn table(op: &Client, viewer: &Client, foreign: &str) {
    let open = ok(
        op,
        "workflow",
        json!({"action": "create", "task_type": "fix", "complexity": "simple"}),
    )
    .await;
    let open_id = open["workflow"]["id"].as_str().unwrap().to_string();
    let closed = ok(
        op,
        "workflow",
        json!({"action": "create", "task_type": "fix", "complexity": "simple"}),
    )
    .await;
    let closed_id = closed["workflow"]["id"].as_str().unwrap().to_string();
    ok(
        op,
        "workflow",
        json!({"action": "close", "workflow_id": closed_id}),
    )
    .await;
    let before = snapshot(op, &open_id).await;

    let cases: Vec<(&str, &Client, Value, &[&str])> = vec![
        (
            "unknown action",
            op,
            json!({"action": "explode"}),
            &["action", "explode"],
        ),
        (
            "missing field",
            op,
            json!({"action": "create", "task_type": "fix"}),
            &["complexity", "required"],
        ),
        (
            "missing id",
            op,
            json!({"action": "stage", "stage_name": "x"}),
            &["workflow_id", "required"],
        ),
        (
            "wrong type",
            op,
            json!({"action": "create", "task_type": "fix", "complexity": 5}),
            &["complexity"],
        ),
        (
            "wrong enum",
            op,
            json!({"action": "create", "task_type": "bugfix", "complexity": "simple"}),
            &["task_type"],
        ),
        (
            "unknown field",
            op,
            json!({"action": "list", "colour": "red"}),
            &["colour"],
        ),
        (
            "over-long string",
            op,
            json!({"action": "create", "task_type": "fix", "complexity": "simple", "title": "t".repeat(201)}),
            &["title", "200"],
        ),
        (
            "negative cost",
            op,
            json!({"action": "stage", "workflow_id": open_id, "stage_name": "s", "cost_usd": -1.0}),
            &["cost_usd"],
        ),
        (
            "unknown id",
            op,
            json!({"action": "stage", "workflow_id": "01JZZZZZZZZZZZZZZZZZZZZZZZ", "stage_name": "s"}),
            &["not found"],
        ),
        (
            "another org's id",
            op,
            json!({"action": "stage", "workflow_id": foreign, "stage_name": "s"}),
            &["not found"],
        ),
        (
            "invalid transition",
            op,
            json!({"action": "stage", "workflow_id": closed_id, "stage_name": "late"}),
            &["closed"],
        ),
        (
            "viewer writes",
            viewer,
            json!({"action": "stage", "workflow_id": open_id, "stage_name": "s"}),
            &["needs role operator", "viewer"],
        ),
        (
            "bad cursor",
            op,
            json!({"action": "list", "cursor": "%%%"}),
            &["cursor"],
        ),
        (
            "bad date",
            op,
            json!({"action": "list", "since": "last tuesday"}),
            &["since"],
        ),
    ];
    for (name, client, args, needles) in cases {
        let msg = fails(client, "workflow", args).await;
        for n in needles {
            assert!(msg.contains(n), "{name}: {msg:?} should mention {n:?}");
        }
        assert!(!msg.contains("internal error"), "{name}: {msg}");
    }
    // Unknown tool: a JSON-RPC error, not a tool result.
    let err = op
        .call_tool(rmcp::model::CallToolRequestParams::new("nope").with_arguments(obj(json!({}))))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown tool: nope"), "{err}");
    assert_eq!(snapshot(op, &open_id).await, before, "nothing was written");
    assert_eq!(
        ok(op, "health", json!({"action": "status"})).await["status"],
        "ok",
        "still serving"
    );
}

#[tokio::test]
async fn bad_input_over_http() {
    let env = Env::new();
    env.org("a");
    env.org("b");
    let op = env.key("a", "operator");
    let viewer = env.key("a", "viewer");
    let other = env.key("b", "operator");
    let srv = Server::start(&env, &[], &[]);
    let (c_op, c_viewer, c_other) = (
        http_client(&srv.url, &op).await,
        http_client(&srv.url, &viewer).await,
        http_client(&srv.url, &other).await,
    );
    let f = ok(
        &c_other,
        "workflow",
        json!({"action": "create", "task_type": "docs", "complexity": "trivial"}),
    )
    .await;
    table(&c_op, &c_viewer, f["workflow"]["id"].as_str().unwrap()).await;

    // Malformed JSON gets a JSON-RPC parse error.
    let raw = Raw::new(&srv.url);
    let sid = raw.session(Some(&op)).await;
    let r = raw
        .post(
            Some(&op),
            Some(&sid),
            &[],
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/ca"#,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], -32700, "{}", r.body);
    let r = raw
        .post(Some(&op), Some(&sid), &[], r#"{"hello":"world"}"#)
        .await;
    assert_eq!(r.json()["error"]["code"], -32600, "{}", r.body);
    for c in [c_op, c_viewer, c_other] {
        c.cancel().await.ok();
    }
}

#[tokio::test]
async fn bad_input_over_stdio() {
    let env = Env::new();
    let op = stdio_client(&env, &[]).await;
    let viewer = stdio_client(&env, &[("VAULTLINE_STDIO__ROLE", "viewer")]).await;
    let other = stdio_client(&env, &[("VAULTLINE_STDIO__ORG", "other")]).await;
    let f = ok(
        &other,
        "workflow",
        json!({"action": "create", "task_type": "docs", "complexity": "trivial"}),
    )
    .await;
    table(&op, &viewer, f["workflow"]["id"].as_str().unwrap()).await;
    for c in [op, viewer, other] {
        c.cancel().await.ok();
    }
}

#[test]
fn malformed_json_over_stdio_gets_a_parse_error_and_the_session_goes_on() {
    let env = Env::new();
    let mut child = Command::new(bin())
        .arg("--db")
        .arg(env.db())
        .args(["serve", "--stdio"])
        .env("VAULTLINE_LOG__LEVEL", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    writeln!(stdin, "{{not json").unwrap();
    out.read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["error"]["code"], -32700, "{line}");
    assert_eq!(v["id"], Value::Null);
    writeln!(stdin, "{INIT}").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["result"]["serverInfo"]["name"], "vaultline", "{line}");
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .unwrap();
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"health","arguments":{{"action":"status"}}}}}}"#
    )
    .unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["result"]["structuredContent"]["status"], "ok", "{line}");
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "stdin EOF ends the server cleanly");
}
