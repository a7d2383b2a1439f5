//! Pure SVG geometry for the server-rendered charts: scales, "nice" axis ranges, polyline and
//! band paths with gaps, and the heatmap grid. No I/O and no templates, so every shape the
//! dashboard draws is unit-tested here; the templates only place the strings.

use std::fmt::Write;

/// Plot area inside an SVG of `width` x `height` with margins for the axes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub width: f32,
    pub height: f32,
    pub left: f32,
    pub right: f32,
    pub top: f32,
    pub bottom: f32,
}

impl Frame {
    pub fn plot_left(&self) -> f32 {
        self.left
    }
    pub fn plot_right(&self) -> f32 {
        self.width - self.right
    }
    pub fn plot_top(&self) -> f32 {
        self.top
    }
    pub fn plot_bottom(&self) -> f32 {
        self.height - self.bottom
    }
}

/// Maps data coordinates to pixels. A degenerate domain maps to the middle of the plot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub frame: Frame,
    pub x_min: f32,
    pub x_max: f32,
    pub y_min: f32,
    pub y_max: f32,
}

impl Scale {
    pub fn x(&self, v: f32) -> f32 {
        lerp(v, self.x_min, self.x_max, self.frame.plot_left(), self.frame.plot_right())
    }
    /// Pixel y of a value (larger values are higher up), clamped to the plot.
    pub fn y(&self, v: f32) -> f32 {
        let y = lerp(v, self.y_min, self.y_max, self.frame.plot_bottom(), self.frame.plot_top());
        y.clamp(self.frame.plot_top(), self.frame.plot_bottom())
    }
}

/// Rounds a pixel coordinate to 0.1 px (keeps the markup short; invisible on screen).
pub fn px(v: f32) -> f32 {
    (v * 10.0).round() / 10.0
}

fn lerp(v: f32, d0: f32, d1: f32, p0: f32, p1: f32) -> f32 {
    let span = d1 - d0;
    if !span.is_finite() || span.abs() <= f32::EPSILON {
        return (p0 + p1) / 2.0;
    }
    p0 + (v - d0) / span * (p1 - p0)
}

/// The y range to draw for `values`: their min/max widened to include `extra` values
/// (thresholds), a 5% pad, rounded out to a nice step, never below `floor`/above `ceil`.
pub fn nice_range(values: impl IntoIterator<Item = f32>, floor: Option<f32>, ceil: Option<f32>) -> (f32, f32) {
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (floor.unwrap_or(0.0), ceil.unwrap_or(1.0));
    }
    if (hi - lo).abs() < 1e-6 {
        hi = lo + lo.abs().max(1.0) * 0.1;
        lo -= lo.abs().max(1.0) * 0.1;
    }
    let pad = (hi - lo) * 0.05;
    let step = nice_step((hi - lo + 2.0 * pad) / 4.0);
    let mut lo = ((lo - pad) / step).floor() * step;
    let mut hi = ((hi + pad) / step).ceil() * step;
    if let Some(f) = floor {
        lo = lo.max(f);
    }
    if let Some(c) = ceil {
        hi = hi.min(c);
    }
    if hi <= lo {
        hi = lo + step;
    }
    (lo, hi)
}

/// The nearest "nice" step (1, 2, 2.5 or 5 times a power of ten) at or above `raw`.
pub fn nice_step(raw: f32) -> f32 {
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let mag = 10f32.powf(raw.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= raw * 0.999 {
            return m * mag;
        }
    }
    10.0 * mag
}

/// Decimals that write every multiple of `step` exactly (0 for 1, 5, 250; 1 for 0.5; 2 for
/// 0.25; at most 6), so the ticks of a small range do not all read the same.
pub fn step_decimals(step: f32) -> usize {
    if !step.is_finite() || step <= 0.0 {
        return 0;
    }
    (0..6)
        .find(|&d| {
            let scaled = step * 10f32.powi(d as i32);
            scaled >= 0.999 && (scaled - scaled.round()).abs() < 1e-3 * scaled
        })
        .unwrap_or(6)
}

/// Evenly spaced tick values covering `[lo, hi]` with about `n` intervals.
pub fn ticks(lo: f32, hi: f32, n: usize) -> Vec<f32> {
    if hi.is_nan() || lo.is_nan() || hi <= lo || n == 0 {
        return vec![lo];
    }
    let step = nice_step((hi - lo) / n as f32);
    let first = (lo / step).ceil() * step;
    let mut out = Vec::new();
    let mut v = first;
    while v <= hi + step * 1e-3 && out.len() < 50 {
        out.push(if v.abs() < step * 1e-6 { 0.0 } else { v });
        v += step;
    }
    out
}

