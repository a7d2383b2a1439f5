//! Dashboard benchmark with a 1,000-server snapshot (harness = false; prints a table).
//!
//! `cargo bench -p dashboard` (needs nats-server, as the tests do). Measures:
//! - overview fragment render (view build + askama), and the same through the router;
//! - server view render;
//! - every page's bytes, raw / gzip / br;
//! - 200 simultaneous SSE clients against a real nats-server: time from publishing a
//!   snapshot (20 parts) to each client's `snapshot` event, and to each client having
//!   re-fetched its overview fragment (what a browser tab does on that event);
//! - the server view over HTTP with its KV `forecasts` read (real nats-server);
//! - a 100,000-server summary snapshot (`BIG`): its bytes, encode and decode time, and the
//!   overview and alerts renders over it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use dashboard::fixture::{self, Spec};
use dashboard::testing::SseClient;
use dashboard::views;
use dashboard::{AppState, Args};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tower::ServiceExt;

const SERVERS: usize = 1_000;
const CLIENTS: usize = 200;
/// The fleet of the summary-snapshot measurements (issue 14: under 15 MB at 100,000 servers).
const BIG: usize = 100_000;

struct Stats {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    Stats { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: *v.last().unwrap() }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn row(what: &str, s: &Stats, target: &str, ok: bool) {
    println!("| {what} | {} | {} | {} | {} | {target} | {} |", ms(s.p50), ms(s.p90), ms(s.p99), ms(s.max), if ok { "yes" } else { "NO" });
}

/// CPU time of this thread: unlike wall time it leaves out the time the thread was
/// preempted, which on a busy 2-core machine dominates the tail of wall-clock timings.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_THREAD_CPUTIME_ID is valid on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f` `n` times; returns (wall times, thread CPU times).
fn time_n(n: usize, mut f: impl FnMut()) -> (Vec<Duration>, Vec<Duration>) {
    (0..n)
        .map(|_| {
            let (t, c) = (Instant::now(), thread_cpu());
            f();
            (t.elapsed(), thread_cpu() - c)
        })
        .unzip()
}

async fn get(app: &axum::Router, path: &str, headers: &[(&str, &str)]) -> (usize, Duration) {
    let mut req = Request::builder().uri(path).header("host", "127.0.0.1");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let t = Instant::now();
    let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20).await.unwrap();
    (bytes.len(), t.elapsed())
}

