//! Validation rules for incoming records, and the typed error that names the field,
//! the value and the rule it broke. Pure: the caller passes the clock.

use serde::{Deserialize, Serialize};

use crate::metric::{Metric, Metrics};

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
    /// Not 1-128 of `[A-Za-z0-9._-]`, or a leading/trailing/double dot (not a valid KV key).
    BadServerName,
    /// A profile name that is not one of the 7.
    BadProfile,
    /// Timestamp too far from the stream's clock.
    TimestampSkew,
    /// A new server beyond the predictor's configured fleet limit (keeps memory bounded when a
    /// source sends endless distinct names).
    FleetLimit,
}

impl RejectReason {
    pub const ALL: [RejectReason; 13] = [
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
        RejectReason::FleetLimit,
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
            RejectReason::FleetLimit => "fleet_limit",
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

/// A server name must be a valid NATS KV key and subject token: 1-128 of `[A-Za-z0-9._-]`,
/// not starting or ending with `.`, and without `..`.
pub fn check_server_name(name: &str) -> Result<(), ValidationError> {
    let ok_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let ok = !name.is_empty()
        && name.len() <= MAX_SERVER_NAME
        && ok_chars
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "server",
            format!("{name:?}"),
            RejectReason::BadServerName,
            "must be 1-128 of [A-Za-z0-9._-], no leading, trailing or double dot",
        ))
    }
}

/// Checks one metric value against its unit's range.
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
    }
    Ok(())
}

/// Checks every reported metric.
pub fn check_metrics(metrics: &Metrics) -> Result<(), ValidationError> {
    metrics.known().try_for_each(|(m, v)| check_metric(m, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        for good in ["ppml0001", "a", "db-1.prod_east", &"x".repeat(128)] {
            assert!(check_server_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a*", "a>b", "a b", "a..b", ".a", "a.", "é", "<script>", &"x".repeat(129)] {
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
    fn timestamps() {
        let p = ValidationPolicy::at(1_000_000_000_000);
        assert!(p.check_timestamp(1_000_000_000_000).is_ok());
        let year = 365 * 86_400_000;
        assert_eq!(p.check_timestamp(1_000_000_000_000 + year).unwrap_err().reason, RejectReason::TimestampSkew);
        assert_eq!(p.check_timestamp(1_000_000_000_000 - year).unwrap_err().reason, RejectReason::TimestampSkew);
    }
}
