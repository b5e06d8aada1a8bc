//! Identity resolution, scenario by scenario, through real HTTP ingestion and the
//! persons API: each scenario sends events (and API calls) and then checks the persons
//! that exist afterwards and which person each event belongs to. Every scenario runs
//! on SQLite and on PostgreSQL (`APPIZER_TEST_POSTGRES_URL`, required under CI; each
//! test gets its own schema).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use appizer::testing::TestServer;
use appizer_core::config::Config;
use appizer_core::secret::SecretString;
use common::{Answer, Client};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Which metadata store a scenario runs on.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

struct World {
    server: TestServer,
    api: Client,
    /// Messages sent minus those expected to be dropped.
    visible: usize,
}

impl World {
    async fn start(backend: Backend, configure: impl FnOnce(&mut Config)) -> Option<Self> {
        let url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(common::services::postgres_url().await?),
        };
        let server = TestServer::start_with(|c| {
            if let Some(url) = url {
                c.database_url = SecretString::new(url);
            }
            configure(c);
        })
        .await;
        let api = Client::new(&server);
        Some(Self {
            server,
            api,
            visible: 0,
        })
    }

    fn project(&self) -> String {
        self.server.keys.project_id.to_string()
    }

    fn admin(&self) -> &str {
        &self.server.keys.admin_key
    }

    async fn send(&mut self, path: &str, body: Value, messages: usize) {
        let a = self
            .api
            .http
            .post(format!("{}{path}", self.server.base_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(a.status(), StatusCode::OK, "{}", a.text().await.unwrap());
        self.visible += messages;
    }

    /// A Segment batch (`messages` carry `type` and their ids).
    async fn segment(&mut self, messages: Vec<Value>) {
        let n = messages.len();
        let key = self.server.keys.write_key.clone();
        self.send("/v1/batch", json!({"writeKey": key, "batch": messages}), n)
            .await;
    }

    /// A PostHog batch.
    async fn posthog(&mut self, events: Vec<Value>) {
        let n = events.len();
        let key = self.server.keys.write_key.clone();
        self.send("/batch", json!({"api_key": key, "batch": events}), n)
            .await;
    }

    /// Waits until the workers have processed everything acknowledged so far.
    async fn settle(&self) {
        common::settle(&self.server).await
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let path = format!("/api/v1/projects/{}{path}", self.project());
        self.api.call(method, &path, self.admin(), body).await
    }

    /// The person of a distinct id, or `None`.
    async fn person(&self, distinct_id: &str) -> Option<Value> {
        let a = self
            .call(Method::GET, &format!("/distinct-ids/{distinct_id}"), None)
            .await;
        match a.status {
            StatusCode::OK => Some(a.body),
            StatusCode::NOT_FOUND => None,
            other => panic!("{other}: {:?}", a.body),
        }
    }

    /// Every event (newest first), after settling.
    async fn events(&self) -> Vec<Value> {
        self.settle().await;
        let a = self.call(Method::GET, "/events?limit=1000", None).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        a.body["events"].as_array().unwrap().clone()
    }

    /// Every person, in creation order.
    async fn persons(&self) -> Vec<Value> {
        let a = self.call(Method::GET, "/persons?limit=1000", None).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        a.body["persons"].as_array().unwrap().clone()
    }

    /// Asserts the persons are exactly `groups` (each the set of a person's distinct
    /// ids), that every visible event belongs to the person of its distinct id, and
    /// that `visible` events are visible. Returns the person of each group's first id.
    async fn expect(&self, groups: &[&[&str]]) -> Vec<Value> {
        let events = self.events().await;
        assert_eq!(events.len(), self.visible, "{events:#?}");
        let persons = self.persons().await;
        let mut got: Vec<BTreeSet<String>> = persons
            .iter()
            .map(|p| {
                p["distinct_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_str().unwrap().to_string())
                    .collect()
            })
            .collect();
        let mut want: Vec<BTreeSet<String>> = groups
            .iter()
            .map(|g| g.iter().map(|d| d.to_string()).collect())
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "persons: {persons:#?}");
        let owner: HashMap<String, String> = persons
            .iter()
            .flat_map(|p| {
                let id = p["id"].as_str().unwrap().to_string();
                p["distinct_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(move |d| (d.as_str().unwrap().to_string(), id.clone()))
            })
            .collect();
        for e in &events {
            let distinct_id = e["distinct_id"].as_str().unwrap();
            assert_eq!(
                e["person_id"].as_str(),
                owner.get(distinct_id).map(String::as_str),
                "event {e:#}"
            );
        }
        let mut out = Vec::new();
        for g in groups {
            out.push(self.person(g[0]).await.expect("person"));
        }
        out
    }

    async fn warnings(&self) -> Vec<Value> {
        let a = self.call(Method::GET, "/ingestion-warnings", None).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        a.body["warnings"].as_array().unwrap().clone()
    }

    /// Waits for a warning on `field` (warnings are written in the background).
    async fn expect_warning(&self, field: &str) -> Value {
        let started = Instant::now();
        loop {
            if let Some(w) = self
                .warnings()
                .await
                .into_iter()
                .find(|w| w["field"] == field)
            {
                return w;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "no warning on {field}: {:?}",
                self.warnings().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn at(second: u32) -> String {
    format!("2026-11-20T10:00:{second:02}.000Z")
}

fn track(user: Option<&str>, anon: Option<&str>, name: &str, second: u32) -> Value {
    let mut m = json!({"type": "track", "event": name, "timestamp": at(second)});
    if let Some(u) = user {
        m["userId"] = json!(u);
    }
    if let Some(a) = anon {
        m["anonymousId"] = json!(a);
    }
    m
}

fn identify(user: &str, anon: Option<&str>, traits: Value, second: u32) -> Value {
    let mut m =
        json!({"type": "identify", "userId": user, "traits": traits, "timestamp": at(second)});
    if let Some(a) = anon {
        m["anonymousId"] = json!(a);
    }
    m
}

fn ph(event: &str, distinct_id: &str, properties: Value, second: u32) -> Value {
    json!({"event": event, "distinct_id": distinct_id, "properties": properties, "timestamp": at(second)})
}

mod scenarios {
    use super::*;

    pub async fn anonymous_browsing_then_identify(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.segment(vec![
            track(None, Some("a1"), "Viewed", 1),
            track(None, Some("a1"), "Viewed", 2),
            track(None, Some("a1"), "Added", 3),
        ])
        .await;
        w.segment(vec![identify(
            "u1",
            Some("a1"),
            json!({"email": "u1@x.io"}),
            4,
        )])
        .await;
        let p = w.expect(&[&["a1", "u1"]]).await;
        assert_eq!(p[0]["is_identified"], true);
        assert_eq!(p[0]["properties"]["email"], "u1@x.io");
        assert_eq!(p[0]["event_count"], 4);
        assert_eq!(p[0]["recent_events"].as_array().unwrap().len(), 4);
    }

    pub async fn posthog_identify_merges_the_anonymous_person(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.posthog(vec![
            ph("$pageview", "d1", json!({}), 1),
            ph("clicked", "d1", json!({}), 2),
        ])
        .await;
        w.settle().await;
        w.posthog(vec![ph(
            "$identify",
            "u1",
            json!({"$anon_distinct_id": "d1", "$set": {"plan": "pro"}}),
            3,
        )])
        .await;
        let p = w.expect(&[&["d1", "u1"]]).await;
        assert_eq!(p[0]["properties"]["plan"], "pro");
        assert_eq!(p[0]["is_identified"], true);
    }

    pub async fn two_devices_one_user(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.segment(vec![track(None, Some("phone"), "Opened", 1)])
            .await;
        w.segment(vec![track(None, Some("laptop"), "Opened", 2)])
            .await;
        w.settle().await;
        w.segment(vec![identify("u1", Some("phone"), json!({}), 3)])
            .await;
        w.settle().await;
        w.segment(vec![identify("u1", Some("laptop"), json!({}), 4)])
            .await;
        let p = w.expect(&[&["phone", "laptop", "u1"]]).await;
        assert_eq!(p[0]["event_count"], 4);
    }

    pub async fn a_second_user_on_the_same_device_is_not_merged(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.segment(vec![
            track(None, Some("shared"), "Viewed", 1),
            identify("alice", Some("shared"), json!({"name": "Alice"}), 2),
        ])
        .await;
        w.settle().await;
        // Bob logs in on the same browser without a reset: same anonymous id.
        w.segment(vec![identify(
            "bob",
            Some("shared"),
            json!({"name": "Bob"}),
            3,
        )])
        .await;
        let p = w.expect(&[&["shared", "alice"], &["bob"]]).await;
        assert_eq!(p[0]["properties"]["name"], "Alice");
        assert_eq!(p[1]["properties"]["name"], "Bob");
        let warning = w.expect_warning("anonymousId").await;
        assert!(
            warning["reason"].as_str().unwrap().contains("identified"),
            "{warning}"
        );
    }

    pub async fn logout_with_a_reset_keeps_users_apart(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.segment(vec![
            track(None, Some("a1"), "Viewed", 1),
            identify("alice", Some("a1"), json!({}), 2),
            track(None, Some("a2"), "Viewed", 3),
            identify("bob", Some("a2"), json!({}), 4),
        ])
        .await;
        w.expect(&[&["a1", "alice"], &["a2", "bob"]]).await;
    }

    pub async fn alias_chains_link_every_id(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.segment(vec![track(None, Some("anon"), "Viewed", 1)])
            .await;
        w.segment(vec![
            json!({"type": "alias", "previousId": "anon", "userId": "u1", "timestamp": at(2)}),
        ])
        .await;
        w.settle().await;
        w.segment(vec![
            json!({"type": "alias", "previousId": "u1", "userId": "u1@new.io", "timestamp": at(3)}),
        ])
        .await;
        w.segment(vec![track(Some("u1@new.io"), None, "Bought", 4)])
            .await;
        w.expect(&[&["anon", "u1", "u1@new.io"]]).await;
    }

    pub async fn posthog_create_alias_links_ids(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.posthog(vec![
            ph("$identify", "u1", json!({}), 1),
            ph("$create_alias", "u1", json!({"alias": "crm-42"}), 2),
            ph("synced", "crm-42", json!({}), 3),
        ])
        .await;
        let p = w.expect(&[&["u1", "crm-42"]]).await;
        assert_eq!(p[0]["event_count"], 3);
    }

    pub async fn placeholder_distinct_ids_get_no_person(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.posthog(vec![
            ph("clicked", "undefined", json!({}), 1),
            ph("clicked", "real", json!({}), 2),
        ])
        .await;
        w.expect(&[&["real"]]).await;
        let warning = w.expect_warning("distinct_id").await;
        assert!(warning["reason"].as_str().unwrap().contains("placeholder"));
        assert!(w.person("undefined").await.is_none());
    }

    pub async fn placeholder_anonymous_ids_are_not_linked(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.segment(vec![
            identify("u1", Some("null"), json!({}), 1),
            identify("u2", Some("NULL"), json!({}), 2),
        ])
        .await;
        w.expect(&[&["u1"], &["u2"]]).await;
        w.expect_warning("anonymousId").await;
    }

    pub async fn out_of_order_set_keeps_the_newest_value(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.posthog(vec![ph(
            "upgraded",
            "u1",
            json!({"$set": {"plan": "team"}}),
            20,
        )])
        .await;
        w.settle().await;
        // Arrives later, happened earlier.
        w.posthog(vec![ph(
            "upgraded",
            "u1",
            json!({"$set": {"plan": "pro"}}),
            10,
        )])
        .await;
        let p = w.expect(&[&["u1"]]).await;
        assert_eq!(p[0]["properties"]["plan"], "team");
    }

    pub async fn set_once_from_concurrent_batches_keeps_the_first(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        let key = w.server.keys.write_key.clone();
        let bodies: Vec<Value> = (0..8)
            .map(|i| {
                json!({"api_key": key, "batch": [ph("visited", "u1",
                    json!({"$set_once": {"first_source": format!("s{i}")}}), 30 - i)]})
            })
            .collect();
        let http = w.api.http.clone();
        let url = w.server.url("/batch");
        let sends = bodies.into_iter().map(|b| {
            let (http, url) = (http.clone(), url.clone());
            async move { http.post(url).json(&b).send().await.unwrap().status() }
        });
        for status in futures_util::future::join_all(sends).await {
            assert_eq!(status, StatusCode::OK);
        }
        w.visible += 8;
        let p = w.expect(&[&["u1"]]).await;
        // The earliest event (second 23, batch 7) wins whatever the arrival order.
        assert_eq!(p[0]["properties"]["first_source"], "s7");
    }

    pub async fn unset_is_not_undone_by_an_older_set(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.posthog(vec![
            ph("x", "u1", json!({"$set": {"coupon": "A"}}), 1),
            ph("x", "u1", json!({"$unset": ["coupon"]}), 5),
        ])
        .await;
        w.settle().await;
        w.posthog(vec![ph("x", "u1", json!({"$set": {"coupon": "B"}}), 3)])
            .await;
        let p = w.expect(&[&["u1"]]).await;
        assert!(p[0]["properties"].get("coupon").is_none(), "{:?}", p[0]);
    }

    pub async fn segment_traits_are_last_write_wins(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.segment(vec![identify(
            "u1",
            None,
            json!({"plan": "pro", "seats": 3}),
            5,
        )])
        .await;
        w.settle().await;
        w.segment(vec![identify("u1", None, json!({"plan": "free"}), 2)])
            .await;
        w.settle().await;
        w.segment(vec![identify("u1", None, json!({"seats": 10}), 9)])
            .await;
        let p = w.expect(&[&["u1"]]).await;
        assert_eq!(p[0]["properties"]["plan"], "pro");
        assert_eq!(p[0]["properties"]["seats"], 10);
    }

    pub async fn delete_then_reingest_without_suppression(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.segment(vec![
            track(Some("gone"), None, "Viewed", 1),
            track(Some("gone"), None, "Viewed", 2),
        ])
        .await;
        let first = w.expect(&[&["gone"]]).await[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let a = w
            .call(Method::DELETE, &format!("/persons/{first}"), None)
            .await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{:?}", a.body);
        w.visible = 0;
        w.expect(&[]).await;
        w.segment(vec![track(Some("gone"), None, "Came back", 3)])
            .await;
        let again = w.expect(&[&["gone"]]).await;
        assert_ne!(again[0]["id"].as_str().unwrap(), first);
        assert_eq!(again[0]["event_count"], 1);
    }

    pub async fn delete_with_suppression_drops_later_events(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.segment(vec![identify("u1", Some("a1"), json!({}), 1)])
            .await;
        let id = w.expect(&[&["a1", "u1"]]).await[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let a = w
            .call(
                Method::DELETE,
                &format!("/persons/{id}?suppress=true"),
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::NO_CONTENT);
        w.visible = 0;
        w.segment(vec![
            track(Some("u1"), None, "Still here", 2),
            track(None, Some("a1"), "Anon", 3),
        ])
        .await;
        w.visible = 0;
        w.segment(vec![track(Some("other"), None, "Hello", 4)])
            .await;
        w.expect(&[&["other"]]).await;
        assert!(w.person("u1").await.is_none());
    }

    pub async fn one_new_id_in_fifty_concurrent_batches_is_one_person(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        let key = w.server.keys.write_key.clone();
        let http = w.api.http.clone();
        let url = w.server.url("/v1/batch");
        let sends = (0..50).map(|i| {
            let (http, url) = (http.clone(), url.clone());
            let body =
                json!({"writeKey": key, "batch": [track(Some("fresh"), None, "Hit", i % 60)]});
            async move { http.post(url).json(&body).send().await.unwrap().status() }
        });
        for status in futures_util::future::join_all(sends).await {
            assert_eq!(status, StatusCode::OK);
        }
        w.visible += 50;
        let p = w.expect(&[&["fresh"]]).await;
        assert_eq!(p[0]["event_count"], 50);
    }

    pub async fn merge_then_split_restores_both_persons(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.segment(vec![
            track(Some("a"), None, "A did", 1),
            track(Some("b"), None, "B did", 2),
            track(Some("b"), None, "B did", 3),
        ])
        .await;
        let p = w.expect(&[&["a"], &["b"]]).await;
        let (a, b_id) = (p[0]["id"].as_str().unwrap(), p[1]["id"].as_str().unwrap());
        let merged = w
            .call(
                Method::POST,
                &format!("/persons/{b_id}/merge"),
                Some(json!({"source_person_id": a})),
            )
            .await;
        assert_eq!(merged.status, StatusCode::OK, "{:?}", merged.body);
        let one = w.expect(&[&["a", "b"]]).await;
        assert_eq!(one[0]["event_count"], 3);
        assert_eq!(one[0]["recent_events"].as_array().unwrap().len(), 3);
        let log = w
            .call(Method::GET, &format!("/persons/{b_id}/merges"), None)
            .await;
        assert_eq!(log.body["merges"][0]["reason"], "api");
        // The merged-away person keeps its log; an id that was never a person has none.
        let source_log = w
            .call(Method::GET, &format!("/persons/{a}/merges"), None)
            .await;
        assert_eq!(source_log.status, StatusCode::OK);
        assert_eq!(source_log.body["merges"][0]["source_person_id"], a);
        let nobody = uuid::Uuid::now_v7();
        let none = w
            .call(Method::GET, &format!("/persons/{nobody}/merges"), None)
            .await;
        assert_eq!(none.status, StatusCode::NOT_FOUND, "{:?}", none.body);
        let split = w
            .call(
                Method::POST,
                &format!("/persons/{b_id}/split"),
                Some(json!({})),
            )
            .await;
        assert_eq!(split.status, StatusCode::OK, "{:?}", split.body);
        assert_eq!(split.body["id"], a);
        let back = w.expect(&[&["a"], &["b"]]).await;
        assert_eq!(back[0]["id"], a);
        assert_eq!(back[0]["event_count"], 1);
        assert_eq!(back[0]["recent_events"].as_array().unwrap().len(), 1);
        assert_eq!(back[1]["recent_events"].as_array().unwrap().len(), 2);
    }

    pub async fn identified_persons_are_never_merged_implicitly(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.segment(vec![
            track(Some("u1"), None, "x", 1),
            track(Some("u2"), None, "y", 2),
        ])
        .await;
        w.settle().await;
        w.segment(vec![identify("u2", Some("u1"), json!({}), 3)])
            .await;
        w.posthog(vec![ph("$create_alias", "u2", json!({"alias": "u1"}), 4)])
            .await;
        w.expect(&[&["u1"], &["u2"]]).await;
        w.expect_warning("properties.alias").await;
    }

    pub async fn merge_dangerously_merges_identified_persons(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.posthog(vec![
            ph("$identify", "u1", json!({}), 1),
            ph("$identify", "u2", json!({}), 2),
        ])
        .await;
        w.settle().await;
        w.posthog(vec![ph(
            "$merge_dangerously",
            "u2",
            json!({"alias": "u1"}),
            3,
        )])
        .await;
        let p = w.expect(&[&["u1", "u2"]]).await;
        let log = w
            .call(
                Method::GET,
                &format!("/persons/{}/merges", p[0]["id"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(log.body["merges"][0]["reason"], "merge_dangerously");
    }

    pub async fn past_events_count_the_merged_person_once(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.segment(vec![
            track(None, Some("anon"), "Viewed", 1),
            track(Some("user"), None, "Paid", 2),
        ])
        .await;
        w.settle().await;
        w.segment(vec![identify("user", Some("anon"), json!({}), 3)])
            .await;
        w.expect(&[&["anon", "user"]]).await;
        let people: BTreeSet<String> = w
            .events()
            .await
            .iter()
            .map(|e| e["person_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            people.len(),
            1,
            "one person across events stored before the merge"
        );
    }

    pub async fn the_distinct_id_cap_refuses_more_links(b: Backend) {
        let Some(mut w) = World::start(b, |c| c.users.max_distinct_ids_per_person = 3).await else {
            return;
        };
        for (i, anon) in ["d1", "d2", "d3"].iter().enumerate() {
            w.segment(vec![identify("u1", Some(anon), json!({}), i as u32 + 1)])
                .await;
            w.settle().await;
        }
        // d3 was refused, and the identify event is u1's: d3 has no person.
        w.expect(&[&["u1", "d1", "d2"]]).await;
        let warning = w.expect_warning("anonymousId").await;
        assert!(
            warning["reason"].as_str().unwrap().contains("more than 3"),
            "{warning}"
        );
    }

    pub async fn profiles_fill_themselves_in_from_events(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.segment(vec![
            json!({"type": "page", "userId": "u1", "name": "Home", "timestamp": at(1),
                "context": {"page": {"referrer": "https://news.example/story"},
                    "campaign": {"source": "newsletter", "name": "autumn"},
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"}}),
            json!({"type": "track", "userId": "u1", "event": "Bought", "timestamp": at(9),
                "context": {"page": {"referrer": "https://search.example/"},
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"}}),
        ])
        .await;
        let p = &w.expect(&[&["u1"]]).await[0];
        let props = &p["properties"];
        assert_eq!(props["$initial_referring_domain"], "news.example");
        assert_eq!(props["$referring_domain"], "search.example");
        assert_eq!(props["$initial_browser"], "Firefox");
        assert_eq!(props["$browser"], "Chrome");
        assert_eq!(props["$initial_utm_source"], "newsletter");
        assert_eq!(p["event_count"], 2);
        assert_eq!(p["first_seen"], "2026-11-20T10:00:01Z");
        assert_eq!(p["last_seen"], "2026-11-20T10:00:09Z");
    }

    pub async fn server_side_identify_then_events_land_on_that_person(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        let created = w
            .call(
                Method::POST,
                "/persons",
                Some(json!({"distinct_id": "crm-7",
                "set": {"email": "c@x.io"}, "set_once": {"source": "crm"}})),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        assert_eq!(created.body["is_identified"], true);
        let again = w
            .call(Method::POST, "/persons", Some(json!({"distinct_id": "crm-7", "set": {"email": "d@x.io"}, "unset": ["source"]})))
            .await;
        assert_eq!(again.status, StatusCode::OK);
        w.segment(vec![track(Some("crm-7"), None, "Logged in", 1)])
            .await;
        let p = w.expect(&[&["crm-7"]]).await;
        assert_eq!(p[0]["id"], created.body["id"]);
        assert_eq!(p[0]["properties"]["email"], "d@x.io");
        assert!(p[0]["properties"].get("source").is_none());
        let bad = w
            .call(
                Method::POST,
                "/persons",
                Some(json!({"distinct_id": "anonymous"})),
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(bad.error_field(), "distinct_id");
    }

    /// Eight clients writing persons at once, with ingestion going on: every write
    /// waits its turn for the database rather than failing.
    pub async fn concurrent_person_writes_all_succeed(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        let path = format!("/api/v1/projects/{}/persons", w.project());
        let writers = (0..8).map(|client| {
            let (api, admin, path) = (&w.api, w.admin().to_string(), path.clone());
            async move {
                let mut statuses = Vec::new();
                for n in 0..12 {
                    let body = json!({"distinct_id": format!("c{client}-{}", n % 4),
                        "set": {"n": n}, "set_once": {"client": client}});
                    statuses.push(api.post(&path, &admin, body).await.status);
                }
                statuses
            }
        });
        let batch_url = format!("{}/v1/batch", w.server.base_url);
        let write_key = w.server.keys.write_key.clone();
        let ingest = async {
            for n in 0..10 {
                let body = json!({"writeKey": write_key,
                    "batch": [track(Some(&format!("c0-{}", n % 4)), None, "x", n)]});
                let a = w
                    .api
                    .http
                    .post(&batch_url)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(a.status(), StatusCode::OK);
            }
        };
        let (statuses, ()) = futures_util::join!(futures_util::future::join_all(writers), ingest);
        let statuses: Vec<StatusCode> = statuses.into_iter().flatten().collect();
        assert_eq!(statuses.len(), 96);
        let failed: Vec<&StatusCode> = statuses.iter().filter(|s| !s.is_success()).collect();
        assert!(
            failed.is_empty(),
            "{} of 96 failed: {failed:?}",
            failed.len()
        );
        w.visible += 10;
        let persons = w.persons().await;
        assert_eq!(persons.len(), 32, "8 clients x 4 ids");
        let last = w.person("c3-3").await.unwrap();
        assert_eq!(last["properties"]["n"], 11);
        assert_eq!(last["properties"]["client"], 3);
    }

    pub async fn ids_can_be_added_and_removed_through_the_api(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.segment(vec![
            track(Some("u1"), None, "x", 1),
            track(Some("old-device"), None, "y", 2),
        ])
        .await;
        let p = w.expect(&[&["u1"], &["old-device"]]).await;
        let id = p[0]["id"].as_str().unwrap();
        let added = w
            .call(
                Method::POST,
                &format!("/persons/{id}/distinct-ids"),
                Some(json!({"distinct_id": "u1-alt"})),
            )
            .await;
        assert_eq!(added.status, StatusCode::OK, "{:?}", added.body);
        let taken = w
            .call(
                Method::POST,
                &format!("/persons/{id}/distinct-ids"),
                Some(json!({"distinct_id": "old-device"})),
            )
            .await;
        assert_eq!(taken.status, StatusCode::CONFLICT);
        w.segment(vec![track(Some("u1-alt"), None, "z", 3)]).await;
        w.expect(&[&["u1", "u1-alt"], &["old-device"]]).await;
        let removed = w
            .call(
                Method::DELETE,
                &format!("/persons/{id}/distinct-ids/u1-alt"),
                None,
            )
            .await;
        assert_eq!(removed.status, StatusCode::OK, "{:?}", removed.body);
        let split_off = w.expect(&[&["u1"], &["u1-alt"], &["old-device"]]).await;
        assert_eq!(split_off[1]["recent_events"].as_array().unwrap().len(), 1);
    }

    pub async fn a_segment_message_with_both_ids_links_them(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.segment(vec![track(None, Some("a9"), "Viewed", 1)]).await;
        w.settle().await;
        w.segment(vec![track(Some("u9"), Some("a9"), "Bought", 2)])
            .await;
        w.expect(&[&["a9", "u9"]]).await;
    }

    pub async fn posthog_identify_of_an_identified_anon_person_is_refused(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.posthog(vec![
            ph("$pageview", "device", json!({}), 1),
            ph(
                "$identify",
                "alice",
                json!({"$anon_distinct_id": "device"}),
                2,
            ),
        ])
        .await;
        w.settle().await;
        w.posthog(vec![ph(
            "$identify",
            "bob",
            json!({"$anon_distinct_id": "device"}),
            3,
        )])
        .await;
        w.expect(&[&["device", "alice"], &["bob"]]).await;
        w.expect_warning("properties.$anon_distinct_id").await;
    }

    pub async fn persons_list_filters_and_pages(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.segment(vec![
            identify("ann@x.io", None, json!({"plan": "pro", "seats": 2}), 1),
            identify("bo@y.io", None, json!({"plan": "free"}), 2),
            identify("cy@x.io", None, json!({"plan": "pro"}), 3),
        ])
        .await;
        w.expect(&[&["ann@x.io"], &["bo@y.io"], &["cy@x.io"]]).await;
        // Property filters run in the store: they see updates once the workers flush.
        let started = Instant::now();
        loop {
            let pro = w
                .call(Method::GET, "/persons?property.plan=pro", None)
                .await;
            let n = pro.body["persons"].as_array().unwrap().len();
            if n == 2 {
                break;
            }
            assert!(
                n < 2 && started.elapsed() < Duration::from_secs(5),
                "{:?}",
                pro.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let seats = w
            .call(Method::GET, "/persons?property.seats=2&search=ANN", None)
            .await;
        assert_eq!(seats.body["persons"].as_array().unwrap().len(), 1);
        let page = w.call(Method::GET, "/persons?limit=2", None).await;
        assert_eq!(page.body["persons"].as_array().unwrap().len(), 2);
        let cursor = page.body["next_cursor"].as_str().unwrap();
        let rest = w
            .call(
                Method::GET,
                &format!("/persons?limit=2&cursor={cursor}"),
                None,
            )
            .await;
        assert_eq!(rest.body["persons"].as_array().unwrap().len(), 1);
        assert!(rest.body.get("next_cursor").is_none());
        let bad = w.call(Method::GET, "/persons?colour=red", None).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(bad.error_field(), "colour");
    }

    /// Waits until the workers' flushes have put `rows` events of the project in files.
    async fn wait_for_files(w: &World, rows: u64) {
        let project: appizer_core::ProjectId = w.project().parse().unwrap();
        let meta = &w.server.state.store;
        let scope = meta.project_scope(project).await.unwrap().unwrap();
        let started = std::time::Instant::now();
        loop {
            let files = meta.list_event_files(scope).await.unwrap();
            let stored: u64 = files.iter().map(|f| f.row_count).sum();
            if stored >= rows {
                return;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "the workers flushed {stored} of {rows} events"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn compaction_folds_merges_and_deletions_into_the_files(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.segment(vec![
            track(None, Some("anon"), "Viewed", 1),
            track(Some("user"), None, "Paid", 2),
            track(Some("leaver"), None, "Left", 3),
        ])
        .await;
        w.settle().await;
        let store = w.server.state.events.store.clone();
        wait_for_files(&w, 3).await;
        w.segment(vec![identify("user", Some("anon"), json!({}), 4)])
            .await;
        let p = w.expect(&[&["anon", "user"], &["leaver"]]).await;
        let leaver = p[1]["id"].as_str().unwrap();
        let a = w
            .call(Method::DELETE, &format!("/persons/{leaver}"), None)
            .await;
        assert_eq!(a.status, StatusCode::NO_CONTENT);
        w.visible -= 1;
        w.settle().await;
        wait_for_files(&w, 4).await;
        let done = store.compact().await.unwrap();
        assert!(done.files_in >= 1, "{done:?}");
        // Read the files as stored, without the overrides.
        let project: appizer_core::ProjectId = w.project().parse().unwrap();
        let scope = w
            .server
            .state
            .store
            .project_scope(project)
            .await
            .unwrap()
            .unwrap();
        let (rows, _) = appizer_storage::events::list_events(
            &store,
            scope,
            &appizer_storage::events::EventFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            rows.len(),
            3,
            "the deleted person's event is gone from the files"
        );
        let user = p[0]["id"].as_str().unwrap();
        for r in &rows {
            assert_eq!(r.person_id.as_deref(), Some(user), "{r:?}");
        }
        // And a second pass has nothing left to fold.
        assert_eq!(store.compact().await.unwrap().files_in, 0);
    }

    pub async fn a_viewer_reads_persons_but_cannot_change_them(b: Backend) {
        let Some(mut w) = World::start(b, |_| {}).await else {
            return;
        };
        w.segment(vec![track(Some("u1"), None, "x", 1)]).await;
        let id = w.expect(&[&["u1"]]).await[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let project = w.project();
        let (_, viewer) = w.api.create_key(w.admin(), &project, "viewer").await;
        let read = w
            .api
            .get(&format!("/api/v1/projects/{project}/persons/{id}"), &viewer)
            .await;
        assert_eq!(read.status, StatusCode::OK);
        let delete = w
            .api
            .call(
                Method::DELETE,
                &format!("/api/v1/projects/{project}/persons/{id}"),
                &viewer,
                None,
            )
            .await;
        assert_eq!(delete.status, StatusCode::FORBIDDEN);
    }
}

macro_rules! scenario_table {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::scenarios::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::scenarios::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

scenario_table!(
    anonymous_browsing_then_identify,
    posthog_identify_merges_the_anonymous_person,
    two_devices_one_user,
    a_second_user_on_the_same_device_is_not_merged,
    logout_with_a_reset_keeps_users_apart,
    alias_chains_link_every_id,
    posthog_create_alias_links_ids,
    placeholder_distinct_ids_get_no_person,
    placeholder_anonymous_ids_are_not_linked,
    out_of_order_set_keeps_the_newest_value,
    set_once_from_concurrent_batches_keeps_the_first,
    unset_is_not_undone_by_an_older_set,
    segment_traits_are_last_write_wins,
    delete_then_reingest_without_suppression,
    delete_with_suppression_drops_later_events,
    one_new_id_in_fifty_concurrent_batches_is_one_person,
    merge_then_split_restores_both_persons,
    identified_persons_are_never_merged_implicitly,
    merge_dangerously_merges_identified_persons,
    past_events_count_the_merged_person_once,
    the_distinct_id_cap_refuses_more_links,
    profiles_fill_themselves_in_from_events,
    server_side_identify_then_events_land_on_that_person,
    ids_can_be_added_and_removed_through_the_api,
    concurrent_person_writes_all_succeed,
    a_segment_message_with_both_ids_links_them,
    posthog_identify_of_an_identified_anon_person_is_refused,
    persons_list_filters_and_pages,
    a_viewer_reads_persons_but_cannot_change_them,
    compaction_folds_merges_and_deletions_into_the_files,
);
