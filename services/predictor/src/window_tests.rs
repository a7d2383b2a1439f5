//! The window's rules, by step: closing, the ring, padding, dirty chunks, restore, and the
//! time rules of real sources (late fills, repeats, steps older than the window).

use super::*;

fn m(idle: f32) -> Metrics {
    Metrics { cpu_idle_pct: Some(idle), ..Default::default() }
}

fn win(cap: usize) -> ServerWindow {
    ServerWindow::new("ppdb001".into(), Profile::Database, 0, cap)
}

/// Unix ms `offset_s` seconds into step `step`.
fn at(step: i64, offset_s: i64) -> i64 {
    step_start(step) + offset_s * 1000
}

#[test]
fn a_later_report_or_the_clock_closes_the_step() {
    let mut w = win(4);
    assert_eq!(w.add(at(10, 0), &m(40.0)), AddOutcome::Added { closed: None });
    assert_eq!(w.add(at(10, 60), &m(60.0)), AddOutcome::Added { closed: None });
    assert_eq!(w.add(at(11, 0), &m(10.0)), AddOutcome::Added { closed: Some(10) });
    assert_eq!(w.step(10).unwrap().to_metrics().cpu_idle_pct, Some(50.0));
    assert_eq!(w.close_until(step_end(11) - 1), None, "clock before the end keeps it open");
    assert_eq!(w.close_until(step_end(11)), Some(11));
    assert_eq!(w.add(at(11, 30), &m(1.0)), AddOutcome::Duplicate, "a closed step's CPU is final");
    assert_eq!(w.add(at(5, 0), &m(1.0)), AddOutcome::TooLate { oldest: 8 });
    assert_eq!(w.observed_steps(), 2);
}

#[test]
fn ring_keeps_the_last_capacity_steps_and_counts_observed() {
    let mut w = win(4);
    for s in 0..10 {
        w.add(at(s, 0), &m(s as f32));
        w.close_until(step_end(s));
    }
    assert_eq!(w.observed_steps(), 4);
    assert!(w.step(5).is_none());
    assert_eq!(w.step(6).unwrap().to_metrics().cpu_idle_pct, Some(6.0));
    // A gap of two steps leaves two unknown steps in the window.
    w.add(at(12, 0), &m(12.0));
    w.close_until(step_end(12));
    assert_eq!(w.observed_steps(), 2, "steps 8 and 9 left, 10-11 unknown, 12 observed -> 9, 12");
    assert!(!w.step(11).unwrap().is_observed());
    // A gap longer than the window empties it.
    w.add(at(40, 0), &m(1.0));
    w.close_until(step_end(40));
    assert_eq!(w.observed_steps(), 1);
}

#[test]
fn fill_past_left_pads_short_histories() {
    let mut w = win(4);
    for s in [100, 101] {
        w.add(at(s, 0), &m(30.0));
        w.close_until(step_end(s));
    }
    let (mut past, mut mask) = (vec![9.0; 4 * METRIC_COUNT], vec![9.0; 4 * METRIC_COUNT]);
    w.fill_past(&mut past, &mut mask);
    let idle = 3; // cpu_idle_pct
    let col = |v: &[f32]| (0..4).map(|k| v[k * METRIC_COUNT + idle]).collect::<Vec<_>>();
    assert_eq!(col(&past), [0.0, 0.0, 30.0, 30.0]);
    assert_eq!(col(&mask), [0.0, 0.0, 1.0, 1.0]);
    assert_eq!(mask.iter().sum::<f32>(), 2.0, "only idle was observed");
    let mut recent = Vec::new();
    w.recent(Target::Cpu, 3, &mut recent);
    assert_eq!(recent, [None, Some(70.0), Some(70.0)]);
    assert_eq!(w.known_span(3), 2);
    assert_eq!(w.observed_mask(), 1 << 3);
    assert_eq!(w.known_span(10), 2);
}

#[test]
fn dirty_chunks_name_what_changed() {
    let mut w = win(24);
    w.add(at(11, 0), &m(1.0));
    w.add(at(12, 0), &m(1.0)); // closes 11 (chunk 0), opens 12 (chunk 1)
    let mut d = Vec::new();
    w.take_dirty(&mut d);
    d.sort();
    assert_eq!(d, [0, 1]);
    w.take_dirty(&mut d);
    assert!(d.is_empty());
}

