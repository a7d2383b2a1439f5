//! Per-server scoring and method choice, apart from the fleet-wide domain so that the
//! inference workers do it in parallel, each on its own chunk's servers.
//!
//! Each server that closed a step has its matured forecasts scored (the published forecast's
//! and every method's, `accuracy.rs`), the ensemble combined and each target's method chosen
//! by its recent record (`select.rs`), and the new forecasts recorded. None of that reads
//! another server, so it needs no order; at 100,000 servers it was about 13 s of a tick on the
//! one thread that judges the servers in order (the tick's critical path), where the workers
//! now share it. What does need one order stays there: the fleet's rolling sums, which the
//! workers hand back per chunk ([`StepSums`]) and the judging thread adds in chunk order (the
//! same bytes on 1 or N workers), and the alert book.
//!
//! Records are indexed by the registry's server id and kept behind one lock each: a tick's
//! chunks are disjoint, so no lock is ever contended; the locks only make the sharing safe.
//! An id names one server for good: a registry only adds servers, and an engine ticks the
//! registry it was made with (`run.rs::open_loop` makes the two together, per partition).

use std::sync::Mutex;

use schemas::{Method, Metrics, TargetForecast, STEP_MS, TARGET_COUNT};

use crate::accuracy::{oldest_live_issue, target_index, Kept, Pending, Sums};
use crate::domain::records::{self, Record};
use crate::select::{publish, Candidates};

/// What each method's tracker keeps: P50 and P90, no P10 (their records and q-risks need no
/// more; `Domain::finish` reports no per-method coverage for it).
pub const METHODS_KEPT: Kept = Kept::Losses;

/// Trackers per server: the published forecast's, then one per [`Method::ALL`] entry.
pub const TRACKERS: usize = Method::ALL.len() + 1;

/// One server's scoring state: its pending forecasts and recent record, for what was published
/// and for every method on its own.
#[derive(Debug)]
struct ServerRecord {
    published: Pending,
    methods: [Pending; Method::ALL.len()],
}

impl ServerRecord {
    fn new(issue: i64) -> ServerRecord {
        ServerRecord { published: Pending::new(issue), methods: std::array::from_fn(|_| Pending::keeping(METHODS_KEPT, issue)) }
    }

    fn last_issue(&self) -> i64 {
        self.methods.iter().map(Pending::last_issue).fold(self.published.last_issue(), i64::max)
    }

    /// Scores every tracker's forecasts of step `step` against `actual` into `sums`.
    fn record_actual(&mut self, step: i64, actual: &Metrics, sums: &mut StepSums) {
        let trackers = std::iter::once(&mut self.published).chain(self.methods.iter_mut());
        for (tracker, p) in trackers.enumerate() {
            if let Some(add) = p.record_actual(step, actual) {
                sums.add(step, tracker, &add);
            }
        }
    }
}

/// What some servers' scored points add to the fleet's rolling sums: per step, per tracker
/// (published, then [`Method::ALL`]), per target. A tick's chunk scores one step, or a few
/// when servers lag; the list stays that short.
#[derive(Debug, Clone, Default)]
pub struct StepSums {
    steps: Vec<(i64, [[Sums; TARGET_COUNT]; TRACKERS])>,
}

impl StepSums {
    fn add(&mut self, step: i64, tracker: usize, add: &[Sums; TARGET_COUNT]) {
        let at = match self.steps.iter().position(|(s, _)| *s == step) {
            Some(at) => at,
            None => {
                self.steps.push((step, [[Sums::default(); TARGET_COUNT]; TRACKERS]));
                self.steps.len() - 1
            }
        };
        for (sum, a) in self.steps[at].1[tracker].iter_mut().zip(add) {
            sum.add(a);
        }
    }

