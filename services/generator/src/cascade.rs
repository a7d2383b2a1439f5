//! The dependency graph along which an incident spreads (database -> web, ETL, risk and
//! conductor; conductor -> ML; ETL -> ML, with the original's strengths), and the spontaneous
//! cascades that put such episodes in the training data.
//!
//! A cascade has source servers (which carry a `cascade` episode) and reaches every server of
//! every profile downstream of the source's profile, weighted by the strongest path.

use rand::rngs::StdRng;
use rand::Rng;
use schemas::Profile;

use crate::episode::{effect, Effect, Envelope};
use crate::fleet::Fleet;
use schemas::Metric::*;

/// One way a dependent suffers when its source fails, with its strength (0-1).
#[derive(Debug)]
pub struct Impact {
    pub what: &'static str,
    pub strength: f32,
    pub effects: &'static [Effect],
}

#[derive(Debug)]
pub struct Edge {
    pub source: Profile,
    pub dependent: Profile,
    pub impacts: &'static [Impact],
}

impl Edge {
    /// How much of the source's trouble passes along this edge (its strongest impact).
    pub fn strength(&self) -> f32 {
        self.impacts.iter().map(|i| i.strength).fold(0.0, f32::max)
    }
}

use Profile::*;

/// The original's graph: dependent <- source, strength per impact.
pub const GRAPH: [Edge; 6] = [
    Edge {
        source: Database,
        dependent: WebApi,
        impacts: &[
            Impact {
                what: "connection failures",
                strength: 0.85,
                effects: &[effect(BackCloseWait, 3.0, 15.0), effect(FrontCloseWait, 2.0, 8.0)],
            },
            Impact {
                what: "request queuing",
                strength: 0.70,
                effects: &[effect(LoadAverage, 1.8, 1.0), effect(CpuUser, 1.3, 0.0), effect(MemUsed, 1.1, 0.0), effect(NetOut, 0.6, 0.0)],
            },
        ],
    },
    Edge {
        source: Database,
        dependent: DataIngest,
        impacts: &[
            Impact { what: "write stalls", strength: 0.75, effects: &[effect(CpuIowait, 2.0, 5.0), effect(BackCloseWait, 2.5, 10.0)] },
            Impact {
                what: "backlog",
                strength: 0.60,
                effects: &[effect(MemUsed, 1.2, 0.0), effect(NetIn, 0.5, 0.0), effect(LoadAverage, 1.5, 0.0)],
            },
        ],
    },
    Edge {
        source: Database,
        dependent: RiskAnalytics,
        impacts: &[
            Impact { what: "data starvation", strength: 0.80, effects: &[effect(NetIn, 0.3, 0.0), effect(BackCloseWait, 2.0, 8.0)] },
            Impact { what: "idle resources", strength: 0.50, effects: &[effect(CpuUser, 0.5, 0.0), effect(LoadAverage, 0.5, 0.0)] },
        ],
    },
    Edge {
        source: Database,
        dependent: ConductorMgmt,
        impacts: &[Impact {
            what: "scheduling stalls",
            strength: 0.70,
            effects: &[effect(BackCloseWait, 2.5, 12.0), effect(CpuUser, 1.4, 0.0), effect(LoadAverage, 1.5, 1.0)],
        }],
    },
    Edge {
        source: ConductorMgmt,
        dependent: MlCompute,
        impacts: &[Impact {
            what: "idle: no jobs scheduled",
            strength: 0.90,
            effects: &[effect(CpuUser, 0.3, 0.0), effect(LoadAverage, 0.4, 0.0), effect(NetIn, 0.4, 0.0), effect(MemUsed, 0.8, 0.0)],
        }],
    },
    Edge {
        source: DataIngest,
        dependent: MlCompute,
        impacts: &[Impact {
            what: "data starvation",
            strength: 0.60,
            effects: &[effect(NetIn, 0.3, 0.0), effect(CpuUser, 0.6, 0.0), effect(CpuIowait, 1.5, 0.0)],
        }],
    },
];

/// Profiles that can start a cascade (those with dependents).
pub const SOURCES: [Profile; 3] = [Database, DataIngest, ConductorMgmt];

/// `cascade_impact` of a server downstream of a cascade at full strength (sources: 1.0).
pub const DOWNSTREAM_IMPACT: f32 = 0.8;

/// How strongly a cascade from `source` reaches each profile (`Profile::ALL` order): 1 at the
/// source, the product of edge strengths along the strongest path, 0 where it never reaches.
pub fn reach(source: Profile) -> [f32; 7] {
    let mut r = [0.0f32; 7];
    r[source.as_index()] = 1.0;
    // The graph is acyclic and shallow: relaxing it as many times as it has edges settles it.
    for _ in 0..GRAPH.len() {
        for e in &GRAPH {
            let via = r[e.source.as_index()] * e.strength();
            let d = &mut r[e.dependent.as_index()];
            *d = d.max(via);
        }
    }
    r
}

/// The profiles a cascade from `source` reaches, source excluded.
pub fn downstream(source: Profile) -> Vec<Profile> {
    let r = reach(source);
    Profile::ALL.into_iter().filter(|p| *p != source && r[p.as_index()] > 0.0).collect()
}

