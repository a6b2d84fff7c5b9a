//! `vaultline import` end to end: each fixture form of fixtures/vault-mcp/ is
//! imported by the real binary into a real SQLite file, then read back through
//! the MCP tools over a real client; a second import adds nothing; a dry run
//! writes nothing; each bad file fails with its clear error and leaves every
//! table's row count as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::*;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/vault-mcp")
        .join(name)
        .display()
        .to_string()
}

const T1: &str = "01JCQ7Z8K2M4N6P8R0T2V4X6Y8";
const T2: &str = "01JCQ8A1B2C3D4E5F6G7H8J9K0";
const C1: &str = "01JCQ7ZC6666666666666666C1";

/// Every table of the file (FTS shadow tables included) → its row count and a
/// digest of its contents, so an upsert that changed a row without adding one
/// (a rollup's sum, a run unit's count) is seen too.
fn counts(db: &Path) -> BTreeMap<String, (usize, String)> {
    use sha2::{Digest, Sha256};
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let names: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    names
        .into_iter()
        .filter(|n| !n.ends_with("_fts")) // virtual: read through their shadow tables
        .map(|n| {
            let mut stmt = c.prepare(&format!("SELECT * FROM \"{n}\"")).unwrap();
            let width = stmt.column_count();
            let mut rows: Vec<String> = stmt
                .query_map([], |r| {
                    Ok((0..width)
                        .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                        .collect::<Vec<_>>()
                        .join("|"))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            rows.sort();
            let digest = hex::encode(Sha256::digest(rows.join("\n").as_bytes()));
            (n, (rows.len(), digest))
        })
        .collect()
}

fn import_json(db: &Path, args: &[&str]) -> Value {
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    all.push("--json");
    serde_json::from_str(&cli(db, &all)).unwrap()
}

fn table<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("no table {name} in {report}"))
}

fn reasons(t: &Value) -> Vec<String> {
    t["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reason"].as_str().unwrap().to_string())
        .collect()
}

async fn client(env: &Env) -> (Server, Client) {
    let key = env.key("acme", "operator");
    let server = Server::start(env, &[], &[]);
    let c = http_client(&server.url, &key).await;
    (server, c)
}

