//! Time of day and day of week: the one diurnal table (with the original's per-profile
//! modifiers) and the weekly table the original lacked. The simulated fleet lives in UTC.
//!
//! The tables give one value per hour; the activity between them is interpolated linearly
//! between hour centres (across midnight into the next weekday too), so a simulated server's
//! load changes gradually, as real ones do, instead of jumping at 7, 9, 16 and 19 h and at
//! midnight. A model trained on step-shaped days learns to forecast those steps, and real
//! servers have none of them.

use schemas::{Metric, Profile, METRIC_COUNT};

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// UTC hour of the day, 0-23.
pub fn hour(ts_ms: i64) -> u32 {
    (ts_ms.rem_euclid(DAY_MS) / HOUR_MS) as u32
}

/// Day of the week, Monday = 0 (1970-01-01 was a Thursday), as in the model contract.
pub fn weekday(ts_ms: i64) -> u32 {
    (ts_ms.div_euclid(DAY_MS) + 3).rem_euclid(7) as u32
}

/// The fleet-wide daily curve: quiet nights, busy market hours, a peak after the close.
fn base_diurnal(hour: u32) -> f32 {
    match hour {
        0..7 => 0.8,
        7..9 => 1.0,
        9..16 => 1.1,
        16..19 => 1.2,
        _ => 1.0,
    }
}

/// The original's per-profile shifts of the daily curve.
fn profile_diurnal(profile: Profile, hour: u32) -> f32 {
    let night = hour < 7;
    let market = (9..16).contains(&hour);
    let after = (16..19).contains(&hour);
    match profile {
        Profile::MlCompute if night => 1.15,
        Profile::Database if market => 1.1,
        Profile::Database if after => 1.2,
        Profile::WebApi if market => 1.15,
        Profile::WebApi if night => 0.6,
        Profile::RiskAnalytics if after => 1.3,
        Profile::DataIngest if market => 1.2,
        _ => 1.0,
    }
}

/// Activity by weekday (Monday first): business workloads quieten at the weekend, training
/// jobs use the spare capacity.
fn weekly(profile: Profile, weekday: u32) -> f32 {
    const W: [[f32; 7]; 7] = [
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.1, 1.1],    // ml_compute
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.75],   // database
        [1.05, 1.0, 1.0, 1.0, 0.95, 0.6, 0.55], // web_api
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.8],    // conductor_mgmt
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.7, 0.7],    // data_ingest
        [1.0, 1.0, 1.0, 1.0, 1.05, 0.5, 0.5],   // risk_analytics
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.85, 0.85],  // generic
    ];
    W[profile.as_index()][weekday as usize % 7]
}

/// Five-minute steps in a week.
const WEEK_STEPS: usize = 7 * 24 * 12;

/// The five-minute step of the week (Monday 00:00 = 0) that `ts_ms` falls in.
fn step_of_week(ts_ms: i64) -> usize {
    weekday(ts_ms) as usize * 288 + (ts_ms.rem_euclid(DAY_MS) / 300_000) as usize
}

/// The activity factor of a profile at an instant: daily x weekly, clipped to 0.5-1.5, and
/// interpolated between hour centres (see the module doc).
pub fn activity(profile: Profile, ts_ms: i64) -> f32 {
    smooth_activity(profile, step_of_week(ts_ms))
}

fn smooth_activity(profile: Profile, step_of_week: usize) -> f32 {
    // Hours since Monday 00:00 at the step's start, measured from the first hour's centre.
    let x = step_of_week as f32 / 12.0 - 0.5;
    let h0 = x.floor();
    let w = x - h0;
    let at = |h: i64| {
        let h = h.rem_euclid(7 * 24);
        activity_at(profile, (h % 24) as u32, (h / 24) as u32)
    };
    let (a0, a1) = (at(h0 as i64), at(h0 as i64 + 1));
    a0 + (a1 - a0) * w
}

fn activity_at(profile: Profile, hour: u32, weekday: u32) -> f32 {
    (base_diurnal(hour) * profile_diurnal(profile, hour) * weekly(profile, weekday)).clamp(0.5, 1.5)
}

/// How strongly a metric follows activity (the factor is raised to this power): traffic and
/// CPU fully, memory a little, disk, swap and counters not at all.
pub fn sensitivity(metric: Metric) -> f32 {
    use Metric::*;
    match metric {
        CpuUser | CpuSys | NetIn | NetOut | BackCloseWait | FrontCloseWait | LoadAverage => 1.0,
        CpuIowait => 0.5,
        MemUsed => 0.3,
        CpuIdle | JavaCpu | SwapUsed | DiskUsage | UptimeDays => 0.0,
    }
}

