use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use p256::SecretKey;

use super::crypto::{decrypt, encrypt, public_bytes, MAX_PLAINTEXT};
use super::vapid::{origin_of, random_secret, verify, VALIDITY_SECS};
use super::*;

fn b64(text: &str) -> Vec<u8> {
    B64.decode(text).unwrap()
}

// RFC 8291, appendix A.
const PLAINTEXT: &str = "V2hlbiBJIGdyb3cgdXAsIEkgd2FudCB0byBiZSBhIHdhdGVybWVsb24";
const AS_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
const AS_PUBLIC: &str =
    "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
const UA_PUBLIC: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
const SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
const BODY: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

fn array<const N: usize>(text: &str) -> [u8; N] {
    b64(text).try_into().unwrap()
}

#[test]
fn the_rfc_8291_example_encrypts_byte_for_byte() {
    let plaintext = b64(PLAINTEXT);
    assert_eq!(plaintext, b"When I grow up, I want to be a watermelon");
    let as_private = SecretKey::from_slice(&b64(AS_PRIVATE)).unwrap();
    assert_eq!(
        B64.encode(public_bytes(&as_private.public_key())),
        AS_PUBLIC
    );
    let body = encrypt(
        &plaintext,
        &array(UA_PUBLIC),
        &array(AUTH),
        &as_private,
        &array(SALT),
    )
    .unwrap();
    assert_eq!(B64.encode(&body), BODY);
    // The header: the salt, a record size of 4096, a 65-byte key id (the sender's key).
    assert_eq!(&body[16..21], &[0, 0, 16, 0, 65]);
}

#[test]
fn the_rfc_8291_example_decrypts_with_the_browsers_key() {
    let ua_private = SecretKey::from_slice(&b64(UA_PRIVATE)).unwrap();
    assert_eq!(
        B64.encode(public_bytes(&ua_private.public_key())),
        UA_PUBLIC
    );
    let plaintext = decrypt(&b64(BODY), &ua_private, &array(AUTH)).unwrap();
    assert_eq!(plaintext, b"When I grow up, I want to be a watermelon");
    // Another auth secret, or one flipped byte, does not decrypt.
    assert_eq!(
        decrypt(&b64(BODY), &ua_private, &[7; 16]),
        Err(WebPushError::Crypto)
    );
    let mut tampered = b64(BODY);
    *tampered.last_mut().unwrap() ^= 1;
    assert_eq!(
        decrypt(&tampered, &ua_private, &array(AUTH)),
        Err(WebPushError::Crypto)
    );
}

#[test]
fn a_sealed_message_opens_only_for_its_subscription_and_never_repeats() {
    let browser = random_secret();
    let (p256dh, auth) = (
        B64.encode(public_bytes(&browser.public_key())),
        B64.encode([9u8; 16]),
    );
    let config = WebPushConfig {
        allowed_hosts: vec!["127.0.0.1".into()],
    };
    let subscription =
        Subscription::parse("http://127.0.0.1:9/push/abc", &p256dh, &auth, &config).unwrap();
    let payload = br#"{"title":"Hello","body":"there"}"#;
    let (a, b) = (
        subscription.seal(payload).unwrap(),
        subscription.seal(payload).unwrap(),
    );
    assert_ne!(a, b, "a fresh salt and sender key every time");
    assert_eq!(decrypt(&a, &browser, &[9; 16]).unwrap(), payload);
    assert_eq!(decrypt(&b, &browser, &[9; 16]).unwrap(), payload);
    assert_eq!(
        decrypt(&a, &random_secret(), &[9; 16]),
        Err(WebPushError::Crypto)
    );
    // The largest payload a push service takes fits one 4096-byte body; one more
    // byte is refused before anything is sent.
    let most = vec![b'x'; MAX_PLAINTEXT];
    assert_eq!(subscription.seal(&most).unwrap().len(), 4096);
    assert_eq!(
        subscription.seal(&[b'x'; MAX_PLAINTEXT + 1]),
        Err(WebPushError::TooLarge {
            bytes: MAX_PLAINTEXT + 1,
            most: MAX_PLAINTEXT
        })
    );
}

#[test]
fn subscriptions_are_checked_field_by_field() {
    let config = WebPushConfig::default();
    let endpoint = "https://fcm.googleapis.com/fcm/send/abc";
    let p256dh = UA_PUBLIC;
    assert!(Subscription::parse(endpoint, p256dh, AUTH, &config).is_ok());
    // Padded base64url is accepted too.
    assert!(Subscription::parse(endpoint, p256dh, "BTBZMqHH6r4Tts7J_aSIgg==", &config).is_ok());
    let refused = |endpoint: &str, p256dh: &str, auth: &str| {
        Subscription::parse(endpoint, p256dh, auth, &config)
            .unwrap_err()
            .field()
    };
    assert_eq!(
        refused(endpoint, "not base64!", AUTH),
        "subscription.keys.p256dh"
    );
    // 65 bytes that are not a point of the curve.
    assert_eq!(
        refused(endpoint, &B64.encode([4u8; 65]), AUTH),
        "subscription.keys.p256dh"
    );
    assert_eq!(
        refused(endpoint, p256dh, &B64.encode([1u8; 15])),
        "subscription.keys.auth"
    );
    assert_eq!(refused("not a url", p256dh, AUTH), "subscription.endpoint");
}

