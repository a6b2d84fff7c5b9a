//! Golden tests of the CLI parsers: every `fixtures/cli/outputs/<cli>/<case>.stdout`
//! (with an optional `<case>.stderr` and `<case>.exit`, default 0) is parsed and
//! the result compared with `<case>.expected.json`. Adding a file adds a case;
//! `UPDATE_GOLDEN=1 cargo test providers::cli::golden` rewrites the expectations
//! (review the diff before committing it).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{Output, parse};
use crate::providers::{Answer, Failure, Kind, RateSignal};

fn usage_json(u: Option<&crate::metering::pricing::Usage>) -> Value {
    u.map_or(Value::Null, |u| {
        json!({"input": u.input, "output": u.output, "cache_read": u.cache_read, "cache_write": u.cache_write})
    })
}

fn rate_json(r: Option<&RateSignal>) -> Value {
    r.map_or(Value::Null, |r| {
        serde_json::to_value(r).unwrap_or(Value::Null)
    })
}

fn render(result: &Result<Answer, Failure>) -> Value {
    match result {
        Ok(a) => json!({"ok": {
            "text": a.text,
            "usage": usage_json(a.usage.as_ref()),
            "reported_cost_nanos": a.reported_cost_nanos,
            "model": a.model,
            "finish_reason": a.finish_reason,
            "refused": a.refused,
            "rate": rate_json(a.rate.as_ref()),
        }}),
        Err(f) => json!({"err": {
            "kind": f.kind.as_str(),
            "status": f.status,
            "retry_after_secs": f.retry_after.map(|d| d.as_secs_f64()),
            "message": f.message,
            "rate": rate_json(f.rate.as_ref()),
            "usage": usage_json(f.usage.as_ref()),
            "reported_cost_nanos": f.reported_cost_nanos,
        }}),
    }
}

fn read_opt(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "stdout"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_recorded_output_parses_as_expected() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cli/outputs");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for (sub, kind) in [
        ("claude", Kind::ClaudeCli),
        ("codex", Kind::CodexCli),
        ("gemini", Kind::GeminiCli),
    ] {
        for stdout_path in cases(&root.join(sub)) {
            let stem = stdout_path.with_extension("");
            let out = Output {
                stdout: read_opt(&stdout_path).unwrap_or_default(),
                stderr: read_opt(&stem.with_extension("stderr")).unwrap_or_default(),
                exit_code: match read_opt(&stem.with_extension("exit"))
                    .as_deref()
                    .map(str::trim)
                {
                    None => Some(0),
                    Some("signal") => None,
                    Some(code) => Some(
                        code.parse()
                            .unwrap_or_else(|e| panic!("{stem:?}.exit: {e}")),
                    ),
                },
                truncated: false,
            };
            let got = render(&parse(kind, &out));
            let expected_path = stem.with_extension("expected.json");
            if update {
                let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
                std::fs::write(&expected_path, text).unwrap();
            } else {
                let expected: Value = read_opt(&expected_path)
                    .map(|t| serde_json::from_str(&t).unwrap())
                    .unwrap_or_else(|| {
                        panic!(
                            "{} is missing (UPDATE_GOLDEN=1 writes it)",
                            expected_path.display()
                        )
                    });
                if got != expected {
                    mismatches.push(format!(
                        "{}:\n  expected {expected}\n  got      {got}",
                        stem.display()
                    ));
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} golden cases found");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
