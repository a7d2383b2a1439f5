//! One server, one 5-minute step: state transition, then for every smoothed metric
//! `base = N(mean, std) x state factor x calendar factor`, pushed by incidents and cascades,
//! then AR(1) smoothing `y = 0.85 y_prev + 0.15 base + N(0, 0.1 std)`. The server's
//! behaviours (`behaviour`: leaks, disk fill, runaway CPU, spikes, ...) scale the level and act
//! on the smoothed values before they are reported. The same process feeds the live stream
//! and the export, so both have the same statistics.
//!
//! CPU user + sys + iowait + idle is exactly 100 (the parts are multiples of 1/128 %, which
//! f32 adds without rounding), Java CPU never exceeds user CPU, and an offline server reports
//! nothing.

use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::StandardNormal;
use schemas::{Metric, Metrics, ServerState, METRIC_COUNT, STEP_MS};

use crate::baseline::{idx, spread, SMOOTHED, UPTIME_MAX_DAYS};
use crate::behaviour::Behaviour;
use crate::episode::{Effect, Pull};
use crate::fleet::Server;
use crate::state::{sidx, Transitions, STATE_COUNT};

/// Weight of the previous value in the AR(1) smoothing.
pub const AR_KEEP: f32 = 0.85;
/// Spread of the smoothing's own noise, as a share of the metric's std.
pub const AR_NOISE: f32 = 0.1;
/// Days per step, for uptime.
const STEP_DAYS: f32 = STEP_MS as f32 / 86_400_000.0;
/// CPU parts are multiples of 1/128 %: exact in f32, so the four parts sum to exactly 100.
const CPU_QUANTUM: f32 = 128.0;

/// Everything that is the same for every server at one step.
pub struct StepContext<'a> {
    /// Start of the step (Unix ms).
    pub ts_ms: i64,
    pub hour: u32,
    pub transitions: &'a Transitions,
    pub state_factors: &'a [[f32; METRIC_COUNT]; STATE_COUNT],
    /// Calendar factors for this server's profile at this step.
    pub calendar: &'a [f32; METRIC_COUNT],
}

/// What pushes a server this step besides its state and the calendar.
#[derive(Default, Clone, Copy)]
pub struct Drive<'a> {
    /// The server's own incident, if one is active.
    pub incident: Option<Pull>,
    /// Cascade effects reaching this server's profile, each with its weight.
    pub cascade: &'a [(Effect, f32)],
}

/// The evolving state of one server.
#[derive(Debug, Clone)]
pub struct ServerSim {
    pub state: ServerState,
    /// Smoothed values, indexed like `Metric::ALL` (only `SMOOTHED` ones are used).
    y: [f32; METRIC_COUNT],
    uptime_days: f32,
    rng: StdRng,
    behaviour: Behaviour,
}

impl ServerSim {
    /// Starts a server healthy, at its steady-state levels for the first step's calendar.
    /// `rng` is the server's noise stream, `behaviour` its behaviours (own stream).
    pub fn new(server: &Server, calendar: &[f32; METRIC_COUNT], rng: StdRng, behaviour: Behaviour) -> Self {
        let mut y = [0.0; METRIC_COUNT];
        let level = behaviour.levels();
        for m in SMOOTHED {
            let i = idx(m);
            y[i] = clamp(m, spread(server.profile, m).mean * server.traits.level[i] * level[i] * calendar[i]);
        }
        ServerSim { state: ServerState::Healthy, y, uptime_days: server.traits.uptime0, rng, behaviour }
    }

    pub fn behaviour(&self) -> &Behaviour {
        &self.behaviour
    }

