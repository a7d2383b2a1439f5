//! The predictor's pure domain (no I/O): per-server risk and level (`risk`), incident odds
//! (`odds`), predicted alerts with their lifecycle (`alerts`), fleet figures (`fleet`), the
//! profiles' thresholds (`thresholds`) and the horizon they count in (`horizon`); the
//! statistical forecasters beside the model (`methods`), the choice of method per server and
//! target (`select`) and live accuracy (`accuracy`, kept for what was published and for every
//! method on its own).
//!
//! [`Domain`] is the seam between the tick pipeline (I/O, buffers) and these modules. Per server
//! that closed a step, an inference worker scores its forecasts and chooses its methods
//! ([`scoring::Scoring::choose`], in parallel), then the pipeline makes one call in server order,
//! [`Domain::judge`], which returns everything of that server's snapshot entry the domain
//! decides ([`Verdict`]); the workers' sums go in with [`Domain::add_sums`], and
//! [`Domain::finish`] closes the tick.

pub mod accuracy;
pub mod alerts;
pub mod bands;
pub mod fleet;
pub mod half;
pub mod horizon;
pub mod methods;
pub mod odds;
pub mod records;
pub mod recurrence;
pub mod risk;
pub mod rolling;
pub mod scoring;
pub mod select;
pub mod thresholds;

use schemas::snapshot::TargetThresholds;
use schemas::{Alert, AlertEvent, FleetFigures, Method, MethodAccuracy, Metrics, Profile, Target, TargetAccuracy, TargetForecast};

use serde::{Deserialize, Serialize};

use crate::accuracy::{Kept, Scores, DEFAULT_WINDOW_STEPS};
use alerts::{breaches_into, AlertBook, BookConfig, Breach};
use fleet::{figures, ServerStatus};
use recurrence::Recurrence;
use risk::{assess, assess_with, Assessment, Predicted};
use scoring::StepSums;
use thresholds::thresholds;

/// A server whose step closed, as the domain sees it.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub server: &'a str,
    pub profile: Profile,
    /// Its values in its latest closed step (unknown metrics absent).
    pub current: &'a Metrics,
}

/// A server past warm-up, as the workers left it ([`scoring::Scoring::choose`]).
#[derive(Debug, Clone)]
pub struct Published {
    /// Each target's chosen method's forecast, in [`Target::ALL`] order.
    pub forecast: Vec<TargetForecast>,
    /// Whether the model forecast it (its outputs can be refused when not finite).
    pub model_ran: bool,
    /// Its targets whose values a day before a coming step crossed a threshold
    /// ([`recurrence`]; `Candidates::recurring`).
    pub recurring: Vec<recurrence::Recurrence>,
}

/// What the domain decides for one server on one tick: the parts of its `ServerForecast` that
/// are not plain copies of its window.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub assessment: Assessment,
    /// The published forecast: each target's chosen method (empty while warming up).
    pub forecast: Vec<TargetForecast>,
    /// Why a server past warm-up has no forecast, if so.
    pub no_forecast: Option<String>,
    /// Its active predicted alerts (none while warming up).
    pub alerts: Vec<Alert>,
    /// The thresholds it is judged by (for the charts' lines).
    pub thresholds: Vec<TargetThresholds>,
}

pub struct Domain {
    book: AlertBook,
    /// The fleet's rolling sums of the published forecasts' scored points.
    accuracy: Scores,
    /// The same per [`Method::ALL`] entry: each method scored on its own forecasts.
    methods: Vec<Scores>,
    breaches: Vec<Breach>,
    /// Reused per server: its active alerts as the level rule reads them.
    predicted: Vec<Predicted>,
    events: Vec<AlertEvent>,
    ticks: u64,
    /// The last tick finished (Unix ms), saved with the state.
    tick_ms: Option<i64>,
}

impl Default for Domain {
    fn default() -> Self {
        Domain {
            book: AlertBook::new(BookConfig::default()),
            accuracy: Scores::new(DEFAULT_WINDOW_STEPS),
            methods: Method::ALL.iter().map(|_| Scores::new(DEFAULT_WINDOW_STEPS)).collect(),
            breaches: Vec::new(),
            predicted: Vec::new(),
            events: Vec::new(),
            ticks: 0,
            tick_ms: None,
        }
    }
}

