//! Measurements: a bounded latency histogram, per-client statistics that are
//! merged at the end, the live counters behind the progress line, and the
//! final report (text or JSON).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Values below `2 * SUB` microseconds are recorded exactly; above, each
/// power of two is split in `SUB` buckets (relative error below 1/128).
const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;
/// Larger values (about 19 hours) are clamped.
const MAX_VALUE: u64 = (1 << 36) - 1;

/// A log-linear latency histogram in microseconds: bounded memory (at most
/// ~4000 buckets) whatever the number of samples, mergeable, exact maximum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u128,
}

fn bucket_of(v: u64) -> usize {
    let v = v.min(MAX_VALUE);
    if v < 2 * SUB as u64 {
        return v as usize;
    }
    let shift = (63 - v.leading_zeros()) - SUB_BITS;
    shift as usize * SUB + (v >> shift) as usize
}

/// Largest value that falls in bucket `i`.
fn bucket_high(i: usize) -> u64 {
    if i < 2 * SUB {
        return i as u64;
    }
    let shift = i / SUB - 1;
    let m = (i - shift * SUB) as u64;
    ((m + 1) << shift) - 1
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        self.record_micros(d.as_micros().min(MAX_VALUE as u128) as u64);
    }

    pub fn record_micros(&mut self, v: u64) {
        let i = bucket_of(v);
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        self.total += 1;
        self.max = self.max.max(v.min(MAX_VALUE));
        self.sum += v as u128;
    }

    pub fn merge(&mut self, other: &Histogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max_micros(&self) -> u64 {
        self.max
    }

    pub fn mean_micros(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// Nearest-rank percentile: the smallest recorded value (up to bucket
    /// precision) such that at least `p`% of the samples are at or below it.
    /// 0 when empty.
    pub fn percentile_micros(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().clamp(1.0, self.total as f64) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_high(i).min(self.max);
            }
        }
        self.max
    }
}

/// What one client (or one task) measured.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Latency of successful requests, per operation.
    pub ops: BTreeMap<&'static str, Histogram>,
    /// Failed requests per operation.
    pub op_errors: BTreeMap<&'static str, u64>,
    /// Failed requests per status (or client error kind).
    pub errors: BTreeMap<String, u64>,
}

impl Stats {
    pub fn ok(&mut self, op: &'static str, latency: Duration, progress: &Progress) {
        self.ops.entry(op).or_default().record(latency);
        progress.done.fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&mut self, op: &'static str, status: &str, progress: &Progress) {
        *self.op_errors.entry(op).or_default() += 1;
        *self.errors.entry(status.to_string()).or_default() += 1;
        progress.done.fetch_add(1, Ordering::Relaxed);
        progress.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn merge(&mut self, other: &Stats) {
        for (op, h) in &other.ops {
            self.ops.entry(op).or_default().merge(h);
        }
        for (op, n) in &other.op_errors {
            *self.op_errors.entry(op).or_default() += n;
        }
        for (status, n) in &other.errors {
            *self.errors.entry(status.clone()).or_default() += n;
        }
    }

    pub fn ok_count(&self) -> u64 {
        self.ops.values().map(Histogram::count).sum()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// All operations' latencies together.
    pub fn overall(&self) -> Histogram {
        let mut all = Histogram::default();
        for h in self.ops.values() {
            all.merge(h);
        }
        all
    }
}

/// Live counters shared by every client, read by the progress line.
#[derive(Debug, Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub errors: AtomicU64,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: &'static str,
    pub clients: usize,
    /// Length of the measured phase.
    pub elapsed: Duration,
    pub stats: Stats,
    /// Name of the operation whose successes are the "requests" of the
    /// throughput and latency lines (`None`: all operations).
    pub main_op: Option<&'static str>,
    /// Server CPU time (user + system) during the measured phase.
    pub server_cpu: Option<Duration>,
    /// This tool's CPU time during the measured phase.
    pub tool_cpu: Option<Duration>,
    /// Busy CPU time of the whole machine (all cores, all processes) during
    /// the measured phase: what is left after server and tool went to other
    /// programs, which makes a figure suspect on a shared machine.
    pub machine_cpu: Option<Duration>,
    /// Scenario-specific figures, in display order.
    pub extra: Vec<(String, serde_json::Value)>,
    /// Things the reader must know (fallbacks, caveats).
    pub notes: Vec<String>,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Report {
    /// Latencies of the requests that count.
    pub fn latency(&self) -> Histogram {
        match self.main_op {
            Some(op) => self.stats.ops.get(op).cloned().unwrap_or_default(),
            None => self.stats.overall(),
        }
    }

    /// Successful requests that count.
    pub fn ok(&self) -> u64 {
        self.latency().count()
    }

    pub fn errors(&self) -> u64 {
        self.stats.error_count()
    }

    /// Successful requests per second of the measured phase.
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.ok() as f64 / secs } else { 0.0 }
    }

