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

/// Steps a server's [`Bands`] (and its trends' slopes, `methods::Basis::with_slope`, unless
/// the latest steps leave the trend's band: `methods::departs`) are reused before they are
/// computed again (1 h). Servers refresh at different steps (staggered
/// by server id), so no tick computes them all. On the Bitbrains VMs and NAB (`just backtest`)
/// reusing them for an hour moved no group's published q-risk by more than 0.001 against
/// computing them every step, the bands and the slopes alike.
pub const REFRESH_STEPS: i64 = 12;

/// Every target's [`Bands`] of one server and the step they were computed at, with the
/// trend's Theil–Sen slope fitted then (`methods::Basis::with_slope`; `None` until one was).
#[derive(Debug, Default)]
pub struct ServerBands {
    pub at: Option<i64>,
    pub bands: [Option<Bands>; schemas::TARGET_COUNT],
    pub slopes: [Option<f32>; schemas::TARGET_COUNT],
}

/// [`ServerBands`] per server id of one registry. Each server is filled by one worker per
/// tick, so its lock is never contended; it only lets workers share the table.
pub type BandCache = Vec<std::sync::Mutex<ServerBands>>;

// The selections below run on integer keys, not on `f32` with `total_cmp`: each value is
// turned once into an `i32` whose order is `total_cmp`'s (the bit trick `total_cmp` itself
// applies to both sides of every comparison), in place, and the selection compares plain
// integers. Same values bit for bit (the key is a bijection), and the selections were the
// largest part of the statistical methods' time (a seventh of a whole engine tick in `perf`).

/// An integer whose order is [`f32::total_cmp`]'s, from an `f32`'s bits as `i32` (the trick
/// `total_cmp` uses). Its own inverse: the sign bit is kept, so applying it twice restores.
fn key_of_bits(b: i32) -> i32 {
    b ^ ((((b >> 31) as u32) >> 1) as i32)
}

/// The `f32` whose key is `k`.
fn from_key(k: i32) -> f32 {
    f32::from_bits(key_of_bits(k) as u32)
}

/// Overwrites `v` with its values' keys and views it as them (the slice is scratch after).
fn into_keys(v: &mut [f32]) -> &mut [i32] {
    let keys: &mut [i32] = bytemuck::cast_slice_mut(v);
    for k in keys.iter_mut() {
        *k = key_of_bits(*k);
    }
    keys
}

/// Nearest rank of quantile `q` (0..=1) among `n > 0` values.
fn rank(n: usize, q: f32) -> usize {
    ((n - 1) as f32 * q).round() as usize
}

/// The value at rank `q` (0..=1, nearest rank) of `v`; NaN when empty. `v` is scratch: its
/// contents are overwritten.
pub fn quantile(v: &mut [f32], q: f32) -> f32 {
    if v.is_empty() {
        return f32::NAN;
    }
    let k = rank(v.len(), q);
    from_key(*into_keys(v).select_nth_unstable(k).1)
}

/// [`quantile`] at 0.5; `v` is scratch.
pub fn median(v: &mut [f32]) -> f32 {
    quantile(v, 0.5)
}

/// (P10, P90) of `v` as [`quantile`] gives them, with the second selection only over the part
/// of `v` the first left below its rank. `v` is scratch.
pub fn p10_p90(v: &mut [f32]) -> (f32, f32) {
    if v.is_empty() {
        return (f32::NAN, f32::NAN);
    }
    let (lo, hi) = p10_p90_keys(into_keys(v));
    (from_key(lo), from_key(hi))
}

/// [`p10_p90`] on keys, leaving the P10..P90 ranks' values between the two ranks.
fn p10_p90_keys(v: &mut [i32]) -> (i32, i32) {
    let (k10, k90) = (rank(v.len(), 0.1), rank(v.len(), 0.9));
    let (below, hi, _) = v.select_nth_unstable(k90);
    let hi = *hi;
    let lo = if k10 < k90 { *below.select_nth_unstable(k10).1 } else { hi };
    (lo, hi)
}

/// [`p10_p90`] and the median (rank 0.5, as [`median`] gives it) of `v` at once: the median is
/// selected only among the values the two selections left between their ranks, which holds it
/// (every value before is no greater, every value after no smaller), so it costs a fraction of
/// a selection over all of `v`. `v` is scratch.
pub fn p10_p50_p90(v: &mut [f32]) -> (f32, f32, f32) {
    if v.is_empty() {
        return (f32::NAN, f32::NAN, f32::NAN);
    }
    let v = into_keys(v);
    let (lo, hi) = p10_p90_keys(v);
    let (k10, k50, k90) = (rank(v.len(), 0.1), rank(v.len(), 0.5), rank(v.len(), 0.9));
    let mid = if k10 < k50 && k50 < k90 { *v[k10 + 1..k90].select_nth_unstable(k50 - k10 - 1).1 } else { *v.select_nth_unstable(k50).1 };
    (from_key(lo), from_key(mid), from_key(hi))
}

