//! The fleet snapshot published on `predictions.current` each tick, and [`ServerForecast`], one
//! server's full forecast kept in KV `forecasts` (key = server). The snapshot carries a compact
//! [`ServerSummary`] per server (`crate::summary`); its wire layout, how a part is written from
//! pre-encoded summaries and how parts are joined are in [`crate::parts`].

use serde::{Deserialize, Serialize};

use crate::alert::{Alert, Level};
use crate::method::Method;
use crate::metric::{Metrics, Target};
use crate::profile::Profile;
use crate::summary::ServerSummary;

pub use crate::parts::{SnapshotAssembler, SnapshotHeader};

/// Which model produced the numbers; every figure on the dashboard is labelled with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ModelInfo {
    /// e.g. `tft-2026-11-26-ab12cd` from `models/tft.json`.
    pub version: String,
    /// Steps of 5 minutes forecast (96 = 8 h).
    pub horizon_steps: u16,
    pub step_ms: i64,
    /// Past steps the model reads.
    pub encoder_steps: u16,
    /// Fewest past steps with which a server gets a forecast; below it is warming up.
    pub min_history_steps: u16,
    /// The quantiles of `p10`/`p50`/`p90`.
    pub quantiles: Vec<f32>,
}

/// A snapshot, or one part of a snapshot (see [`PartInfo`]). Serialized through the one wire
/// layout of a part (`crate::parts`), so a part written from pre-encoded servers
/// ([`SnapshotHeader::write_part`]) is byte-identical to `encode(&Snapshot)`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Snapshot {
    /// [`crate::SNAPSHOT_VERSION`] (2: per-server summaries; 1 carried full forecasts).
    pub v: u16,
    /// Snapshot counter; all parts of one snapshot share it.
    pub seq: u64,
    /// Source time of the step that closed (Unix ms).
    pub tick_ms: i64,
    /// Wall-clock time of publication (Unix ms).
    pub published_ms: i64,
    pub part: PartInfo,
    pub model: ModelInfo,
    /// Fleet figures over all servers (repeated in every part; small).
    pub fleet: FleetFigures,
    /// Live accuracy of matured forecasts, per target (repeated in every part).
    pub accuracy: Vec<TargetAccuracy>,
    /// Which partition of the fleet this snapshot covers (`crate::partition`); absent when
    /// one predictor holds the whole fleet.
    #[serde(default)]
    pub partition: Option<crate::partition::PartitionInfo>,
    /// The warning/critical thresholds each profile's servers are judged by (profiles without
    /// any, and targets without any, are absent; repeated in every part, ~1 KB).
    #[serde(default)]
    pub thresholds: Vec<ProfileThresholds>,
    /// This part's servers, one summary each; the full forecasts are in KV `forecasts`.
    pub servers: Vec<ServerSummary>,
}

impl Snapshot {
    /// The thresholds of `target` for servers of `profile`, if it has any.
    pub fn thresholds_of(&self, profile: Profile, target: Target) -> Option<&TargetThresholds> {
        self.thresholds.iter().find(|p| p.profile == profile)?.targets.iter().find(|t| t.target == target)
    }
}

/// The thresholds of one profile, per target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileThresholds {
    pub profile: Profile,
    pub targets: Vec<TargetThresholds>,
}

/// Part `index` of `count` (0-based). A snapshot that fits one message has `count = 1`.
/// Parts are published in order, back to back, on the same subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    pub index: u16,
    pub count: u16,
}

