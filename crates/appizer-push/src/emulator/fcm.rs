//! An FCM HTTP v1 service and its OAuth2 token endpoint, under `/fcm` (so `push.fcm_url`
//! is `http://HOST:PORT/fcm`):
//! - `POST /fcm/service-accounts` takes a service account JSON (as given to Appizer):
//!   the emulator then knows its key, and answers the account with `token_uri` pointed
//!   at itself;
//! - `POST /fcm/token` is that `token_uri`: a `jwt-bearer` grant whose RS256 assertion
//!   must verify with the account's key, name it as `iss`, have `aud` this endpoint, the
//!   messaging scope and at most an hour of validity; answers an access token;
//! - `POST /fcm/v1/projects/{project}/messages:send` needs a valid access token of that
//!   project's account, a registration token and string `data` values; answers the
//!   message name, or FCM's error body (`INVALID_ARGUMENT`, `UNREGISTERED`,
//!   `UNAUTHENTICATED`, `QUOTA_EXCEEDED` with `Retry-After`);
//! - `GET /fcm/messages` lists what was accepted (the most recent
//!   [`KEEP`](super::KEEP)), with totals per token; `POST /fcm/tokens/{token}/unregistered`
//!   makes a token answer `UNREGISTERED`, `POST /fcm/projects/{project}/throttle` the
//!   project's next send answer 429.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use parking_lot::Mutex;
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};

use crate::providers::fcm::token::{ServiceAccount, ASSERTION_SECS, SCOPE};

struct Account {
    project_id: String,
    public_key: Vec<u8>,
}

#[derive(Default)]
struct Service {
    /// By client email.
    accounts: HashMap<String, Account>,
    /// Access token -> project id.
    tokens: HashMap<String, String>,
    unregistered: HashSet<String>,
    throttled: HashSet<String>,
    received: super::Log<Value>,
}

/// The emulator; `base_url` is how clients reach it (`http://127.0.0.1:PORT`).
#[derive(Clone)]
pub struct FcmEmulator {
    base_url: String,
    service: Arc<Mutex<Service>>,
}

/// FCM's error body.
fn fcm_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {
        "code": status.as_u16(), "message": message, "status": code,
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}],
    }});
    (status, Json(body)).into_response()
}

fn grant_error(description: &str) -> Response {
    let body = json!({"error": "invalid_grant", "error_description": description});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

impl FcmEmulator {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            service: Arc::default(),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/fcm/service-accounts", post(add_account))
            .route("/fcm/token", post(token))
            .route("/fcm/v1/projects/{project}/messages:send", post(send))
            .route("/fcm/tokens/{token}/unregistered", post(unregister))
            .route("/fcm/projects/{project}/throttle", post(throttle))
            .route("/fcm/messages", get(messages))
            .with_state(self.clone())
    }

    fn token_uri(&self) -> String {
        format!("{}/fcm/token", self.base_url)
    }

    /// The messages accepted so far.
    pub fn received(&self) -> Vec<Value> {
        self.service.lock().received.recent()
    }
}

async fn add_account(State(e): State<FcmEmulator>, Json(mut account): Json<Value>) -> Response {
    account["token_uri"] = json!(e.token_uri());
    let loaded = match ServiceAccount::from_json(&account) {
        Ok(a) => a,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    e.service.lock().accounts.insert(
        loaded.client_email.clone(),
        Account {
            project_id: loaded.project_id.clone(),
            public_key: loaded.public_key().to_vec(),
        },
    );
    Json(account).into_response()
}

async fn token(State(e): State<FcmEmulator>, form: Bytes) -> Response {
    let field = |name: &str| {
        form_urlencoded::parse(&form)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if field("grant_type").as_deref() != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return grant_error("unsupported grant_type");
    }
    let assertion = field("assertion").unwrap_or_default();
    let Some((input, signature)) = assertion.rsplit_once('.') else {
        return grant_error("the assertion is not a JWT");
    };
    let claims: Value = match input
        .split_once('.')
        .and_then(|(_, c)| B64.decode(c).ok())
        .and_then(|c| serde_json::from_slice::<Value>(&c).ok())
    {
        Some(c) => c,
        None => return grant_error("the assertion's claims are not JSON"),
    };
    let mut service = e.service.lock();
    let Some(account) = claims["iss"]
        .as_str()
        .and_then(|iss| service.accounts.get(iss))
    else {
        return grant_error("no such service account");
    };
    let verifies = B64.decode(signature).is_ok_and(|sig| {
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &account.public_key)
            .verify(input.as_bytes(), &sig)
            .is_ok()
    });
    if !verifies {
        return grant_error("invalid JWT signature");
    }
    let now = chrono::Utc::now().timestamp();
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap_or(0),
        claims["exp"].as_i64().unwrap_or(0),
    );
    if claims["aud"] != e.token_uri().as_str() {
        return grant_error("aud is not this token endpoint");
    }
    if !claims["scope"]
        .as_str()
        .is_some_and(|s| s.split(' ').any(|s| s == SCOPE))
    {
        return grant_error("the scope does not include firebase.messaging");
    }
    if exp <= now || exp - iat > ASSERTION_SECS || iat > now + 60 {
        return grant_error("the assertion is expired or valid for more than an hour");
    }
    let project = account.project_id.clone();
    let access = format!("ya29.emulated-{}", uuid::Uuid::now_v7().simple());
    service.tokens.insert(access.clone(), project);
    Json(json!({"access_token": access, "expires_in": 3599, "token_type": "Bearer"}))
        .into_response()
}

async fn send(
    State(e): State<FcmEmulator>,
    Path(project): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let mut service = e.service.lock();
    if bearer.and_then(|t| service.tokens.get(t)) != Some(&project) {
        return fcm_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        );
    }
    if service.throttled.remove(&project) {
        let mut answer = fcm_error(
            StatusCode::TOO_MANY_REQUESTS,
            "QUOTA_EXCEEDED",
            "Sending limit exceeded for the project.",
        );
        answer
            .headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("2"));
        return answer;
    }
    let message = &body["message"];
    let token = message["token"].as_str().unwrap_or("");
    let valid = |b: u8| b.is_ascii_alphanumeric() || b"_-:.".contains(&b);
    if token.is_empty() || !token.bytes().all(valid) {
        return fcm_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
        );
    }
    if let Some(data) = message.get("data").and_then(Value::as_object) {
        if data.values().any(|v| !v.is_string()) {
            return fcm_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "Invalid value at 'message.data': data values must be strings",
            );
        }
    }
    if service.unregistered.contains(token) {
        return fcm_error(
            StatusCode::NOT_FOUND,
            "UNREGISTERED",
            "Requested entity was not found.",
        );
    }
    service.received.push(token.to_string(), message.clone());
    let name = format!("projects/{project}/messages/{}", service.received.total());
    Json(json!({ "name": name })).into_response()
}

async fn unregister(State(e): State<FcmEmulator>, Path(token): Path<String>) -> StatusCode {
    e.service.lock().unregistered.insert(token);
    StatusCode::NO_CONTENT
}

async fn throttle(State(e): State<FcmEmulator>, Path(project): Path<String>) -> StatusCode {
    e.service.lock().throttled.insert(project);
    StatusCode::NO_CONTENT
}

async fn messages(State(e): State<FcmEmulator>) -> Json<Value> {
    let service = e.service.lock();
    Json(json!({
        "total": service.received.total(),
        "messages": service.received.recent(),
        "per_token": service.received.counts(),
    }))
}
