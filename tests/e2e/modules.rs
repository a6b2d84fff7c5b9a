//! Modules end to end: a weather-like API started here on 127.0.0.1:0, the real
//! server (test profile: `modules.resolve` maps the test host names to
//! loopback), rmcp's client over HTTP and stdio. The whole lifecycle (draft →
//! validate → promote → install → call → edit → diff → upgrade → rollback under
//! load → uninstall) with its audit; a second client that hears list_changed;
//! roles; another org; a tampered bundle; the network policy; bad manifests.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::common::*;

const KEY: &str = "wk_live_0123456789abcdef";

/// The weather API: checks the key, answers JSON; `slow` takes 1.5 s;
/// `/redirect` sends the caller to a host no module declares.
struct Weather {
    port: u16,
    hits: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct St {
    port: u16,
    hits: Arc<AtomicUsize>,
}

async fn current(State(s): State<St>, Path(city): Path<String>, h: HeaderMap) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    if h.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return (StatusCode::UNAUTHORIZED, "bad key").into_response();
    }
    if city == "slow" {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    axum::Json(json!({
        "location": {"name": city, "country": "NO"},
        "current": {"temp": 4.5, "summary": "light rain", "wind": {"kph": 18}},
        "api": "v1"
    }))
    .into_response()
}

async fn forecast(State(s): State<St>, Path(city): Path<String>) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    axum::Json(
        json!({"location": {"name": city}, "daily": [{"date": "2026-12-02", "high": 5, "low": 1}]}),
    )
    .into_response()
}

async fn redirect(State(s): State<St>) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::FOUND,
        [(
            header::LOCATION,
            format!("http://elsewhere.weather.test:{}/v1/current/Oslo", s.port),
        )],
    )
        .into_response()
}

impl Weather {
    async fn start() -> Weather {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .route("/v1/current/{city}", get(current))
            .route("/v1/forecast/{city}", get(forecast))
            .route("/redirect", get(redirect))
            .with_state(St {
                port,
                hits: hits.clone(),
            });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Weather { port, hits }
    }
}

/// The fixture, pointed at the local API (`version`; `v2` maps one more field).
fn manifest(port: u16, version: &str, v2: bool) -> Value {
    let mut m: Value =
        serde_json::from_str(include_str!("../../fixtures/modules/weather.json")).unwrap();
    m["version"] = json!(version);
    m["hosts"] = json!([{"host": "api.weather.test", "port": port, "allow_private": true}]);
    for t in m["tools"].as_array_mut().unwrap() {
        if let Some(url) = t["http"]["url"].as_str() {
            t["http"]["url"] = json!(url.replace(
                "https://api.weather.example",
                &format!("http://api.weather.test:{port}")
            ));
        }
    }
    if v2 {
        m["tools"][0]["http"]["output"]["source"] = json!("/api");
        m["tools"][0]["output_schema"]["properties"]["source"] = json!({"type": "string"});
        m["examples"][0]["response"]["body"]["api"] = json!("v1");
        m["examples"][0]["expect"]["source"] = json!("v1");
    }
    m
}

fn config(env: &Env) -> PathBuf {
    let secret = env.dir.path().join("weather.key");
    std::fs::write(&secret, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = secret.display();
    let path = env.dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "profile = \"test\"\n[modules.resolve]\n\"api.weather.test\" = \"127.0.0.1\"\n\
             \"evil.weather.test\" = \"127.0.0.1\"\n\"elsewhere.weather.test\" = \"127.0.0.1\"\n\
             [modules.credentials]\n\"acme/WEATHER_KEY\" = \"file:{s}\"\n\"default/WEATHER_KEY\" = \"file:{s}\"\n"
        ),
    )
    .unwrap();
    path
}

struct Rig {
    env: Env,
    weather: Weather,
    srv: Server,
    admin: Client,
    op: Client,
    viewer: Client,
    op_key: String,
}

impl Rig {
    async fn new() -> Rig {
        let env = Env::new();
        env.org("acme");
        let weather = Weather::start().await;
        let cfg = config(&env);
        let srv = Server::start(&env, &[], &["--config", cfg.to_str().unwrap()]);
        let admin = http_client(&srv.url, &env.key("acme", "admin")).await;
        let op_key = env.key("acme", "operator");
        let op = http_client(&srv.url, &op_key).await;
        let viewer = http_client(&srv.url, &env.key("acme", "viewer")).await;
        Rig {
            env,
            weather,
            srv,
            admin,
            op,
            viewer,
            op_key,
        }
    }

