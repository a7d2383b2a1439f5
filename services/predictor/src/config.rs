//! The predictor's configuration: one clap struct read from flags and the environment, so the
//! binary, the in-process tests and the benchmark configure it the same way.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[cfg(test)]
const DAY_S: u64 = 86_400;

#[derive(Debug, Clone, Parser)]
#[command(name = "predictor", version, about = "Fleetcast predictor: batched TFT forecasts for every server")]
pub struct Config {
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// The ONNX model; its manifest is the same path with `.json` (see models/CONTRACT.md).
    #[arg(long, env = "PREDICTOR_MODEL", default_value = "models/tft.onnx")]
    pub model: PathBuf,

    /// The manifest, when it is not beside the model.
    #[arg(long, env = "PREDICTOR_MANIFEST")]
    pub manifest: Option<PathBuf>,

    /// ONNX Runtime shared library (load-dynamic), relative to the working directory.
    #[arg(long, env = "ORT_DYLIB_PATH", default_value = ".tools/ortlib/libonnxruntime.so")]
    pub ort_dylib: PathBuf,

    /// Most servers per inference call (a tick's servers are split evenly into chunks of at
    /// most this many); the benchmarks measure the fastest ([`crate::workers::DEFAULT_CHUNK`]).
    #[arg(long, env = "PREDICTOR_CHUNK", default_value_t = crate::workers::DEFAULT_CHUNK)]
    pub chunk_size: usize,

    /// Inference workers: independent model sessions that run a tick's chunks side by side
    /// (0 = one per core).
    #[arg(long, env = "PREDICTOR_WORKERS", default_value_t = 0)]
    pub inference_workers: usize,

    /// ONNX Runtime intra-op threads per worker (0 = one per core). One: this small model
    /// scales far better over workers than over intra-op threads.
    #[arg(long, env = "PREDICTOR_THREADS", default_value_t = 1)]
    pub intra_threads: usize,

    /// Durable consumer name on the METRICS stream.
    #[arg(long, env = "PREDICTOR_CONSUMER", default_value = "predictor")]
    pub consumer: String,

    /// Name under which the stats service registers (`nats micro info <name>`).
    #[arg(long, env = "PREDICTOR_SERVICE", default_value = "predictor")]
    pub service_name: String,

    /// Messages larger than this are rejected as oversize before decoding.
    #[arg(long, env = "PREDICTOR_MAX_MESSAGE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Most servers kept; records of new servers beyond it are rejected (`fleet_limit`).
    #[arg(long, env = "PREDICTOR_MAX_SERVERS", default_value_t = 50_000)]
    pub max_servers: usize,

    /// How long a silent real-time source's open step waits past its end before it closes
    /// on the wall clock.
    #[arg(long, env = "PREDICTOR_GRACE", default_value = "30s", value_parser = humantime_duration)]
    pub grace: Duration,

    /// After the backlog drains, wait this long for more parts of the same tick.
    #[arg(long, env = "PREDICTOR_COALESCE", default_value = "15ms", value_parser = humantime_duration)]
    pub coalesce: Duration,

    /// Tick at least this often while a backlog is being caught up.
    #[arg(long, env = "PREDICTOR_TICK_MAX_DELAY", default_value = "5s", value_parser = humantime_duration)]
    pub tick_max_delay: Duration,

    /// Messages processed before their window changes are stored and they are acked.
    #[arg(long, env = "PREDICTOR_GROUP", default_value_t = 256)]
    pub group_messages: usize,

    /// Recent actual steps per target in the snapshot (charts).
    #[arg(long, env = "PREDICTOR_RECENT_STEPS", default_value_t = 36)]
    pub recent_steps: usize,

    /// Split snapshots above this many bytes (default: the server's max_payload).
    #[arg(long, env = "PREDICTOR_MAX_PAYLOAD")]
    pub max_payload: Option<usize>,

    /// METRICS stream retention, so a predictor that was down can catch up.
    #[arg(long, default_value = "8days", value_parser = humantime_duration)]
    pub metrics_max_age: Duration,
    #[arg(long, default_value_t = 4 << 30)]
    pub metrics_max_bytes: i64,

    /// Windows and forecasts buckets: entries untouched this long are dropped.
    #[arg(long, default_value = "8days", value_parser = humantime_duration)]
    pub kv_max_age: Duration,

