//! Store verbs for orgs, API keys and the audit trail.

use rusqlite::{OptionalExtension, Row};
use serde::Serialize;

use super::Store;
use crate::error::{Error, Result};

/// A key row, without anything secret beyond the digest (which never leaves the process).
#[derive(Debug, Clone, Serialize)]
pub struct KeyRecord {
    pub id: String,
    pub org_id: String,
    pub name: Option<String>,
    pub role: String,
    pub prefix: String,
    #[serde(skip)]
    pub secret_sha256: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub rotated_from: Option<String>,
    pub last_used_at: Option<String>,
}

fn key_row(r: &Row<'_>) -> rusqlite::Result<KeyRecord> {
    Ok(KeyRecord {
        id: r.get(0)?,
        org_id: r.get(1)?,
        name: r.get(2)?,
        role: r.get(3)?,
        prefix: r.get(4)?,
        secret_sha256: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        revoked_at: r.get(8)?,
        rotated_from: r.get(9)?,
        last_used_at: r.get(10)?,
    })
}

const KEY_COLS: &str = "id, org_id, name, role, prefix, secret_sha256, created_at, expires_at, revoked_at, rotated_from, last_used_at";

/// A new key to insert.
pub struct KeyInsert {
    pub id: String,
    pub org_id: String,
    pub name: Option<String>,
    pub role: String,
    pub prefix: String,
    pub secret_sha256: String,
    pub created_at: String,
}

/// One audit entry.
pub struct AuditEntry {
    pub org_id: String,
    pub id: String,
    pub actor: String,
    pub action: String,
    pub subject: Option<String>,
    pub detail: Option<String>,
    pub created_at: String,
}

pub(super) fn insert_audit(c: &rusqlite::Connection, a: &AuditEntry) -> Result<()> {
    c.execute(
        "INSERT INTO audit_log (org_id, id, actor, action, subject, detail, created_at) VALUES (?1,?2,?3,?4,?5,?6,?7)",
        (&a.org_id, &a.id, &a.actor, &a.action, &a.subject, &a.detail, &a.created_at),
    )?;
    Ok(())
}

