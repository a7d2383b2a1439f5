//! The 8 server states: the one Markov transition table (applied once per 5-minute step,
//! problem-child boosts included, rows renormalised) and what each state does to the metrics.
//!
//! The rows for healthy, critical_issue, offline and recovery keep the original's numbers,
//! except healthy -> critical_issue: the original's 2 % per tick, applied to 5-minute steps,
//! would take every server down several times a day, so it is 0.02 % here (about two
//! critical issues and one reboot per server a month). The original had no rows for the
//! other states; theirs are written to give plausible dwell times.

use schemas::{Metric, ServerState, METRIC_COUNT};

use crate::baseline::idx;

pub const STATE_COUNT: usize = 8;

/// Index of a state in `ServerState::ALL`.
pub const fn sidx(s: ServerState) -> usize {
    s as usize
}

/// Problem children: twice the odds of a critical issue, 1.5 times those of going offline.
const CHILD_CRITICAL_BOOST: f64 = 2.0;
const CHILD_OFFLINE_BOOST: f64 = 1.5;

/// Un-normalised transition weights out of `from` at UTC `hour`.
fn raw_row(from: ServerState, hour: u32) -> [f64; STATE_COUNT] {
    use ServerState::*;
    let mut w = [0.0; STATE_COUNT];
    let mut set = |to: ServerState, p: f64| w[sidx(to)] = p;
    let night = hour < 7;
    match from {
        Healthy => {
            set(Healthy, 0.85);
            set(MorningSpike, if (7..9).contains(&hour) { 0.08 } else { 0.02 });
            set(HeavyLoad, if (10..17).contains(&hour) { 0.06 } else { 0.02 });
            set(Idle, if night { 0.03 } else { 0.01 });
            set(Maintenance, if (1..5).contains(&hour) { 0.0005 } else { 0.0 });
            set(CriticalIssue, 0.0002);
        }
        MorningSpike => {
            set(MorningSpike, 0.75);
            set(Healthy, 0.22);
            set(HeavyLoad, 0.03);
        }
        HeavyLoad => {
            set(HeavyLoad, 0.80);
            set(Healthy, 0.17);
            set(Recovery, 0.02);
            set(CriticalIssue, 0.0006);
        }
        Idle => {
            set(Idle, 0.85);
            set(Healthy, 0.15);
            set(Maintenance, if night { 0.0005 } else { 0.0 });
        }
        Maintenance => {
            set(Maintenance, 0.90);
            set(Offline, 0.03);
            set(Recovery, 0.07);
        }
        Recovery => {
            set(Recovery, 0.60);
            set(Healthy, 0.35);
            set(Idle, 0.05);
        }
        CriticalIssue => {
            set(CriticalIssue, 0.30);
            set(Offline, 0.40);
            set(Recovery, 0.30);
        }
        Offline => {
            set(Offline, 0.70);
            set(Recovery, 0.30);
        }
    }
    w
}

/// The transition probabilities out of `from`: boosted for problem children, summing to 1.
pub fn row(from: ServerState, hour: u32, problem_child: bool) -> [f64; STATE_COUNT] {
    let mut w = raw_row(from, hour);
    if problem_child {
        w[sidx(ServerState::CriticalIssue)] *= CHILD_CRITICAL_BOOST;
        w[sidx(ServerState::Offline)] *= CHILD_OFFLINE_BOOST;
    }
    let total: f64 = w.iter().sum();
    w.iter_mut().for_each(|p| *p /= total);
    w
}

/// Cumulative rows for every (problem child, hour, state), computed once.
#[derive(Debug, Clone)]
pub struct Transitions {
    cum: Vec<[f64; STATE_COUNT]>,
}

impl Default for Transitions {
    fn default() -> Self {
        Self::new()
    }
}

impl Transitions {
    pub fn new() -> Self {
        let mut cum = Vec::with_capacity(2 * 24 * STATE_COUNT);
        for child in [false, true] {
            for hour in 0..24 {
                for from in ServerState::ALL {
                    let mut acc = 0.0;
                    cum.push(row(from, hour, child).map(|p| {
                        acc += p;
                        acc
                    }));
                }
            }
        }
        Transitions { cum }
    }

    /// The next state, given a uniform draw `u` in [0, 1).
    pub fn next(&self, from: ServerState, hour: u32, problem_child: bool, u: f64) -> ServerState {
        let i = (usize::from(problem_child) * 24 + hour as usize % 24) * STATE_COUNT + sidx(from);
        let cum = &self.cum[i];
        let to = cum.iter().position(|&c| u < c).unwrap_or_else(|| {
            // Rounding can leave the last cumulative value just under 1: take the last state
            // that has any probability, never one the row rules out.
            (1..STATE_COUNT).rev().find(|&i| cum[i] > cum[i - 1]).unwrap_or(0)
        });
        ServerState::ALL[to]
    }
}

