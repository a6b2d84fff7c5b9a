//! Backup and restore of the database file.
//!
//! `backup` takes a consistent online copy while servers keep writing (the store's
//! `copy_snapshot`, SQLite's backup API inside one read transaction), into a
//! temporary file beside the target, checks it (integrity, schema version, row
//! counts equal to the source's at the copy's snapshot), fsyncs it and renames it
//! into place; only then are old copies pruned (`backup.keep`). Each run is
//! recorded in the `backups` table; a failure raises a `backup_failed` alert. The
//! in-process schedule (`backup.every_hours` or `backup.daily_utc`) takes the
//! `backup` lease row so several processes on one file back it up once per period.
//!
//! `restore` refuses while any server holds the database: every `serve` (and
//! every other command that opens it) holds a shared lock on `<db>.lock` for its
//! lifetime and `restore` needs it exclusive.
//! It checks a private copy of the file first, keeps the replaced database as it
//! is (with its `-wal`/`-shm` renamed alongside) as `<db>.replaced-<time>`, then
//! renames the copy in. Nothing
//! here names rusqlite: the SQLite side lives in `store::backup`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::clock::fmt_time;
use crate::config::BackupConfig;
use crate::error::{Error, Result};
use crate::store::backup::{check_copy, copy_snapshot};
use crate::store::{BackupRecord, Snapshot, Store};

/// The lease row the schedule takes.
pub const LEASE: &str = "backup";
/// How long a scheduled run may hold the lease before another process may take over.
const LEASE_TTL: Duration = Duration::hours(1);
/// How often the schedule wakes (and refreshes the last good backup's time).
const TICK: std::time::Duration = std::time::Duration::from_secs(30);

/// What `vaultline backup` prints and the schedule logs.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub path: String,
    pub bytes: u64,
    pub schema_version: u32,
    /// Rows per table in the copy (equal to the source's at the copy's snapshot).
    pub tables: BTreeMap<String, i64>,
    pub rows: i64,
    pub started_at: String,
    pub duration_ms: u64,
    /// Older copies removed by the retention rule.
    pub pruned: Vec<String>,
}

/// What `vaultline restore` prints.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub restored_from: String,
    pub db: String,
    /// Where the database that was replaced now lives (none if there was none).
    pub replaced: Option<String>,
    pub schema_version: u32,
    /// Migrations the next start applies to bring the copy up to this binary.
    pub migrations_pending: u32,
    pub tables: BTreeMap<String, i64>,
    pub rows: i64,
}

/// The last good backup's time, kept in memory so `health status` reads no disk.
/// Loaded from the `backups` table on first use, refreshed by the schedule loop.
#[derive(Default)]
pub struct LastBackup {
    /// None until loaded; then the time, if any backup succeeded.
    at: Mutex<Option<Option<String>>>,
}

impl LastBackup {
    pub fn set(&self, at: Option<String>) {
        if let Ok(mut g) = self.at.lock() {
            *g = Some(at);
        }
    }

    pub async fn get(&self, store: &Store) -> Result<Option<String>> {
        if let Some(known) = self.at.lock().ok().and_then(|g| g.clone()) {
            return Ok(known);
        }
        let at = store.backup_last_ok().await?;
        self.set(at.clone());
        Ok(at)
    }
}

/// `vaultline-YYYYMMDDTHHMMSSZ.db`, or `-N` after it when copies of that second
/// exist: N is one more than the highest there, never a gap retention left, so
/// the newest copy always sorts last and is never the one pruned.
fn free_name(dir: &Path, now: DateTime<Utc>) -> PathBuf {
    let ts = now.format("%Y%m%dT%H%M%SZ").to_string();
    let highest = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| backup_order(&e.file_name().to_string_lossy()))
        .filter(|(t, _)| *t == ts)
        .map(|(_, n)| n)
        .max();
    match highest {
        None => dir.join(format!("vaultline-{ts}.db")),
        Some(n) => dir.join(format!("vaultline-{ts}-{}.db", n + 1)),
    }
}