/// Values sampled by [`median_large`] to bracket the median, and how many sample ranks on
/// either side of the expected one the bracket spans (about 2.5 standard deviations of a
/// sample median's rank, so the bracket misses about once in a hundred calls).
const SAMPLE: usize = 64;
const SPREAD: usize = 10;

/// [`median`] of `v` (the same value, bit for bit), faster on a large `v` (the trend's 1,128
/// pairwise slopes): a sorted sample of [`SAMPLE`] keys brackets the median, one branch-free
/// pass counts the keys below the bracket and copies those inside it into `band`, and the
/// selection runs on the bracket's keys alone (about a third of `v`). When the bracket misses
/// the median's rank, the whole of `v` is selected, as [`median`] does. `v` is scratch.
pub fn median_large(v: &mut [f32], band: &mut Vec<i32>) -> f32 {
    let n = v.len();
    if n < 4 * SAMPLE {
        return median(v);
    }
    let v = into_keys(v);
    let k = rank(n, 0.5);
    let stride = n / SAMPLE;
    let mut sample: [i32; SAMPLE] = std::array::from_fn(|i| v[i * stride + stride / 2]);
    sample.sort_unstable();
    let r = k * SAMPLE / n;
    let lo = r.checked_sub(SPREAD).map_or(i32::MIN, |i| sample[i]);
    let hi = sample.get(r + SPREAD).copied().unwrap_or(i32::MAX);
    if band.len() < n {
        band.resize(n, 0);
    }
    let (mut below, mut inside) = (0, 0);
    for &key in v.iter() {
        below += usize::from(key < lo);
        band[inside] = key;
        inside += usize::from(lo <= key && key <= hi);
    }
    let key = if below <= k && k < below + inside { *band[..inside].select_nth_unstable(k - below).1 } else { *v.select_nth_unstable(k).1 };
    from_key(key)
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

    /// Values with ties, both zeros, NaN and infinities, large and small.
    fn awkward(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|i| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                match (state >> 16) % 23 {
                    0 => 0.0,
                    1 => -0.0,
                    2 => f32::NAN,
                    3 => f32::INFINITY,
                    4 => f32::NEG_INFINITY,
                    5 => (i % 7) as f32,
                    r => ((state >> 8) % 1000) as f32 * 0.37 - 150.0 + r as f32,
                }
            })
            .collect()
    }

    #[test]
    fn the_fast_selections_give_the_plain_ones_values_bit_for_bit() {
        let mut band = Vec::new();
        for n in [1, 2, 3, 9, 10, 11, 100, 255, 256, 257, 1128, 1127, 5000] {
            for seed in 0..20 {
                let mut v = awkward(n, seed);
                // Sorted and reversed inputs make the sampled bracket miss: the fallback must hold.
                if seed == 1 {
                    v.sort_by(f32::total_cmp);
                } else if seed == 2 {
                    v.sort_by(|a, b| b.total_cmp(a));
                }
                // The reference: a full sort by `total_cmp`, read at the nearest ranks.
                let mut sorted = v.clone();
                sorted.sort_by(f32::total_cmp);
                let at = |q: f32| sorted[((n - 1) as f32 * q).round() as usize].to_bits();
                let want = median(&mut v.clone());
                assert_eq!(want.to_bits(), at(0.5), "n {n} seed {seed}");
                assert_eq!(median_large(&mut v.clone(), &mut band).to_bits(), want.to_bits(), "n {n} seed {seed}");
                let (lo, hi) = p10_p90(&mut v.clone());
                assert_eq!([lo.to_bits(), hi.to_bits()], [at(0.1), at(0.9)], "n {n} seed {seed}");
                let (a, b, c) = p10_p50_p90(&mut v.clone());
                assert_eq!([a, b, c].map(f32::to_bits), [lo, want, hi].map(f32::to_bits), "n {n} seed {seed}");
            }
        }
        assert!(median_large(&mut [], &mut band).is_nan() && p10_p50_p90(&mut []).1.is_nan());
    }

    #[test]
    fn cached_bands_are_recomputed_once_per_cycle_per_server_and_when_stale() {
        let kept = |at| ServerBands { at: Some(at), ..Default::default() };
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
