//! The dashboard under faults, with the real binaries: stuck clients (browser tabs that stopped
//! reading: an open event stream, and a page connection whose buffers to the dashboard are
//! full) neither slow the pipeline nor starve a live client of the event stream, and with NATS
//! gone the pages still render the last snapshot under a "Stale since" banner.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{all_forecast, NatsServer, Service, SnapshotWatch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const SERVERS: usize = 20;
/// Stuck tabs: each an event stream and a page connection, neither ever read.
const STUCK: usize = 100;
/// Bytes of pages asked for on each stuck page connection: several times what its buffers
/// hold (a few tens of KB with the small segments and receive buffer below).
const STUCK_PAGE_BYTES: usize = 128 * 1024;
/// Generous: a live client learns of every snapshot within this, on a shared 2-core machine.
const LIVE_DEADLINE: Duration = Duration::from_secs(5);

async fn get(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await??;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn healthz(body: &str) -> Option<serde_json::Value> {
    let json = body.split("\r\n\r\n").nth(1)?;
    let json = json.trim_start_matches(|c: char| c.is_ascii_hexdigit() || c == '\r' || c == '\n');
    serde_json::from_str(json.trim_end_matches(|c: char| c != '}')).ok()
}

async fn health(addr: &str) -> anyhow::Result<serde_json::Value> {
    healthz(&get(addr, "/healthz").await?).ok_or_else(|| anyhow::anyhow!("/healthz is not JSON"))
}

extern "C" {
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const std::ffi::c_void, len: u32) -> i32;
}

/// A connection whose buffers fill fast: a 1 KiB receive buffer and the smallest segment size
/// Linux allows (TCP_MAXSEG 88), which also keeps the dashboard's send buffer for it small.
async fn stuck_connection(addr: &str) -> anyhow::Result<TcpStream> {
    const IPPROTO_TCP: i32 = 6;
    const TCP_MAXSEG: i32 = 2;
    let sock = TcpSocket::new_v4()?;
    sock.set_recv_buffer_size(1024)?;
    let mss: i32 = 88;
    // SAFETY: a valid socket and a pointer to an i32 of the length given.
    let rc = unsafe { setsockopt(sock.as_raw_fd(), IPPROTO_TCP, TCP_MAXSEG, (&mss as *const i32).cast(), 4) };
    anyhow::ensure!(rc == 0, "TCP_MAXSEG: {}", std::io::Error::last_os_error());
    Ok(sock.connect(addr.parse()?).await?)
}

/// `(tx_queue, rx_queue)` of every loopback TCP connection by (local port, remote port).
fn tcp_queues() -> anyhow::Result<HashMap<(u16, u16), (u64, u64)>> {
    let text = std::fs::read_to_string("/proc/net/tcp")?;
    let port = |a: &str| a.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
    let mut out = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 {
            continue;
        }
        let (Some(local), Some(remote)) = (port(f[1]), port(f[2])) else { continue };
        let Some((tx, rx)) = f[4].split_once(':') else { continue };
        out.insert((local, remote), (u64::from_str_radix(tx, 16)?, u64::from_str_radix(rx, 16)?));
    }
    Ok(out)
}

/// One `snapshot` event as a live client of `/events` got it: when, the update counter it
/// carried, and the snapshot number `/healthz` showed right after (as htmx re-fetches the view).
#[derive(Debug, Clone, Copy)]
struct Seen {
    at: Instant,
    update: u64,
    seq: u64,
}

