//! node_exporter series -> the 14 Fleetcast metrics, written once. Exists so remote-write
//! (raw samples, aligned in `align`) and the recording rules in `deploy/prometheus/` (and the
//! PromQL of `promql`) compute the same numbers; the table in the README is this file.
//!
//! Two pure steps: [`classify`] says what a series is (or that it is not ours), [`reduce`]
//! turns one host's per-series step values (gauge means, counter rates per second) into
//! [`Metrics`]. A metric whose inputs a host does not have stays `None` (unknown), never 0.
//! Formulas follow `../shared/notes/real-fleets.md` §2.4 (node_exporter 1.5 names).

use std::collections::HashMap;

use schemas::{Metric, Metrics};

/// Counters become per-second rates over the step; gauges become the step's mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Which input of the mapping a series is. `detail` in [`SeriesKey`] tells apart the series
/// of one feature (CPU `cpu`, network `device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feature {
    /// `node_cpu_seconds_total{mode=user|nice}` (seconds, counter).
    CpuUser,
    /// `mode=system|irq|softirq`.
    CpuSys,
    CpuIowait,
    CpuIdle,
    /// `mode="steal"`: time a VM's hypervisor gave to others. Not a Fleetcast metric, but part
    /// of the whole the CPU parts are shares of.
    CpuSteal,
    /// `namedprocess_namegroup_cpu_seconds_total{groupname="java"}` (process-exporter).
    JavaCpu,
    MemAvailable,
    MemTotal,
    SwapFree,
    SwapTotal,
    /// `node_filesystem_{avail,size}_bytes{mountpoint="/"}`.
    RootAvail,
    RootSize,
    NetRx,
    NetTx,
    Load1,
    /// `node_boot_time_seconds` (Unix seconds).
    BootTime,
    /// `node_tcp_connection_states{state="close_wait"}` (tcpstat collector; no side split).
    CloseWait,
    /// A series already in Fleetcast's terms: `fleetcast:<metric>` (recording rules) or the
    /// textfile collector's `fleetcast_close_wait{side="front|back"}`.
    Mapped(Metric),
}

/// One input series of one host, without the host. `Copy`, with its label values inline, so
/// that classifying and looking up a sample allocates nothing (the per-sample path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    pub feature: Feature,
    /// `cpu` for CPU modes, `device` for network, the mode for CPU groups; empty otherwise.
    pub detail: Tag,
    /// CPU mode, so `user` and `nice` of one CPU stay two counters.
    pub sub: Tag,
}

/// A short label value kept inline: a CPU number, a network device (Linux caps their names at
/// 15 bytes), a CPU mode. A value over [`Tag::INLINE`] bytes keeps its first 7 bytes and a
/// 64-bit hash of the whole, so two long values are told apart unless their hashes collide.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Tag {
    len: u8,
    bytes: [u8; Tag::INLINE],
}

impl Tag {
    pub const INLINE: usize = 15;
}

impl From<&str> for Tag {
    fn from(v: &str) -> Tag {
        let mut bytes = [0u8; Tag::INLINE];
        if v.len() <= Tag::INLINE {
            bytes[..v.len()].copy_from_slice(v.as_bytes());
            return Tag { len: v.len() as u8, bytes };
        }
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        v.hash(&mut h);
        bytes[..7].copy_from_slice(&v.as_bytes()[..7]);
        bytes[7..].copy_from_slice(&h.finish().to_le_bytes());
        Tag { len: u8::MAX, bytes }
    }
}

impl std::fmt::Debug for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A long value shows its kept 7 bytes.
        let n = match usize::from(self.len) {
            n if n <= Tag::INLINE => n,
            _ => 7,
        };
        write!(f, "{:?}", String::from_utf8_lossy(&self.bytes[..n]))
    }
}

/// Network devices that are not the host's traffic: loopback and virtual bridges/pairs.
pub fn is_virtual_device(device: &str) -> bool {
    device == "lo" || ["veth", "docker", "br-", "virbr", "cni", "flannel", "cali"].iter().any(|p| device.starts_with(p))
}

