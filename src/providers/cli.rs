//! PLACEHOLDER (branch providers-base only; replaced by the CLI adapters work).
use tokio_util::sync::CancellationToken;

use super::{Answer, Failure, FailureKind, Request, Target};

pub async fn call(_t: &Target, _r: &Request, _ct: &CancellationToken) -> Result<Answer, Failure> {
    Err(Failure::new(FailureKind::Rejected, "placeholder"))
}
