//! One round of queries: the 14 (or fewer) metrics asked side by side, over one step (an
//! instant query) or a range (`query_range` at step 300 s), the answers read bounded by the
//! fleet limit and folded into a [`Grid`] of records per step and server, each record held to
//! the contract. Exists so every caller (the live step, the start backfill, gap repair, the
//! first-sight backfill of a pulled or pushed host) reads answers the same way.

use futures::future::join_all;
use schemas::{Metric, MetricRecord, RejectReason, ValidationError, STEP_MS};
use tracing::warn;

use super::{Grid, Hosts, Puller, Round};
use crate::align::clean;
use crate::names::server_name;
use crate::promjson::parse;
use crate::promql::pull_expr;
use crate::sink::{Out, Tally};

impl Puller {
    /// Asks `metrics` side by side over `range` (step ends, ms; one end: an instant query),
    /// reads the answers bounded by the fleet limit and folds them into a grid.
    pub(super) async fn round(&mut self, hosts: Hosts<'_>, metrics: &[Metric], (first, last): (i64, i64), tally: &mut Tally) -> Round {
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
                self.stats.add("hosts_over_limit", "metric", metric.name(), over);
                over_max = over_max.max(over);
            }
            for (server, points) in parsed.series {
                for (t, v) in points {
                    grid.entry(t - STEP_MS).or_default().entry(server.clone()).or_default().set(metric, Some(v as f32));
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
    pub(super) fn admit(&mut self, raw: &str, tally: &mut Tally) -> Admit {
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
}

/// What [`Puller::admit`] decided for a host.
pub(super) enum Admit {
    Yes(String),
    OverLimit,
    BadName,
}

/// Adds `from`'s values to `into`, metric by metric (a host's record in both keeps both).
pub(super) fn merge(into: &mut Grid, from: Grid) {
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
pub(super) fn escape(raw: &str) -> String {
    raw.replace('\\', "\\\\").replace('"', "\\\"")
}

/// One batch with `clock_ms`, records oldest step first, servers sorted within a step.
pub(super) fn batch(clock_ms: i64, grid: Grid) -> Out {
    let mut records = Vec::new();
    for (start, hosts) in grid {
        let mut hosts: Vec<_> = hosts.into_iter().collect();
        hosts.sort_by(|a, b| a.0.cmp(&b.0));
        records.extend(hosts.into_iter().map(|(server, metrics)| MetricRecord { server, ts_ms: start, profile: None, metrics }));
    }
    Out::Batch { clock_ms, records }
}
