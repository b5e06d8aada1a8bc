//! Campaigns survive SIGKILL (the server is a child process; APNs is the emulator):
//! - a run killed while it walks its audience and sends: after a restart every person
//!   outside the control group has the message, twice only if their delivery was in
//!   flight at the kill, and every person is assigned exactly once;
//! - a triggered send killed during its delay: after a restart it goes out once, at
//!   the delay's end, not before.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::crash::{
    apns_emulator, audience, init, kill, serve, stop, token, Data, BATCH, CONCURRENCY,
};
use serde_json::{json, Value};

/// Blocking calls to a server's API as the data directory's admin.
struct Api {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    key: String,
    base: String,
}

impl Api {
    fn new(data: &Data) -> Self {
        Self {
            runtime: tokio::runtime::Runtime::new().unwrap(),
            http: reqwest::Client::new(),
            key: data.admin_key.clone(),
            base: format!("/api/v1/projects/{}", data.project),
        }
    }

    /// The answer's body. A read answered 503 (storage busy under the load of the
    /// walk, "retry later") is retried, as a client would, for up to 30 s.
    fn call(&self, url: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.runtime.block_on(async {
            let started = Instant::now();
            loop {
                let mut request = self
                    .http
                    .request(method.clone(), format!("{url}{}{path}", self.base))
                    .bearer_auth(&self.key);
                if let Some(body) = &body {
                    request = request.json(body);
                }
                let answer = request.send().await.unwrap();
                let status = answer.status();
                let body: Value = answer.json().await.unwrap_or(Value::Null);
                let retry = method == reqwest::Method::GET
                    && status == reqwest::StatusCode::SERVICE_UNAVAILABLE
                    && started.elapsed() < Duration::from_secs(30);
                if retry {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                assert!(status.is_success(), "{path}: {status} {body}");
                return body;
            }
        })
    }

    fn get(&self, url: &str, path: &str) -> Value {
        self.call(url, reqwest::Method::GET, path, None)
    }

    fn post(&self, url: &str, path: &str, body: Value) -> Value {
        self.call(url, reqwest::Method::POST, path, Some(body))
    }

    /// A created and scheduled campaign's id.
    fn schedule(&self, url: &str, body: Value) -> String {
        let created = self.post(url, "/campaigns", body);
        let id = created["id"].as_str().unwrap().to_string();
        self.post(url, &format!("/campaigns/{id}/schedule"), json!({}));
        id
    }

    /// The campaign once `done` holds for it.
    fn campaign_until(&self, url: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let c = self.get(url, &format!("/campaigns/{id}"));
            if done(&c) {
                return c;
            }
            assert!(started.elapsed() < Duration::from_secs(300), "{c:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `SELECT` over the project's events.
    fn sql(&self, url: &str, query: &str) -> Value {
        self.post(url, "/query/sql", json!({ "query": query }))["rows"].clone()
    }
}

/// The tokens the emulator received, with how often each.
fn received(emulator: &appizer_push::emulator::apns::ApnsEmulator) -> HashMap<String, u64> {
    emulator.counts()
}

/// The deliveries the outbox has recorded as sent (the server is down).
async fn outbox_sent(data: &Data) -> usize {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&data.store_url())
        .await
        .unwrap();
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM push_outbox WHERE state = 'sent'")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    sent as usize
}

#[test]
fn a_campaign_run_killed_mid_walk_sends_each_device_once_and_assigns_each_person_once() {
    const PERSONS: usize = 30_000;
    let data = init();
    let api = Api::new(&data);
    let ((emulator, apns_url), segment) = api.runtime.block_on(async {
        let emulator = apns_emulator().await;
        (emulator, audience(&data, PERSONS).await)
    });
    let (mut child, url) = serve(&data.path(), &apns_url);
    let id = api.schedule(
        &url,
        json!({"name": "Crash", "when": {"type": "now"},
               "audience": {"segments": [segment]},
               "variants": [{"name": "A", "title": "A", "body": "a"},
                            {"name": "B", "title": "B", "body": "b"}],
               "control_percent": 10}),
    );
    let started = Instant::now();
    while emulator.total() < 2_000 {
        assert!(started.elapsed() < Duration::from_secs(300), "too slow");
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(&mut child);
    // Requests the emulator had read before the kill are still being answered.
    std::thread::sleep(Duration::from_millis(500));
    let received_at_kill = received(&emulator).len();
    let (sent_at_kill, queued_at_kill) = api.runtime.block_on(async {
        let store = data.store().await;
        let scope = store.project_scope(data.project).await.unwrap().unwrap();
        let runs = store.push().runs(scope, id.parse().unwrap()).await.unwrap();
        store.close().await;
        let queued: u64 = runs.iter().map(|r| r.queued).sum();
        (outbox_sent(&data).await, queued)
    });
    eprintln!("killed: {received_at_kill} received, {sent_at_kill} recorded sent, {queued_at_kill} queued by the walk");

    let (mut child, url) = serve(&data.path(), &apns_url);
    let done = api.campaign_until(&url, &id, |c| c["state"] == "completed");
    let counts = received(&emulator);
    // Everyone outside the control group, by the assignment events.
    // The assignment events are processed by the workers after the run's end.
    let started = Instant::now();
    let rows = loop {
        let rows = api.sql(
            &url,
            "SELECT count(*) AS events, count(DISTINCT distinct_id) AS persons \
             FROM events WHERE event = '$push_assigned'",
        );
        if rows[0]["events"].as_u64() >= Some(PERSONS as u64)
            || started.elapsed() > Duration::from_secs(60)
        {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        rows[0]["events"], PERSONS,
        "each person assigned once: {rows}"
    );
    assert_eq!(rows[0]["persons"], PERSONS, "{rows}");
    let control = api.post(
        &url,
        "/query/trends",
        json!({"series": [{"event": "$push_assigned", "math": "unique_persons"}],
               "date_range": {"from": "-1d"},
               "breakdown": {"key": "$push_variant"}}),
    )["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["breakdown_value"] == "control")
        .and_then(|r| r["aggregated"].as_f64())
        .unwrap_or(0.0) as usize;
    assert!(
        control > PERSONS / 20 && control < PERSONS / 5,
        "{control} in control"
    );
    assert_eq!(
        counts.len(),
        PERSONS - control,
        "every device outside control: {done:#}"
    );
    assert!(counts.values().all(|n| *n <= 2), "none three times");
    let twice = counts.values().filter(|n| **n == 2).count();
    let in_flight = received_at_kill.saturating_sub(sent_at_kill);
    assert!(
        twice <= in_flight,
        "{twice} twice, {in_flight} in flight at the kill"
    );
    assert!(
        in_flight <= BATCH + CONCURRENCY + 3 * 2000,
        "{in_flight} in flight is more than the loop holds"
    );
    eprintln!("after restart: {} devices, {twice} twice", counts.len());
    stop(&mut child);
}

#[test]
fn a_triggered_send_killed_during_its_delay_goes_out_once_at_its_end() {
    const PERSONS: usize = 200;
    const DELAY: Duration = Duration::from_secs(6);
    let data = init();
    let api = Api::new(&data);
    let ((emulator, apns_url), segment) = api.runtime.block_on(async {
        let emulator = apns_emulator().await;
        (emulator, audience(&data, PERSONS).await)
    });
    let (mut child, url) = serve(&data.path(), &apns_url);
    let id = api.schedule(
        &url,
        json!({"name": "Cart", "audience": {"segments": [segment]},
               "when": {"type": "triggered", "event": "add_to_cart",
                        "delay_seconds": DELAY.as_secs(), "cancel_if": "purchase"},
               "variants": [{"name": "A", "title": "Your cart", "body": "is waiting"}]}),
    );
    api.campaign_until(&url, &id, |c| c["state"] == "running");
    // Armed at the runner's next pass.
    std::thread::sleep(Duration::from_millis(1200));
    let now = chrono::Utc::now().to_rfc3339();
    let batch: Vec<Value> = (0..PERSONS)
        .map(|i| {
            json!({"type": "track", "userId": format!("u{i}"), "event": "add_to_cart",
                   "timestamp": now})
        })
        .collect();
    let tracked = Instant::now();
    api.runtime.block_on(async {
        let answer = api
            .http
            .post(format!("{url}/v1/batch"))
            .json(&json!({"writeKey": data.write_key, "batch": batch}))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
    });
    // Recorded by then; killed well inside the delay.
    std::thread::sleep(Duration::from_secs(2));
    kill(&mut child);
    assert_eq!(emulator.total(), 0, "nothing is sent before the delay ends");

    let (mut child, _url) = serve(&data.path(), &apns_url);
    let started = Instant::now();
    while received(&emulator).len() < PERSONS {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{} sent",
            emulator.total()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        tracked.elapsed() >= DELAY,
        "sent at the delay's end, not before"
    );
    // Nothing more comes: each trigger is sent once.
    std::thread::sleep(Duration::from_secs(3));
    let counts = received(&emulator);
    assert_eq!(counts.len(), PERSONS);
    assert!(counts.values().all(|n| *n == 1), "each once");
    assert!(counts.contains_key(&token(PERSONS - 1)));
    stop(&mut child);
}
