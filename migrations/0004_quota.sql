-- Quota accounts: several provider accounts (API keys, subscription seats) per
-- provider, each with a limit over a window, and manual usage for what the server
-- cannot observe. Usage the server observes lives in usage_records (0003) and is
-- joined by account_id; alerts and scheduler leases are the 0003 tables.
-- Secrets are never stored: secret_ref names where one lives (env:NAME, file:PATH).
-- Valid on Cloudflare D1: plain DDL only.

CREATE TABLE quota_accounts (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  id TEXT NOT NULL,
  provider TEXT NOT NULL,
  name TEXT NOT NULL,
  billing_mode TEXT NOT NULL CHECK (billing_mode IN ('seat', 'metered')),
  secret_ref TEXT NOT NULL,
  limit_kind TEXT NOT NULL CHECK (limit_kind IN ('requests', 'tokens', 'usd_nanos')),
  limit_value INTEGER NOT NULL CHECK (limit_value > 0),
  window_kind TEXT NOT NULL CHECK (window_kind IN ('day', 'month', 'rolling')),
  -- Rolling windows only: the length in minutes (a 5-hour seat window is 300,
  -- a weekly one 10080).
  window_minutes INTEGER CHECK (window_minutes IS NULL OR window_minutes > 0),
  token_expires_at TEXT,
  refresh_at TEXT,
  rotated_at TEXT,
  -- Set by the ladder after an infra failure; the account is skipped until then.
  cooldown_until TEXT,
  last_used_at TEXT,
  -- What the provider last reported (rate-limit headers, a CLI's usage line).
  reported_used INTEGER,
  reported_limit INTEGER,
  reported_used_percent REAL,
  reported_reset_at TEXT,
  reported_at TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  -- Soft remove: usage history keeps pointing at the account.
  removed_at TEXT,
  PRIMARY KEY (org_id, id),
  CHECK ((window_kind = 'rolling') = (window_minutes IS NOT NULL))
);
-- A live account's name is unique per org and provider; a removed name may be reused.
CREATE UNIQUE INDEX quota_accounts_name ON quota_accounts(org_id, provider, name) WHERE removed_at IS NULL;

-- Manual usage (subscription seats and other accounts the server cannot observe).
CREATE TABLE quota_usage (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  id TEXT NOT NULL,
  account_id TEXT NOT NULL,
  requests INTEGER NOT NULL CHECK (requests >= 0),
  tokens INTEGER NOT NULL CHECK (tokens >= 0),
  usd_nanos INTEGER NOT NULL CHECK (usd_nanos >= 0),
  note TEXT,
  actor TEXT NOT NULL,
  idempotency_key TEXT,
  created_at TEXT NOT NULL,
  PRIMARY KEY (org_id, id),
  FOREIGN KEY (org_id, account_id) REFERENCES quota_accounts(org_id, id)
);
CREATE INDEX quota_usage_account ON quota_usage(org_id, account_id, created_at);
CREATE UNIQUE INDEX quota_usage_idem ON quota_usage(org_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
