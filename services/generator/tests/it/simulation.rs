//! The simulation without I/O: determinism, what scenarios do to the fleet, and a property
//! test that whatever happens, every record the generator would publish validates.

use generator::{SimConfig, Simulator};
use proptest::prelude::*;
use schemas::{Scenario, ServerState, ValidationPolicy};

const MONDAY: i64 = 1_767_571_200_000;

fn sim(servers: usize, seed: u64) -> Simulator {
    Simulator::new(SimConfig { servers, seed, start_ms: MONDAY }).unwrap()
}

#[test]
fn same_seed_same_fleet_history() {
    let (mut a, mut b, mut c) = (sim(45, 7), sim(45, 7), sim(45, 8));
    let mut differs = false;
    for _ in 0..600 {
        let (sa, sb, sc) = (a.step().rows.to_vec(), b.step().rows.to_vec(), c.step().rows.to_vec());
        assert_eq!(sa, sb);
        differs |= sa != sc;
    }
    assert!(differs);
}

#[test]
fn a_scenario_switch_does_not_disturb_other_streams() {
    // The operator's picks draw from their own stream: servers it does not touch keep
    // exactly the noise they would have had.
    let (mut a, mut b) = (sim(20, 3), sim(20, 3));
    for _ in 0..10 {
        a.step();
        b.step();
    }
    let switch = b.set_scenario(Scenario::Degrading);
    let untouched: Vec<usize> = (0..20).filter(|i| !switch.current.affected.contains(i)).collect();
    for _ in 0..5 {
        let (ra, rb) = (a.step().rows.to_vec(), b.step().rows.to_vec());
        for &i in &untouched {
            assert_eq!(ra[i], rb[i], "server {i}");
        }
    }
}

#[test]
fn degrading_ramps_the_affected_servers_over_60_steps() {
    let mut s = sim(100, 5);
    for _ in 0..12 {
        s.step();
    }
    let affected = s.set_scenario(Scenario::Degrading).current.affected;
    assert_eq!(affected.len(), 20);
    let mean_cpu = |rows: &[generator::Row]| {
        let v: Vec<f32> = affected.iter().filter_map(|&i| rows[i].metrics).map(|m| 100.0 - m.cpu_idle_pct.unwrap()).collect();
        v.iter().sum::<f32>() / v.len() as f32
    };
    let mut means = Vec::new();
    for k in 0..80 {
        let step = s.step();
        assert!(affected.iter().all(|&i| step.rows[i].scenario == Scenario::Degrading));
        if k % 20 == 0 {
            means.push(mean_cpu(step.rows));
        }
    }
    assert!(means.windows(2).all(|w| w[1] > w[0] - 2.0), "rising through the ramp: {means:?}");
    assert!(means[3] > means[0] + 10.0 && means[3] > 68.0, "{means:?}");
}

#[test]
fn healthy_resets_every_server_and_ends_every_incident() {
    let mut s = sim(45, 11);
    s.set_scenario(Scenario::Cascade);
    for _ in 0..2000 {
        s.step();
    }
    let sw = s.set_scenario(Scenario::Healthy);
    assert_eq!((sw.previous, sw.current.affected.len()), (Scenario::Cascade, 0));
    let step = s.step();
    assert!(step.rows.iter().all(|r| r.scenario == Scenario::Healthy && r.cascade_impact == 0.0));
    // Everyone was reset to healthy, so nobody can be offline one step later.
    assert!(step.rows.iter().all(|r| r.state != ServerState::Offline));
}

#[test]
fn cascade_impact_is_one_at_sources_and_point_eight_downstream() {
    let mut s = sim(45, 2);
    let sources: Vec<usize> = s.set_scenario(Scenario::Cascade).current.affected.into_iter().filter(|&i| i < 45).collect();
    let mut last = Vec::new();
    for _ in 0..30 {
        last = s.step().rows.to_vec();
    }
    let fleet = s.fleet();
    for (i, r) in last.iter().enumerate() {
        let p = fleet.servers[i].profile;
        let want = match p {
            schemas::Profile::Database if r.scenario == Scenario::Cascade => 1.0,
            schemas::Profile::Database | schemas::Profile::Generic => continue,
            _ => 0.8,
        };
        assert!((r.cascade_impact - want).abs() < 1e-6 || r.scenario != Scenario::Cascade, "{}: {r:?}", fleet.servers[i].name);
        if want == 0.8 {
            assert!(r.cascade_impact >= 0.8 - 1e-6, "{}", fleet.servers[i].name);
        }
    }
    assert!(!sources.is_empty());
}

