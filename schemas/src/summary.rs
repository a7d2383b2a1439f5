//! One server in the fleet snapshot (`predictions.current`): a compact summary of its
//! [`ServerForecast`], about 110-200 bytes on the wire where the forecast is ~12 KB.
//!
//! Why: the snapshot goes to every reader every tick. With every server's P10/P50/P90 curves of
//! 8 targets x 96 steps, recent actuals and the model's explanation it was 117.6 MB per tick at
//! 10,000 servers; what the fleet views need per server is a line of a table. The full
//! [`ServerForecast`] stays in KV `forecasts` (key = server), where a reader that shows one
//! server gets it with one KV get.
//!
//! [`ServerSummary::of`] is the one place a summary is made from a forecast (the predictor, the
//! dashboard's fixtures and tests all call it), so summary and KV entry cannot disagree. The
//! wire layout (a positional MessagePack array, enums as one-byte codes, numbers quantized
//! where the views cannot tell) is in `summary_wire.rs` and `schemas/README.md`; JSON
//! (`fcmsg decode`) prints the named fields below.

use serde::Serialize;

use crate::alert::{Alert, AlertBasis, AlertState, Level};
use crate::method::Method;
use crate::metric::Target;
use crate::profile::Profile;
use crate::snapshot::{ServerForecast, Warmup};

/// Forecast steps per sparkline point: 4 steps (20 min), so 96 steps make 24 points.
pub const SPARK_STEPS_PER_POINT: usize = 4;
/// Most reasons a summary lists (the first one sets the level).
pub const SUMMARY_REASONS: usize = 3;

/// A server's line in the fleet snapshot. Units: times in Unix ms, values in their target's
/// unit (`Target::unit`), minutes of source time.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSummary {
    pub server: String,
    pub profile: Profile,
    /// Start of the server's latest closed step (Unix ms).
    pub last_ms: i64,
    /// 0-100, always inside its level's band.
    pub risk: f32,
    pub level: Level,
    /// One entry per target, in [`Target::ALL`] order (always all 8).
    pub targets: Vec<TargetBrief>,
    /// The soonest active predicted alert (ties: the more severe), if any.
    pub breach: Option<Breach>,
    /// The first [`SUMMARY_REASONS`] reasons, the one that sets the level first.
    pub reasons: Vec<ReasonBrief>,
    /// The first reason's headline (the one that sets the level): its words up to the first
    /// `", "`, the resource's state now ("Memory 96 % now (critical from 95 %)"). What the
    /// forecast adds is in `breach` and `spark`; the whole text is in the KV entry.
    pub reason: Option<String>,
    /// The P50 forecast of the target behind the first reason (else CPU), coarsely.
    pub spark: Option<Sparkline>,
    /// Present while the server is warming up (no forecast yet).
    pub warmup: Option<Warmup>,
    /// Past warm-up but without a forecast (the KV entry's `no_forecast` says why).
    pub no_forecast: bool,
    /// Active predicted alerts.
    pub alerts: Vec<AlertBrief>,
}

/// One target of a summary. On the wire the numbers are IEEE half floats (3 significant
/// digits, at most 65,504): enough for a table cell, a sort and a heatmap colour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TargetBrief {
    pub target: Target,
    /// Latest value; `None` when unknown.
    pub current: Option<f32>,
    /// Highest P50 over the horizon; `None` without a forecast of this target.
    pub peak_p50: Option<f32>,
    /// The method whose forecast was published; `None` without a forecast of this target.
    pub method: Option<Method>,
}

/// The first predicted breach: which target, how bad, how soon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Breach {
    pub target: Target,
    pub severity: Level,
    /// Minutes of source time until the first crossing (a multiple of 5).
    pub minutes_ahead: u32,
}

/// A reason without its words: the target and its risk points (rounded to whole points on the
/// wire; the KV entry has the exact points and the text).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReasonBrief {
    pub target: Target,
    pub points: f32,
}

/// A coarse P50 curve: point `k` is the highest P50 of steps `k * steps_per_point ..` (so a
/// peak between points is never hidden). On the wire each point is one byte between the curve's
/// lowest and highest value (half floats): within 1/254 of that range and 1/1000 of the value;
/// `None` where the P50 was not finite.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sparkline {
    pub target: Target,
    pub steps_per_point: u8,
    pub p50: Vec<Option<f32>>,
}

