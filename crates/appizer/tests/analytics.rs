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
    common::settle(server).await;
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
        // Errors of the query's own arithmetic and casts are the query's fault.
        ("sql", json!({"query": "SELECT 1/0 AS n"}), "query"),
        (
            "sql",
            json!({"query": "SELECT CAST('x' AS INT) AS n"}),
            "query",
        ),
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

    // Text built by SQL functions counts against the query's memory, before it is
    // built; an answer's rows are capped in bytes, not only in count.
    let sql = |query: &str| json!({ "query": query });
    let started = std::time::Instant::now();
    for query in [
        "SELECT length(repeat('x', 1500000000)) AS n",
        "SELECT length(repeat(repeat('x', 1000000), 2000)) AS n",
        "SELECT length(replace(repeat('x', 1000000), 'x', repeat('y', 2000))) AS n",
    ] {
        let a = api.post(&path("sql"), admin, sql(query)).await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {:?}",
            a.body
        );
        assert_eq!(a.error_code(), "query_limit_exceeded", "{query}");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "refused before the text was built: {:?}",
        started.elapsed()
    );
    let capped = TestServer::start_with(|c| c.analytics.sql_max_answer_bytes = 1 << 20).await;
    let capped_api = Client::new(&capped);
    let capped_sql = format!("/api/v1/projects/{}/query/sql", capped.keys.project_id);
    let capped_query =
        |query: &str| capped_api.post(&capped_sql, &capped.keys.admin_key, sql(query));
    let a = capped_query("SELECT repeat('x', 3000000) AS s").await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", a.body);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("analytics.sql_max_answer_bytes"),
        "{:?}",
        a.body
    );
    let a = capped_query("SELECT repeat('x', 300000) AS s").await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["rows"][0]["s"].as_str().map(str::len), Some(300_000));
    capped.stop().await;
    let a = api
        .post(
            &path("sql"),
            admin,
            sql("SELECT length(repeat('ab', 1000)) AS n"),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["rows"][0]["n"], 2000);

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