    /// CPU time other programs used during the measured phase (known when
    /// the server's is).
    pub fn other_cpu(&self) -> Option<Duration> {
        Some(self.machine_cpu?.saturating_sub(self.server_cpu? + self.tool_cpu?))
    }

    /// Server CPU milliseconds per successful request.
    pub fn server_cpu_ms_per_request(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.ok() > 0).then(|| cpu.as_secs_f64() * 1000.0 / self.ok() as f64)
    }

    fn latency_json(h: &Histogram) -> serde_json::Value {
        serde_json::json!({
            "count": h.count(),
            "mean": ms(h.mean_micros() as u64),
            "p50": ms(h.percentile_micros(50.0)),
            "p90": ms(h.percentile_micros(90.0)),
            "p99": ms(h.percentile_micros(99.0)),
            "max": ms(h.max_micros()),
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        out.insert("scenario".into(), self.scenario.into());
        out.insert("clients".into(), self.clients.into());
        out.insert(
            "duration_s".into(),
            ((self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0).into(),
        );
        out.insert("requests".into(), (self.ok() + self.errors()).into());
        out.insert("ok".into(), self.ok().into());
        out.insert("errors".into(), self.errors().into());
        out.insert("errors_by_status".into(), serde_json::json!(self.stats.errors));
        out.insert(
            "throughput_rps".into(),
            ((self.throughput() * 10.0).round() / 10.0).into(),
        );
        out.insert("latency_ms".into(), Self::latency_json(&self.latency()));
        if self.stats.ops.len() + self.stats.op_errors.len() > 1 {
            let mut ops = serde_json::Map::new();
            for (op, h) in &self.stats.ops {
                let mut o = Self::latency_json(h);
                o["errors"] = self.stats.op_errors.get(op).copied().unwrap_or(0).into();
                ops.insert(op.to_string(), o);
            }
            for (op, n) in &self.stats.op_errors {
                ops.entry(op.to_string())
                    .or_insert_with(|| serde_json::json!({"count": 0, "errors": n}));
            }
            out.insert("ops".into(), ops.into());
        }
        if let Some(cpu) = self.server_cpu {
            out.insert("server_cpu_ms".into(), (cpu.as_millis() as u64).into());
        }
        if let Some(per) = self.server_cpu_ms_per_request() {
            out.insert(
                "server_cpu_ms_per_request".into(),
                ((per * 10000.0).round() / 10000.0).into(),
            );
        }
        if let Some(cpu) = self.tool_cpu {
            out.insert("tool_cpu_ms".into(), (cpu.as_millis() as u64).into());
        }
        if let Some(cpu) = self.machine_cpu {
            out.insert("machine_cpu_ms".into(), (cpu.as_millis() as u64).into());
        }
        if let Some(other) = self.other_cpu() {
            out.insert("other_processes_cpu_ms".into(), (other.as_millis() as u64).into());
        }
        for (k, v) in &self.extra {
            out.insert(k.clone(), v.clone());
        }
        if !self.notes.is_empty() {
            out.insert("notes".into(), serde_json::json!(self.notes));
        }
        out.into()
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let line = |s: &mut String, k: &str, v: String| s.push_str(&format!("{k:<22}{v}\n"));
        line(&mut s, "scenario", self.scenario.to_string());
        line(&mut s, "clients", self.clients.to_string());
        line(&mut s, "duration", format!("{:.2} s", self.elapsed.as_secs_f64()));
        line(
            &mut s,
            "requests",
            format!("{} ({} ok)", self.ok() + self.errors(), self.ok()),
        );
        let errors = if self.stats.errors.is_empty() {
            "0".to_string()
        } else {
            let by: Vec<String> = self.stats.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{} ({})", self.errors(), by.join(", "))
        };
        line(&mut s, "errors", errors);
        line(&mut s, "throughput", format!("{:.1} req/s", self.throughput()));
        let h = self.latency();
        line(
            &mut s,
            "latency (ms)",
            format!(
                "p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
                ms(h.percentile_micros(50.0)),
                ms(h.percentile_micros(90.0)),
                ms(h.percentile_micros(99.0)),
                ms(h.max_micros())
            ),
        );
        if self.stats.ops.len() + self.stats.op_errors.len() > 1 {
            for (op, h) in &self.stats.ops {
                line(
                    &mut s,
                    &format!("  {op}"),
                    format!(
                        "{} ok, {} err, p50 {:.3}  p99 {:.3}  max {:.3}",
                        h.count(),
                        self.stats.op_errors.get(op).copied().unwrap_or(0),
                        ms(h.percentile_micros(50.0)),
                        ms(h.percentile_micros(99.0)),
                        ms(h.max_micros())
                    ),
                );
            }
        }
        if let Some(cpu) = self.server_cpu {
            let per = self
                .server_cpu_ms_per_request()
                .map(|p| format!(", {p:.4} ms/request"))
                .unwrap_or_default();
            line(&mut s, "server cpu", format!("{} ms{per}", cpu.as_millis()));
        }
        if let Some(cpu) = self.tool_cpu {
            line(&mut s, "tool cpu", format!("{} ms", cpu.as_millis()));
        }
        if let Some(other) = self.other_cpu() {
            line(&mut s, "other processes cpu", format!("{} ms", other.as_millis()));
        }
        for (k, v) in &self.extra {
            line(&mut s, k, v.to_string());
        }
        for n in &self.notes {
            s.push_str(&format!("note: {n}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values: impl IntoIterator<Item = u64>) -> Histogram {
        let mut h = Histogram::default();
        for v in values {
            h.record_micros(v);
        }
        h
    }

    #[test]
    fn exact_percentiles_for_small_values() {
        let h = hist(1..=100);
        assert_eq!(h.count(), 100);
        assert_eq!(h.percentile_micros(50.0), 50);
        assert_eq!(h.percentile_micros(90.0), 90);
        assert_eq!(h.percentile_micros(99.0), 99);
        assert_eq!(h.percentile_micros(100.0), 100);
        assert_eq!(h.percentile_micros(0.0), 1);
        assert_eq!(h.max_micros(), 100);
        assert!((h.mean_micros() - 50.5).abs() < 1e-9);
        // Nearest rank, order independent, one sample.
        let h = hist([7, 3, 9, 1]);
        assert_eq!(h.percentile_micros(50.0), 3);
        assert_eq!(h.percentile_micros(75.0), 7);
        assert_eq!(h.percentile_micros(76.0), 9);
        assert_eq!(hist([42]).percentile_micros(99.0), 42);
        assert_eq!(Histogram::default().percentile_micros(50.0), 0);
    }

    #[test]
    fn large_values_within_one_percent() {
        let h = hist((1..=1000).map(|v| v * 1000));
        for (p, want) in [(50.0, 500_000.0), (90.0, 900_000.0), (99.0, 990_000.0)] {
            let got = h.percentile_micros(p) as f64;
            assert!((got - want).abs() / want < 0.01, "p{p}: {got} vs {want}");
            assert!(got >= want, "nearest rank never undershoots: p{p}");
        }
        assert_eq!(h.percentile_micros(100.0), 1_000_000);
        // Clamped, never out of bounds.
        let h = hist([u64::MAX, 0]);
        assert_eq!(h.max_micros(), MAX_VALUE);
        assert!(h.counts.len() < 4000);
    }

    #[test]
    fn buckets_are_contiguous() {
        for i in 0..bucket_of(MAX_VALUE) {
            assert_eq!(bucket_of(bucket_high(i)), i);
            assert_eq!(bucket_of(bucket_high(i) + 1), i + 1);
        }
    }

    #[test]
    fn merge_equals_recording_everything() {
        let mut a = hist((0..500).map(|v| v * 37));
        let b = hist((500..1000).map(|v| v * 37));
        a.merge(&b);
        assert_eq!(a, hist((0..1000).map(|v| v * 37)));
    }

    #[test]
    fn report_json() {
        let p = Progress::default();
        let mut s = Stats::default();
        for i in 1..=100 {
            s.ok("ping", Duration::from_micros(i * 10), &p);
        }
        s.error("ping", "timeout_no_reply", &p);
        let r = Report {
            scenario: "ping",
            clients: 2,
            elapsed: Duration::from_secs(2),
            stats: s,
            main_op: None,
            server_cpu: Some(Duration::from_millis(50)),
            tool_cpu: Some(Duration::from_millis(20)),
            machine_cpu: Some(Duration::from_millis(100)),
            extra: vec![],
            notes: vec![],
        };
        let j = r.to_json();
        assert_eq!(j["requests"], 101);
        assert_eq!(j["errors"], 1);
        assert_eq!(j["errors_by_status"]["timeout_no_reply"], 1);
        assert_eq!(j["throughput_rps"], 50.0);
        // Within bucket precision (< 1 %), never below the true value.
        let p50 = j["latency_ms"]["p50"].as_f64().unwrap();
        assert!((0.5..0.505).contains(&p50), "{p50}");
        assert_eq!(j["latency_ms"]["max"], 1.0);
        assert_eq!(j["server_cpu_ms_per_request"], 0.5);
        assert_eq!(j["other_processes_cpu_ms"], 30);
        assert!(r.to_text().contains("p50 0.501"), "{}", r.to_text());
        assert_eq!(p.done.load(Ordering::Relaxed), 101);
    }
}