/// An SVG path through `(x, y)` points; a `None` or non-finite y breaks the line (a gap in
/// the data stays visible rather than being bridged).
pub fn line_path(points: impl IntoIterator<Item = (f32, Option<f32>)>, s: &Scale) -> String {
    let mut d = String::new();
    let mut pen_down = false;
    for (x, y) in points {
        match y.filter(|y| y.is_finite()) {
            Some(y) if x.is_finite() => {
                let cmd = if pen_down { 'L' } else { 'M' };
                let _ = write!(d, "{cmd}{:.1},{:.1}", s.x(x), s.y(y));
                pen_down = true;
            }
            _ => pen_down = false,
        }
    }
    d
}

/// A closed band between `lo` and `hi` at `xs` (upper edge forward, lower edge back).
/// Points where either bound is missing are skipped; fewer than two points give "".
pub fn band_path(xs: &[f32], lo: &[f32], hi: &[f32], s: &Scale) -> String {
    let pts: Vec<(f32, f32, f32)> = xs
        .iter()
        .zip(lo.iter().zip(hi.iter()))
        .filter(|(x, (l, h))| x.is_finite() && l.is_finite() && h.is_finite())
        .map(|(x, (l, h))| (*x, *l, *h))
        .collect();
    if pts.len() < 2 {
        return String::new();
    }
    let mut d = String::with_capacity(pts.len() * 24);
    for (i, (x, _, h)) in pts.iter().enumerate() {
        let _ = write!(d, "{}{:.1},{:.1}", if i == 0 { 'M' } else { 'L' }, s.x(*x), s.y(*h));
    }
    for (x, l, _) in pts.iter().rev() {
        let _ = write!(d, "L{:.1},{:.1}", s.x(*x), s.y(*l));
    }
    d.push('Z');
    d
}

/// Stacked areas: `layers[k][i]` is layer k's value at `xs[i]`; returns one closed path per
/// layer, each sitting on the sum of the layers below it.
pub fn stacked_paths(xs: &[f32], layers: &[Vec<f32>], s: &Scale) -> Vec<String> {
    let n = xs.len();
    let mut base = vec![0.0f32; n];
    let mut out = Vec::with_capacity(layers.len());
    for layer in layers {
        let top: Vec<f32> = (0..n).map(|i| base[i] + layer.get(i).copied().filter(|v| v.is_finite()).unwrap_or(0.0)).collect();
        out.push(band_path(xs, &base, &top, s));
        base = top;
    }
    out
}

/// The index ranges of `xs_ms` (times, ascending) with no gap in them: a gap is a step more
/// than [`GAP_FACTOR`] times the median step (a restart, a stretch with no data). Empty input
/// gives no range.
pub fn runs_without_gaps(xs_ms: &[i64]) -> Vec<std::ops::Range<usize>> {
    let mut steps: Vec<i64> = xs_ms.windows(2).map(|w| w[1] - w[0]).collect();
    let mid = steps.len() / 2;
    let Some(median) = (!steps.is_empty()).then(|| *steps.select_nth_unstable(mid).1) else {
        // No step to measure a gap by: one run of the 0 or 1 points.
        return std::iter::once(0..xs_ms.len()).filter(|r| !r.is_empty()).collect();
    };
    let limit = median.max(1).saturating_mul(GAP_FACTOR);
    let mut runs = Vec::new();
    let mut start = 0;
    for (i, w) in xs_ms.windows(2).enumerate() {
        if w[1] - w[0] > limit {
            runs.push(start..i + 1);
            start = i + 1;
        }
    }
    runs.push(start..xs_ms.len());
    runs
}

/// A step this many times the median step is a gap in [`runs_without_gaps`].
pub const GAP_FACTOR: i64 = 3;

/// One cell of a grid laid out row by row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    pub x: f32,
    pub y: f32,
}

