//! Prometheus metrics: HTTP requests, tool calls by tool/action/outcome, tool
//! latency, sessions and store errors, rendered as Prometheus text for `/metrics`.
//! The public registry's labels never carry an org, key or account, so the page
//! can be made public; the org registry (cost, credits, run units, breaker,
//! quota by org) is rendered only for an admin key.

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

/// Labels of the org registry (values are org slugs, model and tool names).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OrgModelLabels {
    pub org: String,
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OrgToolLabels {
    pub org: String,
    pub tool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountLabels {
    pub org: String,
    pub account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OrgWindowLabels {
    pub org: String,
    pub window: &'static str,
}

/// Metering metrics by org; cheap to clone (the families share their maps).
#[derive(Clone, Default)]
pub struct OrgMetrics {
    /// Provider cost in nano-dollars by org and provider/model.
    pub cost_nanos: Family<OrgModelLabels, Counter>,
    /// Billed credits (1 credit = $0.001, in nano-dollars) by org and model.
    pub billed_nanos: Family<OrgModelLabels, Counter>,
    pub run_units: Family<OrgToolLabels, Counter>,
    /// 1 while the org's breaker halts spending for the window.
    pub breaker_open: Family<OrgWindowLabels, Gauge>,
}

pub struct Metrics {
    registry: Registry,
    org_registry: Registry,
    pub org: OrgMetrics,
    /// Quota used, in percent of the limit, by org and account.
    pub quota_percent: Family<AccountLabels, Gauge<f64, AtomicU64>>,
    /// Calls recorded without usage or cost (provider cost 0, flagged).
    pub usage_missing: Counter,
    /// Run-unit counts that could not be written (fail-open).
    pub run_units_dropped: Counter,
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
        let usage_missing = Counter::default();
        let run_units_dropped = Counter::default();
        registry.register(
            "usage_missing_cost",
            "Model calls recorded at provider cost 0 because the provider reported no usage or cost",
            usage_missing.clone(),
        );
        registry.register(
            "run_units_dropped",
            "Run-unit counts dropped because the store refused them (metering is fail-open)",
            run_units_dropped.clone(),
        );
        let org = OrgMetrics::default();
        let mut org_registry = Registry::with_prefix("vaultline");
        org_registry.register(
            "cost_nanos",
            "Provider cost in nano-dollars by org and provider/model",
            org.cost_nanos.clone(),
        );
        org_registry.register(
            "billed_nanos",
            "Billed price in nano-dollars (1 credit = 1,000,000) by org and provider/model",
            org.billed_nanos.clone(),
        );
        org_registry.register(
            "run_units",
            "Tool calls metered as run units by org and tool",
            org.run_units.clone(),
        );
        org_registry.register(
            "breaker_open",
            "1 while the org's cost circuit breaker halts spending (window day or month)",
            org.breaker_open.clone(),
        );
        let quota_percent = Family::<AccountLabels, Gauge<f64, AtomicU64>>::default();
        org_registry.register(
            "quota_percent",
            "Quota used, in percent of the account's limit, by org and account",
            quota_percent.clone(),
        );
        Metrics {
            registry,
            org_registry,
            quota_percent,
            org,
            usage_missing,
            run_units_dropped,
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

    /// The Prometheus text exposition. `org` adds the org registry's series of
    /// that org only (an admin key sees its own org, never another's).
    pub fn render(&self, org: Option<&str>) -> String {
        let mut out = String::new();
        let mut ok = encode_registry(&mut out, &self.registry).is_ok();
        if let Some(org) = org {
            let mut all = String::new();
            ok &= encode_registry(&mut all, &self.org_registry).is_ok();
            // Slugs hold no quotes, so the closing quote makes the match exact.
            let mine = format!("org=\"{org}\"");
            for line in all.lines() {
                if line.starts_with('#') || line.contains(&mine) {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        ok &= encode_eof(&mut out).is_ok();
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
        m.org
            .cost_nanos
            .get_or_create(&OrgModelLabels {
                org: "acme".into(),
                model: "deepseek/deepseek-chat".into(),
            })
            .inc_by(1960);
        m.set_quota_percent("acme", "acct1", 81.5);
        assert!(
            !m.render(None).contains("acme"),
            "public metrics carry no org"
        );
        assert!(
            m.render(Some("acme"))
                .contains("vaultline_quota_percent{org=\"acme\",account=\"acct1\"} 81.5")
        );
        assert_eq!(m.render(Some("acme")).matches("# EOF").count(), 1);
        m.forget_quota("acme", "acct1");
        assert!(!m.render(Some("acme")).contains("acct1"));
        assert!(
            !m.render(Some("other")).contains("acme"),
            "nor another org's"
        );
        let text = m.render(Some("acme"));
        assert!(
            text.contains(
                "vaultline_cost_nanos_total{org=\"acme\",model=\"deepseek/deepseek-chat\"} 1960"
            ),
            "{text}"
        );
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
