//! `generator`: streams the simulated fleet to NATS (default), or writes it to parquet
//! (`generator export`). Thin: flags here, everything else in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use generator::export::{export, ExportOptions};
use generator::live::{self, LiveOptions};
use generator::shutdown::{self, Shutdown};
use schemas::{Scenario, STEP_MS};

/// Fleetcast's fleet generator: a seeded simulation of a server fleet (7 profiles, 8 states,
/// daily and weekly rhythm, incidents and cascades) in 5-minute steps.
///
/// Without a subcommand it streams MessagePack batches to `metrics.batch.<source>` through
/// JetStream: first a backfill of history as fast as the METRICS stream acknowledges, then one
/// step per --tick. Scenarios switch at run time over NATS:
/// `nats req control.generator.scenario.set '{"scenario":"critical"}'`.
#[derive(Parser, Debug)]
#[command(name = "generator", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    fleet: FleetArgs,
    #[command(flatten)]
    live: LiveArgs,
}

#[derive(Args, Debug)]
struct FleetArgs {
    /// Servers in the fleet (at least 7), split as the original: web 28 %, ML 22 %, DB 17 %,
    /// ETL 11 %, risk 9 %, conductor 6 %, generic 7 % (at most 10).
    #[arg(long, global = true, env = "GENERATOR_SERVERS", default_value_t = 100)]
    servers: usize,
    /// Seed of every random choice: the same seed gives the same fleet and the same records,
    /// live and exported.
    #[arg(long, global = true, env = "GENERATOR_SEED", default_value_t = 42)]
    seed: u64,
}

#[derive(Args, Debug)]
struct LiveArgs {
    /// NATS server to publish to.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Wall time per simulated 5-minute step (humantime: 5s, 500ms, 5m = real time; 0 = as
    /// fast as the stream acknowledges).
    #[arg(long, env = "GENERATOR_TICK", default_value = "5s", value_parser = parse_tick)]
    tick: Duration,
    /// Steps of history to publish at start, as fast as possible (288 = 24 h).
    #[arg(long, env = "GENERATOR_BACKFILL_STEPS", default_value_t = 288)]
    backfill_steps: u64,
    /// Source name: batches go to metrics.batch.<source>.
    #[arg(long, env = "GENERATOR_SOURCE", default_value = "generator")]
    source: String,
    /// Partitions of the fleet (at least 1): with more than 1, each tick is one batch per
    /// partition on metrics.batch.<source>.<partition>, servers assigned by FNV-1a of the name
    /// (as NATS's partition()); 1 publishes on metrics.batch.<source>, as ever.
    #[arg(long, env = "FLEETCAST_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    partitions: u16,
    /// Scenario to switch to once the backfill is done: healthy, degrading, critical, cascade.
    #[arg(long, env = "GENERATOR_SCENARIO", value_parser = parse_scenario)]
    scenario: Option<Scenario>,
    /// Start of the simulated clock (RFC 3339 in UTC, or a date); default: --backfill-steps
    /// steps before now, on a 5-minute boundary. A fixed start replays a run exactly.
    #[arg(long, env = "GENERATOR_START", value_parser = parse_start)]
    start: Option<i64>,
    /// Stop after this many steps in all, backfill included (default: run until Ctrl-C).
    #[arg(long, env = "GENERATOR_MAX_STEPS")]
    max_steps: Option<u64>,
    /// `--metrics-listen ADDR`: Prometheus `/metrics` (off when absent; see metrics.rs).
    #[command(flatten)]
    metrics: fleetbus::metrics::MetricsArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a training set to parquet: one row per server per step, all 14 metrics (null
    /// when offline), profile, state, scenario label, problem_child and cascade_impact.
    Export(ExportArgs),
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// Simulated days to write (fractions allowed; 288 steps a day).
    #[arg(long, default_value_t = 30.0)]
    days: f64,
    /// Output parquet file (parent directories are created).
    #[arg(long, default_value = "data/train.parquet")]
    out: PathBuf,
    /// Start of the first step (RFC 3339 in UTC, or a date). Pick another month (and seed)
    /// for a held-out set.
    #[arg(long, default_value = "2026-01-05", value_parser = parse_start)]
    start: i64,
}

fn parse_tick(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 5s, 500ms, 5m, 0)"))
}

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    Scenario::from_name(s).ok_or_else(|| format!("one of {}", Scenario::ALL.map(Scenario::name).join(", ")))
}

