//! PLACEHOLDER (branch providers-base only; replaced by the HTTP adapters work).
use tokio_util::sync::CancellationToken;

use super::{Answer, Failure, FailureKind, Request, Target};

/// A request an HTTP adapter built: where to send it, its headers (the
/// credential among them; never logged) and its JSON body.
#[derive(Debug, Clone)]
pub struct Built {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

/// Builds the wire request for a target and a call.
pub type Build = fn(&Target, &Request) -> Result<Built, Failure>;
/// Parses a response (status, headers, body) into an answer or a classified failure.
pub type Parse = fn(u16, &::http::HeaderMap, &[u8]) -> Result<Answer, Failure>;

pub async fn call(
    _client: &reqwest::Client,
    _target: &Target,
    _req: &Request,
    _ct: &CancellationToken,
    _build: Build,
    _parse: Parse,
) -> Result<Answer, Failure> {
    Err(Failure::new(FailureKind::Rejected, "placeholder"))
}
