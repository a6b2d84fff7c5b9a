-- Imports from vault-mcp (`vaultline import`): one row per source row, keyed by
-- its source, table and id, holding the source row (as JSON) and the SHA-256 of
-- its canonical JSON. A second import of the same file finds every row here
-- and adds nothing; a row whose id is here with another hash is a conflict and
-- refuses the import. It is also the home of what vaultline's schema has no
-- column for: circuit_breaker and model_stats rows, tool_calls, a task's
-- running totals (total_attempts, total_cost_usd, total_latency_ms) and a
-- checkpoint's trigger_signals and cumulative_weight.
CREATE TABLE import_records (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  source TEXT NOT NULL,
  source_table TEXT NOT NULL,
  source_id TEXT NOT NULL,
  content_sha256 TEXT NOT NULL,
  row_json TEXT NOT NULL,
  lands_in TEXT NOT NULL,
  imported_at TEXT NOT NULL,
  PRIMARY KEY (org_id, source, source_table, source_id)
);
