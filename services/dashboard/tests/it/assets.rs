//! Vendored assets and transport: the embedded files match VENDOR.md's sha256, are served
//! only under their content-hashed URLs with immutable caching, security headers are on every
//! response, and pages are compressed.

use crate::common;

use common::*;
use dashboard::fixture::Spec;

#[test]
fn embedded_files_match_vendor_md() {
    let vendor = include_str!("../../static/VENDOR.md");
    for name in ["htmx.min.js", "sse.min.js", "idiomorph-ext.min.js"] {
        let asset = dashboard::assets::all().iter().find(|a| a.name == name).unwrap();
        let row = vendor.lines().find(|l| l.starts_with(&format!("| `{name}`"))).unwrap_or_else(|| panic!("{name} not in VENDOR.md"));
        assert!(row.contains(&asset.sha256), "{name}: VENDOR.md says {row}, embedded is {}", asset.sha256);
        assert!(asset.url.contains(&asset.sha256[..12]));
    }
    assert!(vendor.contains("| `htmx.org` | 2.0.11 |"));
    assert!(vendor.contains("| `htmx-ext-sse` | 2.2.4 |"));
}

#[tokio::test]
async fn assets_are_served_by_hash_with_long_caching() {
    let st = state_with(&Spec::default(), args());
    let app = router(&st);
    let url = dashboard::assets::url("htmx.min.js");
    let r = get(&app, url).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), "public, max-age=31536000, immutable");
    assert!(r.header("content-type").starts_with("text/javascript"));
    assert_eq!(r.body.len(), 52_182);
    assert_eq!(get(&app, "/static/htmx.min.js").await.status, 404, "unhashed name is not served");
    let page = get(&app, "/").await;
    for a in dashboard::assets::all() {
        assert!(page.body.contains(&a.url), "{} referenced by its hashed URL", a.name);
    }
}

#[tokio::test]
async fn security_headers_on_every_response() {
    let st = state_with(&Spec::default(), args());
    let app = router(&st);
    for path in ["/", "/model", "/nowhere", dashboard::assets::url("app.css")] {
        let r = get(&app, path).await;
        // Read the header itself: `Resp::header` answers "" for a missing one.
        let csp = r.headers.get("content-security-policy").unwrap_or_else(|| panic!("{path}: no Content-Security-Policy header"));
        let csp = csp.to_str().unwrap_or_else(|_| panic!("{path}: the CSP header is not text"));
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(r.header("x-content-type-options"), "nosniff");
        assert_eq!(r.header("x-frame-options"), "DENY");
    }
    let page = get(&app, "/").await;
    assert!(!page.body.contains("style=\""), "no inline styles (CSP)");
    assert!(!page.body.contains("<script>"), "no inline scripts (CSP)");
}

#[tokio::test]
async fn pages_are_compressed() {
    let st = state_with(&Spec { servers: 300, ..Default::default() }, args());
    let app = router(&st);
    let plain = get(&app, "/heatmap").await;
    let br = get_with(&app, "/heatmap", &[("accept-encoding", "br")]).await;
    assert_eq!(br.header("content-encoding"), "br");
    let gz = get_with(&app, "/heatmap", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.header("content-encoding"), "gzip");
    assert!(gz.body.len() * 4 < plain.body.len(), "gzip {} vs {}", gz.body.len(), plain.body.len());
}
