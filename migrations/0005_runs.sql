-- execute: runs of the dispatch ladder, and attempts as stage rows.
--
-- A run sends one task up the ladder. Its attempts are stages of the task
-- (one row per provider call, and one per skipped rung) with the rung, the
-- account, the outcome and the failure class. A run that was `running` when
-- its process died is marked `interrupted` (its heartbeat stops), never left
-- running forever.

CREATE TABLE runs (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  id TEXT NOT NULL,
  task_id TEXT NOT NULL,
  workflow_id TEXT NOT NULL,
  key_id TEXT NOT NULL,
  -- A retry of `execute run` with the same key returns this run.
  idempotency_key TEXT,
  -- SHA-256 of the run's request (task, pins, verbosity aside), to refuse a
  -- reused idempotency key with a different request.
  request_sha256 TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'needs_human', 'cancelled', 'interrupted')),
  detached INTEGER NOT NULL DEFAULT 0,
  -- The run made the workflow to hold a task that had none: the run closes it
  -- with its close record, so the chooser learns from runs.
  owns_workflow INTEGER NOT NULL DEFAULT 0,
  start_rung TEXT,
  -- Why the run started where it did (pin, chooser with its scores, rules).
  start_reason TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  quality_failures INTEGER NOT NULL DEFAULT 0,
  cost_nanos INTEGER NOT NULL DEFAULT 0,
  billed_nanos INTEGER NOT NULL DEFAULT 0,
  final_rung TEXT,
  final_model TEXT,
  -- consensus: the agreement reached, as JSON ({"agreed": n, "of": k}).
  consensus TEXT,
  answer TEXT,
  -- Why the run ended as it did (the terminal reason, or what failed).
  reason TEXT,
  holder TEXT NOT NULL,
  heartbeat_at TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  finished_at TEXT,
  PRIMARY KEY (org_id, id),
  FOREIGN KEY (org_id, task_id) REFERENCES tasks(org_id, id)
);
CREATE UNIQUE INDEX runs_idempotency ON runs(org_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_task ON runs(org_id, task_id, created_at);
CREATE INDEX runs_running ON runs(heartbeat_at) WHERE state = 'running';

ALTER TABLE stages ADD COLUMN run_id TEXT;
ALTER TABLE stages ADD COLUMN attempt INTEGER;
ALTER TABLE stages ADD COLUMN rung TEXT;
ALTER TABLE stages ADD COLUMN provider TEXT;
ALTER TABLE stages ADD COLUMN account_id TEXT;
-- ok, quality, infra, terminal, skipped
ALTER TABLE stages ADD COLUMN outcome TEXT;
-- timeout, connect, rate_limited, server, auth, rejected, malformed, cancelled,
-- empty, refusal, schema, verifier, no_account, budget, breaker, policy
ALTER TABLE stages ADD COLUMN failure_kind TEXT;
ALTER TABLE stages ADD COLUMN error TEXT;
ALTER TABLE stages ADD COLUMN usage_id TEXT;
CREATE INDEX stages_org_run ON stages(org_id, run_id, attempt) WHERE run_id IS NOT NULL;
