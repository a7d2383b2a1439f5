//! The NATS edge for snapshots: connect (in the background, so the dashboard serves its
//! "connecting" banner even with the broker down), subscribe to `predictions.current` and to
//! every partition's `predictions.current.<k>`, join parts with one `SnapshotAssembler`, hand
//! whole snapshots to the state (which keeps the newest of each partition and shows their
//! merge: `partitions.rs`), and on start read the snapshots retained in the `PREDICTIONS`
//! stream so a fresh page is never empty. Bad messages are counted and logged, never fatal.

use std::time::{Duration, SystemTime};

use async_nats::jetstream;
use futures::StreamExt;
use schemas::subjects::{PREDICTIONS_CURRENT, STREAM_PREDICTIONS};
use schemas::{Snapshot, SnapshotAssembler, SNAPSHOT_VERSION};

use crate::partitions::Origin;
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

/// Why a message on `predictions.current[.<k>]` was skipped.
#[derive(Debug, thiserror::Error)]
pub enum BadSnapshot {
    #[error("undecodable snapshot: {0}")]
    Decode(#[from] schemas::CodecError),
    #[error("snapshot version {0} is not this dashboard's {SNAPSHOT_VERSION}")]
    Version(u16),
    #[error("part index {index} of {count} is out of range")]
    Part { index: u16, count: u16 },
    #[error("partition {index} of {count} is out of range")]
    Partition { index: u16, count: u16 },
}

/// Decodes one message and feeds the assembler; returns a whole snapshot when complete.
pub fn decode_part(asm: &mut SnapshotAssembler, payload: &[u8]) -> Result<Option<Snapshot>, BadSnapshot> {
    let part: Snapshot = schemas::decode(payload)?;
    if part.v != SNAPSHOT_VERSION {
        return Err(BadSnapshot::Version(part.v));
    }
    if part.part.count > 1 && part.part.index >= part.part.count {
        return Err(BadSnapshot::Part { index: part.part.index, count: part.part.count });
    }
    if let Some(p) = part.partition.filter(|p| p.index >= p.count.max(1)) {
        return Err(BadSnapshot::Partition { index: p.index, count: p.count });
    }
    Ok(asm.push(part))
}

/// Whether the `n`th bad message is logged: the first few, then every hundredth, so a bad
/// publisher cannot flood the log.
#[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` needs Rust 1.87; the MSRV is 1.85
pub fn worth_logging(n: u64) -> bool {
    n <= 5 || n % 100 == 0
}

fn skip(state: &Shared, subject: &str, err: BadSnapshot) {
    let n = state.count_bad_message(err.to_string());
    if worth_logging(n) {
        tracing::warn!(error = %err, skipped = n, subject, "skipping a snapshot message");
    }
}

/// Where partition `k`'s predictor publishes (`schemas::partition::snapshot_subject(k, n)` for
/// any `n > 1`; the count is not known until a snapshot says it).
fn partition_subject(k: u16) -> String {
    format!("{PREDICTIONS_CURRENT}.{k}")
}

async fn subscribe_both(
    client: &async_nats::Client,
) -> Result<impl futures::Stream<Item = async_nats::Message>, async_nats::SubscribeError> {
    let whole = client.subscribe(PREDICTIONS_CURRENT).await?;
    let parts = client.subscribe(format!("{PREDICTIONS_CURRENT}.*")).await?;
    Ok(futures::stream::select(whole, parts))
}

/// Subscribes and installs every whole snapshot until shutdown.
pub async fn run(state: Shared, client: async_nats::Client) {
    let mut shutdown = state.shutdown_signal();
    let mut sub = loop {
        match subscribe_both(&client).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, "subscribing to predictions.current[.*] failed; retrying");
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
                    Ok(Some(whole)) => {
                        state.receive(whole, Origin::Live);
                    }
                    Ok(None) => {}
                    Err(e) => skip(&state, &msg.subject, e),
                },
                None => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Reads the retained snapshots once, then again every 2 s until something is installed (by
/// this or by a live message), so a dashboard started before the predictor's stream exists
/// still catches up. What it reads goes through the same keeper as live snapshots, which never
/// lets it replace newer ones, and it fills in a partition whose predictor is gone.
async fn read_retained_until_found(state: Shared, client: async_nats::Client) {
    let mut shutdown = state.shutdown_signal();
    loop {
        match read_retained(&client).await {
            Ok(found) if !found.is_empty() => {
                let (n, servers) = (found.len(), found.iter().map(|s| s.servers.len()).sum::<usize>());
                let installed = found.into_iter().fold(false, |any, s| state.receive(s, Origin::Retained) | any);
                tracing::info!(snapshots = n, servers, installed, "read the retained snapshot");
                return;
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "no retained snapshot yet"),
        }
        if state.latest().is_some() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The newest whole snapshots in the `PREDICTIONS` stream: the one on `predictions.current`,
/// or, when partition 0's on `predictions.current.0` is newer (or the only one), the newest of
/// every partition (their count read from partition 0's). Empty when there are none; a
/// partition with nothing retained is left out (partition 0 with nothing retained: none).
pub async fn read_retained(client: &async_nats::Client) -> anyhow::Result<Vec<Snapshot>> {
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(STREAM_PREDICTIONS).await?;
    let whole = fleetbus::latest_snapshot_on(&stream, PREDICTIONS_CURRENT).await?;
    let first = match fleetbus::latest_snapshot_on(&stream, &partition_subject(0)).await {
        Ok(s) => s,
        // A stream without the partitions' subjects still serves the unpartitioned snapshot.
        Err(e) if whole.is_some() => {
            tracing::debug!(error = %e, "no retained snapshot of partition 0");
            None
        }
        Err(e) => return Err(e),
    };
    let first = match (whole, first) {
        (Some(w), Some(p)) if w.published_ms >= p.published_ms => return Ok(vec![w]),
        (w, None) => return Ok(w.into_iter().collect()),
        (_, Some(p)) => p,
    };
    let count = first.partition.map_or(1, |p| p.count);
    let mut out = vec![first];
    for k in 1..count {
        match fleetbus::latest_snapshot_on(&stream, &partition_subject(k)).await {
            Ok(Some(s)) => out.push(s),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, partition = k, "reading a retained partition snapshot failed"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn decodes_and_assembles_parts() {
        let s = fixture::wire(fixture::snapshot(&fixture::Spec { servers: 9, ..Default::default() }));
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
        s.v = SNAPSHOT_VERSION + 1;
        let err = decode_part(&mut asm, &schemas::encode(&s).unwrap()).unwrap_err();
        assert!(err.to_string().contains("not this dashboard's"), "{err}");
        s.v = SNAPSHOT_VERSION;
        s.part = schemas::PartInfo { index: 5, count: 2 };
        assert!(matches!(decode_part(&mut asm, &schemas::encode(&s).unwrap()), Err(BadSnapshot::Part { .. })));
    }

    #[test]
    fn refuses_partitions_out_of_range() {
        let mut asm = SnapshotAssembler::default();
        let mut s = fixture::snapshot(&fixture::Spec { servers: 2, ..Default::default() });
        s.partition = Some(schemas::partition::PartitionInfo { index: 2, count: 2 });
        assert!(matches!(decode_part(&mut asm, &schemas::encode(&s).unwrap()), Err(BadSnapshot::Partition { index: 2, count: 2 })));
    }

    /// Parts of two partitions interleaved on one assembler come out as two whole snapshots.
    #[test]
    fn assembles_interleaved_partitions() {
        let [a, b]: [Snapshot; 2] = fixture::partitions(&fixture::Spec { servers: 30, ..Default::default() }, 2)
            .into_iter()
            .map(fixture::wire)
            .collect::<Vec<_>>()
            .try_into()
            .unwrap();
        let (pa, pb) = (fixture::split(&a, 2), fixture::split(&b, 2));
        let mut asm = SnapshotAssembler::default();
        let mut whole = Vec::new();
        for p in [&pa[0], &pb[0], &pa[1], &pb[1]] {
            whole.extend(decode_part(&mut asm, &schemas::encode(p).unwrap()).unwrap());
        }
        assert_eq!(whole, [a, b]);
    }

    #[test]
    fn partition_subjects_are_the_publishers() {
        for k in 0..8 {
            assert_eq!(partition_subject(k), schemas::partition::snapshot_subject(k, 8));
        }
    }
}
