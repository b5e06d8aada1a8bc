//! The push tests' setting: a server whose providers are the built-in emulators on a
//! loopback port (APNs over HTTP/2 with prior knowledge, FCM with its token endpoint,
//! Web Push decrypting with the subscription's key), and the calls the tests make.

use std::time::{Duration, Instant};

use appizer::testing::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::Client;

pub const P8: &str = include_str!("../../../appizer-push/testdata/apns-test-key.p8");
pub const RSA: &str = include_str!("../../../appizer-push/testdata/service-account-test-key.pem");

pub struct Setup {
    pub server: TestServer,
    pub api: Client,
    pub emulator: String,
    pub base: String,
}

/// An emulator on a loopback port, and a server whose providers are it (retries
/// after 100 ms to 1 s).
pub async fn start() -> Setup {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let emulator = format!("http://{}", listener.local_addr().unwrap());
    let options = appizer_push::emulator::ServeOptions {
        max_streams: Some(20),
    };
    tokio::spawn(appizer_push::emulator::serve(
        listener,
        options,
        std::future::pending(),
    ));
    let server = TestServer::start_with(|c| {
        c.push.apns_url = emulator.clone();
        c.push.fcm_url = format!("{emulator}/fcm");
        c.push.webpush_allowed_hosts = vec!["127.0.0.1".into()];
        c.push.retry_min_ms = 100;
        c.push.retry_max_ms = 1000;
    })
    .await;
    let api = Client::new(&server);
    let base = format!("/api/v1/projects/{}", server.keys.project_id);
    Setup {
        server,
        api,
        emulator,
        base,
    }
}

impl Setup {
    pub async fn emulator_post(&self, path: &str, body: Value) -> Value {
        let answer = self
            .api
            .http
            .post(format!("{}{path}", self.emulator))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        answer.json().await.unwrap_or(Value::Null)
    }

    pub async fn emulator_get(&self, path: &str) -> Value {
        self.api
            .http
            .get(format!("{}{path}", self.emulator))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn put_provider(&self, provider: &str, body: Value) -> Value {
        let path = format!("{}/push/providers/{provider}", self.base);
        let answer = self
            .api
            .call(Method::PUT, &path, &self.server.keys.admin_key, Some(body))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        answer.body
    }

    /// Every provider configured at the emulator and in the project; the Web Push
    /// subscription the emulator made.
    pub async fn providers(&self) -> Value {
        self.emulator_post(
            "/apns/keys",
            json!({"team_id": "ABCDE12345", "key_id": "KEY1234567", "private_key": P8,
                   "topics": ["com.example.app"]}),
        )
        .await;
        self.put_provider(
            "apns",
            json!({"team_id": "ABCDE12345", "key_id": "KEY1234567", "private_key": P8,
                   "topic": "com.example.app", "environment": "production"}),
        )
        .await;
        let account = self
            .emulator_post(
                "/fcm/service-accounts",
                json!({"type": "service_account", "project_id": "demo-app", "private_key": RSA,
                       "client_email": "push@demo-app.iam.gserviceaccount.com",
                       "token_uri": "https://oauth2.googleapis.com/token"}),
            )
            .await;
        self.put_provider("fcm", json!({ "service_account": account }))
            .await;
        self.put_provider("webpush", json!({"subject": "mailto:ops@example.com"}))
            .await;
        self.emulator_post("/webpush/subscriptions", json!({}))
            .await
    }

    pub async fn register(&self, body: Value) -> String {
        let answer = self
            .api
            .post("/v1/push/devices", &self.server.keys.write_key, body)
            .await;
        assert!(answer.status.is_success(), "{:?}", answer.body);
        answer.body["id"].as_str().unwrap().to_string()
    }

    pub async fn capture(&self, batch: Vec<Value>) {
        let answer = self
            .api
            .http
            .post(format!("{}/v1/batch", self.server.base_url))
            .json(&json!({"writeKey": self.server.keys.write_key, "batch": batch}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        super::settle(&self.server).await;
    }

    pub async fn send(&self, body: Value) -> super::Answer {
        self.api
            .post(
                &format!("{}/push/messages", self.base),
                &self.server.keys.admin_key,
                body,
            )
            .await
    }

    /// The message's status once nothing of it is queued.
    pub async fn delivered(&self, message_id: &str) -> Value {
        let started = Instant::now();
        loop {
            let status = self
                .api
                .get(
                    &format!("{}/push/messages/{message_id}", self.base),
                    &self.server.keys.admin_key,
                )
                .await;
            assert_eq!(status.status, StatusCode::OK, "{:?}", status.body);
            if status.body["counts"]["queued"] == 0 {
                return status.body;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "not delivered: {:#}",
                status.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn query(&self, kind: &str, body: Value) -> Value {
        let answer = self
            .api
            .post(
                &format!("{}/query/{kind}", self.base),
                &self.server.keys.admin_key,
                body,
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        answer.body
    }
}

pub fn ios(distinct_id: &str, token: &str) -> Value {
    json!({"distinct_id": distinct_id, "platform": "ios", "token": token})
}
