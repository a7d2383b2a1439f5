//! Alert levels (one scheme for the whole product) and predicted alerts with their lifecycle.

use serde::{Deserialize, Serialize};

use crate::metric::Target;
use crate::profile::Profile;

/// The one alert scheme: risk 0-19 healthy, 20-39 watch, 40-69 warning, 70-100 critical.
/// (The original had four conflicting schemes; this is its per-server one.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    #[default]
    Healthy,
    Watch,
    Warning,
    Critical,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Healthy, Level::Watch, Level::Warning, Level::Critical];

    /// The level of a 0-100 risk score (the bands of [`Level::risk_band`]).
    pub fn from_risk(risk: f32) -> Level {
        Level::ALL.iter().rev().copied().find(|l| risk >= l.risk_band().0).unwrap_or(Level::Healthy)
    }

    /// The 0-100 risk scores of this level, `(lowest, highest)` inclusive: healthy 0-19, watch
    /// 20-39, warning 40-69, critical 70-100.
    pub fn risk_band(self) -> (f32, f32) {
        match self {
            Level::Healthy => (0.0, 19.0),
            Level::Watch => (20.0, 39.0),
            Level::Warning => (40.0, 69.0),
            Level::Critical => (70.0, 100.0),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Healthy => "healthy",
            Level::Watch => "watch",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }

    pub fn from_name(name: &str) -> Option<Level> {
        Level::ALL.iter().copied().find(|l| l.name() == name)
    }
}

/// What crossed the threshold: the forecast's P50 (expected) or P90 (plausible worst case), or
/// the server's own value one day before the breach step (`Seasonal`: it crossed at this time
/// of day yesterday, more than 30 minutes ahead; a daily recurrence the P90 band, averaged for
/// its pinball loss, can leave out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertBasis {
    P50,
    P90,
    Seasonal,
}

impl AlertBasis {
    /// Every basis, in wire-code order (the summary encodes a basis by its index here, so new
    /// ones go last).
    pub const ALL: [AlertBasis; 3] = [AlertBasis::P50, AlertBasis::P90, AlertBasis::Seasonal];

    /// `P50` (the expected path crossed), `P90` (only the plausible worst case crossed) or
    /// `seasonal` (the value a day earlier crossed), as people read it on the dashboard and in
    /// Alertmanager's annotations.
    pub fn label(self) -> &'static str {
        match self {
            AlertBasis::P50 => "P50",
            AlertBasis::P90 => "P90",
            AlertBasis::Seasonal => "seasonal",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Opened,
    Updated,
    Resolved,
}

impl AlertState {
    pub const ALL: [AlertState; 3] = [AlertState::Opened, AlertState::Updated, AlertState::Resolved];

    pub fn name(self) -> &'static str {
        match self {
            AlertState::Opened => "opened",
            AlertState::Updated => "updated",
            AlertState::Resolved => "resolved",
        }
    }
}

/// A predicted alert: one per server and target at a time (de-duplicated), the worst
/// crossing within the horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// `<server>.<target>`; stable across updates.
    pub id: String,
    pub server: String,
    pub profile: Profile,
    pub target: Target,
    /// `Warning` or `Critical`.
    pub severity: Level,
    pub basis: AlertBasis,
    pub threshold: f32,
    /// Forecast value at the first crossing step.
    pub predicted: f32,
    /// Current value of the target, if reported.
    #[serde(default)]
    pub current: Option<f32>,
    /// Steps ahead (1-based) of the first crossing; minutes = steps x 5.
    pub steps_ahead: u16,
    pub minutes_ahead: u32,
    pub state: AlertState,
    /// Simulated/source time when the alert opened and was last updated (Unix ms).
    pub opened_ms: i64,
    pub updated_ms: i64,
}

/// An alert lifecycle event on `alerts.<state>.<server>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub v: u16,
    pub tick_ms: i64,
    pub alert: Alert,
}
/// The first `opened` event of an alert id that was already open (opened, and not resolved
/// since) in `events`, taken in order: a second notification for one alert, which the
/// predictor must never publish (not across restarts, not across a partition changing hands).
pub fn reopened<'e>(events: impl IntoIterator<Item = &'e AlertEvent>) -> Option<&'e AlertEvent> {
    let mut open = std::collections::HashSet::new();
    for e in events {
        match e.alert.state {
            AlertState::Opened if !open.insert(e.alert.id.as_str()) => return Some(e),
            AlertState::Resolved => {
                open.remove(e.alert.id.as_str());
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, state: AlertState, tick_ms: i64) -> AlertEvent {
        let alert = Alert {
            id: id.into(),
            server: id.split('.').next().unwrap_or(id).into(),
            profile: Profile::Generic,
            target: Target::Disk,
            severity: Level::Warning,
            basis: AlertBasis::P50,
            threshold: 85.0,
            predicted: 90.0,
            current: None,
            steps_ahead: 3,
            minutes_ahead: 15,
            state,
            opened_ms: 0,
            updated_ms: tick_ms,
        };
        AlertEvent { v: crate::SCHEMA_VERSION, tick_ms, alert }
    }

    #[test]
    fn an_alert_opened_while_open_is_found() {
        use AlertState::*;
        let fine = [event("a.disk", Opened, 1), event("a.disk", Updated, 2), event("a.disk", Resolved, 3), event("a.disk", Opened, 4)];
        assert_eq!(reopened(&fine), None, "opened again after a resolve is a new alert");
        let twice = [event("a.disk", Opened, 1), event("b.disk", Opened, 1), event("a.disk", Opened, 2)];
        assert_eq!(reopened(&twice).map(|e| e.tick_ms), Some(2));
    }
}