fn org_exists(c: &rusqlite::Connection, org: &str) -> Result<bool> {
    Ok(
        c.query_row("SELECT 1 FROM orgs WHERE id = ?1", [org], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

impl Store {
    /// Creates the org if it does not exist.
    pub async fn ensure_org(&self, org: &str, now: &str) -> Result<()> {
        let (o, n) = (org.to_string(), now.to_string());
        self.write(move |c| {
            c.execute(
                "INSERT INTO orgs (id, created_at) VALUES (?1, ?2) ON CONFLICT(id) DO NOTHING",
                (&o, &n),
            )?;
            Ok(())
        })
        .await
    }

    /// Creates an org; refuses one that exists.
    pub async fn create_org(&self, org: &str, now: &str) -> Result<()> {
        let (o, n) = (org.to_string(), now.to_string());
        self.write(move |c| {
            if org_exists(c, &o)? {
                return Err(Error::Conflict(format!("org {o:?} already exists")));
            }
            c.execute(
                "INSERT INTO orgs (id, created_at) VALUES (?1, ?2)",
                (&o, &n),
            )?;
            Ok(())
        })
        .await
    }

    /// Every org with its creation time and count of live keys.
    pub async fn list_orgs(&self) -> Result<Vec<(String, String, i64)>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT o.id, o.created_at, (SELECT count(*) FROM api_keys k WHERE k.org_id = o.id AND k.revoked_at IS NULL)
                 FROM orgs o ORDER BY o.id",
            )?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Inserts a key, with its audit entry, in one transaction.
    pub async fn insert_key(&self, k: KeyInsert, audit: AuditEntry) -> Result<()> {
        self.write(move |c| {
            if !org_exists(c, &k.org_id)? {
                return Err(Error::not_found("org", &k.org_id));
            }
            c.execute(
                "INSERT INTO api_keys (id, org_id, name, role, prefix, secret_sha256, created_at) VALUES (?1,?2,?3,?4,?5,?6,?7)",
                (&k.id, &k.org_id, &k.name, &k.role, &k.prefix, &k.secret_sha256, &k.created_at),
            )?;
            insert_audit(c, &audit)
        })
        .await
    }

    pub async fn key_by_prefix(&self, prefix: &str) -> Result<Option<KeyRecord>> {
        let p = prefix.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {KEY_COLS} FROM api_keys WHERE prefix = ?1"
            ))?
            .query_row([&p], key_row)
            .optional()?)
        })
        .await
    }

    pub async fn key_by_id(&self, id: &str) -> Result<Option<KeyRecord>> {
        let i = id.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {KEY_COLS} FROM api_keys WHERE id = ?1"),
                [&i],
                key_row,
            )
            .optional()?)
        })
        .await
    }

    /// Keys of one org, or of all orgs.
    pub async fn list_keys(&self, org: Option<&str>) -> Result<Vec<KeyRecord>> {
        let o = org.map(str::to_string);
        self.read(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {KEY_COLS} FROM api_keys WHERE (?1 IS NULL OR org_id = ?1) ORDER BY org_id, created_at"
            ))?;
            let rows = st.query_map([&o], key_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Revokes a key at once.
    pub async fn revoke_key(&self, id: &str, now: &str, audit: AuditEntry) -> Result<()> {
        let (i, n) = (id.to_string(), now.to_string());
        self.write(move |c| {
            let changed = c.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                (&i, &n),
            )?;
            if changed == 0 {
                return Err(Error::not_found("live key", &i));
            }
            insert_audit(c, &audit)
        })
        .await
    }

    /// Rotates: inserts the new key and sets the old one's expiry (the grace end).
    pub async fn rotate_key(
        &self,
        old_id: &str,
        new: KeyInsert,
        grace_end: &str,
        audit: AuditEntry,
    ) -> Result<()> {
        let (old, g) = (old_id.to_string(), grace_end.to_string());
        self.write(move |c| {
            let changed = c.execute(
                "UPDATE api_keys SET expires_at = CASE WHEN expires_at IS NULL OR expires_at > ?2 THEN ?2 ELSE expires_at END
                 WHERE id = ?1 AND revoked_at IS NULL",
                (&old, &g),
            )?;
            if changed == 0 {
                return Err(Error::not_found("live key", &old));
            }
            c.execute(
                "INSERT INTO api_keys (id, org_id, name, role, prefix, secret_sha256, created_at, rotated_from) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
                (&new.id, &new.org_id, &new.name, &new.role, &new.prefix, &new.secret_sha256, &new.created_at, &old),
            )?;
            insert_audit(c, &audit)
        })
        .await
    }

    pub async fn touch_key(&self, id: &str, now: &str) -> Result<()> {
        let (i, n) = (id.to_string(), now.to_string());
        self.write(move |c| {
            c.execute(
                "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1",
                (&i, &n),
            )?;
            Ok(())
        })
        .await
    }
}

/// One audit entry as read back.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub org_id: String,
    pub id: String,
    pub actor: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub created_at: String,
}

impl Store {
    /// Audit entries, oldest first, of one org or of all orgs.
    pub async fn audit_list(&self, org: Option<&str>, limit: u32) -> Result<Vec<AuditRecord>> {
        let o = org.map(str::to_string);
        self.read_cancellable(None, move |c| {
            let mut st = c.prepare(
                "SELECT org_id, id, actor, action, subject, detail, created_at FROM audit_log
                 WHERE (?1 IS NULL OR org_id = ?1) ORDER BY created_at, id LIMIT ?2",
            )?;
            let rows = st
                .query_map(rusqlite::params![o, limit], |r| {
                    Ok(AuditRecord {
                        org_id: r.get(0)?,
                        id: r.get(1)?,
                        actor: r.get(2)?,
                        action: r.get(3)?,
                        subject: r.get(4)?,
                        detail: r.get(5)?,
                        created_at: r.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}
