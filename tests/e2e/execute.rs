//! The dispatch ladder end to end: a fake provider in this process, the real
//! server as a child whose rungs point at it, accounts and tasks made through
//! the tools, runs through rmcp's client. Every path up the ladder — first
//! rung, quality climb, account rotation, dead rung, consensus reached and
//! failed, the human rung by `task resolve` and by elicitation, breaker and
//! budget refusals, cancel, idempotent retry, a crash mid-run, bad input — is
//! checked on the run's state, its attempts, the charges and what the fake saw.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult,
    ElicitationAction, Implementation,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::{Value, json};
use vaultline_fakeprovider::{DEFAULT_KEY, FakeProvider, Step};

use crate::common::*;

const CHEAP: &str = "deepseek-chat";
const MID: &str = "claude-sonnet-4-6";
const TOP: &str = "gemini-2.5-pro";
/// The client name the config marks as a person (elicitation counts).
const PERSON: &str = "e2e-person";

/// A ladder of three rungs on one fake provider, served by the real binary.
struct Rig {
    env: Env,
    fake: FakeProvider,
    srv: Server,
    config: PathBuf,
    /// Admin: accounts, budgets. Operator: runs.
    admin: Client,
    op: Client,
    op_key: String,
    schemas: Schemas,
}

fn config_text(fake: &FakeProvider, cheap_adapter: &str, execute_extra: &str) -> String {
    let rung = |name: &str, adapter: &str, provider: &str, model: &str, base: String| {
        format!(
            "\n[[execute.rungs]]\nname = \"{name}\"\nadapter = \"{adapter}\"\nprovider = \"{provider}\"\n\
             model = \"{model}\"\nbase_url = \"{base}\"\ntimeout_secs = 30\nmax_output_tokens = 1000\n"
        )
    };
    format!(
        "[execute]\nbackoff_ms = 10\nheartbeat_secs = 1\ninfra_cooldown_secs = 60\n\
         interactive_clients = [\"{PERSON}\"]\n{execute_extra}\n{}{}{}",
        rung(
            "cheap",
            cheap_adapter,
            "deepseek",
            CHEAP,
            fake.openai_base()
        ),
        rung("mid", "anthropic", "anthropic", MID, fake.anthropic_base()),
        rung("top", "gemini", "gemini", TOP, fake.gemini_base()),
    )
}

