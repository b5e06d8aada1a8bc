use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use http::{HeaderMap, StatusCode};
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};

use super::request::{build, classify, Outcome};
use super::token::{ASSERTION_SECS, RENEW_BEFORE_SECS, SCOPE};
use super::*;

const RSA_KEY: &str = include_str!("../../../testdata/service-account-test-key.pem");

fn account() -> Value {
    json!({
        "type": "service_account", "project_id": "demo-app", "private_key": RSA_KEY,
        "client_email": "push@demo-app.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token"
    })
}

#[test]
fn the_assertion_is_an_rs256_jwt_google_can_verify() {
    let sa = ServiceAccount::from_json(&account()).unwrap();
    let jwt = sa.assertion(1_800_000_000);
    let parts: Vec<&str> = jwt.split('.').collect();
    let claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], "push@demo-app.iam.gserviceaccount.com");
    assert_eq!(
        (claims["scope"].as_str(), claims["aud"].as_str()),
        (Some(SCOPE), Some("https://oauth2.googleapis.com/token"))
    );
    assert_eq!(claims["exp"], 1_800_000_000 + ASSERTION_SECS);
    let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, sa.public_key());
    assert!(public
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &B64.decode(parts[2]).unwrap()
        )
        .is_ok());
    let request = sa.token_request(1_800_000_000);
    assert_eq!(request.uri(), "https://oauth2.googleapis.com/token");
    let form = String::from_utf8(request.body().clone()).unwrap();
    assert!(form.starts_with(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
    ));
    assert!(!format!("{sa:?}").contains("PRIVATE"));
    let mut broken = account();
    broken["private_key"] = json!("nope");
    assert_eq!(
        ServiceAccount::from_json(&broken).unwrap_err(),
        FcmError::BadKey
    );
    let mut broken = account();
    broken.as_object_mut().unwrap().remove("client_email");
    assert_eq!(
        ServiceAccount::from_json(&broken).unwrap_err(),
        FcmError::Missing("client_email")
    );
}

#[test]
fn an_access_token_is_reused_until_shortly_before_it_expires() {
    let tokens = AccessTokens::default();
    assert_eq!(tokens.current(0), None);
    let answer = br#"{"access_token":"ya29.abc","expires_in":3599,"token_type":"Bearer"}"#;
    assert_eq!(tokens.accept(answer, 1_000).unwrap(), "ya29.abc");
    assert_eq!(
        tokens
            .current(1_000 + 3599 - RENEW_BEFORE_SECS - 1)
            .as_deref(),
        Some("ya29.abc")
    );
    assert_eq!(tokens.current(1_000 + 3599 - RENEW_BEFORE_SECS), None);
    tokens.expire();
    assert_eq!(tokens.current(1_001), None);
    assert!(matches!(
        tokens.accept(b"{\"error\":\"invalid_grant\"}", 0),
        Err(FcmError::TokenRefused(_))
    ));
}

#[test]
fn a_message_goes_to_its_token_in_the_projects_path() {
    let message = json!({"notification": {"title": "Hi"}, "data": {"message_id": "m1"}});
    let request = build(
        "https://fcm.googleapis.com",
        "demo-app",
        "ya29.abc",
        "tok:1",
        &message,
    );
    assert_eq!(
        request.uri(),
        "https://fcm.googleapis.com/v1/projects/demo-app/messages:send"
    );
    assert_eq!(request.headers()["authorization"], "Bearer ya29.abc");
    let body: Value = serde_json::from_slice(request.body()).unwrap();
    assert_eq!(body["message"]["token"], "tok:1");
    assert_eq!(body["message"]["data"]["message_id"], "m1");
}

fn error(status: u16, code: &str, message: &str) -> Vec<u8> {
    json!({"error": {"code": status, "message": message, "status": "ERROR_STATUS",
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]}})
    .to_string()
    .into_bytes()
}

#[test]
fn every_fcm_error_has_its_outcome() {
    let none = HeaderMap::new();
    let answer = |status: u16, code: &str, message: &str| {
        classify(
            StatusCode::from_u16(status).unwrap(),
            &none,
            &error(status, code, message),
        )
    };
    assert_eq!(
        classify(
            StatusCode::OK,
            &none,
            br#"{"name":"projects/p/messages/1"}"#
        ),
        Outcome::Accepted
    );
    assert!(matches!(
        answer(404, "UNREGISTERED", "Requested entity was not found."),
        Outcome::Retire { .. }
    ));
    assert!(matches!(
        answer(403, "SENDER_ID_MISMATCH", "SenderId mismatch"),
        Outcome::Retire { .. }
    ));
    assert!(matches!(
        answer(
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token"
        ),
        Outcome::Retire { .. }
    ));
    assert!(matches!(
        answer(400, "INVALID_ARGUMENT", "Invalid JSON payload"),
        Outcome::Fail { .. }
    ));
    assert_eq!(
        answer(401, "THIRD_PARTY_AUTH_ERROR", "auth"),
        Outcome::RenewToken
    );
    let mut later = HeaderMap::new();
    later.insert("retry-after", "30".parse().unwrap());
    assert!(matches!(
        classify(StatusCode::TOO_MANY_REQUESTS, &later, &error(429, "QUOTA_EXCEEDED", "quota")),
        Outcome::Retry { after: Some(d), .. } if d.as_secs() == 30
    ));
    assert!(matches!(
        answer(503, "UNAVAILABLE", "try later"),
        Outcome::Retry { after: None, .. }
    ));
    assert!(matches!(
        answer(500, "INTERNAL", "oops"),
        Outcome::Retry { .. }
    ));
}

#[test]
fn requests_go_to_the_configured_host() {
    let config = FcmConfig::from_config(&appizer_core::config::PushConfig {
        fcm_url: "http://127.0.0.1:8090/".into(),
        ..Default::default()
    });
    assert_eq!(config.url, "http://127.0.0.1:8090");
    assert_eq!(
        FcmConfig::from_config(&Default::default()).url,
        "https://fcm.googleapis.com"
    );
}
