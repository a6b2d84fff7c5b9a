//! Tests of the metering API against a real SQLite file: exact costs, replays,
//! flagged calls, seats, self-reported costs, price history, reservations racing
//! for the last dollar, settlement, expiry and run units.

use std::sync::Arc;

use super::*;
use crate::config::{BillingConfig, PriceConfig, Synchronous, Usd};
use crate::metering::usage::Period;
use crate::metering::usage::Scope;

const D: i64 = 1_000_000_000;

struct Fx {
    store: Store,
    meter: Arc<Meter>,
    metrics: Metrics,
    _dir: tempfile::TempDir,
}

fn at(t: &str) -> Clock {
    Clock::Fixed(crate::clock::parse_time(t).unwrap())
}

async fn fx(cfg: BillingConfig) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("m.db"), Synchronous::Normal).unwrap();
    for o in ["a", "b"] {
        store
            .ensure_org(o, "2026-01-01T00:00:00.000Z")
            .await
            .unwrap();
    }
    let metrics = Metrics::new();
    let meter =
        Arc::new(Meter::new(store.clone(), at("2026-11-24T03:00:00Z"), &cfg, &metrics).unwrap());
    Fx {
        store,
        meter,
        metrics,
        _dir: dir,
    }
}

fn call(org: &str, reference: &str, usage: Option<Usage>) -> Call {
    Call {
        org: org.into(),
        key_id: "k1".into(),
        workflow_id: Some("w1".into()),
        task_id: Some("t1".into()),
        stage_id: None,
        reason: Reason::LlmCall,
        tool: None,
        provider: "anthropic".into(),
        model: "claude-sonnet-4-6".into(),
        account_id: Some("acct1".into()),
        billing_mode: BillingMode::Metered,
        usage,
        reported_cost_nanos: None,
        latency_ms: 1200,
        outcome: "ok".into(),
        source_system: "vaultline".into(),
        source_reference: reference.into(),
        reservation_id: None,
    }
}

fn tokens(input: u64, output: u64) -> Option<Usage> {
    Some(Usage {
        input,
        output,
        ..Usage::default()
    })
}

