//! Historical aggregation with polars: the retained per-tick summaries are bucketed by time
//! for the fleet and for one server, servers are ranked over a range, and any table can be
//! exported as CSV. Frames are built from the in-memory store per request (only the
//! historical view and its CSV export ever pay for this).

use polars::prelude::*;

use super::{HistoryStore, TickRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    M30,
    H1,
    H6,
    H24,
    D7,
}

impl Range {
    pub const ALL: [Range; 5] = [Range::M30, Range::H1, Range::H6, Range::H24, Range::D7];

    pub fn parse(s: Option<&str>) -> Range {
        Range::ALL.iter().copied().find(|r| Some(r.name()) == s).unwrap_or(Range::H24)
    }

    pub fn name(self) -> &'static str {
        match self {
            Range::M30 => "30m",
            Range::H1 => "1h",
            Range::H6 => "6h",
            Range::H24 => "24h",
            Range::D7 => "7d",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Range::M30 => "30 minutes",
            Range::H1 => "1 hour",
            Range::H6 => "6 hours",
            Range::H24 => "24 hours",
            Range::D7 => "7 days",
        }
    }

    pub fn ms(self) -> i64 {
        const MIN: i64 = 60_000;
        match self {
            Range::M30 => 30 * MIN,
            Range::H1 => 60 * MIN,
            Range::H6 => 6 * 60 * MIN,
            Range::H24 => 24 * 60 * MIN,
            Range::D7 => 7 * 24 * 60 * MIN,
        }
    }

    /// Bucket width: about 6-48 points per chart, never below one 5-minute step.
    pub fn bucket_ms(self) -> i64 {
        const MIN: i64 = 60_000;
        match self {
            Range::M30 | Range::H1 => 5 * MIN,
            Range::H6 => 15 * MIN,
            Range::H24 => 60 * MIN,
            Range::D7 => 6 * 60 * MIN,
        }
    }
}

/// Start of the range: its length back from the newest tick (source time, not wall clock,
/// so a replayed or accelerated stream reads the same).
pub fn from_ms(store: &HistoryStore, range: Range) -> Option<i64> {
    store.newest_ms().map(|n| n - range.ms() + 1)
}

fn bucket(t: i64, width: i64) -> i64 {
    t.div_euclid(width) * width
}

/// Fleet figures per bucket: mean/max risk, mean probabilities and level counts, alerts
/// opened/resolved, ticks in the bucket.
pub fn fleet(store: &HistoryStore, range: Range) -> PolarsResult<DataFrame> {
    let from = from_ms(store, range).unwrap_or(i64::MAX);
    let rows: Vec<&TickRow> = store.ticks_since(from).collect();
    let b = range.bucket_ms();
    let f32s = |f: fn(&TickRow) -> f32| rows.iter().map(|r| f64::from(f(r))).collect::<Vec<f64>>();
    let u32s = |f: fn(&TickRow) -> u32| rows.iter().map(|r| f64::from(f(r))).collect::<Vec<f64>>();
    let df = df!(
        "time_ms" => rows.iter().map(|r| bucket(r.tick_ms, b)).collect::<Vec<i64>>(),
        "avg_risk" => f32s(|r| r.avg_risk),
        "max_risk" => f32s(|r| r.max_risk),
        "p_incident_30m" => f32s(|r| r.p30),
        "p_incident_8h" => f32s(|r| r.p8h),
        "healthy" => u32s(|r| r.levels[0]),
        "watch" => u32s(|r| r.levels[1]),
        "warning" => u32s(|r| r.levels[2]),
        "critical" => u32s(|r| r.levels[3]),
        "alerts_warning" => u32s(|r| r.alerts_warning),
        "alerts_critical" => u32s(|r| r.alerts_critical),
        "opened" => rows.iter().map(|r| i64::from(r.opened)).collect::<Vec<i64>>(),
        "resolved" => rows.iter().map(|r| i64::from(r.resolved)).collect::<Vec<i64>>(),
    )?;
    df.lazy()
        .group_by([col("time_ms")])
        .agg([
            col("avg_risk").mean(),
            col("max_risk").max(),
            col("p_incident_30m").mean(),
            col("p_incident_8h").mean(),
            col("healthy").mean(),
            col("watch").mean(),
            col("warning").mean(),
            col("critical").mean(),
            col("alerts_warning").mean(),
            col("alerts_critical").mean(),
            col("opened").sum(),
            col("resolved").sum(),
            col("avg_risk").count().alias("ticks"),
        ])
        .sort(["time_ms"], SortMultipleOptions::default())
        .collect()
}

