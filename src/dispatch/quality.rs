//! Judging answers: empty answers and refusals fail, an answer to a task with a
//! JSON Schema must parse and validate (the validator's messages go back into
//! the next attempt's prompt), and consensus compares answers after
//! normalising them.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

/// Why an answer was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `empty`, `refusal`, `schema` or `verifier`.
    pub kind: &'static str,
    /// What was wrong, short; fed back to the next attempt.
    pub message: String,
}

/// Most validator messages kept per rejection.
const MAX_SCHEMA_ERRORS: usize = 8;

/// Phrases that open a refusal, compared on short answers only.
const REFUSALS: [&str; 6] = [
    "i'm sorry, but i can't",
    "i’m sorry, but i can’t",
    "i can't help with",
    "i cannot help with",
    "i can't assist with",
    "i'm unable to help",
];

/// The JSON inside an answer: the whole text, or the one fenced block
/// (```json … ```) a model wrapped it in.
pub fn json_of(text: &str) -> Option<Value> {
    let t = text.trim();
    if let Ok(v) = serde_json::from_str(t) {
        return Some(v);
    }
    let inner = t.strip_prefix("```")?.strip_suffix("```")?;
    let inner = inner.strip_prefix("json").unwrap_or(inner);
    serde_json::from_str(inner.trim()).ok()
}

/// Checks an answer; `schema` is the task's compiled answer schema.
pub fn check(
    text: &str,
    refused: bool,
    schema: Option<&jsonschema::Validator>,
) -> Result<(), Rejection> {
    let t = text.trim();
    if refused {
        return Err(Rejection {
            kind: "refusal",
            message: "the provider marked the answer as a refusal".into(),
        });
    }
    if t.is_empty() {
        return Err(Rejection {
            kind: "empty",
            message: "the answer was empty".into(),
        });
    }
    let lower = t.to_lowercase();
    if t.len() < 300 && REFUSALS.iter().any(|r| lower.starts_with(r)) {
        return Err(Rejection {
            kind: "refusal",
            message: "the answer was a refusal".into(),
        });
    }
    if let Some(v) = schema {
        let Some(json) = json_of(t) else {
            return Err(Rejection {
                kind: "schema",
                message:
                    "the answer is not JSON; answer with one JSON value that matches the schema"
                        .into(),
            });
        };
        let errors: Vec<String> = v
            .iter_errors(&json)
            .take(MAX_SCHEMA_ERRORS)
            .map(|e| {
                let at = e.instance_path().to_string();
                format!("{}: {e}", if at.is_empty() { "(root)" } else { &at })
            })
            .collect();
        if !errors.is_empty() {
            return Err(Rejection {
                kind: "schema",
                message: format!(
                    "the answer does not match the schema: {}",
                    errors.join("; ")
                ),
            });
        }
    }
    Ok(())
}

/// The structured fields code-work answers are compared on, as sets (as
/// vault-mcp compared them).
pub const CODE_FIELDS: [&str; 5] = [
    "files_changed",
    "test_targets",
    "dependencies_added",
    "breaking_changes",
    "security_surface",
];

/// An answer reduced to what consensus compares: for code work whose JSON
/// answer has any of [`CODE_FIELDS`], those fields as sorted sets; other JSON
/// with object keys sorted; text with whitespace collapsed.
pub fn normalise(text: &str, code_work: bool) -> String {
    match json_of(text) {
        Some(v) => {
            if code_work
                && let Value::Object(m) = &v
                && CODE_FIELDS.iter().any(|f| m.contains_key(*f))
            {
                let picked: serde_json::Map<String, Value> = CODE_FIELDS
                    .iter()
                    .map(|f| (f.to_string(), as_set(m.get(*f))))
                    .collect();
                return canonical(&Value::Object(picked));
            }
            canonical(&v)
        }
        None => text.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

fn as_set(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Array(items)) => {
            let set: BTreeSet<String> = items.iter().map(canonical).collect();
            Value::Array(set.into_iter().map(Value::String).collect())
        }
        Some(other) => Value::Array(vec![Value::String(canonical(other))]),
        None => Value::Array(vec![]),
    }
}

/// JSON with object keys sorted (serde_json's map is ordered by key unless
/// `preserve_order` is on, so a round trip through `Value` sorts them).
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&m[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// The answer a strict majority of `answers` agree on (its index in `answers`
/// and the size of the majority), compared after [`normalise`].
pub fn majority(answers: &[String], code_work: bool, of: usize) -> Option<(usize, usize)> {
    let mut groups: HashMap<String, (usize, usize)> = HashMap::new();
    for (i, a) in answers.iter().enumerate() {
        let e = groups.entry(normalise(a, code_work)).or_insert((i, 0));
        e.1 += 1;
    }
    groups
        .into_values()
        .filter(|(_, n)| *n * 2 > of)
        .max_by_key(|(i, n)| (*n, std::cmp::Reverse(*i)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_refused_and_schema_failures_name_what_was_wrong() {
        assert_eq!(check("  ", false, None).unwrap_err().kind, "empty");
        assert_eq!(check("fine", true, None).unwrap_err().kind, "refusal");
        assert_eq!(
            check("I'm sorry, but I can't help with that.", false, None)
                .unwrap_err()
                .kind,
            "refusal"
        );
        let schema = jsonschema::validator_for(&json!({
            "type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}
        }))
        .unwrap();
        let e = check("not json", false, Some(&schema)).unwrap_err();
        assert_eq!(e.kind, "schema");
        let e = check("{\"name\": 3}", false, Some(&schema)).unwrap_err();
        assert!(e.message.contains("/name"), "{}", e.message);
        check("```json\n{\"name\": \"x\"}\n```", false, Some(&schema)).unwrap();
        check("plain text", false, None).unwrap();
    }

    #[test]
    fn consensus_compares_json_after_normalising_and_text_after_whitespace() {
        let a = vec![
            "{\"b\": 1, \"a\": [1, 2]}".to_string(),
            "{\"a\": [1, 2], \"b\": 1}".to_string(),
            "{\"a\": [2, 1], \"b\": 1}".to_string(),
        ];
        assert_eq!(majority(&a, false, 3), Some((0, 2)));
        let t = vec![
            "hello   world".to_string(),
            "hello world\n".to_string(),
            "bye".to_string(),
        ];
        assert_eq!(majority(&t, false, 3), Some((0, 2)));
        let none = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        assert_eq!(majority(&none, false, 3), None);
        // One answer of three is not a majority even if it is the only one.
        assert_eq!(majority(&["a".to_string()], false, 3), None);
    }

    #[test]
    fn code_work_is_compared_on_the_structured_fields_as_sets() {
        let a = vec![
            json!({"files_changed": ["b.rs", "a.rs"], "test_targets": ["t"], "summary": "one way"}).to_string(),
            json!({"files_changed": ["a.rs", "b.rs", "a.rs"], "test_targets": ["t"], "summary": "another"}).to_string(),
            json!({"files_changed": ["c.rs"], "summary": "one way"}).to_string(),
        ];
        assert_eq!(majority(&a, true, 3), Some((0, 2)));
        // The same answers as plain JSON differ in their summaries.
        assert_eq!(majority(&a, false, 3), None);
    }
}
