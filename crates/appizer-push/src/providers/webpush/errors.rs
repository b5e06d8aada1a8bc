//! How Web Push's own failures read: a subscription or key that is not what RFC 8291
//! and 8292 require, an endpoint the operator did not allow, a body too large for a
//! push service, or a message that does not decrypt.

/// A Web Push failure; `Display` names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebPushError {
    #[error("{0} is not a valid key")]
    BadKey(&'static str),
    #[error("keys.auth must be 16 bytes of base64url")]
    BadAuth,
    #[error("endpoint {0}")]
    BadEndpoint(&'static str),
    #[error("endpoint host {host} is not in push.webpush_allowed_hosts")]
    HostNotAllowed { host: String },
    #[error("the payload is {bytes} bytes; Web Push carries at most {most}")]
    TooLarge { bytes: usize, most: usize },
    #[error("the message is malformed: {0}")]
    Malformed(&'static str),
    #[error("the message does not decrypt")]
    Crypto,
    #[error("VAPID authorization refused: {0}")]
    Unauthorized(&'static str),
}

impl WebPushError {
    /// The request field the error is about, for a 400 that names it.
    pub fn field(&self) -> &'static str {
        match self {
            Self::BadKey("p256dh") => "subscription.keys.p256dh",
            Self::BadKey(_) => "private_key",
            Self::BadAuth => "subscription.keys.auth",
            Self::BadEndpoint(_) | Self::HostNotAllowed { .. } => "subscription.endpoint",
            Self::TooLarge { .. } => "notification",
            Self::Malformed(_) | Self::Crypto | Self::Unauthorized(_) => "body",
        }
    }
}
