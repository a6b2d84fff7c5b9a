//! Store verbs for billing accounts and the credit ledger. Appends are idempotent:
//! a replay of the same idempotency key with the same content returns the first
//! entry; the same key with other content is refused. The table's triggers refuse
//! every UPDATE and DELETE, so the ledger stays append-only whatever the caller.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Store;
use crate::error::{Error, Result};
use crate::metering::ledger::{Entry, NewEntry};

/// An org's billing account; defaults when none was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingAccount {
    pub org_id: String,
    pub markup_bp: u32,
    pub prepaid: bool,
}

const ENTRY_COLS: &str = "id, idempotency_key, kind, amount_nanos, reason, source_system, source_reference, usage_id, actor, note, created_at";

fn entry_row(r: &Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: r.get(0)?,
        idempotency_key: r.get(1)?,
        kind: r.get(2)?,
        amount_nanos: r.get(3)?,
        reason: r.get(4)?,
        source_system: r.get(5)?,
        source_reference: r.get(6)?,
        usage_id: r.get(7)?,
        actor: r.get(8)?,
        note: r.get(9)?,
        created_at: r.get(10)?,
    })
}

fn by_key(c: &Connection, org: &str, key: &str) -> Result<Option<Entry>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {ENTRY_COLS} FROM credit_ledger WHERE org_id = ?1 AND idempotency_key = ?2"
    ))?
    .query_row([org, key], entry_row)
    .optional()?)
}

