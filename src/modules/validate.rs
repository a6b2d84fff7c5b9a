//! Validation of a module manifest: the JSON Schema in `schemas/`, then what a
//! schema cannot say — tool names, the tools' own schemas, templates that use
//! only declared inputs and credentials, URLs on declared hosts — and then every
//! example run against the response recorded in it (mapping, output schema,
//! expected output). The result is a report listing every problem, each with its
//! JSON path and a hint. Pure: no I/O; going live is `modules::run`'s business.

use std::sync::LazyLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::bundle;
use super::manifest::{self, HttpSpec, Kind, Manifest};

/// One thing wrong with a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Problem {
    /// JSON Pointer into the manifest (empty for the whole document).
    pub path: String,
    pub message: String,
    pub hint: String,
}

/// What validation found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// SHA-256 of the manifest's canonical (RFC 8785) text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub problems: Vec<Problem>,
    /// Examples run against their recorded responses.
    pub examples_checked: usize,
    /// Examples also run against the live hosts (only when asked).
    #[serde(default)]
    pub live_checked: usize,
}

impl Report {
    /// A report of these problems, before any manifest was read.
    pub fn failed(problems: Vec<Problem>) -> Report {
        Report {
            ok: problems.is_empty(),
            module: None,
            version: None,
            sha256: None,
            problems,
            examples_checked: 0,
            live_checked: 0,
        }
    }

    /// One line per problem, for text renderings and errors.
    pub fn summary(&self) -> String {
        if self.ok {
            return format!(
                "valid ({} examples checked)",
                self.examples_checked + self.live_checked
            );
        }
        let mut s = format!("{} problem(s):", self.problems.len());
        for p in &self.problems {
            let at = if p.path.is_empty() { "/" } else { &p.path };
            s.push_str(&format!("\n- {at}: {} (hint: {})", p.message, p.hint));
        }
        s
    }

    /// A stable fingerprint of the failure (paths and messages, sorted), so a
    /// repair loop can tell that the same failure came back.
    pub fn fingerprint(&self) -> String {
        let mut lines: Vec<String> = self
            .problems
            .iter()
            .map(|p| format!("{}|{}", p.path, p.message))
            .collect();
        lines.sort();
        bundle::sha256_hex(lines.join("\n").as_bytes())
    }
}

pub fn problem(
    path: impl Into<String>,
    message: impl Into<String>,
    hint: impl Into<String>,
) -> Problem {
    Problem {
        path: path.into(),
        message: message.into(),
        hint: hint.into(),
    }
}

/// The exposed-name rule from the design: `^[A-Za-z0-9_-]{1,64}$`.
pub fn is_valid_tool_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

static MANIFEST_SCHEMA: LazyLock<Option<jsonschema::Validator>> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(manifest::SCHEMA).ok()?;
    match jsonschema::validator_for(&schema) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "the module manifest schema does not compile");
            None
        }
    }
});

/// Parses manifest text; a report with one problem when it is not JSON.
pub fn parse_text(text: &str) -> Result<Value, Report> {
    serde_json::from_str(text).map_err(|e| {
        Report::failed(vec![problem(
            "",
            format!("the manifest is not JSON: {e}"),
            "send a JSON object; see schemas/module-manifest.schema.json",
        )])
    })
}

