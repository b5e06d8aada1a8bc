//! An APNs service (token-based authentication, HTTP/2) at the root of its listener, as
//! `api.push.apple.com` is (so `push.apns_url` is `http://HOST:PORT`), reached with
//! HTTP/2 prior knowledge:
//! - `POST /apns/keys` takes `{team_id, key_id, private_key (.p8 PEM), topics}`, the
//!   signing keys and bundle ids Apple would know for a team;
//! - `POST /3/device/{token}` takes a notification. It checks what APNs checks: HTTP/2,
//!   a provider token (`bearer` ES256 JWT whose `kid` is a known key of the `iss` team,
//!   signed by it, `iat` within the last hour), `apns-topic` one of the team's,
//!   `apns-push-type`, `apns-priority` (not 10 for `background`), `apns-expiration`,
//!   `apns-collapse-id` (64 bytes at most), `apns-id` (a UUID, echoed), the device
//!   token (hex), a JSON payload of 1 to 4,096 bytes with an `aps` dictionary; it
//!   answers 200 or Apple's status and `{"reason": ...}` (410 adds `timestamp`);
//! - control: `POST /apns/devices/{token}/unregistered` (410 `Unregistered` from then
//!   on), `POST /apns/keys/{key_id}/expire` (tokens issued before now answer 403
//!   `ExpiredProviderToken`), `POST /apns/throttle/{n}` (the next n answer 429
//!   `TooManyRequests`), `POST /apns/unavailable/{n}` (the next n answer 503
//!   `ServiceUnavailable`);
//! - `GET /apns/notifications` lists what was accepted (the most recent
//!   [`KEEP`](super::KEEP)), with totals per device token.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePrivateKey;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::Log;
use crate::providers::apns::request::MAX_PAYLOAD;

const PUSH_TYPES: [&str; 9] = [
    "alert",
    "background",
    "location",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "liveactivity",
    "pushtotalk",
];

/// A provider token older than this is expired (Apple: one hour).
const TOKEN_LIFETIME_SECS: i64 = 3600;

struct Key {
    team_id: String,
    public: VerifyingKey,
    /// Tokens issued before this (seconds) are expired.
    expired_before: i64,
}

#[derive(Default)]
struct Service {
    /// By key id.
    keys: HashMap<String, Key>,
    /// Bundle ids by team.
    topics: HashMap<String, HashSet<String>>,
    /// Provider tokens whose signature checked out, with their key id and `iat` (as
    /// APNs, a token is verified once, then recognised).
    verified: HashMap<String, (String, i64)>,
    unregistered: HashSet<String>,
    throttle: u64,
    unavailable: u64,
    log: Log<Notification>,
}

/// A notification as a device would get it.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    pub token: String,
    pub topic: String,
    pub push_type: String,
    pub priority: u8,
    pub expiration: i64,
    pub collapse_id: Option<String>,
    pub apns_id: String,
    pub payload: Value,
}

/// The emulator.
#[derive(Clone, Default)]
pub struct ApnsEmulator {
    service: Arc<Mutex<Service>>,
}

/// Why a notification was refused: the status and APNs' JSON body.
struct Refusal(StatusCode, Value);

fn refusal(status: StatusCode, reason: &str) -> Refusal {
    Refusal(status, json!({ "reason": reason }))
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

fn reason(status: StatusCode, reason: &str) -> Response {
    refusal(status, reason).into_response()
}

#[derive(Deserialize)]
struct NewKey {
    team_id: String,
    key_id: String,
    private_key: String,
    topics: Vec<String>,
}

impl ApnsEmulator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/apns/keys", post(add_key))
            .route("/apns/keys/{key_id}/expire", post(expire))
            .route("/apns/devices/{token}/unregistered", post(unregister))
            .route("/apns/throttle/{n}", post(throttle))
            .route("/apns/unavailable/{n}", post(unavailable))
            .route("/apns/notifications", get(notifications))
            .route("/3/device/{token}", post(push))
            .with_state(self.clone())
    }

    /// The notifications accepted (the most recent).
    pub fn received(&self) -> Vec<Notification> {
        self.service.lock().log.recent()
    }

    /// How many notifications were accepted in all.
    pub fn total(&self) -> u64 {
        self.service.lock().log.total()
    }

    /// How many notifications each device token got.
    pub fn counts(&self) -> HashMap<String, u64> {
        self.service.lock().log.counts().clone()
    }
}

