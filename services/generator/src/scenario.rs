//! The operator's scenarios (healthy | degrading | critical | cascade), with the ramps and
//! targets of the original's live-mode table, and the targets its incidents share with the
//! spontaneous ones. Planning a switch is pure: it says which servers get which episode.

use rand::rngs::StdRng;
use rand::seq::index::sample;
use schemas::{Profile, Scenario};

use crate::cascade::{downstream, Cascade};
use crate::episode::{Envelope, Episode, Targets, CASCADE_SOURCE_EFFECTS, CRITICAL_EFFECTS, DEGRADING_EFFECTS};
use crate::fleet::Fleet;

/// Share of the fleet a degrading or a fresh critical scenario drives (at least one server).
pub const DEGRADING_PCT: usize = 20;
pub const CRITICAL_PCT: usize = 25;
/// Database servers a cascade scenario fails.
pub const CASCADE_SOURCES: usize = 2;

/// Ramps in steps (the original's live-mode ticks, which it already called steps).
pub const RAMP_DEGRADING: u32 = 60;
pub const RAMP_CRITICAL_AFTER_DEGRADING: u32 = 12;
pub const RAMP_CRITICAL: u32 = 24;
pub const RAMP_CASCADE: u32 = 24;

/// Degrading: CPU used 75 %, memory 80 %, and for databases I/O wait 18 %.
pub fn degrading_targets(profile: Profile) -> Targets {
    Targets { cpu_used: 75.0, mem: 80.0, iowait: (profile == Profile::Database).then_some(18.0) }
}
/// Critical on servers that were degrading: 92 / 95 / 40 %.
pub const CRITICAL_AFTER_DEGRADING: Targets = Targets { cpu_used: 92.0, mem: 95.0, iowait: Some(40.0) };
/// Critical out of the blue: 90 / 93 / 35 %.
pub const CRITICAL_FRESH: Targets = Targets { cpu_used: 90.0, mem: 93.0, iowait: Some(35.0) };
/// A cascade's failing database: 95 / 92 / 45 %.
pub const CASCADE_SOURCE: Targets = Targets { cpu_used: 95.0, mem: 92.0, iowait: Some(45.0) };

/// What a switch does: the episodes to start (replacing every operator episode), the
/// operator cascade if any, the servers it affects and the ramp.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub scenario: Scenario,
    pub episodes: Vec<(usize, Episode)>,
    pub cascade: Option<Cascade>,
    pub affected: Vec<usize>,
    pub ramp: u32,
}

