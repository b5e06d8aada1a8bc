use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use http::{HeaderMap, StatusCode};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePrivateKey;

use super::request::{build, classify, Headers, Outcome, MAX_PAYLOAD};
use super::token::REUSE_SECS;
use super::*;

const P8: &str = include_str!("../../../testdata/apns-test-key.p8");

fn headers() -> Headers {
    Headers {
        topic: "com.example.app".into(),
        push_type: "alert".into(),
        priority: 10,
        expiration: 0,
        collapse_id: Some("order-42".into()),
        apns_id: uuid::Uuid::now_v7(),
    }
}

#[test]
fn the_provider_token_is_an_es256_jwt_apple_can_verify() {
    let token = ProviderToken::new("ABCDE12345", "KEY1234567", P8).unwrap();
    let jwt = token.sign(1_800_000_000);
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: serde_json::Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(
        header,
        serde_json::json!({"alg": "ES256", "kid": "KEY1234567"})
    );
    assert_eq!(
        claims,
        serde_json::json!({"iss": "ABCDE12345", "iat": 1_800_000_000})
    );
    let public = VerifyingKey::from(&p256::SecretKey::from_pkcs8_pem(P8).unwrap().public_key());
    let signature = Signature::from_slice(&B64.decode(parts[2]).unwrap()).unwrap();
    assert!(public
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .is_ok());
    assert!(!format!("{token:?}").contains("PRIVATE"));
    assert_eq!(
        ProviderToken::new("ABCDE12345", "KEY1234567", "not a key").unwrap_err(),
        ApnsError::BadKey
    );
}

#[test]
fn a_token_is_reused_then_renewed_and_renewed_early_when_apple_says_so() {
    let token = ProviderToken::new("ABCDE12345", "KEY1234567", P8).unwrap();
    let t0 = 1_800_000_000;
    let first = token.get(t0);
    assert_eq!(token.get(t0 + REUSE_SECS - 1), first);
    let second = token.get(t0 + REUSE_SECS);
    assert_ne!(second, first);
    token.expire();
    assert_ne!(token.get(t0 + REUSE_SECS + 1), second);
}

#[test]
fn a_request_carries_the_headers_apple_reads() {
    let h = headers();
    let request = build(
        "https://api.sandbox.push.apple.com",
        &"AB".repeat(32),
        "jwt",
        &h,
        b"{}".to_vec(),
    )
    .unwrap();
    assert_eq!(
        request.uri().to_string(),
        format!(
            "https://api.sandbox.push.apple.com/3/device/{}",
            "ab".repeat(32)
        )
    );
    let get = |name: &str| request.headers()[name].to_str().unwrap().to_string();
    assert_eq!(get("authorization"), "bearer jwt");
    assert_eq!(get("apns-topic"), "com.example.app");
    assert_eq!(get("apns-push-type"), "alert");
    assert_eq!(get("apns-priority"), "10");
    assert_eq!(get("apns-collapse-id"), "order-42");
    assert_eq!(get("apns-id"), h.apns_id.hyphenated().to_string());
    let refused = |token: &str, payload: usize, collapse: usize| {
        let h = Headers {
            collapse_id: Some("c".repeat(collapse)),
            ..headers()
        };
        build("https://x", token, "jwt", &h, vec![b'x'; payload]).unwrap_err()
    };
    assert_eq!(refused("zz", 2, 1), ApnsError::BadToken);
    assert!(matches!(
        refused("ab", MAX_PAYLOAD + 1, 1),
        ApnsError::PayloadSize { .. }
    ));
    assert!(matches!(refused("ab", 0, 1), ApnsError::PayloadSize { .. }));
    assert_eq!(refused("ab", 2, 65), ApnsError::CollapseId);
}

#[test]
fn every_reason_apple_answers_has_its_outcome() {
    let none = HeaderMap::new();
    let answer = |status: u16, reason: &str| {
        let body = serde_json::json!({"reason": reason}).to_string();
        classify(
            StatusCode::from_u16(status).unwrap(),
            &none,
            body.as_bytes(),
        )
    };
    assert_eq!(classify(StatusCode::OK, &none, b""), Outcome::Accepted);
    for (status, reason) in [
        (410, "Unregistered"),
        (410, "ExpiredToken"),
        (400, "BadDeviceToken"),
        (400, "DeviceTokenNotForTopic"),
    ] {
        assert!(
            matches!(answer(status, reason), Outcome::Retire { .. }),
            "{reason}"
        );
    }
    assert_eq!(answer(403, "ExpiredProviderToken"), Outcome::RenewToken);
    for (status, reason) in [
        (429, "TooManyRequests"),
        (500, "InternalServerError"),
        (503, "ServiceUnavailable"),
    ] {
        assert!(
            matches!(answer(status, reason), Outcome::Retry { .. }),
            "{reason}"
        );
    }
    for (status, reason) in [
        (413, "PayloadTooLarge"),
        (400, "BadCollapseId"),
        (403, "InvalidProviderToken"),
    ] {
        assert!(
            matches!(answer(status, reason), Outcome::Fail { .. }),
            "{reason}"
        );
    }
}

#[test]
fn requests_go_to_apples_host_for_the_environment_or_to_the_configured_one() {
    let apple = ApnsConfig::default();
    assert_eq!(apple.base_url("sandbox"), config::SANDBOX);
    assert_eq!(apple.base_url("production"), config::PRODUCTION);
    let local = ApnsConfig::from_config(&appizer_core::config::PushConfig {
        apns_url: "http://127.0.0.1:8090/".into(),
        ..Default::default()
    });
    assert_eq!(local.base_url("production"), "http://127.0.0.1:8090");
}
