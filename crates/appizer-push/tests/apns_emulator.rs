//! The APNs sender against the APNs emulator over loopback HTTP/2 (prior knowledge):
//! a notification accepted with its headers and payload, the provider token renewed
//! when the emulator expires it, each row of Apple's answer table as the sender's
//! outcome, HTTP/1.1 refused, and a server's stream limit respected under load.

use std::sync::Arc;
use std::time::Duration;

use appizer_core::config::PushConfig;
use appizer_core::push::{Provider, ProviderRecord};
use appizer_core::MessageId;
use appizer_push::emulator::apns::ApnsEmulator;
use appizer_push::emulator::{serve_router, ServeOptions};
use appizer_push::message::{Content, Notification, Tags};
use appizer_push::providers::apns::sender::ApnsSender;
use appizer_push::providers::apns::ApnsConfig;
use appizer_push::providers::{Attempt, Target};
use appizer_push::transport::{Transport, TransportConfig};
use serde_json::json;

const P8: &str = include_str!("../testdata/apns-test-key.p8");

struct Running {
    base: String,
    emulator: ApnsEmulator,
    http: reqwest::Client,
}

async fn start(max_streams: Option<u32>) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let emulator = ApnsEmulator::new();
    tokio::spawn(serve_router(
        listener,
        emulator.router(),
        ServeOptions { max_streams },
        std::future::pending(),
    ));
    let running = Running {
        base,
        emulator,
        http: reqwest::Client::new(),
    };
    running
        .control(
            "/apns/keys",
            json!({"team_id": "ABCDE12345", "key_id": "KEY1234567",
                                      "private_key": P8, "topics": ["com.example.app"]}),
        )
        .await;
    running
}

impl Running {
    async fn control(&self, path: &str, body: serde_json::Value) {
        let status = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "{path}: {status}");
    }

    fn sender(&self, topic: &str, connections: usize) -> ApnsSender {
        let push = PushConfig {
            apns_url: self.base.clone(),
            connections_per_host: connections,
            ..Default::default()
        };
        let record = ProviderRecord {
            provider: Provider::Apns,
            settings: json!({"team_id": "ABCDE12345", "key_id": "KEY1234567", "topic": topic,
                             "environment": "production"}),
            sealed: Vec::new(),
            updated_at: chrono::Utc::now(),
        };
        let transport = Arc::new(Transport::new(TransportConfig::from_config(&push)).unwrap());
        ApnsSender::load(
            &record,
            P8.as_bytes(),
            &ApnsConfig::from_config(&push),
            transport,
        )
        .unwrap()
    }
}

fn content(collapse: Option<&str>) -> Content {
    Content {
        notification: Notification {
            title: "Hello".into(),
            body: "World".into(),
            data: [("order".to_string(), json!(7))].into_iter().collect(),
            ..Default::default()
        },
        ttl_seconds: 60,
        collapse_key: collapse.map(str::to_string),
        ..Default::default()
    }
}

fn tags() -> Tags {
    Tags {
        message_id: MessageId::new(),
        campaign_id: Some("spring".into()),
        variant: Some("B".into()),
    }
}

async fn send(sender: &ApnsSender, token: &str, content: &Content) -> Attempt {
    let target = Target {
        address: token,
        web_keys: None,
        delivery_id: uuid::Uuid::now_v7(),
    };
    sender.send(content, &tags(), target).await
}

#[tokio::test]
async fn a_notification_is_accepted_with_its_headers_and_payload() {
    let apns = start(None).await;
    let sender = apns.sender("com.example.app", 1);
    let token = "ab".repeat(32);
    let delivery = uuid::Uuid::now_v7();
    let tags = tags();
    let attempt = sender
        .send(
            &content(Some("order-7")),
            &tags,
            Target {
                address: &token,
                web_keys: None,
                delivery_id: delivery,
            },
        )
        .await;
    assert_eq!(attempt, Attempt::Accepted);
    let got = apns.emulator.received();
    assert_eq!(got.len(), 1);
    let n = &got[0];
    assert_eq!(
        (
            n.token.as_str(),
            n.topic.as_str(),
            n.push_type.as_str(),
            n.priority
        ),
        (token.as_str(), "com.example.app", "alert", 10)
    );
    assert_eq!(n.apns_id, delivery.hyphenated().to_string());
    assert_eq!(n.collapse_id.as_deref(), Some("order-7"));
    assert!(n.expiration > chrono::Utc::now().timestamp());
    assert_eq!(
        n.payload["aps"]["alert"],
        json!({"title": "Hello", "body": "World"})
    );
    assert_eq!(n.payload["order"], 7);
    assert_eq!(n.payload["$push_message_id"], tags.message_id.to_string());
    assert_eq!(n.payload["$push_campaign_id"], "spring");
    assert_eq!(n.payload["$push_variant"], "B");
}

