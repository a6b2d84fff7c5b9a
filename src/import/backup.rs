//! A reader for vault-mcp's `backup` tool document:
//! `{"exported_at", "kv_tasks": {"count", "data": [...]}, "d1": {"tasks": {"count", "data": [...]}, ...}}`.
//! A table may also be a bare array. vault-mcp's own tool exported six D1 tables
//! (no `transcripts` or `tool_calls`, and only the latest ten checkpoints); a
//! document with all eight is read the same way. Each row keeps its JSON path
//! (`d1.stages.data[4]`) for the report and for errors.

use serde_json::{Map, Value};

use super::{Format, ImportError, OtherTable, Source, SourceRow, known_table, other_reason};

pub fn read(file: &str, text: &str) -> Result<Source, ImportError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| ImportError::Parse {
        file: file.into(),
        line: e.line(),
        message: format!(
            "column {}: not a complete JSON document ({e}){}",
            e.column(),
            if e.is_eof() {
                "; is the file truncated?"
            } else {
                ""
            }
        ),
    })?;
    let not_backup = || {
        ImportError::Format {
        file: file.into(),
        message: "is JSON but not a vault-mcp backup document: expected an object with `d1` and/or `kv_tasks`".into(),
    }
    };
    let Value::Object(doc) = doc else {
        return Err(not_backup());
    };
    if !doc.contains_key("d1") && !doc.contains_key("kv_tasks") {
        return Err(not_backup());
    }
    let mut rows = Vec::new();
    let mut other = Vec::new();
    if let Some(kv) = doc.get("kv_tasks") {
        table_rows(file, "kv_tasks", "kv_tasks", kv, &mut rows)?;
    }
    match doc.get("d1") {
        None | Some(Value::Null) => {}
        Some(Value::Object(d1)) => {
            for (name, t) in d1 {
                match known_table(name) {
                    Some(known) => table_rows(file, known, &format!("d1.{name}"), t, &mut rows)?,
                    None => other.push(OtherTable {
                        table: name.clone(),
                        rows: data_of(t).map_or(0, <[Value]>::len),
                        reason: other_reason(name),
                    }),
                }
            }
        }
        Some(_) => {
            return Err(ImportError::Format {
                file: file.into(),
                message: "`d1` must be an object of tables".into(),
            });
        }
    }
    Ok(Source {
        format: Format::Backup,
        rows,
        other,
    })
}

/// The rows of a table: `{"data": [...]}` or a bare array.
fn data_of(t: &Value) -> Option<&[Value]> {
    match t {
        Value::Array(a) => Some(a),
        Value::Object(o) => match o.get("data") {
            Some(Value::Array(a)) => Some(a),
            _ => None,
        },
        _ => None,
    }
}

fn table_rows(
    file: &str,
    table: &'static str,
    path: &str,
    t: &Value,
    out: &mut Vec<SourceRow>,
) -> Result<(), ImportError> {
    let (data, at) = match t {
        Value::Array(a) => (a.as_slice(), path.to_string()),
        _ => (
            data_of(t).ok_or_else(|| ImportError::Format {
                file: file.into(),
                message: format!(
                    "{path} must be an array of rows or an object with a `data` array"
                ),
            })?,
            format!("{path}.data"),
        ),
    };
    for (i, row) in data.iter().enumerate() {
        let Value::Object(values) = row else {
            return Err(ImportError::Format {
                file: file.into(),
                message: format!("{at}[{i}] is not an object"),
            });
        };
        out.push(SourceRow {
            table,
            at: format!("{at}[{i}]"),
            values: Map::clone(values),
        });
    }
    Ok(())
}
