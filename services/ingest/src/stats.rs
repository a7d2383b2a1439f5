//! Counters of what ingest did and refused, served as Prometheus text on `GET /metrics`. Exists
//! so every rejection is counted by reason (the "counted"), and tests and operators can
//! read the counts without parsing logs.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Named counters with one label each (`reason`, `metric`, ...), rendered as
/// `fleetcast_ingest_<name>_total{<label>="<value>"} <count>`.
#[derive(Debug, Default)]
pub struct Stats {
    counters: Mutex<BTreeMap<(&'static str, &'static str, String), u64>>,
}

impl Stats {
    /// Adds `n` to counter `name{label=value}`.
    pub fn add(&self, name: &'static str, label: &'static str, value: &str, n: u64) {
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        *c.entry((name, label, value.to_owned())).or_default() += n;
    }

    /// The count of `name{label=value}`, 0 when never added.
    pub fn get(&self, name: &str, label: &str, value: &str) -> u64 {
        let c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        c.iter().filter(|((n, l, v), _)| *n == name && *l == label && v == value).map(|(_, n)| *n).sum()
    }

    /// Prometheus text exposition 0.0.4.
    pub fn render(&self) -> String {
        let c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let mut last = "";
        for ((name, label, value), n) in c.iter() {
            if *name != last {
                let _ = writeln!(out, "# TYPE fleetcast_ingest_{name}_total counter");
                last = name;
            }
            let value = value.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "fleetcast_ingest_{name}_total{{{label}=\"{value}\"}} {n}");
        }
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
        assert!(text.contains("# TYPE fleetcast_ingest_samples_total counter"), "{text}");
    }
}