#[tokio::test]
async fn every_answer_apple_gives_becomes_the_senders_outcome() {
    let apns = start(None).await;
    let sender = apns.sender("com.example.app", 1);
    let dead = "de".repeat(32);
    apns.control(&format!("/apns/devices/{dead}/unregistered"), json!({}))
        .await;
    assert!(
        matches!(send(&sender, &dead, &content(None)).await, Attempt::Retire(r) if r == "Unregistered")
    );
    // An even-length hex token too short for a device: Apple's BadDeviceToken.
    assert!(
        matches!(send(&sender, &"ab".repeat(16), &content(None)).await, Attempt::Retire(r) if r == "BadDeviceToken")
    );
    // Not hex at all: never sent.
    assert!(matches!(
        send(&sender, "not-hex", &content(None)).await,
        Attempt::Fail(_)
    ));
    apns.control("/apns/throttle/1", json!({})).await;
    assert!(
        matches!(send(&sender, &"ab".repeat(32), &content(None)).await, Attempt::Retry { reason, .. } if reason == "TooManyRequests")
    );
    apns.control("/apns/unavailable/1", json!({})).await;
    assert!(
        matches!(send(&sender, &"ab".repeat(32), &content(None)).await, Attempt::Retry { reason, .. } if reason == "ServiceUnavailable")
    );
    // A topic the team does not have.
    let other = apns.sender("com.example.other", 1);
    assert!(
        matches!(send(&other, &"ab".repeat(32), &content(None)).await, Attempt::Fail(r) if r == "TopicDisallowed")
    );
    // A payload over 4 KB is refused here, before it is sent.
    let mut big = content(None);
    big.notification.body = "x".repeat(4100);
    assert!(
        matches!(send(&sender, &"ab".repeat(32), &big).await, Attempt::Fail(r) if r.contains("4096"))
    );
    assert_eq!(
        apns.emulator.received().len(),
        0,
        "none of them was accepted"
    );
}

#[tokio::test]
async fn an_expired_provider_token_is_renewed_once_and_a_foreign_key_refused() {
    let apns = start(None).await;
    let sender = apns.sender("com.example.app", 1);
    assert_eq!(
        send(&sender, &"ab".repeat(32), &content(None)).await,
        Attempt::Accepted
    );
    // Apple says the token expired: the sender signs a new one and sends again. The
    // new token's iat must be later than the expiry, so wait for the next second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    apns.control("/apns/keys/KEY1234567/expire", json!({}))
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        send(&sender, &"ab".repeat(32), &content(None)).await,
        Attempt::Accepted
    );
    assert_eq!(apns.emulator.received().len(), 2);

    // A team key the emulator does not know signs tokens Apple refuses.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stranger = ApnsEmulator::new();
    tokio::spawn(serve_router(
        listener,
        stranger.router(),
        ServeOptions::default(),
        std::future::pending(),
    ));
    let unknown = Running {
        base,
        emulator: stranger,
        http: reqwest::Client::new(),
    };
    let refused = send(
        &unknown.sender("com.example.app", 1),
        &"ab".repeat(32),
        &content(None),
    )
    .await;
    assert_eq!(refused, Attempt::Fail("InvalidProviderToken".into()));
}

#[tokio::test]
async fn http1_is_refused_and_the_stream_limit_holds_under_load() {
    let apns = start(Some(4)).await;
    let http1 = reqwest::Client::new()
        .post(format!("{}/3/device/{}", apns.base, "ab".repeat(32)))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(http1.status(), 505);

    let sender = Arc::new(apns.sender("com.example.app", 2));
    let sends: Vec<_> = (0..200)
        .map(|i| {
            let sender = sender.clone();
            tokio::spawn(async move {
                let token = format!("{i:064x}");
                send(&sender, &token, &content(None)).await
            })
        })
        .collect();
    for s in sends {
        assert_eq!(s.await.unwrap(), Attempt::Accepted);
    }
    let counts = apns.emulator.counts();
    assert_eq!(counts.len(), 200);
    assert!(counts.values().all(|n| *n == 1));
}
