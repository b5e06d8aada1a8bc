//! A browser's push subscription (`PushSubscription.toJSON()`): its endpoint and the
//! keys a message is encrypted to, checked when a device registers.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use p256::PublicKey;

use super::config::WebPushConfig;
use super::crypto::{encrypt, public_bytes};
use super::errors::WebPushError;
use super::vapid::random_secret;

/// A checked subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub endpoint: String,
    /// The browser's P-256 public key, uncompressed.
    pub p256dh: [u8; 65],
    /// The browser's authentication secret.
    pub auth: [u8; 16],
}

/// Decodes base64url with or without padding (browsers send it unpadded; some
/// libraries pad).
fn decode(text: &str) -> Option<Vec<u8>> {
    B64.decode(text.trim_end_matches('=')).ok()
}

impl Subscription {
    /// Checks the parts of a subscription: the endpoint against `config`, `p256dh` a
    /// P-256 point, `auth` 16 bytes, both base64url.
    pub fn parse(
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        config: &WebPushConfig,
    ) -> Result<Self, WebPushError> {
        config.check_endpoint(endpoint)?;
        let key = decode(p256dh)
            .and_then(|bytes| PublicKey::from_sec1_bytes(&bytes).ok())
            .ok_or(WebPushError::BadKey("p256dh"))?;
        let auth: [u8; 16] = decode(auth)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(WebPushError::BadAuth)?;
        Ok(Self {
            endpoint: endpoint.to_string(),
            p256dh: public_bytes(&key),
            auth,
        })
    }

    /// `payload` encrypted for this subscription, with a fresh sender key and salt.
    pub fn seal(&self, payload: &[u8]) -> Result<Vec<u8>, WebPushError> {
        let mut salt = [0u8; 16];
        rand::fill(&mut salt);
        encrypt(payload, &self.p256dh, &self.auth, &random_secret(), &salt)
    }

    /// The keys as a browser sends them (base64url, unpadded).
    pub fn keys(&self) -> (String, String) {
        (B64.encode(self.p256dh), B64.encode(self.auth))
    }
}
