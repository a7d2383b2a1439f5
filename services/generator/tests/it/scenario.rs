//! Scenario switches over NATS request/reply, against a running generator: the reply names
//! the affected servers, and their metrics move the expected way within the ramp.

use crate::common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures::StreamExt;
use schemas::subjects::{CONTROL_SCENARIO_SET, CONTROL_SCENARIO_STATUS};
use schemas::{Metric, MetricRecord, Profile, Scenario, ScenarioReply, ScenarioRequest};
use testkit::NatsServer;

type Ticks = Arc<Mutex<BTreeMap<u64, Vec<MetricRecord>>>>;

struct Live {
    _nats: NatsServer,
    client: async_nats::Client,
    ticks: Ticks,
    run: Running,
}

/// A generator of `servers` at 50 ms per step, with a collector of what it publishes.
async fn live(servers: usize, seed: u64) -> Live {
    let nats = NatsServer::start().unwrap();
    let client = nats.connect().await.unwrap();
    create_stream(&client).await;
    let mut sub = client.subscribe("metrics.batch.generator").await.unwrap();
    let ticks: Ticks = Arc::default();
    let sink = ticks.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let m = decode_valid(msg.subject.as_str(), None, &msg.payload);
            sink.lock().unwrap().entry(m.seq).or_default().extend(m.records);
        }
    });
    let mut opts = options(&nats.url(), servers, seed);
    opts.backfill_steps = 12;
    opts.tick = Duration::from_millis(50);
    let run = spawn(opts);
    let l = Live { _nats: nats, client, ticks, run };
    l.wait_for_tick(14).await;
    l
}

