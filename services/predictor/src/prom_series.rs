//! The forecasts at now as Prometheus gauges, one set per server, replaced on every tick from
//! the tick's output (never per scrape). Prometheus refuses future timestamps, so the horizon
//! is a label.
//!
//! | metric | labels | value |
//! |---|---|---|
//! | `fleetcast_risk_score` | `server`, `profile` | risk 0..100 |
//! | `fleetcast_level` | `server` | 0 healthy, 1 watch, 2 warning, 3 critical (`schemas::Level`'s order) |
//! | `fleetcast_forecast` | `server`, `target`, `quantile` (`0.1`,`0.5`,`0.9`), `horizon` (`30m`,`1h`,`2h`,`4h`,`8h`) | the published forecast (its selected method) at that horizon, in the target's unit |
//! | `fleetcast_time_to_breach_seconds` | `server`, `target`, `severity` (`warning`,`critical`) | seconds from the tick to the first predicted crossing, per open predicted alert |
//! | `fleetcast_forecast_servers_omitted` | | servers left out of `fleetcast_forecast` by the cap |
//!
//! Cardinality per server: 2 (risk, level) + at most 8 targets x 3 quantiles x 5 horizons =
//! 120 forecast series (only targets the server reports) + at most 8 time-to-breach series (one
//! per target with an open alert). `--metrics-forecasts=false` drops the 120;
//! `--metrics-forecast-servers N` (default 1000) caps the servers that get them, highest risk
//! first. Series of servers (or alerts) gone from the tick's output are removed after the new
//! values are set, so a scrape during the refill never sees a server missing.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use schemas::{Level, Profile, ServerForecast, Target, STEP_MS};

/// The horizons exposed: label and steps ahead (5-minute steps; step 1 ends 5 min after the
/// last closed step).
pub const HORIZONS: [(&str, usize); 5] = [("30m", 6), ("1h", 12), ("2h", 24), ("4h", 48), ("8h", 96)];
/// Quantile labels, in `[p10, p50, p90]` order.
pub const QUANTILES: [&str; 3] = ["0.1", "0.5", "0.9"];

type GaugeF = Gauge<f64, AtomicU64>;

/// What one server contributes beyond risk and level, taken from its `ServerForecast` when it
/// is encoded (`tick.rs`), so filling the gauges never decodes anything.
#[derive(Debug, Clone, Default)]
pub struct ServerGauges {
    /// Per forecast target: `[horizon][p10, p50, p90]`, NaN where the forecast is shorter.
    pub forecast: Vec<(Target, [[f32; 3]; HORIZONS.len()])>,
    /// Open predicted alerts: target, severity, minutes ahead of the first crossing.
    pub breaches: Vec<(Target, Level, u32)>,
}

impl ServerGauges {
    pub fn of(sf: &ServerForecast) -> ServerGauges {
        let at = |v: &[f32], steps: usize| v.get(steps - 1).copied().unwrap_or(f32::NAN);
        let forecast =
            sf.forecast.iter().map(|f| (f.target, HORIZONS.map(|(_, s)| [at(&f.p10, s), at(&f.p50, s), at(&f.p90, s)]))).collect();
        let breaches = sf.alerts.iter().map(|a| (a.target, a.severity, a.minutes_ahead)).collect();
        ServerGauges { forecast, breaches }
    }
}

/// One server of the tick's output.
#[derive(Debug, Clone, Copy)]
pub struct ServerRow<'a> {
    pub name: &'a str,
    pub profile: Profile,
    pub risk: f32,
    pub level: Level,
    pub gauges: &'a ServerGauges,
}

/// `--metrics-forecasts` and `--metrics-forecast-servers`.
#[derive(Debug, Clone, Copy)]
pub struct SeriesConfig {
    pub forecasts: bool,
    pub forecast_servers: usize,
}