impl Default for PartInfo {
    fn default() -> Self {
        PartInfo { index: 0, count: 1 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LevelCounts {
    pub healthy: u32,
    pub watch: u32,
    pub warning: u32,
    pub critical: u32,
}

impl LevelCounts {
    pub fn add(&mut self, level: Level) {
        match level {
            Level::Healthy => self.healthy += 1,
            Level::Watch => self.watch += 1,
            Level::Warning => self.warning += 1,
            Level::Critical => self.critical += 1,
        }
    }
    pub fn get(&self, level: Level) -> u32 {
        match level {
            Level::Healthy => self.healthy,
            Level::Watch => self.watch,
            Level::Warning => self.warning,
            Level::Critical => self.critical,
        }
    }
}

/// Fleet-level figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FleetFigures {
    pub servers: u32,
    /// Servers with a forecast.
    pub ready: u32,
    /// Servers still below the minimum history.
    pub warming: u32,
    pub levels: LevelCounts,
    /// Probability (0-1) that at least one incident happens within 30 min / 8 h. Saturates
    /// at 1 on any fleet of size; [`FleetFigures::expected_incidents_30m`] is what to show.
    pub prob_incident_30m: f32,
    pub prob_incident_8h: f32,
    pub avg_risk: f32,
    pub max_risk: f32,
    /// Fleet health: the worst level of any server (`schemas/README.md`, "Levels").
    pub health: Level,
    /// The riskiest servers, riskiest first (up to 20).
    pub top: Vec<String>,
    /// Active predicted alerts, by severity.
    pub alerts_warning: u32,
    pub alerts_critical: u32,
    /// Expected number of servers with an incident (a resource at or over its critical
    /// threshold) within 30 min / 8 h: the sum of every server's odds. Absent in older
    /// snapshots (0).
    #[serde(default)]
    pub expected_incidents_30m: f32,
    #[serde(default)]
    pub expected_incidents_8h: f32,
    /// The servers that carry most of each expectation, likeliest first (up to 5, odds of at
    /// least 1 %).
    #[serde(default)]
    pub likely_incidents_30m: Vec<ServerOdds>,
    #[serde(default)]
    pub likely_incidents_8h: Vec<ServerOdds>,
}

/// One server's odds (0-1) of an incident within a horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ServerOdds {
    pub server: String,
    pub p: f32,
}

/// Rolling accuracy of forecasts that have matured, for one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetAccuracy {
    pub target: Target,
    /// Forecast points compared so far in the rolling window.
    pub samples: u64,
    /// Normalised quantile loss (the TFT paper's q-risk) at P50 and P90: 2 x sum of pinball losses / sum |actual|.
    pub qrisk_p50: f32,
    pub qrisk_p90: f32,
    /// Share of actuals inside [P10, P90] (ideal 0.8).
    pub coverage: f32,
    /// The same scores for every method the predictor runs, on the same matured steps (the
    /// fields above score what was published, the per-target pick among them).
    #[serde(default)]
    pub methods: Vec<MethodAccuracy>,
}

/// One method's rolling accuracy for one target (same definitions as [`TargetAccuracy`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodAccuracy {
    pub method: Method,
    pub samples: u64,
    pub qrisk_p50: f32,
    pub qrisk_p90: f32,
    /// Share of actuals inside [P10, P90]; absent where the method's P10s are not kept (a
    /// predictor keeps them only for what it published: its memory, issue 14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f32>,
}

/// Warm-up progress of a server without enough history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warmup {
    pub have_steps: u16,
    pub need_steps: u16,
}

/// P10/P50/P90 for one target over the horizon, in the target's raw unit. On the wire the
/// three curves are one compact blob (see [`crate::curves`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetForecast {
    pub target: Target,
    /// The method that made these curves (absent on the wire before methods existed: `model`).
    pub method: Method,
    pub p10: Vec<f32>,
    pub p50: Vec<f32>,
    pub p90: Vec<f32>,
}

/// The recent actual values of one target, oldest first (for charts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetHistory {
    pub target: Target,
    /// `None` where the step had no report.
    pub values: Vec<Option<f32>>,
}

/// A contribution to a server's risk score, in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskReason {
    pub target: Target,
    pub points: f32,
    pub text: String,
}

/// One input's weight in the model's variable selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariableWeight {
    pub name: String,
    pub weight: f32,
}

/// The model's own explanation of a forecast, straight from the ONNX outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Explanation {
    /// Past-input variable-selection weights, largest first.
    pub variables: Vec<VariableWeight>,
    /// Attention over the past window (oldest first), averaged over heads and horizon.
    pub attention: Vec<f32>,
}

/// One server's full forecast: the value of its key in KV `forecasts`, rewritten each tick the
/// server closes a step (~12 KB with 8 targets). The snapshot carries its
/// [`ServerSummary::of`] instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerForecast {
    pub server: String,
    pub profile: Profile,
    /// Source time of the server's latest closed step.
    pub last_ms: i64,
    /// 0-100.
    pub risk: f32,
    pub level: Level,
    pub reasons: Vec<RiskReason>,
    /// Latest values (unknown metrics absent).
    pub current: Metrics,
    /// Recent actuals for charts.
    pub recent: Vec<TargetHistory>,
    /// Present while the server is warming up (then `forecast` is empty).
    pub warmup: Option<Warmup>,
    /// Why the server has no forecast although it is past warm-up (e.g. no method gave finite
    /// numbers); absent when it has one. Such a server's level comes from its current values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_forecast: Option<String>,
    pub forecast: Vec<TargetForecast>,
    pub explanation: Option<Explanation>,
    /// Active predicted alerts for this server.
    pub alerts: Vec<Alert>,
    /// The profile-aware warning/critical thresholds the predictor judged this server by,
    /// so charts draw the lines that were really used (targets without thresholds are absent).
    #[serde(default)]
    pub thresholds: Vec<TargetThresholds>,
}

/// Warning and critical thresholds of one target for one server, in the target's unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TargetThresholds {
    pub target: Target,
    pub warning: f32,
    pub critical: f32,
}

impl ServerForecast {
    pub fn forecast_of(&self, target: Target) -> Option<&TargetForecast> {
        self.forecast.iter().find(|f| f.target == target)
    }
}
