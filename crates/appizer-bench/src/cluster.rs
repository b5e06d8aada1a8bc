//! The capacity benchmark: the same load through one node of every role (`all`, on
//! embedded storage) and through a split deployment on this machine (two `api` nodes,
//! two `worker`s, a `query` and a `push` node, each its own process, on PostgreSQL, a
//! NATS JetStream queue in `--partitions` streams and a shared event directory), in
//! the same run:
//! (a) events/s acknowledged through `/v1/batch` (the split's load spread over its API
//!     nodes);
//! (b) events/s end-to-end, from the first request until the query node counts every
//!     event (in the split, once the workers flushed them: `flush_interval_ms` 1 s);
//! (c) queries/s of one trends query (unique persons per hour over the last day) from
//!     several clients, the answer cache off in both;
//! (d) push sends/s through the outbox to the APNs emulator, one message to a segment
//!     of `--devices` devices.
//!
//! Every process shares the machine's cores: the split's figures are the cost of
//! distribution, not its gain (docs/capacity.md).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use appizer_core::push::Platform;
use appizer_core::ProjectId;
use appizer_push::credentials::MasterKey;
use appizer_storage::open_metadata_store;
use appizer_storage::queue::{NatsConfig, NatsQueue};
use serde_json::{json, Value};

use crate::ingest::{appizer_binary, blast, spawn_serve_with, Running, Template};
use crate::push::{
    apns_token, audience, emulator_setup, providers, start_emulator, until_delivered,
};

#[derive(clap::Args)]
pub struct Options {
    /// Events sent through /v1/batch to each layout.
    #[arg(long, default_value_t = 500_000)]
    events: u64,
    /// Concurrent connections of the load (spread over the API nodes).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Events per batch request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Seconds of the query load, and its concurrent clients.
    #[arg(long, default_value_t = 10)]
    query_seconds: u64,
    #[arg(long, default_value_t = 8)]
    query_clients: usize,
    /// Devices of the push fan-out.
    #[arg(long, default_value_t = 50_000)]
    devices: usize,
    /// The split's PostgreSQL (a schema of its own, dropped afterwards).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres: String,
    /// The split's NATS JetStream server (streams of its own, deleted afterwards).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Partitions of the split's queue.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
}

/// What each layout measured.
#[derive(Debug, Clone, Copy)]
struct Figures {
    acked: f64,
    stored: f64,
    queries: f64,
    pushes: f64,
}

/// The nodes of a layout, and where to reach each role.
struct Layout {
    _nodes: Vec<Running>,
    api: Vec<String>,
    query: String,
    admin_key: String,
    write_key: String,
    project: String,
}

/// A master key every node of a layout seals and opens push credentials with.
const MASTER_KEY: &str = "6b1d3a0f2c4e5d7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a";

const QUERY: &str = r#"{"series":[{"event":"Product Viewed","math":"unique_persons"}],"interval":"hour","date_range":{"from":"-1d"}}"#;