/// One server's risk per bucket (mean, max) and its worst level.
pub fn server(store: &HistoryStore, range: Range, id: u32) -> PolarsResult<DataFrame> {
    let from = from_ms(store, range).unwrap_or(i64::MAX);
    let b = range.bucket_ms();
    let (mut t, mut risk, mut level) = (Vec::new(), Vec::new(), Vec::new());
    let mut pos = 0usize;
    for r in store.ticks_since(from) {
        // Server lists rarely change, so the last position is almost always right.
        if r.servers.get(pos) != Some(&id) {
            match r.servers.iter().position(|s| *s == id) {
                Some(p) => pos = p,
                None => continue,
            }
        }
        if let (Some(rk), Some(lv)) = (r.risk.get(pos), r.level.get(pos)) {
            t.push(bucket(r.tick_ms, b));
            risk.push(f64::from(*rk));
            level.push(i32::from(*lv));
        }
    }
    let df = df!("time_ms" => t, "risk" => risk, "level" => level)?;
    let mut out = df
        .lazy()
        .group_by([col("time_ms")])
        .agg([col("risk").mean().alias("mean_risk"), col("risk").max().alias("max_risk"), col("level").max().alias("worst_level_code")])
        .sort(["time_ms"], SortMultipleOptions::default())
        .collect()?;
    let names: Vec<&str> = i64s(&out, "worst_level_code")
        .into_iter()
        .map(|c| match c {
            Some(3) => "critical",
            Some(2) => "warning",
            Some(1) => "watch",
            Some(_) => "healthy",
            None => "",
        })
        .collect();
    out.with_column(Column::new("worst_level".into(), names))?;
    Ok(out)
}

/// The `n` servers with the highest mean risk over the range.
pub fn top_servers(store: &HistoryStore, range: Range, n: usize) -> PolarsResult<DataFrame> {
    let from = from_ms(store, range).unwrap_or(i64::MAX);
    let (mut ids, mut risk, mut crit) = (Vec::new(), Vec::new(), Vec::new());
    for r in store.ticks_since(from) {
        for ((id, rk), lv) in r.servers.iter().zip(&r.risk).zip(&r.level) {
            ids.push(*id);
            risk.push(f64::from(*rk));
            crit.push(u32::from(*lv == 3));
        }
    }
    let df = df!("server_id" => ids, "risk" => risk, "critical" => crit)?;
    let mut out = df
        .lazy()
        .group_by([col("server_id")])
        .agg([col("risk").mean().alias("mean_risk"), col("risk").max().alias("max_risk"), col("critical").sum().alias("critical_ticks")])
        .sort(["mean_risk", "server_id"], SortMultipleOptions::default().with_order_descending_multi([true, false]))
        .limit(n as IdxSize)
        .collect()?;
    let names: Vec<String> =
        i64s(&out, "server_id").into_iter().map(|id| id.map(|i| store.name(i as u32).to_string()).unwrap_or_default()).collect();
    out.with_column(Column::new("server".into(), names))?;
    out.select(["server", "mean_risk", "max_risk", "critical_ticks"])
}

pub fn csv(df: &mut DataFrame) -> PolarsResult<Vec<u8>> {
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf).include_header(true).finish(df)?;
    Ok(buf)
}

