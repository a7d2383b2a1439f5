//! Real series for the backtest, as step-by-step [`Metrics`] of one server each:
//!
//! - NAB (`shared/data/nab/*.csv`, `timestamp,value`, 5-minute AWS CloudWatch): each file one
//!   server that reports one metric, as the model card feeds them: CPU utilisation as
//!   `cpu_idle_pct = 100 - value` (target `cpu`); network in bytes per 5 minutes as
//!   `net_in_mb_s = bytes / 300 / 1e6`; disk write bytes as `net_out_mb_s` the same way (the
//!   schema has no disk-throughput metric); request counts as `net_in_mb_s` per 1e6 requests.
//! - Bitbrains (`shared/data/bitbrains/bitbrains-rnd-train.parquet`, real VMs, 5-minute):
//!   each VM one server reporting `cpu_idle_pct = 100 - cpu_pct` (clipped to 0..=100), memory
//!   used in % of provisioned, and network rx/tx in MB/s; scored on `cpu` and `mem`.
//! - A generator export (`generator export`, parquet): every server with its 14 metrics,
//!   scored on all targets.
//!
//! Timestamps are put on the 5-minute step grid (`ts div 300 s`), several samples in one step
//! averaged, missing steps left unreported.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context};
use polars::prelude::*;
use schemas::{Metric, Metrics, Target, STEP_MS};

/// One server's series: its reports per step from `first_step` on (`None` = no report).
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub first_step: i64,
    pub steps: Vec<Option<Metrics>>,
    /// The targets this series is scored on.
    pub scored: Vec<Target>,
    /// Which group the series belongs to, for the report (e.g. `nab`, `bitbrains-holdout`).
    pub group: String,
}

impl Series {
    /// The actual value of `target` at absolute step `step`, if reported.
    pub fn actual(&self, target: Target, step: i64) -> Option<f32> {
        let i = usize::try_from(step - self.first_step).ok()?;
        self.steps.get(i)?.as_ref()?.target(target)
    }

    pub fn last_step(&self) -> i64 {
        self.first_step + self.steps.len() as i64 - 1
    }
}

/// Averages samples `(unix seconds, metrics)` into steps.
fn on_grid(name: String, group: &str, scored: Vec<Target>, samples: impl IntoIterator<Item = (i64, Metrics)>) -> Option<Series> {
    let mut by_step: BTreeMap<i64, (Metrics, [u32; schemas::METRIC_COUNT])> = BTreeMap::new();
    for (ts, m) in samples {
        let (sum, n) = by_step.entry((ts * 1000).div_euclid(STEP_MS)).or_insert((Metrics::default(), [0; schemas::METRIC_COUNT]));
        for (metric, v) in m.known() {
            let i = metric.index();
            sum.set(metric, Some(sum.get(metric).unwrap_or(0.0) + v));
            n[i] += 1;
        }
    }
    let (&first, _) = by_step.first_key_value()?;
    let (&last, _) = by_step.last_key_value()?;
    let mut steps = vec![None; (last - first + 1) as usize];
    for (step, (sum, n)) in by_step {
        let mut m = Metrics::default();
        for metric in Metric::ALL {
            let k = n[metric.index()];
            m.set(metric, sum.get(metric).filter(|_| k > 0).map(|s| s / k as f32));
        }
        steps[(step - first) as usize] = Some(m);
    }
    Some(Series { name, first_step: first, steps, scored, group: group.to_string() })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant, "chrono-Compatible
/// Low-Level Date Algorithms", `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) to Unix seconds.
fn parse_timestamp(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let days = days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?);
    Some(days * 86_400 + num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?)
}

/// Every `*.csv` of a NAB folder, one series each (group `nab`).
pub fn load_nab(dir: &Path) -> anyhow::Result<Vec<Series>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("nab").to_string();
        let (metric, scale): (Metric, fn(f32) -> f32) = if stem.contains("cpu") || stem.starts_with("grok") {
            (Metric::CpuIdle, |v| 100.0 - v.clamp(0.0, 100.0))
        } else if stem.contains("disk_write") {
            (Metric::NetOut, |v| v / 300.0 / 1e6)
        } else {
            (Metric::NetIn, |v| v / 300.0 / 1e6)
        };
        let target = Target::ALL.iter().copied().find(|t| t.source_metric() == metric).unwrap_or(Target::Cpu);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let samples = text.lines().skip(1).filter_map(|line| {
            let (ts, v) = line.split_once(',')?;
            let v: f32 = v.trim().parse().ok().filter(|v: &f32| v.is_finite())?;
            let mut m = Metrics::default();
            m.set(metric, Some(scale(v)));
            Some((parse_timestamp(ts.trim())?, m))
        });
        let name = format!("nab-{}", stem.replace(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'), "_"));
        out.extend(on_grid(name, "nab", vec![target], samples));
    }
    Ok(out)
}

fn read_parquet(path: &Path) -> anyhow::Result<DataFrame> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(ParquetReader::new(file).finish()?)
}

