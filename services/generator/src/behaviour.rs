//! Per-server behaviours that ops teams want forecast and that the mean-reverting AR(1)
//! process of `server_sim` cannot produce: without them every simulated server drifts back to
//! a typical level, so a model trained on the export learns to pull each forecast toward that
//! level and never learns a trend, a sawtooth or a spike that comes back every day.
//!
//! | behaviour | servers | shape |
//! |---|---|---|
//! | memory leak | 15 % (memory normally <= 85 %) | +0.02-0.3 pt/step (log-uniform) until 90-98 %, then a restart: memory back to base, uptime 0; next leak after 0-2 days |
//! | disk filling | 20 % | +0.01-0.5 pt/step (log-uniform) until 80-98 %, then a cleanup of 20-50 pt (never below half the base); next fill after 6 h-3 days |
//! | connection leak | 12 % | back and/or front CLOSE_WAIT +0.2-5/step for 12.5 h-2 days, then a service restart drops them; next after 2 h-2 days |
//! | runaway CPU | 8 % | one every 5 days on average: CPU used climbs to 95-100 % in 15 min-1 h, stays 2-36 h, then a restart (uptime 0) |
//! | slow degradation | 10 % | one every 6 days: a CPU, memory, I/O wait, swap or load level climbs x1.3-2 over 1-3 days, holds 6 h-2 days, then a fix |
//! | level shift | 25 % | one every 4 days (a deploy): 1-2 metric levels step x1.15-1.6 up or down, persistent (kept within x0.5-2) |
//! | idle machine | 10 % | CPU used 1-5 %, network x0.002-0.02, load x0.03-0.15, less memory |
//! | recurring spike | 25 % | a daily job at the same 5-minute slot: 1-3 steps of CPU +20-60 pt, I/O wait +5-30 pt, network x2-8 |
//! | scale | 50 % | network x10^U(-2, 1), load x10^U(-2, 0) (downward only: the predictor's load alert lines are absolute) |
//!
//! A server's traits and events come from its own stream (`Stream::Behaviour`), drawn in a
//! fixed order, so the noise of `server_sim` is what it was without behaviours, a scenario
//! switch shifts nothing here, and one seed gives the same behaviours in live mode and the export.
//!
//! Two hooks in `server_sim`'s step: [`Behaviour::levels`] scales the level the AR(1) process
//! reverts to (idle, scale, degradation, level shifts: the smoothing moves the server there
//! as it would a real one), and [`Behaviour::apply`] acts on the smoothed values just before
//! they are reported (leaks, disk fill, runaway CPU, spikes: shapes the smoothing would blur,
//! and resets that must be immediate). A reboot the state machine causes (offline, monthly
//! patching) also ends leaks and runaway processes ([`Behaviour::reboot`]).

use rand::rngs::StdRng;
use rand::Rng;
use schemas::{Metric, METRIC_COUNT, STEP_MS};

use crate::baseline::{idx, spread, SMOOTHED};
use crate::fleet::Server;

/// Steps in a day and an hour.
pub const DAY: u32 = 288;
const HOUR: u32 = 12;
const DAY_MS: i64 = 86_400_000;

pub const IDLE_SHARE: f64 = 0.10;
pub const SCALED_SHARE: f64 = 0.50;
pub const MEM_LEAK_SHARE: f64 = 0.15;
pub const DISK_FILL_SHARE: f64 = 0.20;
pub const CONN_LEAK_SHARE: f64 = 0.12;
pub const RUNAWAY_SHARE: f64 = 0.08;
pub const DEGRADING_SHARE: f64 = 0.10;
pub const DEPLOYING_SHARE: f64 = 0.25;
pub const CRON_SHARE: f64 = 0.25;

/// CPU used of an idle machine, %.
pub const IDLE_CPU: (f32, f32) = (1.0, 5.0);
/// log10 of the network and load scale of a scaled server.
pub const NET_SCALE_LOG10: (f32, f32) = (-2.0, 1.0);
pub const LOAD_SCALE_LOG10: (f32, f32) = (-2.0, 0.0);

/// Memory leak rate, points per step (log-uniform), and where the restart comes.
pub const MEM_LEAK_RATE: (f32, f32) = (0.02, 0.3);
pub const MEM_RESTART_AT: (f32, f32) = (90.0, 98.0);
/// Only servers whose memory normally sits at or below this leak (room to grow).
pub const MEM_LEAK_MAX_BASE: f32 = 85.0;
const MEM_QUIET: (u32, u32) = (0, 2 * DAY);

/// Disk fill rate, points per step (log-uniform), where the cleanup comes and what it frees.
pub const DISK_FILL_RATE: (f32, f32) = (0.01, 0.5);
pub const DISK_CLEANUP_AT: (f32, f32) = (80.0, 98.0);
pub const DISK_CLEANUP_DROP: (f32, f32) = (20.0, 50.0);
const DISK_QUIET: (u32, u32) = (6 * HOUR, 3 * DAY);

/// Connection leak rate, sockets in CLOSE_WAIT per step (log-uniform), and how long it leaks.
pub const CONN_LEAK_RATE: (f32, f32) = (0.2, 5.0);
pub const CONN_LEAK_STEPS: (f32, f32) = (150.0, 600.0);
const CONN_QUIET: (u32, u32) = (2 * HOUR, 2 * DAY);