/// Per-metric factors for every (profile, five-minute step of the week), computed once.
#[derive(Debug, Clone)]
pub struct Calendar {
    table: Vec<[f32; METRIC_COUNT]>,
}

impl Default for Calendar {
    fn default() -> Self {
        Self::new()
    }
}

impl Calendar {
    pub fn new() -> Self {
        let mut table = Vec::with_capacity(Profile::ALL.len() * WEEK_STEPS);
        for p in Profile::ALL {
            for step in 0..WEEK_STEPS {
                let a = smooth_activity(p, step);
                table.push(Metric::ALL.map(|m| a.powf(sensitivity(m))));
            }
        }
        Calendar { table }
    }

    /// The factor of every metric (in `Metric::ALL` order) for a profile at an instant.
    pub fn factors(&self, profile: Profile, ts_ms: i64) -> &[f32; METRIC_COUNT] {
        &self.table[profile.as_index() * WEEK_STEPS + step_of_week(ts_ms)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::idx;

    // 2026-01-05 was a Monday.
    const MONDAY: i64 = 1_767_571_200_000;

    #[test]
    fn clock_arithmetic() {
        assert_eq!(weekday(0), 3, "1970-01-01 was a Thursday");
        assert_eq!(weekday(MONDAY), 0);
        assert_eq!(weekday(MONDAY + 6 * DAY_MS), 6);
        assert_eq!(hour(MONDAY + 13 * HOUR_MS + 59 * 60_000), 13);
    }

    #[test]
    fn diurnal_table_and_profile_shifts() {
        let at = |p, h| activity(p, MONDAY + h * HOUR_MS);
        assert_eq!(at(Profile::Generic, 3), 0.8);
        assert_eq!(at(Profile::Generic, 8), 1.0);
        assert_eq!(at(Profile::Generic, 12), 1.1);
        assert_eq!(at(Profile::Generic, 17), 1.2);
        assert_eq!(at(Profile::Generic, 21), 1.0);
        assert!((at(Profile::MlCompute, 3) - 0.92).abs() < 1e-6);
        assert!((at(Profile::RiskAnalytics, 17) - 1.5).abs() < 1e-6, "1.2 x 1.3 clipped to 1.5");
        let sunday_3am = MONDAY + 6 * DAY_MS + 3 * HOUR_MS;
        assert!((activity(Profile::WebApi, sunday_3am) - 0.5).abs() < 1e-6, "0.8 x 0.6 x 0.55 clipped to 0.5");
        assert!(at(Profile::DataIngest, 12) > at(Profile::DataIngest, 20));
    }

    #[test]
    fn activity_changes_gradually_with_no_jump_at_any_hour() {
        for p in Profile::ALL {
            for k in 0..(7 * 288) {
                let (a, b) = (activity(p, MONDAY + k * 300_000), activity(p, MONDAY + (k + 1) * 300_000));
                // The largest hourly table step is 0.5 (e.g. 0.8 -> 1.3); spread over an hour
                // of 12 steps that is under 0.05 per step.
                assert!((a - b).abs() <= 0.05, "{p:?} step {k}: {a} -> {b}");
            }
        }
        // Between 7 and 9 h the generic day ramps from 0.8 to 1.0 instead of jumping at 7.
        let at = |min: i64| activity(Profile::Generic, MONDAY + min * 60_000);
        assert!(at(6 * 60 + 30) < at(7 * 60) && at(7 * 60) < at(7 * 60 + 30));
    }

    #[test]
    fn weekends_are_quieter_except_for_training() {
        let sat_noon = MONDAY + 5 * DAY_MS + 12 * HOUR_MS;
        let wed_noon = MONDAY + 2 * DAY_MS + 12 * HOUR_MS;
        for p in [Profile::WebApi, Profile::RiskAnalytics, Profile::Database, Profile::DataIngest] {
            assert!(activity(p, sat_noon) < activity(p, wed_noon), "{p:?}");
        }
        assert!(activity(Profile::MlCompute, sat_noon) > activity(Profile::MlCompute, wed_noon));
    }

    #[test]
    fn table_matches_the_functions() {
        let cal = Calendar::new();
        for p in Profile::ALL {
            for k in 0..(7 * 24) {
                let ts = MONDAY + k * HOUR_MS + 1234;
                let f = cal.factors(p, ts);
                assert_eq!(f[idx(Metric::CpuUser)], activity(p, ts));
                assert_eq!(f[idx(Metric::DiskUsage)], 1.0);
                assert!(f.iter().all(|x| (0.5..=1.5).contains(x)));
            }
        }
    }
}
