-- Backups taken by `vaultline backup` or the in-process schedule, good and failed;
-- `health status` shows the newest good one. A backup copies the whole file, so
-- these rows belong to no org.
CREATE TABLE backups (
  id TEXT PRIMARY KEY,
  source TEXT NOT NULL,
  started_at TEXT NOT NULL,
  finished_at TEXT NOT NULL,
  ok INTEGER NOT NULL,
  path TEXT,
  bytes INTEGER,
  tables_count INTEGER,
  rows_count INTEGER,
  schema_version INTEGER,
  error TEXT
);
CREATE INDEX backups_ok_finished ON backups (ok, finished_at);
