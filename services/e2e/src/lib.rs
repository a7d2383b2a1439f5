//! Runs the real Fleetcast binaries as processes against a real nats-server, the way `just up`
//! does, and watches them from the outside: a plain async-nats subscription decoding with
//! `schemas`, not the services' own code paths.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use schemas::{Snapshot, SnapshotAssembler};
use tokio::process::{Child, Command};

pub use testkit::NatsServer;

pub mod production;
pub use production::ProductionBroker;

/// Test passwords for the users of `deploy/nats-auth.conf`: (env var, user, password).
pub const USERS: [(&str, &str, &str); 6] = [
    ("FLEETCAST_PREDICTOR_PASSWORD", "predictor", "p-secret"),
    ("FLEETCAST_GENERATOR_PASSWORD", "generator", "g-secret"),
    ("FLEETCAST_DASHBOARD_PASSWORD", "dashboard", "d-secret"),
    ("FLEETCAST_ADMIN_PASSWORD", "admin", "a-secret"),
    ("FLEETCAST_NOTIFIER_PASSWORD", "notifier", "n-secret"),
    ("FLEETCAST_INGEST_PASSWORD", "ingest", "i-secret"),
];

/// A nats-server with the project's least-privilege users (deploy/nats-auth.conf).
pub fn auth_server() -> anyhow::Result<NatsServer> {
    let conf = std::fs::read_to_string(testkit::workspace_root().join("deploy/nats-auth.conf"))?;
    let env: Vec<(&str, &str)> = USERS.iter().map(|(var, _, pw)| (*var, *pw)).collect();
    NatsServer::start_with_config(&conf, &env)
}

/// The URL a service connects with on an [`auth_server`].
pub fn url_for(nats: &NatsServer, user: &str) -> String {
    let pw = USERS.iter().find(|(_, u, _)| *u == user).map(|(_, _, p)| *p).unwrap_or("");
    nats.url_as(user, pw)
}

/// One service process with its log file.
pub struct Service {
    pub name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
}

impl Service {
    /// Starts `target/<profile>/<name>` with `args`, logging to `<dir>/<name>.log`, and waits
    /// until the log says `<name> ready`.
    pub async fn start<K: AsRef<str>, V: AsRef<str>>(
        dir: &std::path::Path,
        name: &str,
        args: &[&str],
        env: &[(K, V)],
    ) -> anyhow::Result<Service> {
        let mut svc = Service {
            name: name.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string())).collect(),
            child: None,
            log: dir.join(format!("{name}.log")),
        };
        svc.spawn().await?;
        Ok(svc)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = testkit::bin_path(&self.name);
        if !bin.exists() {
            bail!("{} is missing: `cargo nextest run --workspace --release` (just test) builds it", bin.display());
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&bin)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .env("ORT_DYLIB_PATH", testkit::ort_dylib())
            .current_dir(testkit::workspace_root())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        self.child = Some(child);
        self.wait_for_log(&format!("{} ready", self.name), Duration::from_secs(60)).await
    }

    /// Waits until the log (since the process started) contains `needle`.
    pub async fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_text().contains(needle) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("{} exited ({status}) before {needle:?}:\n{}", self.name, self.log_tail(40));
                }
            }
            if Instant::now() > deadline {
                bail!("{} did not log {needle:?} within {timeout:?}:\n{}", self.name, self.log_tail(40));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// SIGKILL: no chance to flush or ack anything.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// SIGTERM and wait for a clean exit.
    pub async fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("not running")?;
        if let Some(pid) = child.id() {
            std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
        }
        Ok(tokio::time::timeout(Duration::from_secs(20), child.wait()).await??)
    }

    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9().await?;
        self.spawn().await
    }
}

/// Reads whole snapshots from `predictions.current`, joining parts.
pub struct SnapshotWatch {
    client: async_nats::Client,
    sub: async_nats::Subscriber,
    assembler: SnapshotAssembler,
    /// Most parts any snapshot seen so far was split into (its parts' `part.count`).
    pub most_parts: u16,
    /// Largest message seen on the subject, in payload bytes.
    pub largest_part: usize,
}

impl SnapshotWatch {
    pub async fn new(client: &async_nats::Client) -> anyhow::Result<SnapshotWatch> {
        let sub = client.subscribe(schemas::subjects::PREDICTIONS_CURRENT).await?;
        Ok(SnapshotWatch { client: client.clone(), sub, assembler: SnapshotAssembler::default(), most_parts: 0, largest_part: 0 })
    }

