//! Static files embedded in the binary (`include_bytes!`), served under content-hashed URLs
//! with year-long immutable caching: a new build with a changed file gets a new URL, so no
//! browser ever runs a stale htmx against new templates. See `static/VENDOR.md`.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

pub struct Asset {
    pub name: &'static str,
    pub bytes: &'static [u8],
    pub content_type: &'static str,
    /// Full sha256 of the bytes, hex.
    pub sha256: String,
    /// `/static/<stem>.<sha256[..12]>.<ext>`
    pub url: String,
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

fn asset(name: &'static str, bytes: &'static [u8], content_type: &'static str) -> Asset {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let sha256: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    let url = format!("/static/{stem}.{}.{ext}", &sha256[..12]);
    Asset { name, bytes, content_type, sha256, url }
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    vec![
        asset("htmx.min.js", include_bytes!("../static/htmx.min.js"), JS),
        asset("sse.min.js", include_bytes!("../static/sse.min.js"), JS),
        asset("idiomorph-ext.min.js", include_bytes!("../static/idiomorph-ext.min.js"), JS),
        asset("app.js", include_bytes!("../static/app.js"), JS),
        asset("app.css", include_bytes!("../static/app.css"), CSS),
    ]
});

pub fn all() -> &'static [Asset] {
    &ASSETS
}

/// The hashed URL of an embedded file (by its plain name); "" for an unknown name.
pub fn url(name: &str) -> &'static str {
    ASSETS.iter().find(|a| a.name == name).map(|a| a.url.as_str()).unwrap_or("")
}

/// `GET /static/{file}`: only the exact hashed name is served; anything else is 404.
pub async fn serve(Path(file): Path<String>) -> Response {
    let wanted = format!("/static/{file}");
    match ASSETS.iter().find(|a| a.url == wanted) {
        Some(a) => ([(header::CONTENT_TYPE, a.content_type), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")], a.bytes)
            .into_response(),
        None => (StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, "no-store")], "no such asset").into_response(),
    }
}
