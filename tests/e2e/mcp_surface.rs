//! Resources, templates, subscriptions and completions over both transports.

use std::time::Duration;

use rmcp::model::*;
use rmcp::service::{NotificationContext, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::json;
use tokio::sync::mpsc;

use crate::common::*;

/// A client that records resource-updated notifications.
#[derive(Clone)]
struct Watcher {
    tx: mpsc::UnboundedSender<String>,
}

impl ClientHandler for Watcher {
    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        let _ = self.tx.send(params.uri);
    }
}

async fn exercise(
    c: &RunningService<RoleClient, Watcher>,
    rx: &mut mpsc::UnboundedReceiver<String>,
) {
    let call = |args: serde_json::Value| async move {
        let r = c
            .call_tool(CallToolRequestParams::new("workflow").with_arguments(obj(args)))
            .await
            .unwrap();
        assert_ne!(r.is_error, Some(true), "{:?}", r.content);
        r.structured_content.unwrap()
    };
    let w = call(
        json!({"action": "create", "task_type": "fix", "complexity": "simple", "title": "res"}),
    )
    .await;
    let id = w["workflow"]["id"].as_str().unwrap().to_string();
    let uri = format!("vaultline://workflow/{id}");

    let listed = c.list_all_resources().await.unwrap();
    assert!(listed.iter().any(|r| r.uri == uri), "listed: {listed:?}");
    let templates = c.list_all_resource_templates().await.unwrap();
    assert!(
        templates
            .iter()
            .any(|t| t.uri_template == "vaultline://workflow/{id}")
    );
    let read = c
        .read_resource(ReadResourceRequestParams::new(uri.clone()))
        .await
        .unwrap();
    let text = match &read.contents[0] {
        ResourceContents::TextResourceContents { text, .. } => text.clone(),
        other => panic!("{other:?}"),
    };
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["workflow"]["id"], id.as_str());
    let missing = c
        .read_resource(ReadResourceRequestParams::new(
            "vaultline://workflow/01JZZZZZZZZZZZZZZZZZZZZZZZ",
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("not found"), "{missing}");

    // resources/subscribe is current in the protocol versions vaultline serves.
    #[allow(deprecated)]
    let subscribed = c.subscribe(SubscribeRequestParams::new(uri.clone()));
    subscribed.await.unwrap();
    call(json!({"action": "stage", "workflow_id": id, "stage_name": "impl"})).await;
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("notified")
        .unwrap();
    assert_eq!(got, uri);
    #[allow(deprecated)]
    let unsubscribed = c.unsubscribe(UnsubscribeRequestParams::new(uri.clone()));
    unsubscribed.await.unwrap();
    call(json!({"action": "close", "workflow_id": id})).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "no notification after unsubscribe"
    );

    let done = c
        .complete(CompleteRequestParams::new(
            Reference::for_resource("vaultline://workflow/{id}"),
            ArgumentInfo::new("id", &id[..6]),
        ))
        .await
        .unwrap();
    assert!(
        done.completion.values.contains(&id),
        "{:?}",
        done.completion.values
    );
}

#[tokio::test]
async fn resources_subscriptions_and_completions_over_http() {
    let env = Env::new();
    env.org("acme");
    let key = env.key("acme", "operator");
    let srv = Server::start(&env, &[], &[]);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let t = rmcp::transport::StreamableHttpClientTransport::from_config(
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            srv.url.as_str(),
        )
        .auth_header(key),
    );
    let c = Watcher { tx }.serve(t).await.unwrap();
    exercise(&c, &mut rx).await;
    exercise_checkpoints(&c, &mut rx).await;
    c.cancel().await.ok();
}

#[tokio::test]
async fn resources_subscriptions_and_completions_over_stdio() {
    let env = Env::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut cmd = tokio::process::Command::new(bin());
    cmd.arg("--db")
        .arg(env.db())
        .args(["serve", "--stdio"])
        .env("VAULTLINE_LOG__LEVEL", "warn");
    let c = Watcher { tx }
        .serve(rmcp::transport::TokioChildProcess::new(cmd).unwrap())
        .await
        .unwrap();
    exercise(&c, &mut rx).await;
    exercise_checkpoints(&c, &mut rx).await;
    c.cancel().await.ok();
}

