//! Generator control: scenarios and server states, and the request/reply of the control service.

use serde::{Deserialize, Serialize};

/// A fleet-wide scenario the generator can be switched to at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    #[default]
    Healthy,
    Degrading,
    Critical,
    Cascade,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [Scenario::Healthy, Scenario::Degrading, Scenario::Critical, Scenario::Cascade];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Healthy => "healthy",
            Scenario::Degrading => "degrading",
            Scenario::Critical => "critical",
            Scenario::Cascade => "cascade",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.iter().copied().find(|s| s.name() == name)
    }
}

/// The 8 server states of the generator's Markov model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    Healthy,
    MorningSpike,
    HeavyLoad,
    Idle,
    Maintenance,
    Recovery,
    CriticalIssue,
    Offline,
}

impl ServerState {
    pub const ALL: [ServerState; 8] = [
        ServerState::Healthy,
        ServerState::MorningSpike,
        ServerState::HeavyLoad,
        ServerState::Idle,
        ServerState::Maintenance,
        ServerState::Recovery,
        ServerState::CriticalIssue,
        ServerState::Offline,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ServerState::Healthy => "healthy",
            ServerState::MorningSpike => "morning_spike",
            ServerState::HeavyLoad => "heavy_load",
            ServerState::Idle => "idle",
            ServerState::Maintenance => "maintenance",
            ServerState::Recovery => "recovery",
            ServerState::CriticalIssue => "critical_issue",
            ServerState::Offline => "offline",
        }
    }
}

/// Request on `control.generator.scenario.set` (MessagePack, or JSON for `nats req`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioRequest {
    pub scenario: Scenario,
}

/// Reply to a scenario set or status request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReply {
    pub v: u16,
    pub scenario: Scenario,
    #[serde(default)]
    pub previous: Option<Scenario>,
    /// Servers the scenario drives (all of them for `healthy`'s reset is reported as empty).
    pub affected: Vec<String>,
    pub fleet_size: u32,
    /// Generator ticks so far; the ramp is counted from the switch.
    pub tick: u64,
    /// Steps over which the affected servers ramp to the scenario's targets.
    pub ramp_steps: u32,
}
