//! Golden tests of the HTTP adapters' wire translation: every file in
//! `fixtures/providers/{openai,anthropic,gemini}/` is one case (adding a file adds
//! a case). Each holds a request, the exact wire request `build` must produce
//! (the key written as `{{KEY}}`), a response (status, headers, body; `{{KEY}}`
//! in it stands for the target's key, to test scrubbing) and the answer or
//! failure `parse` must give. Relative resets (OpenAI's durations, HTTP-date
//! waits) depend on the clock; the fixture says `"present"` for those.

use std::path::PathBuf;

use ::http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::http::{self, Build, Parse};
use super::{Answer, Failure, Kind, RateSignal, Request, Target};
use crate::quota::secret::Secret;

const PLACEHOLDER: &str = "{{KEY}}";

fn adapter(kind: Kind) -> (Build, Parse) {
    match kind {
        Kind::Openai => (super::openai::build, super::openai::parse),
        Kind::Anthropic => (super::anthropic::build, super::anthropic::parse),
        Kind::Gemini => (super::gemini::build, super::gemini::parse),
        other => panic!("{other:?} has no golden files"),
    }
}

fn str_field(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

fn rate_json(r: &Option<RateSignal>, expected: &Value) -> Value {
    let Some(r) = r else { return Value::Null };
    let mut v = json!({
        "requests_limit": r.requests_limit,
        "requests_remaining": r.requests_remaining,
        "tokens_limit": r.tokens_limit,
        "tokens_remaining": r.tokens_remaining,
        "used_percent": r.used_percent,
        "reset_at": r.reset_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
    });
    if expected.get("reset_at") == Some(&json!("present")) && r.reset_at.is_some() {
        v["reset_at"] = json!("present");
    }
    v
}

fn answer_json(a: &Answer, expected: &Value) -> Value {
    json!({"answer": {
        "text": a.text,
        "usage": a.usage.map(|u| json!({
            "input": u.input, "output": u.output,
            "cache_read": u.cache_read, "cache_write": u.cache_write,
        })),
        "reported_cost_nanos": a.reported_cost_nanos,
        "model": a.model,
        "finish_reason": a.finish_reason,
        "refused": a.refused,
        "rate": rate_json(&a.rate, &expected["answer"]["rate"]),
    }})
}

fn failure_json(f: &Failure, expected: &Value) -> Value {
    let e = &expected["failure"];
    let retry = match f.retry_after {
        Some(_) if e["retry_after_ms"] == json!("present") => json!("present"),
        Some(d) => json!(d.as_millis() as u64),
        None => Value::Null,
    };
    assert!(f.usage.is_none() && f.reported_cost_nanos.is_none());
    json!({"failure": {
        "kind": f.kind.as_str(),
        "status": f.status,
        "retry_after_ms": retry,
        "message": f.message,
        "rate": rate_json(&f.rate, &e["rate"]),
    }})
}

fn check(kind: Kind, path: &std::path::Path) {
    let name = path.display();
    let text = std::fs::read_to_string(path).unwrap();
    let fx: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        str_field(&fx, "about").is_some_and(|a| a.starts_with("Synthetic")),
        "{name}: say where the fixture comes from in \"about\""
    );
    let key = str_field(&fx["target"], "key");
    let target = Target {
        kind,
        base_url: str_field(&fx["target"], "base_url"),
        command: None,
        extra_args: vec![],
        secret: key.clone().map(Secret::new),
    };
    let r = &fx["request"];
    let req = Request {
        model: str_field(r, "model").unwrap(),
        system: str_field(r, "system"),
        prompt: str_field(r, "prompt").unwrap(),
        max_output_tokens: r["max_output_tokens"].as_u64().unwrap() as u32,
        answer_schema: None,
        timeout: std::time::Duration::from_secs(30),
        workdir: None,
    };
    let (build, parse) = adapter(kind);

    let built = build(&target, &req).unwrap_or_else(|f| panic!("{name}: build failed: {f:?}"));
    let unkey = |s: &str| match &key {
        Some(k) => s.replace(k.as_str(), PLACEHOLDER),
        None => s.to_string(),
    };
    let got_built = json!({
        "url": built.url,
        "headers": built.headers.iter().map(|(n, v)| json!([n, unkey(v)])).collect::<Vec<_>>(),
        "body": built.body,
    });
    assert_eq!(got_built, fx["built"], "{name}: the built request");

    let resp = &fx["response"];
    let status = resp["status"].as_u64().unwrap() as u16;
    let mut headers = HeaderMap::new();
    for (n, v) in resp["headers"].as_object().unwrap() {
        headers.insert(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v.as_str().unwrap()).unwrap(),
        );
    }
    let body = match (resp.get("body"), resp.get("body_text")) {
        (Some(b), None) => serde_json::to_string(b).unwrap(),
        (None, Some(Value::String(t))) => t.clone(),
        _ => panic!("{name}: give the response one of body (JSON) or body_text"),
    };
    let body = body.replace(PLACEHOLDER, key.as_deref().unwrap_or(PLACEHOLDER));

    let expected = &fx["expect"];
    let got = match http::respond(&target, parse, status, &headers, body.as_bytes()) {
        Ok(a) => answer_json(&a, expected),
        Err(f) => {
            if let Some(k) = &key {
                assert!(
                    !f.message.contains(k.as_str()),
                    "{name}: key in the message"
                );
            }
            failure_json(&f, expected)
        }
    };
    assert_eq!(&got, expected, "{name}: the parsed response");
}

#[test]
fn providers_golden_files() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/providers");
    let mut cases = 0;
    for kind in [Kind::Openai, Kind::Anthropic, Kind::Gemini] {
        let dir = root.join(kind.as_str());
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        assert!(files.len() >= 10, "{}: too few golden files", dir.display());
        for f in &files {
            check(kind, f);
        }
        cases += files.len();
    }
    assert!(cases >= 40, "{cases} golden cases");
}
