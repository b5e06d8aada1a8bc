//! Push delivery end to end over real HTTP: a server whose providers are the built-in
//! emulators (APNs over HTTP/2 with prior knowledge, FCM with its token endpoint, Web
//! Push decrypting with the subscription's key). A message to a segment reaches iOS,
//! Android and web devices with what was sent, a dead token is retired, retries follow
//! throttling, and the delivery events answer a funnel.

mod common;

use std::time::{Duration, Instant};

use common::push::{ios, start};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn a_message_to_a_segment_reaches_every_platform_and_its_events_answer_a_funnel() {
    let s = start().await;
    let subscription = s.providers().await;
    let alice_token = "a1".repeat(32);
    let dave_token = "d4".repeat(32);
    s.register(ios("alice", &alice_token)).await;
    s.register(json!({"distinct_id": "bob", "platform": "android", "token": "bob-fcm-token"}))
        .await;
    s.register(json!({"distinct_id": "carol", "platform": "web", "subscription": subscription}))
        .await;
    let dave = s.register(ios("dave", &dave_token)).await;
    s.register(ios("erin", &"e5".repeat(32))).await;
    s.emulator_post(
        &format!("/apns/devices/{dave_token}/unregistered"),
        json!({}),
    )
    .await;
    let now = chrono::Utc::now().to_rfc3339();
    s.capture(
        ["alice", "bob", "carol", "dave", "erin"]
            .iter()
            .map(|id| json!({"type": "identify", "userId": id, "timestamp": now}))
            .collect(),
    )
    .await;
    let segment = s
        .api
        .post(
            &format!("{}/segments", s.base),
            &s.server.keys.admin_key,
            json!({"name": "Launch", "kind": "static",
                   "distinct_ids": ["alice", "bob", "carol", "dave"]}),
        )
        .await;
    assert_eq!(segment.status, StatusCode::CREATED, "{:?}", segment.body);

    let message = json!({
        "to": {"segment_id": segment.body["id"]},
        "notification": {"title": "Spring sale", "body": "20% off today", "url": "https://shop.example/sale",
                         "data": {"order": 42, "coupon": "SPRING"}},
        "apns": {"sound": "default", "badge": 3},
        "android": {"channel_id": "offers"},
        "web": {"urgency": "high"},
        "ttl_seconds": 3600,
        "collapse_key": "spring-sale",
        "idempotency_key": "spring-2026",
    });
    let sent = s.send(message.clone()).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    assert_eq!(sent.body["devices"], 4, "erin is not in the segment");
    let message_id = sent.body["message_id"].as_str().unwrap().to_string();
    let status = s.delivered(&message_id).await;
    let counts = &status["counts"];
    assert_eq!(
        (counts["sent"].as_u64(), counts["retired"].as_u64()),
        (Some(3), Some(1)),
        "{counts:#}"
    );
    assert_eq!(counts["retired_by_reason"]["Unregistered"], 1);
    assert_eq!(counts["by_platform"]["ios"]["sent"], 1);
    assert_eq!(counts["by_platform"]["android"]["sent"], 1);
    assert_eq!(counts["by_platform"]["web"]["sent"], 1);

    // What each device received is what was sent, with the message id to report opens.
    let apns = s.emulator_get("/apns/notifications").await;
    let note = &apns["notifications"][0];
    assert_eq!(apns["total"], 1, "{apns:#}");
    assert_eq!(note["token"], alice_token.as_str());
    assert_eq!(note["topic"], "com.example.app");
    assert_eq!(note["collapse_id"], "spring-sale");
    assert_eq!(note["payload"]["aps"]["alert"]["title"], "Spring sale");
    assert_eq!(note["payload"]["aps"]["badge"], 3);
    assert_eq!(note["payload"]["order"], 42);
    assert_eq!(note["payload"]["$push_message_id"], message_id.as_str());
    let fcm = s.emulator_get("/fcm/messages").await;
    let android = &fcm["messages"][0];
    assert_eq!(android["token"], "bob-fcm-token");
    assert_eq!(android["notification"]["body"], "20% off today");
    assert_eq!(
        android["data"]["order"], "42",
        "FCM data values are strings"
    );
    assert_eq!(android["data"]["$push_message_id"], message_id.as_str());
    assert_eq!(android["android"]["notification"]["channel_id"], "offers");
    assert_eq!(android["android"]["ttl"], "3600s");
    let web = s.emulator_get("/webpush/messages").await;
    let browser = &web["messages"][0];
    assert_eq!(browser["urgency"], "high");
    assert_eq!(browser["ttl"], 3600);
    let payload: Value = serde_json::from_str(browser["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["title"], "Spring sale");
    assert_eq!(payload["url"], "https://shop.example/sale");
    assert_eq!(payload["data"]["coupon"], "SPRING");
    assert_eq!(payload["data"]["$push_message_id"], message_id.as_str());

    // The dead token's device is retired: never sent to again.
    let device = s
        .api
        .get(
            &format!("{}/push/devices/{dave}", s.base),
            &s.server.keys.admin_key,
        )
        .await;
    assert_eq!(device.body["state"], "retired");
    assert_eq!(device.body["retired_reason"], "Unregistered");

    // The same idempotency key answers the first request and sends nothing again.
    let again = s.send(message).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body["message_id"], message_id.as_str());
    assert_eq!(
        again
            .headers
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );

    // Delivery events are events: `$push_sent` per device, `$push_failed` for dave;
    // the app reports the open, and sent -> opened -> purchase is a funnel.
    s.capture(vec![
        json!({"type": "track", "userId": "alice", "event": "$push_opened", "timestamp": chrono::Utc::now().to_rfc3339(),
               "properties": {"$push_message_id": message_id}}),
        json!({"type": "track", "userId": "alice", "event": "purchase", "timestamp": chrono::Utc::now().to_rfc3339(),
               "properties": {"amount": 20}}),
    ])
    .await;
    let trends = s
        .query(
            "trends",
            json!({"series": [{"event": "$push_sent"}, {"event": "$push_failed"}],
                   "date_range": {"from": "-1d"}}),
        )
        .await;
    let totals: Vec<f64> = trends["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["aggregated"].as_f64().unwrap())
        .collect();
    assert_eq!(totals, [3.0, 1.0], "{trends:#}");
    let funnel = s
        .query(
            "funnels",
            json!({"steps": [
                {"event": "$push_sent", "properties": [{"key": "$push_message_id", "value": message_id}]},
                {"event": "$push_opened"}, {"event": "purchase"}],
                   "date_range": {"from": "-1d"}}),
        )
        .await;
    let steps: Vec<u64> = funnel["results"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["count"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [3, 1, 1], "{funnel:#}");

    // Deliveries are metrics too.
    let metrics = s
        .api
        .http
        .get(format!("{}/metrics", s.server.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "appizer_push_sent_total{platform=\"ios\"}",
        "appizer_push_retired_total{platform=\"ios\",reason=\"Unregistered\"}",
        "appizer_push_messages_total",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }
    s.server.stop().await;
}

#[tokio::test]
async fn throttled_and_failing_providers_are_retried_until_accepted() {
    let s = start().await;
    s.providers().await;
    let token = "b2".repeat(32);
    s.register(ios("alice", &token)).await;
    s.register(json!({"distinct_id": "alice", "platform": "android", "token": "alice-fcm"}))
        .await;
    // APNs answers 429 twice then 503 once; FCM throttles once with Retry-After: 2.
    s.emulator_post("/apns/throttle/2", json!({})).await;
    s.emulator_post("/apns/unavailable/1", json!({})).await;
    s.emulator_post("/fcm/projects/demo-app/throttle", json!({}))
        .await;
    let started = Instant::now();
    let sent = s
        .send(json!({"to": {"distinct_ids": ["alice"]}, "notification": {"title": "Hi", "body": "again"}}))
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    assert_eq!(sent.body["devices"], 2);
    let status = s.delivered(sent.body["message_id"].as_str().unwrap()).await;
    assert_eq!(status["counts"]["sent"], 2, "{status:#}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "FCM's Retry-After was honoured"
    );
    let apns = s.emulator_get("/apns/notifications").await;
    assert_eq!(apns["per_token"][&token], 1, "accepted once: {apns:#}");
    let fcm = s.emulator_get("/fcm/messages").await;
    assert_eq!(fcm["per_token"]["alice-fcm"], 1);
    s.server.stop().await;
}

#[tokio::test]
async fn a_send_is_checked_whole_before_anything_is_queued() {
    let s = start().await;
    let admin = &s.server.keys.admin_key;
    let refused = |answer: common::Answer| (answer.status, answer.error_field().to_string());
    let hello = json!({"title": "Hi", "body": "there"});
    // No provider yet.
    let none = s
        .send(json!({"to": {"distinct_ids": ["alice"]}, "notification": hello}))
        .await;
    assert_eq!(
        refused(none),
        (StatusCode::BAD_REQUEST, "platforms".to_string())
    );
    s.providers().await;
    for (body, field) in [
        (json!({"to": {}, "notification": hello}), "to"),
        (
            json!({"to": {"distinct_ids": ["a"], "device_ids": []}, "notification": hello}),
            "to",
        ),
        (
            json!({"to": {"person_ids": []}, "notification": hello}),
            "to.person_ids",
        ),
        (
            json!({"to": {"segment_id": uuid::Uuid::now_v7()}, "notification": hello}),
            "to.segment_id",
        ),
        (
            json!({"to": {"distinct_ids": ["a"]}, "notification": {"title": "", "body": ""}}),
            "notification",
        ),
        (
            json!({"to": {"distinct_ids": ["a"]}, "notification": {"title": "x", "body": "y".repeat(3990)}}),
            "notification",
        ),
        (
            json!({"to": {"distinct_ids": ["a"]}, "notification": {"title": "x", "body": "y", "url": "not a url"}}),
            "notification.url",
        ),
        (
            json!({"to": {"distinct_ids": ["a"]}, "notification": {"title": "x", "body": "y", "data": {"$push_message_id": "z"}}}),
            "notification.data",
        ),
        (
            json!({"to": {"distinct_ids": ["a"]}, "notification": hello, "apns": {"push_type": "voip"}}),
            "apns.push_type",
        ),
        (
            json!({"to": {"distinct_ids": ["a"]}, "notification": hello, "android": {"color": "red"}}),
            "android.color",
        ),
        (
            json!({"to": {"distinct_ids": ["a"]}, "notification": hello, "ttl_seconds": 99_999_999}),
            "ttl_seconds",
        ),
        (
            json!({"to": {"distinct_ids": ["a"]}, "notification": hello, "surprise": 1}),
            "surprise",
        ),
    ] {
        let answer = s.send(body.clone()).await;
        assert_eq!(
            refused(answer),
            (StatusCode::BAD_REQUEST, field.to_string()),
            "{body}"
        );
    }
    // Nothing was queued by any of them; a viewer may read but not send.
    let viewer = s
        .api
        .post(
            &format!("{}/keys", s.base),
            admin,
            json!({"name": "v", "role": "viewer"}),
        )
        .await;
    let viewer = viewer.body["key"].as_str().unwrap();
    let forbidden = s
        .api
        .post(
            &format!("{}/push/messages", s.base),
            viewer,
            json!({"to": {"distinct_ids": ["a"]}, "notification": hello}),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let depth = s
        .server
        .state
        .store
        .push()
        .queued_deliveries()
        .await
        .unwrap();
    assert_eq!(depth, 0);
    s.server.stop().await;
}

#[tokio::test]
async fn a_throttling_provider_does_not_hold_up_the_others() {
    let s = start().await;
    s.providers().await;
    s.register(ios("alice", &"c3".repeat(32))).await;
    s.register(json!({"distinct_id": "alice", "platform": "android", "token": "alice-fcm"}))
        .await;
    s.emulator_post("/apns/throttle/100000", json!({})).await;
    let sent = s
        .send(json!({"to": {"distinct_ids": ["alice"]}, "notification": {"title": "Hi", "body": "there"}}))
        .await;
    let id = sent.body["message_id"].as_str().unwrap().to_string();
    let started = Instant::now();
    loop {
        let status = s
            .api
            .get(
                &format!("{}/push/messages/{id}", s.base),
                &s.server.keys.admin_key,
            )
            .await;
        let counts = &status.body["counts"]["by_platform"];
        if counts["android"]["sent"] == 1 {
            assert_eq!(counts["ios"]["queued"], 1, "iOS is still being retried");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:#}",
            status.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.server.stop().await;
}
