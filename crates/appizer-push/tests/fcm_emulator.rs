//! The FCM client side against the emulator over loopback HTTP: the service account's
//! assertion exchanged for an access token, a message sent with it, and each row of the
//! error table (unregistered, throttled, an invalid token, a refused access token).

use std::time::Duration;

use appizer_push::emulator::fcm::FcmEmulator;
use appizer_push::providers::fcm::request::{build, classify, Outcome};
use appizer_push::providers::fcm::{AccessTokens, ServiceAccount};
use serde_json::{json, Value};

const RSA_KEY: &str = include_str!("../testdata/service-account-test-key.pem");

mod common;

struct Running {
    service: common::Loopback,
    emulator: FcmEmulator,
}

async fn start() -> Running {
    let mut emulator = None;
    let service = common::serve(|base| {
        let made = FcmEmulator::new(base);
        let router = made.router();
        emulator = Some(made);
        router
    })
    .await;
    Running {
        service,
        emulator: emulator.unwrap(),
    }
}

impl Running {
    async fn execute(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> (http::StatusCode, http::HeaderMap, Vec<u8>) {
        self.service.execute(request).await
    }

    /// The service account as the emulator knows it (its `token_uri` pointed there).
    async fn account(&self) -> ServiceAccount {
        let given = json!({
            "type": "service_account", "project_id": "demo-app", "private_key": RSA_KEY,
            "client_email": "push@demo-app.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token"
        });
        let answer: Value = self
            .service
            .http
            .post(format!("{}/fcm/service-accounts", self.service.base))
            .json(&given)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            answer["token_uri"],
            format!("{}/fcm/token", self.service.base)
        );
        ServiceAccount::from_json(&answer).unwrap()
    }

    async fn send(&self, access: &str, token: &str, message: &Value) -> Outcome {
        let request = build(
            &format!("{}/fcm", self.service.base),
            "demo-app",
            access,
            token,
            message,
        );
        let (status, headers, body) = self.execute(request).await;
        classify(status, &headers, &body)
    }

    async fn post(&self, path: &str) {
        self.service.control(path).await
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn an_access_token_from_the_assertion_sends_a_message() {
    let fcm = start().await;
    let account = fcm.account().await;
    let tokens = AccessTokens::default();
    let (status, _, body) = fcm.execute(account.token_request(now())).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let access = tokens.accept(&body, now()).unwrap();
    assert_eq!(tokens.current(now()), Some(access.clone()));
    let message =
        json!({"notification": {"title": "Hi", "body": "there"}, "data": {"message_id": "m1"}});
    assert_eq!(
        fcm.send(&access, "fcm:device-1", &message).await,
        Outcome::Accepted
    );
    let received = fcm.emulator.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["token"], "fcm:device-1");
    assert_eq!(received[0]["data"]["message_id"], "m1");
}

#[tokio::test]
async fn the_token_endpoint_refuses_assertions_it_cannot_trust() {
    let fcm = start().await;
    let account = fcm.account().await;
    // Signed an hour and a half ago: expired.
    let (status, _, body) = fcm.execute(account.token_request(now() - 5_400)).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"], "invalid_grant");
    // A tampered assertion.
    let request = account.token_request(now());
    let mut form = String::from_utf8(request.body().clone())
        .unwrap()
        .into_bytes();
    // A character well inside the signature, changed to another base64url one.
    let at = form.len() - 10;
    form[at] = if form[at] == b'A' { b'B' } else { b'A' };
    let form = String::from_utf8(form).unwrap();
    let (parts, _) = request.into_parts();
    let tampered = http::Request::from_parts(parts, form.into_bytes());
    assert_eq!(fcm.execute(tampered).await.0, 400);
}

#[tokio::test]
async fn every_error_of_the_service_has_its_outcome() {
    let fcm = start().await;
    let account = fcm.account().await;
    let tokens = AccessTokens::default();
    let (_, _, body) = fcm.execute(account.token_request(now())).await;
    let access = tokens.accept(&body, now()).unwrap();
    let message = json!({"notification": {"title": "Hi"}});

    fcm.post("/fcm/projects/demo-app/throttle").await;
    assert!(matches!(
        fcm.send(&access, "fcm:a", &message).await,
        Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(2)
    ));
    assert_eq!(
        fcm.send(&access, "fcm:a", &message).await,
        Outcome::Accepted
    );

    fcm.post("/fcm/tokens/fcm:gone/unregistered").await;
    assert!(matches!(
        fcm.send(&access, "fcm:gone", &message).await,
        Outcome::Retire { .. }
    ));
    assert!(matches!(
        fcm.send(&access, "not a token!", &message).await,
        Outcome::Retire { .. }
    ));
    let bad_data = json!({"data": {"count": 3}});
    assert!(matches!(
        fcm.send(&access, "fcm:a", &bad_data).await,
        Outcome::Fail { .. }
    ));
    assert_eq!(
        fcm.send("ya29.forged", "fcm:a", &message).await,
        Outcome::RenewToken
    );
    assert_eq!(fcm.emulator.received().len(), 1);
}
