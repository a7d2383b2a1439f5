//! Validation rules for incoming records, and the typed error that names the field,
//! the value and the rule it broke. Pure: the caller passes the clock.

use serde::{Deserialize, Serialize};

use crate::metric::{Metric, Metrics, Unit};

/// Why a record (or a whole message) was rejected; the predictor counts rejects by this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Not decodable MessagePack, or not the expected shape at all.
    Malformed,
    /// Message larger than the ingest limit.
    Oversize,
    /// A schema version this reader does not understand.
    UnsupportedVersion,
    /// A field has the wrong type (a string where a number belongs, ...).
    WrongType,
    /// A required field is absent.
    MissingField,
    /// A field the contract does not define.
    UnknownField,
    /// A metric name that is not one of the 14.
    UnknownMetric,
    /// NaN or infinity.
    NotFinite,
    /// Outside the metric's range (percentages 0..=100, others >= 0).
    OutOfRange,
    /// Not 1-128 of `[A-Za-z0-9_-]`: a server name is one NATS subject token and one KV key
    /// (a dot would split `alerts.<state>.<server>` into several tokens).
    BadServerName,
    /// A profile name that is not one of the 7.
    BadProfile,
    /// Timestamp too far from the stream's clock, or after its own batch's `clock_ms` by more
    /// than [`MAX_AHEAD_OF_BATCH_MS`] (a record cannot be measured after it was sent).
    TimestampSkew,
    /// A record for a step older than the server's window: it can no longer change any
    /// forecast (the predictor keeps the last day and horizon of steps per server).
    TooLate,
    /// A new server beyond the predictor's configured fleet limit (keeps memory bounded when a
    /// source sends endless distinct names).
    FleetLimit,
    /// Within the unit's range but beyond what any real server reports (a NIC carrying
    /// 10^5 MB/s, a load of 10^38): an agent's unsigned counter delta across a reset, or
    /// garbage. Limits per metric: [`plausible_max`] and `schemas/README.md`.
    Implausible,
    /// Fields that contradict each other: a CPU breakdown whose parts do not sum to about
    /// 100 (fractions sent as percent, a zeroed agent), or every metric exactly 0.
    Inconsistent,
}

impl RejectReason {
    pub const ALL: [RejectReason; 16] = [
        RejectReason::Malformed,
        RejectReason::Oversize,
        RejectReason::UnsupportedVersion,
        RejectReason::WrongType,
        RejectReason::MissingField,
        RejectReason::UnknownField,
        RejectReason::UnknownMetric,
        RejectReason::NotFinite,
        RejectReason::OutOfRange,
        RejectReason::BadServerName,
        RejectReason::BadProfile,
        RejectReason::TimestampSkew,
        RejectReason::TooLate,
        RejectReason::FleetLimit,
        RejectReason::Implausible,
        RejectReason::Inconsistent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::Oversize => "oversize",
            RejectReason::UnsupportedVersion => "unsupported_version",
            RejectReason::WrongType => "wrong_type",
            RejectReason::MissingField => "missing_field",
            RejectReason::UnknownField => "unknown_field",
            RejectReason::UnknownMetric => "unknown_metric",
            RejectReason::NotFinite => "not_finite",
            RejectReason::OutOfRange => "out_of_range",
            RejectReason::BadServerName => "bad_server_name",
            RejectReason::BadProfile => "bad_profile",
            RejectReason::TimestampSkew => "timestamp_skew",
            RejectReason::TooLate => "too_late",
            RejectReason::FleetLimit => "fleet_limit",
            RejectReason::Implausible => "implausible",
            RejectReason::Inconsistent => "inconsistent",
        }
    }
}

/// A rejected field: which one, what it held, which rule it broke.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[error("{field} = {value}: {reason:?}: {rule}")]
pub struct ValidationError {
    /// The field's path, e.g. `metrics.cpu_user_pct` or `server`.
    pub field: String,
    /// The offending value, rendered as text and cut to 64 characters.
    pub value: String,
    pub reason: RejectReason,
    /// The rule in words, e.g. `must be within 0..=100`.
    pub rule: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, value: impl ToString, reason: RejectReason, rule: impl Into<String>) -> Self {
        let mut value = value.to_string();
        if value.chars().count() > 64 {
            value = value.chars().take(61).collect::<String>() + "...";
        }
        ValidationError { field: field.into(), value, reason, rule: rule.into() }
    }
}

