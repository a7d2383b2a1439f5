//! The simulated fleet: how many servers of each profile, their names, and which of them are
//! problem children, following the original system's split so demos and tests look alike.

use rand::seq::index::sample;
use schemas::Profile;

use crate::baseline::Traits;
use crate::seeds::{self, Stream};

/// The smallest fleet that has one server of every profile.
pub const MIN_SERVERS: usize = 7;

/// Share of problem children (`int(0.10 * N)`): twice the odds of a critical issue.
const PROBLEM_CHILD_PCT: usize = 10;
/// Share of the other servers prone to spontaneous incidents (problem children always are).
const INCIDENT_PRONE_PCT: usize = 20;

/// One profile's slice of the fleet: its share in percent (web takes the remainder), an
/// optional cap, the name prefix and the digits of the name's counter.
struct Slice {
    profile: Profile,
    pct: usize,
    cap: Option<usize>,
    prefix: &'static str,
    digits: usize,
}

/// The original split, in the original's naming order. Web is computed last as the remainder.
const SPLIT: [Slice; 7] = [
    Slice { profile: Profile::MlCompute, pct: 22, cap: None, prefix: "ppml", digits: 4 },
    Slice { profile: Profile::Database, pct: 17, cap: None, prefix: "ppdb", digits: 3 },
    Slice { profile: Profile::WebApi, pct: 28, cap: None, prefix: "ppweb", digits: 3 },
    Slice { profile: Profile::DataIngest, pct: 11, cap: None, prefix: "ppetl", digits: 3 },
    Slice { profile: Profile::RiskAnalytics, pct: 9, cap: None, prefix: "pprisk", digits: 3 },
    Slice { profile: Profile::Generic, pct: 7, cap: Some(10), prefix: "ppgen", digits: 3 },
    Slice { profile: Profile::ConductorMgmt, pct: 6, cap: None, prefix: "ppcon", digits: 2 },
];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FleetError {
    #[error("servers = {0}: the fleet needs at least {MIN_SERVERS} servers (one per profile)")]
    TooSmall(usize),
}

/// Servers per profile for a fleet of `n`, in naming order: each profile gets
/// `floor(pct * n)` (generic at most 10), at least 1, and web the remainder.
pub fn composition(n: usize) -> Result<Vec<(Profile, usize)>, FleetError> {
    if n < MIN_SERVERS {
        return Err(FleetError::TooSmall(n));
    }
    let mut counts: Vec<(Profile, usize)> = SPLIT
        .iter()
        .map(|s| {
            let c = (s.pct * n / 100).max(1);
            (s.profile, s.cap.map_or(c, |cap| c.min(cap)))
        })
        .collect();
    let others: usize = counts.iter().filter(|(p, _)| *p != Profile::WebApi).map(|(_, c)| c).sum();
    for (p, c) in &mut counts {
        if *p == Profile::WebApi {
            *c = n - others;
        }
    }
    Ok(counts)
}

/// A server's name: prefix and 1-based counter, zero-padded as in the original.
pub fn server_name(profile: Profile, index: usize) -> String {
    let slice = SPLIT.iter().find(|s| s.profile == profile).unwrap_or(&SPLIT[5]);
    format!("{}{:0width$}", slice.prefix, index + 1, width = slice.digits)
}

/// One simulated server and what never changes about it.
#[derive(Debug, Clone)]
pub struct Server {
    pub name: String,
    pub profile: Profile,
    /// Twice the odds of a critical issue, 1.5 times those of going offline.
    pub problem_child: bool,
    /// May start spontaneous degrading/critical incidents (the export's training episodes).
    pub incident_prone: bool,
    pub traits: Traits,
}

/// The whole fleet, in naming order.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub servers: Vec<Server>,
}

