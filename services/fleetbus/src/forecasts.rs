//! Servers' full forecasts from KV `forecasts` (key = server, value = `ServerForecast`
//! MessagePack), which the predictor writes each tick before it publishes the snapshot of
//! their summaries. The one reader of that bucket: the dashboard's server view, tools and
//! tests that need curves, recent actuals or the explanation.

use async_nats::jetstream::{self, kv};
use schemas::{ServerForecast, Snapshot};

/// Why a forecast could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    #[error("the KV bucket `forecasts` cannot be opened ({0}); is the predictor running?")]
    Bucket(String),
    #[error("reading KV `forecasts`: {0}")]
    Get(String),
    #[error("the KV entry of {server} does not decode as a ServerForecast: {source}")]
    Decode {
        server: String,
        #[source]
        source: schemas::CodecError,
    },
}

/// Opens the bucket (one JetStream API request; keep the store for later gets).
pub async fn open(js: &jetstream::Context) -> Result<kv::Store, ForecastError> {
    js.get_key_value(schemas::subjects::BUCKET_FORECASTS).await.map_err(|e| ForecastError::Bucket(e.to_string()))
}

/// The latest forecast of `server`; `None` when it has no entry (never written, expired) or
/// its name cannot be a KV key (so it cannot have one).
pub async fn get(bucket: &kv::Store, server: &str) -> Result<Option<ServerForecast>, ForecastError> {
    if !valid_key(server) {
        return Ok(None);
    }
    match bucket.get(server).await.map_err(|e| ForecastError::Get(e.to_string()))? {
        Some(bytes) => schemas::decode(&bytes).map(Some).map_err(|source| ForecastError::Decode { server: server.to_string(), source }),
        None => Ok(None),
    }
}

/// The forecasts of every server in `snap`, in its order (tools and tests): an error names
/// the first server without one.
pub async fn of_snapshot(client: &async_nats::Client, snap: &Snapshot) -> anyhow::Result<Vec<ServerForecast>> {
    let bucket = open(&jetstream::new(client.clone())).await?;
    let mut out = Vec::with_capacity(snap.servers.len());
    for s in &snap.servers {
        let f = get(&bucket, &s.server).await?.ok_or_else(|| anyhow::anyhow!("{} has no entry in KV forecasts", s.server))?;
        out.push(f);
    }
    Ok(out)
}

/// A key NATS KV accepts: `[-/_=.a-zA-Z0-9]+`, not starting or ending with `.`.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('.')
        && !key.ends_with('.')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'=' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_kv_refuses_are_not_looked_up() {
        assert!(valid_key("ppweb001") && valid_key("web_1-a") && valid_key("a.b"));
        assert!(!valid_key("") && !valid_key("<script>alert(\"x\")</script>") && !valid_key("a b") && !valid_key(".a") && !valid_key("a."));
    }
}