/// Checkpoints: resources, the `latest` alias, its subscription, the resume prompt
/// and completions of its arguments.
async fn exercise_checkpoints(
    c: &RunningService<RoleClient, Watcher>,
    rx: &mut mpsc::UnboundedReceiver<String>,
) {
    let save =
        |objective: &'static str| async move {
            let r = c
            .call_tool(CallToolRequestParams::new("checkpoint").with_arguments(obj(json!({
                "action": "save", "agent": "surface", "project": "vl", "objective": objective
            }))))
            .await
            .unwrap();
            assert_ne!(r.is_error, Some(true), "{:?}", r.content);
            r.structured_content.unwrap()["checkpoint"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
    let missing = c
        .read_resource(ReadResourceRequestParams::new(
            "vaultline://checkpoint/latest",
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("no checkpoint"), "{missing}");
    let cp = save("first objective").await;
    #[allow(deprecated)]
    let subscribed = c.subscribe(SubscribeRequestParams::new("vaultline://checkpoint/latest"));
    subscribed.await.unwrap();
    let latest = c
        .read_resource(ReadResourceRequestParams::new(
            "vaultline://checkpoint/latest",
        ))
        .await
        .unwrap();
    match &latest.contents[0] {
        ResourceContents::TextResourceContents {
            text, mime_type, ..
        } => {
            assert!(text.contains("first objective"), "{text}");
            assert_eq!(mime_type.as_deref(), Some("text/markdown"));
        }
        other => panic!("{other:?}"),
    }
    let cp2 = save("second objective").await;
    assert_ne!(cp, cp2);
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("notified")
        .unwrap();
    assert_eq!(got, "vaultline://checkpoint/latest");
    let listed = c.list_all_resources().await.unwrap();
    assert!(
        listed
            .iter()
            .any(|r| r.uri == format!("vaultline://checkpoint/{cp2}"))
    );
    let prompts = c.list_all_prompts().await.unwrap();
    assert!(prompts.iter().any(|p| p.name == "resume"), "{prompts:?}");
    let mut args = serde_json::Map::new();
    args.insert("project".into(), json!("vl"));
    let resume = c
        .get_prompt(GetPromptRequestParams::new("resume").with_arguments(args))
        .await
        .unwrap();
    let body = match &resume.messages[0].content {
        ContentBlock::Text(t) => t.text.clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        body.contains("# Recovery Checkpoint") && body.contains("second objective"),
        "{body}"
    );
    let agents = c
        .complete(CompleteRequestParams::new(
            Reference::for_prompt("resume"),
            ArgumentInfo::new("agent", "surf"),
        ))
        .await
        .unwrap();
    assert_eq!(agents.completion.values, vec!["surface".to_string()]);
    let ids = c
        .complete(CompleteRequestParams::new(
            Reference::for_resource("vaultline://checkpoint/{id}"),
            ArgumentInfo::new("id", "lat"),
        ))
        .await
        .unwrap();
    assert_eq!(ids.completion.values, vec!["latest".to_string()]);
}

#[tokio::test]
async fn long_ingest_reports_progress_over_http() {
    let env = Env::new();
    env.org("acme");
    let key = env.key("acme", "operator");
    let srv = Server::start(&env, &[], &[]);
    let raw = Raw::new(&srv.url);
    let sid = raw.session(Some(&key)).await;
    let messages: Vec<serde_json::Value> = (0..120)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("message number {i}")}))
        .collect();
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": "checkpoint", "_meta": {"progressToken": "ingest-1"},
        "arguments": {"action": "ingest", "conversation_id": "long", "messages": messages}}});
    let r = raw
        .post(Some(&key), Some(&sid), &[], body.to_string())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let progress: Vec<serde_json::Value> = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d.trim()).ok())
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert!(
        progress.len() >= 2,
        "progress notifications before the result: {}",
        r.body
    );
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "ingest-1")
    );
    let last = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d.trim()).ok())
        .find(|m| m["id"] == 9)
        .expect("a result");
    assert_eq!(
        last["result"]["structuredContent"]["ingested"]["inserted"], 120,
        "{last}"
    );
}