/// The clock against which timestamps are judged. The caller supplies `now_ms`: the
/// predictor uses its per-source stream clock, because a simulated clock may run ahead of
/// the wall clock by design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationPolicy {
    pub now_ms: i64,
    /// How far in the past a record may be (late data, backfill).
    pub max_past_ms: i64,
    /// How far ahead of `now_ms` a record may be.
    pub max_future_ms: i64,
}

impl ValidationPolicy {
    /// Defaults: 8 days back (a week of backfill plus slack), 1 day ahead.
    pub fn at(now_ms: i64) -> Self {
        ValidationPolicy { now_ms, max_past_ms: 8 * 86_400_000, max_future_ms: 86_400_000 }
    }

    pub fn check_timestamp(&self, ts_ms: i64) -> Result<(), ValidationError> {
        let lo = self.now_ms.saturating_sub(self.max_past_ms);
        let hi = self.now_ms.saturating_add(self.max_future_ms);
        if ts_ms < lo || ts_ms > hi {
            return Err(ValidationError::new(
                "ts_ms",
                ts_ms,
                RejectReason::TimestampSkew,
                format!("must be within [{lo}, {hi}] (stream clock {} ms)", self.now_ms),
            ));
        }
        Ok(())
    }
}

/// Maximum server-name length; also a safe NATS KV key length.
pub const MAX_SERVER_NAME: usize = 128;

/// A server name must be one NATS subject token and a KV key: 1-128 of `[A-Za-z0-9_-]`.
/// No dot: `alerts.<state>.<server>` must stay three tokens, so the documented pattern
/// `alerts.<state>.*` sees every server, and `forecasts`/`windows` keys must name the server
/// the same way. Sources map a dotted host name themselves (`services/ingest`: `.` -> `_`).
///
/// Errors: [`RejectReason::BadServerName`] on field `server`.
pub fn check_server_name(name: &str) -> Result<(), ValidationError> {
    let ok_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if !name.is_empty() && name.len() <= MAX_SERVER_NAME && ok_chars {
        Ok(())
    } else {
        Err(ValidationError::new(
            "server",
            format!("{name:?}"),
            RejectReason::BadServerName,
            "must be 1-128 of [A-Za-z0-9_-]: one subject token and KV key (map a dot to _ or -)",
        ))
    }
}

/// How far a record's `ts_ms` may lie after its own batch's `clock_ms`: agents' clocks drift a
/// little from the sender's, but a record measured minutes after its batch was sent is a
/// broken clock, and accepted it would open a future step of its server and shadow every real
/// report until the clock catches up.
pub const MAX_AHEAD_OF_BATCH_MS: i64 = 60_000;

/// Checks that a record was measured no later than its batch's `clock_ms` (plus
/// [`MAX_AHEAD_OF_BATCH_MS`]). Both in Unix ms of the source's clock.
///
/// Errors: [`RejectReason::TimestampSkew`] on field `ts_ms`.
pub fn check_measured_before(ts_ms: i64, clock_ms: i64) -> Result<(), ValidationError> {
    let hi = clock_ms.saturating_add(MAX_AHEAD_OF_BATCH_MS);
    if ts_ms > hi {
        return Err(ValidationError::new(
            "ts_ms",
            ts_ms,
            RejectReason::TimestampSkew,
            format!(
                "must be at most the batch's clock_ms {clock_ms} + {MAX_AHEAD_OF_BATCH_MS} ms (it is {} ms ahead: a record cannot be measured after its batch was sent)",
                ts_ms.saturating_sub(clock_ms)
            ),
        ));
    }
    Ok(())
}

/// The largest value of `metric` that a real server plausibly reports; above it a record is
/// rejected as [`RejectReason::Implausible`]. Generous on purpose (a false reject loses real
/// data): 200,000 MB/s is 1.6 Tbit/s, more than any server NIC carries; 10 million sockets in
/// CLOSE_WAIT exceed any kernel's socket table; load 100,000 is 100 runnable tasks per core
/// on a 1,000-core host; uptime 36,500 days is a century. Percentages are bounded by their
/// range (0..=100) instead.
pub fn plausible_max(metric: Metric) -> f32 {
    match metric.unit() {
        Unit::Percent => 100.0,
        Unit::MegabytesPerSecond => 200_000.0,
        Unit::Count => 10_000_000.0,
        Unit::Load => 100_000.0,
        Unit::Days => 36_500.0,
    }
}