/// Validates a manifest against the schema, its own rules and its recorded
/// examples. `core` are the built-in tool names a module may not take.
pub fn check(doc: &Value, core: &[&str]) -> (Report, Option<Manifest>) {
    let Some(validator) = MANIFEST_SCHEMA.as_ref() else {
        return (
            Report::failed(vec![problem(
                "",
                "the server's manifest schema is unavailable",
                "this is a server bug; see the log",
            )]),
            None,
        );
    };
    let mut problems: Vec<Problem> = validator
        .iter_errors(doc)
        .map(|e| {
            problem(
                e.instance_path().to_string(),
                crate::error::clip(&e.to_string(), 300),
                format!(
                    "fix the value to satisfy the schema rule at {}",
                    e.schema_path()
                ),
            )
        })
        .collect();
    if !problems.is_empty() {
        let mut r = Report::failed(problems);
        r.module = doc.get("id").and_then(Value::as_str).map(str::to_string);
        return (r, None);
    }
    let m: Manifest = match serde_json::from_value(doc.clone()) {
        Ok(m) => m,
        Err(e) => {
            return (
                Report::failed(vec![problem(
                    "",
                    format!("the manifest does not read: {e}"),
                    "compare it with fixtures/modules/weather.json",
                )]),
                None,
            );
        }
    };
    let mut examples_checked = 0;
    check_tools(&m, core, &mut problems);
    check_examples(&m, &mut problems, &mut examples_checked);
    let (_, hash) = bundle::seal(doc);
    let report = Report {
        ok: problems.is_empty(),
        module: Some(m.id.clone()),
        version: Some(m.version.clone()),
        sha256: Some(hash),
        problems,
        examples_checked,
        live_checked: 0,
    };
    (report, Some(m))
}

fn check_tools(m: &Manifest, core: &[&str], problems: &mut Vec<Problem>) {
    let mut seen = std::collections::HashSet::new();
    let credentials: Vec<&str> = m.credentials.iter().map(|c| c.name.as_str()).collect();
    for (i, t) in m.tools.iter().enumerate() {
        let at = format!("/tools/{i}");
        let exposed = m.exposed(&t.name);
        if !seen.insert(t.name.clone()) {
            problems.push(problem(
                format!("{at}/name"),
                format!("tool name `{}` is used twice", t.name),
                "give each tool its own name",
            ));
        }
        if !is_valid_tool_name(&exposed) {
            problems.push(problem(
                format!("{at}/name"),
                format!("exposed name `{exposed}` does not match ^[A-Za-z0-9_-]{{1,64}}$"),
                "shorten the namespace or the tool name (the exposed name is namespace__name)",
            ));
        }
        if let Some(c) = core
            .iter()
            .find(|c| **c == t.name || **c == exposed.as_str())
        {
            problems.push(problem(
                format!("{at}/name"),
                format!("tool name `{}` clashes with the core tool `{c}`", t.name),
                "choose a name no built-in tool uses",
            ));
        }
        for (field, schema) in [
            ("input_schema", &t.input_schema),
            ("output_schema", &t.output_schema),
        ] {
            if let Err(e) = jsonschema::meta::validate(schema) {
                problems.push(problem(
                    format!("{at}/{field}{}", e.instance_path()),
                    format!(
                        "is not a valid JSON Schema: {}",
                        crate::error::clip(&e.to_string(), 200)
                    ),
                    "write a draft 2020-12 JSON Schema",
                ));
            } else if schema.get("type").and_then(Value::as_str) != Some("object") {
                problems.push(problem(
                    format!("{at}/{field}"),
                    "must describe an object (`\"type\": \"object\"` at the root)",
                    "MCP tools take and return JSON objects",
                ));
            }
        }
        let inputs: Vec<String> = t
            .input_schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let mut refs = |path: String, template: &str, allow_credentials: bool| {
            for name in manifest::placeholders(template) {
                if let Some(cred) = name.strip_prefix("credentials.") {
                    if !allow_credentials {
                        problems.push(problem(
                            path.clone(),
                            format!("{{{name}}} may be used in headers only"),
                            "send credentials in a header, never in a URL, query or body",
                        ));
                    } else if !credentials.contains(&cred) {
                        problems.push(problem(
                            path.clone(),
                            format!("{{{name}}} names an undeclared credential"),
                            format!("add {{\"name\": \"{cred}\"}} to `credentials`"),
                        ));
                    }
                } else if !inputs.contains(&name) {
                    problems.push(problem(
                        path.clone(),
                        format!("{{{name}}} is not a declared input"),
                        format!(
                            "declare `{name}` in input_schema.properties, or remove the placeholder"
                        ),
                    ));
                }
            }
        };
        match (t.kind, &t.http, &t.prompt) {
            (Kind::Http, Some(h), _) => {
                refs(format!("{at}/http/url"), &h.url, false);
                for (k, v) in &h.query {
                    refs(format!("{at}/http/query/{}", esc(k)), v, false);
                }
                for (k, v) in &h.headers {
                    refs(format!("{at}/http/headers/{}", esc(k)), v, true);
                }
                if let Some(b) = &h.body {
                    for_each_string(b, &mut |s| refs(format!("{at}/http/body"), s, false));
                }
                if let Err(msg) = url_on_declared_host(&h.url, m) {
                    problems.push(problem(
                        format!("{at}/http/url"),
                        msg,
                        "list the host (and port) under `hosts`, or call a declared one",
                    ));
                }
                for (field, ptr) in &h.output {
                    if !ptr.is_empty() && !ptr.starts_with('/') {
                        problems.push(problem(
                            format!("{at}/http/output/{}", esc(field)),
                            format!("`{ptr}` is not a JSON Pointer"),
                            "start it with / (e.g. /current/temp)",
                        ));
                    }
                }
            }
            (Kind::Prompt, _, Some(p)) => refs(format!("{at}/prompt/template"), &p.template, false),
            _ => {}
        }
    }
}

