//! Counters and timings of the running predictor, shared between the loop (which writes
//! them) and the `service` API's stats handler (which reads them as JSON for
//! `nats micro info predictor` / `nats micro stats predictor`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// Tick latencies kept for the percentiles.
const LATENCY_WINDOW: usize = 1024;

/// Time spent per stage, in milliseconds. Decode and KV accumulate over the messages since
/// the previous tick; the rest are the tick's own.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Stages {
    pub decode_ms: f64,
    pub kv_ms: f64,
    pub features_ms: f64,
    pub inference_ms: f64,
    pub risk_ms: f64,
    pub encode_ms: f64,
    pub publish_ms: f64,
}

impl Stages {
    pub fn add(&mut self, o: &Stages) {
        self.decode_ms += o.decode_ms;
        self.kv_ms += o.kv_ms;
        self.features_ms += o.features_ms;
        self.inference_ms += o.inference_ms;
        self.risk_ms += o.risk_ms;
        self.encode_ms += o.encode_ms;
        self.publish_ms += o.publish_ms;
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: usize,
}

fn percentiles(values: &VecDeque<f64>) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    let mut v: Vec<f64> = values.iter().copied().collect();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    Percentiles { p50: at(0.50), p95: at(0.95), p99: at(0.99), max: v[v.len() - 1], samples: v.len() }
}

/// The predictor's figures at one moment, as the stats endpoint reports them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub model_version: String,
    pub batches: u64,
    pub records: u64,
    pub accepted: u64,
    /// Of `accepted`, late records that filled metrics a closed step lacked.
    pub late_filled: u64,
    /// Records with nothing new (every value already counted: a re-sent batch, a redelivery).
    pub duplicates: u64,
    pub rejected: u64,
    /// reason → count.
    pub rejects_by_reason: BTreeMap<String, u64>,
    /// source → reason → count.
    pub rejects_by_source: BTreeMap<String, BTreeMap<String, u64>>,
    pub ticks: u64,
    pub snapshots_seq: u64,
    pub windows: usize,
    pub warming: usize,
    pub ready: usize,
    /// From the batch that closed a step (its JetStream publish time) to the snapshot out.
    pub tick_latency_ms: Percentiles,
    pub inference_ms: Percentiles,
    pub last_tick: Stages,
    pub last_tick_servers: usize,
    pub last_snapshot_parts: usize,
    pub last_snapshot_bytes: usize,
    pub kv_keys_written: u64,
    pub kv_bytes_written: u64,
    pub resident_mb: f64,
    /// A partitioned predictor's partitions held now (key = partition index), each with its
    /// own last tick; `last_tick` above is whichever of them ticked last. Empty unpartitioned.
    pub partitions: BTreeMap<u16, PartitionFigures>,
}

/// One partition a partitioned predictor holds: its ticks so far and the last of them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PartitionFigures {
    pub ticks: u64,
    pub last: TickRecord,
}

#[derive(Debug, Default)]
struct Inner {
    report: Report,
    latencies: VecDeque<f64>,
    inference: VecDeque<f64>,
}

/// Cheap to clone; every clone sees the same figures.
#[derive(Debug, Clone, Default)]
pub struct Stats(Arc<Mutex<Inner>>);

fn push(q: &mut VecDeque<f64>, v: f64) {
    if q.len() == LATENCY_WINDOW {
        q.pop_front();
    }
    q.push_back(v);
}

impl Stats {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    pub fn set_model(&self, version: &str) {
        self.with(|i| i.report.model_version = version.to_string());
    }

    pub fn message(&self, report: &crate::ingest::MessageReport) {
        self.with(|i| {
            let r = &mut i.report;
            r.batches += 1;
            r.records += report.records as u64;
            r.accepted += report.accepted as u64;
            r.late_filled += report.filled as u64;
            r.duplicates += report.duplicates as u64;
            r.rejected += report.rejected.len() as u64;
            for j in &report.rejected {
                let reason = j.error.reason.name().to_string();
                *r.rejects_by_reason.entry(reason.clone()).or_default() += 1;
                *r.rejects_by_source.entry(report.source.clone()).or_default().entry(reason).or_default() += 1;
            }
        });
    }

    pub fn kv(&self, keys: usize, bytes: usize) {
        self.with(|i| {
            i.report.kv_keys_written += keys as u64;
            i.report.kv_bytes_written += bytes as u64;
        });
    }

    pub fn windows(&self, windows: usize, warming: usize) {
        self.with(|i| {
            i.report.windows = windows;
            i.report.warming = warming;
            i.report.ready = windows - warming.min(windows);
        });
    }

