//! Hosts coming and going in pull mode, against a real Prometheus filled by remote-write: a
//! host that shows up after ingest started gets its history backfilled on first sight (a
//! forecast-ready window, published in the live round's batch), and an answer with 100,000
//! hosts is cut to the fleet limit, the excess counted and reported, ingest's memory bounded
//! and the service still up.

use std::collections::BTreeSet;
use std::time::Duration;

use ingest::prompb::TimeSeries;
use schemas::{RejectReason, STEP_MS};

use crate::common::{boundary_ago, now_ms, request, series, Stack};
use crate::promdata::{history, live_round_in, prometheus, write};

/// The steps of history the predictor needs before it forecasts a server (`models/tft.json`).
fn min_history_steps() -> usize {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/tft.json");
    let card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).expect("models/tft.json")).expect("JSON");
    card["min_history_steps"].as_u64().expect("min_history_steps") as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_appears_later_is_backfilled_on_first_sight() {
    let prom = prometheus();
    let now = now_ms();
    write(&prom, history("early:9100", now - 90 * 60_000, now)).await;
    let (delay, live_end, round_at) = live_round_in(Duration::from_secs(30));
    let mut s = Stack::start(&["--prometheus-url", &prom.url(), "--backfill", "1h", "--pull-delay", &delay]).await;
    // The start's backfill: `early` only, 12 steps.
    for _ in 0..12 {
        let b = s.next_batch(Duration::from_secs(60)).await;
        let names: Vec<&str> = b.records.iter().map(|r| r.server.as_str()).collect();
        assert_eq!(names, ["early"]);
    }
    // Now a new host appears in Prometheus, with 90 minutes of history.
    let now = now_ms();
    write(&prom, history("late:9100", now - 90 * 60_000, now)).await;
    assert!(now_ms() < round_at, "the test was too slow");

    let b = s.next_batch(Duration::from_secs(90)).await;
    assert_eq!(b.clock_ms, live_end, "the live round");
    let late: Vec<_> = b.records.iter().filter(|r| r.server == "late").collect();
    let steps: BTreeSet<i64> = late.iter().map(|r| r.ts_ms).collect();
    assert_eq!(steps.len(), late.len(), "one record per step");
    let want: BTreeSet<i64> = (1..=12).map(|k| live_end - k * STEP_MS).collect();
    assert_eq!(steps, want, "an hour of history and the live step");
    assert!(steps.len() >= min_history_steps(), "a forecast-ready window: {} steps", steps.len());
    for r in &late {
        let m = &r.metrics;
        let near = |v: Option<f32>, want: f32| v.is_some_and(|v| (v - want).abs() < 0.05);
        // Shares, not levels: where Prometheus's rate() extrapolates a window short of samples
        // (the history was written out of order), every CPU mode is scaled alike.
        let cpu = m.cpu_idle_pct.zip(m.cpu_user_pct).zip(m.cpu_sys_pct);
        let idle_share = cpu.map(|((i, u), s)| i / (i + u + s));
        assert!(near(idle_share, 0.6) && near(m.mem_used_pct, 75.0) && near(m.disk_usage_pct, 40.0) && near(m.load_average, 1.5), "{r:?}");
    }
    let early: Vec<i64> = b.records.iter().filter(|r| r.server == "early").map(|r| r.ts_ms).collect();
    assert_eq!(early, [live_end - STEP_MS], "a known host: its live step only");
}

/// Peak resident memory of process `pid` (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_with_100000_hosts_is_cut_to_the_fleet_limit() {
    const HOSTS: usize = 100_000;
    const LIMIT: usize = 1_000;
    let prom = prometheus();
    // node_load1 of 100,000 synthetic hosts, two samples each inside the last completed step.
    let end = boundary_ago(0);
    let all: Vec<TimeSeries> = (0..HOSTS)
        .map(|i| {
            let host = format!("synth{i:06}:9100");
            series(&[("__name__", "node_load1"), ("instance", &host), ("job", "node")], &[(end - 90_000, 2.0), (end - 30_000, 2.0)])
        })
        .collect();
    write(&prom, all).await;
    let count = prom.query("count(count_over_time(node_load1[15m]))").expect("count");
    assert_eq!(count[0]["value"][1], HOSTS.to_string());

    let started = std::time::Instant::now();
    let mut s =
        Stack::start(&["--prometheus-url", &prom.url(), "--backfill", "1h", "--pull-delay", "0s", "--max-hosts", &LIMIT.to_string()]).await;
    let b = s.next_batch(Duration::from_secs(60)).await;
    assert_eq!(b.clock_ms, end);
    assert_eq!(b.records.len(), LIMIT, "bounded by the fleet limit");
    assert!(b.records.iter().all(|r| r.metrics.load_average == Some(2.0)));

    let r = s.rejection_where(Duration::from_secs(30), |r| r.error.reason == RejectReason::FleetLimit).await;
    let excess = HOSTS - LIMIT;
    assert!(r.error.rule.contains("at most 1000 hosts") && r.error.rule.contains(&format!("{excess} more")), "{}", r.error.rule);
    assert!(r.error.value.starts_with("synth"), "names a host cut: {r:?}");
    // Once per round that saw them (a live round may have run meanwhile).
    for (name, value) in [("hosts_over_limit", "load_average"), ("rejected", "fleet_limit")] {
        let n = s.counter(name, value).await;
        assert!(n >= excess as u64 && n % excess as u64 == 0, "{name}: {n}");
    }

    // Still up: remote-write is answered, and memory stayed bounded.
    let push = request(vec![series(&[("__name__", "node_load1"), ("instance", "synth000001:9100")], &[(now_ms() - 1_000, 1.0)])]);
    assert_eq!(s.write(&push).await, 204);
    let rss = peak_rss_mib(s.ingest.id());
    assert!(rss < 200, "ingest peaked at {rss} MiB");
    eprintln!("100,000-host answer: first batch after {:?}, ingest peak RSS {rss} MiB", started.elapsed());
}
