//! The dashboard's shared in-memory state: the latest decoded snapshot (with the indexes every
//! view needs, built once per snapshot rather than per request), link health for the "stale
//! since" banner, and the small bits of operator state (Alertmanager status, sessions, generator
//! status, saved settings).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use schemas::{ServerForecast, ServerSummary, Snapshot};
use tokio::sync::watch;

use crate::alertmanager::Alertmanagers;
use crate::auth::Sessions;
use crate::config::Args;
use crate::control::{GeneratorStatus, SwitchOutcome};
use crate::forecasts::{ForecastError, Forecasts};
use crate::format;
use crate::history::HistoryStore;
use crate::locks::{lock, read, write};
use crate::model_card::CardCache;
use crate::partitions::{Origin, PartitionSeen, Partitions};
use crate::settings::Settings;

pub type Shared = Arc<AppState>;

/// A snapshot as received, with its lookup tables.
#[derive(Debug)]
pub struct Latest {
    pub snapshot: Snapshot,
    /// Wall-clock time it arrived here.
    pub received: SystemTime,
    /// Counts snapshots received by this process (the predictor's `seq` restarts with it).
    pub update: u64,
    by_name: HashMap<String, usize>,
    /// Server indexes, riskiest first (non-finite risks last, then by name).
    pub by_risk: Vec<usize>,
    /// Every active alert as (server index, alert index) in the alerts page's order: critical
    /// first, then the soonest breach, then server and target name. Sorted once per snapshot,
    /// not per request (a 100,000-server fleet's alerts took 20-37 ms to sort each time).
    pub alert_order: Vec<(u32, u32)>,
    /// The partitions merged into `snapshot` (`partitions.rs`); empty when unpartitioned.
    pub partitions: Vec<PartitionSeen>,
}

/// The riskiest-first order: by risk (non-finite last); on equal risk, the sooner first
/// predicted breach first (none last), then by name. Risks sit on their level's floor more
/// often than not (`risk.rs` keeps a score inside its level's band), so without the breach a
/// level's servers ranked by name: a CPU crossing in 5 min below a disk in 2 h.
pub fn riskier_first(a: &ServerSummary, b: &ServerSummary) -> std::cmp::Ordering {
    let risk = |s: &ServerSummary| if s.risk.is_finite() { s.risk } else { f32::NEG_INFINITY };
    let breach = |s: &ServerSummary| s.breach.map_or(u32::MAX, |b| b.minutes_ahead);
    risk(b).total_cmp(&risk(a)).then_with(|| breach(a).cmp(&breach(b))).then_with(|| a.server.cmp(&b.server))
}

/// [`Latest::alert_order`] of `servers`.
fn alert_order(servers: &[ServerSummary]) -> Vec<(u32, u32)> {
    let mut order: Vec<(u32, u32)> =
        servers.iter().enumerate().flat_map(|(i, s)| (0..s.alerts.len()).map(move |j| (i as u32, j as u32))).collect();
    let at = |(i, j): (u32, u32)| (&servers[i as usize], &servers[i as usize].alerts[j as usize]);
    order.sort_by(|&x, &y| {
        let ((sa, a), (sb, b)) = (at(x), at(y));
        b.severity
            .cmp(&a.severity)
            .then(a.minutes_ahead.cmp(&b.minutes_ahead))
            .then_with(|| sa.server.cmp(&sb.server))
            .then_with(|| a.target.name().cmp(b.target.name()))
    });
    order
}

impl Latest {
    pub fn new(snapshot: Snapshot, received: SystemTime, update: u64) -> Latest {
        let by_name = snapshot.servers.iter().enumerate().map(|(i, s)| (s.server.clone(), i)).collect();
        let mut by_risk: Vec<usize> = (0..snapshot.servers.len()).collect();
        by_risk.sort_by(|&a, &b| riskier_first(&snapshot.servers[a], &snapshot.servers[b]));
        let alert_order = alert_order(&snapshot.servers);
        Latest { snapshot, received, update, by_name, by_risk, alert_order, partitions: Vec::new() }
    }

