//! Prometheus remote-write 1.0 receiver: `POST /api/v1/write` (snappy block + protobuf
//! `prometheus.WriteRequest`), plus `GET /metrics` (ingest's own counters) and `GET /-/ready`.
//! Exists so a team's Prometheus (or any remote-write sender) can push its node_exporter series
//! to Fleetcast with a few lines of `remote_write` configuration.
//!
//! Status codes follow the spec (prometheus.io/docs/specs/remote_write_spec): 204 when the
//! request was taken; 4xx for a request that must not be retried (400 malformed snappy or
//! protobuf, 401 bad token, 413 over the body limit, 415 wrong Content-Type/Content-Encoding);
//! 5xx only for our own trouble (503 while the publisher's backlog is full, so the sender retries
//! later and no sample is lost). A bad *sample* (no host label, NaN, late) does not fail the
//! request: it is rejected on its own, counted and reported on `metrics.rejected`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use schemas::{RejectReason, Rejection, ValidationError, SCHEMA_VERSION};
use tokio::sync::mpsc;

use crate::align::{Aligner, ClosedStep, Outcome};
use crate::mapping::classify;
use crate::names::server_name;
use crate::prompb::WriteRequest;
use crate::sink::{Out, Tally};
use crate::stats::Stats;

/// Why a whole request was refused; each maps to one status code.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{header} must be {want}, not {got:?}")]
    UnsupportedMedia { header: &'static str, want: &'static str, got: String },
    #[error("body of {bytes} bytes is over the {limit}-byte limit")]
    TooLarge { bytes: usize, limit: usize },
    #[error("body is not snappy block format: {0}")]
    Snappy(String),
    #[error("body is not a prometheus.WriteRequest: {0}")]
    Protobuf(String),
    #[error("the publisher's backlog is full (NATS slow or down); retry later")]
    Backlog,
}