#[test]
fn restore_rebuilds_the_same_window() {
    let mut a = win(6);
    for s in 0..9 {
        a.add(at(s, 0), &m(s as f32));
        a.add(at(s, 0), &m(s as f32));
    }
    let mut b = win(6);
    for s in 0..=a.last_closed().unwrap() {
        if let Some(v) = a.step(s) {
            b.restore_closed(s, v);
        }
    }
    b.restore_open(*a.open().unwrap(), a.seen().clone());
    assert_eq!(b.observed_steps(), a.observed_steps());
    assert_eq!(b.last_closed(), a.last_closed());
    assert_eq!(b.open(), a.open());
    assert_eq!(b.add(at(8, 0), &m(8.0)), AddOutcome::Duplicate, "the restored step still knows what it counted");
}

fn mem(v: f32) -> Metrics {
    Metrics { mem_used_pct: Some(v), ..Default::default() }
}

/// Rule 2 (CloudWatch-style delay): memory for a step arrives two steps after it closed and
/// fills it; the chunk it lies in is marked for the store.
#[test]
fn a_late_value_inside_the_window_fills_its_step() {
    let mut w = win(24);
    for s in 0..5 {
        w.add(at(s, 0), &m(60.0));
        w.close_until(step_end(s));
    }
    let mut d = Vec::new();
    w.take_dirty(&mut d);
    assert_eq!(w.add(at(2, 0), &mem(45.0)), AddOutcome::Filled);
    let step = w.step(2).unwrap().to_metrics();
    assert_eq!((step.cpu_idle_pct, step.mem_used_pct), (Some(60.0), Some(45.0)));
    assert_eq!(w.observed_mask(), (1 << 3) | (1 << 5), "memory is now known to the forecast");
    w.take_dirty(&mut d);
    assert_eq!(d, [chunk_of(2)], "the filled step is stored");
    assert_eq!(w.add(at(2, 0), &mem(99.0)), AddOutcome::Duplicate, "the same value again counts once");
    assert_eq!(w.step(2).unwrap().to_metrics().mem_used_pct, Some(45.0));
    assert_eq!(w.observed_steps(), 5);
}

/// A step no report came for in time, before the open one, takes the late report alone.
#[test]
fn a_late_value_fills_an_unreported_step_before_the_open_one() {
    let mut w = win(24);
    w.add(at(10, 0), &m(50.0));
    w.close_until(step_end(10));
    w.add(at(13, 0), &m(70.0)); // 11 and 12 unreported, 13 open
    assert_eq!(w.add(at(11, 0), &mem(40.0)), AddOutcome::Filled);
    assert_eq!(w.step(11).unwrap().to_metrics().mem_used_pct, Some(40.0));
    assert_eq!(w.open().unwrap().step, 13, "the open step stays open");
    assert_eq!(w.close_until(step_end(13)), Some(13));
    assert!(!w.step(12).unwrap().is_observed());
    assert_eq!(w.observed_steps(), 3);
    // With no step closed yet, the window counts back from the open step.
    let mut w = win(4);
    w.add(at(20, 0), &m(1.0));
    assert_eq!(w.add(at(17, 0), &m(2.0)), AddOutcome::Filled);
    assert_eq!(w.add(at(16, 0), &m(3.0)), AddOutcome::TooLate { oldest: 17 });
}

/// Rule 2's other half: older than the window is refused, with the oldest step still taken.
#[test]
fn older_than_the_window_is_too_late() {
    let mut w = win(4);
    for s in 0..10 {
        w.add(at(s, 0), &m(1.0));
    }
    // 9 is open, 8 the last closed: a report may still reach 6..=9, the capacity counted
    // back from the newest step (step 5 leaves the ring when 9 closes).
    assert_eq!(w.add(at(6, 0), &m(1.0)), AddOutcome::Duplicate);
    assert_eq!(w.add(at(6, 0), &mem(1.0)), AddOutcome::Filled);
    assert_eq!(w.add(at(5, 0), &mem(1.0)), AddOutcome::TooLate { oldest: 6 }, "9 - 4 + 1");
    assert_eq!(w.add(at(-100, 0), &mem(1.0)), AddOutcome::TooLate { oldest: 6 });
}

