//! Metric records and the batch that carries them on `metrics.batch.<source>`.
//!
//! Decoding is lenient per record: one bad record is rejected with its reason while the
//! rest of the batch goes on, so [`MetricsBatch::decode_lenient`] reads records by hand
//! from a generic MessagePack value instead of failing the whole message.

use rmpv::Value;
use serde::{Deserialize, Serialize};

use crate::metric::{Metric, Metrics};
use crate::profile::Profile;
use crate::validate::{check_metrics, check_server_name, RejectReason, ValidationError, ValidationPolicy};
use crate::SCHEMA_VERSION;

/// One server's metrics at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    /// Server name; a valid KV key (see [`check_server_name`]).
    pub server: String,
    /// Unix milliseconds (UTC) of the measurement, in the source's clock.
    pub ts_ms: i64,
    /// Declared profile; when absent the name decides ([`Profile::detect`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    pub metrics: Metrics,
}

impl MetricRecord {
    /// Checks the name, the timestamp against `policy`, and each reported metric's range.
    pub fn validate(&self, policy: &ValidationPolicy) -> Result<(), ValidationError> {
        check_server_name(&self.server)?;
        policy.check_timestamp(self.ts_ms)?;
        check_metrics(&self.metrics)
    }

    pub fn profile(&self) -> Profile {
        Profile::resolve(self.profile, &self.server)
    }
}

/// All records a source has for one tick (or part of them, when split to fit max_payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsBatch {
    pub v: u16,
    /// Who sent it (`generator`, an adapter's name); the last token of the subject.
    pub source: String,
    /// The source's batch counter; parts of one tick share it.
    pub seq: u64,
    /// The source's clock when it sent the batch (Unix ms; simulated for the generator).
    /// Every 5-minute step that ends at or before `clock_ms` is complete for this source, so
    /// the predictor closes it at once. The generator stamps records with their step's start
    /// and sends `clock_ms = step start + STEP_MS`; a real-time adapter sends its wall clock.
    pub clock_ms: i64,
    pub records: Vec<MetricRecord>,
}

/// A batch whose header decoded, with each record either decoded or rejected.
#[derive(Debug)]
pub struct DecodedBatch {
    pub v: u16,
    pub source: String,
    pub seq: u64,
    pub clock_ms: i64,
    pub records: Vec<Result<MetricRecord, ValidationError>>,
}

#[derive(Deserialize)]
struct RawBatch {
    v: u16,
    source: String,
    seq: u64,
    clock_ms: i64,
    records: Vec<Value>,
}

impl MetricsBatch {
    pub fn new(source: impl Into<String>, seq: u64, clock_ms: i64, records: Vec<MetricRecord>) -> Self {
        MetricsBatch { v: SCHEMA_VERSION, source: source.into(), seq, clock_ms, records }
    }

    /// Decodes a batch; a bad header fails the message, a bad record fails only itself.
    /// Records are type-checked here; call [`MetricRecord::validate`] for ranges and clock.
    pub fn decode_lenient(bytes: &[u8]) -> Result<DecodedBatch, ValidationError> {
        let raw: RawBatch = rmp_serde::from_slice(bytes)
            .map_err(|e| ValidationError::new("batch", format!("{} bytes", bytes.len()), RejectReason::Malformed, e.to_string()))?;
        if raw.v != SCHEMA_VERSION {
            return Err(ValidationError::new(
                "v",
                raw.v,
                RejectReason::UnsupportedVersion,
                format!("this reader understands v{SCHEMA_VERSION}"),
            ));
        }
        let records = raw.records.into_iter().map(record_from_value).collect();
        Ok(DecodedBatch { v: raw.v, source: raw.source, seq: raw.seq, clock_ms: raw.clock_ms, records })
    }
}

fn wrong_type(field: &str, v: &Value, want: &str) -> ValidationError {
    ValidationError::new(field, v, RejectReason::WrongType, format!("must be {want}"))
}