pub fn run(o: Options) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let template = Arc::new(Template::new(o.batch));
    let requests = o.events.div_ceil(o.batch as u64);
    let events = requests * o.batch as u64;
    println!(
        "capacity benchmark: {events} events in batches of {}, {} connections; {} query clients for {} s; {} devices; {} cores",
        o.batch,
        o.connections,
        o.query_clients,
        o.query_seconds,
        o.devices,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let emulator = start_emulator(1000)?;
    let (account, _) =
        runtime.block_on(emulator_setup(&reqwest::Client::new(), &emulator.url, 0))?;
    let binary = appizer_binary()?;
    let dir = tempfile::tempdir()?;
    let push_env = |url: &str| {
        vec![
            ("APPIZER_PUSH__APNS_URL", url.to_string()),
            ("APPIZER_PUSH__MASTER_KEY", MASTER_KEY.to_string()),
            ("APPIZER_INGEST__FLUSH_INTERVAL_MS", "1000".to_string()),
            ("APPIZER_ANALYTICS__RESULT_CACHE_ENTRIES", "0".to_string()),
        ]
    };

    // One node of every role, on embedded storage.
    let single = {
        let data = dir.path().join("single");
        let keys = init(&binary, &data, &[])?;
        let metadata = format!("sqlite://{}", data.join("metadata.db").display());
        let segment = runtime.block_on(fill(&metadata, &keys, &account, o.devices))?;
        let (node, url) = spawn_serve_with(&binary, &data, &push_env(&emulator.url))?;
        let layout = Layout {
            _nodes: vec![node],
            api: vec![url.clone()],
            query: url,
            admin_key: text(&keys, "admin_key"),
            write_key: text(&keys, "write_key"),
            project: text(&keys, "project_id"),
        };
        let figures = runtime.block_on(measure(&o, &layout, &template, requests, segment))?;
        report("single node (all roles, embedded)", &figures, None);
        figures
    };

    // The split deployment.
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let sep = if o.postgres.contains('?') { '&' } else { '?' };
    let database = format!("{}{sep}options=-c%20search_path%3D{schema}", o.postgres);
    let stream = format!("APPIZER_BENCH_{}", uuid::Uuid::new_v4().simple());
    runtime.block_on(admin_sql(&o.postgres, &format!("CREATE SCHEMA {schema}")))?;
    let shared = |name: &str| -> Vec<(&'static str, String)> {
        let mut env = push_env(&emulator.url);
        env.extend([
            ("APPIZER_DATABASE_URL", database.clone()),
            ("APPIZER_INGEST__QUEUE_URL", o.nats.clone()),
            ("APPIZER_INGEST__NATS__STREAM", stream.clone()),
            ("APPIZER_INGEST__NATS__PARTITIONS", o.partitions.to_string()),
            (
                "APPIZER_EVENTS_URL",
                format!("file://{}", dir.path().join("events").display()),
            ),
            ("APPIZER_ROLES", format!("[\"{name}\"]")),
        ]);
        env
    };
    let split = (|| -> anyhow::Result<Figures> {
        let keys = init(&binary, &dir.path().join("init"), &shared("all"))?;
        let segment = runtime.block_on(fill(&database, &keys, &account, o.devices))?;
        let mut nodes = Vec::new();
        let mut urls = Vec::new();
        for (i, role) in ["worker", "worker", "query", "push", "api", "api"]
            .into_iter()
            .enumerate()
        {
            let data = dir.path().join(format!("{role}-{i}"));
            let (node, url) = spawn_serve_with(&binary, &data, &shared(role))?;
            nodes.push(node);
            urls.push(url);
        }
        let layout = Layout {
            _nodes: nodes,
            api: urls[4..].to_vec(),
            query: urls[2].clone(),
            admin_key: text(&keys, "admin_key"),
            write_key: text(&keys, "write_key"),
            project: text(&keys, "project_id"),
        };
        runtime.block_on(measure(&o, &layout, &template, requests, segment))
    })();
    runtime.block_on(async {
        for partition in 0..o.partitions {
            let name = format!("{stream}-{partition}");
            if let Ok(queue) = NatsQueue::open(NatsConfig::new(&o.nats, &name)).await {
                let _ = queue.delete().await;
            }
        }
        let _ = admin_sql(&o.postgres, &format!("DROP SCHEMA {schema} CASCADE")).await;
    });
    let split = split?;
    report(
        &format!(
            "split (2 api, 2 worker, 1 query, 1 push; PostgreSQL, NATS in {} partitions)",
            o.partitions
        ),
        &split,
        Some(&single),
    );
    println!(
        "  per node: {:.0} events/s acknowledged per API node, {:.0} events/s stored per partition, {:.1} queries/s per query node, {:.0} sends/s per push node",
        split.acked / 2.0,
        split.stored / f64::from(o.partitions),
        split.queries,
        split.pushes
    );
    Ok(())
}

fn text(keys: &Value, name: &str) -> String {
    keys[name].as_str().unwrap_or_default().to_string()
}

/// `appizer init --json` on `data` with `env`: the keys it printed.
fn init(binary: &Path, data: &Path, env: &[(&str, String)]) -> anyhow::Result<Value> {
    let mut command = std::process::Command::new(binary);
    for (name, value) in env {
        command.env(name, value);
    }
    let init = command
        .args(["init", "--json", "--data-dir"])
        .arg(data)
        .output()?;
    if !init.status.success() {
        bail!("init failed: {}", String::from_utf8_lossy(&init.stderr));
    }
    Ok(serde_json::from_slice(&init.stdout)?)
}

async fn admin_sql(url: &str, sql: &str) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .context("connect to --postgres")?;
    sqlx::query(sql).execute(&pool).await?;
    pool.close().await;
    Ok(())
}