    /// A uniform draw from this server's stream (incident decisions use it).
    pub fn uniform(&mut self) -> f64 {
        self.rng.random()
    }

    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// Advances one step and returns the metrics it reports (`None` when offline).
    /// Every call draws the same amount of randomness, whatever the state, so a server's
    /// noise does not depend on its history.
    pub fn step(&mut self, server: &Server, ctx: &StepContext, drive: &Drive) -> Option<Metrics> {
        let u: f64 = self.rng.random();
        let was_offline = self.state == ServerState::Offline;
        self.state = ctx.transitions.next(self.state, ctx.hour, server.problem_child, u);
        let mut z = [[0.0f32; SMOOTHED.len()]; 2];
        for zs in &mut z {
            for v in zs.iter_mut() {
                *v = self.rng.sample(StandardNormal);
            }
        }
        let z_java: f32 = self.rng.sample(StandardNormal);
        self.behaviour.begin(ctx.ts_ms);

        if self.state == ServerState::Offline {
            return None;
        }
        self.uptime_days += STEP_DAYS;
        if was_offline || self.uptime_days >= UPTIME_MAX_DAYS {
            self.uptime_days = 0.0;
            self.behaviour.reboot();
        }
        let mut level = self.behaviour.levels();
        for (l, t) in level.iter_mut().zip(&server.traits.level) {
            *l *= t;
        }

        let factors = &ctx.state_factors[sidx(self.state)];
        let mut base = [0.0f32; METRIC_COUNT];
        for (k, m) in SMOOTHED.iter().enumerate() {
            let i = idx(*m);
            let sp = spread(server.profile, *m);
            let level = level[i];
            let mut b = (sp.mean * level + sp.std * level * z[0][k]) * factors[i] * ctx.calendar[i];
            for (e, w) in drive.cascade.iter().filter(|(e, _)| e.metric == *m) {
                b = e.apply(b, *w);
            }
            if let Some(p) = &drive.incident {
                for e in p.effects.iter().filter(|e| e.metric == *m) {
                    b = e.apply(b, p.mix);
                }
            }
            base[i] = b.max(0.0);
        }
        if let Some(p) = &drive.incident {
            let (sys, w, u) = (idx(Metric::CpuSys), idx(Metric::CpuIowait), idx(Metric::CpuUser));
            base[w] = p.apply(base[w], |t| t.iowait);
            let (s_b, w_b) = (base[sys], base[w]);
            base[u] = p.apply(base[u], |t| Some((t.cpu_used - s_b - w_b).max(0.0)));
            let mem = idx(Metric::MemUsed);
            base[mem] = p.apply(base[mem], |t| Some(t.mem));
        }
        for (k, m) in SMOOTHED.iter().enumerate() {
            let i = idx(*m);
            let noise = AR_NOISE * spread(server.profile, *m).std * level[i] * z[1][k];
            self.y[i] = clamp(*m, AR_KEEP * self.y[i] + (1.0 - AR_KEEP) * base[i] + noise);
        }
        let mut out = self.y;
        if self.behaviour.apply(&mut out) {
            self.uptime_days = 0.0;
        }
        for m in SMOOTHED {
            out[idx(m)] = clamp(m, out[idx(m)]);
        }
        Some(self.report(&out, server.traits.java_share, z_java))
    }

    fn report(&self, out: &[f32; METRIC_COUNT], java_share: f32, z_java: f32) -> Metrics {
        let y = |m: Metric| out[idx(m)];
        let (user, sys, iowait) = cpu_parts(y(Metric::CpuUser), y(Metric::CpuSys), y(Metric::CpuIowait));
        let share = (java_share + 0.03 * z_java).clamp(0.0, 1.0);
        let java = (user * share * CPU_QUANTUM).floor() / CPU_QUANTUM;
        Metrics {
            cpu_user_pct: Some(user),
            cpu_sys_pct: Some(sys),
            cpu_iowait_pct: Some(iowait),
            cpu_idle_pct: Some(100.0 - (user + sys + iowait)),
            java_cpu_pct: Some(java.min(user)),
            mem_used_pct: Some(y(Metric::MemUsed)),
            swap_used_pct: Some(y(Metric::SwapUsed)),
            disk_usage_pct: Some(y(Metric::DiskUsage)),
            net_in_mb_s: Some(y(Metric::NetIn)),
            net_out_mb_s: Some(y(Metric::NetOut)),
            back_close_wait: Some(y(Metric::BackCloseWait).round()),
            front_close_wait: Some(y(Metric::FrontCloseWait).round()),
            load_average: Some(y(Metric::LoadAverage)),
            uptime_days: Some(self.uptime_days.floor()),
        }
    }
}

/// Keeps a smoothed value in its valid range: percentages 0-100, the rest >= 0.
fn clamp(m: Metric, x: f32) -> f32 {
    let x = if x.is_finite() { x.max(0.0) } else { 0.0 };
    if m.unit().is_percent() {
        x.min(100.0)
    } else {
        x
    }
}

fn quantise(x: f32) -> f32 {
    (x * CPU_QUANTUM).round() / CPU_QUANTUM
}