    pub fn server(&self, name: &str) -> Option<&ServerSummary> {
        self.by_name.get(name).and_then(|&i| self.snapshot.servers.get(i))
    }

    /// Servers riskiest first.
    pub fn riskiest(&self) -> impl Iterator<Item = &ServerSummary> {
        self.by_risk.iter().filter_map(|&i| self.snapshot.servers.get(i))
    }
}

/// The NATS link as the banner reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Connected,
    Disconnected {
        since: SystemTime,
    },
    /// `--demo-fixture`: no broker, snapshots are generated in-process.
    Fixture,
}

#[derive(Debug, Clone)]
pub struct Health {
    pub link: Link,
    pub last_snapshot: Option<SystemTime>,
    /// Messages on `predictions.current` that did not decode (counted, logged, skipped).
    pub bad_messages: u64,
    pub last_error: Option<String>,
}

/// What the banner says, if anything is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// `waiting`, `down` or `stale` (a CSS class).
    pub kind: &'static str,
    pub text: String,
}

/// Decides the banner from link health; pure, the caller passes the clock. The text names
/// moments, not elapsed times, so it only changes (and is only pushed) when the state does.
pub fn banner(h: &Health, stale_after: Duration, now: SystemTime) -> Option<Banner> {
    let age = |t: SystemTime| now.duration_since(t).unwrap_or_default();
    if let Link::Disconnected { since } = h.link {
        let shown = match h.last_snapshot {
            Some(t) => format!(" Showing the snapshot received at {}.", format::utc(t)),
            None => String::new(),
        };
        return Some(Banner { kind: "down", text: format!("Stale since {}: the NATS connection is down.{shown}", format::utc(since)) });
    }
    match h.last_snapshot {
        None if h.link == Link::Connecting => Some(Banner { kind: "waiting", text: "Connecting to NATS…".into() }),
        None => Some(Banner { kind: "waiting", text: "Waiting for the first forecast snapshot on predictions.current.".into() }),
        Some(t) if age(t) > stale_after => Some(Banner {
            kind: "stale",
            text: format!(
                "Stale since {}: no new snapshot for over {} (is the predictor running?).",
                format::utc(t),
                format::span(stale_after)
            ),
        }),
        Some(_) => None,
    }
}

pub struct AppState {
    pub args: Args,
    latest: RwLock<Option<Arc<Latest>>>,
    updates: watch::Sender<u64>,
    health: Mutex<Health>,
    pub generator: Mutex<GeneratorStatus>,
    pub last_switch: Mutex<Option<SwitchOutcome>>,
    pub history: RwLock<HistoryStore>,
    /// Where predicted alerts go (`--alertmanager-url`), with cached readiness.
    pub alertmanagers: Alertmanagers,
    pub sessions: Sessions,
    pub card: CardCache,
    /// Operator inputs kept in the `dashboard_settings` KV bucket (cost-avoidance assumptions).
    pub settings: Settings,
    /// Where the server view reads a server's full forecast (KV `forecasts`).
    pub forecasts: Forecasts,
    nats: OnceLock<async_nats::Client>,
    /// The newest snapshot of each partition, for the merged view.
    partitions: Mutex<Partitions>,
    shutdown: watch::Sender<bool>,
    /// Open `/events` streams (one per browser tab).
    pub sse_clients: std::sync::atomic::AtomicUsize,
    /// `/metrics` (`metrics.rs`) and the registry `server.rs` serves on `--metrics-listen`.
    pub metrics: crate::metrics::Metrics,
    pub metrics_registry: Arc<prometheus_client::registry::Registry>,
}

