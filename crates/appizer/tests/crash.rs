//! Crash safety: the server runs as a child process while several clients send
//! batches; it is killed with SIGKILL mid-stream and restarted, five times. Every
//! acknowledged event must be stored exactly once afterwards (unacknowledged ones may or
//! may not be, but never twice), including batches the clients resend as retries. Run
//! with each queue backend: the embedded log, and a NATS JetStream stream.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appizer_storage::queue::{EventQueue, NatsConfig, NatsQueue};
use common::appizer;
use serde_json::{json, Value};

const CYCLES: usize = 5;
const CLIENTS: usize = 4;
const BATCH: usize = 20;

/// A queue on NATS JetStream: its server and stream.
type Nats = Option<(String, String)>;

/// Starts `appizer serve` on `data` and returns the child and its URL.
fn serve(data: &Path, nats: &Nats) -> (Child, String) {
    let mut command = appizer();
    if let Some((url, stream)) = nats {
        command
            .env("APPIZER_INGEST__QUEUE_URL", url)
            .env("APPIZER_INGEST__NATS__STREAM", stream);
    }
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        // Flush often, so kills land between file writes, catalog entries and commits.
        .env("APPIZER_INGEST__FLUSH_INTERVAL_MS", "150")
        .env("APPIZER_RATE_LIMIT__INGEST_BURST", "1000000")
        .env("APPIZER_RATE_LIMIT__INGEST_PER_SECOND", "1000000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(rest) = line.strip_prefix("Appizer is listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

fn batch(ids: &[String]) -> Value {
    json!({"batch": ids.iter().map(|id| json!({
        "type": "track", "event": "crash test", "userId": "u", "messageId": id,
        "properties": {"id": id}
    })).collect::<Vec<_>>()})
}

#[test]
fn acknowledged_events_survive_sigkill_exactly_once() {
    kill_and_restart(&None);
}

#[test]
fn acknowledged_events_survive_sigkill_exactly_once_with_the_queue_on_jetstream() {
    let Some(url) = common::nats_url() else {
        return;
    };
    let stream = common::test_stream();
    kill_and_restart(&Some((url.clone(), stream.clone())));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        // The records went through the stream, and the clean stop committed them all.
        let queue = NatsQueue::open(NatsConfig::new(&url, &stream))
            .await
            .unwrap();
        let stats = queue.stats();
        assert!(stats.end > 0, "{stats:?}");
        assert_eq!(stats.committed, stats.end, "{stats:?}");
        queue.delete().await.unwrap();
    });
}

fn kill_and_restart(nats: &Nats) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let init = appizer()
        .args(["init", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(init.status.success());
    let keys: Value = serde_json::from_slice(&init.stdout).unwrap();
    let write_key = keys["write_key"].as_str().unwrap().to_string();
    let admin_key = keys["admin_key"].as_str().unwrap().to_string();
    let project = keys["project_id"].as_str().unwrap().to_string();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut sent_requests = 0usize;
    for cycle in 0..CYCLES {
        let (mut child, url) = serve(&data, nats);
        let (requests, _) = runtime.block_on(async {
            let http = reqwest::Client::new();
            let stop = tokio_util::sync::CancellationToken::new();
            let mut tasks = Vec::new();
            for client in 0..CLIENTS {
                let (http, url, key, acked, stop) = (
                    http.clone(),
                    url.clone(),
                    write_key.clone(),
                    acked.clone(),
                    stop.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let mut requests = 0usize;
                    let mut last_acked: Option<Vec<String>> = None;
                    for seq in 0.. {
                        if stop.is_cancelled() {
                            break;
                        }
                        // Every third request resends the previous acknowledged batch,
                        // as a client does when it missed the answer.
                        let ids: Vec<String> = match (&last_acked, seq % 3) {
                            (Some(previous), 2) => previous.clone(),
                            _ => (0..BATCH)
                                .map(|i| format!("c{cycle}-k{client}-s{seq}-{i}"))
                                .collect(),
                        };
                        requests += 1;
                        let answer = http
                            .post(format!("{url}/v1/batch"))
                            .basic_auth(&key, Some(""))
                            .json(&batch(&ids))
                            .send()
                            .await;
                        match answer {
                            Ok(r) if r.status().is_success() => {
                                acked.lock().unwrap().extend(ids.iter().cloned());
                                last_acked = Some(ids);
                            }
                            _ => break, // The server is gone.
                        }
                    }
                    requests
                }));
            }
            // Let traffic flow, then kill the server without warning.
            tokio::time::sleep(Duration::from_millis(400 + 150 * cycle as u64)).await;
            let killed = Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(killed.success());
            stop.cancel();
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            (total, ())
        });
        let _ = child.wait();
        sent_requests += requests;
    }
    assert!(
        sent_requests > CYCLES * CLIENTS * 5,
        "traffic flowed: {sent_requests} requests"
    );

    // A last clean start: replay what the queue holds, then read everything back.
    let (mut child, url) = serve(&data, nats);
    let acked = acked.lock().unwrap().clone();
    let stored = runtime.block_on(async {
        let http = reqwest::Client::new();
        // The replay of what the last kill left in the queue is usually done in a
        // few seconds; the deadline only ends a failing run on a loaded machine.
        let started = std::time::Instant::now();
        let deadline = started + Duration::from_secs(120);
        loop {
            let mut counts: HashMap<String, usize> = HashMap::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut url = format!("{url}/api/v1/projects/{project}/events?limit=1000");
                if let Some(c) = &cursor {
                    url.push_str(&format!("&cursor={c}"));
                }
                let page: Value = http
                    .get(url)
                    .bearer_auth(&admin_key)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                for e in page["events"].as_array().unwrap() {
                    *counts
                        .entry(e["message_id"].as_str().unwrap().to_string())
                        .or_default() += 1;
                }
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => break,
                }
            }
            if acked.iter().all(|id| counts.contains_key(id))
                || std::time::Instant::now() > deadline
            {
                eprintln!("read back after {:?}", started.elapsed());
                return counts;
            }
            // Every pass reads all events: leave the workers the machine meanwhile.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();

    let missing: Vec<_> = acked
        .iter()
        .filter(|id| !stored.contains_key(*id))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but lost: {missing:?} (of {} acked)",
        acked.len()
    );
    let doubled: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(doubled.is_empty(), "stored twice: {doubled:?}");
    assert!(
        acked.len() >= CYCLES * BATCH,
        "{} events acknowledged",
        acked.len()
    );
    eprintln!(
        "{} requests, {} events acknowledged, {} stored (unacknowledged ones may be stored too)",
        sent_requests,
        acked.len(),
        stored.len()
    );
}
