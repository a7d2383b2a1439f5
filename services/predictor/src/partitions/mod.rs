//! The partition supervisor of a predictor started with `--partitions N > 1`. Exists so a fleet
//! can be spread over several predictors, and survive one of them dying, on NATS's own
//! primitives rather than anything of ours:
//!
//! - **Membership**: every `heartbeat` each predictor puts its name into KV `predictors`,
//!   whose entries expire after `member_ttl`; the live members are the bucket's keys.
//! - **Assignment**: each predictor computes, from the same member list, the partitions it
//!   should hold ([`assign::preferred`], rendezvous hashing), starts a loop (`consume.rs`) for
//!   each it does not run yet, and stops (finishing and acking its current messages) each it
//!   should no longer hold, then unpins that partition's consumer so the new holder gets it at
//!   once.
//! - **Exclusivity**: a partition's consumer (`predictor-p<k>`) uses JetStream's pinned-client
//!   priority policy: only one predictor's pull requests are served at a time, even while two
//!   disagree for a moment about the member list. A dead holder's pin lapses `member_ttl` after
//!   its last pull, when its heartbeat has expired too.
//! - **State**: a loop rebuilds its partition's windows from KV `windows` and its alert book and
//!   accuracy from KV `state` key `domain.p<k>`, caught up with the alert events the last holder
//!   published after saving them (`resume.rs`), and continues the partition's snapshot numbers
//!   from `predictions.current.<k>`, so a takeover continues where the last holder stored (read
//!   again at its first tick: a stopping holder's last tick can land after the new one opened).

pub mod assign;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::kv;
use futures::TryStreamExt;
use schemas::partition::PartitionInfo;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::run::{open_loop, Base};

/// KV bucket of the live partitioned predictors: key = member name, value = Unix ms of its
/// last heartbeat; entries expire after `member_ttl`.
pub const BUCKET_MEMBERS: &str = "predictors";

/// How long a loop being handed over may take to finish its current messages.
const HANDOVER_GRACE: Duration = Duration::from_secs(10);

struct Held {
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Runs until `shutdown`, then stops every loop (each finishes and acks its messages), leaves
/// the member list and unpins the consumers it held, so the others take over at once.
pub(crate) async fn supervise(base: Base, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let config = &base.config;
    let count = config.partitions;
    let me = config.instance_name();
    let members_kv = members_bucket(&base).await?;
    // The heartbeat beats on its own, so opening a partition (seconds on a large one, or on a
    // cluster still electing leaders) never makes the others think this predictor is gone.
    members_kv.put(&me, crate::run::wall_ms().to_string().into()).await.context("joining the member list")?;
    let heartbeat = AbortOnDrop(tokio::spawn(beat(members_kv.clone(), me.clone(), config.heartbeat)));
    let mut held: BTreeMap<u16, Held> = BTreeMap::new();
    let mut every = tokio::time::interval(config.heartbeat);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => break,
        }
        let members = match live_members(&members_kv, &me).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "reading the member list failed");
                continue;
            }
        };
        let want = assign::preferred(&me, &members, count);
        // Loops that ended on their own (an error) are started again below.
        let ended: Vec<u16> = held.iter().filter(|(_, h)| h.task.is_finished()).map(|(p, _)| *p).collect();
        for p in ended {
            if let Some(h) = held.remove(&p) {
                if let Ok(Err(e)) = h.task.await {
                    tracing::warn!(partition = p, error = %format!("{e:#}"), "partition loop ended; starting it again");
                }
            }
        }
        let give_up: Vec<u16> = held.keys().copied().filter(|p| !want.contains(p)).collect();
        for p in give_up {
            if let Some(h) = held.remove(&p) {
                tracing::info!(partition = p, members = members.len(), "handing the partition over");
                release(&base, p, h).await;
            }
        }
        let take: Vec<u16> = want.iter().copied().filter(|p| !held.contains_key(p)).collect();
        for p in take {
            let partition = PartitionInfo { index: p, count };
            let (stop, stop_rx) = watch::channel(false);
            match open_loop(&base, Some(partition), None, stop_rx).await {
                Ok((mut lp, messages)) => {
                    tracing::info!(partition = p, servers = lp.reg.len(), members = members.len(), "holding the partition");
                    let task = tokio::spawn(async move { lp.run(messages).await });
                    held.insert(p, Held { stop, task });
                }
                Err(e) => tracing::warn!(partition = p, error = %format!("{e:#}"), "taking the partition failed; trying again"),
            }
        }
        base.stats.held(&held.keys().copied().collect::<Vec<_>>());
    }
    tracing::info!(partitions = held.len(), "shutting down: handing every partition over");
    drop(heartbeat);
    let _ = members_kv.delete(&me).await;
    for (p, h) in std::mem::take(&mut held) {
        release(&base, p, h).await;
    }
    Ok(())
}

/// Aborts the task when dropped: the heartbeat must stop with the supervisor, even when the
/// supervisor itself is dropped mid-await (a predictor aborted in-process).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Puts `me` into the member list every `every`. A failed put is logged: without heartbeats
/// the others take this predictor's partitions, and the pins keep two from consuming one.
async fn beat(kv: kv::Store, me: String, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = kv.put(&me, crate::run::wall_ms().to_string().into()).await {
            tracing::warn!(error = %e, "renewing membership failed");
        }
    }
}

/// Stops a partition's loop (it finishes, stores and acks its current messages) and unpins
/// its consumer, so the predictor that should hold it is served at once.
async fn release(base: &Base, p: u16, h: Held) {
    let _ = h.stop.send(true);
    let mut task = h.task;
    match tokio::time::timeout(HANDOVER_GRACE, &mut task).await {
        Ok(Ok(Err(e))) => tracing::warn!(partition = p, error = %format!("{e:#}"), "partition loop ended with an error"),
        Ok(_) => {}
        Err(_) => {
            tracing::warn!(partition = p, "partition loop did not stop in time; dropping it (unacked messages are redelivered)");
            task.abort();
        }
    }
    let name = crate::streams::partition_consumer_name(&base.config, PartitionInfo { index: p, count: base.config.partitions });
    if let Err(e) = base.streams.metrics.unpin_consumer(&name, crate::streams::PRIORITY_GROUP).await {
        tracing::debug!(partition = p, error = %e, "unpinning (the pin lapses on its own)");
    }
}

async fn members_bucket(base: &Base) -> anyhow::Result<kv::Store> {
    if let Ok(kv) = base.js.get_key_value(BUCKET_MEMBERS).await {
        return Ok(kv);
    }
    base.js
        .create_key_value(kv::Config {
            bucket: BUCKET_MEMBERS.to_string(),
            description: "Fleetcast: live partitioned predictors (heartbeats)".to_string(),
            history: 1,
            max_age: base.config.member_ttl,
            storage: async_nats::jetstream::stream::StorageType::Memory,
            num_replicas: usize::from(base.config.replicas),
            ..Default::default()
        })
        .await
        .context("creating KV bucket predictors")
}

/// The live members, sorted, always including `me` (just renewed).
async fn live_members(kv: &kv::Store, me: &str) -> anyhow::Result<Vec<String>> {
    let mut members: Vec<String> = kv.keys().await.context("listing members")?.try_collect().await.context("listing members")?;
    if !members.iter().any(|m| m == me) {
        members.push(me.to_string());
    }
    members.sort();
    Ok(members)
}
