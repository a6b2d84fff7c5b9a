//! Placeholder until the conformance fixtures land.
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;
pub async fn serve_fixtures(_addr: SocketAddr, _ct: CancellationToken) -> anyhow::Result<()> {
    anyhow::bail!("conformance fixtures are not built into this binary yet")
}
