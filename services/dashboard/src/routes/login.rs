//! Login and logout. The login form carries the pre-login session's CSRF token; success
//! rotates the session (a fresh id, so a planted cookie cannot be promoted), failures are
//! slowed and capped per minute.

use std::collections::HashMap;
use std::time::Duration;

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;

use crate::assets;
use crate::auth::{self, Session};
use crate::state::Shared;
use crate::views::render;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    css_url: &'static str,
    csrf: &'a str,
    next: String,
    error: Option<&'a str>,
}

fn page_with(session: &Session, next: String, error: Option<&str>, status: StatusCode) -> Response {
    let html = render(&LoginPage { css_url: assets::url("app.css"), csrf: &session.csrf, next, error });
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

pub async fn page(State(st): State<Shared>, Extension(s): Extension<Session>, Query(q): Query<HashMap<String, String>>) -> Response {
    let next = auth::safe_next(q.get("next").map(String::as_str));
    if st.args.access_key().is_none() || s.authed {
        return Redirect::to(&next).into_response();
    }
    page_with(&s, next, None, StatusCode::OK)
}

pub async fn submit(State(st): State<Shared>, Extension(s): Extension<Session>, Form(form): Form<HashMap<String, String>>) -> Response {
    let next = auth::safe_next(form.get("next").map(String::as_str));
    let Some(key) = st.args.access_key() else { return Redirect::to(&next).into_response() };
    if st.sessions.locked_out() {
        return page_with(&s, next, Some("Too many failed logins; wait a minute."), StatusCode::TOO_MANY_REQUESTS);
    }
    let given = form.get("key").map(String::as_str).unwrap_or("");
    if !auth::constant_eq(given.as_bytes(), key.as_bytes()) {
        st.sessions.note_failure();
        tokio::time::sleep(Duration::from_millis(300)).await;
        tracing::warn!("failed dashboard login");
        return page_with(&s, next, Some("Wrong key."), StatusCode::UNAUTHORIZED);
    }
    st.sessions.remove(&s.id);
    let fresh = st.sessions.create(true);
    let mut resp = Redirect::to(&next).into_response();
    resp.headers_mut().append(header::SET_COOKIE, auth::set_cookie(&fresh.id, st.args.secure_cookie));
    resp
}

pub async fn logout(State(st): State<Shared>, Extension(s): Extension<Session>) -> Response {
    st.sessions.remove(&s.id);
    let to = if st.args.access_key().is_some() { "/login" } else { "/" };
    let mut resp = Redirect::to(to).into_response();
    resp.headers_mut().append(header::SET_COOKIE, auth::clear_cookie());
    resp
}
