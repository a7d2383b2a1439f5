//! Command-line and environment configuration (clap derive + env), and the rule that an
//! unauthenticated dashboard never listens beyond loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(name = "dashboard", about = "Fleetcast operator dashboard (askama + htmx, live over SSE)")]
pub struct Args {
    /// NATS server to read snapshots, history and the generator's control service from;
    /// `nats://dashboard:<password>@host:4222` with the least-privilege `dashboard` user.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222", hide_env_values = true)]
    pub nats_url: String,

    /// Address to listen on. Without DASHBOARD_KEY only a loopback address is used.
    #[arg(long, env = "DASHBOARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Access key; when set, every page needs a login with it (session cookie + CSRF tokens).
    #[arg(long, env = "DASHBOARD_KEY", hide_env_values = true)]
    pub key: Option<String>,

    /// Model card (the trainer's manifest) for the model view.
    #[arg(long, env = "DASHBOARD_MODEL_CARD", default_value = "models/tft.json")]
    pub model_card: PathBuf,

    /// Show the "stale since" banner when no snapshot arrived for this long.
    #[arg(long, env = "DASHBOARD_STALE_AFTER", default_value = "30s", value_parser = humantime::parse_duration)]
    pub stale_after: Duration,

    /// How often to ask the generator's control service whether it is there.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub generator_probe: Duration,

    /// Drift warning when a target's live q-risk at P50 exceeds the model card's by this fraction.
    #[arg(long, default_value_t = 0.25)]
    pub drift_margin: f32,

    /// Mark the session cookie `Secure` (set when served behind TLS).
    #[arg(long, env = "DASHBOARD_SECURE_COOKIE")]
    pub secure_cookie: bool,

    /// Run without NATS on generated fixture snapshots (a new one every 5 s) and a week of
    /// synthetic history: for demos and screenshots.
    #[arg(long)]
    pub demo_fixture: bool,

    /// Servers in the demo fixture.
    #[arg(long, default_value_t = 90)]
    pub demo_servers: usize,

    /// Alertmanager base URL(s) the notifier posts predicted alerts to (repeat the flag or
    /// separate with commas); the Alerts page shows whether each answers and links to silence.
    #[arg(long = "alertmanager-url", env = "ALERTMANAGER_URL", value_delimiter = ',')]
    pub alertmanager_urls: Vec<String>,

    /// `--metrics-listen ADDR`: Prometheus `/metrics` on a port of its own (off when absent).
    #[command(flatten)]
    pub metrics: fleetbus::metrics::MetricsArgs,
}

impl Args {
    /// Arguments as a test or benchmark wants them: an ephemeral loopback port, no key.
    pub fn for_tests(nats_url: &str) -> Args {
        Args {
            nats_url: nats_url.to_string(),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            key: None,
            model_card: PathBuf::from("models/tft.json"),
            stale_after: Duration::from_secs(30),
            generator_probe: Duration::from_secs(5),
            drift_margin: 0.25,
            secure_cookie: false,
            demo_fixture: false,
            demo_servers: 90,
            alertmanager_urls: vec![],
            metrics: Default::default(),
        }
    }

    /// The key, if one is configured and not blank.
    pub fn access_key(&self) -> Option<&str> {
        self.key.as_deref().map(str::trim).filter(|k| !k.is_empty())
    }
}

/// The address actually bound: with no key, a non-loopback address is replaced by loopback on
/// the same port (returned with `true` so the caller can say so).
pub fn effective_listen(listen: SocketAddr, has_key: bool) -> (SocketAddr, bool) {
    if has_key || listen.ip().is_loopback() {
        return (listen, false);
    }
    let loopback = match listen.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    };
    (SocketAddr::new(loopback, listen.port()), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_key_only_loopback() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(effective_listen(any, false), ("127.0.0.1:8080".parse().unwrap(), true));
        assert_eq!(effective_listen(any, true), (any, false));
        let lo: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        assert_eq!(effective_listen(lo, false), (lo, false));
        let v6: SocketAddr = "[::]:8080".parse().unwrap();
        assert_eq!(effective_listen(v6, false), ("[::1]:8080".parse().unwrap(), true));
    }

    #[test]
    fn blank_key_is_no_key() {
        let mut a = Args::for_tests("nats://x");
        a.key = Some("  ".into());
        assert_eq!(a.access_key(), None);
        a.key = Some("s3cret".into());
        assert_eq!(a.access_key(), Some("s3cret"));
    }

    #[test]
    fn parses_env_style_durations() {
        let a = Args::try_parse_from(["dashboard", "--stale-after", "2m", "--listen", "0.0.0.0:9"]).unwrap();
        assert_eq!(a.stale_after, Duration::from_secs(120));
        assert_eq!(a.listen.port(), 9);
    }
}
