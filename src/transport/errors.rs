//! The one place where domain errors become MCP answers.
//!
//! A failure the caller can act on (bad input, unknown id, refused transition,
//! missing role, read-only mode) is an in-band `isError` tool result whose text
//! names the field, id, limit or role. An unknown tool is a JSON-RPC error
//! (-32602, as the MCP spec shows). Internal causes are logged with a reference
//! and never echoed. The REST routes (`rest`) get the same errors as an HTTP status
//! and a sentence (`http_error`).

use rmcp::ErrorData;
use rmcp::model::{CallToolResult, ContentBlock};

use crate::error::Error;

/// A tool error result for the caller.
pub fn tool_error(tool: &str, action: Option<&str>, err: &Error) -> CallToolResult {
    let what = match action {
        Some(a) => format!("{tool} {a}"),
        None => tool.to_string(),
    };
    let text = match err {
        Error::Internal(cause) => {
            let reference = ulid::Ulid::new().to_string();
            tracing::error!(%reference, tool, action, cause = %cause, "internal error in tool call");
            format!("{what}: internal error (reference {reference}); the server logged the cause")
        }
        other => format!("{what}: {other}"),
    };
    CallToolResult::error(vec![ContentBlock::text(text)])
}

/// The HTTP status and message of a REST answer that failed: 400 for bad input,
/// 403 for a missing role or read-only mode, 404 for an unknown id (or another
/// org's), 409 for a refused transition, 429 for a spending limit, 500 otherwise.
pub fn http_error(what: &str, err: &Error) -> (u16, String) {
    let status = match err {
        Error::Invalid { .. } => 400,
        Error::Forbidden { .. } | Error::ReadOnly(_) => 403,
        Error::NotFound { .. } => 404,
        Error::Conflict(_) => 409,
        Error::Limit(_) => 429,
        Error::Internal(cause) => {
            let reference = ulid::Ulid::new().to_string();
            tracing::error!(%reference, what, cause = %cause, "internal error in a REST call");
            return (
                500,
                format!(
                    "{what}: internal error (reference {reference}); the server logged the cause"
                ),
            );
        }
    };
    (status, err.to_string())
}

/// The JSON-RPC error for a tool that is not listed.
pub fn unknown_tool(name: &str) -> ErrorData {
    ErrorData::invalid_params(format!("unknown tool: {name}"), None)
}

/// A JSON-RPC error for a non-tool request (resources, prompts, completions).
pub fn request_error(err: &Error) -> ErrorData {
    match err {
        Error::NotFound { .. } => ErrorData::resource_not_found(err.to_string(), None),
        Error::Internal(cause) => {
            tracing::error!(cause = %cause, "internal error in request");
            ErrorData::internal_error("internal error; the server logged the cause", None)
        }
        other => ErrorData::invalid_params(other.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn http_statuses_of_rest_errors() {
        let cases = [
            (Error::invalid("title", "must not be empty"), 400),
            (
                Error::Forbidden {
                    what: "task create".into(),
                    needed: Role::Operator,
                    have: Role::Viewer,
                },
                403,
            ),
            (Error::ReadOnly("task create".into()), 403),
            (Error::not_found("task", "T1"), 404),
            (
                Error::Conflict("task T1 cannot go from done to open".into()),
                409,
            ),
            (Error::Limit("daily budget reached".into()), 429),
        ];
        for (err, status) in cases {
            let (got, message) = http_error("task x", &err);
            assert_eq!(got, status, "{err}");
            assert_eq!(message, err.to_string());
        }
        let (status, message) =
            http_error("task list", &Error::Internal("disk I/O at /secret".into()));
        assert_eq!(status, 500);
        assert!(
            message.starts_with("task list: internal error (reference "),
            "{message}"
        );
        assert!(
            !message.contains("secret"),
            "the cause is logged, not echoed: {message}"
        );
    }
}
