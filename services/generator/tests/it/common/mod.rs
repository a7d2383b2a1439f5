//! Shared helpers for the generator's integration tests: a real nats-server with the METRICS
//! stream, a generator run in the background, and reading back what the stream stored.
#![allow(dead_code)]

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use generator::live::{self, LiveOptions, LiveSummary};
use generator::shutdown::{Shutdown, Trigger};
use schemas::subjects::{METRICS_BATCH_ALL, STREAM_METRICS};
use schemas::{MetricRecord, MetricsBatch, ValidationPolicy};
use tokio::task::JoinHandle;

/// Creates the METRICS stream as the predictor does in production.
pub async fn create_stream(client: &async_nats::Client) -> stream::Stream {
    jetstream::new(client.clone())
        .get_or_create_stream(stream::Config {
            name: STREAM_METRICS.into(),
            subjects: vec![METRICS_BATCH_ALL.into()],
            ..Default::default()
        })
        .await
        .expect("creating the METRICS stream")
}

pub fn options(url: &str, servers: usize, seed: u64) -> LiveOptions {
    LiveOptions {
        nats_url: url.to_owned(),
        servers,
        seed,
        tick: Duration::ZERO,
        backfill_steps: 0,
        source: "generator".into(),
        partitions: 1,
        scenario: None,
        start_ms: None,
        max_steps: None,
    }
}

/// A generator running in the background.
pub struct Running {
    pub trigger: Trigger,
    pub task: JoinHandle<anyhow::Result<LiveSummary>>,
}

pub fn spawn(opts: LiveOptions) -> Running {
    let (trigger, shutdown) = Shutdown::new();
    Running { trigger, task: tokio::spawn(live::run(opts, shutdown)) }
}

/// Runs to completion (`max_steps` must be set), within `secs`.
pub async fn run_to_end(opts: LiveOptions, secs: u64) -> LiveSummary {
    let (_trigger, shutdown) = Shutdown::new();
    tokio::time::timeout(Duration::from_secs(secs), live::run(opts, shutdown))
        .await
        .expect("generator run timed out")
        .expect("generator run failed")
}

/// One stored message, decoded and validated against its own clock.
#[derive(Debug, Clone)]
pub struct Stored {
    pub subject: String,
    pub content_type: Option<String>,
    pub bytes: usize,
    pub seq: u64,
    pub clock_ms: i64,
    pub records: Vec<MetricRecord>,
}

pub fn decode_valid(subject: &str, content_type: Option<String>, payload: &[u8]) -> Stored {
    let batch = MetricsBatch::decode_lenient(payload).expect("batch header decodes");
    let policy = ValidationPolicy::at(batch.clock_ms);
    let records: Vec<MetricRecord> = batch
        .records
        .into_iter()
        .map(|r| {
            let r = r.expect("record decodes");
            r.validate(&policy).unwrap_or_else(|e| panic!("record of {} invalid: {e}", r.server));
            r
        })
        .collect();
    Stored { subject: subject.to_owned(), content_type, bytes: payload.len(), seq: batch.seq, clock_ms: batch.clock_ms, records }
}

/// Every message the stream holds, in order.
pub async fn read_stream(client: &async_nats::Client) -> Vec<Stored> {
    let js = jetstream::new(client.clone());
    let mut stream = js.get_stream(STREAM_METRICS).await.expect("METRICS stream exists");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    for seq in state.first_sequence..=state.last_sequence {
        if state.messages == 0 {
            break;
        }
        let m = stream.get_raw_message(seq).await.expect("stored message");
        let ct = m.headers.get(schemas::CONTENT_TYPE_HEADER).map(|v| v.to_string());
        out.push(decode_valid(m.subject.as_str(), ct, &m.payload));
    }
    out
}
