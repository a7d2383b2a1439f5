//! One `metrics.batch.<source>` message into the registry: size check, lenient decode, the
//! batch clock and every record validated against the source's stream clock and its batch's
//! clock, good records applied oldest first, bad ones turned into [`Rejection`]s with their
//! reason. Pure (no I/O): the caller publishes the rejections and stores the windows.
//!
//! The time rules real sources need (issue 12): a record measured after its batch was sent is
//! `timestamp_skew`; records are applied in time order whatever their order in the batch; a
//! late value inside the window fills its step and one older than the window is `too_late`;
//! a value already counted (same server, `ts_ms` and metric) counts once (`duplicates`).

use schemas::validate::{check_measured_before, check_server_name};
use schemas::{MetricsBatch, RejectReason, Rejection, ValidationError, ValidationPolicy, SCHEMA_VERSION};

use crate::registry::Registry;
use crate::step::step_start;
use crate::window::AddOutcome;

/// What one message did.
#[derive(Debug, Default)]
pub struct MessageReport {
    /// The subject's source token.
    pub source: String,
    /// Records in the batch (0 when the whole message was rejected).
    pub records: usize,
    /// Records that counted: added to an open step or filling a closed one.
    pub accepted: usize,
    /// Of `accepted`, late records that filled metrics a closed step lacked.
    pub filled: usize,
    /// Valid records with nothing new: every value already counted (a re-sent batch, a
    /// redelivery). Counted once, so not rejected; the stats report them.
    pub duplicates: usize,
    pub rejected: Vec<Rejection>,
    /// Steps this message closed.
    pub closed: usize,
}

/// The source token of a batch subject.
pub fn source_of(subject: &str) -> &str {
    // `metrics.batch.<source>`, or `metrics.batch.<source>.<partition>` on a partitioned fleet.
    schemas::partition::parse_metrics_batch(subject).0
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
    let (seq, clock_ms) = (batch.seq, batch.clock_ms);
    let reject = |index: usize, error: ValidationError, server: Option<String>| Rejection {
        v: SCHEMA_VERSION,
        source: source.to_string(),
        seq: Some(seq),
        index: Some(index as u32),
        server,
        error,
        rejected_ms: wall_ms,
    };
    let mut valid = Vec::with_capacity(batch.records.len());
    for (index, record) in batch.records.into_iter().enumerate() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                report.rejected.push(reject(index, e, None));
                continue;
            }
        };
        if let Err(e) = record.validate(&policy).and_then(|()| check_measured_before(record.ts_ms, clock_ms)) {
            let server = check_server_name(&record.server).is_ok().then(|| record.server.clone());
            report.rejected.push(reject(index, e, server));
            continue;
        }
        valid.push((index, record));
    }
    // Oldest first (stable: reports of one time keep their order), so a batch listing a
    // server's steps newest first fills them all instead of closing the newest at once.
    valid.sort_by_key(|(_, r)| r.ts_ms);
    let capacity = reg.capacity();
    for (index, record) in valid {
        if reg.len() >= limits.max_servers && reg.id_of(&record.server).is_none() {
            let e = ValidationError::new(
                "server",
                &record.server,
                RejectReason::FleetLimit,
                format!("the predictor keeps at most {} servers", limits.max_servers),
            );
            report.rejected.push(reject(index, e, Some(record.server)));
            continue;
        }
        match reg.apply(sid, &record) {
            AddOutcome::Added { closed } => {
                report.accepted += 1;
                report.closed += usize::from(closed.is_some());
            }
            AddOutcome::Filled => {
                report.accepted += 1;
                report.filled += 1;
            }
            AddOutcome::Duplicate => report.duplicates += 1,
            AddOutcome::TooLate { oldest } => {
                let e = too_late(record.ts_ms, oldest, capacity);
                report.rejected.push(reject(index, e, Some(record.server)));
            }
        }
    }
    // In batch order, as the source listed them (the sort above reordered the late ones).
    report.rejected.sort_by_key(|r| r.index);
    report.closed += reg.advance(sid, clock_ms, wall_ms);
    report
}