#[tokio::test]
async fn segments_and_metrics_are_saved_computed_and_listed() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;
    let project = server.keys.project_id.to_string();
    let base = format!("/api/v1/projects/{project}");
    let now = chrono::Utc::now().to_rfc3339();
    let batch: Vec<Value> = (0..5)
        .map(|i| {
            json!({"type": "identify", "userId": format!("user{i}"), "timestamp": now,
                   "traits": {"plan": if i < 3 { "pro" } else { "free" }}})
        })
        .chain((0..5).map(|i| {
            json!({"type": "track", "userId": format!("user{i}"), "event": "purchase",
                   "timestamp": now, "properties": {"amount": i}})
        }))
        .collect();
    send(&server, &api, batch).await;
    // Person properties reach the person store with the workers' next flush.
    let started = Instant::now();
    loop {
        let persons = api
            .get(&format!("{base}/persons?property.plan=pro"), admin)
            .await;
        if persons.body["persons"]
            .as_array()
            .is_some_and(|p| p.len() == 3)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            persons.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let pro = api
        .post(
            &format!("{base}/segments"),
            admin,
            json!({"name": "Pro buyers", "condition": {"type": "and", "conditions": [
                {"type": "property", "key": "plan", "value": "pro"},
                {"type": "performed", "event": "purchase", "days": 7}
            ]}}),
        )
        .await;
    assert_eq!(pro.status, StatusCode::CREATED, "{:?}", pro.body);
    assert_eq!(pro.body["member_count"], 3);
    let id = pro.body["id"].as_str().unwrap().to_string();
    let again = api
        .post(
            &format!("{base}/segments"),
            admin,
            json!({"name": "Pro buyers", "condition": {"type": "property", "key": "plan", "is_set": true}}),
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::BAD_REQUEST,
        "unknown field: {:?}",
        again.body
    );
    let again = api
        .post(
            &format!("{base}/segments"),
            admin,
            json!({"name": "Pro buyers", "condition": {"type": "property", "key": "plan", "operator": "is_set"}}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{:?}", again.body);

    // Members, two per page, and one membership check.
    let first = api
        .get(&format!("{base}/segments/{id}/persons?limit=2"), admin)
        .await;
    assert_eq!(first.body["persons"].as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = api
        .get(
            &format!("{base}/segments/{id}/persons?limit=2&cursor={cursor}"),
            admin,
        )
        .await;
    assert_eq!(second.body["persons"].as_array().unwrap().len(), 1);
    assert!(second.body.get("next_cursor").is_none());
    let member = first.body["persons"][0].as_str().unwrap();
    let check = api
        .get(&format!("{base}/segments/{id}/persons/{member}"), admin)
        .await;
    assert_eq!(check.body["member"], true);

    // A static segment from ids, one of them unknown.
    let listed = api
        .post(
            &format!("{base}/segments"),
            admin,
            json!({"name": "VIP", "kind": "static", "distinct_ids": ["user0", "user4", "nobody"]}),
        )
        .await;
    assert_eq!(listed.status, StatusCode::CREATED, "{:?}", listed.body);
    assert_eq!(listed.body["member_count"], 2);
    assert_eq!(listed.body["unknown_distinct_ids"], 1);
    // Those who bought and never came back for a refund, from a funnel.
    let dropped = api
        .post(
            &format!("{base}/segments"),
            admin,
            json!({"name": "No refund", "kind": "static", "funnel_dropped": {"step": 1, "funnel": {
                "steps": [{"event": "purchase"}, {"event": "refund"}], "date_range": {"from": "-1d"}
            }}}),
        )
        .await;
    assert_eq!(dropped.status, StatusCode::CREATED, "{:?}", dropped.body);
    assert_eq!(dropped.body["member_count"], 5);
    let bad_step = api
        .post(
            &format!("{base}/segments"),
            admin,
            json!({"name": "Step 0", "kind": "static", "funnel_dropped": {"step": 0, "funnel": {
                "steps": [{"event": "purchase"}, {"event": "refund"}]
            }}}),
        )
        .await;
    assert_eq!(
        bad_step.error_field(),
        "funnel_dropped.step",
        "{:?}",
        bad_step.body
    );
    // A segment whose members cannot be computed is not saved.
    let saved = api.get(&format!("{base}/segments"), admin).await;
    let names: Vec<&str> = saved.body["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"Step 0"), "{names:?}");
    let bad = api
        .post(
            &format!("{base}/segments"),
            admin,
            json!({"name": "Odd", "kind": "static", "condition": {"type": "property", "key": "plan", "value": "pro"}}),
        )
        .await;
    assert_eq!(bad.error_field(), "condition", "{:?}", bad.body);

    // Changing the condition recomputes; the segment filters queries.
    let changed = api
        .call(
            Method::PATCH,
            &format!("{base}/segments/{id}"),
            admin,
            Some(json!({"condition": {"type": "property", "key": "plan", "value": "free"}})),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    assert_eq!(changed.body["member_count"], 2);
    let trends = api
        .post(
            &format!("{base}/query/trends"),
            admin,
            json!({"series": [{"event": "purchase", "math": "sum", "math_property": "amount"}],
                   "interval": "hour", "date_range": {"from": "-1d"}, "segments": [id]}),
        )
        .await;
    assert_eq!(
        trends.body["results"][0]["aggregated"], 7.0,
        "{:?}",
        trends.body
    );

    // A metric, evaluated alone.
    let metric = api
        .post(
            &format!("{base}/metrics"),
            admin,
            json!({"name": "Revenue per buyer", "series": [
                {"event": "purchase", "math": "sum", "math_property": "amount"},
                {"event": "purchase", "math": "unique_persons"}
            ], "formula": "A / B"}),
        )
        .await;
    assert_eq!(metric.status, StatusCode::CREATED, "{:?}", metric.body);
    let metric_id = metric.body["id"].as_str().unwrap();
    let value = api
        .post(
            &format!("{base}/metrics/{metric_id}/evaluate"),
            admin,
            json!({"interval": "hour", "date_range": {"from": "-1d"}}),
        )
        .await;
    assert_eq!(value.status, StatusCode::OK, "{:?}", value.body);
    assert_eq!(
        value.body["results"][0]["aggregated"], 2.0,
        "(0+1+2+3+4)/5: {:?}",
        value.body
    );
    let no_formula = api
        .post(
            &format!("{base}/metrics"),
            admin,
            json!({"name": "Two", "series": [{"event": "a"}, {"event": "b"}]}),
        )
        .await;
    assert_eq!(no_formula.error_field(), "formula", "{:?}", no_formula.body);
    let listed = api.get(&format!("{base}/metrics"), admin).await;
    assert_eq!(listed.body["metrics"].as_array().unwrap().len(), 1);
    let gone = api
        .call(
            Method::DELETE,
            &format!("{base}/segments/{id}"),
            admin,
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let missing = api
        .get(&format!("{base}/segments/{id}/persons"), admin)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_trends_point_lists_the_persons_it_counts() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;
    let project = server.keys.project_id.to_string();
    let query = |kind: &str| format!("/api/v1/projects/{project}/query/{kind}");
    let today = chrono::Utc::now().date_naive();
    let (d1, d2) = (today - chrono::Days::new(3), today - chrono::Days::new(2));
    let at = |day: chrono::NaiveDate, minute: u32| format!("{day}T12:{minute:02}:00Z");
    let view = |user: &str, day, minute, plan: &str| {
        json!({"type": "track", "userId": user, "event": "view", "timestamp": at(day, minute),
               "properties": {"plan": plan}})
    };
    send(
        &server,
        &api,
        vec![
            view("u1", d1, 1, "pro"),
            view("u1", d1, 2, "pro"),
            view("u1", d1, 3, "pro"),
            view("u1", d2, 1, "pro"),
            view("u2", d1, 4, "free"),
            view("u3", d1, 5, "team"),
            view("u3", d1, 6, "team"),
            view("u4", d2, 2, "free"),
            json!({"type": "track", "userId": "u5", "event": "buy", "timestamp": at(d1, 7)}),
        ],
    )
    .await;
    let ids = api
        .post(
            &query("sql"),
            admin,
            json!({"query": "SELECT DISTINCT distinct_id, CAST(person_id AS VARCHAR) AS person_id FROM events"}),
        )
        .await;
    assert_eq!(ids.status, StatusCode::OK, "{:?}", ids.body);
    let person = |user: &str| -> String {
        ids.body["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["distinct_id"] == user)
            .map(|r| r["person_id"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{user} has no person: {:?}", ids.body))
    };
    let listed = |body: &Value| -> Vec<(String, u64)> {
        body["persons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["person_id"].as_str().unwrap().to_string(),
                    p["events"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let range = json!({"from": d1.to_string(), "to": d2.to_string()});
    let plain = json!({"series": [{"event": "view"}], "interval": "day", "date_range": range});
    let trends = api.post(&query("trends"), admin, plain.clone()).await;
    assert_eq!(trends.status, StatusCode::OK, "{:?}", trends.body);
    let buckets: Vec<String> = serde_json::from_value(trends.body["buckets"].clone()).unwrap();
    assert_eq!(buckets.len(), 2, "{:?}", trends.body);

    let point = api
        .post(
            &query("trends/persons"),
            admin,
            json!({"query": plain, "series": 0, "bucket": buckets[0]}),
        )
        .await;
    assert_eq!(point.status, StatusCode::OK, "{:?}", point.body);
    assert_eq!(point.body["total"], 3);
    assert_eq!(
        listed(&point.body),
        [(person("u1"), 3), (person("u3"), 2), (person("u2"), 1)]
    );
    let names: Vec<&str> = point.body["persons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["distinct_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["u1", "u3", "u2"]);
    let first = api
        .post(
            &query("trends/persons"),
            admin,
            json!({"query": plain, "series": 0, "bucket": buckets[1], "limit": 1}),
        )
        .await;
    assert_eq!(first.body["total"], 2, "{:?}", first.body);
    assert_eq!(listed(&first.body).len(), 1);

    // Broken down by plan with the top one kept: `pro` (4 views), the rest `$other`.
    // Each point's persons add up to the point's value in the answer.
    let broken = json!({"series": [{"event": "view"}], "interval": "day", "date_range": range,
                        "breakdown": {"key": "plan", "type": "event", "limit": 1}});
    let trends = api.post(&query("trends"), admin, broken.clone()).await;
    assert_eq!(trends.status, StatusCode::OK, "{:?}", trends.body);
    let rows = trends.body["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{:?}", trends.body);
    for row in rows {
        let value = row["breakdown_value"].as_str().unwrap();
        for (b, bucket) in buckets.iter().enumerate() {
            let point = api
                .post(
                    &query("trends/persons"),
                    admin,
                    json!({"query": broken, "series": 0, "bucket": bucket, "breakdown_value": value}),
                )
                .await;
            assert_eq!(point.status, StatusCode::OK, "{:?}", point.body);
            let events: u64 = listed(&point.body).iter().map(|(_, n)| n).sum();
            assert_eq!(
                events as f64,
                row["data"][b].as_f64().unwrap(),
                "{value} on {bucket}: {:?}",
                point.body
            );
        }
    }
    let other = api
        .post(
            &query("trends/persons"),
            admin,
            json!({"query": broken, "series": 0, "bucket": buckets[0], "breakdown_value": "$other"}),
        )
        .await;
    assert_eq!(listed(&other.body), [(person("u3"), 2), (person("u2"), 1)]);

    for (body, field) in [
        (
            json!({"query": plain, "series": 0, "bucket": "1999-01-01"}),
            "bucket",
        ),
        (
            json!({"query": plain, "series": 3, "bucket": buckets[0]}),
            "series",
        ),
        (
            json!({"query": broken, "series": 0, "bucket": buckets[0]}),
            "breakdown_value",
        ),
        (
            json!({"query": plain, "series": 0, "bucket": buckets[0], "limit": 0}),
            "limit",
        ),
    ] {
        let refused = api.post(&query("trends/persons"), admin, body).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            refused.body
        );
        assert_eq!(refused.body["error"]["field"], field, "{:?}", refused.body);
    }
}
