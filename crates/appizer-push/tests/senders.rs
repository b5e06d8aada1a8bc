//! The FCM and Web Push senders (what the delivery loop calls) against the emulators over
//! the shared HTTP/2 transport: the access token fetched from the emulator's token endpoint,
//! FCM's answers as outcomes (`Retry-After` kept), a Web Push message decrypted on the
//! other side as sent, a gone subscription retired, and an endpoint the operator did
//! not allow never fetched.

use std::sync::Arc;
use std::time::Duration;

use appizer_core::config::PushConfig;
use appizer_core::push::{Provider, ProviderRecord, WebKeys};
use appizer_core::MessageId;
use appizer_push::emulator::{router, serve_router, ServeOptions};
use appizer_push::message::{Content, Notification, Tags, WebOptions};
use appizer_push::providers::fcm::config::FcmConfig;
use appizer_push::providers::fcm::sender::FcmSender;
use appizer_push::providers::webpush::sender::WebPushSender;
use appizer_push::providers::webpush::{VapidKey, WebPushConfig};
use appizer_push::providers::{Attempt, Target};
use appizer_push::transport::{Transport, TransportConfig};
use serde_json::{json, Value};

const RSA_KEY: &str = include_str!("../testdata/service-account-test-key.pem");

struct Running {
    base: String,
    http: reqwest::Client,
    push: PushConfig,
    transport: Arc<Transport>,
}

async fn start() -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve_router(
        listener,
        router(&base),
        ServeOptions::default(),
        std::future::pending(),
    ));
    let push = PushConfig {
        fcm_url: format!("{base}/fcm"),
        webpush_allowed_hosts: vec!["127.0.0.1".into()],
        ..Default::default()
    };
    let transport = Arc::new(Transport::new(TransportConfig::from_config(&push)).unwrap());
    Running {
        base,
        http: reqwest::Client::new(),
        push,
        transport,
    }
}

impl Running {
    async fn post(&self, path: &str, body: Value) -> Value {
        let answer = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{path}");
        answer.json().await.unwrap_or(Value::Null)
    }

    async fn get(&self, path: &str) -> Value {
        let answer = self.http.get(format!("{}{path}", self.base)).send().await;
        answer.unwrap().json().await.unwrap()
    }

    async fn fcm(&self) -> FcmSender {
        let account = self
            .post(
                "/fcm/service-accounts",
                json!({"type": "service_account", "project_id": "demo-app",
                       "private_key": RSA_KEY, "client_email": "push@demo-app.iam.gserviceaccount.com",
                       "token_uri": "https://oauth2.googleapis.com/token"}),
            )
            .await;
        let record = ProviderRecord {
            provider: Provider::Fcm,
            settings: json!({}),
            sealed: Vec::new(),
            updated_at: chrono::Utc::now(),
        };
        FcmSender::load(
            &record,
            account.to_string().as_bytes(),
            &FcmConfig::from_config(&self.push),
            self.transport.clone(),
        )
        .unwrap()
    }

    fn web(&self, allowed: &[&str]) -> (WebPushSender, String) {
        let key = VapidKey::generate();
        let record = ProviderRecord {
            provider: Provider::Webpush,
            settings: json!({"subject": "mailto:ops@example.com", "public_key": key.public_key()}),
            sealed: Vec::new(),
            updated_at: chrono::Utc::now(),
        };
        let config = WebPushConfig {
            allowed_hosts: allowed.iter().map(|h| h.to_string()).collect(),
        };
        let sender = WebPushSender::load(
            &record,
            &key.private_bytes(),
            &config,
            self.transport.clone(),
        )
        .unwrap();
        (sender, key.public_key())
    }
}

fn content() -> Content {
    Content {
        notification: Notification {
            title: "Hello".into(),
            body: "World".into(),
            url: Some("https://shop.example/x".into()),
            data: [("order".to_string(), json!(7))].into_iter().collect(),
            ..Default::default()
        },
        web: WebOptions {
            urgency: Some("high".into()),
            ..Default::default()
        },
        ttl_seconds: 120,
        collapse_key: Some("a key that is no valid topic!".into()),
        ..Default::default()
    }
}

fn tags() -> Tags {
    Tags {
        message_id: MessageId::new(),
        campaign_id: None,
        variant: None,
    }
}

fn target<'a>(address: &'a str, keys: Option<&'a WebKeys>) -> Target<'a> {
    Target {
        address,
        web_keys: keys,
        delivery_id: uuid::Uuid::now_v7(),
    }
}

