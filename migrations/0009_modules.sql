-- Modules: tools added at run time from validated manifests (issue 5).
-- A module has at most one draft (editable), any number of promoted versions
-- (immutable: canonical bundle bytes, their SHA-256 and an attestation), and an
-- active pointer that install, rollback and uninstall move. Every lifecycle
-- step is a row in module_audit, which is append-only.
CREATE TABLE modules (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  id TEXT NOT NULL,
  namespace TEXT NOT NULL,
  active_version TEXT,
  active_sha256 TEXT,
  created_at TEXT NOT NULL,
  created_by TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (org_id, id)
);

CREATE TABLE module_drafts (
  org_id TEXT NOT NULL,
  module_id TEXT NOT NULL,
  manifest TEXT NOT NULL,
  report TEXT,
  validated_sha256 TEXT,
  updated_at TEXT NOT NULL,
  updated_by TEXT NOT NULL,
  PRIMARY KEY (org_id, module_id),
  FOREIGN KEY (org_id, module_id) REFERENCES modules(org_id, id)
);

CREATE TABLE module_versions (
  org_id TEXT NOT NULL,
  module_id TEXT NOT NULL,
  version TEXT NOT NULL,
  bundle BLOB NOT NULL,
  sha256 TEXT NOT NULL,
  attestation TEXT,
  promoted_by TEXT NOT NULL,
  promoted_at TEXT NOT NULL,
  PRIMARY KEY (org_id, module_id, version),
  FOREIGN KEY (org_id, module_id) REFERENCES modules(org_id, id)
);
CREATE TRIGGER module_versions_immutable BEFORE UPDATE ON module_versions BEGIN
  SELECT RAISE(ABORT, 'module versions are immutable');
END;
CREATE TRIGGER module_versions_kept BEFORE DELETE ON module_versions BEGIN
  SELECT RAISE(ABORT, 'module versions are never deleted');
END;

CREATE TABLE module_audit (
  org_id TEXT NOT NULL,
  id TEXT NOT NULL,
  module_id TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  version TEXT,
  sha256 TEXT,
  detail TEXT,
  created_at TEXT NOT NULL,
  PRIMARY KEY (org_id, id)
);
CREATE INDEX module_audit_by_module ON module_audit (org_id, module_id, id);
CREATE TRIGGER module_audit_no_update BEFORE UPDATE ON module_audit BEGIN
  SELECT RAISE(ABORT, 'module_audit is append-only');
END;
CREATE TRIGGER module_audit_no_delete BEFORE DELETE ON module_audit BEGIN
  SELECT RAISE(ABORT, 'module_audit is append-only');
END;
