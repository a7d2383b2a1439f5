//! One server's full forecast (curves, recent actuals, explanation, thresholds), read on
//! demand: the snapshot carries only summaries, the predictor keeps each server's
//! `ServerForecast` in KV `forecasts` (key = server). The server view makes one KV get per
//! request (a direct get, answered by any replica), so a page shows the curves as of the
//! latest tick, which the predictor stores before it publishes that tick's snapshot.
//!
//! `--demo-fixture` (no broker) keeps the generated fleet's forecasts in memory instead.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_nats::jetstream::kv;
use schemas::ServerForecast;
use tokio::sync::OnceCell;

use crate::locks::{read, write};

/// Why a forecast could not be read (the server view says so; nothing panics).
#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    #[error("not connected to NATS")]
    NotConnected,
    #[error(transparent)]
    Read(#[from] fleetbus::forecasts::ForecastError),
}

/// Where the server view reads forecasts from.
#[derive(Default)]
pub struct Forecasts {
    /// Opened on the first request (the predictor may create the bucket after we start).
    bucket: OnceCell<kv::Store>,
    /// `--demo-fixture`: the generated fleet's forecasts, by server.
    fixture: RwLock<Option<Arc<HashMap<String, ServerForecast>>>>,
}

impl Forecasts {
    /// Serves these forecasts from memory from now on (`--demo-fixture`, tests without a broker).
    pub fn set_fixture(&self, forecasts: Vec<ServerForecast>) {
        let map = forecasts.into_iter().map(|f| (f.server.clone(), f)).collect();
        *write(&self.fixture) = Some(Arc::new(map));
    }

    /// The latest forecast of `server`: `Ok(None)` when it has no entry (expired, or never
    /// written). With a fixture, from it; else from KV `forecasts` over `client`.
    pub async fn get(&self, client: Option<&async_nats::Client>, server: &str) -> Result<Option<ServerForecast>, ForecastError> {
        let fixture = read(&self.fixture).clone();
        if let Some(map) = fixture {
            return Ok(map.get(server).cloned());
        }
        let client = client.ok_or(ForecastError::NotConnected)?;
        let js = async_nats::jetstream::new(client.clone());
        let bucket = self.bucket.get_or_try_init(|| fleetbus::forecasts::open(&js)).await?;
        Ok(fleetbus::forecasts::get(bucket, server).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fixture_serves_its_forecasts_without_a_broker() {
        let f = Forecasts::default();
        assert!(matches!(f.get(None, "ppweb001").await, Err(ForecastError::NotConnected)));
        f.set_fixture(vec![crate::fixture::server("ppweb001", schemas::Profile::WebApi, 50.0, 0)]);
        assert_eq!(f.get(None, "ppweb001").await.unwrap().map(|s| s.server), Some("ppweb001".to_string()));
        assert!(f.get(None, "ppweb002").await.unwrap().is_none());
    }
}
