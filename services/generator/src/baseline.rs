//! What a healthy server of each profile looks like: the mean and spread of every metric the
//! AR(1) process drives, and the small per-server traits that make servers of one profile
//! differ from each other. DB is iowait-heavy, web net-out heavy, ETL net-in heavy, risk
//! load-heavy and ML CPU/memory-heavy, with the original's headline numbers.

use rand::Rng;
use rand_distr::StandardNormal;
use schemas::{Metric, Profile, METRIC_COUNT};

/// Metrics driven by the AR(1) process. CPU idle and Java CPU derive from them, uptime counts.
pub const SMOOTHED: [Metric; 11] = [
    Metric::CpuUser,
    Metric::CpuSys,
    Metric::CpuIowait,
    Metric::MemUsed,
    Metric::SwapUsed,
    Metric::DiskUsage,
    Metric::NetIn,
    Metric::NetOut,
    Metric::BackCloseWait,
    Metric::FrontCloseWait,
    Metric::LoadAverage,
];

/// Position of a metric in `Metric::ALL`, used to index per-metric arrays.
pub const fn idx(m: Metric) -> usize {
    m as usize
}

/// Mean and standard deviation of a metric's base draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub mean: f32,
    pub std: f32,
}

const fn s(mean: f32, std: f32) -> Spread {
    Spread { mean, std }
}
const NA: Spread = s(0.0, 0.0);

/// Per profile (in `Profile::ALL` order), per metric (in `Metric::ALL` order): user, sys,
/// iowait, idle*, java*, mem, swap, disk, net_in, net_out, back_cw, front_cw, load, uptime*
/// (* not drawn: derived or counted).
const TABLE: [[Spread; METRIC_COUNT]; 7] = [
    // ml_compute: CPU and memory heavy.
    [
        s(55., 12.),
        s(8., 3.),
        s(3., 1.5),
        NA,
        NA,
        s(72., 10.),
        s(5., 3.),
        s(55., 10.),
        s(45., 15.),
        s(20., 8.),
        s(3., 2.),
        s(2., 1.5),
        s(6.5, 2.),
        NA,
    ],
    // database: iowait heavy (15 +- 5 %).
    [
        s(25., 8.),
        s(10., 3.),
        s(15., 5.),
        NA,
        NA,
        s(80., 6.),
        s(8., 4.),
        s(70., 8.),
        s(40., 12.),
        s(55., 15.),
        s(6., 3.),
        s(4., 2.),
        s(4.5, 1.5),
        NA,
    ],
    // web_api: net-out heavy (120 +- 35 MB/s).
    [
        s(30., 10.),
        s(7., 2.5),
        s(2., 1.),
        NA,
        NA,
        s(55., 10.),
        s(3., 2.),
        s(40., 8.),
        s(35., 10.),
        s(120., 35.),
        s(8., 4.),
        s(12., 5.),
        s(3., 1.),
        NA,
    ],
    // conductor_mgmt: light, many connections.
    [
        s(20., 6.),
        s(5., 2.),
        s(2., 1.),
        NA,
        NA,
        s(45., 8.),
        s(2., 1.5),
        s(35., 6.),
        s(15., 5.),
        s(15., 5.),
        s(4., 2.),
        s(3., 1.5),
        s(2., 0.8),
        NA,
    ],
    // data_ingest: net-in heavy (150 +- 45 MB/s).
    [
        s(35., 10.),
        s(9., 3.),
        s(8., 3.),
        NA,
        NA,
        s(60., 10.),
        s(4., 2.5),
        s(65., 10.),
        s(150., 45.),
        s(50., 15.),
        s(5., 2.5),
        s(3., 1.5),
        s(4., 1.5),
        NA,
    ],
    // risk_analytics: load heavy (8.2 +- 2.5).
    [
        s(45., 12.),
        s(6., 2.),
        s(3., 1.5),
        NA,
        NA,
        s(65., 10.),
        s(4., 2.5),
        s(45., 8.),
        s(25., 8.),
        s(10., 4.),
        s(3., 1.5),
        s(2., 1.),
        s(8.2, 2.5),
        NA,
    ],
    // generic.
    [
        s(20., 8.),
        s(5., 2.),
        s(3., 1.5),
        NA,
        NA,
        s(45., 10.),
        s(3., 2.),
        s(45., 10.),
        s(10., 5.),
        s(10., 5.),
        s(2., 1.5),
        s(2., 1.5),
        s(1.5, 0.8),
        NA,
    ],
];

/// Share of user CPU spent in the JVM, per profile (`Profile::ALL` order).
const JAVA_SHARE: [f32; 7] = [0.25, 0.05, 0.70, 0.60, 0.50, 0.40, 0.20];

/// The base draw's mean and spread for one profile and metric.
pub fn spread(profile: Profile, metric: Metric) -> Spread {
    TABLE[profile.as_index()][idx(metric)]
}

/// Uptime resets at a reboot and, as monthly patching would, after this many days.
pub const UPTIME_MAX_DAYS: f32 = 30.0;

/// What makes one server differ from the others of its profile, drawn once from the seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Traits {
    /// Multiplier of the profile's mean and spread, per metric (1 +- 8 %, within 0.8-1.2).
    pub level: [f32; METRIC_COUNT],
    /// Share of user CPU that is Java.
    pub java_share: f32,
    /// Uptime when the simulation starts, in days.
    pub uptime0: f32,
}

impl Traits {
    pub fn draw<R: Rng>(profile: Profile, rng: &mut R) -> Traits {
        let mut level = [1.0f32; METRIC_COUNT];
        for m in SMOOTHED {
            let z: f32 = rng.sample(StandardNormal);
            level[idx(m)] = (1.0 + 0.08 * z).clamp(0.8, 1.2);
        }
        let z: f32 = rng.sample(StandardNormal);
        let java_share = (JAVA_SHARE[profile.as_index()] + 0.05 * z).clamp(0.0, 0.95);
        let uptime0 = rng.random::<f32>() * UPTIME_MAX_DAYS;
        Traits { level, java_share, uptime0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn profiles_lean_the_documented_way() {
        let m = |p, x| spread(p, x).mean;
        assert_eq!(spread(Profile::Database, Metric::CpuIowait), s(15., 5.));
        assert_eq!(spread(Profile::WebApi, Metric::NetOut), s(120., 35.));
        assert_eq!(spread(Profile::DataIngest, Metric::NetIn), s(150., 45.));
        assert_eq!(spread(Profile::RiskAnalytics, Metric::LoadAverage), s(8.2, 2.5));
        for p in Profile::ALL {
            if p != Profile::Database {
                assert!(m(Profile::Database, Metric::CpuIowait) > m(p, Metric::CpuIowait));
            }
            if p != Profile::MlCompute {
                assert!(m(Profile::MlCompute, Metric::CpuUser) > m(p, Metric::CpuUser));
            }
            for x in SMOOTHED {
                assert!(spread(p, x).mean > 0.0 && spread(p, x).std > 0.0, "{p:?} {x:?}");
            }
            // A healthy server's CPU parts leave room for idle time.
            assert!(m(p, Metric::CpuUser) + m(p, Metric::CpuSys) + m(p, Metric::CpuIowait) < 80.0);
        }
    }

    #[test]
    fn traits_stay_in_bounds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for p in Profile::ALL {
            for _ in 0..200 {
                let t = Traits::draw(p, &mut rng);
                assert!(t.level.iter().all(|l| (0.8..=1.2).contains(l)));
                assert!((0.0..=0.95).contains(&t.java_share));
                assert!((0.0..UPTIME_MAX_DAYS).contains(&t.uptime0));
            }
        }
    }
}
