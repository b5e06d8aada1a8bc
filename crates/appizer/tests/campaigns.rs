//! Campaigns over real HTTP: created as checked drafts, changed under optimistic
//! concurrency, moved through their states by actions (invalid moves are 409), audited,
//! previewed against the project's persons and devices, and test-sent through the
//! emulators. Every route is checked against every role.

mod common;

use common::push::{ios, start, Setup};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn draft() -> Value {
    json!({
        "name": "Spring sale",
        "when": {"type": "now"},
        "variants": [
            {"name": "A", "title": "Hi {{ person.first_name | default(\"there\") }}",
             "body": "20% off today",
             "translations": {"de": {"title": "Hallo {{ person.first_name | default(\"du\") }}",
                                     "body": "Heute 20% Rabatt"}}},
            {"name": "B", "title": "Sale", "body": "Everything must go"}
        ],
        "control_percent": 10
    })
}

impl Setup {
    fn campaigns(&self) -> String {
        format!("{}/campaigns", self.base)
    }

    async fn create(&self, key: &str, body: Value) -> common::Answer {
        self.api.post(&self.campaigns(), key, body).await
    }

    async fn act(&self, key: &str, id: &str, action: &str, body: Option<Value>) -> common::Answer {
        let path = format!("{}/{id}/{action}", self.campaigns());
        self.api.call(Method::POST, &path, key, body).await
    }

    async fn patch(&self, key: &str, id: &str, body: Value) -> common::Answer {
        let path = format!("{}/{id}", self.campaigns());
        self.api.call(Method::PATCH, &path, key, Some(body)).await
    }
}

