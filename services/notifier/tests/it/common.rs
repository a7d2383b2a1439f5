//! The parts every notifier test starts: a real nats-server with stream HISTORY configured as
//! the predictor configures it, a real Alertmanager, and the real `notifier` binary as a
//! process; plus publishing alert events exactly as the predictor publishes them.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::jetstream::{self, stream};
use schemas::{subjects, Alert, AlertBasis, AlertEvent, AlertState, Level, Profile, Target};
use testkit::alertmanager::Alertmanager;
use testkit::NatsServer;
use tokio::process::{Child, Command};

/// A nats-server with the project's least-privilege users (`deploy/nats-auth.conf`), every
/// `$FLEETCAST_<USER>_PASSWORD` it names set to `<user>-pw`; returns it and a URL maker.
pub fn auth_nats() -> anyhow::Result<NatsServer> {
    let conf = std::fs::read_to_string(testkit::workspace_root().join("deploy/nats-auth.conf"))?;
    let vars: BTreeSet<String> = conf
        .split('$')
        .skip(1)
        .filter_map(|rest| {
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            name.ends_with("_PASSWORD").then_some(name)
        })
        .collect();
    let env: Vec<(String, String)> = vars.iter().map(|v| (v.clone(), password(v))).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    NatsServer::start_with_config(&conf, &env)
}

/// The URL `user` connects with on an [`auth_nats`] server.
pub fn url_as(nats: &NatsServer, user: &str) -> String {
    nats.url_as(user, &password(&format!("FLEETCAST_{}_PASSWORD", user.to_uppercase())))
}

fn password(var: &str) -> String {
    format!("{}-pw", var.to_lowercase())
}

