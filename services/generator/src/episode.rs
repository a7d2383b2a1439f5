//! Incident episodes: a ramp up to a target, a hold, and a ramp down. The operator's
//! scenarios, the spontaneous incidents of the training data and cascade sources are all
//! episodes, so live and export share one mechanism.

use schemas::{Metric, Scenario};

/// When an episode is active and how strongly: 0 -> 1 over `ramp` steps, 1 for `hold`
/// steps (forever when `None`, until the operator changes the scenario), 1 -> 0 over `down`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Envelope {
    /// The step at which the episode began (its first step already ramps).
    pub start: u64,
    pub ramp: u32,
    pub hold: Option<u32>,
    pub down: u32,
}

impl Envelope {
    pub fn held(start: u64, ramp: u32) -> Self {
        Envelope { start, ramp: ramp.max(1), hold: None, down: 1 }
    }

    pub fn timed(start: u64, ramp: u32, hold: u32, down: u32) -> Self {
        Envelope { start, ramp: ramp.max(1), hold: Some(hold), down: down.max(1) }
    }

    /// Strength at `step`, 0-1 (0 before the start and after the end).
    pub fn at(&self, step: u64) -> f32 {
        if step < self.start {
            return 0.0;
        }
        let k = step - self.start;
        let up = ((k + 1) as f32 / self.ramp as f32).min(1.0);
        match self.hold {
            None => up,
            Some(hold) => {
                let top = u64::from(self.ramp) + u64::from(hold);
                if k < top {
                    up
                } else {
                    (1.0 - (k - top + 1) as f32 / self.down as f32).max(0.0)
                }
            }
        }
    }

    /// The step at which a timed episode's hold ends (ramp down begins).
    pub fn hold_end(&self) -> Option<u64> {
        self.hold.map(|h| self.start + u64::from(self.ramp) + u64::from(h))
    }

    /// True once a timed episode has fully ramped down.
    pub fn finished(&self, step: u64) -> bool {
        self.hold_end().is_some_and(|end| step >= end + u64::from(self.down))
    }
}

/// A multiplicative and additive push on one metric, scaled by a weight w in 0-1:
/// `x * (1 + (mul - 1) w) + add w`. The cascade graph's "(x, +)" effects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effect {
    pub metric: Metric,
    pub mul: f32,
    pub add: f32,
}

pub const fn effect(metric: Metric, mul: f32, add: f32) -> Effect {
    Effect { metric, mul, add }
}

impl Effect {
    pub fn apply(&self, x: f32, w: f32) -> f32 {
        x * (1.0 + (self.mul - 1.0) * w) + self.add * w
    }
}

/// Where an incident drives a server: CPU used (100 - idle), memory, and I/O wait when the
/// incident sets it (degrading sets it for databases only).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Targets {
    pub cpu_used: f32,
    pub mem: f32,
    pub iowait: Option<f32>,
}

/// One server's incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// Degrading, Critical or Cascade (a cascade's source server).
    pub kind: Scenario,
    /// Started by the operator's scenario (held until the scenario changes).
    pub operator: bool,
    pub envelope: Envelope,
    pub targets: Targets,
    /// Where the ramp starts instead of the server's natural values (an escalation from
    /// degrading to critical starts at the degrading targets, mixed by this much).
    pub from: Option<(Targets, f32)>,
    /// Side effects on the other metrics, weighted by the envelope.
    pub effects: &'static [Effect],
}

/// An episode's pull on a server at one step: what the simulation needs, nothing more.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pull {
    pub targets: Targets,
    pub mix: f32,
    pub from: Option<(Targets, f32)>,
    pub effects: &'static [Effect],
}

impl Episode {
    pub fn pull(&self, step: u64) -> Option<Pull> {
        let mix = self.envelope.at(step);
        (mix > 0.0).then_some(Pull { targets: self.targets, mix, from: self.from, effects: self.effects })
    }
}

impl Pull {
    /// Pulls a natural value toward the episode's target for it (`target` picks it).
    pub fn apply(&self, x: f32, target: impl Fn(&Targets) -> Option<f32>) -> f32 {
        let mut v = x;
        if let Some((from, m)) = &self.from {
            if let Some(t) = target(from) {
                v += (t - v) * m;
            }
        }
        if let Some(t) = target(&self.targets) {
            v += (t - v) * self.mix;
        }
        v
    }
}

use Metric::*;

/// Degrading: the load climbs, swap starts to be used, connections pile up a little.
pub const DEGRADING_EFFECTS: &[Effect] = &[effect(LoadAverage, 1.5, 0.5), effect(SwapUsed, 1.5, 3.0), effect(BackCloseWait, 1.5, 2.0)];
/// Critical: heavy load, swapping, stuck connections, throughput falling.
pub const CRITICAL_EFFECTS: &[Effect] = &[
    effect(LoadAverage, 2.5, 1.0),
    effect(SwapUsed, 2.0, 15.0),
    effect(BackCloseWait, 3.0, 10.0),
    effect(FrontCloseWait, 2.0, 5.0),
    effect(NetOut, 0.7, 0.0),
];
/// A cascade's source: overloaded and holding connections its clients wait on.
pub const CASCADE_SOURCE_EFFECTS: &[Effect] =
    &[effect(LoadAverage, 2.5, 1.0), effect(SwapUsed, 2.0, 10.0), effect(BackCloseWait, 3.0, 15.0), effect(FrontCloseWait, 2.0, 8.0)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_ramps_holds_and_falls() {
        let e = Envelope::timed(10, 4, 2, 2);
        let got: Vec<f32> = (9..20).map(|s| e.at(s)).collect();
        assert_eq!(got, [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0.0]);
        assert!(!e.finished(17) && e.finished(18));
        let h = Envelope::held(0, 24);
        assert_eq!(h.at(23), 1.0);
        assert_eq!(h.at(10_000), 1.0);
        assert!(!h.finished(10_000));
    }

    #[test]
    fn effects_scale_with_weight() {
        let e = effect(BackCloseWait, 3.0, 15.0);
        assert_eq!(e.apply(10.0, 0.0), 10.0);
        assert_eq!(e.apply(10.0, 1.0), 45.0);
        assert_eq!(e.apply(10.0, 0.5), 27.5);
    }

    #[test]
    fn pull_starts_from_the_previous_targets() {
        let t = |c| Targets { cpu_used: c, mem: 50.0, iowait: None };
        let p = Pull { targets: t(90.0), mix: 0.5, from: Some((t(70.0), 1.0)), effects: &[] };
        assert_eq!(p.apply(20.0, |t| Some(t.cpu_used)), 80.0);
        assert_eq!(p.apply(20.0, |t| t.iowait), 20.0, "no target leaves the value alone");
    }
}