    /// The connection it reads on (for the servers' KV `forecasts` entries).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The next whole snapshot, or an error after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<Snapshot> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg =
                tokio::time::timeout_at(deadline, self.sub.next()).await.context("no snapshot in time")?.context("subscription closed")?;
            let part: Snapshot = schemas::decode(&msg.payload).context("snapshot does not decode")?;
            self.most_parts = self.most_parts.max(part.part.count);
            self.largest_part = self.largest_part.max(msg.payload.len());
            if let Some(whole) = self.assembler.push(part) {
                return Ok(whole);
            }
        }
    }

    /// Waits for the first snapshot satisfying `pred`.
    pub async fn until(&mut self, timeout: Duration, mut pred: impl FnMut(&Snapshot) -> bool) -> anyhow::Result<Snapshot> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no matching snapshot within {timeout:?}");
            }
            let snap = self.next(left).await?;
            if pred(&snap) {
                return Ok(snap);
            }
        }
    }
}

/// Every server of the snapshot has a forecast of every target (its curves are in KV
/// `forecasts`: `fleetbus::forecasts::of_snapshot`).
pub fn all_forecast(snap: &Snapshot, servers: usize) -> bool {
    snap.servers.len() == servers && snap.servers.iter().all(|s| s.warmup.is_none() && s.forecast_count() == schemas::TARGET_COUNT)
}

/// Risk per server.
pub fn risks(snap: &Snapshot) -> HashMap<String, f32> {
    snap.servers.iter().map(|s| (s.server.clone(), s.risk)).collect()
}

/// What the sources sent, read back from the `METRICS` stream itself: per (server, step
/// number), the records' metrics at each report time (a re-sent batch counts once).
pub type Sent = HashMap<(String, i64), Vec<(i64, schemas::Metrics)>>;

/// Reads every batch in the `METRICS` stream (sequence 1 to the last) and files its records.
pub async fn sent_metrics(client: &async_nats::Client) -> anyhow::Result<(Sent, u64)> {
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(schemas::subjects::STREAM_METRICS).await?;
    let state = stream.info().await?.state.clone();
    let mut sent = Sent::new();
    for seq in state.first_sequence..=state.last_sequence {
        let msg = stream.get_raw_message(seq).await.with_context(|| format!("METRICS message {seq}"))?;
        let batch: schemas::MetricsBatch = schemas::decode(&msg.payload).with_context(|| format!("METRICS message {seq} decodes"))?;
        for r in batch.records {
            let reports = sent.entry((r.server, r.ts_ms.div_euclid(schemas::STEP_MS))).or_default();
            if !reports.iter().any(|(ts, _)| *ts == r.ts_ms) {
                reports.push((r.ts_ms, r.metrics));
            }
        }
    }
    Ok((sent, state.messages))
}

/// What the predictor should hold for `target` at one step: the mean of the reports' values.
pub fn expected(sent: &Sent, server: &str, step: i64, target: schemas::Target) -> Option<f32> {
    let values: Vec<f64> =
        sent.get(&(server.to_string(), step))?.iter().filter_map(|(_, m)| m.get(target.source_metric())).map(f64::from).collect();
    (!values.is_empty()).then(|| target.from_source((values.iter().sum::<f64>() / values.len() as f64) as f32))
}

/// Relative precision of a recent value: steps older than the model's encoder steps are kept,
/// and published, as half floats (`predictor/src/tail.rs`), within 2^-11 of the value sent
/// (`predictor::domain::half::PRECISION`; this crate does not link the predictor).
/// A lost or misplaced step is off by far more.
pub const HALF_FLOAT: f32 = 1.0 / 2048.0;

/// Compares every step of every server's recent history in `forecasts` (KV `forecasts`, read
/// before `sent`, so nothing stored was sent after `sent` was read) with what was sent.
/// Returns how many (server, target, step) values were compared (reported ones, not gaps) and
/// the mismatches, each in words.
pub fn window_mismatches(forecasts: &[schemas::ServerForecast], sent: &Sent) -> (usize, Vec<String>) {
    let (mut compared, mut bad) = (0, Vec::new());
    for s in forecasts {
        let last = s.last_ms.div_euclid(schemas::STEP_MS);
        for h in &s.recent {
            let first = last - h.values.len() as i64 + 1;
            for (k, got) in h.values.iter().enumerate() {
                let step = first + k as i64;
                let want = expected(sent, &s.server, step, h.target);
                let same = match (got, want) {
                    (Some(g), Some(w)) => (g - w).abs() <= HALF_FLOAT * w.abs().max(1.0),
                    (None, None) => true,
                    _ => false,
                };
                if want.is_some() {
                    compared += 1;
                }
                if !same {
                    bad.push(format!("{} {:?} step {step}: stored {got:?}, sent {want:?}", s.server, h.target));
                }
            }
        }
    }
    (compared, bad)
}

/// The durable consumer `name` on `METRICS`, as the broker reports it.
pub async fn consumer_state(client: &async_nats::Client, name: &str) -> anyhow::Result<async_nats::jetstream::consumer::Info> {
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream(schemas::subjects::STREAM_METRICS).await?;
    Ok(stream.consumer_info(name).await?)
}