/// The bound on every wait in these tests.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Stream HISTORY exactly as `services/predictor/src/streams.rs` (`history_stream`) creates it
/// with its defaults (7 days, 8 GiB); the notifier must only read it.
pub async fn create_history(js: &jetstream::Context) -> anyhow::Result<()> {
    js.get_or_create_stream(stream::Config {
        name: subjects::STREAM_HISTORY.to_string(),
        subjects: vec![subjects::HISTORY_TICK.to_string(), format!("{}.>", subjects::ALERTS_PREFIX)],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        max_age: Duration::from_secs(7 * 86_400),
        max_bytes: 8 << 30,
        allow_direct: true,
        num_replicas: 1,
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// An alert as the predictor's alert book makes it.
pub fn alert(server: &str, target: Target, severity: Level, state: AlertState) -> Alert {
    Alert {
        id: format!("{server}.{}", target.name()),
        server: server.to_string(),
        profile: Profile::detect(server),
        target,
        severity,
        basis: if severity == Level::Critical { AlertBasis::P50 } else { AlertBasis::P90 },
        threshold: 90.0,
        predicted: 96.5,
        current: Some(71.0),
        steps_ahead: 6,
        minutes_ahead: 30,
        state,
        opened_ms: 1_000,
        updated_ms: 1_000,
    }
}

/// Publishes one event the way the predictor's publisher does (JetStream, Content-Type
/// header, subject `alerts.<state>.<server>`) and waits for the stream's ack.
pub async fn publish(js: &jetstream::Context, alert: Alert) -> anyhow::Result<()> {
    let subject = subjects::alert_event(alert.state, &alert.server);
    let payload = schemas::encode(&AlertEvent { v: 1, tick_ms: 1_000, alert })?;
    publish_raw(js, &subject, payload).await
}

pub async fn publish_raw(js: &jetstream::Context, subject: &str, payload: Vec<u8>) -> anyhow::Result<()> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(schemas::CONTENT_TYPE_HEADER, schemas::CONTENT_TYPE);
    js.publish_with_headers(subject.to_string(), headers, payload.into()).await?.await?;
    Ok(())
}

/// `(server, target, severity)` of every alert Alertmanager lists as not resolved, after
/// checking each has the fixed alertname and a profile label.
pub fn firing(am: &Alertmanager) -> anyhow::Result<BTreeSet<(String, String, String)>> {
    let alerts = am.alerts()?;
    let mut out = BTreeSet::new();
    for a in alerts.as_array().context("alerts is not an array")? {
        let l = &a["labels"];
        if l["alertname"] != "FleetcastPredictedBreach" || !l["profile"].is_string() {
            bail!("unexpected labels {l}");
        }
        let s = |k: &str| l[k].as_str().unwrap_or("").to_string();
        out.insert((s("server"), s("target"), s("severity")));
    }
    Ok(out)
}

pub fn set(items: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    items.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect()
}

/// Polls Alertmanager until it lists exactly `want`, within [`DEADLINE`].
pub async fn until_firing(am: &Alertmanager, want: &BTreeSet<(String, String, String)>) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEADLINE;
    let mut last = Default::default();
    while Instant::now() < deadline {
        match firing(am) {
            Ok(now) if &now == want => return Ok(()),
            Ok(now) => last = now,
            Err(e) => tracing_less(&e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("Alertmanager never listed exactly {want:?}; last {last:?}")
}

fn tracing_less(e: &anyhow::Error) {
    eprintln!("alertmanager not answering yet: {e}");
}

/// The `notifier` binary running as a process, with its log in a temp dir.
pub struct Notifier {
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
    pub metrics: String,
}

impl Notifier {
    /// Starts it against `nats` and `ams` with `extra` flags; waits for `notifier ready`.
    pub async fn start(nats_url: &str, ams: &[&Alertmanager], extra: &[&str]) -> anyhow::Result<Notifier> {
        let dir = tempfile::tempdir()?;
        let metrics = format!("127.0.0.1:{}", testkit::free_port());
        let urls: Vec<String> = ams.iter().map(|a| a.url()).collect();
        let mut args = vec![
            "--nats-url".to_string(),
            nats_url.to_string(),
            "--alertmanager-url".to_string(),
            urls.join(","),
            "--dashboard-url".to_string(),
            "http://dash.example:8080".to_string(),
            "--retry-max".to_string(),
            "500ms".to_string(),
            "--metrics-listen".to_string(),
            metrics.clone(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut n = Notifier { args, child: None, log: dir.path().join("notifier.log"), _dir: dir, metrics };
        n.spawn().await?;
        Ok(n)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = testkit::bin_path("notifier");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let start = self.log_text().len();
        self.child = Some(
            Command::new(&bin)
                .args(&self.args)
                .env("RUST_LOG", "info,notifier=debug")
                .env_remove("ALERTMANAGER_URL")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {} (cargo build --release -p notifier)", bin.display()))?,
        );
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if self.log_text().get(start..).is_some_and(|t| t.contains("notifier ready")) {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("notifier exited ({status}):\n{}", self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("notifier not ready:\n{}", self.log_text())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: nothing flushed, nothing acked.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.start_kill()?;
            c.wait().await?;
        }
        Ok(())
    }

    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9().await?;
        self.spawn().await
    }

    /// SIGTERM; the exit status.
    pub async fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut c = self.child.take().context("not running")?;
        let pid = c.id().context("no pid")?;
        std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
        Ok(tokio::time::timeout(DEADLINE, c.wait()).await??)
    }

    /// `GET /metrics` body.
    pub async fn scrape(&self) -> anyhow::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(&self.metrics).await?;
        s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.metrics).as_bytes()).await?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await?;
        Ok(buf)
    }

    /// Polls `/metrics` until a line starts with `prefix` and its value satisfies `ok`.
    pub async fn until_metric(&self, prefix: &str, ok: impl Fn(f64) -> bool) -> anyhow::Result<f64> {
        let deadline = Instant::now() + DEADLINE;
        let mut last = String::new();
        while Instant::now() < deadline {
            last = self.scrape().await.unwrap_or_default();
            let v = last.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok());
            if let Some(v) = v.filter(|v| ok(*v)) {
                return Ok(v);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("no {prefix} as wanted in:\n{last}")
    }
}

/// Opens three alerts (a critical CPU, a warning memory, a warning disk) and waits until `am`
/// lists exactly those as firing: the start most tests share.
pub async fn open_three(js: &jetstream::Context, am: &Alertmanager) -> anyhow::Result<()> {
    publish(js, alert("ppdb001", Target::Cpu, Level::Critical, AlertState::Opened)).await?;
    publish(js, alert("ppweb002", Target::Mem, Level::Warning, AlertState::Opened)).await?;
    publish(js, alert("ppml0003", Target::Disk, Level::Warning, AlertState::Opened)).await?;
    let want = set(&[("ppdb001", "cpu", "critical"), ("ppweb002", "mem", "warning"), ("ppml0003", "disk", "warning")]);
    until_firing(am, &want).await
}
