//! The whole stack as `just up` runs it: nats-server, predictor, generator and dashboard as
//! processes. Asserts from outside that every server gets a forecast, and that switching the
//! generator to `critical` raises the affected servers' risk and opens alerts within the ramp.

use std::time::Duration;

use e2e::{all_forecast, auth_server, risks, url_for, Service, SnapshotWatch};
use schemas::{Level, Scenario, ScenarioReply, ScenarioRequest};

const SERVERS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_is_forecast_and_critical_raises_risk() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Each service connects as its own least-privilege user, so this also proves that the
    // permissions in deploy/nats-auth.conf are enough for the whole pipeline to work.
    let nats = auth_server()?;
    let env = |user: &str| [("NATS_URL", url_for(&nats, user))];
    let client = fleetbus::connect("test", &url_for(&nats, "admin")).await?;
    let mut watch = SnapshotWatch::new(&client).await?;

    let _predictor = Service::start(dir.path(), "predictor", &[], &env("predictor")).await?;
    let servers = SERVERS.to_string();
    let gen_args = ["--servers", &servers, "--tick", "500ms", "--seed", "11"];
    let _generator = Service::start(dir.path(), "generator", &gen_args, &env("generator")).await?;
    let port = testkit::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let _dashboard = Service::start(dir.path(), "dashboard", &["--listen", &listen], &env("dashboard")).await?;

    // Backfill gives 24 h of history at once, so every server is forecast without warm-up.
    let first = watch.until(Duration::from_secs(60), |s| all_forecast(s, SERVERS)).await?;
    // The curves are in KV `forecasts`, one entry per server.
    for s in fleetbus::forecasts::of_snapshot(&client, &first).await? {
        for f in &s.forecast {
            assert_eq!(f.p50.len(), schemas::HORIZON_STEPS, "{} {:?}", s.server, f.target);
            for k in 0..f.p50.len() {
                assert!(f.p10[k] <= f.p50[k] && f.p50[k] <= f.p90[k], "{} {:?} step {k}", s.server, f.target);
            }
        }
    }
    assert_eq!(first.fleet.servers as usize, SERVERS);
    let before = risks(&first);

    // Switch to critical through the generator's control service, as the dashboard does.
    let req = schemas::encode(&ScenarioRequest { scenario: Scenario::Critical })?;
    let reply = client.request(schemas::subjects::CONTROL_SCENARIO_SET, req.into()).await?;
    let reply: ScenarioReply = schemas::decode(&reply.payload)?;
    assert_eq!(reply.scenario, Scenario::Critical);
    assert!(!reply.affected.is_empty());

    // Within the ramp (plus a few ticks), the affected servers are in trouble and alerted: half
    // of them at risk 40 or more and their mean risk 20 points up. Both are waited for in one
    // snapshot: the first snapshot with half of them at 40 once had the mean up by 19.3 only,
    // one tick before it passed 20 (a loaded machine, `just test`).
    let mean = |m: &std::collections::HashMap<String, f32>| {
        reply.affected.iter().map(|a| m.get(a).copied().unwrap_or(0.0)).sum::<f32>() / reply.affected.len() as f32
    };
    let ramp = Duration::from_millis(500) * (reply.ramp_steps + 20);
    let hot = watch
        .until(ramp + Duration::from_secs(20), |s| {
            let r = risks(s);
            let raised = reply.affected.iter().filter(|a| r.get(*a).copied().unwrap_or(0.0) >= 40.0).count();
            raised * 2 >= reply.affected.len() && mean(&r) > mean(&before) + 20.0 && s.fleet.alerts_critical + s.fleet.alerts_warning > 0
        })
        .await?;
    let after = risks(&hot);
    assert!(mean(&after) > mean(&before) + 20.0, "risk {} -> {}", mean(&before), mean(&after));
    let alerted: Vec<_> = hot.servers.iter().filter(|s| !s.alerts.is_empty()).map(|s| s.server.as_str()).collect();
    assert!(alerted.iter().any(|s| reply.affected.iter().any(|a| a == s)), "alerts on {alerted:?}");
    assert!(hot.servers.iter().any(|s| s.level >= Level::Warning));

    // The dashboard serves the same fleet, and a server's page with its charts: read from KV
    // `forecasts` as the least-privilege `dashboard` user.
    let page = http_get(&listen, "/").await?;
    assert!(page.contains(&hot.servers[0].server) || page.contains("ppweb"), "overview lists servers");
    let server = http_get(&listen, &format!("/servers/{}", alerted[0])).await?;
    assert!(server.contains("id=\"chart-cpu\"") && server.contains("<path class=\"band\" d=\"M"), "{server}");
    Ok(())
}

/// A minimal HTTP/1.1 GET over a TCP socket (no client library needed for one request).
async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    anyhow::ensure!(text.starts_with("HTTP/1.1 200"), "GET {path}: {}", text.lines().next().unwrap_or(""));
    Ok(text)
}
