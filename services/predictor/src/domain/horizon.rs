//! The forecast's time steps as the domain counts them: one home for the step length and the
//! near horizon, read by the risk score, the incident odds and the alerts' lead times.

/// Minutes per forecast step (5), from the wire contract's step (`schemas::STEP_MS`).
pub const STEP_MINUTES: u32 = (schemas::STEP_MS / 60_000) as u32;

/// Steps in the near horizon (6 × 5 min = 30 min): the risk score's "next 30 min", the odds
/// "within 30 min" and the alerts that count as imminent.
pub const NEAR_STEPS: usize = 6;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_near_horizon_is_30_minutes_of_5_minute_steps() {
        assert_eq!(STEP_MINUTES, 5);
        assert_eq!(NEAR_STEPS as u32 * STEP_MINUTES, 30);
    }
}
