//! Helpers shared by the HTTP tests: a JSON client over real HTTP to a [`TestServer`].

#![allow(dead_code)]

pub mod crash;
pub mod push;
pub mod services;

use appizer::testing::TestServer;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// An answer: status, headers and the body as JSON (`Value::Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The `error.code` of an error answer.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn error_field(&self) -> &str {
        self.body["error"]["field"].as_str().unwrap_or("")
    }
}

#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base_url: String,
}

impl Client {
    pub fn new(server: &TestServer) -> Self {
        Self {
            http: reqwest::Client::new(),
            base_url: server.base_url.clone(),
        }
    }

    pub async fn call(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{}", self.base_url, path))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::answer(request.send().await.expect("request sent")).await
    }

    /// The answer; an event stream's body is not read (it does not end).
    pub async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status();
        let headers = response.headers().clone();
        let streaming = headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if streaming {
            return Answer {
                status,
                headers,
                body: Value::Null,
            };
        }
        let bytes = response.bytes().await.expect("body read");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!("not JSON ({status}): {}", String::from_utf8_lossy(&bytes))
            })
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, key: &str) -> Answer {
        self.call(Method::GET, path, key, None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Answer {
        self.call(Method::POST, path, key, Some(body)).await
    }

    /// Posts a Segment batch body to `/v1/batch` with `write_key` as the Basic user.
    pub async fn send_batch(&self, write_key: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/batch", self.base_url))
            .basic_auth(write_key, Some(""))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base_url))
            .send()
            .await
            .expect("request sent")
            .text()
            .await
            .expect("body read")
    }

    /// The sum of a metric's samples in `/metrics` (every label set), 0 if absent.
    pub async fn metric_total(&self, name: &str) -> f64 {
        self.metrics_text()
            .await
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Creates a project with the organisation admin key; returns its id.
    pub async fn create_project(&self, admin_key: &str, name: &str) -> String {
        let a = self
            .post(
                "/api/v1/projects",
                admin_key,
                serde_json::json!({ "name": name }),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
        a.body["project"]["id"].as_str().unwrap().to_string()
    }

    /// Issues a secret key with `role` in `project`; returns (key id, plaintext).
    pub async fn create_key(&self, admin_key: &str, project: &str, role: &str) -> (String, String) {
        let a = self
            .post(
                &format!("/api/v1/projects/{project}/keys"),
                admin_key,
                serde_json::json!({ "name": format!("{role} key"), "role": role }),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
        (
            a.body["id"].as_str().unwrap().to_string(),
            a.body["key"].as_str().unwrap().to_string(),
        )
    }
}

/// The Python interpreter with the test tools (`APPIZER_TEST_PYTHON`).
pub fn test_python() -> Option<String> {
    test_env("APPIZER_TEST_PYTHON")
}

/// Runs `python` with `args` and returns what it printed; panics with its output,
/// headed by `what`, if it fails.
pub fn run_python<S: AsRef<std::ffi::OsStr>>(python: &str, args: &[S], what: &str) -> Vec<u8> {
    let out = std::process::Command::new(python)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "{what}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A test tool named by the environment variable `name`. Required under CI
/// (`CI=true`), so checks that need it never silently vanish there; skipped locally.
pub fn test_env(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") => {
            panic!("{name} must be set under CI (.ci/run sets it)")
        }
        _ => {
            eprintln!("skipped: set {name} to run this check (see README)");
            None
        }
    }
}

/// The `appizer` binary, configured by its arguments alone: `APPIZER_*` variables of the
/// caller's environment are removed.
pub fn appizer() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_appizer"));
    for (name, _) in std::env::vars() {
        if name.starts_with("APPIZER_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Waits until the server's workers have processed everything acknowledged so far.
pub async fn settle(server: &TestServer) {
    let events = &server.state.events;
    let end = events.queue.stats().end;
    let started = std::time::Instant::now();
    while events.feed.processed_end() < end {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "workers did not catch up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The NATS server for the JetStream cases: `APPIZER_TEST_NATS_URL`
/// (e.g. `nats://127.0.0.1:4222`, started with `-js`). Without it the cases are skipped
/// locally and fail under CI (`CI=true`). To start NATS on a Debian machine:
/// `start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server --
/// -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server`.
pub fn nats_url() -> Option<String> {
    match std::env::var("APPIZER_TEST_NATS_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") => {
            panic!("APPIZER_TEST_NATS_URL must be set under CI")
        }
        Err(_) => {
            eprintln!("skipped: set APPIZER_TEST_NATS_URL to run the NATS JetStream cases");
            None
        }
    }
}

/// A fresh JetStream stream name for one test.
pub fn test_stream() -> String {
    format!("APPIZER_TEST_{}", uuid::Uuid::new_v4().simple())
}

/// A persons page (`GET .../persons`) as each person's first distinct id to its `seq`
/// property and its event count.
pub fn seq_and_count(page: &Value) -> std::collections::BTreeMap<String, (Value, Value)> {
    page["persons"]
        .as_array()
        .expect("a persons page")
        .iter()
        .map(|p| {
            let id = p["distinct_ids"][0].as_str().unwrap().to_string();
            (
                id,
                (p["properties"]["seq"].clone(), p["event_count"].clone()),
            )
        })
        .collect()
}