/// The effects a full-strength cascade from `source` puts on each profile, with weights:
/// each edge into a profile contributes its impacts, scaled by how strongly the cascade
/// reached the edge's own source.
pub fn pressure(source: Profile) -> [Vec<(Effect, f32)>; 7] {
    let r = reach(source);
    let mut out: [Vec<(Effect, f32)>; 7] = Default::default();
    for e in &GRAPH {
        let upstream = r[e.source.as_index()];
        if upstream == 0.0 || e.dependent == source {
            continue;
        }
        for imp in e.impacts {
            for eff in imp.effects {
                out[e.dependent.as_index()].push((*eff, upstream * imp.strength));
            }
        }
    }
    out
}

/// An active cascade.
#[derive(Debug, Clone, PartialEq)]
pub struct Cascade {
    pub source: Profile,
    /// Indices of the failing servers (they carry a `cascade` episode).
    pub sources: Vec<usize>,
    pub envelope: Envelope,
    pub operator: bool,
}

/// Spontaneous cascades start at this rate per source profile (0.15 a day, as the original's
/// per-source rate), at one server of that profile; problem children are 1.5 times as likely
/// to be the one. At most one spontaneous cascade runs at a time, so a few percent of the
/// training data is cascade.
const SPONTANEOUS_PER_DAY: f64 = 0.15;
const CHILD_WEIGHT: f64 = 1.5;
const STEPS_PER_DAY: f64 = 288.0;

/// Draws whether a spontaneous cascade starts at `step`. `busy(i)` tells whether server `i`
/// already has an incident (it cannot become a source). Always draws one uniform per source
/// profile, so the stream advances the same way whatever happens.
pub fn maybe_start(fleet: &Fleet, step: u64, active: bool, busy: impl Fn(usize) -> bool, rng: &mut StdRng) -> Option<Cascade> {
    let draws: [f64; 3] = std::array::from_fn(|_| rng.random());
    if active {
        return None;
    }
    let p = SPONTANEOUS_PER_DAY / STEPS_PER_DAY;
    let (k, _) = draws.iter().enumerate().find(|(_, u)| **u < p)?;
    let source = SOURCES[k];
    let candidates: Vec<usize> = fleet.of_profile(source).filter(|&i| !busy(i)).collect();
    let weight = |i: usize| if fleet.servers[i].problem_child { CHILD_WEIGHT } else { 1.0 };
    let total: f64 = candidates.iter().map(|&i| weight(i)).sum();
    let mut x = rng.random::<f64>() * total;
    let pick = *candidates
        .iter()
        .find(|&&i| {
            x -= weight(i);
            x < 0.0
        })
        .or(candidates.last())?;
    let envelope = Envelope::timed(step, 24, rng.random_range(12..=72), 36);
    Some(Cascade { source, sources: vec![pick], envelope, operator: false })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seeds::{self, Stream};

    #[test]
    fn the_original_graph() {
        let strength = |s, d| GRAPH.iter().find(|e| e.source == s && e.dependent == d).map(|e| e.strength());
        assert_eq!(strength(Database, WebApi), Some(0.85));
        assert_eq!(strength(Database, DataIngest), Some(0.75));
        assert_eq!(strength(Database, RiskAnalytics), Some(0.80));
        assert_eq!(strength(Database, ConductorMgmt), Some(0.70));
        assert_eq!(strength(ConductorMgmt, MlCompute), Some(0.90));
        assert_eq!(strength(DataIngest, MlCompute), Some(0.60));
        assert_eq!(strength(WebApi, Database), None);
    }

    #[test]
    fn reach_follows_the_strongest_path() {
        let r = reach(Database);
        assert_eq!(r[Database.as_index()], 1.0);
        assert_eq!(r[WebApi.as_index()], 0.85);
        // db -> conductor -> ml (0.7 x 0.9) beats db -> etl -> ml (0.75 x 0.6).
        assert!((r[MlCompute.as_index()] - 0.63).abs() < 1e-6);
        assert_eq!(r[Generic.as_index()], 0.0);
        assert_eq!(downstream(Database), vec![MlCompute, WebApi, ConductorMgmt, DataIngest, RiskAnalytics]);
        assert_eq!(downstream(DataIngest), vec![MlCompute]);
        assert_eq!(downstream(ConductorMgmt), vec![MlCompute]);
    }

    #[test]
    fn pressure_lands_on_dependents_only() {
        let p = pressure(Database);
        assert!(p[Database.as_index()].is_empty());
        assert!(p[Generic.as_index()].is_empty());
        let web = &p[WebApi.as_index()];
        assert!(web.iter().any(|(e, w)| e.metric == BackCloseWait && e.mul == 3.0 && e.add == 15.0 && *w == 0.85));
        // ML gets the conductor edge at 0.7 x 0.9 and the ETL edge at 0.75 x 0.6.
        let ml = &p[MlCompute.as_index()];
        assert!(ml.iter().any(|(_, w)| (*w - 0.63).abs() < 1e-6));
        assert!(ml.iter().any(|(_, w)| (*w - 0.45).abs() < 1e-6));
    }

    #[test]
    fn spontaneous_cascades_are_rare_and_start_at_sources() {
        let fleet = Fleet::build(100, 3).unwrap();
        let mut rng = seeds::rng(3, Stream::Cascade, 0);
        let days = 200;
        let started: Vec<Cascade> = (0..days * 288).filter_map(|s| maybe_start(&fleet, s, false, |_| false, &mut rng)).collect();
        let per_day = started.len() as f64 / days as f64;
        assert!((0.3..0.6).contains(&per_day), "{per_day} a day");
        for c in &started {
            assert!(SOURCES.contains(&c.source));
            assert_eq!(fleet.servers[c.sources[0]].profile, c.source);
        }
        assert!(maybe_start(&fleet, 0, true, |_| false, &mut rng).is_none());
    }
}
