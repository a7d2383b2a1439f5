//! `--pull history`: remote-write brings the live steps, the query API the past. Exists
//! because push alone starts every host cold: a host the TSDB has known for weeks would need
//! hours of pushed steps before the predictor has a window to forecast from.
//!
//! The first time a host is pushed (the aligner accepts a sample of a host it did not hold),
//! the remote-write receiver reports it here ([`FreshHost`]). Its window (`--backfill`), up to
//! the end of the step before its first pushed sample, is read with `query_range` at step
//! 300 s, restricted to that host (a few hosts: one selected query each; many, as when a whole
//! fleet's first scrape arrives at start: one query for every host, keeping the new ones), and
//! published as one batch whose `clock_ms` is the last step boundary. The push path publishes
//! that host's steps from its first pushed sample on, so the two meet without overlap and the
//! host is forecast at the first tick. Hosts first pushed within [`GATHER_QUIET`] of each
//! other (at most [`GATHER_MAX`]) are backfilled together, so a fleet's first scrape interval
//! costs one set of queries, not one per request. A backfill whose queries failed (the query
//! API down, 5xx, slow: each query retried as in live pull) is tried again after a backoff
//! ([`RETRY_FIRST`] doubling up to [`RETRY_MAX`]); push goes on meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use schemas::{Metric, STEP_MS};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use super::round::{batch, Admit};
use super::{Grid, Puller};
use crate::align::step_start;
use crate::remote_write::{now_ms, FreshHost};
use crate::sink::{Out, Tally};

/// A backfill starts once no new host has been pushed for this long...
pub const GATHER_QUIET: Duration = Duration::from_secs(2);
/// ...or this long after the first new host of the group, whichever comes first.
pub const GATHER_MAX: Duration = Duration::from_secs(20);
/// Wait before a failed backfill is tried again; doubles on each failure...
pub const RETRY_FIRST: Duration = Duration::from_secs(5);
/// ...up to this.
pub const RETRY_MAX: Duration = Duration::from_secs(300);

impl Puller {
    /// Backfills each host reported on `fresh` (see the module doc) until `stop`, or until the
    /// remote-write receiver is gone.
    pub async fn run_history(
        mut self,
        mut fresh: mpsc::UnboundedReceiver<Vec<FreshHost>>,
        out: mpsc::Sender<Out>,
        mut stop: watch::Receiver<bool>,
    ) {
        // Raw host label value -> its first pushed sample (ms), for hosts not backfilled yet.
        let mut pending: HashMap<String, i64> = HashMap::new();
        let add = |pending: &mut HashMap<String, i64>, hosts: Vec<FreshHost>| {
            for h in hosts {
                let first = pending.entry(h.raw).or_insert(h.first_ms);
                *first = (*first).min(h.first_ms);
            }
        };
        let mut retry = RETRY_FIRST;
        loop {
            if pending.is_empty() {
                tokio::select! {
                    got = fresh.recv() => match got {
                        Some(hosts) => add(&mut pending, hosts),
                        None => return,
                    },
                    _ = stop.wait_for(|v| *v) => return,
                }
            } else {
                // The last backfill failed: new hosts queue on `fresh` until the retry.
                tokio::select! {
                    _ = tokio::time::sleep(retry) => {}
                    _ = stop.wait_for(|v| *v) => return,
                }
            }
            let until = Instant::now() + GATHER_MAX;
            loop {
                let quiet = GATHER_QUIET.min(until.saturating_duration_since(Instant::now()));
                tokio::select! {
                    got = fresh.recv() => match got {
                        Some(hosts) => add(&mut pending, hosts),
                        None => break,
                    },
                    _ = tokio::time::sleep(quiet) => break,
                    _ = stop.wait_for(|v| *v) => return,
                }
            }
            for o in self.backfill_pushed(&mut pending).await {
                if out.send(o).await.is_err() {
                    return;
                }
            }
            retry = if pending.is_empty() {
                RETRY_FIRST
            } else {
                warn!(hosts = pending.len(), "history of pushed hosts not read; trying again in {retry:?}");
                (retry * 2).min(RETRY_MAX)
            };
        }
    }

    /// Reads the history of the `pending` hosts (raw label value -> first pushed sample, ms)
    /// into one batch; the hosts whose queries all answered leave `pending`.
    pub async fn backfill_pushed(&mut self, pending: &mut HashMap<String, i64>) -> Vec<Out> {
        let backfill = self.backfill_ms();
        if backfill < STEP_MS {
            pending.clear();
            return Vec::new();
        }
        let mut tally = Tally::default();
        let mut grid = Grid::new();
        // Hosts first pushed in the same step share a range: it ends where push takes over.
        let mut by_end: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for (raw, &first) in pending.iter() {
            by_end.entry(step_start(first)).or_default().push(raw.clone());
        }
        let mut clock = step_start(now_ms());
        for (last_end, raws) in by_end {
            clock = clock.max(last_end);
            // The pushed hosts get their names (and slots under --max-hosts) before the others
            // a query for every host returns. A host push accepted is not refused here; if one
            // were, it could never be read, so it leaves `pending` too.
            let (raws, refused): (Vec<String>, Vec<String>) =
                raws.into_iter().partition(|raw| matches!(self.admit(raw, &mut tally), Admit::Yes(_)));
            refused.iter().for_each(|raw| {
                pending.remove(raw);
            });
            let range = (last_end - backfill + STEP_MS, last_end);
            if self.first_sight(&raws, &Metric::ALL, range, &mut grid, &mut tally).await {
                raws.iter().for_each(|raw| {
                    pending.remove(raw);
                });
            }
        }
        // Names only: the live hosts are the aligner's, bounded there.
        self.seen.clear();
        let hosts: std::collections::HashSet<&String> = grid.values().flat_map(|h| h.keys()).collect();
        let records: usize = grid.values().map(|h| h.len()).sum();
        self.stats.add("backfilled", "what", "hosts", hosts.len() as u64);
        self.stats.add("backfilled", "what", "records", records as u64);
        info!(
            hosts = hosts.len(),
            records,
            steps = grid.len(),
            "history of pushed hosts read (the predictor forecasts a host once it holds a window)"
        );
        let mut outs = Vec::new();
        if grid.values().any(|h| !h.is_empty()) {
            outs.push(batch(clock, grid));
        }
        outs.extend(self.rejections(tally));
        outs
    }
}
