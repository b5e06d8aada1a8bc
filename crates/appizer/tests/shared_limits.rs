//! Rate limits across nodes: two API nodes on one PostgreSQL and one Redis spend one
//! budget per key, so together they admit at most the burst plus the rate times the
//! time elapsed (and, as a control, two nodes without Redis admit more than that); with
//! Redis killed, a node decides with its own buckets, counts it and says so in
//! `/readyz`, and goes back to Redis once it answers again.

mod common;

use std::time::{Duration, Instant};

use appizer::testing::TestServer;
use appizer_core::config::Config;
use appizer_core::secret::SecretString;
use common::services::{postgres_url, RedisServer};
use common::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

const RATE: u32 = 50;
const BURST: u32 = 100;
const LOAD_FOR: Duration = Duration::from_secs(2);

fn limits(config: &mut Config, database_url: &str, redis: Option<&str>) {
    config.database_url = SecretString::new(database_url.to_string());
    config.rate_limit.ingest_per_second = RATE;
    config.rate_limit.ingest_burst = BURST;
    if let Some(url) = redis {
        config.rate_limit.shared_url = SecretString::new(url.to_string());
    }
}

fn batch(n: usize) -> Value {
    json!({"batch": [{
        "type": "track", "event": "Limited", "userId": format!("u{n}"),
        "messageId": format!("limit-{n}-{}", uuid::Uuid::now_v7()),
    }]})
}

/// What two nodes admitted of one write key's ingestion, sent by four clients
/// alternating between them for [`LOAD_FOR`].
#[derive(Debug, Default)]
struct Load {
    admitted: [u64; 2],
    refused: [u64; 2],
    elapsed: Duration,
}

impl Load {
    fn admitted(&self) -> u64 {
        self.admitted.iter().sum()
    }

    /// The most the limit may admit over the load's time: burst plus rate times elapsed.
    fn bound(&self) -> f64 {
        f64::from(BURST) + f64::from(RATE) * self.elapsed.as_secs_f64()
    }
}

async fn load(nodes: [&TestServer; 2]) -> Load {
    let clients = [Client::new(nodes[0]), Client::new(nodes[1])];
    let write_key = nodes[0].keys.write_key.clone();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for sender in 0..4usize {
        let (clients, write_key) = (clients.clone(), write_key.clone());
        tasks.push(tokio::spawn(async move {
            let mut counts = Load::default();
            let mut n = sender;
            while started.elapsed() < LOAD_FOR {
                let node = n % 2;
                let status = clients[node]
                    .send_batch(&write_key, &batch(n))
                    .await
                    .status();
                match status {
                    StatusCode::OK => counts.admitted[node] += 1,
                    StatusCode::TOO_MANY_REQUESTS => counts.refused[node] += 1,
                    other => panic!("node {node} answered {other}"),
                }
                n += 4;
            }
            counts
        }));
    }
    let mut total = Load::default();
    for task in tasks {
        let counts = task.await.expect("a sender");
        for node in 0..2 {
            total.admitted[node] += counts.admitted[node];
            total.refused[node] += counts.refused[node];
        }
    }
    total.elapsed = started.elapsed();
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_nodes_spend_one_budget_through_redis() {
    let (Some(database), Some(redis)) = (postgres_url().await, RedisServer::start()) else {
        return;
    };
    let first = TestServer::start_with(|c| limits(c, &database, Some(&redis.url()))).await;
    let second = TestServer::join(first.keys.clone(), |c| {
        limits(c, &database, Some(&redis.url()))
    })
    .await;
    let load = load([&first, &second]).await;
    eprintln!("shared: {load:?}, bound {:.1}", load.bound());
    assert!(
        load.admitted() as f64 <= load.bound(),
        "two nodes admitted {} in {:?}: more than burst {BURST} + {RATE}/s",
        load.admitted(),
        load.elapsed
    );
    assert!(
        load.admitted() >= u64::from(BURST),
        "the burst is admitted at once: {load:?}"
    );
    for node in 0..2 {
        assert!(
            load.admitted[node] > 0 && load.refused[node] > 0,
            "node {node} both admitted and refused: {load:?}"
        );
    }
    for node in [&first, &second] {
        let stats = node.state.limiter.stats();
        assert_eq!(stats.local_fallbacks, 0, "Redis answered throughout");
        assert!(stats.shared > 0 && stats.kept_refusals > 0, "{stats:?}");
    }
    second.stop().await;
    first.stop().await;
}

/// The control: the same load on two nodes that each keep their own buckets admits
/// more than one budget allows, so the shared test above can tell the difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_nodes_without_redis_each_spend_their_own_budget() {
    let Some(database) = postgres_url().await else {
        return;
    };
    let first = TestServer::start_with(|c| limits(c, &database, None)).await;
    let second = TestServer::join(first.keys.clone(), |c| limits(c, &database, None)).await;
    let load = load([&first, &second]).await;
    eprintln!("local: {load:?}, bound {:.1}", load.bound());
    assert!(
        load.admitted() as f64 > load.bound(),
        "two separate budgets admit more than one: {load:?}"
    );
    second.stop().await;
    first.stop().await;
}

async fn readiness(api: &Client) -> Value {
    let answer = api.get("/readyz", "").await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_a_node_limits_locally_and_returns_to_redis() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let server = TestServer::start_with(|c| {
        c.rate_limit.shared_url = SecretString::new(redis.url());
        c.rate_limit.redis.retry_ms = 200;
    })
    .await;
    let api = Client::new(&server);
    let limiter = &server.state.limiter;
    let send = |n| {
        let api = &api;
        let key = server.keys.write_key.clone();
        async move { api.send_batch(&key, &batch(n)).await.status() }
    };
    assert_eq!(limiter.shared_up(), Some(true));
    assert_eq!(send(0).await, StatusCode::OK);
    assert_eq!(readiness(&api).await["status"], "ready");

    redis.kill();
    for n in 1..=3 {
        assert_eq!(send(n).await, StatusCode::OK, "ingestion goes on");
    }
    let stats = limiter.stats();
    assert!(stats.local_fallbacks >= 3, "{stats:?}");
    assert_eq!(limiter.shared_up(), Some(false));
    let ready = readiness(&api).await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["degraded"][0]["component"], "rate_limit", "{ready}");
    let metrics = api.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("appizer_rate_limit_local_fallback_total ")),
        "the fallbacks are counted in /metrics"
    );

    redis.resume();
    let shared_before = limiter.stats().shared;
    let started = Instant::now();
    let mut n = 4;
    while limiter.stats().shared == shared_before {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "decisions went back to Redis"
        );
        assert_eq!(send(n).await, StatusCode::OK);
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(limiter.shared_up(), Some(true));
    assert_eq!(readiness(&api).await["status"], "ready");
    server.stop().await;
}
