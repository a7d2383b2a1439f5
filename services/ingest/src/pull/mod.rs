//! Pull mode: PromQL over HTTP against any Prometheus-compatible query API (`--prometheus-url`).
//! Exists so a team's existing TSDB feeds Fleetcast with no change to its Prometheus, and so a
//! host it already knows is forecast at the first tick: at start, and on first sight of a host,
//! a `query_range` at step 300 s backfills the window (`--backfill`, 24 h by default).
//!
//! Each step (at its end `T` plus `--pull-delay`, so the last scrapes have landed) one instant
//! query per Fleetcast metric (`promql::pull_expr`) returns every host at once; the 14 queries
//! run side by side, so one slow metric does not hold up the others. A failing query
//! (Prometheus down, 5xx, slow) is retried with backoff (`promapi`); if it still fails the
//! metric is unknown for that step, counted in `pull_errors{metric}` and logged, and the step
//! is remembered as a gap: the first round in which that metric answers again re-reads the gap
//! with one `query_range` (at most `--backfill`, and at least an hour, back), so an outage of
//! the query API loses no data the TSDB holds. A host whose first-sight backfill failed is
//! backfilled again the next round. More hosts than `--max-hosts` are cut, counted and
//! reported (`fleet_limit`); answers are read bounded by that limit (`promjson`).
//!
//! With `--pull history` there are no live queries: remote-write brings the live steps, and a
//! host is backfilled from the query API the first time it is pushed (`history`).
//!
//! Parts: this file holds the state and the live loop; `round` asks the queries and folds the
//! answers into records; `repair` re-reads gaps and backfills hosts seen for the first time;
//! `history` is the push companion.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use schemas::{Metric, Metrics, STEP_MS};
use tokio::sync::{mpsc, watch};
use tracing::info;

use crate::align::step_start;
use crate::promapi::Prom;
use crate::remote_write::now_ms;
use crate::sink::{Out, Tally};
use crate::stats::Stats;

mod history;
mod repair;
mod round;

use round::batch;

/// How far back a gap is re-read at least, whatever `--backfill` says (ms).
const MIN_REPAIR_MS: i64 = 3_600_000;
/// More new hosts than this in one round are backfilled by one query for all hosts.
const SELECTED_BACKFILL_MAX: usize = 20;

/// The pull loop's state: hosts seen (raw label value -> server name), gaps to re-read, and
/// what it reports to.
pub struct Puller {
    prom: Prom,
    seen: HashMap<String, String>,
    /// Hosts (raw label values) whose first-sight backfill has not fully succeeded yet.
    unfilled: HashSet<String>,
    /// Per metric, the first step end whose query failed and that has not been re-read since.
    gaps: BTreeMap<Metric, i64>,
    source: String,
    stats: Arc<Stats>,
}

/// Records of several steps: step start -> server -> metrics.
type Grid = BTreeMap<i64, HashMap<String, Metrics>>;

/// What one set of queries gave: the records, and the metrics whose query failed.
struct Round {
    grid: Grid,
    failed: Vec<Metric>,
}

/// Which hosts a round asks for.
enum Hosts<'a> {
    /// Every host the query API knows.
    All,
    /// One selector (e.g. `instance="h:9100"`), added to every series selector.
    Only(&'a str),
}

impl Puller {
    /// A puller that has seen no host yet.
    pub fn new(prom: Prom, source: &str, stats: Arc<Stats>) -> Puller {
        Puller { prom, seen: HashMap::new(), unfilled: HashSet::new(), gaps: BTreeMap::new(), source: source.to_owned(), stats }
    }

    fn backfill_ms(&self) -> i64 {
        self.prom.cfg.backfill.as_millis() as i64 / STEP_MS * STEP_MS
    }

    /// Backfills, then pulls one step per 5 minutes until `stop`.
    pub async fn run(mut self, out: mpsc::Sender<Out>, mut stop: watch::Receiver<bool>) {
        let delay = self.prom.cfg.delay.as_millis() as i64;
        let mut end = step_start(now_ms() - delay);
        let backfill = self.backfill_ms();
        let first = if backfill > 0 { self.backfill_all(end - backfill + STEP_MS, end).await } else { Vec::new() };
        for o in first {
            if out.send(o).await.is_err() {
                return;
            }
        }
        if backfill == 0 {
            end -= STEP_MS; // the step at `end` is pulled by the loop's first round
        }
        loop {
            end += STEP_MS;
            let wait = (end + delay - now_ms()).max(0) as u64;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                _ = stop.wait_for(|v| *v) => return,
            }
            for o in self.one_step(end).await {
                if out.send(o).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Every host's steps ending in `[first_end, last_end]`: one batch per step, oldest first.
    /// A metric whose query fails becomes a gap, re-read by a later round.
    pub async fn backfill_all(&mut self, first_end: i64, last_end: i64) -> Vec<Out> {
        let mut tally = Tally::default();
        let round = self.round(Hosts::All, &Metric::ALL, (first_end, last_end), &mut tally).await;
        for m in round.failed {
            self.gaps.entry(m).or_insert(first_end);
        }
        info!(steps = round.grid.len(), hosts = self.seen.len(), gaps = self.gaps.len(), "backfilled from {}", self.prom.cfg.url);
        self.stats.add("backfilled", "what", "hosts", self.seen.len() as u64);
        self.stats.add("backfilled", "what", "records", round.grid.values().map(|h| h.len() as u64).sum());
        let mut outs: Vec<Out> = round.grid.into_iter().map(|(start, hosts)| batch(start + STEP_MS, [(start, hosts)].into())).collect();
        outs.extend(self.rejections(tally));
        outs
    }

    /// One live step ending at `end`, with the gaps of metrics that answer again re-read and
    /// the history of hosts seen for the first time: one batch (`clock_ms` = `end`).
    pub async fn one_step(&mut self, end: i64) -> Vec<Out> {
        let mut tally = Tally::default();
        let known: HashSet<String> = self.seen.keys().cloned().collect();
        let live = self.round(Hosts::All, &Metric::ALL, (end, end), &mut tally).await;
        let mut grid = live.grid;
        for &m in &live.failed {
            self.gaps.entry(m).or_insert(end);
        }
        let full = self.repair(end, &live.failed, &mut grid, &mut tally).await;
        let new: Vec<String> = self.seen.keys().filter(|h| !known.contains(*h) || self.unfilled.contains(*h)).cloned().collect();
        let backfill = self.backfill_ms();
        // Metrics re-read from the window's start for every host need no per-host backfill.
        let metrics: Vec<Metric> = Metric::ALL.into_iter().filter(|m| !full.contains(m)).collect();
        if backfill > STEP_MS && !new.is_empty() && !metrics.is_empty() {
            let range = (end - backfill + STEP_MS, end - STEP_MS);
            let ok = self.first_sight(&new, &metrics, range, &mut grid, &mut tally).await;
            for raw in new {
                if ok {
                    self.unfilled.remove(&raw);
                } else {
                    self.unfilled.insert(raw);
                }
            }
        } else {
            self.unfilled.clear();
        }
        let mut outs = Vec::new();
        if grid.values().any(|h| !h.is_empty()) {
            outs.push(batch(end, grid));
        }
        outs.extend(self.rejections(tally));
        outs
    }

    fn rejections(&self, tally: Tally) -> Option<Out> {
        (!tally.is_empty()).then(|| Out::Rejections(tally.into_rejections(&self.source, &self.stats, now_ms())))
    }
}