/// A `file:` secret reference (mode 600) holding `key`.
fn secret(env: &Env, name: &str, key: &str) -> String {
    let p = env.dir.path().join(name);
    std::fs::write(&p, format!("{key}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!("file:{}", p.display())
}

fn account(provider: &str, name: &str, secret_ref: &str) -> Value {
    json!({"action": "accounts", "op": "add", "provider": provider, "name": name,
           "billing_mode": "metered", "secret_ref": secret_ref, "limit_kind": "requests",
           "limit": 1000, "window": "day"})
}

impl Rig {
    /// Starts the fake and the server, and gives each provider one good account.
    async fn new(extra_env: &[(&str, &str)]) -> Rig {
        Rig::with(extra_env, "").await
    }

    /// `execute_extra`: more lines for the `[execute]` table.
    async fn with(extra_env: &[(&str, &str)], execute_extra: &str) -> Rig {
        let env = Env::new();
        env.org("acme");
        let fake = FakeProvider::start().await.unwrap();
        let config = env.dir.path().join("config.toml");
        std::fs::write(&config, config_text(&fake, "openai", execute_extra)).unwrap();
        let srv = Server::start(&env, extra_env, &["--config", config.to_str().unwrap()]);
        let admin = http_client(&srv.url, &env.key("acme", "admin")).await;
        let op_key = env.key("acme", "operator");
        let op = http_client(&srv.url, &op_key).await;
        let schemas = Schemas::of(&op.list_all_tools().await.unwrap());
        let good = secret(&env, "good.key", DEFAULT_KEY);
        for provider in ["deepseek", "anthropic", "gemini"] {
            ok(
                &admin,
                "quota",
                account(provider, &format!("{provider}-1"), &good),
            )
            .await;
        }
        Rig {
            env,
            fake,
            srv,
            config,
            admin,
            op,
            op_key,
            schemas,
        }
    }

    async fn task(&self, c: &Client, extra: Value) -> String {
        let mut args = json!({"action": "create", "title": "Name the project"});
        for (k, v) in obj(extra) {
            args[k] = v;
        }
        ok(c, "task", args).await["task"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `execute run` as the operator; checks the output schema.
    async fn run(&self, args: Value) -> Value {
        let mut a = json!({"action": "run", "verbosity": "full"});
        for (k, v) in obj(args) {
            a[k] = v;
        }
        let r = ok(&self.op, "execute", a).await;
        self.schemas.check("execute", &r);
        r
    }

    async fn status(&self, run_id: &str) -> Value {
        let r = ok(
            &self.op,
            "execute",
            json!({"action": "status", "run_id": run_id, "verbosity": "full"}),
        )
        .await;
        self.schemas.check("execute", &r);
        r
    }

    /// Polls `execute status` until the run is in `state` (at most `secs`).
    async fn until_state(&self, run_id: &str, state: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.status(run_id).await;
            if s["run"]["state"] == state {
                return s;
            }
            assert!(Instant::now() < deadline, "run never became {state}: {s}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the fake has seen `n` requests.
    async fn until_requests(&self, n: usize) {
        for _ in 0..100 {
            if self.fake.requests().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the fake saw {} requests, not {n}",
            self.fake.requests().len()
        );
    }

    /// The LLM charges of one run (its usage records are `run/attempt/1`).
    async fn charges(&self, run_id: &str) -> Vec<Value> {
        let rc = ok(
            &self.op,
            "billing",
            json!({"action": "receipts", "limit": 500}),
        )
        .await;
        rc["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["reason"] == "llm_call"
                    && r["source_reference"]
                        .as_str()
                        .unwrap()
                        .starts_with(&format!("{run_id}/"))
            })
            .cloned()
            .collect()
    }

    /// Every receipt of the org, of any run.
    async fn all_charges(&self) -> usize {
        let rc = ok(
            &self.op,
            "billing",
            json!({"action": "receipts", "limit": 500}),
        )
        .await;
        rc["receipts"].as_array().unwrap().len()
    }

    fn models_called(&self) -> Vec<String> {
        self.fake.requests().into_iter().map(|r| r.model).collect()
    }
}

/// (rung, outcome, failure_kind) of each attempt, in order.
fn attempts(out: &Value) -> Vec<(String, String, String)> {
    out["attempts"]
        .as_array()
        .expect("attempts at verbosity full")
        .iter()
        .map(|s| {
            let a = &s["attempt"];
            (
                a["rung"].as_str().unwrap().to_string(),
                a["outcome"].as_str().unwrap().to_string(),
                a["failure_kind"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn at(rung: &str, outcome: &str, kind: &str) -> (String, String, String) {
    (rung.into(), outcome.into(), kind.into())
}

fn id_of(out: &Value) -> String {
    out["run"]["id"].as_str().unwrap().to_string()
}

/// Each billed attempt has exactly one charge, and the charges add up to the run's bill.
async fn one_charge_per_billed_call(rig: &Rig, out: &Value) {
    let run_id = id_of(out);
    let charges = rig.charges(&run_id).await;
    let billed: Vec<&Value> = out["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["cost_nanos"].as_i64().unwrap() > 0)
        .collect();
    assert_eq!(charges.len(), billed.len(), "{charges:?}\n{out}");
    let mut refs: Vec<&str> = charges
        .iter()
        .map(|c| c["source_reference"].as_str().unwrap())
        .collect();
    refs.sort();
    refs.dedup();
    assert_eq!(refs.len(), charges.len(), "one charge per call: {refs:?}");
    let sum: i64 = charges
        .iter()
        .map(|c| c["billed_nanos"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, out["run"]["billed_nanos"].as_i64().unwrap(), "{out}");
}

#[tokio::test]
async fn first_rung_answers() {
    let rig = Rig::new(&[]).await;
    rig.fake
        .script(CHEAP, vec![Step::answer("vaultline is a good name")]);
    let task = rig.task(&rig.op, json!({})).await;
    let out = rig.run(json!({"task_id": task})).await;
    let run = &out["run"];
    assert_eq!(run["state"], "succeeded", "{out}");
    assert_eq!(run["final_rung"], "cheap");
    assert_eq!(run["answer"], "vaultline is a good name");
    assert_eq!(
        (run["attempts"].clone(), run["quality_failures"].clone()),
        (json!(1), json!(0))
    );
    assert_eq!(attempts(&out), vec![at("cheap", "ok", "")]);
    let a = &out["attempts"][0];
    assert!(
        a["tokens_input"].as_i64().unwrap() > 0 && a["tokens_output"].as_i64().unwrap() == 5,
        "{a}"
    );
    assert!(run["billed_nanos"].as_i64().unwrap() > 0, "{run}");
    assert!(
        out["mermaid"].as_str().unwrap().starts_with("graph"),
        "{out}"
    );
    one_charge_per_billed_call(&rig, &out).await;
    assert_eq!(rig.charges(&id_of(&out)).await.len(), 1);
    assert_eq!(rig.models_called(), vec![CHEAP]);
    let req = &rig.fake.requests()[0];
    assert!(req.prompt.contains("Name the project"), "{}", req.prompt);
    assert_eq!(req.key_index, Some(0));

    let g = ok(
        &rig.op,
        "workflow",
        json!({"action": "graph", "workflow_id": run["workflow_id"]}),
    )
    .await;
    let m = g["mermaid"].as_str().unwrap();
    assert!(m.contains("cheap") && m.contains(CHEAP), "{m}");
}

#[tokio::test]
async fn a_bad_answer_climbs_with_the_validators_message() {
    let rig = Rig::new(&[]).await;
    rig.fake.script(CHEAP, vec![Step::answer(r#"{"nom": 1}"#)]);
    rig.fake
        .script(MID, vec![Step::answer(r#"{"name": "vaultline"}"#)]);
    let schema =
        json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}});
    let task = rig.task(&rig.op, json!({"answer_schema": schema})).await;
    let out = rig.run(json!({"task_id": task})).await;
    let run = &out["run"];
    assert_eq!(run["state"], "succeeded", "{out}");
    assert_eq!(run["final_rung"], "mid");
    assert_eq!(run["quality_failures"], 1);
    assert_eq!(
        attempts(&out),
        vec![at("cheap", "quality", "schema"), at("mid", "ok", "")]
    );
    assert_eq!(rig.models_called(), vec![CHEAP, MID]);
    let mid_prompt = &rig.fake.requests()[1].prompt;
    assert!(
        mid_prompt.contains("rejected") && mid_prompt.contains("\"name\" is a required property"),
        "{mid_prompt}"
    );
    one_charge_per_billed_call(&rig, &out).await;
    assert_eq!(rig.charges(&id_of(&out)).await.len(), 2);
}

#[tokio::test]
async fn a_failing_account_rotates_and_rests() {
    let rig = Rig::new(&[]).await;
    // The wrong key's account must be tried first: the good one has used half its quota.
    let bad = secret(&rig.env, "bad.key", "fake-key-wrong-000000");
    let added = ok(
        &rig.admin,
        "quota",
        account("deepseek", "deepseek-bad", &bad),
    )
    .await;
    let bad_id = added["accounts"][0]["id"].as_str().unwrap().to_string();
    let listed = ok(&rig.admin, "quota", json!({"action": "accounts"})).await;
    let good_id = listed["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "deepseek-1")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        &rig.admin,
        "quota",
        json!({"action": "record", "account_id": good_id, "requests": 500}),
    )
    .await;
    rig.fake.script(CHEAP, vec![Step::answer("fine")]);
    let task = rig.task(&rig.op, json!({})).await;
    let out = rig.run(json!({"task_id": task})).await;
    let run = &out["run"];
    assert_eq!(run["state"], "succeeded", "{out}");
    assert_eq!(run["final_rung"], "cheap");
    assert_eq!(run["quality_failures"], 0);
    assert_eq!(
        attempts(&out),
        vec![at("cheap", "infra", "auth"), at("cheap", "ok", "")]
    );
    assert_eq!(out["attempts"][0]["attempt"]["account_id"], bad_id.as_str());
    assert_eq!(
        out["attempts"][1]["attempt"]["account_id"],
        good_id.as_str()
    );
    let keys: Vec<Option<usize>> = rig.fake.requests().iter().map(|r| r.key_index).collect();
    assert_eq!(
        keys,
        vec![None, Some(0)],
        "the wrong key, then the right one"
    );
    one_charge_per_billed_call(&rig, &out).await;

    let listed = ok(&rig.admin, "quota", json!({"action": "accounts"})).await;
    let cooldown = |id: &str| {
        listed["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap()
            .get("cooldown_until")
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert!(cooldown(&bad_id).is_string(), "{listed}");
    assert!(cooldown(&good_id).is_null(), "{listed}");
}

#[tokio::test]
async fn a_dead_rung_is_skipped_without_a_quality_failure() {
    let rig = Rig::new(&[]).await;
    rig.fake.script(CHEAP, vec![Step::status(500)]);
    rig.fake.script(MID, vec![Step::answer("from mid")]);
    let task = rig.task(&rig.op, json!({})).await;
    let out = rig.run(json!({"task_id": task})).await;
    let run = &out["run"];
    assert_eq!(run["state"], "succeeded", "{out}");
    assert_eq!(run["final_rung"], "mid");
    assert_eq!(run["quality_failures"], 0);
    assert_eq!(
        attempts(&out),
        vec![at("cheap", "infra", "server"), at("mid", "ok", "")]
    );
    // One account on the rung: one call, then the rung is skipped.
    assert_eq!(rig.models_called(), vec![CHEAP, MID]);
    one_charge_per_billed_call(&rig, &out).await;
}

/// Every rung answers empty (the quality budget of 3 is spent), then the
/// consensus round answers `cheap`, `mid`, `top`.
fn script_consensus(fake: &FakeProvider, answers: [&str; 3]) {
    for (model, a) in [CHEAP, MID, TOP].into_iter().zip(answers) {
        fake.script(model, vec![Step::answer(""), Step::answer(a)]);
    }
}

#[tokio::test]
async fn consensus_two_of_three() {
    let rig = Rig::new(&[]).await;
    script_consensus(&rig.fake, ["forty  two", "forty two", "seven"]);
    let task = rig.task(&rig.op, json!({})).await;
    let out = rig.run(json!({"task_id": task})).await;
    let run = &out["run"];
    assert_eq!(run["state"], "succeeded", "{out}");
    assert_eq!(run["quality_failures"], 3);
    assert_eq!(run["consensus"]["agreed"], 2, "{run}");
    assert_eq!(run["consensus"]["of"], 3, "{run}");
    assert!(
        run["answer"].as_str().unwrap().starts_with("forty"),
        "{run}"
    );
    let a = attempts(&out);
    assert_eq!(
        &a[..3],
        &[
            at("cheap", "quality", "empty"),
            at("mid", "quality", "empty"),
            at("top", "quality", "empty")
        ]
    );
    assert_eq!(a.len(), 6, "{a:?}");
    assert!(a[3..].iter().all(|(_, o, _)| o == "ok"), "{a:?}");
    assert_eq!(rig.fake.requests().len(), 6);
    one_charge_per_billed_call(&rig, &out).await;
}

#[tokio::test]
async fn no_consensus_waits_for_another_key() {
    let rig = Rig::new(&[]).await;
    script_consensus(&rig.fake, ["one", "two", "three"]);
    let task = rig.task(&rig.op, json!({})).await;
    let out = rig.run(json!({"task_id": task})).await;
    let run_id = id_of(&out);
    assert_eq!(out["run"]["state"], "needs_human", "{out}");
    assert_eq!(attempts(&out).len(), 6);
    one_charge_per_billed_call(&rig, &out).await;
    let t = ok(&rig.op, "task", json!({"action": "get", "task_id": task})).await;
    assert_eq!(t["task"]["status"], "needs_human");

    let e = fails(
        &rig.op,
        "task",
        json!({"action": "resolve", "task_id": task, "answer": "mine"}),
    )
    .await;
    assert!(e.contains("another key"), "{e}");
    assert_eq!(rig.status(&run_id).await["run"]["state"], "needs_human");

    let other = http_client(&rig.srv.url, &rig.env.key("acme", "operator")).await;
    ok(
        &other,
        "task",
        json!({"action": "resolve", "task_id": task, "answer": "the person's answer"}),
    )
    .await;
    let s = rig.status(&run_id).await;
    assert_eq!(s["run"]["state"], "succeeded", "{s}");
    assert_eq!(s["run"]["final_rung"], "human");
    assert_eq!(s["run"]["answer"], "the person's answer");
    assert_eq!(
        rig.fake.requests().len(),
        6,
        "a person's answer calls nobody"
    );
    assert_eq!(rig.charges(&run_id).await.len(), 6);
}

/// A client that answers the ladder's elicitation with "42", after a pause.
#[derive(Clone)]
struct Person;

impl ClientHandler for Person {
    fn get_info(&self) -> ClientConfig {
        let caps: ClientCapabilities =
            serde_json::from_value(json!({"elicitation": {"form": {}}})).unwrap();
        ClientConfig::new(caps, Implementation::new(PERSON, "1"))
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let asks_for_task = match &request {
            ElicitRequestParams::FormElicitationParams { message, .. } => {
                message.contains("Please answer")
            }
            _ => false,
        };
        // A person takes a while: longer than three heartbeats (the reaper's limit).
        tokio::time::sleep(Duration::from_millis(4500)).await;
        Ok(if asks_for_task {
            let content = serde_json::from_value(json!({"answer": "42"})).unwrap();
            ElicitResult::new(ElicitationAction::Accept).with_content(content)
        } else {
            ElicitResult::new(ElicitationAction::Decline)
        })
    }
}

#[tokio::test]
async fn no_consensus_asks_the_connected_person() {
    let rig = Rig::new(&[]).await;
    script_consensus(&rig.fake, ["one", "two", "three"]);
    let task = rig.task(&rig.op, json!({})).await;
    let t = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(rig.srv.url.as_str())
            .auth_header(rig.op_key.clone()),
    );
    let person: RunningService<RoleClient, Person> = Person.serve(t).await.expect("connects");
    let r = person
        .call_tool(CallToolRequestParams::new("execute").with_arguments(obj(
            json!({"action": "run", "task_id": task, "verbosity": "full"}),
        )))
        .await
        .unwrap();
    let out = r.structured_content.clone().expect("structured");
    assert_ne!(r.is_error, Some(true), "{out}");
    let run = &out["run"];
    assert_eq!(run["state"], "succeeded", "{out}");
    assert_eq!(run["final_rung"], "human");
    assert_eq!(run["answer"], "42");
    assert!(run["reason"].as_str().unwrap().contains(PERSON), "{run}");
    assert_eq!(rig.fake.requests().len(), 6);
    one_charge_per_billed_call(&rig, &out).await;
}

#[tokio::test]
async fn an_open_breaker_stops_the_run_before_any_call() {
    let rig = Rig::new(&[("VAULTLINE_BILLING__BREAKER__DAILY_HALT_USD", "0.01")]).await;
    let w = ok(
        &rig.op,
        "workflow",
        json!({"action": "create", "task_type": "fix", "complexity": "simple"}),
    )
    .await;
    ok(
        &rig.op,
        "workflow",
        json!({"action": "stage", "workflow_id": w["workflow"]["id"], "stage_name": "impl", "model": CHEAP, "cost_usd": 0.5}),
    )
    .await;
    let task = rig.task(&rig.op, json!({})).await;
    let out = rig.run(json!({"task_id": task})).await;
    assert_eq!(out["run"]["state"], "failed", "{out}");
    let reason = out["run"]["reason"].as_str().unwrap();
    assert!(reason.contains("breaker"), "{reason}");
    assert_eq!(out["run"]["attempts"], 0, "no provider call was made");
    assert_eq!(attempts(&out), vec![at("cheap", "terminal", "limit")]);
    assert!(rig.fake.requests().is_empty(), "no provider call");
    assert_eq!(rig.all_charges().await, 0, "nothing billed");
}

#[tokio::test]
async fn a_spent_budget_refuses_before_any_call() {
    let rig = Rig::new(&[]).await;
    ok(
        &rig.admin,
        "billing",
        // $0.0001 a day: less than one call's worst case.
        json!({"action": "budget", "op": "set", "period": "day", "usd_nanos": 100_000}),
    )
    .await;
    let task = rig.task(&rig.op, json!({})).await;
    let out = rig.run(json!({"task_id": task})).await;
    assert_eq!(out["run"]["state"], "failed", "{out}");
    let reason = out["run"]["reason"].as_str().unwrap();
    assert!(reason.contains("budget"), "{reason}");
    assert_eq!(out["run"]["attempts"], 0, "no provider call was made");
    assert_eq!(attempts(&out), vec![at("cheap", "terminal", "limit")]);
    assert!(rig.fake.requests().is_empty(), "no provider call");
    assert_eq!(rig.all_charges().await, 0, "nothing billed");
}

#[tokio::test]
async fn cancel_drops_the_call_in_flight() {
    let rig = Rig::new(&[]).await;
    rig.fake.script(CHEAP, vec![Step::Hang]);
    let task = rig.task(&rig.op, json!({})).await;
    let asked = Instant::now();
    let out = rig.run(json!({"task_id": task, "detach": true})).await;
    // Detached means at once: the run must not hold the call open.
    assert!(
        asked.elapsed() < Duration::from_millis(1500),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(out["detached"], true, "{out}");
    assert_eq!(out["run"]["state"], "running");
    let run_id = id_of(&out);
    rig.until_requests(1).await;
    let started = Instant::now();
    let c = ok(
        &rig.op,
        "execute",
        json!({"action": "cancel", "run_id": run_id}),
    )
    .await;
    assert_eq!(c["run"]["state"], "cancelled", "{c}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    for _ in 0..40 {
        if rig.fake.dropped_hangs() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        rig.fake.dropped_hangs(),
        1,
        "the fake saw the request dropped"
    );
    let s = rig.status(&run_id).await;
    assert_eq!(s["run"]["state"], "cancelled");
    assert_eq!(rig.fake.requests().len(), 1);
    one_charge_per_billed_call(&rig, &s).await;
    let e = fails(
        &rig.op,
        "execute",
        json!({"action": "cancel", "run_id": run_id}),
    )
    .await;
    assert!(e.contains("cancelled"), "{e}");
}

#[tokio::test]
async fn a_long_run_goes_detached_after_the_wait() {
    let rig = Rig::with(&[], "detach_after_secs = 1").await;
    rig.fake.script(CHEAP, vec![Step::Hang]);
    let task = rig.task(&rig.op, json!({})).await;
    let asked = Instant::now();
    let out = rig.run(json!({"task_id": task})).await;
    let waited = asked.elapsed();
    // The configured wait, not the wait plus the progress flush's timeout.
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(2500),
        "{waited:?}"
    );
    assert_eq!(out["detached"], true, "{out}");
    assert_eq!(out["run"]["state"], "running");
    let run_id = id_of(&out);
    let c = ok(
        &rig.op,
        "execute",
        json!({"action": "cancel", "run_id": run_id}),
    )
    .await;
    assert_eq!(c["run"]["state"], "cancelled", "{c}");
    assert_eq!(rig.fake.requests().len(), 1);
}

#[tokio::test]
async fn a_retry_with_the_same_key_replays() {
    let rig = Rig::new(&[]).await;
    rig.fake.script(CHEAP, vec![Step::answer("once")]);
    let task = rig.task(&rig.op, json!({})).await;
    let first = rig
        .run(json!({"task_id": task, "idempotency_key": "k-1"}))
        .await;
    assert_eq!(first["run"]["state"], "succeeded", "{first}");
    assert_eq!(first["replayed"], false);
    let again = rig
        .run(json!({"task_id": task, "idempotency_key": "k-1"}))
        .await;
    assert_eq!(again["replayed"], true, "{again}");
    assert_eq!(id_of(&again), id_of(&first));
    assert_eq!(again["run"]["answer"], "once");
    let e = fails(
        &rig.op,
        "execute",
        json!({"action": "run", "task_id": task, "idempotency_key": "k-1", "pin": "mid"}),
    )
    .await;
    assert!(e.contains("different request"), "{e}");
    assert_eq!(rig.fake.requests().len(), 1, "one provider call");
    assert_eq!(rig.charges(&id_of(&first)).await.len(), 1, "one charge");
    assert_eq!(rig.all_charges().await, 1);
}

#[tokio::test]
async fn a_crash_mid_run_leaves_it_interrupted_and_the_task_open() {
    let mut rig = Rig::new(&[]).await;
    rig.fake.script(CHEAP, vec![Step::Hang]);
    let task = rig.task(&rig.op, json!({})).await;
    let out = rig.run(json!({"task_id": task, "detach": true})).await;
    let run_id = id_of(&out);
    rig.until_requests(1).await;
    let t = ok(&rig.op, "task", json!({"action": "get", "task_id": task})).await;
    assert_eq!(t["task"]["status"], "in_progress");

    // SIGKILL (std's Child::kill on Unix), then the same database again.
    let pid = rig.srv.pid();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(rig.srv.wait_exit(Duration::from_secs(5)).is_some());
    rig.srv = Server::start(&rig.env, &[], &["--config", rig.config.to_str().unwrap()]);
    rig.op = http_client(&rig.srv.url, &rig.op_key).await;
    let s = rig.until_state(&run_id, "interrupted", 8).await;
    assert!(
        s["run"]["reason"].as_str().unwrap().contains("stopped"),
        "{s}"
    );
    let t = ok(&rig.op, "task", json!({"action": "get", "task_id": task})).await;
    assert_eq!(t["task"]["status"], "open", "{t}");
    assert_eq!(rig.fake.requests().len(), 1);
}

#[tokio::test]
async fn bad_input_is_refused_and_bills_nothing() {
    let rig = Rig::new(&[]).await;
    rig.env.org("other");
    let other = http_client(&rig.srv.url, &rig.env.key("other", "operator")).await;
    let theirs = rig.task(&other, json!({})).await;
    let mine = rig.task(&rig.op, json!({})).await;
    let missing = fails(
        &rig.op,
        "execute",
        json!({"action": "run", "task_id": "01NOPE"}),
    )
    .await;
    assert!(missing.contains("not found"), "{missing}");
    let foreign = fails(
        &rig.op,
        "execute",
        json!({"action": "run", "task_id": theirs}),
    )
    .await;
    assert_eq!(
        foreign,
        missing.replace("01NOPE", &theirs),
        "another org's task looks missing"
    );
    let e = fails(
        &rig.op,
        "execute",
        json!({"action": "run", "task_id": mine, "verifier": ["cargo", "test"]}),
    )
    .await;
    assert!(e.contains("verifier") && e.contains("repo"), "{e}");
    let e = fails(
        &rig.op,
        "execute",
        json!({"action": "run", "task_id": mine, "pin": "nope"}),
    )
    .await;
    assert!(e.contains("pin"), "{e}");
    assert!(rig.fake.requests().is_empty());
    assert_eq!(rig.all_charges().await, 0);
    let t = ok(&rig.op, "task", json!({"action": "get", "task_id": mine})).await;
    assert_eq!(
        t["task"]["status"], "open",
        "a refused run leaves the task alone"
    );

    // Another org's run looks missing to status and cancel alike.
    let out = rig.run(json!({"task_id": mine})).await;
    let run_id = id_of(&out);
    for action in ["status", "cancel"] {
        let e = fails(
            &other,
            "execute",
            json!({"action": action, "run_id": run_id}),
        )
        .await;
        assert!(e.contains("not found"), "{action}: {e}");
    }

    // An unknown adapter stops start-up, naming the config file's line.
    let bad = rig.env.dir.path().join("config.toml");
    let text = config_text(&rig.fake, "carrier_pigeon", "");
    std::fs::write(&bad, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("carrier_pigeon"))
        .unwrap()
        + 1;
    let mut child = Command::new(bin())
        .arg("--db")
        .arg(rig.env.db())
        .args([
            "--config",
            bad.to_str().unwrap(),
            "serve",
            "--http",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a server with an unknown adapter started");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("carrier_pigeon"), "{stderr}");
    assert!(
        stderr.contains(&format!("config.toml:{line}")),
        "line {line}: {stderr}"
    );
}
