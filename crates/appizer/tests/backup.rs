//! Backups: `appizer backup` taken while events stream in, and `appizer restore` into
//! an empty data dir. The restored node holds every event acknowledged before the
//! backup began, each once, and none that was never sent; a backup taken at rest
//! restores to the same answers, query by query, as the node it was taken of.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use appizer::backup::{backup, restore};
use appizer::testing::TestServer;
use common::{appizer, seq_and_count, Client};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Ten events of five users, and one identify setting a user's `seq` to `round`.
fn batch(round: u32) -> Value {
    let mut messages: Vec<Value> = (0..10)
        .map(|i| {
            let (event, plan) = (["Viewed", "Bought"][i % 2], ["free", "pro"][(i / 2) % 2]);
            json!({
                "type": "track", "event": event,
                "userId": format!("user-{}", i % 5),
                "messageId": format!("r{round}-{i}"),
                "properties": {"plan": plan, "amount": i},
            })
        })
        .collect();
    messages.push(json!({
        "type": "identify", "userId": format!("user-{}", round % 5),
        "messageId": format!("r{round}-identify"), "traits": {"seq": round},
    }));
    json!({ "batch": messages })
}

const PER_BATCH: u32 = 11;

/// `appizer COMMAND PLACE --data-dir DATA`, run to its end.
fn cli(command: &str, place: &std::path::Path, data: &std::path::Path) -> std::process::Output {
    appizer()
        .arg(command)
        .arg(place)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

/// Every message id the node stores, from its event pages (each id once per event).
async fn message_ids(api: &Client, server: &TestServer) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!(
            "/api/v1/projects/{}/events?limit=1000",
            server.keys.project_id
        );
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = api.get(&path, &server.keys.admin_key).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        for e in page.body["events"].as_array().unwrap() {
            ids.push(e["message_id"].as_str().unwrap().to_string());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return ids,
        }
    }
}

/// Waits until the node stores `want` events (or, with `at_least`, at least that
/// many and no more arrive for a while); returns their message ids.
async fn stored(api: &Client, server: &TestServer, want: usize, at_least: bool) -> Vec<String> {
    let started = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        let ids = message_ids(api, server).await;
        let steady = ids.len() == last.0 && last.1.elapsed() > Duration::from_secs(3);
        if (!at_least && ids.len() == want) || (at_least && ids.len() >= want && steady) {
            return ids;
        }
        if ids.len() != last.0 {
            last = (ids.len(), Instant::now());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} events stored, {want} wanted",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The answers compared between a node and its restored copy.
async fn answers(api: &Client, server: &TestServer) -> Vec<Value> {
    let query = |kind: &str| format!("/api/v1/projects/{}/query/{kind}", server.keys.project_id);
    let admin = &server.keys.admin_key;
    let mut out = Vec::new();
    for (kind, body) in [
        (
            "trends",
            json!({"series": [{"event": "Viewed"}, {"event": "Bought", "math": "sum",
                "math_property": "amount"}, {"math": "unique_persons"}],
                "interval": "hour", "date_range": {"from": "-1d"}}),
        ),
        (
            "trends",
            json!({"series": [{"event": "Bought"}], "breakdown": {"key": "plan"},
                "interval": "day", "date_range": {"from": "-1d"}}),
        ),
        (
            "funnels",
            json!({"steps": [{"event": "Viewed"}, {"event": "Bought"}],
                "date_range": {"from": "-1d"}}),
        ),
    ] {
        let answer = api.post(&query(kind), admin, body).await;
        assert_eq!(answer.status, StatusCode::OK, "{kind}: {:?}", answer.body);
        out.push(answer.body["results"].clone());
    }
    let persons = api
        .get(
            &format!(
                "/api/v1/projects/{}/persons?limit=100",
                server.keys.project_id
            ),
            admin,
        )
        .await;
    assert_eq!(persons.status, StatusCode::OK);
    out.push(json!(format!("{:?}", seq_and_count(&persons.body))));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_every_acknowledged_event_once() {
    let server = TestServer::start_with(|c| c.ingest.flush_interval_ms = 200).await;
    let api = Client::new(&server);
    let key = server.keys.write_key.clone();
    for round in 0..20 {
        assert_eq!(
            api.send_batch(&key, &batch(round)).await.status(),
            StatusCode::OK
        );
    }
    stored(&api, &server, 20 * PER_BATCH as usize, false).await;

    // Load from two clients while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let next_round = Arc::new(AtomicU32::new(20));
    let acked = Arc::new(Mutex::new((0..20).collect::<BTreeSet<u32>>()));
    let mut load = Vec::new();
    for _ in 0..2 {
        let (stop, next_round, acked) = (stop.clone(), next_round.clone(), acked.clone());
        let (api, key) = (Client::new(&server), key.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let round = next_round.fetch_add(1, Ordering::Relaxed);
                assert_eq!(
                    api.send_batch(&key, &batch(round)).await.status(),
                    StatusCode::OK
                );
                acked.lock().unwrap().insert(round);
            }
        }));
    }
    while acked.lock().unwrap().len() < 40 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dest = tempfile::tempdir().unwrap();
    let under_load = dest.path().join("under-load");
    // Every batch acknowledged before the backup began is in it.
    let before = acked.lock().unwrap().clone();
    let manifest = backup(&server.config, under_load.to_str().unwrap())
        .await
        .unwrap();
    assert!(manifest.event_files > 0 && !manifest.queue_files.is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let sent = acked.lock().unwrap().clone();
    let all = sent.len() * PER_BATCH as usize;
    stored(&api, &server, all, false).await;

    let restored_dir = tempfile::tempdir().unwrap();
    let mut config = server.config.clone();
    config.data_dir = restored_dir.path().join("data");
    restore(&config, under_load.to_str().unwrap())
        .await
        .unwrap();
    let restored = TestServer::restart(&config.data_dir, server.keys.clone()).await;
    let restored_api = Client::new(&restored);
    let ids = stored(
        &restored_api,
        &restored,
        before.len() * PER_BATCH as usize,
        true,
    )
    .await;
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an event restored twice");
    for round in &before {
        assert!(
            unique.contains(&format!("r{round}-identify")),
            "batch {round}, acknowledged before the backup, is missing"
        );
    }
    let sent_ids: BTreeSet<String> = sent
        .iter()
        .flat_map(|r| {
            (0..10)
                .map(move |i| format!("r{r}-{i}"))
                .chain([format!("r{r}-identify")])
        })
        .collect();
    assert!(unique.iter().all(|id| sent_ids.contains(*id)));
    restored.stop().await;

    // At rest, through the command line: the same answers, query by query.
    let at_rest = dest.path().join("at-rest");
    let out = cli("backup", &at_rest, server.data_dir());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = tempfile::tempdir().unwrap();
    let data = second.path().join("data");
    let out = cli("restore", &at_rest, &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = cli("restore", &at_rest, &data);
    assert!(!again.status.success(), "a restore over a node is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("restore into an empty data dir"));
    let copy = TestServer::restart(&data, server.keys.clone()).await;
    let copy_api = Client::new(&copy);
    stored(&copy_api, &copy, all, false).await;
    let restored_answers = answers(&copy_api, &copy).await;
    assert_eq!(restored_answers, answers(&api, &server).await);
    copy.stop().await;
    server.stop().await;
}