/// One keep-alive HTTP/1.1 GET of the fragment at `path`, body read by Content-Length.
async fn fetch_fragment(conn: &mut BufReader<TcpStream>, addr: SocketAddr, path: &str) -> usize {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nHX-Request: true\r\n\r\n");
    conn.get_mut().write_all(req.as_bytes()).await.unwrap();
    let mut len = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        conn.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).await.unwrap();
    len
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "Dashboard benchmark, {SERVERS} servers ({cores} cores, load average {})\n",
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    let spec = Spec { servers: SERVERS, seq: 1, warming: 20, ..Default::default() };
    let state = AppState::new(Args::for_tests("nats://127.0.0.1:1"));
    let forecasts = fixture::forecasts(&spec);
    state.publish(fixture::snapshot_of(&spec, &forecasts));
    state.forecasts.set_fixture(forecasts.clone());
    {
        let mut h = state.history.write().unwrap();
        for t in fixture::ticks(&spec, 7 * 288) {
            h.push_tick(t).unwrap();
        }
    }
    let latest = state.latest().unwrap();
    let q = views::overview::OverviewQuery::default();

    println!("| measure | p50 | p90 | p99 | max | target | met |");
    println!("|---|---|---|---|---|---|---|");
    let (wall, cpu) = time_n(3000, || {
        let html = views::render(&views::overview::build(Some(&latest), &q));
        std::hint::black_box(html);
    });
    let (overview, overview_cpu) = (stats(wall), stats(cpu));
    row("overview fragment render (build + askama), wall", &overview, "p99 < 5 ms", overview.p99 < Duration::from_millis(5));
    row("overview fragment render, thread CPU time", &overview_cpu, "p99 < 5 ms", overview_cpu.p99 < Duration::from_millis(5));
    let worst = latest.riskiest().next().unwrap();
    let worst_fc = forecasts.iter().find(|f| f.server == worst.server).unwrap();
    let (wall, cpu) = time_n(3000, || {
        let html = views::render(&views::server::build(&latest, worst_fc));
        std::hint::black_box(html);
    });
    let (server, server_cpu) = (stats(wall), stats(cpu));
    row("server view render (riskiest server), wall", &server, "p99 < 2 ms", server.p99 < Duration::from_millis(2));
    row("server view render, thread CPU time", &server_cpu, "p99 < 2 ms", server_cpu.p99 < Duration::from_millis(2));
    let (wall, cpu) = time_n(500, || {
        std::hint::black_box(views::render(&views::heatmap::build(Some(&latest), views::heatmap::By::Risk)));
    });
    row("heatmap fragment render, wall", &stats(wall), "—", true);
    row("heatmap fragment render, thread CPU time", &stats(cpu), "—", true);

    let app = dashboard::routes::router(state.clone());
    let mut via = Vec::new();
    for _ in 0..2000 {
        via.push(get(&app, "/", &[("hx-request", "true")]).await.1);
    }
    let via = stats(via);
    row("overview fragment via router (auth + headers)", &via, "p99 < 5 ms", via.p99 < Duration::from_millis(5));
    let mut hist = Vec::new();
    for _ in 0..10 {
        hist.push(get(&app, "/history?range=7d", &[("hx-request", "true")]).await.1);
    }
    row("history fragment, 7 days x 1,000 servers (polars)", &stats(hist), "—", true);

    println!("\n| page | raw | gzip | br | target (compressed) | met |");
    println!("|---|---|---|---|---|---|");
    let server_url = dashboard::format::server_url(&worst.server);
    for path in [
        "/",
        "/heatmap",
        "/heatmap?by=cpu",
        server_url.as_str(),
        "/alerts",
        "/history?range=7d",
        "/cost",
        "/remediation",
        "/model",
        "/demo",
    ] {
        let (raw, _) = get(&app, path, &[]).await;
        let (gz, _) = get(&app, path, &[("accept-encoding", "gzip")]).await;
        let (br, _) = get(&app, path, &[("accept-encoding", "br")]).await;
        let ok = gz < 200_000 && br < 200_000;
        println!(
            "| `{path}` | {:.1} KB | {:.1} KB | {:.1} KB | < 200 KB | {} |",
            raw as f64 / 1e3,
            gz as f64 / 1e3,
            br as f64 / 1e3,
            if ok { "yes" } else { "NO" }
        );
    }

    // 200 SSE clients against a real broker.
    let nats = testkit::NatsServer::start().expect("nats-server (run deploy/bootstrap.sh)");
    let client = nats.connect().await.unwrap();
    let mut args = Args::for_tests(&nats.url());
    args.generator_probe = Duration::from_secs(3600);
    let running = dashboard::start(args).await.unwrap();
    while running.state.health().link != dashboard::state::Link::Connected {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Pre-encode the snapshots so encoding is not timed.
    let rounds = 5;
    let encoded: Vec<Vec<Vec<u8>>> = (0..rounds)
        .map(|r| {
            let s = fixture::snapshot(&Spec { seq: 10 + r as u64, ..spec.clone() });
            fixture::split(&s, 20).iter().map(|p| schemas::encode(p).unwrap()).collect()
        })
        .collect();
    let addr = running.addr;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut sse = SseClient::connect(addr, None).await.unwrap();
        sse.next_named("status", Duration::from_secs(5)).await.expect("initial status");
        let conn = BufReader::new(TcpStream::connect(addr).await.unwrap());
        clients.push((sse, conn));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut to_event, mut to_fragment, mut install_to_event) = (Vec::new(), Vec::new(), Vec::new());
    for parts in &encoded {
        // Every client waits for the event, then re-fetches its fragment, all concurrently.
        let tasks: Vec<_> = clients
            .drain(..)
            .map(|(mut sse, mut conn)| {
                tokio::spawn(async move {
                    let got = sse.next_named("snapshot", Duration::from_secs(10)).await;
                    let (at_event, at_event_wall) = (Instant::now(), std::time::SystemTime::now());
                    assert!(got.is_some(), "a client missed the snapshot event");
                    fetch_fragment(&mut conn, addr, "/").await;
                    (sse, conn, at_event, at_event_wall, Instant::now())
                })
            })
            .collect();
        let t0 = Instant::now();
        for p in parts {
            client.publish(schemas::subjects::PREDICTIONS_CURRENT, p.clone().into()).await.unwrap();
        }
        client.flush().await.unwrap();
        for t in tasks {
            let (sse, conn, at_event, at_event_wall, done) = t.await.unwrap();
            to_event.push(at_event - t0);
            to_fragment.push(done - t0);
            let installed = running.state.latest().unwrap().received;
            install_to_event.push(at_event_wall.duration_since(installed).unwrap_or_default());
            clients.push((sse, conn));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("\n| {CLIENTS} SSE clients, {rounds} snapshots of {SERVERS} servers (20 parts, real nats-server) | p50 | p90 | p99 | max | target | met |");
    println!("|---|---|---|---|---|---|---|");
    let e = stats(to_event);
    row("publish first part -> `snapshot` event at every client", &e, "< 500 ms", e.max < Duration::from_millis(500));
    let i = stats(install_to_event);
    row("snapshot installed -> event at every client", &i, "—", true);
    let f = stats(to_fragment);
    row("publish -> every client re-fetched its overview fragment", &f, "< 500 ms", f.max < Duration::from_millis(500));
    println!("\nopen SSE streams at the end: {}", running.state.sse_clients.load(std::sync::atomic::Ordering::Relaxed));

    // The server view as a browser gets it: over HTTP, with its one KV `forecasts` get.
    let js = async_nats::jetstream::new(client.clone());
    let kv = js.create_key_value(async_nats::jetstream::kv::Config { bucket: "forecasts".into(), history: 1, ..Default::default() });
    let kv = kv.await.unwrap();
    for f in &forecasts {
        kv.put(&f.server, schemas::encode(f).unwrap().into()).await.unwrap();
    }
    let mut conn = clients.pop().unwrap().1;
    let mut views_kv = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        assert!(fetch_fragment(&mut conn, addr, &server_url).await > 10_000, "the server view with its charts");
        views_kv.push(t.elapsed());
    }
    println!("\n| server view over HTTP, KV read included (real nats-server) | p50 | p90 | p99 | max | target | met |");
    println!("|---|---|---|---|---|---|---|");
    let v = stats(views_kv);
    row("GET /servers/<riskiest> (fragment): KV get + decode + render", &v, "p99 < 10 ms", v.p99 < Duration::from_millis(10));
    running.stop().await;
    big_snapshot(&spec);
}

