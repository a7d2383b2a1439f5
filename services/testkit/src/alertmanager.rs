//! A real Alertmanager (Debian's `prometheus-alertmanager`, 0.25) on a free loopback port, with
//! clustering off and a temporary config and store; killed on drop, restartable on the same
//! port (as after a crash: alerts live in its memory, so a restarted one has none until told
//! again). Never a mock.
//!
//! The binary is `$ALERTMANAGER_BIN`, else `prometheus-alertmanager` on `PATH`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A receiver that sends nowhere: the tests read alerts through the API, not notifications.
/// `resolve_timeout` is Alertmanager's default; the notifier sets `endsAt` itself.
pub const DEFAULT_CONFIG: &str =
    "global:\n  resolve_timeout: 5m\nroute:\n  receiver: 'null'\n  group_by: ['alertname']\nreceivers:\n  - name: 'null'\n";

/// Path of the Alertmanager binary to use.
pub fn alertmanager_bin() -> PathBuf {
    std::env::var("ALERTMANAGER_BIN").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("prometheus-alertmanager"))
}

/// A running Alertmanager; killed (and its temp dir removed) on drop.
pub struct Alertmanager {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts one with [`DEFAULT_CONFIG`] and waits until `/-/ready` answers 200.
    pub fn start() -> anyhow::Result<Alertmanager> {
        Self::start_with_config(DEFAULT_CONFIG)
    }

    /// Starts one with the given `alertmanager.yml` text.
    pub fn start_with_config(config: &str) -> anyhow::Result<Alertmanager> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("alertmanager.yml"), config)?;
        std::fs::create_dir_all(dir.path().join("data"))?;
        let mut am = Alertmanager { child: None, port: crate::free_port(), dir };
        am.spawn()?;
        Ok(am)
    }

    /// `http://127.0.0.1:<port>`, the base URL (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it (SIGKILL) without restarting; its port stays reserved for [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it if running and starts it again on the same port and store.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Whether `/-/ready` answers 200 now.
    pub fn ready(&self) -> bool {
        get(self.port, "/-/ready").map(|(status, _)| status == 200).unwrap_or(false)
    }

    /// `GET /api/v2/alerts` (active alerts only, Alertmanager's default filter) as JSON.
    pub fn alerts(&self) -> anyhow::Result<serde_json::Value> {
        let (status, body) = get(self.port, "/api/v2/alerts")?;
        if status != 200 {
            bail!("GET /api/v2/alerts: HTTP {status}: {body}");
        }
        serde_json::from_str(&body).context("alerts are not JSON")
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = alertmanager_bin();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("alertmanager.log"))?;
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", self.dir.path().join("alertmanager.yml").display()))
            .arg(format!("--storage.path={}", self.dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            // Empty: no gossip cluster, so nothing listens on 9094 and parallel tests never meet.
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} (apt-get install prometheus-alertmanager)", bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.ready() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("alertmanager exited ({status}):\n{}", self.log());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("alertmanager not ready on port {} within 20 s:\n{}", self.port, self.log())
    }

    /// Its log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal blocking HTTP/1.1 GET on loopback: (status, body). No client library for a
/// harness that makes a handful of requests.
fn get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(conn, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no HTTP status")?;
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Ok((status, if chunked { dechunk(body) } else { body.to_string() }))
}

/// Joins a chunked body's chunks.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let (Some(chunk), Some(after)) = (rest.get(..n), rest.get(n..)) else {
            break;
        };
        if n == 0 {
            break;
        }
        out.push_str(chunk);
        body = after.trim_start_matches("\r\n");
    }
    out
}