/// The order of a file name written by `free_name`: (time, N); None for any
/// other file, which retention never touches.
fn backup_order(name: &str) -> Option<(String, u32)> {
    let stem = name.strip_prefix("vaultline-")?.strip_suffix(".db")?;
    let (ts, n) = match stem.split_once('-') {
        Some((ts, n)) => (ts, n.parse().ok()?),
        None => (stem, 0),
    };
    let ok = ts.len() == 16
        && ts.as_bytes()[8] == b'T'
        && ts.ends_with('Z')
        && ts[..8].bytes().all(|b| b.is_ascii_digit())
        && ts[9..15].bytes().all(|b| b.is_ascii_digit());
    ok.then(|| (ts.to_string(), n))
}

/// Removes all but the newest `keep` backups in `dir`; returns what it removed.
pub fn prune(dir: &Path, keep: u32) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::Internal(format!("cannot list {}: {e}", dir.display())))?;
    let mut found: Vec<((String, u32), String)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            backup_order(&name).map(|o| (o, name))
        })
        .collect();
    found.sort();
    let excess = found.len().saturating_sub(keep as usize);
    let mut removed = Vec::new();
    for (_, name) in found.into_iter().take(excess) {
        let p = dir.join(&name);
        std::fs::remove_file(&p)
            .map_err(|e| Error::Internal(format!("cannot remove {}: {e}", p.display())))?;
        removed.push(p.display().to_string());
    }
    Ok(removed)
}

