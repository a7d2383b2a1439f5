//! Debian's real `prometheus` (2.42) and `prometheus-node-exporter` (1.5) for tests, each on a
//! free loopback port with a temporary data directory, waited for until ready and killed on
//! drop. Never a mock: the ingest tests scrape this very machine and remote-write for real.
//!
//! Binaries: `$PROMETHEUS_BIN` / `$NODE_EXPORTER_BIN`, else `/usr/bin/prometheus` and
//! `/usr/bin/prometheus-node-exporter` (`deploy/bootstrap.sh` installs them with apt).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::free_port;

fn bin(env: &str, default: &str) -> PathBuf {
    std::env::var(env).map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(default))
}

/// Polls `http://127.0.0.1:<port><path>` until it answers 200, the child exits, or 60 s pass.
fn wait_http(child: &mut Child, port: u16, path: &str, what: &str, log: &Path) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            bail!("{what} exited with {status}; its log:\n{}", tail.lines().rev().take(20).collect::<Vec<_>>().join("\n"));
        }
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            let mut answer = String::new();
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_to_string(&mut answer).is_ok()
                && answer.starts_with("HTTP/1.0 200") | answer.starts_with("HTTP/1.1 200")
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} not ready on port {port} within 60 s (log: {})", log.display())
}

/// A running node_exporter; killed on drop.
pub struct NodeExporter {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl NodeExporter {
    /// Starts node_exporter on a free port with `extra` flags (e.g. `--collector.tcpstat`).
    pub fn start(extra: &[&str]) -> anyhow::Result<NodeExporter> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("node_exporter.log");
        let port = free_port();
        let exe = bin("NODE_EXPORTER_BIN", "/usr/bin/prometheus-node-exporter");
        let mut cmd = Command::new(&exe);
        cmd.arg(format!("--web.listen-address=127.0.0.1:{port}")).args(extra);
        let child = spawn_ready(&mut cmd, &exe, port, "/metrics", "node_exporter", &log)?;
        Ok(NodeExporter { child, port, _dir: dir })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`: the scrape target, and the `instance` label Prometheus gives it.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running Prometheus; killed (and its data removed) on drop.
pub struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with configuration text `config` (YAML), an empty TSDB, the
    /// remote-write receiver enabled, on a free port.
    pub fn start(config: &str) -> anyhow::Result<Prometheus> {
        Self::start_with_data(config, |_| Ok(()))
    }

    /// Like [`start`](Self::start), with `prepare` run on the (empty) data directory first, e.g.
    /// to create blocks of history with `promtool tsdb create-blocks-from openmetrics`.
    pub fn start_with_data(config: &str, prepare: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<Prometheus> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        prepare(&data)?;
        let conf = dir.path().join("prometheus.yml");
        std::fs::write(&conf, config)?;
        let port = free_port();
        let child = spawn(dir.path(), port)?;
        Ok(Prometheus { child, port, dir })
    }

    /// Stops Prometheus (SIGTERM, then SIGKILL after 10 s), keeping its data and port: the
    /// query API is down, a real "connection refused", until [`restart`](Self::restart).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts Prometheus again on the same port with the same configuration and data (its
    /// TSDB replays the WAL), and waits until it is ready.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            bail!("prometheus is still running");
        }
        self.child = spawn(self.dir.path(), self.port)?;
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`: the query API base and the remote-write receiver's host.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `GET /api/v1/query?query=<promql>` at now: the `data.result` array (instant vectors:
    /// `[{"metric": {..}, "value": [ts, "v"]}, ..]`). An HTTP or API error is an error.
    pub fn query(&self, promql: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        use std::io::{Read, Write};
        let mut encoded = String::new();
        for b in promql.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => encoded.push(b as char),
                _ => encoded.push_str(&format!("%{b:02X}")),
            }
        }
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        // HTTP/1.0: the body ends at the connection's end, never chunked.
        write!(conn, "GET /api/v1/query?query={encoded} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut raw = String::new();
        conn.read_to_string(&mut raw)?;
        let (_, body) = raw.split_once("\r\n\r\n").context("no HTTP header end")?;
        let v: serde_json::Value = serde_json::from_str(body).with_context(|| format!("not JSON: {body}"))?;
        if v["status"] != "success" {
            bail!("query {promql:?} failed: {body}");
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// Prometheus's own log (warnings and errors), for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Prometheus with `<dir>/prometheus.yml` and data in `<dir>/data` on `port` and waits
/// until it is ready.
fn spawn(dir: &Path, port: u16) -> anyhow::Result<Child> {
    let log = dir.join("prometheus.log");
    let exe = bin("PROMETHEUS_BIN", "/usr/bin/prometheus");
    let mut cmd = Command::new(&exe);
    cmd.arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(["--web.enable-remote-write-receiver", "--storage.tsdb.retention.time=30d", "--log.level=warn"]);
    spawn_ready(&mut cmd, &exe, port, "/-/ready", "prometheus", &log)
}

/// Spawns `cmd` (the program `exe`) with its stderr appended to `log` and waits until
/// `http://127.0.0.1:<port><ready>` answers 200 ([`wait_http`]); kills it if it never does.
fn spawn_ready(cmd: &mut Command, exe: &Path, port: u16, ready: &str, what: &str, log: &Path) -> anyhow::Result<Child> {
    let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {} (deploy/bootstrap.sh installs it)", exe.display()))?;
    if let Err(e) = wait_http(&mut child, port, ready, what, log) {
        let _ = child.kill();
        return Err(e);
    }
    Ok(child)
}

/// Path of `promtool` (`$PROMTOOL_BIN`, else `/usr/bin/promtool`).
pub fn promtool() -> PathBuf {
    bin("PROMTOOL_BIN", "/usr/bin/promtool")
}