/// The summary snapshot at [`BIG`] servers: what one predictor publishes per tick and the
/// dashboard holds, and the views over it.
fn big_snapshot(spec: &Spec) {
    let spec = Spec { servers: BIG, warming: BIG / 100, ..spec.clone() };
    let snap = fixture::snapshot(&spec);
    let (mut enc, mut bytes) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        bytes = schemas::encode(&snap).unwrap();
        enc.push(t.elapsed());
    }
    let mut dec = Vec::new();
    let mut back = None;
    for _ in 0..5 {
        let t = Instant::now();
        back = Some(schemas::decode::<schemas::Snapshot>(&bytes).unwrap());
        dec.push(t.elapsed());
    }
    let t = Instant::now();
    let latest = dashboard::state::Latest::new(back.unwrap(), std::time::SystemTime::now(), 1);
    let index = t.elapsed();
    let per = bytes.len() as f64 / BIG as f64;
    println!("\n| {BIG} servers, summary snapshot | value | target | met |");
    println!("|---|---|---|---|");
    println!(
        "| snapshot size | {:.2} MB ({per:.1} B/server) | < 15 MB | {} |",
        bytes.len() as f64 / 1e6,
        if bytes.len() < 15_000_000 { "yes" } else { "NO" }
    );
    println!("| encode (every summary and the frame), p50 of 5 | {} | — | — |", ms(stats(enc).p50));
    println!("| decode, p50 of 5 | {} | — | — |", ms(stats(dec).p50));
    println!("| dashboard index (by name, by risk) | {} | — | — |", ms(index));
    println!("\n| {BIG} servers, dashboard renders | p50 | p90 | p99 | max | target | met |");
    println!("|---|---|---|---|---|---|---|");
    let q = views::overview::OverviewQuery::default();
    let (wall, cpu) = time_n(500, || std::hint::black_box(views::render(&views::overview::build(Some(&latest), &q))).clear());
    let (o, oc) = (stats(wall), stats(cpu));
    row("overview fragment render, wall", &o, "p99 < 5 ms", o.p99 < Duration::from_millis(5));
    row("overview fragment render, thread CPU time", &oc, "p99 < 5 ms", oc.p99 < Duration::from_millis(5));
    let aq = views::alerts::AlertsQuery::default();
    let (wall, _) = time_n(50, || std::hint::black_box(views::render(&views::alerts::build(Some(&latest), &aq, &[]))).clear());
    row("alerts fragment render (first 500 of every alert)", &stats(wall), "—", true);
}
