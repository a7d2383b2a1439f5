//! Live accuracy: forecasts are kept until they mature, scored against what actually
//! happened, and summed over a rolling window per target. The original's "drift monitor"
//! reported made-up numbers; this is the real one.
//!
//! Only a few lead times are scored — 5 min, 30 min, 1 h, 4 h and 8 h ([`LEADS`]) — and for the
//! long ones only every `stride`-th issued forecast, so each server keeps at most
//! [`SLOTS`] pending entries of 8 targets × (P10, P50, P90) as half floats: about 1.8 KB per server, 18 MB for
//! 10,000 servers, whatever the tick rate, per tracker (1.2 KB for a method's, which keeps no
//! P10: [`Kept`]). The rolling window is fleet-wide
//! (`rolling.rs`). A server's [`Pending`] forecasts are scored where the server is
//! (`scoring.rs` keeps one per tracker and server for the predictor); [`AccuracyTracker`] is
//! the same for one tracker by server name, with its window.
//!
//! Scores, per target over the window: q-risk at P50 and P90 as `2·Σ pinball / Σ |actual|` (the
//! TFT paper's definition, as in `schemas/README.md` and the model card, so live and offline
//! numbers compare), and the share of actuals inside
//! [P10, P90].
//!
//! Steps are identified by `timestamp.div_euclid(STEP_MS)`: a forecast issued at the step that
//! just closed, `s`, predicts step `s + k` with its k-th value (1-based), and an actual for
//! step `s + k` scores it. Both sides must pass the same kind of timestamp (the step's start).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use schemas::{Metrics, Target, TargetAccuracy, TargetForecast, STEP_MS, TARGET_COUNT};

use crate::domain::half::{pack, unpack, NAN as NAN16};

pub use crate::rolling::{Scores, Sums};

/// Scored lead times in steps, with the stride of issue steps kept for each (an issue step is
/// kept for a lead when `step % stride == 0`).
pub const LEADS: [(u16, u16); 5] = [(1, 1), (6, 1), (12, 2), (48, 6), (96, 12)];

/// How much one scored point at each of [`LEADS`] counts in a server's recent record
/// ([`ServerScore`]): the number of leads 1..=96 it stands for (those nearer to it than to
/// any other scored lead: 3, 5.5, 21, 42 and 24.5). Unweighted, the record was mostly leads 1
/// and 6 (scored at every step), while what is published is judged over all 96 leads, seven
/// eighths of them past the first hour, so a method good for the next 30 minutes and poor for
/// the 8 hours kept being chosen. Not also times the stride: the long leads' records then rest
/// on a few points a day and the choice got noisy. Backtest (`just backtest`), Bitbrains tuning
/// VMs: published P50 / P90 q-risk 0.426 / 0.351 unweighted, 0.422 / 0.346 weighted by leads ×
/// stride, 0.420 / 0.346 by leads; series at or below the better naive 77 % / 58 %, 75 % /
/// 62 %, 80 % / 65 %. Held-out VMs by leads: 0.377 / 0.325 (from 0.379 / 0.326).
pub const LEAD_WEIGHTS: [f32; LEADS.len()] = lead_weights();

const fn lead_weights() -> [f32; LEADS.len()] {
    let mut w = [0.0; LEADS.len()];
    let mut i = 0;
    while i < LEADS.len() {
        let lead = LEADS[i].0 as f32;
        let from = if i == 0 { 0.5 } else { (LEADS[i - 1].0 as f32 + lead) / 2.0 };
        let to = if i + 1 == LEADS.len() { schemas::HORIZON_STEPS as f32 + 0.5 } else { (lead + LEADS[i + 1].0 as f32) / 2.0 };
        w[i] = to - from;
        i += 1;
    }
    w
}

/// Which issue steps a tracker keeps for each scored lead, and where they sit in a server's
/// pending entries: lead `(lead, stride)` keeps an issue step when `step % stride == 0`, in a
/// ring of `lead / stride + 1` entries (the issues outstanding, plus one so recording the new
/// forecast before scoring the same step's actual loses nothing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    leads: [(u16, u16); LEADS.len()],
    offsets: [usize; LEADS.len() + 1],
}

