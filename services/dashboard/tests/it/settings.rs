//! The operator's cost-avoidance assumptions persist in the JetStream KV bucket
//! `dashboard_settings` (a real nats-server): a value set through the form survives a restart
//! of the dashboard, also as the least-privilege `dashboard` user of `deploy/nats-auth.conf`
//! with the bucket's permissions.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use dashboard::cost::CostInputs;
use dashboard::settings::{BUCKET, COST_KEY};
use dashboard::{Args, Running};
use testkit::NatsServer;

async fn start(url: &str) -> Running {
    dashboard::start(Args::for_tests(url)).await.expect("dashboard starts")
}

/// The form's `POST /cost` as a browser sends it: the session cookie and CSRF token from a
/// `GET /cost` first, then the fields with the token, from the dashboard's own origin.
async fn post_cost(addr: SocketAddr, fields: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let page = get(addr, "/cost").await;
    let cookie = page
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .and_then(|c| c.split(';').next())
        .expect("the dashboard sets a session cookie")
        .to_string();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).expect("the form carries a CSRF token");
    let body = format!("csrf={csrf}&{fields}");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect to the dashboard");
    let head = format!(
        "POST /cost HTTP/1.0\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    text
}

/// A plain HTTP/1.0 GET (the body comes whole), as a browser's navigation would send it.
async fn get(addr: SocketAddr, path: &str) -> String {
    get_with(addr, path, "").await
}

/// [`get`] with extra header lines (each ending in `\r\n`).
async fn get_with(addr: SocketAddr, path: &str, headers: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect to the dashboard");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}\r\n").as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    text
}

/// Waits until the dashboard's cost assumptions are `want` (loaded from the bucket).
async fn assumptions_become(dash: &Running, want: CostInputs) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while dash.state.settings.cost() != want {
        assert!(Instant::now() < deadline, "the saved assumptions were not loaded: {:?}", dash.state.settings.cost());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the bucket holds under `cost`, read by another client.
async fn stored(client: &async_nats::Client) -> Option<CostInputs> {
    let kv = jetstream::new(client.clone()).get_key_value(BUCKET).await.ok()?;
    let bytes = kv.get(COST_KEY).await.ok()??;
    Some(schemas::decode(&bytes).expect("stored assumptions decode"))
}

const SET: &str = "cost_per_hour=12345&hours_per_outage=3&prevention_rate=40&project_cost=99000";
const WANT: CostInputs = CostInputs { cost_per_hour: 12_345.0, hours_per_outage: 3.0, prevention_rate: 40.0, project_cost: 99_000.0 };

/// Sets the assumptions through the form on one dashboard, stops it, and checks that a new
/// one shows them on a plain `/cost`.
async fn survives_a_restart(url: &str, reader: &async_nats::Client) {
    let dash = start(url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while dash.state.health().link != dashboard::state::Link::Connected {
        assert!(Instant::now() < deadline, "the dashboard did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dash.state.settings.cost(), CostInputs::default());
    let page = post_cost(dash.addr, SET).await;
    assert!(page.starts_with("HTTP/1.0 303") || page.starts_with("HTTP/1.1 303"), "post/redirect/get: {}", &page[..page.len().min(300)]);
    assert_eq!(dash.state.settings.cost(), WANT);
    // A GET (a what-if link, htmx's refresh of another open tab) and a form with a bad field
    // change nothing.
    let _ = get(dash.addr, "/cost?cost_per_hour=1").await;
    let _ = get_with(dash.addr, "/cost?cost_per_hour=2", "HX-Request: true\r\n").await;
    let bad = post_cost(dash.addr, "cost_per_hour=3&prevention_rate=abc").await;
    assert!(bad.starts_with("HTTP/1.0 400") || bad.starts_with("HTTP/1.1 400"), "{}", &bad[..bad.len().min(300)]);
    assert!(bad.contains("<code>prevention_rate</code>") && bad.contains("nothing was saved"));
    assert_eq!(dash.state.settings.cost(), WANT);
    dash.stop().await;
    assert_eq!(stored(reader).await, Some(WANT), "written to the bucket by the time the dashboard stopped");

    let again = start(url).await;
    assumptions_become(&again, WANT).await;
    let page = get(again.addr, "/cost").await;
    assert!(page.contains("name=\"cost_per_hour\" value=\"12345\""), "the form shows the saved value");
    assert!(page.contains("name=\"prevention_rate\" value=\"40\""));
    again.stop().await;
}

#[tokio::test]
async fn cost_assumptions_survive_a_dashboard_restart() {
    let nats = NatsServer::start().unwrap();
    let reader = nats.connect().await.unwrap();
    survives_a_restart(&nats.url(), &reader).await;
}

/// What the `dashboard` user needs beyond reading predictions and history: its own bucket
/// (create, look up, read and write `dashboard_settings`).
const BUCKET_PERMISSIONS: &str = "\"$JS.API.STREAM.INFO.KV_dashboard_settings\", \"$JS.API.STREAM.CREATE.KV_dashboard_settings\", \
\"$JS.API.DIRECT.GET.KV_dashboard_settings.>\", \"$KV.dashboard_settings.>\",";

#[tokio::test]
async fn the_dashboard_user_keeps_its_settings() {
    let conf = std::fs::read_to_string(testkit::workspace_root().join("deploy/nats-auth.conf")).unwrap();
    // Adds the bucket's lines to the dashboard's publish allow-list, unless deploy/ has them.
    let conf = if conf.contains("$KV.dashboard_settings.>") {
        conf
    } else {
        let at = conf.find("user: dashboard").expect("a dashboard user");
        let allow = at + conf[at..].find("allow: [").expect("its publish allow-list") + "allow: [".len();
        format!("{}{BUCKET_PERMISSIONS}{}", &conf[..allow], &conf[allow..])
    };
    let users = [
        ("FLEETCAST_PREDICTOR_PASSWORD", "p"),
        ("FLEETCAST_GENERATOR_PASSWORD", "g"),
        ("FLEETCAST_DASHBOARD_PASSWORD", "d-secret"),
        ("FLEETCAST_NOTIFIER_PASSWORD", "n"),
        ("FLEETCAST_INGEST_PASSWORD", "i"),
        ("FLEETCAST_ADMIN_PASSWORD", "a-secret"),
    ];
    let nats = NatsServer::start_with_config(&conf, &users).unwrap();
    let admin = fleetbus::connect("test", &nats.url_as("admin", "a-secret")).await.unwrap();
    survives_a_restart(&nats.url_as("dashboard", "d-secret"), &admin).await;
}