async fn add_key(State(e): State<ApnsEmulator>, Json(key): Json<NewKey>) -> Response {
    let Ok(secret) = p256::SecretKey::from_pkcs8_pem(key.private_key.trim()) else {
        return (
            StatusCode::BAD_REQUEST,
            "private_key is not a P-256 PKCS#8 PEM key",
        )
            .into_response();
    };
    let mut service = e.service.lock();
    service.keys.insert(
        key.key_id,
        Key {
            team_id: key.team_id.clone(),
            public: VerifyingKey::from(&secret.public_key()),
            expired_before: 0,
        },
    );
    service
        .topics
        .entry(key.team_id)
        .or_default()
        .extend(key.topics);
    StatusCode::NO_CONTENT.into_response()
}

async fn expire(State(e): State<ApnsEmulator>, Path(key_id): Path<String>) -> StatusCode {
    match e.service.lock().keys.get_mut(&key_id) {
        Some(key) => {
            key.expired_before = chrono::Utc::now().timestamp();
            StatusCode::NO_CONTENT
        }
        None => StatusCode::NOT_FOUND,
    }
}

async fn unregister(State(e): State<ApnsEmulator>, Path(token): Path<String>) -> StatusCode {
    e.service
        .lock()
        .unregistered
        .insert(token.to_ascii_lowercase());
    StatusCode::NO_CONTENT
}

async fn throttle(State(e): State<ApnsEmulator>, Path(n): Path<u64>) -> StatusCode {
    e.service.lock().throttle = n;
    StatusCode::NO_CONTENT
}

async fn unavailable(State(e): State<ApnsEmulator>, Path(n): Path<u64>) -> StatusCode {
    e.service.lock().unavailable = n;
    StatusCode::NO_CONTENT
}

async fn notifications(State(e): State<ApnsEmulator>) -> Json<Value> {
    let service = e.service.lock();
    Json(json!({
        "total": service.log.total(),
        "notifications": service.log.recent(),
        "per_token": service.log.counts(),
    }))
}

/// The team of a valid provider token, or the reason APNs gives.
fn authenticate(
    service: &mut Service,
    headers: &HeaderMap,
    now: i64,
) -> Result<String, &'static str> {
    let jwt = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bearer "))
        .ok_or("MissingProviderToken")?;
    if let Some((kid, iat)) = service.verified.get(jwt) {
        let key = service.keys.get(kid).ok_or("InvalidProviderToken")?;
        if now - iat > TOKEN_LIFETIME_SECS || *iat < key.expired_before {
            return Err("ExpiredProviderToken");
        }
        return Ok(key.team_id.clone());
    }
    let mut parts = jwt.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("InvalidProviderToken");
    };
    let decode = |part: &str| {
        B64.decode(part)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    };
    let (Some(head), Some(body)) = (decode(header), decode(claims)) else {
        return Err("InvalidProviderToken");
    };
    if head["alg"] != "ES256" {
        return Err("InvalidProviderToken");
    }
    let kid = head["kid"].as_str().ok_or("InvalidProviderToken")?;
    let key = service.keys.get(kid).ok_or("InvalidProviderToken")?;
    if body["iss"].as_str() != Some(key.team_id.as_str()) {
        return Err("InvalidProviderToken");
    }
    let verified = B64
        .decode(signature)
        .ok()
        .and_then(|s| Signature::from_slice(&s).ok())
        .is_some_and(|s| {
            key.public
                .verify(format!("{header}.{claims}").as_bytes(), &s)
                .is_ok()
        });
    if !verified {
        return Err("InvalidProviderToken");
    }
    let iat = body["iat"].as_i64().ok_or("InvalidProviderToken")?;
    if iat > now + 60 {
        return Err("InvalidProviderToken");
    }
    if now - iat > TOKEN_LIFETIME_SECS || iat < key.expired_before {
        return Err("ExpiredProviderToken");
    }
    let team = key.team_id.clone();
    service
        .verified
        .insert(jwt.to_string(), (kid.to_string(), iat));
    Ok(team)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn push(
    State(e): State<ApnsEmulator>,
    Path(token): Path<String>,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if version != Version::HTTP_2 {
        return reason(StatusCode::HTTP_VERSION_NOT_SUPPORTED, "HTTP/2 only");
    }
    let now = chrono::Utc::now().timestamp();
    let apns_id = match header(&headers, "apns-id") {
        Some(id) => match uuid::Uuid::parse_str(id) {
            Ok(id) => id.hyphenated().to_string(),
            Err(_) => return reason(StatusCode::BAD_REQUEST, "BadMessageId"),
        },
        None => uuid::Uuid::new_v4().hyphenated().to_string(),
    };
    let answer = accept(&e, &token, &headers, &body, now, apns_id.clone());
    let mut answer = match answer {
        Ok(()) => StatusCode::OK.into_response(),
        Err(refused) => refused.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&apns_id) {
        answer.headers_mut().insert("apns-id", value);
    }
    answer
}

