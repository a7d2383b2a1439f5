//! The production configuration, run: the broker on the repository's `nats.conf` and
//! `deploy/nats-auth.conf` as `just up` starts it (`ProductionBroker`; only ports, store and a
//! small `max_payload` differ), every service as its own least-privilege user. A small snapshot
//! part limit (`PREDICTOR_MAX_PAYLOAD`) forces each snapshot into several parts; the dashboard, driven over HTTP as its page drives it
//! (session cookie, CSRF token from the form, same-origin POST), switches the real generator to
//! `critical`, whose servers then climb toward 90 % CPU and 93 % memory in what it publishes; and
//! the dashboard, reading `HISTORY` as its own user, serves rows for the fleet.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use e2e::{all_forecast, risks, ProductionBroker, Service, SnapshotWatch};
use futures::StreamExt;
use schemas::{MetricRecord, MetricsBatch, Scenario, ScenarioReply};

const SERVERS: usize = 40;
/// Small, but large enough for one server's window and forecast (the KV entries are one server
/// each, ~12 KB).
const MAX_PAYLOAD: usize = 64 * 1024;
/// The predictor's snapshot part limit: a 40-server summary snapshot (~150 bytes a server, ~1
/// KB of thresholds per part) needs several parts under it.
const PART_LIMIT: usize = 4 * 1024;

