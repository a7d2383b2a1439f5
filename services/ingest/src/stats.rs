//! Counters of what ingest did and refused, served on `GET /metrics` through the official
//! `prometheus-client` crate (OpenMetrics text, as every Fleetcast service). Exists so every
//! rejection is counted by reason (the "counted"), and tests and operators can read
//! the counts without parsing logs.
//!
//! Each counter has one label; the table [`COUNTERS`] names them all with their help text, and a
//! test checks that every counter the service adds is in it. A family shows on the page once it
//! has a series (prometheus-client leaves empty families out).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// `(name, label, help)` of every counter, rendered as `fleetcast_ingest_<name>_total{<label>=..}`.
pub const COUNTERS: [(&str, &str, &str); 12] = [
    ("samples", "outcome", "Remote-write samples by what became of them: accepted, stale (the stale marker), duplicate (not newer than the series' last), ignored (a series the mapping does not read)"),
    ("rejected", "reason", "Samples, steps and requests rejected, by reason; each kind is also published on metrics.rejected with its field and rule"),
    ("requests", "status", "Remote-write requests by the HTTP status answered"),
    ("refused", "why", "Remote-write requests refused whole, by why"),
    ("published", "what", "Batches and the records in them published on metrics.batch.<source> and acknowledged by JetStream"),
    ("publish_errors", "kind", "Batches that could not be published"),
    ("query_failures", "reason", "Query API calls that failed, by reason"),
    ("pull_errors", "metric", "Pull rounds whose query of a metric failed, by metric"),
    ("pull_steps_lost", "metric", "Steps of a query API outage older than the repair window, never read, by metric"),
    ("hosts_over_limit", "metric", "Hosts a query returned beyond --max-hosts, by metric"),
    ("backfilled", "what", "History read from the query API for hosts seen for the first time: hosts, and records (one per host and step)"),
    ("steps_closed", "what", "5-minute steps the remote-write aligner closed: steps, and records (one per host that reported in the step)"),
];

type Labels = [(&'static str, String); 1];

/// The counters of one ingest process. Adding is lock-free per series (atomics); a scrape reads
/// them without stopping the service.
#[derive(Debug)]
pub struct Stats {
    registry: Registry,
    families: Vec<(&'static str, &'static str, Family<Labels, Counter>)>,
}

impl Default for Stats {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("fleetcast_ingest");
        let families = COUNTERS
            .iter()
            .map(|&(name, label, help)| {
                let family = Family::<Labels, Counter>::default();
                registry.register(name, help, family.clone());
                (name, label, family)
            })
            .collect();
        Stats { registry, families }
    }
}

impl Stats {
    fn family(&self, name: &str, label: &str) -> Option<&Family<Labels, Counter>> {
        let found = self.families.iter().find(|(n, l, _)| *n == name && *l == label).map(|(_, _, f)| f);
        debug_assert!(found.is_some(), "counter {name}{{{label}}} is not in stats::COUNTERS");
        found
    }

    /// Adds `n` to counter `name{label=value}` (one of [`COUNTERS`]; any other is ignored).
    pub fn add(&self, name: &'static str, label: &'static str, value: &str, n: u64) {
        if let Some(f) = self.family(name, label) {
            f.get_or_create(&[(label, value.to_owned())]).inc_by(n);
        }
    }

    /// The count of `name{label=value}`, 0 when never added.
    pub fn get(&self, name: &str, label: &'static str, value: &str) -> u64 {
        self.family(name, label).and_then(|f| f.get(&[(label, value.to_owned())]).map(|c| c.get())).unwrap_or(0)
    }

    /// The OpenMetrics text exposition (content type [`fleetbus::metrics::CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoding error would leave the page short.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let s = Stats::default();
        s.add("rejected", "reason", "not_finite", 2);
        s.add("rejected", "reason", "not_finite", 1);
        s.add("samples", "outcome", "accepted", 5);
        assert_eq!(s.get("rejected", "reason", "not_finite"), 3);
        assert_eq!(s.get("rejected", "reason", "malformed"), 0);
        let text = s.render();
        assert!(text.contains("fleetcast_ingest_rejected_total{reason=\"not_finite\"} 3"), "{text}");
        assert!(text.contains("# TYPE fleetcast_ingest_samples counter"), "{text}");
        assert!(text.contains("# HELP fleetcast_ingest_rejected Samples, steps and requests rejected"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn every_counter_the_service_adds_is_in_the_table() {
        let src = [
            include_str!("remote_write.rs"),
            include_str!("sink.rs"),
            include_str!("promapi.rs"),
            include_str!("pull/round.rs"),
            include_str!("pull/repair.rs"),
            include_str!("pull/history.rs"),
            include_str!("pull/mod.rs"),
        ]
        .concat();
        let mut seen = 0;
        for call in src.split("stats.add(\"").skip(1) {
            let mut parts = call.split('"');
            let (name, label) = (parts.next().unwrap_or(""), parts.nth(1).unwrap_or(""));
            assert!(
                COUNTERS.iter().any(|(n, l, _)| *n == name && *l == label),
                "stats.add(\"{name}\", \"{label}\", ..) is not in COUNTERS"
            );
            seen += 1;
        }
        assert!(seen >= 10, "found only {seen} stats.add calls");
    }
}
