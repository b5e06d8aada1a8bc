//! Event ingestion over real HTTP: both dialects, encodings, validation with ingestion
//! warnings, deduplication, visibility through the API, the live stream, counters, and
//! durability across a restart.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use appizer::testing::TestServer;
use base64::Engine;
use common::{Answer, Client};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Polls the event listing until `want` events match `query` (within 1 s, the promise).
async fn events_within_a_second(
    api: &Client,
    server: &TestServer,
    query: &str,
    want: usize,
) -> Vec<Value> {
    let started = Instant::now();
    let path = format!(
        "/api/v1/projects/{}/events?limit=1000{query}",
        server.keys.project_id
    );
    loop {
        let page = api.get(&path, &server.keys.admin_key).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        let events = page.body["events"].as_array().unwrap().clone();
        if events.len() >= want {
            assert_eq!(events.len(), want, "{events:#?}");
            return events;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "only {} of {want} events visible after 1 s",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post_raw(api: &Client, url: String, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
    let mut request = api.http.post(url).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Client::answer(request.send().await.unwrap()).await
}

#[tokio::test]
async fn segment_batches_are_stored_enriched_and_listed() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let key = &server.keys.write_key;
    let body = json!({
        "batch": [
            {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m1",
             "properties": {"total": 42.5, "currency": "EUR"},
             "timestamp": "2026-11-25T09:59:50Z",
             "context": {"userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0"}},
            {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "messageId": "m2"},
            {"type": "page", "anonymousId": "a1", "name": "Home", "messageId": "m3"}
        ],
        "sentAt": "2026-11-25T10:00:00Z",
        "context": {"library": {"name": "test"}}
    });
    let answer = Client::answer(
        api.http
            .post(server.url("/v1/batch"))
            .basic_auth(key, Some(""))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body, json!({"success": true}));

    let events = events_within_a_second(&api, &server, "", 3).await;
    let order = events.iter().find(|e| e["message_id"] == "m1").unwrap();
    assert_eq!(order["event"], "Order Completed");
    assert_eq!(order["distinct_id"], "u1");
    assert_eq!(
        order["properties"],
        json!({"total": 42.5, "currency": "EUR"})
    );
    assert_eq!(
        order["context"]["library"]["name"], "test",
        "batch context applies"
    );
    assert_eq!(
        order["context"]["browser"]["name"], "Firefox",
        "enriched from the user agent"
    );
    assert_eq!(order["ip"], "127.0.0.1");
    // Skew-corrected: 10 s before the request was received.
    let ts = chrono::DateTime::parse_from_rfc3339(order["timestamp"].as_str().unwrap()).unwrap();
    let received =
        chrono::DateTime::parse_from_rfc3339(order["received_at"].as_str().unwrap()).unwrap();
    assert_eq!((received - ts).num_seconds(), 10);
    assert_eq!(order["original_timestamp"], "2026-11-25T09:59:50Z");

    // Filters.
    let identify = events_within_a_second(&api, &server, "&event=%24identify", 1).await;
    assert_eq!(identify[0]["traits"], json!({"plan": "pro"}));
    events_within_a_second(&api, &server, "&property.currency=EUR", 1).await;
    events_within_a_second(&api, &server, "&distinct_id=a1", 1).await;

    // Single-message route with the key in the body.
    let single = post_raw(
        &api,
        server.url("/v1/track"),
        serde_json::to_vec(&json!({"writeKey": key, "userId": "u2", "event": "Clicked"})).unwrap(),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(single.status, StatusCode::OK);
    events_within_a_second(&api, &server, "&event=Clicked", 1).await;
    server.stop().await;
}

#[tokio::test]
async fn posthog_requests_in_every_encoding_are_accepted() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let key = server.keys.write_key.clone();
    let event = |name: &str, uuid: &str| json!({"event": name, "distinct_id": "ph-1", "uuid": uuid, "properties": {"$current_url": "https://x.test/"}});

    let plain = json!({"api_key": key, "batch": [event("a", "u-a")]});
    let answer = post_raw(
        &api,
        server.url("/batch/"),
        serde_json::to_vec(&plain).unwrap(),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(
        (answer.status, answer.body.clone()),
        (StatusCode::OK, json!({"status": 1}))
    );

    let gzipped = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(
            &serde_json::to_vec(&json!({"api_key": key, "batch": [event("b", "u-b")]})).unwrap(),
        )
        .unwrap();
        e.finish().unwrap()
    };
    let answer = post_raw(
        &api,
        server.url("/batch"),
        gzipped.clone(),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = post_raw(&api, server.url("/e/?compression=gzip-js"), gzipped, &[]).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "gzip by flag (a duplicate of b, dropped later)"
    );

    let array =
        json!([{"event": "c", "properties": {"token": key, "distinct_id": "ph-1"}, "uuid": "u-c"}]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&array).unwrap());
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("data", &b64)
        .finish();
    let answer = post_raw(
        &api,
        server.url("/i/v0/e/"),
        form.into_bytes(),
        &[("content-type", "application/x-www-form-urlencoded")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);

    let lz = lz_str::compress_to_base64(
        &serde_json::to_string(
            &json!({"api_key": key, "event": "d", "distinct_id": "ph-1", "uuid": "u-d"}),
        )
        .unwrap(),
    );
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("data", &lz)
        .append_pair("compression", "lz64")
        .finish();
    let answer = post_raw(
        &api,
        server.url("/capture"),
        form.into_bytes(),
        &[("content-type", "application/x-www-form-urlencoded")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);

    let get_data = base64::engine::general_purpose::STANDARD.encode(
        serde_json::to_vec(
            &json!({"api_key": key, "event": "e", "distinct_id": "ph-1", "uuid": "u-e"}),
        )
        .unwrap(),
    );
    let get = api
        .http
        .get(server.url(&format!("/e?data={}", urlencode(&get_data))))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::OK);

    let events = events_within_a_second(&api, &server, "&distinct_id=ph-1", 5).await;
    let mut names: Vec<_> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["a", "b", "c", "d", "e"],
        "each once: the repeated uuid was dropped"
    );
    server.stop().await;
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn bad_requests_are_refused_and_bad_messages_become_warnings() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let key = &server.keys.write_key;
    let project = server.keys.project_id;

    let no_key = post_raw(
        &api,
        server.url("/v1/batch"),
        br#"{"batch":[]}"#.to_vec(),
        &[],
    )
    .await;
    assert_eq!(
        (no_key.status, no_key.error_field()),
        (StatusCode::UNAUTHORIZED, "writeKey")
    );
    let secret = Client::answer(
        api.http
            .post(server.url("/v1/batch"))
            .basic_auth(&server.keys.admin_key, Some(""))
            .body(r#"{"batch":[]}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        secret.status,
        StatusCode::FORBIDDEN,
        "secret keys do not ingest"
    );
    let malformed = Client::answer(
        api.http
            .post(server.url("/v1/batch"))
            .basic_auth(key, Some(""))
            .body("{")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (malformed.status, malformed.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    // A body in an encoding the server does not decode is 415, not "invalid JSON".
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    );
    let authorized = [("authorization", basic.as_str())];
    let brotli = post_raw(
        &api,
        server.url("/v1/batch"),
        vec![0x1b, 0x2f, 0x00, 0x00],
        &[authorized[0], ("content-encoding", "br")],
    )
    .await;
    assert_eq!(
        (brotli.status, brotli.error_code(), brotli.error_field()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Encoding"
        )
    );
    // Valid JSON that is no object is refused whatever its shape.
    for root in ["[[1]]", "[1,2,3]"] {
        for route in ["/v1/batch", "/v1/track"] {
            let refused = post_raw(&api, server.url(route), root.into(), &authorized).await;
            assert_eq!(
                (refused.status, refused.error_code(), refused.error_field()),
                (StatusCode::BAD_REQUEST, "validation_failed", "body"),
                "{route} {root}"
            );
        }
    }
    let huge = format!(
        r#"{{"batch":[{{"type":"track","userId":"u","event":"e","properties":{{"x":"{}"}}}}]}}"#,
        "y".repeat(600_000)
    );
    let too_big = Client::answer(
        api.http
            .post(server.url("/v1/batch"))
            .basic_auth(key, Some(""))
            .body(huge)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);

    let mixed = json!({"batch": [
        {"type": "track", "userId": "u", "event": "kept", "messageId": "ok-1"},
        {"type": "track", "event": "no user", "messageId": "bad-1"},
        {"type": "track", "userId": "u", "messageId": "bad-2"},
        {"type": "track", "userId": "u", "event": "e", "timestamp": "someday", "messageId": "bad-3"}
    ]});
    let answer = Client::answer(
        api.http
            .post(server.url("/v1/batch"))
            .basic_auth(key, Some(""))
            .json(&mixed)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "the valid rest is accepted");
    events_within_a_second(&api, &server, "", 1).await;

    let started = Instant::now();
    let warnings = loop {
        let page = api
            .get(
                &format!("/api/v1/projects/{project}/ingestion-warnings"),
                &server.keys.admin_key,
            )
            .await;
        let list = page.body["warnings"].as_array().unwrap().clone();
        if list.len() >= 3 || started.elapsed() > Duration::from_secs(2) {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut seen: Vec<_> = warnings
        .iter()
        .map(|w| {
            (
                w["message_id"].as_str().unwrap().to_string(),
                w["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("bad-1".into(), "userId".into()),
            ("bad-2".into(), "event".into()),
            ("bad-3".into(), "timestamp".into())
        ]
    );
    assert_eq!(warnings[0]["dialect"], "segment");
    server.stop().await;
}

#[tokio::test]
async fn live_stream_and_counters_see_events_at_once() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let project = server.keys.project_id;
    let mut live = api
        .http
        .get(server.url(&format!(
            "/api/v1/projects/{project}/events/live?event=Signed%20Up"
        )))
        .bearer_auth(&server.keys.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.headers()["content-type"], "text/event-stream");

    let body = json!({"batch": [
        {"type": "track", "userId": "u", "event": "Clicked", "messageId": "c1"},
        {"type": "track", "userId": "u", "event": "Signed Up", "messageId": "s1"},
        {"type": "track", "userId": "v", "event": "Signed Up", "messageId": "s2"}
    ]});
    let sent = Instant::now();
    let answer = api.send_batch(&server.keys.write_key, &body).await;
    assert_eq!(answer.status(), StatusCode::OK);

    let mut text = String::new();
    while text.matches("event: event").count() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(1), live.chunk())
            .await
            .expect("live events within a second")
            .unwrap()
            .expect("stream open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(sent.elapsed() < Duration::from_secs(1));
    assert!(
        text.contains(r#""message_id":"s1""#) && text.contains(r#""message_id":"s2""#),
        "{text}"
    );
    assert!(
        !text.contains(r#""message_id":"c1""#),
        "filtered by event name"
    );

    let counts = api
        .get(
            &format!("/api/v1/projects/{project}/events/counts?last=60m"),
            &server.keys.admin_key,
        )
        .await;
    assert_eq!(counts.status, StatusCode::OK);
    assert_eq!(counts.body["events"]["Signed Up"]["total"], 2);
    assert_eq!(counts.body["events"]["Clicked"]["total"], 1);
    let bad = api
        .get(
            &format!("/api/v1/projects/{project}/events/counts?last=3d"),
            &server.keys.admin_key,
        )
        .await;
    assert_eq!(
        (bad.status, bad.error_field()),
        (StatusCode::BAD_REQUEST, "last")
    );
    // Shutdown ends live streams instead of waiting out the grace period.
    let stopping = std::time::Instant::now();
    server.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(1),
        "{:?}",
        stopping.elapsed()
    );
    let rest = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(Some(_)) = live.chunk().await {}
    })
    .await;
    assert!(rest.is_ok(), "the stream ended");
}

#[tokio::test]
async fn values_json_numbers_and_strings_cannot_hold_stay_readable() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let key = &server.keys.write_key;
    // Well-formed JSON, but no f64 holds 1e99999 and \ud800 has no pair.
    let body = format!(
        r#"{{"writeKey":"{key}","batch":[
            {{"type":"track","userId":"odd","event":"e","properties":{{"big":1e99999,"lone":"a\ud800b","ok":2}},
              "context":{{"locale":"\ud800"}}}},
            {{"type":"identify","userId":"odd","traits":{{"score":-1e400,"name":"\udfff"}}}}]}}"#
    );
    let a = post_raw(&api, server.url("/v1/batch"), body.into_bytes(), &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let events = events_within_a_second(&api, &server, "&event=e", 1).await;
    assert_eq!(
        events[0]["properties"],
        json!({"big": "1e99999", "lone": "a\u{fffd}b", "ok": 2})
    );
    assert_eq!(events[0]["context"]["locale"], "\u{fffd}");
    common::settle(&server).await;
    let person = api
        .get(
            &format!(
                "/api/v1/projects/{}/distinct-ids/odd",
                server.keys.project_id
            ),
            &server.keys.admin_key,
        )
        .await;
    assert_eq!(person.status, StatusCode::OK, "{:?}", person.body);
    assert_eq!(person.body["properties"]["score"], "-1e400");
    assert_eq!(person.body["properties"]["name"], "\u{fffd}");
    server.stop().await;
}

/// Reads a live stream until it ends (or `within` passes); returns what it sent.
async fn read_to_end(live: &mut reqwest::Response, within: Duration) -> String {
    let mut text = String::new();
    let ended = tokio::time::timeout(within, async {
        while let Ok(Some(chunk)) = live.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stream did not end within {within:?}: {text}"
    );
    text
}

#[tokio::test]
async fn a_live_stream_ends_when_its_key_is_revoked_and_at_its_lifetime() {
    let server = TestServer::start_with(|c| c.auth.key_cache_ttl_ms = 300).await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;
    let project = server.keys.project_id.to_string();
    let (key_id, viewer) = api.create_key(admin, &project, "viewer").await;
    let url = server.url(&format!("/api/v1/projects/{project}/events/live"));
    let mut live = api
        .http
        .get(&url)
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let revoked = api
        .call(
            Method::DELETE,
            &format!("/api/v1/projects/{project}/keys/{key_id}"),
            admin,
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{:?}", revoked.body);
    let text = read_to_end(&mut live, Duration::from_secs(3)).await;
    assert!(
        text.contains("event: closed") && text.contains("revoked"),
        "{text}"
    );
    server.stop().await;

    let short = TestServer::start_with(|c| c.server.max_stream_secs = 1).await;
    let api = Client::new(&short);
    let url = short.url(&format!(
        "/api/v1/projects/{}/events/live",
        short.keys.project_id
    ));
    let opened = Instant::now();
    let mut live = api
        .http
        .get(&url)
        .bearer_auth(&short.keys.admin_key)
        .send()
        .await
        .unwrap();
    let text = read_to_end(&mut live, Duration::from_secs(4)).await;
    assert!(text.contains("max_stream_secs"), "{text}");
    assert!(
        opened.elapsed() >= Duration::from_millis(900),
        "{:?}",
        opened.elapsed()
    );
    short.stop().await;
}

#[tokio::test]
async fn accepted_events_survive_a_restart_as_parquet_and_duplicates_stay_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let server = TestServer::start_with(|c| c.data_dir = data.clone()).await;
    let api = Client::new(&server);
    let batch = json!({"batch": (0..50).map(|i| json!({"type": "track", "userId": format!("u{i}"), "event": "e", "messageId": format!("m{i}")})).collect::<Vec<_>>()});
    let answer = api
        .http
        .post(server.url("/v1/batch"))
        .basic_auth(&server.keys.write_key, Some(""))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    events_within_a_second(&api, &server, "", 50).await;
    let (keys, project) = (server.keys.clone(), server.keys.project_id);
    server.stop().await;

    let files: Vec<_> = walk(&data.join("events"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert!(!files.is_empty(), "flushed to Parquet on shutdown");
    assert!(files.iter().all(|p| p
        .display()
        .to_string()
        .contains(&format!("project={project}/date="))));

    // Same data dir again: the store already holds its keys; the events are there, and
    // a client retrying the same batch does not duplicate them.
    let again = TestServer::restart(&data, keys.clone()).await;
    let api = Client::new(&again);
    let counts = format!("/api/v1/projects/{project}/events/counts?last=60m");
    // The real-time counts are rebuilt from the files at start.
    let counted = api.get(&counts, &keys.admin_key).await;
    assert_eq!(counted.body["events"]["e"]["total"], 50);
    let answer = api
        .http
        .post(again.url("/v1/batch"))
        .basic_auth(&keys.write_key, Some(""))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let page = api
        .get(
            &format!("/api/v1/projects/{project}/events?limit=1000"),
            &keys.admin_key,
        )
        .await;
    assert_eq!(page.body["events"].as_array().unwrap().len(), 50);
    let counted = api.get(&counts, &keys.admin_key).await;
    assert_eq!(
        counted.body["events"]["e"]["total"], 50,
        "the retry is not counted"
    );
    again.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn location_comes_from_the_client_ip_with_a_geoip_database() {
    // The database is written by PyPI `mmdb-writer`, in the Python of the test tools.
    let Some(python) = common::test_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("city.mmdb");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/build_mmdb.py");
    common::run_python(
        &python,
        &[std::ffi::OsStr::new(script), database.as_os_str()],
        "building the test location database",
    );
    let server = TestServer::start_with(|c| c.ingest.geoip_database = Some(database.clone())).await;
    let api = Client::new(&server);
    let body = json!({"batch": [
        {"type": "track", "userId": "fr", "event": "e", "messageId": "g1", "context": {"ip": "203.0.113.7"}},
        {"type": "track", "userId": "us", "event": "e", "messageId": "g2", "context": {"ip": "198.51.100.20"}},
        {"type": "track", "userId": "own", "event": "e", "messageId": "g3",
         "context": {"ip": "203.0.113.7", "location": {"city": "Lyon"}}},
        {"type": "track", "userId": "local", "event": "e", "messageId": "g4"}
    ]});
    let answer = api
        .http
        .post(server.url("/v1/batch"))
        .basic_auth(&server.keys.write_key, Some(""))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let events = events_within_a_second(&api, &server, "", 4).await;
    let location = |id: &str| {
        events.iter().find(|e| e["message_id"] == id).unwrap()["context"]["location"].clone()
    };
    assert_eq!(
        location("g1"),
        json!({"city": "Paris", "country": "France", "country_code": "FR", "region": "Ile-de-France", "region_code": "IDF"})
    );
    assert_eq!(location("g2")["city"], "Austin");
    assert_eq!(location("g2")["country_code"], "US");
    assert_eq!(
        location("g3"),
        json!({"city": "Lyon"}),
        "the client's own location is kept"
    );
    assert_eq!(location("g4"), Value::Null, "127.0.0.1 is in no database");
    server.stop().await;

    // A configured database that cannot be read stops the start with a clear error.
    let mut config = appizer_core::config::Config::for_tests();
    config.data_dir = dir.path().join("data");
    config.ingest.geoip_database = Some(dir.path().join("missing.mmdb"));
    let store = appizer::open_store(&config).await.unwrap();
    let err = appizer::App::open(config, store)
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("missing.mmdb"), "{err:#}");
}

#[tokio::test]
async fn with_the_queue_on_jetstream_a_request_larger_than_a_message_lands_whole() {
    let Some(url) = common::nats_url() else {
        return;
    };
    let stream = common::test_stream();
    let server = TestServer::start_with(|c| {
        c.ingest.queue_url = appizer_core::secret::SecretString::new(url.as_str());
        c.ingest.nats.stream = stream.clone();
        // Larger than a JetStream message (1 MB by default), so it goes as several.
        c.ingest.max_body_bytes = 4 << 20;
    })
    .await;
    let api = Client::new(&server);
    let ready = api.get("/readyz", "").await;
    assert_eq!(ready.status, StatusCode::OK, "{:?}", ready.body);

    let padding = "x".repeat(1_000);
    let batch: Vec<Value> = (0..2_000)
        .map(|i| {
            json!({"type": "track", "event": "Big", "userId": format!("u{i}"),
                        "messageId": format!("big-{i}"), "properties": {"i": i, "pad": padding}})
        })
        .collect();
    let answer = Client::answer(
        api.http
            .post(server.url("/v1/batch"))
            .basic_auth(&server.keys.write_key, Some(""))
            .json(&json!({ "batch": batch }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);

    // Every event once, in full, read back through the API.
    let mut seen = std::collections::BTreeSet::new();
    let started = Instant::now();
    while seen.len() < 2_000 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} of 2000 events visible",
            seen.len()
        );
        seen.clear();
        let mut cursor = String::new();
        loop {
            let page = api
                .get(
                    &format!(
                        "/api/v1/projects/{}/events?limit=1000&event=Big{cursor}",
                        server.keys.project_id
                    ),
                    &server.keys.admin_key,
                )
                .await;
            for e in page.body["events"].as_array().unwrap() {
                assert_eq!(e["properties"]["pad"], padding.as_str());
                assert!(seen.insert(e["message_id"].as_str().unwrap().to_string()));
            }
            match page.body["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;

    // The request went through the stream as several records, all committed on stop.
    use appizer_storage::queue::{EventQueue, NatsConfig, NatsQueue};
    let queue = NatsQueue::open(NatsConfig::new(&url, &stream))
        .await
        .unwrap();
    let stats = queue.stats();
    assert!(stats.end >= 3, "{stats:?}");
    assert_eq!(stats.committed, stats.end);
    queue.delete().await.unwrap();
}