#[tokio::test]
async fn fcm_sends_with_its_access_token_and_maps_every_answer() {
    let s = start().await;
    let fcm = s.fcm().await;
    let tags = tags();
    assert_eq!(
        fcm.send(&content(), &tags, target("tok-1", None)).await,
        Attempt::Accepted
    );
    assert_eq!(
        fcm.send(&content(), &tags, target("tok-2", None)).await,
        Attempt::Accepted
    );
    let got = s.get("/fcm/messages").await;
    assert_eq!(got["total"], 2);
    let message = &got["messages"][0];
    assert_eq!(message["data"]["order"], "7");
    assert_eq!(
        message["data"]["$push_message_id"],
        tags.message_id.to_string()
    );
    assert_eq!(
        message["android"]["collapse_key"],
        "a key that is no valid topic!"
    );

    s.post("/fcm/tokens/dead/unregistered", json!({})).await;
    assert_eq!(
        fcm.send(&content(), &tags, target("dead", None)).await,
        Attempt::Retire("UNREGISTERED".into())
    );
    assert!(matches!(
        fcm.send(&content(), &tags, target("bad token!", None)).await,
        Attempt::Retire(r) if r == "INVALID_ARGUMENT"
    ));
    s.post("/fcm/projects/demo-app/throttle", json!({})).await;
    assert_eq!(
        fcm.send(&content(), &tags, target("tok-3", None)).await,
        Attempt::Retry {
            after: Some(Duration::from_secs(2)),
            reason: "QUOTA_EXCEEDED".into()
        }
    );
}

#[tokio::test]
async fn fcm_refuses_a_token_uri_off_the_allowed_hosts() {
    let s = start().await;
    let account = json!({"type": "service_account", "project_id": "demo-app",
        "private_key": RSA_KEY, "client_email": "push@demo-app.iam.gserviceaccount.com",
        "token_uri": "http://169.254.169.254/token"});
    let record = ProviderRecord {
        provider: Provider::Fcm,
        settings: json!({}),
        sealed: Vec::new(),
        updated_at: chrono::Utc::now(),
    };
    let refused = FcmSender::load(
        &record,
        account.to_string().as_bytes(),
        &FcmConfig::from_config(&s.push),
        s.transport.clone(),
    )
    .unwrap_err();
    assert!(refused.reason.contains("token_uri"), "{refused}");
}

#[tokio::test]
async fn a_web_push_is_decrypted_as_sent_and_a_gone_subscription_retired() {
    let s = start().await;
    let (web, public_key) = s.web(&["127.0.0.1"]);
    let subscription = s.post("/webpush/subscriptions", json!({})).await;
    let endpoint = subscription["endpoint"].as_str().unwrap().to_string();
    let keys = WebKeys {
        p256dh: subscription["keys"]["p256dh"].as_str().unwrap().into(),
        auth: subscription["keys"]["auth"].as_str().unwrap().into(),
    };
    let tags = tags();
    assert_eq!(
        web.send(&content(), &tags, target(&endpoint, Some(&keys)))
            .await,
        Attempt::Accepted
    );
    let got = s.get("/webpush/messages").await;
    let received = &got["messages"][0];
    assert_eq!(received["ttl"], 120);
    assert_eq!(received["urgency"], "high");
    assert_eq!(received["vapid_key"], public_key.as_str());
    assert_eq!(received["subject"], "mailto:ops@example.com");
    let topic = received["topic"].as_str().unwrap();
    assert_eq!(topic.len(), 32, "a digest of the collapse key: {topic}");
    let payload: Value = serde_json::from_str(received["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["title"], "Hello");
    assert_eq!(payload["url"], "https://shop.example/x");
    assert_eq!(payload["data"]["order"], 7);
    assert_eq!(
        payload["data"]["$push_message_id"],
        tags.message_id.to_string()
    );

    let id = endpoint.rsplit('/').next().unwrap();
    s.post(&format!("/webpush/subscriptions/{id}/gone"), json!({}))
        .await;
    assert!(matches!(
        web.send(&content(), &tags, target(&endpoint, Some(&keys)))
            .await,
        Attempt::Retire(_)
    ));
    // An endpoint whose host is no longer allowed is never fetched.
    let (strict, _) = s.web(&["fcm.googleapis.com"]);
    assert!(matches!(
        strict.send(&content(), &tags, target(&endpoint, Some(&keys))).await,
        Attempt::Fail(r) if r.contains("not in push.webpush_allowed_hosts")
    ));
    assert_eq!(s.get("/webpush/messages").await["total"], 1);
}
