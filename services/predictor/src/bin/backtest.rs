//! `backtest`: replays real series through the predictor's own code and scores what it would
//! have published against the naive forecasts and the model alone (see `predictor::backtest`).
//!
//! ```sh
//! target/release/backtest --nab ../shared/data/nab --bitbrains ../shared/data/bitbrains/bitbrains-rnd-train.parquet
//! ```

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use predictor::backtest::{self, data, report};

#[derive(Debug, Parser)]
#[command(about = "Replay real series through the predictor and score its published forecasts")]
struct Args {
    /// A folder of NAB CSV files (`timestamp,value`); each file is replayed on its own.
    #[arg(long)]
    nab: Option<PathBuf>,
    /// The Bitbrains parquet file.
    #[arg(long)]
    bitbrains: Option<PathBuf>,
    /// First day of the Bitbrains slice (UTC, Unix seconds; default 2013-09-01, when 190 VMs run).
    #[arg(long, default_value_t = 1_377_993_600)]
    bitbrains_from: i64,
    /// Days of Bitbrains replayed.
    #[arg(long, default_value_t = 12)]
    bitbrains_days: i64,
    /// VMs with `vm % N == R` form the held-out group (`--holdout-every N --holdout-rem R`).
    /// The default, `vm % 10 == 1`, is the set the trainer never trains on (the shared file
    /// already lacks `vm % 5 == 0`).
    #[arg(long, default_value_t = 10)]
    holdout_every: i64,
    #[arg(long, default_value_t = 1)]
    holdout_rem: i64,
    /// A generator export (parquet) to replay too.
    #[arg(long)]
    generated: Option<PathBuf>,
    /// Servers of the generator export replayed.
    #[arg(long, default_value_t = 60)]
    generated_servers: usize,
    #[arg(long, default_value = "models/tft.onnx")]
    model: PathBuf,
    #[arg(long, env = "ORT_DYLIB_PATH", default_value = ".tools/ortlib/libonnxruntime.so")]
    ort_dylib: PathBuf,
    /// Origins start this many steps after a series' first step (default one day, so the
    /// seasonal naive has its season).
    #[arg(long, default_value_t = 288)]
    from_steps: i64,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Writes every score as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Writes the report (markdown, with the command and the data) here too.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Prints the group summaries only, not every series.
    #[arg(long)]
    summary_only: bool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
    let args = Args::parse();
    let opts = backtest::Options { from_steps: args.from_steps, workers: args.workers };
    let mut scored = Vec::new();
    let clock = std::time::Instant::now();
    if let Some(dir) = &args.nab {
        for s in data::load_nab(dir)? {
            eprintln!("backtest: {} ({} steps)", s.name, s.steps.len());
            scored.extend(backtest::run(std::slice::from_ref(&s), &args.model, &args.ort_dylib, &opts)?);
        }
    }
    if let Some(path) = &args.bitbrains {
        let series = data::load_bitbrains(path, args.bitbrains_from, args.bitbrains_days, (args.holdout_every, args.holdout_rem))?;
        eprintln!("backtest: {} Bitbrains VMs, {} days", series.len(), args.bitbrains_days);
        scored.extend(backtest::run(&series, &args.model, &args.ort_dylib, &opts)?);
    }
    if let Some(path) = &args.generated {
        let series = data::load_generated(path, args.generated_servers)?;
        eprintln!("backtest: {} generated servers", series.len());
        scored.extend(backtest::run(&series, &args.model, &args.ort_dylib, &opts)?);
    }
    let groups = report::summarise(&scored);
    let shown: &[backtest::Scored] = if args.summary_only { &[] } else { &scored };
    let text = report::markdown(&groups, shown);
    println!("{text}");
    if let Some(path) = &args.markdown {
        let model = predictor::model::Manifest::load(&args.model.with_extension("json")).map(|m| m.version).unwrap_or_default();
        let generated = match &args.generated {
            Some(_) => format!(
                " generated: the first {} servers of the trainer's held-out fleet (`train.sh --held-out-path`: another seed and month than training);",
                args.generated_servers
            ),
            None => String::new(),
        };
        let doc = format!(
            "# Backtest of `{model}`\n\n_Written by `just backtest` (`target/release/backtest`), do not edit by hand._ Every origin (5-minute step, all phases) and lead 1..96 of each series, replayed through the predictor's own ingest, windows, model, methods and per-server choice; q-risk = 2·Σ pinball / Σ|actual|, mean over series. `published` is what the product publishes, `model` the TFT alone. Bitbrains: 2013-09-01 + {} days, held-out VMs `vm % {} == {}` (never trained on); NAB: each file alone;{generated} origins from {} steps after a series' first.\n\n{text}",
            args.bitbrains_days, args.holdout_every, args.holdout_rem, args.from_steps
        );
        std::fs::write(path, doc).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("backtest: {:.0} s", clock.elapsed().as_secs_f64());
    if let Some(path) = &args.json {
        let json = serde_json::json!({ "groups": groups, "series": scored });
        std::fs::write(path, serde_json::to_vec_pretty(&json)?).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
