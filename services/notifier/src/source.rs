//! Where the events come from: stream `HISTORY` (created and owned by the predictor; the
//! notifier only reads it, and waits while it does not exist yet), subject filter `alerts.>`.
//!
//! On every start the notifier
//! 1. reads its durable consumer's ack floor `F`: every event up to `F` reached every
//!    Alertmanager (on a first start, with no consumer, `F` is the newest alert event now);
//! 2. folds the events up to `F` into the active set (an ephemeral consumer, no acks), so a
//!    restart forgets nothing: the state is the stream, the set is only its fold;
//! 3. (re)creates the durable consumer to start right after `F`, so delivery continues in
//!    stream order (an event delivered to a crashed instance but never acknowledged comes again
//!    at once and in order, not after `ack_wait` behind newer ones).
//!
//! One notifier per consumer name: a second instance with the same name would share (and
//! recreate) the same consumer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, stream::Stream};
use futures::StreamExt;
use schemas::subjects;

use crate::active::ActiveSet;
use crate::event::{self, Stored};

/// The durable consumer's pull configuration.
pub type Consumer = jetstream::consumer::Consumer<pull::Config>;

/// How long the server waits for an ack before delivering again; long retries send
/// in-progress acks well within it.
pub const ACK_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("reading stream {stream}: {reason}")]
    Stream { stream: &'static str, reason: String },
    #[error("consumer {consumer} on stream {stream}: {reason}")]
    Consumer { stream: &'static str, consumer: String, reason: String },
    #[error("replaying alert events: {0}")]
    Replay(String),
}

/// The filter on stream HISTORY: every alert event.
pub fn filter() -> String {
    format!("{}.>", subjects::ALERTS_PREFIX)
}

/// Waits until stream HISTORY exists (the predictor creates it), checking every `every`.
pub async fn wait_for_stream(js: &jetstream::Context, every: Duration) -> Stream {
    let mut logged = false;
    loop {
        match js.get_stream(subjects::STREAM_HISTORY).await {
            Ok(stream) => return stream,
            Err(e) => {
                if !logged {
                    tracing::info!(stream = subjects::STREAM_HISTORY, error = %e, "waiting for the predictor to create the stream");
                    logged = true;
                }
                tokio::time::sleep(every).await;
            }
        }
    }
}

/// The durable consumer's configuration, starting at stream sequence `start` (>= 1).
pub fn durable_config(name: &str, start: u64) -> pull::Config {
    pull::Config {
        durable_name: Some(name.to_string()),
        description: Some("Fleetcast notifier: alert events, acked once every Alertmanager accepted them".into()),
        deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start.max(1) },
        ack_policy: AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_ack_pending: 20_000,
        filter_subject: filter(),
        ..Default::default()
    }
}

/// Steps 1-3 of the module comment: the active set as of the ack floor and the durable
/// consumer that continues right after it.
#[tracing::instrument(skip_all, fields(consumer = name))]
pub async fn open(stream: &Stream, name: &str) -> Result<(ActiveSet, Consumer), SourceError> {
    let consumer_err = |reason: String| SourceError::Consumer { stream: subjects::STREAM_HISTORY, consumer: name.to_string(), reason };
    let floor = match stream.get_consumer::<pull::Config>(name).await {
        Ok(mut existing) => {
            let info = existing.info().await.map_err(|e| consumer_err(e.to_string()))?;
            Some(info.ack_floor.stream_sequence)
        }
        Err(e) if e.to_string().to_lowercase().contains("not found") => None,
        Err(e) => return Err(consumer_err(e.to_string())),
    };
    let set = replay(stream, floor).await?;
    if floor.is_some() {
        stream.delete_consumer(name).await.map_err(|e| consumer_err(format!("deleting to restart at the ack floor: {e}")))?;
    }
    let start = set.last_seq() + 1;
    let consumer = stream.create_consumer(durable_config(name, start)).await.map_err(|e| consumer_err(e.to_string()))?;
    tracing::info!(active = set.len(), ack_floor = set.last_seq(), "active alerts rebuilt from the stream");
    Ok((set, consumer))
}

/// The wall-clock time the server stored a message, in Unix ms.
pub fn stored_ms(published: SystemTime) -> i64 {
    published.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Folds every alert event up to stream sequence `upto` (every one there is now when `None`)
/// into a new set. Bad events are skipped here without counting: they were counted when first
/// delivered.
async fn replay(stream: &Stream, upto: Option<u64>) -> Result<ActiveSet, SourceError> {
    let mut set = ActiveSet::default();
    if upto == Some(0) {
        return Ok(set);
    }
    let err = |e: &dyn std::fmt::Display| SourceError::Replay(e.to_string());
    let reader = stream
        .create_consumer(pull::Config {
            description: Some("Fleetcast notifier: replay of alert events on start".into()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            filter_subject: filter(),
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(|e| err(&e))?;
    let mut out = Vec::new();
    'batches: loop {
        let mut batch = reader.fetch().max_messages(1000).messages().await.map_err(|e| err(&e))?;
        let mut got = 0;
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|e| err(&e))?;
            got += 1;
            let Ok(info) = msg.info() else { continue };
            let (seq, pending) = (info.stream_sequence, info.pending);
            let stored = stored_ms(SystemTime::from(info.published));
            if upto.is_some_and(|u| seq > u) {
                break 'batches;
            }
            match event::parse(msg.subject.as_str(), &msg.payload) {
                Ok(event) => {
                    set.apply(&Stored { seq, stored_ms: stored, event }, &mut out);
                    out.clear();
                }
                Err(_) => set.skip(seq),
            }
            if upto.is_some_and(|u| seq >= u) || (upto.is_none() && pending == 0) {
                break 'batches;
            }
        }
        if got == 0 {
            break;
        }
    }
    let reader_name = reader.cached_info().name.clone();
    if let Err(e) = stream.delete_consumer(&reader_name).await {
        tracing::debug!(error = %e, "replay consumer left to expire");
    }
    // A consumer's ack floor may point at a sequence that is not an alert event (never, with
    // the filter, but a floor past the replayed events must still be where delivery resumes).
    if let Some(u) = upto {
        set.skip(u);
    }
    Ok(set)
}
