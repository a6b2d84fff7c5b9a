//! Store verbs for alerts (raised once per org, kind, subject and period, by the
//! `alerts` table's unique index) and scheduler leases (so that several
//! processes on one database file run a scheduled job once per period).

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::Store;
use crate::error::Result;

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRecord {
    pub org_id: String,
    pub id: String,
    pub kind: String,
    pub subject: String,
    pub period_key: String,
    pub message: String,
    pub created_at: String,
}

/// A lease row as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub expires_at: String,
    pub last_run_key: Option<String>,
}

impl Store {
    /// Records an alert unless the same (org, kind, subject, period) exists.
    /// Returns whether this call raised it.
    pub async fn alert_insert(&self, a: AlertRecord) -> Result<bool> {
        self.write(move |c| {
            let n = c.execute(
                "INSERT INTO alerts (org_id, id, kind, subject, period_key, message, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                params![
                    a.org_id,
                    a.id,
                    a.kind,
                    a.subject,
                    a.period_key,
                    a.message,
                    a.created_at
                ],
            )?;
            Ok(n == 1)
        })
        .await
    }

    /// The org's alerts, newest first.
    pub async fn alerts_list(&self, org: &str, limit: u32) -> Result<Vec<AlertRecord>> {
        let o = org.to_string();
        self.read_cancellable(None, move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT org_id, id, kind, subject, period_key, message, created_at FROM alerts
                     WHERE org_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2",
                )?
                .query_map(params![o, limit], |r| {
                    Ok(AlertRecord {
                        org_id: r.get(0)?,
                        id: r.get(1)?,
                        kind: r.get(2)?,
                        subject: r.get(3)?,
                        period_key: r.get(4)?,
                        message: r.get(5)?,
                        created_at: r.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// The lease row of a job, if any.
    pub async fn lease_get(&self, name: &str) -> Result<Option<Lease>> {
        let n = name.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT holder, expires_at, last_run_key FROM leases WHERE name = ?1",
            )?
            .query_row([&n], |r| {
                Ok(Lease {
                    holder: r.get(0)?,
                    expires_at: r.get(1)?,
                    last_run_key: r.get(2)?,
                })
            })
            .optional()?)
        })
        .await
    }

    /// Takes the lease of job `name` for the period `run_key` until `expires_at`.
    /// Succeeds only when the job has not completed that period and no other
    /// holder's lease is live at `now`.
    pub async fn lease_acquire(
        &self,
        name: &str,
        holder: &str,
        run_key: &str,
        now: &str,
        expires_at: &str,
    ) -> Result<bool> {
        let (n, h, k, now, exp) = (
            name.to_string(),
            holder.to_string(),
            run_key.to_string(),
            now.to_string(),
            expires_at.to_string(),
        );
        self.write(move |c| {
            let changed = c.execute(
                "INSERT INTO leases (name, holder, expires_at, last_run_key) VALUES (?1, ?2, ?5, NULL)
                 ON CONFLICT(name) DO UPDATE SET holder = ?2, expires_at = ?5
                 WHERE (leases.last_run_key IS NULL OR leases.last_run_key <> ?3)
                   AND (leases.holder = ?2 OR leases.expires_at <= ?4)",
                params![n, h, k, now, exp],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    /// Marks period `run_key` of job `name` done and releases the lease, if
    /// `holder` still holds it; returns whether it did.
    pub async fn lease_finish(
        &self,
        name: &str,
        holder: &str,
        run_key: &str,
        now: &str,
    ) -> Result<bool> {
        let (n, h, k, now) = (
            name.to_string(),
            holder.to_string(),
            run_key.to_string(),
            now.to_string(),
        );
        self.write(move |c| {
            let changed = c.execute(
                "UPDATE leases SET last_run_key = ?3, expires_at = ?4 WHERE name = ?1 AND holder = ?2",
                params![n, h, k, now],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    /// Records period `run_key` of job `name` as done, whoever holds the lease
    /// (an operator ran the job by hand).
    pub async fn lease_mark_done(
        &self,
        name: &str,
        holder: &str,
        run_key: &str,
        now: &str,
    ) -> Result<()> {
        let (n, h, k, now) = (
            name.to_string(),
            holder.to_string(),
            run_key.to_string(),
            now.to_string(),
        );
        self.write(move |c| {
            c.execute(
                "INSERT INTO leases (name, holder, expires_at, last_run_key) VALUES (?1, ?2, ?4, ?3)
                 ON CONFLICT(name) DO UPDATE SET last_run_key = ?3
                 WHERE leases.last_run_key IS NULL OR leases.last_run_key < ?3",
                params![n, h, k, now],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Synchronous;

    #[tokio::test]
    async fn alerts_are_raised_once_per_period() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("a.db"), Synchronous::Normal).unwrap();
        let alert = |id: &str, org: &str, period: &str| AlertRecord {
            org_id: org.into(),
            id: id.into(),
            kind: "quota_warning".into(),
            subject: "acct".into(),
            period_key: period.into(),
            message: "80 %".into(),
            created_at: "2026-11-24T00:00:00.000Z".into(),
        };
        assert!(s.alert_insert(alert("1", "a", "2026-11-24")).await.unwrap());
        assert!(!s.alert_insert(alert("2", "a", "2026-11-24")).await.unwrap());
        assert!(s.alert_insert(alert("3", "a", "2026-11-25")).await.unwrap());
        assert!(s.alert_insert(alert("4", "b", "2026-11-24")).await.unwrap());
        assert_eq!(s.alerts_list("a", 10).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn leases_run_a_period_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("l.db"), Synchronous::Normal).unwrap();
        let (t0, t0_exp, t1) = (
            "2026-11-24T02:00:00.000Z",
            "2026-11-24T02:10:00.000Z",
            "2026-11-24T02:20:00.000Z",
        );
        assert!(
            s.lease_acquire("job", "p1", "2026-11-24", t0, t0_exp)
                .await
                .unwrap()
        );
        assert!(
            !s.lease_acquire("job", "p2", "2026-11-24", t0, t0_exp)
                .await
                .unwrap(),
            "held by p1"
        );
        // p1 died; its lease expired; p2 takes over.
        assert!(
            s.lease_acquire("job", "p2", "2026-11-24", t1, "2026-11-24T02:30:00.000Z")
                .await
                .unwrap()
        );
        assert!(
            !s.lease_finish("job", "p1", "2026-11-24", t1).await.unwrap(),
            "p1 lost it"
        );
        assert!(s.lease_finish("job", "p2", "2026-11-24", t1).await.unwrap());
        assert!(
            !s.lease_acquire("job", "p1", "2026-11-24", t1, t0_exp)
                .await
                .unwrap(),
            "done for the day"
        );
        assert_eq!(
            s.lease_get("job")
                .await
                .unwrap()
                .unwrap()
                .last_run_key
                .as_deref(),
            Some("2026-11-24")
        );
        assert!(
            s.lease_acquire("job", "p1", "2026-11-25", t1, t0_exp)
                .await
                .unwrap(),
            "next day"
        );
        s.lease_mark_done("job", "cli", "2026-11-25", t1)
            .await
            .unwrap();
        assert!(
            !s.lease_acquire("job", "p3", "2026-11-25", "2026-11-26T00:00:00.000Z", "x")
                .await
                .unwrap()
        );
        s.lease_mark_done("other", "cli", "2026-11-25", t1)
            .await
            .unwrap();
        assert_eq!(
            s.lease_get("other")
                .await
                .unwrap()
                .unwrap()
                .last_run_key
                .as_deref(),
            Some("2026-11-25")
        );
    }
}