fn check_examples(m: &Manifest, problems: &mut Vec<Problem>, checked: &mut usize) {
    for (i, t) in m.tools.iter().enumerate() {
        if !m.examples.iter().any(|e| e.tool == t.name) {
            problems.push(problem(
                format!("/tools/{i}"),
                format!("tool `{}` has no example", t.name),
                "add an example with its input and the recorded response, so its mapping and output can be checked",
            ));
        }
    }
    for (j, ex) in m.examples.iter().enumerate() {
        let at = format!("/examples/{j}");
        let Some((ti, tool)) = m.tools.iter().enumerate().find(|(_, t)| t.name == ex.tool) else {
            problems.push(problem(
                format!("{at}/tool"),
                format!("no tool is named `{}`", ex.tool),
                "name one of the module's tools",
            ));
            continue;
        };
        if let Err(msg) = check_against(&tool.input_schema, &ex.input) {
            problems.push(problem(
                format!("{at}/input"),
                format!("does not satisfy the tool's input_schema: {msg}"),
                "make the example input valid, or fix the input_schema",
            ));
            continue;
        }
        let output = match tool.kind {
            Kind::Http => {
                let Some(rec) = &ex.response else {
                    problems.push(problem(
                        at.clone(),
                        "an http example needs `response` (status and body as recorded)",
                        "record what the upstream answered for this input",
                    ));
                    continue;
                };
                let Some(h) = &tool.http else { continue };
                if !(200..300).contains(&rec.status) {
                    problems.push(problem(
                        format!("{at}/response/status"),
                        format!("recorded status {} is not a success", rec.status),
                        "record a successful (2xx) response",
                    ));
                    continue;
                }
                let mut missing = false;
                for (field, ptr) in &h.output {
                    if rec.body.pointer(ptr).is_none() {
                        missing = true;
                        problems.push(problem(
                            format!("/tools/{ti}/http/output/{}", esc(field)),
                            format!("pointer `{ptr}` resolves to nothing in the response recorded in examples[{j}]"),
                            "point at a field the upstream returns, or fix the recorded response",
                        ));
                    }
                }
                if missing {
                    continue;
                }
                Value::Object(map_output(h, &rec.body))
            }
            Kind::Prompt => {
                let Some(answer) = &ex.answer else {
                    problems.push(problem(
                        at.clone(),
                        "a prompt example needs `answer` (the model's recorded answer)",
                        "record an answer the model gave for this input",
                    ));
                    continue;
                };
                match parse_answer(answer) {
                    Some(v) => v,
                    None => {
                        problems.push(problem(
                            format!("{at}/answer"),
                            "the recorded answer is not a JSON object",
                            "the prompt must ask for JSON matching output_schema",
                        ));
                        continue;
                    }
                }
            }
        };
        *checked += 1;
        if let Err(msg) = check_against(&tool.output_schema, &output) {
            problems.push(problem(
                format!("/tools/{ti}/output_schema"),
                format!("the output of examples[{j}] does not satisfy it: {msg}"),
                "fix the mapping or the output_schema",
            ));
        }
        if let Some(expect) = &ex.expect
            && expect != &output
        {
            problems.push(problem(
                format!("{at}/expect"),
                format!(
                    "the tool produced {}",
                    crate::error::clip(&output.to_string(), 300)
                ),
                "fix the mapping, or the expected output",
            ));
        }
    }
}

