//! The fleet the tick benchmarks feed through a real predictor (`predictor/benches/bench_tick.rs`,
//! `e2e/examples/cluster_tick.rs`): one definition of its servers, their metrics, how a step is
//! published and how its tick summaries are awaited, so the benchmarks measure the same load and
//! their figures compare. Also the per-process measures they read (`/proc`).
//!
//! A step is published as the generator publishes it: parts of at most [`PART_RECORDS`] records,
//! each with its `Fleetcast-Part` header; with `partitions > 1` each partition's servers go on
//! `metrics.batch.bench.<partition>` (`schemas::partition`), parts counted within the partition.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use schemas::history::TickSummary;
use schemas::{MetricRecord, Metrics, MetricsBatch, STEP_MS};

/// The source name in the batches (`metrics.batch.bench[.<partition>]`).
pub const SOURCE: &str = "bench";
/// Most records per published part.
pub const PART_RECORDS: usize = 1000;
/// How long one tick summary may take to arrive before the benchmark gives up.
const SUMMARY_TIMEOUT: Duration = Duration::from_secs(300);

/// Plausible metrics of server `i` at step `step`: a slow wave per server, phases spread.
pub fn metrics(i: usize, step: i64) -> Metrics {
    let wave = ((step as f32) * 0.2 + i as f32 * 0.37).sin();
    let busy = 25.0 + 15.0 * wave + (i % 5) as f32 * 4.0;
    Metrics {
        cpu_user_pct: Some(busy * 0.7),
        cpu_sys_pct: Some(busy * 0.2),
        cpu_iowait_pct: Some(busy * 0.1),
        cpu_idle_pct: Some(100.0 - busy),
        java_cpu_pct: Some(busy * 0.4),
        mem_used_pct: Some(45.0 + 25.0 * wave.abs()),
        swap_used_pct: Some(3.0),
        disk_usage_pct: Some(40.0 + (i % 40) as f32),
        net_in_mb_s: Some(20.0 + 10.0 * wave.abs()),
        net_out_mb_s: Some(12.0),
        back_close_wait: Some(2.0),
        front_close_wait: Some(1.0),
        load_average: Some(2.0 + 2.0 * wave.abs()),
        uptime_days: Some(40.0),
    }
}

/// `n` servers ([`crate::server_names`], 5 digits) split into `partitions` by name.
pub struct BenchFleet {
    names: Vec<String>,
    partitions: u16,
    /// Per partition (index = partition): the indices into `names` of its servers.
    members: Vec<Vec<usize>>,
}

/// One partition's summary of a step and when it arrived.
#[derive(Debug, Clone)]
pub struct PartitionTick {
    pub partition: u16,
    /// Milliseconds from the `since` given to [`BenchFleet::wait_step`] to its arrival.
    pub after_ms: f64,
    pub summary: TickSummary,
}

