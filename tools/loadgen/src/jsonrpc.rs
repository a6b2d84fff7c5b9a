//! JSON-RPC message helpers and an incremental SSE parser.
//!
//! Shared by the HTTP and stdio drivers: building requests, finding the response
//! to a given id in a message (single object or batch), deciding whether a
//! `tools/call` succeeded, and splitting a `text/event-stream` body into the
//! `data:` payloads of its events.

use serde_json::{Value, json};

/// The JSON-RPC request envelope.
pub fn request(id: u64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

/// A JSON-RPC notification (no id).
pub fn notification(method: &str) -> Value {
    json!({ "jsonrpc": "2.0", "method": method })
}

/// `initialize` params for the handshake versions (before 2026-07-28).
pub fn initialize_params(protocol_version: &str) -> Value {
    json!({
        "protocolVersion": protocol_version,
        "capabilities": {},
        "clientInfo": { "name": "vaultline-loadgen", "version": env!("CARGO_PKG_VERSION") }
    })
}

/// True for protocol versions without `initialize` or sessions (2026-07-28 and later).
pub fn is_sessionless(protocol_version: &str) -> bool {
    protocol_version >= "2026-07-28"
}

/// Per-request `_meta` that sessionless (2026-07-28) requests carry instead of a handshake.
pub fn sessionless_meta(protocol_version: &str) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": protocol_version,
        "io.modelcontextprotocol/clientInfo":
            { "name": "vaultline-loadgen", "version": env!("CARGO_PKG_VERSION") },
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

/// The response to request `id` inside `msg` (an object or a batch array), if any.
pub fn take_response(msg: Value, id: u64) -> Option<Value> {
    match msg {
        Value::Array(items) => items.into_iter().find_map(|m| take_response(m, id)),
        Value::Object(_) if is_response_to(&msg, id) => Some(msg),
        _ => None,
    }
}

/// True when `msg` is a JSON-RPC response (result or error) to request `id`.
pub fn is_response_to(msg: &Value, id: u64) -> bool {
    msg.get("id").and_then(Value::as_u64) == Some(id)
        && (msg.get("result").is_some() || msg.get("error").is_some())
        && msg.get("method").is_none()
}

/// `Ok` when the response carries a result; `Err` with a short reason otherwise.
pub fn result_ok(resp: &Value) -> Result<&Value, String> {
    if let Some(err) = resp.get("error") {
        return Err(format!("JSON-RPC error: {}", short(err)));
    }
    match resp.get("result") {
        Some(r) if !r.is_null() => Ok(r),
        _ => Err(format!("no result in {}", short(resp))),
    }
}

/// A `tools/call` counts as OK only if a result is present and `isError` is not true.
pub fn call_ok(resp: &Value) -> Result<(), String> {
    let result = result_ok(resp)?;
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        return Err(format!("isError: {}", short(result)));
    }
    Ok(())
}

/// A JSON value as text, cut to 300 characters for error messages.
pub fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// Incremental `text/event-stream` parser: feed chunks, get the `data` of each complete event.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    /// Add a chunk; returns the data payloads (multi-line `data:` joined by `\n`)
    /// of the events it completed. Events without data (priming, comments) are skipped.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.buf
            .extend(chunk.iter().copied().filter(|&b| b != b'\r'));
        let mut out = Vec::new();
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = self.buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&block[..end]);
            let mut data: Option<String> = None;
            for line in text.split('\n') {
                let Some(rest) = line.strip_prefix("data:") else {
                    continue;
                };
                let rest = rest.strip_prefix(' ').unwrap_or(rest);
                match data.as_mut() {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(rest);
                    }
                    None => data = Some(rest.to_owned()),
                }
            }
            if let Some(d) = data.filter(|d| !d.trim().is_empty()) {
                out.push(d);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.push(b"data: \nid: 0\nretry: 3000\n\nda").is_empty());
        let got = p.push(b"ta: {\"id\":1}\r\nid: 1/0\r\n\r\n");
        assert_eq!(got, vec!["{\"id\":1}".to_owned()]);
    }

    #[test]
    fn multi_line_data_is_joined() {
        let mut p = SseParser::default();
        assert_eq!(p.push(b"data:a\ndata: b\n\n"), vec!["a\nb".to_owned()]);
    }

    #[test]
    fn call_outcomes() {
        let ok = json!({"jsonrpc":"2.0","id":3,"result":{"content":[],"isError":false}});
        let tool_err = json!({"jsonrpc":"2.0","id":3,"result":{"content":[],"isError":true}});
        let rpc_err = json!({"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"x"}});
        assert!(call_ok(&ok).is_ok());
        assert!(call_ok(&tool_err).is_err());
        assert!(call_ok(&rpc_err).is_err());
        assert!(take_response(json!([{"jsonrpc":"2.0","method":"n"}, ok.clone()]), 3).is_some());
        assert!(take_response(ok, 4).is_none());
    }

    #[test]
    fn sessionless_versions() {
        assert!(!is_sessionless("2025-11-25"));
        assert!(is_sessionless("2026-07-28"));
    }
}