/// Runaway CPU: starts per day on a prone server, CPU used it holds, climb and hold in steps.
pub const RUNAWAY_PER_DAY: f64 = 0.2;
pub const RUNAWAY_CPU: (f32, f32) = (95.0, 100.0);
const RUNAWAY_RAMP: (u32, u32) = (3, 12);
const RUNAWAY_HOLD: (u32, u32) = (2 * HOUR, 36 * HOUR);

/// Slow degradation: starts per day on a prone server, the factor it reaches, climb and hold.
pub const DEGRADE_PER_DAY: f64 = 1.0 / 6.0;
pub const DEGRADE_PEAK: (f32, f32) = (1.3, 2.0);
const DEGRADE_RAMP: (u32, u32) = (DAY, 3 * DAY);
const DEGRADE_HOLD: (u32, u32) = (6 * HOUR, 2 * DAY);
const DEGRADABLE: [Metric; 6] =
    [Metric::CpuUser, Metric::MemUsed, Metric::CpuIowait, Metric::SwapUsed, Metric::LoadAverage, Metric::CpuSys];

/// Level shifts: per day on a deploying server, the step's size, the bounds of the product.
pub const SHIFT_PER_DAY: f64 = 0.25;
pub const SHIFT_SIZE: (f32, f32) = (1.15, 1.6);
pub const SHIFT_BOUNDS: (f32, f32) = (0.5, 2.0);
const SHIFTABLE: [Metric; 9] = [
    Metric::CpuUser,
    Metric::CpuSys,
    Metric::CpuIowait,
    Metric::MemUsed,
    Metric::NetIn,
    Metric::NetOut,
    Metric::LoadAverage,
    Metric::BackCloseWait,
    Metric::FrontCloseWait,
];

/// Recurring spike: steps, CPU and I/O wait added (points), network multiplier.
pub const CRON_STEPS: (u32, u32) = (1, 3);
pub const CRON_CPU: (f32, f32) = (20.0, 60.0);
pub const CRON_IOWAIT: (f32, f32) = (5.0, 30.0);
pub const CRON_NET: (f32, f32) = (2.0, 8.0);

/// Degradation and level shifts never push a percentage's expected level above this.
const PCT_CEILING: f32 = 95.0;

/// A connection leak: its rate and which side's sockets pile up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnLeak {
    pub rate: f32,
    pub back: bool,
    pub front: bool,
}

/// A daily job: its first step of the day (0-287), steps, and what it adds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cron {
    pub at: u32,
    pub steps: u32,
    pub cpu: f32,
    pub iowait: f32,
    pub net: f32,
}

impl Cron {
    /// Whether a step of the day (0-287) falls in the job.
    pub fn runs_at(&self, step_of_day: u32) -> bool {
        (step_of_day + DAY - self.at) % DAY < self.steps
    }
}

/// Which behaviours a server has and at what rates, drawn once from its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Traits {
    pub idle: bool,
    /// Static multiplier of each metric's level (idle machine, network and load scale).
    pub level: [f32; METRIC_COUNT],
    /// Memory leak rate, points per step.
    pub mem_leak: Option<f32>,
    /// Disk fill rate, points per step.
    pub disk_fill: Option<f32>,
    pub conn_leak: Option<ConnLeak>,
    pub runaway: bool,
    pub degrades: bool,
    pub deploys: bool,
    pub cron: Option<Cron>,
}

fn uniform(rng: &mut StdRng, (lo, hi): (f32, f32)) -> f32 {
    lo + (hi - lo) * rng.random::<f32>()
}

fn log_uniform(rng: &mut StdRng, (lo, hi): (f32, f32)) -> f32 {
    (lo.ln() + (hi.ln() - lo.ln()) * rng.random::<f32>()).exp()
}

fn steps(rng: &mut StdRng, (lo, hi): (u32, u32)) -> u32 {
    rng.random_range(lo..=hi)
}

impl Traits {
    /// A server with none of the behaviours.
    pub fn ordinary() -> Traits {
        Traits {
            idle: false,
            level: [1.0; METRIC_COUNT],
            mem_leak: None,
            disk_fill: None,
            conn_leak: None,
            runaway: false,
            degrades: false,
            deploys: false,
            cron: None,
        }
    }

