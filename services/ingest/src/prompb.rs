//! The Prometheus remote-write 1.0 wire messages (`prometheus.WriteRequest` of
//! prometheus/prompb `remote.proto` and `types.proto`), derived by hand with prost so the build
//! needs no `protoc`. Only the fields Fleetcast reads are declared; prost skips the others
//! (metadata, exemplars, histograms) as unknown fields, as protobuf requires.

use bytes::Bytes;

/// `prometheus.WriteRequest`: field 1 `timeseries` (3 `metadata` is skipped).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: labels (sorted by name, `__name__` among them) and samples.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// A label. Name and value are protobuf `string`s kept as [`Bytes`] slices of the decoded
/// body (no copy, no allocation per label: the largest cost of decoding otherwise); they are
/// read as UTF-8 only when looked up ([`TimeSeries::label`]).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(bytes = "bytes", tag = "1")]
    pub name: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

impl Label {
    pub fn new(name: &str, value: &str) -> Label {
        Label { name: Bytes::copy_from_slice(name.as_bytes()), value: Bytes::copy_from_slice(value.as_bytes()) }
    }
}

/// One sample: the value and its Unix time in milliseconds.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

impl TimeSeries {
    /// The value of label `name`, if present and valid UTF-8 (a label that is not is treated
    /// as absent, so it is rejected or ignored like a missing one, never a panic).
    pub fn label(&self, name: &str) -> Option<&str> {
        let l = self.labels.iter().find(|l| l.name == name.as_bytes())?;
        std::str::from_utf8(&l.value).ok()
    }
}

/// Encodes `req` as a remote-write body (protobuf, then snappy block format), as a sender does.
pub fn encode_body(req: &WriteRequest) -> Vec<u8> {
    let raw = prost::Message::encode_to_vec(req);
    // Compressing an in-memory buffer fails only beyond snap's 4 GiB input limit.
    snap::raw::Encoder::new().compress_vec(&raw).unwrap_or_default()
}

/// A remote-write 1.0 POST of an [`encode_body`] body to `url` (`…/api/v1/write`), with the
/// headers the spec requires (protobuf, snappy, version 0.1.0), as Prometheus sends it; for
/// the benchmarks and tests that play a Prometheus.
pub fn post(client: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
}
