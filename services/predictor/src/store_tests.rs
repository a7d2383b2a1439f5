//! [`WriteError`]'s classification: from each kind of publish error the client gives, and from
//! the errors a real nats-server produces for an absent stream, a refused message and a broker
//! that is gone.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishError, context::PublishErrorKind};
use bytes::Bytes;

use super::{publish_all, WriteError};

/// A JetStream API error as the server sends it (`{"code", "err_code", "description"}`).
fn api_error(code: usize, err_code: u64) -> PublishError {
    let json = format!(r#"{{"code":{code},"err_code":{err_code},"description":"from the test"}}"#);
    let api: jetstream::Error = serde_json::from_str(&json).expect("an API error");
    PublishError::with_source(PublishErrorKind::Other, api)
}

fn retryable(e: PublishError) -> bool {
    WriteError::from(e).is_retryable()
}

#[test]
fn no_answer_yet_is_retryable() {
    assert!(retryable(PublishError::new(PublishErrorKind::TimedOut)));
    assert!(retryable(PublishError::new(PublishErrorKind::BrokenPipe)));
    assert!(retryable(PublishError::new(PublishErrorKind::StreamNotFound)), "no responders");
    assert!(retryable(PublishError::new(PublishErrorKind::MaxAckPending)));
    assert!(retryable(api_error(503, 10008)), "JetStream temporarily unavailable");
    assert!(retryable(api_error(500, 10118)), "stream offline while a cluster elects a leader");
}

#[test]
fn a_refused_write_is_not_retryable() {
    assert!(!retryable(PublishError::new(PublishErrorKind::MaxPayloadExceeded)));
    assert!(!retryable(PublishError::new(PublishErrorKind::WrongLastSequence)));
    assert!(!retryable(PublishError::new(PublishErrorKind::WrongLastMessageId)));
    assert!(!retryable(api_error(400, 10054)), "message over the stream's maximum size");
    assert!(!retryable(PublishError::new(PublishErrorKind::Other)), "client-side, nothing sent");
    let encode = WriteError::from(schemas::CodecError::Encode(rmp_serde::encode::Error::UnknownLength));
    assert!(!encode.is_retryable());
}

async fn write_one(js: &jetstream::Context, subject: &str, bytes: usize) -> Result<(), WriteError> {
    publish_all(js, vec![(subject.to_string(), Bytes::from(vec![7u8; bytes]))]).await
}

#[tokio::test]
async fn real_broker_errors_are_classified() {
    let mut nats = testkit::NatsServer::start_with_config("max_payload: 65536\n", &[]).expect("nats-server");
    let client = nats.connect().await.expect("connect");
    let js = jetstream::ContextBuilder::new().timeout(Duration::from_millis(500)).build(client.clone());
    js.create_stream(jetstream::stream::Config {
        name: "SMALL".into(),
        subjects: vec!["small.>".into()],
        max_message_size: 64,
        ..Default::default()
    })
    .await
    .expect("stream");
    // The client knows the server's max_payload only after its INFO: wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while client.server_info().max_payload != 65536 {
        assert!(tokio::time::Instant::now() < deadline, "no INFO from the server");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    write_one(&js, "small.ok", 16).await.expect("a write the stream takes");
    let e = write_one(&js, "nostream.x", 16).await.expect_err("no stream on that subject");
    assert!(e.is_retryable(), "no responders: {e}");
    let e = write_one(&js, "small.big", 1024).await.expect_err("over the stream's max message size");
    assert!(!e.is_retryable(), "the stream refuses it: {e}");
    let e = write_one(&js, "small.huge", 128 * 1024).await.expect_err("over the server's max_payload");
    assert!(!e.is_retryable(), "never fits: {e}");

    nats.stop();
    let e = write_one(&js, "small.ok", 16).await.expect_err("the broker is gone");
    assert!(e.is_retryable(), "broker gone: {e}");
}
