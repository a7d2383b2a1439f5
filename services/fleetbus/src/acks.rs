//! JetStream publish acks awaited in order with a bound on how many are outstanding.
//!
//! Why a bound is needed, not just tidy: async-nats (0.51) gives every JetStream publish a
//! permit from a per-context semaphore (5,000 by default, `backpressure_on_inflight` on) and
//! returns it only when the publish's ack future is awaited or dropped; the next publish waits
//! for a permit with no timeout. A publisher that sends 5,000 messages before awaiting any ack
//! (one tick's alert events for a large fleet) therefore waits forever on the 5,001st, at 0 %
//! CPU. This window awaits the oldest ack whenever more than `limit` are outstanding.

use std::collections::VecDeque;

use async_nats::jetstream::context::{PublishAckFuture, PublishError};

/// Outstanding publishes a window holds by default: well under async-nats's 5,000 permits, so
/// several windows and other publishers on one context still get theirs.
pub const DEFAULT_LIMIT: usize = 1024;

/// Publish acks in the order they were sent, at most `limit` of them not yet awaited.
#[derive(Debug)]
pub struct AckWindow {
    pending: VecDeque<PublishAckFuture>,
    limit: usize,
}

impl AckWindow {
    /// A window of at most `limit` outstanding acks (at least 1).
    pub fn new(limit: usize) -> AckWindow {
        AckWindow { pending: VecDeque::new(), limit: limit.max(1) }
    }

    /// Adds a sent publish's ack; awaits the oldest ones while more than `limit` are
    /// outstanding. Errors: the first refused or timed-out ack (those after it stay pending and
    /// are handed to async-nats's acker when the window is dropped).
    pub async fn push(&mut self, ack: PublishAckFuture) -> Result<(), PublishError> {
        self.pending.push_back(ack);
        while self.pending.len() > self.limit {
            if let Some(oldest) = self.pending.pop_front() {
                oldest.await?;
            }
        }
        Ok(())
    }

    /// The same outstanding acks under a new bound (at least 1), awaited lazily as more are
    /// pushed: a publisher can send a few large messages, then many small ones, on one window.
    pub fn with_limit(mut self, limit: usize) -> AckWindow {
        self.limit = limit.max(1);
        self
    }

    /// Publishes not yet acknowledged.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Awaits every outstanding ack, oldest first; the first error.
    pub async fn finish(mut self) -> Result<(), PublishError> {
        while let Some(ack) = self.pending.pop_front() {
            ack.await?;
        }
        Ok(())
    }
}