/// Rule 4: the numbers. Two reports in a step (CPU used 10 % and 90 %); the first
/// re-sent: 50 %, not 36.7 %.
#[test]
fn a_repeated_report_counts_once() {
    let mut w = win(24);
    let used = |u: f32| m(100.0 - u);
    assert_eq!(w.add(at(7, 0), &used(10.0)), AddOutcome::Added { closed: None });
    assert_eq!(w.add(at(7, 0), &used(10.0)), AddOutcome::Duplicate);
    assert_eq!(w.add(at(7, 150), &used(90.0)), AddOutcome::Added { closed: None });
    // Same time, a metric not yet counted: counted; the repeated CPU in it is not.
    let both = Metrics { cpu_idle_pct: Some(0.0), mem_used_pct: Some(30.0), ..Default::default() };
    assert_eq!(w.add(at(7, 150), &both), AddOutcome::Added { closed: None });
    w.close_until(step_end(7));
    let s = w.step(7).unwrap().to_metrics();
    assert_eq!((s.cpu_idle_pct, s.mem_used_pct), (Some(50.0), Some(30.0)));
    assert!(w.seen().entries().is_empty(), "a closed step forgets its times");
    // After the step closed, the same batch again changes nothing.
    assert_eq!(w.add(at(7, 0), &used(10.0)), AddOutcome::Duplicate);
    assert_eq!(w.step(7).unwrap().to_metrics().cpu_idle_pct, Some(50.0));
}

/// Rule 3, the window's part: reports newest first land in their own steps (the batch is
/// also sorted by time before it is applied, `ingest.rs`).
#[test]
fn reports_newest_first_all_land() {
    let mut w = win(48);
    for s in (0..48).rev() {
        let outcome = w.add(at(s, 0), &m(s as f32));
        assert!(matches!(outcome, AddOutcome::Added { .. } | AddOutcome::Filled), "step {s}: {outcome:?}");
    }
    w.close_until(step_end(47));
    assert_eq!(w.observed_steps(), 48);
    assert_eq!(w.step(0).unwrap().to_metrics().cpu_idle_pct, Some(0.0));
}

/// Every metric, varied by step and server, so a tier mix-up shows in any of them.
fn all(s: i64) -> Metrics {
    let v = |k: i64| Some(((s * 7 + k * 13) % 97) as f32 + 0.5);
    Metrics {
        cpu_user_pct: v(1),
        cpu_sys_pct: v(2),
        cpu_iowait_pct: v(3),
        cpu_idle_pct: v(4),
        java_cpu_pct: v(5),
        mem_used_pct: v(6),
        swap_used_pct: v(7),
        disk_usage_pct: v(8),
        net_in_mb_s: v(9),
        net_out_mb_s: v(10),
        back_close_wait: v(11),
        front_close_wait: v(12),
        load_average: v(13),
        uptime_days: v(14),
    }
}

#[test]
fn a_tiered_window_reads_like_a_whole_one_where_it_is_read() {
    let (cap, full) = (40, 6);
    let mut whole = win(cap);
    let mut tiered = ServerWindow::tiered("ppdb001".into(), Profile::Database, 0, cap, full);
    // Gaps and a step with no target source (java CPU only) on the way.
    for s in (0..90).filter(|s| s % 11 != 3) {
        let m = if s % 17 == 5 { Metrics { java_cpu_pct: Some(3.0), ..Default::default() } } else { all(s) };
        assert_eq!(whole.add(at(s, 0), &m), tiered.add(at(s, 0), &m), "step {s}");
    }
    assert_eq!(tiered.capacity(), cap);
    assert_eq!(tiered.observed_steps(), whole.observed_steps());
    assert_eq!(tiered.observed_mask() & source_bits(), whole.observed_mask() & source_bits());
    assert_eq!(tiered.known_span(36), whole.known_span(36));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for t in Target::ALL {
        whole.history(t, &mut a);
        tiered.history(t, &mut b);
        assert_eq!(a.len(), cap);
        assert!(a.iter().zip(&b).all(|(x, y)| x == y || (x.is_nan() && y.is_nan())), "{t:?}: history differs");
        let (mut ra, mut rb) = (Vec::new(), Vec::new());
        whole.recent(t, 30, &mut ra);
        tiered.recent(t, 30, &mut rb);
        assert_eq!(ra, rb, "{t:?}: recent differs");
    }
    let (mut pa, mut ma, mut pb, mut mb) = (vec![0.0; full * 14], vec![0.0; full * 14], vec![0.0; full * 14], vec![0.0; full * 14]);
    whole.fill_past(&mut pa, &mut ma);
    tiered.fill_past(&mut pb, &mut mb);
    assert_eq!((pa, ma), (pb, mb), "the model's input is the full tier's");
    assert_eq!(whole.latest(), tiered.latest());
    // Before the full tier a step keeps its targets' sources only.
    let last = tiered.last_closed().unwrap();
    let old = tiered.step(last - 10).unwrap();
    assert_eq!(old.mask, whole.step(last - 10).unwrap().mask & source_bits());
    assert_eq!(old.get(Metric::CpuIdle.index()), whole.step(last - 10).unwrap().get(Metric::CpuIdle.index()));
    assert_eq!(tiered.step(last - 2), whole.step(last - 2), "inside the full tier: every metric");
}

