//! The Web Push client side against the emulator over loopback HTTP: a subscription the
//! emulator made, a message encrypted and signed here, decrypted there; and each row of
//! the answer table (gone, throttled, refused authorization, too large, unknown).

use std::time::Duration;

use appizer_push::emulator::webpush::WebPushEmulator;
use appizer_push::providers::webpush::request::{build, classify, Options, Outcome, Urgency};
use appizer_push::providers::webpush::{Subscription, VapidKey, WebPushConfig};

mod common;

struct Running {
    service: common::Loopback,
    emulator: WebPushEmulator,
}

async fn start() -> Running {
    let mut emulator = None;
    let service = common::serve(|base| {
        let made = WebPushEmulator::new(base);
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
    /// A subscription as a browser would make it, checked as registration checks it.
    async fn subscribe(&self) -> Subscription {
        let made: serde_json::Value = self
            .service
            .http
            .post(format!("{}/webpush/subscriptions", self.service.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let config = WebPushConfig {
            allowed_hosts: vec!["127.0.0.1".into()],
        };
        Subscription::parse(
            made["endpoint"].as_str().unwrap(),
            made["keys"]["p256dh"].as_str().unwrap(),
            made["keys"]["auth"].as_str().unwrap(),
            &config,
        )
        .unwrap()
    }

    async fn send(&self, request: http::Request<Vec<u8>>) -> Outcome {
        let (status, headers, _) = self.service.execute(request).await;
        classify(status, &headers)
    }

    async fn post(&self, path: &str) {
        self.service.control(path).await
    }
}

fn options() -> Options {
    Options {
        ttl: 3600,
        urgency: Urgency::High,
        topic: Some("order-42".into()),
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn a_message_reaches_the_browser_decrypted_and_signed() {
    let service = start().await;
    let subscription = service.subscribe().await;
    let vapid = VapidKey::generate();
    let payload = r#"{"title":"Your order shipped","url":"/orders/42"}"#;
    let request = build(
        &subscription,
        payload.as_bytes(),
        &vapid,
        "mailto:ops@example.com",
        &options(),
        now(),
    )
    .unwrap();
    assert_eq!(service.send(request).await, Outcome::Accepted);
    let received = service.emulator.received();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(got.payload, payload);
    assert_eq!((got.ttl, got.urgency.as_deref()), (3600, Some("high")));
    assert_eq!(got.topic.as_deref(), Some("order-42"));
    assert_eq!(got.vapid_key, vapid.public_key());
    assert_eq!(got.subject.as_deref(), Some("mailto:ops@example.com"));
}

#[tokio::test]
async fn every_answer_of_the_push_service_has_its_outcome() {
    let service = start().await;
    let vapid = VapidKey::generate();
    let subscription = service.subscribe().await;
    let id = subscription
        .endpoint
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let message = |at: i64| {
        build(
            &subscription,
            b"hello",
            &vapid,
            "mailto:ops@example.com",
            &options(),
            at,
        )
        .unwrap()
    };

    // Throttled: retry after the service's Retry-After, then accepted.
    service
        .post(&format!("/webpush/subscriptions/{id}/throttle"))
        .await;
    assert!(matches!(
        service.send(message(now())).await,
        Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(1)
    ));
    assert_eq!(service.send(message(now())).await, Outcome::Accepted);

    // A signature from two days ago has expired: refused, and retrying would not help.
    assert!(matches!(
        service.send(message(now() - 2 * 86_400)).await,
        Outcome::Fail { reason } if reason.starts_with("401")
    ));

    // A body over 4,096 bytes (this client never sends one: the service refuses it).
    let mut large = message(now());
    large.body_mut().resize(5_000, 0);
    assert!(matches!(
        service.send(large).await,
        Outcome::Fail { reason } if reason.starts_with("413")
    ));

    // Unsubscribed: gone, the device is retired.
    service
        .post(&format!("/webpush/subscriptions/{id}/gone"))
        .await;
    assert!(matches!(
        service.send(message(now())).await,
        Outcome::Retire { .. }
    ));

    // An endpoint the service never issued.
    let mut unknown = message(now());
    *unknown.uri_mut() = format!("{}/webpush/push/nobody", service.service.base)
        .parse()
        .unwrap();
    assert!(matches!(
        service.send(unknown).await,
        Outcome::Retire { .. }
    ));

    // Only the one accepted message was received.
    assert_eq!(service.emulator.received().len(), 1);
}

#[test]
fn the_answer_table_without_a_service() {
    use http::{HeaderMap, StatusCode};
    let none = HeaderMap::new();
    assert_eq!(classify(StatusCode::CREATED, &none), Outcome::Accepted);
    assert!(matches!(
        classify(StatusCode::NOT_FOUND, &none),
        Outcome::Retire { .. }
    ));
    assert!(matches!(
        classify(StatusCode::GONE, &none),
        Outcome::Retire { .. }
    ));
    assert!(matches!(
        classify(StatusCode::SERVICE_UNAVAILABLE, &none),
        Outcome::Retry { after: None, .. }
    ));
    assert!(matches!(
        classify(StatusCode::PAYLOAD_TOO_LARGE, &none),
        Outcome::Fail { .. }
    ));
    assert!(matches!(
        classify(StatusCode::BAD_REQUEST, &none),
        Outcome::Fail { .. }
    ));
}