fn f32_column(df: &DataFrame, name: &str) -> anyhow::Result<Vec<Option<f32>>> {
    let c = df.column(name)?.cast(&DataType::Float32)?;
    let ca = c.f32()?;
    Ok((0..ca.len()).map(|i| ca.get(i)).collect())
}

fn i64_column(df: &DataFrame, name: &str) -> anyhow::Result<Vec<Option<i64>>> {
    let c = df.column(name)?.cast(&DataType::Int64)?;
    let ca = c.i64()?;
    Ok((0..ca.len()).map(|i| ca.get(i)).collect())
}

/// The Bitbrains VMs with data between `from_s` and `from_s + days` (Unix seconds), one series
/// each, in group `bitbrains-holdout` when `vm % holdout.0 == holdout.1`, else
/// `bitbrains-tuning`.
pub fn load_bitbrains(path: &Path, from_s: i64, days: i64, holdout: (i64, i64)) -> anyhow::Result<Vec<Series>> {
    let df = read_parquet(path)?;
    let (vm, ts) = (i64_column(&df, "vm")?, i64_column(&df, "ts")?);
    let (cpu, prov, used) = (f32_column(&df, "cpu_pct")?, f32_column(&df, "mem_prov_kb")?, f32_column(&df, "mem_used_kb")?);
    let (rx, tx) = (f32_column(&df, "net_rx_kbs")?, f32_column(&df, "net_tx_kbs")?);
    let to_s = from_s + days * 86_400;
    let mut per_vm: BTreeMap<i64, Vec<(i64, Metrics)>> = BTreeMap::new();
    for i in 0..df.height() {
        let (Some(v), Some(t)) = (vm[i], ts[i]) else { continue };
        if t < from_s || t >= to_s {
            continue;
        }
        let mem = match (prov[i], used[i]) {
            (Some(p), Some(u)) if p > 0.0 => Some((100.0 * u / p).clamp(0.0, 100.0)),
            _ => None,
        };
        let m = Metrics {
            cpu_idle_pct: cpu[i].map(|c| 100.0 - c.clamp(0.0, 100.0)),
            mem_used_pct: mem,
            net_in_mb_s: rx[i].map(|v| v.max(0.0) / 1000.0),
            net_out_mb_s: tx[i].map(|v| v.max(0.0) / 1000.0),
            ..Default::default()
        };
        per_vm.entry(v).or_default().push((t, m));
    }
    if per_vm.is_empty() {
        bail!("no Bitbrains samples between {from_s} and {to_s}");
    }
    Ok(per_vm
        .into_iter()
        .filter_map(|(v, samples)| {
            let group = if v.rem_euclid(holdout.0.max(1)) == holdout.1 { "bitbrains-holdout" } else { "bitbrains-tuning" };
            on_grid(format!("bbvm{v:04}"), group, vec![Target::Cpu, Target::Mem], samples)
        })
        .collect())
}

/// The first `max_servers` servers (by name) of a generator export (group `generated`),
/// scored on every target.
pub fn load_generated(path: &Path, max_servers: usize) -> anyhow::Result<Vec<Series>> {
    let df = read_parquet(path)?;
    let names = df.column("server")?.str()?;
    let server: Vec<Option<String>> = (0..names.len()).map(|i| names.get(i).map(str::to_string)).collect();
    let ts = i64_column(&df, "ts_ms")?;
    let columns: Vec<Vec<Option<f32>>> = Metric::ALL.iter().map(|m| f32_column(&df, m.name())).collect::<Result<_, _>>()?;
    let mut per: BTreeMap<String, Vec<(i64, Metrics)>> = BTreeMap::new();
    for i in 0..df.height() {
        let (Some(s), Some(t)) = (&server[i], ts[i]) else { continue };
        let mut m = Metrics::default();
        for (metric, col) in Metric::ALL.iter().zip(&columns) {
            m.set(*metric, col[i]);
        }
        if m.known().next().is_some() {
            per.entry(s.clone()).or_default().push((t / 1000, m));
        }
    }
    Ok(per.into_iter().take(max_servers).filter_map(|(s, samples)| on_grid(s, "generated", Target::ALL.to_vec(), samples)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_as_utc() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_timestamp("2014-02-14 14:30:00"), Some(1_392_388_200));
        assert_eq!(parse_timestamp("2000-03-01 00:00:05"), Some(951_868_805));
        assert_eq!(parse_timestamp("garbage"), None);
    }

    #[test]
    fn samples_average_into_steps_and_gaps_stay_unknown() {
        let m = |v: f32| Metrics { mem_used_pct: Some(v), ..Default::default() };
        let s = on_grid("x".into(), "g", vec![Target::Mem], [(0, m(10.0)), (100, m(20.0)), (900, m(5.0))]).unwrap();
        assert_eq!(s.steps.len(), 4);
        assert_eq!(s.actual(Target::Mem, 0), Some(15.0));
        assert_eq!(s.actual(Target::Mem, 1), None);
        assert_eq!(s.actual(Target::Mem, 3), Some(5.0));
    }
}
