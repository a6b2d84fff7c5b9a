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

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Internal(format!("json: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
