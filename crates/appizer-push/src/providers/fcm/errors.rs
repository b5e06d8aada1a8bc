//! How FCM's own failures read: a service account that does not load, or a token
//! answer that is not one.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FcmError {
    #[error("the service account is missing {0}")]
    Missing(&'static str),
    #[error("the service account's private_key is not an RSA key in PKCS#8 PEM")]
    BadKey,
    #[error("the token endpoint answered {0}")]
    TokenRefused(String),
}