impl Schedule {
    /// `leads`: [`LEADS`]' lead times, each with its own stride (at least 1).
    pub const fn new(leads: [(u16, u16); LEADS.len()]) -> Schedule {
        let mut offsets = [0; LEADS.len() + 1];
        let mut i = 0;
        while i < LEADS.len() {
            let (lead, stride) = leads[i];
            let stride = if stride == 0 { 1 } else { stride };
            offsets[i + 1] = offsets[i] + (lead / stride) as usize + 1;
            i += 1;
        }
        Schedule { leads, offsets }
    }

    /// Pending entries per server.
    pub const fn slots(&self) -> usize {
        self.offsets[LEADS.len()]
    }

    fn slot(&self, lead_index: usize, issue_step: i64) -> Option<usize> {
        let (lead, stride) = self.leads[lead_index];
        let stride = i64::from(stride.max(1));
        if issue_step.rem_euclid(stride) != 0 {
            return None;
        }
        let cap = i64::from(lead) / stride + 1;
        Some(self.offsets[lead_index] + (issue_step / stride).rem_euclid(cap) as usize)
    }
}

/// The schedule of every tracker: every step at 5 and 30 minutes, every second at 1 h, every
/// sixth at 4 h, every twelfth at 8 h ([`LEADS`]). Eight statistical methods are scored per
/// server beside the published forecast, so pending forecasts are most of a server's memory
/// (about 11.6 KB of half floats, the methods keeping no P10: [`Kept`]). Tried: a sparser
/// schedule for the methods, past 5 minutes only every third to 32nd issue step (16 entries a
/// server instead of 34), which saves 10 KB a server (1 GB at 100,000 servers) but made the choice noisier: on the held-out Bitbrains VMs
/// (`just backtest`) the published P50 q-risk went from 0.377 to 0.382 (15.3 % to 14.4 % below
/// the better naive), tuning VMs 0.420 to 0.423.
pub const PUBLISHED: Schedule = Schedule::new(LEADS);

/// Pending entries per server at the published schedule.
pub const SLOTS: usize = PUBLISHED.slots();

/// Default rolling window: 24 h of 5-minute steps.
pub const DEFAULT_WINDOW_STEPS: usize = 288;

/// Position of `t` in [`Target::ALL`] (the per-target arrays' index).
pub fn target_index(t: Target) -> usize {
    Target::ALL.iter().position(|&x| x == t).unwrap_or(0)
}

/// Which quantiles a tracker keeps of each pending forecast, per target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kept {
    /// P10, P50 and P90: the published forecast's tracker, whose P10-P90 coverage is reported.
    Band,
    /// P50 and P90: a method's tracker. The method records [`ServerScore`] and the methods'
    /// q-risks need no more, and eight of them run per server: without their P10s a server's
    /// pending forecasts take 11.6 KB instead of 15.9 KB (435 MB less at 100,000 servers,
    /// issue 14), for no per-method coverage (`schemas::MethodAccuracy::coverage` is absent).
    Losses,
}

impl Kept {
    /// Half floats kept per target of one pending forecast.
    pub const fn per_target(self) -> usize {
        match self {
            Kept::Band => 3,
            Kept::Losses => 2,
        }
    }
}

/// An issue step that is empty or already scored (a step number: Unix time / 5 min fits i32
/// until the year 22,000).
const NO_ISSUE: i32 = i32::MIN;

/// The issue step a slot's first two `u16`s hold.
fn issue_of(step: &[u16]) -> i32 {
    match step {
        [lo, hi, ..] => (u32::from(*lo) | (u32::from(*hi) << 16)) as i32,
        _ => NO_ISSUE,
    }
}

/// Writes `issue` into a slot's first two `u16`s.
fn set_issue(step: &mut [u16], issue: i32) {
    if let [lo, hi, ..] = step {
        let bits = issue as u32;
        (*lo, *hi) = (bits as u16, (bits >> 16) as u16);
    }
}

/// A server's pending forecasts (opaque; serialisable on its own, e.g. one KV key per server).
/// Slot `i` of the [`PUBLISHED`] schedule is `slots[i·w..(i+1)·w]`: the step its forecast was
/// issued at (an `i32` as two `u16`, low half first; [`NO_ISSUE`] when empty or scored), then
/// that forecast's values at the slot's lead as [`pack`]ed half floats (pending forecasts are
/// most of a server's memory; their scoring needs no more), [`Kept::per_target`] per target in
/// [`Target::ALL`] order, NaN where absent. One allocation per tracker: two (the steps apart)
/// took 26 % more of the allocator's size classes than the values alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    kept: Kept,
    slots: Vec<u16>,
    /// Newest issue step recorded, for pruning.
    last_issue: i64,
    /// This server's recent record per target: pinball losses at P50 and at P90 and the number
    /// of scored points, decayed by [`SERVER_DECAY`] per scored step (what `select.rs`
    /// compares methods by).
    #[serde(default)]
    recent: [ServerScore; TARGET_COUNT],
}