#[test]
fn ten_days_have_every_kind_of_episode_and_state() {
    let mut s = sim(45, 7);
    let mut seen = std::collections::BTreeSet::new();
    let mut states = std::collections::BTreeSet::new();
    for _ in 0..10 * 288 {
        for r in s.step().rows {
            seen.insert(r.scenario.name());
            states.insert(r.state.name());
        }
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(states.len(), 8, "{states:?}");
}

#[test]
fn a_month_of_200_servers_holds_many_examples_of_every_behaviour() {
    // What the training export of `generator export --days 30 --servers 200` holds, seen
    // only through the metrics a model gets.
    const DAY: usize = 288;
    let mut s = sim(200, 7);
    let n = s.fleet().len();
    let mut series: Vec<Vec<Option<schemas::Metrics>>> = vec![Vec::with_capacity(30 * DAY); n];
    for _ in 0..30 * DAY {
        for (i, r) in s.step().rows.iter().enumerate() {
            series[i].push(r.metrics);
        }
    }
    let cpu = |m: &schemas::Metrics| 100.0 - m.cpu_idle_pct.unwrap();
    let (mut restarts, mut cleanups, mut conn_resets, mut runaways, mut idle, mut cron) = (0, 0, 0, 0, 0, 0);
    let (mut hot, mut online) = (0usize, 0usize);
    let mut net = Vec::new();
    for ms in &series {
        let on: Vec<schemas::Metrics> = ms.iter().flatten().copied().collect();
        online += on.len();
        hot += on.iter().filter(|m| cpu(m) >= 95.0 || m.mem_used_pct.unwrap() >= 90.0).count();
        for w in on.windows(2) {
            let (a, b) = (w[0], w[1]);
            let drop = |f: fn(&schemas::Metrics) -> Option<f32>| f(&a).unwrap() - f(&b).unwrap();
            restarts += usize::from(drop(|m| m.mem_used_pct) >= 15.0 && a.mem_used_pct.unwrap() >= 88.0 && b.uptime_days == Some(0.0));
            cleanups += usize::from(drop(|m| m.disk_usage_pct) >= 15.0);
            conn_resets += usize::from(drop(|m| m.back_close_wait).max(drop(|m| m.front_close_wait)) >= 50.0);
        }
        // Runaway CPU: two hours or more at 95 % or above, ended by a restart.
        let mut held = 0;
        for w in ms.windows(2) {
            let (Some(a), Some(b)) = (w[0], w[1]) else {
                held = 0;
                continue;
            };
            held = if cpu(&a) >= 95.0 { held + 1 } else { 0 };
            runaways += usize::from(held >= 24 && cpu(&b) < 80.0 && b.uptime_days == Some(0.0));
        }
        let mean_cpu = on.iter().map(cpu).sum::<f32>() / on.len() as f32;
        idle += usize::from(mean_cpu < 6.0);
        net.push(on.iter().map(|m| m.net_out_mb_s.unwrap()).sum::<f32>() / on.len() as f32);
        // A daily job: the same 5-minute slot is the day's busiest on most days.
        let mut top = vec![0usize; DAY];
        for day in ms.chunks(DAY) {
            let busiest = day.iter().enumerate().filter_map(|(k, m)| m.map(|m| (k, cpu(&m)))).max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((k, _)) = busiest {
                top[k] += 1;
            }
        }
        // Neighbouring slots count together: a 2-3 step job's peak moves within it.
        cron += usize::from((0..DAY).any(|k| top[k] + top[(k + 1) % DAY] + top[(k + 2) % DAY] >= 15));
    }
    let (lo, hi) = net.iter().fold((f32::MAX, 0f32), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
    let hot_share = hot as f64 / online as f64;
    eprintln!(
        "leak restarts {restarts}, disk cleanups {cleanups}, connection resets {conn_resets}, runaways {runaways}, \
         idle servers {idle}, daily jobs {cron}, net-out {lo:.3}..{hi:.0} MB/s, hot share {hot_share:.3}"
    );
    assert!(restarts >= 50, "memory-leak restarts: {restarts}");
    assert!(cleanups >= 50, "disk cleanups: {cleanups}");
    assert!(conn_resets >= 30, "connection-leak resets: {conn_resets}");
    assert!(runaways >= 20, "runaway CPU episodes: {runaways}");
    assert!((10..=35).contains(&idle), "idle servers: {idle}");
    assert!(cron >= 25, "servers with a daily job: {cron}");
    assert!(hi / lo > 1000.0, "network scales over orders of magnitude: {lo}..{hi}");
    assert!(hot_share < 0.1, "most servers are ordinary most of the time: {hot_share}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_record_validates_whatever_happens(
        seed in any::<u64>(),
        servers in 7usize..60,
        start in 0i64..(4 * 365 * 288),
        switches in proptest::collection::vec((0u64..60, 0usize..4), 0..4),
    ) {
        let start_ms = MONDAY + start * schemas::STEP_MS;
        let mut s = Simulator::new(SimConfig { servers, seed, start_ms }).unwrap();
        for k in 0..60u64 {
            for (at, which) in &switches {
                if *at == k {
                    s.set_scenario(Scenario::ALL[*which]);
                }
            }
            let step = s.step();
            let policy = ValidationPolicy::at(step.ts_ms);
            for (rec, row) in step.records().iter().zip(step.rows.iter().filter(|r| r.metrics.is_some())) {
                prop_assert!(rec.validate(&policy).is_ok(), "{:?}", rec.validate(&policy));
                let m = rec.metrics;
                let parts = [m.cpu_user_pct, m.cpu_sys_pct, m.cpu_iowait_pct, m.cpu_idle_pct].map(Option::unwrap);
                prop_assert_eq!(parts.iter().sum::<f32>(), 100.0);
                prop_assert!(m.java_cpu_pct.unwrap() <= m.cpu_user_pct.unwrap());
                prop_assert!(m.known().count() == 14);
                prop_assert!((0.0..=1.0).contains(&row.cascade_impact));
            }
            prop_assert_eq!(step.records().len(), step.rows.iter().filter(|r| r.state != ServerState::Offline).count());
        }
    }
}
