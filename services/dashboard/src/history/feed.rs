//! The NATS edge for history: an ordered consumer on the `HISTORY` stream replays the
//! retained week of `history.tick` summaries and `alerts.>` events, then follows new ones.
//! Until the predictor creates the stream, it retries quietly.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull::OrderedConfig, consumer::DeliverPolicy};
use futures::StreamExt;
use schemas::history::TickSummary;
use schemas::subjects::{ALERTS_PREFIX, HISTORY_TICK, STREAM_HISTORY};
use schemas::AlertEvent;

use crate::locks::write;
use crate::state::Shared;

/// Files one message from the stream into the store; returns what was wrong with it.
pub fn apply(state: &Shared, subject: &str, payload: &[u8]) -> Result<(), String> {
    if subject == HISTORY_TICK {
        let t: TickSummary = schemas::decode(payload).map_err(|e| format!("{subject}: {e}"))?;
        write(&state.history).push_tick(t)
    } else if subject.starts_with(ALERTS_PREFIX) {
        let e: AlertEvent = schemas::decode(payload).map_err(|e| format!("{subject}: {e}"))?;
        write(&state.history).push_alert(e);
        Ok(())
    } else {
        Ok(())
    }
}

pub async fn run(state: Shared) {
    let Some(client) = state.nats().cloned() else { return };
    let js = jetstream::new(client);
    let mut shutdown = state.shutdown_signal();
    let (mut bad, mut last_seq) = (0u64, 0u64);
    loop {
        match consume(&js, &state, &mut bad, &mut last_seq).await {
            Ok(()) => {}
            Err(e) => tracing::debug!(error = %e, "history stream not readable yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn consume(js: &jetstream::Context, state: &Shared, bad: &mut u64, last_seq: &mut u64) -> anyhow::Result<()> {
    let stream = js.get_stream(STREAM_HISTORY).await?;
    // After a restart of this loop, carry on after the last message filed (no duplicates).
    let deliver_policy = if *last_seq > 0 { DeliverPolicy::ByStartSequence { start_sequence: *last_seq + 1 } } else { DeliverPolicy::All };
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subjects: vec![HISTORY_TICK.to_string(), format!("{ALERTS_PREFIX}.>")],
            deliver_policy,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    tracing::info!("following the HISTORY stream");
    let mut shutdown = state.shutdown_signal();
    loop {
        tokio::select! {
            m = messages.next() => match m {
                Some(Ok(m)) => {
                    if let Ok(info) = m.info() {
                        *last_seq = info.stream_sequence;
                    }
                    if let Err(e) = apply(state, m.subject.as_str(), &m.payload) {
                        *bad += 1;
                        if crate::subscribe::worth_logging(*bad) {
                            tracing::warn!(error = %e, skipped = *bad, "skipping a history message");
                        }
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
            _ = shutdown.changed() => return Ok(()),
        }
    }
}