impl Store {
    /// The org's billing account (markup 2.0x, postpaid, unless set).
    pub async fn billing_account(&self, org: &str) -> Result<BillingAccount> {
        let o = org.to_string();
        self.read(move |c| {
            let row: Option<(i64, String)> = c
                .prepare_cached("SELECT markup_bp, mode FROM billing_accounts WHERE org_id = ?1")?
                .query_row([&o], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let (markup_bp, mode) = row.unwrap_or((
                i64::from(crate::metering::pricing::DEFAULT_MARKUP_BP),
                "postpaid".into(),
            ));
            Ok(BillingAccount {
                org_id: o,
                markup_bp: u32::try_from(markup_bp)
                    .map_err(|_| Error::Internal("markup out of range".into()))?,
                prepaid: mode == "prepaid",
            })
        })
        .await
    }

    /// Sets an org's markup (basis points, at least 10,000) and mode.
    pub async fn set_billing_account(
        &self,
        org: &str,
        markup_bp: u32,
        prepaid: bool,
        now: &str,
    ) -> Result<BillingAccount> {
        self.set_billing_account_audited(org, markup_bp, prepaid, now, None)
            .await
    }

    /// `set_billing_account` with an audit row in the same transaction.
    pub async fn set_billing_account_audited(
        &self,
        org: &str,
        markup_bp: u32,
        prepaid: bool,
        now: &str,
        audit: Option<super::keys::AuditEntry>,
    ) -> Result<BillingAccount> {
        if markup_bp < crate::metering::pricing::BP_ONE {
            return Err(Error::invalid(
                "markup_bp",
                "must be at least 10000 (1.0x): the billed price never goes below cost",
            ));
        }
        let (o, n) = (org.to_string(), now.to_string());
        let mode = if prepaid { "prepaid" } else { "postpaid" };
        self.write(move |c| {
            c.execute(
                "INSERT INTO billing_accounts (org_id, markup_bp, mode, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT(org_id) DO UPDATE SET markup_bp = ?2, mode = ?3, updated_at = ?4",
                params![o, markup_bp, mode, n],
            )?;
            if let Some(a) = &audit {
                super::keys::insert_audit(c, a)?;
            }
            Ok(BillingAccount { org_id: o, markup_bp, prepaid })
        })
        .await
    }

    /// Appends an entry once. Returns the entry and whether this call created it.
    pub async fn ledger_append(
        &self,
        org: &str,
        id: String,
        e: NewEntry,
        now: String,
    ) -> Result<(Entry, bool)> {
        self.ledger_append_audited(org, id, e, now, None).await
    }

    /// `ledger_append` with an audit row written in the same transaction when
    /// the entry is new (a replay audits nothing).
    pub async fn ledger_append_audited(
        &self,
        org: &str,
        id: String,
        e: NewEntry,
        now: String,
        audit: Option<super::keys::AuditEntry>,
    ) -> Result<(Entry, bool)> {
        let signed = e.signed_amount()?;
        let o = org.to_string();
        self.write(move |c| {
            if let Some(existing) = by_key(c, &o, &e.idempotency_key)? {
                return if existing.same_as(&e, signed) {
                    Ok((existing, false))
                } else {
                    Err(Error::Conflict(format!(
                        "idempotency key {:?} was already used for a different entry ({} {} nanos)",
                        e.idempotency_key, existing.kind, existing.amount_nanos
                    )))
                };
            }
            let inserted = c.execute(
                &format!("INSERT INTO credit_ledger ({ENTRY_COLS}, org_id) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)
                 ON CONFLICT DO NOTHING"),
                params![
                    id, e.idempotency_key, e.kind.as_str(), signed, e.reason, e.source_system, e.source_reference,
                    e.usage_id, e.actor, e.note, now, o
                ],
            )?;
            if inserted == 0 {
                // The same charge source under another idempotency key.
                return Err(Error::Conflict(format!(
                    "a charge for {:?} / {:?} is already in the ledger",
                    e.source_system, e.source_reference
                )));
            }
            if let Some(a) = &audit {
                super::keys::insert_audit(c, a)?;
            }
            let entry = by_key(c, &o, &e.idempotency_key)?
                .ok_or_else(|| Error::Internal("ledger entry vanished after insert".into()))?;
            Ok((entry, true))
        })
        .await
    }

    /// The balance: the sum of the org's entries, in nano-dollars.
    pub async fn ledger_balance(&self, org: &str) -> Result<i64> {
        let o = org.to_string();
        self.read_cancellable(None, move |c| {
            Ok(c.prepare_cached(
                "SELECT coalesce(sum(amount_nanos), 0) FROM credit_ledger WHERE org_id = ?1",
            )?
            .query_row([&o], |r| r.get(0))?)
        })
        .await
    }

    /// Entries newest first (ids are ULIDs, so id order is time order and the
    /// primary key serves the page); `after` is the previous page's last (created_at, id).
    pub async fn ledger_entries(
        &self,
        org: &str,
        after: Option<(String, String)>,
        limit: u32,
    ) -> Result<Vec<Entry>> {
        let o = org.to_string();
        self.read_cancellable(None, move |c| {
            let (ac, ai) = after.unzip();
            let mut st = c.prepare_cached(&format!(
                "SELECT {ENTRY_COLS} FROM credit_ledger WHERE org_id = ?1
                   AND (?3 IS NULL OR id < ?3)
                 ORDER BY id DESC LIMIT ?4"
            ))?;
            let rows = st
                .query_map(params![o, ac, ai, limit], entry_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Synchronous;
    use crate::metering::ledger::Kind;

    fn topup(key: &str, nanos: i64) -> NewEntry {
        NewEntry {
            idempotency_key: key.into(),
            kind: Kind::Topup,
            amount_nanos: nanos,
            reason: "topup".into(),
            source_system: None,
            source_reference: None,
            usage_id: None,
            actor: "test".into(),
            note: None,
        }
    }

    fn charge(key: &str, reference: &str, nanos: i64) -> NewEntry {
        NewEntry {
            kind: Kind::Charge,
            reason: "llm_call".into(),
            source_system: Some("vaultline".into()),
            source_reference: Some(reference.into()),
            ..topup(key, nanos)
        }
    }

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("l.db"), Synchronous::Normal).unwrap();
        for o in ["a", "b"] {
            s.ensure_org(o, "2026-01-01T00:00:00.000Z").await.unwrap();
        }
        (s, dir)
    }

    #[tokio::test]
    async fn replays_land_once_and_conflicts_are_refused() {
        let (s, _d) = store().await;
        let now = || "2026-01-01T00:00:00.000Z".to_string();
        let (e, new) = s
            .ledger_append("a", "1".into(), topup("t1", 5_000), now())
            .await
            .unwrap();
        assert!(new && e.amount_nanos == 5_000);
        let (again, new) = s
            .ledger_append("a", "2".into(), topup("t1", 5_000), now())
            .await
            .unwrap();
        assert!(!new && again.id == "1", "a replay returns the first entry");
        let err = s
            .ledger_append("a", "3".into(), topup("t1", 6_000), now())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("already used"), "{err}");
        s.ledger_append("a", "4".into(), charge("c1", "run1/1/1", 1_200), now())
            .await
            .unwrap();
        let err = s
            .ledger_append("a", "5".into(), charge("c2", "run1/1/1", 1_200), now())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already in the ledger"),
            "one charge per source reference: {err}"
        );
        assert_eq!(s.ledger_balance("a").await.unwrap(), 3_800);
        assert_eq!(s.ledger_balance("b").await.unwrap(), 0, "orgs do not mix");
        s.ledger_append("b", "1".into(), topup("t1", 1), now())
            .await
            .unwrap();
        assert_eq!(s.ledger_entries("a", None, 10).await.unwrap().len(), 2);
        let err = s
            .ledger_append("a", "6".into(), topup("t2", 0), now())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("amount"), "{err}");
    }

    #[tokio::test]
    async fn concurrent_replays_of_one_charge_land_once() {
        let (s, _d) = store().await;
        let mut handles = Vec::new();
        for i in 0..40 {
            let s = s.clone();
            handles.push(tokio::spawn(async move {
                s.ledger_append(
                    "a",
                    format!("id{i}"),
                    charge("same", "run9/1/1", 777),
                    "2026-01-01T00:00:00.000Z".into(),
                )
                .await
            }));
        }
        let mut created = 0;
        for h in handles {
            let (e, new) = h.await.unwrap().unwrap();
            assert_eq!(e.amount_nanos, -777);
            created += usize::from(new);
        }
        assert_eq!(created, 1);
        assert_eq!(s.ledger_balance("a").await.unwrap(), -777);
    }

    #[tokio::test]
    async fn the_ledger_is_append_only() {
        let (s, _d) = store().await;
        s.ledger_append(
            "a",
            "1".into(),
            topup("t1", 10),
            "2026-01-01T00:00:00.000Z".into(),
        )
        .await
        .unwrap();
        for sql in [
            "UPDATE credit_ledger SET amount_nanos = 1000000",
            "DELETE FROM credit_ledger",
        ] {
            let err = s
                .write(move |c| {
                    c.execute(sql, [])?;
                    Ok(())
                })
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("append-only"), "{sql}: {err}");
        }
        assert_eq!(s.ledger_balance("a").await.unwrap(), 10);
    }

    #[tokio::test]
    async fn billing_accounts_default_and_refuse_markups_below_cost() {
        let (s, _d) = store().await;
        let acct = s.billing_account("a").await.unwrap();
        assert_eq!((acct.markup_bp, acct.prepaid), (20_000, false));
        assert!(s.set_billing_account("a", 9_999, false, "t").await.is_err());
        s.set_billing_account("a", 15_000, true, "t").await.unwrap();
        let acct = s.billing_account("a").await.unwrap();
        assert_eq!((acct.markup_bp, acct.prepaid), (15_000, true));
        assert_eq!(s.billing_account("b").await.unwrap().markup_bp, 20_000);
    }
}
