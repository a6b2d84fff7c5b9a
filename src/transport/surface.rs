//! The MCP surface beyond tools: resources (`vaultline://workflow/{id}`,
//! `vaultline://checkpoint/{id}`), their templates and subscriptions, the `resume`
//! prompt and completions of ids. Reads go through the same store verbs as the
//! tools, scoped to the caller's org.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rmcp::model::*;
use rmcp::service::Peer;
use rmcp::{ErrorData, RoleServer};
use serde_json::json;

use super::errors::request_error;
use crate::app::{App, Change};
use crate::auth::Principal;
use crate::error::Error;

pub const WORKFLOW_PREFIX: &str = "vaultline://workflow/";
pub const WORKFLOW_TEMPLATE: &str = "vaultline://workflow/{id}";

/// A resource URI, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Workflow(String),
}

pub fn parse_uri(uri: &str) -> Option<Uri> {
    let id = uri.strip_prefix(WORKFLOW_PREFIX)?;
    (!id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| Uri::Workflow(id.to_string()))
}

pub fn change_uri(change: &Change) -> Option<(String, String)> {
    match change {
        Change::Workflow { org, id } => Some((org.clone(), format!("{WORKFLOW_PREFIX}{id}"))),
        Change::Checkpoint { .. } => None,
    }
}

pub async fn list(app: &App, p: &Principal) -> Result<ListResourcesResult, ErrorData> {
    let rows = app
        .store
        .workflow_list(
            &p.org,
            crate::store::WorkflowFilter {
                limit: 50,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| request_error(&e))?;
    let resources = rows
        .into_iter()
        .map(|w| {
            let name = w
                .title
                .clone()
                .unwrap_or_else(|| format!("workflow {}", w.id));
            Resource::new(format!("{WORKFLOW_PREFIX}{}", w.id), name)
                .with_description(format!(
                    "{} workflow, {}",
                    w.task_type.as_deref().unwrap_or("a"),
                    w.status
                ))
                .with_mime_type("application/json")
        })
        .collect();
    Ok(ListResourcesResult::with_all_items(resources))
}

pub fn templates() -> ListResourceTemplatesResult {
    ListResourceTemplatesResult::with_all_items(vec![
        ResourceTemplate::new(WORKFLOW_TEMPLATE, "workflow")
            .with_description("A workflow with its stages and tasks, as JSON")
            .with_mime_type("application/json"),
    ])
}

pub async fn read(app: &App, p: &Principal, uri: &str) -> Result<ReadResourceResult, ErrorData> {
    let parsed = parse_uri(uri)
        .ok_or_else(|| ErrorData::resource_not_found(format!("no resource {uri}"), None))?;
    match parsed {
        Uri::Workflow(id) => {
            let w = app
                .store
                .workflow_get(&p.org, &id)
                .await
                .map_err(|e| request_error(&e))?;
            let stages = app
                .store
                .workflow_stages(&p.org, &id, false)
                .await
                .map_err(|e| request_error(&e))?;
            let tasks = app
                .store
                .workflow_tasks(&p.org, &id)
                .await
                .map_err(|e| request_error(&e))?;
            let body = json!({"workflow": w, "stages": stages, "tasks": tasks});
            Ok(ReadResourceResult::new(vec![
                ResourceContents::text(body.to_string(), uri).with_mime_type("application/json"),
            ]))
        }
    }
}

/// Resource subscriptions of one session.
#[derive(Default)]
pub struct Subscriptions {
    uris: Mutex<HashSet<String>>,
    forwarding: AtomicBool,
}

impl Subscriptions {
    /// Subscribes to `uri` (which must exist for the caller) and starts forwarding
    /// change notifications to this session's peer if not already.
    pub async fn subscribe(
        self: &Arc<Self>,
        app: &Arc<App>,
        p: &Principal,
        uri: &str,
        peer: Peer<RoleServer>,
    ) -> Result<(), ErrorData> {
        read(app, p, uri).await?;
        if let Ok(mut s) = self.uris.lock() {
            s.insert(uri.to_string());
        }
        if !self.forwarding.swap(true, Ordering::SeqCst) {
            let subs = self.clone();
            let mut rx = app.changes.subscribe();
            let org = p.org.clone();
            tokio::spawn(async move {
                loop {
                    let change = match rx.recv().await {
                        Ok(c) => c,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => break,
                    };
                    let Some((change_org, uri)) = change_uri(&change) else {
                        continue;
                    };
                    let wanted =
                        change_org == org && subs.uris.lock().is_ok_and(|s| s.contains(&uri));
                    if wanted
                        && peer
                            .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                            .await
                            .is_err()
                    {
                        // The session is gone.
                        break;
                    }
                }
                subs.forwarding.store(false, Ordering::SeqCst);
            });
        }
        Ok(())
    }

    pub fn unsubscribe(&self, uri: &str) {
        if let Ok(mut s) = self.uris.lock() {
            s.remove(uri);
        }
    }
}

/// Completions: ids for the resource templates.
pub async fn complete(
    app: &App,
    p: &Principal,
    req: &CompleteRequestParams,
) -> Result<CompleteResult, ErrorData> {
    let prefix = req.argument.value.as_str();
    let values: Vec<String> = match &req.r#ref {
        Reference::Resource(r) if r.uri == WORKFLOW_TEMPLATE && req.argument.name == "id" => app
            .store
            .workflow_ids_with_prefix(&p.org, prefix, 100)
            .await
            .map_err(|e| request_error(&e))?,
        _ => Vec::new(),
    };
    let info =
        CompletionInfo::with_all_values(values).map_err(|e| request_error(&Error::Internal(e)))?;
    Ok(CompleteResult::new(info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(
            parse_uri("vaultline://workflow/01ABC"),
            Some(Uri::Workflow("01ABC".into()))
        );
        for bad in [
            "vaultline://workflow/",
            "vaultline://workflow/../x",
            "http://x/01ABC",
            "vaultline://other/1",
        ] {
            assert_eq!(parse_uri(bad), None, "{bad}");
        }
    }
}
