//! The notifier's settings: every flag also reads an environment variable, and every default
//! is the one `just up` runs with.

use std::time::Duration;

use clap::Parser;

/// `notifier --alertmanager-url http://127.0.0.1:9093 [...]`.
#[derive(Debug, Clone, Parser)]
#[command(name = "notifier", about = "Posts Fleetcast's predicted alerts (stream HISTORY, alerts.>) to Alertmanager")]
pub struct Config {
    /// NATS server; credentials may sit in the URL or in NATS_USER / NATS_PASSWORD.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// Alertmanager base URL(s) (`http://host:9093`, no `/api/v2`); repeat the flag or separate
    /// with commas. An event is acknowledged only after every one of them accepted it.
    #[arg(long = "alertmanager-url", env = "ALERTMANAGER_URL", value_delimiter = ',', required = true, value_parser = parse_base_url)]
    pub alertmanager_urls: Vec<String>,

    /// The dashboard's public base URL, for the link in every alert (`<url>/servers/<server>`)
    /// and for `generatorURL`.
    #[arg(long, env = "NOTIFIER_DASHBOARD_URL", default_value = "http://127.0.0.1:8080", value_parser = parse_base_url)]
    pub dashboard_url: String,

    /// Name of the durable JetStream consumer on stream HISTORY (filter `alerts.>`); its ack
    /// floor is how far delivery got, across restarts.
    #[arg(long, env = "NOTIFIER_CONSUMER", default_value = "notifier")]
    pub consumer: String,

    /// How often every active alert is posted again. A firing alert is posted with
    /// `endsAt = now + 4 x resend`, so Alertmanager resolves it by itself if the notifier stops.
    #[arg(long, env = "NOTIFIER_RESEND", default_value = "1m", value_parser = humantime::parse_duration)]
    pub resend: Duration,

    /// Timeout of one POST to one Alertmanager.
    #[arg(long, env = "NOTIFIER_POST_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub post_timeout: Duration,

    /// First wait before retrying an Alertmanager that failed; doubles up to `--retry-max`.
    #[arg(long, env = "NOTIFIER_RETRY_MIN", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub retry_min: Duration,

    /// Longest wait between retries of a failing Alertmanager.
    #[arg(long, env = "NOTIFIER_RETRY_MAX", default_value = "10s", value_parser = humantime::parse_duration)]
    pub retry_max: Duration,

    /// At most this many alert events per POST (events ready together are posted together).
    #[arg(long, env = "NOTIFIER_BATCH", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,

    /// How often to look again for the stream HISTORY while the predictor has not created it.
    #[arg(long, env = "NOTIFIER_STREAM_WAIT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub stream_wait: Duration,

    #[command(flatten)]
    pub metrics: fleetbus::metrics::MetricsArgs,
}

impl Config {
    /// How long past each post a firing alert stays firing in Alertmanager without news.
    pub fn firing_ttl(&self) -> Duration {
        self.resend.saturating_mul(4)
    }
}

/// An `http(s)://` base URL, without a trailing slash.
pub fn parse_base_url(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("{s:?} is not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{s:?} has no host"));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_repeat_or_split_on_commas() {
        let c =
            Config::try_parse_from(["notifier", "--alertmanager-url", "http://a:9093/,http://b:9093", "--alertmanager-url", "https://c"])
                .expect("parse");
        assert_eq!(c.alertmanager_urls, ["http://a:9093", "http://b:9093", "https://c"]);
        assert_eq!(c.resend, Duration::from_secs(60));
        assert_eq!(c.firing_ttl(), Duration::from_secs(240));
        assert!(Config::try_parse_from(["notifier", "--alertmanager-url", "a:9093"]).is_err());
        assert!(Config::try_parse_from(["notifier", "--alertmanager-url", "http://"]).is_err());
        assert!(Config::try_parse_from(["notifier"]).is_err() || std::env::var("ALERTMANAGER_URL").is_ok());
    }
}
