//! Raw samples -> one record per host per 5-minute step. Exists because remote-write delivers
//! samples at the scrape interval with their own timestamps, while the predictor wants one
//! record per server per step (`schemas::STEP_MS`), stamped with the step's start, in a batch
//! whose `clock_ms` is the step's end.
//!
//! Steps are `[k * 300 s, (k + 1) * 300 s)` in Unix time. A gauge's value for a step is the
//! mean of its samples in the step; a counter's is its rate per second: the increase of every
//! consecutive pair of samples whose later one lies in the step, over the time those pairs
//! span (so the pair across a step boundary counts for the later step). A decrease is a
//! counter reset, and the increase is the new value (Prometheus `rate()` semantics); a pair
//! more than [`AlignConfig::max_gap_ms`] apart (a host that was gone) gives no rate.
//!
//! A step closes, and is emitted with every host that reported in it, once a sample at least
//! `close_after_ms` past its end has arrived (the watermark), or, for a source that stopped,
//! once no sample has come for it for `idle_close_ms` of wall time past its end. Steps close in
//! order; a sample for a closed step is rejected as late (`timestamp_skew`).
//!
//! Prometheus's stale marker (NaN with bits 0x7ff0000000000002) means "no value": it is
//! skipped, and ends a counter's run so the next sample starts afresh. Any other NaN or
//! infinity is rejected (`not_finite`).

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use schemas::validate::{check_metric, check_metrics};
use schemas::{MetricRecord, Metrics, RejectReason, ValidationError, STEP_MS};

use crate::mapping::{reduce, Kind, SeriesKey, StepInputs};

/// Prometheus's staleness marker (`value.StaleNaN` in prometheus/model/value).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is Prometheus's stale marker (not any NaN: only this bit pattern).
pub fn is_stale_marker(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Start of the step holding `ts_ms` (floor to a multiple of [`STEP_MS`], negative times too).
pub fn step_start(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(STEP_MS) * STEP_MS
}

#[derive(Debug, Clone, Copy)]
pub struct AlignConfig {
    /// How far past a step's end the watermark must be before the step closes (ms).
    pub close_after_ms: i64,
    /// Wall time without new samples after which a step past its end closes anyway (ms).
    pub idle_close_ms: i64,
    /// Distinct hosts kept at most; samples of further hosts are rejected (`fleet_limit`).
    pub max_hosts: usize,
    /// How far ahead of the wall clock a sample may be (ms).
    pub max_future_ms: i64,
    /// Two counter samples further apart than this give no rate (ms).
    pub max_gap_ms: i64,
}

impl Default for AlignConfig {
    fn default() -> Self {
        AlignConfig { close_after_ms: 60_000, idle_close_ms: 120_000, max_hosts: 10_000, max_future_ms: 600_000, max_gap_ms: 2 * STEP_MS }
    }
}

/// What became of one sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Accepted,
    /// The stale marker: no value, not an error.
    Stale,
    /// A sample not newer than the series' last one (a sender's retry): ignored.
    Duplicate,
    Rejected(ValidationError),
}

/// One closed step: a record per host that reported, and what was dropped while reducing.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedStep {
    pub start_ms: i64,
    /// `start_ms + STEP_MS`: the batch's `clock_ms`.
    pub end_ms: i64,
    pub records: Vec<MetricRecord>,
    /// A metric (or a record) dropped because the reduced value broke the contract.
    pub rejected: Vec<(String, ValidationError)>,
}

#[derive(Debug, Clone, Copy)]
enum Acc {
    Gauge { sum: f64, n: u32 },
    Counter { increase: f64, covered_ms: i64 },
}

#[derive(Debug, Default)]
struct OpenStep {
    hosts: HashMap<String, HashMap<SeriesKey, Acc>>,
    last_update_ms: i64,
}

/// The aligner of one ingest process (one per source).
#[derive(Debug)]
pub struct Aligner {
    cfg: AlignConfig,
    open: BTreeMap<i64, OpenStep>,
    /// Every step ending at or before this is closed (emitted).
    closed_through: i64,
    watermark: i64,
    /// Hosts seen (within the last day), for the fleet bound and counter rates.
    hosts: HashMap<String, HostState>,
}

