//! PLACEHOLDER (branch providers-base only; replaced by the HTTP adapters work).
use super::http::Built;
use super::{Answer, Failure, FailureKind, Request, Target};

pub fn build(_t: &Target, _r: &Request) -> Result<Built, Failure> {
    Err(Failure::new(FailureKind::Rejected, "placeholder"))
}

pub fn parse(_status: u16, _h: &::http::HeaderMap, _body: &[u8]) -> Result<Answer, Failure> {
    Err(Failure::new(FailureKind::Rejected, "placeholder"))
}
