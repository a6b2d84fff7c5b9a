//! Quota end to end: the real server over HTTP and stdio — accounts with file and
//! env secrets (a group-readable file refused, nothing written), status moving
//! ACTIVE → WARNING → CRITICAL → EXHAUSTED, the dated JSON + YAML report, roles,
//! org isolation, the admin-only quota gauge, the `quota report` CLI, and the
//! in-process daily audit taking its lease once per day and alerting a webhook.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

fn secret_file(dir: &Path, name: &str, mode: u32) -> String {
    let p = dir.join(name);
    std::fs::write(&p, "sk-e2e-file-secret-0123456789\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    format!("file:{}", p.display())
}

fn add(provider: &str, name: &str, secret_ref: &str, limit: i64) -> Value {
    json!({"action": "accounts", "op": "add", "provider": provider, "name": name,
           "billing_mode": "seat", "secret_ref": secret_ref, "limit_kind": "requests",
           "limit": limit, "window": "rolling", "window_minutes": 300})
}

fn today() -> String {
    chrono::Utc::now().date_naive().to_string()
}

/// Adds an account, walks it through every status, and reads it back.
async fn lifecycle(c: &Client, schemas: &Schemas, dir: &Path) -> String {
    // A group-readable secret file is refused, naming the path and the fix.
    let open = secret_file(dir, "open.key", 0o644);
    let msg = fails(c, "quota", add("anthropic", "max-1", &open, 10)).await;
    assert!(
        msg.contains("chmod 600") && msg.contains("open.key"),
        "{msg}"
    );
    assert!(!msg.contains("sk-e2e"), "the secret is never echoed: {msg}");
    let listed = ok(
        c,
        "quota",
        json!({"action": "accounts", "include_removed": true}),
    )
    .await;
    assert_eq!(listed["accounts"], json!([]), "nothing was written");

    let good = secret_file(dir, "good.key", 0o600);
    let added = ok(c, "quota", add("anthropic", "max-1", &good, 10)).await;
    schemas.check("quota", &added);
    let id = added["accounts"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(added["accounts"][0]["secret_ref"], good.as_str());
    for (n, want) in [
        (7, "ACTIVE"),
        (1, "WARNING"),
        (1, "CRITICAL"),
        (1, "EXHAUSTED"),
    ] {
        let r = ok(
            c,
            "quota",
            json!({"action": "record", "account_id": id, "requests": n, "note": "seat usage"}),
        )
        .await;
        schemas.check("quota", &r);
        let s = ok(c, "quota", json!({"action": "status", "account_id": id})).await;
        schemas.check("quota", &s);
        assert_eq!(s["accounts"][0]["figures"]["status"], want, "{s}");
    }
    let s = ok(c, "quota", json!({"action": "status"})).await;
    let f = &s["accounts"][0]["figures"];
    assert_eq!(
        (
            f["used"].clone(),
            f["remaining"].clone(),
            f["percent"].clone()
        ),
        (json!(10), json!(0), json!(100.0))
    );
    assert!(f["burn_per_day"].as_f64().unwrap() > 0.0);
    let text = text(&call(c, "quota", json!({"action": "status"})).await);
    assert!(
        text.contains("EXHAUSTED") && !text.contains("sk-e2e"),
        "{text}"
    );
    id
}

fn check_report_files(dir: &Path, date: &str, account: &str) {
    let json_path = dir.join(format!("quota-report-{date}.json"));
    let yaml_path = dir.join(format!("quota-report-{date}.yaml"));
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(&json_path)
            .unwrap_or_else(|e| panic!("{}: {e}", json_path.display())),
    )
    .unwrap();
    assert_eq!(report["date"], date);
    let acct = report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == account)
        .unwrap_or_else(|| panic!("{account} not in {report}"));
    assert_eq!(acct["figures"]["status"], "EXHAUSTED");
    assert!(
        report["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["subject"] == account && a["kind"] == "quota_exhausted"),
        "{report}"
    );
    let yaml = std::fs::read_to_string(&yaml_path).unwrap();
    assert!(
        yaml.starts_with("# vaultline quota report for") && yaml.contains("status: EXHAUSTED"),
        "{yaml}"
    );
    assert!(!yaml.contains("sk-e2e") && !report.to_string().contains("sk-e2e"));
}

#[tokio::test]
async fn quota_over_http_roles_isolation_report_and_metrics() {
    let env = Env::new();
    env.org("acme");
    env.org("beta");
    let admin = env.key("acme", "admin");
    let op = env.key("acme", "operator");
    let viewer = env.key("acme", "viewer");
    let beta = env.key("beta", "owner");
    let reports = env.dir.path().join("reports");
    let reports_s = reports.display().to_string();
    let srv = Server::start(
        &env,
        &[
            ("VAULTLINE_QUOTA__REPORT_DIR", reports_s.as_str()),
            ("E2E_SEAT_TOKEN", "sk-e2e-env-secret-0123456789"),
        ],
        &[],
    );
    let a = http_client(&srv.url, &admin).await;
    let tools = a.list_all_tools().await.unwrap();
    let schemas = Schemas::of(&tools);
    let q = tools
        .iter()
        .find(|t| t.name == "quota")
        .expect("quota listed");
    let ann = q.annotations.as_ref().unwrap();
    assert_eq!(
        (ann.read_only_hint, ann.destructive_hint),
        (Some(false), Some(true))
    );
    let id = lifecycle(&a, &schemas, env.dir.path()).await;

    // An env: secret is read from the server's environment, never returned.
    let e = ok(
        &a,
        "quota",
        add("openai", "api-1", "env:E2E_SEAT_TOKEN", 1000),
    )
    .await;
    assert_eq!(e["accounts"][0]["secret_ref"], "env:E2E_SEAT_TOKEN");
    assert!(!e.to_string().contains("sk-e2e-env"));

    // Roles.
    let v = http_client(&srv.url, &viewer).await;
    let o = http_client(&srv.url, &op).await;
    let msg = fails(&v, "quota", add("openai", "api-2", "env:HOME", 5)).await;
    assert!(
        msg.contains("needs role admin") && msg.contains("viewer"),
        "{msg}"
    );
    let msg = fails(
        &v,
        "quota",
        json!({"action": "record", "account_id": id, "requests": 1}),
    )
    .await;
    assert!(msg.contains("needs role operator"), "{msg}");
    let msg = fails(&o, "quota", json!({"action": "rotate", "account_id": id})).await;
    assert!(msg.contains("needs role admin"), "{msg}");
    let msg = fails(&v, "quota", json!({"action": "report", "write": true})).await;
    assert!(msg.contains("needs role admin"), "{msg}");
    let seen = ok(&v, "quota", json!({"action": "report"})).await;
    schemas.check("quota", &seen);
    assert!(seen.get("files").is_none());
    assert!(
        seen["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["raised"] == false),
        "a viewer's report only looks"
    );

    // Org isolation: another org's id is not found, its list is empty.
    let b = http_client(&srv.url, &beta).await;
    for args in [
        json!({"action": "status", "account_id": id}),
        json!({"action": "record", "account_id": id, "requests": 1}),
        json!({"action": "rotate", "account_id": id}),
        json!({"action": "accounts", "op": "remove", "account_id": id}),
    ] {
        let msg = fails(&b, "quota", args.clone()).await;
        assert!(msg.contains("not found"), "{args}: {msg}");
    }
    assert_eq!(
        ok(&b, "quota", json!({"action": "accounts"})).await["accounts"],
        json!([])
    );

    // The report, written by an admin into report_dir/<org>.
    let r = ok(&a, "quota", json!({"action": "report", "write": true})).await;
    schemas.check("quota", &r);
    assert_eq!(r["date"], today());
    assert_eq!(r["files"].as_array().unwrap().len(), 2, "{r}");
    check_report_files(&reports.join("acme"), &today(), &id);

    // The quota gauge is on the admin-only metrics, labelled by org and account.
    let m = metrics_page(&srv.base, &admin).await;
    assert!(
        m.contains(&format!(
            "vaultline_quota_percent{{org=\"acme\",account=\"{id}\"}} 100"
        )),
        "{m}"
    );
    for c in [a, v, o, b] {
        c.cancel().await.ok();
    }
}

#[tokio::test]
async fn quota_over_stdio_and_the_cli_report() {
    let env = Env::new();
    let reports = env.dir.path().join("reports");
    let reports_s = reports.display().to_string();
    let c = stdio_client(&env, &[("VAULTLINE_QUOTA__REPORT_DIR", reports_s.as_str())]).await;
    let schemas = Schemas::of(&c.list_all_tools().await.unwrap());
    let id = lifecycle(&c, &schemas, env.dir.path()).await;
    let r = ok(&c, "quota", json!({"action": "report", "write": true})).await;
    assert_eq!(r["files"].as_array().unwrap().len(), 2);
    check_report_files(&reports.join("default"), &today(), &id);
    c.cancel().await.ok();

    // The CLI for system timers: every org, into --dir, JSON on stdout.
    let out_dir = env.dir.path().join("cli-reports");
    let out = cli(
        &env.db(),
        &[
            "quota",
            "report",
            "--dir",
            out_dir.to_str().unwrap(),
            "--date",
            &today(),
        ],
    );
    let printed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed["accounts"][0]["org"], "default");
    check_report_files(&out_dir, &today(), &id);
    let (ok_, _, err) = cli_raw(&env.db(), &["quota", "report", "--date", "2999-01-01"]);
    assert!(!ok_ && err.contains("future"), "{err}");
}

/// A local webhook receiver: records every JSON body it is sent.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), got)
}