/// An active predicted alert, compactly: the rest of [`Alert`] is the summary's (`server`,
/// `profile`, `current` of the target) or derived (`id` = `<server>.<target>`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AlertBrief {
    pub target: Target,
    pub severity: Level,
    pub basis: AlertBasis,
    pub state: AlertState,
    pub threshold: f32,
    /// Forecast value at the first crossing.
    pub predicted: f32,
    /// Minutes until the first crossing (a multiple of 5).
    pub minutes_ahead: u32,
    /// When the alert opened (Unix ms, source time).
    pub opened_ms: i64,
}

impl ServerSummary {
    /// The summary of a server's forecast (the KV `forecasts` entry).
    pub fn of(sf: &ServerForecast) -> ServerSummary {
        let targets = Target::ALL
            .iter()
            .map(|&target| {
                let fc = sf.forecast_of(target);
                TargetBrief {
                    target,
                    current: sf.current.target(target).filter(|v| v.is_finite()),
                    peak_p50: fc.and_then(|f| f.p50.iter().copied().filter(|v| v.is_finite()).reduce(f32::max)),
                    method: fc.map(|f| f.method),
                }
            })
            .collect();
        let first = sf.alerts.iter().min_by(|a, b| a.minutes_ahead.cmp(&b.minutes_ahead).then(b.severity.cmp(&a.severity)));
        let key = sf.reasons.first().map_or(Target::Cpu, |r| r.target);
        ServerSummary {
            server: sf.server.clone(),
            profile: sf.profile,
            last_ms: sf.last_ms,
            risk: sf.risk,
            level: sf.level,
            targets,
            breach: first.map(|a| Breach { target: a.target, severity: a.severity, minutes_ahead: a.minutes_ahead }),
            reasons: sf.reasons.iter().take(SUMMARY_REASONS).map(|r| ReasonBrief { target: r.target, points: r.points }).collect(),
            reason: sf.reasons.first().map(|r| headline(&r.text).to_string()),
            spark: sf.forecast_of(key).and_then(|f| Sparkline::of(key, &f.p50)),
            warmup: sf.warmup,
            no_forecast: sf.no_forecast.is_some(),
            alerts: sf.alerts.iter().map(AlertBrief::of).collect(),
        }
    }

    /// The brief of `target`.
    pub fn target(&self, target: Target) -> Option<&TargetBrief> {
        self.targets.iter().find(|t| t.target == target)
    }

    /// The latest value of `target`, if known.
    pub fn current(&self, target: Target) -> Option<f32> {
        self.target(target).and_then(|t| t.current)
    }

    /// How many targets have a published forecast (8 for a server with every metric, 0 while
    /// warming up).
    pub fn forecast_count(&self) -> usize {
        self.targets.iter().filter(|t| t.method.is_some()).count()
    }

    /// Whether an alerted target is at or over its alert's threshold already (the breach is
    /// "now", not ahead).
    pub fn breached_now(&self) -> bool {
        self.alerts.iter().any(|a| self.current(a.target).is_some_and(|c| c >= a.threshold))
    }
}

/// A reason's words up to the first `", "` (the predictor's reasons say the state now first,
/// then what the forecast adds: `risk.rs`, `reason_text`).
pub fn headline(text: &str) -> &str {
    text.split(", ").next().unwrap_or(text)
}

impl Sparkline {
    /// Every [`SPARK_STEPS_PER_POINT`] steps of `p50`, the highest finite value; `None` for an
    /// empty curve.
    pub fn of(target: Target, p50: &[f32]) -> Option<Sparkline> {
        if p50.is_empty() {
            return None;
        }
        let points = p50.chunks(SPARK_STEPS_PER_POINT).map(|c| c.iter().copied().filter(|v| v.is_finite()).reduce(f32::max)).collect();
        Some(Sparkline { target, steps_per_point: SPARK_STEPS_PER_POINT as u8, p50: points })
    }
}

impl AlertBrief {
    pub fn of(a: &Alert) -> AlertBrief {
        AlertBrief {
            target: a.target,
            severity: a.severity,
            basis: a.basis,
            state: a.state,
            threshold: a.threshold,
            predicted: a.predicted,
            minutes_ahead: a.minutes_ahead,
            opened_ms: a.opened_ms,
        }
    }

    /// `<server>.<target>`, the alert's stable id.
    pub fn id(&self, server: &str) -> String {
        format!("{server}.{}", self.target.name())
    }
}

#[cfg(test)]
#[path = "summary_tests.rs"]
mod tests;