    /// Draws a server's traits. Every parameter is drawn whether it is used or not, so the
    /// draws of one behaviour never depend on another's.
    pub fn draw(server: &Server, rng: &mut StdRng) -> Traits {
        use Metric::*;
        let mean = |m: Metric| spread(server.profile, m).mean * server.traits.level[idx(m)];
        let mut t = Traits::ordinary();

        t.idle = rng.random_bool(IDLE_SHARE);
        let (cpu, net, load, mem) =
            (uniform(rng, IDLE_CPU), log_uniform(rng, (0.002, 0.02)), uniform(rng, (0.03, 0.15)), uniform(rng, (0.4, 0.8)));
        if t.idle {
            let used = mean(CpuUser) + mean(CpuSys) + mean(CpuIowait);
            for m in [CpuUser, CpuSys, CpuIowait] {
                t.level[idx(m)] = cpu / used;
            }
            for (m, f) in [
                (NetIn, net),
                (NetOut, net),
                (LoadAverage, load),
                (MemUsed, mem),
                (SwapUsed, 0.3),
                (BackCloseWait, 0.2),
                (FrontCloseWait, 0.2),
            ] {
                t.level[idx(m)] = f;
            }
        }

        let scaled = rng.random_bool(SCALED_SHARE);
        let (net, load) = (10f32.powf(uniform(rng, NET_SCALE_LOG10)), 10f32.powf(uniform(rng, LOAD_SCALE_LOG10)));
        if scaled {
            t.level[idx(NetIn)] *= net;
            t.level[idx(NetOut)] *= net;
            t.level[idx(LoadAverage)] *= load;
        }

        let (leaks, rate) = (rng.random_bool(MEM_LEAK_SHARE), log_uniform(rng, MEM_LEAK_RATE));
        t.mem_leak = (leaks && mean(MemUsed) * t.level[idx(MemUsed)] <= MEM_LEAK_MAX_BASE).then_some(rate);

        let (fills, rate) = (rng.random_bool(DISK_FILL_SHARE), log_uniform(rng, DISK_FILL_RATE));
        t.disk_fill = fills.then_some(rate);

        let (leaks, rate, side) = (rng.random_bool(CONN_LEAK_SHARE), log_uniform(rng, CONN_LEAK_RATE), rng.random::<f32>());
        t.conn_leak = leaks.then_some(ConnLeak { rate, back: side < 0.8, front: side >= 0.5 });

        t.runaway = rng.random_bool(RUNAWAY_SHARE);
        t.degrades = rng.random_bool(DEGRADING_SHARE);
        t.deploys = rng.random_bool(DEPLOYING_SHARE);

        let runs = rng.random_bool(CRON_SHARE);
        let cron = Cron {
            at: rng.random_range(0..DAY),
            steps: steps(rng, CRON_STEPS),
            cpu: uniform(rng, CRON_CPU),
            iowait: uniform(rng, CRON_IOWAIT),
            net: uniform(rng, CRON_NET),
        };
        t.cron = runs.then_some(cron);
        t
    }
}

/// A quantity that grows while active and is reset or cut back: leaked memory, filled disk,
/// leaked sockets. `quiet` counts the steps until the next episode begins.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Growth {
    offset: f32,
    active: bool,
    quiet: u32,
    /// Where the episode ends (memory %, disk %, or sockets leaked).
    limit: f32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Runaway {
    age: u32,
    ramp: u32,
    end: u32,
    target: f32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Degradation {
    metric: usize,
    age: u32,
    ramp: u32,
    end: u32,
    peak: f32,
}

impl Degradation {
    fn factor(&self) -> f32 {
        1.0 + (self.peak - 1.0) * ((self.age + 1) as f32 / self.ramp as f32).min(1.0)
    }
}

/// One server's behaviours: its traits and where each behaviour stands.
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub traits: Traits,
    rng: StdRng,
    /// Highest dynamic multiplier per metric (percentages stay under `PCT_CEILING`).
    cap: [f32; METRIC_COUNT],
    step_of_day: u32,
    /// This step's draws: rate jitter (0.5-1.5), spike size (0.8-1.2), runaway wobble (-1..1).
    jitter: f32,
    spike: f32,
    wobble: f32,
    mem: Growth,
    disk: Growth,
    conn: Growth,
    runaway: Option<Runaway>,
    degradation: Option<Degradation>,
    shift: [f32; METRIC_COUNT],
}

impl Behaviour {
    /// Draws a server's traits from its behaviour stream, which then drives its events.
    pub fn new(server: &Server, mut rng: StdRng) -> Self {
        let traits = Traits::draw(server, &mut rng);
        Self::with_traits(server, traits, rng)
    }

    /// A server with the given traits (tests force a behaviour this way).
    pub fn with_traits(server: &Server, traits: Traits, mut rng: StdRng) -> Self {
        let mut cap = [f32::INFINITY; METRIC_COUNT];
        for m in SMOOTHED.into_iter().filter(|m| m.unit().is_percent()) {
            let i = idx(m);
            cap[i] = PCT_CEILING / (spread(server.profile, m).mean * server.traits.level[i] * traits.level[i]);
        }
        // Episodes start at random phases, so leaky servers do not all leak at once.
        let mut quiet = |(_, hi): (u32, u32)| Growth { quiet: rng.random_range(0..=hi), ..Growth::default() };
        let (mem, disk, conn) = (quiet(MEM_QUIET), quiet(DISK_QUIET), quiet(CONN_QUIET));
        Behaviour {
            traits,
            rng,
            cap,
            step_of_day: 0,
            jitter: 1.0,
            spike: 1.0,
            wobble: 0.0,
            mem,
            disk,
            conn,
            runaway: None,
            degradation: None,
            shift: [1.0; METRIC_COUNT],
        }
    }

