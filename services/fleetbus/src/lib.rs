//! How every Fleetcast process connects to NATS, in one place: the user and password may sit in
//! the URL (`nats://predictor:secret@host:4222`, which async-nats itself ignores) or in
//! `NATS_USER`/`NATS_PASSWORD`; the client retries the first connection and reconnects forever,
//! and connection events are logged with the service's name. Also the one reader of the
//! newest complete snapshot retained in JetStream, used by every late subscriber, and the one
//! batch publisher of every metrics source (`publish`), the one `/metrics` endpoint
//! (`metrics`), the one reader of servers' full forecasts in KV `forecasts` (`forecasts`),
//! and the bounded wait for JetStream publish acks (`acks`).

pub mod acks;
pub mod forecasts;
pub mod metrics;
pub mod process;
pub mod publish;

use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::{ConnectOptions, Event};
use schemas::{Snapshot, SnapshotAssembler};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("bad NATS URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("connecting to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
}

/// A NATS URL split into the address to dial and the credentials it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusUrl {
    /// The URL without credentials (safe to log).
    pub address: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

/// Splits `scheme://user:password@host:port` (every part but the host optional). Credentials
/// are percent-decoded so passwords may hold any character.
pub fn parse_url(url: &str) -> Result<BusUrl, ConnectError> {
    let bad = |reason: &str| ConnectError::BadUrl { url: redact(url), reason: reason.to_string() };
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("nats", url),
    };
    if rest.is_empty() {
        return Err(bad("no host"));
    }
    let (creds, host) = match rest.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, rest),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let (user, password) = match creds {
        None => (None, None),
        Some(c) => match c.split_once(':') {
            Some((u, p)) => (Some(percent_decode(u)), Some(percent_decode(p))),
            None => (Some(percent_decode(c)), None),
        },
    };
    Ok(BusUrl { address: format!("{scheme}://{host}"), user, password })
}

/// The URL with its password replaced by `***`, for logs.
pub fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, rest)), Some((_, host))) => {
            let user = rest.split(['@', ':']).next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Connection options for `service`: credentials from the URL or the environment, a name the
/// server shows in `nats server report connections`, and logged connection events.
pub fn options(service: &str, url: &BusUrl) -> ConnectOptions {
    let user = url.user.clone().or_else(|| std::env::var("NATS_USER").ok());
    let password = url.password.clone().or_else(|| std::env::var("NATS_PASSWORD").ok());
    let mut opts = ConnectOptions::new().name(service).retry_on_initial_connect();
    if let Some(user) = user {
        opts = opts.user_and_password(user, password.unwrap_or_default());
    }
    let name = service.to_string();
    opts.event_callback(move |event| {
        let name = name.clone();
        async move {
            match event {
                Event::Connected => tracing::info!(service = %name, "connected to NATS"),
                Event::Disconnected => tracing::warn!(service = %name, "disconnected from NATS; reconnecting"),
                Event::SlowConsumer(sid) => tracing::warn!(service = %name, sid, "slow consumer: messages dropped"),
                other => tracing::warn!(service = %name, event = %other, "NATS event"),
            }
        }
    })
}

/// Connects `service` to the bus at `url` (credentials allowed in the URL). Retries until the
/// server answers; reconnects by itself afterwards.
pub async fn connect(service: &str, url: &str) -> Result<async_nats::Client, ConnectError> {
    let parsed = parse_url(url)?;
    options(service, &parsed).connect(parsed.address.as_str()).await.map_err(|source| ConnectError::Connect { url: redact(url), source })
}

/// The newest complete snapshot on `predictions.current` (the whole fleet's, unpartitioned)
/// kept in the `PREDICTIONS` stream, for a late subscriber; see [`latest_snapshot_on`].
pub async fn latest_snapshot(js: &async_nats::jetstream::Context) -> anyhow::Result<Option<Snapshot>> {
    let stream = js.get_stream(schemas::subjects::STREAM_PREDICTIONS).await?;
    latest_snapshot_on(&stream, schemas::subjects::PREDICTIONS_CURRENT).await
}

/// The newest whole snapshot on `subject` in `stream`. Its last message tells which part it is;
/// the parts of its snapshot precede it on the subject back to back, but other partitions'
/// messages may sit between them in the stream. So the subject's messages are read forward
/// (`next_by_subject` skips the others) from a little before the last, through a
/// `SnapshotAssembler`; when that window holds no whole snapshot (the newest was cut off or
/// is still being published), from further back, for the one before it.
pub async fn latest_snapshot_on(stream: &Stream, subject: &str) -> anyhow::Result<Option<Snapshot>> {
    let tail = match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => m,
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // Back to back its earlier parts are `index` messages back; every other partition may have
    // published as many in between.
    let (index, spread) = match schemas::decode::<Snapshot>(&tail.payload) {
        Ok(last) => (u64::from(last.part.index), u64::from(last.partition.map_or(1, |p| p.count.max(1)))),
        Err(_) => (0, 1),
    };
    let first = stream.cached_info().state.first_sequence.max(1);
    let mut back = index * spread;
    for _ in 0..4 {
        let start = tail.sequence.saturating_sub(back).max(first);
        let mut asm = SnapshotAssembler::default();
        let mut whole = None;
        let mut seq = start;
        while seq <= tail.sequence {
            let m = match stream.get_first_raw_message_by_subject(subject, seq).await {
                Ok(m) => m,
                Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => break,
                Err(e) => return Err(e.into()),
            };
            if m.sequence > tail.sequence {
                break;
            }
            // A part that does not decode, is of another snapshot version or names a part out of its
            // range is skipped, as the live subscribers skip it.
            match schemas::decode::<Snapshot>(&m.payload) {
                Ok(p) if p.v == schemas::SNAPSHOT_VERSION && (p.part.count <= 1 || p.part.index < p.part.count) => {
                    if let Some(w) = asm.push(p) {
                        whole = Some(w);
                    }
                }
                _ => {}
            }
            seq = m.sequence + 1;
        }
        if whole.is_some() || start <= first {
            return Ok(whole);
        }
        back = (back + spread) * 4;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_credentials() {
        let u = parse_url("nats://predictor:s%40cret@127.0.0.1:4222").unwrap();
        assert_eq!(u.address, "nats://127.0.0.1:4222");
        assert_eq!(u.user.as_deref(), Some("predictor"));
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        let plain = parse_url("127.0.0.1:4222").unwrap();
        assert_eq!((plain.address.as_str(), plain.user), ("nats://127.0.0.1:4222", None));
        assert!(parse_url("nats://").is_err());
        assert!(parse_url("nats://user:pw@").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("nats://gen:topsecret@h:1"), "nats://gen:***@h:1");
        assert_eq!(redact("nats://h:1"), "nats://h:1");
    }
}