fn sidecar(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn remove_with_sidecars(p: &Path) {
    for s in ["", "-journal", "-wal", "-shm"] {
        let _ = std::fs::remove_file(sidecar(p, s));
    }
}

fn sync_dir(dir: &Path) {
    // Makes the rename durable; not every platform can open a directory.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Where a backup goes: (the file, the directory retention prunes, if any).
/// `field` names the setting in errors (`--to`, `backup.dir`).
fn target(
    cfg: &BackupConfig,
    db: &Path,
    to: Option<&Path>,
    now: DateTime<Utc>,
) -> Result<(PathBuf, Option<PathBuf>, &'static str)> {
    let (dir, file, field) = match to {
        None => (cfg.dir(db), None, "backup.dir"),
        Some(p) if p.is_dir() || p.as_os_str().to_string_lossy().ends_with('/') => {
            (p.to_path_buf(), None, "--to")
        }
        Some(p) => {
            if p.exists() {
                return Err(Error::invalid(
                    "--to",
                    format!(
                        "{} already exists; name a new file or a directory",
                        p.display()
                    ),
                ));
            }
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or_else(|| Path::new("."));
            (dir.to_path_buf(), Some(p.to_path_buf()), "--to")
        }
    };
    if dir.exists() && !dir.is_dir() {
        return Err(Error::invalid(
            field,
            format!("{} is a file, not a directory", dir.display()),
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| {
        Error::invalid(
            field,
            format!("cannot create the directory {}: {e}", dir.display()),
        )
    })?;
    Ok(match file {
        Some(f) => (f, None, field),
        None => (free_name(&dir, now), Some(dir), field),
    })
}

/// Copies `db` to `path` through a temporary file beside it; checks, fsyncs,
/// renames. Nothing is left behind on failure. Blocking.
fn write_copy(db: &Path, path: &Path, latest: u32, field: &str) -> Result<(Snapshot, u64)> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup.db".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let r = (|| {
        // Made here first so an unwritable directory gets the system's reason.
        File::create(&tmp).map_err(|e| {
            Error::invalid(field, format!("cannot write into {}: {e}", dir.display()))
        })?;
        let snap = copy_snapshot(db, &tmp)?;
        let copy = check_copy(&tmp, latest, "backup")?;
        if copy != snap {
            return Err(Error::Internal(format!(
                "the copy does not match the source's snapshot (source {:?}, copy {:?})",
                snap.tables, copy.tables
            )));
        }
        let f = File::open(&tmp)
            .map_err(|e| Error::Internal(format!("cannot reopen {}: {e}", tmp.display())))?;
        f.sync_all()
            .map_err(|e| Error::Internal(format!("cannot fsync {}: {e}", tmp.display())))?;
        let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
        std::fs::rename(&tmp, path).map_err(|e| {
            Error::Internal(format!("cannot rename the copy to {}: {e}", path.display()))
        })?;
        sync_dir(dir);
        Ok((snap, bytes))
    })();
    if r.is_err() {
        remove_with_sidecars(&tmp);
    }
    r
}

/// `vaultline backup` of a database older than this binary: copied as it is,
/// before anything opens it through the store (which would migrate it), so the
/// copy taken just before an upgrade holds the old schema and the old binary can
/// restore it. Checked, fsynced and pruned like any copy, but not recorded: the
/// `backups` table may not exist yet. None when the database is not older (the
/// normal path, [`run`], then takes the copy). Blocking.
pub fn run_unmigrated(
    cfg: &BackupConfig,
    db: &Path,
    to: Option<&Path>,
    latest: u32,
    now: DateTime<Utc>,
) -> Result<Option<Report>> {
    let version = match crate::store::backup::schema_version_of(db)? {
        Some(v) if v < latest => v,
        _ => return Ok(None),
    };
    copy_and_prune(cfg, db, to, version, now).map(Some)
}

/// The copy itself: to its target, checked against `latest`, then retention.
/// Blocking.
fn copy_and_prune(
    cfg: &BackupConfig,
    db: &Path,
    to: Option<&Path>,
    latest: u32,
    now: DateTime<Utc>,
) -> Result<Report> {
    let t0 = std::time::Instant::now();
    let (path, prune_dir, field) = target(cfg, db, to, now)?;
    let (snap, bytes) = write_copy(db, &path, latest, field)?;
    let pruned = match prune_dir {
        Some(d) => prune(&d, cfg.keep)?,
        None => Vec::new(),
    };
    Ok(Report {
        path: path.display().to_string(),
        bytes,
        schema_version: snap.schema_version,
        rows: snap.rows(),
        tables: snap.tables,
        started_at: fmt_time(now),
        duration_ms: t0.elapsed().as_millis() as u64,
        pruned,
    })
}

/// One backup: to `to` (a file or a directory) or to `backup.dir`. Records the
/// run; on failure raises `backup_failed` for `period_key` — except for a CLI
/// run refused for its arguments, which the operator sees at the console.
pub async fn run(app: &App, to: Option<&Path>, source: &str, period_key: &str) -> Result<Report> {
    let started = app.clock.now();
    let (cfg, db) = (app.config.backup.clone(), app.store.path().to_path_buf());
    let (to, latest) = (
        to.map(Path::to_path_buf),
        app.store.migration_status().latest,
    );
    let result = tokio::task::spawn_blocking(move || {
        copy_and_prune(&cfg, &db, to.as_deref(), latest, started)
    })
    .await
    .map_err(|e| Error::Internal(format!("backup task failed: {e}")))
    .and_then(|r| r);
    let finished = app.clock.now_text();
    let ok = result.as_ref().ok();
    let record = BackupRecord {
        id: app.ids.next(),
        source: source.into(),
        started_at: fmt_time(started),
        finished_at: finished.clone(),
        ok: ok.is_some(),
        path: ok.map(|r| r.path.clone()),
        bytes: ok.map(|r| r.bytes as i64),
        tables: ok.map(|r| r.tables.len() as i64),
        rows: ok.map(|r| r.rows),
        schema_version: ok.map(|r| r.schema_version),
        error: result.as_ref().err().map(|e| e.to_string()),
    };
    if let Err(e) = app.store.backup_record(record).await {
        tracing::error!(error = %e, "cannot record the backup run");
    }
    match &result {
        Ok(_) => app.last_backup.set(Some(finished)),
        Err(e) => {
            tracing::error!(error = %e, source, "backup failed");
            let operator_mistake = source == "cli" && matches!(e, Error::Invalid { .. });
            if !operator_mistake {
                let msg = format!("the {source} backup of {period_key} failed: {e}");
                if let Err(e2) = app
                    .alerts
                    .raise(
                        crate::quota::audit::SYSTEM_ORG,
                        "backup_failed",
                        LEASE,
                        period_key,
                        &msg,
                    )
                    .await
                {
                    tracing::error!(error = %e2, "cannot raise the backup_failed alert");
                }
            }
        }
    }
    result
}

/// The start of the schedule period `now` falls in, if a schedule is set:
/// every N hours counted from the Unix epoch, or the latest daily time passed.
pub fn slot(cfg: &BackupConfig, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if let Some(h) = cfg.every_hours {
        let every = i64::from(h.max(1)) * 3600;
        return DateTime::from_timestamp(now.timestamp().div_euclid(every) * every, 0);
    }
    let t = cfg.daily_time()?;
    let today = now.date_naive().and_time(t).and_utc();
    Some(if today <= now {
        today
    } else {
        today - Duration::days(1)
    })
}

/// A description of the schedule for `health status`.
pub fn schedule_text(cfg: &BackupConfig) -> String {
    match (cfg.every_hours, &cfg.daily_utc) {
        (Some(h), _) => format!("every {h} h"),
        (None, Some(t)) => format!("daily at {t} UTC"),
        (None, None) => "off".into(),
    }
}

/// The in-process schedule: every tick refreshes the last good backup's time
/// (another process may have taken one); when a schedule is set and the
/// current period has no backup, takes the lease, backs up to `backup.dir`, and
/// marks the period done. A failed period is retried after a restart or by
/// another process once the lease expires, not every tick.
pub fn spawn_schedule(app: Arc<App>, ct: CancellationToken) {
    let holder = format!("pid{}-{}", std::process::id(), app.ids.next());
    tokio::spawn(async move {
        let mut failed: Option<String> = None;
        loop {
            match app.store.backup_last_ok().await {
                Ok(at) => app.last_backup.set(at),
                Err(e) => tracing::warn!(error = %e, "cannot read the last backup's time"),
            }
            if let Err(e) = tick(&app, &holder, &mut failed).await {
                tracing::warn!(error = %e, "backup schedule: cannot check the lease");
            }
            tokio::select! {
                _ = ct.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    });
}

async fn tick(app: &App, holder: &str, failed: &mut Option<String>) -> Result<()> {
    let now = app.clock.now();
    let Some(start) = slot(&app.config.backup, now) else {
        return Ok(());
    };
    let key = fmt_time(start);
    if failed.as_deref() == Some(key.as_str()) {
        return Ok(());
    }
    if let Some(l) = app.store.lease_get(LEASE).await?
        && l.last_run_key.as_deref() == Some(key.as_str())
    {
        return Ok(());
    }
    if !app
        .store
        .lease_acquire(
            LEASE,
            holder,
            &key,
            &fmt_time(now),
            &fmt_time(now + LEASE_TTL),
        )
        .await?
    {
        return Ok(());
    }
    match run(app, None, "schedule", &key).await {
        Ok(r) => {
            app.store
                .lease_finish(LEASE, holder, &key, &app.clock.now_text())
                .await?;
            tracing::info!(
                period = %key,
                path = %r.path,
                bytes = r.bytes,
                rows = r.rows,
                pruned = r.pruned.len(),
                "scheduled backup done"
            );
        }
        // Logged, recorded and alerted by `run`.
        Err(_) => *failed = Some(key),
    }
    Ok(())
}

fn lock_file(db: &Path) -> Result<(File, PathBuf)> {
    let path = sidecar(db, ".lock");
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Internal(format!("cannot create directory {}: {e}", dir.display()))
        })?;
    }
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::Internal(format!("cannot open {}: {e}", path.display())))?;
    Ok((f, path))
}

