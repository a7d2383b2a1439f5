//! Chart models built from snapshot and history data with the geometry in `charts.rs`:
//! the per-target forecast chart (P10-P90 band, P50, recent actuals, thresholds, a "now"
//! line), the overview sparkline, and time-series charts for the historical view.

use schemas::snapshot::TargetHistory;
use schemas::{Target, TargetForecast};

use crate::charts::{self, Frame, Scale};
use crate::format;

pub struct Tick {
    pub at: f32,
    pub label: String,
    /// SVG text-anchor: edge labels hug the plot so they are not clipped.
    pub anchor: &'static str,
}

/// Anchors the first x label at its start and the last at its end.
fn anchor_edges(mut ticks: Vec<Tick>, left: f32, right: f32) -> Vec<Tick> {
    for t in &mut ticks {
        t.anchor = if t.at - left < 12.0 {
            "start"
        } else if right - t.at < 12.0 {
            "end"
        } else {
            "middle"
        };
    }
    ticks
}

pub struct HLine {
    pub y: f32,
    pub label: String,
}

pub struct ForecastChart {
    pub id: &'static str,
    pub title: &'static str,
    /// Which method made the forecast shown (e.g. "TFT model", "Robust trend"), if any.
    pub method: Option<&'static str>,
    pub width: f32,
    pub height: f32,
    pub left: f32,
    pub right: f32,
    pub top: f32,
    pub bottom: f32,
    pub band: String,
    pub p50: String,
    pub hist: String,
    pub now_x: f32,
    pub y_ticks: Vec<Tick>,
    pub x_ticks: Vec<Tick>,
    pub warn: Option<HLine>,
    pub crit: Option<HLine>,
    /// Text alternative: what the chart says in one sentence.
    pub summary: String,
}

const STEPS_PER_HOUR: i32 = 12;

/// One target's chart. x is in steps relative to now (past <= 0 < future).
pub fn forecast(
    target: Target,
    recent: Option<&TargetHistory>,
    fc: Option<&TargetForecast>,
    (warn, crit): (Option<f32>, Option<f32>),
) -> ForecastChart {
    let frame = Frame { width: 560.0, height: 190.0, left: 44.0, right: 10.0, top: 10.0, bottom: 24.0 };
    let hist: &[Option<f32>] = recent.map(|r| r.values.as_slice()).unwrap_or(&[]);
    let horizon = fc.map(|f| f.p50.len()).unwrap_or(0);
    let x_min = -(hist.len().saturating_sub(1) as f32).max(if horizon == 0 { 1.0 } else { 0.0 });
    let x_max = (horizon as f32).max(1.0);
    let mut values: Vec<f32> = hist.iter().flatten().copied().collect();
    if let Some(f) = fc {
        values.extend(f.p10.iter().chain(&f.p90).copied());
    }
    values.extend(warn.iter().chain(crit.iter()).copied());
    let (floor, ceil) = if target.unit().is_percent() { (Some(0.0), Some(100.0)) } else { (Some(0.0), None) };
    let (y_min, y_max) = charts::nice_range(values, floor, ceil);
    let s = Scale { frame, x_min, x_max, y_min, y_max };

    let n = hist.len() as i32;
    let hist_d = charts::line_path(hist.iter().enumerate().map(|(i, v)| ((i as i32 - n + 1) as f32, *v)), &s);
    let (band, p50, summary) = match fc {
        Some(f) if !f.p50.is_empty() => {
            let xs: Vec<f32> = (1..=f.p50.len()).map(|k| k as f32).collect();
            let band = charts::band_path(&xs, &f.p10, &f.p90, &s);
            let p50 = charts::line_path(xs.iter().zip(&f.p50).map(|(x, v)| (*x, Some(*v))), &s);
            let last = f.p50.len() - 1;
            let hours = f.p50.len() as f32 / STEPS_PER_HOUR as f32;
            let summary = format!(
                "{} in {:.0} h ({}): P50 {}, P10–P90 {} – {}",
                target.label(),
                hours,
                f.method.label(),
                format::target_value(target, f.p50.get(last).copied()),
                format::target_value(target, f.p10.get(last).copied()),
                format::target_value(target, f.p90.get(last).copied()),
            );
            (band, p50, summary)
        }
        _ => (String::new(), String::new(), format!("{}: no forecast yet (warming up)", target.label())),
    };
    let y_ticks = y_axis(&s);
    let first_hour = (x_min as i32).div_euclid(STEPS_PER_HOUR * 2) * 2;
    let x_ticks = (first_hour..=(x_max as i32 / STEPS_PER_HOUR))
        .step_by(2)
        .map(|h| h * STEPS_PER_HOUR)
        .filter(|st| (*st as f32) >= x_min && (*st as f32) <= x_max)
        .map(|st| Tick {
            at: charts::px(s.x(st as f32)),
            anchor: "middle",
            label: match st {
                0 => "now".into(),
                st if st > 0 => format!("+{}h", st / STEPS_PER_HOUR),
                st => format!("{}h", st / STEPS_PER_HOUR),
            },
        })
        .collect();
    let line = |v: Option<f32>, name: &str| {
        v.filter(|v| v.is_finite() && *v >= y_min && *v <= y_max)
            .map(|v| HLine { y: charts::px(s.y(v)), label: format!("{name} {}", format::target_value(target, Some(v))) })
    };
    ForecastChart {
        id: target.name(),
        title: target.label(),
        method: fc.filter(|f| !f.p50.is_empty()).map(|f| f.method.label()),
        width: frame.width,
        height: frame.height,
        left: frame.plot_left(),
        right: frame.plot_right(),
        top: frame.plot_top(),
        bottom: frame.plot_bottom(),
        band,
        p50,
        hist: hist_d,
        now_x: charts::px(s.x(0.0)),
        y_ticks,
        x_ticks: anchor_edges(x_ticks, frame.plot_left(), frame.plot_right()),
        warn: line(warn, "warning"),
        crit: line(crit, "critical"),
        summary,
    }
}

