//! `fcmsg`: reads any Fleetcast message from stdin as pretty JSON, or makes MessagePack from JSON.
//!
//! `nats sub predictions.current --translate 'fcmsg decode'` (the snapshot: per-server summaries,
//! printed with their field names), `nats kv get forecasts ppdb001 --raw | fcmsg decode` (one
//! server's full forecast, curves as `p10`/`p50`/`p90` arrays),
//! `echo '{"scenario":"critical"}' | fcmsg encode | nats req control.generator.scenario.set`.

use std::io::{Read, Write};

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "fcmsg", version, about = "Decode Fleetcast MessagePack to JSON, or encode JSON to MessagePack")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// MessagePack on stdin -> pretty JSON on stdout. Works for every message of the contract,
    /// since all are maps with named fields.
    Decode {
        /// One line of JSON instead of pretty-printed.
        #[arg(long)]
        compact: bool,
    },
    /// JSON on stdin -> MessagePack on stdout (maps keep their field names).
    Encode,
}

/// Snapshots and per-server forecasts (KV `forecasts`) are decoded as what they are, so a
/// snapshot's positional server summaries print with their field names and a forecast's compact
/// curves as plain `p10`/`p50`/`p90` arrays; anything else generically.
fn readable(input: &[u8]) -> anyhow::Result<serde_json::Value> {
    if let Ok(s) = schemas::decode::<schemas::Snapshot>(input) {
        return Ok(serde_json::to_value(s)?);
    }
    if let Ok(s) = schemas::decode::<schemas::ServerForecast>(input) {
        return Ok(serde_json::to_value(s)?);
    }
    rmp_serde::from_slice(input).context("stdin is not valid MessagePack")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).context("reading stdin")?;
    let mut out = std::io::stdout().lock();
    match cli.cmd {
        Cmd::Decode { compact } => {
            let value = readable(&input)?;
            let text = if compact { serde_json::to_string(&value)? } else { serde_json::to_string_pretty(&value)? };
            writeln!(out, "{text}")?;
        }
        Cmd::Encode => {
            let value: serde_json::Value = serde_json::from_slice(&input).context("stdin is not valid JSON")?;
            out.write_all(&schemas::encode(&value)?)?;
        }
    }
    Ok(())
}