impl Live {
    async fn wait_for_tick(&self, seq: u64) {
        for _ in 0..1200 {
            if self.ticks.lock().unwrap().keys().next_back().is_some_and(|&s| s >= seq) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("tick {seq} never arrived");
    }

    async fn set_json(&self, scenario: &str) -> ScenarioReply {
        let body = format!(r#"{{"scenario":"{scenario}"}}"#);
        let msg = self.client.request(CONTROL_SCENARIO_SET, body.into()).await.unwrap();
        assert!(msg.headers.is_none(), "no service error");
        serde_json::from_slice(&msg.payload).expect("JSON request gets a JSON reply")
    }

    async fn set_msgpack(&self, scenario: Scenario) -> ScenarioReply {
        let body = schemas::encode(&ScenarioRequest { scenario }).unwrap();
        let msg = self.client.request(CONTROL_SCENARIO_SET, body.into()).await.unwrap();
        schemas::decode(&msg.payload).expect("MessagePack request gets a MessagePack reply")
    }

    /// Mean of `f` over the named servers' records in ticks `from..=to`.
    fn mean(&self, names: &[String], from: u64, to: u64, f: impl Fn(&MetricRecord) -> f32) -> f32 {
        let ticks = self.ticks.lock().unwrap();
        let vals: Vec<f32> =
            ticks.range(from..=to).flat_map(|(_, recs)| recs.iter().filter(|r| names.contains(&r.server)).map(&f)).collect();
        assert!(!vals.is_empty(), "no records in ticks {from}..={to}");
        vals.iter().sum::<f32>() / vals.len() as f32
    }

    fn names_where(&self, pred: impl Fn(&MetricRecord) -> bool) -> Vec<String> {
        let ticks = self.ticks.lock().unwrap();
        let mut v: Vec<String> = ticks.values().next().unwrap().iter().filter(|r| pred(r)).map(|r| r.server.clone()).collect();
        v.sort();
        v
    }
}

fn cpu_used(r: &MetricRecord) -> f32 {
    100.0 - r.metrics.cpu_idle_pct.unwrap()
}
fn metric(m: Metric) -> impl Fn(&MetricRecord) -> f32 {
    move |r| r.metrics.get(m).unwrap()
}

#[tokio::test]
async fn critical_drives_a_quarter_of_the_fleet_to_90_cpu_and_93_memory() {
    let l = live(40, 21).await;
    let reply = l.set_json("critical").await;
    assert_eq!((reply.scenario, reply.previous, reply.fleet_size, reply.ramp_steps), (Scenario::Critical, Some(Scenario::Healthy), 40, 24));
    assert_eq!(reply.affected.len(), 10, "25 % of 40");
    let t = reply.tick;
    l.wait_for_tick(t + 36).await;

    let aff = &reply.affected;
    let others = l.names_where(|r| !aff.contains(&r.server));
    let (cpu0, mem0) = (l.mean(aff, t - 3, t - 1, cpu_used), l.mean(aff, t - 3, t - 1, metric(Metric::MemUsed)));
    let (cpu_mid, mem_mid) = (l.mean(aff, t + 10, t + 12, cpu_used), l.mean(aff, t + 10, t + 12, metric(Metric::MemUsed)));
    let (cpu1, mem1) = (l.mean(aff, t + 30, t + 36, cpu_used), l.mean(aff, t + 30, t + 36, metric(Metric::MemUsed)));
    eprintln!("critical: cpu {cpu0} {cpu_mid} {cpu1} mem {mem0} {mem_mid} {mem1}");
    assert!(cpu0 + 3.0 < cpu_mid && cpu_mid < cpu1, "CPU rises through the ramp: {cpu0} {cpu_mid} {cpu1}");
    assert!(mem0 + 1.0 < mem_mid && mem_mid < mem1, "memory rises through the ramp: {mem0} {mem_mid} {mem1}");
    assert!(cpu1 > 84.0 && mem1 > 87.0, "toward 90 / 93: {cpu1} / {mem1}");
    // The rest of the fleet follows its daily rhythm; the critical servers stand out of it.
    let rest = l.mean(&others, t + 30, t + 36, cpu_used);
    assert!(rest < 80.0 && cpu1 > rest + 12.0, "critical {cpu1} vs rest {rest}");

    // Status, asked in MessagePack, reports the same.
    let msg = l.client.request(CONTROL_SCENARIO_STATUS, "".into()).await.unwrap();
    let status: ScenarioReply = schemas::decode(&msg.payload).unwrap();
    assert_eq!((status.scenario, &status.affected, status.previous), (Scenario::Critical, aff, None));
    assert!(status.tick > t);
    l.run.trigger.fire();
}

#[tokio::test]
async fn critical_after_degrading_escalates_the_same_servers() {
    let l = live(45, 8).await;
    let d = l.set_json("degrading").await;
    assert_eq!((d.affected.len(), d.ramp_steps), (9, 60));
    // (Which way degrading moves a server depends on where it stands at that hour; the
    // simulation tests check the ramp at a fixed time. Here: it escalates from there.)
    l.wait_for_tick(d.tick + 20).await;
    let c = l.set_msgpack(Scenario::Critical).await;
    assert_eq!((c.previous, c.ramp_steps), (Some(Scenario::Degrading), 12));
    assert_eq!(c.affected, d.affected, "the degrading servers go critical");
    l.wait_for_tick(c.tick + 30).await;
    let cpu = l.mean(&c.affected, c.tick + 24, c.tick + 30, cpu_used);
    let mem = l.mean(&c.affected, c.tick + 24, c.tick + 30, metric(Metric::MemUsed));
    eprintln!("escalation: cpu {cpu} mem {mem}");
    assert!(cpu > 86.0 && mem > 89.0, "toward 92 / 95: {cpu} / {mem}");
    l.run.trigger.fire();
}

#[tokio::test]
async fn cascade_fails_two_databases_and_spreads_then_healthy_recovers() {
    let l = live(45, 4).await;
    let c = l.set_msgpack(Scenario::Cascade).await;
    let dbs: Vec<String> = c.affected.iter().filter(|s| Profile::detect(s) == Profile::Database).cloned().collect();
    assert_eq!(dbs.len(), 2, "two failing databases in {:?}", c.affected);
    let webs = l.names_where(|r| r.profile == Some(Profile::WebApi));
    let mls = l.names_where(|r| r.profile == Some(Profile::MlCompute));
    assert!(webs.iter().chain(&mls).all(|s| c.affected.contains(s)), "dependents are affected");
    assert!(l.names_where(|r| r.profile == Some(Profile::Generic)).iter().all(|s| !c.affected.contains(s)));
    let t = c.tick;
    l.wait_for_tick(t + 36).await;

    let before = |names: &[String], f: &dyn Fn(&MetricRecord) -> f32| l.mean(names, t - 3, t - 1, f);
    let after = |names: &[String], f: &dyn Fn(&MetricRecord) -> f32| l.mean(names, t + 30, t + 36, f);
    eprintln!(
        "cascade: db cpu {} iow {}->{} web back {}->{} ml cpu {}->{}",
        after(&dbs, &cpu_used),
        before(&dbs, &metric(Metric::CpuIowait)),
        after(&dbs, &metric(Metric::CpuIowait)),
        before(&webs, &metric(Metric::BackCloseWait)),
        after(&webs, &metric(Metric::BackCloseWait)),
        before(&mls, &cpu_used),
        after(&mls, &cpu_used)
    );
    assert!(after(&dbs, &cpu_used) > 88.0, "sources toward 95 % CPU");
    assert!(after(&dbs, &metric(Metric::CpuIowait)) > before(&dbs, &metric(Metric::CpuIowait)) + 15.0, "and 45 % iowait");
    let back = metric(Metric::BackCloseWait);
    assert!(after(&webs, &back) > before(&webs, &back) + 10.0, "web connections pile up");
    assert!(after(&mls, &cpu_used) < before(&mls, &cpu_used) - 10.0, "ML idles without jobs");

    let h = l.set_json("healthy").await;
    assert_eq!((h.scenario, h.previous, h.affected.len()), (Scenario::Healthy, Some(Scenario::Cascade), 0));
    l.wait_for_tick(h.tick + 30).await;
    let recovered = l.mean(&webs, h.tick + 25, h.tick + 30, &back);
    eprintln!("healthy: web back {recovered}");
    assert!(recovered < after(&webs, &back) - 10.0, "web connections drain after healthy: {recovered}");
    l.run.trigger.fire();
}

#[tokio::test]
async fn bad_requests_get_a_service_error_naming_the_field_and_the_service_is_listed() {
    let l = live(20, 2).await;
    for (body, field) in [(r#"{"scenario":"meltdown"}"#, "scenario: "), (r#"{"mode":"critical"}"#, "scenario: "), ("{oops", "request: ")] {
        let msg = l.client.request(CONTROL_SCENARIO_SET, body.to_string().into()).await.unwrap();
        let headers = msg.headers.expect("service error headers");
        let status = headers.get("Nats-Service-Error").map(|v| v.to_string()).unwrap_or_default();
        assert!(status.starts_with(field), "{body} -> {status}");
        assert_eq!(headers.get("Nats-Service-Error-Code").map(|v| v.to_string()).as_deref(), Some("400"));
    }
    // Still running and unchanged.
    let msg = l.client.request(CONTROL_SCENARIO_STATUS, "{}".into()).await.unwrap();
    let status: ScenarioReply = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(status.scenario, Scenario::Healthy);

    // `nats micro ls` / `nats micro stats` read these.
    let info = l.client.request("$SRV.INFO.generator", "".into()).await.unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["name"], "generator");
    let subjects: Vec<&str> = info["endpoints"].as_array().unwrap().iter().filter_map(|e| e["subject"].as_str()).collect();
    assert!(subjects.contains(&CONTROL_SCENARIO_SET) && subjects.contains(&CONTROL_SCENARIO_STATUS), "{subjects:?}");
    let stats = l.client.request("$SRV.STATS.generator", "".into()).await.unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.payload).unwrap();
    let set = stats["endpoints"].as_array().unwrap().iter().find(|e| e["subject"] == CONTROL_SCENARIO_SET).unwrap().clone();
    assert_eq!((set["num_requests"].as_u64(), set["num_errors"].as_u64()), (Some(3), Some(3)));
    l.run.trigger.fire();
}