/// What survives a restart (KV `state`, key `domain`): the alert book, so alerts keep their
/// identity and open time instead of re-opening, and the rolling accuracy sums of what was
/// published and of each method on its own (the Model page's columns, about 140 KB a method;
/// the state is saved in pieces when over one message, `saved_state.rs`). Each server's method
/// record is saved apart, a slice per tick (`records.rs`); the forecasts still pending maturity
/// are not kept (tens of MB for 10,000 servers, rewritten every tick): a restarted predictor
/// scores only what it forecast itself, and the restored records carry the choice until then.
///
/// `methods` pairs each sum with its method's wire name, so a build that adds, drops or
/// reorders methods restores the ones it still has; absent in states saved before it was
/// kept (they decode empty and the per-method sums start afresh).
///
/// `tick_ms` is the tick the state was saved after (absent in states saved before it was
/// recorded: they decode with `None`). A successor reads the alert events published from that
/// tick on and folds them into the book ([`Domain::caught_up`]): the state is written after
/// the tick's events, so a holder that died between the two left events the book lacks.
#[derive(Serialize, Deserialize)]
struct Saved {
    book: AlertBook,
    scores: Scores,
    #[serde(default)]
    tick_ms: Option<i64>,
    /// By wire name ([`Method::name`]), not by [`Method`]: a name this build lacks is
    /// skipped instead of making the whole state (and its alert book) unreadable.
    #[serde(default)]
    methods: Vec<(String, Scores)>,
}

impl Domain {
    /// The last tick finished (Unix ms), if any.
    pub fn tick_ms(&self) -> Option<i64> {
        self.tick_ms
    }

