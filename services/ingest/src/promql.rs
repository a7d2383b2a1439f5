//! The mapping of `mapping` as PromQL, one expression per Fleetcast metric: what the pull path
//! asks a Prometheus-compatible API, and what `deploy/prometheus/recording_rules.yml` records as
//! `fleetcast:<metric>` (that file is generated from here and a test keeps them equal).
//! Exists so the three forms of the mapping (Rust, PromQL, recording rules) cannot drift.
//!
//! Every expression is evaluated at a step's end `T` over `[5m]`, so it is the step's mean
//! (gauges: `avg_over_time`) or rate (counters: `rate`), aggregated `by (<host label>)`.

use schemas::Metric;

/// Network devices left out, as [`crate::mapping::is_virtual_device`].
const VIRTUAL_DEVICES: &str = "lo|veth.*|docker.*|br-.*|virbr.*|cni.*|flannel.*|cali.*";

/// The raw node_exporter expression for `metric`, grouped by label `by`, with `sel` (e.g.
/// `instance="h:9100"`, or empty) added to every selector. `None` where node_exporter has no
/// source (`front_close_wait`: only the textfile collector's `fleetcast_close_wait{side}`).
pub fn raw_expr(metric: Metric, by: &str, sel: &str) -> Option<String> {
    let s = |m: &str| match (m.is_empty(), sel.is_empty()) {
        (_, true) => m.to_owned(),
        (true, false) => sel.to_owned(),
        (false, false) => format!("{m},{sel}"),
    };
    let ncpu = format!("count by ({by})(node_cpu_seconds_total{{{}}})", s("mode=\"idle\""));
    // Shares of the CPU time accounted (see `mapping::reduce`): robust to windows the
    // samples only partly cover, where `rate()` understates every mode alike.
    let cpu_time = format!("sum by ({by})(rate(node_cpu_seconds_total{{{}}}[5m]))", s(""));
    let cpu =
        |modes: &str| format!("100 * sum by ({by})(rate(node_cpu_seconds_total{{{}}}[5m])) / {cpu_time}", s(&format!("mode=~\"{modes}\"")));
    let avg = |name: &str, m: &str| format!("sum by ({by})(avg_over_time({name}{{{}}}[5m]))", s(m));
    let used = |free: &str, total: &str, m: &str| format!("100 * (1 - {} / ({} > 0))", avg(free, m), avg(total, m));
    let net = |dir: &str| {
        let m = format!("device!~\"{VIRTUAL_DEVICES}\"");
        format!("sum by ({by})(rate(node_network_{dir}_bytes_total{{{}}}[5m])) / 1e6", s(&m))
    };
    Some(match metric {
        Metric::CpuUser => cpu("user|nice"),
        Metric::CpuSys => cpu("system|irq|softirq"),
        Metric::CpuIowait => cpu("iowait"),
        Metric::CpuIdle => cpu("idle"),
        Metric::JavaCpu => format!(
            "100 * sum by ({by})(rate(namedprocess_namegroup_cpu_seconds_total{{{}}}[5m])) / {ncpu}",
            s("groupname=\"java\"")
        ),
        Metric::MemUsed => used("node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes", ""),
        Metric::SwapUsed => used("node_memory_SwapFree_bytes", "node_memory_SwapTotal_bytes", ""),
        Metric::DiskUsage => used("node_filesystem_avail_bytes", "node_filesystem_size_bytes", "mountpoint=\"/\""),
        Metric::NetIn => net("receive"),
        Metric::NetOut => net("transmit"),
        Metric::LoadAverage => format!("max by ({by})(avg_over_time(node_load1{{{}}}[5m]))", s("")),
        Metric::UptimeDays => format!("max by ({by})((time() - node_boot_time_seconds{{{}}}) / 86400)", s("")),
        Metric::BackCloseWait => format!(
            "max by ({by})(avg_over_time(fleetcast_close_wait{{{}}}[5m])) or max by ({by})(avg_over_time(node_tcp_connection_states{{{}}}[5m]))",
            s("side=\"back\""),
            s("state=\"close_wait\"")
        ),
        Metric::FrontCloseWait => format!("max by ({by})(avg_over_time(fleetcast_close_wait{{{}}}[5m]))", s("side=\"front\"")),
    })
}

/// What the pull path queries: the recorded `fleetcast:<metric>` where a team runs the rules,
/// else the raw expression.
pub fn pull_expr(metric: Metric, by: &str, sel: &str) -> String {
    let recorded = format!("max by ({by})(fleetcast:{}{{{sel}}})", metric.name());
    match raw_expr(metric, by, sel) {
        Some(raw) => format!("{recorded} or ({raw})"),
        None => recorded,
    }
}

/// `deploy/prometheus/recording_rules.yml`, grouped by `instance`, evaluated every minute.
pub fn recording_rules_yaml() -> String {
    let mut out = String::from(
        "# Generated from services/ingest/src/promql.rs (a test keeps them equal): the node_exporter ->\n\
         # Fleetcast mapping as recording rules, for teams that remote-write only `fleetcast:*` series\n\
         # (write_relabel_configs: keep `fleetcast:.*`). `promtool check rules` this file after editing.\n\
         groups:\n  - name: fleetcast\n    interval: 1m\n    rules:\n",
    );
    for m in Metric::ALL {
        if let Some(expr) = raw_expr(m, "instance", "") {
            out.push_str(&format!("      - record: fleetcast:{}\n        expr: '{}'\n", m.name(), expr.replace('\'', "''")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_merged() {
        let e = raw_expr(Metric::DiskUsage, "instance", "instance=\"h:9100\"").unwrap();
        assert!(e.contains("node_filesystem_avail_bytes{mountpoint=\"/\",instance=\"h:9100\"}"), "{e}");
        let load = raw_expr(Metric::LoadAverage, "host", "").unwrap();
        assert_eq!(load, "max by (host)(avg_over_time(node_load1{}[5m]))");
        assert!(pull_expr(Metric::MemUsed, "instance", "").starts_with("max by (instance)(fleetcast:mem_used_pct{}) or ("));
    }

    #[test]
    fn the_shipped_recording_rules_are_generated_from_here() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/prometheus/recording_rules.yml");
        let shipped = std::fs::read_to_string(path).unwrap_or_default();
        if shipped != recording_rules_yaml() {
            let _ = std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/recording_rules.yml.new"), recording_rules_yaml());
            panic!("{path} differs from promql::recording_rules_yaml(); the generated text is in target/recording_rules.yml.new");
        }
    }
}
