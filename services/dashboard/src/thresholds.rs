//! Warning/critical lines drawn on charts and used to colour the heatmap by metric.
//!
//! The predictor owns the thresholds: each server in the snapshot carries the profile-aware
//! lines it was judged by (`ServerForecast::thresholds`, in every snapshot since the
//! dashboard's first version), and only those are drawn. A target the predictor has no
//! thresholds for (network) has no lines.

use schemas::{ServerForecast, Target};

/// The lines to draw for one server's target: the predictor's own (none where it has none).
pub fn for_server(s: &ServerForecast, target: Target) -> (Option<f32>, Option<f32>) {
    match s.thresholds.iter().find(|t| t.target == target) {
        Some(t) => (Some(t.warning).filter(|v| v.is_finite()), Some(t.critical).filter(|v| v.is_finite())),
        None => (None, None),
    }
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
    use schemas::{Profile, TargetThresholds};

    #[test]
    fn the_predictors_thresholds_are_drawn() {
        let mut s = crate::fixture::server("ppdb001", Profile::Database, 50.0, 0);
        s.thresholds = vec![TargetThresholds { target: Target::Mem, warning: 95.0, critical: 99.0 }];
        assert_eq!(for_server(&s, Target::Mem), (Some(95.0), Some(99.0)));
        assert_eq!(for_server(&s, Target::Cpu), (None, None), "no line the predictor did not judge by");
        s.thresholds = vec![TargetThresholds { target: Target::Mem, warning: f32::NAN, critical: 99.0 }];
        assert_eq!(for_server(&s, Target::Mem), (None, Some(99.0)));
    }

    #[test]
    fn bands() {
        let mut s = crate::fixture::server("ppweb001", Profile::WebApi, 10.0, 0);
        s.thresholds = vec![TargetThresholds { target: Target::Cpu, warning: 85.0, critical: 95.0 }];
        s.alerts.clear();
        assert_eq!(band(&s, Target::Cpu, Some(96.0)), "crit");
        assert_eq!(band(&s, Target::Cpu, Some(90.0)), "warn");
        assert_eq!(band(&s, Target::Cpu, Some(10.0)), "ok");
        assert_eq!(band(&s, Target::Cpu, None), "unknown");
        assert_eq!(band(&s, Target::NetIn, Some(10.0)), "none");
    }
}
