//! End to end in real headless Chromium against a real nats-server: the overview shows the
//! fleet, a new snapshot changes the page in place without a navigation, the server view
//! draws its charts, the scenario control reaches a (stub) generator over NATS, no CSP
//! violation anywhere, and a screenshot of every view lands in `test-artifacts/dashboard/`.
//! Every wait is on a condition (DOM state, a subscription at the broker, a counter) with a
//! generous bound ([`WAIT`]), never on time: how fast the page updates is `just bench`'s
//! business (publish -> SSE event -> fragment), not a test's on a shared 2-core box.
//!
//! Needs Chromium (`apt-get install -y chromium`, or `CHROMIUM_BIN`). Set
//! `FLEETCAST_SKIP_BROWSER=1` to skip these tests explicitly on a machine without one.

use crate::cdp;

use crate::common;
use common::subscribed;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::service::ServiceExt;
use cdp::{Browser, Page};
use dashboard::fixture::{self, Spec};
use dashboard::{Args, Running};
use futures::StreamExt;
use schemas::subjects::{self, CONTROL_SCENARIO_SET, CONTROL_SCENARIO_STATUS, PREDICTIONS_CURRENT};
use schemas::{Scenario, ScenarioReply, ScenarioRequest};
use testkit::NatsServer;

use cdp::skip;

/// Bound on any wait for a condition: far beyond what it takes, so only a broken condition
/// reaches it.
const WAIT: Duration = Duration::from_secs(30);

/// `<workspace>/test-artifacts/dashboard` (gitignored).
fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test-artifacts/dashboard")
}

async fn publish(client: &async_nats::Client, s: &schemas::Snapshot) {
    for p in fixture::split(s, 2) {
        client.publish(PREDICTIONS_CURRENT, schemas::encode(&p).unwrap().into()).await.unwrap();
    }
    client.flush().await.unwrap();
}

async fn stub_generator(client: &async_nats::Client, seen: Arc<Mutex<Vec<Scenario>>>) -> async_nats::service::Service {
    let service = client.service_builder().start("generator", "0.0.1").await.unwrap();
    let set = service.endpoint_builder().name("scenario_set").add(CONTROL_SCENARIO_SET).await.unwrap();
    let status = service.endpoint_builder().name("scenario_status").add(CONTROL_SCENARIO_STATUS).await.unwrap();
    let current = Arc::new(Mutex::new(Scenario::Healthy));
    let mut both = futures::stream::select(set.map(|r| (true, r)), status.map(|r| (false, r)));
    tokio::spawn(async move {
        while let Some((is_set, req)) = both.next().await {
            let previous = *current.lock().unwrap();
            if is_set {
                if let Ok(r) = schemas::decode::<ScenarioRequest>(&req.message.payload) {
                    seen.lock().unwrap().push(r.scenario);
                    *current.lock().unwrap() = r.scenario;
                }
            }
            let scenario = *current.lock().unwrap();
            let reply = ScenarioReply {
                v: 1,
                scenario,
                previous: is_set.then_some(previous),
                affected: if scenario == Scenario::Healthy { vec![] } else { vec!["ppdb001".into(), "ppweb004".into()] },
                fleet_size: 60,
                tick: 1234,
                ramp_steps: 12,
            };
            let _ = req.respond(Ok(schemas::encode(&reply).unwrap().into())).await;
        }
    });
    service
}

async fn shot(page: &Page<'_>, name: &str) {
    page.screenshot(&artifacts().join(format!("{name}.png"))).await.unwrap();
    let csp = page.csp_violations().await.unwrap();
    assert!(csp.is_empty(), "{name}: CSP violations {csp:?}");
}

struct Stack {
    nats: NatsServer,
    client: async_nats::Client,
    dash: Running,
    _card_dir: tempfile::TempDir,
}