    /// `(step, tracker, per-target sums)` of every step and tracker that scored a point, in
    /// the order first scored.
    pub fn iter(&self) -> impl Iterator<Item = (i64, usize, &[Sums; TARGET_COUNT])> + '_ {
        self.steps.iter().flat_map(|(step, trackers)| {
            trackers.iter().enumerate().filter(|(_, sums)| sums.iter().any(|s| s.n > 0)).map(move |(t, sums)| (*step, t, sums))
        })
    }

    pub fn clear(&mut self) {
        self.steps.clear();
    }
}

/// Every server's [`ServerRecord`], by registry id.
#[derive(Debug, Default)]
pub struct Scoring {
    records: Vec<Mutex<Option<Box<ServerRecord>>>>,
}

impl Scoring {
    /// Makes room for servers with ids below `servers`.
    pub fn ensure(&mut self, servers: usize) {
        if self.records.len() < servers {
            self.records.resize_with(servers, || Mutex::new(None));
        }
    }

    /// Server `id`, whose step starting `last_ms` (Unix ms) just closed with the values
    /// `current`, and which every method forecast (`candidates`): scores its matured forecasts
    /// into `sums`, combines the ensemble, fills `forecast` with the published forecast (each
    /// target's chosen method, `select.rs`) and records every method's and the published
    /// forecasts. An id [`Scoring::ensure`] made no room for has no record: its choice is the
    /// default and nothing is recorded (`bench_engine`'s forecasts alone).
    pub fn choose(
        &self,
        id: u32,
        last_ms: i64,
        current: &Metrics,
        candidates: &mut Candidates,
        forecast: &mut Vec<TargetForecast>,
        sums: &mut StepSums,
    ) {
        let issue = last_ms.div_euclid(STEP_MS);
        let mut slot = self.records.get(id as usize).map(|slot| slot.lock().unwrap_or_else(|p| p.into_inner()));
        let mut record = slot.as_mut().map(|slot| slot.get_or_insert_with(|| Box::new(ServerRecord::new(issue))));
        let scores: [_; Method::ALL.len()] = match record.as_mut() {
            Some(record) => {
                record.record_actual(issue, current, sums);
                std::array::from_fn(|i| record.methods[i].scores())
            }
            None => Default::default(),
        };
        candidates.combine(|m, t| scores[m.index()][target_index(t)]);
        publish(candidates, |m, t| scores[m.index()][target_index(t)], forecast);
        if let Some(record) = record {
            for (p, method) in record.methods.iter_mut().zip(Method::ALL) {
                p.record_forecast(issue, candidates.of(method));
            }
            record.published.record_forecast(issue, forecast);
        }
    }

    /// Server `id`, still warming up, whose step starting `last_ms` closed with `current`:
    /// scores whatever of its forecasts matured (a server can fall back to warming after a
    /// gap) into `sums`.
    pub fn warming(&self, id: u32, last_ms: i64, current: &Metrics, sums: &mut StepSums) {
        if let Some(slot) = self.records.get(id as usize) {
            let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(record) = slot.as_mut() {
                record.record_actual(last_ms.div_euclid(STEP_MS), current, sums);
            }
        }
    }

    /// Drops the records of servers with no forecast issued in the 8 h before `now_ms`
    /// (nothing of theirs can still mature), so departed servers don't hold memory.
    pub fn prune(&mut self, now_ms: i64) {
        let oldest = oldest_live_issue(now_ms);
        for slot in &mut self.records {
            let slot = slot.get_mut().unwrap_or_else(|p| p.into_inner());
            if slot.as_ref().is_some_and(|r| r.last_issue() < oldest) {
                *slot = None;
            }
        }
    }