/// What a series with metric name `name` and label lookup `label` feeds, and as which kind;
/// `None` for every series the mapping does not read (most of node_exporter's ~1,000).
pub fn classify<'a>(name: &str, label: impl Fn(&str) -> Option<&'a str>) -> Option<(SeriesKey, Kind)> {
    let key = |feature, detail: &str, sub: &str| SeriesKey { feature, detail: Tag::from(detail), sub: Tag::from(sub) };
    if let Some(metric) = name.strip_prefix("fleetcast:") {
        return Metric::from_name(metric).map(|m| (key(Feature::Mapped(m), "", ""), Kind::Gauge));
    }
    let gauge = |f| Some((key(f, "", ""), Kind::Gauge));
    match name {
        "node_cpu_seconds_total" => {
            let mode = label("mode")?;
            let feature = match mode {
                "user" | "nice" => Feature::CpuUser,
                "system" | "irq" | "softirq" => Feature::CpuSys,
                "iowait" => Feature::CpuIowait,
                "idle" => Feature::CpuIdle,
                "steal" => Feature::CpuSteal,
                _ => return None,
            };
            Some((key(feature, label("cpu").unwrap_or(""), mode), Kind::Counter))
        }
        "namedprocess_namegroup_cpu_seconds_total" if label("groupname") == Some("java") => {
            Some((key(Feature::JavaCpu, "", label("mode").unwrap_or("")), Kind::Counter))
        }
        "node_memory_MemAvailable_bytes" => gauge(Feature::MemAvailable),
        "node_memory_MemTotal_bytes" => gauge(Feature::MemTotal),
        "node_memory_SwapFree_bytes" => gauge(Feature::SwapFree),
        "node_memory_SwapTotal_bytes" => gauge(Feature::SwapTotal),
        "node_filesystem_avail_bytes" if label("mountpoint") == Some("/") => gauge(Feature::RootAvail),
        "node_filesystem_size_bytes" if label("mountpoint") == Some("/") => gauge(Feature::RootSize),
        "node_network_receive_bytes_total" | "node_network_transmit_bytes_total" => {
            let device = label("device")?;
            if is_virtual_device(device) {
                return None;
            }
            let f = if name.contains("receive") { Feature::NetRx } else { Feature::NetTx };
            Some((key(f, device, ""), Kind::Counter))
        }
        "node_load1" => gauge(Feature::Load1),
        "node_boot_time_seconds" => gauge(Feature::BootTime),
        "node_tcp_connection_states" if label("state") == Some("close_wait") => gauge(Feature::CloseWait),
        "fleetcast_close_wait" => match label("side")? {
            "front" => gauge(Feature::Mapped(Metric::FrontCloseWait)),
            "back" => gauge(Feature::Mapped(Metric::BackCloseWait)),
            _ => None,
        },
        _ => None,
    }
}

/// One host's inputs for one step: a gauge's mean, or a counter's rate per second.
pub type StepInputs = HashMap<SeriesKey, f64>;

