//! Posting to Alertmanager's API v2 (`POST <base>/api/v2/alerts`, a JSON array of
//! `postableAlert`, answered `200` with an empty body). One [`Alertmanager`] per configured
//! URL; [`Fanout`] posts to several at once and keeps, per round, which of them still owe an
//! answer, so a caller can retry only those.

use std::time::Duration;

use crate::mapping::PostableAlert;
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("POST {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("POST {url}: HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
}

impl PostError {
    /// Whether trying again may help: unreachable, a timeout, 5xx, 429. A 4xx says the alerts
    /// themselves are wrong; posting them again would fail the same way and hold up the stream.
    pub fn retryable(&self) -> bool {
        match self {
            PostError::Unreachable { .. } => true,
            PostError::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
        }
    }
}

/// One Alertmanager, by base URL (`http://host:9093`).
#[derive(Debug, Clone)]
pub struct Alertmanager {
    pub base: String,
    alerts_url: String,
    client: reqwest::Client,
}

impl Alertmanager {
    /// `base` without a trailing slash; `timeout` bounds one whole POST.
    pub fn new(base: &str, timeout: Duration) -> Result<Alertmanager, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).build()?;
        Ok(Alertmanager { base: base.to_string(), alerts_url: format!("{base}/api/v2/alerts"), client })
    }

    /// Posts `alerts` (one request, any number of alerts). Ok on any 2xx.
    pub async fn post(&self, alerts: &[PostableAlert]) -> Result<(), PostError> {
        let url = &self.alerts_url;
        let resp = self.client.post(url).json(alerts).send().await.map_err(|source| PostError::Unreachable { url: url.clone(), source })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let mut body = resp.text().await.unwrap_or_default();
        body.truncate(500);
        Err(PostError::Status { url: url.clone(), status: status.as_u16(), body })
    }
}

/// Every configured Alertmanager.
#[derive(Debug, Clone)]
pub struct Fanout {
    pub targets: Vec<Alertmanager>,
    metrics: Metrics,
}

impl Fanout {
    pub fn new(urls: &[String], timeout: Duration, metrics: Metrics) -> Result<Fanout, reqwest::Error> {
        let targets = urls.iter().map(|u| Alertmanager::new(u, timeout)).collect::<Result<Vec<_>, _>>()?;
        Ok(Fanout { targets, metrics })
    }

    /// Indexes of every target, for a first [`round`](Self::round).
    pub fn all(&self) -> Vec<usize> {
        (0..self.targets.len()).collect()
    }

    /// Posts `alerts` to the targets in `pending` at once; removes from `pending` each that
    /// accepted them, or refused them for good (4xx, logged and counted as `rejected`). What
    /// stays in `pending` failed in a way worth retrying.
    #[tracing::instrument(level = "debug", skip_all, fields(alerts = alerts.len(), targets = pending.len()))]
    pub async fn round(&self, pending: &mut Vec<usize>, alerts: &[PostableAlert]) {
        if alerts.is_empty() {
            pending.clear();
            return;
        }
        let posts = pending.iter().map(|&i| async move { (i, self.targets[i].post(alerts).await) });
        let results = futures::future::join_all(posts).await;
        pending.clear();
        for (i, result) in results {
            let am = &self.targets[i].base;
            match result {
                Ok(()) => self.metrics.count_sent(am, "accepted", alerts.len()),
                Err(e) if e.retryable() => {
                    tracing::warn!(alertmanager = %am, error = %e, "Alertmanager did not take the alerts; will retry");
                    self.metrics.count_sent(am, "failed", alerts.len());
                    pending.push(i);
                }
                Err(e) => {
                    tracing::error!(alertmanager = %am, error = %e, "Alertmanager refused the alerts; skipping them");
                    self.metrics.count_sent(am, "rejected", alerts.len());
                }
            }
        }
    }
}
