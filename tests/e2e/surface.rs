//! The tool surface as clients see it: listing, schemas, annotations, the size
//! budget, and a workflow round trip over both transports with every structured
//! result checked against its tool's outputSchema.

use serde_json::{Value, json};

use crate::common::*;

/// tools/list budget: 6 KiB per listed tool on average (it was 24 KiB for the
/// first four), so a client's context is not flooded as tools are added.
const LIST_BUDGET_PER_TOOL: usize = 6 * 1024;

async fn round_trip(c: &Client) {
    let tools = c.list_all_tools().await.expect("tools/list");
    let schemas = Schemas::of(&tools);
    let h = ok(c, "health", json!({"action": "status"})).await;
    schemas.check("health", &h);
    assert_eq!(h["status"], "ok");
    let w = ok(
        c,
        "workflow",
        json!({"action": "create", "task_type": "feature", "complexity": "simple", "title": "e2e"}),
    )
    .await;
    schemas.check("workflow", &w);
    let id = w["workflow"]["id"].as_str().unwrap().to_string();
    let s = ok(c, "workflow", json!({"action": "stage", "workflow_id": id, "stage_name": "impl", "model": "m", "cost_usd": 0.25, "output": {"ok": true}})).await;
    schemas.check("workflow", &s);
    for args in [
        json!({"action": "get", "workflow_id": id}),
        json!({"action": "list"}),
        json!({"action": "graph", "workflow_id": id}),
        json!({"action": "query", "query": "summary"}),
        json!({"action": "query", "query": "state", "workflow_id": id}),
        json!({"action": "query", "query": "stats"}),
        json!({"action": "query", "query": "chooser", "task_type": "fix", "complexity": "complex"}),
        json!({"action": "query", "query": "stage_read", "workflow_id": id, "stage_name": "impl"}),
        json!({"action": "close", "workflow_id": id, "final_model": "m"}),
    ] {
        let out = ok(c, "workflow", args).await;
        schemas.check("workflow", &out);
    }
    let w2 = ok(
        c,
        "workflow",
        json!({"action": "create", "task_type": "test", "complexity": "moderate"}),
    )
    .await;
    let w2 = w2["workflow"]["id"].as_str().unwrap().to_string();
    let t = ok(
        c,
        "task",
        json!({"action": "create", "title": "Write the e2e tests", "workflow_id": w2,
        "instruction": "Add tests for the ledger", "paths": ["tests/ledger.rs"]}),
    )
    .await;
    schemas.check("task", &t);
    let tid = t["task"]["id"].as_str().unwrap().to_string();
    for args in [
        json!({"action": "get", "task_id": tid}),
        json!({"action": "classify", "task_id": tid}),
        json!({"action": "update", "task_id": tid, "status": "in_progress"}),
        json!({"action": "list", "format": "md"}),
        json!({"action": "list", "workflow_id": w2}),
        json!({"action": "classify", "instruction": "Fix typo", "paths": ["README.md"]}),
        json!({"action": "done", "task_id": tid, "answer": "added 3 tests"}),
        json!({"action": "retro", "title": "Rotated keys", "occurred_at": "2026-11-20"}),
    ] {
        let out = ok(c, "task", args).await;
        schemas.check("task", &out);
    }
    let g = ok(c, "workflow", json!({"action": "graph", "workflow_id": w2})).await;
    assert!(
        g["mermaid"]
            .as_str()
            .unwrap()
            .contains("task: Write the e2e tests · done"),
        "{g}"
    );
    let first = ok(
        c,
        "checkpoint",
        json!({"action": "save", "agent": "e2e", "project": "vl",
        "objective": "ship the core", "blockers": ["none"], "recent_actions": ["wrote tests"]}),
    )
    .await;
    schemas.check("checkpoint", &first);
    let again = ok(
        c,
        "checkpoint",
        json!({"action": "save", "agent": "e2e", "project": "vl",
        "objective": "ship the core", "blockers": ["none"], "recent_actions": ["wrote tests"]}),
    )
    .await;
    assert_eq!(
        first["checkpoint"]["id"], again["checkpoint"]["id"],
        "same content, same checkpoint"
    );
    assert_eq!(again["created"], false);
    ok(
        c,
        "checkpoint",
        json!({"action": "save", "agent": "e2e", "project": "vl", "objective": "ship the core",
        "recent_actions": ["wrote tests", "fixed clippy"]}),
    )
    .await;
    for args in [
        json!({"action": "latest", "agent": "e2e"}),
        json!({"action": "get", "checkpoint_id": first["checkpoint"]["id"]}),
        json!({"action": "list", "project": "vl"}),
        json!({"action": "diff", "agent": "e2e"}),
        json!({"action": "decide", "decision": "SQLite in WAL mode", "rationale": "one file, durable on crash", "agent": "e2e", "project": "vl"}),
        json!({"action": "ingest", "conversation_id": "c1", "title": "chat",
               "messages": [{"role": "user", "content": "please remember the WAL decision"}]}),
        json!({"action": "search", "query": "WAL"}),
        json!({"action": "handoff", "agent": "e2e", "project": "vl"}),
    ] {
        let out = ok(c, "checkpoint", args).await;
        schemas.check("checkpoint", &out);
    }
    let found = ok(c, "checkpoint", json!({"action": "search", "query": "WAL"})).await;
    assert_eq!(found["results"].as_array().unwrap().len(), 2, "{found}");
    let h = call(
        c,
        "checkpoint",
        json!({"action": "handoff", "agent": "e2e", "project": "vl"}),
    )
    .await;
    let doc = text(&h);
    for section in [
        "# Recovery Checkpoint",
        "## Objective",
        "ship the core",
        "## Recent Decisions",
        "SQLite in WAL mode",
    ] {
        assert!(doc.contains(section), "handoff lacks {section:?}:\n{doc}");
    }
}

