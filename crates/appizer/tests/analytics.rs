//! Analytics over real HTTP: events ingested through the Segment API (identity resolved
//! by the workers) are counted by the query routes at once, a merged person counts
//! once, malformed queries get 400 naming the field, a query past its time limit 422,
//! and SQL never sees another project. The numbers themselves are checked against a
//! brute-force oracle in `appizer-analytics/tests/oracle.rs`.

mod common;

use std::time::{Duration, Instant};

use appizer::testing::TestServer;
use common::Client;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn send(server: &TestServer, api: &Client, batch: Vec<Value>) {
    let a = api
        .http
        .post(format!("{}/v1/batch", server.base_url))
        .json(&json!({"writeKey": server.keys.write_key, "batch": batch}))
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), StatusCode::OK);
    let events = &server.state.events;
    let end = events.queue.stats().end;
    let started = Instant::now();
    while events.pipeline.processed_end() < end {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "workers did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn track(id: &str, event: &str, at: &str, props: Value) -> Value {
    json!({"type": "track", "anonymousId": id, "event": event, "timestamp": at, "properties": props})
}

#[tokio::test]
async fn queries_count_fresh_events_and_merged_persons_once() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;
    let project = server.keys.project_id.to_string();
    let query = |kind: &str| format!("/api/v1/projects/{project}/query/{kind}");
    let now = chrono::Utc::now();
    let at = |minutes: i64| (now - chrono::Duration::minutes(minutes)).to_rfc3339();

    // Two anonymous visitors; the first identifies, and the identify links its anonymous
    // id to the user's person. The second buys twice.
    send(
        &server,
        &api,
        vec![
            track("anon-1", "$pageview", &at(30), json!({"plan": "free"})),
            track("anon-2", "$pageview", &at(29), json!({"plan": "pro"})),
            json!({"type": "identify", "userId": "alice", "anonymousId": "anon-1", "timestamp": at(20)}),
            json!({"type": "track", "userId": "alice", "event": "purchase", "timestamp": at(10), "properties": {"amount": 30}}),
            track("anon-2", "purchase", &at(5), json!({"amount": 10})),
            track("anon-2", "purchase", &at(4), json!({"amount": 20})),
        ],
    )
    .await;

    let trends = api
        .post(
            &query("trends"),
            admin,
            json!({
                "series": [
                    {"event": "$pageview", "math": "unique_persons"},
                    {"event": "purchase", "math": "sum", "math_property": "amount"},
                    {"math": "unique_persons"}
                ],
                "interval": "hour",
                "date_range": {"from": "-1d"}
            }),
        )
        .await;
    assert_eq!(trends.status, StatusCode::OK, "{:?}", trends.body);
    let aggregated: Vec<f64> = trends.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["aggregated"].as_f64().unwrap())
        .collect();
    // Alice (anon-1 merged into her) and anon-2: two persons in all.
    assert_eq!(aggregated, [2.0, 60.0, 2.0], "{:#?}", trends.body);

    let funnel = api
        .post(
            &query("funnels"),
            admin,
            json!({
                "steps": [{"event": "$pageview"}, {"event": "purchase"}],
                "date_range": {"from": "-1d"},
                "persons_limit": 10
            }),
        )
        .await;
    assert_eq!(funnel.status, StatusCode::OK, "{:?}", funnel.body);
    let steps = &funnel.body["results"][0]["steps"];
    assert_eq!(steps[0]["count"], 2);
    assert_eq!(
        steps[1]["count"], 2,
        "alice's pageview was anonymous: {:#?}",
        funnel.body
    );
    assert_eq!(steps[1]["conversion_from_start"], 1.0);

    // An event acknowledged just now is counted at once.
    send(
        &server,
        &api,
        vec![track(
            "anon-3",
            "purchase",
            &now.to_rfc3339(),
            json!({"amount": 5}),
        )],
    )
    .await;
    let fresh = api
        .post(
            &query("trends"),
            admin,
            json!({"series": [{"event": "purchase"}], "interval": "hour", "date_range": {"from": "-1d"}}),
        )
        .await;
    assert_eq!(
        fresh.body["results"][0]["aggregated"], 4.0,
        "{:#?}",
        fresh.body
    );

    let sql = api
        .post(
            &query("sql"),
            admin,
            json!({"query": "SELECT count(DISTINCT person_id) AS persons, count(*) AS events FROM events"}),
        )
        .await;
    assert_eq!(sql.status, StatusCode::OK, "{:?}", sql.body);
    assert_eq!(sql.body["rows"][0]["events"], 7);
    assert_eq!(sql.body["rows"][0]["persons"], 3);

    // Another project of the organisation sees none of these events.
    let other = api.create_project(admin, "other").await;
    let empty = api
        .post(
            &format!("/api/v1/projects/{other}/query/sql"),
            admin,
            json!({"query": "SELECT count(*) AS n FROM events"}),
        )
        .await;
    assert_eq!(empty.body["rows"][0]["n"], 0, "{:?}", empty.body);
}

