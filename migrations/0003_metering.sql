-- Metering: price rows, usage records and their hourly rollup, run units,
-- budgets, reservations, breaker resets, alerts and scheduler leases.
-- Money is integer nano-dollars. Usage records point at the price row they used,
-- so a later price never rewrites history.

-- Price rows are global (list prices are not org data). The id is derived from
-- the row's content, so the same price always has the same id.
CREATE TABLE price_rows (
  id TEXT PRIMARY KEY,
  provider TEXT NOT NULL,
  model TEXT NOT NULL,
  effective_from TEXT NOT NULL,
  input_nanos_per_mtok INTEGER NOT NULL CHECK (input_nanos_per_mtok >= 0),
  output_nanos_per_mtok INTEGER NOT NULL CHECK (output_nanos_per_mtok >= 0),
  cache_read_nanos_per_mtok INTEGER CHECK (cache_read_nanos_per_mtok >= 0),
  cache_write_nanos_per_mtok INTEGER CHECK (cache_write_nanos_per_mtok >= 0),
  source TEXT NOT NULL
);

-- One row per model call (reason llm_call) or priced tool call (tool_call).
-- (source_system, source_reference) names the call; it is unique, so a call is
-- recorded once however often the caller retries.
CREATE TABLE usage_records (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  id TEXT NOT NULL,
  key_id TEXT NOT NULL,
  workflow_id TEXT,
  task_id TEXT,
  stage_id TEXT,
  reason TEXT NOT NULL CHECK (reason IN ('llm_call', 'tool_call')),
  tool TEXT,
  provider TEXT NOT NULL,
  model TEXT NOT NULL,
  account_id TEXT,
  billing_mode TEXT NOT NULL CHECK (billing_mode IN ('metered', 'seat', 'self_reported')),
  tokens_in INTEGER NOT NULL CHECK (tokens_in >= 0),
  tokens_out INTEGER NOT NULL CHECK (tokens_out >= 0),
  tokens_cache_read INTEGER NOT NULL CHECK (tokens_cache_read >= 0),
  tokens_cache_write INTEGER NOT NULL CHECK (tokens_cache_write >= 0),
  cost_nanos INTEGER NOT NULL CHECK (cost_nanos >= 0),
  billed_nanos INTEGER NOT NULL CHECK (billed_nanos >= 0),
  -- priced (from price_id), provider (the provider reported the cost),
  -- missing (no usage and no cost: recorded at 0 and flagged), seat, self_reported.
  cost_source TEXT NOT NULL CHECK (cost_source IN ('priced', 'provider', 'missing', 'seat', 'self_reported')),
  price_id TEXT REFERENCES price_rows(id),
  latency_ms INTEGER NOT NULL CHECK (latency_ms >= 0),
  outcome TEXT NOT NULL,
  source_system TEXT NOT NULL,
  source_reference TEXT NOT NULL,
  created_at TEXT NOT NULL,
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, source_system, source_reference)
);
CREATE INDEX usage_records_task ON usage_records(org_id, task_id) WHERE task_id IS NOT NULL;
CREATE INDEX usage_records_account ON usage_records(org_id, account_id, created_at) WHERE account_id IS NOT NULL;

-- Hourly sums of usage_records per dimension, written in the same transaction
-- as the record: the usage query and the breaker read these, never a full scan.
-- hour is 'YYYY-MM-DDTHH' (UTC).
CREATE TABLE usage_hourly (
  org_id TEXT NOT NULL,
  dim TEXT NOT NULL CHECK (dim IN ('model', 'key', 'workflow', 'tool')),
  hour TEXT NOT NULL,
  value TEXT NOT NULL,
  calls INTEGER NOT NULL,
  tokens_in INTEGER NOT NULL,
  tokens_out INTEGER NOT NULL,
  tokens_cached INTEGER NOT NULL,
  cost_nanos INTEGER NOT NULL,
  billed_nanos INTEGER NOT NULL,
  PRIMARY KEY (org_id, dim, hour, value)
) WITHOUT ROWID;