#[tokio::test]
async fn a_call_is_priced_exactly_billed_with_markup_and_recorded_once() {
    let f = fx(BillingConfig::default()).await;
    // Sonnet: $3 in / $15 out per Mtok: 1000 in + 500 out = $0.003 + $0.0075.
    let r = f
        .meter
        .record(call("a", "run1/1/1", tokens(1000, 500)))
        .await
        .unwrap();
    assert_eq!(r.cost_nanos, 10_500_000);
    assert_eq!(r.billed_nanos, 21_000_000, "2.0x markup");
    assert_eq!(r.cost_source, "priced");
    assert!(r.created && r.ledger_entry_id.is_some() && r.price_id.is_some());
    let again = f
        .meter
        .record(call("a", "run1/1/1", tokens(1000, 500)))
        .await
        .unwrap();
    assert!(!again.created, "a retry writes nothing");
    assert_eq!(
        (again.usage_id.as_str(), again.ledger_entry_id.as_deref()),
        (r.usage_id.as_str(), r.ledger_entry_id.as_deref())
    );
    let err = f
        .meter
        .record(call("a", "run1/1/1", tokens(9, 9)))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("already recorded"), "{err}");
    assert_eq!(f.store.ledger_balance("a").await.unwrap(), -21_000_000);
    assert_eq!(
        f.store.ledger_balance_fast("a").await.unwrap(),
        -21_000_000,
        "the trigger-kept balance matches the sum"
    );
    let receipts = f.store.receipts("a", None, 10).await.unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!(
        (receipts[0].reason.as_str(), receipts[0].usage_id.as_str()),
        ("llm_call", r.usage_id.as_str())
    );
    assert!(
        f.store.receipts("b", None, 10).await.unwrap().is_empty(),
        "orgs do not mix"
    );
    let text = f.metrics.render(Some("a"));
    assert!(
        text.contains(
            "vaultline_billed_nanos_total{org=\"a\",model=\"anthropic/claude-sonnet-4-6\"} 21000000"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn missing_usage_seats_and_self_reported_costs() {
    let f = fx(BillingConfig::default()).await;
    let missing = f.meter.record(call("a", "m/1", None)).await.unwrap();
    assert_eq!(
        (
            missing.cost_nanos,
            missing.billed_nanos,
            missing.cost_source.as_str()
        ),
        (0, 0, "missing")
    );
    assert!(missing.ledger_entry_id.is_none(), "nothing to bill");
    let mut unpriced = call("a", "m/2", tokens(10, 10));
    unpriced.model = "no-such-model".into();
    assert_eq!(
        f.meter.record(unpriced).await.unwrap().cost_source,
        "missing"
    );
    assert!(
        f.metrics
            .render(None)
            .contains("vaultline_usage_missing_cost_total 2")
    );

    let mut seat = call("a", "s/1", tokens(100_000, 100_000));
    seat.billing_mode = BillingMode::Seat;
    let r = f.meter.record(seat).await.unwrap();
    assert_eq!(
        (r.cost_nanos, r.billed_nanos, r.cost_source.as_str()),
        (0, 0, "seat")
    );

    let mut reported = call("a", "p/1", tokens(1, 1));
    reported.reported_cost_nanos = Some(7 * D);
    let r = f.meter.record(reported).await.unwrap();
    assert_eq!(
        (r.cost_nanos, r.billed_nanos, r.cost_source.as_str()),
        (7 * D, 14 * D, "provider")
    );

    let mut own = call("a", "stage/1", None);
    own.billing_mode = BillingMode::SelfReported;
    own.reported_cost_nanos = Some(300_000_000);
    let r = f.meter.record(own).await.unwrap();
    assert_eq!(
        (r.cost_nanos, r.billed_nanos),
        (300_000_000, 0),
        "self-reported: breaker only"
    );
    let b = f.meter.breaker_state("a").await.unwrap();
    assert_eq!(b.day_cost_nanos, 7 * D + 300_000_000);
    assert_eq!(b.state, "closed");
}

#[tokio::test]
async fn config_prices_apply_from_their_time_and_history_keeps_its_row() {
    let mut cfg = BillingConfig::default();
    cfg.prices.push(PriceConfig {
        provider: "local".into(),
        model: "m".into(),
        effective_from: "2026-01-01T00:00:00Z".into(),
        input_usd_per_mtok: Usd(D),
        output_usd_per_mtok: Usd(2 * D),
        cache_read_usd_per_mtok: None,
        cache_write_usd_per_mtok: None,
    });
    let f = fx(cfg.clone()).await;
    let mut c = call("a", "x/1", tokens(1_000_000, 1_000_000));
    c.provider = "local".into();
    c.model = "m".into();
    let first = f.meter.record(c.clone()).await.unwrap();
    assert_eq!(first.cost_nanos, 3 * D);
    // A later process with a newer price row for the same model.
    cfg.prices.push(PriceConfig {
        effective_from: "2026-11-01T00:00:00Z".into(),
        input_usd_per_mtok: Usd(5 * D),
        ..cfg.prices[0].clone()
    });
    let later = Meter::new(
        f.store.clone(),
        at("2026-11-24T05:00:00Z"),
        &cfg,
        &f.metrics,
    )
    .unwrap();
    c.source_reference = "x/2".into();
    let second = later.record(c).await.unwrap();
    assert_eq!(second.cost_nanos, 7 * D);
    assert_ne!(
        first.price_id, second.price_id,
        "a new price is a new row; the old record keeps its own"
    );
}

#[tokio::test]
async fn concurrent_reservations_never_overspend_a_budget() {
    let f = fx(BillingConfig::default()).await;
    // $1.00 billed per key per day, of which $0.10 is already spent.
    f.store
        .budget_set(
            "a",
            Scope::Key,
            "k1".into(),
            Period::Day,
            Some(D),
            "admin".into(),
            "au1".into(),
            "t".into(),
        )
        .await
        .unwrap();
    let mut pre = call("a", "pre/1", None);
    pre.reported_cost_nanos = Some(50_000_000); // billed 0.10
    f.meter.record(pre).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..64 {
        let m = f.meter.clone();
        handles.push(tokio::spawn(async move {
            m.reserve(ReserveRequest {
                org: "a".into(),
                key_id: "k1".into(),
                workflow_id: None,
                task_id: Some(format!("t{i}")),
                holder: format!("run{i}"),
                cost_nanos: 35_000_000, // billed 0.07 each
                billing_mode: BillingMode::Metered,
            })
            .await
        }));
    }
    let (mut ok, mut refused) = (0i64, 0);
    for h in handles {
        match h.await.unwrap() {
            Ok(r) => {
                assert_eq!(r.billed_nanos, 70_000_000);
                ok += 1;
            }
            Err(Error::Limit(msg)) => {
                assert!(
                    msg.contains("key daily budget") && msg.contains("$1.0000"),
                    "{msg}"
                );
                refused += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 12, "0.10 + 12 × 0.07 = 0.94 fits, a 13th would not");
    assert!(100_000_000 + ok * 70_000_000 <= D);
    assert_eq!(refused, 52);
}

#[tokio::test]
async fn the_breaker_halts_the_day_and_an_admin_reset_overrides_it() {
    let f = fx(BillingConfig::default()).await;
    let mut spent = call("a", "big/1", None);
    spent.reported_cost_nanos = Some(19 * D + 900_000_000);
    spent.task_id = None;
    f.meter.record(spent).await.unwrap();
    let ask = |cost| ReserveRequest {
        org: "a".into(),
        key_id: "k1".into(),
        workflow_id: None,
        task_id: None,
        holder: "run".into(),
        cost_nanos: cost,
        billing_mode: BillingMode::Metered,
    };
    let r = f.meter.reserve(ask(100_000_000)).await.unwrap();
    let err = f.meter.reserve(ask(1)).await.unwrap_err().to_string();
    assert!(
        err.contains("daily limit")
            && err.contains("reserved $0.1000")
            && err.contains("2026-11-25T00:00:00.000Z"),
        "{err}"
    );
    assert!(
        f.meter
            .reserve(ReserveRequest {
                org: "b".into(),
                ..ask(D)
            })
            .await
            .is_ok(),
        "another org has its own breaker"
    );
    // Settle the reservation with a real cost of 0.10: the day is now at $20.
    let mut settle = call("a", "big/2", None);
    settle.reported_cost_nanos = Some(100_000_000);
    settle.task_id = None;
    settle.reservation_id = Some(r.id.clone());
    f.meter.record(settle).await.unwrap();
    assert_eq!(
        f.store.reservation("a", &r.id).await.unwrap().state,
        "settled"
    );
    assert_eq!(f.meter.breaker_state("a").await.unwrap().state, "open");
    assert!(
        f.metrics
            .render(Some("a"))
            .contains("vaultline_breaker_open{org=\"a\",window=\"day\"} 1")
    );
    f.store
        .breaker_reset(
            "a",
            "day",
            "2026-11-24".into(),
            "admin".into(),
            None,
            "au2".into(),
            "t".into(),
        )
        .await
        .unwrap();
    assert_eq!(f.meter.breaker_state("a").await.unwrap().state, "reset");
    assert!(
        f.meter.reserve(ask(D)).await.is_ok(),
        "a reset overrides the halt for the day"
    );
    let tomorrow = Meter::new(
        f.store.clone(),
        at("2026-11-25T00:00:01Z"),
        &BillingConfig::default(),
        &f.metrics,
    )
    .unwrap();
    assert_eq!(
        tomorrow.breaker_state("a").await.unwrap().day_cost_nanos,
        0,
        "a new UTC day"
    );
}

#[tokio::test]
async fn the_task_halt_holds_and_prepaid_orgs_need_balance() {
    let f = fx(BillingConfig::default()).await;
    let mut c = call("a", "t/1", None);
    c.reported_cost_nanos = Some(4 * D + 990_000_000);
    f.meter.record(c).await.unwrap();
    let ask = ReserveRequest {
        org: "a".into(),
        key_id: "k1".into(),
        workflow_id: None,
        task_id: Some("t1".into()),
        holder: "run".into(),
        cost_nanos: 20_000_000,
        billing_mode: BillingMode::Metered,
    };
    let err = f.meter.reserve(ask.clone()).await.unwrap_err().to_string();
    assert!(
        err.contains("per-task limit") && err.contains("$5.0000"),
        "{err}"
    );
    let seat = ReserveRequest {
        billing_mode: BillingMode::Seat,
        ..ask.clone()
    };
    assert!(
        f.meter.reserve(seat).await.is_ok(),
        "seat calls cost no dollars"
    );

    f.store
        .set_billing_account("b", 20_000, true, "t")
        .await
        .unwrap();
    let prepaid = ReserveRequest {
        org: "b".into(),
        task_id: None,
        ..ask
    };
    let err = f
        .meter
        .reserve(prepaid.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("prepaid balance"), "{err}");
    f.store
        .ledger_append(
            "b",
            "e1".into(),
            crate::metering::ledger::NewEntry {
                idempotency_key: "top1".into(),
                kind: crate::metering::ledger::Kind::Topup,
                amount_nanos: 50_000_000,
                reason: "topup".into(),
                source_system: None,
                source_reference: None,
                usage_id: None,
                actor: "admin".into(),
                note: None,
            },
            "2026-11-24T03:00:00.000Z".into(),
        )
        .await
        .unwrap();
    assert!(
        f.meter.reserve(prepaid.clone()).await.is_ok(),
        "0.04 of 0.05"
    );
    assert!(
        f.meter.reserve(prepaid).await.is_err(),
        "the open reservation holds the rest"
    );
}

#[tokio::test]
async fn reservations_heartbeat_release_and_expire() {
    let f = fx(BillingConfig::default()).await;
    let ask = ReserveRequest {
        org: "a".into(),
        key_id: "k1".into(),
        workflow_id: None,
        task_id: None,
        holder: "run".into(),
        cost_nanos: 19 * D,
        billing_mode: BillingMode::Metered,
    };
    let held = f.meter.reserve(ask.clone()).await.unwrap();
    assert!(f.meter.reserve(ask.clone()).await.is_err(), "19 + 19 > 20");
    f.meter.heartbeat("a", &held.id).await.unwrap();
    assert!(
        f.meter.heartbeat("b", &held.id).await.is_err(),
        "another org's reservation is not there"
    );
    // The holder dies: two minutes later the reservation has expired and is reclaimed.
    let later = Meter::new(
        f.store.clone(),
        at("2026-11-24T03:02:01Z"),
        &BillingConfig::default(),
        &f.metrics,
    )
    .unwrap();
    let second = later.reserve(ask.clone()).await.unwrap();
    assert_eq!(later.expire().await.unwrap(), 1);
    assert_eq!(
        f.store.reservation("a", &held.id).await.unwrap().state,
        "expired"
    );
    assert!(later.heartbeat("a", &held.id).await.is_err());
    assert!(later.release("a", &second.id).await.unwrap());
    assert!(
        !later.release("a", &second.id).await.unwrap(),
        "released once"
    );
    assert!(
        later.reserve(ask).await.is_ok(),
        "released money is free again"
    );
}

#[tokio::test]
async fn run_units_are_counted_in_memory_and_flushed() {
    let f = fx(BillingConfig::default()).await;
    for i in 0..5 {
        f.meter.count_run("a", "k1", "task", i != 3);
    }
    f.meter.count_run("b", "k9", "task", true);
    f.meter.flush_runs().await;
    f.meter.count_run("a", "k1", "task", true);
    f.meter.flush_runs().await;
    let rows = f
        .store
        .usage_hours("a", "tool", "2026-11-24".into(), "2026-11-25".into(), 100)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].value.as_str(), rows[0].calls, rows[0].errors),
        ("task", 6, 1)
    );
}

#[tokio::test]
async fn breaker_alerts_are_raised_once_per_period_off_the_charge_path() {
    let f = fx(BillingConfig::default()).await;
    let alerts = Arc::new(crate::alerts::Alerts::new(
        f.store.clone(),
        at("2026-11-24T03:00:00Z"),
        &crate::config::AlertsConfig::default(),
    ));
    let meter = |alerts: &Arc<crate::alerts::Alerts>| {
        Meter::new(
            f.store.clone(),
            at("2026-11-24T03:00:00Z"),
            &BillingConfig::default(),
            &f.metrics,
        )
        .unwrap()
        .with_alerts(alerts.clone())
    };
    let m = meter(&alerts);
    let mut c = call("a", "spend/1", None);
    c.reported_cost_nanos = Some(81 * D);
    m.record(c).await.unwrap();
    assert!(
        f.store.alerts_list("a", 10).await.unwrap().is_empty(),
        "recording a charge raises nothing by itself"
    );
    m.check_alerts().await;
    let kinds = |list: Vec<crate::store::AlertRecord>| {
        let mut k: Vec<String> = list.into_iter().map(|a| a.kind).collect();
        k.sort();
        k
    };
    let want = ["breaker.daily", "breaker.monthly", "breaker.task_halt"];
    assert_eq!(kinds(f.store.alerts_list("a", 10).await.unwrap()), want);
    // More spend in the same periods, and another process on the same file:
    // still one alert of each kind.
    let mut c = call("a", "spend/2", None);
    c.reported_cost_nanos = Some(D);
    m.record(c.clone()).await.unwrap();
    m.check_alerts().await;
    let again = meter(&alerts);
    c.source_reference = "spend/3".into();
    again.record(c).await.unwrap();
    again.check_alerts().await;
    assert_eq!(kinds(f.store.alerts_list("a", 10).await.unwrap()), want);
    assert!(f.store.alerts_list("b", 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn task_spend_follows_the_usage_records_once_per_call() {
    let f = fx(BillingConfig::default()).await;
    let mut sums = (0i64, 0i64);
    for (i, cost) in [(1, 3_000_000), (2, 7_000_000), (3, 0)] {
        let mut c = call("a", &format!("t/{i}"), None);
        c.reported_cost_nanos = Some(cost);
        let r = f.meter.record(c).await.unwrap();
        sums = (sums.0 + r.cost_nanos, sums.1 + r.billed_nanos);
    }
    // A replay adds nothing; another task and another org are kept apart.
    let mut again = call("a", "t/2", None);
    again.reported_cost_nanos = Some(7_000_000);
    assert!(!f.meter.record(again).await.unwrap().created);
    let mut other = call("a", "t/9", None);
    other.task_id = Some("t2".into());
    other.reported_cost_nanos = Some(1_000_000);
    f.meter.record(other).await.unwrap();
    let mut elsewhere = call("b", "t/1", None);
    elsewhere.reported_cost_nanos = Some(5_000_000);
    f.meter.record(elsewhere).await.unwrap();
    assert_eq!(f.store.task_spend("a", "t1").await.unwrap(), sums);
    assert_eq!(sums, (10_000_000, 20_000_000));
    assert_eq!(
        f.store.task_spend("a", "t2").await.unwrap(),
        (1_000_000, 2_000_000)
    );
    assert_eq!(f.store.task_spend("a", "none").await.unwrap(), (0, 0));
}
