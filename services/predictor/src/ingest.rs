//! One `metrics.batch.<source>` message into the registry: size check, lenient decode, the
//! batch clock and every record validated against the source's stream clock, good records
//! applied, bad ones turned into [`Rejection`]s with their reason. Pure (no I/O): the caller
//! publishes the rejections and stores the windows.

use schemas::validate::check_server_name;
use schemas::{MetricsBatch, RejectReason, Rejection, ValidationError, ValidationPolicy, SCHEMA_VERSION};

use crate::registry::Registry;
use crate::window::AddOutcome;

/// What one message did.
#[derive(Debug, Default)]
pub struct MessageReport {
    /// The subject's source token.
    pub source: String,
    /// Records in the batch (0 when the whole message was rejected).
    pub records: usize,
    pub accepted: usize,
    /// Valid records for a step that had already closed (ignored; a redelivery looks so).
    pub late: usize,
    pub rejected: Vec<Rejection>,
    /// Steps this message closed.
    pub closed: usize,
}

/// The source token of a batch subject.
pub fn source_of(subject: &str) -> &str {
    subject.strip_prefix(schemas::subjects::METRICS_BATCH_PREFIX).and_then(|s| s.strip_prefix('.')).unwrap_or(subject)
}

/// Bounds on what a message may bring.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Larger messages are rejected as oversize before decoding.
    pub max_bytes: usize,
    /// New servers beyond this many are rejected (`fleet_limit`), so a source sending endless
    /// distinct names cannot exhaust memory.
    pub max_servers: usize,
}