    /// The state to persist, MessagePack.
    pub fn save(&self) -> Result<Vec<u8>, schemas::CodecError> {
        #[derive(Serialize)]
        struct SavedRef<'a> {
            book: &'a AlertBook,
            scores: &'a Scores,
            tick_ms: Option<i64>,
            methods: Vec<(&'static str, &'a Scores)>,
        }
        let methods = Method::ALL.iter().map(|m| m.name()).zip(&self.methods).collect();
        schemas::encode(&SavedRef { book: &self.book, scores: &self.accuracy, tick_ms: self.tick_ms, methods })
    }

    /// The tick (Unix ms) a state written by [`Domain::save`] was saved after; `None` for a
    /// state saved before the tick was recorded.
    pub fn saved_tick(bytes: &[u8]) -> Result<Option<i64>, schemas::CodecError> {
        #[derive(Deserialize)]
        struct Tick {
            #[serde(default)]
            tick_ms: Option<i64>,
        }
        Ok(schemas::decode::<Tick>(bytes)?.tick_ms)
    }

    /// The saved state `bytes` with `events` (alert events published after it, in order)
    /// folded into its alert book ([`AlertBook::fold`]), and how many changed it; the saved
    /// tick is kept as it was.
    pub fn caught_up(bytes: &[u8], events: &[AlertEvent]) -> Result<(Vec<u8>, usize), schemas::CodecError> {
        let mut saved: Saved = schemas::decode(bytes)?;
        let changed = saved.book.fold(events);
        Ok((schemas::encode(&saved)?, changed))
    }

    /// Restores what [`Domain::save`] wrote; the current alert settings win over the saved.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), schemas::CodecError> {
        let saved: Saved = schemas::decode(bytes)?;
        let config = self.book.config();
        self.book = saved.book;
        self.book.set_config(config);
        self.accuracy = saved.scores;
        self.tick_ms = saved.tick_ms;
        for (name, scores) in saved.methods {
            if let Some(slot) = Method::from_name(&name).and_then(|m| self.methods.get_mut(m.index())) {
                *slot = scores;
            }
        }
        Ok(())
    }

    /// Adds what the workers scored ([`scoring::Scoring`]) to the fleet's rolling sums; in
    /// chunk order, so the sums do not depend on which worker finished first.
    pub fn add_sums(&mut self, sums: &StepSums) {
        for (step, tracker, add) in sums.iter() {
            let scores = if tracker == 0 { Some(&mut self.accuracy) } else { self.methods.get_mut(tracker - 1) };
            if let Some(scores) = scores {
                scores.add(step, add);
            }
        }
    }

    /// Judges one server that closed a step: with `published` (its forecast, chosen by the
    /// workers) a server past warm-up, without it one still warming up. The one call the
    /// pipeline makes per server, in server order.
    pub fn judge(&mut self, tick_ms: i64, s: Observed<'_>, published: Option<Published>) -> Verdict {
        match published {
            Some(Published { forecast, model_ran, recurring }) => {
                let assessment = self.forecast(tick_ms, s, &forecast, &recurring);
                let no_forecast = (model_ran && forecast.is_empty())
                    .then(|| "no method gave a finite forecast (the model's output was not finite)".to_string());
                let alerts = self.alerts_of(s.server);
                Verdict { assessment, forecast, no_forecast, alerts, thresholds: Self::thresholds_of(s.profile) }
            }
            None => Verdict {
                assessment: assess(s.profile, s.current, &[]),
                forecast: Vec::new(),
                no_forecast: None,
                alerts: Vec::new(),
                thresholds: Self::thresholds_of(s.profile),
            },
        }
    }

    /// A server with a published `forecast` whose latest values are `current`: feeds the
    /// alert book and assesses the risk.
    fn forecast(&mut self, tick_ms: i64, s: Observed<'_>, forecast: &[TargetForecast], recurring: &[Recurrence]) -> Assessment {
        let Observed { server, profile, current } = s;
        self.breaches.clear();
        breaches_into(profile, current, forecast, recurring, &mut self.breaches);
        self.book.observe(tick_ms, server, profile, &self.breaches, &mut self.events);
        // The level reads the book's active alerts (the ones the snapshot lists), so level and
        // "first breach" follow one rule (`risk.rs`).
        self.predicted.clear();
        self.predicted.extend(self.book.active(server).map(Predicted::from));
        assess_with(profile, current, forecast, &self.predicted)
    }

    /// Every profile's thresholds, for the snapshot (the heatmap colours by them).
    pub fn profile_thresholds() -> Vec<schemas::ProfileThresholds> {
        Profile::ALL.iter().map(|&profile| schemas::ProfileThresholds { profile, targets: Self::thresholds_of(profile) }).collect()
    }

    /// The thresholds a server of `profile` is judged by (for the charts' lines).
    fn thresholds_of(profile: Profile) -> Vec<TargetThresholds> {
        Target::ALL
            .iter()
            .filter_map(|t| thresholds(profile, *t).map(|th| TargetThresholds { target: *t, warning: th.warning, critical: th.critical }))
            .collect()
    }

    /// The server's active alerts.
    fn alerts_of(&self, server: &str) -> Vec<Alert> {
        self.book.active(server).cloned().collect()
    }

    /// Closes the tick: ages unobserved servers' alerts and computes the fleet figures over
    /// every server's latest assessment, and the live accuracy. Returns also whether the
    /// servers' records are due a prune ([`scoring::Scoring::prune`]; every 256 ticks).
    pub fn finish<'a>(
        &mut self,
        tick_ms: i64,
        servers: impl IntoIterator<Item = ServerStatus<'a>>,
    ) -> (FleetFigures, Vec<TargetAccuracy>, bool) {
        self.book.finish_tick(tick_ms, &mut self.events);
        self.ticks += 1;
        self.tick_ms = Some(tick_ms);
        let prune = self.ticks.is_multiple_of(256);
        let mut accuracy = self.accuracy.report();
        for (tracker, method) in self.methods.iter().zip(Method::ALL) {
            for m in tracker.report() {
                if let Some(a) = accuracy.iter_mut().find(|a| a.target == m.target) {
                    a.methods.push(MethodAccuracy {
                        method,
                        samples: m.samples,
                        qrisk_p50: m.qrisk_p50,
                        qrisk_p90: m.qrisk_p90,
                        // Counted only where the method trackers keep their P10s.
                        coverage: (scoring::METHODS_KEPT == Kept::Band).then_some(m.coverage),
                    });
                }
            }
        }
        (figures(servers, self.book.counts()), accuracy, prune)
    }

    /// Alert events of this tick, in order.
    pub fn take_events(&mut self) -> Vec<AlertEvent> {
        std::mem::take(&mut self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rolling::Sums;
    use schemas::{AlertBasis, AlertState, Level, STEP_MS};

    const T0: i64 = 1_800_000_000_000 / STEP_MS * STEP_MS;

    fn warning(server: &str, tick_ms: i64) -> Vec<AlertEvent> {
        let b = Breach {
            target: Target::Disk,
            severity: Level::Warning,
            basis: AlertBasis::P50,
            threshold: 85.0,
            predicted: 90.0,
            current: Some(84.0),
            steps_ahead: 6,
        };
        let mut events = Vec::new();
        let mut book = AlertBook::new(BookConfig::default());
        book.observe(tick_ms, server, Profile::Generic, &[b], &mut events);
        events
    }

    #[test]
    fn the_saved_state_records_its_tick_and_a_state_without_one_still_restores() {
        let mut d = Domain::default();
        assert_eq!(Domain::saved_tick(&d.save().unwrap()).unwrap(), None, "no tick finished yet");
        d.finish(T0, std::iter::empty());
        let bytes = d.save().unwrap();
        assert_eq!(Domain::saved_tick(&bytes).unwrap(), Some(T0));
        let mut back = Domain::default();
        back.restore(&bytes).unwrap();
        assert_eq!(back.tick_ms, Some(T0));

        // The layout before the tick was recorded: `book` and `scores` alone.
        #[derive(Serialize)]
        struct Old<'a> {
            book: &'a AlertBook,
            scores: &'a Scores,
        }
        let mut book = AlertBook::new(BookConfig::default());
        book.fold(&warning("web1", T0));
        let old = schemas::encode(&Old { book: &book, scores: &d.accuracy }).unwrap();
        assert_eq!(Domain::saved_tick(&old).unwrap(), None);
        let mut back = Domain::default();
        back.restore(&old).unwrap();
        assert_eq!((back.tick_ms, back.book.all_active().count()), (None, 1));
    }

    #[test]
    fn the_per_method_sums_survive_a_restart_by_method_name() {
        let mut d = Domain::default();
        let point = Sums { n: 3, covered: 2, pin50: 1.5, pin90: 0.5, abs: 30.0 };
        let mut add = [Sums::default(); schemas::TARGET_COUNT];
        add[0] = point;
        let seasonal = Method::ALL.iter().position(|m| *m == Method::SeasonalNaive).unwrap();
        d.methods[seasonal].add(T0 / STEP_MS, &add);
        d.finish(T0, std::iter::empty());
        let mut back = Domain::default();
        back.restore(&d.save().unwrap()).unwrap();
        assert_eq!(back.methods, d.methods);
        assert_ne!(back.methods[seasonal], Domain::default().methods[seasonal], "the sums were not all empty");

        // A saved method this build does not know is skipped; the others still restore.
        #[derive(Serialize)]
        struct Renamed<'a> {
            book: &'a AlertBook,
            scores: &'a Scores,
            methods: Vec<(&'a str, &'a Scores)>,
        }
        let bytes = schemas::encode(&Renamed {
            book: &d.book,
            scores: &d.accuracy,
            methods: vec![("retired", &d.methods[seasonal]), ("seasonal_naive", &d.methods[seasonal])],
        })
        .unwrap();
        let mut back = Domain::default();
        back.restore(&bytes).unwrap();
        assert_eq!(back.methods[seasonal], d.methods[seasonal]);
        let fresh = Domain::default();
        let others = (0..Method::ALL.len()).filter(|i| *i != seasonal);
        assert!(others.clone().all(|i| back.methods[i] == fresh.methods[i]), "the unknown name restored nothing");
    }

    #[test]
    fn caught_up_folds_the_events_into_the_saved_book_only() {
        let mut d = Domain::default();
        d.finish(T0, std::iter::empty());
        let bytes = d.save().unwrap();
        let later = warning("web1", T0 + STEP_MS);
        let (caught, changed) = Domain::caught_up(&bytes, &later).unwrap();
        assert_eq!(changed, 1);
        assert_eq!(Domain::saved_tick(&caught).unwrap(), Some(T0), "the saved tick is kept");
        let mut back = Domain::default();
        back.restore(&caught).unwrap();
        let active: Vec<_> = back.book.all_active().map(|a| (a.id.as_str(), a.state, a.opened_ms)).collect();
        assert_eq!(active, [("web1.disk", AlertState::Opened, T0 + STEP_MS)]);
        assert_eq!(back.accuracy, d.accuracy, "accuracy untouched");
    }
}