    /// Records a finished tick (and, on a partition's loop, the partition's own figures).
    pub fn tick(&self, t: &TickRecord) {
        self.with(|i| {
            if let Some(p) = t.partition {
                let f = i.report.partitions.entry(p).or_default();
                f.ticks += 1;
                f.last = t.clone();
            }
            i.report.ticks += 1;
            i.report.snapshots_seq = t.seq;
            i.report.last_tick = t.stages;
            i.report.last_tick_servers = t.servers;
            i.report.last_snapshot_parts = t.parts;
            i.report.last_snapshot_bytes = t.bytes;
            if let Some(l) = t.latency_ms {
                push(&mut i.latencies, l);
            }
            if t.stages.inference_ms > 0.0 {
                push(&mut i.inference, t.stages.inference_ms);
            }
        });
    }

    /// The partitions held now: figures of the others are dropped, new ones start empty.
    pub fn held(&self, partitions: &[u16]) {
        self.with(|i| {
            let figures = &mut i.report.partitions;
            figures.retain(|p, _| partitions.contains(p));
            for p in partitions {
                figures.entry(*p).or_default();
            }
        });
    }

    pub fn report(&self) -> Report {
        self.with(|i| {
            let mut r = i.report.clone();
            r.tick_latency_ms = percentiles(&i.latencies);
            r.inference_ms = percentiles(&i.inference);
            r.resident_mb = resident_bytes().map_or(0.0, |b| b as f64 / (1024.0 * 1024.0));
            r
        })
    }
}

/// One tick, as [`Stats::tick`] records it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TickRecord {
    /// The snapshot's number.
    pub seq: u64,
    pub stages: Stages,
    /// Servers forecast on this tick.
    pub servers: usize,
    /// The snapshot's parts and bytes.
    pub parts: usize,
    pub bytes: usize,
    /// From the batch that closed the step (its JetStream publish time) to the snapshot out.
    pub latency_ms: Option<f64>,
    /// The partition ticked (a partitioned predictor's loop); `None` for the whole fleet.
    pub partition: Option<u16>,
    /// Servers in the loop's windows after the tick.
    pub windows: usize,
}

/// Resident set size of this process (Linux `/proc/self/status`).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_rank() {
        let q: VecDeque<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&q);
        assert_eq!((p.p50, p.p95, p.p99, p.max, p.samples), (50.0, 95.0, 99.0, 100.0, 100));
        assert_eq!(percentiles(&VecDeque::new()).samples, 0);
    }

    #[test]
    fn rejects_count_per_reason_and_source() {
        let s = Stats::default();
        let e = schemas::ValidationError::new("x", 1, schemas::RejectReason::OutOfRange, "r");
        let rej = schemas::Rejection { v: 1, source: "g".into(), seq: None, index: None, server: None, error: e, rejected_ms: 0 };
        let m = crate::ingest::MessageReport { source: "g".into(), records: 3, accepted: 2, rejected: vec![rej], ..Default::default() };
        s.message(&m);
        s.message(&m);
        let r = s.report();
        assert_eq!((r.batches, r.records, r.accepted, r.rejected), (2, 6, 4, 2));
        assert_eq!(r.rejects_by_reason["out_of_range"], 2);
        assert_eq!(r.rejects_by_source["g"]["out_of_range"], 2);
        assert!(r.resident_mb > 0.0);
    }

    #[test]
    fn partitions_keep_their_own_last_tick_while_held() {
        let s = Stats::default();
        s.held(&[1, 3]);
        let t =
            |partition, servers| TickRecord { seq: 7, servers, windows: servers, partition, latency_ms: Some(9.0), ..Default::default() };
        s.tick(&t(Some(3), 40));
        s.tick(&t(Some(1), 60));
        s.tick(&t(None, 100));
        let r = s.report();
        assert_eq!(r.partitions.keys().copied().collect::<Vec<_>>(), [1, 3]);
        assert_eq!((r.partitions[&3].last.servers, r.partitions[&3].ticks, r.partitions[&1].last.windows), (40, 1, 60));
        assert_eq!(r.partitions[&1].last.latency_ms, Some(9.0));
        s.held(&[3, 5]);
        let r = s.report();
        assert_eq!(r.partitions.keys().copied().collect::<Vec<_>>(), [3, 5]);
        assert_eq!((r.partitions[&3].last.servers, r.partitions[&5].ticks), (40, 0));
    }
}
