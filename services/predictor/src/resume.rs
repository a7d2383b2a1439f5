//! Restoring a loop's alert book and accuracy when it starts, or takes a partition over: the
//! state saved in KV `state` (key `domain`, or `domain.p<k>`, in pieces: `saved_state.rs`), caught up with the alert events
//! its last holder published after saving it. Exists because a holder publishes a tick's alert
//! events before that tick's state (`publish.rs`): one killed between the two left events its
//! saved book lacks, and a successor that restored the book alone announced those alerts
//! again (issue 14: "no alert opened twice"). The fold is pure ([`AlertBook::fold`]); this is
//! the I/O around it.
//!
//! The events read: `alerts.>` in `HISTORY`, stored since the state's KV entry was written
//! less [`CLOCK_MARGIN`], of this partition's servers ([`schemas::partition::of`]), from the
//! saved tick on ([`wanted`]). A state saved before the tick was recorded has no such filter,
//! so its events are read from the entry's write time exactly.
//!
//! [`AlertBook::fold`]: crate::domain::alerts::AlertBook::fold

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use schemas::partition::PartitionInfo;
use schemas::subjects::{ALERTS_PREFIX, STREAM_HISTORY};
use schemas::AlertEvent;

use crate::domain::{records, Domain};
use crate::registry::Registry;
use crate::saved_state;
use crate::tick::Engine;

/// How far before the state's write time the events are read: on a cluster the `state`
/// bucket's and `HISTORY`'s stream leaders may be different nodes whose clocks differ. The
/// tick filter drops what the margin lets in from earlier ticks.
pub const CLOCK_MARGIN: Duration = Duration::from_secs(60);

/// How long reading the events may take before the state is restored without them.
const READ_LIMIT: Duration = Duration::from_secs(30);

/// Whether `e` belongs in the book of `partition` (`None`: the whole fleet) saved after the
/// tick at `from_tick` (Unix ms; `None`: unknown, every event read belongs): its server is in
/// the partition and its tick is not before the saved one. Events of the saved tick itself
/// are kept: two ticks can share a tick time, and the fold skips what the book already holds.
pub fn wanted(e: &AlertEvent, partition: Option<PartitionInfo>, from_tick: Option<i64>) -> bool {
    partition.is_none_or(|p| schemas::partition::of(&e.alert.server, p.count) == p.index) && from_tick.is_none_or(|t| e.tick_ms >= t)
}

/// Restores `engine`'s domain state for `partition` from `state`, caught up with the alert
/// events published after it. A missing or unreadable state is logged and the loop starts
/// afresh. Events that cannot be read (within [`READ_LIMIT`]) are logged and the state is
/// restored without them, as before the catch-up existed: their alerts may be announced again,
/// which is better than a predictor that cannot open its loop while `HISTORY` is unreadable.
pub(crate) async fn restore(js: &jetstream::Context, state: &kv::Store, partition: Option<PartitionInfo>, engine: &mut Engine) {
    let (key, part) = (crate::streams::state_key(partition), partition.map(|p| p.index));
    let (saved, created) = match read_saved(state, &key).await {
        Ok(Some(found)) => found,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), ?part, "reading saved state");
            return;
        }
    };
    let from_tick = match Domain::saved_tick(&saved) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, ?part, "ignoring unreadable saved state");
            return;
        }
    };
    let since = if from_tick.is_some() { created - CLOCK_MARGIN } else { created };
    let events = match tokio::time::timeout(READ_LIMIT, alert_events(js, since, partition, from_tick)).await {
        Ok(Ok(events)) => events,
        Ok(Err(e)) => {
            tracing::warn!(error = %format!("{e:#}"), ?part, "reading the alert events after the saved state failed; restoring it without them");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!(limit = ?READ_LIMIT, ?part, "reading the alert events after the saved state took too long; restoring it without them");
            Vec::new()
        }
    };
    let caught_up = if events.is_empty() { Ok((saved, 0)) } else { Domain::caught_up(&saved, &events) };
    let restored = caught_up.and_then(|(bytes, folded)| engine.restore_domain(&bytes).map(|()| (bytes.len(), folded)));
    match restored {
        Ok((bytes, folded)) => tracing::info!(bytes, ?part, ?from_tick, events = events.len(), folded, "alert book and accuracy restored"),
        Err(e) => tracing::warn!(error = %e, ?part, "ignoring unreadable saved state"),
    }
}

/// Gives the servers `reg` rebuilt their method records saved under `partition`'s state key
/// (every slice, `domain/records.rs`), so each publishes its proven method from its first
/// tick. A slice that is missing is skipped; one that cannot be read or decoded is logged and
/// skipped: its servers start with no record, as before records were saved.
pub(crate) async fn restore_records(
    state: &kv::Store,
    partition: Option<PartitionInfo>,
    reg: &Registry,
    engine: &mut Engine,
    wall_ms: i64,
) {
    let (key, part) = (crate::streams::state_key(partition), partition.map(|p| p.index));
    let mut slices = Vec::new();
    for slice in 0..records::SLICES {
        let key = crate::streams::records_key(&key, slice);
        match read_saved(state, &key).await.map(|found| found.map(|(bytes, _)| schemas::decode::<records::Slice>(&bytes))) {
            Ok(None) => {}
            Ok(Some(Ok(s))) => slices.push(s),
            Ok(Some(Err(e))) => tracing::warn!(error = %e, key, "ignoring an undecodable slice of method records"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), key, "reading a slice of method records"),
        }
    }
    if slices.is_empty() {
        return;
    }
    let read = slices.len();
    let (saved, skipped) = records::merge(slices);
    let restored = engine.restore_records(reg, &saved, wall_ms.div_euclid(schemas::STEP_MS));
    tracing::info!(slices = read, saved = saved.len(), restored, skipped, ?part, "method records restored");
}

