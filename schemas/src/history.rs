//! The compact per-tick summary retained 7 days on `history.tick` for the historical views.

use serde::{Deserialize, Serialize};

use crate::alert::Level;
use crate::snapshot::FleetFigures;

/// One tick, compactly: the fleet figures plus each server's risk and level. Servers are
/// listed by name in `servers`, and `risk`/`level` are parallel arrays (one byte each), so a
/// week of 1,000-server ticks stays in the hundreds of MB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TickSummary {
    pub v: u16,
    pub seq: u64,
    pub tick_ms: i64,
    pub fleet: FleetFigures,
    pub servers: Vec<String>,
    /// Risk 0-100, rounded.
    pub risk: Vec<u8>,
    pub level: Vec<Level>,
    /// Alert ids opened and resolved on this tick.
    #[serde(default)]
    pub opened: Vec<String>,
    #[serde(default)]
    pub resolved: Vec<String>,
}
