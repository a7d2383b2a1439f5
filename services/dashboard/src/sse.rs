//! `GET /events`: one server-sent-event stream per browser tab. It carries one tiny
//! `snapshot` event (the update counter) per new snapshot, on which htmx re-fetches only the
//! visible view's fragment, and a `status` event with the banner's HTML whenever the banner
//! changes (NATS down, snapshots stopped, back to normal). Streams end on shutdown so a
//! graceful stop does not hang on open tabs.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream};
use tokio::sync::watch;

use crate::state::Shared;
use crate::views::render_banner;

/// How often a stream re-checks the banner (staleness needs no event to appear).
const BANNER_CHECK: Duration = Duration::from_secs(1);

/// Counts an open stream for `/healthz` while it lives.
struct Open(Shared);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.sse_clients.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.0.metrics.sse_clients.dec();
    }
}

struct Cursor {
    _open: Open,
    state: Shared,
    updates: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    banner: Option<String>,
    started: bool,
}

fn status(html: &str) -> Event {
    Event::default().event("status").data(html)
}

pub async fn events(State(state): State<Shared>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut updates = state.subscribe_updates();
    updates.mark_unchanged();
    state.sse_clients.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    state.metrics.sse_clients.inc();
    let cursor = Cursor { _open: Open(state.clone()), shutdown: state.shutdown_signal(), updates, state, banner: None, started: false };
    let s = stream::unfold(cursor, |mut c| async move {
        if !c.started {
            c.started = true;
            let html = render_banner(c.state.banner().as_ref());
            c.banner = Some(html.clone());
            // Tell a reconnecting client to wait 2 s, and bring its banner up to date.
            return Some((Ok(status(&html).retry(Duration::from_secs(2))), c));
        }
        if *c.shutdown.borrow() {
            return None;
        }
        loop {
            tokio::select! {
                changed = c.updates.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    let n = *c.updates.borrow_and_update();
                    return Some((Ok(Event::default().event("snapshot").data(n.to_string())), c));
                }
                _ = tokio::time::sleep(BANNER_CHECK) => {
                    let html = render_banner(c.state.banner().as_ref());
                    if c.banner.as_deref() != Some(html.as_str()) {
                        c.banner = Some(html.clone());
                        return Some((Ok(status(&html)), c));
                    }
                }
                _ = c.shutdown.changed() => return None,
            }
        }
    });
    Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