/// The generator's records per batch sequence number, as published on `metrics.batch.generator`.
type Published = Arc<Mutex<BTreeMap<u64, Vec<MetricRecord>>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_configuration_runs_the_whole_stack() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let nats = ProductionBroker::start(MAX_PAYLOAD)?;
    // The broker runs nats.conf: users required, our limit, JetStream where store_dir says.
    let anonymous = async_nats::connect(nats.url()).await;
    assert!(anonymous.is_err(), "nats.conf requires a user");
    let admin = nats.connect_as("admin").await?;
    assert_eq!(admin.server_info().max_payload, MAX_PAYLOAD);
    assert!(nats.log().contains("production.conf"), "{}", nats.log());

    let mut watch = SnapshotWatch::new(&admin).await?;
    let published = collect_generator_batches(&admin).await?;
    let env = |user: &str| [("NATS_URL", nats.url_for(user))];
    let part_limit = PART_LIMIT.to_string();
    let predictor_env = [("NATS_URL", nats.url_for("predictor")), ("PREDICTOR_MAX_PAYLOAD", part_limit)];
    let predictor = Service::start(dir.path(), "predictor", &[], &predictor_env).await?;
    // Its log names the broker, never the password it connects with.
    let url = nats.url_for("predictor");
    let password = url.split_once("predictor:").and_then(|(_, r)| r.split_once('@')).map_or("", |(p, _)| p);
    assert!(!password.is_empty() && !predictor.log_text().contains(password), "the password is in the log:\n{}", predictor.log_tail(5));
    let servers = SERVERS.to_string();
    let gen_args = ["--servers", &servers, "--tick", "500ms", "--seed", "11"];
    let _generator = Service::start(dir.path(), "generator", &gen_args, &env("generator")).await?;
    let listen = format!("127.0.0.1:{}", testkit::free_port());
    let dashboard_args = ["--listen", &listen, "--generator-probe", "1s"];
    let _dashboard = Service::start(dir.path(), "dashboard", &dashboard_args, &env("dashboard")).await?;
    assert!(nats.store_dir().join("jetstream").is_dir(), "JetStream stores under var/nats of the run dir");

    // Whole snapshots, each from several parts that fit the limit.
    let first = watch.until(Duration::from_secs(90), |s| all_forecast(s, SERVERS)).await?;
    assert!(watch.most_parts > 1, "a {SERVERS}-server snapshot under {PART_LIMIT} bytes came in {} part(s)", watch.most_parts);
    assert!(watch.largest_part <= PART_LIMIT, "a part of {} bytes", watch.largest_part);
    let before = risks(&first);

    // The dashboard assembled the same parts (as its own user) and serves the whole fleet.
    let web = Web::new(&listen)?;
    let overview = web.get_until("/", Duration::from_secs(30), |b| b.contains(&format!("id=\"fleet-size\">{SERVERS}<"))).await?;
    assert!(overview.contains("ppdb001") || overview.contains("ppweb001"), "overview lists servers");

    // Switch to critical through the dashboard's demo page, as an operator's browser does.
    let demo = web.get_until("/demo", Duration::from_secs(30), |b| b.contains("id=\"scenario-form\"")).await?;
    let csrf = form_value(&demo, "csrf").context("the demo form carries a CSRF token")?;
    let refused = web.post("/demo/scenario", &[("scenario", "critical")]).await?;
    assert_eq!(refused.status().as_u16(), 403, "a POST without the CSRF token is refused");
    let switched = web.post("/demo/scenario", &[("csrf", csrf.as_str()), ("scenario", "critical")]).await?;
    assert_eq!(switched.status().as_u16(), 303, "post/redirect/get");
    assert_eq!(switched.headers().get("location").and_then(|l| l.to_str().ok()), Some("/demo"));
    let demo = web.get("/demo").await?;
    assert!(demo.contains("Switched to critical"), "the outcome is shown");

    // The generator itself says it switched, and what it publishes follows the scenario.
    let reply = admin.request(schemas::subjects::CONTROL_SCENARIO_STATUS, "".into()).await?;
    let status: ScenarioReply = schemas::decode(&reply.payload)?;
    assert_eq!(status.scenario, Scenario::Critical);
    assert_eq!(status.affected.len(), SERVERS / 4, "25 % of the fleet");
    for a in &status.affected {
        assert!(demo.contains(a.as_str()), "the demo page names {a}");
    }
    // The status tick is at or after the switch; the ramp is 24 steps, so 30..36 ticks on
    // the affected servers are at the scenario's targets.
    let t = status.tick;
    wait_for_batch(&published, t + 36, Duration::from_secs(60)).await?;
    let aff = &status.affected;
    let cpu_used = |r: &MetricRecord| r.metrics.cpu_idle_pct.map(|idle| 100.0 - idle);
    let mem = |r: &MetricRecord| r.metrics.mem_used_pct;
    let (cpu0, cpu1) = (mean(&published, aff, true, t - 3, t - 1, cpu_used)?, mean(&published, aff, true, t + 30, t + 36, cpu_used)?);
    let mem1 = mean(&published, aff, true, t + 30, t + 36, mem)?;
    let rest = mean(&published, aff, false, t + 30, t + 36, cpu_used)?;
    assert!(cpu1 > 84.0 && mem1 > 87.0, "critical servers toward 90 % CPU / 93 % memory: {cpu0} -> {cpu1}, memory {mem1}");
    assert!(cpu1 > cpu0 + 5.0 && cpu1 > rest + 12.0, "CPU {cpu0} -> {cpu1}, rest of the fleet {rest}");

    // The predictor sees it through the parts: the affected servers' risk rises, half of them
    // to 40 or more and their mean by 20 points, both waited for in one snapshot (the first
    // with half at 40 had the mean up by less than 20 once, a tick or two early).
    let mean_risk = |m: &HashMap<String, f32>| aff.iter().map(|a| m.get(a).copied().unwrap_or(0.0)).sum::<f32>() / aff.len() as f32;
    let hot = watch
        .until(Duration::from_secs(60), |s| {
            let r = risks(s);
            let raised = aff.iter().filter(|a| r.get(*a).copied().unwrap_or(0.0) >= 40.0).count();
            raised * 2 >= aff.len() && mean_risk(&r) > mean_risk(&before) + 20.0
        })
        .await?;
    assert!(mean_risk(&risks(&hot)) > mean_risk(&before) + 20.0, "risk {} -> {}", mean_risk(&before), mean_risk(&risks(&hot)));

    // History, read by the dashboard from HISTORY with its own user: a row per server, and the
    // critical servers' peak risk in it.
    let csv = web
        .get_until("/history.csv?table=servers&range=24h", Duration::from_secs(30), |b| {
            let rows = csv_rows(b);
            rows.len() >= SERVERS && aff.iter().any(|a| rows.get(a).is_some_and(|max| *max >= 40.0))
        })
        .await?;
    let rows = csv_rows(&csv);
    assert!(rows.contains_key("ppweb001"), "{csv}");
    let page = web.get("/history?range=24h").await?;
    assert!(page.contains("Mean fleet risk") && !page.contains("No history yet"), "the history view has data");
    eprintln!(
        "parts {} (largest {} B), critical CPU {cpu0:.0} -> {cpu1:.0} %, memory {mem1:.0} %, rest {rest:.0} %, risk {:.0} -> {:.0}, history rows {}",
        watch.most_parts,
        watch.largest_part,
        mean_risk(&before),
        mean_risk(&risks(&hot)),
        rows.len()
    );
    Ok(())
}