/// The rejection of a record for a step older than its server's window (`oldest` is the
/// oldest step still taken, `capacity` the window's length in steps).
fn too_late(ts_ms: i64, oldest: i64, capacity: usize) -> ValidationError {
    ValidationError::new(
        "ts_ms",
        ts_ms,
        RejectReason::TooLate,
        format!(
            "must be at or after {} (the server's window keeps its last {capacity} steps of 5 min); older data can no longer change a forecast",
            step_start(oldest)
        ),
    )
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
        let batch = MetricsBatch::new(
            "generator",
            1,
            T0 + STEP_MS,
            vec![
                rec("ppdb001", T0, 50.0),
                rec("bad name", T0, 50.0),
                rec("ppdb002", T0, 150.0),
                rec("ppdb003", T0 + year, 50.0),
                rec("ppdb004", T0, f32::NAN),
            ],
        );
        let r = ingest(&mut reg, "metrics.batch.generator", &encode(&batch).unwrap(), BIG, T0);
        assert_eq!((r.records, r.accepted, r.closed), (5, 1, 1));
        assert_eq!(
            reasons(&r),
            [
                (Some(1), RejectReason::BadServerName),
                (Some(2), RejectReason::OutOfRange),
                (Some(3), RejectReason::TimestampSkew),
                (Some(4), RejectReason::NotFinite),
            ]
        );
        assert_eq!(r.rejected[1].server.as_deref(), Some("ppdb002"));
        assert_eq!(r.rejected[0].server, None, "an invalid name is not echoed as a server");
        // The same batch again (a redelivery) changes nothing.
        let again = ingest(&mut reg, "metrics.batch.generator", &encode(&batch).unwrap(), BIG, T0);
        assert_eq!((again.accepted, again.duplicates, again.closed), (0, 1, 0));
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

    fn send(reg: &mut Registry, source: &str, seq: u64, clock: i64, records: Vec<MetricRecord>) -> MessageReport {
        let b = MetricsBatch::new(source, seq, clock, records);
        ingest(reg, &format!("metrics.batch.{source}"), &encode(&b).unwrap(), BIG, T0)
    }

    /// Rule 1: a record measured 5 h after its batch was sent is `timestamp_skew`; the
    /// server's real reports go on.
    #[test]
    fn a_record_after_its_batch_clock_is_skewed() {
        let mut reg = Registry::new(24);
        let five_h = 60 * STEP_MS;
        let r = send(&mut reg, "skew1", 1, T0 + STEP_MS, vec![rec("ppdb001", T0, 50.0), rec("ppdb001", T0 + STEP_MS + five_h, 50.0)]);
        assert_eq!(reasons(&r), [(Some(1), RejectReason::TimestampSkew)]);
        assert_eq!((r.rejected[0].error.field.as_str(), r.rejected[0].server.as_deref()), ("ts_ms", Some("ppdb001")));
        let r = send(&mut reg, "skew1", 2, T0 + 2 * STEP_MS, vec![rec("ppdb001", T0 + STEP_MS, 50.0)]);
        assert_eq!((r.accepted, r.closed), (1, 1), "the next real report is not late");
        assert_eq!(reg.server(0).last_closed(), Some(T0 / STEP_MS + 1));
    }

    /// Rule 3: newest first or oldest first, every step lands.
    #[test]
    fn order_within_a_batch_does_not_matter() {
        let mut reg = Registry::new(48);
        let steps = |server: &str| (0..48).map(|k| rec(server, T0 + k * STEP_MS, 50.0)).collect::<Vec<_>>();
        let mut records: Vec<_> = steps("ppweb003").into_iter().rev().collect();
        records.extend(steps("ppweb004"));
        let r = send(&mut reg, "bulk", 1, T0 + 48 * STEP_MS, records);
        assert_eq!((r.accepted, r.duplicates, r.rejected.len()), (96, 0, 0));
        for id in 0..2 {
            assert_eq!(reg.server(id).observed_steps(), 48, "{}", reg.server(id).name);
        }
    }

    /// Rule 4: the same batch twice while its step is open counts once; so does one record
    /// repeated (same server and time).
    #[test]
    fn repeats_count_once() {
        let mut reg = Registry::new(24);
        let first = vec![rec("ppweb010", T0, 90.0), rec("ppweb010", T0, 90.0)];
        let r = send(&mut reg, "dup1", 1, T0 + 60_000, first.clone());
        assert_eq!((r.accepted, r.duplicates), (1, 1));
        let r = send(&mut reg, "dup1", 1, T0 + 60_000, first);
        assert_eq!((r.accepted, r.duplicates, r.rejected.len()), (0, 2, 0));
        send(&mut reg, "dup1", 2, T0 + STEP_MS, vec![rec("ppweb010", T0 + 150_000, 10.0)]);
        assert_eq!(reg.server(0).step(T0 / STEP_MS).unwrap().to_metrics().cpu_idle_pct, Some(50.0));
    }

    /// Rule 2: late inside the window fills (and is stored), older than it is `too_late`.
    #[test]
    fn late_values_fill_or_are_too_late() {
        let mut reg = Registry::new(24);
        for k in 0..30 {
            send(&mut reg, "cw1", k as u64, T0 + (k + 1) * STEP_MS, vec![rec("ppweb001", T0 + k * STEP_MS, 50.0)]);
        }
        // As the store does after a flush: nothing is waiting to be stored.
        let mut chunks = Vec::new();
        for id in reg.take_dirty() {
            reg.server_mut(id).take_dirty(&mut chunks);
        }
        let mem =
            MetricRecord { metrics: Metrics { mem_used_pct: Some(40.0), ..Default::default() }, ..rec("ppweb001", T0 + 27 * STEP_MS, 0.0) };
        let old = MetricRecord { ts_ms: T0 + 2 * STEP_MS, ..mem.clone() };
        let r = send(&mut reg, "cw1", 31, T0 + 30 * STEP_MS, vec![old, mem]);
        assert_eq!((r.accepted, r.filled), (1, 1));
        assert_eq!(reasons(&r), [(Some(0), RejectReason::TooLate)]);
        assert!(r.rejected[0].error.rule.contains("last 24 steps"), "{}", r.rejected[0].error.rule);
        assert_eq!(reg.take_dirty(), [0], "the filled step goes to the store");
        reg.server_mut(0).take_dirty(&mut chunks);
        assert_eq!(chunks, [crate::window::chunk_of(T0 / STEP_MS + 27)]);
        assert_eq!(reg.server(0).step(T0 / STEP_MS + 27).unwrap().to_metrics().mem_used_pct, Some(40.0));
    }

    /// Rule 5: a dotted name would be several subject tokens; it is rejected, never a server.
    #[test]
    fn a_dotted_server_name_is_rejected() {
        let mut reg = Registry::new(24);
        let r = send(&mut reg, "names", 1, T0 + STEP_MS, vec![rec("ppdb001.prod", T0, 50.0), rec("ppdb001-prod", T0, 50.0)]);
        assert_eq!(reasons(&r), [(Some(0), RejectReason::BadServerName)]);
        assert_eq!((r.rejected[0].server.as_deref(), r.rejected[0].error.field.as_str()), (None, "server"));
        assert_eq!(reg.len(), 1);
        let dotted_source = ingest(&mut reg, "metrics.batch.a.b", &encode(&MetricsBatch::new("a.b", 1, T0, vec![])).unwrap(), BIG, T0);
        assert_eq!(reasons(&dotted_source), [(None, RejectReason::Malformed)], "a source is one token too");
    }
}
