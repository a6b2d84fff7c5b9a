//! Migrations: numbered plain-SQL files from `migrations/`, compiled into the
//! binary, applied in order at start-up, each in its own transaction.
//!
//! The files are append-only: a shipped file is never edited, a fix is a new
//! file. A database newer than this binary is refused rather than touched.

use rusqlite::Connection;

use crate::error::{Error, Result};

/// Every migration, in order: (version, file name, SQL).
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "0001_core.sql",
        include_str!("../../migrations/0001_core.sql"),
    ),
    (
        2,
        "0002_ledger.sql",
        include_str!("../../migrations/0002_ledger.sql"),
    ),
    (
        3,
        "0003_metering.sql",
        include_str!("../../migrations/0003_metering.sql"),
    ),
    (
        4,
        "0004_quota.sql",
        include_str!("../../migrations/0004_quota.sql"),
    ),
    (
        5,
        "0005_runs.sql",
        include_str!("../../migrations/0005_runs.sql"),
    ),
    (
        6,
        "0006_task_spend.sql",
        include_str!("../../migrations/0006_task_spend.sql"),
    ),
    (
        7,
        "0007_backups.sql",
        include_str!("../../migrations/0007_backups.sql"),
    ),
    (
        8,
        "0008_import.sql",
        include_str!("../../migrations/0008_import.sql"),
    ),
    (
        9,
        "0009_modules.sql",
        include_str!("../../migrations/0009_modules.sql"),
    ),
];

/// What start-up found and did.
#[derive(Debug, Clone)]
pub struct MigrationStatus {
    /// Version of the schema now in the file.
    pub current: u32,
    /// Newest version this binary knows.
    pub latest: u32,
    /// Migrations applied by this start-up.
    pub applied_now: Vec<u32>,
}

pub(super) fn apply(conn: &mut Connection) -> Result<MigrationStatus> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
           version INTEGER PRIMARY KEY,
           name TEXT NOT NULL,
           applied_at TEXT NOT NULL
         )",
    )?;
    let current: u32 = conn.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let latest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if current > latest {
        return Err(Error::Internal(format!(
            "the database schema is at version {current}, newer than this binary knows ({latest}); \
             refusing to start: run a vaultline release that knows version {current}"
        )));
    }
    let mut applied_now = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|e| Error::Internal(format!("migration {name} failed: {e}")))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            (version, name),
        )?;
        tx.commit()?;
        tracing::info!(version, name, "applied migration");
        applied_now.push(*version);
    }
    Ok(MigrationStatus {
        current: latest,
        latest,
        applied_now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_migrations_is_listed_in_order_and_has_no_pragma() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.1).collect();
        assert_eq!(files, listed);
        for (i, (v, name, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v as usize, i + 1, "versions are 1, 2, 3 …");
            assert!(
                name.starts_with(&format!("{v:04}_")),
                "{name} is numbered {v:04}"
            );
            let lower = sql.to_lowercase();
            assert!(
                !lower.contains("pragma"),
                "{name}: no PRAGMA (D1 refuses it)"
            );
            assert!(!lower.contains("load_extension"), "{name}: no extension");
        }
    }

    #[test]
    fn applies_all_to_an_empty_database_then_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        let s = apply(&mut conn).unwrap();
        assert_eq!(s.current, MIGRATIONS.len() as u32);
        assert_eq!(s.applied_now.len(), MIGRATIONS.len());
        let s = apply(&mut conn).unwrap();
        assert!(s.applied_now.is_empty());
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN
                 ('orgs','api_keys','workflows','tasks','stages','checkpoints','decisions','transcripts','audit_log','canary')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 10);
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'x')",
            [],
        )
        .unwrap();
        let err = apply(&mut conn).unwrap_err().to_string();
        assert!(err.contains("newer than this binary"), "{err}");
    }
}