#[tokio::test]
async fn d1_dump_imports_once_and_reads_back_over_mcp() {
    let env = Env::new();
    env.org("acme");
    let dump = fixture("d1-export.sql");
    let r = import_json(&env.db(), &[&dump, "--org", "acme"]);
    assert_eq!(r["format"], "d1");
    assert_eq!(
        (r["imported"].as_i64(), r["skipped"].as_i64()),
        (Some(23), Some(2))
    );
    assert_eq!(table(&r, "tasks")["imported"], 3);
    let stages = table(&r, "stages");
    assert_eq!(stages["imported"], 4);
    let why = reasons(stages);
    assert!(
        why.iter()
            .any(|w| w.contains("exact duplicate of the row at line 63")),
        "{why:?}"
    );
    assert!(why.iter().any(|w| w.starts_with("orphan stage")), "{why:?}");
    let other: Vec<&str> = r["other_tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["table"].as_str().unwrap())
        .collect();
    assert_eq!(other, ["d1_migrations", "sqlite_sequence"]);

    // Idempotent: the same file again adds nothing.
    let before = counts(&env.db());
    let again = import_json(&env.db(), &[&dump, "--org", "acme"]);
    assert_eq!(
        (
            again["imported"].as_i64(),
            again["already_present"].as_i64()
        ),
        (Some(0), Some(23))
    );
    assert_eq!(counts(&env.db()), before);
    let text = cli(&env.db(), &["import", &dump, "--org", "acme"]);
    assert!(
        text.contains("nothing new: every row is already present"),
        "{text}"
    );

    let (_server, c) = client(&env).await;
    // A tasks row is a workflow holding one task; its stages are that task's.
    let w = ok(&c, "workflow", json!({"action": "get", "workflow_id": T1})).await;
    let wf = &w["workflow"];
    assert_eq!(wf["status"], "closed");
    assert_eq!(wf["stages"], 2);
    assert_eq!(wf["cost_nanos"], 300_000_000, "0.1 + 0.2 dollars");
    assert_eq!(
        wf["models_used"],
        json!(["claude-sonnet-4-6", "gpt-5.3-codex"])
    );
    assert_eq!(wf["created_at"], "2026-11-03T14:20:00.000Z");
    assert_eq!(
        wf["title"],
        "Fix the \"O'Brien\" name parser; names with ';' broke the CSV split"
    );
    let w2 = ok(&c, "workflow", json!({"action": "get", "workflow_id": T2})).await;
    assert_eq!(
        w2["workflow"]["cost_nanos"], 123_457,
        "0.000123456789 dollars, rounded once"
    );
    assert!(
        w2["workflow"]["description"]
            .as_str()
            .unwrap()
            .contains("e\u{301}"),
        "the combining mark survives"
    );
    let summary = ok(
        &c,
        "workflow",
        json!({"action": "query", "query": "summary", "workflow_id": T1}),
    )
    .await;
    assert_eq!(summary["result"]["tokens_input"], 3300);

    let tasks = ok(&c, "task", json!({"action": "list", "workflow_id": T1})).await;
    let t = &tasks["tasks"][0];
    assert_eq!(
        (t["id"].as_str(), t["status"].as_str()),
        (Some(T1), Some("done"))
    );
    assert_eq!(t["source"], "vault-mcp");

    // Checkpoints: the Markdown as written, its sections read into fields.
    let cp = ok(
        &c,
        "checkpoint",
        json!({"action": "get", "checkpoint_id": C1}),
    )
    .await;
    let cp = &cp["checkpoint"];
    let md = cp["content"].as_str().unwrap();
    assert!(
        md.starts_with("# Recovery Checkpoint\nGenerated: 2026-11-03T14:26:00.000Z\n"),
        "{md}"
    );
    assert!(
        md.contains("- ⛔ CI runner out of disk; retry after 15:00"),
        "{md}"
    );
    assert_eq!(
        cp["objective"],
        "Ship the \"O'Brien\" parser fix; then the 日本語 search"
    );
    assert_eq!(
        cp["blockers"],
        json!(["CI runner out of disk; retry after 15:00"])
    );
    assert_eq!(
        cp["state"]["vault_mcp"]["trigger_signals"]["signals"],
        json!(["tool_calls", "time_gap"])
    );
    let latest = ok(&c, "checkpoint", json!({"action": "load"})).await;
    assert_eq!(
        latest["checkpoint"]["objective"],
        "Finish the search review"
    );

    // Transcripts and decisions are searchable.
    let hits = ok(
        &c,
        "checkpoint",
        json!({"action": "search", "query": "flamingo"}),
    )
    .await;
    assert_eq!(hits["results"][0]["id"], "01JCQ7YT0000000000000000T1");
    let hits = ok(
        &c,
        "checkpoint",
        json!({"action": "search", "query": "Postgres"}),
    )
    .await;
    assert!(
        hits["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["kind"] == "decision"),
        "{hits}"
    );
    let hits = ok(
        &c,
        "checkpoint",
        json!({"action": "search", "query": "semicolons"}),
    )
    .await;
    assert_eq!(hits["results"][0]["kind"], "transcript");

    // Stage costs are self-reported spend in their own day's usage, never billed;
    // tool calls are run units in their own hour.
    let range = |group: &str| {
        json!({"action": "usage", "from": "2026-11-01T00:00:00Z", "to": "2026-11-30T00:00:00Z",
               "bucket": "day", "group_by": group})
    };
    let u = ok(&c, "billing", range("model")).await;
    let usage = &u["usage"];
    assert_eq!(usage["total_cost_nanos"], 300_123_457, "{usage}");
    assert_eq!(usage["total_billed_nanos"], 0);
    let on = |rows: &Value, day: &str, group: &str| -> Value {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["bucket"].as_str().unwrap().starts_with(day) && r["group"] == group)
            .cloned()
            .unwrap_or_else(|| panic!("no {group} on {day} in {rows}"))
    };
    assert_eq!(
        on(&usage["rows"], "2026-11-03", "vault-mcp/gpt-5.3-codex")["cost_nanos"],
        200_000_000
    );
    let b = ok(&c, "billing", json!({"action": "balance"})).await;
    assert_eq!(b["balance"]["nanos"], 0, "nothing imported is billed");
    let tools = ok(&c, "billing", range("tool")).await;
    assert_eq!(
        on(&tools["usage"]["rows"], "2026-11-03", "workflow")["calls"],
        2
    );
}

#[tokio::test]
async fn backup_json_imports_kv_tasks_and_meets_the_dump_as_already_present() {
    let env = Env::new();
    env.org("acme");
    let r = import_json(&env.db(), &[&fixture("backup.json"), "--org", "acme"]);
    assert_eq!(r["format"], "backup");
    assert_eq!(table(&r, "kv_tasks")["imported"], 3);
    assert_eq!(table(&r, "tasks")["imported"], 3);
    let d = table(&r, "decisions");
    assert_eq!(d["imported"], 2);
    assert!(reasons(d)[0].contains("exact duplicate of the row at d1.decisions.data[0]"));
    assert!(reasons(table(&r, "stages"))[0].starts_with("orphan stage"));

    // The dump of the same deployment adds nothing: same rows, same content.
    let dump = import_json(&env.db(), &[&fixture("d1-export.sql"), "--org", "acme"]);
    assert_eq!(
        (dump["imported"].as_i64(), dump["already_present"].as_i64()),
        (Some(0), Some(23))
    );

    let (_server, c) = client(&env).await;
    let infra = ok(&c, "task", json!({"action": "list", "project": "infra"})).await;
    assert_eq!(
        infra["tasks"][0]["title"],
        "Renew the TLS cert for vault.example.dev"
    );
    assert_eq!(infra["tasks"][0]["source"], "iphone");
    let done = ok(
        &c,
        "task",
        json!({"action": "get", "task_id": "01JCQ9K2BBBBBBBBBBBBBBBBK2"}),
    )
    .await;
    let t = &done["task"];
    assert_eq!(t["status"], "done");
    assert_eq!(
        t["title"],
        "Write \"handoff\" notes; include 中文 + emoji 📝"
    );
    assert_eq!(t["context"], "Done on the train\nline two");
    assert_eq!(t["occurred_at"], "2026-11-01T18:00:00.000Z");
    let w = ok(&c, "workflow", json!({"action": "get", "workflow_id": T1})).await;
    assert_eq!(w["workflow"]["cost_nanos"], 300_000_000);

    // An import while the server is serving the same file: the server sees it.
    let r = import_json(
        &env.db(),
        &[&fixture("bad/unknown-table.sql"), "--org", "acme"],
    );
    assert_eq!(r["imported"], 1);
    let w = ok(
        &c,
        "workflow",
        json!({"action": "get", "workflow_id": "01JCQAUNK0000000000000000T"}),
    )
    .await;
    assert_eq!(w["workflow"]["title"], "Tidy the handlers");
}

#[tokio::test]
async fn dry_run_reports_and_writes_nothing() {
    let env = Env::new();
    env.org("acme");
    let before = counts(&env.db());
    let dry = import_json(
        &env.db(),
        &[&fixture("d1-export.sql"), "--org", "acme", "--dry-run"],
    );
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        dry["imported"], 23,
        "the report says what would be imported"
    );
    assert_eq!(counts(&env.db()), before, "a dry run writes nothing");
    let text = cli(
        &env.db(),
        &[
            "import",
            &fixture("backup.json"),
            "--org",
            "acme",
            "--dry-run",
        ],
    );
    assert!(text.starts_with("dry run: would import"), "{text}");
    assert_eq!(counts(&env.db()), before);
    let real = import_json(&env.db(), &[&fixture("d1-export.sql"), "--org", "acme"]);
    assert_eq!(real["imported"], 23);
    assert_ne!(counts(&env.db()), before);
}