impl Fleet {
    /// Builds a fleet of `n` servers; the same `(n, seed)` always gives the same fleet.
    pub fn build(n: usize, seed: u64) -> Result<Fleet, FleetError> {
        let mut servers = Vec::with_capacity(n);
        for (profile, count) in composition(n)? {
            for i in 0..count {
                let idx = servers.len() as u64;
                let traits = Traits::draw(profile, &mut seeds::rng(seed, Stream::Traits, idx));
                servers.push(Server { name: server_name(profile, i), profile, problem_child: false, incident_prone: false, traits });
            }
        }
        let mut rng = seeds::rng(seed, Stream::Fleet, 0);
        let children = n * PROBLEM_CHILD_PCT / 100;
        for i in sample(&mut rng, n, children) {
            servers[i].problem_child = true;
            servers[i].incident_prone = true;
        }
        let others: Vec<usize> = (0..n).filter(|&i| !servers[i].problem_child).collect();
        let prone = others.len() * INCIDENT_PRONE_PCT / 100;
        for j in sample(&mut rng, others.len(), prone) {
            servers[others[j]].incident_prone = true;
        }
        Ok(Fleet { servers })
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Indices of the servers of one profile.
    pub fn of_profile(&self, profile: Profile) -> impl Iterator<Item = usize> + '_ {
        self.servers.iter().enumerate().filter(move |(_, s)| s.profile == profile).map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(n: usize, p: Profile) -> usize {
        composition(n).unwrap().iter().find(|(q, _)| *q == p).map(|(_, c)| *c).unwrap()
    }

    #[test]
    fn original_split() {
        use Profile::*;
        // web/ml/db/etl/risk/gen/con, from the original's documentation.
        let want: [(usize, [usize; 7]); 4] =
            [(20, [8, 4, 3, 2, 1, 1, 1]), (45, [16, 9, 7, 4, 4, 3, 2]), (90, [28, 19, 15, 9, 8, 6, 5]), (100, [28, 22, 17, 11, 9, 7, 6])];
        for (n, counts) in want {
            let got = [WebApi, MlCompute, Database, DataIngest, RiskAnalytics, Generic, ConductorMgmt].map(|p| count(n, p));
            assert_eq!(got, counts, "fleet of {n}");
            assert_eq!(composition(n).unwrap().iter().map(|(_, c)| c).sum::<usize>(), n);
        }
    }

    #[test]
    fn generic_is_capped_and_every_profile_present() {
        assert_eq!(count(1000, Profile::Generic), 10);
        for n in MIN_SERVERS..300 {
            let c = composition(n).unwrap();
            assert!(c.iter().all(|(_, k)| *k >= 1), "{n}");
            assert_eq!(c.iter().map(|(_, k)| k).sum::<usize>(), n);
        }
        assert_eq!(composition(6), Err(FleetError::TooSmall(6)));
    }

    #[test]
    fn names_follow_the_original_and_detect_back() {
        let fleet = Fleet::build(20, 1).unwrap();
        let names: Vec<&str> = fleet.servers.iter().map(|s| s.name.as_str()).collect();
        for want in ["ppml0001", "ppml0004", "ppdb001", "ppweb008", "ppetl002", "pprisk001", "ppgen001", "ppcon01"] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        for s in &fleet.servers {
            assert_eq!(Profile::detect(&s.name), s.profile, "{}", s.name);
        }
    }

    #[test]
    fn problem_children_are_ten_percent_and_seeded() {
        for n in [20, 45, 90, 100] {
            let f = Fleet::build(n, 42).unwrap();
            assert_eq!(f.servers.iter().filter(|s| s.problem_child).count(), n / 10);
            assert!(f.servers.iter().filter(|s| s.incident_prone).count() >= n / 10);
        }
        let pick = |seed| -> Vec<bool> { Fleet::build(100, seed).unwrap().servers.iter().map(|s| s.problem_child).collect() };
        assert_eq!(pick(3), pick(3));
        assert_ne!(pick(3), pick(4));
    }
}