/// The project's APNs provider and a segment of `devices` iOS devices, written to the
/// store at `url` before the nodes start.
async fn fill(
    url: &str,
    keys: &Value,
    account: &Value,
    devices: usize,
) -> anyhow::Result<appizer_core::DefinitionId> {
    let store = open_metadata_store(url).await?;
    let project: ProjectId = text(keys, "project_id").parse()?;
    let scope = store
        .project_scope(project)
        .await?
        .context("the project init made")?;
    let master = MasterKey::from_hex(MASTER_KEY)?;
    providers(store.as_ref(), scope, &master, account).await?;
    let segment = audience(store.as_ref(), scope, Platform::Ios, devices, |i| {
        (apns_token(i), None)
    })
    .await?;
    store.close().await;
    Ok(segment)
}

async fn measure(
    o: &Options,
    layout: &Layout,
    template: &Arc<Template>,
    requests: u64,
    segment: appizer_core::DefinitionId,
) -> anyhow::Result<Figures> {
    let events = requests * o.batch as u64;
    let http = reqwest::Client::new();
    // (a) and (b): the load spread over the API nodes, in parts of the request range.
    let started = Instant::now();
    let nodes = layout.api.len() as u64;
    let mut loads = Vec::new();
    for (i, api) in layout.api.iter().enumerate() {
        let (from, to) = (
            requests * i as u64 / nodes,
            requests * (i as u64 + 1) / nodes,
        );
        let (url, template) = (format!("{api}/v1/batch"), template.clone());
        let connections = (o.connections / layout.api.len()).max(1);
        let key = layout.write_key.clone();
        loads.push(tokio::spawn(async move {
            blast(&url, Some(&key), template, from, to - from, connections).await
        }));
    }
    for load in loads {
        load.await??;
    }
    let acked = events as f64 / started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let answer = trends(
            &http,
            layout,
            r#"{"series":[{"event":"Product Viewed"}],"date_range":{"from":"-1d"}}"#,
        )
        .await?;
        let counted = answer["results"][0]["aggregated"].as_f64().unwrap_or(0.0);
        if counted >= events as f64 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{counted} of {events} events counted after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = events as f64 / started.elapsed().as_secs_f64();

    // (c) the query load.
    let answered = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(o.query_seconds);
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..o.query_clients {
        let (http, answered) = (http.clone(), answered.clone());
        let (url, key) = (query_url(layout), layout.admin_key.clone());
        clients.push(tokio::spawn(async move {
            while Instant::now() < until {
                let answer = http
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(QUERY)
                    .send()
                    .await?;
                if !answer.status().is_success() {
                    bail!("the query answered {}", answer.status());
                }
                answer.bytes().await?;
                answered.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for client in clients {
        client.await??;
    }
    let queries = answered.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();

    // (d) one message to the segment, from the 202 until nothing is queued.
    let base = format!("{}/api/v1/projects/{}", layout.api[0], layout.project);
    let started = Instant::now();
    let answer: Value = http
        .post(format!("{base}/push/messages"))
        .bearer_auth(&layout.admin_key)
        .json(&json!({"to": {"segment_id": segment}, "platforms": ["ios"],
                      "notification": {"title": "Spring sale", "body": "20% off until midnight"}}))
        .send()
        .await?
        .json()
        .await?;
    let id = answer["message_id"]
        .as_str()
        .with_context(|| format!("the send API answered {answer}"))?
        .to_string();
    until_delivered(&http, &base, &layout.admin_key, &id, o.devices, || {}).await?;
    let pushes = o.devices as f64 / started.elapsed().as_secs_f64();
    Ok(Figures {
        acked,
        stored,
        queries,
        pushes,
    })
}

fn query_url(layout: &Layout) -> String {
    format!(
        "{}/api/v1/projects/{}/query/trends",
        layout.query, layout.project
    )
}

async fn trends(http: &reqwest::Client, layout: &Layout, body: &str) -> anyhow::Result<Value> {
    Ok(http
        .post(query_url(layout))
        .bearer_auth(&layout.admin_key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?
        .json()
        .await?)
}

fn report(name: &str, f: &Figures, against: Option<&Figures>) {
    println!("{name}:");
    let rows = [
        (
            "(a)",
            f.acked,
            against.map(|s| s.acked),
            0,
            "events/s acknowledged",
        ),
        (
            "(b)",
            f.stored,
            against.map(|s| s.stored),
            0,
            "events/s stored end-to-end",
        ),
        ("(c)", f.queries, against.map(|s| s.queries), 1, "queries/s"),
        (
            "(d)",
            f.pushes,
            against.map(|s| s.pushes),
            0,
            "push sends/s",
        ),
    ];
    for (label, value, base, decimals, what) in rows {
        let ratio = base.map_or(String::new(), |b| format!(" = {:.2} x single", value / b));
        println!("  {label} {value:>9.decimals$} {what}{ratio}");
    }
}
