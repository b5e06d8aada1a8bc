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

/// A small deterministic generator (xorshift64*), so a failing query string is the same
/// on every run.
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

/// Names that the API's query-string parsers read (and some no parser knows).
const NAMES: &[&str] = &[
    "event",
    "distinct_id",
    "after",
    "before",
    "limit",
    "cursor",
    "property.plan",
    "property.",
    "property.%C3%A9",
    "search",
    "last",
    "suppress",
    "x",
    "",
    "%ZZ",
    "limit%00",
];

/// Values valid, out of range, multi-byte, badly escaped or not UTF-8 at all.
const VALUES: &[&str] = &[
    "",
    "0",
    "1",
    "-1",
    "60m",
    "24h",
    "25h",
    "1%C3%A9",
    "%C3%A9",
    "1%E2%82%AC",
    "%FF%FE",
    "%",
    "%%",
    "%E2%82",
    "m",
    "h",
    "9999999999999999999999m",
    "2026-11-25T10:00:00Z",
    "2026-13-45T99:00:00Z",
    "true",
    "false",
    "null",
    "1e99999",
    "%00",
    "%F0%9F%98%80h",
    "AAAA",
    "0189a7e4-0000-7000-8000-000000000000",
    "+",
    "%2B5m",
    "%20",
];

/// A query string of several names and values drawn from [`NAMES`] and [`VALUES`].
fn hostile_query(draw: &mut Draw) -> String {
    let pairs = 1 + draw.below(4);
    (0..pairs)
        .map(|_| match draw.below(6) {
            0 => draw.pick(NAMES).to_string(),
            1 => format!(
                "{}={}{}",
                draw.pick(NAMES),
                draw.pick(VALUES),
                draw.pick(VALUES)
            ),
            _ => format!("{}={}", draw.pick(NAMES), draw.pick(VALUES)),
        })
        .collect::<Vec<_>>()
        .join(if draw.below(8) == 0 { "&&" } else { "&" })
}

#[tokio::test]
async fn query_strings_of_any_shape_never_crash_a_handler() {
    use appizer_gateway::access::ACCESS_TABLE;
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;
    let project = server.keys.project_id.to_string();
    let some_id = "0189a7e4-0000-7000-8000-000000000000";
    let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
    let mut answered = 0;
    for (method, template, _) in ACCESS_TABLE {
        // Routes read query strings on GET and DELETE; deleting the project would end
        // the test, so it is left out.
        let reads_query = *method == Method::GET
            || (*method == Method::DELETE && template.contains("{person_id}"));
        if !reads_query {
            continue;
        }
        let path = template
            .replace("{project_id}", &project)
            .replace("{distinct_id}", "someone")
            .replace("{person_id}", some_id)
            .replace("{metric_id}", some_id)
            .replace("{segment_id}", some_id)
            .replace("{key_id}", some_id);
        // Every name with every value alone, then drawn combinations.
        let singles = NAMES
            .iter()
            .flat_map(|n| VALUES.iter().map(move |v| format!("{n}={v}")));
        let drawn: Vec<String> = (0..40).map(|_| hostile_query(&mut draw)).collect();
        for query in singles.chain(drawn) {
            let url = format!("{}{path}?{query}", api.base_url);
            let response = api
                .http
                .request(method.clone(), &url)
                .bearer_auth(admin)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}?{query}: no answer: {e}"));
            let status = response.status();
            let streaming = response
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            assert!(
                status.as_u16() < 500,
                "{method} {path}?{query}: {status} {:?}",
                if streaming {
                    String::new()
                } else {
                    response.text().await.unwrap_or_default()
                }
            );
            if !streaming && status.is_client_error() {
                let body: serde_json::Value = response.json().await.unwrap();
                assert!(body["error"]["code"].is_string(), "{path}?{query}: {body}");
            }
            answered += 1;
        }
    }
    assert!(
        answered >= 10 * NAMES.len() * VALUES.len(),
        "{answered} requests"
    );
    server.stop().await;
}

/// Reads one HTTP/1.1 answer with a `Content-Length` body from `stream`: its head and
/// its body.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> (String, String) {
    use tokio::io::AsyncReadExt;
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "the connection closed: {}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while data.len() < head_end + length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed mid-body");
        data.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&data[head_end..head_end + length]).to_string();
    (head, body)
}

#[tokio::test]
async fn a_refused_post_keeps_its_connection_and_ingestion_429s_carry_the_limit() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start_with(|c| {
        c.rate_limit.api_per_second = 1;
        c.rate_limit.api_burst = 1;
        c.rate_limit.ingest_per_second = 1;
        c.rate_limit.ingest_burst = 1;
    })
    .await;
    let admin = &server.keys.admin_key;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // A body that does not arrive with its headers: the server must read it to answer
    // the next request on the connection.
    let body = format!(r#"{{"name":"p","padding":"{}"}}"#, "x".repeat(64 * 1024));
    let post_head = format!(
        "POST /api/v1/projects HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {admin}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let get = format!(
        "GET /api/v1/projects HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {admin}\r\n\r\n"
    );
    // The first request spends the one token; the next two are refused, on one
    // connection.
    let mut statuses = Vec::new();
    for (head, body) in [(&get, ""), (&post_head, body.as_str()), (&get, "")] {
        stream.write_all(head.as_bytes()).await.unwrap();
        if !body.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            stream.write_all(body.as_bytes()).await.unwrap();
        }
        let (head, body) = read_answer(&mut stream).await;
        statuses.push(head[9..12].to_string());
        assert!(!head.contains("connection: close"), "{head}");
        if head.starts_with("http/1.1 429") {
            assert!(head.contains("x-ratelimit-limit: 1"), "{head}");
            assert!(head.contains("retry-after: "), "{head}");
            assert!(body.contains("rate_limited"), "{body}");
        }
    }
    assert_eq!(statuses, ["200", "429", "429"]);

    let api = Client::new(&server);
    let batch = json!({"batch": [{"type": "track", "event": "e", "userId": "u"}]});
    let accepted = api.send_batch(&server.keys.write_key, &batch).await;
    assert_eq!(accepted.status(), StatusCode::OK);
    assert_eq!(accepted.headers()["x-ratelimit-limit"], "1");
    let refused = api.send_batch(&server.keys.write_key, &batch).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    for header in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "retry-after",
    ] {
        assert!(
            refused.headers().contains_key(header),
            "{header}: {:?}",
            refused.headers()
        );
    }
    assert_eq!(refused.headers()["x-ratelimit-remaining"], "0");
    server.stop().await;
}
