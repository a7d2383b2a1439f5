//! The `windows` KV bucket at run time: stores the chunks that changed (pipelined puts, all
//! acknowledged before the messages that changed them are acked) and rebuilds the registry
//! from the bucket on start by reading its stream once, last value per key. The value layout
//! is in `chunk.rs`. A failed write says whether repeating it can help ([`WriteError`]).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, context::PublishError, context::PublishErrorKind, kv};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

use schemas::partition::PartitionInfo;

use crate::chunk::{self, decode_chunk, decode_clock, encode_chunk, parse_key, Chunk, Key};
use crate::registry::Registry;
use crate::window::chunk_of;

/// JetStream publishes in flight at once during a flush.
const IN_FLIGHT: usize = 512;

/// JetStream API status codes that mean "not now" rather than "never": 408 and 504 (timeouts),
/// 500 (no stream leader, stream offline: a cluster electing one) and 503 (JetStream not
/// available yet, or out of storage until old messages age out).
const TRANSIENT_API_CODES: [usize; 4] = [408, 500, 503, 504];

/// Why a write to JetStream (window chunks, forecasts, snapshot parts, events) failed, told
/// apart the way a caller must: wait and repeat it, or give up on it.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The broker did not take the write now: the ack timed out, no JetStream answered (no
    /// responders: the broker is restarting or JetStream is not up yet), the connection broke,
    /// too many acks are pending, or JetStream answered with a transient status
    /// ([`TRANSIENT_API_CODES`]). The same write may succeed later.
    #[error("broker unavailable: {0}")]
    Unavailable(PublishError),
    /// This very write was refused: over the server's max_payload, rejected by the stream
    /// (e.g. its maximum message size), an invalid subject or an unreadable reply. Repeating it
    /// fails the same way.
    #[error("write refused: {0}")]
    Refused(PublishError),
    /// A message could not be encoded (a bug, not the broker).
    #[error("encoding: {0}")]
    Encode(#[from] schemas::CodecError),
    /// The task writing them stopped without a result (it panicked or was cancelled).
    #[error("writer task: {0}")]
    Task(String),
}

impl WriteError {
    /// Whether repeating the same write can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, WriteError::Unavailable(_))
    }
}

impl From<PublishError> for WriteError {
    fn from(e: PublishError) -> WriteError {
        let transient = match e.kind() {
            PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::StreamNotFound
            | PublishErrorKind::MaxAckPending => true,
            PublishErrorKind::MaxPayloadExceeded | PublishErrorKind::WrongLastMessageId | PublishErrorKind::WrongLastSequence => false,
            // `Other` is JetStream's answer (an API error with a status code) or a failure on
            // the client's side before anything was sent (subject, closed client, bad reply).
            _ => std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<jetstream::Error>())
                .is_some_and(|api| TRANSIENT_API_CODES.contains(&api.code())),
        };
        if transient {
            WriteError::Unavailable(e)
        } else {
            WriteError::Refused(e)
        }
    }
}

pub struct WindowStore {
    js: jetstream::Context,
    kv: kv::Store,
    bucket: String,
    prefix: String,
    n_slots: i64,
    scratch: Vec<i64>,
    /// Set on a partitioned predictor: only this partition's servers are loaded, and its
    /// source clocks are kept under keys of their own (`=src.<source>.p<index>`), since each
    /// partition sees a source's steps close on its own.
    partition: Option<PartitionInfo>,
}

/// What a flush wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlushStats {
    pub keys: usize,
    pub bytes: usize,
}

impl WindowStore {
    /// Opens (creating if needed) the bucket for windows of `capacity` steps.
    pub async fn open(js: &jetstream::Context, bucket: &str, capacity: usize, max_age: Duration) -> anyhow::Result<WindowStore> {
        let kv = crate::streams::open_bucket(js, bucket, crate::streams::WINDOWS_DESCRIPTION, max_age).await?;
        Ok(WindowStore {
            js: js.clone(),
            kv,
            bucket: bucket.to_string(),
            prefix: format!("$KV.{bucket}."),
            n_slots: chunk::n_slots(capacity),
            scratch: Vec::new(),
            partition: None,
        })
    }

    /// Restricts this store to one partition's servers and source clocks.
    pub fn for_partition(mut self, partition: Option<PartitionInfo>) -> WindowStore {
        self.partition = partition;
        self
    }

    fn source_key(&self, source: &str) -> String {
        match self.partition {
            Some(p) => chunk::source_key(&format!("{source}.p{}", p.index)),
            None => chunk::source_key(source),
        }
    }

