//! Sending to FCM with a project's service account: an access token fetched from its
//! `token_uri` (one fetch at a time, reused until shortly before it expires, fetched
//! again once when FCM refuses it), one HTTP v1 request per registration token.

use std::sync::Arc;

use appizer_core::push::ProviderRecord;

use super::config::FcmConfig;
use super::payload;
use super::request::{build, classify, Outcome};
use super::token::{AccessTokens, ServiceAccount};
use crate::message::{Content, Tags};
use crate::providers::{Attempt, Target, Unusable};
use crate::transport::Transport;

/// Google's token endpoint; any other `token_uri` must be on `push.fcm_url`'s host.
pub const GOOGLE_TOKEN_HOST: &str = "oauth2.googleapis.com";

pub struct FcmSender {
    account: ServiceAccount,
    tokens: AccessTokens,
    fetching: tokio::sync::Mutex<()>,
    base: String,
    transport: Arc<Transport>,
}

impl std::fmt::Debug for FcmSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmSender")
            .field("account", &self.account)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn unusable(reason: String) -> Unusable {
    Unusable {
        provider: "fcm",
        reason,
    }
}

impl FcmSender {
    /// From the stored record's opened secret (the service account JSON).
    pub fn load(
        _record: &ProviderRecord,
        secret: &[u8],
        config: &FcmConfig,
        transport: Arc<Transport>,
    ) -> Result<Self, Unusable> {
        let json: serde_json::Value = serde_json::from_slice(secret)
            .map_err(|_| unusable("the service account is not JSON".into()))?;
        let account = ServiceAccount::from_json(&json).map_err(|e| unusable(e.to_string()))?;
        let host = |url: &str| {
            url::Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
        };
        let token_host = host(&account.token_uri);
        if token_host.is_none()
            || (token_host.as_deref() != Some(GOOGLE_TOKEN_HOST) && token_host != host(&config.url))
        {
            return Err(unusable(format!(
                "token_uri must be on {GOOGLE_TOKEN_HOST} or push.fcm_url's host"
            )));
        }
        Ok(Self {
            account,
            tokens: AccessTokens::default(),
            fetching: tokio::sync::Mutex::new(()),
            base: config.url.clone(),
            transport,
        })
    }

    /// The current access token, fetched when there is none (one fetch at a time).
    async fn access_token(&self) -> Result<String, Attempt> {
        let now = chrono::Utc::now().timestamp();
        if let Some(token) = self.tokens.current(now) {
            return Ok(token);
        }
        let _one = self.fetching.lock().await;
        if let Some(token) = self.tokens.current(now) {
            return Ok(token);
        }
        let retry = |reason: String| Attempt::Retry {
            after: None,
            reason,
        };
        let answer = self
            .transport
            .send(self.account.token_request(now))
            .await
            .map_err(|e| retry(format!("token endpoint: {}", e.kind())))?;
        match answer.status.as_u16() {
            200..=299 => self
                .tokens
                .accept(&answer.body, now)
                .map_err(|e| retry(e.to_string())),
            // The grant is refused: the service account is wrong (or revoked).
            400..=499 => Err(Attempt::Fail(format!(
                "token endpoint refused the service account ({})",
                answer.status.as_u16()
            ))),
            status => Err(retry(format!("token endpoint answered {status}"))),
        }
    }

    pub async fn send(&self, content: &Content, tags: &Tags, target: Target<'_>) -> Attempt {
        let message = match payload::message(content, tags) {
            Ok(message) => message,
            Err(refused) => return Attempt::Fail(refused.rule),
        };
        for renewed in [false, true] {
            let access = match self.access_token().await {
                Ok(token) => token,
                Err(attempt) => return attempt,
            };
            let request = build(
                &self.base,
                &self.account.project_id,
                &access,
                target.address,
                &message,
            );
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
                    self.tokens.expire();
                    continue;
                }
                Outcome::RenewToken => Attempt::Retry {
                    after: None,
                    reason: "UNAUTHENTICATED".into(),
                },
                Outcome::Retry { after, reason } => Attempt::Retry { after, reason },
                Outcome::Fail { reason } => Attempt::Fail(reason),
            };
        }
        unreachable!("the second round returns")
    }
}
