-- vaultline core schema: orgs, keys, the work record (workflows, tasks, stages),
-- checkpoints, decisions, transcripts (with FTS5 search), the audit trail and the
-- health canary. Every row belongs to an org; ids are ULIDs; times are RFC 3339
-- UTC text; money is integer nano-dollars (10^-9 USD).
-- Valid on Cloudflare D1 as well: plain DDL only, nothing engine-specific.

CREATE TABLE orgs (
  id TEXT PRIMARY KEY,
  created_at TEXT NOT NULL
);

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  org_id TEXT NOT NULL REFERENCES orgs(id),
  name TEXT,
  role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin', 'owner')),
  prefix TEXT NOT NULL UNIQUE,
  secret_sha256 TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT,
  revoked_at TEXT,
  rotated_from TEXT,
  last_used_at TEXT
);
CREATE INDEX api_keys_org ON api_keys(org_id, created_at);

CREATE TABLE workflows (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  id TEXT NOT NULL,
  title TEXT,
  task_type TEXT CHECK (task_type IN ('fix', 'feature', 'test', 'refactor', 'review', 'docs')),
  complexity TEXT CHECK (complexity IN ('trivial', 'simple', 'moderate', 'complex')),
  language TEXT,
  stack TEXT,
  domain TEXT,
  scope TEXT,
  is_greenfield INTEGER,
  has_tests INTEGER,
  description TEXT,
  spec TEXT,
  status TEXT NOT NULL CHECK (status IN ('open', 'in_progress', 'closed', 'cancelled')),
  final_model TEXT,
  first_attempt_success INTEGER,
  human_correction_needed INTEGER,
  quality_score REAL,
  consensus_type TEXT,
  consensus_result TEXT,
  models_used TEXT,
  cancel_reason TEXT,
  created_by TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  closed_at TEXT,
  PRIMARY KEY (org_id, id)
);
CREATE INDEX workflows_org_created ON workflows(org_id, created_at);
CREATE INDEX workflows_org_status ON workflows(org_id, status, created_at);

CREATE TABLE tasks (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  id TEXT NOT NULL,
  workflow_id TEXT,
  title TEXT NOT NULL,
  instruction TEXT,
  project TEXT NOT NULL,
  source TEXT,
  context TEXT,
  repo TEXT,
  paths TEXT,
  answer_schema TEXT,
  task_type TEXT CHECK (task_type IN ('fix', 'feature', 'test', 'refactor', 'review', 'docs')),
  complexity TEXT CHECK (complexity IN ('trivial', 'simple', 'moderate', 'complex')),
  language TEXT,
  stack TEXT,
  domain TEXT,
  status TEXT NOT NULL CHECK (status IN ('open', 'in_progress', 'needs_human', 'done', 'failed', 'cancelled')),
  answer TEXT,
  resolved_by TEXT,
  occurred_at TEXT,
  created_by TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  completed_at TEXT,
  PRIMARY KEY (org_id, id),
  FOREIGN KEY (org_id, workflow_id) REFERENCES workflows(org_id, id)
);
CREATE INDEX tasks_org_status ON tasks(org_id, status, created_at);
CREATE INDEX tasks_org_workflow ON tasks(org_id, workflow_id);
CREATE INDEX tasks_org_project ON tasks(org_id, project, created_at);

CREATE TABLE stages (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  id TEXT NOT NULL,
  workflow_id TEXT NOT NULL,
  task_id TEXT,
  name TEXT NOT NULL,
  stage_type TEXT,
  model TEXT,
  output TEXT,
  tokens_input INTEGER,
  tokens_output INTEGER,
  cost_nanos INTEGER NOT NULL DEFAULT 0,
  cost_self_reported INTEGER NOT NULL DEFAULT 0,
  latency_ms INTEGER,
  created_by TEXT,
  created_at TEXT NOT NULL,
  PRIMARY KEY (org_id, id),
  FOREIGN KEY (org_id, workflow_id) REFERENCES workflows(org_id, id),
  FOREIGN KEY (org_id, task_id) REFERENCES tasks(org_id, id)
);
CREATE INDEX stages_org_workflow ON stages(org_id, workflow_id, created_at);
CREATE INDEX stages_org_task ON stages(org_id, task_id);
CREATE INDEX stages_org_created ON stages(org_id, created_at);