/// The band the four CPU parts (user + sys + iowait + idle) must sum into when all four are
/// reported. Not exactly 100: node_exporter's modes leave steal (real on VMs) and guest out of
/// the four, so real hosts sum below 100 (up to half the CPU stolen is accepted), and rounding
/// can push a sum a little over. Fractions sent as percent sum to ~1 and a zeroed agent to 0.
pub const CPU_SUM_RANGE: std::ops::RangeInclusive<f32> = 50.0..=102.0;

/// Checks one metric value against its unit's range and plausibility limit.
pub fn check_metric(metric: Metric, value: f32) -> Result<(), ValidationError> {
    let field = || format!("metrics.{}", metric.name());
    if !value.is_finite() {
        return Err(ValidationError::new(field(), value, RejectReason::NotFinite, "must be a finite number"));
    }
    if metric.unit().is_percent() {
        if !(0.0..=100.0).contains(&value) {
            return Err(ValidationError::new(field(), value, RejectReason::OutOfRange, "must be within 0..=100"));
        }
    } else if value < 0.0 {
        return Err(ValidationError::new(field(), value, RejectReason::OutOfRange, "must be >= 0"));
    } else if value > plausible_max(metric) {
        let rule = format!("must be at most {} {} (no real server reports more)", plausible_max(metric), metric.unit().symbol());
        return Err(ValidationError::new(field(), value, RejectReason::Implausible, rule.trim_end().replace("  ", " ")));
    }
    Ok(())
}

/// A record reporting at least this many metrics, all exactly 0, is a broken agent (a source
/// that reports only one or two metrics, say network in, may well be at 0).
pub const ALL_ZERO_MIN_METRICS: usize = 4;

