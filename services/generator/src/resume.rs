//! Where a restarted generator picks up its simulated clock: after the newest batch its
//! source left in the METRICS stream.
//!
//! Why: the simulated clock runs one 5-minute step per tick (60 times real time at the default
//! 5 s), and the predictor keeps its windows in JetStream. A restart that began a day before
//! the wall clock again sent steps the windows had long passed: every record was refused as
//! too late and no forecast moved until the new clock caught up, about 2 minutes after a
//! 2-minute run and an hour after an hour's (`just up` after a `just up`).

use std::time::Duration;

use async_nats::jetstream::{self, stream::LastRawMessageErrorKind};
use schemas::subjects::STREAM_METRICS;
use schemas::MetricsBatch;
use tracing::{debug, warn};

/// How long each lookup may take: a broker that does not answer (or a user not allowed to
/// read the stream) costs this once per subject at start, then the generator starts fresh.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// The newest `clock_ms` (Unix ms, simulated) of the batches stored on `subjects` (a source's
/// subject, or one per partition), read with JetStream's "last message for subject" get.
/// `None` when the stream has none, or cannot be read (logged); a batch whose header does not
/// decode is skipped with a warning.
pub async fn last_clock(client: &async_nats::Client, subjects: &[String]) -> Option<i64> {
    let stream = jetstream::new(client.clone()).get_stream_no_info(STREAM_METRICS).await.ok()?;
    let mut newest: Option<i64> = None;
    for subject in subjects {
        let message = match tokio::time::timeout(LOOKUP_TIMEOUT, stream.get_last_raw_message_by_subject(subject)).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                debug!(subject, "no earlier batch in {STREAM_METRICS}");
                continue;
            }
            Ok(Err(e)) => {
                warn!(subject, "reading the last batch from {STREAM_METRICS}: {e}; starting afresh");
                continue;
            }
            Err(_) => {
                warn!(subject, "reading the last batch from {STREAM_METRICS}: no answer in {LOOKUP_TIMEOUT:?}; starting afresh");
                continue;
            }
        };
        match MetricsBatch::decode_lenient(&message.payload) {
            Ok(batch) => newest = newest.max(Some(batch.clock_ms)),
            Err(e) => warn!(subject, "the last batch in {STREAM_METRICS} does not decode: {e}"),
        }
    }
    newest
}
