//! The request path's share of ingestion on one thread: a 100-event Segment batch (the
//! ingestion benchmark's bodies) taken through the envelope, each message's decoding
//! and validation, and the queue record, as `/v1/batch` does before it appends;
//! against parsing the same bodies into `serde_json::Value` (the parse ceiling of
//! `ingest`'s (b)). No HTTP, no queue: only the CPU a request costs the gateway.

use std::time::Instant;

use appizer_core::ProjectId;
use appizer_events::capture::{segment, Received};
use appizer_events::record::encode_record;
use chrono::Utc;
use serde_json::Value;

use crate::ingest::Template;

#[derive(clap::Args)]
pub struct Options {
    /// Batches decoded by each side.
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    /// Events per batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
}

pub fn run(o: Options) -> anyhow::Result<()> {
    let template = Template::new(o.batch);
    let events = o.requests * o.batch as u64;
    let received = Received {
        project_id: ProjectId::new(),
        received_at: Utc::now(),
        ip: Some("203.0.113.9".into()),
    };
    // Bodies are rendered before either clock starts.
    let bodies: Vec<Vec<u8>> = (0..o.requests).map(|n| template.render(n)).collect();
    println!(
        "capture benchmark: {} batches of {} (~{} bytes/event), one thread",
        o.requests,
        o.batch,
        template.render(0).len() / o.batch
    );
    // Alternated twice, so a slower moment of the machine falls on both sides.
    let (mut parse, mut decode, mut envelope_only) = (0.0, 0.0, 0.0);
    for _ in 0..2 {
        let started = Instant::now();
        for body in &bodies {
            let value: Value = serde_json::from_slice(body)?;
            std::hint::black_box(value);
        }
        parse += started.elapsed().as_secs_f64();
        let started = Instant::now();
        for body in &bodies {
            let envelope = segment::envelope(body, None)?;
            let decoded = segment::decode(&envelope, None, &received);
            anyhow::ensure!(decoded.warnings.is_empty(), "{:?}", decoded.warnings);
            std::hint::black_box(encode_record(&decoded.events));
        }
        decode += started.elapsed().as_secs_f64();
        let started = Instant::now();
        for body in &bodies {
            std::hint::black_box(segment::envelope(body, None)?);
        }
        envelope_only += started.elapsed().as_secs_f64();
    }
    let rate = |secs: f64| 2.0 * events as f64 / secs;
    println!(
        "  parse into serde_json::Value      {:>12.0} events/s",
        rate(parse)
    );
    println!(
        "  envelope, decode, validate, record {:>11.0} events/s   {:.2} of the parse",
        rate(decode),
        rate(decode) / rate(parse)
    );
    println!(
        "  of which the envelope alone        {:>11.0} events/s   {:.2} of the decoding's time",
        rate(envelope_only),
        envelope_only / decode
    );
    Ok(())
}
