//! Access control and CSRF through the real router: login with the key, session cookie
//! attributes, redirects, CSRF on every POST (with or without a key), cross-origin refusal.

use crate::common;

use common::*;
use dashboard::fixture::Spec;

fn keyed() -> dashboard::Args {
    let mut a = args();
    a.key = Some("correct horse battery staple".into());
    a
}

#[tokio::test]
async fn with_a_key_everything_but_login_and_assets_needs_a_session() {
    let st = state_with(&Spec::default(), keyed());
    let app = router(&st);
    let r = get(&app, "/alerts?level=critical").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), "/login?next=%2Falerts%3Flevel%3Dcritical");
    assert_eq!(get_with(&app, "/", &[("hx-request", "true")]).await.status, 401, "fragments answer 401");
    assert_eq!(get(&app, "/events").await.status, 401);
    assert_eq!(get(&app, "/history.csv").await.status, 303);
    assert_eq!(get(&app, "/healthz").await.status, 200);
    let css = dashboard::assets::url("app.css");
    assert_eq!(get(&app, css).await.status, 200);
    let login = get(&app, "/login").await;
    assert_eq!(login.status, 200);
    assert!(login.body.contains("type=\"password\""));
}

#[tokio::test]
async fn login_sets_a_strict_httponly_cookie_and_rotates_the_session() {
    let st = state_with(&Spec::default(), keyed());
    let app = router(&st);
    let page = get(&app, "/login?next=/model").await;
    let pre = page.cookie().expect("pre-login session cookie");
    let csrf = page.csrf().expect("csrf in the login form");

    let wrong = post(&app, "/login", &[("cookie", &pre)], &format!("csrf={csrf}&key=nope&next=/model")).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Wrong key"));

    let no_csrf = post(&app, "/login", &[("cookie", &pre)], "key=correct+horse+battery+staple").await;
    assert_eq!(no_csrf.status, 403, "login is a POST too: CSRF applies");

    let ok = post(&app, "/login", &[("cookie", &pre)], &format!("csrf={csrf}&key=correct+horse+battery+staple&next=%2Fmodel")).await;
    assert_eq!(ok.status, 303);
    assert_eq!(ok.header("location"), "/model");
    let set = ok.headers.get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"), "{set}");
    let session = ok.cookie().unwrap();
    assert_ne!(session, pre, "a fresh session id after login");

    let home = get_with(&app, "/", &[("cookie", &session)]).await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("Log out"));
    let old = get_with(&app, "/", &[("cookie", &pre)]).await;
    assert_eq!(old.status, 303, "the pre-login session is gone");

    let token = home.csrf().unwrap();
    let out = post(&app, "/logout", &[("cookie", &session)], &format!("csrf={token}")).await;
    assert_eq!(out.status, 303);
    assert_eq!(get_with(&app, "/", &[("cookie", &session)]).await.status, 303, "logged out");
}

#[tokio::test]
async fn open_redirects_are_refused() {
    let st = state_with(&Spec::default(), keyed());
    let app = router(&st);
    let page = get(&app, "/login").await;
    let (c, t) = (page.cookie().unwrap(), page.csrf().unwrap());
    let r = post(&app, "/login", &[("cookie", &c)], &format!("csrf={t}&key=correct+horse+battery+staple&next=%2F%2Fevil.example")).await;
    assert_eq!(r.header("location"), "/");
}

#[tokio::test]
async fn every_post_needs_the_sessions_csrf_token_even_without_a_key() {
    let st = state_with(&Spec::default(), args());
    let app = router(&st);
    // The scenario form (the one form with a token when no key is set) shows while a generator
    // answers; mark it as just seen.
    st.generator.lock().unwrap().seen = Some(std::time::Instant::now());
    let page = get(&app, "/demo").await;
    let (cookie, csrf) = (page.cookie().unwrap(), page.csrf().unwrap());

    // The one operator POST: switching the generator's scenario (no NATS here, so an allowed
    // switch records a failed outcome; a refused one records nothing).
    let none = post(&app, "/demo/scenario", &[("cookie", &cookie)], "scenario=critical").await;
    assert_eq!(none.status, 403);
    let wrong = post(&app, "/demo/scenario", &[("cookie", &cookie)], "scenario=critical&csrf=0000").await;
    assert_eq!(wrong.status, 403);
    let no_session = post(&app, "/demo/scenario", &[], &format!("scenario=critical&csrf={csrf}")).await;
    assert_eq!(no_session.status, 403, "a token without its session is worthless");
    let foreign =
        post(&app, "/demo/scenario", &[("cookie", &cookie), ("origin", "https://evil.example")], &format!("scenario=critical&csrf={csrf}"))
            .await;
    assert_eq!(foreign.status, 403);
    assert!(st.last_switch.lock().unwrap().is_none(), "nothing happened");

    let bad =
        post(&app, "/demo/scenario", &[("cookie", &cookie), ("origin", "http://127.0.0.1:8080")], &format!("scenario=pigeon&csrf={csrf}"))
            .await;
    assert_eq!(bad.status, 303);
    assert!(st.last_switch.lock().unwrap().as_ref().is_some_and(|o| o.result.as_ref().is_err_and(|e| e.contains("pigeon"))));
    *st.last_switch.lock().unwrap() = None;
    let header_token = post(&app, "/demo/scenario", &[("cookie", &cookie), ("x-csrf-token", &csrf)], "scenario=pigeon").await;
    assert_eq!(header_token.status, 303, "htmx-style header token accepted");
    assert!(st.last_switch.lock().unwrap().is_some());
}

#[tokio::test]
async fn failed_logins_are_capped() {
    let st = state_with(&Spec::default(), keyed());
    let app = router(&st);
    let page = get(&app, "/login").await;
    let (c, t) = (page.cookie().unwrap(), page.csrf().unwrap());
    let mut last = 0;
    for _ in 0..11 {
        last = post(&app, "/login", &[("cookie", &c)], &format!("csrf={t}&key=guess")).await.status.as_u16();
    }
    assert_eq!(last, 429);
}