fn record_from_value(v: Value) -> Result<MetricRecord, ValidationError> {
    let Value::Map(entries) = v else {
        return Err(wrong_type("record", &v, "a map"));
    };
    let (mut server, mut ts_ms, mut profile, mut metrics) = (None, None, None, None);
    for (k, val) in entries {
        let Some(key) = k.as_str() else {
            return Err(wrong_type("record key", &k, "a string"));
        };
        match key {
            "server" => match val.as_str() {
                Some(s) => server = Some(s.to_owned()),
                None => return Err(wrong_type("server", &val, "a string")),
            },
            "ts_ms" => match val.as_i64() {
                Some(t) => ts_ms = Some(t),
                None => return Err(wrong_type("ts_ms", &val, "an integer (Unix ms)")),
            },
            "profile" => match &val {
                Value::Nil => {}
                Value::String(s) => {
                    let name = s.as_str().unwrap_or_default();
                    profile =
                        Some(Profile::from_name(name).ok_or_else(|| {
                            ValidationError::new("profile", name, RejectReason::BadProfile, "must be one of the 7 profiles")
                        })?);
                }
                other => return Err(wrong_type("profile", other, "a profile name")),
            },
            "metrics" => metrics = Some(metrics_from_value(val)?),
            other => {
                return Err(ValidationError::new(other, "", RejectReason::UnknownField, "not a record field"));
            }
        }
    }
    let missing = |f: &str| ValidationError::new(f, "", RejectReason::MissingField, "is required");
    Ok(MetricRecord {
        server: server.ok_or_else(|| missing("server"))?,
        ts_ms: ts_ms.ok_or_else(|| missing("ts_ms"))?,
        profile,
        metrics: metrics.ok_or_else(|| missing("metrics"))?,
    })
}

fn metrics_from_value(v: Value) -> Result<Metrics, ValidationError> {
    let Value::Map(entries) = v else {
        return Err(wrong_type("metrics", &v, "a map of metric name to number"));
    };
    let mut out = Metrics::default();
    for (k, val) in entries {
        let Some(name) = k.as_str() else {
            return Err(wrong_type("metrics key", &k, "a metric name"));
        };
        let Some(metric) = Metric::from_name(name) else {
            return Err(ValidationError::new(format!("metrics.{name}"), &val, RejectReason::UnknownMetric, "not one of the 14 metrics"));
        };
        let x = match val {
            Value::Nil => None,
            Value::F32(f) => Some(f),
            Value::F64(f) => Some(f as f32),
            Value::Integer(i) => i.as_f64().map(|f| f as f32),
            other => return Err(wrong_type(&format!("metrics.{name}"), &other, "a number")),
        };
        out.set(metric, x);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode;

    fn rec(server: &str) -> MetricRecord {
        MetricRecord {
            server: server.into(),
            ts_ms: 1_700_000_000_000,
            profile: None,
            metrics: Metrics { cpu_user_pct: Some(10.0), ..Default::default() },
        }
    }

    #[test]
    fn good_batch_decodes() {
        let b = MetricsBatch::new("generator", 7, 1_700_000_000_000, vec![rec("ppdb001"), rec("ppweb001")]);
        let d = MetricsBatch::decode_lenient(&encode(&b).unwrap()).unwrap();
        assert_eq!(d.seq, 7);
        let recs: Vec<_> = d.records.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(recs, b.records);
    }

    #[test]
    fn bad_record_fails_alone() {
        use rmpv::Value as V;
        let good = rmpv::decode::read_value(&mut &encode(&rec("ppdb001")).unwrap()[..]).unwrap();
        let bad_type = V::Map(vec![
            (V::from("server"), V::from("x")),
            (V::from("ts_ms"), V::from(1)),
            (V::from("metrics"), V::Map(vec![(V::from("cpu_user_pct"), V::from("high"))])),
        ]);
        let unknown = V::Map(vec![
            (V::from("server"), V::from("x")),
            (V::from("ts_ms"), V::from(1)),
            (V::from("metrics"), V::Map(vec![(V::from("cascade_impact"), V::from(0.5))])),
        ]);
        let batch = V::Map(vec![
            (V::from("v"), V::from(SCHEMA_VERSION)),
            (V::from("source"), V::from("t")),
            (V::from("seq"), V::from(1)),
            (V::from("clock_ms"), V::from(1)),
            (V::from("records"), V::Array(vec![good, bad_type, unknown, V::from(3)])),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &batch).unwrap();
        let d = MetricsBatch::decode_lenient(&bytes).unwrap();
        assert!(d.records[0].is_ok());
        let e1 = d.records[1].as_ref().unwrap_err();
        assert_eq!((e1.field.as_str(), e1.reason), ("metrics.cpu_user_pct", RejectReason::WrongType));
        let e2 = d.records[2].as_ref().unwrap_err();
        assert_eq!((e2.field.as_str(), e2.reason), ("metrics.cascade_impact", RejectReason::UnknownMetric));
        assert_eq!(d.records[3].as_ref().unwrap_err().reason, RejectReason::WrongType);
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for junk in [&b""[..], b"\xc1", b"\x93\x01\x02", b"hello world"] {
            assert_eq!(MetricsBatch::decode_lenient(junk).unwrap_err().reason, RejectReason::Malformed);
        }
    }
}
