//! MCP over stdio for one local user (the owner of the default org unless
//! configured otherwise). stdout carries only JSON-RPC; logs go to stderr.
//!
//! A thin line proxy sits between the pipes and rmcp: rmcp drops input that is
//! not JSON without a word, but JSON-RPC 2.0 asks for a -32700 Parse error, so
//! the proxy answers such lines itself and forwards the rest unchanged. Lines
//! over the body limit get a -32600 error and are discarded.

use std::sync::Arc;

use futures::StreamExt;
use rmcp::ServiceExt;
use serde_json::json;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;

use super::handler::{Handler, listed_tools};
use crate::app::App;
use crate::auth::Principal;

/// Serves on the given reader and writer (stdin/stdout in production).
pub async fn serve_on<R, W>(
    app: Arc<App>,
    principal: Principal,
    input: R,
    output: W,
    ct: CancellationToken,
) -> anyhow::Result<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let max = app.config.http.max_body_bytes;
    let handler = Handler::new(app.clone(), Some(principal), listed_tools(&app));
    let (to_rmcp_r, mut to_rmcp_w) = tokio::io::duplex(1 << 16);
    let (from_rmcp_r, from_rmcp_w) = tokio::io::duplex(1 << 16);
    let (err_tx, mut err_rx) = mpsc::channel::<String>(64);

    // Client → rmcp, answering what is not JSON.
    let reader = tokio::spawn(async move {
        let mut lines = FramedRead::new(input, LinesCodec::new_with_max_length(max));
        while let Some(line) = lines.next().await {
            match line {
                Ok(line) if line.trim().is_empty() => {}
                Ok(line) => {
                    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&line) {
                        let msg = json!({"jsonrpc": "2.0", "id": null,
                            "error": {"code": -32700, "message": format!("Parse error: {e}")}});
                        if err_tx.send(msg.to_string()).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    if to_rmcp_w.write_all(line.as_bytes()).await.is_err()
                        || to_rmcp_w.write_all(b"\n").await.is_err()
                    {
                        break;
                    }
                }
                Err(LinesCodecError::MaxLineLengthExceeded) => {
                    let msg = json!({"jsonrpc": "2.0", "id": null,
                        "error": {"code": -32600, "message": format!("Invalid Request: message exceeds {max} bytes")}});
                    if err_tx.send(msg.to_string()).await.is_err() {
                        break;
                    }
                }
                Err(LinesCodecError::Io(_)) => break,
            }
        }
        // EOF: closing rmcp's input ends the session.
        let _ = to_rmcp_w.shutdown().await;
    });

    // rmcp and the proxy → client, whole lines only.
    let writer = tokio::spawn(async move {
        let mut out = BufWriter::new(output);
        let mut lines = FramedRead::new(from_rmcp_r, LinesCodec::new());
        loop {
            let line = tokio::select! {
                l = lines.next() => match l {
                    Some(Ok(l)) => l,
                    _ => break,
                },
                Some(e) = err_rx.recv() => e,
            };
            if out.write_all(line.as_bytes()).await.is_err()
                || out.write_all(b"\n").await.is_err()
                || out.flush().await.is_err()
            {
                break;
            }
        }
    });

    let service = handler
        .serve((to_rmcp_r, from_rmcp_w))
        .await
        .map_err(|e| anyhow::anyhow!("stdio handshake failed: {e}"))?;
    let cancel = service.cancellation_token();
    tokio::select! {
        r = service.waiting() => { r.map_err(|e| anyhow::anyhow!("stdio session ended: {e}"))?; }
        _ = ct.cancelled() => { cancel.cancel(); }
    }
    reader.abort();
    let _ = writer.await;
    Ok(())
}

/// Serves on the process's stdin and stdout.
pub async fn serve(
    app: Arc<App>,
    principal: Principal,
    ct: CancellationToken,
) -> anyhow::Result<()> {
    serve_on(app, principal, tokio::io::stdin(), tokio::io::stdout(), ct).await
}