/// The y axis's ticks (about 4 intervals over the scale's range), labelled with as many
/// decimals as their step needs: a network of 0.002 MB/s read "0" on every tick before.
fn y_axis(s: &Scale) -> Vec<Tick> {
    let values = charts::ticks(s.y_min, s.y_max, 4);
    let step = values.windows(2).map(|w| w[1] - w[0]).next().unwrap_or(1.0);
    let decimals = charts::step_decimals(step);
    values.into_iter().map(|v| Tick { at: charts::px(s.y(v)), label: format!("{v:.decimals$}"), anchor: "end" }).collect()
}

/// A 120x28 P10-P90 band with the P50 line, for table rows.
pub struct Sparkline {
    pub p50: String,
    pub label: &'static str,
}

/// The overview's sparkline: the summary's coarse P50 (one point per 20 min, each the highest
/// of its steps; `schemas::Sparkline`), on 0-100 for percentages.
pub fn sparkline(spark: Option<&schemas::Sparkline>) -> Option<Sparkline> {
    let s = spark.filter(|s| s.p50.iter().any(|v| v.is_some_and(f32::is_finite)))?;
    let frame = Frame { width: 120.0, height: 28.0, left: 1.0, right: 1.0, top: 2.0, bottom: 2.0 };
    let ceil = if s.target.unit().is_percent() { Some(100.0) } else { None };
    let (y_min, y_max) = charts::nice_range(s.p50.iter().flatten().copied(), Some(0.0), ceil);
    let n = s.p50.len();
    let scale = Scale { frame, x_min: 0.0, x_max: n.saturating_sub(1).max(1) as f32, y_min, y_max };
    Some(Sparkline { p50: charts::line_path(s.p50.iter().enumerate().map(|(i, v)| (i as f32, *v)), &scale), label: s.target.label() })
}

pub struct SeriesPath {
    pub class: &'static str,
    pub d: String,
}

/// A time-series chart: lines and/or stacked areas over Unix-ms x values.
pub struct SeriesChart {
    pub width: f32,
    pub height: f32,
    pub left: f32,
    pub right: f32,
    pub top: f32,
    pub bottom: f32,
    pub areas: Vec<SeriesPath>,
    pub lines: Vec<SeriesPath>,
    pub y_ticks: Vec<Tick>,
    pub x_ticks: Vec<Tick>,
}

/// Narrowest gap (pixels) between two time labels ("12-01 02:00" is about 70 px wide).
const MIN_LABEL_GAP: f32 = 80.0;

/// Up to five time labels at the points nearest a quarter, a half... of the x range (`xs`:
/// seconds from the first point, `xs_ms` their times), each at least [`MIN_LABEL_GAP`] from
/// the one before; the last point is always labelled. Picked by position, not by index: with a
/// gap in the history, the quarter points by index sat 45 px apart and their labels overlapped.
fn time_ticks(xs: &[f32], xs_ms: &[i64], s: &Scale) -> Vec<Tick> {
    let (Some(&span), true) = (xs.last(), xs.len() == xs_ms.len()) else { return Vec::new() };
    let at = |i: usize| charts::px(s.x(xs[i]));
    let nearest = |target: f32| {
        let i = xs.partition_point(|&x| x < target).min(xs.len() - 1);
        if i > 0 && target - xs[i - 1] <= xs[i] - target {
            i - 1
        } else {
            i
        }
    };
    let last = xs.len() - 1;
    // The first point, then the quarter points with room on both sides, then the last point.
    let mut picked = vec![0];
    for f in [0.25, 0.5, 0.75] {
        let i = nearest(f * span);
        if picked.last().is_some_and(|&p| at(i) - at(p) >= MIN_LABEL_GAP) && at(last) - at(i) >= MIN_LABEL_GAP {
            picked.push(i);
        }
    }
    if picked.last().is_some_and(|&p| at(last) - at(p) >= MIN_LABEL_GAP) {
        picked.push(last);
    }
    picked
        .into_iter()
        .map(|i| Tick { at: at(i), label: format::utc_ms(xs_ms[i]).get(5..16).unwrap_or("").to_string(), anchor: "middle" })
        .collect()
}

