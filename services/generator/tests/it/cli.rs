//! The real binary: flags and env vars, the readiness line `just up` waits for, and a
//! graceful stop on SIGTERM with every published tick acknowledged.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use testkit::NatsServer;

#[tokio::test]
async fn streams_until_sigterm_then_stops_cleanly() {
    let nats = NatsServer::start().unwrap();
    let client = nats.connect().await.unwrap();
    create_stream(&client).await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_generator"))
        .args(["--servers", "20", "--backfill-steps", "6", "--tick", "100ms", "--scenario", "degrading"])
        .env("NATS_URL", nats.url())
        .env("GENERATOR_SEED", "5")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_stream(&client).await.len() < 10 {
        assert!(Instant::now() < deadline, "the generator did not stream");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = client.request(schemas::subjects::CONTROL_SCENARIO_STATUS, "{}".into()).await.unwrap();
    let reply: schemas::ScenarioReply = serde_json::from_slice(&status.payload).unwrap();
    assert_eq!((reply.scenario, reply.affected.len()), (schemas::Scenario::Degrading, 4), "--scenario applies after the backfill");

    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(text.contains("generator ready"), "{text}");
    assert!(text.contains("shutdown requested") && text.contains("generator stopped"), "{text}");
    let stored = read_stream(&client).await;
    let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (0..stored.len() as u64).collect::<Vec<_>>(), "every tick, in order, once");
}

#[test]
fn bad_flags_are_refused_with_the_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_generator")).args(["--servers", "3", "--nats-url", "nats://127.0.0.1:1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("servers = 3"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_generator")).args(["--tick", "often"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tick"));
    let out = Command::new(env!("CARGO_BIN_EXE_generator")).args(["--source", "a.b", "--nats-url", "nats://127.0.0.1:1"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("source \"a.b\""), "{}", String::from_utf8_lossy(&out.stderr));
}
