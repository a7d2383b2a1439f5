//! Whole requests that are wrong: each gets its status code (4xx, never retried), is counted
//! and reported on `metrics.rejected`, and the service goes on taking good requests.

use std::time::Duration;

use ingest::prompb::encode_body;
use schemas::RejectReason;

use crate::common::{boundary_ago, request, series, Stack};

const PB: &str = "application/x-protobuf";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_their_status_and_are_counted() {
    let mut s = Stack::start(&["--max-body", "4096"]).await;
    let good = request(vec![series(&[("__name__", "node_load1"), ("instance", "h1:9100")], &[(boundary_ago(3), 1.0)])]);

    // Not snappy at all.
    let (code, text) = s.post(b"\x05\xff\xff\xff".to_vec(), PB, "snappy", None).await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("snappy"), "{text}");
    // Snappy framing of a good series (another host) then garbage: decompresses, but is not a
    // WriteRequest, and the good series before the garbage must not be applied either.
    let mut raw = prost::Message::encode_to_vec(&request(vec![series(
        &[("__name__", "node_load1"), ("instance", "h2:9100")],
        &[(boundary_ago(3), 1.0)],
    )]));
    raw.extend_from_slice(b"\x0a\xff\xff\xff\xff\x0f garbage");
    let junk = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
    let (code, text) = s.post(junk, PB, "snappy", None).await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("WriteRequest"), "{text}");
    // Wrong media type, remote-write 2.0, wrong encoding.
    assert_eq!(s.post(encode_body(&good), "application/json", "snappy", None).await.0, 415);
    let v2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
    assert_eq!(s.post(encode_body(&good), v2, "snappy", None).await.0, 415);
    assert_eq!(s.post(encode_body(&good), PB, "gzip", None).await.0, 415);
    // Over the body limit.
    let (code, text) = s.post(vec![0u8; 10_000], PB, "snappy", None).await;
    assert_eq!(code, 413, "{text}");

    // Reported in the order refused.
    let ce = s.rejection_where(Duration::from_secs(30), |r| r.error.field == "Content-Encoding").await;
    assert_eq!(ce.error.reason, RejectReason::Malformed);
    assert!(ce.error.rule.contains("gzip"), "{}", ce.error.rule);
    let r = s.rejection_where(Duration::from_secs(30), |r| r.error.reason == RejectReason::Oversize).await;
    assert_eq!((r.source.as_str(), r.error.field.as_str()), ("ittest", "body"));
    assert_eq!(s.counter("refused", "bad_snappy").await, 1);
    assert_eq!(s.counter("refused", "bad_protobuf").await, 1);
    assert_eq!(s.counter("refused", "unsupported_media").await, 3);
    assert_eq!(s.counter("refused", "oversize").await, 1);
    assert_eq!(s.counter("rejected", "malformed").await, 5);

    // Still up, still taking good data; only its one sample was ever accepted (not h2's).
    assert_eq!(s.write(&good).await, 204);
    assert_eq!(s.counter("samples", "accepted").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_is_required_when_set() {
    let s = Stack::start(&["--token", "s3cret"]).await;
    let good = request(vec![series(&[("__name__", "node_load1"), ("instance", "h1")], &[(boundary_ago(3), 1.0)])]);
    assert_eq!(s.post(encode_body(&good), PB, "snappy", None).await.0, 401);
    assert_eq!(s.post(encode_body(&good), PB, "snappy", Some("wrong")).await.0, 401);
    assert_eq!(s.post(encode_body(&good), PB, "snappy", Some("s3cret")).await.0, 204);
    assert_eq!(s.counter("refused", "unauthorized").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_beyond_the_fleet_bound_are_rejected_and_counted() {
    let mut s = Stack::start(&["--max-hosts", "2"]).await;
    let t = boundary_ago(3);
    let hosts: Vec<_> = (0..5).map(|i| series(&[("__name__", "node_load1"), ("instance", &format!("h{i}:9100"))], &[(t, 1.0)])).collect();
    assert_eq!(s.write(&request(hosts)).await, 204);
    let r = s.rejection_where(Duration::from_secs(30), |r| r.error.reason == RejectReason::FleetLimit).await;
    assert!(r.error.rule.contains("3 alike"), "{}", r.error.rule);
    assert_eq!(s.counter("rejected", "fleet_limit").await, 3);
}
