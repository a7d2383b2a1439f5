//! Auto-remediation, simulated: the action each canonical profile would take for a server at
//! critical risk. Nothing is executed; the view shows the command that would run.
//!
//! The original matched display names, so every server fell through to "other"; this keys on
//! `schemas::Profile`, the one profile every service agrees on.

use schemas::Profile;

/// Risk at and above which an action is proposed (critical level).
pub const TRIGGER_RISK: f32 = 70.0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playbook {
    pub profile: Profile,
    /// What it does, in words.
    pub action: &'static str,
    /// The system that would carry it out.
    pub system: &'static str,
}

pub fn playbook(profile: Profile) -> Playbook {
    let (action, system) = match profile {
        Profile::MlCompute => ("Add 2 vCPU to the node", "Conductor API"),
        Profile::Database => ("Enable connection pooling and add a read replica", "DB operator"),
        Profile::WebApi => ("Scale out by 2 instances", "Kubernetes HPA"),
        Profile::RiskAnalytics => ("Queue new batch jobs until risk falls", "Batch scheduler"),
        Profile::ConductorMgmt | Profile::DataIngest | Profile::Generic => ("Page the on-call engineer", "PagerDuty"),
    };
    Playbook { profile, action, system }
}

/// The command line that would run for server `name` of `profile` at `risk` (shown, never
/// executed).
pub fn command(name: &str, profile: Profile, risk: f32) -> String {
    match profile {
        Profile::MlCompute => format!("conductor-api resize --host {name} --vcpu +2"),
        Profile::Database => format!("dbctl pool enable --host {name} && dbctl replica add --primary {name}"),
        Profile::WebApi => format!("kubectl patch hpa {name} --min-replicas +2"),
        Profile::RiskAnalytics => format!("batchq hold --host {name} --until-risk-below {TRIGGER_RISK:.0}"),
        Profile::ConductorMgmt | Profile::DataIngest | Profile::Generic => {
            format!("pagerduty trigger --service {} --summary \"{name} at critical risk ({risk:.0})\"", profile.name())
        }
    }
}

/// Whether a server at `risk` is at critical risk and gets an action.
pub fn triggers(risk: f32) -> bool {
    risk.is_finite() && risk >= TRIGGER_RISK
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn every_profile_has_its_own_playbook() {
        assert_eq!(playbook(Profile::MlCompute).system, "Conductor API");
        assert_eq!(playbook(Profile::Database).action, "Enable connection pooling and add a read replica");
        assert_eq!(playbook(Profile::WebApi).system, "Kubernetes HPA");
        assert_eq!(playbook(Profile::RiskAnalytics).system, "Batch scheduler");
        assert_eq!(playbook(Profile::Generic).system, "PagerDuty");
    }

    #[test]
    fn keyed_on_canonical_profile_not_name() {
        let s = fixture::server("weird-name-42", Profile::Database, 88.0, 0);
        assert!(triggers(s.risk));
        assert!(command(&s.server, s.profile, s.risk).starts_with("dbctl pool enable --host weird-name-42"));
        assert!(command("x", Profile::Generic, 88.4).ends_with("\"x at critical risk (88)\""));
        assert!(!triggers(69.9));
        assert!(!triggers(f32::NAN));
    }
}
