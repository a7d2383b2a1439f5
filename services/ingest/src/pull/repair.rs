//! Catching up what a round did not get: the gaps a failed query left (re-read once the metric
//! answers again) and the history of hosts seen for the first time. Exists so an outage of
//! the query API, or a host that appears later, costs no step the TSDB holds.

use std::collections::{BTreeMap, HashSet};

use schemas::{Metric, STEP_MS};
use tracing::{info, warn};

use super::round::{escape, merge};
use super::{Grid, Hosts, Puller, MIN_REPAIR_MS, SELECTED_BACKFILL_MAX};
use crate::sink::Tally;

impl Puller {
    /// Re-reads the gaps of metrics that answered this round (not those in `failed`), for
    /// every host, into `grid`. Returns the metrics re-read from the first-sight backfill's
    /// start or earlier (a new host's history of those is already in `grid`).
    pub(super) async fn repair(&mut self, end: i64, failed: &[Metric], grid: &mut Grid, tally: &mut Tally) -> HashSet<Metric> {
        // The window the start's backfill covered, slid to `end`, plus the step that slid out.
        let oldest = end - self.backfill_ms().max(MIN_REPAIR_MS);
        let sight_start = end - self.backfill_ms() + STEP_MS;
        let mut by_first: BTreeMap<i64, Vec<Metric>> = BTreeMap::new();
        for (&m, &first) in &self.gaps {
            if first < end && !failed.contains(&m) {
                if first < oldest {
                    let lost = ((oldest - first) / STEP_MS) as u64;
                    self.stats.add("pull_steps_lost", "metric", m.name(), lost);
                    warn!(metric = m.name(), "{lost} steps of the outage are older than the repair window; lost");
                }
                by_first.entry(first.max(oldest)).or_default().push(m);
            }
        }
        let mut full = HashSet::new();
        for (from, metrics) in by_first {
            let r = self.round(Hosts::All, &metrics, (from, end - STEP_MS), tally).await;
            merge(grid, r.grid);
            for m in metrics.into_iter().filter(|m| !r.failed.contains(m)) {
                self.gaps.remove(&m);
                info!(metric = m.name(), "the query API answers again: re-read steps ending {from}..={}", end - STEP_MS);
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
    pub(super) async fn first_sight(
        &mut self,
        new: &[String],
        metrics: &[Metric],
        range: (i64, i64),
        grid: &mut Grid,
        tally: &mut Tally,
    ) -> bool {
        let label = self.prom.cfg.host_label.clone();
        let selectors: Vec<Option<String>> = if new.len() <= SELECTED_BACKFILL_MAX {
            new.iter().map(|raw| Some(format!("{label}=\"{}\"", escape(raw)))).collect()
        } else {
            vec![None]
        };
        let new_servers: HashSet<String> = new.iter().filter_map(|raw| self.seen.get(raw).cloned()).collect();
        info!(hosts = new.len(), "backfilling hosts seen for the first time");
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
}