/// Times a read of the saved state overtaken by newer saves is tried ([`saved_state::join`]).
const READ_TRIES: usize = 3;

/// The state saved at `key` joined from its pieces ([`saved_state`]), and when its head was
/// written; `None` when nothing is saved. Errors: the bucket unreadable, a piece missing or
/// unreadable, or [`READ_TRIES`] reads each overtaken by newer saves.
pub async fn read_saved(state: &kv::Store, key: &str) -> anyhow::Result<Option<(Vec<u8>, async_nats::datetime::DateTime)>> {
    for _ in 0..READ_TRIES {
        let entry = match state.entry(key).await.context("reading the saved state's head")? {
            Some(e) if e.operation == kv::Operation::Put => e,
            _ => return Ok(None),
        };
        let Some(head) = saved_state::head(&entry.value) else {
            return Ok(Some((entry.value.to_vec(), entry.created)));
        };
        let mut pieces = Vec::with_capacity(head.count as usize);
        for i in 1..head.count {
            pieces.push(state.get(saved_state::piece_key(key, head.gen, i)).await.context("reading a piece of the saved state")?);
        }
        match saved_state::join(head, pieces) {
            Ok(bytes) => return Ok(Some((bytes, entry.created))),
            Err(e @ saved_state::JoinError::Overtaken { .. }) => tracing::debug!(error = %e, "reading the saved state again"),
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("the saved state was overtaken by newer saves in each of {READ_TRIES} reads")
}

/// The alert events in `HISTORY` stored at or after `since` that are [`wanted`], in stream
/// order. Reads what the stream held when asked (events published meanwhile are not this
/// partition's: its loop is the one opening); a message that does not decode is skipped.
async fn alert_events(
    js: &jetstream::Context,
    since: async_nats::datetime::DateTime,
    partition: Option<PartitionInfo>,
    from_tick: Option<i64>,
) -> anyhow::Result<Vec<AlertEvent>> {
    let stream = js.get_stream(STREAM_HISTORY).await.context("stream HISTORY")?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: format!("{ALERTS_PREFIX}.>"),
            deliver_policy: DeliverPolicy::ByStartTime { start_time: since },
            ..Default::default()
        })
        .await
        .context("an ordered consumer on HISTORY")?;
    let pending = consumer.cached_info().num_pending;
    let mut events = Vec::new();
    if pending == 0 {
        return Ok(events);
    }
    let mut messages = consumer.messages().await.context("reading HISTORY")?;
    let mut unreadable = 0u64;
    for _ in 0..pending {
        let Some(m) = messages.next().await else { break };
        let m = m.context("reading HISTORY")?;
        match schemas::decode::<AlertEvent>(&m.payload) {
            Ok(e) if wanted(&e, partition, from_tick) => events.push(e),
            Ok(_) => {}
            Err(_) => unreadable += 1,
        }
        if m.info().is_ok_and(|i| i.pending == 0) {
            break;
        }
    }
    if unreadable > 0 {
        tracing::warn!(unreadable, "skipped alert events that do not decode");
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{Alert, AlertBasis, AlertState, Level, Profile, Target};

    fn event(server: &str, tick_ms: i64) -> AlertEvent {
        let alert = Alert {
            id: format!("{server}.disk"),
            server: server.into(),
            profile: Profile::Generic,
            target: Target::Disk,
            severity: Level::Warning,
            basis: AlertBasis::P50,
            threshold: 85.0,
            predicted: 90.0,
            current: None,
            steps_ahead: 3,
            minutes_ahead: 15,
            state: AlertState::Opened,
            opened_ms: tick_ms,
            updated_ms: tick_ms,
        };
        AlertEvent { v: schemas::SCHEMA_VERSION, tick_ms, alert }
    }

    #[test]
    fn only_the_partitions_servers_from_the_saved_tick_on() {
        let names = testkit::server_names(40, 4);
        let p = |index| Some(PartitionInfo { index, count: 4 });
        for n in &names {
            let mine = schemas::partition::of(n, 4);
            assert!(wanted(&event(n, 100), p(mine), Some(100)), "{n}: its partition, the saved tick");
            assert!(wanted(&event(n, 200), p(mine), Some(100)), "{n}: a later tick");
            assert!(!wanted(&event(n, 99), p(mine), Some(100)), "{n}: an earlier tick");
            assert!(!wanted(&event(n, 200), p((mine + 1) % 4), Some(100)), "{n}: another partition's");
            assert!(wanted(&event(n, 1), None, None), "{n}: the whole fleet, tick unknown");
        }
    }
}