impl Pending {
    /// A server's first pending entry is about to be issued at step `issue`; its P10s are kept.
    pub fn new(issue: i64) -> Pending {
        Pending::keeping(Kept::Band, issue)
    }

    /// [`Pending::new`] keeping `kept`'s quantiles.
    pub fn keeping(kept: Kept, issue: i64) -> Pending {
        Pending { kept, slots: Vec::new(), last_issue: issue, recent: [ServerScore::default(); TARGET_COUNT] }
    }

    /// `u16`s per slot: its issue step, then its values.
    const fn width(kept: Kept) -> usize {
        2 + TARGET_COUNT * kept.per_target()
    }

    /// Slot `at` (issue step, then values), if the slots are allocated.
    fn slot(&mut self, at: usize) -> Option<&mut [u16]> {
        let w = Self::width(self.kept);
        self.slots.get_mut(at * w..(at + 1) * w)
    }

    /// Remembers `forecast`, issued at step `issue` (the step that just closed; step =
    /// Unix ms / [`STEP_MS`]), at the scored leads. An empty forecast records nothing, and its
    /// entries are allocated with the first that is not.
    pub fn record_forecast(&mut self, issue: i64, forecast: &[TargetForecast]) {
        if forecast.is_empty() {
            return;
        }
        let Ok(issue32) = i32::try_from(issue) else { return };
        if self.slots.is_empty() {
            self.slots = vec![NAN16; SLOTS * Self::width(self.kept)];
            self.slots.chunks_exact_mut(Self::width(self.kept)).for_each(|slot| set_issue(slot, NO_ISSUE));
        }
        self.last_issue = self.last_issue.max(issue);
        let (kept, per) = (self.kept, self.kept.per_target());
        for (li, &(lead, _)) in LEADS.iter().enumerate() {
            let Some(slot) = PUBLISHED.slot(li, issue).and_then(|at| self.slot(at)) else { continue };
            let (step, values) = slot.split_at_mut(2);
            set_issue(step, issue32);
            values.fill(NAN16);
            let k = usize::from(lead) - 1;
            for f in forecast {
                if let (Some(&lo), Some(&mid), Some(&hi)) = (f.p10.get(k), f.p50.get(k), f.p90.get(k)) {
                    let t = target_index(f.target) * per;
                    match kept {
                        Kept::Band => values[t..t + 3].copy_from_slice(&[pack(lo), pack(mid), pack(hi)]),
                        Kept::Losses => values[t..t + 2].copy_from_slice(&[pack(mid), pack(hi)]),
                    }
                }
            }
        }
    }