/// What the aligner keeps of one host between steps. One map per host, so a sample costs one
/// lookup of its host here (the per-sample path at 35,000 samples/s).
#[derive(Debug)]
struct HostState {
    /// The newest sample's time (Unix ms).
    last_ms: i64,
    /// A counter's last sample (ts, value), per series.
    counters: HashMap<SeriesKey, (i64, f64)>,
}

impl Aligner {
    pub fn new(cfg: AlignConfig) -> Self {
        Aligner { cfg, open: BTreeMap::new(), closed_through: i64::MIN, watermark: i64::MIN, hosts: HashMap::new() }
    }

    /// Whether `host` has samples held (within the last day): a host that is not is new.
    pub fn knows(&self, host: &str) -> bool {
        self.hosts.contains_key(host)
    }

    /// Steps still open.
    pub fn open_steps(&self) -> usize {
        self.open.len()
    }

    /// Takes one sample of series `key` (of `kind`) of `host` at `ts_ms`; `wall_ms` is now.
    pub fn push(&mut self, host: &str, key: &SeriesKey, kind: Kind, ts_ms: i64, value: f64, wall_ms: i64) -> Outcome {
        if is_stale_marker(value) {
            if let Some(h) = self.hosts.get_mut(host) {
                h.counters.remove(key);
            }
            return Outcome::Stale;
        }
        if !value.is_finite() {
            let e = ValidationError::new("sample.value", value, RejectReason::NotFinite, "must be a finite number (or the stale marker)");
            return Outcome::Rejected(e);
        }
        if ts_ms > wall_ms.saturating_add(self.cfg.max_future_ms) {
            let rule = format!("must be at most {} ms ahead of the wall clock {wall_ms}", self.cfg.max_future_ms);
            return Outcome::Rejected(ValidationError::new("sample.timestamp", ts_ms, RejectReason::TimestampSkew, rule));
        }
        let start = step_start(ts_ms);
        if start < self.closed_through {
            let rule = format!("its step was already closed and published (every step ending by {})", self.closed_through);
            return Outcome::Rejected(ValidationError::new("sample.timestamp", ts_ms, RejectReason::TimestampSkew, rule));
        }
        if !self.hosts.contains_key(host) {
            if self.hosts.len() >= self.cfg.max_hosts {
                let rule = format!("ingest keeps at most {} hosts (--max-hosts)", self.cfg.max_hosts);
                return Outcome::Rejected(ValidationError::new("server", host, RejectReason::FleetLimit, rule));
            }
            let fresh = HostState { last_ms: i64::MIN, counters: HashMap::new() };
            self.hosts.insert(host.to_owned(), fresh);
        }
        let Some(state) = self.hosts.get_mut(host) else { unreachable!("inserted just above") };
        let acc = match kind {
            Kind::Gauge => Some(Acc::Gauge { sum: value, n: 1 }),
            Kind::Counter => {
                let slot = state.counters.entry(*key).or_insert((i64::MIN, f64::NAN));
                let (prev_ts, prev) = *slot;
                if prev_ts != i64::MIN && ts_ms <= prev_ts {
                    return Outcome::Duplicate;
                }
                *slot = (ts_ms, value);
                // A decrease is a reset: the counter restarted from 0 and rose to `value`.
                let pair = prev_ts != i64::MIN && ts_ms - prev_ts <= self.cfg.max_gap_ms;
                pair.then(|| Acc::Counter { increase: if value >= prev { value - prev } else { value }, covered_ms: ts_ms - prev_ts })
            }
        };
        state.last_ms = state.last_ms.max(ts_ms);
        self.watermark = self.watermark.max(ts_ms);
        let step = self.open.entry(start).or_default();
        step.last_update_ms = wall_ms;
        if let Some(acc) = acc {
            let series = entry_of(&mut step.hosts, host, HashMap::new);
            let slot = series.entry(*key).or_insert(match acc {
                Acc::Gauge { .. } => Acc::Gauge { sum: 0.0, n: 0 },
                Acc::Counter { .. } => Acc::Counter { increase: 0.0, covered_ms: 0 },
            });
            match (slot, acc) {
                (Acc::Gauge { sum, n }, Acc::Gauge { sum: v, .. }) => {
                    *sum += v;
                    *n += 1;
                }
                (Acc::Counter { increase, covered_ms }, Acc::Counter { increase: d, covered_ms: c }) => {
                    *increase += d;
                    *covered_ms += c;
                }
                // A series cannot change kind: its name decides it.
                _ => {}
            }
        }
        Outcome::Accepted
    }

