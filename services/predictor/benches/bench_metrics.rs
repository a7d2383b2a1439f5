//! `/metrics` of the predictor at 10,000 servers: fills the per-server families from a
//! synthetic tick output (8 targets per server, one open alert on every tenth) and renders the
//! page, with the forecast gauges (default cap, and uncapped) and without. Prints a table:
//! fill ms (once per tick), render ms (one scrape), page MB. `just bench` runs it.

use std::time::Instant;

use predictor::prom::Metrics;
use predictor::prom_series::{SeriesConfig, ServerGauges, ServerRow, HORIZONS};
use schemas::{Level, Profile, Target};

const SERVERS: usize = 10_000;

fn main() {
    let names: Vec<String> = (0..SERVERS).map(|i| format!("ppweb{i:05}")).collect();
    let gauges: Vec<ServerGauges> = (0..SERVERS)
        .map(|i| {
            let v = (i % 100) as f32;
            let mut g = ServerGauges {
                forecast: Target::ALL.iter().map(|t| (*t, [[v, v + 1.5, v + 3.25]; HORIZONS.len()])).collect(),
                breaches: Vec::new(),
            };
            if i % 10 == 0 {
                g.breaches.push((Target::Cpu, Level::Critical, 35));
            }
            g
        })
        .collect();
    let rows = || {
        names.iter().zip(&gauges).enumerate().map(|(i, (n, g))| ServerRow {
            name: n,
            profile: Profile::WebApi,
            risk: (i % 100) as f32,
            level: Level::from_risk((i % 100) as f32),
            gauges: g,
        })
    };
    println!("| {SERVERS} servers | fill ms | render ms (best of 5) | page MB | series |");
    println!("|---|---|---|---|---|");
    for (label, config) in [
        ("forecasts, default cap (1000)", SeriesConfig::default()),
        ("forecasts, uncapped", SeriesConfig { forecasts: true, forecast_servers: usize::MAX }),
        ("--metrics-forecasts=false", SeriesConfig { forecasts: false, ..SeriesConfig::default() }),
    ] {
        let (_m, mut series, registry) = Metrics::new("bench");
        let clock = Instant::now();
        series.fill(&config, rows());
        let fill = clock.elapsed().as_secs_f64() * 1e3;
        // A second fill is the steady state (every label set exists already).
        let clock = Instant::now();
        series.fill(&config, rows());
        let refill = clock.elapsed().as_secs_f64() * 1e3;
        let mut best = f64::MAX;
        let mut page = String::new();
        for _ in 0..5 {
            let clock = Instant::now();
            page = fleetbus::metrics::render(&registry).expect("renders");
            best = best.min(clock.elapsed().as_secs_f64() * 1e3);
        }
        let n = page.lines().filter(|l| !l.starts_with('#')).count();
        println!("| {label} | {fill:.0} (refill {refill:.0}) | {best:.0} | {:.1} | {n} |", page.len() as f64 / 1e6);
    }
}