impl BenchFleet {
    pub fn new(n: usize, partitions: u16) -> BenchFleet {
        let names = crate::server_names(n, 5);
        let partitions = partitions.max(1);
        let mut members = vec![Vec::new(); usize::from(partitions)];
        for (i, name) in names.iter().enumerate() {
            members[usize::from(schemas::partition::of(name, partitions))].push(i);
        }
        BenchFleet { names, partitions, members }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn partitions(&self) -> u16 {
        self.partitions
    }

    /// Servers of each partition (index = partition).
    pub fn sizes(&self) -> Vec<usize> {
        self.members.iter().map(Vec::len).collect()
    }

    /// One step of every server, each partition in parts of at most [`PART_RECORDS`] records
    /// (same `seq`, the `Fleetcast-Part` header counting the partition's parts); returns once
    /// METRICS has acknowledged every part.
    pub async fn publish_step(&self, js: &jetstream::Context, step: i64) -> anyhow::Result<()> {
        let start = step * STEP_MS;
        let mut acks = Vec::new();
        for (p, members) in self.members.iter().enumerate() {
            let subject = schemas::partition::metrics_batch_subject(SOURCE, p as u16, self.partitions);
            let parts = members.len().div_ceil(PART_RECORDS);
            for (k, part) in members.chunks(PART_RECORDS).enumerate() {
                let records = part
                    .iter()
                    .map(|&i| MetricRecord { server: self.names[i].clone(), ts_ms: start, profile: None, metrics: metrics(i, step) })
                    .collect();
                let batch = MetricsBatch::new(SOURCE, step as u64, start + STEP_MS, records);
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(schemas::subjects::PART_HEADER, schemas::subjects::part_header(k, parts).as_str());
                acks.push(js.publish_with_headers(subject.clone(), headers, schemas::encode(&batch)?.into()).await?);
            }
        }
        for a in acks {
            a.await?;
        }
        Ok(())
    }

    /// Waits on `summaries` (a subscription to `history.tick`) until every partition with
    /// servers has sent a summary of `step` or later naming all its servers; returns them by
    /// partition (the newest of each), timed from `since`.
    pub async fn wait_step(&self, summaries: &mut async_nats::Subscriber, step: i64, since: Instant) -> anyhow::Result<Vec<PartitionTick>> {
        let want = step * STEP_MS;
        let mut got: Vec<Option<PartitionTick>> = vec![None; self.members.len()];
        // A summary split in parts (`TickSummary::split`, large fleets) is put back together.
        let mut assembling: Vec<Option<TickSummary>> = vec![None; self.members.len()];
        while got.iter().zip(&self.members).any(|(g, m)| g.is_none() && !m.is_empty()) {
            let msg = tokio::time::timeout(SUMMARY_TIMEOUT, summaries.next())
                .await
                .map_err(|_| anyhow::anyhow!("no tick summary of step {step} within {SUMMARY_TIMEOUT:?}"))?
                .ok_or_else(|| anyhow::anyhow!("summary subscription closed"))?;
            let after_ms = since.elapsed().as_secs_f64() * 1000.0;
            let s: TickSummary = schemas::decode(&msg.payload)?;
            let Some(first) = s.servers.first() else { continue };
            let p = schemas::partition::of(first, self.partitions);
            let s = match s.part {
                None => s,
                Some((k, _)) => {
                    let slot = &mut assembling[usize::from(p)];
                    let joined = k > 0 && slot.as_mut().is_some_and(|a| a.absorb(s.clone()));
                    if !joined {
                        *slot = Some(s);
                    }
                    match slot.clone() {
                        Some(a) => a,
                        None => continue,
                    }
                }
            };
            if s.tick_ms >= want && s.servers.len() == self.members[usize::from(p)].len() {
                got[usize::from(p)] = Some(PartitionTick { partition: p, after_ms, summary: s });
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    /// Publishes `warm` steps from `first` on and waits until the tick of the last has every
    /// server forecast (ticks run while the backlog drains); gives up after `limit`. Returns
    /// how long it took.
    pub async fn warm_up(
        &self,
        js: &jetstream::Context,
        summaries: &mut async_nats::Subscriber,
        first: i64,
        warm: i64,
        limit: Duration,
    ) -> anyhow::Result<Duration> {
        let clock = Instant::now();
        for s in first..first + warm {
            self.publish_step(js, s).await?;
        }
        loop {
            let ticks = self.wait_step(summaries, first + warm - 1, clock).await?;
            let ready: usize = ticks.iter().map(|t| t.summary.fleet.ready as usize).sum();
            if ready == self.len() {
                return Ok(clock.elapsed());
            }
            anyhow::ensure!(clock.elapsed() < limit, "after warm-up {ready} of {} ready", self.len());
        }
    }
}

/// The first step to publish so that the warm-up (`min_history` steps and one more), then
/// `ticks` measured steps, all lie in the past (the predictor closes them at once), 4 hours
/// (48 steps) before now at the latest.
pub fn first_step(min_history: i64, ticks: usize) -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    now / STEP_MS - 48 - min_history - ticks as i64
}

/// Resident and peak resident memory of process `pid` in MiB (`/proc/<pid>/status`; zeros
/// when it is gone).
pub fn rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds (user + system) process `pid` has used so far (`/proc/<pid>/stat`, in Linux's
/// fixed 100 ticks per second of the user ABI); 0 when it is gone.
pub fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis
    // start at field 3, so utime and stime (fields 14 and 15) are the 12th and 13th there.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().skip(11).take(2).filter_map(|v| v.parse().ok()).collect();
    f.iter().sum::<f64>() / 100.0
}

/// The `q` quantile (0..=1) of `v` by rank (sorts `v`); NaN when empty.
pub fn pct(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_cover_the_fleet_once() {
        let f = BenchFleet::new(1000, 8);
        assert_eq!(f.sizes().iter().sum::<usize>(), 1000);
        assert!(f.sizes().iter().all(|&s| s > 60), "{:?}", f.sizes());
        assert_eq!(BenchFleet::new(10, 1).sizes(), [10]);
    }

    #[test]
    fn own_process_is_measured() {
        let me = std::process::id();
        assert!(rss_mb(me).0 > 0.0);
        let deadline = Instant::now() + Duration::from_secs(5);
        while cpu_s(me) == 0.0 && Instant::now() < deadline {
            std::hint::black_box((0..100_000u64).sum::<u64>());
        }
        assert!(cpu_s(me) > 0.0);
        assert_eq!(cpu_s(u32::MAX), 0.0);
        assert_eq!(pct(&mut [3.0, 1.0, 2.0, 4.0], 0.5), 2.0);
        assert!(pct(&mut [], 0.5).is_nan());
    }
}
