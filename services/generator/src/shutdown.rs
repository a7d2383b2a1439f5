//! A shutdown that many tasks can wait on (Ctrl-C / SIGTERM in the binary, through
//! `fleetbus::process::shutdown_signal`; a test's trigger in tests), so a tick in flight
//! finishes or aborts cleanly instead of being cut.

use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// Fires the shutdown.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

impl Trigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    pub fn new() -> (Trigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Trigger(tx), Shutdown(rx))
    }

    /// A signal that never fires (benchmarks, one-shot tools).
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        drop(tx);
        Shutdown(rx)
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the shutdown fires (never, if its trigger is gone without firing).
    pub async fn wait(&mut self) {
        loop {
            if *self.0.borrow_and_update() {
                return;
            }
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Fires `trigger` on Ctrl-C or SIGTERM (`fleetbus::process::shutdown_signal`, the one every
/// service uses).
pub fn on_signals(trigger: Trigger) {
    tokio::spawn(async move {
        fleetbus::process::shutdown_signal().await;
        trigger.fire();
    });
}