#[tokio::test]
async fn tools_list_is_small_complete_and_honest() {
    let env = Env::new();
    env.org("acme");
    let key = env.key("acme", "viewer");
    let srv = Server::start(&env, &[], &[]);
    let c = http_client(&srv.url, &key).await;
    let tools = c.list_all_tools().await.unwrap();
    let size = serde_json::to_vec(&json!({"tools": tools})).unwrap().len();
    let budget = LIST_BUDGET_PER_TOOL * tools.len();
    assert!(
        size <= budget,
        "tools/list is {size} bytes, over the {budget} budget for {} tools",
        tools.len()
    );
    for t in &tools {
        let input = Value::Object(t.input_schema.as_ref().clone());
        assert_eq!(input["type"], "object", "{}: flat object schema", t.name);
        assert!(
            input.get("oneOf").is_none() && input.get("anyOf").is_none(),
            "{}: no root oneOf/anyOf",
            t.name
        );
        assert_eq!(input["properties"]["action"]["type"], "string");
        assert!(
            input["properties"]["action"]["description"]
                .as_str()
                .is_some()
        );
        assert!(t.output_schema.is_some(), "{} has an outputSchema", t.name);
        let a = t
            .annotations
            .as_ref()
            .unwrap_or_else(|| panic!("{} has annotations", t.name));
        assert!(
            a.read_only_hint.is_some()
                && a.destructive_hint.is_some()
                && a.idempotent_hint.is_some()
        );
        jsonschema::validator_for(&input)
            .unwrap_or_else(|e| panic!("{}: input schema invalid: {e}", t.name));
    }
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(
        names.contains(&"workflow") && names.contains(&"health"),
        "{names:?}"
    );
    let wf = tools.iter().find(|t| t.name == "workflow").unwrap();
    let actions = &Value::Object(wf.input_schema.as_ref().clone())["properties"]["action"]["enum"];
    for a in ["create", "init", "stage", "write", "query", "graph"] {
        assert!(
            actions.as_array().unwrap().contains(&json!(a)),
            "workflow lists {a}"
        );
    }
    eprintln!("tools/list: {size} bytes for {} tools", tools.len());
    c.cancel().await.ok();
}

#[tokio::test]
async fn round_trip_over_http() {
    let env = Env::new();
    env.org("acme");
    let key = env.key("acme", "operator");
    let srv = Server::start(&env, &[], &[]);
    let c = http_client(&srv.url, &key).await;
    round_trip(&c).await;
    c.cancel().await.ok();
}

#[tokio::test]
async fn round_trip_over_stdio() {
    let env = Env::new();
    let c = stdio_client(&env, &[]).await;
    round_trip(&c).await;
    c.cancel().await.ok();
}

#[tokio::test]
async fn read_only_and_toolsets_trim_the_list_and_refuse_writes() {
    let env = Env::new();
    let c = stdio_client(&env, &[("VAULTLINE_TOOLS__READ_ONLY", "true")]).await;
    let tools = c.list_all_tools().await.unwrap();
    for t in &tools {
        let a = t.annotations.as_ref().unwrap();
        assert_eq!(
            a.read_only_hint,
            Some(true),
            "{} is read-only in read-only mode",
            t.name
        );
        let actions =
            Value::Object(t.input_schema.as_ref().clone())["properties"]["action"]["enum"].clone();
        for w in ["create", "stage", "close", "cancel", "canary"] {
            assert!(
                !actions.as_array().unwrap().contains(&json!(w)),
                "{}: {w} hidden",
                t.name
            );
        }
    }
    let msg = fails(
        &c,
        "workflow",
        json!({"action": "create", "task_type": "fix", "complexity": "simple"}),
    )
    .await;
    assert!(msg.contains("read-only"), "{msg}");
    assert_eq!(
        ok(&c, "workflow", json!({"action": "list"})).await["workflows"],
        json!([])
    );
    c.cancel().await.ok();

    let mut cmd_env = vec![("VAULTLINE_TOOLS__TOOLSETS", "[health]")];
    cmd_env.push(("VAULTLINE_LOG__LEVEL", "warn"));
    let c = stdio_client(&env, &cmd_env).await;
    let names: Vec<String> = c
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, vec!["health"]);
    let err = c
        .call_tool(
            rmcp::model::CallToolRequestParams::new("workflow")
                .with_arguments(obj(json!({"action": "list"}))),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown tool"), "{err}");
    c.cancel().await.ok();
}
