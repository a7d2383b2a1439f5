//! The predictor's Prometheus metrics (`/metrics` on `--metrics-listen`, served by
//! `fleetbus::metrics`): the pipeline's health under `fleetcast_predictor_`, and the forecasts
//! at now under `fleetcast_` ([`crate::prom_series`]). Counters are bumped where the loop
//! already counts for the stats service (`run.rs`: one call per message, per failed KV write,
//! per tick); nothing here runs per record or per scrape beyond reading atomics.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `fleetcast_predictor_batches_total` | counter | `source` | messages taken from METRICS |
//! | `fleetcast_predictor_records_accepted_total` | counter | `source` | records that counted (open step, or filling a closed one) |
//! | `fleetcast_predictor_records_late_total` | counter | `source` | of accepted, late records that filled a closed step |
//! | `fleetcast_predictor_records_duplicate_total` | counter | `source` | valid records with nothing new (re-sent, redelivered) |
//! | `fleetcast_predictor_records_rejected_total` | counter | `source`, `reason` | rejections as published on `metrics.rejected` (a whole bad message counts once) |
//! | `fleetcast_predictor_kv_write_errors_total` | counter | | failed window writes to KV (each retry counts) |
//! | `fleetcast_predictor_ticks_total` | counter | | snapshots computed |
//! | `fleetcast_predictor_tick_latency_seconds` | histogram | | batch that closed a step stored -> snapshot published |
//! | `fleetcast_predictor_inference_seconds` | histogram | | model time of one tick (all chunks, wall) |
//! | `fleetcast_predictor_servers_warming` / `_ready` | gauge | | servers without / with enough history to forecast |
//! | `fleetcast_predictor_snapshot_bytes` / `_parts` | gauge | | size and part count of the last snapshot |
//! | `fleetcast_predictor_model_info` | info | `version` | the loaded model |
//!
//! `source` is the subject's source token (one per adapter or generator; bounded by the
//! publishers NATS lets in), `reason` one of `schemas::RejectReason`'s 16 names.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::ingest::MessageReport;
use crate::prom_series::ServerFamilies;
use crate::stats::TickRecord;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub source: String,
    pub reason: &'static str,
}

/// Handles to the pipeline metrics; clones share the same values.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub batches: Family<SourceLabels, Counter>,
    pub accepted: Family<SourceLabels, Counter>,
    pub late: Family<SourceLabels, Counter>,
    pub duplicates: Family<SourceLabels, Counter>,
    pub rejected: Family<RejectLabels, Counter>,
    pub kv_write_errors: Counter,
    pub ticks: Counter,
    pub tick_latency: Histogram,
    pub inference: Histogram,
    pub warming: Gauge,
    pub ready: Gauge,
    pub snapshot_bytes: Gauge,
    pub snapshot_parts: Gauge,
}

impl Metrics {
    /// The pipeline metrics and the per-server families, registered in a new registry
    /// (prefix `fleetcast`); `model_version` becomes the info metric.
    pub fn new(model_version: &str) -> (Metrics, ServerFamilies, Registry) {
        let mut root = Registry::with_prefix("fleetcast");
        let servers = ServerFamilies::register(&mut root);
        let r = root.sub_registry_with_prefix("predictor");
        let m = Metrics {
            batches: Family::default(),
            accepted: Family::default(),
            late: Family::default(),
            duplicates: Family::default(),
            rejected: Family::default(),
            kv_write_errors: Counter::default(),
            ticks: Counter::default(),
            // 10 ms .. ~164 s: a small fleet ticks in milliseconds, a backlog in tens of seconds.
            tick_latency: Histogram::new(exponential_buckets(0.01, 2.0, 15)),
            // 1 ms .. ~16 s.
            inference: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            warming: Gauge::default(),
            ready: Gauge::default(),
            snapshot_bytes: Gauge::default(),
            snapshot_parts: Gauge::default(),
        };
        r.register("batches", "Messages taken from the METRICS stream", m.batches.clone());
        r.register("records_accepted", "Records that counted", m.accepted.clone());
        r.register("records_late", "Accepted late records that filled a closed step", m.late.clone());
        r.register("records_duplicate", "Valid records with nothing new (re-sent, redelivered)", m.duplicates.clone());
        r.register(
            "records_rejected",
            "Rejections published on metrics.rejected, by source and reason (a whole bad message counts once)",
            m.rejected.clone(),
        );
        r.register("kv_write_errors", "Failed window writes to the KV bucket (each retry counts)", m.kv_write_errors.clone());
        r.register("ticks", "Snapshots computed", m.ticks.clone());
        r.register(
            "tick_latency_seconds",
            "Seconds from the batch that closed a step being stored to its snapshot published",
            m.tick_latency.clone(),
        );
        r.register("inference_seconds", "Model inference seconds per tick", m.inference.clone());
        r.register("servers_warming", "Servers without enough history to forecast yet", m.warming.clone());
        r.register("servers_ready", "Servers with enough history to forecast", m.ready.clone());
        r.register("snapshot_bytes", "Bytes of the last snapshot (all parts)", m.snapshot_bytes.clone());
        r.register("snapshot_parts", "Parts of the last snapshot", m.snapshot_parts.clone());
        r.register("model", "The loaded forecasting model", Info::new(vec![("version".to_string(), model_version.to_string())]));
        (m, servers, root)
    }

    /// Counts one ingested message (where `Stats::message` counts it for the stats service).
    pub fn message(&self, report: &MessageReport) {
        let source = SourceLabels { source: report.source.clone() };
        self.batches.get_or_create(&source).inc();
        if report.accepted > 0 {
            self.accepted.get_or_create(&source).inc_by(report.accepted as u64);
        }
        if report.filled > 0 {
            self.late.get_or_create(&source).inc_by(report.filled as u64);
        }
        if report.duplicates > 0 {
            self.duplicates.get_or_create(&source).inc_by(report.duplicates as u64);
        }
        for j in &report.rejected {
            let labels = RejectLabels { source: report.source.clone(), reason: j.error.reason.name() };
            self.rejected.get_or_create(&labels).inc();
        }
    }