/// CPU user, sys and iowait scaled to fit in 100 % together and quantised; idle is the rest.
pub fn cpu_parts(user: f32, sys: f32, iowait: f32) -> (f32, f32, f32) {
    let total = user + sys + iowait;
    let scale = if total > 100.0 { 100.0 / total } else { 1.0 };
    let sys = quantise(sys * scale).min(100.0);
    let iowait = quantise(iowait * scale).min(100.0 - sys);
    let user = quantise(user * scale).min(100.0 - sys - iowait);
    (user, sys, iowait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::behaviour::Traits;
    use crate::calendar::Calendar;
    use crate::fleet::Fleet;
    use crate::seeds::{self, Stream};
    use crate::state::factors;
    use schemas::ValidationPolicy;

    #[test]
    fn cpu_parts_sum_to_exactly_100() {
        let mut rng = seeds::rng(1, Stream::Server, 0);
        for _ in 0..100_000 {
            let (u, s, w): (f32, f32, f32) = (rng.random::<f32>() * 150.0, rng.random::<f32>() * 60.0, rng.random::<f32>() * 60.0);
            let (u, s, w) = cpu_parts(u, s, w);
            let idle = 100.0 - (u + s + w);
            assert!(u >= 0.0 && s >= 0.0 && w >= 0.0 && idle >= 0.0);
            assert_eq!(u + s + w + idle, 100.0);
            assert_eq!(idle + w + s + u, 100.0, "in any order");
        }
    }

    #[test]
    fn a_server_stays_valid_and_near_its_baseline() {
        let fleet = Fleet::build(20, 5).unwrap();
        let cal = Calendar::new();
        let t = Transitions::new();
        let sf = ServerState::ALL.map(factors);
        let ts0 = 1_767_571_200_000i64;
        for (i, server) in fleet.servers.iter().enumerate() {
            // The profile's baseline: a server without behaviours (see `behaviour` for those).
            let calm = Behaviour::with_traits(server, Traits::ordinary(), seeds::rng(5, Stream::Behaviour, i as u64));
            let mut sim = ServerSim::new(server, cal.factors(server.profile, ts0), seeds::rng(5, Stream::Server, i as u64), calm);
            let mut mem = Vec::new();
            for k in 0..2016 {
                let ts = ts0 + k * STEP_MS;
                let ctx = StepContext {
                    ts_ms: ts,
                    hour: crate::calendar::hour(ts),
                    transitions: &t,
                    state_factors: &sf,
                    calendar: cal.factors(server.profile, ts),
                };
                if let Some(m) = sim.step(server, &ctx, &Drive::default()) {
                    let rec = schemas::MetricRecord { server: server.name.clone(), ts_ms: ts, profile: Some(server.profile), metrics: m };
                    rec.validate(&ValidationPolicy::at(ts)).unwrap();
                    assert!(m.java_cpu_pct.unwrap() <= m.cpu_user_pct.unwrap());
                    mem.push(m.mem_used_pct.unwrap());
                }
            }
            let mean = mem.iter().sum::<f32>() / mem.len() as f32;
            let want = spread(server.profile, Metric::MemUsed).mean;
            assert!((mean - want).abs() < 0.3 * want, "{}: mem mean {mean} vs {want}", server.name);
        }
    }

    #[test]
    fn an_incident_pulls_cpu_and_memory_to_its_targets() {
        use crate::episode::{Targets, CRITICAL_EFFECTS};
        let fleet = Fleet::build(20, 5).unwrap();
        let server = &fleet.servers[0];
        let cal = [1.0; METRIC_COUNT];
        let t = Transitions::new();
        let sf = [[1.0; METRIC_COUNT]; STATE_COUNT]; // isolate the pull from state changes
        let calm = Behaviour::with_traits(server, Traits::ordinary(), seeds::rng(9, Stream::Behaviour, 0));
        let mut sim = ServerSim::new(server, &cal, seeds::rng(9, Stream::Server, 0), calm);
        let pull =
            Pull { targets: Targets { cpu_used: 90.0, mem: 93.0, iowait: Some(35.0) }, mix: 1.0, from: None, effects: CRITICAL_EFFECTS };
        let ctx = StepContext { ts_ms: 1_767_614_400_000, hour: 12, transitions: &t, state_factors: &sf, calendar: &cal };
        let mut last = None;
        for _ in 0..60 {
            last = sim.step(server, &ctx, &Drive { incident: Some(pull), cascade: &[] }).or(last);
        }
        let m = last.unwrap();
        assert!(100.0 - m.cpu_idle_pct.unwrap() > 85.0, "{m:?}");
        assert!(m.mem_used_pct.unwrap() > 88.0, "{m:?}");
        assert!(m.cpu_iowait_pct.unwrap() > 28.0, "{m:?}");
    }
}
