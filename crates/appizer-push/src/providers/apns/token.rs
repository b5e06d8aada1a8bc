//! The APNs provider token: a JWT signed with ES256 by the team's `.p8` key (header
//! `alg`, `kid` = key id; claims `iss` = team id, `iat`). Apple refuses one older than
//! an hour and throttles one renewed more often than every 20 minutes, so a token is
//! reused for [`REUSE_SECS`] and renewed early when APNs answers
//! `ExpiredProviderToken`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use p256::SecretKey;
use parking_lot::Mutex;
use serde_json::json;

use super::errors::ApnsError;

/// How long one token is used (between Apple's 20-minute floor and 60-minute limit).
pub const REUSE_SECS: i64 = 40 * 60;

/// Signs provider tokens for one team's key, reusing each for [`REUSE_SECS`].
pub struct ProviderToken {
    team_id: String,
    key_id: String,
    key: SigningKey,
    current: Mutex<Option<(i64, String)>>,
}

impl std::fmt::Debug for ProviderToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderToken")
            .field("team_id", &self.team_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ProviderToken {
    /// From the `.p8` file's text.
    pub fn new(team_id: &str, key_id: &str, p8: &str) -> Result<Self, ApnsError> {
        let secret = SecretKey::from_pkcs8_pem(p8.trim()).map_err(|_| ApnsError::BadKey)?;
        Ok(Self {
            team_id: team_id.into(),
            key_id: key_id.into(),
            key: SigningKey::from(&secret),
            current: Mutex::new(None),
        })
    }

    /// A token signed at `iat` (seconds since the epoch).
    pub fn sign(&self, iat: i64) -> String {
        let header = B64.encode(json!({"alg": "ES256", "kid": self.key_id}).to_string());
        let claims = B64.encode(json!({"iss": self.team_id, "iat": iat}).to_string());
        let input = format!("{header}.{claims}");
        let signature: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(signature.to_bytes()))
    }

    /// The token to send at `now`: the current one while it is young enough, else a
    /// new one.
    pub fn get(&self, now: i64) -> String {
        let mut current = self.current.lock();
        match &*current {
            Some((iat, token)) if now - iat < REUSE_SECS && now >= *iat => token.clone(),
            _ => {
                let token = self.sign(now);
                *current = Some((now, token.clone()));
                token
            }
        }
    }

    /// Forgets the current token after APNs answered `ExpiredProviderToken`: the next
    /// [`get`](Self::get) signs a new one.
    pub fn expire(&self) {
        *self.current.lock() = None;
    }
}