    /// draft (operator) → validate → promote → install (admin).
    async fn ship(&self, m: &Value, create: bool) -> Value {
        let action = if create { "draft" } else { "edit" };
        ok(
            &self.op,
            "module",
            json!({"action": action, "module": "acme/weather", "manifest": m}),
        )
        .await;
        let v = ok(
            &self.admin,
            "module",
            json!({"action": "validate", "module": "acme/weather"}),
        )
        .await;
        assert_eq!(v["report"]["ok"], true, "{v}");
        let p = ok(
            &self.admin,
            "module",
            json!({"action": "promote", "module": "acme/weather"}),
        )
        .await;
        assert_eq!(p["sha256"].as_str().unwrap().len(), 64);
        ok(
            &self.admin,
            "module",
            json!({"action": "install", "module": "acme/weather", "version": m["version"]}),
        )
        .await
    }
}

/// A client that counts tools/list_changed notifications.
#[derive(Clone)]
struct Watcher(Arc<AtomicUsize>);

impl ClientHandler for Watcher {
    async fn on_tool_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

async fn tool_names<S: rmcp::service::Service<RoleClient>>(
    c: &RunningService<RoleClient, S>,
) -> Vec<String> {
    c.list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_over_http_with_a_second_client_roles_and_another_org() {
    let rig = Rig::new().await;
    let port = rig.weather.port;
    // A second client, connected before anything is installed.
    let seen = Arc::new(AtomicUsize::new(0));
    let t = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(rig.srv.url.as_str())
            .auth_header(rig.op_key.clone()),
    );
    let second: RunningService<RoleClient, Watcher> = Watcher(seen.clone()).serve(t).await.unwrap();
    assert!(
        !tool_names(&second)
            .await
            .iter()
            .any(|n| n.starts_with("acme__"))
    );
    let info = second.peer_info().unwrap();
    assert_eq!(
        info.capabilities
            .tools
            .as_ref()
            .and_then(|t| t.list_changed),
        Some(true),
        "the server declares tools.listChanged"
    );

    // Roles: a viewer cannot draft; an operator cannot validate, promote or install.
    let m1 = manifest(port, "1.0.0", false);
    let e = fails(
        &rig.viewer,
        "module",
        json!({"action": "draft", "manifest": m1}),
    )
    .await;
    assert!(e.contains("needs role operator"), "{e}");
    ok(
        &rig.op,
        "module",
        json!({"action": "draft", "manifest": m1}),
    )
    .await;
    for action in ["validate", "promote", "install", "rollback", "uninstall"] {
        let e = fails(
            &rig.op,
            "module",
            json!({"action": action, "module": "acme/weather"}),
        )
        .await;
        assert!(e.contains("needs role admin"), "{action}: {e}");
    }
    // Promote before validate is refused.
    let e = fails(
        &rig.admin,
        "module",
        json!({"action": "promote", "module": "acme/weather"}),
    )
    .await;
    assert!(e.contains("not validated"), "{e}");
    // The rest of the first version's way in.
    let v = ok(
        &rig.admin,
        "module",
        json!({"action": "validate", "module": "acme/weather"}),
    )
    .await;
    assert_eq!(v["report"]["ok"], true, "{v}");
    assert_eq!(v["report"]["examples_checked"], 3);
    let p = ok(
        &rig.admin,
        "module",
        json!({"action": "promote", "module": "acme/weather"}),
    )
    .await;
    let sha1 = p["sha256"].as_str().unwrap().to_string();
    let hits_before = rig.weather.hits.load(Ordering::SeqCst);
    assert_eq!(
        hits_before, 0,
        "validation ran on recorded responses, not live"
    );
    let i = ok(
        &rig.admin,
        "module",
        json!({"action": "install", "module": "acme/weather"}),
    )
    .await;
    assert_eq!(i["version"], "1.0.0");
    assert_eq!(i["sha256"], sha1.as_str());

    // The second client hears about it and calls the new tool.
    eventually("list_changed after install", || {
        seen.load(Ordering::SeqCst) >= 1
    })
    .await;
    let tools = second.list_all_tools().await.unwrap();
    let current = tools
        .iter()
        .find(|t| t.name == "acme__current")
        .expect("acme__current listed");
    assert!(current.output_schema.is_some());
    assert_eq!(
        current.annotations.as_ref().and_then(|a| a.read_only_hint),
        Some(true)
    );
    assert!(tools.iter().any(|t| t.name == "acme__packing_advice"));
    let r = second
        .call_tool(
            CallToolRequestParams::new("acme__current")
                .with_arguments(obj(json!({"city": "Oslo"}))),
        )
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    assert_eq!(
        r.structured_content.clone().unwrap(),
        json!({"city": "Oslo", "temperature": 4.5, "conditions": "light rain", "wind_kph": 18})
    );
    assert!(!text(&r).contains(KEY), "the credential never comes back");
    // A viewer may call a tool that only reads.
    ok(
        &rig.viewer,
        "acme__forecast",
        json!({"city": "Bergen", "days": 1}),
    )
    .await;
    // Strict input: the validator's message, naming the field.
    let e = fails(&rig.op, "acme__current", json!({})).await;
    assert!(e.contains("city"), "{e}");
    let e = fails(&rig.op, "acme__current", json!({"city": 5})).await;
    assert!(e.contains("city") && e.contains("string"), "{e}");
    let e = fails(
        &rig.op,
        "acme__current",
        json!({"city": "Oslo", "extra": 1}),
    )
    .await;
    assert!(e.contains("extra"), "{e}");

    // Another org sees nothing and cannot call it.
    rig.env.org("other");
    let other = http_client(&rig.srv.url, &rig.env.key("other", "owner")).await;
    assert!(
        !tool_names(&other)
            .await
            .iter()
            .any(|n| n.starts_with("acme__"))
    );
    let err = other
        .call_tool(
            CallToolRequestParams::new("acme__current")
                .with_arguments(obj(json!({"city": "Oslo"}))),
        )
        .await;
    assert!(err.is_err(), "an unknown tool for another org: {err:?}");
    let e = fails(
        &other,
        "module",
        json!({"action": "get", "module": "acme/weather"}),
    )
    .await;
    assert!(e.contains("not found"), "{e}");

    // Version 1.1.0: edit, diff against the active version, ship.
    let m2 = manifest(port, "1.1.0", true);
    ok(
        &rig.op,
        "module",
        json!({"action": "draft", "manifest": m2}),
    )
    .await;
    let d = ok(
        &rig.op,
        "module",
        json!({"action": "diff", "module": "acme/weather"}),
    )
    .await;
    let paths: Vec<&str> = d["changes"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/version"), "{paths:?}");
    assert!(paths.contains(&"/tools/0/http/output/source"), "{paths:?}");
    let v = ok(
        &rig.admin,
        "module",
        json!({"action": "validate", "module": "acme/weather"}),
    )
    .await;
    assert_eq!(v["report"]["ok"], true, "{v}");
    ok(
        &rig.admin,
        "module",
        json!({"action": "promote", "module": "acme/weather"}),
    )
    .await;
    let d = ok(&rig.op, "module", json!({"action": "diff", "module": "acme/weather", "version": "1.0.0", "to_version": "1.1.0"})).await;
    assert!(!d["changes"]["changes"].as_array().unwrap().is_empty());
    ok(
        &rig.admin,
        "module",
        json!({"action": "install", "module": "acme/weather", "version": "1.1.0"}),
    )
    .await;
    eventually("list_changed after upgrade", || {
        seen.load(Ordering::SeqCst) >= 2
    })
    .await;
    let out = ok(&rig.op, "acme__current", json!({"city": "Oslo"})).await;
    assert_eq!(out["source"], "v1", "1.1.0 maps the source");

    // Rollback under load: calls in flight finish on 1.1.0; the next uses 1.0.0.
    let mut inflight = Vec::new();
    for _ in 0..6 {
        let url = rig.srv.url.clone();
        let key = rig.op_key.clone();
        inflight.push(tokio::spawn(async move {
            let c = http_client(&url, &key).await;
            ok(&c, "acme__current", json!({"city": "slow"})).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let rb = ok(
        &rig.admin,
        "module",
        json!({"action": "rollback", "module": "acme/weather"}),
    )
    .await;
    assert_eq!(rb["version"], "1.0.0");
    let after = ok(&rig.op, "acme__current", json!({"city": "Oslo"})).await;
    assert!(
        after.get("source").is_none(),
        "the next call runs 1.0.0: {after}"
    );
    for h in inflight {
        let out = h.await.unwrap();
        assert_eq!(out["city"], "slow");
        assert_eq!(out["source"], "v1", "a call in flight kept 1.1.0");
    }
    eventually("list_changed after rollback", || {
        seen.load(Ordering::SeqCst) >= 3
    })
    .await;

    // Uninstall removes the tools.
    ok(
        &rig.admin,
        "module",
        json!({"action": "uninstall", "module": "acme/weather"}),
    )
    .await;
    eventually("list_changed after uninstall", || {
        seen.load(Ordering::SeqCst) >= 4
    })
    .await;
    assert!(
        !tool_names(&second)
            .await
            .iter()
            .any(|n| n.starts_with("acme__"))
    );

    // The audit: every step, through `get` and the CLI.
    let g = ok(
        &rig.viewer,
        "module",
        json!({"action": "get", "module": "acme/weather"}),
    )
    .await;
    let actions: Vec<&str> = g["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "draft",
            "validate",
            "promote",
            "install",
            "draft",
            "validate",
            "promote",
            "install",
            "rollback",
            "uninstall"
        ]
    );
    assert_eq!(g["versions"].as_array().unwrap().len(), 2);
    assert_eq!(g["versions"][0]["attestation"]["sha256"], sha1.as_str());
    let lines = cli(&rig.env.db(), &["module", "audit", "--org", "acme"]);
    let rows: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 10);
    assert_eq!(rows[3]["action"], "install");
    assert_eq!(rows[3]["sha256"], sha1.as_str());
    assert!(
        rows.iter()
            .all(|r| r["actor"].as_str().is_some_and(|a| !a.is_empty()))
    );
    assert!(cli(&rig.env.db(), &["module", "audit", "--org", "other"]).is_empty());
    assert!(
        !rig.srv.log.lock().unwrap().contains(KEY),
        "the credential never reaches the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_bundle_or_a_missing_attestation_is_refused_at_install() {
    let rig = Rig::new().await;
    let m = manifest(rig.weather.port, "1.0.0", false);
    ok(&rig.op, "module", json!({"action": "draft", "manifest": m})).await;
    ok(
        &rig.admin,
        "module",
        json!({"action": "validate", "module": "acme/weather"}),
    )
    .await;
    ok(
        &rig.admin,
        "module",
        json!({"action": "promote", "module": "acme/weather"}),
    )
    .await;
    {
        // Someone with the file: the trigger goes, a byte of the bundle changes.
        let c = rusqlite::Connection::open(rig.env.db()).unwrap();
        c.execute_batch(
            "DROP TRIGGER module_versions_immutable;
             UPDATE module_versions SET bundle = CAST(replace(CAST(bundle AS TEXT), 'light rain', 'light sun!') AS BLOB);",
        )
        .unwrap();
    }
    let e = fails(
        &rig.admin,
        "module",
        json!({"action": "install", "module": "acme/weather"}),
    )
    .await;
    assert!(e.contains("refused") && e.contains("hash"), "{e}");
    assert!(
        !tool_names(&rig.op)
            .await
            .iter()
            .any(|n| n.starts_with("acme__"))
    );
    {
        let c = rusqlite::Connection::open(rig.env.db()).unwrap();
        c.execute_batch("UPDATE module_versions SET attestation = NULL;")
            .unwrap();
    }
    let e = fails(
        &rig.admin,
        "module",
        json!({"action": "install", "module": "acme/weather"}),
    )
    .await;
    assert!(e.contains("no attestation"), "{e}");
    let g = ok(
        &rig.admin,
        "module",
        json!({"action": "get", "module": "acme/weather"}),
    )
    .await;
    assert!(g["module"].get("active_version").is_none(), "{g}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_policy_refuses_redirects_off_the_list_and_private_names() {
    let rig = Rig::new().await;
    let port = rig.weather.port;
    let mut m = manifest(port, "1.0.0", false);
    // An undeclared host does not get past validation.
    m["tools"][0]["http"]["url"] = json!(format!(
        "http://elsewhere.weather.test:{port}/v1/current/{{city}}"
    ));
    let e = fails(&rig.op, "module", json!({"action": "draft", "manifest": m})).await;
    assert!(
        e.contains("/tools/0/http/url") && e.contains("not declared"),
        "{e}"
    );
    // A redirect off the list, and a declared name that resolves to loopback
    // without allow_private.
    let mut m = manifest(port, "1.0.0", false);
    m["hosts"] = json!([
        {"host": "api.weather.test", "port": port, "allow_private": true},
        {"host": "evil.weather.test", "port": port}
    ]);
    m["tools"][1]["http"]["url"] = json!(format!("http://api.weather.test:{port}/redirect"));
    m["tools"][1]["http"]["query"] = json!({});
    m["tools"][0]["http"]["url"] = json!(format!(
        "http://evil.weather.test:{port}/v1/current/{{city}}"
    ));
    rig.ship(&m, true).await;
    let hits = rig.weather.hits.load(Ordering::SeqCst);
    let e = fails(
        &rig.op,
        "acme__forecast",
        json!({"city": "Oslo", "days": 1}),
    )
    .await;
    assert!(
        e.contains("redirect") && e.contains("elsewhere.weather.test"),
        "{e}"
    );
    let e = fails(&rig.op, "acme__current", json!({"city": "Oslo"})).await;
    assert!(
        e.contains("evil.weather.test") && e.contains("127.0.0.1") && e.contains("allow_private"),
        "{e}"
    );
    assert_eq!(
        rig.weather.hits.load(Ordering::SeqCst),
        hits + 1,
        "only the redirecting request reached the API"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_are_refused_with_their_paths_and_nothing_is_stored() {
    let rig = Rig::new().await;
    let port = rig.weather.port;
    let e = fails(
        &rig.op,
        "module",
        json!({"action": "draft", "manifest": "{ not json"}),
    )
    .await;
    assert!(e.contains("not JSON"), "{e}");
    let mut m = manifest(port, "one", false);
    m["tools"][0]["http"]["method"] = json!("FETCH");
    let e = fails(&rig.op, "module", json!({"action": "draft", "manifest": m})).await;
    assert!(
        e.contains("/version") && e.contains("/tools/0/http/method"),
        "{e}"
    );
    let mut m = manifest(port, "1.0.0", false);
    m["tools"][0]["name"] = json!("health");
    let e = fails(&rig.op, "module", json!({"action": "draft", "manifest": m})).await;
    assert!(e.contains("clashes with the core tool `health`"), "{e}");
    let mut m = manifest(port, "1.0.0", false);
    m["tools"][0]["http"]["url"] = json!(format!("http://api.weather.test:{port}/v1/{{town}}"));
    let e = fails(&rig.op, "module", json!({"action": "draft", "manifest": m})).await;
    assert!(
        e.contains("{town} is not a declared input") && e.contains("hint"),
        "{e}"
    );
    let mut m = manifest(port, "1.0.0", false);
    m["tools"][0]["http"]["output"]["temperature"] = json!("/current/nowhere");
    let e = fails(&rig.op, "module", json!({"action": "draft", "manifest": m})).await;
    assert!(
        e.contains("/tools/0/http/output/temperature") && e.contains("resolves to nothing"),
        "{e}"
    );
    let l = ok(&rig.op, "module", json!({"action": "list"})).await;
    assert_eq!(l["modules"], json!([]), "nothing stored");
    assert!(cli(&rig.env.db(), &["module", "audit", "--org", "acme"]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_over_stdio() {
    let env = Env::new();
    let weather = Weather::start().await;
    let cfg = config(&env);
    let mut cmd = tokio::process::Command::new(bin());
    cmd.arg("--db")
        .arg(env.db())
        .args(["--config", cfg.to_str().unwrap(), "serve", "--stdio"])
        .env("VAULTLINE_LOG__LEVEL", "warn");
    let c: Client = ().serve(TokioChildProcess::new(cmd).unwrap()).await.unwrap();
    let mut m = manifest(weather.port, "1.0.0", false);
    m["id"] = json!("acme/weather");
    ok(
        &c,
        "module",
        json!({"action": "draft", "manifest": serde_json::to_string(&m).unwrap()}),
    )
    .await;
    // Live only when asked: the two http examples call the local API.
    let v = ok(
        &c,
        "module",
        json!({"action": "validate", "module": "acme/weather", "live": true}),
    )
    .await;
    assert_eq!(v["report"]["ok"], true, "{v}");
    assert_eq!(v["report"]["live_checked"], 2, "{v}");
    assert_eq!(weather.hits.load(Ordering::SeqCst), 2);
    ok(
        &c,
        "module",
        json!({"action": "promote", "module": "acme/weather"}),
    )
    .await;
    ok(
        &c,
        "module",
        json!({"action": "install", "module": "acme/weather"}),
    )
    .await;
    let out = ok(
        &c,
        "acme__current",
        json!({"city": "Tromsø", "units": "metric"}),
    )
    .await;
    assert_eq!(out["city"], "Tromsø");
    assert_eq!(out["temperature"], 4.5);
    let l = ok(&c, "module", json!({"action": "list"})).await;
    assert_eq!(l["modules"][0]["active_version"], "1.0.0");
    c.cancel().await.unwrap();
}

/// The ladder for generate and prompt tools: one rung on the fake provider.
async fn ladder_rig() -> (Rig, vaultline_fakeprovider::FakeProvider) {
    let env = Env::new();
    env.org("acme");
    let weather = Weather::start().await;
    let fake = vaultline_fakeprovider::FakeProvider::start().await.unwrap();
    let cfg = config(&env);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text = text.replacen(
        "profile = \"test\"\n",
        &format!(
            "profile = \"test\"\n[execute]\nbackoff_ms = 10\nheartbeat_secs = 1\n\
             [[execute.rungs]]\nname = \"cheap\"\nadapter = \"openai\"\nprovider = \"deepseek\"\n\
             model = \"deepseek-chat\"\nbase_url = \"{}\"\ntimeout_secs = 30\nmax_output_tokens = 4000\n",
            fake.openai_base()
        ),
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let srv = Server::start(&env, &[], &["--config", cfg.to_str().unwrap()]);
    let admin = http_client(&srv.url, &env.key("acme", "admin")).await;
    let op_key = env.key("acme", "operator");
    let op = http_client(&srv.url, &op_key).await;
    let viewer = http_client(&srv.url, &env.key("acme", "viewer")).await;
    let key = env.dir.path().join("provider.key");
    std::fs::write(&key, format!("{}\n", vaultline_fakeprovider::DEFAULT_KEY)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    ok(
        &admin,
        "quota",
        json!({"action": "accounts", "op": "add", "provider": "deepseek", "name": "deepseek-1",
               "billing_mode": "metered", "secret_ref": format!("file:{}", key.display()),
               "limit_kind": "requests", "limit": 1000, "window": "day"}),
    )
    .await;
    (
        Rig {
            env,
            weather,
            srv,
            admin,
            op,
            viewer,
            op_key,
        },
        fake,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_repairs_a_failing_first_answer_and_stops_on_a_repeated_failure() {
    use vaultline_fakeprovider::Step;
    let (rig, fake) = ladder_rig().await;
    let good = manifest(rig.weather.port, "1.0.0", false);
    let mut bad = good.clone();
    bad["tools"][0]["http"]["output"]["temperature"] = json!("/current/nowhere");
    fake.script(
        "deepseek-chat",
        vec![
            Step::answer(&bad.to_string()),
            Step::answer(&format!("```json\n{good}\n```")),
        ],
    );
    let g = ok(
        &rig.op,
        "module",
        json!({"action": "generate", "description": "current weather and forecasts by city",
               "api_description": "GET /v1/current/{city} -> {location:{name}, current:{temp, summary, wind:{kph}}}"}),
    )
    .await;
    assert_eq!(g["attempts"].as_array().unwrap().len(), 2, "{g}");
    assert_eq!(g["attempts"][0]["ok"], false);
    assert_eq!(g["report"]["ok"], true);
    let prompts: Vec<String> = fake.requests().into_iter().map(|r| r.prompt).collect();
    assert_eq!(prompts.len(), 2);
    assert!(prompts[0].contains("current weather and forecasts by city"));
    assert!(
        prompts[1].contains("/tools/0/http/output/temperature")
            && prompts[1].contains("resolves to nothing"),
        "the second attempt is fed the validator's report"
    );
    // A draft, never installed.
    let got = ok(
        &rig.op,
        "module",
        json!({"action": "get", "module": "acme/weather"}),
    )
    .await;
    assert!(got["draft"].is_object(), "{got}");
    assert!(got["module"].get("active_version").is_none());
    assert_eq!(got["audit"][0]["action"], "generate");
    assert!(
        !tool_names(&rig.op)
            .await
            .iter()
            .any(|n| n.starts_with("acme__"))
    );

    // The same failure twice: it stops early, nothing stored.
    let mut other = bad.clone();
    other["id"] = json!("acme/other");
    fake.script(
        "deepseek-chat",
        vec![
            Step::answer(&other.to_string()),
            Step::answer(&other.to_string()),
            Step::answer(&good.to_string()),
        ],
    );
    let e = fails(
        &rig.op,
        "module",
        json!({"action": "generate", "description": "again"}),
    )
    .await;
    assert!(
        e.contains("after 2 attempts") && e.contains("same failure"),
        "{e}"
    );
    let e = fails(
        &rig.op,
        "module",
        json!({"action": "get", "module": "acme/other"}),
    )
    .await;
    assert!(e.contains("not found"), "{e}");
    // A viewer may not generate.
    let e = fails(
        &rig.viewer,
        "module",
        json!({"action": "generate", "description": "x"}),
    )
    .await;
    assert!(e.contains("needs role operator"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_tool_runs_through_the_ladder_and_its_output_is_checked() {
    use vaultline_fakeprovider::Step;
    let (rig, fake) = ladder_rig().await;
    rig.ship(&manifest(rig.weather.port, "1.0.0", false), true)
        .await;
    fake.script(
        "deepseek-chat",
        vec![Step::answer(
            "{\"items\": [\"umbrella\", \"boots\"], \"note\": \"Wet.\"}",
        )],
    );
    let out = ok(
        &rig.op,
        "acme__packing_advice",
        json!({"city": "Oslo", "forecast": "rain all week"}),
    )
    .await;
    assert_eq!(out, json!({"items": ["umbrella", "boots"], "note": "Wet."}));
    let req = fake.requests().pop().unwrap();
    assert!(
        req.prompt
            .contains("A traveller goes to Oslo. The forecast: rain all week."),
        "{}",
        req.prompt
    );
    // Metered as a tool call: the run-unit counter of the org carries the tool.
    let m = metrics_page(&rig.srv.base, &rig.env.key("acme", "admin")).await;
    assert!(
        m.contains("acme__packing_advice"),
        "run units count the module tool"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mode_serves_only_module_tools_that_only_read() {
    let rig = Rig::new().await;
    // `forecast` no longer says it only reads: it needs operator, and read-only
    // mode hides and refuses it; `current` still reads only.
    let mut m = manifest(rig.weather.port, "1.0.0", false);
    m["tools"][1]["annotations"]["readOnlyHint"] = json!(false);
    rig.ship(&m, true).await;
    let args = json!({"city": "Lisbon", "days": 2});
    let e = fails(&rig.viewer, "acme__forecast", args.clone()).await;
    assert!(
        e.contains("operator"),
        "a viewer is refused a tool that writes: {e}"
    );
    ok(&rig.op, "acme__forecast", args.clone()).await;

    // A second server on the same file, in read-only mode.
    let cfg = rig.env.dir.path().join("config.toml");
    let ro = Server::start(
        &rig.env,
        &[("VAULTLINE_TOOLS__READ_ONLY", "true")],
        &["--config", cfg.to_str().unwrap()],
    );
    let admin = http_client(&ro.url, &rig.env.key("acme", "admin")).await;
    let names = tool_names(&admin).await;
    assert!(names.contains(&"acme__current".to_string()), "{names:?}");
    assert!(!names.contains(&"acme__forecast".to_string()), "{names:?}");
    let e = fails(&admin, "acme__forecast", args).await;
    assert!(e.contains("read-only"), "{e}");
    let out = ok(&admin, "acme__current", json!({"city": "Lisbon"})).await;
    assert!(out.is_object(), "{out}");
}
