//! The management API over real HTTP: projects, keys, roles, tenant isolation,
//! revocation and the audit log.

mod common;

use appizer::testing::TestServer;
use appizer_core::{Permission, Role};
use appizer_gateway::access::ACCESS_TABLE;
use common::Client;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A server whose Web Push endpoints may be on loopback (the examples' test sends go
/// to a closed local port, never out).
async fn start() -> TestServer {
    TestServer::start_with(|c| c.push.webpush_allowed_hosts = vec!["127.0.0.1".into()]).await
}

/// A Web Push subscription's public key: a real P-256 point (base64url).
const P256DH: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";

#[tokio::test]
async fn init_keys_drive_the_project_lifecycle() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;

    let list = api.get("/api/v1/projects", admin).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(
        list.body["projects"][0]["id"],
        server.keys.project_id.to_string()
    );

    let created = api
        .post(
            "/api/v1/projects",
            admin,
            json!({"name": " Mobile app ", "timezone": "Europe/Paris"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let project = created.body["project"]["id"].as_str().unwrap().to_string();
    assert_eq!(created.body["project"]["name"], "Mobile app");
    assert_eq!(created.body["project"]["timezone"], "Europe/Paris");
    let write_key = created.body["write_key"]["key"].as_str().unwrap();
    assert!(write_key.starts_with("apz_wk_"));
    assert_eq!(created.body["write_key"]["kind"], "write");

    let path = format!("/api/v1/projects/{project}");
    let patched = api
        .call(
            Method::PATCH,
            &path,
            admin,
            Some(json!({"name": "Mobile", "rate_limit": {"api_burst": 7}})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    assert_eq!(patched.body["name"], "Mobile");
    assert_eq!(patched.body["rate_limit"], json!({"api_burst": 7}));
    assert_eq!(patched.body["effective_rate_limit"]["api_burst"], 7);
    assert_eq!(api.get(&path, admin).await.body["name"], "Mobile");
    assert_eq!(
        api.get("/api/v1/projects", admin).await.body["projects"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let deleted = api.call(Method::DELETE, &path, admin, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&path, admin).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        api.get("/api/v1/projects", admin).await.body["projects"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn keys_are_shown_once_stored_hashed_and_revoked_at_once() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;
    let project = server.keys.project_id.to_string();
    let keys_path = format!("/api/v1/projects/{project}/keys");

    let (key_id, analyst) = api.create_key(admin, &project, "analyst").await;
    assert!(analyst.starts_with("apz_sk_"));
    let listed = api.get(&keys_path, admin).await;
    let text = listed.body.to_string();
    assert!(!text.contains(&analyst), "plaintext never listed again");
    let entry = listed.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["role"], "analyst");
    assert!(analyst.starts_with(entry["display_prefix"].as_str().unwrap()));

    // The store holds the SHA-256, never the key.
    let stored = server
        .store
        .find_key_by_hash(&appizer_core::keys::hash_key(&analyst))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.id.to_string(), key_id);

    let path = format!("/api/v1/projects/{project}");
    assert_eq!(api.get(&path, &analyst).await.status, StatusCode::OK);
    let revoked = api
        .call(
            Method::DELETE,
            &format!("{keys_path}/{key_id}"),
            admin,
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let refused = api.get(&path, &analyst).await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "revocation is immediate"
    );
    assert_eq!(refused.error_code(), "unauthorized");
    // Revoking again is harmless; an unknown key is 404.
    let again = api
        .call(
            Method::DELETE,
            &format!("{keys_path}/{key_id}"),
            admin,
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    let unknown = api
        .call(
            Method::DELETE,
            &format!("{keys_path}/{}", uuid::Uuid::now_v7()),
            admin,
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // Write keys: created without a role, refused on the management API.
    let write = api
        .post(&keys_path, admin, json!({"name": "ios", "kind": "write"}))
        .await;
    assert_eq!(write.status, StatusCode::CREATED);
    let write_key = write.body["key"].as_str().unwrap();
    let denied = api.get(&path, write_key).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let with_role = api
        .post(
            &keys_path,
            admin,
            json!({"name": "x", "kind": "write", "role": "admin"}),
        )
        .await;
    assert_eq!(
        (with_role.status, with_role.error_field()),
        (StatusCode::BAD_REQUEST, "role")
    );
    let no_role = api.post(&keys_path, admin, json!({"name": "x"})).await;
    assert_eq!(
        (no_role.status, no_role.error_field()),
        (StatusCode::BAD_REQUEST, "role")
    );
    server.stop().await;
}

#[tokio::test]
async fn missing_and_unknown_keys_are_401() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let none = Client::answer(
        api.http
            .get(server.url("/api/v1/projects"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.error_field(), "Authorization");
    let unknown = api
        .get("/api/v1/projects", "apz_sk_notarealkey000000000000000000")
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

/// Example path and body for each route of the access table, in `project`, aimed at a
/// key that exists (`key_id`) and, for person routes, at persons the organisation admin
/// key (`admin`) creates for the request, so allowed requests succeed or fail only on
/// content.
async fn example_request(
    api: &Client,
    admin: &str,
    method: &Method,
    template: &str,
    project: &str,
    key_id: &str,
) -> (String, Option<serde_json::Value>) {
    let unique = || format!("id-{}", uuid::Uuid::now_v7().simple());
    let persons = format!("/api/v1/projects/{project}/persons");
    let new_person = |distinct_id: String| {
        let persons = persons.clone();
        async move {
            let a = api
                .post(&persons, admin, json!({ "distinct_id": distinct_id }))
                .await;
            assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
            a.body["id"].as_str().unwrap().to_string()
        }
    };
    let mut path = template
        .replace("{project_id}", project)
        .replace("{key_id}", key_id);
    let mut body = match (method.as_str(), template) {
        ("POST", "/api/v1/projects") => Some(json!({"name": "p"})),
        // Today's bucket of the last week (the project's zone is UTC).
        ("POST", t) if t.ends_with("/query/trends/persons") => Some(json!({
            "query": {"series": [{"event": "$pageview"}], "date_range": {"from": "-7d"}},
            "series": 0, "bucket": chrono::Utc::now().date_naive().to_string()})),
        ("POST", t) if t.ends_with("/persons") => Some(json!({"distinct_id": unique()})),
        ("POST", t) if t.ends_with("/distinct-ids") => Some(json!({"distinct_id": unique()})),
        ("POST", t) if t.ends_with("/split") => Some(json!({})),
        ("POST", t) if t.ends_with("/query/trends") || t.ends_with("/query/stickiness") => {
            Some(json!({"series": [{"event": "$pageview"}]}))
        }
        ("POST", t) if t.ends_with("/query/funnels") => {
            Some(json!({"steps": [{"event": "a"}, {"event": "b"}]}))
        }
        ("POST", t) if t.ends_with("/query/retention") => Some(json!({
            "start_event": {"event": "signup"}, "return_event": {"event": "$pageview"}
        })),
        ("POST", t) if t.ends_with("/query/lifecycle") => Some(json!({})),
        ("POST", t) if t.ends_with("/query/sql") => {
            Some(json!({"query": "SELECT count(*) AS n FROM events"}))
        }
        ("POST", t) if t.ends_with("/query/explain") => {
            Some(json!({"sql": "SELECT event FROM events"}))
        }
        ("POST", t) if t.ends_with("/metrics") => {
            Some(json!({"name": unique(), "series": [{"event": "x"}]}))
        }
        ("POST", t) if t.ends_with("/segments/preview") => Some(json!({
            "condition": {"type": "property", "key": "plan", "value": "pro"}
        })),
        ("POST", t) if t.ends_with("/segments") => Some(json!({
            "name": unique(),
            "condition": {"type": "property", "key": "plan", "value": "pro"}
        })),
        ("POST", t) if t.ends_with("/evaluate") || t.ends_with("/refresh") => Some(json!({})),
        ("POST", t) if t.ends_with("/insights") => Some(json!({
            "name": unique(), "query": {"kind": "trends", "series": [{"event": "x"}]}
        })),
        ("POST", t) if t.ends_with("/dashboards") => Some(json!({"name": unique(), "tiles": []})),
        ("POST", "/api/v1/invites") => Some(json!({
            "email": format!("{}@example.com", unique()), "name": "New member",
            "access": {"organization_role": "viewer"}
        })),
        ("POST", _) => Some(json!({"name": "k", "role": "viewer"})),
        ("PATCH", _) => Some(json!({"name": "renamed"})),
        _ => None,
    };
    for (placeholder, collection, body) in [
        (
            "{metric_id}",
            "metrics",
            json!({"name": unique(), "series": [{"event": "x"}]}),
        ),
        (
            "{segment_id}",
            "segments",
            json!({"name": unique(), "condition": {"type": "property", "key": "plan", "value": "pro"}}),
        ),
        (
            "{insight_id}",
            "insights",
            json!({"name": unique(), "query": {"kind": "funnels", "steps": [{"event": "a"}, {"event": "b"}]},
                   "display": {"chart": "bar"}}),
        ),
        ("{dashboard_id}", "dashboards", json!({"name": unique()})),
    ] {
        if template.contains(placeholder) {
            let made = api
                .post(
                    &format!("/api/v1/projects/{project}/{collection}"),
                    admin,
                    body,
                )
                .await;
            assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
            path = path.replace(placeholder, made.body["id"].as_str().unwrap());
        }
    }
    if template.contains("{provider}") {
        let set = api
            .call(
                Method::PUT,
                &format!("/api/v1/projects/{project}/push/providers/webpush"),
                admin,
                Some(json!({"subject": "mailto:ops@example.com"})),
            )
            .await;
        assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
        path = path.replace("{provider}", "webpush");
        if method == Method::PUT {
            body = Some(json!({"subject": "mailto:ops@example.com"}));
        }
    }
    if template.ends_with("/push/messages") || template.contains("{message_id}") {
        let set = api
            .call(
                Method::PUT,
                &format!("/api/v1/projects/{project}/push/providers/webpush"),
                admin,
                Some(json!({"subject": "mailto:ops@example.com"})),
            )
            .await;
        assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
        let message = json!({
            "to": {"distinct_ids": [unique()]},
            "notification": {"title": "Hello", "body": "World"},
        });
        if method == Method::POST {
            body = Some(message);
        } else {
            let sent = api
                .post(
                    &format!("/api/v1/projects/{project}/push/messages"),
                    admin,
                    message,
                )
                .await;
            assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
            path = path.replace("{message_id}", sent.body["message_id"].as_str().unwrap());
        }
    }
    if template.contains("/campaigns") {
        let set = api
            .call(
                Method::PUT,
                &format!("/api/v1/projects/{project}/push/providers/webpush"),
                admin,
                Some(json!({"subject": "mailto:ops@example.com"})),
            )
            .await;
        assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
        let campaign = json!({
            "name": unique(), "audience": {"platforms": ["web"]},
            "when": {"type": "at", "at": chrono::Utc::now() + chrono::Duration::days(1)},
            "variants": [{"name": "A", "title": "Hi {{ person.name | default(\"there\") }}", "body": "News"}]
        });
        if method == Method::POST {
            body = Some(json!({}));
        }
        if template.ends_with("/campaigns") || template.ends_with("/preview") {
            body = Some(campaign.clone());
        }
        if template.contains("{campaign_id}") {
            let campaigns = format!("/api/v1/projects/{project}/campaigns");
            let made = api.post(&campaigns, admin, campaign).await;
            assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
            let id = made.body["id"].as_str().unwrap().to_string();
            let before: &[&str] = match template.rsplit('/').next() {
                Some("pause") => &["schedule"],
                Some("resume") => &["schedule", "pause"],
                _ => &[],
            };
            for action in before {
                let moved = api
                    .post(&format!("{campaigns}/{id}/{action}"), admin, json!({}))
                    .await;
                assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
            }
            if template.ends_with("/test-send") {
                let device = register(api, admin, project, json!({
                    "distinct_id": unique(), "platform": "web",
                    "subscription": {"endpoint": format!("http://127.0.0.1:9/push/{}", unique()),
                                     "keys": {"p256dh": P256DH, "auth": "BTBZMqHH6r4Tts7J_aSIgg"}}
                }))
                .await;
                body = Some(json!({ "device_ids": [device] }));
            }
            path = path.replace("{campaign_id}", &id);
        }
    }
    if template.contains("{member_id}") || template.contains("{invite_id}") {
        let invite = api
            .post(
                "/api/v1/invites",
                admin,
                json!({"email": format!("{}@example.com", unique()), "name": "Member",
                       "access": {"projects": {project: "viewer"}}}),
            )
            .await;
        assert_eq!(invite.status, StatusCode::CREATED, "{:?}", invite.body);
        path = path.replace("{invite_id}", invite.body["id"].as_str().unwrap());
        if template.contains("{member_id}") {
            let joined = api
                .post(
                    "/api/v1/invites/accept",
                    "",
                    json!({"token": invite.body["token"], "password": "a member's password"}),
                )
                .await;
            assert_eq!(joined.status, StatusCode::CREATED, "{:?}", joined.body);
            path = path
                .replace("{member_id}", joined.body["member"]["id"].as_str().unwrap())
                .replace("{session_id}", joined.body["session_id"].as_str().unwrap());
        }
    }
    if template.contains("{device_id}") {
        let device = register_device(api, admin, project, &unique()).await;
        path = path.replace("{device_id}", &device);
    }
    if template.contains("{person_id}") || template.contains("{distinct_id}") {
        let (first, second) = (unique(), unique());
        let person = new_person(first.clone()).await;
        let linked = api
            .post(
                &format!("{persons}/{person}/distinct-ids"),
                admin,
                json!({ "distinct_id": second }),
            )
            .await;
        assert_eq!(linked.status, StatusCode::OK, "{:?}", linked.body);
        let other = new_person(unique()).await;
        if template.ends_with("/merge") {
            body = Some(json!({ "source_person_id": other }));
        }
        if template.ends_with("/split") {
            let merged = api
                .post(
                    &format!("{persons}/{person}/merge"),
                    admin,
                    json!({ "source_person_id": other }),
                )
                .await;
            assert_eq!(merged.status, StatusCode::OK, "{:?}", merged.body);
        }
        let distinct_id = if template.starts_with("/api/v1/projects/{project_id}/distinct-ids") {
            first
        } else {
            second
        };
        path = path
            .replace("{person_id}", &person)
            .replace("{distinct_id}", &distinct_id);
    }
    (path, body)
}

/// Registers an Android device of `distinct_id` in `project` with a new write key of
/// it; returns the device id.
async fn register_device(api: &Client, admin: &str, project: &str, distinct_id: &str) -> String {
    let body = json!({"distinct_id": distinct_id, "platform": "android",
                      "token": format!("fcm:{distinct_id}")});
    register(api, admin, project, body).await
}

/// Registers the device `body` describes in `project` with a new write key of it;
/// returns the device id.
async fn register(api: &Client, admin: &str, project: &str, body: serde_json::Value) -> String {
    let key = api
        .post(
            &format!("/api/v1/projects/{project}/keys"),
            admin,
            json!({"name": "device writer", "kind": "write"}),
        )
        .await;
    assert_eq!(key.status, StatusCode::CREATED, "{:?}", key.body);
    let write_key = key.body["key"].as_str().unwrap();
    let device = api.post("/v1/push/devices", write_key, body).await;
    assert_eq!(device.status, StatusCode::CREATED, "{:?}", device.body);
    device.body["id"].as_str().unwrap().to_string()
}

/// The access table with project deletion moved last: it revokes the keys under test.
fn routes_deleting_the_project_last() -> Vec<&'static (Method, &'static str, Permission)> {
    let mut routes: Vec<_> = ACCESS_TABLE.iter().collect();
    routes.sort_by_key(|(m, p, _)| *m == Method::DELETE && *p == "/api/v1/projects/{project_id}");
    routes
}

#[tokio::test]
async fn every_route_answers_every_role_as_the_access_table_says() {
    let server = start().await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;
    for role in Role::ALL {
        // A fresh project per role, so the destructive routes run on their own data.
        let project = api.create_project(admin, &format!("{role} project")).await;
        let (_, key) = api.create_key(admin, &project, role.as_str()).await;
        let (victim, _) = api.create_key(admin, &project, "viewer").await;
        for (method, template, permission) in routes_deleting_the_project_last() {
            let (path, body) =
                example_request(&api, admin, method, template, &project, &victim).await;
            let answer = api.call(method.clone(), &path, &key, body).await;
            let allowed = role.grants(*permission) && !permission.needs_organization_key();
            if allowed {
                assert!(
                    answer.status.is_success(),
                    "{role} on {method} {template}: {} {:?}",
                    answer.status,
                    answer.body
                );
            } else {
                assert_eq!(
                    answer.status,
                    StatusCode::FORBIDDEN,
                    "{role} on {method} {template}: {:?}",
                    answer.body
                );
                assert_eq!(answer.error_code(), "forbidden");
            }
        }
    }
    // The organisation admin key may do everything, organisation routes included.
    assert!(Role::Admin.grants(Permission::OrganizationManage));
    let project = api.create_project(admin, "org admin project").await;
    let (victim, _) = api.create_key(admin, &project, "viewer").await;
    for (method, template, _) in routes_deleting_the_project_last() {
        let (path, body) = example_request(&api, admin, method, template, &project, &victim).await;
        let answer = api.call(method.clone(), &path, admin, body).await;
        assert!(
            answer.status.is_success(),
            "admin on {method} {template}: {:?}",
            answer.body
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_key_of_project_a_gets_404_for_everything_of_project_b() {
    let server = start().await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;
    let a = api.create_project(admin, "A").await;
    let b = api.create_project(admin, "B").await;
    let (_, a_admin) = api.create_key(admin, &a, "admin").await;
    let (b_key, _) = api.create_key(admin, &b, "viewer").await;
    for (method, template, _) in ACCESS_TABLE.iter().filter(|r| r.1.contains("{project_id}")) {
        let (path, body) = example_request(&api, admin, method, template, &b, &b_key).await;
        let answer = api.call(method.clone(), &path, &a_admin, body).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{method} {template}: {:?}",
            answer.body
        );
    }
    // A project key lists only its own project; B is untouched.
    let listed = api.get("/api/v1/projects", &a_admin).await;
    let ids: Vec<_> = listed.body["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(a)]);
    assert_eq!(
        api.get(&format!("/api/v1/projects/{b}"), admin).await.body["name"],
        "B"
    );
    // A malformed project id is 404 too, not a parse error.
    let odd = api.get("/api/v1/projects/not-a-uuid", admin).await;
    assert_eq!(odd.status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn management_actions_are_audited_with_actor_and_request_id() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;
    let project = server.keys.project_id.to_string();
    let (key_id, _) = api.create_key(admin, &project, "marketer").await;
    let request = api
        .http
        .request(
            Method::DELETE,
            server.url(&format!("/api/v1/projects/{project}/keys/{key_id}")),
        )
        .bearer_auth(admin)
        .header("x-request-id", "revoke-42")
        .send()
        .await
        .unwrap();
    assert_eq!(request.headers()["x-request-id"], "revoke-42");

    let log = api
        .get(&format!("/api/v1/projects/{project}/audit-log"), admin)
        .await;
    assert_eq!(log.status, StatusCode::OK);
    let entries = log.body["entries"].as_array().unwrap();
    let actions: Vec<_> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["key.revoke", "key.create", "installation.init"]);
    assert_eq!(entries[0]["target_id"], key_id.as_str());
    assert_eq!(entries[0]["request_id"], "revoke-42");
    assert!(entries[0]["actor"].as_str().unwrap().starts_with("key:"));
    assert_eq!(entries[2]["actor"], "cli");
    assert!(
        !log.body.to_string().contains("apz_sk_"),
        "no secrets in the log"
    );

    let page = api
        .get(
            &format!("/api/v1/projects/{project}/audit-log?limit=2"),
            admin,
        )
        .await;
    assert_eq!(page.body["entries"].as_array().unwrap().len(), 2);
    let before = page.body["next_before"].as_i64().unwrap();
    let rest = api
        .get(
            &format!("/api/v1/projects/{project}/audit-log?before={before}"),
            admin,
        )
        .await;
    assert_eq!(rest.body["entries"][0]["action"], "installation.init");
    assert!(rest.body.get("next_before").is_none());
    let bad = api
        .get(
            &format!("/api/v1/projects/{project}/audit-log?limit=0"),
            admin,
        )
        .await;
    assert_eq!(
        (bad.status, bad.error_field()),
        (StatusCode::BAD_REQUEST, "limit")
    );
    let bad = api
        .get(
            &format!("/api/v1/projects/{project}/audit-log?limit=x"),
            admin,
        )
        .await;
    assert_eq!(
        (bad.status, bad.error_field()),
        (StatusCode::BAD_REQUEST, "limit")
    );
    server.stop().await;
}

/// One answer, as `tests/openapi_answers.py` reads it.
fn recorded(method: &Method, template: &str, answer: &common::Answer) -> serde_json::Value {
    let content_type = answer
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    json!({
        "method": method.as_str(),
        "template": template,
        "status": answer.status.as_u16(),
        "content_type": content_type,
        "body": answer.body,
    })
}

/// Every route's answers, successful and not, are what `/openapi.json` documents: the
/// status is listed for the operation and the JSON body matches its schema. Checked by
/// an independent JSON Schema validator (PyPI `openapi-schema-validator`).
#[tokio::test]
async fn every_answer_matches_the_openapi_document() {
    let Some(python) = common::test_python() else {
        return;
    };
    let server = start().await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;
    let mut answers = Vec::new();
    let project = api.create_project(admin, "documented").await;
    let (_, viewer) = api.create_key(admin, &project, "viewer").await;
    let (victim, _) = api.create_key(admin, &project, "viewer").await;
    for (method, template, _) in routes_deleting_the_project_last() {
        let (path, body) = example_request(&api, admin, method, template, &project, &victim).await;
        // Without a key, with the viewer's, with a query parameter no route knows (reads),
        // with a body that is not JSON, in a project that does not exist; then as designed.
        let anonymous = api.call(method.clone(), &path, "", body.clone()).await;
        answers.push(recorded(method, template, &anonymous));
        let as_viewer = api.call(method.clone(), &path, &viewer, body.clone()).await;
        answers.push(recorded(method, template, &as_viewer));
        if *method == Method::GET {
            let separator = if path.contains('?') { '&' } else { '?' };
            let odd_query = api
                .get(&format!("{path}{separator}colour=red"), admin)
                .await;
            answers.push(recorded(method, template, &odd_query));
        }
        if body.is_some() {
            let bad = api
                .http
                .request(method.clone(), server.url(&path))
                .bearer_auth(admin)
                .header("content-type", "application/json")
                .body("{\"unclosed\": ")
                .send()
                .await
                .unwrap();
            answers.push(recorded(method, template, &Client::answer(bad).await));
        }
        if template.contains("{project_id}") {
            let elsewhere = path.replace(&project, &uuid::Uuid::now_v7().to_string());
            let missing = api
                .call(method.clone(), &elsewhere, admin, body.clone())
                .await;
            answers.push(recorded(method, template, &missing));
        }
        let (path, body) = example_request(&api, admin, method, template, &project, &victim).await;
        let answer = api.call(method.clone(), &path, admin, body).await;
        assert!(
            answer.status.is_success(),
            "{method} {template}: {:?}",
            answer.body
        );
        answers.push(recorded(method, template, &answer));
    }
    let statuses: std::collections::BTreeSet<u16> = answers
        .iter()
        .map(|a| a["status"].as_u64().unwrap() as u16)
        .collect();
    for expected in [200, 201, 204, 400, 401, 403, 404] {
        assert!(
            statuses.contains(&expected),
            "no {expected} among {statuses:?}"
        );
    }
    let doc = api.get("/openapi.json", "").await;
    let dir = server.data_dir();
    let (doc_file, answers_file) = (dir.join("openapi.json"), dir.join("answers.json"));
    std::fs::write(&doc_file, doc.body.to_string()).unwrap();
    std::fs::write(&answers_file, serde_json::Value::from(answers).to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openapi_answers.py");
    common::run_python(
        &python,
        &[
            std::ffi::OsStr::new(script),
            doc_file.as_os_str(),
            answers_file.as_os_str(),
        ],
        "answers that /openapi.json does not describe",
    );
    server.stop().await;
}