-- Run units: every tool call counted per org, key, tool and hour (fail-open,
-- flushed from memory in batches).
CREATE TABLE run_units (
  org_id TEXT NOT NULL,
  hour TEXT NOT NULL,
  key_id TEXT NOT NULL,
  tool TEXT NOT NULL,
  calls INTEGER NOT NULL,
  errors INTEGER NOT NULL,
  PRIMARY KEY (org_id, hour, key_id, tool)
) WITHOUT ROWID;

-- Ledger pages are read newest first along the primary key (ids are ULIDs,
-- so id order is time order); the (org, created_at) index only cost every
-- charge one more b-tree insert.
DROP INDEX credit_ledger_org_created;

-- The ledger balance per org, kept by a trigger from the append-only entries
-- (the sum of the entries stays the truth; tests compare the two).
CREATE TABLE ledger_balances (
  org_id TEXT PRIMARY KEY REFERENCES orgs(id),
  balance_nanos INTEGER NOT NULL,
  entries INTEGER NOT NULL
);
INSERT INTO ledger_balances (org_id, balance_nanos, entries)
  SELECT org_id, sum(amount_nanos), count(*) FROM credit_ledger GROUP BY org_id;
CREATE TRIGGER credit_ledger_balance AFTER INSERT ON credit_ledger BEGIN
  INSERT INTO ledger_balances (org_id, balance_nanos, entries) VALUES (NEW.org_id, NEW.amount_nanos, 1)
  ON CONFLICT(org_id) DO UPDATE SET balance_nanos = balance_nanos + NEW.amount_nanos, entries = entries + 1;
END;

-- Budgets in billed nano-dollars: per org (day, month), per key (day, month,
-- total) and per task (total). scope_id is '' for the org scope.
CREATE TABLE budgets (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  scope TEXT NOT NULL CHECK (scope IN ('org', 'key', 'task')),
  scope_id TEXT NOT NULL,
  period TEXT NOT NULL CHECK (period IN ('day', 'month', 'total')),
  limit_nanos INTEGER NOT NULL CHECK (limit_nanos >= 0),
  updated_by TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (org_id, scope, scope_id, period)
);

-- Spending reservations: made before a call for its worst-case cost, settled
-- with the real cost after it, kept alive by heartbeats, expired when the
-- holder died. Only open reservations count against limits.
CREATE TABLE reservations (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  id TEXT NOT NULL,
  key_id TEXT NOT NULL,
  workflow_id TEXT,
  task_id TEXT,
  holder TEXT NOT NULL,
  cost_nanos INTEGER NOT NULL CHECK (cost_nanos >= 0),
  billed_nanos INTEGER NOT NULL CHECK (billed_nanos >= 0),
  state TEXT NOT NULL CHECK (state IN ('open', 'settled', 'released', 'expired')),
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  closed_at TEXT,
  usage_id TEXT,
  PRIMARY KEY (org_id, id)
);
CREATE INDEX reservations_open ON reservations(org_id, state, expires_at);

-- An admin's breaker reset: overrides a halt until the window ends (scope day
-- or month, period_key '2026-11-24' / '2026-11'), or for one task (period_key
-- = the task id). Spend is kept.
CREATE TABLE breaker_resets (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  scope TEXT NOT NULL CHECK (scope IN ('day', 'month', 'task')),
  period_key TEXT NOT NULL,
  actor TEXT NOT NULL,
  note TEXT,
  created_at TEXT NOT NULL,
  PRIMARY KEY (org_id, scope, period_key)
);

-- Alerts raised (breaker, quota, backup, audit), once per subject and period.
CREATE TABLE alerts (
  org_id TEXT NOT NULL,
  id TEXT NOT NULL,
  kind TEXT NOT NULL,
  subject TEXT NOT NULL,
  period_key TEXT NOT NULL,
  message TEXT NOT NULL,
  created_at TEXT NOT NULL,
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, kind, subject, period_key)
);

-- Scheduler leases: several processes on one file run a scheduled job once.
-- last_run_key is the period the job last completed (a date for the audit).
CREATE TABLE leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  last_run_key TEXT
);
