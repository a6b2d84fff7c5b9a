//! meterbench: how fast vaultline's metering API records charges, and how fast
//! the `billing usage` query answers over a million usage records.
//!
//! It links the library and calls the same code the tools and the ladder call:
//! `Meter::record` (a usage record, its hourly rollup and its ledger charge, in
//! one transaction on the writer thread; it returns only after COMMIT, on a real
//! SQLite file in WAL mode with synchronous=NORMAL, as the server runs) and the
//! `billing` tool's `usage` action through `tools::call_as`.
//!
//! Phases: (1) sustained charges/s at 1 and 16 concurrent writers (each writer an
//! agent on its own workflow and task, under one of four keys); (2) seeding N
//! records spread over 30 days (720 hours, 6 models, 20 keys, 1,000 workflows)
//! through the same API, with 16 writers; (3) the usage query over them,
//! bucketed by day, grouped by none / model / key, median of 7 runs.
//! Prints its numbers; it is not a test and gates nothing.
//!
//! Usage: cargo run --release -p vaultline-meterbench -- [--records 1000000] [--seconds 3]
//!        (--smoke: 20,000 records, 0.5 s phases, for CI)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, TimeZone, Utc};
use clap::Parser;
use serde_json::json;
use vaultline::app::App;
use vaultline::auth::{Principal, Role};
use vaultline::clock::{Clock, Ids};
use vaultline::config::Config;
use vaultline::metering::meter::Meter;
use vaultline::metering::pricing::Usage;
use vaultline::metering::usage::{BillingMode, Call, Reason};

#[derive(Parser)]
struct Args {
    /// Usage records to seed for the query phase.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Length of each sustained-charges phase.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// A quick run for CI: 20,000 records, 0.5 s phases.
    #[arg(long)]
    smoke: bool,
}

const ORG: &str = "bench";
const MODELS: [(&str, &str); 6] = [
    ("deepseek", "deepseek-chat"),
    ("gemini", "gemini-2.5-flash"),
    ("gemini", "gemini-2.5-pro"),
    ("openai", "gpt-5-codex"),
    ("anthropic", "claude-sonnet-4-6"),
    ("anthropic", "claude-opus-4-6"),
];

