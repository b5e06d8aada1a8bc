//! Identity resolution and person lookup with a million known persons, on the embedded
//! store (SQLite in a temporary directory), in process.
//!
//! 1. The person store is filled with `--persons` persons, one distinct id each.
//! 2. `--events` Segment `track` events (100 per queue record, 64 records per worker
//!    step, as the workers read them) by users drawn uniformly from those persons are
//!    resolved by `Identity::resolve` (the workers' step: person of each event, person
//!    updates gathered) twice: first with an empty cache (cold), then again (warm).
//!    Baseline: the same events' distinct ids looked up in a plain `HashMap` holding
//!    every id (the floor of any in-memory resolution).
//! 3. The cache's size against its configured bound.
//! 4. Person lookup by distinct id, as `GET .../distinct-ids/{id}` does it (id -> person,
//!    person row, its distinct ids), for random ids; baseline: the id -> person query
//!    alone.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use appizer_core::event::{Event, MessageType};
use appizer_core::{PersonId, ProjectId};
use appizer_storage::open_metadata_store;
use appizer_storage::persons::NewPerson;
use appizer_storage::testing::Tenant;
use appizer_users::{Identity, IdentityConfig};
use chrono::Utc;
use clap::Args;

use crate::stats::{us, Samples};

#[derive(Args)]
pub struct Options {
    /// Known persons (one distinct id each).
    #[arg(long, default_value_t = 1_000_000)]
    persons: usize,
    /// Events resolved per pass.
    #[arg(long, default_value_t = 2_000_000)]
    events: usize,
    /// The identity cache's entries per generation (`users.identity_cache_entries`).
    #[arg(long, default_value_t = 1_000_000)]
    cache_entries: usize,
    /// Person lookups timed.
    #[arg(long, default_value_t = 5_000)]
    lookups: usize,
}

const EVENTS_PER_RECORD: usize = 100;
const RECORDS_PER_STEP: usize = 64;

/// A small deterministic generator (xorshift), so every run draws the same users.
struct Draw(u64);

impl Draw {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below as u64) as usize
    }
}

fn user(i: usize) -> String {
    format!("user-{i:07}")
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub fn run(options: Options) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(measure(options))
}

async fn measure(o: Options) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store =
        open_metadata_store(&format!("sqlite://{}", dir.path().join("m.db").display())).await?;
    let persons = store.persons();
    let project = ProjectId::new();
    let (_, scope, _) = Tenant::create(store.as_ref(), project, "UTC").await?;
    println!(
        "identity benchmark: {} persons, {} events per pass, cache {} entries per generation",
        o.persons, o.events, o.cache_entries
    );

    let started = Instant::now();
    let now = Utc::now();
    let mut known: HashMap<String, PersonId> = HashMap::with_capacity(o.persons);
    for chunk_start in (0..o.persons).step_by(10_000) {
        let chunk: Vec<NewPerson> = (chunk_start..(chunk_start + 10_000).min(o.persons))
            .map(|i| NewPerson {
                distinct_id: user(i),
                person_id: PersonId::new(),
                is_identified: true,
                at: now,
            })
            .collect();
        known.extend(persons.create(scope, &chunk).await?);
    }
    println!(
        "  store filled with {} persons in {:.1} s",
        known.len(),
        started.elapsed().as_secs_f64()
    );

    // The events, as records of 100.
    let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
    let context: appizer_core::json::JsonObject = serde_json::json!({
        "library": {"name": "analytics-node", "version": "2.1.0"},
        "browser": {"name": "Chrome", "version": "126.0"},
        "os": {"name": "Linux"},
        "device": {"type": "desktop"},
        "page": {"path": "/shoes", "referrer": "https://search.example/q"}
    })
    .try_into()
    .map_err(|_| anyhow::anyhow!("context is an object"))?;
    let mut records: Vec<Vec<Event>> = (0..o.events.div_ceil(EVENTS_PER_RECORD))
        .map(|_| {
            (0..EVENTS_PER_RECORD)
                .map(|_| {
                    let who = user(draw.next(o.persons));
                    Event {
                        user_id: Some(who.clone()),
                        context: context.clone(),
                        ..Event::new(project, MessageType::Track, "Product Viewed", who, now)
                    }
                })
                .collect()
        })
        .collect();
    let total: usize = records.iter().map(Vec::len).sum();

    // Baseline: a plain map holding every id.
    let started = Instant::now();
    let mut found = 0usize;
    for record in &records {
        for e in record {
            found += usize::from(known.contains_key(e.distinct_id.as_str()));
        }
    }
    let baseline = total as f64 / started.elapsed().as_secs_f64();
    assert_eq!(found, total);

    let identity = Identity::new(
        store.clone(),
        IdentityConfig {
            cache_entries: o.cache_entries,
            ..IdentityConfig::default()
        },
    );
    let rss_before = rss_bytes();
    let (cold, _) = resolve_all(&identity, &mut records, true).await?;
    let (warm, applied) = resolve_all(&identity, &mut records, true).await?;
    let (ids_only, _) = resolve_all(&identity, &mut records, false).await?;
    let cache = identity.cache_stats();
    let rss_after = rss_bytes();

    println!(
        "  baseline HashMap lookup          {:>10.0} events/s",
        baseline
    );
    println!(
        "  resolution, cold cache           {:>10.0} events/s   ({:.2} of warm: {:.1}x slower)",
        cold,
        cold / warm,
        warm / cold
    );
    println!(
        "  resolution, warm cache           {:>10.0} events/s   ({:.2} of baseline)   target >= 200000: {}",
        warm,
        warm / baseline,
        if warm >= 200_000.0 { "met" } else { "not met" }
    );
    println!(
        "  persons only, warm (no updates)  {:>10.0} events/s   ({:.2} of baseline)",
        ids_only,
        ids_only / baseline
    );
    println!(
        "  person updates, applied per flush of {} events: {:.0} persons/s ({} flushes, {:.0} persons and {:.2} s each)",
        RECORDS_PER_STEP * EVENTS_PER_RECORD * STEPS_PER_FLUSH,
        applied.persons as f64 / applied.seconds,
        applied.flushes,
        applied.persons as f64 / applied.flushes as f64,
        applied.seconds / applied.flushes as f64,
    );
    println!(
        "  cache: {} ids, estimated {} (bound: {} ids, about {}); process RSS grew {} while resolving",
        cache.entries,
        mb(cache.bytes as u64),
        2 * o.cache_entries,
        mb((2 * o.cache_entries * (64 + 12)) as u64),
        mb(rss_after.saturating_sub(rss_before)),
    );

    // Person lookup by distinct id.
    let mut full = Vec::with_capacity(o.lookups);
    let mut bare = Vec::with_capacity(o.lookups);
    for _ in 0..o.lookups {
        let id = user(draw.next(o.persons));
        let ids = [id.clone()];
        let started = Instant::now();
        let person = persons.lookup(scope, &ids).await?[&id];
        bare.push(started.elapsed());
        let started = Instant::now();
        let person = persons
            .lookup(scope, &ids)
            .await?
            .get(&id)
            .copied()
            .unwrap_or(person);
        let row = persons.get(scope, person).await?;
        let distinct = persons.distinct_ids(scope, person).await?;
        full.push(started.elapsed());
        assert!(row.is_some() && distinct.contains(&id));
    }
    let (full, bare) = (Samples::new(full), Samples::new(bare));
    println!(
        "  person by distinct id            p50 {}  p99 {}   (id -> person query alone: p50 {}  p99 {}; p99 ratio {:.2})   target p99 < 5 ms: {}",
        us(full.percentile(50.0)),
        us(full.percentile(99.0)),
        us(bare.percentile(50.0)),
        us(bare.percentile(99.0)),
        full.percentile(99.0).as_secs_f64() / bare.percentile(99.0).as_secs_f64(),
        if full.percentile(99.0) < Duration::from_millis(5) {
            "met"
        } else {
            "not met"
        }
    );
    Ok(())
}