/// Plans a switch to `to` at `step`. `current(i)` is server `i`'s episode now; a switch from
/// degrading to critical escalates the same servers from where they are.
pub fn plan<'a>(
    to: Scenario,
    from: Scenario,
    fleet: &Fleet,
    current: impl Fn(usize) -> Option<&'a Episode>,
    step: u64,
    rng: &mut StdRng,
) -> Plan {
    let mut p = Plan { scenario: to, episodes: Vec::new(), cascade: None, affected: Vec::new(), ramp: 0 };
    let pick = |rng: &mut StdRng, pool: &[usize], pct: usize| -> Vec<usize> {
        let k = (pool.len() * pct / 100).max(1).min(pool.len());
        let mut v: Vec<usize> = sample(rng, pool.len(), k).into_iter().map(|j| pool[j]).collect();
        v.sort_unstable();
        v
    };
    let all: Vec<usize> = (0..fleet.len()).collect();
    let episode =
        |kind, ramp, targets, from, effects| Episode { kind, operator: true, envelope: Envelope::held(step, ramp), targets, from, effects };
    match to {
        Scenario::Healthy => {}
        Scenario::Degrading => {
            p.ramp = RAMP_DEGRADING;
            p.affected = pick(rng, &all, DEGRADING_PCT);
            for &i in &p.affected {
                let t = degrading_targets(fleet.servers[i].profile);
                p.episodes.push((i, episode(Scenario::Degrading, p.ramp, t, None, DEGRADING_EFFECTS)));
            }
        }
        Scenario::Critical if from == Scenario::Degrading => {
            p.ramp = RAMP_CRITICAL_AFTER_DEGRADING;
            for i in 0..fleet.len() {
                let Some(e) = current(i).filter(|e| e.operator && e.kind == Scenario::Degrading) else { continue };
                let start = (e.targets, e.envelope.at(step.saturating_sub(1))); // where the last step left it
                p.affected.push(i);
                p.episodes.push((i, episode(Scenario::Critical, p.ramp, CRITICAL_AFTER_DEGRADING, Some(start), CRITICAL_EFFECTS)));
            }
        }
        Scenario::Critical => {
            p.ramp = RAMP_CRITICAL;
            p.affected = pick(rng, &all, CRITICAL_PCT);
            for &i in &p.affected {
                p.episodes.push((i, episode(Scenario::Critical, p.ramp, CRITICAL_FRESH, None, CRITICAL_EFFECTS)));
            }
        }
        Scenario::Cascade => {
            p.ramp = RAMP_CASCADE;
            let dbs: Vec<usize> = fleet.of_profile(Profile::Database).collect();
            let k = CASCADE_SOURCES.min(dbs.len());
            let mut sources: Vec<usize> = sample(rng, dbs.len(), k).into_iter().map(|j| dbs[j]).collect();
            sources.sort_unstable();
            for &i in &sources {
                p.episodes.push((i, episode(Scenario::Cascade, p.ramp, CASCADE_SOURCE, None, CASCADE_SOURCE_EFFECTS)));
            }
            let reached = downstream(Profile::Database);
            p.affected = (0..fleet.len()).filter(|i| sources.contains(i) || reached.contains(&fleet.servers[*i].profile)).collect();
            p.cascade = Some(Cascade { source: Profile::Database, sources, envelope: Envelope::held(step, p.ramp), operator: true });
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seeds::{self, Stream};

    fn plan_fresh(to: Scenario, n: usize) -> (Fleet, Plan) {
        let fleet = Fleet::build(n, 1).unwrap();
        let p = plan(to, Scenario::Healthy, &fleet, |_| None, 100, &mut seeds::rng(1, Stream::Scenario, 0));
        (fleet, p)
    }

    #[test]
    fn shares_of_the_fleet() {
        for n in [20, 45, 100] {
            assert_eq!(plan_fresh(Scenario::Degrading, n).1.affected.len(), n * 20 / 100);
            assert_eq!(plan_fresh(Scenario::Critical, n).1.affected.len(), n * 25 / 100);
        }
        assert_eq!(plan_fresh(Scenario::Degrading, 7).1.affected.len(), 1, "at least one");
        let (_, h) = plan_fresh(Scenario::Healthy, 20);
        assert!(h.affected.is_empty() && h.episodes.is_empty());
    }

    #[test]
    fn degrading_sets_iowait_for_databases_only() {
        let (fleet, p) = plan_fresh(Scenario::Degrading, 100);
        assert_eq!(p.ramp, 60);
        for (i, e) in &p.episodes {
            let db = fleet.servers[*i].profile == Profile::Database;
            assert_eq!(e.targets.iowait.is_some(), db);
            assert_eq!((e.targets.cpu_used, e.targets.mem), (75.0, 80.0));
            assert!(e.operator && e.envelope.hold.is_none());
        }
    }

    #[test]
    fn critical_after_degrading_escalates_the_same_servers() {
        let (fleet, d) = plan_fresh(Scenario::Degrading, 45);
        let eps: Vec<Option<Episode>> = (0..45).map(|i| d.episodes.iter().find(|(j, _)| *j == i).map(|(_, e)| e.clone())).collect();
        let c = plan(Scenario::Critical, Scenario::Degrading, &fleet, |i| eps[i].as_ref(), 130, &mut seeds::rng(1, Stream::Scenario, 1));
        assert_eq!(c.affected, d.affected);
        assert_eq!(c.ramp, 12);
        for (_, e) in &c.episodes {
            assert_eq!(e.targets, CRITICAL_AFTER_DEGRADING);
            let (from, mix) = e.from.unwrap();
            assert_eq!(from.cpu_used, 75.0);
            assert_eq!(mix, 0.5, "30 of 60 ramp steps done at the switch");
        }
        let fresh = plan_fresh(Scenario::Critical, 45).1;
        assert_eq!((fresh.ramp, fresh.episodes[0].1.targets), (24, CRITICAL_FRESH));
    }

    #[test]
    fn cascade_fails_two_databases_and_reaches_their_dependents() {
        let (fleet, p) = plan_fresh(Scenario::Cascade, 100);
        let c = p.cascade.unwrap();
        assert_eq!(c.sources.len(), 2);
        assert!(c.sources.iter().all(|&i| fleet.servers[i].profile == Profile::Database));
        for (i, s) in fleet.servers.iter().enumerate() {
            let expect = c.sources.contains(&i) || !matches!(s.profile, Profile::Database | Profile::Generic);
            assert_eq!(p.affected.contains(&i), expect, "{}", s.name);
        }
        assert_eq!(p.episodes.len(), 2);
        assert_eq!(p.episodes[0].1.targets, CASCADE_SOURCE);
    }
}
