//! Web Push settings (from `[push]`): which push services this server may call. Endpoints
//! are URLs that browsers choose and apps send us, so a push goes only to an `https`
//! endpoint whose host the operator allowed (the browser vendors' services by default);
//! tests add `127.0.0.1`, where plain `http` is allowed too.

use appizer_core::config::PushConfig;

use super::errors::WebPushError;

/// Hosts where an `http` endpoint is accepted (local emulators).
const LOOPBACK: [&str; 3] = ["127.0.0.1", "localhost", "[::1]"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebPushConfig {
    /// Host names (or `*.suffix`) endpoints may point at.
    pub allowed_hosts: Vec<String>,
}

impl Default for WebPushConfig {
    fn default() -> Self {
        Self::from_config(&PushConfig::default())
    }
}

impl WebPushConfig {
    /// The Web Push settings of `[push]`.
    pub fn from_config(push: &PushConfig) -> Self {
        Self {
            allowed_hosts: push.webpush_allowed_hosts.clone(),
        }
    }

    /// Checks `endpoint` before it is stored or fetched: a URL without credentials,
    /// `https` (or `http` on loopback), on an allowed host.
    pub fn check_endpoint(&self, endpoint: &str) -> Result<url::Url, WebPushError> {
        let url =
            url::Url::parse(endpoint).map_err(|_| WebPushError::BadEndpoint("is not a URL"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(WebPushError::BadEndpoint("must not carry credentials"));
        }
        let host = url
            .host_str()
            .ok_or(WebPushError::BadEndpoint("has no host"))?
            .to_ascii_lowercase();
        let loopback = LOOPBACK.contains(&host.as_str());
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => return Err(WebPushError::BadEndpoint("must be https")),
        }
        let allowed = self.allowed_hosts.iter().any(|pattern| {
            let pattern = pattern.to_ascii_lowercase();
            match pattern.strip_prefix("*.") {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => host == pattern,
            }
        });
        if !allowed {
            return Err(WebPushError::HostNotAllowed { host });
        }
        Ok(url)
    }
}
