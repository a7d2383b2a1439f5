//! The notifier's own metrics (served by `fleetbus::metrics` on `--metrics-listen`), all
//! prefixed `fleetcast_notifier_`. Cardinality: a few series per configured Alertmanager and
//! per skip reason; nothing per server.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `alerts_sent_total` | counter | `alertmanager`, `result` (`accepted`, `rejected`, `failed`) | alerts in POSTs, by outcome (`rejected`: a 4xx, not retried; `failed`: unreachable or 5xx, retried) |
//! | `alertmanager_up` | gauge | `alertmanager` | 1 when the last POST was accepted |
//! | `delivery_latency_seconds` | histogram | | stored on the bus -> accepted by every Alertmanager, per event |
//! | `active_alerts` | gauge | | predicted alerts now firing |
//! | `consumer_pending` | gauge | | alert events in the stream not yet delivered to this consumer |
//! | `events_total` | counter | `state` | events applied (`opened`, `updated`, `resolved`) |
//! | `events_skipped_total` | counter | `reason` | bad events acknowledged and skipped |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SentLabels {
    pub alertmanager: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AmLabels {
    pub alertmanager: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Handles to every metric; clones share the same values.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub sent: Family<SentLabels, Counter>,
    pub up: Family<AmLabels, Gauge>,
    pub latency: Histogram,
    pub active: Gauge,
    pub pending: Gauge,
    pub events: Family<StateLabels, Counter>,
    pub skipped: Family<ReasonLabels, Counter>,
}

impl Metrics {
    /// Creates the metrics and registers them in a new registry (prefix `fleetcast_notifier`).
    pub fn new() -> (Metrics, Registry) {
        let mut r = Registry::with_prefix("fleetcast_notifier");
        let m = Metrics {
            sent: Family::default(),
            up: Family::default(),
            // 5 ms .. ~82 s: a local Alertmanager answers in milliseconds, one that was down
            // is caught up after its outage.
            latency: Histogram::new(exponential_buckets(0.005, 2.0, 15)),
            active: Gauge::default(),
            pending: Gauge::default(),
            events: Family::default(),
            skipped: Family::default(),
        };
        r.register("alerts_sent", "Alerts in POSTs to Alertmanager, by outcome", m.sent.clone());
        r.register("alertmanager_up", "1 when the last POST to this Alertmanager was accepted", m.up.clone());
        r.register(
            "delivery_latency_seconds",
            "Seconds from an alert event stored on the bus to every Alertmanager accepting it",
            m.latency.clone(),
        );
        r.register("active_alerts", "Predicted alerts now firing", m.active.clone());
        r.register("consumer_pending", "Alert events not yet delivered to the notifier's consumer", m.pending.clone());
        r.register("events", "Alert events applied, by state", m.events.clone());
        r.register("events_skipped", "Bad alert events acknowledged and skipped, by reason", m.skipped.clone());
        (m, r)
    }

    /// Counts `n` alerts sent to `am` with `result`.
    pub fn count_sent(&self, am: &str, result: &'static str, n: usize) {
        self.sent.get_or_create(&SentLabels { alertmanager: am.to_string(), result }).inc_by(n as u64);
        let up = i64::from(result == "accepted");
        self.up.get_or_create(&AmLabels { alertmanager: am.to_string() }).set(up);
    }
}
