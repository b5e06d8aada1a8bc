//! A Web Push service (RFC 8030) as browsers' vendors run one, under `/webpush`:
//! - `POST /webpush/subscriptions` makes a subscription, as a browser would for
//!   `pushManager.subscribe`, and answers its `PushSubscription.toJSON()`;
//! - `POST /webpush/push/{id}` takes a push: it checks `TTL`, `Content-Encoding:
//!   aes128gcm`, the VAPID authorization (ES256 by the key `k`, `aud` the endpoint's
//!   origin, `exp` in the next 24 hours), the 4,096-byte limit, and decrypts the body
//!   with the subscription's private key; answers 201, or 400, 401, 404, 410, 413, 429
//!   as push services do;
//! - `GET /webpush/messages` lists what was received, decrypted (the most recent
//!   [`KEEP`](super::KEEP)), with totals per subscription;
//! - `POST /webpush/subscriptions/{id}/gone` makes later pushes to it answer 410, and
//!   `POST /webpush/subscriptions/{id}/throttle` the next one answer 429 with
//!   `Retry-After: 1`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use p256::SecretKey;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::json;

use crate::providers::webpush::crypto::{decrypt, public_bytes};
use crate::providers::webpush::vapid::{random_secret, verify, Claims};

/// The most a push service accepts in one message body.
pub const MAX_BODY: usize = 4096;

struct Subscriber {
    key: SecretKey,
    auth: [u8; 16],
    gone: bool,
    throttle_next: bool,
}

/// A message as the browser would get it.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    pub subscription: String,
    /// The decrypted payload, as text.
    pub payload: String,
    pub ttl: u32,
    pub urgency: Option<String>,
    pub topic: Option<String>,
    /// The VAPID public key that signed it.
    pub vapid_key: String,
    pub subject: Option<String>,
}

#[derive(Default)]
struct Service {
    subscribers: HashMap<String, Subscriber>,
    received: super::Log<Received>,
    /// Authorizations whose signature checked out, with their key and claims (as a
    /// push service, a token is verified once, then recognised until it expires).
    verified: HashMap<String, (String, Claims)>,
}

/// The emulator; `base_url` is how clients reach it (`http://127.0.0.1:PORT`).
#[derive(Clone)]
pub struct WebPushEmulator {
    base_url: String,
    service: Arc<Mutex<Service>>,
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    (
        status,
        Json(json!({"code": status.as_u16(), "errno": 0, "error": reason})),
    )
        .into_response()
}

impl WebPushEmulator {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            service: Arc::default(),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/webpush/subscriptions", post(subscribe))
            .route("/webpush/subscriptions/{id}/gone", post(gone))
            .route("/webpush/subscriptions/{id}/throttle", post(throttle))
            .route("/webpush/push/{id}", post(push))
            .route("/webpush/messages", get(messages))
            .with_state(self.clone())
    }

    /// What was received so far.
    pub fn received(&self) -> Vec<Received> {
        self.service.lock().received.recent()
    }
}

async fn subscribe(State(e): State<WebPushEmulator>) -> Json<serde_json::Value> {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let (key, mut auth) = (random_secret(), [0u8; 16]);
    rand::fill(&mut auth);
    let answer = json!({
        "endpoint": format!("{}/webpush/push/{id}", e.base_url),
        "expirationTime": null,
        "keys": {"p256dh": B64.encode(public_bytes(&key.public_key())), "auth": B64.encode(auth)},
    });
    e.service.lock().subscribers.insert(
        id,
        Subscriber {
            key,
            auth,
            gone: false,
            throttle_next: false,
        },
    );
    Json(answer)
}

async fn mark(e: &WebPushEmulator, id: &str, change: impl FnOnce(&mut Subscriber)) -> StatusCode {
    match e.service.lock().subscribers.get_mut(id) {
        Some(s) => {
            change(s);
            StatusCode::NO_CONTENT
        }
        None => StatusCode::NOT_FOUND,
    }
}

async fn gone(State(e): State<WebPushEmulator>, Path(id): Path<String>) -> StatusCode {
    mark(&e, &id, |s| s.gone = true).await
}

async fn throttle(State(e): State<WebPushEmulator>, Path(id): Path<String>) -> StatusCode {
    mark(&e, &id, |s| s.throttle_next = true).await
}

async fn messages(State(e): State<WebPushEmulator>) -> Json<serde_json::Value> {
    let service = e.service.lock();
    Json(json!({
        "total": service.received.total(),
        "messages": service.received.recent(),
        "per_subscription": service.received.counts(),
    }))
}

async fn push(
    State(e): State<WebPushEmulator>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (key, auth) = {
        let mut service = e.service.lock();
        let Some(s) = service.subscribers.get_mut(&id) else {
            return refuse(StatusCode::NOT_FOUND, "no such subscription");
        };
        if s.gone {
            return refuse(
                StatusCode::GONE,
                "the subscription expired or was unsubscribed",
            );
        }
        if std::mem::take(&mut s.throttle_next) {
            let mut answer = refuse(StatusCode::TOO_MANY_REQUESTS, "too many messages");
            answer
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            return answer;
        }
        (s.key.clone(), s.auth)
    };
    let Some(ttl) = header("ttl").and_then(|t| t.parse::<u32>().ok()) else {
        return refuse(StatusCode::BAD_REQUEST, "missing or invalid TTL header");
    };
    let Some(authorization) = header("authorization") else {
        return refuse(StatusCode::UNAUTHORIZED, "missing VAPID authorization");
    };
    let now = chrono::Utc::now().timestamp();
    let known = e.service.lock().verified.get(authorization).cloned();
    let (vapid_key, claims) = match known {
        Some((key, claims)) if claims.exp > now => (key, claims),
        _ => match verify(authorization, &e.base_url, now) {
            Ok(found) => {
                let mut service = e.service.lock();
                if service.verified.len() > 10_000 {
                    service.verified.clear();
                }
                service
                    .verified
                    .insert(authorization.to_string(), found.clone());
                found
            }
            Err(error) => return refuse(StatusCode::UNAUTHORIZED, &error.to_string()),
        },
    };
    if header("content-encoding") != Some("aes128gcm") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Content-Encoding must be aes128gcm",
        );
    }
    if body.len() > MAX_BODY {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "the body is over 4096 bytes");
    }
    let payload = match decrypt(&body, &key, &auth) {
        Ok(p) => p,
        Err(error) => return refuse(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    e.service.lock().received.push(
        id.clone(),
        Received {
            subscription: id.clone(),
            payload: String::from_utf8_lossy(&payload).into_owned(),
            ttl,
            urgency: header("urgency").map(str::to_string),
            topic: header("topic").map(str::to_string),
            vapid_key,
            subject: claims.sub,
        },
    );
    let mut answer = StatusCode::CREATED.into_response();
    if let Ok(location) = format!("{}/webpush/messages", e.base_url).parse() {
        answer.headers_mut().insert("location", location);
    }
    answer
}