impl Default for SeriesConfig {
    fn default() -> Self {
        SeriesConfig { forecasts: true, forecast_servers: 1000 }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RiskLabels {
    pub server: String,
    pub profile: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForecastLabels {
    pub server: String,
    pub target: &'static str,
    pub quantile: &'static str,
    pub horizon: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreachLabels {
    pub server: String,
    pub target: &'static str,
    pub severity: &'static str,
}

/// The label sets one family held after the last fill, to remove the ones that left.
#[derive(Debug)]
struct Replace<L> {
    prev: HashSet<L>,
    next: HashSet<L>,
}

impl<L> Default for Replace<L> {
    fn default() -> Self {
        Replace { prev: HashSet::new(), next: HashSet::new() }
    }
}

impl<L: Clone + Hash + Eq + EncodeLabelSet + std::fmt::Debug> Replace<L> {
    fn set<G: prometheus_client::metrics::gauge::Atomic<V> + Default + std::fmt::Debug, V>(
        &mut self,
        family: &Family<L, Gauge<V, G>>,
        labels: L,
        value: V,
    ) {
        family.get_or_create(&labels).set(value);
        self.next.insert(labels);
    }

    fn finish<M>(&mut self, family: &Family<L, M>) {
        for gone in self.prev.difference(&self.next) {
            family.remove(gone);
        }
        std::mem::swap(&mut self.prev, &mut self.next);
        self.next.clear();
    }
}

/// The per-server families (registered once) and what the last fill set.
#[derive(Debug)]
pub struct ServerFamilies {
    risk: Family<RiskLabels, GaugeF>,
    level: Family<ServerLabels, Gauge>,
    forecast: Family<ForecastLabels, GaugeF>,
    breach: Family<BreachLabels, GaugeF>,
    omitted: Gauge,
    sets: (Replace<RiskLabels>, Replace<ServerLabels>, Replace<ForecastLabels>, Replace<BreachLabels>),
}

/// `fleetcast_level`'s value: `schemas::Level`'s order.
pub fn level_value(l: Level) -> i64 {
    match l {
        Level::Healthy => 0,
        Level::Watch => 1,
        Level::Warning => 2,
        Level::Critical => 3,
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Healthy => "healthy",
        Level::Watch => "watch",
        Level::Warning => "warning",
        Level::Critical => "critical",
    }
}

impl ServerFamilies {
    /// Creates the families and registers them in `r` (which carries the `fleetcast` prefix).
    pub fn register(r: &mut Registry) -> ServerFamilies {
        let f = ServerFamilies {
            risk: Family::default(),
            level: Family::default(),
            forecast: Family::default(),
            breach: Family::default(),
            omitted: Gauge::default(),
            sets: Default::default(),
        };
        r.register("risk_score", "Risk of an incident, 0..100, at the last tick", f.risk.clone());
        r.register("level", "Server level: 0 healthy, 1 watch, 2 warning, 3 critical", f.level.clone());
        r.register(
            "forecast",
            "Forecast of a target at a horizon from the last tick, in the target's unit (P10/P50/P90)",
            f.forecast.clone(),
        );
        r.register(
            "time_to_breach_seconds",
            "Seconds from the last tick to the first predicted crossing, per open predicted alert",
            f.breach.clone(),
        );
        r.register("forecast_servers_omitted", "Servers left out of fleetcast_forecast by --metrics-forecast-servers", f.omitted.clone());
        f
    }

    /// Replaces every per-server series with the tick's output `rows` (every server it keeps).
    pub fn fill<'a>(&mut self, config: &SeriesConfig, rows: impl Iterator<Item = ServerRow<'a>>) {
        let mut rows: Vec<ServerRow<'a>> = rows.collect();
        let (risk, level, forecast, breach) = &mut self.sets;
        for r in &rows {
            risk.set(&self.risk, RiskLabels { server: r.name.to_string(), profile: r.profile.name() }, f64::from(r.risk));
            level.set(&self.level, ServerLabels { server: r.name.to_string() }, level_value(r.level));
            for (target, severity, minutes) in &r.gauges.breaches {
                let labels = BreachLabels { server: r.name.to_string(), target: target.name(), severity: level_name(*severity) };
                breach.set(&self.breach, labels, f64::from(*minutes) * 60.0);
            }
        }
        let mut omitted = 0;
        if config.forecasts {
            if rows.len() > config.forecast_servers {
                omitted = rows.len() - config.forecast_servers;
                let cap = config.forecast_servers;
                if cap > 0 {
                    rows.select_nth_unstable_by(cap - 1, |a, b| b.risk.total_cmp(&a.risk));
                }
                rows.truncate(cap);
            }
            for r in &rows {
                for (target, values) in &r.gauges.forecast {
                    for ((horizon, _), q) in HORIZONS.iter().zip(values) {
                        for (quantile, v) in QUANTILES.iter().zip(q) {
                            if v.is_finite() {
                                let labels = ForecastLabels { server: r.name.to_string(), target: target.name(), quantile, horizon };
                                forecast.set(&self.forecast, labels, f64::from(*v));
                            }
                        }
                    }
                }
            }
        }
        risk.finish(&self.risk);
        level.finish(&self.level);
        forecast.finish(&self.forecast);
        breach.finish(&self.breach);
        self.omitted.set(omitted as i64);
    }
}

/// Minutes to seconds, as `fleetcast_time_to_breach_seconds` counts them (one step is
/// `STEP_MS`; kept here so a change of step shows up in this module's tests).
pub const STEP_SECONDS: f64 = (STEP_MS / 1000) as f64;

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(name: &'a str, risk: f32, g: &'a ServerGauges) -> ServerRow<'a> {
        ServerRow { name, profile: Profile::detect(name), risk, level: Level::from_risk(risk), gauges: g }
    }

    #[test]
    fn horizons_are_whole_steps() {
        for (label, steps) in HORIZONS {
            let minutes = steps as f64 * STEP_SECONDS / 60.0;
            let expect = if minutes < 60.0 { format!("{minutes}m") } else { format!("{}h", minutes / 60.0) };
            assert_eq!(label, expect);
        }
    }

    #[test]
    fn the_cap_keeps_the_riskiest() {
        let mut reg = Registry::default();
        let mut f = ServerFamilies::register(&mut reg);
        let mut g = ServerGauges::default();
        g.forecast.push((Target::Disk, [[1.0, 2.0, 3.0]; HORIZONS.len()]));
        let rows = [row("ppdb1", 10.0, &g), row("ppdb2", 90.0, &g), row("ppdb3", 50.0, &g)];
        f.fill(&SeriesConfig { forecasts: true, forecast_servers: 2 }, rows.iter().copied());
        let page = fleetbus::metrics::render(&reg).expect("renders");
        assert!(page.contains("forecast{server=\"ppdb2\""), "{page}");
        assert!(page.contains("forecast{server=\"ppdb3\""), "{page}");
        assert!(!page.contains("forecast{server=\"ppdb1\""), "{page}");
        assert!(page.contains("forecast_servers_omitted 1"));
        assert_eq!(page.lines().filter(|l| l.starts_with("level{")).count(), 3, "risk and level for all");
    }
}
