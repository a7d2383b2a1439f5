//! The band widths of the statistical methods (`methods.rs`): empirical quantiles of a
//! server's own k-step changes over the last day, and the per-server cache that lets a tick
//! reuse them. Computing them is most of the statistical methods' cost, and they move slowly,
//! so each server's are recomputed once every [`REFRESH_STEPS`] steps, staggered over servers.

/// Steps in a day, over which the changes are taken.
const BAND_STEPS: usize = crate::methods::SEASON;

/// Leads (steps) at which the change quantiles are measured; others are interpolated.
pub const ANCHORS: [usize; 9] = [1, 2, 3, 6, 12, 24, 48, 72, 96];

/// Fewest changes from which a quantile is taken; a lead with fewer borrows the longest lead
/// that has enough, widened by the square root of the lead ratio (random-walk growth).
pub const MIN_SAMPLES: usize = 8;

/// The slow-moving part of a [`crate::methods::Basis`]: quantiles of the target's k-step changes over the
/// last day (288 steps), which set the P10/P90 of the level, last value, trend and blend.
/// Computing them is most of the statistical methods' cost (18 selections over a day of
/// changes per target), while one more step moves them by about 1/288 of their sample, so a
/// tick reuses them for up to [`REFRESH_STEPS`] steps ([`BandCache`]). No P50 depends on
/// them: which method is best on a server is judged on P50s that are always fresh.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bands {
    /// Quantiles (P10, P90) of the k-step changes at each of [`ANCHORS`].
    change: [(f32, f32); ANCHORS.len()],
}

/// Steps a server's [`Bands`] are reused before they are computed again (1 h). Servers
/// refresh at different steps (staggered by server id), so no tick computes them all. On the
/// Bitbrains VMs and NAB (`just backtest`) reusing them for an hour moved no group's published
/// q-risk by more than 0.001 against computing them every step.
pub const REFRESH_STEPS: i64 = 12;

/// Every target's [`Bands`] of one server and the step they were computed at.
#[derive(Debug, Default)]
pub struct ServerBands {
    pub at: Option<i64>,
    pub bands: [Option<Bands>; schemas::TARGET_COUNT],
}

/// [`ServerBands`] per server id of one registry. Each server is filled by one worker per
/// tick, so its lock is never contended; it only lets workers share the table.
pub type BandCache = Vec<std::sync::Mutex<ServerBands>>;

/// The value at rank `q` (0..=1, nearest rank) of `v`, reordering `v`; NaN when empty.
pub fn quantile(v: &mut [f32], q: f32) -> f32 {
    if v.is_empty() {
        return f32::NAN;
    }
    let k = ((v.len() - 1) as f32 * q).round() as usize;
    *v.select_nth_unstable_by(k, f32::total_cmp).1
}

pub fn median(v: &mut [f32]) -> f32 {
    quantile(v, 0.5)
}

/// (P10, P90) of `v` as [`quantile`] gives them, with the second selection only over the part
/// of `v` the first left below its rank (the selections are most of a tick's statistical cost).
pub fn p10_p90(v: &mut [f32]) -> (f32, f32) {
    if v.is_empty() {
        return (f32::NAN, f32::NAN);
    }
    let rank = |q: f32| ((v.len() - 1) as f32 * q).round() as usize;
    let (k10, k90) = (rank(0.1), rank(0.9));
    let (below, hi, _) = v.select_nth_unstable_by(k90, f32::total_cmp);
    let hi = *hi;
    let lo = if k10 < k90 { *below.select_nth_unstable_by(k10, f32::total_cmp).1 } else { hi };
    (lo, hi)
}

impl Bands {
    /// The bands of `history` (see the module doc); `None` when no step was observed.
    pub fn new(history: &[f32], buf: &mut Vec<f32>) -> Option<Bands> {
        let n = history.len();
        history.iter().rposition(|v| v.is_finite())?;
        let mut change = [(f32::NAN, f32::NAN); ANCHORS.len()];
        let from = n.saturating_sub(BAND_STEPS);
        for (c, &k) in change.iter_mut().zip(&ANCHORS) {
            buf.clear();
            buf.extend((from.max(k)..n).map(|s| history[s] - history[s - k]).filter(|d| d.is_finite()));
            if buf.len() >= MIN_SAMPLES {
                *c = p10_p90(buf);
            }
        }
        fill_short_leads(&mut change);
        Some(Bands { change })
    }

