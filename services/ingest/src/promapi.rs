//! A client of a Prometheus-compatible query API (`/api/v1/query`, `/api/v1/query_range`):
//! optional bearer or basic auth, a timeout per query, retries with backoff for what is worth
//! retrying (connection refused or reset, a timeout, 5xx, 429), every failed attempt counted in
//! `query_failures{reason}` and logged with its reason. The answer's body is returned as text;
//! `promjson` reads it, bounded by the fleet limit. Exists apart from `pull` so the loop's logic
//! and the HTTP details stay small and separately tested.

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::stats::Stats;

/// Why one query attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("request to {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url}: unexpected answer: {what}")]
    Shape { url: String, what: String },
}

impl QueryError {
    /// Worth retrying: the connection, a timeout, a 5xx or 429. A 4xx (a bad query) is not.
    pub fn retryable(&self) -> bool {
        match self {
            QueryError::Http { .. } => true,
            QueryError::Status { status, .. } => *status >= 500 || *status == 429,
            QueryError::Shape { .. } => false,
        }
    }

    /// The `reason` label of `query_failures`: `timeout`, `unreachable` (refused, reset, DNS),
    /// `status_5xx`, `status_429`, `status_4xx`, `bad_answer`.
    pub fn reason(&self) -> &'static str {
        match self {
            QueryError::Http { source, .. } if source.is_timeout() => "timeout",
            QueryError::Http { .. } => "unreachable",
            QueryError::Status { status, .. } if *status >= 500 => "status_5xx",
            QueryError::Status { status: 429, .. } => "status_429",
            QueryError::Status { .. } => "status_4xx",
            QueryError::Shape { .. } => "bad_answer",
        }
    }
}

/// Where and how to ask.
#[derive(Debug, Clone)]
pub struct PullConfig {
    /// Base URL, e.g. `http://prometheus:9090` (the API is under `/api/v1/`).
    pub url: String,
    /// Bearer token sent with every query.
    pub bearer: Option<String>,
    /// `user:password`.
    pub basic: Option<String>,
    /// Label naming the host in every answer.
    pub host_label: String,
    /// History read at start and for each new host.
    pub backfill: Duration,
    /// Wait after a step's end before querying it.
    pub delay: Duration,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Hosts kept at most; further hosts in an answer are cut and counted.
    pub max_hosts: usize,
    /// Attempts per query (1 = no retry); backoff 0.5 s doubling.
    pub attempts: u32,
}

/// A client of one Prometheus query API.
pub struct Prom {
    http: reqwest::Client,
    /// Where and how it asks.
    pub cfg: PullConfig,
    stats: Arc<Stats>,
}

impl Prom {
    /// A client with `cfg.timeout` per attempt; failed attempts are counted in `stats`.
    pub fn new(cfg: PullConfig, stats: Arc<Stats>) -> Result<Prom, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(cfg.timeout).build()?;
        Ok(Prom { http, cfg, stats })
    }

    /// `POST /api/v1/query` (at `time_ms`) or `/api/v1/query_range` (`range`: start, end in
    /// ms, step 300 s): the answer's body. Retried per [`QueryError::retryable`] with backoff
    /// (0.5 s doubling, at most 10 s) up to `cfg.attempts`; `what` (the metric) names the query
    /// in the log.
    pub async fn query(&self, what: &str, expr: &str, time_ms: i64, range: Option<(i64, i64)>) -> Result<String, QueryError> {
        let mut backoff = Duration::from_millis(500);
        let mut attempt = 1;
        loop {
            let result = self.query_once(expr, time_ms, range).await;
            let Err(e) = &result else {
                return result;
            };
            self.stats.add("query_failures", "reason", e.reason(), 1);
            if !e.retryable() || attempt >= self.cfg.attempts {
                return result;
            }
            warn!(
                metric = what,
                reason = e.reason(),
                "query failed (attempt {attempt} of {}): {e}; retrying in {backoff:?}",
                self.cfg.attempts
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
            attempt += 1;
        }
    }

    async fn query_once(&self, expr: &str, time_ms: i64, range: Option<(i64, i64)>) -> Result<String, QueryError> {
        let secs = |ms: i64| format!("{:.3}", ms as f64 / 1e3);
        let (path, form) = match range {
            None => ("query", vec![("query", expr.to_owned()), ("time", secs(time_ms))]),
            Some((start, end)) => {
                ("query_range", vec![("query", expr.to_owned()), ("start", secs(start)), ("end", secs(end)), ("step", "300".to_owned())])
            }
        };
        let url = format!("{}/api/v1/{path}", self.cfg.url.trim_end_matches('/'));
        let mut req = self.http.post(&url).form(&form);
        if let Some(token) = &self.cfg.bearer {
            req = req.bearer_auth(token);
        }
        if let Some((user, password)) = self.cfg.basic.as_deref().and_then(|b| b.split_once(':')) {
            req = req.basic_auth(user, Some(password));
        }
        let http_err = |source| QueryError::Http { url: url.clone(), source };
        let resp = req.send().await.map_err(http_err)?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(http_err)?;
        if status != 200 {
            return Err(QueryError::Status { url, status, body: body.chars().take(300).collect() });
        }
        Ok(body)
    }
}
