//! What every test starts: nats-server with the METRICS stream, the `ingest` binary, and
//! readers of what it publishes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use futures::StreamExt;
use ingest::prompb::{encode_body, Label, Sample, TimeSeries, WriteRequest};
use schemas::subjects::{METRICS_BATCH_ALL, METRICS_REJECTED, STREAM_METRICS};
use schemas::{MetricsBatch, Rejection, STEP_MS};
use testkit::NatsServer;

pub fn now_ms() -> i64 {
    ingest::remote_write::now_ms()
}

/// A step boundary `steps` steps before now.
pub fn boundary_ago(steps: i64) -> i64 {
    ingest::align::step_start(now_ms()) - steps * STEP_MS
}

pub struct Stack {
    /// Kept alive for the test's length.
    _nats: NatsServer,
    _client: async_nats::Client,
    pub ingest: Child,
    pub http: u16,
    pub batches: async_nats::Subscriber,
    pub rejected: async_nats::Subscriber,
    kept: Vec<Rejection>,
    pub log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// nats-server + METRICS stream + `ingest --listen` with `extra` args; waits for `/-/ready`.
    pub async fn start(extra: &[&str]) -> Stack {
        Stack::start_at(testkit::free_port(), extra).await
    }

    /// As [`Stack::start`], listening on loopback port `http` (a sender configured before
    /// ingest starts, as a Prometheus is, needs the address first).
    pub async fn start_at(http: u16, extra: &[&str]) -> Stack {
        let nats = NatsServer::start().expect("nats-server");
        let client = nats.connect().await.expect("connect");
        jetstream::new(client.clone())
            .get_or_create_stream(stream::Config {
                name: STREAM_METRICS.into(),
                subjects: vec![METRICS_BATCH_ALL.into()],
                ..Default::default()
            })
            .await
            .expect("METRICS stream");
        let batches = client.subscribe(METRICS_BATCH_ALL).await.expect("sub");
        let rejected = client.subscribe(METRICS_REJECTED).await.expect("sub");
        client.flush().await.expect("flush");
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("ingest.log");
        let ingest = Command::new(env!("CARGO_BIN_EXE_ingest"))
            .args(["--nats-url", &nats.url(), "--listen", &format!("127.0.0.1:{http}"), "--source", "ittest"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start ingest");
        let stack = Stack { _nats: nats, _client: client, ingest, http, batches, rejected, kept: Vec::new(), log, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(stack.url("/-/ready")).await.ok().map(|r| r.status().as_u16()) != Some(200) {
            assert!(Instant::now() < deadline, "ingest not ready; log:\n{}", stack.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stack
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// POSTs `body` with the remote-write headers (`content_type`, `encoding` overridable).
    pub async fn post(&self, body: Vec<u8>, content_type: &str, encoding: &str, token: Option<&str>) -> (u16, String) {
        let mut req = reqwest::Client::new()
            .post(self.url("/api/v1/write"))
            .header("Content-Type", content_type)
            .header("Content-Encoding", encoding)
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("POST");
        (resp.status().as_u16(), resp.text().await.unwrap_or_default())
    }

    /// POSTs a well-formed remote-write request.
    pub async fn write(&self, req: &WriteRequest) -> u16 {
        self.post(encode_body(req), "application/x-protobuf", "snappy", None).await.0
    }

    /// The next batch on `metrics.batch.>`, within `within`.
    pub async fn next_batch(&mut self, within: Duration) -> MetricsBatch {
        let msg = tokio::time::timeout(within, self.batches.next())
            .await
            .unwrap_or_else(|_| panic!("no batch within {within:?}; ingest log:\n{}", self.log_text()))
            .expect("subscription open");
        let d = MetricsBatch::decode_lenient(&msg.payload).expect("a valid batch");
        MetricsBatch::new(d.source, d.seq, d.clock_ms, d.records.into_iter().map(|r| r.expect("valid record")).collect())
    }

    /// The first rejection matching `pred` (read earlier and kept, or arriving within
    /// `within`); the others read meanwhile are kept for later calls, in order.
    pub async fn rejection_where(&mut self, within: Duration, pred: impl Fn(&Rejection) -> bool) -> Rejection {
        if let Some(i) = self.kept.iter().position(&pred) {
            return self.kept.remove(i);
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, self.rejected.next()).await.ok().flatten();
            let msg = msg.unwrap_or_else(|| panic!("no matching rejection within {within:?}"));
            let r: Rejection = schemas::decode(&msg.payload).expect("a Rejection");
            if pred(&r) {
                return r;
            }
            self.kept.push(r);
        }
    }

    /// `fleetcast_ingest_<name>_total{...="<value>"}` from `/metrics`.
    pub async fn counter(&self, name: &str, value: &str) -> u64 {
        let text = reqwest::get(self.url("/metrics")).await.expect("GET /metrics").text().await.unwrap_or_default();
        let prefix = format!("fleetcast_ingest_{name}_total{{");
        text.lines()
            .filter(|l| l.starts_with(&prefix) && l.contains(&format!("=\"{value}\"}}")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.ingest.kill();
        let _ = self.ingest.wait();
    }
}

/// A series with `labels` (`__name__` first) and samples `(ts_ms, value)`.
pub fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels.iter().map(|(n, v)| Label::new(n, v)).collect(),
        samples: samples.iter().map(|&(timestamp, value)| Sample { value, timestamp }).collect(),
    }
}

pub fn request(series: Vec<TimeSeries>) -> WriteRequest {
    WriteRequest { timeseries: series }
}