#[tokio::test]
async fn a_campaign_is_drafted_changed_moved_through_its_states_and_audited() {
    let s = start().await;
    let admin = s.server.keys.admin_key.clone();
    let project = s.server.keys.project_id.to_string();
    let (_, marketer) = s.api.create_key(&admin, &project, "marketer").await;
    // Due tomorrow: it stays scheduled while this test moves it.
    let mut tomorrow = draft();
    tomorrow["when"] = json!({"type": "at", "at": chrono::Utc::now() + chrono::Duration::days(1)});
    let created = s.create(&marketer, tomorrow.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:#}", created.body);
    let c = &created.body;
    assert_eq!(c["state"], "draft");
    assert_eq!(c["version"], 1);
    assert_eq!(c["name"], "Spring sale");
    assert_eq!(c["variants"][1]["weight"], 1, "defaults are answered");
    assert_eq!(c["missed_run"], "run");
    let id = c["id"].as_str().unwrap().to_string();
    let read = s
        .api
        .get(&format!("{}/{id}", s.campaigns()), &marketer)
        .await;
    let mut read_body = read.body.clone();
    assert_eq!(read_body["runs"], json!([]), "no run yet");
    read_body.as_object_mut().unwrap().remove("runs");
    assert_eq!(read_body, created.body, "a read answers what the write did");

    // A change names the version read: a stale one is 409 and changes nothing.
    let renamed = s
        .patch(
            &marketer,
            &id,
            json!({"version": 1, "name": "Spring sale 2", "control_percent": 20}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:#}", renamed.body);
    assert_eq!(
        (
            renamed.body["version"].as_u64(),
            renamed.body["control_percent"].as_u64()
        ),
        (Some(2), Some(20))
    );
    assert_eq!(
        renamed.body["variants"], created.body["variants"],
        "untouched fields stay"
    );
    let stale = s
        .patch(&marketer, &id, json!({"version": 1, "name": "Late"}))
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{:#}", stale.body);
    assert!(stale.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("version 2"));
    // A bad change is a 400 naming its field, and nothing is written.
    let bad = s
        .patch(
            &marketer,
            &id,
            json!({"variants": [{"name": "A", "title": "{{ person.x", "body": "b"}]}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.error_field(), "variants[0].title");
    let unknown = s.patch(&marketer, &id, json!({"colour": "red"})).await;
    assert_eq!(
        unknown.status,
        StatusCode::BAD_REQUEST,
        "{:#}",
        unknown.body
    );

    // Scheduling needs a provider for one of its platforms.
    let early = s.act(&marketer, &id, "schedule", None).await;
    assert_eq!(early.status, StatusCode::BAD_REQUEST, "{:#}", early.body);
    assert_eq!(early.error_field(), "audience.platforms");
    s.providers().await;
    let scheduled = s
        .act(&marketer, &id, "schedule", Some(json!({"version": 2})))
        .await;
    assert_eq!(scheduled.status, StatusCode::OK, "{:#}", scheduled.body);
    assert_eq!(scheduled.body["state"], "scheduled");
    // Only a draft's definition changes; pacing and the name still may.
    let frozen = s
        .patch(
            &marketer,
            &id,
            json!({"variants": [{"name": "C", "title": "x", "body": "y"}]}),
        )
        .await;
    assert_eq!(frozen.status, StatusCode::CONFLICT, "{:#}", frozen.body);
    let paced = s
        .patch(&marketer, &id, json!({"pacing": {"per_minute": 500}}))
        .await;
    assert_eq!(paced.status, StatusCode::OK, "{:#}", paced.body);
    assert_eq!(paced.body["pacing"]["per_minute"], 500);
    // The state table: pause, resume (back to scheduled: no run began), cancel.
    let twice = s.act(&marketer, &id, "schedule", None).await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert!(twice.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("a scheduled campaign cannot schedule"));
    for (action, state) in [
        ("pause", "paused"),
        ("resume", "scheduled"),
        ("cancel", "cancelled"),
    ] {
        let a = s.act(&marketer, &id, action, None).await;
        assert_eq!(a.status, StatusCode::OK, "{action}: {:#}", a.body);
        assert_eq!(a.body["state"], state, "{action}");
    }
    for action in ["pause", "resume", "cancel", "schedule"] {
        let a = s.act(&marketer, &id, action, None).await;
        assert_eq!(a.status, StatusCode::CONFLICT, "{action} after cancel");
        assert_eq!(a.error_code(), "conflict");
    }
    // A live campaign cannot be deleted; a cancelled one can.
    let live = s.create(&marketer, draft()).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.act(&marketer, &live, "schedule", None).await.status,
        StatusCode::OK
    );
    let path = |id: &str| format!("{}/{id}", s.campaigns());
    let refused = s
        .api
        .call(Method::DELETE, &path(&live), &marketer, None)
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    let deleted = s
        .api
        .call(Method::DELETE, &path(&id), &marketer, None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:#}", deleted.body);
    assert_eq!(
        s.api.get(&path(&id), &marketer).await.status,
        StatusCode::NOT_FOUND
    );

    // Listing by state, paged.
    assert_eq!(
        s.create(&marketer, draft()).await.status,
        StatusCode::CREATED
    );
    let page = s
        .api
        .get(&format!("{}?state=scheduled", s.campaigns()), &marketer)
        .await;
    let ids: Vec<&str> = page.body["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [live.as_str()]);
    let first = s
        .api
        .get(&format!("{}?limit=1", s.campaigns()), &marketer)
        .await;
    assert_eq!(first.body["campaigns"].as_array().unwrap().len(), 1);
    assert!(first.body["next_cursor"].is_string());
    let bad_state = s
        .api
        .get(&format!("{}?state=asleep", s.campaigns()), &marketer)
        .await;
    assert_eq!(bad_state.error_field(), "state");

    // Every change is in the audit log, in order.
    let log = s
        .api
        .get(&format!("{}/audit-log?limit=100", s.base), &admin)
        .await;
    let actions: Vec<&str> = log.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target_id"] == id.as_str())
        .map(|e| e["action"].as_str().unwrap())
        .rev()
        .collect();
    assert_eq!(
        actions,
        [
            "campaign.create",
            "campaign.update",
            "campaign.schedule",
            "campaign.update",
            "campaign.pause",
            "campaign.resume",
            "campaign.cancel",
            "campaign.delete"
        ]
    );
}

#[tokio::test]
async fn a_definition_is_refused_naming_its_field() {
    let s = start().await;
    let admin = s.server.keys.admin_key.clone();
    let with = |patch: Value| {
        let mut body = draft();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for (body, field) in [
        (json!({"when": {"type": "now"}, "variants": []}), "name"),
        (with(json!({"name": " "})), "name"),
        (with(json!({"variants": []})), "variants"),
        (with(json!({"when": {"type": "weekly"}})), "when.type"),
        (
            with(json!({"when": {"type": "recurring", "cron": "61 * * * *"}})),
            "when.cron",
        ),
        (
            with(json!({"variants": [{"name": "A", "title": "{{ event.sku }}", "body": "b"}]})),
            "variants[0].title",
        ),
        (
            with(json!({"audience": {"segments": ["0191c0de-0000-7000-8000-000000000000"]}})),
            "audience.segments[0]",
        ),
        (
            with(
                json!({"audience": {"condition": {"type": "performed", "event": "x", "days": 0}}}),
            ),
            "audience.condition.days",
        ),
        (
            with(json!({"goal": {"metric_id": "0191c0de-0000-7000-8000-000000000000"}})),
            "goal.metric_id",
        ),
        (with(json!({"control_percent": 70})), "control_percent"),
    ] {
        let a = s.create(&admin, body.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {:#}", a.body);
        assert_eq!(a.error_field(), field, "{body}: {:#}", a.body);
    }
    let list = s.api.get(&s.campaigns(), &admin).await;
    assert_eq!(list.body["campaigns"], json!([]), "nothing was stored");
    // A time already past cannot be scheduled.
    let past = s
        .create(
            &admin,
            with(json!({"when": {"type": "at", "at": "2020-01-01T00:00:00Z"}})),
        )
        .await;
    assert_eq!(past.status, StatusCode::CREATED);
    s.put_provider("webpush", json!({"subject": "mailto:ops@example.com"}))
        .await;
    let id = past.body["id"].as_str().unwrap();
    let a = s.act(&admin, id, "schedule", None).await;
    assert_eq!(
        (a.status, a.error_field()),
        (StatusCode::BAD_REQUEST, "when.at")
    );
}

#[tokio::test]
async fn every_campaign_route_answers_each_role_by_the_access_table() {
    let s = start().await;
    let admin = s.server.keys.admin_key.clone();
    let project = s.server.keys.project_id.to_string();
    let id = s.create(&admin, draft()).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let device = s.register(ios("alice", &"a1".repeat(32))).await;
    for role in ["viewer", "analyst", "marketer", "admin"] {
        let (_, key) = s.api.create_key(&admin, &project, role).await;
        let writes = matches!(role, "marketer" | "admin");
        let list = s.api.get(&s.campaigns(), &key).await;
        assert_eq!(list.status, StatusCode::OK, "{role} reads");
        let one = s.api.get(&format!("{}/{id}", s.campaigns()), &key).await;
        assert_eq!(one.status, StatusCode::OK, "{role} reads one");
        let preview = s
            .api
            .post(&format!("{}/preview", s.campaigns()), &key, draft())
            .await;
        assert_eq!(
            preview.status,
            StatusCode::OK,
            "{role} previews: {:#}",
            preview.body
        );
        let writes_answer = [
            s.create(&key, draft()).await.status,
            s.patch(&key, &id, json!({"name": format!("by {role}")}))
                .await
                .status,
            s.act(
                &key,
                &id,
                "test-send",
                Some(json!({"device_ids": [device]})),
            )
            .await
            .status,
            s.act(&key, &id, "pause", None).await.status,
            s.act(&key, &id, "resume", None).await.status,
            s.act(&key, &id, "cancel", None).await.status,
            s.act(&key, &id, "schedule", None).await.status,
        ];
        for (i, status) in writes_answer.iter().enumerate() {
            if writes {
                assert_ne!(*status, StatusCode::FORBIDDEN, "{role} write {i}");
            } else {
                assert_eq!(*status, StatusCode::FORBIDDEN, "{role} write {i}");
            }
        }
    }
    // A key of another project never learns the campaign exists.
    let other = s.api.create_project(&admin, "Other").await;
    let (_, outsider) = s.api.create_key(&admin, &other, "admin").await;
    let a = s
        .api
        .get(&format!("{}/{id}", s.campaigns()), &outsider)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let theirs = format!("/api/v1/projects/{other}/campaigns/{id}");
    assert_eq!(
        s.api.get(&theirs, &outsider).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_preview_counts_the_audience_and_renders_each_variant_and_a_test_send_arrives() {
    let s = start().await;
    let admin = s.server.keys.admin_key.clone();
    let subscription = s.providers().await;
    s.register(ios("alice", &"a1".repeat(32))).await;
    s.register(json!({"distinct_id": "alice", "platform": "web", "subscription": subscription}))
        .await;
    let bob_device = s
        .register(json!({"distinct_id": "bob", "platform": "android", "token": "bob-fcm-token"}))
        .await;
    s.register(ios("carol", &"c3".repeat(32))).await;
    s.register(ios("dave", &"d4".repeat(32))).await;
    let now = chrono::Utc::now().to_rfc3339();
    s.capture(vec![
        json!({"type": "identify", "userId": "alice", "timestamp": now,
               "traits": {"first_name": "Alice", "plan": "pro", "$locale": "en-GB"}}),
        json!({"type": "identify", "userId": "bob", "timestamp": now,
               "traits": {"first_name": "Bernd", "plan": "pro", "$locale": "de-DE"}}),
        json!({"type": "identify", "userId": "carol", "timestamp": now,
               "traits": {"plan": "pro"}}),
        json!({"type": "identify", "userId": "dave", "timestamp": now,
               "traits": {"first_name": "Dave", "plan": "free"}}),
    ])
    .await;
    // Person properties reach the person store with the workers' next flush.
    let started = std::time::Instant::now();
    while s
        .api
        .get(&format!("{}/persons?property.plan=pro", s.base), &admin)
        .await
        .body["persons"]
        .as_array()
        .is_none_or(|p| p.len() < 3)
    {
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let churned = s
        .api
        .post(
            &format!("{}/segments", s.base),
            &admin,
            json!({"name": "Churned", "kind": "static", "distinct_ids": ["carol"]}),
        )
        .await;
    assert_eq!(churned.status, StatusCode::CREATED, "{:#}", churned.body);
    let mut body = draft();
    body["audience"] = json!({
        "condition": {"type": "property", "key": "plan", "value": "pro"},
        "exclude_segments": [churned.body["id"]],
    });
    body["sample"] = json!(5);
    let preview = s
        .api
        .post(&format!("{}/preview", s.campaigns()), &admin, body.clone())
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{:#}", preview.body);
    let p = &preview.body;
    // alice (iPhone and browser) and bob (Android): pro and not churned.
    assert_eq!(
        (p["persons"].as_u64(), p["devices"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(p["platforms"], json!({"ios": 1, "android": 1, "web": 1}));
    assert_eq!(p["sendable_platforms"], json!(["ios", "android", "web"]));
    let groups: u64 = p["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["persons"].as_u64().unwrap())
        .sum();
    assert_eq!(groups, 2);
    let rendered = |name: &str, variant: &str| -> (String, Option<String>) {
        let r = p["sample"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["variant"] == variant && r["title"].as_str().unwrap().contains(name))
            .unwrap_or_else(|| panic!("{name} {variant}: {p:#}"));
        (
            r["title"].as_str().unwrap().to_string(),
            r["locale"].as_str().map(str::to_string),
        )
    };
    assert_eq!(rendered("Alice", "A"), ("Hi Alice".to_string(), None));
    assert_eq!(
        rendered("Bernd", "A"),
        ("Hallo Bernd".to_string(), Some("de".to_string()))
    );
    assert_eq!(
        p["sample"].as_array().unwrap().len(),
        4,
        "two variants for two persons"
    );

    // A test send renders for the device's person and arrives.
    let created = s.create(&admin, draft()).await;
    let id = created.body["id"].as_str().unwrap();
    let sent = s
        .act(
            &admin,
            id,
            "test-send",
            Some(json!({"device_ids": [bob_device], "variant": "A"})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{:#}", sent.body);
    assert_eq!(sent.body["sent"][0]["title"], "Hallo Bernd");
    let message = sent.body["sent"][0]["message_id"].as_str().unwrap();
    let status = s.delivered(message).await;
    assert_eq!(status["counts"]["sent"], 1, "{status:#}");
    assert_eq!(
        status["campaign_id"],
        Value::Null,
        "a test is not part of the campaign"
    );
    let fcm = s.emulator_get("/fcm/messages").await;
    assert!(fcm.to_string().contains("Hallo Bernd"), "{fcm:#}");
    let unknown = s
        .act(
            &admin,
            id,
            "test-send",
            Some(json!({"device_ids": [bob_device], "variant": "Z"})),
        )
        .await;
    assert_eq!(unknown.error_field(), "variant");
}

/// An iOS token for person `i`.
fn token(i: usize) -> String {
    format!("{:0>64x}", 0x00c0_ffee_0000_u64 + i as u64)
}

impl Setup {
    /// `n` persons `user{i}` (first name `U{i}`, cohort `spring`), each with an iPhone,
    /// their properties in the person store.
    async fn cohort(&self, n: usize) {
        for i in 0..n {
            self.register(ios(&format!("user{i}"), &token(i))).await;
        }
        let now = chrono::Utc::now().to_rfc3339();
        self.capture(
            (0..n)
                .map(|i| {
                    json!({"type": "identify", "userId": format!("user{i}"), "timestamp": now,
                           "traits": {"first_name": format!("U{i}"), "cohort": "spring"}})
                })
                .collect(),
        )
        .await;
        self.persons_with_cohort("spring", n).await;
    }

    /// Waits until `n` persons have the property `cohort` = `cohort`.
    async fn persons_with_cohort(&self, cohort: &str, n: usize) {
        let started = std::time::Instant::now();
        while self
            .api
            .get(
                &format!("{}/persons?property.cohort={cohort}&limit=1000", self.base),
                &self.server.keys.admin_key,
            )
            .await
            .body["persons"]
            .as_array()
            .is_none_or(|p| p.len() < n)
        {
            assert!(started.elapsed() < std::time::Duration::from_secs(20));
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The campaign once `done` holds for it.
    async fn campaign_until(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        self.campaign_within(id, std::time::Duration::from_secs(30), done)
            .await
    }

    /// The campaign once `done` holds for it, waiting at most `limit`.
    async fn campaign_within(
        &self,
        id: &str,
        limit: std::time::Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let started = std::time::Instant::now();
        loop {
            let c = self
                .api
                .get(
                    &format!("{}/{id}", self.campaigns()),
                    &self.server.keys.admin_key,
                )
                .await
                .body;
            if done(&c) {
                return c;
            }
            assert!(started.elapsed() < limit, "{c:#}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The APNs notifications received once `done` holds for their count.
    async fn received_until(&self, done: impl Fn(u64) -> bool) -> Value {
        let started = std::time::Instant::now();
        loop {
            let apns = self.emulator_get("/apns/notifications").await;
            if done(apns["total"].as_u64().unwrap_or(0)) {
                return apns;
            }
            // Winner mode waits its minute before the rest.
            assert!(
                started.elapsed() < std::time::Duration::from_secs(90),
                "{apns:#}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Persons assigned per group (`$push_assigned` by `$push_variant`), from the
    /// analytics engine.
    async fn assigned(&self) -> std::collections::BTreeMap<String, u64> {
        let trends = self
            .query(
                "trends",
                json!({"series": [{"event": "$push_assigned", "math": "unique_persons"}],
                       "date_range": {"from": "-1d"},
                       "breakdown": {"key": "$push_variant"}}),
            )
            .await;
        trends["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["breakdown_value"].as_str().unwrap_or("").to_string(),
                    r["aggregated"].as_f64().unwrap_or(0.0) as u64,
                )
            })
            .collect()
    }
}

#[tokio::test]
async fn a_campaign_sends_each_person_their_variant_once_and_records_every_group() {
    let s = start().await;
    s.providers().await;
    let n = 40;
    s.cohort(n).await;
    let admin = s.server.keys.admin_key.clone();
    let created = s
        .create(
            &admin,
            json!({
                "name": "Welcome",
                "when": {"type": "now"},
                "audience": {"condition": {"type": "property", "key": "cohort", "value": "spring"}},
                "variants": [
                    {"name": "A", "title": "Hi {{ person.first_name }}", "body": "a"},
                    {"name": "B", "title": "Hello {{ person.first_name }}", "body": "b"}
                ],
                "control_percent": 20
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:#}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    let scheduled = s.act(&admin, &id, "schedule", None).await;
    assert_eq!(scheduled.status, StatusCode::OK, "{:#}", scheduled.body);
    s.campaign_until(&id, |c| c["state"] == "completed").await;
    common::settle(&s.server).await;
    let groups = s.assigned().await;
    assert_eq!(groups.values().sum::<u64>(), n as u64, "{groups:?}");
    let sent = groups.get("A").copied().unwrap_or(0) + groups.get("B").copied().unwrap_or(0);
    assert!(
        groups.get("control").copied().unwrap_or(0) > 0,
        "{groups:?}"
    );
    let apns = s.received_until(|total| total >= sent).await;
    assert_eq!(apns["total"], sent, "{apns:#}");
    // Each variant person received their own text once; the control nothing.
    for note in apns["notifications"].as_array().unwrap() {
        let token = note["token"].as_str().unwrap();
        let i = (0..n)
            .find(|i| self::token(*i) == token)
            .expect("a cohort token");
        assert_eq!(apns["per_token"][token], 1, "once: {token}");
        let title = note["payload"]["aps"]["alert"]["title"].as_str().unwrap();
        let expected = match note["payload"]["$push_variant"].as_str().unwrap() {
            "A" => format!("Hi U{i}"),
            "B" => format!("Hello U{i}"),
            other => panic!("variant {other}"),
        };
        assert_eq!(title, expected);
        assert_eq!(note["payload"]["$push_campaign_id"], id.as_str());
    }
    // Scheduling again changes nothing: a completed campaign cannot.
    let again = s.act(&admin, &id, "schedule", None).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(s.emulator_get("/apns/notifications").await["total"], sent);
}

/// Each delivery's device token and due time, from the server's outbox.
async fn due_times(s: &Setup) -> std::collections::BTreeMap<String, Vec<String>> {
    sqlx::any::install_default_drivers();
    let url = format!(
        "sqlite://{}",
        s.server.data_dir().join("metadata.db").display()
    );
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT d.address, o.due_at FROM push_outbox o \
         JOIN push_devices d ON d.id = o.device_id ORDER BY o.due_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    let mut by_token = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (address, due_at) in rows {
        let at = chrono::DateTime::from_timestamp_millis(due_at).unwrap();
        by_token
            .entry(address)
            .or_default()
            .push(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    by_token
}

#[tokio::test]
async fn local_time_sends_follow_each_zones_daylight_saving_and_quiet_hours() {
    let s = start().await;
    s.providers().await;
    // Berlin moves to summer time on 2027-03-28, New York on 2027-03-14; the third
    // person has no zone and gets the project's (UTC).
    let zones = [Some("Europe/Berlin"), Some("America/New_York"), None];
    let now = chrono::Utc::now().to_rfc3339();
    let mut identifies = Vec::new();
    for (i, zone) in zones.iter().enumerate() {
        s.register(ios(&format!("z{i}"), &token(i))).await;
        let mut traits = json!({"cohort": "zones"});
        if let Some(zone) = zone {
            traits["$timezone"] = json!(zone);
        }
        identifies.push(json!({"type": "identify", "userId": format!("z{i}"),
                               "timestamp": now, "traits": traits}));
    }
    s.capture(identifies).await;
    s.persons_with_cohort("zones", zones.len()).await;
    let admin = s.server.keys.admin_key.clone();
    let mut ids = Vec::new();
    for (name, time, quiet) in [
        ("Nine", "09:00", Value::Null),
        // 02:30 does not exist in Berlin that night; either way it is inside the
        // quiet hours, which end at 08:00 local time.
        ("Night", "02:30", json!({"start": "22:00", "end": "08:00"})),
    ] {
        let mut body = json!({
            "name": name,
            "when": {"type": "local_time", "date": "2027-03-28", "time": time},
            "variants": [{"name": "A", "title": "Hi", "body": "a"}]
        });
        if !quiet.is_null() {
            body["quiet_hours"] = quiet;
        }
        let created = s.create(&admin, body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{:#}", created.body);
        let id = created.body["id"].as_str().unwrap().to_string();
        assert_eq!(
            s.act(&admin, &id, "schedule", None).await.status,
            StatusCode::OK
        );
        ids.push(id);
    }
    // Not due yet: a local-time run starts when the first zone (UTC+14) reaches it.
    let at = |t: &str| t.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    s.server
        .runner
        .tick(at("2027-03-27T12:00:00Z"))
        .await
        .unwrap();
    assert!(due_times(&s).await.is_empty());
    // The runner's pass at that time starts both runs; the next walks them.
    for _ in 0..2 {
        s.server
            .runner
            .tick(at("2027-03-27T19:00:00Z"))
            .await
            .unwrap();
    }
    let due = due_times(&s).await;
    let expected = [
        // Berlin: 09:00 CEST; 08:00 CEST (quiet hours' end).
        (token(0), ["2027-03-28T06:00:00Z", "2027-03-28T07:00:00Z"]),
        // New York: 08:00 EDT; 09:00 EDT (summer time since 2027-03-14).
        (token(1), ["2027-03-28T12:00:00Z", "2027-03-28T13:00:00Z"]),
        // The project's zone.
        (token(2), ["2027-03-28T08:00:00Z", "2027-03-28T09:00:00Z"]),
    ];
    for (token, times) in expected {
        assert_eq!(
            due.get(&token).cloned(),
            Some(times.map(String::from).to_vec()),
            "{due:#?}"
        );
    }
    for id in &ids {
        let c = s.api.get(&format!("{}/{id}", s.campaigns()), &admin).await;
        assert_eq!(c.body["state"], "running", "{:#}", c.body);
        assert_eq!(c.body["runs"][0]["queued"], 3, "{:#}", c.body);
    }
}

#[tokio::test]
async fn a_recurring_campaign_sends_each_cron_run_separately_with_its_own_report() {
    let s = start().await;
    s.providers().await;
    let n = 5;
    s.cohort(n).await;
    let admin = s.server.keys.admin_key.clone();
    let created = s
        .create(
            &admin,
            json!({
                "name": "Every minute",
                "when": {"type": "recurring", "cron": "* * * * *", "timezone": "Asia/Kolkata"},
                "variants": [{"name": "A", "title": "Hi {{ person.first_name }}", "body": "a"}]
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:#}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.act(&admin, &id, "schedule", None).await.status,
        StatusCode::OK
    );
    // Two runs, a minute apart, each to everyone; between them the campaign waits.
    let campaign = s
        .campaign_within(&id, std::time::Duration::from_secs(150), |c| {
            c["runs"]
                .as_array()
                .is_some_and(|r| r.len() >= 2 && r.iter().take(2).all(|r| r["state"] == "sent"))
        })
        .await;
    assert_eq!(
        s.act(&admin, &id, "cancel", None).await.status,
        StatusCode::OK
    );
    let runs = campaign["runs"].as_array().unwrap();
    let due: Vec<chrono::DateTime<chrono::Utc>> = runs
        .iter()
        .take(2)
        .map(|r| r["due_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(due[1] - due[0], chrono::Duration::minutes(1), "{runs:#?}");
    assert_eq!(chrono::Timelike::second(&due[0]), 0);
    let apns = s.emulator_get("/apns/notifications").await;
    for i in 0..n {
        assert_eq!(
            apns["per_token"][token(i)],
            2,
            "person {i} once a run: {apns:#}"
        );
    }
    // Each run's report counts its own sends.
    common::settle(&s.server).await;
    for run in runs.iter().take(2) {
        let key = run["key"].as_str().unwrap();
        let started = std::time::Instant::now();
        loop {
            let report = s
                .api
                .get(&format!("{}/{id}/report?run={key}", s.campaigns()), &admin)
                .await;
            assert_eq!(report.status, StatusCode::OK, "{:#}", report.body);
            let a = &report.body["groups"][0];
            if a["sent"] == n {
                assert_eq!(a["assigned"], n, "{:#}", report.body);
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "{:#}",
                report.body
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn a_throttled_campaign_sends_at_its_rate_per_minute() {
    const PER_MINUTE: u64 = 1200;
    let s = start().await;
    s.providers().await;
    let n = 60;
    s.cohort(n).await;
    let admin = s.server.keys.admin_key.clone();
    let created = s
        .create(
            &admin,
            json!({
                "name": "Paced",
                "when": {"type": "now"},
                "variants": [{"name": "A", "title": "Hi", "body": "a"}],
                "pacing": {"per_minute": PER_MINUTE}
            }),
        )
        .await;
    let id = created.body["id"].as_str().unwrap().to_string();
    let scheduled = std::time::Instant::now();
    assert_eq!(
        s.act(&admin, &id, "schedule", None).await.status,
        StatusCode::OK
    );
    // A second's worth goes at once; each of the rest takes 60 s / rate of the
    // schedule, which starts after the campaign was scheduled.
    s.received_until(|total| total >= n as u64).await;
    let elapsed = scheduled.elapsed().as_secs_f64();
    let spaced = (n as u64 - PER_MINUTE / 60) as f64;
    let rate = spaced / elapsed * 60.0;
    eprintln!("{n} sends in {elapsed:.2} s: {spaced} spaced at {rate:.0} a minute");
    assert!(
        rate <= PER_MINUTE as f64,
        "{rate:.0} a minute is over the throttle"
    );
    assert!(rate >= PER_MINUTE as f64 * 0.4, "{rate:.0} a minute");
    s.campaign_until(&id, |c| c["state"] == "completed").await;
    assert_eq!(s.emulator_get("/apns/notifications").await["total"], n);
}

#[tokio::test]
async fn pausing_stops_sending_within_a_second_and_resuming_sends_the_rest_once() {
    let s = start().await;
    s.providers().await;
    let n = 20;
    s.cohort(n).await;
    let admin = s.server.keys.admin_key.clone();
    let created = s
        .create(
            &admin,
            json!({
                "name": "Slow",
                "when": {"type": "now"},
                "audience": {"condition": {"type": "property", "key": "cohort", "value": "spring"}},
                "variants": [{"name": "A", "title": "Hi {{ person.first_name }}", "body": "a"}],
                "pacing": {"per_minute": 240}
            }),
        )
        .await;
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.act(&admin, &id, "schedule", None).await.status,
        StatusCode::OK
    );
    // Four a minute... a second: wait for a few, then pause.
    s.received_until(|total| total >= 6).await;
    let paused = s.act(&admin, &id, "pause", None).await;
    assert_eq!(paused.status, StatusCode::OK, "{:#}", paused.body);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let at_pause = s.emulator_get("/apns/notifications").await["total"]
        .as_u64()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let later = s.emulator_get("/apns/notifications").await["total"]
        .as_u64()
        .unwrap();
    assert_eq!(later, at_pause, "nothing sent while paused");
    assert!(at_pause < n as u64, "paused before the end ({at_pause})");
    let resumed = s.act(&admin, &id, "resume", None).await;
    assert_eq!(resumed.status, StatusCode::OK, "{:#}", resumed.body);
    let apns = s.received_until(|total| total >= n as u64).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let apns_after = s.emulator_get("/apns/notifications").await;
    assert_eq!(apns_after["total"], n, "{apns:#}");
    for i in 0..n {
        assert_eq!(apns_after["per_token"][token(i)], 1, "person {i} once");
    }
    s.campaign_until(&id, |c| c["state"] == "completed").await;
}

#[tokio::test]
async fn an_abandoned_cart_is_reminded_after_its_delay_unless_a_purchase_comes_first() {
    let s = start().await;
    s.providers().await;
    s.cohort(3).await;
    let admin = s.server.keys.admin_key.clone();
    let created = s
        .create(
            &admin,
            json!({
                "name": "Abandoned cart",
                "when": {"type": "triggered", "event": "add_to_cart", "delay_seconds": 2,
                         "properties": [{"key": "price", "operator": "gte", "value": 10}],
                         "cancel_if": "purchase"},
                "variants": [{"name": "A",
                              "title": "Still want {{ event.sku | default(\"it\") }}, {{ person.first_name }}?",
                              "body": "Your cart is waiting"}]
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:#}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.act(&admin, &id, "schedule", None).await.status,
        StatusCode::OK
    );
    s.campaign_until(&id, |c| c["state"] == "running").await;
    // Armed at the runner's next pass.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let track = |user: &str, event: &str, properties: Value| {
        json!({"type": "track", "userId": user, "event": event, "properties": properties,
               "timestamp": chrono::Utc::now().to_rfc3339()})
    };
    let started = std::time::Instant::now();
    s.capture(vec![
        track(
            "user0",
            "add_to_cart",
            json!({"sku": "RED-42", "price": 25}),
        ),
        track(
            "user1",
            "add_to_cart",
            json!({"sku": "BLUE-7", "price": 30}),
        ),
        // Below the trigger's condition: no entry.
        track("user2", "add_to_cart", json!({"sku": "PIN", "price": 2})),
    ])
    .await;
    // user1 buys within the delay: their reminder is cancelled.
    s.capture(vec![track("user1", "purchase", json!({"total": 30}))])
        .await;
    let apns = s.received_until(|total| total >= 1).await;
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "sent after the delay, not before"
    );
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let apns_after = s.emulator_get("/apns/notifications").await;
    assert_eq!(apns_after["total"], 1, "{apns:#}");
    let note = &apns_after["notifications"][0];
    assert_eq!(note["token"], token(0).as_str());
    assert_eq!(
        note["payload"]["aps"]["alert"]["title"], "Still want RED-42, U0?",
        "the trigger event's and the person's properties"
    );
    // Once ever (the default re-entry rule): a second cart sends nothing more.
    s.capture(vec![track(
        "user0",
        "add_to_cart",
        json!({"sku": "RED-43", "price": 40}),
    )])
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(s.emulator_get("/apns/notifications").await["total"], 1);
    // Every entry is assigned, as for a run.
    common::settle(&s.server).await;
    let groups = s.assigned().await;
    assert_eq!(groups.get("A").copied(), Some(1), "{groups:?}");
}

#[tokio::test]
async fn winner_mode_sends_the_test_share_then_the_variant_opened_most_to_the_rest() {
    let s = start().await;
    s.providers().await;
    let n = 40;
    s.cohort(n).await;
    let admin = s.server.keys.admin_key.clone();
    let created = s
        .create(
            &admin,
            json!({
                "name": "Which one",
                "when": {"type": "now"},
                "audience": {"condition": {"type": "property", "key": "cohort", "value": "spring"}},
                "variants": [{"name": "A", "title": "a", "body": "a"},
                             {"name": "B", "title": "b", "body": "b"}],
                "winner": {"test_percent": 50, "wait_minutes": 1, "by": "opens"}
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:#}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.act(&admin, &id, "schedule", None).await.status,
        StatusCode::OK
    );
    // The test share arrives; only B's recipients open it.
    s.received_until(|total| total > 0).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let test = s.emulator_get("/apns/notifications").await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        s.emulator_get("/apns/notifications").await["total"],
        test["total"],
        "nothing more until the decision"
    );
    let share = test["total"].as_u64().unwrap();
    assert!(share > 5 && share < n as u64, "about half: {share}");
    let opens: Vec<Value> = test["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|note| note["payload"]["$push_variant"] == "B")
        .map(|note| {
            let token = note["token"].as_str().unwrap();
            let i = (0..n).find(|i| self::token(*i) == token).unwrap();
            json!({"type": "track", "userId": format!("user{i}"), "event": "$push_opened",
                   "properties": {"$push_campaign_id": id, "$push_variant": "B",
                                  "$push_message_id": note["payload"]["$push_message_id"]},
                   "timestamp": chrono::Utc::now().to_rfc3339()})
        })
        .collect();
    assert!(!opens.is_empty(), "{test:#}");
    s.capture(opens).await;
    // After the wait, the rest receive B.
    let all = s.received_until(|total| total >= n as u64).await;
    s.campaign_until(&id, |c| c["state"] == "completed").await;
    let notes = all["notifications"].as_array().unwrap();
    assert_eq!(all["total"], n, "everyone once: {all:#}");
    for note in &notes[share as usize..] {
        assert_eq!(
            note["payload"]["$push_variant"], "B",
            "the rest get the winner"
        );
    }
    let report = s
        .api
        .get(&format!("{}/{id}/report", s.campaigns()), &admin)
        .await;
    let runs = report.body["runs"].as_array().unwrap();
    let rest = runs
        .iter()
        .find(|r| r["phase"] == "rest")
        .expect("a rest run");
    assert_eq!(rest["decision"]["winner_name"], "B", "{:#}", report.body);
    assert_eq!(rest["decision"]["measure"], "opens");
}

#[tokio::test]
async fn the_projects_frequency_cap_drops_or_defers_and_a_campaign_may_opt_out() {
    let s = start().await;
    s.providers().await;
    let n = 4;
    s.cohort(n).await;
    let admin = s.server.keys.admin_key.clone();
    let project = format!("/api/v1/projects/{}", s.server.keys.project_id);
    let cap = |max: u32, window: u64| {
        let (api, admin, project) = (&s.api, admin.clone(), project.clone());
        async move {
            api.call(
                Method::PATCH,
                &project,
                &admin,
                Some(json!({"frequency_cap": {"max": max, "window_seconds": window}})),
            )
            .await
        }
    };
    let bad = cap(0, 60).await;
    assert_eq!(
        (bad.status, bad.error_field()),
        (StatusCode::BAD_REQUEST, "frequency_cap.max")
    );
    let set = cap(1, 3600).await;
    assert_eq!(set.status, StatusCode::OK, "{:#}", set.body);
    assert_eq!(set.body["frequency_cap"]["max"], 1);
    let send = |name: &str, pacing: Value| {
        let (s, admin) = (&s, admin.clone());
        let body = json!({
            "name": name, "when": {"type": "now"}, "pacing": pacing,
            "audience": {"condition": {"type": "property", "key": "cohort", "value": "spring"}},
            "variants": [{"name": "A", "title": name, "body": "b"}]
        });
        async move {
            let id = s.create(&admin, body).await.body["id"]
                .as_str()
                .unwrap()
                .to_string();
            assert_eq!(
                s.act(&admin, &id, "schedule", None).await.status,
                StatusCode::OK
            );
            s.campaign_until(&id, |c| c["state"] == "completed").await;
        }
    };
    send("first", json!({})).await;
    s.received_until(|total| total >= n as u64).await;
    // One a person an hour: the second is dropped for everyone.
    send("second", json!({"over_cap": "drop"})).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(s.emulator_get("/apns/notifications").await["total"], n);
    // A campaign that opts out goes through.
    send("urgent", json!({"ignore_frequency_cap": true})).await;
    s.received_until(|total| total >= 2 * n as u64).await;
    // Deferred: sent when the window (now 3 s) lets it.
    assert_eq!(cap(1, 3).await.status, StatusCode::OK);
    let started = std::time::Instant::now();
    let id = s
        .create(
            &admin,
            json!({"name": "later", "when": {"type": "now"}, "pacing": {"over_cap": "defer"},
                   "audience": {"condition": {"type": "property", "key": "cohort", "value": "spring"}},
                   "variants": [{"name": "A", "title": "later", "body": "b"}]}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.act(&admin, &id, "schedule", None).await.status,
        StatusCode::OK
    );
    let apns = s.received_until(|total| total >= 3 * n as u64).await;
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1_500),
        "deferred past the window: {:?}",
        started.elapsed()
    );
    let titles: Vec<&str> = apns["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["payload"]["aps"]["alert"]["title"].as_str().unwrap())
        .collect();
    assert!(!titles.contains(&"second"), "{titles:?}");
    assert_eq!(titles.iter().filter(|t| **t == "later").count(), n);
}
