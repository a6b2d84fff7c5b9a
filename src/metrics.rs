//! Prometheus metrics: HTTP requests, tool calls by tool/action/outcome, tool
//! latency, sessions and store errors, rendered as Prometheus text for `/metrics`.
//! The public registry's labels never carry an org, key or account, so the page
//! can be made public; families labelled by org or account (quota percent by
//! account) live in a private registry that `render(true)` adds, and the HTTP
//! transport asks for it only when an admin key is required.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    pub tool: &'static str,
    pub action: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolNameLabel {
    pub tool: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountLabels {
    pub org: String,
    pub account: String,
}

pub struct Metrics {
    registry: Registry,
    /// Families labelled by org or account: shown only behind an admin key.
    private: Registry,
    pub quota_percent: Family<AccountLabels, Gauge<f64, AtomicU64>>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub tool_calls: Family<ToolLabels, Counter>,
    pub tool_seconds: Family<ToolNameLabel, Histogram>,
    pub sessions: Gauge,
    pub store_errors: Gauge<u64, AtomicU64>,
    pub rate_limited: Counter,
    pub auth_failures: Counter,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("vaultline");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let tool_calls = Family::<ToolLabels, Counter>::default();
        let tool_seconds = Family::<ToolNameLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let sessions = Gauge::default();
        let store_errors = Gauge::<u64, AtomicU64>::default();
        let rate_limited = Counter::default();
        let auth_failures = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        registry.register(
            "tool_calls",
            "Tool calls by tool, action and outcome",
            tool_calls.clone(),
        );
        registry.register(
            "tool_call_seconds",
            "Tool call latency",
            tool_seconds.clone(),
        );
        registry.register("sessions", "Live MCP sessions", sessions.clone());
        registry.register(
            "store_errors",
            "Store operations that failed internally",
            store_errors.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by the per-key rate limit",
            rate_limited.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests refused for a missing or bad key",
            auth_failures.clone(),
        );
        let mut private = Registry::with_prefix("vaultline");
        let quota_percent = Family::<AccountLabels, Gauge<f64, AtomicU64>>::default();
        private.register(
            "quota_percent",
            "Percent of its quota window an account has used, by org and account",
            quota_percent.clone(),
        );
        Metrics {
            registry,
            private,
            quota_percent,
            http_requests,
            tool_calls,
            tool_seconds,
            sessions,
            store_errors,
            rate_limited,
            auth_failures,
        }
    }

    /// Labels are static strings from the tool registry, never caller input.
    pub fn tool_call(
        &self,
        tool: &'static str,
        action: &'static str,
        outcome: &'static str,
        seconds: f64,
    ) {
        self.tool_calls
            .get_or_create(&ToolLabels {
                tool,
                action,
                outcome,
            })
            .inc();
        self.tool_seconds
            .get_or_create(&ToolNameLabel { tool })
            .observe(seconds);
    }

    pub fn set_quota_percent(&self, org: &str, account: &str, percent: f64) {
        self.quota_percent
            .get_or_create(&AccountLabels {
                org: org.to_string(),
                account: account.to_string(),
            })
            .set(percent);
    }

    /// Drops a removed account's series.
    pub fn forget_quota(&self, org: &str, account: &str) {
        self.quota_percent.remove(&AccountLabels {
            org: org.to_string(),
            account: account.to_string(),
        });
    }

    /// The Prometheus text exposition; `private` adds the families labelled by
    /// org or account (only behind an admin key).
    pub fn render(&self, private: bool) -> String {
        let mut out = String::new();
        let ok = encode_registry(&mut out, &self.registry).is_ok()
            && (!private || encode_registry(&mut out, &self.private).is_ok())
            && encode_eof(&mut out).is_ok();
        if !ok {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.tool_call("health", "status", "ok", 0.001);
        m.sessions.set(3);
        m.set_quota_percent("acme", "acct1", 81.5);
        let text = m.render(false);
        assert!(
            !text.contains("acme"),
            "public metrics carry no org: {text}"
        );
        let private = m.render(true);
        assert!(
            private.contains("vaultline_quota_percent{org=\"acme\",account=\"acct1\"} 81.5"),
            "{private}"
        );
        assert_eq!(private.matches("# EOF").count(), 1);
        m.forget_quota("acme", "acct1");
        assert!(!m.render(true).contains("acct1"));
        assert!(
            text.contains(
                "vaultline_tool_calls_total{tool=\"health\",action=\"status\",outcome=\"ok\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("vaultline_sessions 3"), "{text}");
        assert!(
            text.contains("vaultline_tool_call_seconds_bucket"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
