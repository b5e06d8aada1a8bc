//! Failover of a split deployment on one machine, every node its own process: two API
//! nodes, two workers and a query node on PostgreSQL, a three-server NATS cluster
//! (the queue in four partitions, three replicas each) and a bucket of an S3 emulator
//! for the event files.
//! Several clients load it, resending some batches as clients do; meanwhile a worker
//! is killed with SIGKILL (a new one joins), the other is paused (SIGSTOP) past its
//! lease while the new one takes its partitions, then resumed, and the JetStream
//! leader of one partition is killed. Afterwards every acknowledged event is stored
//! exactly once, each person's last update is the last one sent, every catalogued
//! file exists and no other object is left, the paused worker's writes were refused,
//! and both query nodes give the same answer, equal to what was sent.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use appizer_storage::events::files::{FileBackend, S3Files};
use appizer_storage::queue::{NatsConfig, NatsQueue};
use appizer_storage::testing::s3::S3Emulator;
use common::appizer;
use common::services::{postgres_url, NatsCluster};
use serde_json::{json, Value};

const PARTITIONS: u32 = 4;
const CLIENTS: usize = 4;
const PERSONS_PER_CLIENT: usize = 10;
const ROUNDS: u32 = 60;
const LEASE_MS: u64 = 2_000;

/// What every node shares.
struct Cluster {
    database: String,
    queue: String,
    stream: String,
    dir: tempfile::TempDir,
    s3: S3Emulator,
}

/// The bucket and prefix of the event files.
const BUCKET: &str = "events";
const PREFIX: &str = "failover";