/// `lines`: (css class, values); `stack`: (css class, values) layered bottom-up.
pub fn series(
    xs_ms: &[i64],
    lines: &[(&'static str, Vec<Option<f64>>)],
    stack: &[(&'static str, Vec<f64>)],
    y_ceil: Option<f32>,
) -> SeriesChart {
    let frame = Frame { width: 900.0, height: 200.0, left: 40.0, right: 12.0, top: 10.0, bottom: 24.0 };
    let xs: Vec<f32> = xs_ms.iter().map(|&t| ((t - xs_ms.first().copied().unwrap_or(0)) / 1000) as f32).collect();
    let mut values: Vec<f32> = lines.iter().flat_map(|(_, v)| v.iter().flatten().map(|x| *x as f32)).collect();
    let totals: Vec<f32> = (0..xs.len()).map(|i| stack.iter().map(|(_, v)| v.get(i).copied().unwrap_or(0.0) as f32).sum()).collect();
    values.extend(totals);
    values.push(0.0);
    let (y_min, y_max) = charts::nice_range(values, Some(0.0), y_ceil);
    let x_max = xs.last().copied().unwrap_or(1.0).max(1.0);
    let s = Scale { frame, x_min: 0.0, x_max, y_min, y_max };
    // Each stretch without a gap in time is drawn on its own, so nothing is drawn across a gap.
    let runs = charts::runs_without_gaps(xs_ms);
    let mut areas: Vec<SeriesPath> = stack.iter().map(|(class, _)| SeriesPath { class, d: String::new() }).collect();
    for run in &runs {
        let layers: Vec<Vec<f32>> =
            stack.iter().map(|(_, v)| v.get(run.clone()).unwrap_or_default().iter().map(|x| *x as f32).collect()).collect();
        for (area, d) in areas.iter_mut().zip(charts::stacked_paths(&xs[run.clone()], &layers, &s)) {
            area.d.push_str(&d);
        }
    }
    let lines = lines
        .iter()
        .map(|(class, v)| {
            // A missing value between runs lifts the pen.
            let points = runs.iter().flat_map(|run| {
                run.clone().map(|i| (xs[i], v.get(i).copied().flatten().map(|y| y as f32))).chain(std::iter::once((0.0, None)))
            });
            SeriesPath { class, d: charts::line_path(points, &s) }
        })
        .collect();
    let y_ticks = y_axis(&s);
    let x_ticks = time_ticks(&xs, xs_ms, &s);
    SeriesChart {
        width: frame.width,
        height: frame.height,
        left: frame.plot_left(),
        right: frame.plot_right(),
        top: frame.plot_top(),
        bottom: frame.plot_bottom(),
        areas,
        lines,
        y_ticks,
        x_ticks: anchor_edges(x_ticks, frame.plot_left(), frame.plot_right()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn forecast_chart_has_every_part() {
        let s = fixture::server("ppweb001", schemas::Profile::WebApi, 80.0, 0);
        let t = Target::Cpu;
        let c = forecast(t, s.recent.iter().find(|r| r.target == t), s.forecast_of(t), (Some(85.0), Some(95.0)));
        assert!(c.band.starts_with('M') && c.band.ends_with('Z'));
        assert!(c.p50.starts_with('M'));
        assert!(c.hist.starts_with('M'));
        assert!(c.hist.matches('M').count() >= 2, "the fixture's gap breaks the history line");
        assert!(c.now_x > c.left && c.now_x < c.right);
        assert!(c.crit.is_some() && c.warn.is_some());
        let labels: Vec<&str> = c.x_ticks.iter().map(|t| t.label.as_str()).collect();
        assert!(labels.contains(&"now") && labels.contains(&"+8h") && labels.contains(&"-2h"), "{labels:?}");
        assert!(c.summary.starts_with("CPU used in 8 h (TFT model): P50"), "{}", c.summary);
        assert_eq!(c.method, Some("TFT model"));
    }

    #[test]
    fn y_labels_have_the_decimals_their_step_needs() {
        let frame = Frame { width: 400.0, height: 200.0, left: 40.0, right: 10.0, top: 10.0, bottom: 24.0 };
        let labels =
            |y_min, y_max| y_axis(&Scale { frame, x_min: 0.0, x_max: 1.0, y_min, y_max }).into_iter().map(|t| t.label).collect::<Vec<_>>();
        assert_eq!(labels(0.0, 100.0), ["0", "25", "50", "75", "100"]);
        assert_eq!(labels(0.0, 0.002), ["0.0000", "0.0005", "0.0010", "0.0015", "0.0020"]);
        assert_eq!(labels(20.0, 22.0), ["20.0", "20.5", "21.0", "21.5", "22.0"]);
        let tiny = labels(0.0, 0.004);
        assert!(tiny.iter().collect::<std::collections::BTreeSet<_>>().len() == tiny.len(), "distinct labels: {tiny:?}");
    }

    #[test]
    fn time_labels_never_crowd_even_across_a_gap_in_the_history() {
        // 46 points: 8 an hour apart, a 13 h gap, then 38 five minutes apart (an operator's
        // history page after a restart).
        let mut xs_ms: Vec<i64> = (0..8).map(|h| h * 3_600_000).collect();
        let resume = 7 * 3_600_000 + 13 * 3_600_000;
        xs_ms.extend((0..38).map(|k| resume + k * 300_000));
        let c = series(&xs_ms, &[("avg", vec![Some(1.0); 46])], &[], None);
        let at: Vec<f32> = c.x_ticks.iter().map(|t| t.at).collect();
        assert!(at.windows(2).all(|w| w[1] - w[0] >= MIN_LABEL_GAP), "{at:?}");
        assert!(at.len() >= 3, "{at:?}");
        assert_eq!(c.x_ticks.last().map(|t| t.at), Some(c.right), "the newest point is labelled");
        assert_eq!(c.x_ticks.first().map(|t| t.at), Some(c.left));
    }

    #[test]
    fn nothing_is_drawn_across_a_gap_in_time() {
        let mut xs_ms: Vec<i64> = (0..8).map(|k| k * 300_000).collect();
        xs_ms.extend((0..8).map(|k| 13 * 3_600_000 + k * 300_000));
        let c = series(&xs_ms, &[("avg", vec![Some(1.0); 16])], &[("f-healthy", vec![2.0; 16])], None);
        assert_eq!(c.lines[0].d.matches('M').count(), 2, "{}", c.lines[0].d);
        assert_eq!(c.areas[0].d.matches('M').count(), 2, "{}", c.areas[0].d);
        let even: Vec<i64> = (0..16).map(|k| k * 300_000).collect();
        let c = series(&even, &[("avg", vec![Some(1.0); 16])], &[("f-healthy", vec![2.0; 16])], None);
        assert_eq!((c.lines[0].d.matches('M').count(), c.areas[0].d.matches('M').count()), (1, 1));
    }

    #[test]
    fn warming_server_draws_history_only() {
        let s = fixture::server("ppdb001", schemas::Profile::Database, 10.0, 0);
        let c = forecast(Target::Mem, s.recent.first(), None, (None, None));
        assert!(c.band.is_empty() && c.p50.is_empty());
        assert!(!c.hist.is_empty());
        assert!(c.summary.contains("warming up"));
        let empty = forecast(Target::Mem, None, None, (None, None));
        assert!(empty.hist.is_empty() && empty.now_x.is_finite());
    }

    #[test]
    fn series_stacks_and_lines() {
        let xs = [0, 300_000, 600_000];
        let c = series(
            &xs,
            &[("avg", vec![Some(10.0), None, Some(30.0)])],
            &[("f-healthy", vec![5.0, 5.0, 5.0]), ("f-critical", vec![1.0, 2.0, 3.0])],
            None,
        );
        assert_eq!(c.areas.len(), 2);
        assert_eq!(c.lines[0].d.matches('M').count(), 2);
        assert_eq!(c.x_ticks.len(), 3);
        assert!(sparkline(None).is_none());
    }

    #[test]
    fn sparkline_draws_the_summarys_points() {
        let spark = schemas::Sparkline { target: Target::Mem, steps_per_point: 4, p50: vec![Some(40.0), None, Some(60.0), Some(80.0)] };
        let s = sparkline(Some(&spark)).unwrap();
        assert_eq!((s.p50.matches('M').count(), s.label), (2, "Memory"), "a gap lifts the pen: {}", s.p50);
        assert!(sparkline(Some(&schemas::Sparkline { p50: vec![None; 3], ..spark })).is_none());
    }
}
