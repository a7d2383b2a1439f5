//! The dashboard against a real nats-server (testkit): live snapshots (whole and in parts)
//! update the state and reach SSE clients, a late start reads the snapshot retained in the
//! `PREDICTIONS` stream, the `HISTORY` stream feeds the historical view, the generator's
//! control service is probed and switched, bad messages are counted, and the banner tells
//! when NATS is gone.

use crate::common;
use common::subscribed;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use async_nats::service::ServiceExt;
use dashboard::fixture::{self, Spec};
use dashboard::testing::SseClient;
use dashboard::{Args, Running};
use futures::StreamExt;
use schemas::subjects::{self, CONTROL_SCENARIO_SET, CONTROL_SCENARIO_STATUS, PREDICTIONS_CURRENT};
use schemas::{Scenario, ScenarioReply, ScenarioRequest};
use testkit::NatsServer;

async fn start(url: &str) -> Running {
    let mut a = Args::for_tests(url);
    a.generator_probe = Duration::from_millis(200);
    a.stale_after = Duration::from_secs(60);
    dashboard::start(a).await.expect("dashboard starts")
}

async fn eventually(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A nats-server with its monitoring endpoint on a free port (for [`subscribed`]).
fn monitored_nats() -> (NatsServer, u16) {
    let monitor = testkit::free_port();
    (NatsServer::start_with(&["-m", &monitor.to_string()]).unwrap(), monitor)
}

async fn publish(client: &async_nats::Client, s: &schemas::Snapshot, parts: u16) {
    for p in fixture::split(s, parts) {
        client.publish(PREDICTIONS_CURRENT, schemas::encode(&p).unwrap().into()).await.unwrap();
    }
    client.flush().await.unwrap();
}

async fn connected(dash: &Running) {
    eventually("NATS link up", Duration::from_secs(10), || dash.state.health().link == dashboard::state::Link::Connected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_snapshots_update_the_state_and_reach_sse_clients() {
    let (nats, monitor) = monitored_nats();
    let client = nats.connect().await.unwrap();
    let dash = start(&nats.url()).await;
    connected(&dash).await;
    let mut sse = SseClient::connect(dash.addr, None).await.unwrap();
    let first = sse.next_named("status", Duration::from_secs(5)).await.expect("initial status event");
    assert!(first.contains("Waiting for the first forecast snapshot"), "{first}");
    // What is published from now on reaches the dashboard.
    subscribed(monitor, PREDICTIONS_CURRENT).await;

    let s1 = fixture::snapshot(&Spec { servers: 30, seq: 7, ..Default::default() });
    publish(&client, &s1, 1).await;
    eventually("snapshot 7 installed", Duration::from_secs(5), || dash.state.latest().is_some_and(|l| l.snapshot.seq == 7)).await;
    assert_eq!(sse.next_named("snapshot", Duration::from_secs(2)).await.as_deref(), Some("1"));
    // the banner clears once data flows
    let cleared = sse.next_named("status", Duration::from_secs(3)).await.expect("banner update");
    assert!(cleared.contains("data-banner=\"none\""), "{cleared}");

    // a snapshot in parts is joined before it is shown
    let s2 = fixture::snapshot(&Spec { servers: 30, seq: 8, ..Default::default() });
    publish(&client, &s2, 4).await;
    eventually("snapshot 8 installed", Duration::from_secs(5), || dash.state.latest().is_some_and(|l| l.snapshot.seq == 8)).await;
    assert_eq!(dash.state.latest().unwrap().snapshot, fixture::wire(s2));
    assert_eq!(sse.next_named("snapshot", Duration::from_secs(2)).await.as_deref(), Some("2"));

    // garbage is counted and skipped, the next good one still lands
    client.publish(PREDICTIONS_CURRENT, "not msgpack".into()).await.unwrap();
    let s3 = fixture::snapshot(&Spec { servers: 30, seq: 9, ..Default::default() });
    publish(&client, &s3, 1).await;
    eventually("snapshot 9 installed", Duration::from_secs(5), || dash.state.latest().is_some_and(|l| l.snapshot.seq == 9)).await;
    let h = dash.state.health();
    assert_eq!(h.bad_messages, 1);
    assert!(h.last_error.unwrap().contains("undecodable"));
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_start_reads_the_retained_snapshot() {
    let nats = NatsServer::start().unwrap();
    let client = nats.connect().await.unwrap();
    let js = jetstream::new(client.clone());
    // as the predictor creates it
    js.create_stream(stream::Config {
        name: subjects::STREAM_PREDICTIONS.into(),
        subjects: vec![PREDICTIONS_CURRENT.into()],
        allow_direct: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let old = fixture::snapshot(&Spec { servers: 12, seq: 41, ..Default::default() });
    let s = fixture::snapshot(&Spec { servers: 12, seq: 42, ..Default::default() });
    for p in fixture::split(&old, 3).into_iter().chain(fixture::split(&s, 3)) {
        js.publish(PREDICTIONS_CURRENT, schemas::encode(&p).unwrap().into()).await.unwrap().await.unwrap();
    }
    // a newer snapshot whose publishing was cut off after its first part: skipped
    let cut = fixture::split(&fixture::snapshot(&Spec { servers: 12, seq: 43, ..Default::default() }), 3);
    js.publish(PREDICTIONS_CURRENT, schemas::encode(&cut[0]).unwrap().into()).await.unwrap().await.unwrap();

    let dash = start(&nats.url()).await;
    eventually("retained snapshot read", Duration::from_secs(10), || dash.state.latest().is_some()).await;
    assert_eq!(dash.state.latest().unwrap().snapshot, fixture::wire(s), "the newest whole snapshot, joined from its parts");
    let body = reqwest_free_get(dash.addr, "/").await;
    assert!(body.contains("data-testid=\"seq\">42</span>"), "a fresh page is not empty");
    dash.stop().await;
}

/// The server view reads the server's full forecast from KV `forecasts` on each request: its
/// charts come from there (the snapshot has no curves), a missing entry is said on a 200 page,
/// an entry that does not decode on a 503 page, and a server the snapshot does not list is 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_view_reads_the_forecast_from_kv() {
    let (nats, monitor) = monitored_nats();
    let client = nats.connect().await.unwrap();
    let dash = start(&nats.url()).await;
    connected(&dash).await;
    subscribed(monitor, PREDICTIONS_CURRENT).await;
    let spec = Spec { servers: 12, seq: 5, ..Default::default() };
    let snap = common::publish_fleet(&client, &spec, 2).await;
    eventually("snapshot 5 installed", Duration::from_secs(5), || dash.state.latest().is_some_and(|l| l.snapshot.seq == 5)).await;
    let name = snap.servers[3].server.clone();
    let page = reqwest_free_get(dash.addr, &dashboard::format::server_url(&name)).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    for t in schemas::Target::ALL {
        assert!(page.contains(&format!("id=\"chart-{}\"", t.name())), "{t:?}: {page}");
    }
    assert!(page.contains("<path class=\"band\" d=\"M") && page.contains("id=\"var-weights\""), "curves and explanation from KV");

    let kv = common::forecasts_bucket(&client).await;
    kv.delete(&name).await.unwrap();
    let gone = reqwest_free_get(dash.addr, &dashboard::format::server_url(&name)).await;
    assert!(gone.starts_with("HTTP/1.1 200") && gone.contains("id=\"no-kv-entry\""), "{gone}");
    assert!(!gone.contains("id=\"chart-cpu\""));
    let other = snap.servers[4].server.clone();
    kv.put(&other, "not a forecast".into()).await.unwrap();
    let bad = reqwest_free_get(dash.addr, &dashboard::format::server_url(&other)).await;
    assert!(bad.starts_with("HTTP/1.1 503") && bad.contains("does not decode"), "{bad}");
    let unknown = reqwest_free_get(dash.addr, "/servers/ppnope999").await;
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    dash.stop().await;
}

/// A plain HTTP/1.1 GET (Connection: close) returning the body.
async fn reqwest_free_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_stream_feeds_the_historical_view() {
    let nats = NatsServer::start().unwrap();
    let client = nats.connect().await.unwrap();
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: subjects::STREAM_HISTORY.into(),
        subjects: vec![subjects::HISTORY_TICK.into(), format!("{}.>", subjects::ALERTS_PREFIX)],
        ..Default::default()
    })
    .await
    .unwrap();
    let spec = Spec { servers: 25, seq: 500, ..Default::default() };
    let ticks = fixture::ticks(&spec, 100);
    for t in &ticks {
        js.publish(subjects::HISTORY_TICK, schemas::encode(t).unwrap().into()).await.unwrap().await.unwrap();
    }
    let events = fixture::alert_events(&fixture::forecasts(&spec), spec.tick_ms);
    for e in &events {
        let subject = subjects::alert_event(e.alert.state, &e.alert.server);
        js.publish(subject, schemas::encode(e).unwrap().into()).await.unwrap().await.unwrap();
    }
    js.publish(subjects::HISTORY_TICK, "garbage".into()).await.unwrap().await.unwrap();

    let dash = start(&nats.url()).await;
    eventually("history replayed", Duration::from_secs(10), || {
        let h = dash.state.history.read().unwrap();
        h.tick_count() == 100 && h.alert_count() == events.len()
    })
    .await;
    // and it follows new ones
    let next = fixture::ticks(&Spec { seq: 501, tick_ms: spec.tick_ms + schemas::STEP_MS, ..spec.clone() }, 1);
    client.publish(subjects::HISTORY_TICK, schemas::encode(&next[0]).unwrap().into()).await.unwrap();
    eventually("live tick filed", Duration::from_secs(5), || dash.state.history.read().unwrap().tick_count() == 101).await;
    let page = reqwest_free_get(dash.addr, "/history?range=6h").await;
    assert!(page.contains("id=\"history-top\""), "history view renders from the stream");
    dash.stop().await;
}

/// A stand-in for the generator's control service, as the generator registers it.
async fn stub_generator(client: &async_nats::Client, seen: Arc<Mutex<Vec<Scenario>>>) -> async_nats::service::Service {
    let service = client.service_builder().description("test stub").start("generator", "0.0.1").await.unwrap();
    let set = service.endpoint_builder().name("scenario_set").add(CONTROL_SCENARIO_SET).await.unwrap();
    let status = service.endpoint_builder().name("scenario_status").add(CONTROL_SCENARIO_STATUS).await.unwrap();
    let current = Arc::new(Mutex::new(Scenario::Healthy));
    let mut both = futures::stream::select(set.map(|r| (true, r)), status.map(|r| (false, r)));
    tokio::spawn(async move {
        while let Some((is_set, req)) = both.next().await {
            let previous = *current.lock().unwrap();
            if is_set {
                let Ok(r) = schemas::decode::<ScenarioRequest>(&req.message.payload) else {
                    let _ =
                        req.respond(Err(async_nats::service::error::Error { status: "request: not MessagePack".into(), code: 400 })).await;
                    continue;
                };
                seen.lock().unwrap().push(r.scenario);
                *current.lock().unwrap() = r.scenario;
            }
            let scenario = *current.lock().unwrap();
            let reply = ScenarioReply {
                v: 1,
                scenario,
                previous: is_set.then_some(previous),
                affected: if scenario == Scenario::Healthy { vec![] } else { vec!["ppdb001".into(), "ppdb002".into()] },
                fleet_size: 20,
                tick: 99,
                ramp_steps: 24,
            };
            let _ = req.respond(Ok(schemas::encode(&reply).unwrap().into())).await;
        }
    });
    service
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_controls_appear_with_a_generator_and_switch_it() {
    let nats = NatsServer::start().unwrap();
    let client = nats.connect().await.unwrap();
    let dash = start(&nats.url()).await;
    connected(&dash).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!dash.state.generator_available(), "no generator yet");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let _svc = stub_generator(&client, seen.clone()).await;
    eventually("generator seen by the probe", Duration::from_secs(5), || dash.state.generator_available()).await;
    let page = reqwest_free_get(dash.addr, "/").await;
    assert!(page.contains("href=\"/demo\""), "nav shows the demo view now");

    let outcome = dashboard::control::switch(&dash.state, Scenario::Cascade).await;
    let reply = outcome.result.expect("switch answered");
    assert_eq!((reply.scenario, reply.previous), (Scenario::Cascade, Some(Scenario::Healthy)));
    assert_eq!(*seen.lock().unwrap(), [Scenario::Cascade]);
    let demo = reqwest_free_get(dash.addr, "/demo").await;
    assert!(demo.contains("id=\"scenario\">cascade</span>") || demo.contains("Switched to cascade"), "{demo}");
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banner_says_stale_when_nats_goes_away() {
    let (mut nats, monitor) = monitored_nats();
    let client = nats.connect().await.unwrap();
    let dash = start(&nats.url()).await;
    connected(&dash).await;
    subscribed(monitor, PREDICTIONS_CURRENT).await;
    publish(&client, &fixture::snapshot(&Spec { servers: 5, seq: 3, ..Default::default() }), 1).await;
    eventually("snapshot installed", Duration::from_secs(5), || dash.state.latest().is_some()).await;
    assert!(dash.state.banner().is_none());
    let mut sse = SseClient::connect(dash.addr, None).await.unwrap();
    let _ = sse.next_named("status", Duration::from_secs(2)).await;
    nats.stop();
    let down = sse.next_named("status", Duration::from_secs(10)).await.expect("banner pushed when NATS drops");
    assert!(down.contains("Stale since") && down.contains("NATS connection is down"), "{down}");
    let page = reqwest_free_get(dash.addr, "/").await;
    assert!(page.contains("class=\"banner down\""), "no-JS page shows it too");
    assert!(page.contains("data-testid=\"seq\">3</span>"), "the last snapshot is still shown");
    nats.restart().unwrap();
    eventually("reconnected", Duration::from_secs(15), || dash.state.health().link == dashboard::state::Link::Connected).await;
    assert!(dash.state.banner().is_none(), "recent snapshot + link up = no banner");
    dash.stop().await;
}
