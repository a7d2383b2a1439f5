//! The whole fleet, one 5-minute step at a time: cascades, incidents and the operator's
//! scenario decide what drives each server, `server_sim` moves each server (with its
//! behaviours), and the step comes out as rows (for the export) or records (for the wire).
//! Live mode and export both drive this, so one seed gives the same data in both.

use rand::rngs::StdRng;
use schemas::{MetricRecord, Metrics, Profile, Scenario, ServerState, METRIC_COUNT, STEP_MS};

use crate::behaviour::Behaviour;
use crate::calendar::{self, Calendar};
use crate::cascade::{self, Cascade, DOWNSTREAM_IMPACT, SOURCES};
use crate::episode::{Effect, Envelope, Episode, CASCADE_SOURCE_EFFECTS};
use crate::fleet::{Fleet, FleetError};
use crate::incident;
use crate::scenario::{self, CASCADE_SOURCE};
use crate::seeds::{self, Stream};
use crate::server_sim::{Drive, ServerSim, StepContext};
use crate::state::{factors, Transitions, STATE_COUNT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimConfig {
    pub servers: usize,
    pub seed: u64,
    /// Start of the first step (Unix ms); rounded down to a step boundary.
    pub start_ms: i64,
}

/// One server at one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub state: ServerState,
    /// The episode that drives the server: its own incident, else a cascade reaching it.
    pub scenario: Scenario,
    /// 1 at a cascade's failing source at full strength, 0.8 downstream, 0 elsewhere.
    pub cascade_impact: f32,
    /// `None` when offline: it reports nothing.
    pub metrics: Option<Metrics>,
}

/// The operator's current scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorScenario {
    pub scenario: Scenario,
    pub affected: Vec<usize>,
    /// Step at which it was set.
    pub since: u64,
    pub ramp: u32,
}

/// What a scenario switch did.
#[derive(Debug, Clone, PartialEq)]
pub struct Switch {
    pub previous: Scenario,
    pub current: OperatorScenario,
}

pub struct Simulator {
    fleet: Fleet,
    seed: u64,
    start_ms: i64,
    next: u64,
    servers: Vec<ServerSim>,
    episodes: Vec<Option<Episode>>,
    cascades: Vec<Cascade>,
    cascade_rng: StdRng,
    transitions: Transitions,
    calendar: Calendar,
    state_factors: [[f32; METRIC_COUNT]; STATE_COUNT],
    /// Full-strength cascade effects per dependent profile, per source profile (`SOURCES`).
    pressure: Vec<[Vec<(Effect, f32)>; 7]>,
    /// This step's cascade effects per profile (reused buffers).
    step_pressure: [Vec<(Effect, f32)>; 7],
    operator: OperatorScenario,
    rows: Vec<Row>,
}

/// The outcome of one step.
pub struct Step<'a> {
    /// 0 for the first step after the start.
    pub index: u64,
    /// Start of the step: every record's timestamp.
    pub ts_ms: i64,
    pub fleet: &'a Fleet,
    pub rows: &'a [Row],
}

impl Step<'_> {
    /// The wire records of this step: one per server that is not offline.
    pub fn records(&self) -> Vec<MetricRecord> {
        self.fleet
            .servers
            .iter()
            .zip(self.rows)
            .filter_map(|(s, r)| {
                r.metrics.map(|metrics| MetricRecord { server: s.name.clone(), ts_ms: self.ts_ms, profile: Some(s.profile), metrics })
            })
            .collect()
    }
}

/// Rounds down to a step boundary.
pub fn align(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(STEP_MS) * STEP_MS
}