#[test]
fn a_late_fill_before_the_full_tier_takes_target_sources_only() {
    let mut w = ServerWindow::tiered("ppdb001".into(), Profile::Database, 0, 20, 4);
    for s in 0..12 {
        w.add(at(s, 0), &Metrics { mem_used_pct: Some(40.0), ..Default::default() });
    }
    let observed = w.observed_steps();
    assert_eq!(w.add(at(2, 30), &Metrics { java_cpu_pct: Some(5.0), ..Default::default() }), AddOutcome::Duplicate, "not kept there");
    assert_eq!(w.add(at(2, 30), &m(70.0)), AddOutcome::Filled, "CPU is a target's source");
    assert_eq!(w.add(at(2, 40), &m(10.0)), AddOutcome::Duplicate, "already filled");
    assert_eq!(w.step(2).unwrap().to_metrics().cpu_idle_pct, Some(70.0));
    assert_eq!(w.observed_steps(), observed);
    let mut cpu = Vec::new();
    w.history(Target::Cpu, &mut cpu);
    assert_eq!(cpu.iter().filter(|v| !v.is_nan()).count(), 1, "the filled step's CPU only");
}

#[test]
fn the_long_tier_keeps_each_target_within_its_half_float_precision() {
    // An idle VM's CPU (0.4 % used), odd fractions, a large NIC rate, one past the half range;
    // the last step (the full tier's one) with values no half float holds.
    let steps = [(99.6, 45.123, 12_345.678), (99.55, 45.2, 70_000.0), (97.3, 45.31, 3.3)];
    let mut w = ServerWindow::tiered("ppdb001".into(), Profile::Database, 0, 12, 1);
    for (s, &(idle, mem, net)) in steps.iter().enumerate() {
        let m = Metrics { cpu_idle_pct: Some(idle), mem_used_pct: Some(mem), net_in_mb_s: Some(net), ..Default::default() };
        w.add(at(s as i64, 0), &m);
    }
    w.close_until(at(steps.len() as i64, 1));
    let close = |got: f32, want: f32| (got - want).abs() <= want.abs() * crate::domain::half::PRECISION;
    let (mut cpu, mut mem, mut net) = (Vec::new(), Vec::new(), Vec::new());
    w.history(Target::Cpu, &mut cpu);
    w.history(Target::Mem, &mut mem);
    w.history(Target::NetIn, &mut net);
    let n = cpu.len();
    for (k, &(idle, m, nic)) in steps.iter().enumerate() {
        let at = n - steps.len() + k;
        assert!(close(cpu[at], 100.0 - idle), "CPU {} for {}: kept as CPU, not as idle", cpu[at], 100.0 - idle);
        assert!(close(mem[at], m), "mem {} for {m}", mem[at]);
        if k == steps.len() - 1 {
            assert_eq!((cpu[at], mem[at], net[at]), (100.0 - idle, m, nic), "the full tier's step reads as reported");
        } else if nic < crate::domain::half::MAX {
            assert!(close(net[at], nic), "net {} for {nic}", net[at]);
        } else {
            assert_eq!(net[at], crate::domain::half::MAX, "past the half range: clamped, never infinite");
        }
    }
    let mut recent = Vec::new();
    w.recent(Target::Cpu, 2, &mut recent);
    assert_eq!(recent[1], Some(100.0 - 97.3));
    assert!(close(recent[0].unwrap(), 100.0 - 99.55));
    // Read back as a step (what a late fill rewrites into KV), CPU is idle again.
    let old = w.step(w.last_closed().unwrap() - 2).unwrap();
    assert!(close(100.0 - old.get(Metric::CpuIdle.index()).unwrap(), 0.4));
}