/// A column as f64 values (any numeric type), missing column or nulls as `None`.
pub fn f64s(df: &DataFrame, name: &str) -> Vec<Option<f64>> {
    let Ok(c) = df.column(name).and_then(|c| c.cast(&DataType::Float64)) else { return vec![None; df.height()] };
    match c.f64() {
        Ok(ca) => (0..ca.len()).map(|i| ca.get(i)).collect(),
        Err(_) => vec![None; df.height()],
    }
}

pub fn i64s(df: &DataFrame, name: &str) -> Vec<Option<i64>> {
    let Ok(c) = df.column(name).and_then(|c| c.cast(&DataType::Int64)) else { return vec![None; df.height()] };
    match c.i64() {
        Ok(ca) => (0..ca.len()).map(|i| ca.get(i)).collect(),
        Err(_) => vec![None; df.height()],
    }
}

pub fn strings(df: &DataFrame, name: &str) -> Vec<String> {
    let Ok(c) = df.column(name) else { return vec![String::new(); df.height()] };
    match c.str() {
        Ok(ca) => (0..ca.len()).map(|i| ca.get(i).unwrap_or("").to_string()).collect(),
        Err(_) => vec![String::new(); df.height()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    fn store(servers: usize, ticks: usize) -> HistoryStore {
        let mut h = HistoryStore::default();
        for t in fixture::ticks(&fixture::Spec { servers, seq: 5000, ..Default::default() }, ticks) {
            h.push_tick(t).unwrap();
        }
        h
    }

    #[test]
    fn fleet_buckets_cover_the_range() {
        let h = store(20, 300);
        let df = fleet(&h, Range::H24).unwrap();
        // 24 h at 1 h buckets: 24 or 25 buckets depending on alignment
        assert!((24..=25).contains(&df.height()), "{}", df.height());
        let ticks: i64 = i64s(&df, "ticks").into_iter().flatten().sum();
        assert_eq!(ticks, 288, "every tick of the last 24 h counted once");
        let times = i64s(&df, "time_ms");
        assert!(times.windows(2).all(|w| w[0] < w[1]));
        let short = fleet(&h, Range::M30).unwrap();
        assert_eq!(i64s(&short, "ticks").into_iter().flatten().sum::<i64>(), 6);
    }

    #[test]
    fn server_series_and_ranking() {
        let h = store(20, 100);
        let id = h.id_of("ppweb001").unwrap();
        let df = server(&h, Range::H6, id).unwrap();
        assert!(df.height() >= 24);
        assert!(f64s(&df, "mean_risk").iter().all(|v| v.is_some_and(|v| (0.0..=100.0).contains(&v))));
        let top = top_servers(&h, Range::H6, 5).unwrap();
        assert_eq!(top.height(), 5);
        let means: Vec<f64> = f64s(&top, "mean_risk").into_iter().flatten().collect();
        assert!(means.windows(2).all(|w| w[0] >= w[1]));
        assert!(strings(&top, "server").iter().all(|s| s.starts_with("pp")));
    }

    #[test]
    fn csv_has_a_header_and_rows() {
        let h = store(5, 20);
        let mut df = fleet(&h, Range::H1).unwrap();
        let text = String::from_utf8(csv(&mut df).unwrap()).unwrap();
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("time_ms,avg_risk,max_risk"));
        assert_eq!(lines.count(), df.height());
    }

    #[test]
    fn empty_store_gives_empty_frames() {
        let h = HistoryStore::default();
        assert_eq!(fleet(&h, Range::D7).unwrap().height(), 0);
        assert_eq!(top_servers(&h, Range::D7, 3).unwrap().height(), 0);
        assert_eq!(Range::parse(Some("7d")), Range::D7);
        assert_eq!(Range::parse(Some("bogus")), Range::H24);
    }
}