    /// Scores every pending forecast that predicted step `step` against `actual`, updates this
    /// server's recent record, and returns what the scored points add to the fleet's sums of
    /// that step (`None` when nothing was scored).
    pub fn record_actual(&mut self, step: i64, actual: &Metrics) -> Option<[Sums; TARGET_COUNT]> {
        let mut add = [Sums::default(); TARGET_COUNT];
        // This server's record: pinball losses at P50 and P90 weighted by LEAD_WEIGHTS.
        let mut weighted = [[0.0_f64; 4]; TARGET_COUNT];
        let per = self.kept.per_target();
        for (li, &(lead, _)) in LEADS.iter().enumerate() {
            let issue = step - i64::from(lead);
            let Some(slot) = PUBLISHED.slot(li, issue).and_then(|at| self.slot(at)) else { continue };
            let (step, values) = slot.split_at_mut(2);
            if i64::from(issue_of(step)) != issue {
                continue;
            }
            set_issue(step, NO_ISSUE);
            for (ti, &t) in Target::ALL.iter().enumerate() {
                let Some(y) = actual.target(t).filter(|y| y.is_finite()) else { continue };
                // A tracker without P10s (`Kept::Losses`) counts no coverage.
                let (lo, mid, hi) = match &values[ti * per..(ti + 1) * per] {
                    [lo, mid, hi] => (Some(unpack(*lo)), unpack(*mid), unpack(*hi)),
                    [mid, hi] => (None, unpack(*mid), unpack(*hi)),
                    _ => continue,
                };
                if !(mid.is_finite() && hi.is_finite() && lo.is_none_or(f32::is_finite)) {
                    continue;
                }
                let s = &mut add[ti];
                let y64 = f64::from(y);
                let (p50, p90) = (pinball(0.5, y64, f64::from(mid)), pinball(0.9, y64, f64::from(hi)));
                s.n += 1;
                s.covered += u32::from(lo.is_some_and(|lo| lo <= y && y <= hi));
                s.pin50 += p50;
                s.pin90 += p90;
                s.abs += y64.abs();
                let lw = f64::from(LEAD_WEIGHTS[li]);
                let near = if lead <= NEAR_LEAD { lw } else { 0.0 };
                let w = &mut weighted[ti];
                w[0] += lw * p50;
                w[1] += lw * p90;
                w[2] += near * p50;
                w[3] += near * p90;
            }
        }
        if add.iter().all(|s| s.n == 0) {
            return None;
        }
        for ((r, a), [w50, w90, n50, n90]) in self.recent.iter_mut().zip(&add).zip(weighted) {
            if a.n > 0 {
                r.loss50 = r.loss50 * SERVER_DECAY + w50 as f32;
                r.loss90 = r.loss90 * SERVER_DECAY + w90 as f32;
                r.near50 = r.near50 * SERVER_DECAY + n50 as f32;
                r.near90 = r.near90 * SERVER_DECAY + n90 as f32;
                r.weight = r.weight * SERVER_DECAY + a.n as f32;
            }
        }
        Some(add)
    }

    /// This server's decayed record per target ([`Target::ALL`] order), `None` for a target
    /// none of whose forecasts has been scored yet.
    pub fn scores(&self) -> [Option<ServerScore>; TARGET_COUNT] {
        self.recent.map(|r| (r.weight > 0.0).then_some(r))
    }

    /// This server's decayed record per target, scored or not ([`Target::ALL`] order).
    pub fn record(&self) -> [ServerScore; TARGET_COUNT] {
        self.recent
    }

    /// Puts back a record [`Pending::record`] read before a restart (`records.rs`).
    pub fn restore_record(&mut self, recent: [ServerScore; TARGET_COUNT]) {
        self.recent = recent;
    }

    /// Newest issue step recorded.
    pub fn last_issue(&self) -> i64 {
        self.last_issue
    }
}

/// A server's decayed record for one target (see [`Pending`]).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerScore {
    /// Decayed sum of `pinball(0.5)` over scored points, each times its lead's
    /// [`LEAD_WEIGHTS`] entry (the target's unit × lead steps; only ratios between methods'
    /// records mean something).
    pub loss50: f32,
    /// Decayed sum of `pinball(0.9)`, weighted the same way.
    pub loss90: f32,
    /// Decayed count of scored points.
    pub weight: f32,
    /// The part of `loss50` from the near leads (those up to [`NEAR_LEAD`]); the rest is the
    /// far leads'. The ensemble weighs its members by each apart (`select.rs`): the recent
    /// level is often best for the next half hour and the day's range for the hours after.
    pub near50: f32,
    /// The part of `loss90` from the near leads.
    pub near90: f32,
}

/// Scored leads up to this one (steps, 1 h) are "near" in [`ServerScore`].
pub const NEAR_LEAD: u16 = 12;

impl ServerScore {
    /// `(P50 loss, P90 loss)` of the far leads (past [`NEAR_LEAD`]), never negative.
    pub fn far(&self) -> (f32, f32) {
        ((self.loss50 - self.near50).max(0.0), (self.loss90 - self.near90).max(0.0))
    }
}

/// Per scored step, a server's record keeps this share of its past: a half-life of one day of
/// steps (0.5^(1/288)), so "recently" means about the last day or two. Backtest, Bitbrains
/// tuning VMs, published P50 / P90 q-risk: half a day 0.418 / 0.342, one day 0.417 / 0.342, two
/// days 0.417 / 0.343.
pub const SERVER_DECAY: f32 = 0.997_596_5;

/// The oldest issue step whose forecasts can still mature at `now_ms` (Unix ms): one longest
/// scored lead (8 h) back. A server with nothing issued since holds nothing to score.
pub fn oldest_live_issue(now_ms: i64) -> i64 {
    now_ms.div_euclid(STEP_MS) - i64::from(LEADS[LEADS.len() - 1].0)
}

