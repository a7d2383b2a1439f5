//! Property tests of the wire contract: records round-trip through MessagePack, validation
//! rejects every out-of-range field with the right reason and field name, and the lenient batch
//! decoder never panics on arbitrary or corrupted bytes.

use proptest::prelude::*;
use schemas::validate::{plausible_max, RejectReason};
use schemas::{encode, Metric, MetricRecord, Metrics, MetricsBatch, Profile, ValidationPolicy};

const NOW: i64 = 1_764_000_000_000;

fn server_name() -> impl Strategy<Value = String> {
    // One subject token: no dot (see `check_server_name`).
    "[a-z][a-z0-9_-]{0,28}"
}

fn valid_value(m: Metric) -> BoxedStrategy<f32> {
    (0.0f32..=plausible_max(m)).boxed()
}

/// Makes a record consistent as a whole: the four CPU parts, when all present, scaled to sum
/// to 100, and never four or more metrics that are all exactly 0 (`check_metrics`).
fn consistent(mut m: Metrics) -> Metrics {
    let cpu = [Metric::CpuUser, Metric::CpuSys, Metric::CpuIowait, Metric::CpuIdle];
    if let [Some(a), Some(b), Some(c), Some(d)] = cpu.map(|x| m.get(x)) {
        let sum = a + b + c + d;
        if sum > 0.0 {
            for x in cpu {
                m.set(x, m.get(x).map(|v| (v * 100.0 / sum).min(100.0)));
            }
        } else {
            m.set(Metric::CpuIdle, Some(100.0));
        }
    }
    if m.known().all(|(_, v)| v == 0.0) && m.known().count() >= 4 {
        m.set(Metric::MemUsed, Some(1.0));
    }
    m
}

fn metrics() -> impl Strategy<Value = Metrics> {
    let per_metric: Vec<_> = Metric::ALL.iter().map(|&m| proptest::option::of(valid_value(m))).collect();
    per_metric.prop_map(|vals| {
        let mut out = Metrics::default();
        for (m, v) in Metric::ALL.iter().zip(vals) {
            out.set(*m, v);
        }
        consistent(out)
    })
}

fn record() -> impl Strategy<Value = MetricRecord> {
    (server_name(), -86_400_000i64..86_400_000, proptest::option::of(0usize..7), metrics())
        .prop_map(|(server, dt, p, metrics)| MetricRecord { server, ts_ms: NOW + dt / 2, profile: p.map(|i| Profile::ALL[i]), metrics })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_records_round_trip_and_validate(recs in proptest::collection::vec(record(), 0..20)) {
        let batch = MetricsBatch::new("prop", 3, NOW, recs.clone());
        let bytes = encode(&batch).unwrap();
        let typed: MetricsBatch = schemas::decode(&bytes).unwrap();
        prop_assert_eq!(&typed, &batch);
        let lenient = MetricsBatch::decode_lenient(&bytes).unwrap();
        for (got, want) in lenient.records.into_iter().zip(&recs) {
            let got = got.unwrap();
            prop_assert_eq!(&got, want);
            prop_assert!(got.validate(&ValidationPolicy::at(NOW)).is_ok());
        }
    }

    #[test]
    fn every_out_of_range_field_is_named(rec in record(), which in 0usize..14, bad in prop_oneof![
        Just(f32::NAN), Just(f32::INFINITY), Just(-1.0f32), Just(-1e9f32), 100.001f32..1e6
    ]) {
        let metric = Metric::ALL[which];
        let mut rec = rec;
        rec.metrics.set(metric, Some(bad));
        let err = rec.validate(&ValidationPolicy::at(NOW));
        let in_range = !metric.unit().is_percent() && bad.is_finite() && bad >= 0.0;
        if in_range && bad <= plausible_max(metric) {
            prop_assert!(err.is_ok());
        } else {
            let err = err.unwrap_err();
            prop_assert_eq!(err.field, format!("metrics.{}", metric.name()));
            let want = if !bad.is_finite() {
                RejectReason::NotFinite
            } else if in_range {
                RejectReason::Implausible
            } else {
                RejectReason::OutOfRange
            };
            prop_assert_eq!(err.reason, want);
        }
    }

    #[test]
    fn bad_names_and_clocks_are_rejected(rec in record(), junk in "[ *>é<]{1,3}", off in 2i64..400) {
        let mut named = rec.clone();
        named.server = format!("{}{}", named.server, junk);
        prop_assert_eq!(named.validate(&ValidationPolicy::at(NOW)).unwrap_err().reason, RejectReason::BadServerName);
        let mut late = rec;
        late.ts_ms = NOW + off * 86_400_000;
        let err = late.validate(&ValidationPolicy::at(NOW)).unwrap_err();
        prop_assert_eq!((err.field.as_str(), err.reason), ("ts_ms", RejectReason::TimestampSkew));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = MetricsBatch::decode_lenient(&bytes);
    }

    #[test]
    fn corrupted_batches_never_panic(recs in proptest::collection::vec(record(), 1..8), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16)) {
        let mut bytes = encode(&MetricsBatch::new("prop", 1, NOW, recs)).unwrap();
        for (i, b) in flips {
            let n = bytes.len();
            bytes[i % n] = b;
        }
        if let Ok(d) = MetricsBatch::decode_lenient(&bytes) {
            for r in d.records.into_iter().flatten() {
                let _ = r.validate(&ValidationPolicy::at(NOW));
            }
        }
    }
}
