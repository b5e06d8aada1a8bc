//! The push API over real HTTP. Devices: apps register and unregister them with the
//! write key;
//! management reads, filters and deletes them; a device follows its distinct id's person.
//! Providers: admins set credentials, whose secrets are sealed and never answered.

mod common;

use appizer::testing::TestServer;
use common::Client;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A subscription's keys: a real P-256 point and a 16-byte secret (base64url).
const P256DH: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

async fn start() -> (TestServer, Client) {
    let server =
        TestServer::start_with(|c| c.push.webpush_allowed_hosts = vec!["127.0.0.1".into()]).await;
    let api = Client::new(&server);
    (server, api)
}

fn ios(distinct_id: &str, token: &str) -> Value {
    json!({"distinct_id": distinct_id, "platform": "ios", "token": token, "app_id": "com.example.app",
           "locale": "fr-FR", "timezone": "Europe/Paris"})
}

#[tokio::test]
async fn apps_register_and_unregister_devices_with_the_write_key() {
    let (server, api) = start().await;
    let (write, admin) = (&server.keys.write_key, &server.keys.admin_key);
    let token = "0a".repeat(32);
    let first = api
        .post("/v1/push/devices", write, ios("alice", &token))
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert_eq!(first.body["state"], "active");
    assert_eq!(first.body["address"], token);
    // Registering the token again (now for bob, upper-case hex) updates the same device.
    let again = api
        .post("/v1/push/devices", write, ios("bob", &token.to_uppercase()))
        .await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["distinct_id"], "bob");
    let web = api
        .post(
            "/v1/push/devices",
            write,
            json!({"distinct_id": "alice", "platform": "web", "subscription": {
                "endpoint": "http://127.0.0.1:9/push/sub-1", "expirationTime": null,
                "keys": {"p256dh": P256DH, "auth": AUTH}}}),
        )
        .await;
    assert_eq!(web.status, StatusCode::CREATED, "{:?}", web.body);

    let project = server.keys.project_id.to_string();
    let listed = api
        .get(
            &format!("/api/v1/projects/{project}/push/devices?platform=web"),
            admin,
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    assert_eq!(listed.body["devices"].as_array().unwrap().len(), 1);

    // Opt-out: retired, never sent to again until registered anew.
    let gone = api
        .call(
            Method::DELETE,
            "/v1/push/devices",
            write,
            Some(json!({"platform": "web", "endpoint": "http://127.0.0.1:9/push/sub-1"})),
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{:?}", gone.body);
    let retired = api
        .get(
            &format!("/api/v1/projects/{project}/push/devices?state=retired"),
            admin,
        )
        .await;
    assert_eq!(retired.body["devices"][0]["retired_reason"], "opted_out");
    let unknown = api
        .call(
            Method::DELETE,
            "/v1/push/devices",
            write,
            Some(json!({"platform": "ios", "token": "ff".repeat(32)})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // Keys: none is 401, a secret key is 403 (devices register with the write key).
    let none = api.post("/v1/push/devices", "", ios("a", &token)).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let secret = api.post("/v1/push/devices", admin, ios("a", &token)).await;
    assert_eq!(secret.status, StatusCode::FORBIDDEN);
    server.stop().await;
}

#[tokio::test]
async fn a_bad_registration_is_refused_naming_its_field_and_nothing_is_stored() {
    let (server, api) = start().await;
    let write = &server.keys.write_key;
    let web = |endpoint: &str, p256dh: &str| {
        json!({"distinct_id": "u", "platform": "web",
               "subscription": {"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": AUTH}}})
    };
    for (body, field) in [
        (ios("u", "not-hex"), "token"),
        (ios("u", &"ab".repeat(10)), "token"),
        (ios("anonymous", &"ab".repeat(32)), "distinct_id"),
        (
            json!({"distinct_id": "u", "platform": "pager", "token": "x"}),
            "platform",
        ),
        (json!({"distinct_id": "u", "platform": "android"}), "token"),
        (
            json!({"distinct_id": "u", "platform": "android", "token": "a b"}),
            "token",
        ),
        (
            web("https://169.254.169.254/latest", P256DH),
            "subscription.endpoint",
        ),
        (web("http://10.1.2.3/push", P256DH), "subscription.endpoint"),
        (
            web("http://127.0.0.1:9/push", "AAAA"),
            "subscription.keys.p256dh",
        ),
        (
            json!({"distinct_id": "u", "platform": "ios", "token": "ab".repeat(32), "timezone": "Nowhere/City"}),
            "timezone",
        ),
        (
            json!({"distinct_id": "u", "platform": "ios", "token": "ab".repeat(32), "colour": "red"}),
            "colour",
        ),
    ] {
        let a = api.post("/v1/push/devices", write, body.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {:?}", a.body);
        assert_eq!(a.error_field(), field, "{body}: {:?}", a.body);
    }
    let project = server.keys.project_id.to_string();
    let listed = api
        .get(
            &format!("/api/v1/projects/{project}/push/devices"),
            &server.keys.admin_key,
        )
        .await;
    assert_eq!(listed.body["devices"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn a_device_follows_its_person_through_merges_and_is_deleted_with_an_audit_entry() {
    let (server, api) = start().await;
    let (write, admin) = (&server.keys.write_key, &server.keys.admin_key);
    let project = server.keys.project_id.to_string();
    let persons = format!("/api/v1/projects/{project}/persons");
    let person = |distinct_id: &str| {
        let persons = persons.clone();
        let api = &api;
        let distinct_id = distinct_id.to_string();
        async move {
            let a = api
                .post(&persons, admin, json!({"distinct_id": distinct_id}))
                .await;
            assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
            a.body["id"].as_str().unwrap().to_string()
        }
    };
    let (phone_owner, user) = (person("phone-user").await, person("user").await);
    let device = api
        .post(
            "/v1/push/devices",
            write,
            json!({"distinct_id": "phone-user", "platform": "android", "token": "fcm:abc"}),
        )
        .await;
    assert_eq!(device.body["person_id"], phone_owner.as_str());
    let devices_of = |id: String| {
        let api = &api;
        let path = format!("{persons}/{id}/devices");
        async move { api.get(&path, admin).await }
    };
    assert_eq!(
        devices_of(phone_owner.clone()).await.body["devices"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let merged = api
        .post(
            &format!("{persons}/{user}/merge"),
            admin,
            json!({"source_person_id": phone_owner}),
        )
        .await;
    assert_eq!(merged.status, StatusCode::OK, "{:?}", merged.body);
    let now = devices_of(user.clone()).await;
    assert_eq!(now.body["devices"][0]["id"], device.body["id"]);
    assert_eq!(now.body["devices"][0]["person_id"], user.as_str());
    // The merged-away person is still known (its merge log), with no device now.
    assert_eq!(devices_of(phone_owner).await.status, StatusCode::NOT_FOUND);

    let id = device.body["id"].as_str().unwrap();
    let path = format!("/api/v1/projects/{project}/push/devices/{id}");
    assert_eq!(api.get(&path, admin).await.status, StatusCode::OK);
    let deleted = api.call(Method::DELETE, &path, admin, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&path, admin).await.status, StatusCode::NOT_FOUND);
    let audit = api
        .get(&format!("/api/v1/projects/{project}/audit-log"), admin)
        .await;
    assert_eq!(audit.body["entries"][0]["action"], "device.delete");
    assert_eq!(audit.body["entries"][0]["target_id"], id);
    server.stop().await;
}

#[tokio::test]
async fn provider_credentials_are_checked_sealed_and_never_answered() {
    let (server, api) = start().await;
    let admin = &server.keys.admin_key;
    let project = server.keys.project_id.to_string();
    let providers = format!("/api/v1/projects/{project}/push/providers");
    let put = |provider: &str, body: Value| {
        let api = &api;
        let path = format!("{providers}/{provider}");
        async move { api.call(Method::PUT, &path, admin, Some(body)).await }
    };
    let rsa = include_str!("../../appizer-push/testdata/service-account-test-key.pem");
    let p8 = include_str!("../../appizer-push/testdata/apns-test-key.p8");
    let apns = put(
        "apns",
        json!({"team_id": "ABCDE12345", "key_id": "KEY1234567", "private_key": p8,
               "topic": "com.example.app", "environment": "sandbox"}),
    )
    .await;
    assert_eq!(apns.status, StatusCode::OK, "{:?}", apns.body);
    assert_eq!(apns.body["settings"]["topic"], "com.example.app");
    let fcm = put(
        "fcm",
        json!({"service_account": {"type": "service_account", "project_id": "demo-app",
               "private_key": rsa, "client_email": "push@demo-app.iam.gserviceaccount.com",
               "token_uri": "https://oauth2.googleapis.com/token"}}),
    )
    .await;
    assert_eq!(fcm.status, StatusCode::OK, "{:?}", fcm.body);
    let web = put("webpush", json!({"subject": "mailto:ops@example.com"})).await;
    assert_eq!(web.status, StatusCode::OK, "{:?}", web.body);
    let public_key = web.body["settings"]["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(public_key.len(), 87, "65 bytes of base64url");

    let listed = api.get(&providers, admin).await;
    assert_eq!(listed.body["providers"].as_array().unwrap().len(), 3);
    let one = api.get(&format!("{providers}/webpush"), admin).await;
    assert_eq!(one.body["settings"]["public_key"], public_key.as_str());
    assert_eq!(
        api.get(&format!("{providers}/telegraph"), admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // No answer carries a secret, and the database holds none in the clear.
    let rsa_line = rsa.lines().nth(5).unwrap();
    let p8_line = p8.lines().nth(1).unwrap();
    for answer in [&apns.body, &fcm.body, &web.body, &listed.body] {
        let text = answer.to_string();
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains(rsa_line),
            "{text}"
        );
    }
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(server.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("metadata.db")
        {
            stored.extend(std::fs::read(path).unwrap());
        }
    }
    assert!(!stored.is_empty(), "read the metadata database files");
    let contains = |needle: &str| stored.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!contains(rsa_line) && !contains(p8_line) && !contains("PRIVATE KEY"));
    assert!(server.data_dir().join("push-master.key").is_file());

    // A bad credential is refused naming its field, and keeps the earlier one.
    let bad = put(
        "apns",
        json!({"team_id": "ABCDE12345", "key_id": "KEY1234567", "private_key": rsa,
               "topic": "com.example.app", "environment": "sandbox"}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.error_field(), "private_key");
    let unknown = put("fcm", json!({"service_account": {}, "extra": 1})).await;
    assert_eq!(
        (unknown.status, unknown.error_field()),
        (StatusCode::BAD_REQUEST, "extra")
    );
    let still = api.get(&format!("{providers}/apns"), admin).await;
    assert_eq!(still.body["updated_at"], apns.body["updated_at"]);
    server.stop().await;
}