/// Checks every reported metric, then the record as a whole: the CPU breakdown's sum
/// ([`CPU_SUM_RANGE`]) and a record whose every metric is exactly 0 (a broken agent; a real
/// server at least reports memory in use; see [`ALL_ZERO_MIN_METRICS`]).
pub fn check_metrics(metrics: &Metrics) -> Result<(), ValidationError> {
    metrics.known().try_for_each(|(m, v)| check_metric(m, v))?;
    let parts = [Metric::CpuUser, Metric::CpuSys, Metric::CpuIowait, Metric::CpuIdle].map(|m| metrics.get(m));
    if let [Some(user), Some(sys), Some(iowait), Some(idle)] = parts {
        let sum = user + sys + iowait + idle;
        if !CPU_SUM_RANGE.contains(&sum) {
            return Err(ValidationError::new(
                "metrics.cpu_user_pct+cpu_sys_pct+cpu_iowait_pct+cpu_idle_pct",
                format!("sum {sum}"),
                RejectReason::Inconsistent,
                format!(
                    "the CPU parts must sum to {}..={} percent (fractions of 1 or a zeroed agent are not percentages)",
                    CPU_SUM_RANGE.start(),
                    CPU_SUM_RANGE.end()
                ),
            ));
        }
    }
    let known = metrics.known().count();
    if known >= ALL_ZERO_MIN_METRICS && metrics.known().all(|(_, v)| v == 0.0) {
        return Err(ValidationError::new(
            "metrics",
            "all 0",
            RejectReason::Inconsistent,
            "every reported metric is exactly 0: a broken agent, not a server",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        for good in ["ppml0001", "a", "db-1_prod-east", &"x".repeat(128)] {
            assert!(check_server_name(good).is_ok(), "{good}");
        }
        // A dot makes several subject tokens: `alerts.opened.ppdb001.prod`.
        for bad in ["", "a*", "a>b", "a b", "ppdb001.prod", "a..b", ".a", "a.", "é", "<script>", &"x".repeat(129)] {
            let e = check_server_name(bad).unwrap_err();
            assert_eq!(e.reason, RejectReason::BadServerName, "{bad}");
            assert_eq!(e.field, "server");
        }
    }

    #[test]
    fn metric_ranges() {
        assert!(check_metric(Metric::CpuUser, 100.0).is_ok());
        assert_eq!(check_metric(Metric::CpuUser, 100.5).unwrap_err().reason, RejectReason::OutOfRange);
        assert_eq!(check_metric(Metric::NetIn, -0.1).unwrap_err().reason, RejectReason::OutOfRange);
        assert!(check_metric(Metric::NetIn, 5000.0).is_ok());
        let e = check_metric(Metric::LoadAverage, f32::NAN).unwrap_err();
        assert_eq!(e.reason, RejectReason::NotFinite);
        assert_eq!(e.field, "metrics.load_average");
    }

    #[test]
    fn implausible_values_have_their_own_reason() {
        // An unsigned counter delta across a reset, as a NIC rate; 1e22; a load of 2e38.
        for (m, v) in [(Metric::NetIn, 18446744073709551615.0_f64 as f32), (Metric::NetIn, 1e22), (Metric::LoadAverage, 2e38)] {
            let e = check_metric(m, v).unwrap_err();
            assert_eq!(e.reason, RejectReason::Implausible, "{m:?} {v}");
            assert_eq!(e.field, format!("metrics.{}", m.name()));
            assert!(e.rule.contains("at most"), "{}", e.rule);
        }
        assert!(check_metric(Metric::NetIn, 120.0).is_ok());
        assert!(check_metric(Metric::LoadAverage, 512.0).is_ok());
    }

    fn cpu(user: f32, sys: f32, iowait: f32, idle: f32) -> Metrics {
        Metrics {
            cpu_user_pct: Some(user),
            cpu_sys_pct: Some(sys),
            cpu_iowait_pct: Some(iowait),
            cpu_idle_pct: Some(idle),
            mem_used_pct: Some(45.0),
            ..Default::default()
        }
    }

    #[test]
    fn a_cpu_breakdown_must_sum_to_about_100() {
        assert!(check_metrics(&cpu(20.0, 5.0, 2.0, 73.0)).is_ok());
        assert!(check_metrics(&cpu(20.0, 5.0, 2.0, 60.0)).is_ok(), "13 % steal is real on VMs");
        let e = check_metrics(&cpu(0.30, 0.08, 0.02, 0.60)).unwrap_err();
        assert_eq!(e.reason, RejectReason::Inconsistent);
        assert!(e.value.contains("sum 1"), "{}", e.value);
        assert!(e.field.contains("cpu_idle_pct"));
        // Idle alone (NAB-style sources) has nothing to sum.
        assert!(check_metrics(&Metrics { cpu_idle_pct: Some(3.0), ..Default::default() }).is_ok());
    }

    #[test]
    fn a_record_of_zeros_is_a_broken_agent() {
        let mut m = Metrics::default();
        for metric in Metric::ALL {
            m.set(metric, Some(0.0));
        }
        assert_eq!(check_metrics(&m).unwrap_err().reason, RejectReason::Inconsistent);
        // Without the CPU parts, still every metric 0.
        let m = Metrics {
            mem_used_pct: Some(0.0),
            disk_usage_pct: Some(0.0),
            net_in_mb_s: Some(0.0),
            load_average: Some(0.0),
            ..Default::default()
        };
        assert_eq!(check_metrics(&m).unwrap_err().field, "metrics");
        // A source that reports network in alone may be idle.
        assert!(check_metrics(&Metrics { net_in_mb_s: Some(0.0), ..Default::default() }).is_ok());
        assert!(check_metrics(&Metrics { swap_used_pct: Some(0.0), mem_used_pct: Some(3.0), ..Default::default() }).is_ok());
    }

    #[test]
    fn timestamps() {
        let p = ValidationPolicy::at(1_000_000_000_000);
        assert!(p.check_timestamp(1_000_000_000_000).is_ok());
        let year = 365 * 86_400_000;
        assert_eq!(p.check_timestamp(1_000_000_000_000 + year).unwrap_err().reason, RejectReason::TimestampSkew);
        assert_eq!(p.check_timestamp(1_000_000_000_000 - year).unwrap_err().reason, RejectReason::TimestampSkew);
    }

    #[test]
    fn a_record_is_not_measured_after_its_batch() {
        let clock = 1_000_000_300_000;
        assert!(check_measured_before(clock - 300_000, clock).is_ok(), "the generator's step start");
        assert!(check_measured_before(clock + MAX_AHEAD_OF_BATCH_MS, clock).is_ok(), "a little drift");
        let five_h = clock + 5 * 3_600_000;
        let e = check_measured_before(five_h, clock).unwrap_err();
        assert_eq!((e.field.as_str(), e.reason), ("ts_ms", RejectReason::TimestampSkew));
        assert!(e.rule.contains("18000000 ms ahead"), "{}", e.rule);
        assert!(check_measured_before(i64::MAX, i64::MAX).is_ok(), "no overflow");
    }

    #[test]
    fn every_reason_has_a_distinct_name() {
        let names: std::collections::BTreeSet<_> = RejectReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), RejectReason::ALL.len());
        assert!(names.contains("too_late"));
    }
}