    /// The method records of the servers whose id is `slice` modulo [`records::SLICES`],
    /// `name` naming each id, for saving after tick `tick_ms` ([`records::Slice`]).
    pub fn saved_slice<'a>(&self, slice: u64, tick_ms: i64, name: impl Fn(u32) -> &'a str) -> records::Slice {
        let kept = self.records.iter().enumerate().skip(slice as usize).step_by(records::SLICES as usize).filter_map(|(id, slot)| {
            let slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            slot.as_ref().map(|r| (name(id as u32), r.methods.each_ref().map(Pending::record)))
        });
        records::slice(tick_ms, kept)
    }

    /// Gives server `id` the method record `record` saved before a restart, its pending
    /// forecasts empty (issued from step `issue` on, for pruning).
    pub fn restore(&mut self, id: u32, issue: i64, record: &Record) {
        self.ensure(id as usize + 1);
        let mut fresh = Box::new(ServerRecord::new(issue));
        for (p, r) in fresh.methods.iter_mut().zip(record) {
            p.restore_record(*r);
        }
        if let Some(slot) = self.records.get_mut(id as usize) {
            *slot.get_mut().unwrap_or_else(|p| p.into_inner()) = Some(fresh);
        }
    }

    /// Servers with a record.
    pub fn servers(&self) -> usize {
        self.records.iter().filter(|r| r.lock().map(|r| r.is_some()).unwrap_or(false)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accuracy::AccuracyTracker;
    use crate::domain::Domain;
    use schemas::Target;

    const T0: i64 = 1_800_000_000_000 / STEP_MS * STEP_MS;

    fn truth(server: u32, step: i64) -> f32 {
        40.0 + (step % 17) as f32 + server as f32
    }

    fn flat(method: Method, v: impl Fn(usize) -> f32) -> TargetForecast {
        let p50: Vec<f32> = (1..=96).map(&v).collect();
        TargetForecast {
            target: Target::Mem,
            method,
            p10: p50.iter().map(|x| x - 1.0).collect(),
            p50: p50.clone(),
            p90: p50.iter().map(|x| x + 1.0).collect(),
        }
    }

    /// Every method forecasts memory 10 too high but Trend, which is right.
    fn candidates(server: u32, step: i64) -> Candidates {
        let mut c = Candidates::default();
        for m in Method::ALL {
            let off = if m == Method::Trend { 0.0 } else { 10.0 };
            c.of_mut(m).push(flat(m, |k| truth(server, step + k as i64) + off));
        }
        c
    }

    fn mem(v: f32) -> Metrics {
        Metrics { mem_used_pct: Some(v), ..Default::default() }
    }

    #[test]
    fn each_server_gets_its_best_method_and_the_fleet_sums_match_one_tracker() {
        let mut scoring = Scoring::default();
        scoring.ensure(2);
        let mut domain = Domain::default();
        let mut reference = AccuracyTracker::default();
        let mut last = Vec::new();
        for step in 0..200 {
            let mut sums = StepSums::default();
            let at = T0 + step * STEP_MS;
            last.clear();
            for id in 0..2 {
                let current = mem(truth(id, step));
                let mut c = candidates(id, step);
                let mut forecast = Vec::new();
                scoring.choose(id, at, &current, &mut c, &mut forecast, &mut sums);
                reference.record_actual(&id.to_string(), at, &current);
                reference.record_forecast(&id.to_string(), at, &forecast);
                last.push(forecast[0].method);
            }
            domain.add_sums(&sums);
        }
        assert_eq!(last, [Method::Trend, Method::Trend], "the right method was proven on each server");
        let (_, accuracy, _) = domain.finish(T0 + 200 * STEP_MS, std::iter::empty());
        let want = reference.report();
        assert_eq!(accuracy.len(), 1);
        assert_eq!(accuracy[0].samples, want[0].samples);
        assert!((accuracy[0].qrisk_p50 - want[0].qrisk_p50).abs() < 1e-6, "{accuracy:?} {want:?}");
        let trend = accuracy[0].methods.iter().find(|m| m.method == Method::Trend).expect("trend scored");
        let level = accuracy[0].methods.iter().find(|m| m.method == Method::Level).expect("level scored");
        assert_eq!((trend.qrisk_p50, trend.coverage), (0.0, None), "a method's P10s are not kept, so no coverage");
        assert_eq!(accuracy[0].coverage, want[0].coverage, "what was published keeps its coverage");
        assert!(accuracy[0].coverage > 0.0);
        assert!(level.qrisk_p50 > 0.1, "{level:?}");
    }

    #[test]
    fn a_restored_record_publishes_the_proven_method_at_once_under_another_id() {
        let mut scoring = Scoring::default();
        scoring.ensure(2);
        for step in 0..200 {
            let mut sums = StepSums::default();
            for id in 0..2 {
                let (mut c, mut forecast) = (candidates(id, step), Vec::new());
                scoring.choose(id, T0 + step * STEP_MS, &mem(truth(id, step)), &mut c, &mut forecast, &mut sums);
            }
        }
        let names = ["web0", "web1"];
        let tick = T0 + 199 * STEP_MS;
        let slices: Vec<_> = (0..records::SLICES).map(|s| scoring.saved_slice(s, tick, |id| names[id as usize])).collect();
        assert_eq!(slices.iter().map(|s| s.servers.len()).sum::<usize>(), 2, "each server in exactly one slice");
        let wire: Vec<records::Slice> = slices.iter().map(|s| schemas::decode(&schemas::encode(s).unwrap()).unwrap()).collect();
        let (saved, skipped) = records::merge(wire);
        assert_eq!(skipped, 0);

        // A successor whose registry gave web1 id 0: its records follow the name.
        let mut successor = Scoring::default();
        for (name, record) in &saved {
            let id = if name == "web1" { 0 } else { 1 };
            successor.restore(id, tick / STEP_MS, record);
        }
        let (mut c, mut forecast, mut sums) = (candidates(1, 200), Vec::new(), StepSums::default());
        successor.choose(0, T0 + 200 * STEP_MS, &mem(truth(1, 200)), &mut c, &mut forecast, &mut sums);
        assert_eq!(forecast[0].method, Method::Trend, "published the proven method on its first step");
        let (mut c, mut forecast) = (candidates(1, 200), Vec::new());
        Scoring::default().choose(0, T0 + 200 * STEP_MS, &mem(truth(1, 200)), &mut c, &mut forecast, &mut sums);
        assert_eq!(forecast[0].method, crate::select::DEFAULT, "without the record: the default");
        assert_ne!(crate::select::DEFAULT, Method::Trend);
    }

    #[test]
    fn without_a_record_the_default_is_published_and_nothing_is_kept() {
        let scoring = Scoring::default();
        let (mut c, mut forecast, mut sums) = (candidates(0, 0), Vec::new(), StepSums::default());
        scoring.choose(7, T0, &mem(40.0), &mut c, &mut forecast, &mut sums);
        assert_eq!(forecast[0].method, crate::select::DEFAULT);
        assert_eq!((scoring.servers(), sums.iter().count()), (0, 0));
    }

    #[test]
    fn warming_scores_what_matured_and_departed_servers_are_pruned() {
        let mut scoring = Scoring::default();
        scoring.ensure(1);
        let (mut c, mut forecast, mut sums) = (candidates(0, 0), Vec::new(), StepSums::default());
        scoring.choose(0, T0, &mem(truth(0, 0)), &mut c, &mut forecast, &mut sums);
        scoring.warming(0, T0 + STEP_MS, &mem(truth(0, 1)), &mut sums);
        let scored: Vec<_> = sums.iter().map(|(step, t, _)| (step, t)).collect();
        assert_eq!(scored.len(), TRACKERS, "lead 1 of the published forecast and of every method");
        assert!(scored.iter().all(|(step, _)| *step == T0 / STEP_MS + 1));
        scoring.prune(T0 + 96 * STEP_MS);
        assert_eq!(scoring.servers(), 1);
        scoring.prune(T0 + 97 * STEP_MS);
        assert_eq!(scoring.servers(), 0);
    }
}
