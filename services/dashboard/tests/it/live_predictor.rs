//! What an operator reads in Chromium when the dashboard shows a real predictor's snapshots,
//! not the dashboard's own fixtures: nats-server with the project's users
//! (`deploy/nats-auth.conf`), the `predictor` binary with the committed model
//! (`models/tft.onnx`) and the `dashboard` binary, all as processes; the test feeds three
//! servers whose state it chose through fleetbus's publisher (the way every source publishes):
//!
//! - `ppweb0001`, calm (CPU ~20 %, nothing near a threshold): healthy;
//! - `ppweb0002`, CPU held at 98 % (web/API critical threshold 95 %): critical, with a
//!   critical predicted CPU alert;
//! - `ppweb0003`, disk filling 1 %/step toward 85/95 %: whatever the forecast makes of it.
//!
//! Then, against the snapshot whose sequence number the page itself shows (the test keeps
//! every snapshot it saw): each server's level on the overview, every predicted alert on the
//! Alerts page, and on each server's page (which the dashboard, as its least-privilege user,
//! reads from KV `forecasts`) every forecast chart's P50 line, read back from the SVG's pixels
//! through its own axis ticks, equal to the stored P50 at every step.
//!
//! The test lives with the dashboard because its subject is the dashboard (what the browser
//! shows) and the Chromium harness (`tests/cdp`) is here; the processes are started with the
//! e2e crate's helpers (`e2e::Service`, `e2e::SnapshotWatch`), which spawn the workspace's
//! binaries by path, so nothing of the predictor's internals is linked in. The `predictor`
//! binary comes from `cargo build --workspace` / `just test`; the test fails if it is missing.

use crate::cdp;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cdp::{Browser, Page};
use e2e::{auth_server, url_for, Service, SnapshotWatch};
use schemas::{Level, MetricRecord, Metrics, Snapshot, Target, STEP_MS};
use serde_json::Value;

const CALM: &str = "ppweb0001";
const HOT: &str = "ppweb0002";
const FILLING: &str = "ppweb0003";
/// Steps fed per server: past the model's 12-step minimum history, inside its 48-step encoder.
const STEPS: i64 = 24;
/// Bound on anything the stack does once it has its input (a loaded 2-core box included).
const WAIT: Duration = Duration::from_secs(60);

/// Server `name`'s metrics at step `s` (0-based): small deterministic wiggles so no series
/// is constant, and the one thing each server is about.
fn metrics(name: &str, s: i64) -> Metrics {
    let wiggle = ((s as f32) * 0.7).sin();
    let idle = match name {
        HOT => 2.0 + 0.3 * wiggle,
        _ => 80.0 + 2.0 * wiggle,
    };
    let busy = 100.0 - idle;
    let disk = match name {
        FILLING => 60.0 + s as f32,
        _ => 50.0 + 0.1 * wiggle,
    };
    Metrics {
        cpu_user_pct: Some(busy * 0.8),
        cpu_sys_pct: Some(busy * 0.15),
        cpu_iowait_pct: Some(busy * 0.05),
        cpu_idle_pct: Some(idle),
        java_cpu_pct: Some(busy * 0.5),
        mem_used_pct: Some(45.0 + 2.0 * wiggle),
        swap_used_pct: Some(0.0),
        disk_usage_pct: Some(disk),
        net_in_mb_s: Some(5.0 + wiggle),
        net_out_mb_s: Some(3.0 + 0.5 * wiggle),
        back_close_wait: Some(1.0),
        front_close_wait: Some(1.0),
        load_average: Some(1.5 + 0.2 * wiggle),
        uptime_days: Some(30.0),
    }
}

/// Every whole snapshot seen on `predictions.current`, by sequence number.
type Seen = Arc<Mutex<HashMap<u64, Snapshot>>>;

