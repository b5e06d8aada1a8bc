//! RFC 8292 VAPID: the application server identifies itself to a push service with a
//! JWT signed with ES256 (`aud` the endpoint's origin, `exp` at most 24 hours ahead,
//! `sub` a `mailto:` or `https:` contact), sent as `Authorization: vapid t=<jwt>,
//! k=<public key>`. The public key is also what browsers take as
//! `applicationServerKey` in `pushManager.subscribe`, so subscriptions made with it
//! accept only pushes signed by its private half.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::SecretKey;
use serde::{Deserialize, Serialize};

use super::crypto::public_bytes;
use super::errors::WebPushError;

/// The longest a signature may be valid, by RFC 8292.
pub const MAX_VALIDITY_SECS: i64 = 24 * 3600;
/// How long the signatures this server makes are valid.
pub const VALIDITY_SECS: i64 = 12 * 3600;

/// The claims of a VAPID token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub aud: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

/// A VAPID key pair.
#[derive(Clone)]
pub struct VapidKey {
    secret: SecretKey,
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// A fresh P-256 private key from the operating system's generator.
pub fn random_secret() -> SecretKey {
    loop {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        // Fails only for zero or a value past the group order: draw again.
        if let Ok(key) = SecretKey::from_slice(&bytes) {
            return key;
        }
    }
}

impl VapidKey {
    pub fn generate() -> Self {
        Self {
            secret: random_secret(),
        }
    }

    /// The key whose private scalar is `bytes` (32, big-endian), as stored or imported.
    pub fn from_private_bytes(bytes: &[u8]) -> Result<Self, WebPushError> {
        SecretKey::from_slice(bytes)
            .map(|secret| Self { secret })
            .map_err(|_| WebPushError::BadKey("private_key"))
    }

    /// The private scalar, for storage under encryption; never logged or answered.
    pub fn private_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes().into()
    }

    /// The public key, uncompressed and base64url: the `applicationServerKey` browsers
    /// subscribe with, and the `k` of every authorization.
    pub fn public_key(&self) -> String {
        B64.encode(public_bytes(&self.secret.public_key()))
    }

    /// The `Authorization` header value for a push to `endpoint` at `now` (seconds
    /// since the epoch), with `subject` as the contact.
    pub fn authorization(
        &self,
        endpoint: &str,
        subject: &str,
        now: i64,
    ) -> Result<String, WebPushError> {
        let claims = Claims {
            aud: origin_of(endpoint)?,
            exp: now + VALIDITY_SECS,
            sub: Some(subject.to_string()),
        };
        let header = B64.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let payload = B64.encode(serde_json::to_vec(&claims).expect("claims serialize"));
        let input = format!("{header}.{payload}");
        let signature: Signature = SigningKey::from(&self.secret).sign(input.as_bytes());
        Ok(format!(
            "vapid t={input}.{}, k={}",
            B64.encode(signature.to_bytes()),
            self.public_key()
        ))
    }
}

/// The origin (`scheme://host[:port]`) of an endpoint URL: a VAPID token's audience.
pub fn origin_of(endpoint: &str) -> Result<String, WebPushError> {
    let url = url::Url::parse(endpoint).map_err(|_| WebPushError::BadEndpoint("is not a URL"))?;
    match url.origin() {
        url::Origin::Tuple(..) => Ok(url.origin().ascii_serialization()),
        url::Origin::Opaque(_) => Err(WebPushError::BadEndpoint("has no origin")),
    }
}

/// Checks an `Authorization` header as a push service does: the `vapid` scheme, an
/// ES256 signature by the key `k`, the audience `origin`, an expiry in the future and
/// at most 24 hours ahead of `now`. Returns the key and the claims.
pub fn verify(
    authorization: &str,
    origin: &str,
    now: i64,
) -> Result<(String, Claims), WebPushError> {
    let bad = WebPushError::Unauthorized;
    let rest = authorization
        .strip_prefix("vapid ")
        .ok_or(bad("not the vapid scheme"))?;
    let (mut token, mut key) = (None, None);
    for part in rest.split(',').map(str::trim) {
        match part.split_once('=') {
            Some(("t", v)) => token = Some(v),
            Some(("k", v)) => key = Some(v),
            _ => return Err(bad("a parameter other than t and k")),
        }
    }
    let (token, key) = (token.ok_or(bad("no t"))?, key.ok_or(bad("no k"))?);
    let public = B64.decode(key).map_err(|_| bad("k is not base64url"))?;
    let verifier =
        VerifyingKey::from_sec1_bytes(&public).map_err(|_| bad("k is not a P-256 key"))?;
    let (input, signature) = token.rsplit_once('.').ok_or(bad("t is not a JWT"))?;
    let (header, payload) = input.split_once('.').ok_or(bad("t is not a JWT"))?;
    let header: serde_json::Value = B64
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or(bad("the JWT header is not JSON"))?;
    if header["alg"] != "ES256" {
        return Err(bad("the JWT is not ES256"));
    }
    let signature = B64
        .decode(signature)
        .ok()
        .and_then(|s| Signature::from_slice(&s).ok())
        .ok_or(bad("the signature is not 64 bytes"))?;
    verifier
        .verify(input.as_bytes(), &signature)
        .map_err(|_| bad("the signature does not verify"))?;
    let claims: Claims = B64
        .decode(payload)
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or(bad("the claims are not JSON"))?;
    if claims.aud != origin {
        return Err(bad("aud is not the endpoint's origin"));
    }
    if claims.exp <= now {
        return Err(bad("expired"));
    }
    if claims.exp > now + MAX_VALIDITY_SECS {
        return Err(bad("exp is more than 24 hours ahead"));
    }
    Ok((key.to_string(), claims))
}
