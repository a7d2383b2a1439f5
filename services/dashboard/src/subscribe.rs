//! The NATS edge for snapshots: connect (in the background, so the dashboard serves its
//! "connecting" banner even with the broker down), subscribe to `predictions.current`, join
//! parts with `SnapshotAssembler`, and on start read the snapshot retained in the
//! `PREDICTIONS` stream so a fresh page is never empty. Bad messages are counted and logged,
//! never fatal.

use std::time::{Duration, SystemTime};

use async_nats::jetstream;
use futures::StreamExt;
use schemas::subjects::PREDICTIONS_CURRENT;
use schemas::{Snapshot, SnapshotAssembler, SCHEMA_VERSION};

use crate::state::{Link, Shared};

/// Connects through `fleetbus` (credentials may sit in the URL: the `dashboard` user only
/// reads predictions and history and calls the generator's control subject). The first
/// connection is retried in the background; the link state feeds the banner.
pub async fn connect(state: &Shared) -> anyhow::Result<async_nats::Client> {
    let client = fleetbus::connect("dashboard", &state.args.nats_url).await?;
    state.set_nats(client.clone());
    Ok(client)
}

/// Mirrors the client's connection state into the banner's link state.
pub async fn watch_link(state: Shared, client: async_nats::Client) {
    let mut shutdown = state.shutdown_signal();
    loop {
        let link = match client.connection_state() {
            async_nats::connection::State::Connected => Link::Connected,
            async_nats::connection::State::Pending => match state.health().link {
                // Before the first connection it is "connecting"; after, an outage.
                Link::Connecting => Link::Connecting,
                _ => Link::Disconnected { since: SystemTime::now() },
            },
            async_nats::connection::State::Disconnected => Link::Disconnected { since: SystemTime::now() },
        };
        state.set_link(link);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Why a message on `predictions.current` was skipped.
#[derive(Debug, thiserror::Error)]
pub enum BadSnapshot {
    #[error("undecodable snapshot: {0}")]
    Decode(#[from] schemas::CodecError),
    #[error("snapshot schema version {0} is newer than this dashboard's {SCHEMA_VERSION}")]
    Version(u16),
    #[error("part index {index} of {count} is out of range")]
    Part { index: u16, count: u16 },
}

/// Decodes one message and feeds the assembler; returns a whole snapshot when complete.
pub fn decode_part(asm: &mut SnapshotAssembler, payload: &[u8]) -> Result<Option<Snapshot>, BadSnapshot> {
    let part: Snapshot = schemas::decode(payload)?;
    if part.v > SCHEMA_VERSION {
        return Err(BadSnapshot::Version(part.v));
    }
    if part.part.count > 1 && part.part.index >= part.part.count {
        return Err(BadSnapshot::Part { index: part.part.index, count: part.part.count });
    }
    Ok(asm.push(part))
}

/// Whether the `n`th bad message is logged: the first few, then every hundredth, so a bad
/// publisher cannot flood the log.
#[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` needs Rust 1.87; the MSRV is 1.85
pub fn worth_logging(n: u64) -> bool {
    n <= 5 || n % 100 == 0
}

fn skip(state: &Shared, err: BadSnapshot) {
    let n = state.count_bad_message(err.to_string());
    if worth_logging(n) {
        tracing::warn!(error = %err, skipped = n, "skipping a message on predictions.current");
    }
}

/// Subscribes and installs every whole snapshot until shutdown.
pub async fn run(state: Shared, client: async_nats::Client) {
    let mut shutdown = state.shutdown_signal();
    let mut sub = loop {
        match client.subscribe(PREDICTIONS_CURRENT).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, "subscribing to predictions.current failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    };
    tokio::spawn(read_retained_until_found(state.clone(), client.clone()));
    let mut asm = SnapshotAssembler::default();
    loop {
        tokio::select! {
            msg = sub.next() => match msg {
                Some(msg) => match decode_part(&mut asm, &msg.payload) {
                    Ok(Some(whole)) => state.publish(whole),
                    Ok(None) => {}
                    Err(e) => skip(&state, e),
                },
                None => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Keeps trying to read the retained snapshot until one is installed (by this or by a live
/// message), so a dashboard started before the predictor's stream exists still catches up.
async fn read_retained_until_found(state: Shared, client: async_nats::Client) {
    let mut shutdown = state.shutdown_signal();
    while state.latest().is_none() {
        match read_retained(&client).await {
            Ok(Some(snapshot)) => {
                if state.latest().is_none() {
                    tracing::info!(seq = snapshot.seq, servers = snapshot.servers.len(), "read the retained snapshot");
                    state.publish(snapshot);
                }
                return;
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "no retained snapshot yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The newest whole snapshot in the `PREDICTIONS` stream. The last message says which part it
/// is; the parts of its snapshot precede it back to back (the stream holds only this
/// subject). A snapshot still being published is skipped for the one before it.
pub async fn read_retained(client: &async_nats::Client) -> anyhow::Result<Option<Snapshot>> {
    fleetbus::latest_snapshot(&jetstream::new(client.clone())).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn decodes_and_assembles_parts() {
        let s = fixture::snapshot(&fixture::Spec { servers: 9, ..Default::default() });
        let mut asm = SnapshotAssembler::default();
        let mut got = None;
        for p in fixture::split(&s, 3) {
            got = decode_part(&mut asm, &schemas::encode(&p).unwrap()).unwrap();
        }
        assert_eq!(got.unwrap(), s);
    }

    #[test]
    fn refuses_garbage_and_future_versions() {
        let mut asm = SnapshotAssembler::default();
        assert!(matches!(decode_part(&mut asm, b"\x93\x01\x02"), Err(BadSnapshot::Decode(_))));
        let mut s = fixture::snapshot(&fixture::Spec { servers: 2, ..Default::default() });
        s.v = SCHEMA_VERSION + 1;
        let err = decode_part(&mut asm, &schemas::encode(&s).unwrap()).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
        s.v = SCHEMA_VERSION;
        s.part = schemas::PartInfo { index: 5, count: 2 };
        assert!(matches!(decode_part(&mut asm, &schemas::encode(&s).unwrap()), Err(BadSnapshot::Part { .. })));
    }
}