#[tokio::test]
async fn bad_files_fail_clearly_and_change_nothing() {
    let env = Env::new();
    env.org("acme");
    import_json(&env.db(), &[&fixture("d1-export.sql"), "--org", "acme"]);
    let cases = [
        (
            "bad/truncated.sql",
            "line 115: the file ends inside a string literal that starts at line 103 (is the dump truncated?)",
        ),
        (
            "bad/truncated-backup.json",
            "line 79: column 17: not a complete JSON document",
        ),
        (
            "bad/not-a-dump.sql",
            "line 5: `SET` does not start a statement a `wrangler d1 export` dump contains",
        ),
        (
            "bad/conflicting-duplicate.sql",
            "conflicting duplicate: decisions id \"01JCQBDUP000000000000000D1\" at line 9 and at line 11 hold different content",
        ),
        (
            "bad/constraint.sql",
            "tasks row \"01JCQCBAD000000000000000T2\" at line 14: CHECK constraint failed: task_type",
        ),
        (
            "bad/changed-row.sql",
            "decisions row \"01JCQ7ZD8888888888888888D1\" at line 10 differs from the row with the same id imported at",
        ),
    ];
    for (file, needle) in cases {
        let before = counts(&env.db());
        let path = fixture(file);
        let (ok, _out, err) = cli_raw(&env.db(), &["import", &path, "--org", "acme"]);
        assert!(!ok, "{file} should fail");
        assert!(
            err.contains(&path),
            "{file}: the error names the file: {err}"
        );
        assert!(err.contains(needle), "{file}: {err}");
        assert_eq!(counts(&env.db()), before, "{file} changed the database");
    }
    // An unknown org is refused before anything is read into it.
    let before = counts(&env.db());
    let (ok, _, err) = cli_raw(
        &env.db(),
        &["import", &fixture("d1-export.sql"), "--org", "nope"],
    );
    assert!(!ok && err.contains("unknown org \"nope\""), "{err}");
    assert_eq!(counts(&env.db()), before);

    // An unknown table is reported and skipped; the rest imports.
    let r = import_json(
        &env.db(),
        &[&fixture("bad/unknown-table.sql"), "--org", "acme"],
    );
    assert_eq!(r["imported"], 1);
    let notes = r["other_tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["table"] == "notes")
        .unwrap();
    assert_eq!(notes["rows"], 2);
    assert!(
        notes["reason"]
            .as_str()
            .unwrap()
            .contains("not a vault-mcp table")
    );
}
