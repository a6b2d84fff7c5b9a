-- The billing account of each org and its append-only credit ledger.
-- Money is integer nano-dollars (1 credit = $0.001 = 1,000,000 nanos).
-- Entries are never updated or deleted (triggers refuse it); the balance is the
-- sum of the entries. Each entry has an idempotency key, unique per org, so the
-- same top-up or charge applied twice lands once.

CREATE TABLE billing_accounts (
  org_id TEXT PRIMARY KEY REFERENCES orgs(id),
  markup_bp INTEGER NOT NULL DEFAULT 20000 CHECK (markup_bp >= 10000),
  mode TEXT NOT NULL DEFAULT 'postpaid' CHECK (mode IN ('prepaid', 'postpaid')),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

CREATE TABLE credit_ledger (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  id TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('topup', 'charge', 'refund', 'adjustment')),
  amount_nanos INTEGER NOT NULL,
  reason TEXT NOT NULL,
  source_system TEXT,
  source_reference TEXT,
  usage_id TEXT,
  actor TEXT NOT NULL,
  note TEXT,
  created_at TEXT NOT NULL,
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, idempotency_key),
  CHECK ((kind IN ('topup', 'refund') AND amount_nanos > 0)
      OR (kind = 'charge' AND amount_nanos <= 0)
      OR kind = 'adjustment')
);
CREATE INDEX credit_ledger_org_created ON credit_ledger(org_id, created_at);
CREATE UNIQUE INDEX credit_ledger_charge_source ON credit_ledger(org_id, source_system, source_reference)
  WHERE kind = 'charge';

CREATE TRIGGER credit_ledger_no_update BEFORE UPDATE ON credit_ledger BEGIN
  SELECT RAISE(ABORT, 'credit_ledger is append-only');
END;
CREATE TRIGGER credit_ledger_no_delete BEFORE DELETE ON credit_ledger BEGIN
  SELECT RAISE(ABORT, 'credit_ledger is append-only');
END;