/// The structured output of an http tool: each output field from its pointer;
/// a pointer that resolves to nothing leaves the field out.
pub fn map_output(h: &HttpSpec, body: &Value) -> Map<String, Value> {
    h.output
        .iter()
        .filter_map(|(field, ptr)| body.pointer(ptr).map(|v| (field.clone(), v.clone())))
        .collect()
}

/// A model's answer as a JSON object (a fenced ```json block is accepted).
pub fn parse_answer(answer: &str) -> Option<Value> {
    let t = answer.trim();
    let t = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|s| s.strip_suffix("```"))
        .unwrap_or(t);
    serde_json::from_str::<Value>(t.trim())
        .ok()
        .filter(Value::is_object)
}

/// Validates `v` against `schema`; the first error's message, with its path.
pub fn check_against(schema: &Value, v: &Value) -> Result<(), String> {
    let validator = jsonschema::validator_for(schema).map_err(|e| e.to_string())?;
    match validator.iter_errors(v).next() {
        None => Ok(()),
        Some(e) => {
            let path = e.instance_path().to_string();
            let at = if path.is_empty() {
                String::new()
            } else {
                format!(" at {path}")
            };
            Err(crate::error::clip(&format!("{e}{at}"), 300))
        }
    }
}

/// The URL's scheme://host[:port] must be a declared host.
pub fn url_on_declared_host(url: &str, m: &Manifest) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "the URL has no scheme".to_string())?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains(['{', '}', '@']) {
        return Err("the URL's host must be literal (no placeholders or user info)".into());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse::<u16>() {
            Ok(p) => (h, Some(p)),
            Err(_) => return Err(format!("the URL's port `{p}` is not a number")),
        },
        _ => (authority, None),
    };
    let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
    let default = if scheme == "https" { 443 } else { 80 };
    let ok = m.hosts.iter().any(|d| {
        d.host.to_ascii_lowercase() == host && d.port.unwrap_or(default) == port.unwrap_or(default)
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "host `{}` is not declared in `hosts`",
            match port {
                Some(p) => format!("{host}:{p}"),
                None => host,
            }
        ))
    }
}

fn for_each_string(v: &Value, f: &mut dyn FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|x| for_each_string(x, f)),
        Value::Object(o) => o.values().for_each(|x| for_each_string(x, f)),
        _ => {}
    }
}

