//! Unit tests of the aligner: steps, rates, resets, stale markers, late and future samples.

use super::*;
use crate::mapping::{classify, Feature};

const T0: i64 = 1_767_571_200_000; // a step boundary
const WALL: i64 = T0 + 86_400_000;

fn key(name: &str, pairs: &[(&str, &str)]) -> (SeriesKey, Kind) {
    classify(name, |n| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)).expect("a mapped series")
}

fn feed(a: &mut Aligner, host: &str, name: &str, pairs: &[(&str, &str)], ts: i64, v: f64) -> Outcome {
    let (k, kind) = key(name, pairs);
    a.push(host, &k, kind, ts, v, WALL)
}

#[test]
fn steps_are_floored_to_300_s() {
    assert_eq!(step_start(T0), T0);
    assert_eq!(step_start(T0 + STEP_MS - 1), T0);
    assert_eq!(step_start(-1), -STEP_MS);
    assert!(is_stale_marker(f64::from_bits(STALE_NAN_BITS)));
    assert!(!is_stale_marker(f64::NAN));
}

#[test]
fn gauges_average_and_counters_rate_within_a_step() {
    let mut a = Aligner::new(AlignConfig::default());
    for i in 0..10 {
        let ts = T0 + i * 30_000;
        assert_eq!(feed(&mut a, "h1", "node_load1", &[], ts, if i % 2 == 0 { 1.0 } else { 3.0 }), Outcome::Accepted);
        // 0.25 s idle per second on one CPU.
        feed(&mut a, "h1", "node_cpu_seconds_total", &[("cpu", "0"), ("mode", "idle")], ts, 1000.0 + 0.25 * (i * 30) as f64);
        feed(&mut a, "h1", "node_cpu_seconds_total", &[("cpu", "0"), ("mode", "user")], ts, 50.0 + 0.75 * (i * 30) as f64);
    }
    assert!(a.close_ready(WALL - 3_600_000).is_empty(), "nothing is past the step's end yet");
    feed(&mut a, "h1", "node_load1", &[], T0 + STEP_MS + 60_000, 1.0);
    let closed = a.close_ready(WALL - 3_600_000);
    assert_eq!(closed.len(), 1);
    let c = &closed[0];
    assert_eq!((c.start_ms, c.end_ms, c.records.len()), (T0, T0 + STEP_MS, 1));
    let m = &c.records[0].metrics;
    assert_eq!((c.records[0].server.as_str(), c.records[0].ts_ms), ("h1", T0));
    assert_eq!(m.load_average, Some(2.0));
    assert!((m.cpu_idle_pct.unwrap() - 25.0).abs() < 1e-3 && (m.cpu_user_pct.unwrap() - 75.0).abs() < 1e-3, "{m:?}");
    assert_eq!(m.mem_used_pct, None, "never reported: unknown");
}

#[test]
fn a_counter_reset_counts_the_new_value_not_a_negative_rate() {
    let mut a = Aligner::new(AlignConfig::default());
    let eth = [("device", "eth0")];
    // 1 MB/s, then the host reboots (counter back to 0) and goes on at 1 MB/s.
    for (i, v) in [(0, 5e9), (1, 5e9 + 60e6), (2, 30e6), (3, 90e6), (4, 150e6)] {
        assert_eq!(feed(&mut a, "h1", "node_network_receive_bytes_total", &eth, T0 + i * 60_000, v), Outcome::Accepted);
    }
    feed(&mut a, "h1", "node_load1", &[], T0 + STEP_MS + 60_000, 1.0);
    let rec = &a.close_ready(WALL)[0].records[0];
    let mb_s = rec.metrics.net_in_mb_s.unwrap();
    // 60 + 30 + 60 + 60 MB over 240 s: the reset loses only the part before the restart.
    assert!((mb_s - 210.0 / 240.0).abs() < 1e-3, "{mb_s}");
}

#[test]
fn stale_markers_are_no_value_and_other_nans_are_rejected() {
    let mut a = Aligner::new(AlignConfig::default());
    let stale = f64::from_bits(STALE_NAN_BITS);
    assert_eq!(feed(&mut a, "h1", "node_load1", &[], T0, stale), Outcome::Stale);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let Outcome::Rejected(e) = feed(&mut a, "h1", "node_load1", &[], T0, bad) else { panic!("{bad} accepted") };
        assert_eq!((e.field.as_str(), e.reason), ("sample.value", RejectReason::NotFinite));
    }
    // A stale marker ends a counter's run: no rate from the pair around it.
    let cpu = [("cpu", "0"), ("mode", "idle")];
    feed(&mut a, "h1", "node_cpu_seconds_total", &cpu, T0, 100.0);
    feed(&mut a, "h1", "node_cpu_seconds_total", &cpu, T0 + 10_000, stale);
    feed(&mut a, "h1", "node_cpu_seconds_total", &cpu, T0 + 20_000, 100.0);
    feed(&mut a, "h1", "node_load1", &[], T0 + 30_000, 4.0);
    feed(&mut a, "h2", "node_load1", &[], T0 + STEP_MS + 60_000, 1.0);
    let closed = a.close_ready(WALL);
    let m = &closed[0].records[0].metrics;
    assert_eq!((m.load_average, m.cpu_idle_pct), (Some(4.0), None));
}

