//! Dashboard sessions: the cookie a signed-in team member's browser carries, and the
//! guards of cookie-authenticated requests.
//!
//! The session token travels only in an `HttpOnly`, `SameSite=Lax` cookie (`Secure`
//! under TLS or an `https` public URL). A write (any method but GET, HEAD, OPTIONS)
//! authenticated by that cookie must also carry the session's CSRF token in
//! `X-CSRF-Token` (which the page reads from `GET /api/v1/session`, an answer no other
//! site can read), and must not come from another origin (`Origin`, else `Referer`,
//! when sent, names the `Host` or `server.public_url`). Requests with an API key
//! (`Authorization`) carry no ambient credential and skip both checks.
//!
//! Sign-in spends from two buckets before checking the password: one per account
//! (a digest of the email) and one per client address, so guessing is slow for one
//! account from many addresses and for many accounts from one address.

use std::time::Instant;

use appizer_core::config::Config;
use appizer_core::keys::hash_key;
use appizer_core::member::csrf_token;
use appizer_core::ErrorCode;
use axum::http::header::{COOKIE, HOST, ORIGIN, REFERER};
use axum::http::{HeaderMap, HeaderValue, Method};

use crate::error::ApiError;
use crate::rate_limit::{Decision, LimitClass};
use crate::state::AppState;

/// The cookie holding the session token.
pub const SESSION_COOKIE: &str = "appizer_session";
/// The header a cookie-authenticated write carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Session tokens start with this.
pub const SESSION_PREFIX: &str = "apz_ss_";
/// Invitation tokens start with this.
pub const INVITE_PREFIX: &str = "apz_in_";

/// The session token in the request's cookies, if any.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == SESSION_COOKIE && value.starts_with(SESSION_PREFIX))
        .map(|(_, value)| value.to_string())
}

/// Whether cookies are marked `Secure`: under TLS, or behind an `https` public URL.
pub fn secure_cookies(config: &Config) -> bool {
    config.tls.cert_path.is_some()
        || config
            .server
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
}

/// The `Set-Cookie` value opening a session for `max_age_secs`.
pub fn session_cookie(token: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value removing the session cookie.
pub fn cleared_cookie(secure: bool) -> HeaderValue {
    session_cookie("", 0, secure)
}

/// Whether `method` changes something (and so needs the CSRF token).
fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// `scheme://host[:port]` of a URL, lower case.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| format!("{}://{}", scheme, host).to_ascii_lowercase())
}

/// Refuses a cookie-authenticated write without the session's CSRF token or from
/// another origin.
pub fn check_write(
    method: &Method,
    headers: &HeaderMap,
    token: &str,
    config: &Config,
) -> Result<(), ApiError> {
    if !is_write(method) {
        return Ok(());
    }
    let forbidden = |message: &str| ApiError::new(ErrorCode::Forbidden, message);
    let sent = headers
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|v| *v != "null")
        .or_else(|| headers.get(REFERER).and_then(|v| v.to_str().ok()));
    if let Some(sent) = sent {
        let sent = origin_of(sent);
        let host = headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        let same_host = sent
            .as_deref()
            .and_then(|o| o.split_once("://"))
            .map(|(_, h)| h)
            == host.as_deref();
        let public = config.server.public_url.as_deref().and_then(origin_of);
        if !same_host && (public.is_none() || sent != public) {
            return Err(
                forbidden("a signed-in write must come from the dashboard's own origin")
                    .with_field("Origin"),
            );
        }
    }
    let expected = csrf_token(token);
    let carried = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if carried != Some(expected.as_str()) {
        return Err(forbidden(
            "a signed-in write must carry the session's CSRF token (from GET /api/v1/session)",
        )
        .with_field("X-CSRF-Token"));
    }
    Ok(())
}