    /// The source a stored clock key belongs to in this store's partition, if it does.
    fn own_source<'k>(&self, stored: &'k str) -> Option<&'k str> {
        match self.partition {
            None => Some(stored).filter(|s| !s.contains('.')),
            Some(p) => stored.strip_suffix(&format!(".p{}", p.index)),
        }
    }

    fn own_server(&self, server: &str) -> bool {
        self.partition.is_none_or(|p| schemas::partition::of(server, p.count) == p.index)
    }

    pub fn n_slots(&self) -> i64 {
        self.n_slots
    }

    /// Encodes every changed chunk and source clock as KV writes, clearing the change marks;
    /// [`WindowStore::write`] stores them.
    pub fn prepare(&mut self, reg: &mut Registry) -> Vec<(String, Bytes)> {
        let mut buf = BytesMut::new();
        let mut writes: Vec<(String, Bytes)> = Vec::new();
        let mut tmp = Vec::with_capacity(1024);
        for id in reg.take_dirty() {
            reg.server_mut(id).take_dirty(&mut self.scratch);
            let w = reg.server(id);
            let source = &reg.source(w.source).name;
            // A backlog can change more chunks than there are slots; only the newest
            // `n_slots` are the window (older ones would race them for the same key).
            let newest = w.open().map(|o| o.step).or(w.last_closed()).map_or(i64::MIN, chunk_of);
            for &c in self.scratch.iter().filter(|c| **c > newest - self.n_slots) {
                tmp.clear();
                encode_chunk(w, source, c, &mut tmp);
                buf.extend_from_slice(&tmp);
                let subject = format!("{}{}", self.prefix, chunk::chunk_key(&w.name, c, self.n_slots));
                writes.push((subject, buf.split().freeze()));
            }
        }
        for id in 0..reg.sources().len() as u16 {
            let s = reg.source_mut(id);
            if std::mem::take(&mut s.dirty) {
                let subject = format!("{}{}", self.prefix, self.source_key(&s.name));
                writes.push((subject, Bytes::copy_from_slice(&chunk::encode_clock(s.clock_ms))));
            }
        }
        writes
    }

    /// Stores prepared writes; returns once the server has them all. Puts are idempotent, so
    /// a write that failed with a retryable [`WriteError`] may simply be repeated.
    pub async fn write(&self, writes: &[(String, Bytes)]) -> Result<FlushStats, WriteError> {
        let stats = FlushStats { keys: writes.len(), bytes: writes.iter().map(|(_, b)| b.len()).sum() };
        publish_all(&self.js, writes.to_vec()).await?;
        Ok(stats)
    }

    /// Reads the whole bucket (last value per key) into `reg`. Returns the servers restored.
    pub async fn load(&self, reg: &mut Registry, wall_ms: i64) -> anyhow::Result<usize> {
        // Fresh stream info: `kv::Store::status` answers from the info cached at open.
        let stream = self.js.get_stream(format!("KV_{}", self.bucket)).await.context("windows bucket stream")?;
        if stream.get_info().await.context("windows bucket info")?.state.messages == 0 {
            return Ok(0);
        }
        let mut chunks: HashMap<String, Vec<Chunk>> = HashMap::new();
        // Last value per key, then stop at the newest (delta 0); `watch_all` would only
        // deliver changes from now on.
        let mut watch = self.kv.watch_with_history(">").await.context("reading the windows bucket")?;
        loop {
            let next = tokio::time::timeout(Duration::from_secs(30), watch.next()).await;
            let Ok(Some(entry)) = next else {
                anyhow::bail!("reading the windows bucket: no entry for 30 s before its end");
            };
            let entry = entry.context("reading the windows bucket")?;
            let done = entry.delta == 0;
            if entry.operation == kv::Operation::Put {
                match parse_key(&entry.key) {
                    Some(Key::Source(stored)) => match (self.own_source(stored), decode_clock(&entry.value)) {
                        (None, _) => {} // another partition's clock
                        (Some(name), Ok(clock)) => reg.restore_source(name, clock, wall_ms),
                        (Some(_), Err(e)) => tracing::warn!(key = %entry.key, error = %e, "skipping a bad source clock"),
                    },
                    Some(Key::Chunk { server, .. }) if !self.own_server(server) => {}
                    // An older predictor took dotted names; one would publish its alerts on
                    // several subject tokens, so it is not rebuilt (its source is told on
                    // `metrics.rejected` when it reports again).
                    Some(Key::Chunk { server, .. }) if schemas::validate::check_server_name(server).is_err() => {
                        tracing::warn!(key = %entry.key, "skipping a window whose server name is not one subject token");
                    }
                    Some(Key::Chunk { server, slot }) => match decode_chunk(&entry.value) {
                        Ok(c) if c.chunk.rem_euclid(self.n_slots) == slot => chunks.entry(server.to_string()).or_default().push(c),
                        Ok(_) => {} // a slot laid out for another window length
                        Err(e) => tracing::warn!(key = %entry.key, error = %e, "skipping a bad window chunk"),
                    },
                    None => tracing::warn!(key = %entry.key, "skipping an unknown key"),
                }
            }
            if done {
                break;
            }
        }
        let restored = chunks.len();
        let mut names: Vec<_> = chunks.into_iter().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, cs) in names {
            reg.restore_server(&name, cs, self.n_slots);
        }
        reg.finish_restore(wall_ms);
        Ok(restored)
    }
}

/// Publishes to JetStream with up to [`IN_FLIGHT`] acks outstanding; fails on the first error.
pub async fn publish_all(js: &jetstream::Context, writes: Vec<(String, Bytes)>) -> Result<(), WriteError> {
    publish_stream(js, futures::stream::iter(writes)).await
}

/// [`publish_all`] for writes that arrive while they are being published (`(subject, payload)`).
pub async fn publish_stream(js: &jetstream::Context, writes: impl futures::Stream<Item = (String, Bytes)>) -> Result<(), WriteError> {
    writes
        .map(|(subject, payload)| {
            let js = js.clone();
            async move {
                let ack = js.publish(subject, payload).await?;
                ack.await?;
                Ok::<_, WriteError>(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<()>()
        .await
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