CREATE TABLE checkpoints (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  id TEXT NOT NULL,
  content_sha256 TEXT NOT NULL,
  agent TEXT,
  project TEXT,
  objective TEXT,
  blockers TEXT NOT NULL,
  recent_actions TEXT NOT NULL,
  refs TEXT NOT NULL,
  state TEXT,
  content TEXT NOT NULL,
  created_by TEXT,
  created_at TEXT NOT NULL,
  last_saved_at TEXT NOT NULL,
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, content_sha256)
);
CREATE INDEX checkpoints_org_saved ON checkpoints(org_id, last_saved_at);
CREATE INDEX checkpoints_org_agent ON checkpoints(org_id, agent, last_saved_at);
CREATE INDEX checkpoints_org_project ON checkpoints(org_id, project, last_saved_at);

CREATE TABLE decisions (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  id TEXT NOT NULL,
  decision TEXT NOT NULL,
  rationale TEXT,
  task_id TEXT,
  workflow_id TEXT,
  agent TEXT,
  project TEXT,
  created_by TEXT,
  created_at TEXT NOT NULL,
  PRIMARY KEY (org_id, id)
);
CREATE INDEX decisions_org_created ON decisions(org_id, created_at);

CREATE TABLE transcripts (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  id TEXT NOT NULL,
  conversation_id TEXT NOT NULL,
  title TEXT,
  session_date TEXT,
  role TEXT NOT NULL,
  content TEXT NOT NULL,
  turn_number INTEGER NOT NULL,
  chunk_index INTEGER NOT NULL,
  is_branch INTEGER NOT NULL DEFAULT 0,
  parent_message_uuid TEXT,
  history_hash TEXT,
  created_by TEXT,
  created_at TEXT NOT NULL,
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, conversation_id, turn_number, chunk_index)
);
CREATE INDEX transcripts_org_date ON transcripts(org_id, session_date);

CREATE VIRTUAL TABLE decisions_fts USING fts5(
  decision, rationale, content='decisions', content_rowid='rowid'
);
CREATE TRIGGER decisions_fts_ai AFTER INSERT ON decisions BEGIN
  INSERT INTO decisions_fts(rowid, decision, rationale) VALUES (new.rowid, new.decision, new.rationale);
END;
CREATE TRIGGER decisions_fts_ad AFTER DELETE ON decisions BEGIN
  INSERT INTO decisions_fts(decisions_fts, rowid, decision, rationale) VALUES ('delete', old.rowid, old.decision, old.rationale);
END;
CREATE TRIGGER decisions_fts_au AFTER UPDATE ON decisions BEGIN
  INSERT INTO decisions_fts(decisions_fts, rowid, decision, rationale) VALUES ('delete', old.rowid, old.decision, old.rationale);
  INSERT INTO decisions_fts(rowid, decision, rationale) VALUES (new.rowid, new.decision, new.rationale);
END;

CREATE VIRTUAL TABLE transcripts_fts USING fts5(
  title, content, content='transcripts', content_rowid='rowid'
);
CREATE TRIGGER transcripts_fts_ai AFTER INSERT ON transcripts BEGIN
  INSERT INTO transcripts_fts(rowid, title, content) VALUES (new.rowid, new.title, new.content);
END;
CREATE TRIGGER transcripts_fts_ad AFTER DELETE ON transcripts BEGIN
  INSERT INTO transcripts_fts(transcripts_fts, rowid, title, content) VALUES ('delete', old.rowid, old.title, old.content);
END;
CREATE TRIGGER transcripts_fts_au AFTER UPDATE ON transcripts BEGIN
  INSERT INTO transcripts_fts(transcripts_fts, rowid, title, content) VALUES ('delete', old.rowid, old.title, old.content);
  INSERT INTO transcripts_fts(rowid, title, content) VALUES (new.rowid, new.title, new.content);
END;

CREATE TABLE audit_log (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  id TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  subject TEXT,
  detail TEXT,
  created_at TEXT NOT NULL,
  PRIMARY KEY (org_id, id)
);

CREATE TABLE canary (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  id TEXT NOT NULL,
  written_at TEXT NOT NULL,
  PRIMARY KEY (org_id, id)
);
