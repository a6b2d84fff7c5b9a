//! The `billing` tool end to end: top-ups (idempotent, admin only), balances in
//! credits and dollars, budgets, the breaker, priced tool calls with their
//! receipts, usage by tool, self-reported stage costs feeding the breaker, bad
//! input that writes nothing, org isolation, the audit trail, both transports;
//! and the durability test: charges acknowledged before a SIGKILL are in the
//! ledger exactly once after a restart.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

const PRICED: &[(&str, &str)] = &[
    ("VAULTLINE_BILLING__TOOL_PRICES_USD__HEALTH", "0.001"),
    ("VAULTLINE_BILLING__RUN_UNIT_FLUSH_MS", "50"),
];

async fn balance_nanos(c: &Client) -> i64 {
    ok(c, "billing", json!({"action": "balance"})).await["balance"]["nanos"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn topups_budgets_breaker_receipts_and_usage_over_http() {
    let env = Env::new();
    env.org("acme");
    env.org("other");
    let admin = env.key("acme", "admin");
    let srv = Server::start(&env, PRICED, &[]);
    let admin_c = http_client(&srv.url, &admin).await;
    let viewer = http_client(&srv.url, &env.key("acme", "viewer")).await;
    let operator = http_client(&srv.url, &env.key("acme", "operator")).await;
    let other = http_client(&srv.url, &env.key("other", "admin")).await;
    let tools = admin_c.list_all_tools().await.unwrap();
    let schemas = Schemas::of(&tools);

    // Top-ups: credits in, idempotent by key, admin only.
    let t = ok(
        &admin_c,
        "billing",
        json!({"action": "topup", "credits": 5000, "idempotency_key": "inv-1", "note": "invoice 1"}),
    )
    .await;
    schemas.check("billing", &t);
    assert_eq!(t["created"], true);
    assert_eq!(t["balance"]["credits"], 5000);
    assert_eq!(t["balance"]["usd"], "5.000000000");
    let again = ok(
        &admin_c,
        "billing",
        json!({"action": "topup", "credits": 5000, "idempotency_key": "inv-1"}),
    )
    .await;
    assert_eq!(again["created"], false, "a replay lands once");
    assert_eq!(balance_nanos(&viewer).await, 5_000_000_000);

    // Bad input: clear errors, nothing written.
    let cases: &[(&Client, Value, &str)] = &[
        (
            &admin_c,
            json!({"action": "topup", "credits": 10}),
            "idempotency_key",
        ),
        (
            &admin_c,
            json!({"action": "topup", "credits": -5, "idempotency_key": "n"}),
            "credits",
        ),
        (
            &admin_c,
            json!({"action": "topup", "credits": 0, "idempotency_key": "z"}),
            "greater than zero",
        ),
        (
            &admin_c,
            json!({"action": "topup", "credits": 1_000_000_000_000i64, "idempotency_key": "big"}),
            "exceeds",
        ),
        (
            &admin_c,
            json!({"action": "topup", "usd_nanos": 5, "credits": 5, "idempotency_key": "both"}),
            "not both",
        ),
        (
            &admin_c,
            json!({"action": "topup", "credits": 6000, "idempotency_key": "inv-1"}),
            "already used",
        ),
        (
            &admin_c,
            json!({"action": "topup", "dollars": 5, "idempotency_key": "u"}),
            "dollars",
        ),
        (
            &viewer,
            json!({"action": "topup", "credits": 5, "idempotency_key": "v"}),
            "needs role admin",
        ),
        (
            &operator,
            json!({"action": "topup", "credits": 5, "idempotency_key": "o"}),
            "needs role admin",
        ),
        (
            &operator,
            json!({"action": "budget", "op": "set", "period": "day", "credits": 5}),
            "needs role admin",
        ),
        (
            &admin_c,
            json!({"action": "budget", "op": "set", "period": "day", "credits": -1}),
            "must not be negative",
        ),
        (
            &admin_c,
            json!({"action": "budget", "op": "set", "period": "day"}),
            "credits",
        ),
        (
            &admin_c,
            json!({"action": "budget", "op": "set", "scope": "task", "scope_id": "t", "period": "day", "credits": 1}),
            "period",
        ),
        (
            &admin_c,
            json!({"action": "budget", "op": "set", "scope": "key", "scope_id": "nokey", "period": "day", "credits": 1}),
            "not found",
        ),
        (
            &admin_c,
            json!({"action": "budget", "op": "set", "scope": "key", "period": "day", "credits": 1}),
            "scope_id",
        ),
        (&admin_c, json!({"action": "budget", "op": "reset"}), "op"),
        (
            &viewer,
            json!({"action": "breaker", "op": "reset"}),
            "needs role admin",
        ),
        (
            &admin_c,
            json!({"action": "breaker", "op": "reset", "window": "task", "task_id": "nope"}),
            "not found",
        ),
        (
            &admin_c,
            json!({"action": "usage", "from": "yesterday"}),
            "from",
        ),
        (
            &admin_c,
            json!({"action": "usage", "from": "2026-01-01", "to": "2025-01-01"}),
            "before",
        ),
        (
            &admin_c,
            json!({"action": "usage", "bucket": "hour", "from": "2025-01-01", "to": "2026-01-01"}),
            "at most 31 days",
        ),
        (
            &admin_c,
            json!({"action": "receipts", "cursor": "garbage!"}),
            "cursor",
        ),
    ];
    for (c, args, want) in cases {
        let e = fails(c, "billing", args.clone()).await;
        assert!(e.contains(want), "{args}: {e}");
    }
    assert_eq!(
        balance_nanos(&viewer).await,
        5_000_000_000,
        "nothing written"
    );
    let b = ok(&viewer, "billing", json!({"action": "budget"})).await;
    assert_eq!(b["budgets"], json!([]), "no budget was half-set");

    // Budgets: admin sets, anyone reads.
    let b = ok(
        &admin_c,
        "billing",
        json!({"action": "budget", "op": "set", "period": "day", "credits": 1000}),
    )
    .await;
    schemas.check("billing", &b);
    assert_eq!(b["budgets"][0]["limit_nanos"], 1_000_000_000);
    let b = ok(&viewer, "billing", json!({"action": "budget"})).await;
    assert_eq!(b["budgets"].as_array().unwrap().len(), 1);

    // The breaker: state for anyone, reset for admins; client-reported stage cost feeds it.
    let w = ok(
        &operator,
        "workflow",
        json!({"action": "create", "task_type": "fix", "complexity": "simple"}),
    )
    .await;
    let wid = w["workflow"]["id"].as_str().unwrap();
    ok(
        &operator,
        "workflow",
        json!({"action": "stage", "workflow_id": wid, "stage_name": "impl", "model": "deepseek-chat", "cost_usd": 0.5}),
    )
    .await;
    let s = ok(&viewer, "billing", json!({"action": "breaker"})).await;
    schemas.check("billing", &s);
    assert_eq!(s["breaker"]["state"], "closed");
    assert_eq!(s["breaker"]["day_cost_nanos"], 500_000_000);
    assert_eq!(s["breaker"]["day_limit_nanos"], 20_000_000_000i64);
    let r = ok(
        &admin_c,
        "billing",
        json!({"action": "breaker", "op": "reset", "note": "test"}),
    )
    .await;
    assert_eq!(r["breaker"]["reset_day"], true);
    assert_eq!(
        balance_nanos(&viewer).await,
        5_000_000_000,
        "a self-reported cost is never billed"
    );

    // A priced tool: each answered call is a committed charge with a receipt.
    let mut charged = Vec::new();
    for _ in 0..3 {
        let r = call(&viewer, "health", json!({"action": "status"})).await;
        let meta = r.meta.as_ref().expect("a priced call carries its charge");
        let charge = &meta.0["vaultline/charge"];
        assert_eq!(charge["billed_nanos"], 1_000_000);
        charged.push(charge["ledger_entry_id"].as_str().unwrap().to_string());
    }
    assert_eq!(balance_nanos(&viewer).await, 5_000_000_000 - 3_000_000);
    let rc = ok(
        &viewer,
        "billing",
        json!({"action": "receipts", "limit": 2}),
    )
    .await;
    schemas.check("billing", &rc);
    assert_eq!(rc["receipts"].as_array().unwrap().len(), 2);
    assert_eq!(rc["receipts"][0]["reason"], "tool_call");
    let rest = ok(
        &viewer,
        "billing",
        json!({"action": "receipts", "cursor": rc["next_cursor"]}),
    )
    .await;
    let mut ids: Vec<String> = rc["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["receipts"].as_array().unwrap())
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    charged.sort();
    assert_eq!(ids, charged, "one receipt per billed call");

    // Usage by tool (run units, flushed in the background) and by model.
    let mut health_calls = 0;
    for _ in 0..100 {
        let u = ok(
            &viewer,
            "billing",
            json!({"action": "usage", "group_by": "tool"}),
        )
        .await;
        schemas.check("billing", &u);
        health_calls = u["usage"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["group"] == "health")
            .map(|r| r["calls"].as_i64().unwrap())
            .sum();
        if health_calls >= 3 {
            assert_eq!(u["usage"]["total_billed_nanos"], 3_000_000);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(health_calls >= 3, "run units counted: {health_calls}");
    let u = ok(
        &viewer,
        "billing",
        json!({"action": "usage", "group_by": "model", "bucket": "month"}),
    )
    .await;
    let models: Vec<&str> = u["usage"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["group"].as_str().unwrap())
        .collect();
    assert!(models.contains(&"deepseek/deepseek-chat"), "{models:?}");
    assert!(models.contains(&"vaultline/tool:health"), "{models:?}");

    // Another org sees none of it.
    assert_eq!(balance_nanos(&other).await, 0);
    let rc = ok(&other, "billing", json!({"action": "receipts"})).await;
    assert_eq!(rc["receipts"], json!([]));
    let s = ok(&other, "billing", json!({"action": "breaker"})).await;
    assert_eq!(s["breaker"]["day_cost_nanos"], 0);

    // Admins see their own org's cost, billed price and run units on /metrics.
    let page = metrics_page(&srv.base, &admin).await;
    for series in [
        "vaultline_billed_nanos_total{org=\"acme\",model=\"vaultline/tool:health\"} 3000000",
        "vaultline_cost_nanos_total{org=\"acme\",model=\"deepseek/deepseek-chat\"} 500000000",
        "vaultline_run_units_total{org=\"acme\",tool=\"health\"}",
        "vaultline_breaker_open{org=\"acme\",window=\"day\"} 0",
    ] {
        assert!(page.contains(series), "{series} in:\n{page}");
    }
    assert!(
        !page.contains("org=\"other\""),
        "another org's series stay hidden"
    );

    // Money and admin actions are audited.
    drop(srv);
    let audit = cli(&env.db(), &["audit", "--org", "acme"]);
    for action in ["billing.topup", "budget.set", "breaker.reset"] {
        assert!(audit.contains(action), "{action} audited:\n{audit}");
    }
    assert_eq!(
        audit.matches("billing.topup").count(),
        1,
        "a replay audits nothing"
    );
}

#[tokio::test]
async fn billing_over_stdio() {
    let env = Env::new();
    let c = stdio_client(&env, &[]).await;
    let t = ok(
        &c,
        "billing",
        json!({"action": "topup", "usd_nanos": 2_500_000_000i64, "idempotency_key": "s1"}),
    )
    .await;
    assert_eq!(t["balance"]["credits"], 2500);
    let b = ok(&c, "billing", json!({"action": "balance"})).await;
    assert_eq!(
        (
            b["balance"]["markup_bp"].as_i64(),
            b["balance"]["mode"].as_str()
        ),
        (Some(20_000), Some("postpaid"))
    );
    let s = ok(&c, "billing", json!({"action": "breaker"})).await;
    assert_eq!(s["breaker"]["state"], "closed");
}

/// Fires priced calls from several clients, SIGKILLs the server mid-stream,
/// restarts it, and checks every acknowledged charge is in the ledger exactly
/// once and the balance equals the sum of the entries.
#[tokio::test]
async fn acknowledged_charges_survive_sigkill_exactly_once() {
    let env = Env::new();
    env.org("acme");
    let key = env.key("acme", "admin");
    let mut srv = Server::start(&env, PRICED, &[]);
    let setup = http_client(&srv.url, &key).await;
    ok(
        &setup,
        "billing",
        json!({"action": "topup", "credits": 1_000_000, "idempotency_key": "seed"}),
    )
    .await;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let c = http_client(&srv.url, &key).await;
        let acked = acked.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let r = c
                    .call_tool(
                        rmcp::model::CallToolRequestParams::new("health")
                            .with_arguments(obj(json!({"action": "status"}))),
                    )
                    .await;
                match r {
                    Ok(r) => {
                        if let Some(id) = r
                            .meta
                            .as_ref()
                            .and_then(|m| m.0["vaultline/charge"]["ledger_entry_id"].as_str())
                        {
                            acked.lock().unwrap().push(id.to_string());
                        }
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    // Let charges flow, then kill without warning.
    for _ in 0..200 {
        if acked.lock().unwrap().len() >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = srv.pid().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(srv.wait_exit(Duration::from_secs(10)).is_some());
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 50,
        "enough charges were acknowledged: {}",
        acked.len()
    );
    drop(srv);

    let srv = Server::start(&env, &[], &[]);
    let c = http_client(&srv.url, &key).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut billed_sum = 0i64;
    let mut cursor = Value::Null;
    loop {
        let mut args = json!({"action": "receipts", "limit": 500});
        if !cursor.is_null() {
            args["cursor"] = cursor.clone();
        }
        let page = ok(&c, "billing", args).await;
        for r in page["receipts"].as_array().unwrap() {
            *seen
                .entry(r["id"].as_str().unwrap().to_string())
                .or_default() += 1;
            billed_sum += r["billed_nanos"].as_i64().unwrap();
        }
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    for id in &acked {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "acknowledged charge {id} is in the ledger once"
        );
    }
    assert!(seen.values().all(|n| *n == 1));
    let balance = balance_nanos(&c).await;
    assert_eq!(
        balance,
        1_000_000 * 1_000_000 - billed_sum,
        "balance = the sum of the entries"
    );
    eprintln!(
        "durability: {} charges acknowledged before SIGKILL, {} in the ledger after restart (unacknowledged in-flight ones may also have committed), balance {balance} nanos",
        acked.len(),
        seen.len()
    );
}

/// The CLI reaches the same billing code: org billing accounts, and any tool
/// action through `vaultline call`.
#[test]
fn billing_from_the_cli() {
    let env = Env::new();
    env.org("acme");
    let db = env.db();
    let acct = cli(&db, &["orgs", "billing", "acme"]);
    assert!(
        acct.contains("\"markup_bp\":20000") && acct.contains("postpaid"),
        "{acct}"
    );
    let acct = cli(
        &db,
        &[
            "orgs",
            "billing",
            "acme",
            "--markup-bp",
            "25000",
            "--mode",
            "prepaid",
        ],
    );
    assert!(
        acct.contains("\"markup_bp\":25000") && acct.contains("prepaid"),
        "{acct}"
    );
    let (ok_, _, err) = cli_raw(&db, &["orgs", "billing", "acme", "--markup-bp", "9000"]);
    assert!(!ok_ && err.contains("markup_bp"), "{err}");
    let (ok_, _, err) = cli_raw(&db, &["orgs", "billing", "nobody"]);
    assert!(!ok_ && err.contains("unknown org"), "{err}");

    let out = cli(
        &db,
        &[
            "call",
            "billing",
            r#"{"action":"topup","credits":1500,"idempotency_key":"cli-1"}"#,
            "--org",
            "acme",
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["balance"]["credits"], 1500);
    assert_eq!(v["balance"]["markup_bp"], 25000);
    let out = cli(
        &db,
        &[
            "call",
            "billing",
            r#"{"action":"balance"}"#,
            "--org",
            "acme",
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["balance"]["usd"], "1.500000000");
    let (ok_, _, err) = cli_raw(
        &db,
        &[
            "call",
            "billing",
            r#"{"action":"topup","credits":-1,"idempotency_key":"x"}"#,
            "--org",
            "acme",
        ],
    );
    assert!(!ok_ && err.contains("credits"), "{err}");
    let audit = cli(&db, &["audit", "--org", "acme"]);
    assert!(
        audit.contains("billing.account") && audit.contains("billing.topup"),
        "{audit}"
    );
    assert!(
        audit.contains("cli:"),
        "the console user is the actor: {audit}"
    );
}