/// Held by `serve` (and every command that opens the database) for its
/// lifetime: a shared lock on `<db>.lock`. Several servers may share one file
/// (scheduled work is leased); a restore may not run under any of them.
pub struct SharedLock {
    _file: File,
    /// Another process already held the file when this one started.
    pub shared_with_another: bool,
}

/// Takes the shared lock; refuses while a restore holds the file.
pub fn lock_shared(db: &Path) -> Result<SharedLock> {
    let (f, path) = lock_file(db)?;
    let busy = |_| {
        Error::Conflict(format!(
            "{} is being restored (`vaultline restore` holds {}); try again when it has finished",
            db.display(),
            path.display()
        ))
    };
    // Exclusive first only to learn whether another server is there; then the
    // shared lock every server holds.
    // Another server probing at the same instant holds it exclusively for a
    // moment; a restore holds it for longer than these retries.
    let alone = f.try_lock().is_ok();
    let mut tries = 0;
    while let Err(e) = f.try_lock_shared() {
        tries += 1;
        if tries > 20 {
            return Err(busy(e));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(SharedLock {
        _file: f,
        shared_with_another: !alone,
    })
}

/// Replaces the database at `db` with the copy at `from`. Blocking. Refuses
/// while a server holds the database; checks a private copy first (nothing is
/// changed when it fails); keeps the replaced database as `<db>.replaced-<time>`
/// with its `-wal` and `-shm`.
pub fn restore(db: &Path, from: &Path, latest: u32, now: DateTime<Utc>) -> Result<RestoreReport> {
    let (lock, lock_path) = lock_file(db)?;
    lock.try_lock().map_err(|_| {
        Error::Conflict(format!(
            "a vaultline server or command is using {} (it holds {}); stop it first (e.g. `systemctl stop vaultline`), then restore",
            db.display(),
            lock_path.display()
        ))
    })?;
    if !from.is_file() {
        return Err(Error::invalid(
            "PATH",
            format!("no file at {}", from.display()),
        ));
    }
    if std::fs::canonicalize(from).ok() == std::fs::canonicalize(db).ok() {
        return Err(Error::invalid(
            "PATH",
            "is the database itself; name a backup copy",
        ));
    }
    if std::fs::metadata(sidecar(from, "-wal")).is_ok_and(|m| m.len() > 0) {
        return Err(Error::invalid(
            "PATH",
            format!(
                "{} has a write-ahead log beside it: it is a live database, not a backup; take a copy with `vaultline backup`",
                from.display()
            ),
        ));
    }
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vaultline.db".into());
    let tmp = dir.join(format!(".{name}.restore-{}.tmp", std::process::id()));
    let r = (|| {
        std::fs::copy(from, &tmp).map_err(|e| {
            Error::Internal(format!(
                "cannot copy {} to {}: {e}",
                from.display(),
                tmp.display()
            ))
        })?;
        let snap = check_copy(&tmp, latest, "PATH").map_err(|e| match e {
            // The checks ran on the private copy; name the file the operator gave.
            Error::Invalid { field, message } => Error::Invalid {
                field,
                message: message.replace(&tmp.display().to_string(), &from.display().to_string()),
            },
            other => other,
        })?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::Internal(format!("cannot fsync {}: {e}", tmp.display())))?;
        let replaced = if db.exists() {
            // The old database is never opened (it may be damaged, perhaps why it
            // is being restored, and a checkpoint would write into it): it moves
            // as it is, with its -wal and -shm under the matching new names, so
            // the pair still opens as the database it was.
            let stamp = now.format("%Y%m%dT%H%M%SZ");
            let mut kept = sidecar(db, &format!(".replaced-{stamp}"));
            let mut n = 1;
            while kept.exists() {
                kept = sidecar(db, &format!(".replaced-{stamp}-{n}"));
                n += 1;
            }
            // The log moves before the database: a -wal left beside a new
            // database file would be replayed into it.
            for s in ["-wal", "-shm"] {
                let side = sidecar(db, s);
                if side.exists() {
                    std::fs::rename(&side, sidecar(&kept, s)).map_err(|e| {
                        Error::Internal(format!("cannot move {}: {e}", side.display()))
                    })?;
                }
            }
            std::fs::rename(db, &kept)
                .map_err(|e| Error::Internal(format!("cannot move {} aside: {e}", db.display())))?;
            Some(kept.display().to_string())
        } else {
            for s in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(sidecar(db, s));
            }
            None
        };
        std::fs::rename(&tmp, db).map_err(|e| {
            Error::Internal(format!("cannot move the copy to {}: {e}", db.display()))
        })?;
        sync_dir(dir);
        Ok(RestoreReport {
            restored_from: from.display().to_string(),
            db: db.display().to_string(),
            replaced,
            schema_version: snap.schema_version,
            migrations_pending: latest.saturating_sub(snap.schema_version),
            rows: snap.rows(),
            tables: snap.tables,
        })
    })();
    if r.is_err() {
        remove_with_sidecars(&tmp);
    }
    drop(lock);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_time;

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    #[test]
    fn slots() {
        let every = |h| BackupConfig {
            every_hours: Some(h),
            ..BackupConfig::default()
        };
        let daily = |s: &str| BackupConfig {
            daily_utc: Some(s.into()),
            ..BackupConfig::default()
        };
        let cases: &[(BackupConfig, &str, Option<&str>)] = &[
            (BackupConfig::default(), "2026-12-02T05:10:00Z", None),
            (
                every(1),
                "2026-12-02T05:10:00Z",
                Some("2026-12-02T05:00:00Z"),
            ),
            (
                every(6),
                "2026-12-02T05:59:59Z",
                Some("2026-12-02T00:00:00Z"),
            ),
            (
                every(6),
                "2026-12-02T06:00:00Z",
                Some("2026-12-02T06:00:00Z"),
            ),
            (
                daily("03:30"),
                "2026-12-02T03:30:00Z",
                Some("2026-12-02T03:30:00Z"),
            ),
            (
                daily("03:30"),
                "2026-12-02T03:29:00Z",
                Some("2026-12-01T03:30:00Z"),
            ),
        ];
        for (cfg, now, want) in cases {
            assert_eq!(
                slot(cfg, t(now)).map(fmt_time),
                want.map(|w| fmt_time(t(w))),
                "{cfg:?} at {now}"
            );
        }
        assert_eq!(schedule_text(&every(6)), "every 6 h");
        assert_eq!(schedule_text(&daily("03:30")), "daily at 03:30 UTC");
    }

    #[test]
    fn names_and_retention() {
        let dir = tempfile::tempdir().unwrap();
        let now = t("2026-12-02T05:10:07Z");
        let mut made = Vec::new();
        for _ in 0..3 {
            let p = free_name(dir.path(), now);
            std::fs::write(&p, "x").unwrap();
            made.push(p.file_name().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(
            made,
            [
                "vaultline-20261202T051007Z.db",
                "vaultline-20261202T051007Z-1.db",
                "vaultline-20261202T051007Z-2.db"
            ]
        );
        std::fs::write(dir.path().join("vaultline-20261201T000000Z.db"), "old").unwrap();
        std::fs::write(dir.path().join("notes.db"), "not ours").unwrap();
        std::fs::write(dir.path().join("vaultline-latest.db"), "not ours").unwrap();
        let removed = prune(dir.path(), 2).unwrap();
        let removed: Vec<String> = removed
            .iter()
            .map(|p| {
                Path::new(p)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(
            removed,
            [
                "vaultline-20261201T000000Z.db",
                "vaultline-20261202T051007Z.db"
            ]
        );
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "notes.db",
                "vaultline-20261202T051007Z-1.db",
                "vaultline-20261202T051007Z-2.db",
                "vaultline-latest.db"
            ]
        );
        // The name retention freed is not reused: a fourth copy in the same
        // second must sort after the three before it, or the next prune would
        // remove the newest copy.
        assert_eq!(
            free_name(dir.path(), now).file_name().unwrap(),
            "vaultline-20261202T051007Z-3.db"
        );
    }

    #[test]
    fn serve_locks_share_and_restore_is_refused_under_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("v.db");
        let a = lock_shared(&db).unwrap();
        assert!(!a.shared_with_another);
        let b = lock_shared(&db).unwrap();
        assert!(b.shared_with_another, "a second server shares the file");
        let copy = dir.path().join("copy.db");
        std::fs::write(&copy, "whatever").unwrap();
        let err = restore(&db, &copy, 7, Utc::now()).unwrap_err().to_string();
        assert!(err.contains("server or command is using"), "{err}");
        drop((a, b));
        // While a restore holds the file, nothing that opens it starts.
        let (held, _) = lock_file(&db).unwrap();
        held.try_lock().unwrap();
        let err = lock_shared(&db).err().unwrap().to_string();
        assert!(err.contains("is being restored"), "{err}");
        drop(held);
        // Without servers the restore gets as far as checking the copy.
        let err = restore(&db, &copy, 7, Utc::now()).unwrap_err().to_string();
        assert!(err.contains("not an SQLite database"), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("restore"))
            .collect();
        assert!(left.is_empty(), "no temporary file left: {left:?}");
    }
}
