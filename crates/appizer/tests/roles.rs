//! A split deployment on one machine: an API node, a worker node and a query node of
//! one product, sharing PostgreSQL, a JetStream stream and the event directory. Events
//! sent to the API node are processed by the worker and counted by the query node;
//! each node answers only what its roles serve, and says which role to ask otherwise.

mod common;

use std::time::{Duration, Instant};

use appizer::testing::TestServer;
use appizer_core::config::{Config, NodeRole};
use appizer_core::secret::SecretString;
use common::services::postgres_url;
use common::Client;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

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
        config.events_url = format!("file://{}", self.events.path().display());
    }
}

fn trends() -> Value {
    json!({"series": [{"event": "Split Event"}], "interval": "day", "date_range": {"from": "-1d"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_a_worker_and_a_query_node_share_one_product() {
    let (Some(database), Some(queue)) = (postgres_url().await, common::nats_url()) else {
        return;
    };
    let shared = Shared {
        database,
        queue,
        stream: common::test_stream(),
        events: tempfile::tempdir().unwrap(),
    };
    let api_node = TestServer::start_with(|c| shared.node(c, &[NodeRole::Api])).await;
    let keys = api_node.keys.clone();
    let worker = TestServer::join(keys.clone(), |c| shared.node(c, &[NodeRole::Worker])).await;
    let query = TestServer::join(keys.clone(), |c| shared.node(c, &[NodeRole::Query])).await;
    let (api, work, ask) = (
        Client::new(&api_node),
        Client::new(&worker),
        Client::new(&query),
    );

    let batch = json!({"batch": (0..25).map(|i| json!({
        "type": "track", "event": "Split Event", "userId": format!("user{}", i % 5),
    })).collect::<Vec<_>>()});
    let sent = api.send_batch(&keys.write_key, &batch).await;
    assert_eq!(sent.status(), StatusCode::OK);

    let path = format!("/api/v1/projects/{}/query/trends", keys.project_id);
    let started = Instant::now();
    loop {
        let answer = ask
            .call(Method::POST, &path, &keys.admin_key, Some(trends()))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        if answer.body["results"][0]["aggregated"] == 25.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the query node never counted the worker's files: {:?}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Each node refuses what its roles do not serve, naming the role to ask.
    let refused = api
        .call(Method::POST, &path, &keys.admin_key, Some(trends()))
        .await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.error_field(), "role");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`query` role"),
        "{:?}",
        refused.body
    );
    for node in [&work, &ask] {
        let status = node.send_batch(&keys.write_key, &batch).await.status();
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "ingestion is the API's"
        );
    }
    let persons = format!("/api/v1/projects/{}/persons", keys.project_id);
    assert_eq!(
        ask.get(&persons, &keys.admin_key).await.error_field(),
        "role"
    );
    assert_eq!(
        api.get(&persons, &keys.admin_key).await.status,
        StatusCode::OK
    );
    for node in [&api, &work, &ask] {
        let ready = node.get("/readyz", "").await;
        assert_eq!(ready.status, StatusCode::OK, "{:?}", ready.body);
    }

    query.stop().await;
    worker.stop().await;
    api_node.stop().await;
    // The stream reserves its disk budget on the server until it is deleted.
    use appizer_storage::queue::{NatsConfig, NatsQueue};
    NatsQueue::open(NatsConfig::new(&shared.queue, &shared.stream))
        .await
        .unwrap()
        .delete()
        .await
        .unwrap();
}
