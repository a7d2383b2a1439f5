//! The seam between the tick pipeline (I/O, buffers) and the pure domain modules: the choice
//! of method per server and target (`select`), risk and level per server (`risk`), predicted
//! alerts with their lifecycle (`alerts`), fleet figures (`fleet`) and live accuracy
//! (`accuracy`, kept for what was published and for every method on its own). The pipeline calls these methods in this order
//! each tick: [`Domain::forecast`] or [`Domain::warming`] per server that closed a step,
//! then [`Domain::finish`] once.

use schemas::snapshot::TargetThresholds;
use schemas::{Alert, AlertEvent, FleetFigures, MethodAccuracy, Metrics, Method, Profile, Target, TargetAccuracy, TargetForecast};

use serde::{Deserialize, Serialize};

use crate::accuracy::{target_index, AccuracyTracker, Scores};
use crate::alerts::{breaches_into, AlertBook, Breach, BookConfig};
use crate::fleet::{figures, ServerStatus};
use crate::risk::{assess, assess_with, Assessment, Predicted};
use crate::select::{publish, Candidates};
use crate::thresholds::thresholds;

pub struct Domain {
    book: AlertBook,
    accuracy: AccuracyTracker,
    /// One tracker per [`Method::ALL`] entry: each method scored on its own forecasts.
    methods: Vec<AccuracyTracker>,
    breaches: Vec<Breach>,
    /// Reused per server: its active alerts as the level rule reads them.
    predicted: Vec<Predicted>,
    events: Vec<AlertEvent>,
    ticks: u64,
}

impl Default for Domain {
    fn default() -> Self {
        Domain {
            book: AlertBook::new(BookConfig::default()),
            accuracy: AccuracyTracker::default(),
            methods: Method::ALL.iter().map(|_| AccuracyTracker::default()).collect(),
            breaches: Vec::new(),
            predicted: Vec::new(),
            events: Vec::new(),
            ticks: 0,
        }
    }
}

/// What survives a restart (KV `state`, key `domain`): the alert book, so alerts keep their
/// identity and open time instead of re-opening, and the rolling accuracy sums of what was
/// published. Forecasts still pending maturity, the per-server method records and the
/// per-method rolling sums are not kept: the first would be tens of MB for 10,000 servers, the
/// last ~140 KB per method, which would push the state past a broker's 1 MB max_payload; after
/// a restart each server publishes the default method until the others prove themselves again
/// (about an hour of steps), and the per-method figures refill over the rolling day.
#[derive(Serialize, Deserialize)]
struct Saved {
    book: AlertBook,
    scores: Scores,
}

impl Domain {
    /// The state to persist, MessagePack.
    pub fn save(&self) -> Result<Vec<u8>, schemas::CodecError> {
        #[derive(Serialize)]
        struct SavedRef<'a> {
            book: &'a AlertBook,
            scores: &'a Scores,
        }
        schemas::encode(&SavedRef { book: &self.book, scores: self.accuracy.scores() })
    }

    /// Restores what [`Domain::save`] wrote; the current alert settings win over the saved.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), schemas::CodecError> {
        let saved: Saved = schemas::decode(bytes)?;
        let config = self.book.config();
        self.book = saved.book;
        self.book.set_config(config);
        self.accuracy.set_scores(saved.scores);
        Ok(())
    }

    /// A server with fresh forecasts from every method (`candidates`), issued at the step
    /// starting `last_ms`, whose actual values are `current`: scores matured forecasts of every
    /// method, picks each target's method (`select.rs`) into `forecast`, keeps it, assesses
    /// the risk and feeds the alert book.
    #[allow(clippy::too_many_arguments)]
    pub fn forecast(
        &mut self,
        tick_ms: i64,
        server: &str,
        profile: Profile,
        last_ms: i64,
        current: &Metrics,
        candidates: &mut Candidates,
        forecast: &mut Vec<TargetForecast>,
    ) -> Assessment {
        for tracker in &mut self.methods {
            tracker.record_actual(server, last_ms, current);
        }
        // One lookup per method for this server; the ensemble and the choice read the table.
        let scores: [_; Method::ALL.len()] = std::array::from_fn(|i| self.methods[i].server_scores(server));
        candidates.combine(|m, t| scores[m.index()][target_index(t)]);
        for (tracker, method) in self.methods.iter_mut().zip(Method::ALL) {
            tracker.record_forecast(server, last_ms, candidates.of(method));
        }
        publish(candidates, |m, t| scores[m.index()][target_index(t)], forecast);
        self.accuracy.record_actual(server, last_ms, current);
        self.accuracy.record_forecast(server, last_ms, forecast);
        self.breaches.clear();
        breaches_into(profile, current, forecast, &mut self.breaches);
        self.book.observe(tick_ms, server, profile, &self.breaches, &mut self.events);
        // The level reads the book's active alerts (the ones the snapshot lists), so level and
        // "first breach" follow one rule (`risk.rs`).
        self.predicted.clear();
        self.predicted.extend(self.book.active(server).map(Predicted::from));
        assess_with(profile, current, forecast, &self.predicted)
    }

    /// A server still warming up: risk from its current values alone, no alerts.
    pub fn warming(&mut self, server: &str, last_ms: i64, profile: Profile, current: &Metrics) -> Assessment {
        self.accuracy.record_actual(server, last_ms, current);
        for tracker in &mut self.methods {
            tracker.record_actual(server, last_ms, current);
        }
        assess(profile, current, &[])
    }

    /// The thresholds a server of `profile` is judged by (for the charts' lines).
    pub fn thresholds_of(profile: Profile) -> Vec<TargetThresholds> {
        Target::ALL
            .iter()
            .filter_map(|t| thresholds(profile, *t).map(|th| TargetThresholds { target: *t, warning: th.warning, critical: th.critical }))
            .collect()
    }

    /// The server's active alerts.
    pub fn alerts_of(&self, server: &str) -> Vec<Alert> {
        self.book.active(server).cloned().collect()
    }

    /// Closes the tick: ages unobserved servers' alerts and computes the fleet figures over
    /// every server's latest assessment, and the live accuracy.
    pub fn finish<'a>(
        &mut self,
        tick_ms: i64,
        servers: impl IntoIterator<Item = ServerStatus<'a>>,
    ) -> (FleetFigures, Vec<TargetAccuracy>) {
        self.book.finish_tick(tick_ms, &mut self.events);
        self.ticks += 1;
        if self.ticks.is_multiple_of(256) {
            self.accuracy.prune(tick_ms);
            self.methods.iter_mut().for_each(|t| t.prune(tick_ms));
        }
        let mut accuracy = self.accuracy.report();
        for (tracker, method) in self.methods.iter().zip(Method::ALL) {
            for m in tracker.report() {
                if let Some(a) = accuracy.iter_mut().find(|a| a.target == m.target) {
                    a.methods.push(MethodAccuracy {
                        method,
                        samples: m.samples,
                        qrisk_p50: m.qrisk_p50,
                        qrisk_p90: m.qrisk_p90,
                        coverage: m.coverage,
                    });
                }
            }
        }
        (figures(servers, self.book.counts()), accuracy)
    }

    /// Alert events of this tick, in order.
    pub fn take_events(&mut self) -> Vec<AlertEvent> {
        std::mem::take(&mut self.events)
    }
}
