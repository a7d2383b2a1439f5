//! The broker exactly as `just up` starts it (`deploy/up.sh`: `nats-server -c nats.conf` from the
//! repository root, with the `FLEETCAST_*_PASSWORD` variables in its environment): the
//! repository's own `nats.conf` and, through its `include`, `deploy/nats-auth.conf`, read from
//! the files themselves, not from a copy. Only what would collide with `just up` or another
//! test changes: the listen port and the monitoring port (command-line flags), the JetStream
//! store (the server runs in a temp dir, where `store_dir: "var/nats"` then lands) and, to force
//! snapshots into parts, `max_payload` (an override file that includes `nats.conf` and sets it
//! after the include, where the later value wins).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::USERS;

/// A nats-server on the repository's `nats.conf`; killed on drop.
pub struct ProductionBroker {
    child: Child,
    port: u16,
    monitor_port: u16,
    dir: tempfile::TempDir,
}

impl ProductionBroker {
    /// Starts the broker with `max_payload` bytes as its message limit and the test passwords
    /// of [`USERS`] in its environment, as `deploy/up.sh` exports `var/secrets.env`.
    pub fn start(max_payload: usize) -> anyhow::Result<ProductionBroker> {
        let dir = tempfile::tempdir()?;
        let root = testkit::workspace_root();
        anyhow::ensure!(root.join("nats.conf").exists(), "no nats.conf in {}", root.display());
        // nats-server resolves an include against the including file's directory and joins even
        // an absolute path onto it, so the repository is reached through a link beside the file.
        std::os::unix::fs::symlink(&root, dir.path().join("repo"))?;
        let conf = dir.path().join("production.conf");
        std::fs::write(
            &conf,
            format!("# The repository's nats.conf (and deploy/nats-auth.conf), as `just up` runs it.\ninclude \"repo/nats.conf\"\nmax_payload: {max_payload}\n"),
        )?;
        let (port, monitor_port) = (testkit::free_port(), testkit::free_port());
        let log = std::fs::File::create(dir.path().join("nats.log"))?;
        let bin = testkit::nats_server_bin();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-m", &monitor_port.to_string()])
            .envs(USERS.iter().map(|(var, _, pw)| (*var, *pw)))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} (run deploy/bootstrap.sh to install it)", bin.display()))?;
        let mut broker = ProductionBroker { child, port, monitor_port, dir };
        broker.wait_ready()?;
        Ok(broker)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("nats-server exited ({status}):\n{}", self.log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        bail!("nats-server did not listen on port {} within 15 s:\n{}", self.port, self.log())
    }

    /// The server's own log (what it read, where it stores).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// Where `store_dir: "var/nats"` of `nats.conf` landed.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("var/nats")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The monitoring endpoint's port (`http:` of `nats.conf`, moved off 8222).
    pub fn monitor_port(&self) -> u16 {
        self.monitor_port
    }

    /// The URL a service of `deploy/nats-auth.conf` connects with, as `deploy/up.sh` builds it.
    pub fn url_for(&self, user: &str) -> String {
        let pw = USERS.iter().find(|(_, u, _)| *u == user).map(|(_, _, p)| *p).unwrap_or("");
        format!("nats://{user}:{pw}@127.0.0.1:{}", self.port)
    }

    /// A client connected as `user` (connected on return, unlike `fleetbus::connect`, which
    /// retries in the background, so `server_info` is the broker's).
    pub async fn connect_as(&self, user: &str) -> anyhow::Result<async_nats::Client> {
        let pw = USERS.iter().find(|(_, u, _)| *u == user).map(|(_, _, p)| *p).unwrap_or("");
        let opts = async_nats::ConnectOptions::with_user_and_password(user.into(), pw.into());
        Ok(opts.connect(self.url()).await?)
    }

    /// The URL without credentials.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for ProductionBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
