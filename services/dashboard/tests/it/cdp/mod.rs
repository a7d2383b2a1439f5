//! A small Chrome DevTools Protocol client for the browser tests: launches headless Chromium
//! (`CHROMIUM_BIN`, else `chromium`/`chromium-browser`/`google-chrome` on PATH), talks CDP over
//! its websocket, and drives one page (navigate, evaluate, wait, screenshot). A few hundred
//! lines instead of a CDP crate with thousands of generated types, and no Node toolchain.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

pub struct Browser {
    child: tokio::process::Child,
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next: AtomicU64,
    _profile: tempfile::TempDir,
}

/// The Chromium binary, if one is installed.
pub fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CHROMIUM_BIN") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// Whether to skip a browser test: only when no Chromium is installed and
/// `FLEETCAST_SKIP_BROWSER=1` says so; without Chromium and without that, the test fails.
pub fn skip() -> bool {
    if chromium().is_some() {
        return false;
    }
    if std::env::var("FLEETCAST_SKIP_BROWSER").is_ok_and(|v| v == "1") {
        eprintln!("FLEETCAST_SKIP_BROWSER=1 and no Chromium: browser tests skipped");
        return true;
    }
    panic!("Chromium is needed for the browser tests: apt-get install -y chromium (or set CHROMIUM_BIN; FLEETCAST_SKIP_BROWSER=1 skips)");
}

impl Browser {
    pub async fn launch() -> anyhow::Result<Browser> {
        let bin = chromium().ok_or_else(|| anyhow!("no Chromium found: apt-get install -y chromium (or set CHROMIUM_BIN)"))?;
        let profile = tempfile::tempdir()?;
        let mut child = tokio::process::Command::new(&bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        let ws_url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(at) = line.find("ws://") {
                    return Ok::<_, anyhow::Error>(line[at..].trim().to_string());
                }
            }
            bail!("Chromium exited before printing its DevTools URL")
        })
        .await
        .context("waiting for Chromium's DevTools URL")??;
        // Keep draining stderr so Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str()).await.context("connecting to DevTools")?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let p2 = pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                let Some(id) = v.get("id").and_then(Value::as_u64) else { continue };
                let reply = match v.get("error") {
                    Some(e) => Err(e.to_string()),
                    None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
                };
                if let Some(tx) = p2.lock().unwrap().remove(&id) {
                    let _ = tx.send(reply);
                }
            }
        });
        Ok(Browser { child, out, pending, next: AtomicU64::new(1), _profile: profile })
    }

    pub async fn call(&self, method: &str, params: Value, session: Option<&str>) -> anyhow::Result<Value> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.out.send(Message::Text(msg.to_string().into())).map_err(|_| anyhow!("DevTools connection closed"))?;
        let reply = tokio::time::timeout(Duration::from_secs(30), rx).await.with_context(|| format!("{method} timed out"))??;
        reply.map_err(|e| anyhow!("{method}: {e}"))
    }

    pub async fn new_page(&self) -> anyhow::Result<Page<'_>> {
        let target = self.call("Target.createTarget", json!({ "url": "about:blank" }), None).await?;
        let id = target["targetId"].as_str().ok_or_else(|| anyhow!("no targetId"))?;
        let att = self.call("Target.attachToTarget", json!({ "targetId": id, "flatten": true }), None).await?;
        let session = att["sessionId"].as_str().ok_or_else(|| anyhow!("no sessionId"))?.to_string();
        let page = Page { browser: self, session };
        page.call("Page.enable", json!({})).await?;
        // Record CSP violations from the first script on every document.
        page.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": "window.__csp = []; document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));" }),
        )
        .await?;
        page.viewport(1280, 900).await?;
        Ok(page)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

pub struct Page<'a> {
    browser: &'a Browser,
    session: String,
}

impl Page<'_> {
    pub async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.browser.call(method, params, Some(&self.session)).await
    }

    /// Evaluates an expression (promises awaited) and returns its JSON value.
    pub async fn eval(&self, expr: &str) -> anyhow::Result<Value> {
        let r = self.call("Runtime.evaluate", json!({ "expression": expr, "returnByValue": true, "awaitPromise": true })).await?;
        if let Some(ex) = r.get("exceptionDetails") {
            bail!("{expr}: {ex}");
        }
        Ok(r["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// Polls `expr` until it is `true`; returns how long that took.
    pub async fn wait_for(&self, expr: &str, timeout: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            if self.eval(expr).await.ok() == Some(Value::Bool(true)) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                bail!("timed out after {timeout:?} waiting for {expr}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Navigates and waits until the new document (after any redirects) has loaded.
    pub async fn navigate(&self, url: &str) -> anyhow::Result<()> {
        // A marker on the old document; the new one does not have it.
        self.eval("window.__old_document = true").await?;
        let r = self.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(e) = r.get("errorText") {
            bail!("navigating to {url}: {e}");
        }
        self.wait_for("!window.__old_document && document.readyState === 'complete'", Duration::from_secs(30)).await?;
        Ok(())
    }

    pub async fn viewport(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await?;
        Ok(())
    }

    pub async fn dark(&self, on: bool) -> anyhow::Result<()> {
        let value = if on { "dark" } else { "light" };
        self.call("Emulation.setEmulatedMedia", json!({ "features": [{ "name": "prefers-color-scheme", "value": value }] })).await?;
        Ok(())
    }

    /// A full-page PNG (the viewport is stretched to the document's height, up to 6000 px).
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let h = self.eval("document.documentElement.scrollHeight").await?.as_u64().unwrap_or(900).clamp(300, 6000) as u32;
        self.viewport(1280, h).await?;
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" })).await?;
        self.viewport(1280, 900).await?;
        let data = shot["data"].as_str().ok_or_else(|| anyhow!("no screenshot data"))?;
        let png = base64::engine::general_purpose::STANDARD.decode(data)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }

    pub async fn text(&self, selector: &str) -> anyhow::Result<String> {
        let sel = serde_json::to_string(selector)?;
        let v = self.eval(&format!("(document.querySelector({sel}) || {{}}).textContent || ''")).await?;
        Ok(v.as_str().unwrap_or("").trim().to_string())
    }

    /// The CSP violations the page reported so far. An error, never an empty list, when the
    /// recorder did not run on this document or the page was served without a
    /// Content-Security-Policy header: "no violations" must mean a policy was enforced.
    pub async fn csp_violations(&self) -> anyhow::Result<Vec<String>> {
        let header =
            self.eval("fetch(location.href, {credentials: 'same-origin'}).then(r => r.headers.get('content-security-policy'))").await?;
        anyhow::ensure!(
            header.as_str().is_some_and(|h| h.contains("script-src")),
            "the page has no Content-Security-Policy header: {header}"
        );
        let v = self.eval("window.__csp === undefined ? null : JSON.stringify(window.__csp)").await?;
        let recorded = v.as_str().ok_or_else(|| anyhow::anyhow!("the CSP violation recorder did not run on this page"))?;
        Ok(serde_json::from_str(recorded)?)
    }
}
