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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use schemas::{Metric, MetricRecord, Metrics, RejectReason, ValidationError, STEP_MS};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::align::{clean, step_start};
use crate::names::server_name;
use crate::promapi::Prom;
use crate::promjson::parse;
use crate::promql::pull_expr;
use crate::remote_write::now_ms;
use crate::sink::{Out, Tally};
use crate::stats::Stats;

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
        Puller {
            prom,
            seen: HashMap::new(),
            unfilled: HashSet::new(),
            gaps: BTreeMap::new(),
            source: source.to_owned(),
            stats,
        }
    }

    fn backfill_ms(&self) -> i64 {
        self.prom.cfg.backfill.as_millis() as i64 / STEP_MS * STEP_MS
    }

    /// Backfills, then pulls one step per 5 minutes until `stop`.
    pub async fn run(mut self, out: mpsc::Sender<Out>, mut stop: watch::Receiver<bool>) {
        let delay = self.prom.cfg.delay.as_millis() as i64;
        let mut end = step_start(now_ms() - delay);
        let backfill = self.backfill_ms();
        let first = if backfill > 0 {
            self.backfill_all(end - backfill + STEP_MS, end).await
        } else {
            Vec::new()
        };
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
        let round = self
            .round(Hosts::All, &Metric::ALL, (first_end, last_end), &mut tally)
            .await;
        for m in round.failed {
            self.gaps.entry(m).or_insert(first_end);
        }
        info!(
            steps = round.grid.len(),
            hosts = self.seen.len(),
            gaps = self.gaps.len(),
            "backfilled from {}",
            self.prom.cfg.url
        );
        let mut outs: Vec<Out> = round
            .grid
            .into_iter()
            .map(|(start, hosts)| batch(start + STEP_MS, [(start, hosts)].into()))
            .collect();
        outs.extend(self.rejections(tally));
        outs
    }

    /// One live step ending at `end`, with the gaps of metrics that answer again re-read and
    /// the history of hosts seen for the first time: one batch (`clock_ms` = `end`).
    pub async fn one_step(&mut self, end: i64) -> Vec<Out> {
        let mut tally = Tally::default();
        let known: HashSet<String> = self.seen.keys().cloned().collect();
        let live = self
            .round(Hosts::All, &Metric::ALL, (end, end), &mut tally)
            .await;
        let mut grid = live.grid;
        for &m in &live.failed {
            self.gaps.entry(m).or_insert(end);
        }
        let full = self.repair(end, &live.failed, &mut grid, &mut tally).await;
        let new: Vec<String> = self
            .seen
            .keys()
            .filter(|h| !known.contains(*h) || self.unfilled.contains(*h))
            .cloned()
            .collect();
        let backfill = self.backfill_ms();
        // Metrics re-read from the window's start for every host need no per-host backfill.
        let metrics: Vec<Metric> = Metric::ALL
            .into_iter()
            .filter(|m| !full.contains(m))
            .collect();
        if backfill > STEP_MS && !new.is_empty() && !metrics.is_empty() {
            let range = (end - backfill + STEP_MS, end - STEP_MS);
            let ok = self
                .first_sight(&new, &metrics, range, &mut grid, &mut tally)
                .await;
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

    /// Re-reads the gaps of metrics that answered this round (not those in `failed`), for
    /// every host, into `grid`. Returns the metrics re-read from the first-sight backfill's
    /// start or earlier (a new host's history of those is already in `grid`).
    async fn repair(
        &mut self,
        end: i64,
        failed: &[Metric],
        grid: &mut Grid,
        tally: &mut Tally,
    ) -> HashSet<Metric> {
        // The window the start's backfill covered, slid to `end`, plus the step that slid out.
        let oldest = end - self.backfill_ms().max(MIN_REPAIR_MS);
        let sight_start = end - self.backfill_ms() + STEP_MS;
        let mut by_first: BTreeMap<i64, Vec<Metric>> = BTreeMap::new();
        for (&m, &first) in &self.gaps {
            if first < end && !failed.contains(&m) {
                if first < oldest {
                    let lost = ((oldest - first) / STEP_MS) as u64;
                    self.stats.add("pull_steps_lost", "metric", m.name(), lost);
                    warn!(
                        metric = m.name(),
                        "{lost} steps of the outage are older than the repair window; lost"
                    );
                }
                by_first.entry(first.max(oldest)).or_default().push(m);
            }
        }
        let mut full = HashSet::new();
        for (from, metrics) in by_first {
            let r = self
                .round(Hosts::All, &metrics, (from, end - STEP_MS), tally)
                .await;
            merge(grid, r.grid);
            for m in metrics.into_iter().filter(|m| !r.failed.contains(m)) {
                self.gaps.remove(&m);
                info!(
                    metric = m.name(),
                    "the query API answers again: re-read steps ending {from}..={}",
                    end - STEP_MS
                );
                if from <= sight_start {
                    full.insert(m);
                }
            }
        }
        full
    }

    /// Backfills hosts seen for the first time (or whose backfill failed) over `range`: a few
    /// by one selected query each, many by one query for all, keeping the new hosts' rows.
    /// False if any query failed.
    async fn first_sight(
        &mut self,
        new: &[String],
        metrics: &[Metric],
        range: (i64, i64),
        grid: &mut Grid,
        tally: &mut Tally,
    ) -> bool {
        let label = self.prom.cfg.host_label.clone();
        let selectors: Vec<Option<String>> = if new.len() <= SELECTED_BACKFILL_MAX {
            new.iter()
                .map(|raw| Some(format!("{label}=\"{}\"", escape(raw))))
                .collect()
        } else {
            vec![None]
        };
        let new_servers: HashSet<String> = new
            .iter()
            .filter_map(|raw| self.seen.get(raw).cloned())
            .collect();
        info!(
            hosts = new.len(),
            "backfilling hosts seen for the first time"
        );
        let mut ok = true;
        for sel in selectors {
            let hosts = sel.as_deref().map_or(Hosts::All, Hosts::Only);
            let mut r = self.round(hosts, metrics, range, tally).await;
            ok &= r.failed.is_empty();
            for hosts in r.grid.values_mut() {
                hosts.retain(|server, _| new_servers.contains(server));
            }
            merge(grid, r.grid);
        }
        ok
    }

    /// Asks `metrics` side by side over `range` (step ends, ms; one end: an instant query),
    /// reads the answers bounded by the fleet limit and folds them into a grid.
    async fn round(
        &mut self,
        hosts: Hosts<'_>,
        metrics: &[Metric],
        (first, last): (i64, i64),
        tally: &mut Tally,
    ) -> Round {
        let sel = match hosts {
            Hosts::All => "",
            Hosts::Only(s) => s,
        };
        let prom = &self.prom;
        let label = prom.cfg.host_label.clone();
        let range = (first != last).then_some((first, last));
        let answers = join_all(metrics.iter().map(|&m| async move {
            let expr = pull_expr(m, &prom.cfg.host_label, sel);
            (m, prom.query(m.name(), &expr, last, range).await)
        }))
        .await;
        let mut grid = Grid::new();
        let mut failed = Vec::new();
        let (mut over_max, mut first_over) = (0u64, None::<String>);
        for (metric, answer) in answers {
            let mut over = 0u64;
            let parsed = match answer {
                Err(e) => Err(e.to_string()),
                Ok(body) => parse(&body, &label, |raw| match self.admit(raw, tally) {
                    Admit::Yes(server) => Some(server),
                    Admit::OverLimit => {
                        over += 1;
                        first_over.get_or_insert_with(|| raw.to_owned());
                        None
                    }
                    Admit::BadName => None,
                })
                .map_err(|what| {
                    self.stats.add("query_failures", "reason", "bad_answer", 1);
                    format!("{}: unexpected answer: {what}", self.prom.cfg.url)
                }),
            };
            let parsed = match parsed {
                Ok(p) => p,
                Err(e) => {
                    self.stats.add("pull_errors", "metric", metric.name(), 1);
                    warn!(
                        metric = metric.name(),
                        "left unknown for steps ending {first}..={last}, re-read once the query API answers: {e}"
                    );
                    failed.push(metric);
                    continue;
                }
            };
            if over > 0 {
                self.stats
                    .add("hosts_over_limit", "metric", metric.name(), over);
                over_max = over_max.max(over);
            }
            for (server, points) in parsed.series {
                for (t, v) in points {
                    grid.entry(t - STEP_MS)
                        .or_default()
                        .entry(server.clone())
                        .or_default()
                        .set(metric, Some(v as f32));
                }
            }
        }
        if over_max > 0 {
            let rule = format!(
                "ingest keeps at most {} hosts (--max-hosts); {over_max} more hosts in the answer were cut",
                self.prom.cfg.max_hosts
            );
            warn!("{rule}");
            let first = first_over.unwrap_or_default();
            let e = ValidationError::new("server", first, RejectReason::FleetLimit, rule);
            tally.add_n(e, None, over_max);
        }
        for hosts in grid.values_mut() {
            hosts.retain(|server, m| {
                let mut errors = Vec::new();
                let keep = clean(m, &mut errors);
                errors.into_iter().for_each(|e| tally.add(e, Some(server)));
                keep && m.known().next().is_some()
            });
        }
        Round { grid, failed }
    }

    /// The server name of a host label value, if the host fits the fleet bound.
    fn admit(&mut self, raw: &str, tally: &mut Tally) -> Admit {
        if let Some(name) = self.seen.get(raw) {
            return Admit::Yes(name.clone());
        }
        if self.seen.len() >= self.prom.cfg.max_hosts {
            return Admit::OverLimit;
        }
        match server_name(&self.prom.cfg.host_label, raw) {
            Ok(name) => {
                self.seen.insert(raw.to_owned(), name.clone());
                Admit::Yes(name)
            }
            Err(e) => {
                tally.add(e, None);
                Admit::BadName
            }
        }
    }

    fn rejections(&self, tally: Tally) -> Option<Out> {
        (!tally.is_empty())
            .then(|| Out::Rejections(tally.into_rejections(&self.source, &self.stats, now_ms())))
    }
}

/// What [`Puller::admit`] decided for a host.
enum Admit {
    Yes(String),
    OverLimit,
    BadName,
}

/// Adds `from`'s values to `into`, metric by metric (a host's record in both keeps both).
fn merge(into: &mut Grid, from: Grid) {
    for (start, hosts) in from {
        let step = into.entry(start).or_default();
        for (server, metrics) in hosts {
            let slot = step.entry(server).or_default();
            for (m, v) in metrics.known() {
                slot.set(m, Some(v));
            }
        }
    }
}

/// A label value inside a PromQL double-quoted string.
fn escape(raw: &str) -> String {
    raw.replace('\\', "\\\\").replace('"', "\\\"")
}

/// One batch with `clock_ms`, records oldest step first, servers sorted within a step.
fn batch(clock_ms: i64, grid: Grid) -> Out {
    let mut records = Vec::new();
    for (start, hosts) in grid {
        let mut hosts: Vec<_> = hosts.into_iter().collect();
        hosts.sort_by(|a, b| a.0.cmp(&b.0));
        records.extend(hosts.into_iter().map(|(server, metrics)| MetricRecord {
            server,
            ts_ms: start,
            profile: None,
            metrics,
        }));
    }
    Out::Batch { clock_ms, records }
}
