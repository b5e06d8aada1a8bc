//! FCM settings (from `[push]`): where message requests go. The access token comes
//! from each service account's own `token_uri`.

use appizer_core::config::PushConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FcmConfig {
    pub url: String,
}

impl FcmConfig {
    pub fn from_config(push: &PushConfig) -> Self {
        Self {
            url: push.fcm_url.trim().trim_end_matches('/').to_string(),
        }
    }
}