#[test]
fn a_host_that_disappears_and_comes_back_gets_no_rate_across_the_gap() {
    let mut a = Aligner::new(AlignConfig::default());
    let tx = [("device", "eth0")];
    feed(&mut a, "h1", "node_network_transmit_bytes_total", &tx, T0, 0.0);
    feed(&mut a, "h1", "node_network_transmit_bytes_total", &tx, T0 + 60_000, 60e6);
    // Gone for an hour, back with a much larger counter.
    let back = T0 + 12 * STEP_MS;
    feed(&mut a, "h1", "node_network_transmit_bytes_total", &tx, back, 9e12);
    feed(&mut a, "h1", "node_network_transmit_bytes_total", &tx, back + 60_000, 9e12 + 120e6);
    feed(&mut a, "h1", "node_load1", &[], back + STEP_MS + 60_000, 1.0);
    let closed = a.close_ready(WALL);
    let rates: Vec<_> = closed.iter().filter_map(|c| c.records.first()).filter_map(|r| r.metrics.net_out_mb_s).collect();
    assert_eq!(rates.len(), 2, "{closed:?}");
    assert!((rates[0] - 1.0).abs() < 1e-3 && (rates[1] - 2.0).abs() < 1e-3, "{rates:?}");
}

#[test]
fn late_future_and_duplicate_samples() {
    let mut a = Aligner::new(AlignConfig::default());
    feed(&mut a, "h1", "node_load1", &[], T0, 1.0);
    feed(&mut a, "h1", "node_load1", &[], T0 + STEP_MS + 60_000, 1.0);
    assert_eq!(a.close_ready(WALL).len(), 1);
    let Outcome::Rejected(late) = feed(&mut a, "h1", "node_load1", &[], T0 + 1, 1.0) else { panic!("late accepted") };
    assert_eq!((late.field.as_str(), late.reason), ("sample.timestamp", RejectReason::TimestampSkew));
    let Outcome::Rejected(future) = feed(&mut a, "h1", "node_load1", &[], WALL + 3_600_000, 1.0) else { panic!() };
    assert_eq!(future.reason, RejectReason::TimestampSkew);
    let cpu = [("cpu", "0"), ("mode", "idle")];
    feed(&mut a, "h1", "node_cpu_seconds_total", &cpu, T0 + STEP_MS + 1_000, 1.0);
    assert_eq!(feed(&mut a, "h1", "node_cpu_seconds_total", &cpu, T0 + STEP_MS + 1_000, 1.0), Outcome::Duplicate);
}

#[test]
fn the_host_bound_rejects_new_hosts_only() {
    let mut a = Aligner::new(AlignConfig { max_hosts: 2, ..Default::default() });
    for h in ["a", "b"] {
        assert_eq!(feed(&mut a, h, "node_load1", &[], T0, 1.0), Outcome::Accepted);
    }
    let Outcome::Rejected(e) = feed(&mut a, "c", "node_load1", &[], T0, 1.0) else { panic!() };
    assert_eq!((e.field.as_str(), e.reason), ("server", RejectReason::FleetLimit));
    assert_eq!(feed(&mut a, "a", "node_load1", &[], T0 + 1, 1.0), Outcome::Accepted);
}

#[test]
fn every_host_of_a_step_is_in_its_batch_and_idle_steps_close() {
    let mut a = Aligner::new(AlignConfig::default());
    for h in ["b", "a", "c"] {
        feed(&mut a, h, "node_memory_MemTotal_bytes", &[], T0 + 1_000, 8e9);
        feed(&mut a, h, "node_memory_MemAvailable_bytes", &[], T0 + 1_000, 2e9);
    }
    // No later sample arrives: the step closes after idle_close of wall time.
    assert!(a.close_ready(WALL).is_empty());
    let closed = a.close_ready(WALL + AlignConfig::default().idle_close_ms);
    let names: Vec<_> = closed[0].records.iter().map(|r| r.server.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(closed[0].records.iter().all(|r| r.metrics.mem_used_pct == Some(75.0)));
    assert_eq!(a.open_steps(), 0);
    let _ = Feature::Load1;
}