fn call(i: u64, reference: String) -> Call {
    let (provider, model) = MODELS[(i % 6) as usize];
    Call {
        org: ORG.into(),
        key_id: format!("key{}", i % 20),
        workflow_id: Some(format!("wf{}", i % 1000)),
        task_id: None,
        stage_id: None,
        reason: Reason::LlmCall,
        tool: None,
        provider: provider.into(),
        model: model.into(),
        account_id: Some(format!("acct{}", i % 4)),
        billing_mode: BillingMode::Metered,
        usage: Some(Usage {
            input: 1_000 + i % 5_000,
            output: 200 + i % 800,
            cache_read: i % 3 * 500,
            cache_write: 0,
        }),
        reported_cost_nanos: None,
        latency_ms: 800,
        outcome: "ok".into(),
        source_system: "bench".into(),
        source_reference: reference,
        reservation_id: None,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Sustained charges for `dur` from `writers` tasks; returns (charges, seconds, p50 µs).
async fn sustained(meter: Arc<Meter>, writers: u64, dur: Duration) -> Result<(u64, f64, f64)> {
    let next = Arc::new(AtomicU64::new(0));
    let ids = Arc::new(Ids::new());
    let start = Instant::now();
    let deadline = start + dur;
    let mut handles = Vec::new();
    for w in 0..writers {
        let (meter, next, ids) = (meter.clone(), next.clone(), ids.clone());
        let (workflow, task) = (ids.next(), ids.next());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                // Each writer is one agent working through its own workflow and
                // task (ids are ULIDs, as the server makes them), under one of
                // four keys and accounts; references are run id / attempt / call.
                let mut c = call(i, format!("{}/1/1", ids.next()));
                c.workflow_id = Some(workflow.clone());
                c.task_id = Some(task.clone());
                c.key_id = format!("key{}", w % 4);
                c.account_id = Some(format!("acct{}", w % 4));
                let r = meter.record(c).await?;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
                if !r.created || r.ledger_entry_id.is_none() {
                    bail!("charge {i} was not created");
                }
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((lat.len() as u64, secs, median(lat)))
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.records = 20_000;
        args.seconds = 0.5;
    }
    let dir = std::env::temp_dir().join(format!("vaultline-meterbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("bench.db");
    let app = App::new(Config {
        db_path: db.clone(),
        ..Default::default()
    })
    .context("open the app")?;
    app.store.ensure_org(ORG, &app.clock.now_text()).await?;
    let dur = Duration::from_secs_f64(args.seconds);
    println!(
        "meterbench: SQLite WAL synchronous=NORMAL at {}; acknowledged = committed",
        db.display()
    );
    println!("| phase | writers | charges | seconds | charges/s | p50 latency | jobs per commit |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut sustained_total = 0;
    for writers in [1u64, 16] {
        let (b0, j0) = app.store.write_stats();
        let (n, secs, p50) = sustained(app.meter.clone(), writers, dur).await?;
        let (b1, j1) = app.store.write_stats();
        sustained_total += n;
        println!(
            "| sustained charges | {writers} | {n} | {secs:.2} | {:.0} | {p50:.0} µs | {:.1} |",
            n as f64 / secs,
            (j1 - j0) as f64 / (b1 - b0).max(1) as f64
        );
    }

    if args.records == 0 {
        app.store.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    // Seed N records over the 30 days before today, hour by hour, 16 writers.
    let today: DateTime<Utc> = Utc.from_utc_datetime(
        &Utc::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .context("midnight")?,
    );
    let start = today - chrono::Duration::days(30);
    let hours = 720u64;
    let per_hour = args.records.div_ceil(hours);
    let meters: Vec<Arc<Meter>> = (0..hours)
        .map(|h| {
            let t = start + chrono::Duration::hours(h as i64) + chrono::Duration::minutes(7);
            Meter::new(
                app.store.clone(),
                Clock::Fixed(t),
                &app.config.billing,
                &app.metrics,
            )
            .map(Arc::new)
        })
        .collect::<Result<_, _>>()?;
    let meters = Arc::new(meters);
    let next = Arc::new(AtomicU64::new(0));
    let seed_ids = Arc::new(Ids::new());
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..16 {
        let (meters, next, total, ids) =
            (meters.clone(), next.clone(), args.records, seed_ids.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let m = &meters[((i / per_hour) as usize).min(meters.len() - 1)];
                m.record(call(i, format!("{}/1/1", ids.next()))).await?;
            }
        }));
    }
    for h in handles {
        h.await??;
    }
    let seed_secs = t0.elapsed().as_secs_f64();
    println!(
        "| seed (30 days) | 16 | {} | {seed_secs:.2} | {:.0} | | |",
        args.records,
        args.records as f64 / seed_secs
    );

    let owner = Principal::local(ORG, Role::Owner);
    let from = vaultline::clock::fmt_time(start);
    let to = vaultline::clock::fmt_time(today);
    println!();
    println!(
        "usage query over {} usage records (30 days, bucket day), median of 7:",
        args.records
    );
    println!("| group_by | rows | calls counted | median ms |");
    println!("|---|---:|---:|---:|");
    for group in ["none", "model", "key"] {
        let q =
            json!({"action": "usage", "from": from, "to": to, "bucket": "day", "group_by": group});
        let mut times = Vec::new();
        let mut rows = 0;
        let mut calls = 0;
        for _ in 0..7 {
            let t = Instant::now();
            let out = vaultline::tools::call_as(&app, &owner, "billing", q.clone()).await?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            rows = out.structured["usage"]["rows"]
                .as_array()
                .map_or(0, Vec::len);
            calls = out.structured["usage"]["total_calls"].as_u64().unwrap_or(0);
        }
        if calls != args.records {
            bail!(
                "the usage query counted {calls} calls, expected {}",
                args.records
            );
        }
        println!("| {group} | {rows} | {calls} | {:.2} |", median(times));
    }
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(dir.join("bench.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    println!();
    println!(
        "database: {:.1} MB for {} usage records and charges",
        size as f64 / 1e6,
        args.records + sustained_total
    );
    app.store.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
