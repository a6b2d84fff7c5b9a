//! Which account of a provider the ladder should use next.
//!
//! `rank` scores the usable accounts by remaining quota, recent error rate and
//! latency, and skips (with the reason) those exhausted, in cooldown, with an
//! expired credential, or removed. Scores are compared in coarse steps, so
//! accounts that are nearly as good tie, and a tie goes to the account used
//! least recently: load spreads, and the hottest account never wins a tie.
//! `choose` keeps a session on the account it used last while that account is
//! still usable (warm provider-side caches). Pure: times and data come in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Account, Figures, Status};
use crate::clock::parse_time;

/// Weights of the score's parts (they sum to 1).
const W_REMAINING: f64 = 0.6;
const W_ERRORS: f64 = 0.3;
const W_LATENCY: f64 = 0.1;
/// Scores closer than this tie (and the least recently used account wins).
const SCORE_STEP: f64 = 0.05;

/// Recent call health of an account, from its usage records.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Health {
    pub calls: i64,
    /// Calls that failed for infrastructure reasons (outcome `infra`).
    pub infra_errors: i64,
    pub avg_latency_ms: f64,
}

impl Health {
    pub fn error_rate(&self) -> f64 {
        if self.calls <= 0 {
            0.0
        } else {
            (self.infra_errors as f64 / self.calls as f64).clamp(0.0, 1.0)
        }
    }
}

/// One account with what is known about it now.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub account: Account,
    pub figures: Figures,
    pub health: Health,
}

/// Why an account was passed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    Removed,
    Exhausted,
    Cooldown { until: String },
    TokenExpired { at: String },
}

/// A usable account, best first in `rank`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranked {
    pub account_id: String,
    pub score: f64,
    pub remaining_fraction: f64,
    pub error_rate: f64,
    pub avg_latency_ms: f64,
    pub last_used_at: Option<String>,
}

/// The ranking: usable accounts best first, and the ones skipped with why.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Ranking {
    pub usable: Vec<Ranked>,
    pub skipped: Vec<(String, Skip)>,
}

fn skip_reason(c: &Candidate, now: DateTime<Utc>) -> Option<Skip> {
    let a = &c.account;
    if a.removed_at.is_some() {
        return Some(Skip::Removed);
    }
    if c.figures.status == Status::Exhausted {
        return Some(Skip::Exhausted);
    }
    if a.in_cooldown(now) {
        return Some(Skip::Cooldown {
            until: a.cooldown_until.clone().unwrap_or_default(),
        });
    }
    if a.token_expired(now) {
        return Some(Skip::TokenExpired {
            at: a.token_expires_at.clone().unwrap_or_default(),
        });
    }
    None
}

/// Ranks the candidates (all of one provider) at `now`.
pub fn rank(candidates: &[Candidate], now: DateTime<Utc>) -> Ranking {
    let mut out = Ranking::default();
    let mut usable = Vec::new();
    for c in candidates {
        match skip_reason(c, now) {
            Some(why) => out.skipped.push((c.account.id.clone(), why)),
            None => usable.push(c),
        }
    }
    // Latency counts relative to the fastest and slowest usable account with calls.
    let lats: Vec<f64> = usable
        .iter()
        .filter(|c| c.health.calls > 0)
        .map(|c| c.health.avg_latency_ms)
        .collect();
    let lo = lats.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = lats.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut ranked: Vec<(i64, Option<DateTime<Utc>>, Ranked)> = usable
        .into_iter()
        .map(|c| {
            let f = &c.figures;
            let remaining_fraction = if f.limit > 0 {
                (f.remaining as f64 / f.limit as f64).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let error_rate = c.health.error_rate();
            let lat_norm = if c.health.calls > 0 && hi > lo {
                (c.health.avg_latency_ms - lo) / (hi - lo)
            } else {
                0.0
            };
            let score = W_REMAINING * remaining_fraction
                + W_ERRORS * (1.0 - error_rate)
                + W_LATENCY * (1.0 - lat_norm);
            let bucket = (score / SCORE_STEP).floor() as i64;
            let last = c.account.last_used_at.as_deref().and_then(parse_time);
            (
                bucket,
                last,
                Ranked {
                    account_id: c.account.id.clone(),
                    score: (score * 1000.0).round() / 1000.0,
                    remaining_fraction: (remaining_fraction * 1000.0).round() / 1000.0,
                    error_rate: (error_rate * 1000.0).round() / 1000.0,
                    avg_latency_ms: c.health.avg_latency_ms.round(),
                    last_used_at: c.account.last_used_at.clone(),
                },
            )
        })
        .collect();
    // Higher bucket first; then never used, then least recently used; then id.
    ranked.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| a.1.cmp(&b.1))
            .then_with(|| a.2.account_id.cmp(&b.2.account_id))
    });
    out.usable = ranked.into_iter().map(|r| r.2).collect();
    out
}

