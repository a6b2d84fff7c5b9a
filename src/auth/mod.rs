//! Access: roles, principals, API keys and their verification, per-key rate limits.
//!
//! A key reads `vl_<prefix>_<secret>`. Only the SHA-256 of the whole key and the
//! public prefix are stored; the prefix finds the row, the digest is compared in
//! constant time. Verified keys are cached for `auth.cache_ttl_ms` so the hot path
//! does not touch SQLite; a key revoked from another process stops working within
//! that time. Nothing here logs or returns a secret.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::Clock;
use crate::store::{KeyRecord, Store};

/// Roles, ordered: each includes the powers of those below it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is calling: the org they act in, their role, and the key (or `local`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub org: String,
    pub role: Role,
    /// Key id, or `local` for the stdio user.
    pub key_id: String,
}

impl Principal {
    pub fn local(org: &str, role: Role) -> Principal {
        Principal {
            org: org.to_string(),
            role,
            key_id: "local".into(),
        }
    }
}

/// Org ids are short slugs: lowercase letters, digits, `-` and `_`.
pub fn validate_org_slug(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "org {s:?} is not a valid org id (1-64 of a-z 0-9 - _, starting with a letter or digit)"
        ))
    }
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const PREFIX_LEN: usize = 10;
const SECRET_LEN: usize = 40;

/// A freshly made key: the full text (shown once) and what is stored.
pub struct NewKey {
    pub full: String,
    pub prefix: String,
    pub sha256_hex: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("prefix", &self.prefix)
            .field("full", &"<redacted>")
            .finish()
    }
}

fn random_text(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub fn generate_key() -> NewKey {
    let prefix = random_text(PREFIX_LEN);
    let full = format!("vl_{prefix}_{}", random_text(SECRET_LEN));
    let sha256_hex = hex::encode(Sha256::digest(full.as_bytes()));
    NewKey {
        full,
        prefix,
        sha256_hex,
    }
}

/// The public prefix of a presented key, if it has the right shape.
pub fn key_prefix(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix("vl_")?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == PREFIX_LEN
        && secret.len() == SECRET_LEN
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric())
        && secret.bytes().all(|b| b.is_ascii_alphanumeric()))
    .then_some(prefix)
}

fn digest(presented: &str) -> [u8; 32] {
    Sha256::digest(presented.as_bytes()).into()
}

/// Why a key was not accepted. Callers answer 401 for all of them alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Malformed,
    Unknown,
    Revoked,
    Expired,
    StoreUnavailable,
}

struct Cached {
    digest: [u8; 32],
    /// Who the key stands for, or why it cannot be used.
    state: Result<Principal, Rejection>,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    fetched: Instant,
    touched: Instant,
}

/// Verifies presented keys against the store, with a short-lived cache.
pub struct KeyVerifier {
    store: Store,
    clock: Clock,
    ttl: Duration,
    cache: RwLock<HashMap<String, Cached>>,
}

