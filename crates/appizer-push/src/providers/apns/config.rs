//! APNs settings (from `[push]`): where requests go.

use appizer_core::config::PushConfig;

/// Apple's hosts.
pub const PRODUCTION: &str = "https://api.push.apple.com";
pub const SANDBOX: &str = "https://api.sandbox.push.apple.com";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApnsConfig {
    /// Every environment's base URL when set (an emulator).
    pub url: Option<String>,
}

impl ApnsConfig {
    pub fn from_config(push: &PushConfig) -> Self {
        let url = push.apns_url.trim().trim_end_matches('/');
        Self {
            url: (!url.is_empty()).then(|| url.to_string()),
        }
    }

    /// The base URL for a project's `environment` (`production` or `sandbox`).
    pub fn base_url(&self, environment: &str) -> &str {
        match (&self.url, environment) {
            (Some(url), _) => url,
            (None, "sandbox") => SANDBOX,
            (None, _) => PRODUCTION,
        }
    }
}