/// What `choose` picked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    pub account_id: String,
    /// True when the session's previous account was kept.
    pub sticky: bool,
    pub ranking: Ranking,
}

/// The best usable account, or the session's previous one (`sticky`) while it
/// is still usable. None when no account of the provider can be used.
pub fn choose(
    candidates: &[Candidate],
    now: DateTime<Utc>,
    sticky: Option<&str>,
) -> Option<Choice> {
    let ranking = rank(candidates, now);
    if let Some(prev) = sticky
        && ranking.usable.iter().any(|r| r.account_id == prev)
    {
        return Some(Choice {
            account_id: prev.to_string(),
            sticky: true,
            ranking,
        });
    }
    let best = ranking.usable.first()?.account_id.clone();
    Some(Choice {
        account_id: best,
        sticky: false,
        ranking,
    })
}

/// Which account each session used last, per (org, provider, session key),
/// kept in memory for `ttl` and bounded in size. A restart forgets it, which
/// costs one cold cache, nothing more.
pub struct Sticky {
    ttl: StdDuration,
    cap: usize,
    map: Mutex<HashMap<SessionKey, (String, Instant)>>,
}

/// (org, provider, session key).
type SessionKey = (String, String, String);

impl Sticky {
    pub fn new(ttl: StdDuration, cap: usize) -> Sticky {
        Sticky {
            ttl,
            cap,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, org: &str, provider: &str, session: &str) -> Option<String> {
        let map = self.map.lock().ok()?;
        let (acct, at) = map.get(&(org.into(), provider.into(), session.into()))?;
        (at.elapsed() < self.ttl).then(|| acct.clone())
    }

    pub fn set(&self, org: &str, provider: &str, session: &str, account: &str) {
        let Ok(mut map) = self.map.lock() else { return };
        if map.len() >= self.cap {
            let ttl = self.ttl;
            map.retain(|_, (_, at)| at.elapsed() < ttl);
            if map.len() >= self.cap {
                // Still full of live sessions: forget the oldest.
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(
            (org.into(), provider.into(), session.into()),
            (account.to_string(), Instant::now()),
        );
    }
}

impl Default for Sticky {
    fn default() -> Self {
        Sticky::new(StdDuration::from_secs(3600), 10_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::tests::{account, t};
    use crate::quota::{LimitKind, Observed, Usage, Window, figures};

    struct Spec {
        id: &'static str,
        used: i64,
        calls: i64,
        infra: i64,
        latency: f64,
        last_used: Option<&'static str>,
        cooldown: Option<&'static str>,
        expires: Option<&'static str>,
    }

    const fn spec(id: &'static str, used: i64) -> Spec {
        Spec {
            id,
            used,
            calls: 0,
            infra: 0,
            latency: 0.0,
            last_used: None,
            cooldown: None,
            expires: None,
        }
    }

    fn cands(specs: &[Spec], now: DateTime<Utc>) -> Vec<Candidate> {
        specs
            .iter()
            .map(|s| {
                let mut a = account(LimitKind::Requests, 100, Window::Day);
                a.id = s.id.into();
                a.last_used_at = s.last_used.map(String::from);
                a.cooldown_until = s.cooldown.map(String::from);
                a.token_expires_at = s.expires.map(String::from);
                let u = Usage {
                    requests: s.used,
                    ..Default::default()
                };
                let f = figures(&a, Observed { window: u, burn: u }, now);
                Candidate {
                    account: a,
                    figures: f,
                    health: Health {
                        calls: s.calls,
                        infra_errors: s.infra,
                        avg_latency_ms: s.latency,
                    },
                }
            })
            .collect()
    }

    fn order(specs: &[Spec], now: DateTime<Utc>) -> (Vec<String>, Vec<String>) {
        let r = rank(&cands(specs, now), now);
        (
            r.usable.into_iter().map(|x| x.account_id).collect(),
            r.skipped.into_iter().map(|(id, _)| id).collect(),
        )
    }

    #[test]
    fn ranking_cases() {
        let now = t("2026-11-24T12:00:00Z");
        // (name, accounts, usable best first, skipped)
        type Case = (
            &'static str,
            Vec<Spec>,
            &'static [&'static str],
            &'static [&'static str],
        );
        let cases: Vec<Case> = vec![
            (
                "more remaining wins",
                vec![spec("a", 70), spec("b", 10), spec("c", 40)],
                &["b", "c", "a"],
                &[],
            ),
            (
                "a tie goes to the least recently used, never the hottest",
                vec![
                    Spec {
                        last_used: Some("2026-11-24T11:59:00Z"),
                        ..spec("hot", 10)
                    },
                    Spec {
                        last_used: Some("2026-11-24T08:00:00Z"),
                        ..spec("cold", 11)
                    },
                    Spec {
                        last_used: Some("2026-11-24T10:00:00Z"),
                        ..spec("warm", 12)
                    },
                ],
                &["cold", "warm", "hot"],
                &[],
            ),
            (
                "never used beats used on a tie",
                vec![
                    Spec {
                        last_used: Some("2026-11-20T00:00:00Z"),
                        ..spec("old", 0)
                    },
                    spec("new", 0),
                ],
                &["new", "old"],
                &[],
            ),
            (
                "infra errors push an account down",
                vec![
                    Spec {
                        calls: 10,
                        infra: 6,
                        ..spec("flaky", 0)
                    },
                    Spec {
                        calls: 10,
                        infra: 0,
                        ..spec("steady", 20)
                    },
                ],
                &["steady", "flaky"],
                &[],
            ),
            (
                "latency breaks what is otherwise close",
                vec![
                    Spec {
                        calls: 5,
                        latency: 9000.0,
                        last_used: Some("2026-11-24T01:00:00Z"),
                        ..spec("slow", 0)
                    },
                    Spec {
                        calls: 5,
                        latency: 400.0,
                        last_used: Some("2026-11-24T11:00:00Z"),
                        ..spec("fast", 0)
                    },
                ],
                &["fast", "slow"],
                &[],
            ),
            (
                "exhausted, cooling down and expired accounts are skipped",
                vec![
                    spec("full", 100),
                    Spec {
                        cooldown: Some("2026-11-24T12:05:00Z"),
                        ..spec("cool", 0)
                    },
                    Spec {
                        cooldown: Some("2026-11-24T11:00:00Z"),
                        ..spec("cooled", 50)
                    },
                    Spec {
                        expires: Some("2026-11-24T00:00:00Z"),
                        ..spec("expired", 0)
                    },
                    Spec {
                        expires: Some("2026-12-24T00:00:00Z"),
                        ..spec("valid", 60)
                    },
                ],
                &["cooled", "valid"],
                &["full", "cool", "expired"],
            ),
        ];
        for (name, specs, usable, skipped) in cases {
            let (u, s) = order(&specs, now);
            assert_eq!(u, usable.to_vec(), "{name}");
            assert_eq!(s, skipped.to_vec(), "{name}");
        }
    }

    #[test]
    fn choose_is_sticky_while_usable() {
        let now = t("2026-11-24T12:00:00Z");
        let c = cands(&[spec("a", 10), spec("b", 50), spec("full", 100)], now);
        let first = choose(&c, now, None).unwrap();
        assert_eq!((first.account_id.as_str(), first.sticky), ("a", false));
        let kept = choose(&c, now, Some("b")).unwrap();
        assert_eq!((kept.account_id.as_str(), kept.sticky), ("b", true));
        // The session's account is exhausted: move on.
        let moved = choose(&c, now, Some("full")).unwrap();
        assert_eq!((moved.account_id.as_str(), moved.sticky), ("a", false));
        let none = choose(&cands(&[spec("full", 100)], now), now, None);
        assert!(none.is_none());
        assert!(choose(&[], now, Some("a")).is_none());
    }

    #[test]
    fn sticky_map_remembers_and_is_bounded() {
        let s = Sticky::new(StdDuration::from_secs(60), 2);
        s.set("o", "p", "s1", "a");
        assert_eq!(s.get("o", "p", "s1").as_deref(), Some("a"));
        assert_eq!(s.get("o2", "p", "s1"), None, "orgs never share");
        s.set("o", "p", "s2", "b");
        s.set("o", "p", "s3", "c");
        assert_eq!(s.map.lock().unwrap().len(), 2);
        assert_eq!(s.get("o", "p", "s3").as_deref(), Some("c"));
        let expired = Sticky::new(StdDuration::ZERO, 2);
        expired.set("o", "p", "s", "a");
        assert_eq!(expired.get("o", "p", "s"), None);
    }
}