async fn stack(key: Option<&str>, alertmanagers: &[String]) -> Stack {
    let monitor = testkit::free_port();
    let nats = NatsServer::start_with(&["-m", &monitor.to_string()]).unwrap();
    let client = nats.connect().await.unwrap();
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: subjects::STREAM_HISTORY.into(),
        subjects: vec![subjects::HISTORY_TICK.into(), format!("{}.>", subjects::ALERTS_PREFIX)],
        ..Default::default()
    })
    .await
    .unwrap();
    let spec = Spec { servers: 60, seq: 100, ..Default::default() };
    for t in fixture::ticks(&spec, 7 * 288) {
        js.publish(subjects::HISTORY_TICK, schemas::encode(&t).unwrap().into()).await.unwrap().await.unwrap();
    }
    for e in fixture::alert_events(&fixture::forecasts(&spec), spec.tick_ms) {
        let subject = subjects::alert_event(e.alert.state, &e.alert.server);
        js.publish(subject, schemas::encode(&e).unwrap().into()).await.unwrap().await.unwrap();
    }
    let mut a = Args::for_tests(&nats.url());
    a.generator_probe = Duration::from_millis(300);
    a.key = key.map(str::to_string);
    a.alertmanager_urls = alertmanagers.to_vec();
    let card_dir = tempfile::tempdir().unwrap();
    a.model_card = card_dir.path().join("tft.json");
    std::fs::write(&a.model_card, fixture::model_card_json()).unwrap();
    let dash = dashboard::start(a).await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while dash.state.health().link != dashboard::state::Link::Connected {
        assert!(std::time::Instant::now() < deadline, "dashboard never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What the test publishes from now on reaches the dashboard.
    subscribed(monitor, PREDICTIONS_CURRENT).await;
    Stack { nats, client, dash, _card_dir: card_dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_journey_in_chromium() {
    if skip() {
        return;
    }
    // A real Alertmanager and an address where none answers: the Alerts page shows both.
    let am = testkit::alertmanager::Alertmanager::start().unwrap();
    let dead = format!("http://127.0.0.1:{}", testkit::free_port());
    let st = stack(None, &[am.url(), dead.clone()]).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let _generator = stub_generator(&st.client, seen.clone()).await;
    let spec = Spec { servers: 60, seq: 100, warming: 2, ..Default::default() };
    crate::common::publish_fleet(&st.client, &spec, 2).await;
    let base = format!("http://{}", st.dash.addr);

    let browser = Browser::launch().await.unwrap();
    let page = browser.new_page().await.unwrap();

    // Overview shows the fleet, with live updates connected.
    page.navigate(&format!("{base}/")).await.unwrap();
    page.wait_for("document.getElementById('fleet-size') && document.getElementById('fleet-size').textContent === '60'", WAIT)
        .await
        .unwrap();
    assert_eq!(page.eval("htmx.version").await.unwrap(), "2.0.11");
    page.wait_for("document.body.dataset.live === 'open'", WAIT).await.unwrap();
    assert_eq!(page.eval("document.querySelectorAll('#riskiest tbody tr').length").await.unwrap(), 25);
    assert!(page.eval("document.cookie").await.unwrap().as_str().unwrap().is_empty(), "session cookie is HttpOnly");
    shot(&page, "overview").await;

    // A new snapshot changes the page in place (its latency is measured by `just bench`).
    page.eval("window.__marker = 42").await.unwrap();
    crate::common::publish_fleet(&st.client, &Spec { servers: 61, seq: 101, ..spec.clone() }, 2).await;
    page.wait_for(
        "document.getElementById('seq').textContent === '101' && document.getElementById('fleet-size').textContent === '61'",
        WAIT,
    )
    .await
    .expect("the page shows the new snapshot");
    assert_eq!(page.eval("window.__marker").await.unwrap(), 42, "no navigation happened");
    assert_eq!(page.eval("performance.getEntriesByType('navigation').length").await.unwrap(), 1);

    // Heatmap: one SVG, one cell per server, cells link to servers.
    page.navigate(&format!("{base}/heatmap")).await.unwrap();
    assert_eq!(page.eval("document.querySelectorAll('#heatmap rect').length").await.unwrap(), 61);
    shot(&page, "heatmap").await;
    page.eval("document.querySelector('#heatmap a').dispatchEvent(new MouseEvent('click', {bubbles: true}))").await.unwrap();
    page.wait_for("location.pathname.startsWith('/servers/') && document.readyState === 'complete'", WAIT).await.unwrap();

    // Server view draws its charts, from the server's forecast in KV `forecasts`.
    let riskiest = st.dash.state.latest().unwrap().riskiest().next().unwrap().server.clone();
    page.navigate(&format!("{base}{}", dashboard::format::server_url(&riskiest))).await.unwrap();
    assert_eq!(page.text("#server-name").await.unwrap(), riskiest);
    assert_eq!(page.eval("document.querySelectorAll('.charts svg.plot path.p50').length").await.unwrap(), 8);
    let drawn = page.eval("(() => { const b = document.querySelector('#chart-cpu path.band').getBoundingClientRect(); const l = document.querySelector('#chart-cpu path.p50').getTotalLength(); return b.width > 100 && b.height > 1 && l > 100; })()").await.unwrap();
    assert_eq!(drawn, true, "the CPU chart has a visible band and P50 line");
    shot(&page, "server").await;
    page.dark(true).await.unwrap();
    let bg = page.eval("getComputedStyle(document.body).backgroundColor").await.unwrap();
    assert_eq!(bg, "rgb(17, 20, 24)", "dark colour scheme applies");
    shot(&page, "server-dark").await;
    page.dark(false).await.unwrap();
    // Without its KV entry the page says so instead of drawing nothing.
    crate::common::forecasts_bucket(&st.client).await.delete(&riskiest).await.unwrap();
    page.navigate(&format!("{base}{}", dashboard::format::server_url(&riskiest))).await.unwrap();
    page.wait_for("!!document.getElementById('no-kv-entry')", WAIT).await.expect("the server view says its forecast is missing");
    assert_eq!(page.eval("document.querySelectorAll('.charts svg.plot').length").await.unwrap(), 0);

    for (path, name, marker) in [
        ("/alerts", "alerts", "#alerts"),
        ("/history?range=7d", "history", "#history-top"),
        ("/cost", "cost", "#cost-daily"),
        ("/remediation", "remediation", "#remediation-count"),
        ("/model", "model", "#live-accuracy"),
    ] {
        page.navigate(&format!("{base}{path}")).await.unwrap();
        let sel = serde_json::to_string(marker).unwrap();
        page.wait_for(&format!("!!document.querySelector({sel})"), WAIT).await.unwrap();
        shot(&page, name).await;
    }

    // Where alerts go: the Alertmanager that answers, the address that does not, and a link to
    // silence the predicted alerts in each.
    page.navigate(&format!("{base}/alerts")).await.unwrap();
    let statuses = "[...document.querySelectorAll('#am-list .am')].map(li => li.dataset.ready + ':' + li.querySelector('.am-status').textContent).join('|')";
    page.wait_for(&format!("{statuses} === 'true:answers|false:not answering'"), WAIT).await.unwrap();
    let silence = format!("!!document.querySelector('#am-list a[href^=\"{}/#/silences/new\"]')", am.url());
    page.wait_for(&silence, WAIT).await.unwrap();

    // Leaving a page closes its event stream (app.js), so views never queue for connections.
    let deadline = std::time::Instant::now() + WAIT;
    while st.dash.state.sse_clients.load(std::sync::atomic::Ordering::Relaxed) > 1 {
        assert!(std::time::Instant::now() < deadline, "event streams of left pages stay open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Demo controls reach the generator over NATS.
    page.navigate(&format!("{base}/")).await.unwrap();
    page.wait_for("!!document.querySelector('nav a[href=\"/demo\"]')", WAIT).await.unwrap();
    page.navigate(&format!("{base}/demo")).await.unwrap();
    assert_eq!(page.text("#scenario").await.unwrap(), "healthy");
    page.eval("document.querySelector('button[value=critical]').click()").await.unwrap();
    page.wait_for("!!document.getElementById('switch-outcome') && document.getElementById('switch-outcome').textContent.includes('Switched to critical')", WAIT)
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [Scenario::Critical], "the stub generator got the request");
    assert_eq!(page.text("#scenario").await.unwrap(), "critical");
    shot(&page, "demo").await;
    drop(browser);
    st.dash.stop().await;
    drop(st.nats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_in_chromium() {
    if skip() {
        return;
    }
    let st = stack(Some("open sesame"), &[]).await;
    publish(&st.client, &fixture::snapshot(&Spec { servers: 20, ..Default::default() })).await;
    let base = format!("http://{}", st.dash.addr);
    let browser = Browser::launch().await.unwrap();
    let page = browser.new_page().await.unwrap();
    page.navigate(&format!("{base}/alerts")).await.unwrap();
    page.wait_for("location.pathname === '/login'", WAIT).await.unwrap();
    shot(&page, "login").await;
    page.eval("document.getElementById('key').value = 'open sesame'; document.querySelector('form').submit()").await.unwrap();
    page.wait_for("location.pathname === '/alerts' && document.readyState === 'complete' && !!document.getElementById('alerts')", WAIT)
        .await
        .unwrap();
    page.wait_for("document.body.dataset.live === 'open'", WAIT).await.unwrap();
    assert!(page.eval("document.cookie").await.unwrap().as_str().unwrap().is_empty(), "HttpOnly");
    drop(browser);
    st.dash.stop().await;
}
