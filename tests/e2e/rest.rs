//! vault-mcp's REST routes, end to end over real HTTP: the open `/health` answer,
//! `/tasks` behind the bearer in vault-mcp's shapes, roles, read-only mode, org
//! isolation, clear 400s, and one set of tasks shared with the MCP `task` tool.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::*;

struct Rest {
    http: reqwest::Client,
    base: String,
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Rest {
    fn new(srv: &Server) -> Rest {
        Rest {
            http: reqwest::Client::new(),
            base: srv.base.clone(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = rb.send().await.expect("http send");
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap_or_default(),
        }
    }

    async fn get(&self, path: &str, key: &str) -> Reply {
        self.send(Method::GET, path, Some(key), None).await
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(key), Some(&body.to_string()))
            .await
    }

    async fn put(&self, path: &str, key: &str, body: Value) -> Reply {
        self.send(Method::PUT, path, Some(key), Some(&body.to_string()))
            .await
    }

    /// A task created over REST; returns its JSON.
    async fn create(&self, key: &str, body: Value) -> Value {
        let r = self.post("/tasks", key, body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()
    }

    /// The ids of a `GET /tasks…` answer, in order.
    async fn ids(&self, path: &str, key: &str) -> Vec<String> {
        let r = self.get(path, key).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.json()
            .as_array()
            .unwrap_or_else(|| panic!("{path}: not an array: {}", r.body))
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    }
}

#[tokio::test]
async fn health_is_open_and_serves_vault_mcps_shape_and_vaultlines() {
    let env = Env::new();
    env.org("acme");
    let srv = Server::start(&env, &[], &[]);
    let r = Rest::new(&srv)
        .send(Method::GET, "/health", None, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = r.json();
    // vault-mcp's fields.
    assert_eq!(h["status"], "ok");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    let ts = h["timestamp"].as_str().unwrap();
    assert!(
        ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "ISO-8601 UTC: {ts}"
    );
    // vaultline's own.
    assert_eq!(h["service"], "vaultline");
    assert_eq!(h["store"], "ok");
    assert!(h["uptime_s"].is_u64(), "{h}");
    // Nothing private.
    let keys: Vec<&str> = h.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys.len(),
        6,
        "only status, version, timestamp, service, store, uptime_s: {h}"
    );
    assert!(!h.to_string().contains("acme"), "{h}");
}

#[tokio::test]
async fn tasks_need_a_key_like_mcp() {
    let env = Env::new();
    env.org("acme");
    let srv = Server::start(&env, &[], &[]);
    let rest = Rest::new(&srv);
    let wrong = format!("vl_{}_{}", "A".repeat(10), "b".repeat(40));
    for (method, path, key) in [
        (Method::GET, "/tasks", None),
        (Method::POST, "/tasks", None),
        (Method::PUT, "/tasks/01JAAAAAAAAAAAAAAAAAAAAAAA", None),
        (Method::POST, "/tasks/retroactive", None),
        (Method::GET, "/tasks", Some("nonsense")),
        (Method::GET, "/tasks", Some(wrong.as_str())),
    ] {
        let r = rest
            .send(method.clone(), path, key, Some(r#"{"title": "x"}"#))
            .await;
        assert_eq!(r.status, 401, "{method} {path} {key:?}: {}", r.body);
        let challenge = r.headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        if key.is_some() {
            assert!(challenge.contains("invalid_token"), "{challenge}");
        }
        assert!(r.json()["message"].is_string(), "{}", r.body);
    }
    // Nothing was written by the refused requests.
    let owner = env.key("acme", "owner");
    assert_eq!(
        rest.ids("/tasks?status=", &owner).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn body_and_rate_limits_hold_on_tasks() {
    let env = Env::new();
    env.org("acme");
    let op = env.key("acme", "operator");
    let srv = Server::start(
        &env,
        &[
            ("VAULTLINE_HTTP__MAX_BODY_BYTES", "4096"),
            ("VAULTLINE_HTTP__RATE_LIMIT_PER_SECOND", "1"),
            ("VAULTLINE_HTTP__RATE_LIMIT_BURST", "4"),
        ],
        &[],
    );
    let rest = Rest::new(&srv);
    let big = json!({"title": "x", "context": "y".repeat(5000)});
    let r = rest.post("/tasks", &op, big).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(
        r.json()["error"].as_str().unwrap().contains("4096"),
        "{}",
        r.body
    );
    let mut limited = None;
    for _ in 0..10 {
        let r = rest.get("/tasks", &op).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = limited.expect("the per-key rate limit answers 429 on /tasks too");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert!(
        r.json()["error"].as_str().unwrap().contains("rate limit"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn tasks_round_trip_in_vault_mcps_shapes() {
    let env = Env::new();
    env.org("acme");
    let op = env.key("acme", "operator");
    let srv = Server::start(&env, &[], &[]);
    let rest = Rest::new(&srv);

    // POST /tasks: 201 and the task, project defaults to inbox.
    let a = rest
        .create(
            &op,
            json!({"title": "Renew TLS cert", "project": "ops", "source": "cc", "context": "expires Friday"}),
        )
        .await;
    let id_a = a["id"].as_str().unwrap().to_string();
    assert_eq!(id_a.len(), 26, "a ULID: {a}");
    assert_eq!(a["title"], "Renew TLS cert");
    assert_eq!(a["project"], "ops");
    assert_eq!(a["source"], "cc");
    assert_eq!(a["context"], "expires Friday");
    assert_eq!(a["status"], "open");
    assert!(a["created_at"].as_str().unwrap().ends_with('Z'), "{a}");
    let b = rest
        .create(&op, json!({"title": "Write «release» notes ✓"}))
        .await;
    let id_b = b["id"].as_str().unwrap().to_string();
    assert_eq!(b["project"], "inbox");
    assert_eq!(b["title"], "Write «release» notes ✓");

    // GET /tasks: a bare array, newest first, open by default; project filter.
    assert_eq!(rest.ids("/tasks", &op).await, [id_b.clone(), id_a.clone()]);
    assert_eq!(rest.ids("/tasks?project=ops", &op).await, [id_a.as_str()]);
    assert_eq!(
        rest.ids("/tasks?project=nope", &op).await,
        Vec::<String>::new()
    );
    let one = rest.get(&format!("/tasks/{id_a}"), &op).await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.json()["title"], "Renew TLS cert");

    // PUT /tasks/:id changes the fields vault-mcp's update took, occurred_at too.
    let r = rest
        .put(
            &format!("/tasks/{id_a}"),
            &op,
            json!({"title": "Renew the TLS cert", "context": "before Friday", "occurred_at": "2026-11-30T09:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json();
    assert_eq!(t["title"], "Renew the TLS cert");
    assert_eq!(t["context"], "before Friday");
    assert_eq!(t["project"], "ops");
    assert_eq!(t["occurred_at"], "2026-11-30T09:00:00.000Z");

    // POST /tasks/:id/done finishes it; the default list no longer shows it.
    let r = rest
        .post(&format!("/tasks/{id_a}/done"), &op, json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json();
    assert_eq!(t["status"], "done");
    assert!(t["completed_at"].is_string(), "{t}");
    let r = rest
        .send(
            Method::POST,
            &format!("/tasks/{id_b}/done"),
            Some(&op),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "done without a body: {}", r.body);
    assert_eq!(rest.ids("/tasks", &op).await, Vec::<String>::new());
    assert_eq!(
        rest.ids("/tasks?status=done", &op).await,
        [id_b.clone(), id_a.clone()]
    );

    // POST /tasks/retroactive: 201, already done, source retroactive.
    let r = rest
        .post(
            "/tasks/retroactive",
            &op,
            json!({"title": "Rotated keys", "project": "ops", "occurred_at": "2026-11-01"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let c = r.json();
    let id_c = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["status"], "done");
    assert_eq!(c["source"], "retroactive");
    assert!(c["completed_at"].is_string(), "{c}");
    assert!(
        c["occurred_at"].as_str().unwrap().starts_with("2026-11-01"),
        "{c}"
    );

    // An empty status (as in vault-mcp) or `all` lists every status.
    let d = rest.create(&op, json!({"title": "Open one"})).await;
    let id_d = d["id"].as_str().unwrap().to_string();
    let all = [id_d.clone(), id_c.clone(), id_b.clone(), id_a.clone()];
    assert_eq!(rest.ids("/tasks?status=", &op).await, all);
    assert_eq!(rest.ids("/tasks?status=all", &op).await, all);

    // Paging: limit and X-Next-Cursor.
    let r = rest.get("/tasks?status=all&limit=3", &op).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json().as_array().unwrap().len(), 3);
    let cursor = r.headers["x-next-cursor"].to_str().unwrap().to_string();
    let rest_ids = rest
        .ids(&format!("/tasks?status=all&limit=3&cursor={cursor}"), &op)
        .await;
    assert_eq!(rest_ids, [id_a.as_str()]);
    let r = rest.get("/tasks?status=all", &op).await;
    assert!(r.headers.get("x-next-cursor").is_none(), "no more pages");

    // format=md: vault-mcp's Markdown, grouped by project.
    let r = rest.get("/tasks?status=all&format=md", &op).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/markdown"),
        "{:?}",
        r.headers
    );
    let md = r.body;
    assert!(md.starts_with("## inbox\n"), "{md}");
    assert!(md.contains(&format!("- [ ] Open one `{id_d}`")), "{md}");
    assert!(
        md.contains(&format!(
            "## ops\n- [x] Rotated keys `{id_c}`\n- [x] Renew the TLS cert — before Friday `{id_a}`"
        )),
        "{md}"
    );
    let r = rest.get("/tasks?project=nope&format=md", &op).await;
    assert_eq!(r.body, "No tasks found.");
}

#[tokio::test]
async fn bad_input_is_a_clear_400_and_writes_nothing() {
    let env = Env::new();
    env.org("acme");
    let op = env.key("acme", "operator");
    let srv = Server::start(&env, &[], &[]);
    let rest = Rest::new(&srv);

    let cases: Vec<(Method, &str, &str, &str)> = vec![
        (Method::POST, "/tasks", "{}", "title"),
        (Method::POST, "/tasks", r#"{"title": "   "}"#, "title"),
        (Method::POST, "/tasks", "not json", "body"),
        (Method::POST, "/tasks", r#"["title"]"#, "body"),
        (Method::POST, "/tasks", r#"{"title": 7}"#, "title"),
        (
            Method::POST,
            "/tasks",
            r#"{"title": "x", "colour": "red"}"#,
            "colour",
        ),
        (
            Method::POST,
            "/tasks",
            r#"{"title": "x", "source": "auto"}"#,
            "context",
        ),
        (
            Method::POST,
            "/tasks",
            r#"{"title": "x", "action": "cancel"}"#,
            "action",
        ),
        (
            Method::POST,
            "/tasks/retroactive",
            r#"{"project": "ops"}"#,
            "title",
        ),
        (
            Method::POST,
            "/tasks/retroactive",
            r#"{"title": "x", "occurred_at": "yesterday"}"#,
            "occurred_at",
        ),
    ];
    for (method, path, body, field) in cases {
        let r = rest.send(method.clone(), path, Some(&op), Some(body)).await;
        assert_eq!(r.status, 400, "{method} {path} {body}: {}", r.body);
        let v = r.json();
        let msg = v["error"].as_str().unwrap();
        assert!(
            msg.contains(field),
            "{body}: the error names {field}: {msg}"
        );
        assert!(
            v["field"]
                .as_str()
                .is_some_and(|f| f.starts_with(field) || f == "arguments"),
            "{body}: {v}"
        );
    }
    for (query, field) in [
        ("status=weird", "status"),
        ("format=xml", "format"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("cursor=%21%21", "cursor"),
    ] {
        let r = rest.get(&format!("/tasks?{query}"), &op).await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(field), "{query}: {msg}");
    }
    // An unknown id: 404 naming it, as vault-mcp's {error, id}.
    let ghost = "01JAAAAAAAAAAAAAAAAAAAAAAA";
    for (method, path) in [
        (Method::PUT, format!("/tasks/{ghost}")),
        (Method::POST, format!("/tasks/{ghost}/done")),
        (Method::GET, format!("/tasks/{ghost}")),
    ] {
        let r = rest
            .send(method.clone(), &path, Some(&op), Some(r#"{"title": "y"}"#))
            .await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
        let v = r.json();
        assert_eq!(v["id"], ghost);
        assert!(v["error"].as_str().unwrap().contains("not found"), "{v}");
    }
    // A route-owned field in an update body.
    let t = rest.create(&op, json!({"title": "keep"})).await;
    let id = t["id"].as_str().unwrap();
    let r = rest
        .put(&format!("/tasks/{id}"), &op, json!({"task_id": "other"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // A refused transition is a 409 naming both states.
    rest.post(&format!("/tasks/{id}/done"), &op, json!({}))
        .await;
    let r = rest
        .put(&format!("/tasks/{id}"), &op, json!({"status": "open"}))
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body.contains("done") && r.body.contains("open"),
        "{}",
        r.body
    );
    // Only the one valid task exists.
    assert_eq!(rest.ids("/tasks?status=", &op).await, [id.to_string()]);
}

#[tokio::test]
async fn orgs_are_isolated_and_roles_hold() {
    let env = Env::new();
    env.org("acme");
    env.org("beta");
    let acme = env.key("acme", "operator");
    let viewer = env.key("acme", "viewer");
    let beta = env.key("beta", "owner");
    let srv = Server::start(&env, &[], &[]);
    let rest = Rest::new(&srv);

    let t = rest.create(&acme, json!({"title": "acme only"})).await;
    let id = t["id"].as_str().unwrap();
    assert_eq!(
        rest.ids("/tasks?status=", &beta).await,
        Vec::<String>::new()
    );
    for (method, path) in [
        (Method::GET, format!("/tasks/{id}")),
        (Method::PUT, format!("/tasks/{id}")),
        (Method::POST, format!("/tasks/{id}/done")),
    ] {
        let r = rest
            .send(
                method.clone(),
                &path,
                Some(&beta),
                Some(r#"{"title": "stolen"}"#),
            )
            .await;
        assert_eq!(
            r.status, 404,
            "another org's task looks missing: {}",
            r.body
        );
    }
    let again = rest.get(&format!("/tasks/{id}"), &acme).await.json();
    assert_eq!(again["title"], "acme only");
    assert_eq!(again["status"], "open");

    // A viewer reads but cannot write, as with the `task` tool.
    assert_eq!(rest.ids("/tasks", &viewer).await, [id.to_string()]);
    let r = rest.post("/tasks", &viewer, json!({"title": "nope"})).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(msg.contains("operator") && msg.contains("viewer"), "{msg}");
    let r = rest
        .post(&format!("/tasks/{id}/done"), &viewer, json!({}))
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
}

#[tokio::test]
async fn read_only_mode_refuses_writes_and_serves_reads() {
    let env = Env::new();
    env.org("acme");
    let owner = env.key("acme", "owner");
    // A task written before the server goes read-only.
    cli(
        &env.db(),
        &[
            "call",
            "task",
            r#"{"action": "create", "title": "before"}"#,
            "--org",
            "acme",
        ],
    );
    let srv = Server::start(&env, &[("VAULTLINE_TOOLS__READ_ONLY", "true")], &[]);
    let rest = Rest::new(&srv);
    let r = rest.post("/tasks", &owner, json!({"title": "x"})).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("read-only"), "{}", r.body);
    let ids = rest.ids("/tasks", &owner).await;
    assert_eq!(ids.len(), 1);
    let r = rest
        .post(&format!("/tasks/{}/done", ids[0]), &owner, json!({}))
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        rest.get(&format!("/tasks/{}", ids[0]), &owner).await.json()["status"],
        "open"
    );
}

#[tokio::test]
async fn tasks_are_not_served_without_the_task_tool() {
    let env = Env::new();
    env.org("acme");
    let owner = env.key("acme", "owner");
    let srv = Server::start(&env, &[("VAULTLINE_TOOLS__TOOLSETS", "[health]")], &[]);
    let rest = Rest::new(&srv);
    for r in [
        rest.get("/tasks", &owner).await,
        rest.post("/tasks", &owner, json!({"title": "x"})).await,
    ] {
        assert_eq!(r.status, 404, "{}", r.body);
        assert!(
            r.json()["error"].as_str().unwrap().contains("task"),
            "{}",
            r.body
        );
    }
}

#[tokio::test]
async fn rest_and_the_mcp_task_tool_share_one_set_of_tasks() {
    let env = Env::new();
    env.org("acme");
    let op = env.key("acme", "operator");
    let srv = Server::start(&env, &[], &[]);
    let rest = Rest::new(&srv);
    let mcp = http_client(&srv.url, &op).await;

    // REST → MCP.
    let t = rest
        .create(
            &op,
            json!({"title": "from REST", "project": "web", "context": "it's \"quoted\""}),
        )
        .await;
    let rest_id = t["id"].as_str().unwrap().to_string();
    let got = ok(&mcp, "task", json!({"action": "get", "task_id": rest_id})).await;
    assert_eq!(got["task"]["title"], "from REST");
    assert_eq!(got["task"]["context"], "it's \"quoted\"");

    // MCP → REST, with vault-mcp's action name `add`.
    let made = ok(
        &mcp,
        "task",
        json!({"action": "add", "title": "from MCP", "project": "web", "source": "cc"}),
    )
    .await;
    let mcp_id = made["task"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        rest.ids("/tasks?project=web", &op).await,
        [mcp_id.clone(), rest_id.clone()]
    );
    let seen = rest.get(&format!("/tasks/{mcp_id}"), &op).await.json();
    assert_eq!(seen, made["task"], "the same task object on both sides");

    // Done over REST is done for the tool; done over the tool is done for REST.
    rest.post(&format!("/tasks/{rest_id}/done"), &op, json!({}))
        .await;
    ok(&mcp, "task", json!({"action": "done", "task_id": mcp_id})).await;
    let listed = ok(&mcp, "task", json!({"action": "list", "status": "done"})).await;
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(
        rest.ids("/tasks?project=web", &op).await,
        Vec::<String>::new()
    );
    mcp.cancel().await.ok();

    // REST calls count like tool calls: one create over REST, one `add` over MCP.
    let admin = env.key("acme", "admin");
    let page = metrics_page(&srv.base, &admin).await;
    assert!(
        page.contains(
            "vaultline_tool_calls_total{tool=\"task\",action=\"create\",outcome=\"ok\"} 2"
        ),
        "{page}"
    );
}

#[tokio::test]
async fn a_list_past_the_tools_page_is_one_call_with_a_cursor() {
    let env = Env::new();
    env.org("acme");
    let op = env.key("acme", "operator");
    let admin = env.key("acme", "admin");
    let srv = Server::start(
        &env,
        &[
            ("VAULTLINE_HTTP__RATE_LIMIT_PER_SECOND", "100000"),
            ("VAULTLINE_HTTP__RATE_LIMIT_BURST", "100000"),
        ],
        &[],
    );
    let rest = Rest::new(&srv);
    for i in 0..105 {
        rest.create(&op, json!({"title": format!("task {i}")}))
            .await;
    }
    // The task tool pages by 100: 102 rows take two of its pages.
    let r = rest.get("/tasks?limit=102", &op).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let first: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(first.len(), 102);
    let cursor = r.headers["x-next-cursor"].to_str().unwrap().to_string();
    let rest_ids = rest
        .ids(&format!("/tasks?limit=102&cursor={cursor}"), &op)
        .await;
    assert_eq!(rest_ids.len(), 3);
    assert!(rest_ids.iter().all(|id| !first.contains(id)), "no overlap");
    let all = rest.ids("/tasks", &op).await;
    assert_eq!(all.len(), 105);
    // Three GETs are three task calls, not one per page of the tool.
    let page = metrics_page(&srv.base, &admin).await;
    assert!(
        page.contains(
            "vaultline_tool_calls_total{tool=\"task\",action=\"list\",outcome=\"ok\"} 3\n"
        ),
        "{}",
        page.lines()
            .filter(|l| l.contains("action=\"list\""))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
