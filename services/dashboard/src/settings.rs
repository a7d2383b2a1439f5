//! Operator inputs that outlive the process: the cost-avoidance assumptions, kept in the
//! JetStream KV bucket `dashboard_settings` under the key `cost` (MessagePack with named
//! fields, like every Fleetcast message: `nats kv get dashboard_settings cost --raw | fcmsg decode`).
//!
//! `run` opens the bucket (creating it on first use) once the NATS link is up, loads the saved
//! assumptions, then writes every change the operator makes; the newest change always wins
//! and one that could not be written is retried. The dashboard serves meanwhile: until the
//! load (and with `--demo-fixture`, or where the broker refuses the bucket) the assumptions
//! live in memory only, starting from the original's defaults. A change made here before
//! the load is never overwritten by it.

use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use tokio::sync::watch;

use crate::cost::CostInputs;
use crate::locks::lock;

/// The dashboard's own KV bucket.
pub const BUCKET: &str = "dashboard_settings";
/// Key of the cost-avoidance assumptions in [`BUCKET`].
pub const COST_KEY: &str = "cost";
/// Pause before another try to write a change, and the first before another try to open the
/// bucket; those pauses double up to [`MAX_OPEN_RETRY`] (a broker that refuses the bucket to
/// this user logs a permissions violation at each try).
const RETRY: Duration = Duration::from_secs(2);
const MAX_OPEN_RETRY: Duration = Duration::from_secs(300);
/// How long a change made just before shutdown may take to reach the bucket.
const FINAL_WRITE: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Cost {
    inputs: CostInputs,
    /// The operator changed the assumptions in this process (a late load keeps them).
    changed: bool,
}

/// The operator's settings in memory, and the changes still to be written.
#[derive(Debug)]
pub struct Settings {
    cost: Mutex<Cost>,
    /// The newest change, for the writer (`run`).
    changes: watch::Sender<Option<CostInputs>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { cost: Mutex::new(Cost { inputs: CostInputs::default(), changed: false }), changes: watch::channel(None).0 }
    }
}

impl Settings {
    /// The current cost-avoidance assumptions.
    pub fn cost(&self) -> CostInputs {
        lock(&self.cost).inputs
    }

    /// Makes `inputs` the assumptions; true when they differ from the current ones (then
    /// they are queued for the bucket).
    pub fn set_cost(&self, inputs: CostInputs) -> bool {
        let mut c = lock(&self.cost);
        if c.inputs == inputs {
            return false;
        }
        c.inputs = inputs;
        c.changed = true;
        // Under the lock, so the writer sees changes in the order memory took them.
        self.changes.send_replace(Some(inputs));
        true
    }

    /// Installs assumptions read from the bucket, unless the operator changed them here
    /// first; true when installed.
    fn load_cost(&self, inputs: CostInputs) -> bool {
        let mut c = lock(&self.cost);
        if c.changed {
            return false;
        }
        c.inputs = inputs;
        true
    }