/// The snapshot numbered `seq`; the page may show it a moment before the watcher has it.
async fn seen_snapshot(seen: &Seen, seq: u64) -> Snapshot {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(s) = seen.lock().unwrap().get(&seq) {
            return s.clone();
        }
        assert!(Instant::now() < deadline, "the page shows snapshot {seq}, which never reached the test's subscription");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Navigates and waits until the page shows a snapshot at least as new as `seq`.
async fn open(page: &Page<'_>, url: &str, seq: u64) {
    page.navigate(url).await.unwrap();
    let cond = format!("!!document.getElementById('seq') && Number(document.getElementById('seq').textContent) >= {seq}");
    page.wait_for(&cond, WAIT).await.unwrap_or_else(|e| panic!("{url}: {e}"));
}

/// The page's snapshot number, read in the same evaluation as what it is compared with.
fn seq_of(v: &Value) -> u64 {
    v["seq"].as_str().and_then(|s| s.trim().parse().ok()).unwrap_or_else(|| panic!("no snapshot number in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_reads_a_real_predictors_snapshot() {
    if cdp::skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let nats = auth_server().unwrap();
    let admin = fleetbus::connect("test", &url_for(&nats, "admin")).await.unwrap();
    let mut watch = SnapshotWatch::new(&admin).await.unwrap();
    admin.flush().await.unwrap();
    let env = |user: &str| [("NATS_URL", url_for(&nats, user))];
    let _predictor = Service::start(dir.path(), "predictor", &["--model", "models/tft.onnx"], &env("predictor")).await.unwrap();
    let listen = format!("127.0.0.1:{}", testkit::free_port());
    let dashboard = Service::start(dir.path(), "dashboard", &["--listen", &listen], &env("dashboard")).await.unwrap();

    // Feed 24 steps of 5 min, ending 4 h ago, one tick per step as the generator sends them
    // (records stamped at the step start, the tick's clock at its end, which closes the step).
    let source = fleetbus::connect("test-source", &url_for(&nats, "generator")).await.unwrap();
    let mut publisher = fleetbus::publish::Publisher::new(source, "live", "live-predictor-test");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let t0 = now_ms - now_ms.rem_euclid(STEP_MS) - 6 * 3_600_000;
    for s in 0..STEPS {
        let at = t0 + s * STEP_MS;
        let records = [CALM, HOT, FILLING]
            .iter()
            .map(|n| MetricRecord { server: n.to_string(), ts_ms: at, profile: None, metrics: metrics(n, s) })
            .collect();
        tokio::time::timeout(WAIT, publisher.publish(s as u64 + 1, at + STEP_MS, records, std::future::pending()))
            .await
            .expect("METRICS acknowledged the tick")
            .unwrap();
    }
    let last = t0 + (STEPS - 1) * STEP_MS;
    let target = watch
        .until(WAIT * 2, |s| s.tick_ms == last && s.servers.len() == 3 && s.servers.iter().all(|x| x.forecast_count() == Target::ALL.len()))
        .await
        .unwrap();
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(testkit::workspace_root().join("models/tft.json")).unwrap()).unwrap();
    assert_eq!(target.model.version, manifest["version"].as_str().unwrap(), "the committed model made the forecasts");
    let seen: Seen = Arc::new(Mutex::new(HashMap::from([(target.seq, target.clone())])));
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok(s) = watch.next(Duration::from_secs(3600)).await {
            s2.lock().unwrap().insert(s.seq, s);
        }
    });

    // What the feed was built to produce, checked on the predictor's output before the
    // dashboard is asked about it (a failure here is about the feed or the predictor).
    let level = |name: &str| target.servers.iter().find(|s| s.server == name).map(|s| s.level);
    assert_eq!(level(CALM), Some(Level::Healthy), "calm server");
    assert_eq!(level(HOT), Some(Level::Critical), "CPU held at 98 % on a web server");
    let hot = target.servers.iter().find(|s| s.server == HOT).unwrap();
    assert!(
        hot.alerts.iter().any(|a| a.target == Target::Cpu && a.severity == Level::Critical),
        "a critical CPU alert on {HOT}: {:?}",
        hot.alerts
    );

    let browser = Browser::launch().await.unwrap();
    let page = browser.new_page().await.unwrap();
    let base = format!("http://{listen}");

    // Overview: every server's level as the snapshot the page shows has it.
    open(&page, &format!("{base}/"), target.seq).await;
    let overview = page
        .eval(
            "({ seq: document.getElementById('seq').textContent, rows: [...document.querySelectorAll('#riskiest tbody tr')]
                .map(tr => ({ name: (tr.querySelector('td a') || {}).textContent, href: (tr.querySelector('td a') || {}).href,
                              label: (tr.querySelector('.lv') || {}).textContent, class: (tr.querySelector('.lv') || {}).className }))
                .filter(r => r.name) })",
        )
        .await
        .unwrap();
    let snap = seen_snapshot(&seen, seq_of(&overview)).await;
    let rows = overview["rows"].as_array().unwrap();
    assert_eq!(rows.len(), snap.servers.len(), "one row per server: {overview}");
    let mut hrefs = HashMap::new();
    for s in &snap.servers {
        let row =
            rows.iter().find(|r| r["name"] == s.server.as_str()).unwrap_or_else(|| panic!("{} not on the overview: {overview}", s.server));
        let label = row["label"].as_str().unwrap_or("").trim().to_lowercase();
        assert_eq!(label, s.level.name(), "{}'s level on the overview", s.server);
        assert!(row["class"].as_str().unwrap_or("").split(' ').any(|c| c == format!("lv-{}", s.level.name())), "{row}");
        hrefs.insert(s.server.clone(), row["href"].as_str().unwrap().to_string());
    }

    // Alerts: every predicted alert of the snapshot, with its severity and target.
    open(&page, &format!("{base}/alerts"), target.seq).await;
    let alerts = page
        .eval(
            "({ seq: document.getElementById('seq').textContent, count: document.getElementById('alert-count').textContent,
                rows: [...document.querySelectorAll('#alerts tbody tr')].filter(tr => tr.cells.length > 4)
                .map(tr => [...tr.cells].map(c => c.textContent.trim())) })",
        )
        .await
        .unwrap();
    let snap = seen_snapshot(&seen, seq_of(&alerts)).await;
    let want: Vec<_> = snap.servers.iter().flat_map(|s| s.alerts.iter().map(move |a| (s, a))).collect();
    assert!(!want.is_empty());
    assert_eq!(alerts["count"].as_str().unwrap().trim(), want.len().to_string(), "{alerts}");
    let rows = alerts["rows"].as_array().unwrap();
    assert_eq!(rows.len(), want.len(), "{alerts}");
    for (s, a) in want {
        let shown = rows.iter().any(|r| {
            r[0].as_str().unwrap_or("").to_lowercase() == a.severity.name() && r[1] == s.server.as_str() && r[3] == a.target.label()
        });
        assert!(shown, "{} {:?} {:?} not on the Alerts page: {alerts}", s.server, a.target, a.severity);
    }

    // Each server's page, reached through its overview link: its level, and every target's
    // chart with a visible P50 line whose points are the P50 the predictor stored in KV
    // `forecasts` (the page reads it there; no tick follows the last step, so it stays put).
    let forecasts = fleetbus::forecasts::of_snapshot(&admin, &target).await.unwrap();
    let mut points = 0;
    for name in [CALM, HOT, FILLING] {
        open(&page, &hrefs[name], target.seq).await;
        let v = page.eval(SERVER_PAGE).await.unwrap();
        let snap = seen_snapshot(&seen, seq_of(&v)).await;
        let s = snap.servers.iter().find(|s| s.server == name).unwrap();
        assert_eq!(v["name"].as_str().unwrap().trim(), name);
        assert_eq!(v["level"].as_str().unwrap().trim().to_lowercase(), s.level.name(), "{name}'s level on its page");
        for t in Target::ALL {
            let fc = forecasts.iter().find(|f| f.server == name).and_then(|f| f.forecast_of(t)).unwrap();
            let chart = &v["charts"][format!("chart-{}", t.name())];
            assert!(chart["width"].as_f64().unwrap_or(0.0) > 100.0, "{name} {t:?}: P50 line drawn across the chart: {chart}");
            let read = chart_p50(chart).unwrap_or_else(|e| panic!("{name} {t:?}: {e}: {chart}"));
            assert_eq!(read.values.len(), fc.p50.len(), "{name} {t:?}: one point per forecast step");
            for (k, (got, want)) in read.values.iter().zip(&fc.p50).enumerate() {
                let tol = read.per_px * 2.0 + 0.1 + 1e-3 * want.abs();
                assert!((got - want).abs() <= tol, "{name} {t:?} step {}: chart shows {got}, snapshot P50 {want} (± {tol})", k + 1);
                points += 1;
            }
        }
    }
    let levels: Vec<_> = target.servers.iter().map(|s| format!("{} {} ({} alerts)", s.server, s.level.name(), s.alerts.len())).collect();
    eprintln!("snapshot {}: {}; {points} chart points read back", target.seq, levels.join(", "));

    let csp = page.csp_violations().await.unwrap();
    assert!(csp.is_empty(), "CSP violations {csp:?}");
    drop(browser);
    let log = dashboard.log_text();
    assert!(!log.contains("panicked"), "the dashboard panicked:\n{log}");
}

