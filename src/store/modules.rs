//! Store verbs for modules: drafts, immutable versions (bundle bytes, SHA-256,
//! attestation), the active pointer per (org, module), and the append-only
//! module audit. Every verb takes the org and every statement filters on it;
//! each lifecycle verb writes its audit row in the same job, so a step and its
//! audit commit together or not at all.

use rusqlite::{OptionalExtension, params};
use schemars::JsonSchema;
use serde::Serialize;

use super::Store;
use crate::error::{Error, Result};

/// A module row: its active pointer.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ModuleRow {
    pub id: String,
    pub namespace: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_sha256: Option<String>,
    pub has_draft: bool,
    pub versions: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// A draft as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleDraft {
    pub module_id: String,
    pub manifest: String,
    /// The last validation report (JSON), if validated since the last change.
    pub report: Option<String>,
    /// The canonical hash the last successful validation saw.
    pub validated_sha256: Option<String>,
    pub updated_at: String,
    pub updated_by: String,
}

/// A promoted version; `bundle` is empty in listings.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleVersion {
    pub module_id: String,
    pub version: String,
    pub bundle: Vec<u8>,
    pub sha256: String,
    pub attestation: Option<String>,
    pub promoted_by: String,
    pub promoted_at: String,
}

/// What `module_promote` writes.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub module_id: String,
    pub version: String,
    pub bundle: Vec<u8>,
    pub sha256: String,
    pub attestation: String,
    pub promoted_by: String,
    pub now: String,
}

/// One module audit row.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ModuleAudit {
    pub org_id: String,
    pub id: String,
    pub module_id: String,
    pub actor: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub created_at: String,
}

/// An installed module's active version with its bundle, for building tools.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveModule {
    pub module_id: String,
    pub version: String,
    pub sha256: String,
    pub bundle: Vec<u8>,
}

fn insert_audit(c: &rusqlite::Connection, a: &ModuleAudit) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO module_audit (org_id, id, module_id, actor, action, version, sha256, detail, created_at)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
    )?
    .execute(params![
        a.org_id, a.id, a.module_id, a.actor, a.action, a.version, a.sha256, a.detail, a.created_at
    ])?;
    Ok(())
}