/// Spends one sign-in attempt of `email` from `address`; the refusal to answer when
/// either allowance is spent.
pub async fn spend_sign_in(
    state: &AppState,
    email: &str,
    address: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    let auth = &state.config.auth;
    let rate = 1.0 / auth.sign_in_refill_seconds.max(1) as f64;
    let now = Instant::now();
    let digest = |what: &str| {
        let hex = hash_key(what);
        uuid::Uuid::from_u128(u128::from_str_radix(&hex[..32], 16).unwrap_or_default())
    };
    let account = state
        .limiter
        .spend(
            digest(&format!("sign-in account:{email}")),
            LimitClass::Api,
            rate,
            auth.sign_in_attempts_per_account,
            now,
        )
        .await;
    let by_address = match address {
        Some(ip) => Some(
            state
                .limiter
                .spend(
                    digest(&format!("sign-in address:{ip}")),
                    LimitClass::Api,
                    rate,
                    auth.sign_in_attempts_per_address,
                    now,
                )
                .await,
        ),
        None => None,
    };
    let refused: Option<Decision> = [Some(account), by_address]
        .into_iter()
        .flatten()
        .find(|d| !d.allowed);
    match refused {
        None => Ok(()),
        Some(decision) => Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many sign-in attempts; try again in {} s",
                decision.retry_after_secs
            ),
        )
        .with_rate_limit(decision)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_session_token_is_read_from_its_cookie_only() {
        let h = headers(&[("cookie", "a=1; appizer_session=apz_ss_abc; b=2")]);
        assert_eq!(session_token(&h).as_deref(), Some("apz_ss_abc"));
        let h = headers(&[("cookie", "a=1"), ("cookie", "appizer_session=apz_ss_x")]);
        assert_eq!(session_token(&h).as_deref(), Some("apz_ss_x"));
        assert_eq!(
            session_token(&headers(&[("cookie", "appizer_session=other")])),
            None
        );
        assert_eq!(session_token(&HeaderMap::new()), None);
    }

    #[test]
    fn cookies_are_http_only_same_site_and_secure_under_tls() {
        let plain = session_cookie("apz_ss_t", 60, false);
        assert_eq!(
            plain.to_str().unwrap(),
            "appizer_session=apz_ss_t; Path=/; HttpOnly; SameSite=Lax; Max-Age=60"
        );
        assert!(session_cookie("t", 60, true)
            .to_str()
            .unwrap()
            .ends_with("; Secure"));
        assert!(cleared_cookie(false)
            .to_str()
            .unwrap()
            .contains("Max-Age=0"));
        let mut config = Config::for_tests();
        assert!(!secure_cookies(&config));
        config.server.public_url = Some("https://a.example.com".into());
        assert!(secure_cookies(&config));
    }

    #[test]
    fn a_cookie_write_needs_the_csrf_token_and_its_own_origin() {
        let mut config = Config::for_tests();
        let token = "apz_ss_token";
        let csrf = csrf_token(token);
        let post = Method::POST;
        // Reads pass as they are.
        assert!(check_write(&Method::GET, &HeaderMap::new(), token, &config).is_ok());
        // A write without the token, or with another, is refused naming the header.
        let e = check_write(&post, &headers(&[("host", "h:8080")]), token, &config).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("X-CSRF-Token"));
        let wrong = headers(&[("host", "h:8080"), ("x-csrf-token", "nope")]);
        assert!(check_write(&post, &wrong, token, &config).is_err());
        // With the token, from the same origin (or none sent): allowed.
        let same = headers(&[
            ("host", "h:8080"),
            ("origin", "http://h:8080"),
            ("x-csrf-token", &csrf),
        ]);
        assert!(check_write(&post, &same, token, &config).is_ok());
        let no_origin = headers(&[("host", "h:8080"), ("x-csrf-token", &csrf)]);
        assert!(check_write(&post, &no_origin, token, &config).is_ok());
        // Another site, even with the token: refused naming Origin.
        let cross = headers(&[
            ("host", "h:8080"),
            ("origin", "https://evil.example"),
            ("x-csrf-token", &csrf),
        ]);
        let e = check_write(&post, &cross, token, &config).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("Origin"));
        let referer = headers(&[
            ("host", "h:8080"),
            ("referer", "https://evil.example/page"),
            ("x-csrf-token", &csrf),
        ]);
        assert!(check_write(&post, &referer, token, &config).is_err());
        // The public URL's origin is the dashboard's too (behind a proxy).
        config.server.public_url = Some("https://evil.example/".into());
        assert!(check_write(&post, &cross, token, &config).is_ok());
    }
}