/// The Fleetcast metrics of one host for the step ending at `step_end_ms`.
///
/// - CPU parts: `100 * Σ rate(mode group) / Σ rate(every mode)`, the share of the CPU time the
///   host accounted in the step (steal included in the whole, so the four parts sum to under
///   100 on a VM whose hypervisor steals). A share, not `/ ncpu`: a rate over a window the
///   samples only partly cover (a host that started, stopped or missed scrapes in the step;
///   Prometheus's `rate()` does not extrapolate across such gaps) understates every mode
///   alike, which a share cancels and `/ ncpu` does not (idle read 32 % on an idle host).
///   Equal to `/ ncpu` when the window is covered, since the modes of a CPU sum to 1 s/s.
/// - `java_cpu_pct`: `100 * rate / ncpu`, ncpu = CPUs with an idle rate.
/// - `mem_used_pct = 100 * (1 - MemAvailable / MemTotal)`; swap likewise, absent when the host
///   has no swap (SwapTotal = 0); `disk_usage_pct` from the root filesystem's avail/size.
/// - `net_*_mb_s = Σ rate(bytes) / 1e6` over the non-virtual devices.
/// - `load_average = node_load1`; `uptime_days = (step end - boot time) / 86400`.
/// - `back_close_wait = node_tcp_connection_states{state="close_wait"}` (no side split), or the
///   textfile collector's per-side series, which win.
///
/// A `fleetcast:<metric>` input wins over the raw formula. Non-finite results are left out.
pub fn reduce(inputs: &StepInputs, step_end_ms: i64) -> Metrics {
    let sum = |f: Feature| -> Option<f64> {
        let mut it = inputs.iter().filter(|(k, _)| k.feature == f).map(|(_, v)| *v).peekable();
        it.peek()?;
        Some(it.sum())
    };
    let one = |f: Feature| inputs.iter().find(|(k, _)| k.feature == f).map(|(_, v)| *v);
    let ncpu = inputs.keys().filter(|k| k.feature == Feature::CpuIdle).count();
    let pct_of_cpus = |f: Feature| -> Option<f64> {
        (ncpu > 0).then_some(())?;
        sum(f).map(|s| (100.0 * s / ncpu as f64).clamp(0.0, 100.0))
    };
    let cpu_time: f64 =
        [Feature::CpuUser, Feature::CpuSys, Feature::CpuIowait, Feature::CpuIdle, Feature::CpuSteal].into_iter().filter_map(sum).sum();
    let share_of_cpu_time = |f: Feature| -> Option<f64> {
        (ncpu > 0 && cpu_time > 0.0).then_some(())?;
        sum(f).map(|s| (100.0 * s / cpu_time).clamp(0.0, 100.0))
    };
    let used_pct = |free: Feature, total: Feature| -> Option<f64> {
        let (free, total) = (one(free)?, one(total)?);
        (total > 0.0).then(|| (100.0 * (1.0 - free / total)).clamp(0.0, 100.0))
    };
    // f64::max would turn a NaN into 0: a non-finite input stays unknown instead.
    let nonneg = |v: f64| v.is_finite().then(|| v.max(0.0));
    let mut m = Metrics::default();
    let mut put = |metric: Metric, v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            m.set(metric, Some(v as f32));
        }
    };
    put(Metric::CpuUser, share_of_cpu_time(Feature::CpuUser));
    put(Metric::CpuSys, share_of_cpu_time(Feature::CpuSys));
    put(Metric::CpuIowait, share_of_cpu_time(Feature::CpuIowait));
    put(Metric::CpuIdle, share_of_cpu_time(Feature::CpuIdle));
    put(Metric::JavaCpu, pct_of_cpus(Feature::JavaCpu));
    put(Metric::MemUsed, used_pct(Feature::MemAvailable, Feature::MemTotal));
    put(Metric::SwapUsed, used_pct(Feature::SwapFree, Feature::SwapTotal));
    put(Metric::DiskUsage, used_pct(Feature::RootAvail, Feature::RootSize));
    put(Metric::NetIn, sum(Feature::NetRx).and_then(nonneg).map(|b| b / 1e6));
    put(Metric::NetOut, sum(Feature::NetTx).and_then(nonneg).map(|b| b / 1e6));
    put(Metric::LoadAverage, one(Feature::Load1).and_then(nonneg));
    put(Metric::UptimeDays, one(Feature::BootTime).and_then(|b| nonneg((step_end_ms as f64 / 1e3 - b) / 86_400.0)));
    put(Metric::BackCloseWait, one(Feature::CloseWait).and_then(nonneg));
    for (k, v) in inputs {
        if let Feature::Mapped(metric) = k.feature {
            put(metric, Some(*v));
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(feature: Feature, detail: &str, sub: &str) -> SeriesKey {
        SeriesKey { feature, detail: detail.into(), sub: sub.into() }
    }

    fn labels<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |n| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
    }

    #[test]
    fn classifies_node_exporter_series() {
        let cpu = classify("node_cpu_seconds_total", labels(&[("cpu", "1"), ("mode", "nice")])).unwrap();
        assert_eq!(cpu, (key(Feature::CpuUser, "1", "nice"), Kind::Counter));
        let steal = classify("node_cpu_seconds_total", labels(&[("cpu", "1"), ("mode", "steal")])).unwrap();
        assert_eq!(steal.0.feature, Feature::CpuSteal);
        assert!(classify("node_cpu_seconds_total", labels(&[("cpu", "1"), ("mode", "guest")])).is_none());
        assert!(classify("node_network_receive_bytes_total", labels(&[("device", "lo")])).is_none());
        assert!(classify("node_network_receive_bytes_total", labels(&[("device", "veth12ab")])).is_none());
        let eth = classify("node_network_transmit_bytes_total", labels(&[("device", "eth0")])).unwrap();
        assert_eq!(eth.0.feature, Feature::NetTx);
        assert!(classify("node_filesystem_avail_bytes", labels(&[("mountpoint", "/boot")])).is_none());
        assert_eq!(classify("node_load1", labels(&[])).unwrap().1, Kind::Gauge);
        let mapped = classify("fleetcast:mem_used_pct", labels(&[])).unwrap();
        assert_eq!(mapped.0.feature, Feature::Mapped(Metric::MemUsed));
        assert!(classify("fleetcast:cascade_impact", labels(&[])).is_none());
        assert!(classify("go_goroutines", labels(&[])).is_none());
    }

    #[test]
    fn reduces_a_two_cpu_host() {
        let mut i = StepInputs::new();
        // Two CPUs: 0.2 + 0.1 s/s user (+nice), 0.05 sys each, 0.7 and 0.85 idle, 0.05 iowait on one.
        i.insert(key(Feature::CpuUser, "0", "user"), 0.15);
        i.insert(key(Feature::CpuUser, "0", "nice"), 0.05);
        i.insert(key(Feature::CpuUser, "1", "user"), 0.10);
        i.insert(key(Feature::CpuSys, "0", "system"), 0.05);
        i.insert(key(Feature::CpuSys, "1", "system"), 0.05);
        i.insert(key(Feature::CpuIowait, "0", "iowait"), 0.05);
        i.insert(key(Feature::CpuIdle, "0", "idle"), 0.70);
        i.insert(key(Feature::CpuIdle, "1", "idle"), 0.85);
        i.insert(key(Feature::MemAvailable, "", ""), 6e9);
        i.insert(key(Feature::MemTotal, "", ""), 8e9);
        i.insert(key(Feature::SwapFree, "", ""), 0.0);
        i.insert(key(Feature::SwapTotal, "", ""), 0.0);
        i.insert(key(Feature::RootAvail, "", ""), 30e9);
        i.insert(key(Feature::RootSize, "", ""), 100e9);
        i.insert(key(Feature::NetRx, "eth0", ""), 2.5e6);
        i.insert(key(Feature::NetRx, "eth1", ""), 0.5e6);
        i.insert(key(Feature::Load1, "", ""), 1.25);
        i.insert(key(Feature::BootTime, "", ""), 1_700_000_000.0);
        let m = reduce(&i, 1_700_000_000_000 + 2 * 86_400_000);
        let close = |a: Option<f32>, b: f32| (a.unwrap() - b).abs() < 1e-3;
        assert!(close(m.cpu_user_pct, 15.0) && close(m.cpu_sys_pct, 5.0), "{m:?}");
        assert!(close(m.cpu_iowait_pct, 2.5) && close(m.cpu_idle_pct, 77.5), "{m:?}");
        assert!(close(m.mem_used_pct, 25.0) && close(m.disk_usage_pct, 70.0), "{m:?}");
        assert!(close(m.net_in_mb_s, 3.0) && close(m.load_average, 1.25) && close(m.uptime_days, 2.0), "{m:?}");
        // No swap, no transmit series, no CLOSE_WAIT, no java: unknown, never 0.
        assert_eq!((m.swap_used_pct, m.net_out_mb_s, m.back_close_wait, m.java_cpu_pct), (None, None, None, None));
        assert!(schemas::validate::check_metrics(&m).is_ok());
    }

    #[test]
    fn cpu_parts_are_shares_of_the_time_accounted() {
        let cpu = |user: f64, sys: f64, idle: f64, steal: f64| {
            let mut i = StepInputs::new();
            for c in ["0", "1"] {
                i.insert(key(Feature::CpuUser, c, "user"), user);
                i.insert(key(Feature::CpuSys, c, "system"), sys);
                i.insert(key(Feature::CpuIowait, c, "iowait"), 0.0);
                i.insert(key(Feature::CpuIdle, c, "idle"), idle);
                i.insert(key(Feature::CpuSteal, c, "steal"), steal);
            }
            reduce(&i, 0)
        };
        // A window a third covered reads every mode at a third: the same shares as a full one,
        // and a record that passes the contract (it was rejected as "inconsistent" as /ncpu).
        let (full, partial) = (cpu(0.2, 0.1, 0.7, 0.0), cpu(0.2 / 3.0, 0.1 / 3.0, 0.7 / 3.0, 0.0));
        let close = |a: Option<f32>, b: f32| (a.unwrap() - b).abs() < 1e-3;
        for m in [&full, &partial] {
            assert!(close(m.cpu_user_pct, 20.0) && close(m.cpu_sys_pct, 10.0) && close(m.cpu_idle_pct, 70.0), "{m:?}");
            assert!(schemas::validate::check_metrics(m).is_ok(), "{m:?}");
        }
        // Steal is part of the whole: a VM losing 30 % to its hypervisor has 30 points fewer.
        let stolen = cpu(0.2, 0.1, 0.4, 0.3);
        assert!(close(stolen.cpu_idle_pct, 40.0) && close(stolen.cpu_user_pct, 20.0), "{stolen:?}");
    }

    #[test]
    fn mapped_series_win_and_non_finite_never_leaves() {
        let mut i = StepInputs::new();
        i.insert(key(Feature::MemAvailable, "", ""), 1.0);
        i.insert(key(Feature::MemTotal, "", ""), 2.0);
        i.insert(key(Feature::Mapped(Metric::MemUsed), "", ""), 42.0);
        i.insert(key(Feature::Load1, "", ""), f64::NAN);
        let m = reduce(&i, 0);
        assert_eq!(m.mem_used_pct, Some(42.0));
        assert_eq!(m.load_average, None);
        assert_eq!(reduce(&StepInputs::new(), 0), Metrics::default());
    }
}
