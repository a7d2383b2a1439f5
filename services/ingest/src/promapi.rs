//! A client of a Prometheus-compatible query API (`/api/v1/query`, `/api/v1/query_range`):
//! optional bearer or basic auth, a timeout per query, retries with backoff for what is worth
//! retrying (connection, timeout, 5xx, 429), and the JSON answer read into host -> points.
//! Exists apart from `pull` so the loop's logic and the HTTP details stay small and separately
//! tested.

use std::time::Duration;

use serde_json::Value;
use tracing::warn;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("request to {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
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
}

/// Where and how to ask.
#[derive(Debug, Clone)]
pub struct PullConfig {
    /// Base URL, e.g. `http://prometheus:9090` (the API is under `/api/v1/`).
    pub url: String,
    pub bearer: Option<String>,
    /// `user:password`.
    pub basic: Option<String>,
    pub host_label: String,
    pub backfill: Duration,
    pub delay: Duration,
    pub timeout: Duration,
    pub max_hosts: usize,
    /// Attempts per query (1 = no retry); backoff 0.5 s doubling.
    pub attempts: u32,
}

/// One series of an answer: the host label's raw value and its points (Unix ms, value).
pub type Series = (String, Vec<(i64, f64)>);

/// A client of one Prometheus query API.
pub struct Prom {
    http: reqwest::Client,
    pub cfg: PullConfig,
}

impl Prom {
    pub fn new(cfg: PullConfig) -> Result<Prom, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(cfg.timeout).build()?;
        Ok(Prom { http, cfg })
    }

    /// `POST /api/v1/query` (at `time_ms`) or `/api/v1/query_range` (`range`: start, end in
    /// ms, step 300 s), retried per [`QueryError::retryable`].
    pub async fn query(
        &self,
        expr: &str,
        time_ms: i64,
        range: Option<(i64, i64)>,
    ) -> Result<Vec<Series>, QueryError> {
        let mut backoff = Duration::from_millis(500);
        let mut attempt = 1;
        loop {
            match self.query_once(expr, time_ms, range).await {
                Err(e) if e.retryable() && attempt < self.cfg.attempts => {
                    warn!("query failed (attempt {attempt}): {e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn query_once(
        &self,
        expr: &str,
        time_ms: i64,
        range: Option<(i64, i64)>,
    ) -> Result<Vec<Series>, QueryError> {
        let secs = |ms: i64| format!("{:.3}", ms as f64 / 1e3);
        let (path, form) = match range {
            None => (
                "query",
                vec![("query", expr.to_owned()), ("time", secs(time_ms))],
            ),
            Some((start, end)) => (
                "query_range",
                vec![
                    ("query", expr.to_owned()),
                    ("start", secs(start)),
                    ("end", secs(end)),
                    ("step", "300".to_owned()),
                ],
            ),
        };
        let url = format!("{}/api/v1/{path}", self.cfg.url.trim_end_matches('/'));
        let mut req = self.http.post(&url).form(&form);
        if let Some(token) = &self.cfg.bearer {
            req = req.bearer_auth(token);
        }
        if let Some((user, password)) = self.cfg.basic.as_deref().and_then(|b| b.split_once(':')) {
            req = req.basic_auth(user, Some(password));
        }
        let http_err = |source| QueryError::Http {
            url: url.clone(),
            source,
        };
        let resp = req.send().await.map_err(http_err)?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(http_err)?;
        if status != 200 {
            return Err(QueryError::Status {
                url,
                status,
                body: body.chars().take(300).collect(),
            });
        }
        parse(&body, &self.cfg.host_label).map_err(|what| QueryError::Shape { url, what })
    }
}

/// Reads a `vector` or `matrix` answer: `{"status":"success","data":{"result":[{"metric":{..},
/// "value":[t,"v"]} | "values":[[t,"v"],..]]}}`. Series without the host label are skipped.
pub fn parse(body: &str, host_label: &str) -> Result<Vec<Series>, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if v["status"] != "success" {
        return Err(format!("status {} ({})", v["status"], v["error"]));
    }
    let result = v["data"]["result"]
        .as_array()
        .ok_or("no data.result array")?;
    let point = |p: &Value| -> Option<(i64, f64)> {
        let t = p.get(0)?.as_f64()?;
        let v = p.get(1)?.as_str()?.parse::<f64>().ok()?;
        Some(((t * 1e3).round() as i64, v))
    };
    let mut out = Vec::with_capacity(result.len());
    for s in result {
        let Some(host) = s["metric"][host_label].as_str() else {
            continue;
        };
        let points = match (&s["value"], s["values"].as_array()) {
            (Value::Array(_), _) => point(&s["value"]).into_iter().collect(),
            (_, Some(vals)) => vals.iter().filter_map(point).collect(),
            _ => Vec::new(),
        };
        out.push((host.to_owned(), points));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vectors_and_matrices() {
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"instance":"h1:9100"},"value":[1700000100,"12.5"]},
            {"metric":{"job":"x"},"value":[1700000100,"1"]},
            {"metric":{"instance":"h2:9100"},"value":[1700000100,"NaN"]}]}}"#;
        let s = parse(vector, "instance").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0],
            ("h1:9100".to_owned(), vec![(1_700_000_100_000, 12.5)])
        );
        assert!(s[1].1[0].1.is_nan());
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"instance":"h1"},"values":[[1700000100,"1"],[1700000400,"2"]]}]}}"#;
        assert_eq!(parse(matrix, "instance").unwrap()[0].1.len(), 2);
        assert!(parse(r#"{"status":"error","error":"bad query"}"#, "instance").is_err());
        assert!(parse("<html>", "instance").is_err());
    }
}