fn module_exists(c: &rusqlite::Connection, org: &str, id: &str) -> Result<bool> {
    Ok(
        c.prepare_cached("SELECT 1 FROM modules WHERE org_id = ?1 AND id = ?2")?
            .query_row([org, id], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

fn draft_exists(c: &rusqlite::Connection, org: &str, id: &str) -> Result<bool> {
    Ok(
        c.prepare_cached("SELECT 1 FROM module_drafts WHERE org_id = ?1 AND module_id = ?2")?
            .query_row([org, id], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

impl Store {
    /// Creates (`create`) or replaces the draft of a module, clearing any
    /// validation; creates the module row when new. `draft` refuses when a draft
    /// exists; `edit` refuses when none does.
    pub async fn module_draft_put(
        &self,
        org: &str,
        module_id: &str,
        namespace: &str,
        manifest: String,
        create: bool,
        audit: ModuleAudit,
    ) -> Result<()> {
        let (o, m, ns) = (
            org.to_string(),
            module_id.to_string(),
            namespace.to_string(),
        );
        self.write(move |c| {
            let now = audit.created_at.clone();
            let has = draft_exists(c, &o, &m)?;
            if create && has {
                return Err(Error::Conflict(format!(
                    "module {m} already has a draft; change it with `edit`"
                )));
            }
            if !create && !has {
                return Err(Error::not_found("module draft", &m));
            }
            if !module_exists(c, &o, &m)? {
                c.execute(
                    "INSERT INTO modules (org_id, id, namespace, created_at, created_by, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?4)",
                    params![o, m, ns, now, audit.actor],
                )?;
            }
            c.execute(
                "INSERT INTO module_drafts (org_id, module_id, manifest, report, validated_sha256, updated_at, updated_by)
                 VALUES (?1, ?2, ?3, NULL, NULL, ?4, ?5)
                 ON CONFLICT (org_id, module_id) DO UPDATE SET manifest = ?3, report = NULL,
                   validated_sha256 = NULL, updated_at = ?4, updated_by = ?5",
                params![o, m, manifest, now, audit.actor],
            )?;
            insert_audit(c, &audit)
        })
        .await
    }

    pub async fn module_draft_get(
        &self,
        org: &str,
        module_id: &str,
    ) -> Result<Option<ModuleDraft>> {
        let (o, m) = (org.to_string(), module_id.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT module_id, manifest, report, validated_sha256, updated_at, updated_by
                 FROM module_drafts WHERE org_id = ?1 AND module_id = ?2",
            )?
            .query_row([&o, &m], |r| {
                Ok(ModuleDraft {
                    module_id: r.get(0)?,
                    manifest: r.get(1)?,
                    report: r.get(2)?,
                    validated_sha256: r.get(3)?,
                    updated_at: r.get(4)?,
                    updated_by: r.get(5)?,
                })
            })
            .optional()?)
        })
        .await
    }

    /// Records a validation of the draft whose manifest is still `manifest`
    /// (a concurrent edit makes this a conflict). `validated_sha256` is set only
    /// for a passing report.
    pub async fn module_draft_validated(
        &self,
        org: &str,
        module_id: &str,
        manifest: String,
        report: String,
        validated_sha256: Option<String>,
        audit: ModuleAudit,
    ) -> Result<()> {
        let (o, m) = (org.to_string(), module_id.to_string());
        self.write(move |c| {
            let n = c.execute(
                "UPDATE module_drafts SET report = ?3, validated_sha256 = ?4
                 WHERE org_id = ?1 AND module_id = ?2 AND manifest = ?5",
                params![o, m, report, validated_sha256, manifest],
            )?;
            if n == 0 {
                return Err(Error::Conflict(format!(
                    "the draft of {m} changed while it was validated; validate again"
                )));
            }
            insert_audit(c, &audit)
        })
        .await
    }

    /// Freezes the draft into a new version, if the draft is validated at
    /// exactly `v.sha256` and the version is new; the draft is then removed.
    pub async fn module_promote(&self, org: &str, v: NewVersion, audit: ModuleAudit) -> Result<()> {
        let o = org.to_string();
        self.write(move |c| {
            let validated: Option<Option<String>> = c
                .prepare_cached(
                    "SELECT validated_sha256 FROM module_drafts WHERE org_id = ?1 AND module_id = ?2",
                )?
                .query_row([&o, &v.module_id], |r| r.get(0))
                .optional()?;
            match validated {
                None => return Err(Error::not_found("module draft", &v.module_id)),
                Some(h) if h.as_deref() != Some(v.sha256.as_str()) => {
                    return Err(Error::Conflict(format!(
                        "the draft of {} is not validated as it stands; run `validate` first",
                        v.module_id
                    )));
                }
                Some(_) => {}
            }
            let exists = c
                .prepare_cached(
                    "SELECT 1 FROM module_versions WHERE org_id = ?1 AND module_id = ?2 AND version = ?3",
                )?
                .query_row([&o, &v.module_id, &v.version], |_| Ok(()))
                .optional()?
                .is_some();
            if exists {
                return Err(Error::Conflict(format!(
                    "{} {} is already promoted and versions are immutable; raise `version` in the draft",
                    v.module_id, v.version
                )));
            }
            c.execute(
                "INSERT INTO module_versions (org_id, module_id, version, bundle, sha256, attestation, promoted_by, promoted_at)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
                params![o, v.module_id, v.version, v.bundle, v.sha256, v.attestation, v.promoted_by, v.now],
            )?;
            c.execute(
                "DELETE FROM module_drafts WHERE org_id = ?1 AND module_id = ?2",
                [&o, &v.module_id],
            )?;
            c.execute(
                "UPDATE modules SET updated_at = ?3 WHERE org_id = ?1 AND id = ?2",
                [&o, &v.module_id, &v.now],
            )?;
            insert_audit(c, &audit)
        })
        .await
    }

    /// One version with its bundle bytes.
    pub async fn module_version_get(
        &self,
        org: &str,
        module_id: &str,
        version: &str,
    ) -> Result<ModuleVersion> {
        let (o, m, v) = (org.to_string(), module_id.to_string(), version.to_string());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT module_id, version, bundle, sha256, attestation, promoted_by, promoted_at
                 FROM module_versions WHERE org_id = ?1 AND module_id = ?2 AND version = ?3",
            )?
            .query_row([&o, &m, &v], version_row)
            .optional()?
            .ok_or_else(|| Error::not_found("module version", format!("{m}@{v}")))
        })
        .await
    }

    /// A module's versions (without bundles), oldest first.
    pub async fn module_versions(&self, org: &str, module_id: &str) -> Result<Vec<ModuleVersion>> {
        let (o, m) = (org.to_string(), module_id.to_string());
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT module_id, version, X'', sha256, attestation, promoted_by, promoted_at
                     FROM module_versions WHERE org_id = ?1 AND module_id = ?2 ORDER BY promoted_at, version",
                )?
                .query_map([&o, &m], version_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    pub async fn module_get(&self, org: &str, module_id: &str) -> Result<ModuleRow> {
        let (o, m) = (org.to_string(), module_id.to_string());
        self.read(move |c| {
            c.prepare_cached(&format!(
                "{MODULE_SELECT} WHERE m.org_id = ?1 AND m.id = ?2"
            ))?
            .query_row([&o, &m], module_row)
            .optional()?
            .ok_or_else(|| Error::not_found("module", &m))
        })
        .await
    }

    pub async fn module_list(&self, org: &str) -> Result<Vec<ModuleRow>> {
        let o = org.to_string();
        self.read(move |c| {
            let rows = c
                .prepare_cached(&format!(
                    "{MODULE_SELECT} WHERE m.org_id = ?1 ORDER BY m.id LIMIT 1000"
                ))?
                .query_map([&o], module_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Moves the active pointer from `expected` (what the caller checked) to
    /// `to` ((version, sha256), or None to uninstall), with its audit row.
    pub async fn module_activate(
        &self,
        org: &str,
        module_id: &str,
        expected: Option<String>,
        to: Option<(String, String)>,
        audit: ModuleAudit,
    ) -> Result<()> {
        let (o, m) = (org.to_string(), module_id.to_string());
        self.write(move |c| {
            let (v, h) = to.unzip();
            let n = c.execute(
                "UPDATE modules SET active_version = ?3, active_sha256 = ?4, updated_at = ?5
                 WHERE org_id = ?1 AND id = ?2 AND active_version IS ?6",
                params![o, m, v, h, audit.created_at, expected],
            )?;
            if n == 0 {
                if !module_exists(c, &o, &m)? {
                    return Err(Error::not_found("module", &m));
                }
                return Err(Error::Conflict(format!(
                    "the active version of {m} changed meanwhile; look again with `get`"
                )));
            }
            insert_audit(c, &audit)
        })
        .await
    }

    /// The org's installed modules with their active bundles.
    pub async fn module_active(&self, org: &str) -> Result<Vec<ActiveModule>> {
        let o = org.to_string();
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT m.id, v.version, m.active_sha256, v.bundle FROM modules m
                     JOIN module_versions v ON v.org_id = m.org_id AND v.module_id = m.id AND v.version = m.active_version
                     WHERE m.org_id = ?1 AND m.active_version IS NOT NULL ORDER BY m.id",
                )?
                .query_map([&o], |r| {
                    Ok(ActiveModule {
                        module_id: r.get(0)?,
                        version: r.get(1)?,
                        sha256: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                        bundle: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// What is installed in the org, as "id@version#sha" lines: a cheap stamp
    /// that changes whenever the set of active versions does.
    pub async fn module_active_stamp(&self, org: &str) -> Result<String> {
        let o = org.to_string();
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT id || '@' || active_version || '#' || coalesce(active_sha256, '') FROM modules
                     WHERE org_id = ?1 AND active_version IS NOT NULL ORDER BY id",
                )?
                .query_map([&o], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows.join("\n"))
        })
        .await
    }

    /// The module audit of an org (one module, or all), oldest first.
    pub async fn module_audit_list(
        &self,
        org: &str,
        module_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ModuleAudit>> {
        let (o, m) = (org.to_string(), module_id.map(str::to_string));
        self.read_cancellable(None, move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT org_id, id, module_id, actor, action, version, sha256, detail, created_at
                     FROM module_audit WHERE org_id = ?1 AND (?2 IS NULL OR module_id = ?2)
                     ORDER BY id LIMIT ?3",
                )?
                .query_map(params![o, m, limit], |r| {
                    Ok(ModuleAudit {
                        org_id: r.get(0)?,
                        id: r.get(1)?,
                        module_id: r.get(2)?,
                        actor: r.get(3)?,
                        action: r.get(4)?,
                        version: r.get(5)?,
                        sha256: r.get(6)?,
                        detail: r.get(7)?,
                        created_at: r.get(8)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}

const MODULE_SELECT: &str = "SELECT m.id, m.namespace, m.active_version, m.active_sha256,
      EXISTS (SELECT 1 FROM module_drafts d WHERE d.org_id = m.org_id AND d.module_id = m.id),
      (SELECT count(*) FROM module_versions v WHERE v.org_id = m.org_id AND v.module_id = m.id),
      m.created_at, m.updated_at
    FROM modules m";

fn module_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ModuleRow> {
    Ok(ModuleRow {
        id: r.get(0)?,
        namespace: r.get(1)?,
        active_version: r.get(2)?,
        active_sha256: r.get(3)?,
        has_draft: r.get(4)?,
        versions: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

fn version_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ModuleVersion> {
    Ok(ModuleVersion {
        module_id: r.get(0)?,
        version: r.get(1)?,
        bundle: r.get(2)?,
        sha256: r.get(3)?,
        attestation: r.get(4)?,
        promoted_by: r.get(5)?,
        promoted_at: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Synchronous;

    fn audit(org: &str, id: &str, action: &str) -> ModuleAudit {
        ModuleAudit {
            org_id: org.into(),
            id: id.into(),
            module_id: "acme/w".into(),
            actor: "k1".into(),
            action: action.into(),
            version: None,
            sha256: None,
            detail: None,
            created_at: format!("2026-01-01T00:00:0{}.000Z", id.len()),
        }
    }

    #[tokio::test]
    async fn lifecycle_is_org_scoped_and_versions_are_immutable() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db"), Synchronous::Normal).unwrap();
        for o in ["a", "b"] {
            s.ensure_org(o, "2026-01-01T00:00:00.000Z").await.unwrap();
        }
        s.module_draft_put(
            "a",
            "acme/w",
            "acme",
            "{}".into(),
            true,
            audit("a", "01", "draft"),
        )
        .await
        .unwrap();
        let again = s
            .module_draft_put(
                "a",
                "acme/w",
                "acme",
                "{}".into(),
                true,
                audit("a", "02", "draft"),
            )
            .await;
        assert!(matches!(again, Err(Error::Conflict(_))));
        assert!(s.module_draft_get("b", "acme/w").await.unwrap().is_none());
        assert!(matches!(
            s.module_get("b", "acme/w").await,
            Err(Error::NotFound { .. })
        ));
        let v = NewVersion {
            module_id: "acme/w".into(),
            version: "1.0.0".into(),
            bundle: b"{}".to_vec(),
            sha256: "h1".into(),
            attestation: "{}".into(),
            promoted_by: "k1".into(),
            now: "2026-01-01T00:00:01.000Z".into(),
        };
        // Not validated yet.
        assert!(
            matches!(
                s.module_promote("a", v.clone(), audit("a", "03", "promote")).await,
                Err(Error::Conflict(m)) if m.contains("not validated")
            ),
            "promote refuses a draft that was never validated"
        );
        s.module_draft_validated(
            "a",
            "acme/w",
            "{}".into(),
            "{}".into(),
            Some("h1".into()),
            audit("a", "04", "validate"),
        )
        .await
        .unwrap();
        s.module_promote("a", v.clone(), audit("a", "05", "promote"))
            .await
            .unwrap();
        assert!(s.module_draft_get("a", "acme/w").await.unwrap().is_none());
        s.module_activate(
            "a",
            "acme/w",
            None,
            Some(("1.0.0".into(), "h1".into())),
            audit("a", "06", "install"),
        )
        .await
        .unwrap();
        // A stale expectation is a conflict, not a silent overwrite.
        let stale = s
            .module_activate("a", "acme/w", None, None, audit("a", "07", "uninstall"))
            .await;
        assert!(matches!(stale, Err(Error::Conflict(_))));
        assert_eq!(s.module_active("a").await.unwrap().len(), 1);
        assert!(s.module_active("b").await.unwrap().is_empty());
        assert_eq!(s.module_active_stamp("a").await.unwrap(), "acme/w@1.0.0#h1");
        let rows = s.module_audit_list("a", Some("acme/w"), 100).await.unwrap();
        let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, ["draft", "validate", "promote", "install"]);
        assert!(
            s.module_audit_list("b", None, 100)
                .await
                .unwrap()
                .is_empty()
        );
        // Immutable and append-only, by trigger.
        let upd = s
            .write(|c| Ok(c.execute("UPDATE module_versions SET bundle = X'00'", [])?))
            .await;
        assert!(upd.is_err());
        let del = s
            .write(|c| Ok(c.execute("DELETE FROM module_audit", [])?))
            .await;
        assert!(del.is_err());
        s.shutdown();
    }
}