impl AppState {
    pub fn new(args: Args) -> Shared {
        let link = if args.demo_fixture { Link::Fixture } else { Link::Connecting };
        let card = CardCache::new(args.model_card.clone());
        let alertmanagers = Alertmanagers::new(&args.alertmanager_urls);
        let (metrics, registry) = crate::metrics::Metrics::new();
        Arc::new(AppState {
            args,
            latest: RwLock::new(None),
            updates: watch::channel(0).0,
            health: Mutex::new(Health { link, last_snapshot: None, bad_messages: 0, last_error: None }),
            generator: Mutex::new(GeneratorStatus::default()),
            last_switch: Mutex::new(None),
            history: RwLock::new(HistoryStore::default()),
            alertmanagers,
            sessions: Sessions::default(),
            card,
            settings: Settings::default(),
            forecasts: Forecasts::default(),
            nats: OnceLock::new(),
            partitions: Mutex::default(),
            shutdown: watch::channel(false).0,
            sse_clients: Default::default(),
            metrics,
            metrics_registry: Arc::new(registry),
        })
    }

    pub fn latest(&self) -> Option<Arc<Latest>> {
        read(&self.latest).clone()
    }

    /// Installs a whole snapshot as the latest and wakes every SSE stream.
    pub fn publish(&self, snapshot: Snapshot) {
        self.install(snapshot, Vec::new());
    }

    /// Takes a whole snapshot off NATS (live, or read back from the stream at start): keeps
    /// the newest of each partition and installs what [`Partitions::accept`] says to show (the
    /// snapshot itself when unpartitioned, else the merge of every partition's newest).
    /// Returns whether anything was installed.
    pub fn receive(&self, snapshot: Snapshot, origin: Origin) -> bool {
        // Held while installing, so the live loop and the start-up read install in the order
        // the keeper decided.
        let mut kept = lock(&self.partitions);
        match kept.accept(snapshot, origin) {
            Some(shown) => {
                self.install(shown.snapshot, shown.partitions);
                true
            }
            None => false,
        }
    }

    fn install(&self, snapshot: Snapshot, partitions: Vec<PartitionSeen>) {
        let now = SystemTime::now();
        let update = *self.updates.borrow() + 1;
        let mut latest = Latest::new(snapshot, now, update);
        latest.partitions = partitions;
        let latest = Arc::new(latest);
        *write(&self.latest) = Some(latest);
        lock(&self.health).last_snapshot = Some(now);
        self.metrics.snapshots.inc();
        self.updates.send_replace(update);
    }

    /// Receives the update counter each time a snapshot is installed.
    pub fn subscribe_updates(&self) -> watch::Receiver<u64> {
        self.updates.subscribe()
    }

    pub fn health(&self) -> Health {
        lock(&self.health).clone()
    }

    pub fn set_link(&self, link: Link) {
        let mut h = lock(&self.health);
        // Keep the first moment of an outage, not the last reconnect attempt.
        if matches!((h.link, link), (Link::Disconnected { .. }, Link::Disconnected { .. })) {
            return;
        }
        h.link = link;
    }

    pub fn count_bad_message(&self, error: String) -> u64 {
        let mut h = lock(&self.health);
        h.bad_messages += 1;
        h.last_error = Some(error);
        h.bad_messages
    }

    pub fn banner(&self) -> Option<Banner> {
        banner(&self.health(), self.args.stale_after, SystemTime::now())
    }

    pub fn set_nats(&self, client: async_nats::Client) {
        let _ = self.nats.set(client);
    }

    pub fn nats(&self) -> Option<&async_nats::Client> {
        self.nats.get()
    }

    /// The latest full forecast of `server` (one KV get; see `forecasts.rs`).
    pub async fn forecast(&self, server: &str) -> Result<Option<ServerForecast>, ForecastError> {
        self.forecasts.get(self.nats(), server).await
    }

    /// Whether the generator's control service answered recently.
    pub fn generator_available(&self) -> bool {
        lock(&self.generator).available(std::time::Instant::now(), self.args.generator_probe)
    }