/// Person updates written to the store, as the workers do with each flush.
#[derive(Default)]
struct Applied {
    flushes: usize,
    persons: usize,
    seconds: f64,
}

/// Takes and applies the gathered person updates: (persons, seconds).
async fn apply(identity: &Identity, offset: u64) -> anyhow::Result<(usize, f64)> {
    let persons = identity.take_deltas();
    let started = Instant::now();
    identity
        .apply(Some(appizer_storage::persons::Applied::unleased(offset)))
        .await?;
    Ok((persons, started.elapsed().as_secs_f64()))
}

/// Steps (of 64 records) between flushes: about the default `ingest.flush_rows`.
const STEPS_PER_FLUSH: usize = 8;

/// Resolves every record as the workers do (64 records per step), applying the person
/// updates every `STEPS_PER_FLUSH` steps; events/s of resolution (the time spent
/// applying excluded, and reported apart). The events are handed over and given back,
/// as the workers own theirs.
async fn resolve_all(
    identity: &Identity,
    records: &mut [Vec<Event>],
    gather_updates: bool,
) -> anyhow::Result<(f64, Applied)> {
    // Updates of records at or below the applied offset are not gathered.
    let applied_offset = (!gather_updates).then_some(u64::MAX);
    let expected = records.iter().map(Vec::len).sum::<usize>();
    let mut applied = Applied::default();
    let started = Instant::now();
    let mut total = 0;
    for (step, chunk) in records.chunks_mut(RECORDS_PER_STEP).enumerate() {
        let mut batch: Vec<(u64, Option<Vec<Event>>)> = chunk
            .iter_mut()
            .enumerate()
            .map(|(i, r)| {
                (
                    (step * RECORDS_PER_STEP + i) as u64,
                    Some(std::mem::take(r)),
                )
            })
            .collect();
        let resolution = identity.resolve(&mut batch, applied_offset).await?;
        anyhow::ensure!(resolution.warnings.is_empty(), "unexpected warnings");
        total += batch
            .iter()
            .filter_map(|(_, e)| e.as_ref())
            .map(|e| e.iter().filter(|e| e.person_id.is_some()).count())
            .sum::<usize>();
        for (slot, (_, events)) in chunk.iter_mut().zip(batch) {
            *slot = events.unwrap_or_default();
        }
        if step % STEPS_PER_FLUSH == STEPS_PER_FLUSH - 1 {
            let (persons, seconds) = apply(identity, (step * RECORDS_PER_STEP) as u64).await?;
            applied.flushes += 1;
            applied.persons += persons;
            applied.seconds += seconds;
        }
    }
    let (persons, seconds) = apply(identity, records.len() as u64).await?;
    applied.flushes += 1;
    applied.persons += persons;
    applied.seconds += seconds;
    let elapsed = started.elapsed().as_secs_f64() - applied.seconds;
    anyhow::ensure!(total == expected);
    Ok((total as f64 / elapsed, applied))
}