    /// Records a finished tick and the windows after it.
    pub fn tick(&self, t: &TickRecord, windows: usize, warming: usize) {
        self.ticks.inc();
        if let Some(l) = t.latency_ms {
            self.tick_latency.observe(l.max(0.0) / 1000.0);
        }
        if t.stages.inference_ms > 0.0 {
            self.inference.observe(t.stages.inference_ms / 1000.0);
        }
        self.warming.set(warming as i64);
        self.ready.set(windows.saturating_sub(warming) as i64);
        self.snapshot_bytes.set(t.bytes as i64);
        self.snapshot_parts.set(t.parts as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom_series::{SeriesConfig, ServerGauges, ServerRow};
    use schemas::{Level, Profile, Target};

    fn rejection(reason: schemas::RejectReason) -> schemas::Rejection {
        let e = schemas::ValidationError::new("x", 1, reason, "r");
        schemas::Rejection { v: 1, source: "gen".into(), seq: None, index: None, server: None, error: e, rejected_ms: 0 }
    }

    #[test]
    fn renders_every_series_with_its_labels() {
        let (m, mut servers, registry) = Metrics::new("tft-7");
        let report = MessageReport {
            source: "gen".into(),
            records: 5,
            accepted: 3,
            filled: 1,
            duplicates: 1,
            rejected: vec![rejection(schemas::RejectReason::OutOfRange)],
            closed: 1,
        };
        m.message(&report);
        m.message(&report);
        m.kv_write_errors.inc();
        let t = TickRecord { seq: 1, servers: 2, parts: 1, bytes: 5000, latency_ms: Some(120.0), ..Default::default() };
        m.tick(&t, 3, 1);
        let mut g = ServerGauges::default();
        g.forecast.push((Target::Cpu, [[10.0, 20.0, 30.0]; crate::prom_series::HORIZONS.len()]));
        g.breaches.push((Target::Cpu, Level::Critical, 35));
        let rows = [
            ServerRow { name: "ppweb0001", profile: Profile::WebApi, risk: 91.5, level: Level::Critical, gauges: &g },
            ServerRow { name: "ppdb0002", profile: Profile::Database, risk: 3.0, level: Level::Healthy, gauges: &ServerGauges::default() },
        ];
        servers.fill(&SeriesConfig::default(), rows.iter().cloned());
        let page = fleetbus::metrics::render(&registry).expect("renders");
        for line in [
            "fleetcast_predictor_batches_total{source=\"gen\"} 2",
            "fleetcast_predictor_records_accepted_total{source=\"gen\"} 6",
            "fleetcast_predictor_records_late_total{source=\"gen\"} 2",
            "fleetcast_predictor_records_duplicate_total{source=\"gen\"} 2",
            "fleetcast_predictor_records_rejected_total{source=\"gen\",reason=\"out_of_range\"} 2",
            "fleetcast_predictor_kv_write_errors_total 1",
            "fleetcast_predictor_ticks_total 1",
            "fleetcast_predictor_tick_latency_seconds_count 1",
            "fleetcast_predictor_servers_warming 1",
            "fleetcast_predictor_servers_ready 2",
            "fleetcast_predictor_snapshot_bytes 5000",
            "fleetcast_predictor_snapshot_parts 1",
            "fleetcast_predictor_model_info{version=\"tft-7\"} 1",
            "fleetcast_risk_score{server=\"ppweb0001\",profile=\"web_api\"} 91.5",
            "fleetcast_level{server=\"ppweb0001\"} 3",
            "fleetcast_level{server=\"ppdb0002\"} 0",
            "fleetcast_forecast{server=\"ppweb0001\",target=\"cpu\",quantile=\"0.5\",horizon=\"30m\"} 20.0",
            "fleetcast_forecast{server=\"ppweb0001\",target=\"cpu\",quantile=\"0.9\",horizon=\"8h\"} 30.0",
            "fleetcast_time_to_breach_seconds{server=\"ppweb0001\",target=\"cpu\",severity=\"critical\"} 2100.0",
            "fleetcast_forecast_servers_omitted 0",
        ] {
            assert!(page.contains(line), "missing {line:?} in:\n{page}");
        }
        // 5 horizons x 3 quantiles of one target.
        assert_eq!(page.lines().filter(|l| l.starts_with("fleetcast_forecast{")).count(), 15);
        assert!(page.contains("# TYPE fleetcast_predictor_tick_latency_seconds histogram"));
        assert!(page.trim_end().ends_with("# EOF"));

        // The next tick without ppweb0001: its series are gone, the other's stay.
        servers.fill(&SeriesConfig::default(), rows[1..].iter().cloned());
        let page = fleetbus::metrics::render(&registry).expect("renders");
        assert!(!page.contains("ppweb0001"), "{page}");
        assert!(page.contains("fleetcast_level{server=\"ppdb0002\"} 0"));

        // Without forecast gauges: risk and level only.
        let off = SeriesConfig { forecasts: false, ..SeriesConfig::default() };
        servers.fill(&off, rows.iter().cloned());
        let page = fleetbus::metrics::render(&registry).expect("renders");
        assert!(page.contains("fleetcast_risk_score{server=\"ppweb0001\""));
        assert!(!page.lines().any(|l| l.starts_with("fleetcast_forecast{")), "{page}");
        assert!(page.contains("fleetcast_time_to_breach_seconds{server=\"ppweb0001\""), "alerts stay");
    }
}