#[tokio::test]
async fn malformed_queries_name_the_field_and_limits_answer_422() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;
    let project = server.keys.project_id.to_string();
    let path = |kind: &str| format!("/api/v1/projects/{project}/query/{kind}");
    let cases = [
        ("trends", json!({"series": []}), "series"),
        (
            "trends",
            json!({"series": [{"event": "x", "math": "sum"}]}),
            "series[0].math_property",
        ),
        (
            "trends",
            json!({"series": [{"event": "x"}], "date_range": {"from": "last week"}}),
            "date_range.from",
        ),
        (
            "trends",
            json!({"series": [{"event": "x"}], "formula": "A / C"}),
            "formula",
        ),
        (
            "trends",
            json!({"series": [{"event": "x"}], "properties": [{"key": "n", "operator": "gt", "value": "many"}]}),
            "properties[0].value",
        ),
        (
            "trends",
            json!({"series": [{"event": "x"}], "interval": "minute", "date_range": {"from": "-1mo"}}),
            "interval",
        ),
        ("funnels", json!({"steps": [{"event": "a"}]}), "steps"),
        (
            "funnels",
            json!({"steps": [{"event": "a"}, {"event": "b"}], "exclusions": [{"event": "c", "from_step": 1, "to_step": 1}]}),
            "exclusions[0]",
        ),
        (
            "retention",
            json!({"start_event": {"event": "a"}, "return_event": {"event": "b"}, "periods": 0}),
            "periods",
        ),
        ("sql", json!({"query": "DROP TABLE events"}), "query"),
        ("sql", json!({"query": "SELECT nope FROM events"}), "query"),
        ("explain", json!({}), "sql"),
    ];
    for (kind, body, field) in cases {
        let a = api.post(&path(kind), admin, body.clone()).await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "{kind} {body}: {:?}",
            a.body
        );
        assert_eq!(a.error_field(), field, "{kind} {body}: {:?}", a.body);
    }
    // Unknown fields are refused by the JSON extractor.
    let a = api
        .post(
            &path("trends"),
            admin,
            json!({"series": [{"event": "x"}], "colour": "red"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{:?}", a.body);

    // With a 1 ms limit, 40 plans over a year of days (each reading the file catalog)
    // run out of time.
    let series: Vec<Value> = (0..20)
        .map(|_| json!({"math": "p99", "math_property": "amount"}))
        .collect();
    let hurried = TestServer::start_with(|c| c.analytics.query_timeout_ms = 1).await;
    let api = Client::new(&hurried);
    let path = format!("/api/v1/projects/{}/query/trends", hurried.keys.project_id);
    let a = api
        .call(
            Method::POST,
            &path,
            &hurried.keys.admin_key,
            Some(json!({"series": series, "date_range": {"from": "-365d"}, "compare": true})),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", a.body);
    assert_eq!(a.error_code(), "query_limit_exceeded");
}
