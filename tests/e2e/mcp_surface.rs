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
    c.cancel().await.ok();
}