#[test]
fn pushes_go_only_to_allowed_hosts_over_https() {
    let config = WebPushConfig::default();
    for allowed in [
        "https://fcm.googleapis.com/fcm/send/x",
        "https://updates.push.services.mozilla.com/wpush/v2/x",
        "https://wns2-db5p.notify.windows.com/w/?token=x",
        "https://web.push.apple.com/QGx",
    ] {
        assert!(config.check_endpoint(allowed).is_ok(), "{allowed}");
    }
    for (refused, error) in [
        (
            "https://169.254.169.254/latest/meta-data",
            WebPushError::HostNotAllowed {
                host: "169.254.169.254".into(),
            },
        ),
        (
            "https://fcm.googleapis.com.evil.example/x",
            WebPushError::HostNotAllowed {
                host: "fcm.googleapis.com.evil.example".into(),
            },
        ),
        (
            "https://notify.windows.com.evil.example/x",
            WebPushError::HostNotAllowed {
                host: "notify.windows.com.evil.example".into(),
            },
        ),
        (
            "http://fcm.googleapis.com/fcm/send/x",
            WebPushError::BadEndpoint("must be https"),
        ),
        (
            "https://user:secret@fcm.googleapis.com/x",
            WebPushError::BadEndpoint("must not carry credentials"),
        ),
        (
            "file:///etc/passwd",
            WebPushError::BadEndpoint("has no host"),
        ),
    ] {
        assert_eq!(config.check_endpoint(refused), Err(error), "{refused}");
    }
    // Loopback only where the operator allows it, and then plain http too.
    assert!(matches!(
        config.check_endpoint("http://127.0.0.1:8080/push"),
        Err(WebPushError::HostNotAllowed { .. })
    ));
    let local = WebPushConfig {
        allowed_hosts: vec!["127.0.0.1".into()],
    };
    assert!(local.check_endpoint("http://127.0.0.1:8080/push").is_ok());
}

#[test]
fn vapid_tokens_verify_for_their_origin_and_time_only() {
    let key = VapidKey::generate();
    let endpoint = "https://push.example.net:8443/send/abc?x=1";
    let now = 1_800_000_000;
    let header = key
        .authorization(endpoint, "mailto:ops@example.com", now)
        .unwrap();
    assert!(header.starts_with("vapid t="), "{header}");
    let origin = origin_of(endpoint).unwrap();
    assert_eq!(origin, "https://push.example.net:8443");
    let (k, claims) = verify(&header, &origin, now).unwrap();
    assert_eq!(k, key.public_key());
    assert_eq!(claims.exp, now + VALIDITY_SECS);
    assert_eq!(claims.sub.as_deref(), Some("mailto:ops@example.com"));
    // The public key is a 65-byte point: what browsers subscribe with.
    assert_eq!(b64(&key.public_key()).len(), 65);

    let refused = |header: &str, origin: &str, now: i64| verify(header, origin, now).unwrap_err();
    assert_eq!(
        refused(&header, "https://other.example", now),
        WebPushError::Unauthorized("aud is not the endpoint's origin")
    );
    assert_eq!(
        refused(&header, &origin, now + VALIDITY_SECS),
        WebPushError::Unauthorized("expired")
    );
    assert_eq!(
        refused(&header, &origin, now - VALIDITY_SECS - 1),
        WebPushError::Unauthorized("exp is more than 24 hours ahead")
    );
    // Signed by another key than the one it names.
    let other = VapidKey::generate();
    let forged = header.replace(&key.public_key(), &other.public_key());
    assert_eq!(
        refused(&forged, &origin, now),
        WebPushError::Unauthorized("the signature does not verify")
    );
    assert_eq!(
        refused("Bearer abc", &origin, now),
        WebPushError::Unauthorized("not the vapid scheme")
    );
}

#[test]
fn a_vapid_key_survives_storage_and_never_prints_its_secret() {
    let key = VapidKey::generate();
    let stored = key.private_bytes();
    let again = VapidKey::from_private_bytes(&stored).unwrap();
    assert_eq!(again.public_key(), key.public_key());
    let shown = format!("{key:?}");
    assert!(shown.contains(&key.public_key()));
    assert!(!shown.contains(&B64.encode(stored)), "{shown}");
    assert!(!shown.contains(&format!("{:?}", stored)), "{shown}");
    assert_eq!(
        VapidKey::from_private_bytes(&[0; 32]).unwrap_err(),
        WebPushError::BadKey("private_key")
    );
}
