//! NATS subjects, streams and buckets, named once.

/// Metric batches: `metrics.batch.<source>`; the generator's source is `generator`.
pub const METRICS_BATCH_PREFIX: &str = "metrics.batch";
/// Wildcard that consumes every source.
pub const METRICS_BATCH_ALL: &str = "metrics.batch.>";
/// Rejected records, one message per record, with the reason.
pub const METRICS_REJECTED: &str = "metrics.rejected";
/// The forecast snapshot, one (or several parts of one) per tick.
pub const PREDICTIONS_CURRENT: &str = "predictions.current";
/// Alert lifecycle events: `alerts.<state>.<server>` (state: opened, updated, resolved).
pub const ALERTS_PREFIX: &str = "alerts";
/// Compact per-tick summaries for the historical views.
pub const HISTORY_TICK: &str = "history.tick";
/// Generator control service (async-nats `service` API): set and read the scenario.
pub const CONTROL_SCENARIO_SET: &str = "control.generator.scenario.set";
pub const CONTROL_SCENARIO_STATUS: &str = "control.generator.scenario.status";

/// JetStream stream that holds metric batches until the predictor has stored them.
pub const STREAM_METRICS: &str = "METRICS";
/// JetStream stream that keeps the latest snapshot for late subscribers.
pub const STREAM_PREDICTIONS: &str = "PREDICTIONS";
/// JetStream stream of history summaries and alert events (7 days).
pub const STREAM_HISTORY: &str = "HISTORY";
/// KV bucket of per-server windows (predictor-owned).
pub const BUCKET_WINDOWS: &str = "windows";
/// KV bucket of per-server forecasts, for clients that want one server.
pub const BUCKET_FORECASTS: &str = "forecasts";

/// Header on each part of a metrics batch: `<part>/<parts>`, 1-based (`3/8`). The part that
/// reads `n/n` ends the source's tick, so the predictor need not wait to see whether more
/// parts follow. Optional: without it the predictor waits its `coalesce` time instead.
pub const PART_HEADER: &str = "Fleetcast-Part";

/// The value of [`PART_HEADER`] for part `index` (0-based) of `count`.
pub fn part_header(index: usize, count: usize) -> String {
    format!("{}/{}", index + 1, count)
}

/// Whether a [`PART_HEADER`] value marks the last part of its tick (`n/n`, n >= 1).
pub fn is_last_part(value: &str) -> bool {
    let Some((part, parts)) = value.split_once('/') else { return false };
    match (part.trim().parse::<u32>(), parts.trim().parse::<u32>()) {
        (Ok(p), Ok(n)) => n >= 1 && p == n,
        _ => false,
    }
}

/// The subject a source publishes its batches on.
pub fn metrics_batch(source: &str) -> String {
    format!("{METRICS_BATCH_PREFIX}.{source}")
}

/// The subject of one alert event.
pub fn alert_event(state: crate::AlertState, server: &str) -> String {
    format!("{ALERTS_PREFIX}.{}.{server}", state.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_header_round_trip() {
        assert_eq!(part_header(0, 3), "1/3");
        assert!(!is_last_part(&part_header(1, 3)));
        assert!(is_last_part(&part_header(2, 3)));
        assert!(is_last_part("1/1"));
        for bad in ["", "3", "0/0", "a/b", "4/3x", "/"] {
            assert!(!is_last_part(bad), "{bad:?}");
        }
    }
}
