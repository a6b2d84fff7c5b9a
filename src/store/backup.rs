//! The SQLite side of backup and restore: a consistent copy of a live database
//! file through SQLite's online backup API, the checks a copy must pass (header,
//! `PRAGMA integrity_check`, a vaultline schema no newer than this binary, row
//! counts), and the `backups` table that records each run.
//!
//! These functions work on whole files, not on an org's rows: a backup copies
//! every org at once, and the `backups` rows belong to none. They block; callers
//! run them off the async workers. Files and renames are `crate::backup`'s job.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use super::Store;
use crate::error::{Error, Result};

/// What a database holds as of one snapshot: its schema version and the rows of
/// every table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub schema_version: u32,
    pub tables: BTreeMap<String, i64>,
}

impl Snapshot {
    pub fn rows(&self) -> i64 {
        self.tables.values().sum()
    }
}

/// One backup run, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRecord {
    pub id: String,
    /// `cli` or `schedule`.
    pub source: String,
    pub started_at: String,
    pub finished_at: String,
    pub ok: bool,
    pub path: Option<String>,
    pub bytes: Option<i64>,
    pub tables: Option<i64>,
    pub rows: Option<i64>,
    pub schema_version: Option<u32>,
    pub error: Option<String>,
}

/// How long a copy waits for the source's read lock before giving up.
const BUSY: Duration = Duration::from_secs(30);

fn open_existing(path: &Path, what: &str) -> Result<Connection> {
    if !path.is_file() {
        return Err(Error::invalid(
            what,
            format!("no database file at {}", path.display()),
        ));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Internal(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY)?;
    Ok(conn)
}

/// The schema version recorded in the database at `path`, read without
/// migrating it; None when it has no `schema_migrations` table (an empty or a
/// foreign file, which the normal path reports).
pub fn schema_version_of(path: &Path) -> Result<Option<u32>> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Internal(format!("cannot open {}: {e}", path.display())))?;
    c.busy_timeout(BUSY)?;
    let has: bool = c.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
        [],
        |r| r.get(0),
    )?;
    if !has {
        return Ok(None);
    }
    Ok(Some(c.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?))
}

/// Row counts of every table and the schema version, read on `c` (inside
/// whatever transaction `c` has open).
fn snapshot_of(c: &Connection) -> Result<Snapshot> {
    let names: Vec<String> = c
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
             ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if !names.iter().any(|n| n == "schema_migrations") {
        return Err(Error::invalid(
            "database",
            "is not a vaultline database (it has no schema_migrations table)",
        ));
    }
    let mut tables = BTreeMap::new();
    for n in names {
        let quoted = format!("\"{}\"", n.replace('"', "\"\""));
        let count: i64 =
            c.query_row(&format!("SELECT count(*) FROM {quoted}"), [], |r| r.get(0))?;
        tables.insert(n, count);
    }
    let schema_version: u32 = c.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    Ok(Snapshot {
        schema_version,
        tables,
    })
}

/// Copies the database at `src` into the new file `dest` with SQLite's online
/// backup API, and returns what the source held at the copy's snapshot.
///
/// The source connection opens a read transaction first and the whole copy runs
/// inside it (one `step(-1)`), so the counts and the copied pages are the same
/// snapshot. Under WAL a reader never blocks the server's writer, nor the writer
/// it: the server keeps committing while the copy runs.
pub fn copy_snapshot(src: &Path, dest: &Path) -> Result<Snapshot> {
    let from = open_existing(src, "database")?;
    from.execute_batch("BEGIN")?;
    let snap = snapshot_of(&from)?;
    {
        let mut to = Connection::open(dest)
            .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dest.display())))?;
        let b = Backup::new(&from, &mut to)?;
        let deadline = std::time::Instant::now() + BUSY;
        loop {
            match b.step(-1)? {
                StepResult::Done => break,
                StepResult::More => {}
                _ if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    return Err(Error::Internal(
                        "the backup could not lock the source database for 30 s".into(),
                    ));
                }
            }
        }
    }
    from.execute_batch("COMMIT")?;
    Ok(snap)
}