    /// Tells long-lived responses (SSE) to finish so a graceful shutdown completes.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    fn health(link: Link, last: Option<SystemTime>) -> Health {
        Health { link, last_snapshot: last, bad_messages: 0, last_error: None }
    }

    #[test]
    fn banner_says_why_data_is_stale() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let after = Duration::from_secs(30);
        assert_eq!(banner(&health(Link::Connected, Some(t0)), after, t0 + Duration::from_secs(5)), None);
        let stale = banner(&health(Link::Connected, Some(t0)), after, t0 + Duration::from_secs(90)).unwrap();
        assert_eq!(stale.kind, "stale");
        assert!(stale.text.starts_with("Stale since 2025-11-24 16:00:00 UTC"), "{}", stale.text);
        assert!(stale.text.contains("over 30 s"));
        let later = banner(&health(Link::Connected, Some(t0)), after, t0 + Duration::from_secs(95)).unwrap();
        assert_eq!(later, stale, "no ticking clock in the text: pushed only on change");
        let down = banner(&health(Link::Disconnected { since: t0 }, Some(t0)), after, t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(down.kind, "down");
        assert!(down.text.contains("NATS connection is down"));
        let waiting = banner(&health(Link::Connected, None), after, t0).unwrap();
        assert_eq!(waiting.kind, "waiting");
        assert_eq!(banner(&health(Link::Fixture, Some(t0)), after, t0), None);
    }

    #[test]
    fn latest_orders_by_risk_and_finds_by_name() {
        let snap = fixture::snapshot(&fixture::Spec { servers: 30, ..Default::default() });
        let l = Latest::new(snap, SystemTime::now(), 1);
        let risks: Vec<f32> = l.riskiest().map(|s| s.risk).collect();
        assert!(risks.windows(2).all(|w| w[0] >= w[1]));
        let name = l.snapshot.servers[7].server.clone();
        assert_eq!(l.server(&name).map(|s| s.server.as_str()), Some(name.as_str()));
        assert!(l.server("nope").is_none());
    }

    #[test]
    fn equal_risks_rank_the_sooner_breach_first_then_by_name() {
        let mut snap = fixture::snapshot(&fixture::Spec { servers: 4, ..Default::default() });
        let breach =
            |minutes| Some(schemas::Breach { target: schemas::Target::Cpu, severity: schemas::Level::Warning, minutes_ahead: minutes });
        for (s, (name, risk, b)) in snap.servers.iter_mut().zip([
            ("a-disk-in-2h", 40.0, breach(135)),
            ("b-none", 40.0, None),
            ("c-cpu-in-5min", 40.0, breach(5)),
            ("d-riskier", 70.0, breach(240)),
        ]) {
            (s.server, s.risk, s.breach) = (name.into(), risk, b);
        }
        let l = Latest::new(snap, SystemTime::now(), 1);
        let order: Vec<&str> = l.riskiest().map(|s| s.server.as_str()).collect();
        assert_eq!(order, ["d-riskier", "c-cpu-in-5min", "a-disk-in-2h", "b-none"]);
    }

    #[test]
    fn alerts_are_ordered_once_critical_then_soonest() {
        let snap = fixture::snapshot(&fixture::Spec { servers: 200, ..Default::default() });
        let all: usize = snap.servers.iter().map(|s| s.alerts.len()).sum();
        let l = Latest::new(snap, SystemTime::now(), 1);
        assert!(all > 10, "the fixture has alerts to order: {all}");
        assert_eq!(l.alert_order.len(), all, "every alert once");
        let key = |&(i, j): &(u32, u32)| {
            let s = &l.snapshot.servers[i as usize];
            let a = &s.alerts[j as usize];
            (std::cmp::Reverse(a.severity), a.minutes_ahead, s.server.clone(), a.target.name())
        };
        let keys: Vec<_> = l.alert_order.iter().map(key).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "critical first, then the soonest breach, then by id");
    }

    #[test]
    fn first_outage_moment_is_kept() {
        let s = AppState::new(Args::for_tests("nats://x"));
        let t1 = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        s.set_link(Link::Disconnected { since: t1 });
        s.set_link(Link::Disconnected { since: t1 + Duration::from_secs(5) });
        assert_eq!(s.health().link, Link::Disconnected { since: t1 });
        s.set_link(Link::Connected);
        assert_eq!(s.health().link, Link::Connected);
    }
}