/// Applies one message; `wall_ms` is the wall clock (new sources start their clock there).
pub fn ingest(reg: &mut Registry, subject: &str, payload: &[u8], limits: Limits, wall_ms: i64) -> MessageReport {
    let max_bytes = limits.max_bytes;
    let source = source_of(subject);
    let mut report = MessageReport { source: source.to_string(), ..Default::default() };
    let reject_all = |report: &mut MessageReport, seq: Option<u64>, error: ValidationError| {
        report.rejected.push(Rejection {
            v: SCHEMA_VERSION,
            source: report.source.clone(),
            seq,
            index: None,
            server: None,
            error,
            rejected_ms: wall_ms,
        });
    };
    if let Err(mut e) = check_server_name(source) {
        e.field = "subject".into();
        e.reason = RejectReason::Malformed;
        e.rule = format!("the source token of metrics.batch.<source> {}", e.rule);
        reject_all(&mut report, None, e);
        return report;
    }
    if payload.len() > max_bytes {
        let e = ValidationError::new(
            "batch",
            format!("{} bytes", payload.len()),
            RejectReason::Oversize,
            format!("must be at most {max_bytes} bytes"),
        );
        reject_all(&mut report, None, e);
        return report;
    }
    let batch = match MetricsBatch::decode_lenient(payload) {
        Ok(b) => b,
        Err(e) => {
            reject_all(&mut report, None, e);
            return report;
        }
    };
    let sid = reg.source_id(source, wall_ms);
    let policy = reg.policy(sid);
    if let Err(mut e) = policy.check_timestamp(batch.clock_ms) {
        e.field = "clock_ms".into();
        reject_all(&mut report, Some(batch.seq), e);
        return report;
    }
    // Records are judged by the clock this batch moves the source to.
    let policy = ValidationPolicy::at(policy.now_ms.max(batch.clock_ms));
    report.records = batch.records.len();
    let seq = batch.seq;
    for (index, record) in batch.records.into_iter().enumerate() {
        let reject = |error: ValidationError, server: Option<String>| Rejection {
            v: SCHEMA_VERSION,
            source: source.to_string(),
            seq: Some(seq),
            index: Some(index as u32),
            server,
            error,
            rejected_ms: wall_ms,
        };
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                report.rejected.push(reject(e, None));
                continue;
            }
        };
        if let Err(e) = record.validate(&policy) {
            let server = check_server_name(&record.server).is_ok().then(|| record.server.clone());
            report.rejected.push(reject(e, server));
            continue;
        }
        if reg.len() >= limits.max_servers && reg.id_of(&record.server).is_none() {
            let e = ValidationError::new(
                "server",
                &record.server,
                RejectReason::FleetLimit,
                format!("the predictor keeps at most {} servers", limits.max_servers),
            );
            report.rejected.push(reject(e, Some(record.server)));
            continue;
        }
        match reg.apply(sid, &record) {
            AddOutcome::Added { closed } => {
                report.accepted += 1;
                report.closed += usize::from(closed.is_some());
            }
            AddOutcome::Late => report.late += 1,
        }
    }
    report.closed += reg.advance(sid, batch.clock_ms, wall_ms);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{encode, MetricRecord, Metrics, STEP_MS};

    const T0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % STEP_MS;
    const BIG: Limits = Limits { max_bytes: 1 << 20, max_servers: 1000 };

    fn rec(server: &str, ts_ms: i64, idle: f32) -> MetricRecord {
        MetricRecord { server: server.into(), ts_ms, profile: None, metrics: Metrics { cpu_idle_pct: Some(idle), ..Default::default() } }
    }

    fn reasons(r: &MessageReport) -> Vec<(Option<u32>, RejectReason)> {
        r.rejected.iter().map(|j| (j.index, j.error.reason)).collect()
    }

    #[test]
    fn bad_records_fail_alone_and_good_ones_count() {
        let mut reg = Registry::new(24);
        let year = 365 * 86_400_000;
        let batch = MetricsBatch::new("generator", 1, T0 + STEP_MS, vec![
            rec("ppdb001", T0, 50.0),
            rec("bad name", T0, 50.0),
            rec("ppdb002", T0, 150.0),
            rec("ppdb003", T0 + year, 50.0),
            rec("ppdb004", T0, f32::NAN),
        ]);
        let r = ingest(&mut reg, "metrics.batch.generator", &encode(&batch).unwrap(), BIG, T0);
        assert_eq!((r.records, r.accepted, r.closed), (5, 1, 1));
        assert_eq!(reasons(&r), [
            (Some(1), RejectReason::BadServerName),
            (Some(2), RejectReason::OutOfRange),
            (Some(3), RejectReason::TimestampSkew),
            (Some(4), RejectReason::NotFinite),
        ]);
        assert_eq!(r.rejected[1].server.as_deref(), Some("ppdb002"));
        assert_eq!(r.rejected[0].server, None, "an invalid name is not echoed as a server");
        // The same batch again (a redelivery) changes nothing.
        let again = ingest(&mut reg, "metrics.batch.generator", &encode(&batch).unwrap(), BIG, T0);
        assert_eq!((again.accepted, again.late, again.closed), (0, 1, 0));
    }

    #[test]
    fn whole_message_rejections() {
        let mut reg = Registry::new(24);
        let r = ingest(&mut reg, "metrics.batch.generator", b"\xc1garbage", BIG, T0);
        assert_eq!(reasons(&r), [(None, RejectReason::Malformed)]);
        let big = encode(&MetricsBatch::new("g", 1, T0, vec![rec("ppdb001", T0, 1.0); 50])).unwrap();
        let r = ingest(&mut reg, "metrics.batch.generator", &big, Limits { max_bytes: 100, max_servers: 10 }, T0);
        assert_eq!(reasons(&r), [(None, RejectReason::Oversize)]);
        let skewed = encode(&MetricsBatch::new("g", 1, T0 + 400 * 86_400_000, vec![])).unwrap();
        let r = ingest(&mut reg, "metrics.batch.generator", &skewed, BIG, T0);
        assert_eq!(reasons(&r), [(None, RejectReason::TimestampSkew)]);
        assert_eq!(r.rejected[0].error.field, "clock_ms");
        assert!(reg.is_empty());
    }

    #[test]
    fn new_servers_beyond_the_fleet_limit_are_rejected() {
        let mut reg = Registry::new(24);
        let limits = Limits { max_bytes: 1 << 20, max_servers: 2 };
        let b = MetricsBatch::new("g", 1, T0, vec![rec("a1", T0, 1.0), rec("a2", T0, 1.0), rec("a3", T0, 1.0)]);
        let r = ingest(&mut reg, "metrics.batch.g", &encode(&b).unwrap(), limits, T0);
        assert_eq!(reasons(&r), [(Some(2), RejectReason::FleetLimit)]);
        let b = MetricsBatch::new("g", 2, T0 + STEP_MS, vec![rec("a1", T0 + STEP_MS, 1.0)]);
        let r = ingest(&mut reg, "metrics.batch.g", &encode(&b).unwrap(), limits, T0);
        assert_eq!(r.accepted, 1, "known servers still report");
    }

    #[test]
    fn a_simulated_clock_may_run_ahead() {
        let mut reg = Registry::new(24);
        let mut clock = T0;
        for seq in 0..20u64 {
            // Each batch is 12 hours ahead of the last: more than a day ahead of the wall clock soon.
            clock += 144 * STEP_MS;
            let b = MetricsBatch::new("generator", seq, clock, vec![rec("ppdb001", clock - STEP_MS, 40.0)]);
            let r = ingest(&mut reg, "metrics.batch.generator", &encode(&b).unwrap(), BIG, T0);
            assert!(r.rejected.is_empty(), "{:?}", r.rejected);
            assert_eq!(r.closed, 1);
        }
    }
}
