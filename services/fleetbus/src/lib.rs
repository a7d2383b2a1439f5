//! How every Fleetcast process connects to NATS, in one place: the user and password may sit in
//! the URL (`nats://predictor:secret@host:4222`, which async-nats itself ignores) or in
//! `NATS_USER`/`NATS_PASSWORD`; the client retries the first connection and reconnects forever,
//! and connection events are logged with the service's name. Also the one reader of the
//! newest complete snapshot retained in JetStream, used by every late subscriber, and the one
//! batch publisher of every metrics source (`publish`), and the one `/metrics` endpoint
//! (`metrics`).

pub mod metrics;
pub mod process;
pub mod publish;

use async_nats::{ConnectOptions, Event};

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

/// The newest complete snapshot kept in the `PREDICTIONS` stream, for a late subscriber: the
/// last message tells which part it is; the parts of its snapshot precede it back to back.
/// A snapshot still being published is skipped for the one before it.
pub async fn latest_snapshot(js: &async_nats::jetstream::Context) -> anyhow::Result<Option<schemas::Snapshot>> {
    let stream = js.get_stream(schemas::subjects::STREAM_PREDICTIONS).await?;
    let info = stream.get_info().await?;
    if info.state.messages == 0 {
        return Ok(None);
    }
    let (first, mut last) = (info.state.first_sequence, info.state.last_sequence);
    for _ in 0..4 {
        if last < first {
            return Ok(None);
        }
        let tail: schemas::Snapshot = schemas::decode(&stream.get_raw_message(last).await?.payload)?;
        let (index, count) = (u64::from(tail.part.index), u64::from(tail.part.count.max(1)));
        if index + 1 != count {
            last = last.saturating_sub(index + 1);
            continue;
        }
        let start = last - index;
        if start < first {
            return Ok(None);
        }
        let mut asm = schemas::SnapshotAssembler::default();
        let mut whole = None;
        for seq in start..=last {
            let part: schemas::Snapshot = schemas::decode(&stream.get_raw_message(seq).await?.payload)?;
            whole = asm.push(part);
        }
        return Ok(whole);
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
