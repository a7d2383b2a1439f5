//! Command line and environment of the `ingest` binary, in one struct. Exists so every knob has
//! one name, one default and one line of help (`ingest --help`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// Real fleets in: Prometheus remote-write (push) and PromQL (pull, with backfill) mapped to
/// Fleetcast MetricsBatches on `metrics.batch.<source>`.
#[derive(Debug, Clone, Parser)]
#[command(name = "ingest", version)]
pub struct Config {
    /// NATS server (credentials may sit in the URL).
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Last token of the subject `metrics.batch.<source>`: [A-Za-z0-9_-]+.
    #[arg(long, env = "INGEST_SOURCE", default_value = "prometheus")]
    pub source: String,
    /// Partitions of the fleet (at least 1): with more than 1, each closed step is one batch
    /// per partition on `metrics.batch.<source>.<partition>`, hosts assigned by FNV-1a of the
    /// server name (as NATS's partition()); 1 publishes on `metrics.batch.<source>`, as ever.
    #[arg(long, env = "FLEETCAST_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub partitions: u16,
    /// Serve remote-write (`POST /api/v1/write`) and `/metrics` here, e.g. 127.0.0.1:9201.
    #[arg(long, env = "INGEST_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Bearer token remote-write senders must present (none: no check).
    #[arg(long, env = "INGEST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Largest remote-write body (snappy-compressed bytes); decompressed at most 4x this.
    #[arg(long, env = "INGEST_MAX_BODY", default_value_t = 8 << 20)]
    pub max_body: usize,
    /// Label naming the host; its value, port stripped, becomes the server name.
    #[arg(long, env = "INGEST_HOST_LABEL", default_value = "instance")]
    pub host_label: String,
    /// Hosts kept at most; further hosts are rejected (`fleet_limit`) and counted.
    #[arg(long, env = "INGEST_MAX_HOSTS", default_value_t = 10_000)]
    pub max_hosts: usize,
    /// A pushed step closes once samples this far past its end arrive.
    #[arg(long, env = "INGEST_CLOSE_AFTER", default_value = "60s", value_parser = humantime::parse_duration)]
    pub close_after: Duration,
    /// A pushed step past its end closes anyway after this long without new samples.
    #[arg(long, env = "INGEST_IDLE_CLOSE", default_value = "2m", value_parser = humantime::parse_duration)]
    pub idle_close: Duration,
    /// Pull from this Prometheus-compatible query API, e.g. http://prometheus:9090.
    #[arg(long, env = "PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// Bearer token for the query API.
    #[arg(long, env = "PROMETHEUS_TOKEN", hide_env_values = true)]
    pub prometheus_token: Option<String>,
    /// `user:password` for the query API (basic auth).
    #[arg(long, env = "PROMETHEUS_BASIC_AUTH", hide_env_values = true)]
    pub prometheus_basic_auth: Option<String>,
    /// What the query API is for, with --prometheus-url: `live` queries every step (and
    /// backfills at start and for each new host); `history` (needs --listen) leaves the live
    /// steps to remote-write and reads only the history of each host the first time it is pushed.
    #[arg(long, env = "INGEST_PULL", value_enum, default_value_t = PullMode::Live)]
    pub pull: PullMode,
    /// History loaded at start and for each new host (the predictor keeps 384 steps, 32 h).
    #[arg(long, env = "INGEST_BACKFILL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub backfill: Duration,
    /// Wait after a step's end before querying it, so the last scrapes have landed.
    #[arg(long, env = "INGEST_PULL_DELAY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub pull_delay: Duration,
    /// Timeout of one query.
    #[arg(long, env = "INGEST_QUERY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub query_timeout: Duration,
    /// Attempts per query before its metric is left unknown for the step.
    #[arg(long, env = "INGEST_QUERY_ATTEMPTS", default_value_t = 4)]
    pub query_attempts: u32,
    /// Closed steps waiting for NATS at most; beyond, remote-write answers 503 (the sender retries).
    #[arg(long, env = "INGEST_BACKLOG", default_value_t = 64)]
    pub backlog: usize,
}

/// See [`Config::pull`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullMode {
    Live,
    History,
}

impl Config {
    /// What clap cannot check: a source that is one subject token, and at least one input.
    pub fn check(&self) -> Result<(), String> {
        if self.source.is_empty() || !self.source.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(format!("--source {:?}: must be 1 or more of [A-Za-z0-9_-]", self.source));
        }
        if self.listen.is_none() && self.prometheus_url.is_none() {
            return Err("nothing to ingest: give --listen (remote-write), --prometheus-url (pull), or both".into());
        }
        if self.pull == PullMode::History && (self.listen.is_none() || self.prometheus_url.is_none()) {
            return Err("--pull history backfills pushed hosts: it needs --listen and --prometheus-url".into());
        }
        if self.backlog == 0 || self.max_hosts == 0 || self.partitions == 0 {
            return Err("--backlog, --max-hosts and --partitions must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_default_to_one_and_zero_is_refused() {
        let base = ["ingest", "--listen", "127.0.0.1:9201"];
        assert_eq!(Config::try_parse_from(base).unwrap().partitions, 1);
        let four = Config::try_parse_from(base.iter().copied().chain(["--partitions", "4"])).unwrap();
        assert_eq!((four.partitions, four.check()), (4, Ok(())));
        for bad in ["0", "many", "70000"] {
            let err = Config::try_parse_from(base.iter().copied().chain(["--partitions", bad])).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad}: {err}");
            assert!(err.to_string().contains("--partitions"), "{err}");
        }
    }
}
