//! Warning/critical lines drawn on charts and used to colour the heatmap by metric.
//!
//! The predictor owns the thresholds: each server in the snapshot carries the profile-aware
//! lines it was judged by (`ServerForecast::thresholds`), and those are drawn. Only for a
//! snapshot without them (an older predictor) does the dashboard fall back to reference
//! levels (the original's threshold-alert levels), corrected by the server's own alerts.

use schemas::{Alert, Level, ServerForecast, Target};

/// Warning and critical reference levels of a target, if it has any.
pub fn reference(target: Target) -> Option<(f32, f32)> {
    match target {
        Target::Cpu => Some((85.0, 95.0)),
        Target::Mem => Some((90.0, 98.0)),
        Target::Iowait => Some((20.0, 30.0)),
        Target::Swap => Some((25.0, 50.0)),
        Target::Disk => Some((85.0, 95.0)),
        Target::Load => Some((8.0, 12.0)),
        Target::NetIn | Target::NetOut => None,
    }
}

/// The lines to draw for one server's target: the predictor's own, else the fallback.
pub fn for_server(s: &ServerForecast, target: Target) -> (Option<f32>, Option<f32>) {
    match s.thresholds.iter().find(|t| t.target == target) {
        Some(t) => (Some(t.warning).filter(|v| v.is_finite()), Some(t.critical).filter(|v| v.is_finite())),
        None => fallback(target, &s.alerts),
    }
}

/// Reference levels, replaced by the thresholds of the server's own alerts on that target.
pub fn fallback(target: Target, alerts: &[Alert]) -> (Option<f32>, Option<f32>) {
    let (mut warn, mut crit) = match reference(target) {
        Some((w, c)) => (Some(w), Some(c)),
        None => (None, None),
    };
    for a in alerts.iter().filter(|a| a.target == target && a.threshold.is_finite()) {
        match a.severity {
            Level::Critical => crit = Some(a.threshold),
            Level::Warning => warn = Some(a.threshold),
            _ => {}
        }
    }
    (warn, crit)
}

/// Where a value sits against a server's lines for a target.
pub fn band(s: &ServerForecast, target: Target, v: Option<f32>) -> &'static str {
    let (warn, crit) = for_server(s, target);
    match v.filter(|v| v.is_finite()) {
        None => "unknown",
        Some(_) if warn.is_none() && crit.is_none() => "none",
        Some(v) if crit.is_some_and(|c| v >= c) => "crit",
        Some(v) if warn.is_some_and(|w| v >= w) => "warn",
        _ => "ok",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{AlertBasis, AlertState, Profile};

    fn alert(target: Target, severity: Level, threshold: f32) -> Alert {
        Alert {
            id: "a".into(),
            server: "s".into(),
            profile: Profile::Generic,
            target,
            severity,
            basis: AlertBasis::P50,
            threshold,
            predicted: 0.0,
            current: None,
            steps_ahead: 1,
            minutes_ahead: 5,
            state: AlertState::Opened,
            opened_ms: 0,
            updated_ms: 0,
        }
    }

    #[test]
    fn alert_thresholds_replace_reference_lines() {
        assert_eq!(fallback(Target::Mem, &[]), (Some(90.0), Some(98.0)));
        let a = [alert(Target::Mem, Level::Critical, 99.0), alert(Target::Cpu, Level::Warning, 70.0)];
        assert_eq!(fallback(Target::Mem, &a), (Some(90.0), Some(99.0)));
        assert_eq!(fallback(Target::NetIn, &a), (None, None));
    }

    #[test]
    fn the_predictors_thresholds_win() {
        let mut s = crate::fixture::server("ppdb001", Profile::Database, 50.0, 0);
        s.thresholds = vec![schemas::TargetThresholds { target: Target::Mem, warning: 95.0, critical: 99.0 }];
        assert_eq!(for_server(&s, Target::Mem), (Some(95.0), Some(99.0)));
        s.thresholds.clear();
        s.alerts.clear();
        assert_eq!(for_server(&s, Target::Mem), (Some(90.0), Some(98.0)));
    }

    #[test]
    fn bands() {
        let mut s = crate::fixture::server("ppweb001", Profile::WebApi, 10.0, 0);
        s.thresholds.clear();
        s.alerts.clear();
        assert_eq!(band(&s, Target::Cpu, Some(96.0)), "crit");
        assert_eq!(band(&s, Target::Cpu, Some(90.0)), "warn");
        assert_eq!(band(&s, Target::Cpu, Some(10.0)), "ok");
        assert_eq!(band(&s, Target::Cpu, None), "unknown");
        assert_eq!(band(&s, Target::NetIn, Some(10.0)), "none");
    }
}
