//! Saved insights and dashboards through real HTTP: the overview a project starts with
//! (each of its insights runs through its query route), saving and changing insights,
//! dashboards of them with their checks, and a tile whose insight was deleted.

mod common;

use appizer::testing::TestServer;
use common::Client;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Runs a saved insight's query through the public route of its kind.
async fn run(api: &Client, key: &str, project: &str, insight: &Value) -> (StatusCode, Value) {
    let mut query = insight["query"].clone();
    let kind = query["kind"].as_str().unwrap().to_string();
    query.as_object_mut().unwrap().remove("kind");
    let answer = match kind.as_str() {
        "live_count" => {
            let minutes = query["minutes"].as_u64().unwrap();
            api.get(
                &format!("/api/v1/projects/{project}/events/counts?last={minutes}m"),
                key,
            )
            .await
        }
        kind => {
            api.post(
                &format!("/api/v1/projects/{project}/query/{kind}"),
                key,
                query,
            )
            .await
        }
    };
    (answer.status, answer.body)
}

#[tokio::test]
async fn a_new_project_starts_with_an_overview_whose_insights_all_run() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;
    let first = server.keys.project_id.to_string();
    let made = api
        .post("/api/v1/projects", admin, json!({"name": "Second"}))
        .await;
    let second = made.body["project"]["id"].as_str().unwrap().to_string();
    // Events so the overview's numbers are not all zero.
    let batch: Vec<Value> = (0..6)
        .map(|i| json!({"type": "track", "userId": format!("u{}", i % 3), "event": if i % 2 == 0 { "signup" } else { "view" }}))
        .collect();
    api.send_batch(&server.keys.write_key, &json!({"batch": batch}))
        .await;
    for project in [&first, &second] {
        let list = api
            .get(&format!("/api/v1/projects/{project}/dashboards"), admin)
            .await;
        assert_eq!(list.status, StatusCode::OK);
        assert_eq!(list.body["dashboards"][0]["name"], "Overview");
        assert_eq!(list.body["dashboards"][0]["tiles"], 4);
        let id = list.body["dashboards"][0]["id"].as_str().unwrap();
        let dashboard = api
            .get(
                &format!("/api/v1/projects/{project}/dashboards/{id}"),
                admin,
            )
            .await;
        let names: Vec<&str> = dashboard.body["tiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["insight"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Events per day",
                "Unique persons per day",
                "Top events",
                "Live events"
            ]
        );
        for tile in dashboard.body["tiles"].as_array().unwrap() {
            let (status, body) = run(&api, admin, project, &tile["insight"]).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{}: {body:#}",
                tile["insight"]["name"]
            );
        }
    }
    // The SQL insight answers the top events of the first project once they are stored.
    let started = std::time::Instant::now();
    loop {
        let insights = api
            .get(&format!("/api/v1/projects/{first}/insights"), admin)
            .await;
        let top = insights.body["insights"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "Top events")
            .unwrap()
            .clone();
        let (_, body) = run(&api, admin, &first, &top).await;
        if body["rows"] == json!([{"event": "signup", "events": 3}, {"event": "view", "events": 3}])
        {
            break;
        }
        assert!(started.elapsed().as_secs() < 20, "{body:#}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn insights_and_dashboards_are_saved_checked_changed_and_deleted() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;
    let project = server.keys.project_id.to_string();
    let insights = format!("/api/v1/projects/{project}/insights");
    let dashboards = format!("/api/v1/projects/{project}/dashboards");

    let funnel = api
        .post(
            &insights,
            admin,
            json!({"name": "Signup funnel", "description": "From visit to signup",
                   "query": {"kind": "funnels", "steps": [{"event": "visit"}, {"event": "signup"}]},
                   "display": {"chart": "bar"}}),
        )
        .await;
    assert_eq!(funnel.status, StatusCode::CREATED, "{:#}", funnel.body);
    assert_eq!(funnel.body["query"]["kind"], "funnels");
    let funnel_id = funnel.body["id"].as_str().unwrap().to_string();
    for (body, field) in [
        (
            json!({"name": "x", "query": {"kind": "funnels", "steps": [{"event": "a"}, {"event": "b"}]},
                "display": {"chart": "line"}}),
            "display.chart",
        ),
        (
            json!({"name": "x", "query": {"kind": "trends", "series": []}}),
            "series",
        ),
        (json!({"name": "", "query": {"kind": "lifecycle"}}), "name"),
    ] {
        let refused = api.post(&insights, admin, body).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{:#}",
            refused.body
        );
        assert_eq!(refused.error_field(), field, "{:#}", refused.body);
    }
    let unknown_kind = api
        .post(
            &insights,
            admin,
            json!({"name": "x", "query": {"kind": "pie"}}),
        )
        .await;
    assert_eq!(unknown_kind.status, StatusCode::BAD_REQUEST);
    let duplicate = api
        .post(
            &insights,
            admin,
            json!({"name": "Signup funnel", "query": {"kind": "lifecycle"}, "display": {"chart": "bar"}}),
        )
        .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);

    let changed = api
        .call(
            Method::PATCH,
            &format!("{insights}/{funnel_id}"),
            admin,
            Some(json!({"display": {"chart": "table"}})),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:#}", changed.body);
    assert_eq!(changed.body["display"]["chart"], "table");
    assert_eq!(changed.body["query"]["steps"][1]["event"], "signup");

    let trend = api
        .post(
            &insights,
            admin,
            json!({"name": "Signups", "query": {"kind": "trends", "series": [{"event": "signup"}]}}),
        )
        .await;
    let trend_id = trend.body["id"].as_str().unwrap().to_string();
    let board = api
        .post(
            &dashboards,
            admin,
            json!({"name": "Growth", "tiles": [
                       {"insight_id": trend_id, "x": 0, "y": 0, "w": 8, "h": 4},
                       {"insight_id": funnel_id, "x": 8, "y": 0, "w": 4, "h": 4}],
                   "date_range": {"from": "-7d"},
                   "properties": [{"key": "plan", "value": "pro"}]}),
        )
        .await;
    assert_eq!(board.status, StatusCode::CREATED, "{:#}", board.body);
    assert_eq!(board.body["tiles"][0]["insight"]["name"], "Signups");
    assert_eq!(board.body["date_range"]["from"], "-7d");
    let board_id = board.body["id"].as_str().unwrap().to_string();
    for (tiles, field) in [
        (
            json!([{"insight_id": trend_id, "x": 8, "w": 6}]),
            "tiles[0].w",
        ),
        (
            json!([{"insight_id": "0189a7e4-0000-7000-8000-000000000000"}]),
            "tiles[0].insight_id",
        ),
    ] {
        let refused = api
            .call(
                Method::PATCH,
                &format!("{dashboards}/{board_id}"),
                admin,
                Some(json!({ "tiles": tiles })),
            )
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert_eq!(refused.error_field(), field, "{:#}", refused.body);
    }
    // A deleted insight's tile stays, answered without it.
    let deleted = api
        .call(
            Method::DELETE,
            &format!("{insights}/{funnel_id}"),
            admin,
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let read = api.get(&format!("{dashboards}/{board_id}"), admin).await;
    assert_eq!(read.body["tiles"].as_array().unwrap().len(), 2);
    assert!(read.body["tiles"][1].get("insight").is_none());
    let cleared = api
        .call(
            Method::PATCH,
            &format!("{dashboards}/{board_id}"),
            admin,
            Some(json!({"date_range": {}, "tiles": [{"insight_id": trend_id}]})),
        )
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{:#}", cleared.body);
    assert!(cleared.body.get("date_range").is_none());
    assert_eq!(cleared.body["tiles"][0]["w"], 6);
    server.stop().await;
}