/// Escapes a key for a JSON Pointer segment.
fn esc(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CORE: &[&str] = &["workflow", "task", "health", "module"];

    fn fixture() -> Value {
        serde_json::from_str(include_str!("../../fixtures/modules/weather.json")).unwrap()
    }

    fn problems_of(doc: &Value) -> Vec<Problem> {
        check(doc, CORE).0.problems
    }

    #[test]
    fn the_fixture_is_valid() {
        let (r, m) = check(&fixture(), CORE);
        assert!(r.ok, "{}", r.summary());
        assert_eq!(r.examples_checked, 3);
        assert_eq!(m.unwrap().tools.len(), 3);
        assert_eq!(r.sha256.unwrap().len(), 64);
    }

    #[test]
    fn not_json_is_one_problem() {
        let r = parse_text("{not json").unwrap_err();
        assert!(!r.ok);
        assert!(r.problems[0].message.contains("not JSON"), "{r:?}");
    }

    #[test]
    fn schema_errors_carry_their_paths() {
        let mut doc = fixture();
        doc["version"] = json!("one");
        doc["tools"][1]["http"]["method"] = json!("FETCH");
        doc["surprise"] = json!(1);
        let p = problems_of(&doc);
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"/version"), "{paths:?}");
        assert!(paths.contains(&"/tools/1/http/method"), "{paths:?}");
        assert!(p.iter().any(|p| p.message.contains("surprise")), "{p:?}");
    }

    /// Table: a change to the fixture → the path and a word of the problem.
    #[test]
    fn semantic_problems() {
        type Edit = fn(&mut Value);
        let cases: &[(Edit, &str, &str)] = &[
            (
                |d| d["tools"][0]["name"] = json!("health"),
                "/tools/0/name",
                "clashes with the core tool `health`",
            ),
            (
                |d| d["tools"][0]["http"]["url"] = json!("https://api.weather.example/v1/{town}"),
                "/tools/0/http/url",
                "{town} is not a declared input",
            ),
            (
                |d| d["tools"][0]["http"]["url"] = json!("https://evil.example/v1/{city}"),
                "/tools/0/http/url",
                "not declared in `hosts`",
            ),
            (
                |d| d["tools"][0]["http"]["headers"]["X-Api-Key"] = json!("{credentials.OTHER}"),
                "/tools/0/http/headers/X-Api-Key",
                "undeclared credential",
            ),
            (
                |d| d["tools"][0]["http"]["query"]["k"] = json!("{credentials.WEATHER_KEY}"),
                "/tools/0/http/query/k",
                "headers only",
            ),
            (
                |d| d["tools"][0]["http"]["output"]["temperature"] = json!("/current/nowhere"),
                "/tools/0/http/output/temperature",
                "resolves to nothing",
            ),
            (
                |d| {
                    d["tools"][0]["output_schema"]["properties"]["conditions"] =
                        json!({"type": "number"})
                },
                "/tools/0/output_schema",
                "does not satisfy",
            ),
            (
                |d| {
                    d["tools"][0]["input_schema"] =
                        json!({"type": "object", "properties": {"city": {"type": 5}}})
                },
                "/tools/0/input_schema",
                "not a valid JSON Schema",
            ),
            (
                |d| d["examples"][0]["expect"]["temperature"] = json!(99),
                "/examples/0/expect",
                "the tool produced",
            ),
            (
                |d| d["examples"][2]["answer"] = json!("I think a coat"),
                "/examples/2/answer",
                "not a JSON object",
            ),
            (
                |d| d["tools"][2]["prompt"]["template"] = json!("About {place}"),
                "/tools/2/prompt/template",
                "{place} is not a declared input",
            ),
            (
                |d| d["tools"][0]["name"] = json!("x".repeat(62)),
                "/tools/0/name",
                "does not match",
            ),
            (
                |d| {
                    d["examples"].as_array_mut().unwrap().remove(1);
                },
                "/tools/1",
                "has no example",
            ),
        ];
        for (edit, path, words) in cases {
            let mut doc = fixture();
            edit(&mut doc);
            let p = problems_of(&doc);
            assert!(
                p.iter().any(|p| p.path.starts_with(path)
                    && p.message.contains(words)
                    && !p.hint.is_empty()),
                "expected {path}: {words}; got {p:#?}"
            );
        }
    }

    #[test]
    fn host_and_port_rules() {
        let m: Manifest = serde_json::from_value(json!({
            "id": "t/x", "version": "1.0.0", "description": "d", "tools": [],
            "hosts": [{"host": "a.example"}, {"host": "127.0.0.1", "port": 8080}]
        }))
        .unwrap();
        assert!(url_on_declared_host("https://a.example/x", &m).is_ok());
        assert!(url_on_declared_host("https://A.example:443/x", &m).is_ok());
        assert!(url_on_declared_host("https://a.example:8443/x", &m).is_err());
        assert!(url_on_declared_host("http://127.0.0.1:8080/x", &m).is_ok());
        assert!(url_on_declared_host("http://127.0.0.1/x", &m).is_err());
        assert!(url_on_declared_host("https://user@a.example/x", &m).is_err());
    }

    #[test]
    fn fingerprints_ignore_order() {
        let a = Report::failed(vec![problem("/a", "x", "h"), problem("/b", "y", "h")]);
        let b = Report::failed(vec![problem("/b", "y", "h2"), problem("/a", "x", "h")]);
        assert_eq!(a.fingerprint(), b.fingerprint());
    }
}