/// How a state scales each metric's base value (1 = unchanged). Offline reports nothing.
pub fn factors(state: ServerState) -> [f32; METRIC_COUNT] {
    use Metric::*;
    use ServerState::*;
    let mut f = [1.0f32; METRIC_COUNT];
    let mut set = |ms: &[Metric], x: f32| ms.iter().for_each(|&m| f[idx(m)] = x);
    match state {
        Healthy => {}
        MorningSpike => {
            set(&[CpuUser, NetOut, FrontCloseWait], 1.4);
            set(&[CpuSys, NetIn, BackCloseWait], 1.3);
            set(&[LoadAverage], 1.5);
            set(&[MemUsed], 1.05);
        }
        HeavyLoad => {
            set(&[CpuUser], 1.8);
            set(&[CpuSys, CpuIowait, NetIn, NetOut], 1.5);
            set(&[MemUsed], 1.15);
            set(&[SwapUsed], 1.3);
            set(&[LoadAverage], 2.0);
            set(&[BackCloseWait, FrontCloseWait], 1.6);
        }
        Idle => {
            set(&[CpuUser, LoadAverage], 0.3);
            set(&[CpuSys, CpuIowait, BackCloseWait, FrontCloseWait], 0.5);
            set(&[MemUsed], 0.9);
            set(&[NetIn, NetOut], 0.2);
        }
        Maintenance => {
            set(&[CpuUser], 0.4);
            set(&[CpuSys], 1.8);
            set(&[CpuIowait], 2.0);
            set(&[DiskUsage], 1.05);
            set(&[NetIn, NetOut], 0.1);
            set(&[LoadAverage], 0.8);
            set(&[BackCloseWait, FrontCloseWait], 0.3);
        }
        Recovery => {
            set(&[CpuUser, CpuSys], 1.2);
            set(&[CpuIowait, LoadAverage], 1.3);
            set(&[MemUsed], 1.05);
            set(&[BackCloseWait, FrontCloseWait], 1.5);
        }
        CriticalIssue => {
            set(&[CpuUser, LoadAverage], 2.5);
            set(&[CpuSys], 1.5);
            set(&[CpuIowait], 3.5);
            set(&[MemUsed], 1.25);
            set(&[SwapUsed], 3.0);
            set(&[NetIn], 0.35);
            set(&[NetOut], 0.3);
            set(&[BackCloseWait, FrontCloseWait], 4.0);
        }
        Offline => f = [0.0; METRIC_COUNT],
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_to_one_everywhere() {
        for child in [false, true] {
            for hour in 0..24 {
                for from in ServerState::ALL {
                    let r = row(from, hour, child);
                    let sum: f64 = r.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-12, "{from:?} h{hour} child={child}: {sum}");
                    assert!(r.iter().all(|p| (0.0..=1.0).contains(p)));
                    assert!(r[sidx(from)] > 0.0, "every state can persist");
                }
            }
        }
    }

    #[test]
    fn original_rows_kept() {
        let c = row(ServerState::CriticalIssue, 12, false);
        assert!((c[sidx(ServerState::Offline)] - 0.4).abs() < 1e-12);
        let o = row(ServerState::Offline, 3, false);
        assert!((o[sidx(ServerState::Recovery)] - 0.3).abs() < 1e-12);
        let morning = row(ServerState::Healthy, 8, false)[sidx(ServerState::MorningSpike)];
        let evening = row(ServerState::Healthy, 20, false)[sidx(ServerState::MorningSpike)];
        assert!(morning > 3.0 * evening);
    }

    #[test]
    fn problem_children_boosted_then_renormalised() {
        let h = |child| row(ServerState::Healthy, 12, child)[sidx(ServerState::CriticalIssue)];
        let ratio = h(true) / h(false);
        assert!(ratio > 1.95 && ratio < 2.0, "{ratio}");
        let c = |child| row(ServerState::CriticalIssue, 12, child)[sidx(ServerState::Offline)];
        assert!(c(true) > c(false));
    }

    #[test]
    fn sampling_follows_the_row() {
        let t = Transitions::new();
        let n = 100_000;
        let stays = (0..n).filter(|i| t.next(ServerState::Offline, 0, false, *i as f64 / n as f64) == ServerState::Offline).count();
        assert!((stays as f64 / n as f64 - 0.7).abs() < 1e-3);
        assert_eq!(t.next(ServerState::Healthy, 12, false, 0.999_999_999_9), ServerState::CriticalIssue);
    }

    #[test]
    fn critical_issue_multipliers_as_in_the_original() {
        let f = factors(ServerState::CriticalIssue);
        assert_eq!(f[idx(Metric::CpuUser)], 2.5);
        assert_eq!(f[idx(Metric::CpuIowait)], 3.5);
        assert_eq!(f[idx(Metric::SwapUsed)], 3.0);
        assert!(f[idx(Metric::NetOut)] <= 0.4 && f[idx(Metric::NetIn)] <= 0.4);
        assert!(factors(ServerState::Offline).iter().all(|x| *x == 0.0));
    }
}