impl WriteError {
    pub fn status(&self) -> StatusCode {
        match self {
            WriteError::Unauthorized => StatusCode::UNAUTHORIZED,
            WriteError::UnsupportedMedia { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WriteError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            WriteError::Snappy(_) | WriteError::Protobuf(_) => StatusCode::BAD_REQUEST,
            WriteError::Backlog => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The rejection reported on `metrics.rejected` (none for our own trouble or a bad token).
    fn validation(&self) -> Option<ValidationError> {
        let (field, reason) = match self {
            WriteError::UnsupportedMedia { header, .. } => (*header, RejectReason::Malformed),
            WriteError::TooLarge { .. } => ("body", RejectReason::Oversize),
            WriteError::Snappy(_) | WriteError::Protobuf(_) => ("body", RejectReason::Malformed),
            WriteError::Unauthorized | WriteError::Backlog => return None,
        };
        Some(ValidationError::new(field, "", reason, self.to_string()))
    }

    fn counter(&self) -> &'static str {
        match self {
            WriteError::Unauthorized => "unauthorized",
            WriteError::UnsupportedMedia { .. } => "unsupported_media",
            WriteError::TooLarge { .. } => "oversize",
            WriteError::Snappy(_) => "bad_snappy",
            WriteError::Protobuf(_) => "bad_protobuf",
            WriteError::Backlog => "backlog",
        }
    }
}

/// What the receiver shares between requests.
pub struct PushState {
    pub aligner: Mutex<Aligner>,
    /// Label naming the host (`instance` by default).
    pub host_label: String,
    pub token: Option<String>,
    /// Limit on the compressed body, and (x4) on the decompressed one.
    pub max_body: usize,
    pub source: String,
    pub stats: Arc<Stats>,
    pub out: mpsc::Sender<Out>,
    /// Where hosts pushed for the first time are reported, with `--pull history` (the
    /// backfill of `pull::history`); `None` otherwise.
    pub fresh: Option<mpsc::UnboundedSender<Vec<FreshHost>>>,
}

/// A host the aligner did not hold before a request, and its first sample accepted in it.
#[derive(Debug, Clone, PartialEq)]
pub struct FreshHost {
    /// The host label's value as sent (the query API's selector needs it, not the server name).
    pub raw: String,
    /// Unix ms.
    pub first_ms: i64,
}

/// The routes; serve with `axum::serve`.
pub fn router(state: Arc<PushState>) -> Router {
    Router::new()
        .route("/api/v1/write", post(write))
        .route(
            "/metrics",
            get(|State(s): State<Arc<PushState>>| async move {
                ([(axum::http::header::CONTENT_TYPE, fleetbus::metrics::CONTENT_TYPE)], s.stats.render())
            }),
        )
        .route("/-/ready", get(|| async { "ready\n" }))
        .with_state(state)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

async fn write(State(s): State<Arc<PushState>>, headers: HeaderMap, body: Body) -> Response {
    let wall = now_ms();
    match receive(&s, &headers, body, wall).await {
        Ok(()) => {
            s.stats.add("requests", "status", "204", 1);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            s.stats.add("requests", "status", e.status().as_str(), 1);
            s.stats.add("refused", "why", e.counter(), 1);
            if let Some(v) = e.validation() {
                s.stats.add("rejected", "reason", v.reason.name(), 1);
                let r = Rejection {
                    v: SCHEMA_VERSION,
                    source: s.source.clone(),
                    seq: None,
                    index: None,
                    server: None,
                    error: v,
                    rejected_ms: wall,
                };
                let _ = s.out.try_send(Out::Rejections(vec![r]));
            }
            (e.status(), format!("{e}\n")).into_response()
        }
    }
}

async fn receive(s: &PushState, headers: &HeaderMap, body: Body, wall: i64) -> Result<(), WriteError> {
    check_headers(headers, s.token.as_deref())?;
    if let Some(len) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok()) {
        if len > s.max_body {
            return Err(WriteError::TooLarge { bytes: len, limit: s.max_body });
        }
    }
    let body =
        axum::body::to_bytes(body, s.max_body).await.map_err(|_| WriteError::TooLarge { bytes: s.max_body + 1, limit: s.max_body })?;
    // Refuse before touching the aligner, so the sender's retry is not counted twice.
    if s.out.capacity() == 0 {
        return Err(WriteError::Backlog);
    }
    let req = decode(&body, s.max_body.saturating_mul(4))?;
    let (tally, fresh, closed) = {
        let mut aligner = s.aligner.lock().unwrap_or_else(|p| p.into_inner());
        let (tally, fresh) = apply(&mut aligner, &req, &s.host_label, &s.stats, wall);
        (tally, fresh, aligner.close_ready(wall))
    };
    if let Some(to) = s.fresh.as_ref().filter(|_| !fresh.is_empty()) {
        let _ = to.send(fresh);
    }
    if !tally.is_empty() {
        let _ = s.out.send(Out::Rejections(tally.into_rejections(&s.source, &s.stats, wall))).await;
    }
    for out in closed_out(closed, &s.source, &s.stats, wall) {
        let _ = s.out.send(out).await;
    }
    Ok(())
}

/// Checks the bearer token, `Content-Type: application/x-protobuf` (a `proto=` parameter, if
/// any, must name `prometheus.WriteRequest`: remote-write 2.0 is not spoken here) and
/// `Content-Encoding: snappy`.
pub fn check_headers(headers: &HeaderMap, token: Option<&str>) -> Result<(), WriteError> {
    let get = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("").trim().to_owned();
    if let Some(token) = token {
        if get(header::AUTHORIZATION).strip_prefix("Bearer ") != Some(token) {
            return Err(WriteError::Unauthorized);
        }
    }
    let ct = get(header::CONTENT_TYPE);
    let mut parts = ct.split(';').map(str::trim);
    let media_ok = parts.next().is_some_and(|m| m.eq_ignore_ascii_case("application/x-protobuf"));
    let proto_ok = parts.all(|p| p.strip_prefix("proto=").is_none_or(|v| v == "prometheus.WriteRequest"));
    if !media_ok || !proto_ok {
        let want = "application/x-protobuf (remote-write 1.0, proto=prometheus.WriteRequest)";
        return Err(WriteError::UnsupportedMedia { header: "Content-Type", want, got: ct });
    }
    let ce = get(header::CONTENT_ENCODING);
    if !ce.eq_ignore_ascii_case("snappy") {
        return Err(WriteError::UnsupportedMedia { header: "Content-Encoding", want: "snappy", got: ce });
    }
    Ok(())
}

/// Snappy block format, then protobuf (prost); the decompressed size is checked before
/// decompressing. The whole body is decoded before anything is applied, so a malformed request
/// changes nothing.
pub fn decode(body: &Bytes, max_decoded: usize) -> Result<WriteRequest, WriteError> {
    let len = snap::raw::decompress_len(body).map_err(|e| WriteError::Snappy(e.to_string()))?;
    if len > max_decoded {
        return Err(WriteError::TooLarge { bytes: len, limit: max_decoded });
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| WriteError::Snappy(e.to_string()))?;
    // From `Bytes`, so label names and values are slices of this buffer, not copies.
    <WriteRequest as prost::Message>::decode(bytes::Bytes::from(raw)).map_err(|e| WriteError::Protobuf(e.to_string()))
}

/// Feeds every sample of a series the mapping reads to the aligner; returns the rejections
/// and the hosts the aligner holds since this request and did not before.
pub fn apply(aligner: &mut Aligner, req: &WriteRequest, host_label: &str, stats: &Stats, wall: i64) -> (Tally, Vec<FreshHost>) {
    let mut tally = Tally::default();
    // One host has many series in a request: per host label value, its server name and
    // whether the aligner held it before are worked out once.
    let mut names: HashMap<&str, (Result<String, ValidationError>, bool)> = HashMap::new();
    let mut fresh: HashMap<&str, i64> = HashMap::new();
    let (mut accepted, mut stale, mut dup, mut ignored) = (0u64, 0u64, 0u64, 0u64);
    for ts in &req.timeseries {
        let name = ts.label("__name__").unwrap_or("");
        let samples = &ts.samples;
        let Some((key, kind)) = classify(name, |l| ts.label(l)) else {
            ignored += samples.len() as u64;
            continue;
        };
        let Some(raw) = ts.label(host_label) else {
            let e = ValidationError::new(
                format!("labels.{host_label}"),
                name,
                RejectReason::MissingField,
                "every series needs the host label (--host-label)",
            );
            (0..samples.len().max(1)).for_each(|_| tally.add(e.clone(), None));
            continue;
        };
        let (named, new) = names.entry(raw).or_insert_with(|| {
            let name = server_name(host_label, raw);
            let new = name.as_ref().is_ok_and(|n| !aligner.knows(n));
            (name, new)
        });
        let host = match named {
            Ok(h) => h.as_str(),
            Err(e) => {
                (0..samples.len().max(1)).for_each(|_| tally.add(e.clone(), None));
                continue;
            }
        };
        for sample in samples {
            let t = sample.timestamp;
            match aligner.push(host, &key, kind, t, sample.value, wall) {
                Outcome::Accepted => {
                    accepted += 1;
                    if *new {
                        let first = fresh.entry(raw).or_insert(t);
                        *first = (*first).min(t);
                    }
                }
                Outcome::Stale => stale += 1,
                Outcome::Duplicate => dup += 1,
                Outcome::Rejected(e) => tally.add(e, Some(host)),
            }
        }
    }
    for (what, n) in [("accepted", accepted), ("stale", stale), ("duplicate", dup), ("ignored", ignored)] {
        if n > 0 {
            stats.add("samples", "outcome", what, n);
        }
    }
    let fresh = fresh.into_iter().map(|(raw, first_ms)| FreshHost { raw: raw.to_owned(), first_ms }).collect();
    (tally, fresh)
}

/// Closed steps as what the sink publishes: a batch per step with records, then the step's
/// reduce-time rejections.
pub fn closed_out(closed: Vec<ClosedStep>, source: &str, stats: &Stats, wall: i64) -> Vec<Out> {
    let mut out = Vec::new();
    for step in closed {
        stats.add("steps_closed", "what", "steps", 1);
        stats.add("steps_closed", "what", "records", step.records.len() as u64);
        let mut tally = Tally::default();
        for (server, e) in step.rejected {
            tally.add(e, Some(&server));
        }
        if !step.records.is_empty() {
            out.push(Out::Batch { clock_ms: step.end_ms, records: step.records });
        }
        if !tally.is_empty() {
            out.push(Out::Rejections(tally.into_rejections(source, stats, wall)));
        }
    }
    out
}

/// Closes steps of a source that went quiet (the aligner's idle rule), once a second.
pub async fn flush_loop(s: Arc<PushState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|v| *v) => return,
        }
        let wall = now_ms();
        let closed = s.aligner.lock().unwrap_or_else(|p| p.into_inner()).close_ready(wall);
        for out in closed_out(closed, &s.source, &s.stats, wall) {
            if s.out.send(out).await.is_err() {
                return;
            }
        }
    }
}