/// Pinball (quantile) loss of predicting `q_hat` for quantile `q` when `y` happened.
pub fn pinball(q: f64, y: f64, q_hat: f64) -> f64 {
    let d = y - q_hat;
    (q * d).max((q - 1.0) * d)
}

/// Keeps issued forecasts until they mature and scores them (see the module doc), keyed by
/// server name: the form for tools and tests that feed servers by name. The predictor keeps
/// the same [`Pending`] records by registry id instead (`scoring::Scoring`, in its workers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccuracyTracker {
    pending: HashMap<String, Pending>,
    scores: Scores,
}

impl Default for AccuracyTracker {
    fn default() -> Self {
        AccuracyTracker::new(DEFAULT_WINDOW_STEPS)
    }
}

impl AccuracyTracker {
    /// A tracker with a rolling window of `window_steps` steps (at least 1).
    pub fn new(window_steps: usize) -> Self {
        AccuracyTracker { pending: HashMap::new(), scores: Scores::new(window_steps) }
    }

    /// Remembers the forecast `server` got at the step starting `issued_ms` (the step that
    /// just closed), at the scored leads.
    pub fn record_forecast(&mut self, server: &str, issued_ms: i64, forecast: &[TargetForecast]) {
        if forecast.is_empty() {
            return;
        }
        let issue = issued_ms.div_euclid(STEP_MS);
        let p = match self.pending.get_mut(server) {
            Some(p) => p,
            None => self.pending.entry(server.to_string()).or_insert_with(|| Pending::new(issue)),
        };
        p.record_forecast(issue, forecast);
    }

    /// Scores every pending forecast of `server` that predicted the step starting `step_ms`
    /// against its actual values; returns how many (lead, target) points were scored.
    pub fn record_actual(&mut self, server: &str, step_ms: i64, actual: &Metrics) -> usize {
        let Some(p) = self.pending.get_mut(server) else { return 0 };
        let step = step_ms.div_euclid(STEP_MS);
        let Some(add) = p.record_actual(step, actual) else { return 0 };
        self.scores.add(step, &add);
        add.iter().map(|s| s.n as usize).sum()
    }

    /// Rolling accuracy per target with at least one scored point, in [`Target::ALL`] order.
    pub fn report(&self) -> Vec<TargetAccuracy> {
        self.scores.report()
    }

    /// `server`'s decayed record per target ([`Target::ALL`] order), `None` for a target none
    /// of whose forecasts has been scored yet. One lookup per server, for the per-target choice.
    pub fn server_scores(&self, server: &str) -> [Option<ServerScore>; TARGET_COUNT] {
        self.pending.get(server).map_or([None; TARGET_COUNT], Pending::scores)
    }

    /// Drops a server's pending forecasts.
    pub fn forget(&mut self, server: &str) {
        self.pending.remove(server);
    }

    /// Drops servers with no forecast issued in the last 8 h (nothing of theirs can still
    /// mature); call now and then so departed servers don't hold memory.
    pub fn prune(&mut self, now_ms: i64) {
        let oldest = oldest_live_issue(now_ms);
        self.pending.retain(|_, p| p.last_issue >= oldest);
    }

    pub fn servers(&self) -> usize {
        self.pending.len()
    }

    /// Approximate heap bytes held (for stats and the memory budget).
    pub fn approx_bytes(&self) -> usize {
        let per_server = SLOTS * 2 * Pending::width(Kept::Band) + std::mem::size_of::<Pending>() + 48;
        let names: usize = self.pending.keys().map(String::len).sum();
        self.pending.len() * per_server + names + self.scores.approx_bytes()
    }

    /// The rolling sums alone (small; persist these to keep the window across a restart).
    pub fn scores(&self) -> &Scores {
        &self.scores
    }

    pub fn set_scores(&mut self, scores: Scores) {
        self.scores = scores;
    }

    /// One server's pending forecasts (for per-server persistence).
    pub fn pending(&self, server: &str) -> Option<&Pending> {
        self.pending.get(server)
    }

    pub fn set_pending(&mut self, server: String, pending: Pending) {
        if pending.slots.len() == SLOTS * Pending::width(pending.kept) || pending.slots.is_empty() {
            self.pending.insert(server, pending);
        }
    }
}
