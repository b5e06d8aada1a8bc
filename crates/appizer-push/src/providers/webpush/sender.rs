//! Sending Web Push with a project's VAPID key: each subscription checked against the
//! allowed hosts again (the setting may have changed since it registered), the payload
//! encrypted to it, one signed request per subscription.

use std::sync::Arc;

use appizer_core::push::ProviderRecord;

use super::config::WebPushConfig;
use super::payload;
use super::request::{build_authorized, classify, Outcome};
use super::subscription::Subscription;
use super::vapid::{origin_of, VapidKey};
use crate::message::{Content, Tags};
use crate::providers::{Attempt, Target, Unusable};
use crate::transport::Transport;

/// A VAPID authorization is reused this long for its origin (it is valid for
/// [`VALIDITY_SECS`](super::vapid::VALIDITY_SECS)), so a fan-out signs once per push
/// service, not once per browser.
pub const AUTHORIZATION_REUSE_SECS: i64 = 3600;

pub struct WebPushSender {
    key: VapidKey,
    subject: String,
    config: WebPushConfig,
    transport: Arc<Transport>,
    /// By origin: when signed, and the header.
    authorizations: parking_lot::Mutex<std::collections::HashMap<String, (i64, String)>>,
}

impl std::fmt::Debug for WebPushSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebPushSender")
            .field("key", &self.key)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl WebPushSender {
    /// From the stored record and its opened secret (the VAPID private key).
    pub fn load(
        record: &ProviderRecord,
        secret: &[u8],
        config: &WebPushConfig,
        transport: Arc<Transport>,
    ) -> Result<Self, Unusable> {
        let unusable = |reason: &str| Unusable {
            provider: "webpush",
            reason: reason.into(),
        };
        Ok(Self {
            key: VapidKey::from_private_bytes(secret).map_err(|e| unusable(&e.to_string()))?,
            subject: record.settings["subject"]
                .as_str()
                .ok_or_else(|| unusable("the settings have no subject"))?
                .to_string(),
            config: config.clone(),
            transport,
            authorizations: Default::default(),
        })
    }

    /// The authorization for `endpoint`'s origin at `now`, signed again after
    /// [`AUTHORIZATION_REUSE_SECS`].
    fn authorization(&self, endpoint: &str, now: i64) -> Result<String, String> {
        let origin = origin_of(endpoint).map_err(|e| e.to_string())?;
        let mut known = self.authorizations.lock();
        if let Some((signed, header)) = known.get(&origin) {
            if now >= *signed && now - signed < AUTHORIZATION_REUSE_SECS {
                return Ok(header.clone());
            }
        }
        let header = self
            .key
            .authorization(endpoint, &self.subject, now)
            .map_err(|e| e.to_string())?;
        if known.len() > 1000 {
            known.clear();
        }
        known.insert(origin, (now, header.clone()));
        Ok(header)
    }

    pub async fn send(&self, content: &Content, tags: &Tags, target: Target<'_>) -> Attempt {
        let Some(keys) = target.web_keys else {
            return Attempt::Retire("the subscription has no keys".into());
        };
        let subscription =
            match Subscription::parse(target.address, &keys.p256dh, &keys.auth, &self.config) {
                Ok(s) => s,
                Err(e) => return Attempt::Fail(e.to_string()),
            };
        let payload = match payload::build(content, tags) {
            Ok(payload) => payload,
            Err(refused) => return Attempt::Fail(refused.rule),
        };
        let now = chrono::Utc::now().timestamp();
        let options = payload::options(content);
        let authorization = match self.authorization(&subscription.endpoint, now) {
            Ok(a) => a,
            Err(reason) => return Attempt::Fail(reason),
        };
        let request = match build_authorized(&subscription, &payload, &authorization, &options) {
            Ok(request) => request,
            Err(e) => return Attempt::Fail(e.to_string()),
        };
        match self.transport.send(request).await {
            Err(e) => Attempt::Retry {
                after: None,
                reason: e.kind().into(),
            },
            Ok(answer) => match classify(answer.status, &answer.headers) {
                Outcome::Accepted => Attempt::Accepted,
                Outcome::Retire { reason } => Attempt::Retire(reason),
                Outcome::Retry { after, reason } => Attempt::Retry { after, reason },
                Outcome::Fail { reason } => Attempt::Fail(reason),
            },
        }
    }
}