    /// PREDICTIONS stream (latest snapshots for late subscribers).
    #[arg(long, default_value = "15min", value_parser = humantime_duration)]
    pub predictions_max_age: Duration,
    #[arg(long, default_value_t = 1 << 30)]
    pub predictions_max_bytes: i64,

    /// HISTORY stream (tick summaries and alert events).
    #[arg(long, default_value = "7days", value_parser = humantime_duration)]
    pub history_max_age: Duration,
    #[arg(long, default_value_t = 8 << 30)]
    pub history_max_bytes: i64,

    /// Replicas of the streams (METRICS, PREDICTIONS, HISTORY; the consumer has its stream's)
    /// and the KV buckets when the predictor creates them: 1 on a single nats-server, 3 on a
    /// 3-node cluster (`just up-cluster`). Existing streams and buckets are used as they are.
    #[arg(long, env = "PREDICTOR_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,

    /// Partitions the fleet is split into (`schemas::partition`); every source must publish
    /// with the same number. 1: this predictor holds the whole fleet. More: it takes a fair
    /// share of them among the live predictors (`partitions/`), and the rest when others die.
    #[arg(long, env = "FLEETCAST_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub partitions: u16,

    /// This predictor's name among the partitioned predictors (default: host name and pid).
    #[arg(long, env = "PREDICTOR_INSTANCE")]
    pub instance: Option<String>,

    /// How often a partitioned predictor renews its membership and reviews its partitions.
    #[arg(long, env = "PREDICTOR_HEARTBEAT", default_value = "2s", value_parser = humantime_duration)]
    pub heartbeat: Duration,

    /// A partitioned predictor whose heartbeat is older than this is gone; its partitions pass
    /// to the others. The partition consumers' pin lapses after the same time without a pull.
    #[arg(long, env = "PREDICTOR_MEMBER_TTL", default_value = "8s", value_parser = humantime_duration)]
    pub member_ttl: Duration,

    /// `--metrics-listen ADDR`: Prometheus `/metrics` (off when absent; see `prom.rs`).
    #[command(flatten)]
    pub metrics: fleetbus::metrics::MetricsArgs,

    /// Expose `fleetcast_forecast{server,target,quantile,horizon}` (up to 120 series per
    /// server); `--metrics-forecasts=false` leaves them out (risk, level and alerts stay).
    #[arg(long, env = "PREDICTOR_METRICS_FORECASTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_forecasts: bool,

    /// Most servers with `fleetcast_forecast` series, highest risk first (the rest are counted
    /// in `fleetcast_forecast_servers_omitted`).
    #[arg(long, env = "PREDICTOR_METRICS_FORECAST_SERVERS", default_value_t = 1000)]
    pub metrics_forecast_servers: usize,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("not a duration: {s:?} (e.g. 30s, 15ms, 5min, 8days)"))
}

/// Parses `30s`, `15ms`, `5min`, `8days` with humantime, as the generator does.
fn parse_duration(s: &str) -> Option<Duration> {
    humantime::parse_duration(s.trim()).ok()
}

impl Config {
    /// Defaults plus the two things every caller sets; tests adjust fields afterwards.
    pub fn new(nats_url: impl Into<String>, model: impl Into<PathBuf>) -> Config {
        let mut c = Config::parse_from(["predictor"]);
        c.nats_url = nats_url.into();
        c.model = model.into();
        c
    }

    /// The number of inference workers, `inference_workers` with 0 resolved to the cores.
    pub fn workers(&self) -> usize {
        match self.inference_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// What the forecast gauges include (`prom_series.rs`).
    pub fn series(&self) -> crate::prom_series::SeriesConfig {
        crate::prom_series::SeriesConfig { forecasts: self.metrics_forecasts, forecast_servers: self.metrics_forecast_servers }
    }

    /// How long a partition consumer's pin outlives its holder's last pull.
    pub fn pin_ttl(&self) -> Duration {
        self.member_ttl
    }

    /// This instance's member name: `--instance`, else `<host>-<pid>`, as one KV key token.
    pub fn instance_name(&self) -> String {
        let raw = self.instance.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.manifest.clone().unwrap_or_else(|| self.model.with_extension("json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15ms"), Some(Duration::from_millis(15)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5min"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("8days"), Some(Duration::from_secs(8 * DAY_S)));
        assert_eq!(parse_duration("8 parsecs"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn manifest_beside_model() {
        let c = Config::new("nats://x:1", "models/tft.onnx");
        assert_eq!(c.manifest_path(), PathBuf::from("models/tft.json"));
    }
}