fn accept(
    e: &ApnsEmulator,
    token: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    apns_id: String,
) -> Result<(), Refusal> {
    let bad = |r: &str| Err(refusal(StatusCode::BAD_REQUEST, r));
    let mut service = e.service.lock();
    let team = match authenticate(&mut service, headers, now) {
        Ok(team) => team,
        Err(r) => return Err(refusal(StatusCode::FORBIDDEN, r)),
    };
    let Some(topic) = header(headers, "apns-topic") else {
        return bad("MissingTopic");
    };
    if !service.topics.get(&team).is_some_and(|t| t.contains(topic)) {
        return bad("TopicDisallowed");
    }
    let push_type = header(headers, "apns-push-type").unwrap_or("alert");
    if !PUSH_TYPES.contains(&push_type) {
        return bad("InvalidPushType");
    }
    let priority = match header(headers, "apns-priority").map(str::parse::<u8>) {
        None => 10,
        Some(Ok(p @ (1 | 5 | 10))) => p,
        Some(_) => return bad("BadPriority"),
    };
    if push_type == "background" && priority == 10 {
        return bad("BadPriority");
    }
    let expiration = match header(headers, "apns-expiration").map(str::parse::<i64>) {
        None => 0,
        Some(Ok(at)) if at >= 0 => at,
        Some(_) => return bad("BadExpirationDate"),
    };
    let collapse_id = header(headers, "apns-collapse-id").map(str::to_string);
    if collapse_id.as_ref().is_some_and(|c| c.len() > 64) {
        return bad("BadCollapseId");
    }
    let token = token.to_ascii_lowercase();
    if token.len() < 64 || token.len() % 2 != 0 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return bad("BadDeviceToken");
    }
    if body.is_empty() {
        return bad("PayloadEmpty");
    }
    if body.len() > MAX_PAYLOAD {
        return Err(refusal(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"));
    }
    let payload: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) if v.get("aps").is_some_and(Value::is_object) => v,
        _ => return bad("BadRequest"),
    };
    if service.unregistered.contains(&token) {
        let body = json!({"reason": "Unregistered", "timestamp": now * 1000});
        return Err(Refusal(StatusCode::GONE, body));
    }
    if service.throttle > 0 {
        service.throttle -= 1;
        return Err(refusal(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"));
    }
    if service.unavailable > 0 {
        service.unavailable -= 1;
        return Err(refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
        ));
    }
    service.log.push(
        token.clone(),
        Notification {
            token,
            topic: topic.to_string(),
            push_type: push_type.to_string(),
            priority,
            expiration,
            collapse_id,
            apns_id,
            payload,
        },
    );
    Ok(())
}