    /// Opens the bucket (retrying until it can), loads the saved assumptions, then writes each
    /// change until `shutdown`, after one last try at a change still unwritten.
    pub async fn run(&self, client: async_nats::Client, mut shutdown: watch::Receiver<bool>) {
        let js = jetstream::new(client.clone());
        let mut changes = self.changes.subscribe();
        let mut warned = false;
        let mut pause = RETRY;
        let store = loop {
            // Tries only count once the link is up (it comes up in the background).
            while client.connection_state() != async_nats::connection::State::Connected {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stopped(&mut shutdown) => return,
                }
            }
            match self.open_and_load(&js).await {
                Ok(store) => break store,
                Err(e) if !warned => {
                    tracing::warn!(bucket = BUCKET, error = %e, "cannot read the saved settings yet; the cost assumptions live in memory until it works (retrying)");
                    warned = true;
                }
                Err(e) => tracing::debug!(bucket = BUCKET, error = %e, "settings bucket still unavailable"),
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stopped(&mut shutdown) => return,
            }
            pause = (pause * 2).min(MAX_OPEN_RETRY);
        };
        let mut pending = *changes.borrow_and_update();
        loop {
            if let Some(inputs) = pending {
                match put(&store, &inputs).await {
                    Ok(()) => {
                        tracing::info!(bucket = BUCKET, key = COST_KEY, "cost assumptions saved");
                        pending = None;
                    }
                    Err(e) => tracing::warn!(bucket = BUCKET, key = COST_KEY, error = %e, "saving the cost assumptions failed (retrying)"),
                }
            }
            let retrying = pending.is_some();
            let wait = async move {
                if retrying {
                    tokio::time::sleep(RETRY).await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                _ = wait => {}
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    pending = *changes.borrow_and_update();
                }
                _ = stopped(&mut shutdown) => {
                    let last = if changes.has_changed().unwrap_or(false) { *changes.borrow_and_update() } else { pending };
                    if let Some(inputs) = last {
                        match tokio::time::timeout(FINAL_WRITE, put(&store, &inputs)).await {
                            Ok(Ok(())) => tracing::info!(bucket = BUCKET, key = COST_KEY, "cost assumptions saved"),
                            _ => tracing::warn!(bucket = BUCKET, key = COST_KEY, "the last change of the cost assumptions was not saved"),
                        }
                    }
                    return;
                }
            }
        }
    }

    async fn open_and_load(&self, js: &jetstream::Context) -> anyhow::Result<kv::Store> {
        let store = open(js).await?;
        match store.get(COST_KEY).await? {
            None => tracing::info!(bucket = BUCKET, key = COST_KEY, "no saved cost assumptions: the defaults apply"),
            Some(bytes) => match schemas::decode::<CostInputs>(&bytes) {
                Ok(inputs) if inputs.is_valid() => {
                    if self.load_cost(inputs) {
                        tracing::info!(bucket = BUCKET, key = COST_KEY, "saved cost assumptions loaded");
                    }
                }
                Ok(inputs) => tracing::warn!(bucket = BUCKET, key = COST_KEY, ?inputs, "ignoring saved cost assumptions out of range"),
                Err(e) => tracing::warn!(bucket = BUCKET, key = COST_KEY, error = %e, "ignoring unreadable saved cost assumptions"),
            },
        }
        Ok(store)
    }
}

/// Completes once `shutdown` says stop (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// The bucket, created on first use (one value per key, no expiry).
async fn open(js: &jetstream::Context) -> anyhow::Result<kv::Store> {
    match js.get_key_value(BUCKET).await {
        Ok(store) => Ok(store),
        Err(e) if e.kind() == jetstream::context::KeyValueErrorKind::GetBucket => {
            tracing::debug!(bucket = BUCKET, error = %e, "creating the settings bucket");
            let config = kv::Config {
                bucket: BUCKET.into(),
                description: "Fleetcast dashboard: operator settings (cost-avoidance assumptions)".into(),
                history: 1,
                ..Default::default()
            };
            Ok(js.create_key_value(config).await?)
        }
        Err(e) => Err(e.into()),
    }
}

async fn put(store: &kv::Store, inputs: &CostInputs) -> anyhow::Result<()> {
    let bytes = schemas::encode(inputs)?;
    store.put(COST_KEY, bytes.into()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_here_wins_over_a_late_load() {
        let s = Settings::default();
        let saved = CostInputs { cost_per_hour: 1.0, ..Default::default() };
        assert!(s.load_cost(saved), "nothing changed yet: the saved value applies");
        assert_eq!(s.cost(), saved);
        assert!(!s.set_cost(saved), "same value: nothing to write");
        assert_eq!(*s.changes.borrow(), None);
        let mine = CostInputs { cost_per_hour: 2.0, ..Default::default() };
        assert!(s.set_cost(mine));
        assert_eq!(*s.changes.borrow(), Some(mine), "queued for the bucket");
        assert!(!s.load_cost(saved));
        assert_eq!(s.cost(), mine);
    }
}
