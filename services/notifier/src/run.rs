//! The notifier's loop: events from the durable consumer, posted to every Alertmanager, acked
//! only once all of them accepted (a down Alertmanager holds the consumer, so it gets every
//! change when it returns); every active alert re-sent each `--resend`.
//!
//! Events that are ready together (up to `--batch`) go out in one POST per Alertmanager with
//! the newest state of each alert, which is what keeps delivery under a second at a thousand
//! alert changes per tick.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, Message};
use futures::StreamExt;
use tokio::sync::watch;

use crate::active::{self, ActiveSet, Posting};
use crate::alertmanager::Fanout;
use crate::config::Config;
use crate::event::{self, Stored};
use crate::mapping::{self, PostableAlert};
use crate::metrics::{Metrics, ReasonLabels, StateLabels};
use crate::source::{self, Consumer};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Connect(#[from] fleetbus::ConnectError),
    #[error(transparent)]
    Metrics(#[from] fleetbus::metrics::MetricsError),
    #[error("building the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Waits until the shutdown flag is set (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Runs until `shutdown` completes. Events not yet acknowledged then are delivered again to
/// the next start.
pub async fn run(cfg: Config, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<(), RunError> {
    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let (metrics, registry) = Metrics::new();
    let mut metrics_stop = stop.clone();
    let server = fleetbus::metrics::serve_if(&cfg.metrics, Arc::new(registry), async move {
        stopped(&mut metrics_stop).await;
    })
    .await?;
    let fanout = Fanout::new(&cfg.alertmanager_urls, cfg.post_timeout, metrics.clone())?;
    let client = fleetbus::connect("notifier", &cfg.nats_url).await?;
    let js = jetstream::new(client);

    let opened = tokio::select! {
        o = open_until_ok(&js, &cfg) => Some(o),
        _ = stopped(&mut stop) => None,
    };
    if let Some((set, consumer)) = opened {
        tracing::info!(alertmanagers = ?cfg.alertmanager_urls, active = set.len(), "notifier ready");
        let mut n = Notifier {
            ttl_ms: cfg.firing_ttl().as_millis() as i64,
            cfg,
            fanout,
            metrics,
            set,
            last_resend: Instant::now(),
            caught_up: false,
        };
        n.metrics.active.set(n.set.len() as i64);
        n.serve(consumer, &mut stop).await;
    }
    if let Some(server) = server {
        server.join().await;
    }
    Ok(())
}

/// Waits for the stream and opens the consumer, retrying every `--stream-wait` on errors
/// (the stream may not exist yet, the server may be restarting).
async fn open_until_ok(js: &jetstream::Context, cfg: &Config) -> (ActiveSet, Consumer) {
    loop {
        let stream = source::wait_for_stream(js, cfg.stream_wait).await;
        match source::open(&stream, &cfg.consumer).await {
            Ok(opened) => return opened,
            Err(e) => {
                tracing::warn!(error = %e, "could not open the alert events; retrying");
                tokio::time::sleep(cfg.stream_wait).await;
            }
        }
    }
}

struct Notifier {
    cfg: Config,
    fanout: Fanout,
    metrics: Metrics,
    set: ActiveSet,
    ttl_ms: i64,
    last_resend: Instant,
    /// Whether the events queued at start have been applied (see `serve`).
    caught_up: bool,
}

impl Notifier {
    async fn serve(&mut self, mut consumer: Consumer, stop: &mut watch::Receiver<bool>) {
        let batch = self.cfg.batch as usize;
        let started = Instant::now();
        self.caught_up = consumer.info().await.map(|i| i.num_pending == 0).unwrap_or(false);
        let mut resend = tokio::time::interval(self.cfg.resend);
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'outer: loop {
            let messages = match consumer.stream().max_messages_per_batch(batch).messages().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "could not pull from the consumer; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(self.cfg.stream_wait) => continue,
                        _ = stopped(stop) => break,
                    }
                }
            };
            let mut chunks = messages.ready_chunks(batch);
            loop {
                // The first resend waits until the events that queued while the notifier was
                // away are applied, so a fresh Alertmanager never sees an alert that already
                // ended fire for a moment (or one resend period, whichever comes first).
                let may_resend = self.caught_up || started.elapsed() >= self.cfg.resend;
                tokio::select! {
                    biased;
                    _ = stopped(stop) => break 'outer,
                    chunk = chunks.next() => match chunk {
                        Some(items) => if !self.handle(items, stop).await { break 'outer },
                        None => continue 'outer,
                    },
                    _ = resend.tick(), if may_resend => self.resend(&mut consumer).await,
                    _ = tokio::time::sleep_until((started + self.cfg.resend).into()), if !may_resend => {},
                }
            }
        }
        tracing::info!("notifier stopped");
    }

    /// Applies, delivers and acks one chunk of ready events. False when told to stop first.
    #[tracing::instrument(level = "debug", skip_all, fields(events = items.len()))]
    async fn handle(
        &mut self,
        items: Vec<Result<Message, async_nats::jetstream::consumer::pull::MessagesError>>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut msgs = Vec::with_capacity(items.len());
        let mut postings = Vec::new();
        let mut stored_times = Vec::new();
        let mut pending = None;
        for item in items {
            let msg = match item {
                Ok(m) => m,
                Err(e) => {
                    // Missed heartbeats and the like: the pull stream carries on by itself.
                    tracing::debug!(error = %e, "pull stream notice");
                    continue;
                }
            };
            let Ok(info) = msg.info() else {
                self.skip("no_stream_info", &msg, "message has no JetStream metadata");
                msgs.push(msg);
                continue;
            };
            let (seq, stored) = (info.stream_sequence, source::stored_ms(std::time::SystemTime::from(info.published)));
            pending = Some(info.pending);
            match event::parse(msg.subject.as_str(), &msg.payload) {
                Ok(ev) => {
                    let state = ev.alert.state.name();
                    if self.set.apply(&Stored { seq, stored_ms: stored, event: ev }, &mut postings) {
                        self.metrics.events.get_or_create(&StateLabels { state }).inc();
                        stored_times.push(stored);
                    }
                }
                Err(bad) => {
                    self.skip(bad.reason(), &msg, &bad.to_string());
                    self.set.skip(seq);
                }
            }
            msgs.push(msg);
        }
        let postings = active::collapse(postings);
        if !postings.is_empty() && !self.deliver(&postings, &msgs, stop).await {
            return false;
        }
        let now = mapping::now_ms();
        for t in stored_times {
            self.metrics.latency.observe((now - t).max(0) as f64 / 1000.0);
        }
        ack_all(&msgs).await;
        self.metrics.active.set(self.set.len() as i64);
        if let Some(p) = pending {
            self.metrics.pending.set(p as i64);
            self.caught_up |= p == 0;
        }
        true
    }

    fn skip(&self, reason: &'static str, msg: &Message, why: &str) {
        self.metrics.skipped.get_or_create(&ReasonLabels { reason }).inc();
        tracing::warn!(subject = %msg.subject, reason, error = why, "skipping a bad alert event");
    }

    fn body(&self, postings: &[Posting]) -> Vec<PostableAlert> {
        let now = mapping::now_ms();
        postings.iter().map(|p| p.to_postable(now, self.ttl_ms, &self.cfg.dashboard_url)).collect()
    }

    /// Posts until every Alertmanager accepted (or refused for good), with backoff; keeps the
    /// held messages from being redelivered meanwhile and the up Alertmanagers' resends going.
    /// False when told to stop first (nothing acked: the events come again on the next start).
    async fn deliver(&mut self, postings: &[Posting], msgs: &[Message], stop: &mut watch::Receiver<bool>) -> bool {
        let mut pending = self.fanout.all();
        let mut wait = self.cfg.retry_min;
        loop {
            self.fanout.round(&mut pending, &self.body(postings)).await;
            if pending.is_empty() {
                return true;
            }
            // Progress acks must reach the server well within ack_wait.
            let nap = wait.min(source::ACK_WAIT / 3);
            tokio::select! {
                _ = tokio::time::sleep(nap) => {},
                _ = stopped(stop) => return false,
            }
            wait = (wait * 2).min(self.cfg.retry_max);
            for m in msgs {
                if let Err(e) = m.ack_with(AckKind::Progress).await {
                    tracing::debug!(error = %e, "in-progress ack failed");
                }
            }
            if self.last_resend.elapsed() >= self.cfg.resend {
                let up: Vec<usize> = self.fanout.all().into_iter().filter(|i| !pending.contains(i)).collect();
                self.resend_to(up).await;
            }
        }
    }

    /// Every active alert to every Alertmanager, once (the next resend is the retry).
    async fn resend(&mut self, consumer: &mut Consumer) {
        self.resend_to(self.fanout.all()).await;
        match consumer.info().await {
            Ok(info) => {
                self.metrics.pending.set(info.num_pending as i64);
            }
            Err(e) => tracing::debug!(error = %e, "consumer info failed"),
        }
    }

    async fn resend_to(&mut self, targets: Vec<usize>) {
        self.last_resend = Instant::now();
        let firing = self.set.firing();
        for chunk in firing.chunks(self.cfg.batch as usize) {
            let mut pending = targets.clone();
            self.fanout.round(&mut pending, &self.body(chunk)).await;
        }
        self.metrics.active.set(self.set.len() as i64);
    }
}

/// Acks every message; the last with a confirmed ack, so that once this returns the server
/// has the ack floor past all of them (acks on one connection are handled in order).
async fn ack_all(msgs: &[Message]) {
    let Some((last, rest)) = msgs.split_last() else {
        return;
    };
    for m in rest {
        if let Err(e) = m.ack().await {
            tracing::warn!(error = %e, "ack failed; the event will come again and be skipped as seen");
        }
    }
    if let Err(e) = tokio::time::timeout(Duration::from_secs(10), last.double_ack())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        tracing::warn!(error = %e, "ack failed; the event will come again and be skipped as seen");
    }
}