fn parse_start(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let full = if s.len() == 10 { format!("{s}T00:00:00Z") } else { s.to_owned() };
    let t = humantime::parse_rfc3339_weak(&full).map_err(|e| format!("{e} (use 2026-01-05 or 2026-01-05T00:00:00Z)"))?;
    let ms = t.duration_since(UNIX_EPOCH).map_err(|_| "must be after 1970".to_string())?.as_millis();
    i64::try_from(ms).map_err(|_| "too far in the future".to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    fleetbus::process::init_tracing();
    let result = match cli.command {
        Some(Command::Export(args)) => run_export(&cli.fleet, args),
        None => run_live(cli.fleet, cli.live),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_export(fleet: &FleetArgs, args: ExportArgs) -> anyhow::Result<()> {
    if !(args.days.is_finite() && args.days >= 0.0) {
        anyhow::bail!("days = {}: must be a number >= 0", args.days);
    }
    let steps = (args.days * (86_400_000 / STEP_MS) as f64).round() as u64;
    let opts = ExportOptions {
        servers: fleet.servers,
        seed: fleet.seed,
        start_ms: args.start,
        steps,
        out: args.out,
        progress: std::io::stderr().is_terminal(),
    };
    let s = export(&opts)?;
    println!(
        "wrote {} rows ({} servers x {} steps, {:.1} MB) to {} in {:.1} s",
        s.rows,
        opts.servers,
        steps,
        s.bytes as f64 / 1e6,
        opts.out.display(),
        s.elapsed.as_secs_f64()
    );
    Ok(())
}

fn run_live(fleet: FleetArgs, args: LiveArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let (trigger, shutdown) = Shutdown::new();
        shutdown::on_signals(trigger);
        let opts = LiveOptions {
            nats_url: args.nats_url,
            servers: fleet.servers,
            seed: fleet.seed,
            tick: args.tick,
            backfill_steps: args.backfill_steps,
            source: args.source,
            partitions: args.partitions,
            scenario: args.scenario,
            start_ms: args.start,
            max_steps: args.max_steps,
        };
        let (metrics, registry) = generator::metrics::Metrics::new();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let endpoint = fleetbus::metrics::serve_if(&args.metrics, std::sync::Arc::new(registry), async {
            let _ = stopped.await;
        })
        .await?;
        let result = live::run_counted(opts, shutdown, metrics).await.map(|_| ());
        let _ = stop.send(());
        if let Some(endpoint) = endpoint {
            endpoint.join().await;
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parsers() {
        assert_eq!(parse_tick("0"), Ok(Duration::ZERO));
        assert_eq!(parse_tick("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_tick("soon").is_err());
        assert_eq!(parse_start("2026-01-05"), Ok(1_767_571_200_000));
        assert_eq!(parse_start("2026-01-05T01:00:00Z"), Ok(1_767_574_800_000));
        assert!(parse_start("yesterday").is_err());
        assert_eq!(parse_scenario("cascade"), Ok(Scenario::Cascade));
        assert!(parse_scenario("panic").unwrap_err().contains("healthy, degrading"));
    }

    #[test]
    fn export_flags_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["generator", "export", "--days", "2", "--servers", "200", "--seed", "7", "--out", "x.parquet"]).unwrap();
        assert_eq!((cli.fleet.servers, cli.fleet.seed), (200, 7));
        let Some(Command::Export(e)) = cli.command else { panic!("not export") };
        assert_eq!((e.days, e.out), (2.0, PathBuf::from("x.parquet")));
    }

    #[test]
    fn partitions_default_to_one_and_zero_is_refused() {
        assert_eq!(Cli::try_parse_from(["generator"]).unwrap().live.partitions, 1);
        assert_eq!(Cli::try_parse_from(["generator", "--partitions", "4"]).unwrap().live.partitions, 4);
        for bad in ["0", "many", "70000"] {
            let err = Cli::try_parse_from(["generator", "--partitions", bad]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad}: {err}");
            assert!(err.to_string().contains("--partitions"), "{err}");
        }
    }
}
