//! FCM's OAuth2 access token, from the service account: an RS256 JWT assertion (`iss`
//! the client email, `scope` Firebase Messaging, `aud` the `token_uri`, valid one hour)
//! posted to the `token_uri` as a `jwt-bearer` grant; the access token is reused until
//! [`RENEW_BEFORE_SECS`] before it expires.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use http::{Method, Request};
use parking_lot::Mutex;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde::Deserialize;
use serde_json::{json, Value};

use super::errors::FcmError;

/// The scope of sending messages.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// How long an assertion is valid, the most Google accepts.
pub const ASSERTION_SECS: i64 = 3600;
/// An access token is renewed this long before it expires.
pub const RENEW_BEFORE_SECS: i64 = 300;

/// A service account, loaded for signing.
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    pub token_uri: String,
    key: RsaKeyPair,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// From the JSON Google issues.
    pub fn from_json(account: &Value) -> Result<Self, FcmError> {
        let text = |name: &'static str| {
            account
                .get(name)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or(FcmError::Missing(name))
        };
        let pem = text("private_key")?;
        let der = rustls_pemfile::private_key(&mut pem.as_bytes())
            .ok()
            .flatten()
            .ok_or(FcmError::BadKey)?;
        Ok(Self {
            project_id: text("project_id")?,
            client_email: text("client_email")?,
            token_uri: text("token_uri")?,
            key: RsaKeyPair::from_pkcs8(der.secret_der()).map_err(|_| FcmError::BadKey)?,
        })
    }

    /// The signed assertion at `now` (seconds since the epoch).
    pub fn assertion(&self, now: i64) -> String {
        let header = B64.encode(json!({"alg": "RS256", "typ": "JWT"}).to_string());
        let claims = B64.encode(
            json!({
                "iss": self.client_email, "scope": SCOPE, "aud": self.token_uri,
                "iat": now, "exp": now + ASSERTION_SECS,
            })
            .to_string(),
        );
        let input = format!("{header}.{claims}");
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .expect("an RSA key signs");
        format!("{input}.{}", B64.encode(signature))
    }

    /// The request exchanging an assertion for an access token.
    pub fn token_request(&self, now: i64) -> Request<Vec<u8>> {
        let form = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={}",
            self.assertion(now)
        );
        Request::builder()
            .method(Method::POST)
            .uri(&self.token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.into_bytes())
            .expect("a token_uri checked when the credentials were saved")
    }

    /// The public half of the key, for tests and emulators checking assertions.
    pub fn public_key(&self) -> &[u8] {
        self.key.public().as_ref()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: i64,
}

/// Access tokens of one service account, reused until shortly before they expire.
#[derive(Debug, Default)]
pub struct AccessTokens {
    current: Mutex<Option<(String, i64)>>,
}

impl AccessTokens {
    /// The current token, if it is still good at `now`.
    pub fn current(&self, now: i64) -> Option<String> {
        self.current
            .lock()
            .as_ref()
            .filter(|(_, expires)| now < expires - RENEW_BEFORE_SECS)
            .map(|(token, _)| token.clone())
    }

    /// Keeps the token of a token endpoint answer received at `now`.
    pub fn accept(&self, body: &[u8], now: i64) -> Result<String, FcmError> {
        let answer: TokenAnswer = serde_json::from_slice(body)
            .map_err(|_| FcmError::TokenRefused(String::from_utf8_lossy(body).into_owned()))?;
        *self.current.lock() = Some((answer.access_token.clone(), now + answer.expires_in));
        Ok(answer.access_token)
    }

    /// Forgets the token after FCM refused it.
    pub fn expire(&self) {
        *self.current.lock() = None;
    }
}
