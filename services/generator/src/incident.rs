//! Spontaneous incidents, so the training data holds degrading and critical episodes like the
//! ones the operator's scenarios produce live. As in the original's batch mode, problem
//! children and 20 % of the other servers are prone: about 4 degrading incidents a week each
//! (2-5 h ramp to CPU 75 / memory 80 / database I/O wait 18 %, of which 30 % escalate) and 1.5
//! critical ones (30 min-2 h ramp to 92 / 95 / 40 %).

use rand::rngs::StdRng;
use rand::Rng;
use schemas::Scenario;

use crate::episode::{Envelope, Episode, CRITICAL_EFFECTS, DEGRADING_EFFECTS};
use crate::fleet::Server;
use crate::scenario::{degrading_targets, CRITICAL_AFTER_DEGRADING};

const STEPS_PER_WEEK: f64 = 7.0 * 288.0;
const DEGRADING_PER_WEEK: f64 = 4.0;
const CRITICAL_PER_WEEK: f64 = 1.5;
/// Share of degrading incidents that turn critical at the end of their hold.
const ESCALATION: f64 = 0.3;

/// Advances a server's own incident by one step, given this step's uniform draw `u`: ends a
/// finished one, escalates a degrading one whose hold just ended, or starts a new one.
/// Operator episodes are left alone (the operator's scenario owns them).
pub fn advance(slot: &mut Option<Episode>, server: &Server, online: bool, step: u64, u: f64, rng: &mut StdRng) {
    if let Some(e) = slot {
        if e.operator {
            return;
        }
        if e.kind == Scenario::Degrading && e.envelope.hold_end() == Some(step) && u < ESCALATION {
            let from = Some((e.targets, 1.0));
            *slot = Some(critical(step, rng.random_range(6..=24), from, rng));
        } else if e.envelope.finished(step) {
            *slot = None;
        }
        return;
    }
    if !server.incident_prone || !online {
        return;
    }
    let p_critical = CRITICAL_PER_WEEK / STEPS_PER_WEEK;
    let p_degrading = DEGRADING_PER_WEEK / STEPS_PER_WEEK;
    if u < p_critical {
        *slot = Some(critical(step, rng.random_range(6..=24), None, rng));
    } else if u < p_critical + p_degrading {
        *slot = Some(Episode {
            kind: Scenario::Degrading,
            operator: false,
            envelope: Envelope::timed(step, rng.random_range(24..=60), rng.random_range(12..=72), 24),
            targets: degrading_targets(server.profile),
            from: None,
            effects: DEGRADING_EFFECTS,
        });
    }
}

fn critical(step: u64, ramp: u32, from: Option<(crate::episode::Targets, f32)>, rng: &mut StdRng) -> Episode {
    Episode {
        kind: Scenario::Critical,
        operator: false,
        envelope: Envelope::timed(step, ramp, rng.random_range(6..=36), 24),
        targets: CRITICAL_AFTER_DEGRADING,
        from,
        effects: CRITICAL_EFFECTS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Fleet;
    use crate::seeds::{self, Stream};

    #[test]
    fn rates_and_lifecycle() {
        let fleet = Fleet::build(20, 2).unwrap();
        let mut server = fleet.servers[0].clone();
        server.incident_prone = true;
        let mut rng = seeds::rng(2, Stream::Server, 0);
        let (mut slot, mut starts, mut busy) = (None, [0usize; 2], 0usize);
        let weeks = 200u64;
        for step in 0..weeks * 2016 {
            let before = slot.as_ref().map(|e: &Episode| (e.kind, e.envelope.start));
            let u = rng.random();
            advance(&mut slot, &server, true, step, u, &mut rng);
            if let Some(e) = &slot {
                busy += 1;
                if before.is_none() {
                    starts[usize::from(e.kind == Scenario::Critical)] += 1;
                }
                assert!(!e.envelope.finished(step));
            }
        }
        let per_week = |n: usize| n as f64 / weeks as f64;
        // Busy servers start nothing, so observed rates sit a little under the nominal ones.
        assert!((1.5..4.0).contains(&per_week(starts[0])), "degrading {}", per_week(starts[0]));
        assert!((0.4..1.5).contains(&per_week(starts[1])), "critical {}", per_week(starts[1]));
        assert!(busy > 0 && (busy as f64) < 0.8 * (weeks * 2016) as f64);
    }

    #[test]
    fn calm_servers_and_operator_episodes_are_left_alone() {
        let fleet = Fleet::build(20, 2).unwrap();
        let mut server = fleet.servers[0].clone();
        server.incident_prone = false;
        let mut rng = seeds::rng(2, Stream::Server, 0);
        let mut slot = None;
        for step in 0..10_000 {
            advance(&mut slot, &server, true, step, 0.0, &mut rng);
        }
        assert!(slot.is_none());
        let op = Episode {
            kind: Scenario::Degrading,
            operator: true,
            envelope: Envelope::timed(0, 1, 1, 1),
            targets: degrading_targets(server.profile),
            from: None,
            effects: &[],
        };
        let mut slot = Some(op.clone());
        advance(&mut slot, &server, true, 500, 0.0, &mut rng);
        assert_eq!(slot, Some(op));
    }
}