/// A live client of the dashboard's event stream (HTTP/1.1, chunked), recording every
/// `snapshot` event it reads.
async fn live_client(addr: String, seen: Arc<Mutex<Vec<Seen>>>) -> anyhow::Result<()> {
    let mut s = TcpStream::connect(&addr).await?;
    s.write_all(format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n").as_bytes()).await?;
    let (mut raw, mut body, mut text) = (Vec::<u8>::new(), false, String::new());
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "the event stream ended");
        raw.extend_from_slice(&buf[..n]);
        if !body {
            let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
            anyhow::ensure!(head.starts_with("http/1.1 200") && head.contains("transfer-encoding: chunked"), "{head}");
            raw.drain(..end + 4);
            body = true;
        }
        // De-chunk what is complete.
        while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&raw[..eol])?.trim(), 16)?;
            if raw.len() < eol + 2 + size + 2 {
                break;
            }
            text.push_str(std::str::from_utf8(&raw[eol + 2..eol + 2 + size])?);
            raw.drain(..eol + 2 + size + 2);
        }
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            let at = Instant::now();
            let name = event.lines().find_map(|l| l.strip_prefix("event:")).map(str::trim);
            if name == Some("snapshot") {
                let update = event.lines().find_map(|l| l.strip_prefix("data:")).and_then(|d| d.trim().parse().ok()).unwrap_or(0);
                let seq = health(&addr).await?["snapshot"].as_u64().unwrap_or(0);
                seen.lock().unwrap().push(Seen { at, update, seq });
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_clients_and_a_lost_broker() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut nats = NatsServer::start()?;
    let url = nats.url();
    let env = [("NATS_URL", url.as_str())];
    let _predictor = Service::start(dir.path(), "predictor", &[], &env).await?;
    let n = SERVERS.to_string();
    let _generator = Service::start(dir.path(), "generator", &["--servers", &n, "--tick", "300ms", "--seed", "3"], &env).await?;
    let port = testkit::free_port();
    let addr = format!("127.0.0.1:{port}");
    let _dashboard = Service::start(dir.path(), "dashboard", &["--listen", &addr], &env).await?;
    let client = nats.connect().await?;
    let mut watch = SnapshotWatch::new(&client).await?;
    watch.until(Duration::from_secs(60), |s| all_forecast(s, SERVERS)).await?;
    let page = get(&addr, "/").await?;
    anyhow::ensure!(page.starts_with("HTTP/1.1 200"), "{}", &page[..page.len().min(200)]);
    let per_page = page.len().max(1);
    let pages = STUCK_PAGE_BYTES.div_ceil(per_page).clamp(2, 200);

    // Stuck tabs: an event stream and a page connection asking for `pages` overview pages,
    // pipelined; neither is ever read.
    let mut stuck = Vec::new();
    let mut page_ports = Vec::new();
    for _ in 0..STUCK {
        let mut events = stuck_connection(&addr).await?;
        events.write_all(format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n").as_bytes()).await?;
        let mut fetches = stuck_connection(&addr).await?;
        fetches.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").repeat(pages).as_bytes()).await?;
        page_ports.push(fetches.local_addr()?.port());
        stuck.push(events);
        stuck.push(fetches);
    }
    // Their event streams are open at the dashboard, and the page connections' buffers are
    // full: the dashboard holds unsent bytes for each, its client's receive queue is not
    // empty, and what was asked for is far more than both hold.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open = health(&addr).await?["sse_clients"].as_u64().unwrap_or(0);
        let q = tcp_queues()?;
        let full = page_ports
            .iter()
            .filter(|p| {
                let (tx, _) = q.get(&(port, **p)).copied().unwrap_or_default();
                let (_, rx) = q.get(&(**p, port)).copied().unwrap_or_default();
                tx > 0 && rx > 0 && ((tx + rx) as usize) < pages * per_page / 2
            })
            .count();
        if open >= STUCK as u64 && full == STUCK {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "after 30 s: {open} event streams open, {full} of {STUCK} page connections with full buffers"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // For 8 s the pipeline keeps its pace, and a live client of the event stream learns of
    // every new snapshot within the deadline.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let live = tokio::spawn(live_client(addr.clone(), seen.clone()));
    let start = Instant::now();
    let mut published = Vec::new();
    while start.elapsed() < Duration::from_secs(8) {
        let snap = watch.next(Duration::from_secs(5)).await?;
        published.push((Instant::now(), snap.seq));
    }
    tokio::time::sleep(LIVE_DEADLINE).await;
    anyhow::ensure!(!live.is_finished(), "the live client stopped: {:?}", live.await);
    live.abort();
    let seen = seen.lock().unwrap().clone();
    anyhow::ensure!(published.len() >= 8, "only {} snapshots in 8 s", published.len());
    let mut worst = Duration::ZERO;
    for (at, seq) in &published {
        let Some(got) = seen.iter().find(|s| s.seq >= *seq) else {
            anyhow::bail!("snapshot {seq} never reached the live client; it saw {:?}", seen.iter().map(|s| s.seq).collect::<Vec<_>>());
        };
        let late = got.at.saturating_duration_since(*at);
        assert!(late <= LIVE_DEADLINE, "snapshot {seq} reached the live client {late:?} after it was published");
        worst = worst.max(late);
    }
    let skipped = seen.windows(2).filter(|w| w[1].update != w[0].update + 1).count();
    eprintln!(
        "{} snapshots, {} events at the live client ({skipped} coalesced), worst delay {worst:?}; {STUCK} stuck tabs, {pages} pages of {per_page} bytes asked on each",
        published.len(),
        seen.len()
    );
    // The stuck ones are still there (nothing closed them), their buffers still full.
    let open = health(&addr).await?["sse_clients"].as_u64().unwrap_or(0);
    assert!(open >= STUCK as u64, "{open} event streams open");
    drop(stuck);

    // The broker goes away: pages still render the last snapshot, marked stale.
    nats.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = get(&addr, "/").await?;
        if page.starts_with("HTTP/1.1 200") && page.contains("Stale since") {
            assert!(page.contains("ppweb") || page.contains("ppml"), "the last snapshot's servers are still shown");
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "no stale banner 20 s after NATS went away");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}
