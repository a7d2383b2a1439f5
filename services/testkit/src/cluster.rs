//! A real 3-node (or n-node) nats-server cluster for fault tests: every node a `nats-server`
//! process with JetStream, routes to the others, a monitoring port and its own temp store, all
//! on free loopback ports. [`NatsCluster::kill`] SIGKILLs one node, [`NatsCluster::restart`]
//! starts it again on the same ports and store, as after a crash. Never a mock broker.
//!
//! Each node's state is read the way an operator would, from its own monitoring endpoint
//! (`/jsz`): the meta leader it sees, and its local copy of each stream (so a restarted node's
//! catch-up is checked on that node, not through the stream leader).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{free_port, nats_server_bin};

/// The cluster name in every node's configuration.
pub const CLUSTER_NAME: &str = "fleetcast-test";

struct Node {
    name: String,
    port: u16,
    cluster_port: u16,
    http_port: u16,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A node's local copy of a stream, from its `/jsz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReplica {
    pub messages: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The stream's leader as this node sees it (empty while there is none).
    pub leader: String,
}

/// A node's view of a durable consumer, from its `/jsz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerReplica {
    pub num_pending: u64,
    pub num_ack_pending: u64,
    /// The stream sequence below which everything is acknowledged.
    pub ack_floor_stream_seq: u64,
    pub delivered_stream_seq: u64,
    /// The consumer's leader as this node sees it (empty while there is none).
    pub leader: String,
}

/// A running cluster; every node is killed (and the stores removed) on drop.
pub struct NatsCluster {
    nodes: Vec<Node>,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `n` nodes (3 for R3) with JetStream and waits until they agree on a meta leader.
    pub fn start(n: usize) -> anyhow::Result<NatsCluster> {
        Self::start_with_config(n, "", &[])
    }

