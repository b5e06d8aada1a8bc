//! `appizer-bench`: benchmark programs. Each measures Appizer and a baseline in the same
//! run and reports the ratio, so figures compare across machines.
//!
//! `cargo build --profile profiling -p appizer -p appizer-bench`, then
//! `target/profiling/appizer-bench gateway`, `ingest`, `capture`,
//! `identity`, `analytics`, `push`, `campaigns`, `dashboard` and `cluster`: see
//! docs/benchmarks.md and docs/capacity.md.

mod analytics;
mod campaigns;
mod capture;
mod cluster;
mod dashboard;
mod gateway;
mod identity;
mod ingest;
mod machine;
mod push;
mod stats;

use clap::{Parser, Subcommand};

/// The server's allocator, so in-process measurements match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "appizer-bench",
    about = "Appizer benchmarks (ratios against same-run baselines)"
)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Authenticated GET /api/v1/projects/{id} at a fixed rate, and the per-request
    /// cost of the gateway middleware against the same handler without it.
    Gateway(gateway::Options),
    /// Durable ingestion through /v1/batch against the parse and HTTP ceilings,
    /// end-to-end throughput, single-event latency and peak memory.
    Ingest(ingest::Options),
    /// The gateway's CPU for a Segment batch (envelope, decoding, validation, queue
    /// record) on one thread, against parsing the same bodies into JSON values.
    Capture(capture::Options),
    /// Identity resolution in the workers with a million known persons (cold and warm
    /// cache) against a plain map, the cache's memory, and person lookup latency.
    Identity(identity::Options),
    /// Every analytics query kind over a generated dataset, in Appizer and in DuckDB on
    /// the same Parquet files, answers compared.
    Analytics(analytics::Options),
    /// Push sends/s through the outbox to each emulator against the same sender sending
    /// straight to it, and the server's memory over a large fan-out.
    Push(push::Options),
    /// Campaigns: trigger-to-send latency, and the time and memory to enqueue a large
    /// audience against the send API's fan-out of the same segment.
    Campaigns(campaigns::Options),
    /// The trends screen over 10 million events: over HTTP as the page asks, and in
    /// Chromium until drawn.
    Dashboard(dashboard::Options),
    /// One node of every role against a split deployment on this machine (2 api, 2
    /// worker, 1 query, 1 push; PostgreSQL, NATS): events/s acknowledged and stored,
    /// queries/s, push sends/s.
    Cluster(cluster::Options),
    /// The bare HTTP server the ingestion benchmark starts as its latency floor.
    #[command(hide = true)]
    BareServer,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Gateway(options) => gateway::run(options),
        Bench::Ingest(options) => ingest::run(options),
        Bench::Capture(options) => capture::run(options),
        Bench::Identity(options) => identity::run(options),
        Bench::Analytics(options) => analytics::run(options),
        Bench::Push(options) => push::run(options),
        Bench::Campaigns(options) => campaigns::run(options),
        Bench::Dashboard(options) => dashboard::run(options),
        Bench::Cluster(options) => cluster::run(options),
        Bench::BareServer => ingest::bare_server(),
    }
}
