//! Sessions, optional access control and CSRF protection.
//!
//! Every browser gets a session cookie (HttpOnly, SameSite=Strict) holding a random id; the
//! session carries a CSRF token that every POST must echo (form field `csrf` or header
//! `X-CSRF-Token`), key or no key, because even a loopback-only dashboard can be posted to
//! by any web page the operator has open. With `DASHBOARD_KEY` set, a session must also have
//! logged in with the key before it sees anything but `/login`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::format;
use crate::locks::lock;
use crate::state::Shared;

pub const COOKIE: &str = "fc_session";
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
const TTL: Duration = Duration::from_secs(12 * 3600);
const MAX_SESSIONS: usize = 10_000;
/// Largest POST body read while looking for the CSRF token.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// Failed logins allowed per minute (all clients together) before logins pause.
const MAX_FAILURES_PER_MINUTE: usize = 10;

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub csrf: String,
    pub authed: bool,
    expires: Instant,
}

#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    failures: Mutex<VecDeque<Instant>>,
}

impl Sessions {
    /// The live session with this id, its expiry pushed back.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = lock(&self.map);
        let now = Instant::now();
        match map.get_mut(id) {
            Some(s) if s.expires > now => {
                s.expires = now + TTL;
                Some(s.clone())
            }
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn create(&self, authed: bool) -> Session {
        let now = Instant::now();
        let s = Session { id: token(), csrf: token(), authed, expires: now + TTL };
        let mut map = lock(&self.map);
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.expires > now && s.authed);
            if map.len() >= MAX_SESSIONS {
                map.clear();
            }
        }
        map.insert(s.id.clone(), s.clone());
        s
    }

    pub fn remove(&self, id: &str) {
        lock(&self.map).remove(id);
    }

    /// Records a failed login; false when too many failed in the last minute.
    pub fn note_failure(&self) -> bool {
        let mut f = lock(&self.failures);
        let now = Instant::now();
        while f.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60)) {
            f.pop_front();
        }
        f.push_back(now);
        f.len() <= MAX_FAILURES_PER_MINUTE
    }

    pub fn locked_out(&self) -> bool {
        let f = lock(&self.failures);
        let now = Instant::now();
        f.iter().filter(|t| now.duration_since(**t) <= Duration::from_secs(60)).count() >= MAX_FAILURES_PER_MINUTE
    }
}

/// 32 random bytes from the OS, hex-encoded.
pub fn token() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // The OS RNG failing is not recoverable in any safe way for a session id.
        panic!("the operating system's random number generator failed");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares secrets in time independent of where they differ.
pub fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in the request's Cookie headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub fn set_cookie(id: &str, secure: bool) -> HeaderValue {
    let v = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}", TTL.as_secs(), if secure { "; Secure" } else { "" });
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("fc_session=; Path=/"))
}

pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("fc_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// A post-login redirect target: a local path only (no `//host`, no scheme, no backslash).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && !n.contains("://") => n.to_string(),
        _ => "/".to_string(),
    }
}

/// Whether an `Origin` header names this host (a browser sends it on every cross-site POST).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or(origin);
    !host.is_empty() && origin_host == host
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn forbidden(msg: &'static str) -> Response {
    (StatusCode::FORBIDDEN, [(header::CACHE_CONTROL, "no-store")], msg).into_response()
}

fn is_public(path: &str) -> bool {
    path.starts_with("/static/") || path == "/healthz"
}

/// The session/CSRF/login gate in front of every route but static assets and `/healthz`.
pub async fn middleware(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if is_public(&path) {
        return next.run(req).await;
    }
    let found = cookie(req.headers(), COOKIE).and_then(|id| state.sessions.get(id));
    let is_new = found.is_none();
    let session = found.unwrap_or_else(|| state.sessions.create(false));

    let mut req = req;
    if req.method() == Method::POST {
        if !same_origin(req.headers()) {
            return forbidden("Cross-origin POST refused.");
        }
        let header_token = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "Form too large.").into_response();
        };
        let sent = header_token.or_else(|| form_field(&bytes, CSRF_FIELD));
        let ok = !is_new && sent.is_some_and(|t| constant_eq(t.as_bytes(), session.csrf.as_bytes()));
        if !ok {
            return forbidden("CSRF token missing or wrong: reload the page and try again.");
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }

    let key_required = state.args.access_key().is_some();
    if key_required && !session.authed && path != "/login" {
        let is_htmx = req.headers().contains_key("hx-request");
        if req.method() == Method::GET && !is_htmx && path != "/events" {
            let target = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let mut resp = Redirect::to(&format!("/login?next={}", format::url_component(target))).into_response();
            if is_new {
                resp.headers_mut().append(header::SET_COOKIE, set_cookie(&session.id, state.args.secure_cookie));
            }
            return resp;
        }
        return (StatusCode::UNAUTHORIZED, [(header::CACHE_CONTROL, "no-store")], "Log in first.").into_response();
    }

    req.extensions_mut().insert(session.clone());
    let mut resp = next.run(req).await;
    if is_new {
        resp.headers_mut().append(header::SET_COOKIE, set_cookie(&session.id, state.args.secure_cookie));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex() {
        let (a, b) = (token(), token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn constant_eq_compares() {
        assert!(constant_eq(b"abc", b"abc"));
        assert!(!constant_eq(b"abc", b"abd"));
        assert!(!constant_eq(b"abc", b"ab"));
    }

    #[test]
    fn cookies_parse_from_any_header() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; fc_session=xyz"));
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
        let c = set_cookie("id1", true);
        let c = c.to_str().unwrap();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
    }

    #[test]
    fn next_must_stay_on_this_site() {
        assert_eq!(safe_next(Some("/alerts?level=critical")), "/alerts?level=critical");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn origin_must_match_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h), "no Origin header (non-browser client)");
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn sessions_expire_and_rotate() {
        let s = Sessions::default();
        let a = s.create(false);
        assert!(s.get(&a.id).is_some());
        s.remove(&a.id);
        assert!(s.get(&a.id).is_none());
        for _ in 0..MAX_FAILURES_PER_MINUTE {
            assert!(s.note_failure());
        }
        assert!(s.locked_out());
        assert!(!s.note_failure());
    }
}
