//! Seasonal breaches: a server whose value crossed a threshold at this time of day yesterday
//! will likely cross it again. The published P90 is a loss-weighted average of the methods'
//! bands (`select.rs`), tuned for pinball loss, and it often leaves out a daily peak that only
//! the seasonal naive repeats; so the alert book also hears of the first lead, past the next
//! 30 minutes, whose value one day earlier reaches a threshold ([`schemas::AlertBasis::Seasonal`]).
//!
//! Measured with `just backtest` (CPU > 90 % within 8 h; the published forecast's P90 crossing
//! alone against it or this seasonal recurrence too; F1): Bitbrains held-out VMs 0.54 to 0.56
//! (precision / recall 0.73 / 0.43 to 0.51 / 0.62), tuning VMs 0.59 to 0.64, NAB 0.22 to 0.73
//! (recall 0.13 to 0.74), the generated held-out fleet 0.53 to 0.66; the seasonal naive's own
//! P90 scores 0.54 / 0.61 / 0.74 / 0.62 there.
//!
//! Within 30 minutes the day-old value is left out: a first try, the seasonal naive's P50
//! crossing at any lead, took the held-out VMs' F1 within 30 min from 0.28 to 0.19 (false
//! alarms where the near forecast is sharp). The forecasts, and so every q-risk, are unchanged:
//! a recurrence only opens an alert, which the alert book then holds until its breach is due
//! (it is not reported in its last 30 minutes; `alerts.rs`).

use schemas::Target;

use crate::methods::SEASON;

use super::horizon::NEAR_STEPS;
use super::thresholds::Thresholds;

/// The first lead a seasonal breach may be due at (steps): past the next 30 minutes.
pub const FROM_LEAD: usize = NEAR_STEPS + 1;

/// The first lead `k` in [`FROM_LEAD`]`..=h` (1-based, steps) whose value one day earlier
/// (`history[n - 1 + k - SEASON]`, `history` oldest first, its last step the latest closed)
/// is finite and at least `threshold`, with that value; `None` when no lead's is, and for leads
/// whose day-old step is not in `history` (less than a day kept) or was not reported.
pub fn day_ago_crossing(history: &[f32], threshold: f32, h: usize) -> Option<(u16, f32)> {
    (FROM_LEAD..=h).find_map(|k| day_ago(history, k).filter(|&v| v >= threshold).map(|v| (k as u16, v)))
}

/// A target whose value a day before a coming step reached one of its thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recurrence {
    pub target: Target,
    /// The threshold reached (the critical one where it was, else the warning one).
    pub threshold: f32,
    /// 1-based step of the first crossing (at least [`FROM_LEAD`]).
    pub steps_ahead: u16,
    /// The value a day before that step.
    pub value: f32,
}

/// The seasonal breach of `target` with `history` (see [`day_ago_crossing`]): the earliest
/// crossing of its critical threshold, else of its warning one, within `h` steps. It runs for
/// every target of every server each tick, so both are found in one pass that stops at the
/// first critical value.
pub fn recurrence(target: Target, th: &Thresholds, history: &[f32], h: usize) -> Option<Recurrence> {
    let at = |(k, value): (u16, f32), threshold| Recurrence { target, threshold, steps_ahead: k, value };
    let mut warning = None;
    for (k, v) in (FROM_LEAD..=h).filter_map(|k| day_ago(history, k).filter(|&v| v >= th.warning).map(|v| (k as u16, v))) {
        if v >= th.critical {
            return Some(at((k, v), th.critical));
        }
        warning.get_or_insert((k, v));
    }
    warning.map(|w| at(w, th.warning))
}

/// The finite value one day before lead `k` (1-based) of `history` (see [`day_ago_crossing`]).
fn day_ago(history: &[f32], k: usize) -> Option<f32> {
    (history.len() + k).checked_sub(SEASON + 1).and_then(|i| history.get(i)).copied().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A day and `extra` steps at `base`, with `peak` at the steps `at` (indices).
    fn history(extra: usize, base: f32, peak: f32, at: &[usize]) -> Vec<f32> {
        let mut h = vec![base; SEASON + extra];
        for &i in at {
            h[i] = peak;
        }
        h
    }

    #[test]
    fn a_peak_yesterday_is_due_at_the_same_time_of_day() {
        // n = SEASON + 96: lead k reads index 95 + k; a peak at index 135 is lead 40.
        let h = history(96, 20.0, 97.0, &[135]);
        assert_eq!(day_ago_crossing(&h, 90.0, 96), Some((40, 97.0)));
        assert_eq!(day_ago_crossing(&h, 90.0, 39), None, "past the horizon");
        assert_eq!(day_ago_crossing(&h, 98.0, 96), None, "under the threshold");
    }

    #[test]
    fn the_next_30_minutes_and_missing_days_are_left_out() {
        // Lead 3 and lead 6 would read indices 98 and 101.
        let h = history(96, 20.0, 97.0, &[98, 101]);
        assert_eq!(day_ago_crossing(&h, 90.0, 96), None);
        // Less than a day kept: lead k reads index n - 1 + k - SEASON, negative before lead 189.
        let short = vec![95.0; 100];
        assert_eq!(day_ago_crossing(&short, 90.0, 96), None);
        // A step not reported is no crossing (NaN), the next reported one is.
        let mut gap = history(96, 20.0, 97.0, &[110, 111]);
        gap[110] = f32::NAN;
        assert_eq!(day_ago_crossing(&gap, 90.0, 96), Some((16, 97.0)));
    }

    #[test]
    fn critical_is_preferred_to_an_earlier_warning() {
        let th = Thresholds { warning: 85.0, critical: 95.0 };
        let mut h = history(96, 20.0, 88.0, &[110]);
        h[150] = 99.0;
        let r = recurrence(Target::Cpu, &th, &h, 96);
        assert_eq!(r, Some(Recurrence { target: Target::Cpu, threshold: 95.0, steps_ahead: 55, value: 99.0 }));
        let calm = history(96, 20.0, 50.0, &[110]);
        assert_eq!(recurrence(Target::Cpu, &th, &calm, 96), None);
    }
}
