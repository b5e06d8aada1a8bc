//! How APNs' own failures read: a request this server cannot build (a token that is not
//! hex, a payload over 4 KB, a collapse id over 64 bytes) or a signing key that does
//! not load.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApnsError {
    #[error("the device token must be hex")]
    BadToken,
    #[error("the payload is {bytes} bytes; APNs takes 1 to {most}")]
    PayloadSize { bytes: usize, most: usize },
    #[error("apns-collapse-id must be at most 64 bytes")]
    CollapseId,
    #[error("the signing key is not a P-256 key in PKCS#8 PEM")]
    BadKey,
}