impl Simulator {
    pub fn new(cfg: SimConfig) -> Result<Self, FleetError> {
        let fleet = Fleet::build(cfg.servers, cfg.seed)?;
        let start_ms = align(cfg.start_ms);
        let calendar = Calendar::new();
        let servers = fleet
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let behaviour = Behaviour::new(s, seeds::rng(cfg.seed, Stream::Behaviour, i as u64));
                ServerSim::new(s, calendar.factors(s.profile, start_ms), seeds::rng(cfg.seed, Stream::Server, i as u64), behaviour)
            })
            .collect();
        let n = fleet.len();
        Ok(Simulator {
            seed: cfg.seed,
            start_ms,
            next: 0,
            servers,
            episodes: vec![None; n],
            cascades: Vec::new(),
            cascade_rng: seeds::rng(cfg.seed, Stream::Cascade, 0),
            transitions: Transitions::new(),
            calendar,
            state_factors: ServerState::ALL.map(factors),
            pressure: SOURCES.iter().map(|p| cascade::pressure(*p)).collect(),
            step_pressure: Default::default(),
            operator: OperatorScenario { scenario: Scenario::Healthy, affected: Vec::new(), since: 0, ramp: 0 },
            rows: Vec::with_capacity(n),
            fleet,
        })
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }

    /// Steps simulated so far (the generator's tick count).
    pub fn steps_done(&self) -> u64 {
        self.next
    }

    /// Start of the step the next call to [`step`](Self::step) produces.
    pub fn next_ts(&self) -> i64 {
        self.start_ms + self.next as i64 * STEP_MS
    }

    pub fn operator(&self) -> &OperatorScenario {
        &self.operator
    }

    /// Simulates the next step.
    pub fn step(&mut self) -> Step<'_> {
        let k = self.next;
        let ts = self.next_ts();
        let hour = calendar::hour(ts);
        self.advance_cascades(k);
        let impact = self.cascade_pressure(k);
        self.rows.clear();
        for (i, server) in self.fleet.servers.iter().enumerate() {
            let sim = &mut self.servers[i];
            let u = sim.uniform();
            let online = sim.state != ServerState::Offline;
            incident::advance(&mut self.episodes[i], server, online, k, u, sim.rng());
            let own = self.episodes[i].as_ref().and_then(|e| e.pull(k).map(|p| (e.kind, p)));
            let p = server.profile.as_index();
            let ctx = StepContext {
                ts_ms: ts,
                hour,
                transitions: &self.transitions,
                state_factors: &self.state_factors,
                calendar: self.calendar.factors(server.profile, ts),
            };
            let drive = Drive { incident: own.map(|(_, pull)| pull), cascade: &self.step_pressure[p] };
            let metrics = sim.step(server, &ctx, &drive);
            let (scenario, cascade_impact) = match own {
                Some((Scenario::Cascade, pull)) => (Scenario::Cascade, pull.mix.max(impact[p])),
                Some((kind, _)) => (kind, impact[p]),
                None if impact[p] > 0.0 => (Scenario::Cascade, impact[p]),
                None => (Scenario::Healthy, 0.0),
            };
            self.rows.push(Row { state: sim.state, scenario, cascade_impact, metrics });
        }
        self.next += 1;
        Step { index: k, ts_ms: ts, fleet: &self.fleet, rows: &self.rows }
    }

    /// Ends finished cascades and perhaps starts a spontaneous one.
    fn advance_cascades(&mut self, k: u64) {
        self.cascades.retain(|c| !c.envelope.finished(k));
        let active = self.cascades.iter().any(|c| !c.operator);
        let episodes = &self.episodes;
        let started = cascade::maybe_start(&self.fleet, k, active, |i| episodes[i].is_some(), &mut self.cascade_rng);
        if let Some(c) = started {
            for &i in &c.sources {
                self.episodes[i] = Some(source_episode(c.envelope, false));
            }
            self.cascades.push(c);
        }
    }

    /// Fills this step's cascade effects per profile; returns `cascade_impact` per profile.
    fn cascade_pressure(&mut self, k: u64) -> [f32; 7] {
        let mut impact = [0.0f32; 7];
        self.step_pressure.iter_mut().for_each(Vec::clear);
        for c in &self.cascades {
            let env = c.envelope.at(k);
            let Some(table) = SOURCES.iter().position(|p| *p == c.source).map(|s| &self.pressure[s]) else { continue };
            if env <= 0.0 {
                continue;
            }
            for (p, effects) in table.iter().enumerate() {
                if !effects.is_empty() {
                    self.step_pressure[p].extend(effects.iter().map(|(e, w)| (*e, w * env)));
                    impact[p] = impact[p].max(DOWNSTREAM_IMPACT * env);
                }
            }
        }
        impact
    }

    /// Switches the operator's scenario from the next step on. `healthy` also resets every
    /// server to the healthy state and ends every incident and cascade, as the original did.
    pub fn set_scenario(&mut self, to: Scenario) -> Switch {
        let step = self.next;
        let mut rng = seeds::rng(self.seed, Stream::Scenario, step.wrapping_mul(8) + to as u64);
        let previous = self.operator.scenario;
        let episodes = &self.episodes;
        let plan = scenario::plan(to, previous, &self.fleet, |i| episodes[i].as_ref(), step, &mut rng);
        for e in &mut self.episodes {
            if e.as_ref().is_some_and(|e| e.operator) {
                *e = None;
            }
        }
        self.cascades.retain(|c| !c.operator);
        if to == Scenario::Healthy {
            self.episodes.iter_mut().for_each(|e| *e = None);
            self.cascades.clear();
            self.servers.iter_mut().for_each(|s| s.state = ServerState::Healthy);
        }
        for (i, e) in plan.episodes {
            self.episodes[i] = Some(e);
        }
        if let Some(c) = plan.cascade {
            self.cascades.push(c);
        }
        self.operator = OperatorScenario { scenario: to, affected: plan.affected, since: step, ramp: plan.ramp };
        Switch { previous, current: self.operator.clone() }
    }

    /// Names of servers, by index.
    pub fn names(&self, idx: &[usize]) -> Vec<String> {
        idx.iter().filter_map(|&i| self.fleet.servers.get(i)).map(|s| s.name.clone()).collect()
    }

    /// Profile of a server, by name.
    pub fn profile_of(&self, name: &str) -> Option<Profile> {
        self.fleet.servers.iter().find(|s| s.name == name).map(|s| s.profile)
    }
}

fn source_episode(envelope: Envelope, operator: bool) -> Episode {
    Episode { kind: Scenario::Cascade, operator, envelope, targets: CASCADE_SOURCE, from: None, effects: CASCADE_SOURCE_EFFECTS }
}
