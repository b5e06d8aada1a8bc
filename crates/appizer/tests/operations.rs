//! Operations over real HTTP: health and readiness, Prometheus metrics, the OpenAPI
//! document, HTTPS with a self-signed certificate, graceful shutdown.

mod common;

use std::time::Duration;

use appizer::testing::TestServer;
use appizer_gateway::access::{ACCESS_TABLE, SELF_AUTHENTICATED};
use common::Client;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn health_readiness_and_metrics_by_matched_route() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let health = api.get("/healthz", "").await;
    assert_eq!(
        (health.status, health.body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let ready = api.get("/readyz", "").await;
    assert_eq!(
        (ready.status, ready.body["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );

    let project = server.keys.project_id;
    let admin = &server.keys.admin_key;
    assert_eq!(
        api.get(&format!("/api/v1/projects/{project}"), admin)
            .await
            .status,
        StatusCode::OK
    );
    let text = api.metrics_text().await;
    assert!(
        text.contains(r#"appizer_http_requests_total{method="GET",route="/api/v1/projects/{project_id}",status="200"}"#),
        "labelled by the route template, not the raw path:\n{text}"
    );
    assert!(!text.contains(&project.to_string()), "no ids in labels");
    assert!(text.contains("appizer_http_request_duration_seconds_bucket"));

    // Storage gone: not ready, but still alive.
    server.store.close().await;
    let unready = api.get("/readyz", "").await;
    assert_eq!(unready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unready.error_code(), "unavailable");
    assert_eq!(api.get("/healthz", "").await.status, StatusCode::OK);
    let during_outage = api.get(&format!("/api/v1/projects/{project}"), admin).await;
    assert_eq!(
        during_outage.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        during_outage.body
    );
    assert_eq!(during_outage.error_code(), "unavailable");
    assert_eq!(during_outage.headers["retry-after"], "1");
    server.stop().await;
}

/// `/readyz` until `done` holds for its answer, within 10 s.
async fn readiness_until(api: &Client, done: impl Fn(&common::Answer) -> bool) -> common::Answer {
    let started = std::time::Instant::now();
    loop {
        let a = api.get("/readyz", "").await;
        if done(&a) {
            return a;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "last: {:?}",
            a.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_flush_that_keeps_failing_makes_readyz_name_it_until_it_recovers() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let project = server.keys.project_id;
    // A file where the project's event directory goes: every flush fails.
    let events = server.config.data_dir.join("events");
    std::fs::create_dir_all(&events).unwrap();
    let blocker = events.join(format!("project={project}"));
    std::fs::write(&blocker, b"not a directory").unwrap();
    let batch = serde_json::json!({"batch": [
        {"type": "track", "userId": "u", "event": "kept", "messageId": "h1"},
        {"type": "track", "userId": "u", "event": "kept", "messageId": "h2"}]});
    let sent = api.send_batch(&server.keys.write_key, &batch).await;
    assert_eq!(sent.status(), StatusCode::OK);

    let unready = readiness_until(&api, |a| a.status == StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(unready.error_field(), "flush", "{:?}", unready.body);
    let message = unready.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("consecutive failures"), "{message}");
    let metrics = api.metrics_text().await;
    assert!(
        metrics.contains(r#"appizer_component_healthy{component="flush"} 0"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"appizer_component_healthy{component="pipeline"} 1"#));

    // The failure is mended: the next flush writes the events, nothing was lost.
    std::fs::remove_file(&blocker).unwrap();
    readiness_until(&api, |a| a.status == StatusCode::OK).await;
    common::settle(&server).await;
    let listed = api
        .get(
            &format!("/api/v1/projects/{project}/events?event=kept"),
            &server.keys.admin_key,
        )
        .await;
    assert_eq!(listed.body["events"].as_array().map(Vec::len), Some(2));
    assert!(blocker.is_dir(), "the flush wrote the project's directory");
    server.stop().await;
}

#[tokio::test]
async fn openapi_lists_every_management_route_and_is_valid() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let doc = api.get("/openapi.json", "").await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    for (method, path, _) in ACCESS_TABLE {
        let operation = &doc.body["paths"][path][method.as_str().to_ascii_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {path} missing from /openapi.json"
        );
        assert_eq!(
            operation["security"][0]["secret_key"],
            serde_json::json!([]),
            "{method} {path}"
        );
    }
    for (method, path) in SELF_AUTHENTICATED {
        let operation = &doc.body["paths"][path][method.as_str().to_ascii_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {path} missing from /openapi.json"
        );
        assert!(
            operation["security"].is_null(),
            "{method} {path} needs no key"
        );
    }
    let documented: usize = doc.body["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(p, _)| p.starts_with("/api/"))
        .map(|(_, ops)| ops.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        ACCESS_TABLE.len() + SELF_AUTHENTICATED.len(),
        "no undocumented or unlisted route"
    );

    // The document is checked by an independent OpenAPI validator (PyPI
    // `openapi-spec-validator`), in the Python that APPIZER_TEST_PYTHON names; `.ci/run`
    // provides it. Without it the check is skipped locally and fails under CI.
    let Some(python) = common::test_python() else {
        server.stop().await;
        return;
    };
    let file = server.data_dir().join("openapi.json");
    std::fs::write(&file, doc.body.to_string()).unwrap();
    common::run_python(
        &python,
        &[
            std::ffi::OsStr::new("-c"),
            "import json,sys; from openapi_spec_validator import validate; \
             validate(json.load(open(sys.argv[1]))); print('valid')"
                .as_ref(),
            file.as_os_str(),
        ],
        "the validator rejected /openapi.json",
    );
    server.stop().await;
}

#[tokio::test]
async fn https_with_a_self_signed_certificate_speaks_h2_and_http1() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, generated.cert.pem()).unwrap();
    std::fs::write(&key_path, generated.key_pair.serialize_pem()).unwrap();
    let server = TestServer::start_with(|c| {
        c.tls.cert_path = Some(cert_path.clone());
        c.tls.key_path = Some(key_path.clone());
    })
    .await;
    assert!(server.base_url.starts_with("https://localhost:"));

    let root = reqwest::Certificate::from_pem(generated.cert.pem().as_bytes()).unwrap();
    let client = |http1_only: bool| {
        let builder = reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .resolve("localhost", server.addr);
        if http1_only {
            builder.http1_only()
        } else {
            builder
        }
        .build()
        .unwrap()
    };
    let h2 = client(false)
        .get(server.url("/api/v1/projects"))
        .bearer_auth(&server.keys.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(h2.status(), StatusCode::OK);
    assert_eq!(h2.version(), reqwest::Version::HTTP_2, "h2 by ALPN");
    let h1 = client(true)
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (h1.status(), h1.version()),
        (StatusCode::OK, reqwest::Version::HTTP_11)
    );

    // Plain HTTP to the TLS port gets no HTTP answer; an untrusting client is refused.
    let plain = reqwest::get(format!("http://{}/healthz", server.addr)).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", server.addr)
        .build()
        .unwrap()
        .get(server.url("/healthz"))
        .send()
        .await;
    assert!(
        untrusting.is_err(),
        "the certificate is not trusted by default roots"
    );
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_refuses_new_ones() {
    let server = TestServer::start().await;
    let body = br#"{"name":"drained"}"#;
    let head = format!(
        "POST /api/v1/projects HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        server.keys.admin_key,
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Shutdown starts while the request is still arriving.
    server.shutdown_token().cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "the listener is closed at once"
    );
    stream.write_all(&body[5..]).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("the connection closes after the response")
        .unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
    assert!(text.contains("\"drained\""), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_cannot_hold_every_slot() {
    let server = TestServer::start_with(|c| {
        c.server.max_connections = 1;
        c.server.header_read_timeout_ms = 300;
    })
    .await;
    // An idle client takes the only slot and sends nothing.
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    let waiting = reqwest::get(server.url("/healthz"));
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once the idle connection timed out")
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "the second connection waited for the slot: {:?}",
        started.elapsed()
    );
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "the idle connection was closed by the server"
    );
    server.stop().await;
}
