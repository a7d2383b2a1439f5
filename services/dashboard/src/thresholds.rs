//! Warning/critical lines drawn on charts and used to colour the heatmap by metric.
//!
//! The predictor owns the thresholds: each server's KV entry carries the profile-aware lines it
//! was judged by (`ServerForecast::thresholds`, drawn on the server view's charts), and every
//! snapshot carries each profile's (`Snapshot::thresholds`, for the heatmap, which sees only
//! summaries). Only those are used. A target the predictor has no thresholds for (network) has
//! no lines.

use schemas::{Profile, ServerForecast, Snapshot, Target, TargetThresholds};

/// `(warning, critical)` of one target's thresholds, the non-finite ones left out.
fn lines(t: Option<&TargetThresholds>) -> (Option<f32>, Option<f32>) {
    match t {
        Some(t) => (Some(t.warning).filter(|v| v.is_finite()), Some(t.critical).filter(|v| v.is_finite())),
        None => (None, None),
    }
}

/// The lines to draw for one server's target: the predictor's own (none where it has none).
pub fn for_server(s: &ServerForecast, target: Target) -> (Option<f32>, Option<f32>) {
    lines(s.thresholds.iter().find(|t| t.target == target))
}

/// The lines of `target` for servers of `profile`, as the snapshot carries them.
pub fn for_profile(snap: &Snapshot, profile: Profile, target: Target) -> (Option<f32>, Option<f32>) {
    lines(snap.thresholds_of(profile, target))
}

/// Where a value sits against `(warning, critical)` lines.
pub fn band((warn, crit): (Option<f32>, Option<f32>), v: Option<f32>) -> &'static str {
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
    fn bands_follow_the_snapshots_profile_thresholds() {
        let mut snap = crate::fixture::snapshot(&crate::fixture::Spec { servers: 3, ..Default::default() });
        snap.thresholds = vec![schemas::ProfileThresholds {
            profile: Profile::WebApi,
            targets: vec![TargetThresholds { target: Target::Cpu, warning: 85.0, critical: 95.0 }],
        }];
        let cpu = for_profile(&snap, Profile::WebApi, Target::Cpu);
        assert_eq!(band(cpu, Some(96.0)), "crit");
        assert_eq!(band(cpu, Some(90.0)), "warn");
        assert_eq!(band(cpu, Some(10.0)), "ok");
        assert_eq!(band(cpu, None), "unknown");
        assert_eq!(band(for_profile(&snap, Profile::WebApi, Target::NetIn), Some(10.0)), "none");
        assert_eq!(band(for_profile(&snap, Profile::Database, Target::Cpu), Some(99.0)), "none", "no lines for that profile");
    }
}