/// One evaluation of a server page: its snapshot number, name, level and, per chart figure,
/// the P50 path, the y-axis ticks (pixel y, label) and the rendered width of the P50 line.
const SERVER_PAGE: &str = "(() => {
  const charts = {};
  for (const fig of document.querySelectorAll('.charts figure.chart')) {
    const svg = fig.querySelector('svg.plot'), p50 = svg.querySelector('path.p50');
    charts[fig.id] = {
      d: p50 ? p50.getAttribute('d') : '',
      width: p50 ? p50.getBoundingClientRect().width : 0,
      now: Number(svg.querySelector('line.now').getAttribute('x1')),
      ticks: [...svg.querySelectorAll('line.grid')].map(l => [Number(l.getAttribute('y1')), l.nextElementSibling ? l.nextElementSibling.textContent : '']),
    };
  }
  return { seq: document.getElementById('seq').textContent, name: document.getElementById('server-name').textContent,
           level: document.getElementById('server-risk').parentElement.querySelector('.lv').textContent, charts };
})()";

/// A chart's P50 line read back into data values.
struct ReadBack {
    values: Vec<f32>,
    /// Data units per pixel on the y axis.
    per_px: f32,
}

/// Inverts the chart's y scale from its lowest and highest labelled grid lines and reads the
/// P50 path's points (`M x,y L x,y ...`) as values; the points must lie right of the "now"
/// line and go left to right.
fn chart_p50(chart: &Value) -> Result<ReadBack, String> {
    let ticks: Vec<(f32, f32)> = chart["ticks"]
        .as_array()
        .ok_or("no ticks")?
        .iter()
        .filter_map(|t| Some((t[0].as_f64()? as f32, t[1].as_str()?.trim().parse::<f32>().ok()?)))
        .collect();
    let (lo, hi) = match (ticks.iter().max_by(|a, b| a.0.total_cmp(&b.0)), ticks.iter().min_by(|a, b| a.0.total_cmp(&b.0))) {
        (Some(lo), Some(hi)) if hi.0 < lo.0 && hi.1 > lo.1 => (*lo, *hi),
        _ => return Err(format!("fewer than two usable y ticks: {ticks:?}")),
    };
    let per_px = (hi.1 - lo.1) / (lo.0 - hi.0);
    let d = chart["d"].as_str().ok_or("no P50 path")?;
    if !d.starts_with('M') || d[1..].contains('M') {
        return Err("the P50 path is not one unbroken line".into());
    }
    let now = chart["now"].as_f64().ok_or("no now line")? as f32;
    let mut values = Vec::new();
    let mut prev_x = now;
    for pt in d[1..].split('L') {
        let (x, y) = pt.split_once(',').ok_or_else(|| format!("point {pt:?}"))?;
        let (x, y): (f32, f32) = (x.parse().map_err(|_| format!("x {x:?}"))?, y.parse().map_err(|_| format!("y {y:?}"))?);
        if x <= prev_x {
            return Err(format!("point at x {x} not right of {prev_x}"));
        }
        prev_x = x;
        values.push(lo.1 + (lo.0 - y) * per_px);
    }
    Ok(ReadBack { values, per_px })
}