/// Places `count` cells of `size` px with `gap` px between them, `cols` per row, starting at
/// `y0`; returns the cells and the y just below the last row.
pub fn grid(count: usize, cols: usize, size: f32, gap: f32, y0: f32) -> (Vec<Cell>, f32) {
    let cols = cols.max(1);
    let cells: Vec<Cell> =
        (0..count).map(|i| Cell { x: (i % cols) as f32 * (size + gap), y: y0 + (i / cols) as f32 * (size + gap) }).collect();
    let rows = count.div_ceil(cols);
    (cells, y0 + rows as f32 * (size + gap))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        Frame { width: 200.0, height: 100.0, left: 20.0, right: 10.0, top: 5.0, bottom: 15.0 }
    }

    fn scale() -> Scale {
        Scale { frame: frame(), x_min: 0.0, x_max: 10.0, y_min: 0.0, y_max: 100.0 }
    }

    #[test]
    fn scale_maps_domain_corners_to_plot_corners() {
        let s = scale();
        assert_eq!(s.x(0.0), 20.0);
        assert_eq!(s.x(10.0), 190.0);
        assert_eq!(s.y(0.0), 85.0);
        assert_eq!(s.y(100.0), 5.0);
        assert_eq!(s.y(500.0), 5.0, "clamped to the plot");
        let flat = Scale { y_min: 3.0, y_max: 3.0, ..s };
        assert_eq!(flat.y(3.0), 45.0, "degenerate domain sits mid-plot");
    }

    #[test]
    fn line_breaks_at_gaps_and_skips_nan() {
        let s = scale();
        let d = line_path([(0.0, Some(0.0)), (5.0, Some(50.0)), (6.0, None), (7.0, Some(f32::NAN)), (10.0, Some(100.0))], &s);
        assert_eq!(d, "M20.0,85.0L105.0,45.0M190.0,5.0");
        assert_eq!(line_path(std::iter::empty(), &s), "");
    }

    #[test]
    fn band_goes_out_along_the_top_and_back_along_the_bottom() {
        let s = scale();
        let d = band_path(&[0.0, 10.0], &[0.0, 10.0], &[50.0, 100.0], &s);
        assert_eq!(d, "M20.0,45.0L190.0,5.0L190.0,77.0L20.0,85.0Z");
        assert_eq!(band_path(&[0.0], &[0.0], &[1.0], &s), "", "one point is no band");
        let with_nan = band_path(&[0.0, 5.0, 10.0], &[0.0, f32::NAN, 10.0], &[50.0, 60.0, 100.0], &s);
        assert_eq!(with_nan, d, "non-finite points are skipped");
    }

    #[test]
    fn nice_ranges_cover_data_and_thresholds() {
        let (lo, hi) = nice_range([12.0, 47.0, 95.0], Some(0.0), Some(100.0));
        assert!((0.0..=12.0).contains(&lo) && (95.0..=100.0).contains(&hi), "{lo} {hi}");
        let (lo, hi) = nice_range([3.3, 3.3], None, None);
        assert!(lo < 3.3 && hi > 3.3);
        assert_eq!(nice_range([f32::NAN], Some(0.0), None), (0.0, 1.0));
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(17.0), 20.0);
        assert_eq!(nice_step(2.2), 2.5);
    }

    #[test]
    fn ticks_are_round_and_inside() {
        assert_eq!(ticks(0.0, 100.0, 4), vec![0.0, 25.0, 50.0, 75.0, 100.0]);
        assert_eq!(ticks(-1.0, 1.0, 2), vec![-1.0, 0.0, 1.0]);
        assert_eq!(ticks(5.0, 5.0, 4), vec![5.0]);
    }

    #[test]
    fn stacks_sit_on_each_other() {
        let s = Scale { frame: frame(), x_min: 0.0, x_max: 1.0, y_min: 0.0, y_max: 4.0 };
        let p = stacked_paths(&[0.0, 1.0], &[vec![1.0, 1.0], vec![2.0, 3.0]], &s);
        assert_eq!(p.len(), 2);
        // second layer's bottom edge is the first layer's top (y = 1 -> 65 px)
        assert!(p[1].ends_with("L190.0,65.0L20.0,65.0Z"), "{}", p[1]);
    }

    #[test]
    fn runs_split_at_gaps_only() {
        assert!(runs_without_gaps(&[]).is_empty());
        assert_eq!(runs_without_gaps(&[7]).first(), Some(&(0..1)));
        assert_eq!(runs_without_gaps(&[0, 5, 10, 15]).len(), 1);
        assert_eq!(runs_without_gaps(&[0, 5, 10, 100, 105, 110]), [0..3, 3..6]);
        assert_eq!(runs_without_gaps(&[0, 5, 10, 26, 31]), [0..3, 3..5], "a step over 3 x the median");
        assert_eq!(runs_without_gaps(&[0, 5, 10, 25, 30]).len(), 1, "3 x the median is no gap yet");
    }

    #[test]
    fn grid_wraps_rows() {
        let (cells, bottom) = grid(5, 2, 10.0, 2.0, 30.0);
        assert_eq!(cells[0], Cell { x: 0.0, y: 30.0 });
        assert_eq!(cells[1], Cell { x: 12.0, y: 30.0 });
        assert_eq!(cells[4], Cell { x: 0.0, y: 54.0 });
        assert_eq!(bottom, 66.0);
        assert_eq!(grid(0, 0, 10.0, 2.0, 0.0).1, 0.0);
    }
}
