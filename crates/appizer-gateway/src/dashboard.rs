//! The web dashboard, embedded in the binary (`ui/dist`, built by `ui/build.mjs` and
//! committed, so building the binary needs no Node): `index.html` for the page's own
//! paths (`/`, `/projects/...`, `/accept-invite`), never cached, and its assets under
//! `/assets/`, named by their content's hash and cached for a year. Answers are
//! gzip-compressed when the client accepts it (compressed once, on first use). The
//! page talks only to the public `/api/v1` API.

use std::collections::HashMap;
use std::io::Write;
use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

mod files {
    include!(concat!(env!("OUT_DIR"), "/dashboard_files.rs"));
}

/// A file of the dashboard, with its gzip form.
struct Asset {
    body: &'static [u8],
    gzip: Vec<u8>,
    content_type: &'static str,
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn assets() -> &'static HashMap<&'static str, Asset> {
    static ASSETS: OnceLock<HashMap<&'static str, Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        files::FILES
            .iter()
            .map(|(path, body)| {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                let gzip = encoder
                    .write_all(body)
                    .and_then(|()| encoder.finish())
                    .unwrap_or_default();
                (
                    *path,
                    Asset {
                        body,
                        gzip,
                        content_type: content_type(path),
                    },
                )
            })
            .collect()
    })
}

/// Whether the binary carries a built dashboard.
pub fn is_built() -> bool {
    assets().contains_key("index.html")
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.trim().split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn answer(asset: &Asset, headers: &HeaderMap, cache: &'static str) -> Response {
    let mut response = if accepts_gzip(headers) && !asset.gzip.is_empty() {
        let mut r = asset.gzip.clone().into_response();
        r.headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        asset.body.into_response()
    };
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn page(headers: HeaderMap) -> Response {
    let Some(index) = assets().get("index.html") else {
        return ApiError::new(
            appizer_core::ErrorCode::NotFound,
            "this binary was built without the dashboard (ui/dist is empty)",
        )
        .into_response();
    };
    let mut response = answer(index, &headers, "no-cache");
    let h = response.headers_mut();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match assets().get(format!("assets/{file}").as_str()) {
        Some(a) => answer(a, &headers, "public, max-age=31536000, immutable"),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// The dashboard's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/accept-invite", get(page))
        .route("/projects", get(page))
        .route("/projects/{*rest}", get(page))
        .route("/assets/{file}", get(asset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_used_when_accepted_and_not_refused() {
        let h = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(accepts_gzip(&h("gzip, deflate, br")));
        assert!(accepts_gzip(&h("br;q=1.0, gzip;q=0.8")));
        assert!(accepts_gzip(&h("*")));
        assert!(!accepts_gzip(&h("gzip;q=0")));
        assert!(!accepts_gzip(&h("br")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn the_built_dashboard_is_embedded_with_its_assets() {
        assert!(is_built(), "ui/dist/index.html is embedded");
        let index = std::str::from_utf8(assets()["index.html"].body).unwrap();
        for (path, _) in files::FILES {
            if let Some(name) = path.strip_prefix("assets/") {
                assert!(
                    index.contains(&format!("/assets/{name}")),
                    "{name} is linked"
                );
            }
        }
        let js = assets()
            .iter()
            .find(|(p, _)| p.ends_with(".js"))
            .map(|(_, a)| a)
            .unwrap();
        assert!(js.gzip.len() < js.body.len() / 2, "compressed");
        // The first load's JavaScript stays under its budget, compressed.
        let first_load: usize = assets()
            .iter()
            .filter(|(p, _)| p.ends_with(".js"))
            .map(|(_, a)| a.gzip.len())
            .sum();
        assert!(
            first_load < 100 * 1024,
            "{first_load} bytes of compressed JavaScript"
        );
    }
}
