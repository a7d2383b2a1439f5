//! The one table of warning/critical thresholds per profile and target.
//!
//! Risk points, predicted alerts and fleet incident odds all read this table and nothing
//! else, so a profile's tolerance is decided in exactly one place. The original system had
//! profile-aware memory thresholds for databases that never fired (it read the profile from
//! an unset field); here the profile is a required argument.
//!
//! Values are in each target's raw unit (CPU used = 100 − idle, in %; load is the Unix load
//! average). A target without thresholds never scores risk points and never alerts.

use schemas::{Profile, Target};

/// Where a target's value stops being normal (`warning`) and becomes an incident (`critical`).
/// Always `warning < critical`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub warning: f32,
    pub critical: f32,
}

impl Thresholds {
    const fn new(warning: f32, critical: f32) -> Self {
        Thresholds { warning, critical }
    }

    /// Width of the warning band.
    pub fn band(&self) -> f32 {
        self.critical - self.warning
    }

    /// Where the approaching band starts: one band width below `warning`, but no lower than
    /// half of `warning` (so an idle swap at 0 % is never "approaching" a 10 % warning).
    pub fn approach(&self) -> f32 {
        (self.warning - self.band()).max(self.warning / 2.0)
    }

    /// Severity of a value: `Some(Critical)`, `Some(Warning)` or `None`. Non-finite is `None`.
    pub fn severity(&self, value: f32) -> Option<schemas::Level> {
        if value >= self.critical {
            Some(schemas::Level::Critical)
        } else if value >= self.warning {
            Some(schemas::Level::Warning)
        } else {
            None
        }
    }

    /// The threshold of a severity (`Critical` → critical, anything else → warning).
    pub fn of(&self, severity: schemas::Level) -> f32 {
        if severity == schemas::Level::Critical {
            self.critical
        } else {
            self.warning
        }
    }
}

/// The thresholds of `target` on a server of `profile`, or `None` where the target is not a
/// sign of distress.
pub fn thresholds(profile: Profile, target: Target) -> Option<Thresholds> {
    use Profile::*;
    let t = Thresholds::new;
    Some(match target {
        // CPU used. The default 85/95 is the original's CPU alert pair. ML training and
        // risk-analytics batch jobs are meant to saturate their cores, so only a pegged CPU
        // (no headroom left for the agent, the OS and the I/O threads) is news there.
        Target::Cpu => match profile {
            MlCompute => t(95.0, 99.0),
            RiskAnalytics => t(92.0, 98.0),
            _ => t(85.0, 95.0),
        },
        // Memory used. A database sizes its buffer pool to fill RAM, so 95 % is normal and
        // only the last few percent (page cache squeezed, OOM killer near) matter; ML nodes
        // hold whole models and batches resident, likewise. A web/API server at 95 % is
        // already in GC storms or swapping: it is warned earlier than the rest.
        Target::Mem => match profile {
            Database => t(97.0, 99.0),
            MlCompute => t(94.0, 98.5),
            WebApi => t(85.0, 95.0),
            _ => t(90.0, 98.0),
        },
        // I/O wait. Databases run iowait-heavy (baseline 15 ± 5 %) and ingest nodes stream
        // to disk, so the original's 20/30 would flag them permanently.
        Target::Iowait => match profile {
            Database => t(30.0, 45.0),
            DataIngest => t(25.0, 40.0),
            _ => t(20.0, 30.0),
        },
        // Swap used. Any swapping database is in trouble (buffer pool paged out), so it is
        // warned early; elsewhere the original's 25/50.
        Target::Swap => match profile {
            Database => t(10.0, 25.0),
            _ => t(25.0, 50.0),
        },
        // Disk usage. Databases need headroom for compaction, vacuum and temp files, so they
        // are warned earlier than the original's 85/95.
        Target::Disk => match profile {
            Database => t(80.0, 90.0),
            _ => t(85.0, 95.0),
        },
        // Load average. The original's 8/12; risk analytics runs load-heavy by design
        // (baseline 8.2 ± 2.5) and ML nodes run many-threaded jobs.
        Target::Load => match profile {
            RiskAnalytics => t(13.0, 15.5),
            MlCompute => t(11.0, 14.0),
            _ => t(8.0, 12.0),
        },
        // Network throughput is demand, not distress; saturation would need each link's
        // capacity, which records don't carry. The original never alerted on it either.
        Target::NetIn | Target::NetOut => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::Level;

    #[test]
    fn every_pair_is_ordered_and_in_range() {
        for p in Profile::ALL {
            for tg in Target::ALL {
                if let Some(th) = thresholds(p, tg) {
                    assert!(th.warning < th.critical, "{p:?} {tg:?}");
                    if tg.unit().is_percent() {
                        assert!(th.critical <= 100.0, "{p:?} {tg:?}");
                    }
                    assert!(th.approach() > 0.0 && th.approach() < th.warning, "{p:?} {tg:?}");
                }
            }
        }
    }

    #[test]
    fn database_memory_at_95_is_normal_web_is_not() {
        let db = thresholds(Profile::Database, Target::Mem).unwrap();
        let web = thresholds(Profile::WebApi, Target::Mem).unwrap();
        assert_eq!(db.severity(95.0), None);
        assert_eq!(web.severity(95.0), Some(Level::Critical));
        assert_eq!(thresholds(Profile::Generic, Target::Mem).unwrap().severity(95.0), Some(Level::Warning));
    }

    #[test]
    fn compute_profiles_tolerate_their_own_load() {
        let risk = thresholds(Profile::RiskAnalytics, Target::Load).unwrap();
        let generic = thresholds(Profile::Generic, Target::Load).unwrap();
        assert_eq!(risk.severity(12.0), None);
        assert_eq!(generic.severity(12.0), Some(Level::Critical));
        let ml = thresholds(Profile::MlCompute, Target::Cpu).unwrap();
        assert_eq!(ml.severity(93.0), None);
        assert_eq!(thresholds(Profile::WebApi, Target::Cpu).unwrap().severity(93.0), Some(Level::Warning));
    }

    #[test]
    fn network_never_alerts() {
        for p in Profile::ALL {
            assert!(thresholds(p, Target::NetIn).is_none());
            assert!(thresholds(p, Target::NetOut).is_none());
        }
    }
}
