//! Per-run counters, latency percentiles and the one-line report.

use std::time::Duration;

/// What one worker (or a whole run, after merging) observed in the measured window.
#[derive(Debug, Default)]
pub struct Stats {
    /// Latency of every successful call.
    pub ok_latencies: Vec<Duration>,
    /// Calls that failed (transport, HTTP status, JSON-RPC error, `isError: true`).
    pub errors: u64,
}

impl Stats {
    /// Fold another worker's results into this one.
    pub fn merge(&mut self, other: Stats) {
        self.ok_latencies.extend(other.ok_latencies);
        self.errors += other.errors;
    }

    /// Record one call.
    pub fn record(&mut self, latency: Duration, ok: bool) {
        if ok {
            self.ok_latencies.push(latency);
        } else {
            self.errors += 1;
        }
    }
}

/// Nearest-rank percentile `p` (0..=100) of a sorted slice.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Everything printed on a result line.
#[derive(Debug)]
pub struct Report<'a> {
    /// Free-form name of the run (`--label`).
    pub label: &'a str,
    /// `http`, `http-stateless` or `stdio`.
    pub mode: &'a str,
    /// Tool called.
    pub tool: &'a str,
    /// Calls in flight.
    pub concurrency: usize,
    /// Length of the measured window.
    pub elapsed: Duration,
    /// Peak RSS in MB of the server, when known.
    pub peak_rss_mb: Option<f64>,
}

impl Report<'_> {
    /// One line: `calls` = all measured calls, `calls/s` = successful calls per second.
    pub fn line(&self, mut stats: Stats) -> String {
        stats.ok_latencies.sort_unstable();
        let ok = stats.ok_latencies.len() as u64;
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 { ok as f64 / secs } else { 0.0 };
        let ms = |p: f64| {
            percentile(&stats.ok_latencies, p).map_or_else(
                || "-".to_owned(),
                |d| format!("{:.3}", d.as_secs_f64() * 1e3),
            )
        };
        let mut line = format!(
            "label={} mode={} tool={} c={} calls={} errors={} secs={:.2} calls/s={:.1} p50_ms={} p90_ms={} p99_ms={}",
            self.label,
            self.mode,
            self.tool,
            self.concurrency,
            ok + stats.errors,
            stats.errors,
            secs,
            rate,
            ms(50.0),
            ms(90.0),
            ms(99.0),
        );
        if let Some(mb) = self.peak_rss_mb {
            line.push_str(&format!(" peak_rss_mb={mb:.1}"));
        }
        line
    }
}

/// Peak resident set size (`VmHWM`) of a live process, in MB (1 MB = 1024 kB).
pub fn peak_rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))?
        .parse::<f64>()?;
    Ok(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&v, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&v, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&v[..1], 1.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(peak_rss_mb(std::process::id()).is_ok_and(|mb| mb > 0.0));
    }
}
