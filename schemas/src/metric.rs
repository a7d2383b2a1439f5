//! The 14 metrics a server reports and the 8 targets the model forecasts.
//!
//! One list for the whole product: the original system had 14 in some places and 15 in others.

use serde::{Deserialize, Serialize};

pub const METRIC_COUNT: usize = 14;
pub const TARGET_COUNT: usize = 8;

/// What a metric's value measures, which decides its valid range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// 0..=100.
    Percent,
    /// MB/s, finite and >= 0.
    MegabytesPerSecond,
    /// A count (TCP sockets in CLOSE_WAIT), finite and >= 0.
    Count,
    /// Unix load average, finite and >= 0.
    Load,
    /// Days since boot, finite and >= 0.
    Days,
}

impl Unit {
    pub fn is_percent(self) -> bool {
        matches!(self, Unit::Percent)
    }
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Percent => "%",
            Unit::MegabytesPerSecond => "MB/s",
            Unit::Count => "",
            Unit::Load => "",
            Unit::Days => "d",
        }
    }
}

macro_rules! metrics {
    ($( $variant:ident => $field:ident : $unit:ident ),* $(,)?) => {
        /// One of the 14 reported metrics, in the canonical order used by the model's inputs.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Metric { $( $variant ),* }

        impl Metric {
            /// All metrics in canonical order (the model's input order).
            pub const ALL: [Metric; METRIC_COUNT] = [ $( Metric::$variant ),* ];

            /// Position in [`Metric::ALL`] (the variants are declared in that order).
            pub fn index(self) -> usize {
                self as usize
            }

            /// The wire name, e.g. `cpu_user_pct`.
            pub fn name(self) -> &'static str {
                match self { $( Metric::$variant => stringify!($field) ),* }
            }

            pub fn unit(self) -> Unit {
                match self { $( Metric::$variant => Unit::$unit ),* }
            }

            pub fn from_name(name: &str) -> Option<Metric> {
                match name { $( stringify!($field) => Some(Metric::$variant), )* _ => None }
            }
        }

        /// A record's metric values. `None` means the source did not report it (unknown),
        /// never zero; absent fields are left out of the encoding.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Metrics {
            $( #[serde(default, skip_serializing_if = "Option::is_none")] pub $field: Option<f32>, )*
        }

        impl Metrics {
            pub fn get(&self, m: Metric) -> Option<f32> {
                match m { $( Metric::$variant => self.$field ),* }
            }
            pub fn set(&mut self, m: Metric, v: Option<f32>) {
                match m { $( Metric::$variant => self.$field = v ),* }
            }
        }
    };
}

metrics! {
    CpuUser => cpu_user_pct: Percent,
    CpuSys => cpu_sys_pct: Percent,
    CpuIowait => cpu_iowait_pct: Percent,
    CpuIdle => cpu_idle_pct: Percent,
    JavaCpu => java_cpu_pct: Percent,
    MemUsed => mem_used_pct: Percent,
    SwapUsed => swap_used_pct: Percent,
    DiskUsage => disk_usage_pct: Percent,
    NetIn => net_in_mb_s: MegabytesPerSecond,
    NetOut => net_out_mb_s: MegabytesPerSecond,
    BackCloseWait => back_close_wait: Count,
    FrontCloseWait => front_close_wait: Count,
    LoadAverage => load_average: Load,
    UptimeDays => uptime_days: Days,
}

impl Metrics {
    /// Iterates the reported (known) metrics with their values.
    pub fn known(&self) -> impl Iterator<Item = (Metric, f32)> + '_ {
        Metric::ALL.iter().filter_map(move |&m| self.get(m).map(|v| (m, v)))
    }

    /// The value of a forecast target, derived where needed (CPU used = 100 - idle).
    pub fn target(&self, t: Target) -> Option<f32> {
        self.get(t.source_metric()).map(|v| t.from_source(v))
    }
}

impl Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Metric::from_name(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown metric {name:?}")))
    }
}

/// A forecast target: what the model predicts per server, 96 steps ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// CPU used, 100 - idle, in %.
    Cpu,
    Mem,
    Iowait,
    Swap,
    Disk,
    Load,
    NetIn,
    NetOut,
}

impl Target {
    /// All targets in the model's output order.
    pub const ALL: [Target; TARGET_COUNT] =
        [Target::Cpu, Target::Mem, Target::Iowait, Target::Swap, Target::Disk, Target::Load, Target::NetIn, Target::NetOut];

    pub fn name(self) -> &'static str {
        match self {
            Target::Cpu => "cpu",
            Target::Mem => "mem",
            Target::Iowait => "iowait",
            Target::Swap => "swap",
            Target::Disk => "disk",
            Target::Load => "load",
            Target::NetIn => "net_in",
            Target::NetOut => "net_out",
        }
    }

    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.iter().copied().find(|t| t.name() == name)
    }

    /// Human label for charts and tables.
    pub fn label(self) -> &'static str {
        match self {
            Target::Cpu => "CPU used",
            Target::Mem => "Memory",
            Target::Iowait => "I/O wait",
            Target::Swap => "Swap",
            Target::Disk => "Disk",
            Target::Load => "Load average",
            Target::NetIn => "Network in",
            Target::NetOut => "Network out",
        }
    }

    /// The reported metric a target reads (CPU reads idle and inverts it).
    /// The target's value from its source metric's (CPU used = 100 − idle).
    pub fn from_source(self, value: f32) -> f32 {
        match self {
            Target::Cpu => 100.0 - value,
            _ => value,
        }
    }

    pub fn source_metric(self) -> Metric {
        match self {
            Target::Cpu => Metric::CpuIdle,
            Target::Mem => Metric::MemUsed,
            Target::Iowait => Metric::CpuIowait,
            Target::Swap => Metric::SwapUsed,
            Target::Disk => Metric::DiskUsage,
            Target::Load => Metric::LoadAverage,
            Target::NetIn => Metric::NetIn,
            Target::NetOut => Metric::NetOut,
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            Target::Cpu => Unit::Percent,
            other => other.source_metric().unit(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_the_position_in_all() {
        for (i, m) in Metric::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
        }
        for t in Target::ALL {
            let mut m = Metrics::default();
            m.set(t.source_metric(), Some(30.0));
            assert_eq!(m.target(t), Some(t.from_source(30.0)));
        }
        assert_eq!(Target::Cpu.from_source(30.0), 70.0);
    }

    #[test]
    fn names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_name(m.name()), Some(m));
        }
        for t in Target::ALL {
            assert_eq!(Target::from_name(t.name()), Some(t));
        }
        assert_eq!(Metric::from_name("cascade_impact"), None);
    }

    #[test]
    fn cpu_target_is_derived_from_idle() {
        let m = Metrics { cpu_idle_pct: Some(30.0), ..Default::default() };
        assert_eq!(m.target(Target::Cpu), Some(70.0));
        assert_eq!(m.target(Target::Mem), None);
    }
}
