//! API key material: generation, recognisable prefixes, hashing.
//!
//! Keys carry 190 bits of randomness, so a single SHA-256 is the right hash: it makes
//! lookup an index probe, and a slow password hash would add nothing against guessing.

use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The two kinds of key a project has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// Management API key with a role. Never shipped in an app.
    Secret,
    /// Public ingestion key, safe to ship in an app; can only send events.
    Write,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Secret => "secret",
            KeyKind::Write => "write",
        }
    }

    /// The prefix every key of this kind starts with.
    pub fn prefix(self) -> &'static str {
        match self {
            KeyKind::Secret => "apz_sk_",
            KeyKind::Write => "apz_wk_",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "secret" => Some(KeyKind::Secret),
            "write" => Some(KeyKind::Write),
            _ => None,
        }
    }

    /// The kind a presented key claims by its prefix.
    pub fn of_plaintext(key: &str) -> Option<Self> {
        [KeyKind::Secret, KeyKind::Write]
            .into_iter()
            .find(|k| key.starts_with(k.prefix()))
    }
}

/// Characters of randomness after the prefix (62 symbols each: about 190 bits).
pub const KEY_RANDOM_CHARS: usize = 32;
/// Characters shown when a key is listed (prefix plus the first random characters).
pub const DISPLAY_CHARS: usize = 12;

/// A freshly generated key: the plaintext is shown once, only the hash is stored.
#[derive(Clone)]
pub struct GeneratedKey {
    pub plaintext: String,
    pub hash: String,
    pub display_prefix: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("display_prefix", &self.display_prefix)
            .finish_non_exhaustive()
    }
}

/// Generates a new key of `kind`.
pub fn generate_key(kind: KeyKind) -> GeneratedKey {
    let random = Alphanumeric.sample_string(&mut rand::rng(), KEY_RANDOM_CHARS);
    let plaintext = format!("{}{}", kind.prefix(), random);
    GeneratedKey {
        hash: hash_key(&plaintext),
        display_prefix: plaintext[..DISPLAY_CHARS].to_string(),
        plaintext,
    }
}

/// The stored form of a key: lowercase hex SHA-256 of the whole plaintext.
pub fn hash_key(plaintext: &str) -> String {
    let digest = Sha256::digest(plaintext.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        use std::fmt::Write;
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_prefixed_unique_and_hash_to_their_stored_form() {
        let a = generate_key(KeyKind::Secret);
        let b = generate_key(KeyKind::Secret);
        assert!(a.plaintext.starts_with("apz_sk_"));
        assert_eq!(a.plaintext.len(), 7 + KEY_RANDOM_CHARS);
        assert_ne!(a.plaintext, b.plaintext);
        assert_eq!(hash_key(&a.plaintext), a.hash);
        assert_eq!(a.hash.len(), 64);
        assert!(a.plaintext.starts_with(&a.display_prefix));
        assert!(!format!("{a:?}").contains(&a.plaintext));
        let w = generate_key(KeyKind::Write);
        assert_eq!(KeyKind::of_plaintext(&w.plaintext), Some(KeyKind::Write));
        assert_eq!(KeyKind::of_plaintext("sk_live_x"), None);
    }

    #[test]
    fn hash_is_sha256_hex() {
        // SHA-256("abc") from FIPS 180-2.
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
