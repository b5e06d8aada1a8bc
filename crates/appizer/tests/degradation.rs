//! Degradation, not collapse:
//! - PostgreSQL stopped under ingestion and started again. In between, the node goes on
//!   acknowledging events into its queue (known keys are served from the key cache),
//!   management answers 503 with `Retry-After`, and `/readyz` names the metadata
//!   store;
//! - the object store of the event files not answering, then answering again. In
//!   between, events are acknowledged into the queue, flushes fail and are retried
//!   with backoff (counted in `appizer_events_flush_failures_total`), and `/readyz`
//!   names the flush.
//!
//! Once the service is back, every acknowledged event is stored exactly once.

mod common;

use std::time::{Duration, Instant};

use appizer::testing::TestServer;
use appizer_core::secret::SecretString;
use appizer_storage::testing::s3::S3Emulator;
use common::services::PostgresServer;
use common::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn batch(round: u32) -> Value {
    json!({"batch": (0..10).map(|i| json!({
        "type": "track", "event": "Outage Test", "userId": format!("user-{}", i % 3),
        "messageId": format!("r{round}-{i}"),
    })).collect::<Vec<_>>()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_goes_on_while_postgresql_is_down() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let server = TestServer::start_with(|c| {
        c.database_url = SecretString::new(pg.url());
        // The outage outlasts the key lookups' lifetime.
        c.auth.key_cache_ttl_ms = 1_000;
    })
    .await;
    let keys = server.keys.clone();
    let api = Client::new(&server);
    let projects = "/api/v1/projects";
    assert_eq!(
        api.get(projects, &keys.admin_key).await.status,
        StatusCode::OK
    );
    let mut acked = 0u32;
    for round in 0..5 {
        let sent = api.send_batch(&keys.write_key, &batch(round)).await;
        assert_eq!(sent.status(), StatusCode::OK);
        acked += 10;
    }

    pg.stop();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for round in 5..15 {
        let sent = api.send_batch(&keys.write_key, &batch(round)).await;
        assert_eq!(
            sent.status(),
            StatusCode::OK,
            "acknowledged into the queue with the database down"
        );
        acked += 10;
    }
    let refused = api
        .http
        .get(server.url(projects))
        .bearer_auth(&keys.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    let ready = api.get("/readyz", "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.error_field(), "metadata_store");

    let stale = api.metric_total("appizer_auth_stale_lookups_total").await;
    assert!(stale > 0.0, "the write key was served from the cache");

    pg.resume();
    for round in 15..20 {
        let sent = api.send_batch(&keys.write_key, &batch(round)).await;
        assert_eq!(sent.status(), StatusCode::OK);
        acked += 10;
    }
    wait_until_stored(&api, &server, acked).await;
    wait_until_ready(&api).await;
    server.stop().await;
}

/// Waits until the trends of the test's event count `acked`, never more.
async fn wait_until_stored(api: &Client, server: &TestServer, acked: u32) {
    let path = format!("/api/v1/projects/{}/query/trends", server.keys.project_id);
    let query = json!({"series": [{"event": "Outage Test"}], "interval": "day",
        "date_range": {"from": "-1d"}});
    let started = Instant::now();
    loop {
        let answer = api
            .call(
                reqwest::Method::POST,
                &path,
                &server.keys.admin_key,
                Some(query.clone()),
            )
            .await;
        let counted = answer.body["results"][0]["aggregated"].as_f64();
        if answer.status == StatusCode::OK && counted == Some(f64::from(acked)) {
            break;
        }
        assert!(
            counted.is_none_or(|c| c <= f64::from(acked)),
            "stored twice: {counted:?} of {acked}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not every acknowledged event was stored: {:?}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until each background loop reported its next pass and the node is ready.
async fn wait_until_ready(api: &Client) {
    let started = Instant::now();
    loop {
        let ready = api.get("/readyz", "").await;
        if ready.status == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never ready again: {:?}",
            ready.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_goes_on_while_the_object_store_is_down() {
    let Some(emulator) = S3Emulator::start() else {
        return;
    };
    emulator.create_bucket("events");
    let settings = emulator.settings("events", "");
    let server = TestServer::start_with(|c| {
        c.events_url = "s3://events/deployment-1".into();
        c.s3.endpoint = settings.endpoint.clone();
        c.s3.path_style = true;
        c.s3.access_key_id = settings.access_key_id.clone();
        c.s3.secret_access_key = settings.secret_access_key.clone();
        c.s3.request_timeout_ms = 1_000;
        c.ingest.flush_interval_ms = 200;
    })
    .await;
    let api = Client::new(&server);
    let key = server.keys.write_key.clone();
    let mut acked = 0u32;
    for round in 0..5 {
        assert_eq!(
            api.send_batch(&key, &batch(round)).await.status(),
            StatusCode::OK
        );
        acked += 10;
    }
    wait_until_stored(&api, &server, acked).await;

    emulator.pause();
    for round in 5..15 {
        let sent = api.send_batch(&key, &batch(round)).await;
        assert_eq!(
            sent.status(),
            StatusCode::OK,
            "acknowledged with the object store down"
        );
        acked += 10;
    }
    let started = Instant::now();
    loop {
        let ready = api.get("/readyz", "").await;
        if ready.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(ready.error_field(), "flush");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the failing flush never showed: {:?}",
            ready.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failures = api
        .metric_total("appizer_events_flush_failures_total")
        .await;
    assert!(failures >= 1.0, "flush failures counted: {failures}");

    emulator.resume();
    for round in 15..20 {
        assert_eq!(
            api.send_batch(&key, &batch(round)).await.status(),
            StatusCode::OK
        );
        acked += 10;
    }
    wait_until_stored(&api, &server, acked).await;
    wait_until_ready(&api).await;
    server.stop().await;
}
