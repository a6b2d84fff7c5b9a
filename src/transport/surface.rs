//! The MCP surface beyond tools: resources (`vaultline://workflow/{id}` as JSON,
//! `vaultline://checkpoint/{id}` and `vaultline://checkpoint/latest` as Markdown),
//! their templates and subscriptions, the `resume` prompt (the handoff document)
//! and completions of ids and prompt arguments. Reads go through the same store
//! verbs as the tools, scoped to the caller's org.

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
pub const CHECKPOINT_PREFIX: &str = "vaultline://checkpoint/";
pub const CHECKPOINT_TEMPLATE: &str = "vaultline://checkpoint/{id}";
pub const CHECKPOINT_LATEST: &str = "vaultline://checkpoint/latest";
pub const RESUME_PROMPT: &str = "resume";

/// A resource URI, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Workflow(String),
    Checkpoint(String),
    LatestCheckpoint,
}

fn is_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric())
}

pub fn parse_uri(uri: &str) -> Option<Uri> {
    if uri == CHECKPOINT_LATEST {
        return Some(Uri::LatestCheckpoint);
    }
    if let Some(id) = uri.strip_prefix(WORKFLOW_PREFIX) {
        return is_id(id).then(|| Uri::Workflow(id.to_string()));
    }
    let id = uri.strip_prefix(CHECKPOINT_PREFIX)?;
    is_id(id).then(|| Uri::Checkpoint(id.to_string()))
}

/// The URIs a change touches, with the org it belongs to.
pub fn change_uris(change: &Change) -> (String, Vec<String>) {
    match change {
        Change::Workflow { org, id } => (org.clone(), vec![format!("{WORKFLOW_PREFIX}{id}")]),
        Change::Checkpoint { org, id } => (
            org.clone(),
            vec![
                format!("{CHECKPOINT_PREFIX}{id}"),
                CHECKPOINT_LATEST.to_string(),
            ],
        ),
        // Tool-list changes are no resource: the handler sends list_changed.
        Change::Tools { org } => (org.clone(), Vec::new()),
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
        .collect::<Vec<_>>();
    let mut resources = resources;
    let checkpoints = app
        .store
        .list_checkpoints(&p.org, None, None, None, 20)
        .await
        .map_err(|e| request_error(&e))?;
    if !checkpoints.is_empty() {
        resources.push(
            Resource::new(CHECKPOINT_LATEST, "latest checkpoint")
                .with_description("The most recently saved checkpoint of this org")
                .with_mime_type("text/markdown"),
        );
    }
    for c in checkpoints {
        let name = c
            .objective
            .as_deref()
            .map(|o| o.chars().take(60).collect::<String>())
            .unwrap_or_else(|| format!("checkpoint {}", c.id));
        resources.push(
            Resource::new(format!("{CHECKPOINT_PREFIX}{}", c.id), name)
                .with_description(format!(
                    "checkpoint of {} / {}",
                    c.agent.as_deref().unwrap_or("any agent"),
                    c.project.as_deref().unwrap_or("any project")
                ))
                .with_mime_type("text/markdown"),
        );
    }
    Ok(ListResourcesResult::with_all_items(resources))
}

pub fn templates() -> ListResourceTemplatesResult {
    ListResourceTemplatesResult::with_all_items(vec![
        ResourceTemplate::new(WORKFLOW_TEMPLATE, "workflow")
            .with_description("A workflow with its stages and tasks, as JSON")
            .with_mime_type("application/json"),
        ResourceTemplate::new(CHECKPOINT_TEMPLATE, "checkpoint")
            .with_description("A checkpoint as Markdown (`latest` for the newest)")
            .with_mime_type("text/markdown"),
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
        Uri::Checkpoint(id) => {
            let c = app
                .store
                .get_checkpoint(&p.org, &id)
                .await
                .map_err(|e| request_error(&e))?;
            Ok(markdown(uri, c.content.unwrap_or_default()))
        }
        Uri::LatestCheckpoint => {
            let c = app
                .store
                .latest_checkpoint(&p.org, None, None)
                .await
                .map_err(|e| request_error(&e))?
                .ok_or_else(|| {
                    ErrorData::resource_not_found(format!("no checkpoint saved yet: {uri}"), None)
                })?;
            Ok(markdown(uri, c.content.unwrap_or_default()))
        }
    }
}

fn markdown(uri: &str, text: String) -> ReadResourceResult {
    ReadResourceResult::new(vec![
        ResourceContents::text(text, uri).with_mime_type("text/markdown"),
    ])
}

/// The one prompt: `resume`, the handoff a fresh session starts from.
pub fn prompts() -> ListPromptsResult {
    ListPromptsResult::with_all_items(vec![Prompt::new(
        RESUME_PROMPT,
        Some("Resume work: the latest checkpoint, open tasks, blockers and recent decisions"),
        Some(vec![
            PromptArgument::new("agent")
                .with_description("Only this agent's checkpoints and decisions"),
            PromptArgument::new("project").with_description("Only this project"),
        ]),
    )])
}

pub async fn get_prompt(
    app: &App,
    p: &Principal,
    req: &GetPromptRequestParams,
) -> Result<GetPromptResult, ErrorData> {
    if req.name != RESUME_PROMPT {
        return Err(ErrorData::invalid_params(
            format!("unknown prompt: {}", req.name),
            None,
        ));
    }
    let arg = |name: &str| {
        req.arguments
            .as_ref()
            .and_then(|a| a.get(name))
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let (agent, project) = (arg("agent"), arg("project"));
    let doc = crate::tools::checkpoint::handoff_document(
        app,
        &p.org,
        agent.as_deref(),
        project.as_deref(),
    )
    .await
    .map_err(|e| request_error(&e))?;
    let mut r = GetPromptResult::new(vec![PromptMessage::new_text(
        Role::User,
        format!(
            "Resume from this vaultline handoff. Check the open tasks and blockers before acting.\n\n{doc}"
        ),
    )]);
    r.description = Some("vaultline handoff".into());
    Ok(r)
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
                    let (change_org, uris) = change_uris(&change);
                    if change_org != org {
                        continue;
                    }
                    let wanted: Vec<String> = match subs.uris.lock() {
                        Ok(s) => uris.into_iter().filter(|u| s.contains(u)).collect(),
                        Err(_) => Vec::new(),
                    };
                    let mut gone = false;
                    for uri in wanted {
                        if peer
                            .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                            .await
                            .is_err()
                        {
                            gone = true;
                            break;
                        }
                    }
                    if gone {
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
        Reference::Resource(r) if r.uri == CHECKPOINT_TEMPLATE && req.argument.name == "id" => {
            let mut ids = app
                .store
                .checkpoint_ids_with_prefix(&p.org, prefix, 99)
                .await
                .map_err(|e| request_error(&e))?;
            if "latest".starts_with(prefix) {
                ids.insert(0, "latest".into());
            }
            ids
        }
        Reference::Prompt(pr)
            if pr.name == RESUME_PROMPT
                && matches!(req.argument.name.as_str(), "agent" | "project") =>
        {
            app.store
                .checkpoint_scopes(&p.org, req.argument.name == "project", prefix, 100)
                .await
                .map_err(|e| request_error(&e))?
        }
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
