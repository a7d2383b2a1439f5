//! Pull mode: PromQL over HTTP against any Prometheus-compatible query API (`--prometheus-url`).
//! Exists so a team's existing TSDB feeds Fleetcast with no change to its Prometheus, and so a
//! host it already knows is forecast at the first tick: at start, and on first sight of a host,
//! a `query_range` at step 300 s backfills the window (`--backfill`, 24 h by default).
//!
//! Each step (at its end `T` plus `--pull-delay`, so the last scrapes have landed) one instant
//! query per Fleetcast metric (`promql::pull_expr`) returns every host at once. A failing query
//! (Prometheus down, 5xx, slow) is retried with backoff; if it still fails the metric is unknown
//! for that step and the others go on. More hosts than `--max-hosts` are cut and counted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use schemas::{Metric, MetricRecord, Metrics, RejectReason, ValidationError, STEP_MS};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::align::{clean, step_start};
use crate::names::server_name;
use crate::promapi::Prom;
use crate::promql::pull_expr;
use crate::remote_write::now_ms;
use crate::sink::{Out, Tally};
use crate::stats::Stats;

/// The pull loop's state: hosts seen (raw label value -> server name) and what it reports to.
pub struct Puller {
    prom: Prom,
    seen: HashMap<String, String>,
    source: String,
    stats: Arc<Stats>,
}

/// Records of several steps: step start -> server -> metrics.
type Grid = BTreeMap<i64, HashMap<String, Metrics>>;

impl Puller {
    pub fn new(prom: Prom, source: &str, stats: Arc<Stats>) -> Puller {
        Puller {
            prom,
            seen: HashMap::new(),
            source: source.to_owned(),
            stats,
        }
    }

    /// Backfills, then pulls one step per 5 minutes until `stop`.
    pub async fn run(mut self, out: mpsc::Sender<Out>, mut stop: watch::Receiver<bool>) {
        let delay = self.prom.cfg.delay.as_millis() as i64;
        let mut end = step_start(now_ms() - delay);
        let backfill = (self.prom.cfg.backfill.as_millis() as i64 / STEP_MS) * STEP_MS;
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
    pub async fn backfill_all(&mut self, first_end: i64, last_end: i64) -> Vec<Out> {
        let mut tally = Tally::default();
        let grid = self.grid("", Some((first_end, last_end)), &mut tally).await;
        info!(
            steps = grid.len(),
            hosts = self.seen.len(),
            "backfilled from {}",
            self.prom.cfg.url
        );
        let mut outs: Vec<Out> = grid
            .into_iter()
            .map(|(start, hosts)| batch(start + STEP_MS, [(start, hosts)].into()))
            .collect();
        outs.extend(self.rejections(tally));
        outs
    }

    /// One live step ending at `end`, with the history of hosts seen for the first time.
    pub async fn one_step(&mut self, end: i64) -> Vec<Out> {
        let mut tally = Tally::default();
        let known: HashSet<String> = self.seen.keys().cloned().collect();
        let mut grid = self.grid("", Some((end, end)), &mut tally).await;
        let backfill = self.prom.cfg.backfill.as_millis() as i64 / STEP_MS * STEP_MS;
        let new: Vec<String> = self
            .seen
            .keys()
            .filter(|h| !known.contains(*h))
            .cloned()
            .collect();
        if backfill > STEP_MS && !new.is_empty() {
            let range = Some((end - backfill + STEP_MS, end - STEP_MS));
            // A few new hosts: one selected query each; many (a start whose backfill failed):
            // one query for all, keeping the new hosts' rows.
            let selectors: Vec<String> = if new.len() <= 20 {
                new.iter()
                    .map(|raw| format!("{}=\"{}\"", self.prom.cfg.host_label, escape(raw)))
                    .collect()
            } else {
                vec![String::new()]
            };
            let new_servers: HashSet<String> = new
                .iter()
                .filter_map(|raw| self.seen.get(raw).cloned())
                .collect();
            for sel in selectors {
                for (start, mut hosts) in self.grid(&sel, range, &mut tally).await {
                    hosts.retain(|server, _| new_servers.contains(server));
                    grid.entry(start).or_default().extend(hosts);
                }
            }
        }
        let mut outs = Vec::new();
        if grid.values().any(|h| !h.is_empty()) {
            outs.push(batch(end, grid));
        }
        outs.extend(self.rejections(tally));
        outs
    }

    /// Asks every metric over `range` (step ends, ms) and folds the answers into a grid.
    async fn grid(&mut self, sel: &str, range: Option<(i64, i64)>, tally: &mut Tally) -> Grid {
        let (first, last) = range.unwrap_or((0, 0));
        let mut grid = Grid::new();
        for metric in Metric::ALL {
            let expr = pull_expr(metric, &self.prom.cfg.host_label, sel);
            let answer = if first == last {
                self.prom.query(&expr, last, None).await
            } else {
                self.prom.query(&expr, last, Some((first, last))).await
            };
            let series = match answer {
                Ok(s) => s,
                Err(e) => {
                    self.stats.add("pull_errors", "metric", metric.name(), 1);
                    warn!(metric = metric.name(), "left unknown this step: {e}");
                    continue;
                }
            };
            let mut over = 0u64;
            for (raw, points) in series {
                let Some(server) = self.admit(&raw, tally) else {
                    over += 1;
                    continue;
                };
                for (t, v) in points {
                    grid.entry(t - STEP_MS)
                        .or_default()
                        .entry(server.clone())
                        .or_default()
                        .set(metric, Some(v as f32));
                }
            }
            if over > 0 {
                self.stats
                    .add("hosts_over_limit", "metric", metric.name(), over);
                let rule = format!(
                    "ingest keeps at most {} hosts (--max-hosts); {over} more cut",
                    self.prom.cfg.max_hosts
                );
                tally.add(
                    ValidationError::new(
                        "server",
                        format!("{over} hosts"),
                        RejectReason::FleetLimit,
                        rule,
                    ),
                    None,
                );
            }
        }
        for (_, hosts) in grid.iter_mut() {
            hosts.retain(|server, m| {
                let mut errors = Vec::new();
                let keep = clean(m, &mut errors);
                errors.into_iter().for_each(|e| tally.add(e, Some(server)));
                keep && m.known().next().is_some()
            });
        }
        grid
    }

    /// The server name of a host label value, if the host fits the fleet bound.
    fn admit(&mut self, raw: &str, tally: &mut Tally) -> Option<String> {
        if let Some(name) = self.seen.get(raw) {
            return Some(name.clone());
        }
        if self.seen.len() >= self.prom.cfg.max_hosts {
            return None;
        }
        match server_name(&self.prom.cfg.host_label, raw) {
            Ok(name) => {
                self.seen.insert(raw.to_owned(), name.clone());
                Some(name)
            }
            Err(e) => {
                tally.add(e, None);
                None
            }
        }
    }

    fn rejections(&self, tally: Tally) -> Option<Out> {
        (!tally.is_empty())
            .then(|| Out::Rejections(tally.into_rejections(&self.source, &self.stats, now_ms())))
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