#[tokio::test]
async fn the_daily_audit_runs_once_per_day_across_processes_and_alerts() {
    let env = Env::new();
    env.org("acme");
    let admin = env.key("acme", "admin");
    let reports = env.dir.path().join("reports");
    let reports_s = reports.display().to_string();
    // Day one, on a fixed clock (test profile only) with the audit off (the
    // test profile's default): a seat with a weekly rolling window, used up.
    let day_one = [
        ("VAULTLINE_PROFILE", "test"),
        ("VAULTLINE_TEST_CLOCK", "2026-11-24T03:00:00Z"),
        ("VAULTLINE_QUOTA__REPORT_DIR", reports_s.as_str()),
    ];
    let id = {
        let srv = Server::start(&env, &day_one, &[]);
        let c = http_client(&srv.url, &admin).await;
        let good = secret_file(env.dir.path(), "good.key", 0o600);
        let mut args = add("anthropic", "max-1", &good, 2);
        args["window_minutes"] = json!(10080);
        let out = ok(&c, "quota", args).await;
        let id = out["accounts"][0]["id"].as_str().unwrap().to_string();
        let r = ok(
            &c,
            "quota",
            json!({"action": "record", "account_id": id, "requests": 2}),
        )
        .await;
        assert_eq!(r["accounts"][0]["figures"]["status"], "EXHAUSTED");
        c.cancel().await.ok();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!srv.log.lock().unwrap().contains("quota audit done"));
        id
    };
    assert!(!reports.exists(), "no audit ran with the audit off");
    // Day two, past 02:00: two processes on the same file, the audit on, a
    // webhook listening. Exactly one of them runs the day's audit.
    let (url, got) = webhook().await;
    let day_two = [
        ("VAULTLINE_PROFILE", "test"),
        ("VAULTLINE_TEST_CLOCK", "2026-11-25T02:30:00Z"),
        ("VAULTLINE_QUOTA__REPORT_DIR", reports_s.as_str()),
        ("VAULTLINE_QUOTA__AUDIT_ENABLED", "true"),
        ("VAULTLINE_ALERTS__WEBHOOK_URL", url.as_str()),
    ];
    let first = Server::start(&env, &day_two, &[]);
    let second = Server::start(&env, &day_two, &[]);
    let report = reports.join("quota-report-2026-11-25.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while (!report.exists() || got.lock().unwrap().is_empty())
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give both processes a look at the lease before counting runs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let logs = format!(
        "{}\n{}",
        first.log.lock().unwrap(),
        second.log.lock().unwrap()
    );
    assert_eq!(
        logs.matches("quota audit done").count(),
        1,
        "one run for the day across both processes:\n{logs}"
    );
    check_report_files(&reports, "2026-11-25", &id);
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["as_of"], "2026-11-25T02:30:00.000Z");
    assert_eq!(
        r["alerts"][0]["raised"], true,
        "a new day, a new alert: {r}"
    );
    // The alert went to the log and to the webhook, once.
    assert!(logs.contains("vaultline::alert"), "{logs}");
    let hooks = got.lock().unwrap().clone();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0]["kind"], "quota_exhausted");
    assert_eq!(hooks[0]["org"], "acme");
    assert_eq!(hooks[0]["subject"], id.as_str());
    assert_eq!(hooks[0]["period_key"], "2026-11-25");
    assert!(!hooks[0].to_string().contains("sk-e2e"));
}
