//! The gateway's guards over real HTTP: per-key rate limits, body limits, malformed
//! input, unknown routes, request ids. Bad input never writes anything.

mod common;

use appizer::testing::TestServer;
use common::Client;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn past_its_rate_a_key_gets_429_and_other_keys_are_unaffected() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;
    let project = server.keys.project_id.to_string();
    let (_, limited) = api.create_key(admin, &project, "viewer").await;
    let (_, other) = api.create_key(admin, &project, "viewer").await;
    let patched = api
        .call(
            Method::PATCH,
            &format!("/api/v1/projects/{project}"),
            admin,
            Some(json!({"rate_limit": {"api_per_second": 1, "api_burst": 3}})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);

    let path = format!("/api/v1/projects/{project}");
    for remaining in (0..3).rev() {
        let ok = api.get(&path, &limited).await;
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(ok.headers["x-ratelimit-limit"], "3");
        assert_eq!(
            ok.headers["x-ratelimit-remaining"],
            remaining.to_string().as_str()
        );
    }
    let refused = api.get(&path, &limited).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.error_code(), "rate_limited");
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(refused.headers["x-ratelimit-remaining"], "0");
    assert!(refused.headers.contains_key("x-ratelimit-reset"));

    // Another key of the same project has its own bucket.
    assert_eq!(api.get(&path, &other).await.status, StatusCode::OK);

    // Removing the override returns the key to the server default at once.
    let reset = api
        .call(
            Method::PATCH,
            &path,
            admin,
            Some(json!({"rate_limit": {"api_per_second": null, "api_burst": null}})),
        )
        .await;
    assert_eq!(reset.body["rate_limit"], json!({}));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(api.get(&path, &limited).await.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn the_server_default_rate_applies_without_an_override() {
    let server = TestServer::start_with(|c| {
        c.rate_limit.api_per_second = 1;
        c.rate_limit.api_burst = 2;
    })
    .await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;
    assert_eq!(
        api.get("/api/v1/projects", admin).await.status,
        StatusCode::OK
    );
    assert_eq!(
        api.get("/api/v1/projects", admin).await.status,
        StatusCode::OK
    );
    let refused = api.get("/api/v1/projects", admin).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers.contains_key("retry-after"));
    server.stop().await;
}

/// The number of keys and audit entries of the default project: bad requests must not
/// change it.
async fn written_state(api: &Client, admin: &str, project: &str) -> (usize, usize) {
    let keys = api
        .get(&format!("/api/v1/projects/{project}/keys"), admin)
        .await;
    let log = api
        .get(
            &format!("/api/v1/projects/{project}/audit-log?limit=500"),
            admin,
        )
        .await;
    (
        keys.body["keys"].as_array().unwrap().len(),
        log.body["entries"].as_array().unwrap().len(),
    )
}

#[tokio::test]
async fn bad_bodies_get_400_or_413_naming_the_problem_and_write_nothing() {
    let server = TestServer::start_with(|c| c.server.max_body_bytes = 4096).await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;
    let project = server.keys.project_id.to_string();
    let keys_path = server.url(&format!("/api/v1/projects/{project}/keys"));
    let before = written_state(&api, admin, &project).await;

    let send = |body: Vec<u8>, content_type: &'static str| {
        api.http
            .post(&keys_path)
            .bearer_auth(admin)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases: Vec<(Vec<u8>, &str, StatusCode, &str, &str)> = vec![
        (
            b"{\"name\":".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "body",
        ),
        (
            b"[1,2]".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "body",
        ),
        (
            br#"{"name":5,"role":"viewer"}"#.to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "name",
        ),
        (
            br#"{"name":"x","role":"root"}"#.to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "role",
        ),
        (
            br#"{"name":"x","role":"viewer","colour":1}"#.to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "colour",
        ),
        (
            br#"{"name":"   ","role":"viewer"}"#.to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "name",
        ),
        (
            format!(r#"{{"name":"{}","role":"viewer"}}"#, "n".repeat(201)).into_bytes(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "name",
        ),
        (
            vec![0xff, 0xfe, 0x00],
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "body",
        ),
        (
            br#"{"name":"x","role":"viewer"}"#.to_vec(),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type",
        ),
        (
            format!(r#"{{"name":"{}","role":"viewer"}}"#, "n".repeat(5000)).into_bytes(),
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "body",
        ),
    ];
    for (body, content_type, status, code, field) in cases {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(60)
            .collect::<String>();
        let answer = Client::answer(send(body, content_type).await.unwrap()).await;
        assert_eq!(answer.status, status, "{shown}: {:?}", answer.body);
        assert_eq!(answer.error_code(), code, "{shown}");
        assert_eq!(answer.error_field(), field, "{shown}");
        assert!(!answer.body["error"]["message"].as_str().unwrap().is_empty());
    }

    // An over-size body sent chunked (no Content-Length) is refused as well.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b' '; 1000])).collect();
    let streamed = api
        .http
        .post(&keys_path)
        .bearer_auth(admin)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let patch = api
        .call(
            Method::PATCH,
            &format!("/api/v1/projects/{project}"),
            admin,
            Some(json!({"timezone": "Mars/Base", "name": "changed"})),
        )
        .await;
    assert_eq!(
        (patch.status, patch.error_field()),
        (StatusCode::BAD_REQUEST, "timezone")
    );
    let patch = api
        .call(
            Method::PATCH,
            &format!("/api/v1/projects/{project}"),
            admin,
            Some(json!({"rate_limit": {"api_burst": 0}})),
        )
        .await;
    assert_eq!(patch.error_field(), "rate_limit.api_burst");

    assert_eq!(
        written_state(&api, admin, &project).await,
        before,
        "nothing was written"
    );
    let project_now = api.get(&format!("/api/v1/projects/{project}"), admin).await;
    assert_eq!(project_now.body["name"], "Default project");
    assert_eq!(project_now.body["timezone"], "UTC");
    server.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_with_a_request_id() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;
    let missing = api.get("/api/v1/nothing", admin).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "not_found");
    let id = missing.headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    let wrong = api.call(Method::PUT, "/api/v1/projects", admin, None).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.error_code(), "method_not_allowed");

    // A caller's sane request id is kept; an unsafe one is replaced.
    let kept = api
        .http
        .get(server.url("/healthz"))
        .header("x-request-id", "trace-abc_1")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "trace-abc_1");
    let replaced = api
        .http
        .get(server.url("/healthz"))
        .header("x-request-id", "bad id <script>")
        .send()
        .await
        .unwrap();
    assert_ne!(replaced.headers()["x-request-id"], "bad id <script>");
    server.stop().await;
}
