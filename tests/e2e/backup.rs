//! Backup and restore end to end: `vaultline backup` run as its own process while
//! a real server takes writes from an MCP client, the copy restored into a fresh
//! data dir and served again with every write acknowledged before the backup
//! started; `restore` refused under a running server and for damaged, foreign or
//! newer copies with the database untouched; the replaced file kept; unwritable
//! targets; retention; the leased in-process schedule shown by `health status`
//! and a failed scheduled backup alerting; a database newer than the binary
//! refused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::*;

/// Runs `vaultline --db DB ARGS` with extra environment; (success, stdout, stderr).
fn run(db: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("--db")
        .arg(db)
        .args(args)
        .env("VAULTLINE_LOG__LEVEL", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run vaultline");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn backup_ok(db: &Path, args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut all = vec!["backup"];
    all.extend_from_slice(args);
    let (ok, out, err) = run(db, &all, env);
    assert!(ok, "backup failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("report is JSON ({e}): {out}"))
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn sha(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

async fn new_workflow(c: &Client) -> String {
    let w = ok(
        c,
        "workflow",
        json!({"action": "create", "task_type": "fix", "complexity": "simple"}),
    )
    .await;
    w["workflow"]["id"].as_str().unwrap().to_string()
}

/// One acknowledged write: (tool, id, when the server's answer arrived).
type Acked = (&'static str, String, Instant);

#[tokio::test]
async fn a_backup_under_write_load_restores_every_acknowledged_write() {
    let env = Env::new();
    env.org("acme");
    let key = env.key("acme", "operator");
    // Four writers as fast as they can go: above the default per-key rate limit.
    let srv = Server::start(
        &env,
        &[
            ("VAULTLINE_HTTP__RATE_LIMIT_PER_SECOND", "100000"),
            ("VAULTLINE_HTTP__RATE_LIMIT_BURST", "100000"),
        ],
        &[],
    );
    let c = Arc::new(http_client(&srv.url, &key).await);

    // Four writers: a workflow, then a task in it, over and over, each noting
    // when the server acknowledged it. Bounded in count and time.
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (c, acked, stop) = (c.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(180);
            for i in 0..1000 {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                let wid = new_workflow(&c).await;
                acked
                    .lock()
                    .unwrap()
                    .push(("workflow", wid.clone(), Instant::now()));
                let t = ok(
                    &c,
                    "task",
                    json!({"action": "create", "title": format!("load {w}/{i}"), "workflow_id": wid}),
                )
                .await;
                let tid = t["task"]["id"].as_str().unwrap().to_string();
                acked.lock().unwrap().push(("task", tid, Instant::now()));
            }
        }));
    }
    // Waits end when the writers do (a failed call panics one), never hang.
    let waiting = |want: usize, writers: &[tokio::task::JoinHandle<()>]| {
        let have = acked.lock().unwrap().len();
        assert!(
            have >= want || !writers.iter().all(|w| w.is_finished()),
            "the writers stopped after {have} acknowledged writes (waiting for {want})"
        );
        have < want
    };
    while waiting(200, &writers) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The backup is another process, started while the writer keeps going.
    let dir = env.dir.path().join("copies");
    std::fs::create_dir_all(&dir).unwrap();
    let started = Instant::now();
    let out = tokio::process::Command::new(bin())
        .arg("--db")
        .arg(env.db())
        .args(["backup", "--to"])
        .arg(&dir)
        .env("VAULTLINE_LOG__LEVEL", "warn")
        .output()
        .await
        .unwrap();
    let finished = Instant::now();
    assert!(
        out.status.success(),
        "backup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // A few more writes after it, then stop.
    let n = acked.lock().unwrap().len();
    while waiting(n + 10, &writers) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }

    let acked = acked.lock().unwrap().clone();
    let before: Vec<&Acked> = acked.iter().filter(|a| a.2 < started).collect();
    let during = acked
        .iter()
        .filter(|a| a.2 >= started && a.2 < finished)
        .count();
    let path = PathBuf::from(report["path"].as_str().unwrap());
    assert_eq!(path.parent().unwrap(), dir);
    assert!(
        path.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("vaultline-")
    );
    assert_eq!(
        names_in(&dir),
        [path.file_name().unwrap().to_string_lossy().into_owned()],
        "the copy alone, no temporary file"
    );
    assert!(report["bytes"].as_u64().unwrap() > 0);
    let before_wf = before.iter().filter(|a| a.0 == "workflow").count() as i64;
    assert!(
        report["tables"]["workflows"].as_i64().unwrap() >= before_wf,
        "{report}"
    );
    assert_eq!(
        report["rows"].as_i64().unwrap(),
        report["tables"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_i64().unwrap())
            .sum::<i64>()
    );
    drop(c);
    drop(srv);

    // Restore into a fresh data dir and serve it: every write acknowledged
    // before the backup started is there.
    let fresh = Env::new();
    let (restored, stdout, stderr) = run(&fresh.db(), &["restore", path.to_str().unwrap()], &[]);
    assert!(restored, "restore: {stderr}");
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["replaced"], Value::Null, "nothing was there to replace");
    assert_eq!(r["migrations_pending"], 0);
    let srv = Server::start(&fresh, &[], &[]);
    let c = http_client(&srv.url, &key).await;
    for (tool, id, _) in &before {
        let args = match *tool {
            "workflow" => json!({"action": "get", "workflow_id": id}),
            _ => json!({"action": "get", "task_id": id}),
        };
        ok(&c, tool, args).await;
    }
    let (restored_wf, restored_tasks) = (
        report["tables"]["workflows"].as_i64().unwrap(),
        report["tables"]["tasks"].as_i64().unwrap(),
    );
    // One snapshot: each writer creates a task after its workflow, so at most
    // one workflow per writer is without its task.
    assert!(
        restored_tasks <= restored_wf && restored_wf - restored_tasks <= 4,
        "{restored_wf} workflows, {restored_tasks} tasks"
    );
    assert!(
        during > 0,
        "the server kept taking writes during the backup"
    );
    eprintln!(
        "{} writes acknowledged before the backup, {during} during it, all {} present",
        before.len(),
        before.len()
    );
    c.cancel().await.ok();
}

#[tokio::test]
async fn restore_is_refused_under_a_server_and_for_bad_copies_and_keeps_the_replaced_file() {
    let env = Env::new();
    env.org("acme");
    let key = env.key("acme", "operator");
    let srv = Server::start(&env, &[], &[]);
    // A second server on the same file is fine, and says so.
    let second = Server::start(&env, &[], &[]);
    assert!(
        second
            .log
            .lock()
            .unwrap()
            .contains("another vaultline process has this database open too"),
        "{}",
        second.log.lock().unwrap()
    );
    drop(second);
    let c = http_client(&srv.url, &key).await;
    let kept = new_workflow(&c).await;
    let dir = env.dir.path().join("b");
    let report = backup_ok(&env.db(), &["--to", dir.to_str().unwrap()], &[]);
    let copy = PathBuf::from(report["path"].as_str().unwrap());
    let later = new_workflow(&c).await;

    // Refused while the server runs; nothing moved.
    let (ok_, _, err) = run(&env.db(), &["restore", copy.to_str().unwrap()], &[]);
    assert!(!ok_);
    assert!(
        err.contains("server or command is using") && err.contains("vaultline.db.lock"),
        "{err}"
    );
    assert!(
        !names_in(env.dir.path())
            .iter()
            .any(|n| n.contains("replaced"))
    );
    ok(
        &c,
        "workflow",
        json!({"action": "get", "workflow_id": later}),
    )
    .await;
    c.cancel().await.ok();
    drop(srv);

    // Bad copies, each refused with its reason; the database is untouched.
    let before = sha(&env.db());
    let listing = names_in(env.dir.path());
    let bytes = std::fs::read(&copy).unwrap();
    let damaged = env.dir.path().join("damaged.db");
    let mut d = bytes.clone();
    for b in &mut d[4096 * 2..(4096 * 40).min(bytes.len())] {
        *b = 0xA5;
    }
    std::fs::write(&damaged, &d).unwrap();
    let truncated = env.dir.path().join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let text = env.dir.path().join("notes.db");
    std::fs::write(&text, "-- not a database\nCREATE TABLE x (y);\n").unwrap();
    let newer = env.dir.path().join("newer.db");
    std::fs::copy(&copy, &newer).unwrap();
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'x')",
            [],
        )
        .unwrap();
    let cases: [(&Path, &[&str]); 5] = [
        (&damaged, &["damaged", "integrity check"]),
        (&truncated, &["damaged", "integrity check"]),
        (&text, &["not an SQLite database"]),
        (&newer, &["newer than this binary", "999"]),
        (&env.dir.path().join("missing.db"), &["no file"]),
    ];
    for (file, any_of) in cases {
        let (ok_, _, err) = run(&env.db(), &["restore", file.to_str().unwrap()], &[]);
        assert!(!ok_, "{} was restored", file.display());
        assert!(
            any_of.iter().any(|w| err.contains(w)),
            "{}: {err}",
            file.display()
        );
        assert!(
            err.contains(file.file_name().unwrap().to_str().unwrap()),
            "the error names the file: {err}"
        );
        assert_eq!(sha(&env.db()), before, "the database is untouched");
        let mut now = names_in(env.dir.path());
        now.retain(|n| !n.ends_with("-journal"));
        let mut want = listing.clone();
        want.extend(
            ["damaged.db", "truncated.db", "notes.db", "newer.db"]
                .iter()
                .map(|s| s.to_string()),
        );
        want.sort();
        assert_eq!(now, want, "no temporary or replaced file");
    }

    // A good copy: restored; the replaced database is kept and still holds
    // the write made after the backup.
    let (ok_, out, err) = run(&env.db(), &["restore", copy.to_str().unwrap()], &[]);
    assert!(ok_, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    let replaced = PathBuf::from(r["replaced"].as_str().unwrap());
    assert!(
        replaced
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("vaultline.db.replaced-"),
        "{r}"
    );
    assert!(!Path::new(&format!("{}-wal", env.db().display())).exists());
    let get = |id: &str| format!(r#"{{"action":"get","workflow_id":"{id}"}}"#);
    let (has_later, _, _) = run(
        &env.db(),
        &["call", "workflow", &get(&later), "--org", "acme"],
        &[],
    );
    assert!(!has_later, "the restored database is the copy's");
    let (has_kept, _, e) = run(
        &env.db(),
        &["call", "workflow", &get(&kept), "--org", "acme"],
        &[],
    );
    assert!(has_kept, "{e}");
    let (old_has_later, _, e) = run(
        &replaced,
        &["call", "workflow", &get(&later), "--org", "acme"],
        &[],
    );
    assert!(old_has_later, "the replaced file keeps its data: {e}");
}

#[tokio::test]
async fn an_unwritable_backup_path_fails_clearly_and_leaves_nothing() {
    let env = Env::new();
    env.org("acme");
    let blocker = env.dir.path().join("blocker");
    std::fs::write(&blocker, "a file, not a directory").unwrap();
    let listing = names_in(env.dir.path());
    let under = blocker.join("sub").join("x.db");
    // (arguments, environment, what the error says)
    type Case<'a> = (Vec<String>, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["--to".into(), under.display().to_string()],
            vec![],
            "`--to`: cannot create the directory",
        ),
        (
            vec!["--to".into(), blocker.join("x.db").display().to_string()],
            vec![],
            "is a file, not a directory",
        ),
        (
            vec!["--to".into(), blocker.display().to_string()],
            vec![],
            "already exists",
        ),
        (
            vec![],
            vec![(
                "VAULTLINE_BACKUP__DIR",
                blocker.join("b").display().to_string(),
            )],
            "`backup.dir`",
        ),
    ];
    let nowhere = env.dir.path().join("typo.db");
    let (ok_, _, err) = run(&nowhere, &["backup"], &[]);
    assert!(!ok_ && err.contains("no database at"), "{err}");
    assert!(!nowhere.exists(), "no empty database was made");
    for (args, vars, want) in cases {
        let mut all = vec!["backup"];
        all.extend(args.iter().map(String::as_str));
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (ok_, out, err) = run(&env.db(), &all, &vars);
        assert!(!ok_, "{args:?} succeeded: {out}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.is_empty(), "no report on failure: {out}");
        let mut now = names_in(env.dir.path());
        now.retain(|n| !n.starts_with("vaultline.db"));
        let mut want_listing = listing.clone();
        want_listing.retain(|n| !n.starts_with("vaultline.db"));
        assert_eq!(now, want_listing, "nothing left behind");
    }
}

