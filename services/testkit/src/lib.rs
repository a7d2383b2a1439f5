//! Test harness: starts a real `nats-server` with JetStream on a free loopback port and a
//! temporary store dir, and stops it on drop (and a 3-node cluster of them: `cluster.rs`). Never a
//! mock broker. `bench_fleet.rs`: the fleet the tick benchmarks publish through it.
//!
//! The binary is `$NATS_SERVER_BIN`, else `.tools/bin/nats-server` (installed by
//! `deploy/bootstrap.sh`), else `nats-server` on `PATH`.

pub mod alertmanager;
pub mod bench_fleet;
pub mod cluster;
pub mod prometheus;

pub use cluster::NatsCluster;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The workspace root: the nearest directory holding `Cargo.lock` above the running test's
/// package (cargo sets `CARGO_MANIFEST_DIR` at run time), else above the working directory.
/// Resolved at run time, so a test binary built in one checkout never reads another's files.
/// `n` server names of the kinds the generator simulates (`ppml`, `ppdb`, ...), in turn, each
/// numbered with `digits` zero-padded digits: the fleet the benchmarks and tests feed.
pub fn server_names(n: usize, digits: usize) -> Vec<String> {
    const KINDS: [&str; 7] = ["ppml", "ppdb", "ppweb", "ppcon", "ppetl", "pprisk", "ppgen"];
    (0..n).map(|i| format!("{}{:0digits$}", KINDS[i % KINDS.len()], i)).collect()
}

pub fn workspace_root() -> PathBuf {
    let start =
        std::env::var("CARGO_MANIFEST_DIR").map(PathBuf::from).or_else(|_| std::env::current_dir()).unwrap_or_else(|_| PathBuf::from("."));
    start.ancestors().find(|d| d.join("Cargo.lock").exists()).map(Path::to_path_buf).unwrap_or(start)
}

/// Path of the nats-server binary to use.
pub fn nats_server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let local = workspace_root().join(".tools/bin/nats-server");
    if local.exists() {
        return local;
    }
    PathBuf::from("nats-server")
}

/// Path of the ONNX Runtime shared library (`$ORT_DYLIB_PATH`, else `.tools/ortlib`).
pub fn ort_dylib() -> PathBuf {
    std::env::var("ORT_DYLIB_PATH").map(PathBuf::from).unwrap_or_else(|_| workspace_root().join(".tools/ortlib/libonnxruntime.so"))
}

/// A workspace binary of the same build profile as the running test (`cargo nextest run
/// --workspace --release`, as `just test` does, builds every service binary next to the test
/// binaries): the test runs from `<target>/<profile>/deps/`, so the binaries are one level up.
/// `$FLEETCAST_PROFILE` (`debug`, `release`) picks another profile under `$CARGO_TARGET_DIR` or
/// `target/`.
pub fn bin_path(name: &str) -> PathBuf {
    if let Ok(profile) = std::env::var("FLEETCAST_PROFILE") {
        let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| workspace_root().join("target"));
        return target.join(profile).join(name);
    }
    let profile_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().filter(|d| d.ends_with("deps")).and_then(Path::parent).map(Path::to_path_buf));
    profile_dir.unwrap_or_else(|| workspace_root().join("target/debug")).join(name)
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// A running nats-server; killed (and its store removed) on drop.
pub struct NatsServer {
    child: Child,
    port: u16,
    store: PathBuf,
    _dir: Option<tempfile::TempDir>,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
}

impl NatsServer {
    /// Starts a server with JetStream on a free port and a fresh temp store.
    pub fn start() -> anyhow::Result<NatsServer> {
        Self::start_with(&[])
    }

    /// Like [`start`](Self::start) with extra command-line args (e.g. `--max_payload`).
    pub fn start_with(extra: &[&str]) -> anyhow::Result<NatsServer> {
        let dir = tempfile::tempdir()?;
        let store = dir.path().join("js");
        let extra_args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let port = free_port();
        let child = spawn(port, &store, &extra_args, &[])?;
        let server = NatsServer { child, port, store, _dir: Some(dir), extra_args, env: vec![] };
        server.wait_ready()?;
        Ok(server)
    }

    /// Starts a server from configuration text (e.g. the project's `deploy/nats-auth.conf`),
    /// with `env` set for its `$VARIABLE` references; port and store still come from the harness.
    pub fn start_with_config(conf: &str, env: &[(&str, &str)]) -> anyhow::Result<NatsServer> {
        let dir = tempfile::tempdir()?;
        let store = dir.path().join("js");
        let conf_path = dir.path().join("nats.conf");
        std::fs::write(&conf_path, conf)?;
        let extra_args = vec!["-c".to_string(), conf_path.display().to_string()];
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let port = free_port();
        let child = spawn(port, &store, &extra_args, &env)?;
        let server = NatsServer { child, port, store, _dir: Some(dir), extra_args, env };
        server.wait_ready()?;
        Ok(server)
    }

    /// The URL with a user's credentials in it.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (to read its CPU time and memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's log file (its stderr), kept next to the store until the server is dropped.
    pub fn log_path(&self) -> PathBuf {
        server_log_path(&self.store)
    }

    /// The last `lines` lines of the server's log, for error reports.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        Ok(async_nats::connect(self.url()).await?)
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and store: JetStream
    /// state on disk survives, as after a crash.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.child = spawn(self.port, &self.store, &self.extra_args, &self.env)?;
        self.wait_ready()
    }

    /// Stops the server without restarting it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        bail!("nats-server did not listen on port {} within 15 s", self.port)
    }
}

fn spawn(port: u16, store: &Path, extra: &[String], env: &[(String, String)]) -> anyhow::Result<Child> {
    let bin = nats_server_bin();
    // The server's own log (slow consumers, refused payloads, route changes) is kept next to
    // its store, appended across restarts, so a failing test or bench can show it.
    let log = std::fs::OpenOptions::new().create(true).append(true).open(server_log_path(store))?;
    // Command-line flags override the configuration file's listen address and store.
    Command::new(&bin)
        .args(extra)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {} (run deploy/bootstrap.sh to install it)", bin.display()))
}

fn server_log_path(store: &Path) -> PathBuf {
    store.with_extension("log")
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