    /// Advances every behaviour to the step starting at `ts_ms`. Called every step, offline
    /// or not, and draws the same amount of randomness unless an episode starts or ends.
    pub fn begin(&mut self, ts_ms: i64) {
        self.step_of_day = (ts_ms.rem_euclid(DAY_MS) / STEP_MS) as u32;
        let u: [f32; 6] = self.rng.random();
        self.jitter = 0.5 + u[0];
        self.spike = 0.8 + 0.4 * u[1];
        self.wobble = 2.0 * u[2] - 1.0;

        let rng = &mut self.rng;
        if let Some(rate) = self.traits.mem_leak {
            grow(&mut self.mem, rate * self.jitter, || uniform(rng, MEM_RESTART_AT));
        }
        if let Some(rate) = self.traits.disk_fill {
            grow(&mut self.disk, rate * self.jitter, || uniform(rng, DISK_CLEANUP_AT));
        }
        if let Some(c) = self.traits.conn_leak {
            grow(&mut self.conn, c.rate * self.jitter, || c.rate * uniform(rng, CONN_LEAK_STEPS));
            if self.conn.active && self.conn.offset >= self.conn.limit {
                self.conn = Growth { quiet: steps(rng, CONN_QUIET), ..Growth::default() };
            }
        }

        if let Some(r) = &mut self.runaway {
            r.age += 1;
        } else if self.traits.runaway && f64::from(u[3]) < RUNAWAY_PER_DAY / f64::from(DAY) {
            let ramp = steps(rng, RUNAWAY_RAMP);
            self.runaway = Some(Runaway { age: 0, ramp, end: ramp + steps(rng, RUNAWAY_HOLD), target: uniform(rng, RUNAWAY_CPU) });
        }

        if let Some(d) = &mut self.degradation {
            d.age += 1;
            if d.age >= d.end {
                self.degradation = None;
            }
        } else if self.traits.degrades && f64::from(u[4]) < DEGRADE_PER_DAY / f64::from(DAY) {
            let metric = idx(DEGRADABLE[rng.random_range(0..DEGRADABLE.len())]);
            let ramp = steps(rng, DEGRADE_RAMP);
            let end = ramp + steps(rng, DEGRADE_HOLD);
            self.degradation = Some(Degradation { metric, age: 0, ramp, end, peak: uniform(rng, DEGRADE_PEAK) });
        }

        if self.traits.deploys && f64::from(u[5]) < SHIFT_PER_DAY / f64::from(DAY) {
            let up = rng.random_bool(0.5);
            let n = SHIFTABLE.len();
            let first = rng.random_range(0..n);
            let picks = [first, (first + rng.random_range(1..n)) % n];
            for k in &picks[..rng.random_range(1..=2)] {
                let i = idx(SHIFTABLE[*k]);
                let f = uniform(rng, SHIFT_SIZE);
                let s = if up { self.shift[i] * f } else { self.shift[i] / f };
                self.shift[i] = s.clamp(SHIFT_BOUNDS.0, SHIFT_BOUNDS.1);
            }
        }
    }

    /// Multipliers of each metric's level this step: the static traits times the level
    /// shifts and any degradation (percentages capped below `PCT_CEILING`).
    pub fn levels(&self) -> [f32; METRIC_COUNT] {
        let mut l = self.traits.level;
        for (i, v) in l.iter_mut().enumerate() {
            let mut d = self.shift[i];
            if let Some(g) = self.degradation.filter(|g| g.metric == i) {
                d *= g.factor();
            }
            *v *= d.min(self.cap[i].max(1.0));
        }
        l
    }

    /// A restart: leaked memory and sockets are freed, a runaway process is gone. The disk
    /// keeps what it holds.
    pub fn reboot(&mut self) {
        self.mem = Growth { quiet: steps(&mut self.rng, MEM_QUIET), ..Growth::default() };
        if self.conn.active || self.conn.offset > 0.0 {
            self.conn = Growth { quiet: steps(&mut self.rng, CONN_QUIET), ..Growth::default() };
        }
        self.runaway = None;
    }

    /// Acts on the smoothed values `y` (indexed like `Metric::ALL`) before they are reported:
    /// a leak that reached its restart point or a runaway whose hold ended restarts the
    /// server (returns true: uptime goes to 0), a full disk is cleaned up, then leaks, disk
    /// fill, runaway CPU and the daily job are added. The caller clamps and splits CPU.
    pub fn apply(&mut self, y: &mut [f32; METRIC_COUNT]) -> bool {
        use Metric::*;
        let (mem, disk, user, sys, iowait, load) =
            (idx(MemUsed), idx(DiskUsage), idx(CpuUser), idx(CpuSys), idx(CpuIowait), idx(LoadAverage));
        let leak_full = self.mem.active && y[mem] + self.mem.offset >= self.mem.limit;
        let restart = leak_full || self.runaway.is_some_and(|r| r.age >= r.end);
        if restart {
            self.reboot();
        }
        y[mem] += self.mem.offset;

        if self.disk.active && y[disk] + self.disk.offset >= self.disk.limit {
            let drop = uniform(&mut self.rng, DISK_CLEANUP_DROP);
            let offset = (self.disk.offset - drop).max(-0.5 * y[disk]);
            self.disk = Growth { offset, quiet: steps(&mut self.rng, DISK_QUIET), ..Growth::default() };
        }
        y[disk] += self.disk.offset;

        if let Some(c) = self.traits.conn_leak {
            if c.back {
                y[idx(BackCloseWait)] += self.conn.offset;
            }
            if c.front {
                y[idx(FrontCloseWait)] += self.conn.offset;
            }
        }

        if let Some(r) = self.runaway {
            let w = ((r.age + 1) as f32 / r.ramp as f32).min(1.0);
            let target = (r.target + self.wobble).min(100.0);
            let want = (target - y[sys] - y[iowait]).max(y[user]);
            y[user] += w * (want - y[user]);
            y[load] *= 1.0 + w;
        }

        if let Some(c) = self.traits.cron.filter(|c| c.runs_at(self.step_of_day)) {
            let j = self.spike;
            y[user] += c.cpu * j;
            y[iowait] += c.iowait * j;
            for m in [NetIn, NetOut] {
                y[idx(m)] *= 1.0 + (c.net - 1.0) * j;
            }
            y[load] *= 1.0 + 0.5 * j;
        }
        restart
    }