    /// Closes every step that is due (see the module doc), oldest first.
    pub fn close_ready(&mut self, wall_ms: i64) -> Vec<ClosedStep> {
        let mut out = Vec::new();
        while let Some((&start, step)) = self.open.iter().next() {
            let end = start + STEP_MS;
            let by_watermark = self.watermark >= end.saturating_add(self.cfg.close_after_ms);
            let idle = wall_ms - step.last_update_ms >= self.cfg.idle_close_ms && wall_ms >= end + self.cfg.close_after_ms;
            if !(by_watermark || idle) {
                break;
            }
            let Some(step) = self.open.remove(&start) else {
                break;
            };
            self.closed_through = end;
            out.push(close(start, step));
        }
        if !out.is_empty() {
            self.forget_old();
        }
        out
    }

    /// Closes every open step now (shutdown).
    pub fn close_all(&mut self) -> Vec<ClosedStep> {
        let open = std::mem::take(&mut self.open);
        let out: Vec<ClosedStep> = open.into_iter().map(|(start, step)| close(start, step)).collect();
        if let Some(last) = out.last() {
            self.closed_through = last.end_ms;
        }
        out
    }

    /// Drops counter state and hosts not seen for a day, so departed hosts free their slot.
    fn forget_old(&mut self) {
        let horizon = self.watermark.saturating_sub(86_400_000);
        self.hosts.retain(|_, h| {
            h.counters.retain(|_, (ts, _)| *ts >= horizon);
            h.last_ms >= horizon
        });
    }
}

/// `map[k]`, inserting `init()` under an owned copy of `k` only when absent: the hot path (a
/// host and series already known) allocates nothing.
fn entry_of<'m, K, Q, V>(map: &'m mut HashMap<K, V>, k: &Q, init: impl FnOnce() -> V) -> &'m mut V
where
    K: Borrow<Q> + Hash + Eq,
    Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
{
    if !map.contains_key(k) {
        map.insert(k.to_owned(), init());
    }
    match map.get_mut(k) {
        Some(v) => v,
        None => unreachable!("inserted just above"),
    }
}

fn close(start: i64, step: OpenStep) -> ClosedStep {
    let end = start + STEP_MS;
    let mut records = Vec::with_capacity(step.hosts.len());
    let mut rejected = Vec::new();
    let mut hosts: Vec<_> = step.hosts.into_iter().collect();
    hosts.sort_by(|a, b| a.0.cmp(&b.0));
    for (host, series) in hosts {
        let inputs: StepInputs = series
            .into_iter()
            .filter_map(|(k, acc)| match acc {
                Acc::Gauge { sum, n } => (n > 0).then(|| (k, sum / f64::from(n))),
                Acc::Counter { increase, covered_ms } => (covered_ms > 0).then(|| (k, increase / (covered_ms as f64 / 1e3))),
            })
            .collect();
        let mut metrics = reduce(&inputs, end);
        let mut errors = Vec::new();
        let keep = clean(&mut metrics, &mut errors);
        rejected.extend(errors.into_iter().map(|e| (host.clone(), e)));
        if keep && metrics.known().next().is_some() {
            records.push(MetricRecord { server: host, ts_ms: start, profile: None, metrics });
        }
    }
    ClosedStep { start_ms: start, end_ms: end, records, rejected }
}

/// Holds a reduced record to the contract (`schemas::validate`) before it leaves: each metric
/// that breaks its range is dropped on its own (one bad value does not cost the host its
/// others) and pushed to `rejected`; false when the record as a whole breaks a rule (CPU parts
/// not summing to about 100, every metric 0), which is pushed too.
pub fn clean(metrics: &mut Metrics, rejected: &mut Vec<ValidationError>) -> bool {
    for (m, v) in metrics.known().collect::<Vec<_>>() {
        if let Err(e) = check_metric(m, v) {
            metrics.set(m, None);
            rejected.push(e);
        }
    }
    match check_metrics(metrics) {
        Ok(()) => true,
        Err(e) => {
            rejected.push(e);
            false
        }
    }
}

#[cfg(test)]
#[path = "align_tests.rs"]
mod tests;