impl KeyVerifier {
    pub fn new(store: Store, clock: Clock, ttl: Duration) -> KeyVerifier {
        KeyVerifier {
            store,
            clock,
            ttl,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Checks a presented key; returns the principal it stands for.
    pub async fn verify(&self, presented: &str) -> Result<Principal, Rejection> {
        let prefix = key_prefix(presented).ok_or(Rejection::Malformed)?;
        let presented_digest = digest(presented);
        let hit = self.cache.read().ok().and_then(|c| {
            c.get(prefix)
                .filter(|e| e.fetched.elapsed() < self.ttl)
                .map(|e| {
                    let touch = e.touched.elapsed() > Duration::from_secs(60);
                    (e.digest, e.state.clone(), e.expires_at, touch)
                })
        });
        let (stored_digest, state, expires_at) = match hit {
            Some((d, state, exp, touch)) => {
                if touch && let Ok(p) = &state {
                    self.touch(prefix, &p.key_id);
                }
                (d, state, exp)
            }
            None => {
                let record: KeyRecord = self
                    .store
                    .key_by_prefix(prefix)
                    .await
                    .map_err(|_| Rejection::StoreUnavailable)?
                    .ok_or(Rejection::Unknown)?;
                let mut d = [0u8; 32];
                if hex::decode_to_slice(&record.secret_sha256, &mut d).is_err() {
                    return Err(Rejection::Unknown);
                }
                let state = match (record.revoked_at.is_some(), Role::parse(&record.role)) {
                    (true, _) => Err(Rejection::Revoked),
                    (false, None) => Err(Rejection::Unknown),
                    (false, Some(role)) => Ok(Principal {
                        org: record.org_id.clone(),
                        role,
                        key_id: record.id.clone(),
                    }),
                };
                let expires_at = record
                    .expires_at
                    .as_deref()
                    .and_then(crate::clock::parse_time);
                if let Ok(mut c) = self.cache.write() {
                    c.insert(
                        prefix.to_string(),
                        Cached {
                            digest: d,
                            state: state.clone(),
                            expires_at,
                            fetched: Instant::now(),
                            touched: Instant::now(),
                        },
                    );
                }
                if state.is_ok() {
                    self.touch(prefix, &record.id);
                }
                (d, state, expires_at)
            }
        };
        if !bool::from(presented_digest.ct_eq(&stored_digest)) {
            return Err(Rejection::Unknown);
        }
        if let Some(exp) = expires_at
            && exp <= self.clock.now()
        {
            return Err(Rejection::Expired);
        }
        state
    }

    /// Records last use, at most once a minute per key, off the request path.
    fn touch(&self, prefix: &str, key_id: &str) {
        if let Ok(mut c) = self.cache.write()
            && let Some(e) = c.get_mut(prefix)
        {
            e.touched = Instant::now();
        }
        let store = self.store.clone();
        let (id, now) = (key_id.to_string(), self.clock.now_text());
        tokio::spawn(async move {
            if let Err(e) = store.touch_key(&id, &now).await {
                tracing::debug!(error = %e, "could not record key use");
            }
        });
    }

    /// Drops cached entries (after a revoke or rotate in this process).
    pub fn invalidate(&self) {
        if let Ok(mut c) = self.cache.write() {
            c.clear();
        }
    }
}

/// Per-key request-rate limits (token bucket).
pub struct RateLimiter {
    inner: Option<governor::DefaultKeyedRateLimiter<String>>,
}

impl RateLimiter {
    pub fn new(per_second: u32, burst: u32) -> RateLimiter {
        let inner = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
            governor::RateLimiter::keyed(governor::Quota::per_second(rate).allow_burst(burst))
        });
        RateLimiter { inner }
    }

    /// `Ok` if the key may proceed, else how long until it may.
    pub fn check(&self, key_id: &str) -> Result<(), Duration> {
        let Some(l) = &self.inner else { return Ok(()) };
        l.check_key(&key_id.to_string()).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ))
        })
    }

    /// Forgets idle keys; call now and then.
    pub fn sweep(&self) {
        if let Some(l) = &self.inner {
            l.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_a_parseable_shape_and_debug_hides_the_secret() {
        let k = generate_key();
        assert_eq!(key_prefix(&k.full), Some(k.prefix.as_str()));
        assert!(!format!("{k:?}").contains(&k.full));
        assert_eq!(k.sha256_hex.len(), 64);
        for bad in [
            "",
            "vl_",
            "vl_short_x",
            "Bearer x",
            &k.full[..k.full.len() - 1],
        ] {
            assert_eq!(key_prefix(bad), None, "{bad}");
        }
    }

    #[test]
    fn roles_are_ordered() {
        assert!(
            Role::Viewer < Role::Operator
                && Role::Operator < Role::Admin
                && Role::Admin < Role::Owner
        );
        assert_eq!(Role::parse("admin"), Some(Role::Admin));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn org_slugs() {
        for ok in ["default", "acme", "a-1_b"] {
            validate_org_slug(ok).unwrap();
        }
        for bad in ["", "Acme", "-x", "a b", &"x".repeat(65)] {
            assert!(validate_org_slug(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rate_limiter_refuses_past_the_burst_and_says_when() {
        let l = RateLimiter::new(1, 2);
        assert!(l.check("k").is_ok());
        assert!(l.check("k").is_ok());
        let wait = l.check("k").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(l.check("other").is_ok(), "limits are per key");
        assert!(RateLimiter::new(0, 0).check("k").is_ok(), "0 = no limit");
    }
}
