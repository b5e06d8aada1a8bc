//! Partitioned ingestion on one machine: an API node and two workers sharing
//! PostgreSQL, a queue of four JetStream partitions and the event directory. The
//! workers split the partitions through leases, hand them over when one joins or
//! leaves, and a worker whose lease was taken stops writing; through all of it every
//! acknowledged event is stored exactly once and each person's events keep their
//! order.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use appizer::testing::TestServer;
use appizer_core::config::{Config, NodeRole};
use appizer_core::secret::SecretString;
use appizer_core::ProjectId;
use appizer_storage::queue::{partition_of, NatsConfig, NatsQueue};
use appizer_storage::MetadataStore;
use common::services::postgres_url;
use common::Client;
use reqwest::{Method, StatusCode};
use serde_json::json;

const PARTITIONS: u32 = 4;

struct Shared {
    database: String,
    queue: String,
    stream: String,
    events: tempfile::TempDir,
}

impl Shared {
    fn node(&self, config: &mut Config, roles: &[NodeRole]) {
        config.roles = roles.to_vec();
        config.database_url = SecretString::new(self.database.clone());
        config.ingest.queue_url = SecretString::new(self.queue.clone());
        config.ingest.nats.stream = self.stream.clone();
        config.ingest.nats.partitions = PARTITIONS;
        config.ingest.worker_lease_ms = 1_000;
        config.events_url = format!("file://{}", self.events.path().display());
    }

    async fn delete_streams(&self) {
        for k in 0..PARTITIONS {
            let stream = format!("{}-{k}", self.stream);
            NatsQueue::open(NatsConfig::new(&self.queue, stream))
                .await
                .unwrap()
                .delete()
                .await
                .unwrap();
        }
    }
}

/// Partitions per owner, as the lease table has them.
async fn holders(store: &dyn MetadataStore) -> BTreeMap<String, usize> {
    let mut held = BTreeMap::new();
    for lease in store.leases().leases().await.unwrap() {
        if let Some(owner) = lease.owner {
            *held.entry(owner).or_default() += 1;
        }
    }
    held
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < Duration::from_secs(30), "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `rounds` identifies per person, each setting `seq` to its round; returns
/// how many events were acknowledged.
async fn send(
    api: &Client,
    write_key: &str,
    persons: &[String],
    rounds: std::ops::Range<u32>,
) -> u64 {
    let mut sent = 0;
    for round in rounds {
        let batch = json!({"batch": persons.iter().map(|p| json!({
            "type": "identify", "userId": p, "traits": {"seq": round},
            "messageId": format!("{p}-{round}"),
        })).collect::<Vec<_>>()});
        let answer = api.send_batch(write_key, &batch).await;
        assert_eq!(answer.status(), StatusCode::OK);
        sent += persons.len() as u64;
    }
    sent
}

async fn stored(api: &Client, keys: &appizer::InitOutput) -> f64 {
    let path = format!("/api/v1/projects/{}/query/trends", keys.project_id);
    let query = json!({"series": [{"event": "$identify"}], "interval": "day",
        "date_range": {"from": "-1d"}});
    let answer = api
        .call(Method::POST, &path, &keys.admin_key, Some(query))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body["results"][0]["aggregated"]
        .as_f64()
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_the_partitions_and_hand_them_over() {
    let (Some(database), Some(queue)) = (postgres_url().await, common::nats_url()) else {
        return;
    };
    let shared = Shared {
        database,
        queue,
        stream: common::test_stream(),
        events: tempfile::tempdir().unwrap(),
    };
    let api_node =
        TestServer::start_with(|c| shared.node(c, &[NodeRole::Api, NodeRole::Query])).await;
    let keys = api_node.keys.clone();
    let store = api_node.state.store.clone();
    let api = Client::new(&api_node);
    let persons: Vec<String> = (0..24).map(|i| format!("person-{i}")).collect();
    let project: ProjectId = keys.project_id;
    let used: std::collections::BTreeSet<u32> = persons
        .iter()
        .map(|p| partition_of(PARTITIONS, project, p))
        .collect();
    assert_eq!(
        used.len() as u32,
        PARTITIONS,
        "every partition gets persons"
    );

    // One worker takes every partition.
    let first = TestServer::join(keys.clone(), |c| shared.node(c, &[NodeRole::Worker])).await;
    wait_for("the first worker never took every partition", async || {
        holders(&*store).await.values().sum::<usize>() == PARTITIONS as usize
    })
    .await;
    let mut sent = send(&api, &keys.write_key, &persons, 0..3).await;

    // A second joins: the first hands it half, flushing what it held first.
    let second = TestServer::join(keys.clone(), |c| shared.node(c, &[NodeRole::Worker])).await;
    sent += send(&api, &keys.write_key, &persons, 3..6).await;
    wait_for("the partitions were never shared two and two", async || {
        let held = holders(&*store).await;
        held.len() == 2 && held.values().all(|&n| n == 2)
    })
    .await;
    sent += send(&api, &keys.write_key, &persons, 6..9).await;

    // The first leaves: the second takes all four.
    first.stop().await;
    wait_for(
        "the second worker never took the first's partitions",
        async || {
            let held = holders(&*store).await;
            held.len() == 1 && held.values().sum::<usize>() == PARTITIONS as usize
        },
    )
    .await;
    sent += send(&api, &keys.write_key, &persons, 9..12).await;
    wait_for("the events were never all stored", async || {
        stored(&api, &keys).await >= sent as f64
    })
    .await;

    // Partition 0 is taken from under the second worker (as if it had been paused
    // past its lease): it stops writing it, and what is sent there meanwhile waits
    // in the queue until the partition is free again.
    sqlx::any::install_default_drivers();
    let pg = sqlx::AnyPool::connect(&shared.database).await.unwrap();
    let far = chrono::Utc::now().timestamp_millis() + 3_600_000;
    sqlx::query(
        "UPDATE partition_leases SET owner = 'elsewhere', epoch = epoch + 1, expires_at = $1 \
         WHERE queue_partition = 0",
    )
    .bind(far)
    .execute(&pg)
    .await
    .unwrap();
    let zero: Vec<String> = persons
        .iter()
        .filter(|p| partition_of(PARTITIONS, project, p) == 0)
        .cloned()
        .collect();
    sent += send(&api, &keys.write_key, &zero, 12..14).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = stored(&api, &keys).await;
    assert_eq!(
        before,
        (sent - 2 * zero.len() as u64) as f64,
        "the worker that lost partition 0 stored nothing of it"
    );
    sqlx::query(
        "UPDATE partition_leases SET owner = NULL, expires_at = 0 WHERE queue_partition = 0",
    )
    .execute(&pg)
    .await
    .unwrap();
    wait_for("partition 0 was never taken again", async || {
        stored(&api, &keys).await >= sent as f64
    })
    .await;

    // Exactly once: a resend of acknowledged events changes nothing.
    send(&api, &keys.write_key, &persons, 10..12).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stored(&api, &keys).await,
        sent as f64,
        "no event stored twice"
    );
    // Each person's last identify is the one sent last, and each was counted once.
    let path = format!("/api/v1/projects/{}/persons?limit=1000", keys.project_id);
    let answer = api.get(&path, &keys.admin_key).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let found = common::seq_and_count(&answer.body);
    assert_eq!(found.len(), persons.len(), "{found:?}");
    for p in &persons {
        let rounds = if zero.contains(p) { 14 } else { 12 };
        assert_eq!(
            found[p],
            (json!(rounds - 1), json!(rounds)),
            "{p}: its last seq and its event count"
        );
    }

    second.stop().await;
    api_node.stop().await;
    shared.delete_streams().await;
}