    /// The quantiles (P10, P90) of the change over `k` steps, interpolated between anchors.
    pub fn change_at(&self, k: usize) -> (f32, f32) {
        let (i, w) = anchor_weight(k);
        let (a, b) = (self.change[i - 1], self.change[i]);
        (a.0 + (b.0 - a.0) * w, a.1 + (b.1 - a.1) * w)
    }
}

impl ServerBands {
    /// Whether bands kept since `self.at` are recomputed at step `step` for server `id`: when
    /// none are kept, when they are [`REFRESH_STEPS`] old, or at the server's own phase of the
    /// refresh cycle (`(step + id) mod REFRESH_STEPS == 0`, which spreads the work over ticks).
    pub fn due(&self, step: Option<i64>, id: u32) -> bool {
        match (self.at, step) {
            (Some(at), Some(s)) => s < at || s - at >= REFRESH_STEPS || (s + i64::from(id)).rem_euclid(REFRESH_STEPS) == 0,
            _ => true,
        }
    }
}

/// Gives leads without enough changes (a short history) the quantiles of the longest lead that
/// has them, scaled by `sqrt(k / k0)`; with none at all, zero-width bands.
fn fill_short_leads(change: &mut [(f32, f32); ANCHORS.len()]) {
    let Some(best) = (0..ANCHORS.len()).rev().find(|&i| change[i].0.is_finite()) else {
        *change = [(0.0, 0.0); ANCHORS.len()];
        return;
    };
    let (k0, (lo, hi)) = (ANCHORS[best] as f32, change[best]);
    for (i, c) in change.iter_mut().enumerate() {
        if !c.0.is_finite() || !c.1.is_finite() {
            let s = (ANCHORS[i] as f32 / k0).sqrt();
            *c = (lo * s, hi * s);
        }
    }
}

/// For lead `k`, the anchor index `i` (1..ANCHORS.len()) whose interval `[ANCHORS[i - 1],
/// ANCHORS[i]]` holds it and the interpolation weight of `ANCHORS[i]`; a table for the
/// horizon's leads, since every target of every server asks for each of them each tick.
fn anchor_weight(k: usize) -> (usize, f32) {
    fn compute(k: usize) -> (usize, f32) {
        let i = ANCHORS.partition_point(|&a| a <= k).clamp(1, ANCHORS.len() - 1);
        let (k0, k1) = (ANCHORS[i - 1] as f32, ANCHORS[i] as f32);
        (i, ((k as f32 - k0) / (k1 - k0)).clamp(0.0, 1.0))
    }
    static TABLE: std::sync::LazyLock<[(usize, f32); schemas::HORIZON_STEPS + 1]> =
        std::sync::LazyLock::new(|| std::array::from_fn(compute));
    TABLE.get(k).copied().unwrap_or_else(|| compute(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_bands_are_recomputed_once_per_cycle_per_server_and_when_stale() {
        let kept = |at| ServerBands { at: Some(at), bands: Default::default() };
        assert!(ServerBands::default().due(Some(5), 3), "nothing kept");
        assert!(kept(100).due(Some(100 + REFRESH_STEPS), 1), "a full cycle old");
        assert!(kept(100).due(Some(99), 1), "a step back (a restored window)");
        for id in 0..40_u32 {
            let refreshes = (101..101 + REFRESH_STEPS).filter(|&s| kept(100).due(Some(s), id)).count();
            assert!(refreshes >= 1, "server {id} refreshes within a cycle");
        }
        let at_step: Vec<usize> =
            (101..101 + REFRESH_STEPS).map(|s| (0..1200_u32).filter(|&id| kept(100).due(Some(s), id)).count()).collect();
        assert!(at_step[..at_step.len() - 1].iter().all(|&n| n == 100), "spread evenly over the ticks: {at_step:?}");
    }
}
