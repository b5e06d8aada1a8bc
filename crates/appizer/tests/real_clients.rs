//! The official client libraries, unchanged but for the host, against a live server:
//! PyPI `segment-analytics-python` and `posthog`, npm `@segment/analytics-node` and
//! `posthog-node` send track / identify / page / alias / capture traffic in batches
//! (plain and gzip); every event is read back through the API and compared: names, ids,
//! properties and timestamps. The Python libraries come from the Python named by
//! `APPIZER_TEST_PYTHON`, the npm ones from the `node_modules` named by
//! `APPIZER_TEST_NODE_MODULES` (`.ci/run` installs both, from
//! `scripts/test-requirements.txt` and `scripts/test-node/package.json`).

mod common;

use std::time::{Duration, Instant};

use appizer::testing::TestServer;
use common::Client;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_segment_and_posthog_clients_work_unchanged() {
    let Some(python) = common::test_python() else {
        return;
    };
    let server = TestServer::start().await;
    let sent = run_client_script(
        tokio::process::Command::new(python),
        "python_clients.py",
        &server,
    )
    .await;
    let sent = &sent[..];
    assert_eq!(sent.len(), 20);

    let stored = read_back(&server, sent).await;
    let alias = stored
        .iter()
        .find(|e| e["event"] == "$create_alias" && e["dialect"] == "segment")
        .unwrap();
    assert!(alias["previous_id"].as_str().unwrap().starts_with("anon-"));
    let identify = stored.iter().find(|e| e["event"] == "$identify").unwrap();
    assert!(identify["traits"]["email"]
        .as_str()
        .unwrap()
        .ends_with("@example.com"));
    assert!(identify["context"]["library"]["name"]
        .as_str()
        .unwrap()
        .contains("analytics-python"));

    // Stopping flushes the buffer; the files are plain Parquet that DuckDB reads with
    // hive partitioning and counts exactly.
    let mut server = server;
    let project = server.keys.project_id.to_string();
    let events_dir = server.data_dir().join("events");
    let keep_dir = server.temp_dir.take();
    server.stop().await;
    let query = format!(
        "import duckdb, json; print(json.dumps(duckdb.sql(\"SELECT project, count(*), \
         count(DISTINCT message_id), min(date) FROM read_parquet('{}/**/*.parquet', \
         hive_partitioning=1) GROUP BY project\").fetchall(), default=str))",
        events_dir.display()
    );
    let python = common::test_python().expect("checked above");
    let out = common::run_python(&python, &["-c", &query], "reading the files with DuckDB");
    let rows: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(rows[0][0], project.as_str());
    assert_eq!(rows[0][1], sent.len());
    assert_eq!(rows[0][2], sent.len());
    assert_eq!(rows.as_array().unwrap().len(), 1);
    drop(keep_dir);
}

/// Waits until `sent.len()` events are stored, then checks each one against what was
/// sent; returns the stored events.
async fn read_back(server: &TestServer, sent: &[Value]) -> Vec<Value> {
    let api = Client::new(server);
    let path = format!(
        "/api/v1/projects/{}/events?limit=1000",
        server.keys.project_id
    );
    let started = Instant::now();
    let stored = loop {
        let page = api.get(&path, &server.keys.admin_key).await;
        let events = page.body["events"].as_array().unwrap().clone();
        if events.len() >= sent.len() || started.elapsed() > Duration::from_secs(5) {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stored.len(), sent.len(), "every event stored once");
    for expected in sent {
        let id = expected["message_id"].as_str().unwrap();
        let event = stored
            .iter()
            .find(|e| e["message_id"] == id)
            .unwrap_or_else(|| panic!("{id} ({}) not stored", expected["event"]));
        assert_eq!(event["event"], expected["event"], "{id}");
        assert_eq!(event["distinct_id"], expected["distinct_id"], "{id}");
        // The stored properties hold everything sent (libraries add their own `$lib`...).
        for (key, value) in expected["properties"].as_object().unwrap() {
            assert_eq!(&event["properties"][key], value, "{id} property {key}");
        }
        assert_eq!(event["dialect"], expected["library"], "{id}");
        let want =
            chrono::DateTime::parse_from_rfc3339(expected["timestamp"].as_str().unwrap()).unwrap();
        let got =
            chrono::DateTime::parse_from_rfc3339(event["timestamp"].as_str().unwrap()).unwrap();
        assert!(
            (got - want).num_milliseconds().abs() < 2_000,
            "{id}: timestamp {got} vs sent {want} (same clock: only the send delay differs)"
        );
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_segment_and_posthog_clients_work_unchanged() {
    let Some(modules) = common::test_env("APPIZER_TEST_NODE_MODULES") else {
        return;
    };
    let server = TestServer::start().await;
    let mut node = tokio::process::Command::new("node");
    node.env("NODE_PATH", &modules);
    let sent = run_client_script(node, "node_clients.js", &server).await;
    let sent = &sent[..];
    assert_eq!(sent.len(), 12);
    let stored = read_back(&server, sent).await;
    let identify = stored.iter().find(|e| e["event"] == "$identify").unwrap();
    assert_eq!(identify["traits"]["email"], "node@example.com");
    assert_eq!(
        identify["context"]["library"]["name"],
        "@segment/analytics-node"
    );
    server.stop().await;
}

/// Runs `tests/clients/<script>` with the server's URL and write key; checks that it
/// exited cleanly and that its libraries reported no error; returns what it sent.
async fn run_client_script(
    mut command: tokio::process::Command,
    script: &str,
    server: &TestServer,
) -> Vec<Value> {
    let out = command
        .arg(format!(
            "{}/tests/clients/{script}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(&server.base_url)
        .arg(&server.keys.write_key)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("the script's JSON report");
    assert_eq!(
        report["errors"],
        serde_json::json!([]),
        "the clients reported errors"
    );
    report["sent"]
        .as_array()
        .expect("a list of sent events")
        .clone()
}
