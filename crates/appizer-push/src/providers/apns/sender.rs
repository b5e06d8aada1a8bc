//! Sending to APNs with a project's credentials: the provider token (reused, renewed
//! once when Apple answers `ExpiredProviderToken`), the payload and headers of the
//! message, one HTTP/2 request per device.

use std::sync::Arc;

use appizer_core::push::ProviderRecord;

use super::config::ApnsConfig;
use super::payload;
use super::request::{build, classify, Outcome};
use super::token::ProviderToken;
use crate::message::{Content, Tags};
use crate::providers::{retry_after, Attempt, Target, Unusable};
use crate::transport::Transport;

pub struct ApnsSender {
    token: ProviderToken,
    topic: String,
    base: String,
    transport: Arc<Transport>,
}

impl std::fmt::Debug for ApnsSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsSender")
            .field("topic", &self.topic)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn unusable(reason: &str) -> Unusable {
    Unusable {
        provider: "apns",
        reason: reason.into(),
    }
}

impl ApnsSender {
    /// From the stored record and its opened secret (the `.p8` key's text).
    pub fn load(
        record: &ProviderRecord,
        secret: &[u8],
        config: &ApnsConfig,
        transport: Arc<Transport>,
    ) -> Result<Self, Unusable> {
        let setting = |name: &str| {
            record.settings[name]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| unusable(&format!("the settings have no {name}")))
        };
        let p8 = std::str::from_utf8(secret).map_err(|_| unusable("the key is not text"))?;
        let token = ProviderToken::new(&setting("team_id")?, &setting("key_id")?, p8)
            .map_err(|e| unusable(&e.to_string()))?;
        Ok(Self {
            token,
            topic: setting("topic")?,
            base: config.base_url(&setting("environment")?).to_string(),
            transport,
        })
    }

    pub async fn send(&self, content: &Content, tags: &Tags, target: Target<'_>) -> Attempt {
        let payload = match payload::build(content, tags) {
            Ok(payload) => payload,
            Err(refused) => return Attempt::Fail(refused.rule),
        };
        let now = chrono::Utc::now().timestamp();
        let headers = payload::headers(content, &self.topic, target.delivery_id, now);
        for renewed in [false, true] {
            let request = match build(
                &self.base,
                target.address,
                &self.token.get(now),
                &headers,
                payload.clone(),
            ) {
                Ok(request) => request,
                Err(e) => return Attempt::Fail(e.to_string()),
            };
            let answer = match self.transport.send(request).await {
                Ok(answer) => answer,
                Err(e) => {
                    return Attempt::Retry {
                        after: None,
                        reason: e.kind().into(),
                    }
                }
            };
            return match classify(answer.status, &answer.headers, &answer.body) {
                Outcome::Accepted => Attempt::Accepted,
                Outcome::Retire { reason } => Attempt::Retire(reason),
                Outcome::RenewToken if !renewed => {
                    self.token.expire();
                    continue;
                }
                Outcome::RenewToken => Attempt::Retry {
                    after: None,
                    reason: "ExpiredProviderToken".into(),
                },
                Outcome::Retry { reason } => Attempt::Retry {
                    after: retry_after(&answer.headers),
                    reason,
                },
                Outcome::Fail { reason } => Attempt::Fail(reason),
            };
        }
        unreachable!("the second round returns")
    }
}
