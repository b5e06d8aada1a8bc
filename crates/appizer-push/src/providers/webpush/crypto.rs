//! RFC 8291 message encryption for Web Push, in the `aes128gcm` content coding of RFC
//! 8188, as one record: the key agreement of an ephemeral P-256 key (the sender's) with
//! the subscription's `p256dh`, mixed with its `auth` secret, gives the content key and
//! nonce; the body is `salt (16) | record size (4) | key id length (1) | sender public
//! key (65) | AES-128-GCM(plaintext | 0x02)`. [`decrypt`] is the receiving side, used
//! by the emulator to read what a browser would.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use p256::ecdh::diffie_hellman;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;

use super::errors::WebPushError;

/// The record size written in the header (the RFC's example value; a single record
/// never reaches it, see [`MAX_PLAINTEXT`]).
pub const RECORD_SIZE: u32 = 4096;
/// Header bytes: salt, record size, key id length, the sender's public key.
pub const HEADER_BYTES: usize = 16 + 4 + 1 + 65;
/// The AES-GCM tag.
const TAG_BYTES: usize = 16;
/// The most plaintext one record holds: push services accept bodies of 4096 bytes, of
/// which the header takes 86, the padding delimiter 1 and the tag 16.
pub const MAX_PLAINTEXT: usize = 4096 - HEADER_BYTES - 1 - TAG_BYTES;
/// The delimiter that ends the last (and only) record's plaintext.
const LAST_RECORD: u8 = 0x02;

/// The content encryption key and nonce of a message, from the key agreement.
struct Keys {
    cek: [u8; 16],
    nonce: [u8; 12],
}

fn derive(
    shared: &[u8],
    auth: &[u8; 16],
    ua_public: &[u8; 65],
    as_public: &[u8; 65],
    salt: &[u8; 16],
) -> Keys {
    // IKM = HKDF(auth, ecdh secret, "WebPush: info" 0x00 | ua_public | as_public, 32)
    let mut info = Vec::with_capacity(14 + 130);
    info.extend_from_slice(b"WebPush: info\0");
    info.extend_from_slice(ua_public);
    info.extend_from_slice(as_public);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth), shared)
        .expand(&info, &mut ikm)
        .expect("32 bytes is a valid HKDF-SHA-256 length");
    let content = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut keys = Keys {
        cek: [0; 16],
        nonce: [0; 12],
    };
    content
        .expand(b"Content-Encoding: aes128gcm\0", &mut keys.cek)
        .expect("16 bytes is a valid HKDF-SHA-256 length");
    content
        .expand(b"Content-Encoding: nonce\0", &mut keys.nonce)
        .expect("12 bytes is a valid HKDF-SHA-256 length");
    keys
}

/// The uncompressed SEC1 form (65 bytes) of a public key.
pub fn public_bytes(key: &PublicKey) -> [u8; 65] {
    let point = key.to_sec1_bytes();
    point
        .as_ref()
        .try_into()
        .expect("an uncompressed P-256 point is 65 bytes")
}

/// Encrypts `plaintext` for the subscription keys `ua_public` (`p256dh`) and `auth`,
/// with the sender key `as_private` and `salt`, both fresh for every message (the
/// caller draws them; the RFC's example fixes them).
pub fn encrypt(
    plaintext: &[u8],
    ua_public: &[u8; 65],
    auth: &[u8; 16],
    as_private: &SecretKey,
    salt: &[u8; 16],
) -> Result<Vec<u8>, WebPushError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(WebPushError::TooLarge {
            bytes: plaintext.len(),
            most: MAX_PLAINTEXT,
        });
    }
    let receiver =
        PublicKey::from_sec1_bytes(ua_public).map_err(|_| WebPushError::BadKey("p256dh"))?;
    let as_public = public_bytes(&as_private.public_key());
    let shared = diffie_hellman(as_private.to_nonzero_scalar(), receiver.as_affine());
    let keys = derive(shared.raw_secret_bytes(), auth, ua_public, &as_public, salt);
    let mut record = Vec::with_capacity(plaintext.len() + 1);
    record.extend_from_slice(plaintext);
    record.push(LAST_RECORD);
    let sealed = Aes128Gcm::new(&keys.cek.into())
        .encrypt(Nonce::from_slice(&keys.nonce), record.as_slice())
        .map_err(|_| WebPushError::Crypto)?;
    let mut body = Vec::with_capacity(HEADER_BYTES + sealed.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(65);
    body.extend_from_slice(&as_public);
    body.extend_from_slice(&sealed);
    Ok(body)
}

/// What a push service's subscriber does: reads the header, agrees on the key with the
/// subscription's private key and `auth`, and returns the plaintext.
pub fn decrypt(
    body: &[u8],
    ua_private: &SecretKey,
    auth: &[u8; 16],
) -> Result<Vec<u8>, WebPushError> {
    if body.len() < HEADER_BYTES + TAG_BYTES + 1 {
        return Err(WebPushError::Malformed(
            "shorter than a header and a record",
        ));
    }
    let salt: [u8; 16] = body[..16].try_into().expect("16 bytes");
    if body[20] != 65 {
        return Err(WebPushError::Malformed(
            "the key id is not a P-256 public key",
        ));
    }
    let as_public: [u8; 65] = body[21..86].try_into().expect("65 bytes");
    let sender =
        PublicKey::from_sec1_bytes(&as_public).map_err(|_| WebPushError::BadKey("keyid"))?;
    let ua_public = public_bytes(&ua_private.public_key());
    let shared = diffie_hellman(ua_private.to_nonzero_scalar(), sender.as_affine());
    let keys = derive(
        shared.raw_secret_bytes(),
        auth,
        &ua_public,
        &as_public,
        &salt,
    );
    let mut record = Aes128Gcm::new(&keys.cek.into())
        .decrypt(
            Nonce::from_slice(&keys.nonce),
            Payload {
                msg: &body[HEADER_BYTES..],
                aad: &[],
            },
        )
        .map_err(|_| WebPushError::Crypto)?;
    // Padding (zeros) follows the delimiter; the last record's delimiter is 0x02.
    while record.last() == Some(&0) {
        record.pop();
    }
    match record.pop() {
        Some(LAST_RECORD) => Ok(record),
        _ => Err(WebPushError::Malformed("no last-record delimiter")),
    }
}
