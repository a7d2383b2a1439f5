//! Where predicted alerts go: the Alertmanagers the notifier posts to (`--alertmanager-url`,
//! the same `ALERTMANAGER_URL` the notifier reads), whether each answers its readiness probe
//! (`GET <url>/-/ready`, 1 s timeout, the answer kept 10 s so page loads never wait on a dead
//! host more than once per 10 s), and links to silence alerts in Alertmanager's UI. Routing,
//! grouping, silences and on-call are Alertmanager's job; the dashboard only points there.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a probe's answer is shown before asking again.
pub const PROBE_TTL: Duration = Duration::from_secs(10);

/// One Alertmanager as the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AmStatus {
    /// Base URL, no trailing slash.
    pub url: String,
    /// `/-/ready` answered 200 at the last probe.
    pub ready: bool,
    /// What the probe saw (`ready`, `HTTP 503`, the connection error).
    pub detail: String,
}

/// The configured Alertmanagers and their cached probe answers.
pub struct Alertmanagers {
    urls: Vec<String>,
    client: Option<reqwest::Client>,
    cache: Mutex<Vec<Option<(Instant, AmStatus)>>>,
}

impl Alertmanagers {
    /// `urls`: base URLs (`http://host:9093`); trailing slashes are dropped.
    pub fn new(urls: &[String]) -> Alertmanagers {
        let urls: Vec<String> = urls.iter().map(|u| u.trim().trim_end_matches('/').to_string()).filter(|u| !u.is_empty()).collect();
        let client = reqwest::Client::builder().timeout(PROBE_TIMEOUT).connect_timeout(PROBE_TIMEOUT).build().ok();
        let cache = Mutex::new(vec![None; urls.len()]);
        Alertmanagers { urls, client, cache }
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Every Alertmanager's status, probing (concurrently) those whose answer is older than
    /// [`PROBE_TTL`].
    pub async fn statuses(&self) -> Vec<AmStatus> {
        let stale: Vec<usize> = {
            let cache = crate::locks::lock(&self.cache);
            (0..self.urls.len()).filter(|&i| cache[i].as_ref().is_none_or(|(at, _)| at.elapsed() >= PROBE_TTL)).collect()
        };
        let probes = stale.iter().map(|&i| async move { (i, self.probe(&self.urls[i]).await) });
        let fresh = futures::future::join_all(probes).await;
        let mut cache = crate::locks::lock(&self.cache);
        for (i, s) in fresh {
            cache[i] = Some((Instant::now(), s));
        }
        cache.iter().flatten().map(|(_, s)| s.clone()).collect()
    }

    async fn probe(&self, url: &str) -> AmStatus {
        let status = |ready, detail: String| AmStatus { url: url.to_string(), ready, detail };
        let Some(client) = &self.client else {
            return status(false, "no HTTP client".into());
        };
        match client.get(format!("{url}/-/ready")).send().await {
            Ok(r) if r.status().is_success() => status(true, "ready".into()),
            Ok(r) => status(false, format!("HTTP {}", r.status().as_u16())),
            Err(e) if e.is_timeout() => status(false, format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
            Err(e) if e.is_connect() => status(false, "connection refused or unreachable".into()),
            Err(e) => status(false, e.to_string()),
        }
    }
}

/// A link to Alertmanager's "new silence" form with these label matchers filled in
/// (`<url>/#/silences/new?filter={alertname="FleetcastPredictedBreach",server="x"}`).
pub fn silence_link(url: &str, matchers: &[(&str, &str)]) -> String {
    let inner: Vec<String> = matchers.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    let filter = format!("{{{}}}", inner.join(","));
    format!("{url}/#/silences/new?filter={}", crate::format::url_component(&filter))
}

/// The `alertname` the notifier gives every predicted alert.
pub const ALERTNAME: &str = "FleetcastPredictedBreach";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_links_carry_the_matchers() {
        let l = silence_link("http://am:9093", &[("alertname", ALERTNAME), ("server", "ppdb001")]);
        assert!(l.starts_with("http://am:9093/#/silences/new?filter="), "{l}");
        assert!(l.contains("ppdb001") && !l.contains('"') && !l.contains('{'), "{l}");
    }

    #[tokio::test]
    async fn a_dead_alertmanager_is_reported_not_ready() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(1);
        let ams = Alertmanagers::new(&[format!("http://127.0.0.1:{port}/")]);
        let s = ams.statuses().await;
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].url, format!("http://127.0.0.1:{port}"));
        assert!(!s[0].ready, "{s:?}");
    }
}