#[tokio::test]
async fn retention_keeps_the_newest_copies_and_nothing_else_is_touched() {
    let env = Env::new();
    env.org("acme");
    let dir = env.dir.path().join("backups");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keep-me.db"), "an operator's own file").unwrap();
    let vars = [("VAULTLINE_BACKUP__KEEP", "2")];
    let mut paths = Vec::new();
    let mut pruned = Vec::new();
    for _ in 0..4 {
        let r = backup_ok(&env.db(), &[], &vars);
        paths.push(r["path"].as_str().unwrap().to_string());
        pruned.extend(
            r["pruned"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string()),
        );
    }
    assert!(
        paths.iter().all(|p| Path::new(p).parent().unwrap() == dir),
        "the default directory is backups/ beside the database: {paths:?}"
    );
    assert_eq!(pruned, paths[..2].to_vec(), "the oldest two, once each");
    let mut want: Vec<String> = paths[2..]
        .iter()
        .map(|p| {
            Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    want.push("keep-me.db".into());
    want.sort();
    assert_eq!(names_in(&dir), want);
}

#[tokio::test]
async fn the_schedule_backs_up_once_across_processes_and_health_shows_it() {
    let env = Env::new();
    env.org("acme");
    let key = env.key("acme", "viewer");
    let dir = env.dir.path().join("scheduled");
    let dir_s = dir.display().to_string();
    {
        let srv = Server::start(&env, &[("VAULTLINE_PROFILE", "test")], &[]);
        let c = http_client(&srv.url, &key).await;
        let h = ok(&c, "health", json!({"action": "status"})).await;
        assert_eq!(h["backup"], json!({"schedule": "off"}), "{h}");
        let r = call(&c, "health", json!({"action": "status"})).await;
        assert!(text(&r).contains("last backup: never"), "{}", text(&r));
        c.cancel().await.ok();
    }
    let vars = [
        ("VAULTLINE_PROFILE", "test"),
        ("VAULTLINE_TEST_CLOCK", "2026-12-02T05:10:00Z"),
        ("VAULTLINE_BACKUP__EVERY_HOURS", "6"),
        ("VAULTLINE_BACKUP__DIR", dir_s.as_str()),
    ];
    let a = Server::start(&env, &vars, &[]);
    let b = Server::start(&env, &vars, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let done = |s: &Server| {
        s.log
            .lock()
            .unwrap()
            .matches("scheduled backup done")
            .count()
    };
    while done(&a) + done(&b) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give both a look at the lease before counting.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        done(&a) + done(&b),
        1,
        "one backup for the period across both processes:\n{}\n{}",
        a.log.lock().unwrap(),
        b.log.lock().unwrap()
    );
    let files = names_in(&dir);
    assert_eq!(files, ["vaultline-20261202T051000Z.db"], "{files:?}");
    let runner = if done(&a) == 1 { &a } else { &b };
    let c = http_client(&runner.url, &key).await;
    let h = ok(&c, "health", json!({"action": "status"})).await;
    assert_eq!(
        h["backup"],
        json!({"last_ok_at": "2026-12-02T05:10:00.000Z", "age_s": 0, "schedule": "every 6 h"}),
        "{h}"
    );
    let r = call(&c, "health", json!({"action": "status"})).await;
    assert!(text(&r).contains("last backup: 0h00m ago"), "{}", text(&r));
    c.cancel().await.ok();
    drop((a, b));

    // The next period, with a backup directory that cannot be made: the failure
    // is alerted, and health still shows the last good backup.
    let blocker = env.dir.path().join("blocker");
    std::fs::write(&blocker, "x").unwrap();
    let bad = blocker.join("b").display().to_string();
    let vars = [
        ("VAULTLINE_PROFILE", "test"),
        ("VAULTLINE_TEST_CLOCK", "2026-12-02T12:30:00Z"),
        ("VAULTLINE_BACKUP__EVERY_HOURS", "6"),
        ("VAULTLINE_BACKUP__DIR", bad.as_str()),
    ];
    let srv = Server::start(&env, &vars, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !srv.log.lock().unwrap().contains("backup_failed") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = srv.log.lock().unwrap().clone();
    assert!(
        log.contains("vaultline::alert") && log.contains("backup_failed"),
        "{log}"
    );
    assert!(
        log.contains("2026-12-02T12:00:00.000Z"),
        "the period: {log}"
    );
    let c = http_client(&srv.url, &key).await;
    let h = ok(&c, "health", json!({"action": "status"})).await;
    assert_eq!(h["backup"]["last_ok_at"], "2026-12-02T05:10:00.000Z", "{h}");
    assert_eq!(h["backup"]["age_s"], 7 * 3600 + 20 * 60);
    c.cancel().await.ok();
}

#[tokio::test]
async fn a_database_newer_than_the_binary_is_refused_with_a_clear_message() {
    let env = Env::new();
    env.org("acme");
    rusqlite::Connection::open(env.db())
        .unwrap()
        .execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'x')",
            [],
        )
        .unwrap();
    let before = sha(&env.db());
    for args in [&["migrate"][..], &["serve", "--stdio"][..]] {
        let (ok_, _, err) = run(&env.db(), args, &[]);
        assert!(!ok_, "{args:?} started on a newer database");
        assert!(
            err.contains("schema is at version 999, newer than this binary knows")
                && err.contains("run a vaultline release that knows version 999"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(sha(&env.db()), before, "nothing was written");
}

#[tokio::test]
async fn restore_replaces_a_damaged_database_and_moves_its_log_aside() {
    let env = Env::new();
    env.org("acme");
    let copy = env.dir.path().join("good.db");
    backup_ok(&env.db(), &["--to", copy.to_str().unwrap()], &[]);
    // The live database is wrecked, with a log beside it that must never be
    // replayed into the restored file.
    let db = env.db();
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    std::fs::write(&db, vec![0x5Au8; 64 * 1024]).unwrap();
    let (ok_, _, _) = run(&db, &["orgs", "list"], &[]);
    assert!(!ok_, "the wrecked database does not open");
    std::fs::write(&wal, vec![0xC3u8; 8 * 1024]).unwrap();

    let (ok_, out, err) = run(&db, &["restore", copy.to_str().unwrap()], &[]);
    assert!(ok_, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    let replaced = PathBuf::from(r["replaced"].as_str().unwrap());
    assert_eq!(std::fs::read(&replaced).unwrap(), vec![0x5Au8; 64 * 1024]);
    assert_eq!(
        std::fs::read(format!("{}-wal", replaced.display())).unwrap(),
        vec![0xC3u8; 8 * 1024],
        "the log moved with its database"
    );
    assert!(!wal.exists(), "no foreign log beside the restored database");
    let orgs = cli(&db, &["orgs", "list"]);
    assert!(orgs.starts_with("acme"), "{orgs}");
}

/// The schema version recorded in `db`.
fn version_of(db: &Path) -> u32 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .unwrap()
}

#[tokio::test]
async fn a_backup_before_an_upgrade_copies_the_old_schema_without_migrating() {
    let env = Env::new();
    env.org("acme");
    // Make the database one release older: undo the newest migration (drop the
    // tables it created, forget its version), as a database the previous
    // binary made would be.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let newest = files.last().unwrap();
    let latest: u32 = newest.file_name().unwrap().to_string_lossy()[..4]
        .parse()
        .unwrap();
    let sql = std::fs::read_to_string(newest).unwrap();
    let conn = rusqlite::Connection::open(env.db()).unwrap();
    for line in sql.lines() {
        if let Some(rest) = line.strip_prefix("CREATE TABLE ") {
            let name = rest.trim_start_matches("IF NOT EXISTS ");
            let name = name.split([' ', '(']).next().unwrap();
            conn.execute_batch(&format!("DROP TABLE {name}")).unwrap();
        }
    }
    conn.execute("DELETE FROM schema_migrations WHERE version = ?1", [latest])
        .unwrap();
    drop(conn);
    assert_eq!(version_of(&env.db()), latest - 1);

    let copy = env.dir.path().join("before-upgrade.db");
    let mut all = vec!["backup", "--to", copy.to_str().unwrap()];
    let (ok_, out, err) = run(&env.db(), &all, &[]);
    assert!(ok_, "backup failed: {err}");
    assert!(err.contains("copied as it is, not migrated"), "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["schema_version"], latest - 1);
    assert_eq!(
        version_of(&copy),
        latest - 1,
        "the copy holds the old schema"
    );
    assert_eq!(
        version_of(&env.db()),
        latest - 1,
        "the source was not migrated"
    );

    // Once migrated (the upgrade), a backup is the normal, recorded one.
    let (ok_, _, err) = run(&env.db(), &["migrate"], &[]);
    assert!(ok_, "{err}");
    let copy2 = env.dir.path().join("after-upgrade.db");
    all[2] = copy2.to_str().unwrap();
    let (ok_, out, err) = run(&env.db(), &all, &[]);
    assert!(ok_, "{err}");
    assert!(!err.contains("not migrated"), "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["schema_version"], latest);
    let recorded: Vec<(String, i64)> = rusqlite::Connection::open(env.db())
        .unwrap()
        .prepare("SELECT path, ok FROM backups")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        recorded,
        [(report["path"].as_str().unwrap().to_string(), 1)],
        "only the migrated database's backup is recorded"
    );
}