    /// Like [`start`](Self::start), with configuration text appended to every node's file
    /// (e.g. the project's `deploy/nats-auth.conf`) and `env` for its `$VARIABLE` references.
    /// Names, ports, routes and stores still come from the harness.
    pub fn start_with_config(n: usize, extra_conf: &str, env: &[(&str, &str)]) -> anyhow::Result<NatsCluster> {
        anyhow::ensure!(n >= 1, "a cluster needs at least one node");
        let dir = tempfile::tempdir()?;
        let mut nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                name: format!("n{}", i + 1),
                port: free_port(),
                cluster_port: free_port(),
                http_port: free_port(),
                conf: dir.path().join(format!("n{}.conf", i + 1)),
                log: dir.path().join(format!("n{}.log", i + 1)),
                child: None,
            })
            .collect();
        let routes: Vec<String> = nodes.iter().map(|n| format!("\"nats-route://127.0.0.1:{}\"", n.cluster_port)).collect();
        for node in &nodes {
            let store = dir.path().join(&node.name).join("js");
            let conf = format!(
                "server_name: \"{name}\"\n\
                 listen: \"127.0.0.1:{port}\"\n\
                 http: \"127.0.0.1:{http}\"\n\
                 jetstream {{ store_dir: \"{store}\" }}\n\
                 cluster {{\n  name: \"{CLUSTER_NAME}\"\n  listen: \"127.0.0.1:{cport}\"\n  routes: [{routes}]\n}}\n\
                 {extra_conf}\n",
                name = node.name,
                port = node.port,
                http = node.http_port,
                store = store.display(),
                cport = node.cluster_port,
                routes = routes.join(", "),
            );
            std::fs::write(&node.conf, conf)?;
        }
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        for node in &mut nodes {
            node.child = Some(spawn(node, &env)?);
        }
        let cluster = NatsCluster { nodes, env, dir };
        for i in 0..n {
            cluster.wait_listening(i)?;
        }
        cluster.wait_meta_leader(Duration::from_secs(60))?;
        Ok(cluster)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node's `server_name` (`n1`, `n2`, ...), as stream and meta leaders are named.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The index of the node called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    pub fn http_port(&self, i: usize) -> u16 {
        self.nodes[i].http_port
    }

    /// Node `i`'s process id while it runs (to read its CPU time and memory).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// The client URL of node `i`. A client connected to one node learns the others from the
    /// cluster (async-nats keeps the discovered servers) and reconnects to them by itself.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// [`url`](Self::url) with a user's credentials in it.
    pub fn url_as(&self, i: usize, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", self.nodes[i].port)
    }

    /// A plain client of node `i` (no credentials).
    pub async fn connect(&self, i: usize) -> anyhow::Result<async_nats::Client> {
        Ok(async_nats::connect(self.url(i)).await?)
    }

    /// Node `i`'s stdout and stderr so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// The directory holding the nodes' configuration files, logs and stores.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        matches!(self.nodes[i].child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGKILL node `i`: no chance to flush, step down or say goodbye to its routes.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills node `i` if it runs and starts it again on the same ports and store; returns once
    /// it listens and sees a meta leader (its streams may still be catching up: see
    /// [`stream`](Self::stream)).
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.nodes[i].child = Some(spawn(&self.nodes[i], &self.env)?);
        self.wait_listening(i)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.meta_leader(i).is_some_and(|l| !l.is_empty()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("restarted node {} sees no meta leader within 60 s:\n{}", self.nodes[i].name, tail(&self.log(i), 30))
    }

    /// Waits until every running node reports the same meta leader and the leader counts every
    /// node of the cluster as current.
    pub fn wait_meta_leader(&self, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let views: Vec<Option<String>> =
                (0..self.len()).filter(|&i| self.nodes[i].child.is_some()).map(|i| self.meta_leader(i)).collect();
            if let Some(Some(leader)) = views.first() {
                if !leader.is_empty() && views.iter().all(|v| v.as_deref() == Some(leader.as_str())) {
                    if let Some(li) = self.index_of(leader) {
                        if self.meta_peers_current(li) + 1 >= self.len() {
                            return Ok(leader.clone());
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("no agreed JetStream meta leader within {timeout:?} (views: {views:?}):\n{}", tail(&self.log(0), 30));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The JetStream meta leader as node `i` sees it (`None` when its monitoring port does not
    /// answer; empty while there is no leader).
    pub fn meta_leader(&self, i: usize) -> Option<String> {
        let jsz = self.jsz(i, "").ok()?;
        Some(jsz.pointer("/meta_cluster/leader").and_then(|v| v.as_str()).unwrap_or("").to_string())
    }

    /// On node `i` (when it leads the meta group), how many of the other peers are current.
    fn meta_peers_current(&self, i: usize) -> usize {
        let Ok(jsz) = self.jsz(i, "") else { return 0 };
        jsz.pointer("/meta_cluster/replicas")
            .and_then(|r| r.as_array())
            .map(|r| r.iter().filter(|p| p.get("current").and_then(|c| c.as_bool()) == Some(true)).count())
            .unwrap_or(0)
    }

    /// Node `i`'s `/jsz` with `query` (e.g. `streams=true&consumers=true`), as JSON.
    pub fn jsz(&self, i: usize, query: &str) -> anyhow::Result<serde_json::Value> {
        let path = if query.is_empty() { "/jsz".to_string() } else { format!("/jsz?{query}") };
        let body = http_get(self.nodes[i].http_port, &path)?;
        serde_json::from_str(&body).with_context(|| format!("/jsz of {} is not JSON", self.nodes[i].name))
    }

    /// The names of the clients connected to node `i` (from its `/connz`; Fleetcast's services
    /// name their connection after themselves).
    pub fn connections(&self, i: usize) -> anyhow::Result<Vec<String>> {
        let body = http_get(self.nodes[i].http_port, "/connz?limit=4096")?;
        let connz: serde_json::Value = serde_json::from_str(&body)?;
        Ok(connz
            .get("connections")
            .and_then(|c| c.as_array())
            .map(|cs| cs.iter().filter_map(|c| c.get("name").and_then(|n| n.as_str())).map(str::to_string).collect())
            .unwrap_or_default())
    }

    /// The index of the running node `client` (a connection name) is connected to.
    pub fn node_of(&self, client: &str) -> Option<usize> {
        (0..self.len())
            .filter(|&i| self.nodes[i].child.is_some())
            .find(|&i| self.connections(i).is_ok_and(|c| c.iter().any(|n| n == client)))
    }

    fn stream_detail(&self, i: usize, stream: &str) -> anyhow::Result<Option<serde_json::Value>> {
        let jsz = self.jsz(i, "accounts=true&streams=true&consumers=true")?;
        let accounts = jsz.get("account_details").and_then(|a| a.as_array()).cloned().unwrap_or_default();
        for account in accounts {
            for s in account.get("stream_detail").and_then(|s| s.as_array()).into_iter().flatten() {
                if s.get("name").and_then(|n| n.as_str()) == Some(stream) {
                    return Ok(Some(s.clone()));
                }
            }
        }
        Ok(None)
    }

    /// Node `i`'s own copy of `stream` (`None` when the node holds no replica of it).
    pub fn stream(&self, i: usize, stream: &str) -> anyhow::Result<Option<StreamReplica>> {
        let Some(s) = self.stream_detail(i, stream)? else { return Ok(None) };
        let n = |p: &str| s.pointer(p).and_then(|v| v.as_u64()).unwrap_or(0);
        Ok(Some(StreamReplica {
            messages: n("/state/messages"),
            first_seq: n("/state/first_seq"),
            last_seq: n("/state/last_seq"),
            leader: s.pointer("/cluster/leader").and_then(|v| v.as_str()).unwrap_or("").to_string(),
        }))
    }

    /// Node `i`'s view of the durable `consumer` on `stream` (`None` when it holds no replica).
    pub fn consumer(&self, i: usize, stream: &str, consumer: &str) -> anyhow::Result<Option<ConsumerReplica>> {
        let Some(s) = self.stream_detail(i, stream)? else { return Ok(None) };
        let found = s
            .get("consumer_detail")
            .and_then(|c| c.as_array())
            .and_then(|cs| cs.iter().find(|c| c.get("name").and_then(|n| n.as_str()) == Some(consumer)).cloned());
        Ok(found.map(|c| {
            let n = |p: &str| c.pointer(p).and_then(|v| v.as_u64()).unwrap_or(0);
            ConsumerReplica {
                num_pending: n("/num_pending"),
                num_ack_pending: n("/num_ack_pending"),
                ack_floor_stream_seq: n("/ack_floor/stream_seq"),
                delivered_stream_seq: n("/delivered/stream_seq"),
                leader: c.pointer("/cluster/leader").and_then(|v| v.as_str()).unwrap_or("").to_string(),
            }
        }))
    }

    /// The index of the node leading `stream`, as the first answering node sees it.
    pub fn stream_leader(&self, stream: &str) -> Option<usize> {
        (0..self.len())
            .filter(|&i| self.nodes[i].child.is_some())
            .find_map(|i| self.stream(i, stream).ok().flatten())
            .and_then(|s| self.index_of(&s.leader))
    }

    fn wait_listening(&self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", node.port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", node.http_port)).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        bail!("nats-server {} did not listen on ports {}/{} within 30 s:\n{}", node.name, node.port, node.http_port, tail(&self.log(i), 30))
    }
}

fn spawn(node: &Node, env: &[(String, String)]) -> anyhow::Result<Child> {
    let bin = nats_server_bin();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log)?;
    Command::new(&bin)
        .arg("-c")
        .arg(&node.conf)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {} (run deploy/bootstrap.sh to install it)", bin.display()))
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A blocking HTTP/1.0 GET on loopback (the monitoring port answers with a plain body).
fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "GET {path}: {}",
        head.lines().next().unwrap_or("")
    );
    Ok(body.to_string())
}