/// Checks a copy: an SQLite file that passes `PRAGMA integrity_check`, holds a
/// vaultline schema no newer than `latest`, and stands alone (rollback journal
/// mode, no write-ahead log beside it). Returns its snapshot. `what` names the
/// file in errors.
pub fn check_copy(path: &Path, latest: u32, what: &str) -> Result<Snapshot> {
    if !path.is_file() {
        return Err(Error::invalid(
            what,
            format!("no database file at {}", path.display()),
        ));
    }
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path)
        .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 16), &mut head))
        .map_err(|e| Error::invalid(what, format!("cannot read {}: {e}", path.display())))?;
    if head != b"SQLite format 3\0" {
        return Err(Error::invalid(
            what,
            format!("{} is not an SQLite database file", path.display()),
        ));
    }
    let corrupt = |e: rusqlite::Error| {
        Error::invalid(
            what,
            format!("{} is damaged and cannot be read: {e}", path.display()),
        )
    };
    let c = open_existing(path, what)?;
    let problems: Vec<String> = c
        .prepare("PRAGMA integrity_check(20)")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(corrupt)?;
    if problems != ["ok"] {
        return Err(Error::invalid(
            what,
            format!(
                "{} fails the integrity check: {}",
                path.display(),
                problems.join("; ")
            ),
        ));
    }
    // The copy stands alone: no -wal beside it that a later open would need.
    let mode: String = c
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .map_err(corrupt)?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(Error::Internal(format!(
            "cannot take {} out of {mode} journal mode",
            path.display()
        )));
    }
    let snap = snapshot_of(&c).map_err(|e| match e {
        Error::Invalid { message, .. } => {
            Error::invalid(what, format!("{} {message}", path.display()))
        }
        other => other,
    })?;
    if snap.schema_version > latest {
        return Err(Error::invalid(
            what,
            format!(
                "{} has schema version {}, newer than this binary knows ({latest}); \
                 use a vaultline release that knows version {}",
                path.display(),
                snap.schema_version,
                snap.schema_version
            ),
        ));
    }
    Ok(snap)
}

impl Store {
    /// Records one backup run.
    pub async fn backup_record(&self, r: BackupRecord) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO backups (id, source, started_at, finished_at, ok, path, bytes,
                   tables_count, rows_count, schema_version, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    r.id,
                    r.source,
                    r.started_at,
                    r.finished_at,
                    r.ok,
                    r.path,
                    r.bytes,
                    r.tables,
                    r.rows,
                    r.schema_version,
                    r.error
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// When the newest good backup finished, if any.
    pub async fn backup_last_ok(&self) -> Result<Option<String>> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT max(finished_at) FROM backups WHERE ok = 1")?
                    .query_row([], |r| r.get::<_, Option<String>>(0))
                    .optional()?
                    .flatten(),
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Synchronous;

    #[tokio::test]
    async fn a_copy_matches_its_source_and_passes_the_checks() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("v.db");
        let s = Store::open(&db, Synchronous::Normal).unwrap();
        s.ensure_org("acme", "2026-01-01T00:00:00.000Z")
            .await
            .unwrap();
        let copy = dir.path().join("copy.db");
        let snap = copy_snapshot(&db, &copy).unwrap();
        assert_eq!(snap.schema_version, super::super::MIGRATIONS.len() as u32);
        assert_eq!(snap.tables["orgs"], 1);
        let latest = snap.schema_version;
        assert_eq!(check_copy(&copy, latest, "copy").unwrap(), snap);
        assert!(!dir.path().join("copy.db-wal").exists());
        // A binary that knows less refuses it, naming both versions.
        let err = check_copy(&copy, latest - 1, "copy")
            .unwrap_err()
            .to_string();
        assert!(err.contains("newer than this binary"), "{err}");

        s.backup_record(BackupRecord {
            id: "b1".into(),
            source: "cli".into(),
            started_at: "2026-01-01T00:00:00.000Z".into(),
            finished_at: "2026-01-01T00:00:01.000Z".into(),
            ok: true,
            path: Some(copy.display().to_string()),
            bytes: Some(1),
            tables: Some(snap.tables.len() as i64),
            rows: Some(snap.rows()),
            schema_version: Some(latest),
            error: None,
        })
        .await
        .unwrap();
        s.backup_record(BackupRecord {
            id: "b2".into(),
            source: "schedule".into(),
            started_at: "2026-01-02T00:00:00.000Z".into(),
            finished_at: "2026-01-02T00:00:01.000Z".into(),
            ok: false,
            path: None,
            bytes: None,
            tables: None,
            rows: None,
            schema_version: None,
            error: Some("disk full".into()),
        })
        .await
        .unwrap();
        assert_eq!(
            s.backup_last_ok().await.unwrap().as_deref(),
            Some("2026-01-01T00:00:01.000Z"),
            "a failed run is not the last good one"
        );
        s.shutdown();
    }

    #[test]
    fn damaged_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello, this is not a database at all").unwrap();
        let err = check_copy(&text, 99, "PATH").unwrap_err().to_string();
        assert!(err.contains("not an SQLite database"), "{err}");

        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        let err = check_copy(&other, 99, "PATH").unwrap_err().to_string();
        assert!(err.contains("not a vaultline database"), "{err}");

        let err = check_copy(&dir.path().join("missing.db"), 99, "PATH")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no database file"), "{err}");
    }
}
