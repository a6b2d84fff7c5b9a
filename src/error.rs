//! The one application error, shared by the store and the domain modules and
//! converted once at the edge (`transport::errors`).
//!
//! Messages of the client-facing variants are written for the caller: they name
//! the field, the limit or the role. `Internal` carries the cause for the log
//! only; the caller sees a generic sentence.

use crate::auth::Role;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A thing that does not exist, or belongs to another org (the two look the same).
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    /// Bad input: names the field and what is wrong with it.
    #[error("`{field}`: {message}")]
    Invalid { field: String, message: String },
    /// A status change the state machine does not allow.
    #[error("{0}")]
    Conflict(String),
    /// The principal's role is below what the action needs.
    #[error("`{what}` needs role {needed} or above; this key has role {have}")]
    Forbidden {
        what: String,
        needed: Role,
        have: Role,
    },
    /// A spending limit (budget, breaker, prepaid balance) refuses the request;
    /// the message names the limit, what is spent and reserved, and when it resets.
    #[error("{0}")]
    Limit(String),
    /// The server runs read-only and the action writes.
    #[error("the server is read-only: `{0}` writes and is disabled")]
    ReadOnly(String),
    /// Anything else: the cause is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Error {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub fn missing(field: &str, action: &str) -> Error {
        Error::invalid(field, format!("is required for action `{action}`"))
    }
}

/// `s` cut to at most `max` characters (never inside one), `…` marking a cut.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A JSON Schema validation error as bad input: the field is the instance path
/// (dotted; `arguments` for the whole), the message the validator's, clipped to
/// 300 characters (it can echo a long input value).
pub fn schema_error(err: &jsonschema::ValidationError<'_>) -> Error {
    let path = err.instance_path().to_string();
    let field = path.trim_start_matches('/').replace('/', ".");
    let field = if field.is_empty() {
        "arguments".to_string()
    } else {
        field
    };
    Error::invalid(field, clip(&err.to_string(), 300))
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Internal(format!("json: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod clip_tests {
    use super::*;

    #[test]
    fn clip_counts_characters_and_never_cuts_one() {
        assert_eq!(clip("Tromsø", 10), "Tromsø");
        assert_eq!(clip("Tromsø", 5), "Troms…");
        assert_eq!(clip("øøø", 2), "øø…");
    }

    #[test]
    fn a_long_echoed_value_is_clipped_not_a_panic() {
        // The message echoes the value: `"øøø…" is not one of ["x"]`; byte 300
        // falls inside an `ø`, where a byte truncation used to panic.
        let schema = serde_json::json!({"properties": {"city": {"enum": ["x"]}}});
        let v = jsonschema::validator_for(&schema).unwrap();
        let input = serde_json::json!({"city": "ø".repeat(400)});
        let err = v.iter_errors(&input).next().unwrap();
        match schema_error(&err) {
            Error::Invalid { field, message } => {
                assert_eq!(field, "city");
                assert_eq!(message.chars().count(), 301, "{message}");
                assert!(message.ends_with('…'));
            }
            other => panic!("{other:?}"),
        }
    }
}