/// Every batch the generator publishes, by its sequence number (an admin subscription: the
/// generator's own output, not the predictor's view of it).
async fn collect_generator_batches(client: &async_nats::Client) -> anyhow::Result<Published> {
    let mut sub = client.subscribe(schemas::subjects::metrics_batch("generator")).await?;
    client.flush().await?;
    let published: Published = Arc::default();
    let sink = published.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Ok(batch) = schemas::decode::<MetricsBatch>(&msg.payload) {
                if let Ok(mut p) = sink.lock() {
                    p.entry(batch.seq).or_default().extend(batch.records);
                }
            }
        }
    });
    Ok(published)
}

async fn wait_for_batch(published: &Published, seq: u64, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = published.lock().ok().and_then(|p| p.keys().next_back().copied()).unwrap_or(0);
        if last >= seq {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the generator's batch {seq} did not arrive within {timeout:?} (last {last})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Mean of `f` over the records of the `names` servers (or, with `inside` false, of every other
/// server) in batches `from..=to`.
fn mean(
    published: &Published,
    names: &[String],
    inside: bool,
    from: u64,
    to: u64,
    f: impl Fn(&MetricRecord) -> Option<f32>,
) -> anyhow::Result<f32> {
    let p = published.lock().map_err(|_| anyhow::anyhow!("collector poisoned"))?;
    let values: Vec<f32> =
        p.range(from..=to).flat_map(|(_, recs)| recs.iter().filter(|r| names.contains(&r.server) == inside).filter_map(&f)).collect();
    anyhow::ensure!(!values.is_empty(), "no records in batches {from}..={to}");
    Ok(values.iter().sum::<f32>() / values.len() as f32)
}

/// `server -> max_risk` from the dashboard's `servers` history CSV
/// (`server,mean_risk,max_risk,critical_ticks`).
fn csv_rows(csv: &str) -> HashMap<String, f32> {
    csv.lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            Some((cols.first()?.to_string(), cols.get(2)?.parse().ok()?))
        })
        .collect()
}

/// The value of the hidden form field `name` in a page.
fn form_value(page: &str, name: &str) -> Option<String> {
    let at = page.find(&format!("name=\"{name}\" value=\""))? + name.len() + 15;
    let end = page[at..].find('"')?;
    Some(page[at..at + end].to_string())
}

/// A browser's view of the dashboard: one session cookie, kept across requests; POSTs carry
/// the page's origin, as a browser sends it.
struct Web {
    http: reqwest::Client,
    base: String,
    cookie: Mutex<Option<String>>,
}

impl Web {
    fn new(listen: &str) -> anyhow::Result<Web> {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(30)).build()?;
        Ok(Web { http, base: format!("http://{listen}"), cookie: Mutex::new(None) })
    }

    fn with_cookie(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.cookie.lock().ok().and_then(|c| c.clone()) {
            Some(c) => req.header("cookie", c),
            None => req,
        }
    }

    fn keep_cookie(&self, resp: &reqwest::Response) {
        let set = resp.headers().get("set-cookie").and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next());
        if let (Some(pair), Ok(mut c)) = (set, self.cookie.lock()) {
            *c = Some(pair.to_string());
        }
    }

    async fn get(&self, path: &str) -> anyhow::Result<String> {
        let resp = self.with_cookie(self.http.get(format!("{}{path}", self.base))).send().await?;
        self.keep_cookie(&resp);
        let status = resp.status();
        let body = resp.text().await?;
        anyhow::ensure!(status.is_success(), "GET {path}: {status}: {body}");
        Ok(body)
    }

    /// GETs `path` until its body satisfies `pred` (the dashboard catches up on its own time).
    async fn get_until(&self, path: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let body = self.get(path).await?;
            if pred(&body) {
                return Ok(body);
            }
            if Instant::now() > deadline {
                bail!("GET {path}: not as expected within {timeout:?}:\n{}", &body[..body.len().min(2000)]);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<reqwest::Response> {
        let req = self.http.post(format!("{}{path}", self.base)).header("origin", &self.base).form(form);
        let resp = self.with_cookie(req).send().await?;
        self.keep_cookie(&resp);
        Ok(resp)
    }
}
