//! The generator's own metrics (served by `fleetbus::metrics` on `--metrics-listen`), all
//! prefixed `fleetcast_generator_`; nothing per server.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `ticks_total` | counter | simulated steps done (published or skipped) |
//! | `batches_published_total` | counter | messages stored in METRICS (a split tick counts each part) |
//! | `records_published_total` | counter | records in those messages |
//! | `publish_errors_total` | counter | ticks that could not be published and were skipped |

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// Handles to every metric; clones share the same values. `Default` gives unregistered
/// counters (a run without an endpoint).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub ticks: Counter,
    pub batches: Counter,
    pub records: Counter,
    pub publish_errors: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them in a new registry (prefix `fleetcast_generator`).
    pub fn new() -> (Metrics, Registry) {
        let mut r = Registry::with_prefix("fleetcast_generator");
        let m = Metrics::default();
        r.register("ticks", "Simulated steps done (published or skipped)", m.ticks.clone());
        r.register("batches_published", "Messages stored in the METRICS stream (each part of a split tick)", m.batches.clone());
        r.register("records_published", "Records in the messages stored", m.records.clone());
        r.register("publish_errors", "Ticks that could not be published and were skipped", m.publish_errors.clone());
        (m, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_counters() {
        let (m, r) = Metrics::new();
        m.ticks.inc();
        m.batches.inc_by(2);
        m.records.inc_by(100);
        m.publish_errors.inc();
        let page = fleetbus::metrics::render(&r).expect("renders");
        for line in [
            "fleetcast_generator_ticks_total 1",
            "fleetcast_generator_batches_published_total 2",
            "fleetcast_generator_records_published_total 100",
            "fleetcast_generator_publish_errors_total 1",
        ] {
            assert!(page.contains(line), "missing {line:?} in:\n{page}");
        }
    }
}