    /// Whether a memory leak, a disk fill, a connection leak, a runaway process or a
    /// degradation is under way (for tests and inspection).
    pub fn active(&self) -> [bool; 5] {
        [self.mem.active, self.disk.active, self.conn.active, self.runaway.is_some(), self.degradation.is_some()]
    }
}

/// One step of a growth: counts down a quiet spell, then starts an episode with the limit
/// `limit()` draws, then grows by `by`.
fn grow(g: &mut Growth, by: f32, limit: impl FnOnce() -> f32) {
    if g.active {
        g.offset += by;
    } else if g.quiet > 0 {
        g.quiet -= 1;
    } else {
        g.active = true;
        g.limit = limit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::hour;
    use crate::fleet::Fleet;
    use crate::seeds::{self, Stream};
    use crate::server_sim::{Drive, ServerSim, StepContext};
    use crate::state::{Transitions, STATE_COUNT};
    use schemas::{Metrics, Profile, ValidationPolicy};

    const MONDAY: i64 = 1_767_571_200_000;

    fn server(profile: Profile) -> Server {
        let fleet = Fleet::build(20, 5).unwrap();
        fleet.servers.into_iter().find(|s| s.profile == profile).unwrap()
    }

    /// One online step of a run: its index, what it reported, and which behaviours were
    /// under way after it (`Behaviour::active`).
    type Online = (usize, Metrics, [bool; 5]);

    /// Runs one server with the given traits for `days` on a flat calendar with neutral
    /// states (as the incident test in `server_sim` does), so the behaviour is what moves it.
    fn run(server: &Server, traits: Traits, seed: u64, days: u32) -> Vec<Online> {
        let cal = [1.0; METRIC_COUNT];
        let t = Transitions::new();
        let sf = [[1.0; METRIC_COUNT]; STATE_COUNT];
        let b = Behaviour::with_traits(server, traits, seeds::rng(seed, Stream::Behaviour, 0));
        let mut sim = ServerSim::new(server, &cal, seeds::rng(seed, Stream::Server, 0), b);
        (0..(days * DAY) as usize)
            .filter_map(|k| {
                let ts = MONDAY + k as i64 * STEP_MS;
                let ctx = StepContext { ts_ms: ts, hour: hour(ts), transitions: &t, state_factors: &sf, calendar: &cal };
                sim.step(server, &ctx, &Drive::default()).map(|m| (k, m, sim.behaviour().active()))
            })
            .collect()
    }

    /// The episodes of behaviour `b` that end while the server reports: the steps of the
    /// episode and the step right after it (the restart, cleanup or reset).
    fn episodes(steps: &[Online], b: usize) -> Vec<(&[Online], &Online)> {
        let mut out = Vec::new();
        let mut k = 0;
        while k < steps.len() {
            if !steps[k].2[b] {
                k += 1;
                continue;
            }
            let start = k;
            while k < steps.len() && steps[k].2[b] && steps[k].0 == steps[start].0 + (k - start) {
                k += 1;
            }
            if k < steps.len() && steps[k].0 == steps[k - 1].0 + 1 && !steps[k].2[b] {
                out.push((&steps[start..k], &steps[k]));
            }
        }
        out
    }

    fn cpu_used(m: &Metrics) -> f32 {
        100.0 - m.cpu_idle_pct.unwrap()
    }

    fn mean(v: impl IntoIterator<Item = f32>) -> f32 {
        let (s, n) = v.into_iter().fold((0.0, 0), |(s, n), x| (s + x, n + 1));
        s / n as f32
    }

    /// Means of consecutive `w`-step windows of a metric over an episode.
    fn windows(ep: &[Online], w: usize, f: impl Fn(&Metrics) -> f32) -> Vec<f32> {
        ep.chunks_exact(w).map(|c| mean(c.iter().map(|s| f(&s.1)))).collect()
    }

    #[test]
    fn traits_have_the_documented_shares_and_rates() {
        let fleet = Fleet::build(3000, 11).unwrap();
        let traits: Vec<Traits> =
            fleet.servers.iter().enumerate().map(|(i, s)| Traits::draw(s, &mut seeds::rng(11, Stream::Behaviour, i as u64))).collect();
        let share = |f: &dyn Fn(&Traits) -> bool| traits.iter().filter(|t| f(t)).count() as f64 / traits.len() as f64;
        let near = |got: f64, want: f64| assert!((got - want).abs() < 0.03, "share {got} vs {want}");
        near(share(&|t| t.idle), IDLE_SHARE);
        near(share(&|t| t.disk_fill.is_some()), DISK_FILL_SHARE);
        near(share(&|t| t.conn_leak.is_some()), CONN_LEAK_SHARE);
        near(share(&|t| t.runaway), RUNAWAY_SHARE);
        near(share(&|t| t.degrades), DEGRADING_SHARE);
        near(share(&|t| t.deploys), DEPLOYING_SHARE);
        near(share(&|t| t.cron.is_some()), CRON_SHARE);
        // Servers whose memory already sits high do not leak, so a little under the share.
        let leaks = share(&|t| t.mem_leak.is_some());
        assert!((0.08..=MEM_LEAK_SHARE + 0.03).contains(&leaks), "{leaks}");
        let ordinary =
            share(&|t| !t.idle && t.mem_leak.is_none() && t.disk_fill.is_none() && t.conn_leak.is_none() && !t.runaway && !t.degrades);
        assert!(ordinary > 0.4, "most servers have none of the trends: {ordinary}");

        let within = |x: f32, (lo, hi): (f32, f32)| (lo..=hi).contains(&x);
        for (t, s) in traits.iter().zip(&fleet.servers) {
            assert!(t.mem_leak.is_none_or(|r| within(r, MEM_LEAK_RATE)));
            assert!(t.disk_fill.is_none_or(|r| within(r, DISK_FILL_RATE)));
            assert!(t.conn_leak.is_none_or(|c| within(c.rate, CONN_LEAK_RATE) && (c.back || c.front)));
            if let Some(c) = t.cron {
                assert!(c.at < DAY && (1..=3).contains(&c.steps) && within(c.cpu, CRON_CPU) && within(c.net, CRON_NET));
            }
            if t.idle {
                let used: f32 = [Metric::CpuUser, Metric::CpuSys, Metric::CpuIowait]
                    .map(|m| spread(s.profile, m).mean * s.traits.level[idx(m)] * t.level[idx(m)])
                    .iter()
                    .sum();
                assert!(within(used, (IDLE_CPU.0 - 1e-3, IDLE_CPU.1 + 1e-3)), "idle CPU {used}");
            }
        }
        // Network and load scales spread over orders of magnitude.
        let net: Vec<f32> = traits.iter().filter(|t| !t.idle).map(|t| t.level[idx(Metric::NetOut)]).collect();
        let (lo, hi) = net.iter().fold((f32::MAX, 0f32), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        assert!(lo < 0.02 && hi > 5.0, "network scale {lo}..{hi}");
        let load = traits.iter().map(|t| t.level[idx(Metric::LoadAverage)]);
        assert!(load.clone().fold(f32::MAX, f32::min) < 0.02 && load.fold(0f32, f32::max) <= 1.0);
    }

    #[test]
    fn a_memory_leak_rises_until_a_restart_resets_memory_and_uptime() {
        let web = server(Profile::WebApi);
        let rate = 0.07;
        let steps = run(&web, Traits { mem_leak: Some(rate), ..Traits::ordinary() }, 3, 20);
        let mem = |m: &Metrics| m.mem_used_pct.unwrap();
        let base = spread(web.profile, Metric::MemUsed).mean * web.traits.level[idx(Metric::MemUsed)];
        let leaks = episodes(&steps, 0);
        for (ep, (_, after, _)) in &leaks {
            let (_, last, _) = ep.last().unwrap();
            assert!(mem(last) >= MEM_RESTART_AT.0 - 4.0, "leaked up to {}", mem(last));
            assert!(mem(after) < mem(last) - 15.0 && (mem(after) - base).abs() < 12.0, "back to base {base}: {}", mem(after));
            assert_eq!(after.uptime_days, Some(0.0), "a restart");
            // Rising all along (monotonic-ish: 6-hour means; the noise stays), at the rate.
            let w = windows(ep, 72, mem);
            assert!(w.len() >= 3, "{} steps", ep.len());
            assert!(w.windows(2).filter(|p| p[1] > p[0]).count() + 1 >= w.len() - 1, "6-hour means {w:?}");
            let slope = (w[w.len() - 1] - w[0]) / (72.0 * (w.len() - 1) as f32);
            assert!((0.6 * rate..1.4 * rate).contains(&slope), "slope {slope} vs rate {rate}");
        }
        assert!(leaks.len() >= 3, "{} leak restarts in 20 days", leaks.len());
    }

    #[test]
    fn a_filling_disk_is_cleaned_up_by_20_to_50_points() {
        let web = server(Profile::WebApi);
        let rate = 0.2;
        let steps = run(&web, Traits { disk_fill: Some(rate), ..Traits::ordinary() }, 4, 20);
        let disk = |m: &Metrics| m.disk_usage_pct.unwrap();
        let fills = episodes(&steps, 1);
        for (ep, (k, _, _)) in &fills {
            // Means of 6 steps on either side: the step that crosses the line is chosen by
            // its own upward noise, which would shrink a one-step drop.
            let at = steps.iter().position(|s| s.0 == *k).unwrap();
            let before = mean(ep[ep.len().saturating_sub(6)..].iter().map(|s| disk(&s.1)));
            let after = mean(steps[at..(at + 6).min(steps.len())].iter().map(|s| disk(&s.1)));
            assert!(before >= DISK_CLEANUP_AT.0 - 8.0, "cleaned up at {before}");
            let drop = before - after;
            assert!((DISK_CLEANUP_DROP.0 - 6.0..=DISK_CLEANUP_DROP.1 + 6.0).contains(&drop), "drop {drop}");
            if ep.len() >= 144 {
                let w = windows(ep, 36, disk);
                let slope = (w[w.len() - 1] - w[0]) / (36.0 * (w.len() - 1) as f32);
                assert!((0.5 * rate..1.5 * rate).contains(&slope), "slope {slope} vs rate {rate}");
            }
        }
        assert!(fills.len() >= 3, "{} cleanups in 20 days", fills.len());
        // Between fills the disk holds its level: no cleanup right after a cleanup.
        for (ep, _) in &fills {
            let start = ep[0].0;
            let before: Vec<f32> = steps.iter().filter(|s| s.0 + 12 < start && s.0 + 48 >= start).map(|s| disk(&s.1)).collect();
            assert!(before.iter().all(|d| (d - before[0]).abs() < 15.0), "quiet before a fill: {before:?}");
            assert!(ep.len() >= 2);
        }
    }

    #[test]
    fn a_connection_leak_grows_linearly_then_resets() {
        let db = server(Profile::Database);
        let rate = 2.0;
        let leak = ConnLeak { rate, back: true, front: false };
        let steps = run(&db, Traits { conn_leak: Some(leak), ..Traits::ordinary() }, 5, 15);
        let back = |m: &Metrics| m.back_close_wait.unwrap();
        let leaks = episodes(&steps, 2);
        for (ep, (_, after, _)) in &leaks {
            let n = ep.len();
            assert!(n >= CONN_LEAK_STEPS.0 as usize / 2, "{n} steps");
            let (a, b, c) = (back(&ep[0].1), back(&ep[n / 2].1), back(&ep[n - 1].1));
            // Linear: as much in each half, at the rate.
            assert!(((b - a) - (c - b)).abs() < 0.15 * (c - a), "{a} {b} {c}");
            assert!(((c - a) / (n - 1) as f32 - rate).abs() < 0.15 * rate, "{a} -> {c} in {n}");
            assert!(back(after) < 25.0, "reset to a handful: {}", back(after));
            assert!(after.uptime_days >= ep[n - 1].1.uptime_days, "a service restart, not a reboot");
        }
        assert!(leaks.len() >= 3, "{} resets in 15 days", leaks.len());
        assert!(steps.iter().all(|s| s.1.front_close_wait.unwrap() < 30.0), "the front side does not leak");
    }

    #[test]
    fn runaway_cpu_climbs_to_95_and_stays_until_a_restart() {
        let risk = server(Profile::RiskAnalytics);
        let steps = run(&risk, Traits { runaway: true, ..Traits::ordinary() }, 6, 40);
        let runaways = episodes(&steps, 3);
        for (ep, (_, after, _)) in &runaways {
            assert!(ep.len() >= (RUNAWAY_RAMP.0 + RUNAWAY_HOLD.0) as usize, "{} steps", ep.len());
            assert!(cpu_used(&ep[0].1) < 85.0, "it climbs: {}", cpu_used(&ep[0].1));
            for (_, m, _) in &ep[RUNAWAY_RAMP.1 as usize..] {
                assert!((RUNAWAY_CPU.0 - 1.5..=100.0).contains(&cpu_used(m)), "held: {}", cpu_used(m));
            }
            assert!(cpu_used(after) < 80.0, "a restart ends it: {}", cpu_used(after));
            assert_eq!(after.uptime_days, Some(0.0));
        }
        assert!(runaways.len() >= 3, "{} runaways in 40 days", runaways.len());
    }

    #[test]
    fn degradation_climbs_over_a_day_and_level_shifts_persist() {
        let ml = server(Profile::MlCompute);
        let traits = Traits { degrades: true, ..Traits::ordinary() };
        let mut b = Behaviour::with_traits(&ml, traits, seeds::rng(7, Stream::Behaviour, 0));
        let mut seen = 0;
        let mut climb: Vec<f32> = Vec::new();
        for k in 0..60 * DAY as i64 {
            b.begin(MONDAY + k * STEP_MS);
            match b.degradation {
                Some(d) => {
                    climb.push(d.factor());
                    assert!(b.levels()[d.metric] <= d.factor().min(b.cap[d.metric].max(1.0)) + 1e-6);
                }
                None if !climb.is_empty() => {
                    seen += 1;
                    let peak = climb.iter().copied().fold(0.0, f32::max);
                    let reach = climb.iter().position(|x| *x >= peak).unwrap();
                    assert!(reach + 1 >= DAY as usize, "climbs for a day or more: {reach} steps");
                    assert!(climb[..=reach].windows(2).all(|w| w[1] >= w[0]));
                    assert!(peak > 1.0 && peak <= DEGRADE_PEAK.1, "{peak}");
                    assert!(b.levels().iter().all(|l| *l == 1.0), "fixed afterwards");
                    climb.clear();
                }
                None => {}
            }
        }
        assert!(seen >= 3, "{seen} degradations in 60 days");

        let traits = Traits { deploys: true, ..Traits::ordinary() };
        let mut b = Behaviour::with_traits(&ml, traits, seeds::rng(8, Stream::Behaviour, 0));
        let mut changes = 0;
        let mut last = b.levels();
        for k in 0..30 * DAY as i64 {
            b.begin(MONDAY + k * STEP_MS);
            let now = b.levels();
            if now != last {
                changes += 1;
                for (x, y) in now.iter().zip(&last).filter(|(x, y)| x != y) {
                    let f = if x > y { x / y } else { y / x };
                    assert!(f <= SHIFT_SIZE.1 + 1e-4, "a step of x{f}");
                    assert!((SHIFT_BOUNDS.0..=SHIFT_BOUNDS.1).contains(x));
                }
            }
            last = now;
        }
        assert!((3..=16).contains(&changes), "{changes} level shifts in 30 days, each persisting");
    }

    #[test]
    fn idle_machines_barely_work() {
        let web = server(Profile::WebApi);
        let idle = (0..)
            .map(|i| Traits::draw(&web, &mut seeds::rng(1, Stream::Behaviour, i)))
            .find(|t| t.idle)
            .map(|t| Traits { idle: true, level: t.level, ..Traits::ordinary() })
            .unwrap();
        let steps = run(&web, idle, 9, 3);
        let cpu = mean(steps.iter().map(|(_, m, _)| cpu_used(m)));
        assert!((0.5..=6.0).contains(&cpu), "CPU {cpu}");
        let net = mean(steps.iter().map(|(_, m, _)| m.net_out_mb_s.unwrap()));
        assert!(net < 3.0, "web net-out {net} MB/s (an ordinary one sends ~120)");
    }

    #[test]
    fn a_daily_job_spikes_at_the_same_time_every_day() {
        let generic = server(Profile::Generic);
        let cron = Cron { at: 100, steps: 2, cpu: 40.0, iowait: 15.0, net: 4.0 };
        let steps = run(&generic, Traits { cron: Some(cron), ..Traits::ordinary() }, 10, 7);
        let mut days = 0;
        for day in steps.chunk_by(|a, b| a.0 / DAY as usize == b.0 / DAY as usize) {
            if day.len() < 280 {
                continue; // an offline spell
            }
            days += 1;
            let (top, m, _) = day.iter().max_by(|a, b| cpu_used(&a.1).total_cmp(&cpu_used(&b.1))).unwrap();
            assert!(cron.runs_at((top % DAY as usize) as u32), "the busiest step is the job's: {}", top % DAY as usize);
            let typical = mean(day.iter().map(|(_, m, _)| cpu_used(m)));
            assert!(cpu_used(m) > typical + 25.0, "{} vs {typical}", cpu_used(m));
            let ran: Vec<_> = day.iter().filter(|(k, _, _)| cron.runs_at((k % DAY as usize) as u32)).collect();
            assert_eq!(ran.len(), 2);
            for (_, m, _) in ran {
                assert!(m.net_out_mb_s.unwrap() > 2.0 * spread(generic.profile, Metric::NetOut).mean * 0.6);
            }
        }
        assert!(days >= 6);
        assert!(cron.runs_at(101) && !cron.runs_at(102) && !cron.runs_at(99));
        let wraps = Cron { at: 287, steps: 2, ..cron };
        assert!(wraps.runs_at(287) && wraps.runs_at(0) && !wraps.runs_at(1));
    }

    #[test]
    fn every_behaviour_at_once_stays_valid() {
        let all = |s: &Server| Traits {
            idle: false,
            level: Traits::draw(s, &mut seeds::rng(2, Stream::Behaviour, 0)).level,
            mem_leak: Some(0.3),
            disk_fill: Some(0.5),
            conn_leak: Some(ConnLeak { rate: 5.0, back: true, front: true }),
            runaway: true,
            degrades: true,
            deploys: true,
            cron: Some(Cron { at: 0, steps: 3, cpu: 60.0, iowait: 30.0, net: 8.0 }),
        };
        for p in Profile::ALL {
            let s = server(p);
            for (k, m, _) in run(&s, all(&s), 12, 20) {
                let ts = MONDAY + k as i64 * STEP_MS;
                let rec = schemas::MetricRecord { server: s.name.clone(), ts_ms: ts, profile: Some(p), metrics: m };
                rec.validate(&ValidationPolicy::at(ts)).unwrap();
                let parts = [m.cpu_user_pct, m.cpu_sys_pct, m.cpu_iowait_pct, m.cpu_idle_pct].map(Option::unwrap);
                assert_eq!(parts.iter().sum::<f32>(), 100.0);
                assert!(parts.iter().all(|x| *x >= 0.0));
                assert!(m.java_cpu_pct.unwrap() <= m.cpu_user_pct.unwrap());
                assert_eq!(m.known().count(), 14);
            }
        }
    }

    #[test]
    fn same_seed_same_behaviour() {
        let fleet = Fleet::build(30, 4).unwrap();
        let trace = |seed: u64| -> Vec<Vec<f32>> {
            fleet
                .servers
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut b = Behaviour::new(s, seeds::rng(seed, Stream::Behaviour, i as u64));
                    let y = SMOOTHED.map(|m| spread(s.profile, m).mean);
                    let mut y_all = [0.0; METRIC_COUNT];
                    for (m, v) in SMOOTHED.iter().zip(y) {
                        y_all[idx(*m)] = v;
                    }
                    (0..5 * DAY as i64)
                        .flat_map(|k| {
                            b.begin(MONDAY + k * STEP_MS);
                            let mut out = y_all;
                            let restart = b.apply(&mut out);
                            let l = b.levels();
                            out.into_iter().chain(l).chain([f32::from(u8::from(restart))]).collect::<Vec<_>>()
                        })
                        .collect()
                })
                .collect()
        };
        let a = trace(4);
        assert_eq!(a, trace(4));
        let b = trace(5);
        assert!(a.iter().zip(&b).filter(|(x, y)| x != y).count() > 20, "another seed, other behaviours");
    }
}