/// One `appizer serve` process.
struct Node {
    child: Child,
    url: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = signal(&self.child, "CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `GET {url}/readyz` answers 200 (a plain HTTP/1.1 request: this runs outside
/// the test's runtime).
fn is_ready(url: &str) -> bool {
    use std::io::{Read, Write};
    let Some(host) = url.strip_prefix("http://") else {
        return false;
    };
    let Ok(mut stream) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

fn signal(child: &Child, name: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

impl Cluster {
    /// The event files, as the nodes reach them.
    fn event_files(&self) -> S3Files {
        S3Files::open(&self.s3.settings(BUCKET, PREFIX)).unwrap()
    }

    fn command(&self, name: &str) -> Command {
        let mut command = appizer();
        command
            .env("APPIZER_DATA_DIR", self.dir.path().join(name))
            .env("APPIZER_DATABASE_URL", &self.database)
            .env("APPIZER_INGEST__QUEUE_URL", &self.queue)
            .env("APPIZER_INGEST__NATS__STREAM", &self.stream)
            .env("APPIZER_INGEST__NATS__PARTITIONS", PARTITIONS.to_string())
            .env("APPIZER_INGEST__NATS__REPLICAS", "3")
            .env(
                "APPIZER_INGEST__QUEUE_MAX_DISK_BYTES",
                (64u64 << 20).to_string(),
            )
            .env("APPIZER_INGEST__WORKER_LEASE_MS", LEASE_MS.to_string())
            .env("APPIZER_INGEST__FLUSH_INTERVAL_MS", "300")
            .env("APPIZER_INGEST__RETIRE_GRACE_MS", "500")
            .env("APPIZER_INGEST__COMPACTION_INTERVAL_MS", "1000")
            .env("APPIZER_RATE_LIMIT__INGEST_BURST", "1000000")
            .env("APPIZER_RATE_LIMIT__INGEST_PER_SECOND", "1000000")
            .env("APPIZER_EVENTS_URL", format!("s3://{BUCKET}/{PREFIX}"))
            .env("APPIZER_S3__ENDPOINT", self.s3.endpoint())
            .env("APPIZER_S3__PATH_STYLE", "true")
            .env("APPIZER_S3__ACCESS_KEY_ID", "test")
            .env("APPIZER_S3__SECRET_ACCESS_KEY", "test");
        command
    }

    /// The last lines each node logged, for a failure's message.
    fn log_tails(&self) -> String {
        let mut out = String::new();
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("== {}\n", log.display()));
            for line in &lines[lines.len().saturating_sub(15)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    fn start(&self, name: &str, roles: &str) -> Node {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let mut child = self
            .command(name)
            .args(["serve", "--listen", "127.0.0.1:0", "--role", roles])
            .env("APPIZER_LOG__LEVEL", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{name} ended before it listened"))
                .unwrap();
            if let Some(rest) = line.strip_prefix("Appizer is listening on ") {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        // Started one after the other, as an operator rolls nodes out: each has its
        // queue and stores open (ready) before the next starts.
        let started = Instant::now();
        while !is_ready(&url) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{name} never got ready:\n{}",
                self.log_tails()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Node { child, url }
    }
}

/// Opens (and deletes) a throwaway stream until JetStream answers: a new cluster
/// elects its meta leader first.
async fn wait_for_jetstream(url: &str) {
    let started = Instant::now();
    loop {
        let probe = NatsConfig {
            replicas: 3,
            max_disk_bytes: 1 << 20,
            ..NatsConfig::new(url, "APPIZER_PROBE")
        };
        match NatsQueue::open(probe).await {
            Ok(queue) => {
                queue.delete().await.unwrap();
                return;
            }
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(30),
                "JetStream never answered: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The server leading a partition's stream.
async fn leader_of(url: &str, stream: &str) -> String {
    let client = async_nats::connect(NatsConfig::new(url, "").servers())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(stream).await.unwrap();
    let info = stream.info().await.unwrap();
    info.cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("a replicated stream has a leader")
}

fn identify_batch(persons: &[String], round: u32) -> Value {
    json!({"batch": persons.iter().map(|p| json!({
        "type": "identify", "userId": p, "traits": {"seq": round},
        "messageId": format!("{p}-{round}"),
    })).collect::<Vec<_>>()})
}

async fn identified(http: &reqwest::Client, node: &str, project: &str, key: &str) -> f64 {
    let query = json!({"series": [{"event": "$identify"}], "interval": "day",
        "date_range": {"from": "-1d"}});
    let answer: Value = http
        .post(format!("{node}/api/v1/projects/{project}/query/trends"))
        .bearer_auth(key)
        .json(&query)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["results"][0]["aggregated"].as_f64().unwrap_or(-1.0)
}

/// Parquet and temporary files under `dir`.
#[test]
fn a_split_deployment_survives_killed_paused_and_lost_nodes() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(database) = runtime.block_on(postgres_url()) else {
        return;
    };
    let Some(mut nats) = NatsCluster::start(3) else {
        return;
    };
    let Some(s3) = S3Emulator::start() else {
        return;
    };
    s3.create_bucket(BUCKET);
    runtime.block_on(wait_for_jetstream(&nats.url()));
    let cluster = Cluster {
        database,
        queue: nats.url(),
        stream: common::test_stream(),
        dir: tempfile::tempdir().unwrap(),
        s3,
    };
    let init = cluster
        .command("init")
        .args(["init", "--json"])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let keys: Value = serde_json::from_slice(&init.stdout).unwrap();
    let write_key = keys["write_key"].as_str().unwrap().to_string();
    let admin_key = keys["admin_key"].as_str().unwrap().to_string();
    let project = keys["project_id"].as_str().unwrap().to_string();

    let apis = [
        cluster.start("api-0", "api"),
        cluster.start("api-1", "api,query"),
    ];
    let query = cluster.start("query-0", "query");
    let mut w0 = Some(cluster.start("worker-0", "worker"));
    let w1 = cluster.start("worker-1", "worker");

    let http = reqwest::Client::new();
    let rounds_done = Arc::new(AtomicU64::new(0));
    let resent = Arc::new(AtomicU64::new(0));
    let api_urls: Vec<String> = apis.iter().map(|n| n.url.clone()).collect();
    let load = runtime.spawn({
        let (http, key, rounds_done, resent) = (
            http.clone(),
            write_key.clone(),
            rounds_done.clone(),
            resent.clone(),
        );
        async move {
            let clients = (0..CLIENTS).map(|c| {
                let (http, key, urls, rounds_done, resent) = (
                    http.clone(),
                    key.clone(),
                    api_urls.clone(),
                    rounds_done.clone(),
                    resent.clone(),
                );
                async move {
                    let persons: Vec<String> = (0..PERSONS_PER_CLIENT)
                        .map(|i| format!("c{c}-person-{i}"))
                        .collect();
                    for round in 0..ROUNDS {
                        let batch = identify_batch(&persons, round);
                        // One batch in twenty goes twice, as after a lost answer.
                        let times = if (round as usize + c) % 20 == 7 { 2 } else { 1 };
                        for time in 0..times {
                            // Retried (same ids) until acknowledged: a 503 while a
                            // stream elects a leader is the client's to retry.
                            let mut attempt = 0;
                            loop {
                                let url = &urls[(round as usize + attempt) % urls.len()];
                                let answer = http
                                    .post(format!("{url}/v1/batch"))
                                    .basic_auth(&key, Some(""))
                                    .json(&batch)
                                    .timeout(Duration::from_secs(10))
                                    .send()
                                    .await;
                                let failure = match answer {
                                    Ok(a) if a.status().is_success() => break,
                                    Ok(a) => format!(
                                        "{}: {}",
                                        a.status(),
                                        a.text().await.unwrap_or_default()
                                    ),
                                    Err(e) => e.to_string(),
                                };
                                attempt += 1;
                                assert!(attempt < 200, "a batch was never acknowledged: {failure}");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            if time == 1 {
                                resent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        rounds_done.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(40)).await;
                    }
                }
            });
            futures_util::future::join_all(clients).await;
        }
    });
    let total_rounds = (CLIENTS as u64) * u64::from(ROUNDS);
    let wait_progress = |share: f64| {
        let started = Instant::now();
        while (rounds_done.load(Ordering::Relaxed) as f64) < share * total_rounds as f64 {
            assert!(
                started.elapsed() < Duration::from_secs(180) && !load.is_finished(),
                "the load stalled; the nodes' logs end:\n{}",
                cluster.log_tails()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // 40 %: a worker dies without warning; a new one joins.
    wait_progress(0.4);
    let dead = w0.take().unwrap();
    assert!(signal(&dead.child, "KILL"));
    drop(dead);
    let w2 = cluster.start("worker-2", "worker");

    // 55 %: the other is paused past its lease; the new worker takes its partitions,
    // then it resumes and finds them gone.
    wait_progress(0.55);
    assert!(signal(&w1.child, "STOP"));
    std::thread::sleep(Duration::from_millis(LEASE_MS * 3));
    assert!(signal(&w1.child, "CONT"));

    // 75 %: the server leading partition 0's stream is lost.
    wait_progress(0.75);
    let leader = runtime.block_on(leader_of(&cluster.queue, &format!("{}-0", cluster.stream)));
    nats.kill(&leader);

    runtime.block_on(load).unwrap();
    let persons = CLIENTS * PERSONS_PER_CLIENT;
    let sent = (persons as u64 * u64::from(ROUNDS)) as f64;
    assert!(
        resent.load(Ordering::Relaxed) > 0,
        "some batches went twice"
    );

    runtime.block_on(async {
        // Both query nodes count every event once.
        let started = Instant::now();
        loop {
            let counts = [
                identified(&http, &query.url, &project, &admin_key).await,
                identified(&http, &apis[1].url, &project, &admin_key).await,
            ];
            if counts == [sent, sent] {
                break;
            }
            assert!(
                counts.iter().all(|&c| c <= sent),
                "an event was stored twice: {counts:?} of {sent}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "not every acknowledged event was stored: {counts:?} of {sent}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        // Each person's last update is the last one sent, and each counted once.
        let page: Value = http
            .get(format!(
                "{}/api/v1/projects/{project}/persons?limit=1000",
                apis[0].url
            ))
            .bearer_auth(&admin_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found = common::seq_and_count(&page);
        assert_eq!(found.len(), persons);
        for (id, got) in &found {
            assert_eq!(got, &(json!(ROUNDS - 1), json!(ROUNDS)), "{id}");
        }

        // The paused worker learned it had lost its partitions from the store: a
        // write or a renewal refused.
        let paused = common::Client {
            http: http.clone(),
            base_url: w1.url.clone(),
        };
        let refused = paused
            .metric_total("appizer_events_fenced_writes_total")
            .await
            + paused
                .metric_total("appizer_events_leases_lost_total")
                .await;
        assert!(refused > 0.0, "the paused worker's writes went through");

        // Every catalogued file exists, and nothing else is left in the bucket (the
        // killed worker's unfinished files are collected).
        let store = appizer_storage::open_metadata_store(&cluster.database)
            .await
            .unwrap();
        let files = cluster.event_files();
        let started = Instant::now();
        loop {
            let catalogued: BTreeSet<String> = store
                .all_event_files()
                .await
                .unwrap()
                .into_iter()
                .map(|f| f.path)
                .collect();
            let on_disk: BTreeSet<String> = files
                .list()
                .await
                .unwrap()
                .into_iter()
                .map(|l| l.path)
                .collect();
            let missing: Vec<_> = catalogued.difference(&on_disk).collect();
            assert!(missing.is_empty(), "catalogued but missing: {missing:?}");
            if on_disk == catalogued {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "files left that the catalog does not list: {:?}",
                on_disk.difference(&catalogued).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    // Every process is killed as its node drops; the cluster's servers with it.
    drop(w2);
}
