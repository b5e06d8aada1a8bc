//! Analytics queries over a generated dataset, in Appizer and in DuckDB on the same
//! Parquet files, with the answers compared.
//!
//! 1. A dataset is generated once into `--data` (reused by later runs with the same
//!    sizes): `--persons` persons in the embedded person store and `--events` events
//!    over 30 days written through the event store (one sorted Parquet file per day, as
//!    compaction leaves them). Events come in sessions of 1 to 20 events a few seconds
//!    apart; persons are drawn with a power law (a few very active, many occasional);
//!    event names are skewed (the k-th of 30 names about 1/k as frequent); properties
//!    carry a plan, an amount, a URL and a browser.
//! 2. Each query kind runs in Appizer's engine in process (one untimed run, then
//!    `--runs` timed) and the equivalent SQL runs in DuckDB (PyPI `duckdb`, through
//!    `scripts/bench/duckdb_queries.py`, same threads, same files, same runs).
//! 3. The answers of both are compared row by row; a mismatch fails the run.
//! 4. Memory per query kind: the most its DataFusion operators held at once (the
//!    query's memory pool, bounded by `analytics.query_memory_mb`); and the process's
//!    peak RSS over all kinds.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use appizer_analytics::{
    Breakdown, DateRange, Engine, FunnelOrder, FunnelQuery, Interval, LifecycleQuery, Math,
    PropertyType, QueryProject, RetentionQuery, RetentionType, Series, Step, StickinessQuery,
    TrendsQuery, WindowUnit,
};
use appizer_core::config::AnalyticsConfig;
use appizer_core::config::ParquetCompression;
use appizer_core::event::{Event, MessageType};
use appizer_core::json::JsonObject;
use appizer_core::{PersonId, ProjectId};
use appizer_storage::events::{EventStore, EventStoreConfig};
use appizer_storage::persons::NewPerson;
use appizer_storage::testing::Tenant;
use appizer_storage::{open_metadata_store, MetadataStore, ProjectScope};
use chrono::{DateTime, Duration as Span, Utc};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::stats::{ms, Samples};

#[derive(Args)]
pub struct Options {
    #[arg(long, default_value_t = 10_000_000)]
    events: usize,
    #[arg(long, default_value_t = 100_000)]
    persons: usize,
    /// Timed runs per query kind and engine.
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Where the dataset lives (generated if missing).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The Python with `duckdb` installed.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Persons of the second project, where a segment is recomputed (0: skip).
    #[arg(long, default_value_t = 1_000_000)]
    segment_persons: usize,
    /// Codec of the generated event files (`zstd`, `lz4_raw`, `snappy`); a dataset
    /// kept with `--data` keeps the codecs it was generated with.
    #[arg(long, default_value = "zstd")]
    compression: ParquetCompression,
    /// Codec of their key columns (`timestamp`, `event`, `distinct_id`, `person_id`),
    /// as `ingest.parquet_key_compression`.
    #[arg(long, default_value = "lz4_raw")]
    key_compression: ParquetCompression,
    /// Only these query kinds (comma-separated names, e.g. `trends_total,retention`).
    #[arg(long, value_delimiter = ',')]
    kinds: Vec<String>,
}

const DAYS: i64 = 30;
const NAMES: [&str; 30] = [
    "$pageview",
    "view_item",
    "$autocapture",
    "search",
    "add_to_cart",
    "$screen",
    "click_banner",
    "signup",
    "checkout",
    "purchase",
    "share",
    "rate_item",
    "open_app",
    "push_opened",
    "invite_sent",
    "remove_from_cart",
    "wishlist_add",
    "coupon_applied",
    "support_chat",
    "settings_changed",
    "logout",
    "login",
    "video_play",
    "video_complete",
    "comment",
    "follow",
    "unfollow",
    "report",
    "upgrade",
    "downgrade",
];
const PLANS: [&str; 8] = [
    "free",
    "pro",
    "team",
    "enterprise",
    "trial",
    "student",
    "nonprofit",
    "legacy",
];
const BROWSERS: [&str; 5] = ["Chrome", "Safari", "Firefox", "Edge", "Samsung Internet"];

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-10-02T00:00:00Z")
        .expect("valid")
        .with_timezone(&Utc)
}

/// Written once a dataset is whole; its name carries the layout (version 2: the
/// projects are in the metadata store, as the engine's scopes need), so a directory
/// of another layout is generated again.
const COMPLETE: &str = "complete.v2";
const SEGMENT_COMPLETE: &str = "segment-complete.v2";

fn project() -> ProjectId {
    "0193a000-0000-7000-8000-000000000001"
        .parse()
        .expect("a valid id")
}

/// The project of the segment benchmark.
fn segment_project() -> ProjectId {
    "0193a000-0000-7000-8000-000000000002"
        .parse()
        .expect("a valid id")
}

/// The scope of a project the generator created.
async fn scope_of(meta: &dyn MetadataStore, project: ProjectId) -> anyhow::Result<ProjectScope> {
    meta.project_scope(project)
        .await?
        .with_context(|| format!("project {project} is not in the dataset's metadata"))
}

/// A second project of `persons` persons (a plan property each) and two events per
/// 5 persons over 30 days.
async fn generate_segment_project(dir: &Path, persons: usize) -> anyhow::Result<()> {
    let meta =
        open_metadata_store(&format!("sqlite://{}", dir.join("metadata.db").display())).await?;
    let store = meta.persons();
    let tenant = Tenant {
        organization: scope_of(meta.as_ref(), project()).await?.organization(),
    };
    let project = segment_project();
    let (scope, _) = tenant.add_project(meta.as_ref(), project, "UTC").await?;
    let ids: Vec<PersonId> = (0..persons).map(|_| PersonId::new()).collect();
    let mut rng = StdRng::seed_from_u64(7);
    for (chunk_no, chunk) in ids.chunks(5_000).enumerate() {
        let new: Vec<NewPerson> = chunk
            .iter()
            .enumerate()
            .map(|(i, p)| NewPerson {
                distinct_id: format!("s{}", chunk_no * 5_000 + i),
                person_id: *p,
                is_identified: true,
                at: start(),
            })
            .collect();
        store.create(scope, &new).await?;
        let deltas: Vec<_> = chunk
            .iter()
            .map(|p| {
                let mut delta = appizer_core::person::PersonDelta::default();
                let plan = PLANS[(rng.random::<f64>().powi(2) * PLANS.len() as f64) as usize];
                delta.properties.set("plan", serde_json::json!(plan), 0);
                (scope, *p, delta)
            })
            .collect();
        store.apply_deltas(&deltas, None).await?;
    }
    let mut config = EventStoreConfig::new(dir.join("events"));
    config.flush_rows = usize::MAX;
    let events = EventStore::open(config, meta.clone())?;
    let mut batch = Vec::new();
    for i in 0..(persons * 2 / 5) {
        let p = rng.random_range(0..persons);
        let at = start() + Span::microseconds(rng.random_range(0..DAYS * 86_400_000_000));
        let name = if i % 3 == 0 { "purchase" } else { "$pageview" };
        batch.push(Event {
            message_id: format!("s{i}"),
            person_id: Some(ids[p]),
            ..Event::new(project, MessageType::Track, name, format!("s{p}"), at)
        });
    }
    events.append(batch, 1_000)?;
    events.flush().await?;
    Ok(())
}

/// Draws an event name index: the k-th name about 1/(k+1) as likely as the first.
fn name_index(rng: &mut StdRng, cumulative: &[f64]) -> usize {
    let x = rng.random::<f64>() * cumulative.last().copied().unwrap_or(1.0);
    cumulative.partition_point(|c| *c < x).min(NAMES.len() - 1)
}

async fn generate(
    dir: &Path,
    events: usize,
    persons: usize,
    codecs: (ParquetCompression, ParquetCompression),
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let meta =
        open_metadata_store(&format!("sqlite://{}", dir.join("metadata.db").display())).await?;
    let (_, scope, _) = Tenant::create(meta.as_ref(), project(), "UTC").await?;
    fill(meta, &dir.join("events"), scope, events, persons, codecs).await?;
    std::fs::write(dir.join(COMPLETE), format!("{events} {persons}\n"))?;
    Ok(())
}

/// Writes the dataset (persons, then events over 30 days from 2026-10-02) into an
/// existing project: `meta` and the event files under `events_dir`.
pub(crate) async fn fill(
    meta: Arc<dyn MetadataStore>,
    events_dir: &Path,
    scope: ProjectScope,
    events: usize,
    persons: usize,
    (compression, key_compression): (ParquetCompression, ParquetCompression),
) -> anyhow::Result<()> {
    let store = meta.persons();
    let project = scope.project();
    let ids: Vec<PersonId> = (0..persons).map(|_| PersonId::new()).collect();
    for (chunk_no, chunk) in ids.chunks(1_000).enumerate() {
        let new: Vec<NewPerson> = chunk
            .iter()
            .enumerate()
            .map(|(i, p)| NewPerson {
                distinct_id: format!("u{}", chunk_no * 1_000 + i),
                person_id: *p,
                is_identified: true,
                at: start(),
            })
            .collect();
        store.create(scope, &new).await?;
    }
    let mut config = EventStoreConfig::new(events_dir.to_path_buf());
    config.flush_rows = usize::MAX;
    config.compression = compression;
    config.key_compression = key_compression;
    let events_store = EventStore::open(config, meta.clone())?;
    let mut rng = StdRng::seed_from_u64(42);
    let mut cumulative = Vec::new();
    let mut total = 0.0;
    for k in 0..NAMES.len() {
        total += 1.0 / (k + 1) as f64;
        cumulative.push(total);
    }
    let per_day = events.div_ceil(DAYS as usize);
    let mut written = 0usize;
    let mut offset = 0u64;
    for day in 0..DAYS {
        let mut batch = Vec::with_capacity(per_day + 20);
        let day_start = start() + Span::days(day);
        while batch.len() < per_day && written + batch.len() < events {
            // A power law over persons: low indexes are the most active.
            let p = ((persons as f64) * rng.random::<f64>().powi(3)) as usize % persons;
            let mut at = day_start + Span::microseconds(rng.random_range(0..86_400_000_000i64));
            let length = rng.random_range(1..=20);
            let browser = BROWSERS[rng.random_range(0..BROWSERS.len())];
            for _ in 0..length {
                let name = NAMES[name_index(&mut rng, &cumulative)];
                let plan = PLANS[(rng.random::<f64>().powi(2) * PLANS.len() as f64) as usize];
                let amount = rng.random_range(100..100_000) as f64 / 100.0;
                let page = rng.random_range(0..5_000);
                let properties = format!(
                    r#"{{"plan":"{plan}","amount":{amount},"$current_url":"https://shop.example.com/p/{page}","$browser":"{browser}"}}"#
                );
                batch.push(Event {
                    message_id: format!("{p}-{}", at.timestamp_micros()),
                    properties: JsonObject::from_trusted_text(properties),
                    person_id: Some(ids[p]),
                    ..Event::new(project, MessageType::Track, name, format!("u{p}"), at)
                });
                at += Span::microseconds(rng.random_range(1_000_000..60_000_000));
            }
        }
        written += batch.len();
        offset += 1;
        events_store.append(batch, offset)?;
        events_store.flush().await?;
        eprintln!("generated day {} ({written} events)", day + 1);
    }
    Ok(())
}

fn range() -> DateRange {
    DateRange {
        from: Some("2026-10-02".into()),
        to: Some("2026-10-31".into()),
    }
}

/// One query kind: Appizer's run and its answer as rows of text, and DuckDB's SQL.
struct Kind {
    name: &'static str,
    sql: String,
}

const F: &str = "TIMESTAMPTZ '2026-10-02 00:00:00+00'";
const T: &str = "TIMESTAMPTZ '2026-11-01 00:00:00+00'";

fn kinds() -> Vec<Kind> {
    let day = "strftime(date_trunc('day', timestamp), '%Y-%m-%d')";
    let within = format!("timestamp >= {F} AND timestamp < {T}");
    vec![
        Kind {
            name: "trends_total",
            sql: format!(
                "SELECT {day} AS d, count(*) FROM ev WHERE event = '$pageview' AND {within} GROUP BY d ORDER BY d"
            ),
        },
        // The same count with `analytics.rollups` off: a scan of the files.
        Kind {
            name: "trends_total_scan",
            sql: format!(
                "SELECT {day} AS d, count(*) FROM ev WHERE event = '$pageview' AND {within} GROUP BY d ORDER BY d"
            ),
        },
        Kind {
            name: "trends_unique_persons",
            sql: format!(
                "SELECT {day} AS d, count(DISTINCT person_id) FROM ev WHERE {within} GROUP BY d ORDER BY d"
            ),
        },
        Kind {
            name: "trends_sum_property",
            sql: format!(
                "SELECT {day} AS d, round(sum(TRY_CAST(json_extract_string(properties, '$.amount') AS DOUBLE)), 2) \
                 FROM ev WHERE event = 'purchase' AND {within} GROUP BY d ORDER BY d"
            ),
        },
        Kind {
            name: "trends_breakdown",
            sql: format!(
                "WITH e AS (SELECT {day} AS d, coalesce(json_extract_string(properties, '$.plan'), '$none') AS v \
                   FROM ev WHERE event = 'view_item' AND {within}), \
                 top AS (SELECT v FROM e GROUP BY v ORDER BY count(*) DESC, v LIMIT 5) \
                 SELECT CASE WHEN v IN (SELECT v FROM top) THEN v ELSE '$other' END AS b, d, count(*) \
                 FROM e GROUP BY b, d ORDER BY b, d"
            ),
        },
        Kind {
            name: "funnel",
            sql: format!(
                "WITH a AS (SELECT person_id p, timestamp t FROM ev WHERE event = '$pageview' AND {within}), \
                 b AS (SELECT person_id p, timestamp t FROM ev WHERE event = 'add_to_cart' AND timestamp >= {F} AND timestamp < {T} + INTERVAL 1 DAY), \
                 c AS (SELECT person_id p, timestamp t FROM ev WHERE event = 'purchase' AND timestamp >= {F} AND timestamp < {T} + INTERVAL 1 DAY), \
                 ab AS (SELECT a.p, a.t AS t1, b.t AS t2 FROM a ASOF LEFT JOIN b ON a.p = b.p AND b.t > a.t), \
                 abc AS (SELECT ab.p, t1, t2, c.t AS t3 FROM ab ASOF LEFT JOIN c ON ab.p = c.p AND c.t > ab.t2), \
                 lv AS (SELECT p, max(1 + CASE WHEN t2 IS NOT NULL AND t2 - t1 <= INTERVAL 1 DAY THEN \
                          1 + CASE WHEN t3 IS NOT NULL AND t3 - t1 <= INTERVAL 1 DAY THEN 1 ELSE 0 END ELSE 0 END) AS l FROM abc GROUP BY p) \
                 SELECT count(*) FILTER (WHERE l >= 1), count(*) FILTER (WHERE l >= 2), count(*) FILTER (WHERE l >= 3) FROM lv"
            ),
        },
        Kind {
            name: "retention",
            sql: format!(
                "WITH s AS (SELECT DISTINCT person_id p, date_trunc('day', timestamp) d FROM ev WHERE event = 'view_item' AND {within}), \
                 r AS (SELECT DISTINCT person_id p, date_trunc('day', timestamp) d FROM ev WHERE event = 'purchase' AND timestamp >= {F} AND timestamp < {T} + INTERVAL 8 DAY) \
                 SELECT strftime(d, '%Y-%m-%d') AS c, 0 AS k, count(*) FROM s GROUP BY c \
                 UNION ALL SELECT strftime(s.d, '%Y-%m-%d') AS c, datediff('day', s.d, r.d) AS k, count(*) FROM s JOIN r \
                   ON s.p = r.p AND r.d > s.d AND r.d <= s.d + INTERVAL 7 DAY GROUP BY c, k ORDER BY c, k"
            ),
        },
        Kind {
            name: "stickiness",
            sql: format!(
                "SELECT k, count(*) FROM (SELECT person_id, count(DISTINCT date_trunc('day', timestamp)) AS k \
                 FROM ev WHERE event = 'purchase' AND {within} GROUP BY person_id) GROUP BY k ORDER BY k"
            ),
        },
        Kind {
            name: "lifecycle",
            sql: format!(
                "WITH a AS (SELECT DISTINCT person_id p, date_trunc('day', timestamp) d FROM ev \
                   WHERE event = 'purchase' AND timestamp >= {F} - INTERVAL 1 DAY AND timestamp < {T}), \
                 f AS (SELECT person_id p, date_trunc('day', min(timestamp)) AS first FROM ev WHERE event = 'purchase' AND timestamp < {T} GROUP BY p), \
                 cur AS (SELECT a.p, a.d, f.first, (prev.p IS NOT NULL) AS was FROM a JOIN f ON a.p = f.p \
                   LEFT JOIN a prev ON prev.p = a.p AND prev.d = a.d - INTERVAL 1 DAY WHERE a.d >= {F}), \
                 gone AS (SELECT a.d + INTERVAL 1 DAY AS d FROM a LEFT JOIN a nxt ON nxt.p = a.p AND nxt.d = a.d + INTERVAL 1 DAY \
                   WHERE nxt.p IS NULL AND a.d + INTERVAL 1 DAY < {T}) \
                 SELECT strftime(d, '%Y-%m-%d') AS day, \
                   count(*) FILTER (WHERE first = d), count(*) FILTER (WHERE first <> d AND was), \
                   count(*) FILTER (WHERE first <> d AND NOT was), 0 FROM cur GROUP BY day \
                 UNION ALL SELECT strftime(d, '%Y-%m-%d') AS day, 0, 0, 0, -count(*) FROM gone GROUP BY day ORDER BY day"
            ),
        },
    ]
}

/// Runs a kind in Appizer; its answer as rows of text in DuckDB's shape.
async fn appizer(
    engine: &Engine,
    project: &QueryProject,
    kind: &str,
) -> anyhow::Result<Vec<Vec<String>>> {
    let now = DateTime::parse_from_rfc3339("2026-11-20T00:00:00Z")?.with_timezone(&Utc);
    let series = |event: Option<&str>, math: Math, property: Option<&str>| Series {
        event: event.map(Into::into),
        math,
        math_property: property.map(Into::into),
        ..Default::default()
    };
    let trends = |s: Series, breakdown: Option<Breakdown>| TrendsQuery {
        series: vec![s],
        interval: Interval::Day,
        date_range: range(),
        breakdown,
        ..Default::default()
    };
    let by_day = |r: appizer_analytics::TrendsResult, round: bool| -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        for s in &r.results {
            for (label, v) in r.buckets.iter().zip(&s.data) {
                let v = v.unwrap_or(0.0);
                if v == 0.0 {
                    continue;
                }
                let text = if round {
                    format!("{:.2}", (v * 100.0).round() / 100.0)
                } else {
                    format!("{v}")
                };
                let mut row = Vec::new();
                row.extend(s.breakdown_value.clone());
                row.extend([label.clone(), text]);
                rows.push(row);
            }
        }
        rows.sort();
        rows
    };
    Ok(match kind {
        "trends_total" | "trends_total_scan" => by_day(
            engine
                .trends(
                    project,
                    &trends(series(Some("$pageview"), Math::Total, None), None),
                    now,
                )
                .await?,
            false,
        ),
        "trends_unique_persons" => by_day(
            engine
                .trends(
                    project,
                    &trends(series(None, Math::UniquePersons, None), None),
                    now,
                )
                .await?,
            false,
        ),
        "trends_sum_property" => by_day(
            engine
                .trends(
                    project,
                    &trends(series(Some("purchase"), Math::Sum, Some("amount")), None),
                    now,
                )
                .await?,
            true,
        ),
        "trends_breakdown" => by_day(
            engine
                .trends(
                    project,
                    &trends(
                        series(Some("view_item"), Math::Total, None),
                        Some(Breakdown {
                            key: "plan".into(),
                            kind: PropertyType::Event,
                            limit: Some(5),
                        }),
                    ),
                    now,
                )
                .await?,
            false,
        ),
        "funnel" => {
            let step = |e: &str| Step {
                event: e.into(),
                ..Default::default()
            };
            let r = engine
                .funnel(
                    project,
                    &FunnelQuery {
                        steps: vec![step("$pageview"), step("add_to_cart"), step("purchase")],
                        order: FunnelOrder::Ordered,
                        window: Some(1),
                        window_unit: WindowUnit::Day,
                        date_range: range(),
                        ..Default::default()
                    },
                    now,
                )
                .await?;
            vec![r.results[0]
                .steps
                .iter()
                .map(|s| s.count.to_string())
                .collect()]
        }
        "retention" => {
            let r = engine
                .retention(
                    project,
                    &RetentionQuery {
                        start_event: Step {
                            event: "view_item".into(),
                            ..Default::default()
                        },
                        return_event: Step {
                            event: "purchase".into(),
                            ..Default::default()
                        },
                        retention_type: RetentionType::Recurring,
                        period: Interval::Day,
                        periods: Some(7),
                        date_range: range(),
                        ..Default::default()
                    },
                    now,
                )
                .await?;
            let mut rows = Vec::new();
            for c in &r.cohorts {
                for (k, v) in c.values.iter().enumerate() {
                    if *v > 0 {
                        rows.push(vec![c.period.clone(), k.to_string(), v.to_string()]);
                    }
                }
            }
            rows
        }
        "stickiness" => {
            let r = engine
                .stickiness(
                    project,
                    &StickinessQuery {
                        series: vec![series(Some("purchase"), Math::Total, None)],
                        date_range: range(),
                        ..Default::default()
                    },
                    now,
                )
                .await?;
            r.results[0]
                .persons
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| vec![(k + 1).to_string(), n.to_string()])
                .collect()
        }
        "lifecycle" => {
            let r = engine
                .lifecycle(
                    project,
                    &LifecycleQuery {
                        event: Some("purchase".into()),
                        date_range: range(),
                        ..Default::default()
                    },
                    now,
                )
                .await?;
            let mut rows = Vec::new();
            for (i, day) in r.buckets.iter().enumerate() {
                let (n, ret, res, dor) =
                    (r.new[i], r.returning[i], r.resurrecting[i], r.dormant[i]);
                if n + ret + res != 0 {
                    rows.push(vec![
                        day.clone(),
                        n.to_string(),
                        ret.to_string(),
                        res.to_string(),
                        "0".into(),
                    ]);
                }
                if dor != 0 {
                    rows.push(vec![
                        day.clone(),
                        "0".into(),
                        "0".into(),
                        "0".into(),
                        dor.to_string(),
                    ]);
                }
            }
            rows
        }
        other => bail!("unknown kind {other}"),
    })
}

/// DuckDB's rows in a comparable order and form.
fn normalise(kind: &str, rows: &[Value]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.as_array()
                .map(|cells| {
                    cells
                        .iter()
                        .map(|c| c.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default()
        })
        .filter(|r: &Vec<String>| {
            !(kind.starts_with("trends") && r.last().is_some_and(|v| v == "0"))
        })
        .map(|mut r| {
            if kind == "trends_sum_property" {
                if let Some(v) = r.last_mut() {
                    *v = format!("{:.2}", v.parse::<f64>().unwrap_or(0.0));
                }
            }
            if kind == "trends_breakdown" {
                // (b, d, n): Appizer's rows are (breakdown, day, value) too.
            }
            r
        })
        .collect();
    if kind.starts_with("trends") {
        for r in &mut out {
            if let Some(v) = r.last_mut() {
                if let Ok(n) = v.parse::<f64>() {
                    if kind != "trends_sum_property" {
                        *v = format!("{n}");
                    }
                }
            }
        }
        out.sort();
    }
    if kind == "lifecycle" {
        // Merge the two row kinds of a day as Appizer reports them.
        let mut by_day: BTreeMap<String, [i64; 4]> = BTreeMap::new();
        for r in &out {
            let e = by_day.entry(r[0].clone()).or_default();
            for (i, slot) in e.iter_mut().enumerate() {
                *slot += r[i + 1].parse::<i64>().unwrap_or(0);
            }
        }
        out = Vec::new();
        for (day, [n, ret, res, dor]) in by_day {
            if n + ret + res != 0 {
                out.push(vec![
                    day.clone(),
                    n.to_string(),
                    ret.to_string(),
                    res.to_string(),
                    "0".into(),
                ]);
            }
            if dor != 0 {
                out.push(vec![
                    day,
                    "0".into(),
                    "0".into(),
                    "0".into(),
                    dor.to_string(),
                ]);
            }
        }
    }
    out
}

/// Resets the peak RSS to the current RSS (Linux).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

pub fn run(options: Options) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(options))
}

async fn run_async(options: Options) -> anyhow::Result<()> {
    let dir = options.data.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "appizer-analytics-{}-{}",
            options.events, options.persons
        ))
    });
    if !dir.join(COMPLETE).exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let started = Instant::now();
        let codecs = (options.compression, options.key_compression);
        generate(&dir, options.events, options.persons, codecs).await?;
        println!(
            "generated {} events, {} persons in {:.1} s into {}",
            options.events,
            options.persons,
            started.elapsed().as_secs_f64(),
            dir.display()
        );
    }
    if options.segment_persons > 0 && !dir.join(SEGMENT_COMPLETE).exists() {
        let started = Instant::now();
        generate_segment_project(&dir, options.segment_persons).await?;
        std::fs::write(
            dir.join(SEGMENT_COMPLETE),
            format!("{}\n", options.segment_persons),
        )?;
        println!(
            "generated the segment project ({} persons) in {:.1} s",
            options.segment_persons,
            started.elapsed().as_secs_f64()
        );
    }
    let meta =
        open_metadata_store(&format!("sqlite://{}", dir.join("metadata.db").display())).await?;
    let events = Arc::new(EventStore::open(
        EventStoreConfig::new(dir.join("events")),
        meta.clone(),
    )?);
    // Every timed run computes its answer: the result cache would serve the repeats.
    let config = AnalyticsConfig {
        result_cache_entries: 0,
        ..AnalyticsConfig::default()
    };
    let memory_limit = config.query_memory_mb;
    let scan_engine = Engine::new(
        events.clone(),
        meta.clone(),
        AnalyticsConfig {
            rollups: false,
            ..config.clone()
        },
    );
    let engine = Engine::new(events, meta.clone(), config);
    let project = QueryProject {
        scope: scope_of(meta.as_ref(), project()).await?,
        timezone: "UTC".into(),
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "{} events, {} persons, 30 days; {} timed runs per kind; {threads} threads each; query memory limit {memory_limit} MiB",
        options.events, options.persons, options.runs
    );

    let kinds: Vec<Kind> = kinds()
        .into_iter()
        .filter(|k| options.kinds.is_empty() || options.kinds.iter().any(|n| n == k.name))
        .collect();
    if kinds.is_empty() {
        bail!("no query kind is named {:?}", options.kinds);
    }
    let mut job = serde_json::json!({
        "files": dir.join("events").join(format!("project={}", project.scope.project())).join("date=*").join("*.parquet").display().to_string(),
        "runs": options.runs,
        "threads": threads,
        "queries": {},
    });
    for k in &kinds {
        job["queries"][k.name] = Value::String(k.sql.clone());
    }
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench/duckdb_queries.py");
    let mut child = Command::new(&options.python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {} (needs PyPI duckdb)", options.python))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(job.to_string().as_bytes())?;
    // DuckDB runs first, alone on the machine; then Appizer.
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("the DuckDB script failed");
    }
    let duck: Value = serde_json::from_slice(&output.stdout)?;

    println!(
        "\n| Query | Appizer p50 | Appizer p95 | DuckDB p50 | DuckDB p95 | Ratio (p50) | Query memory | Answers |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut mismatches = Vec::new();
    reset_peak_rss();
    for k in &kinds {
        let engine = if k.name.ends_with("_scan") {
            &scan_engine
        } else {
            &engine
        };
        let answer = appizer(engine, &project, k.name).await?;
        let mut peak = engine.last_query_peak_bytes();
        let mut times = Vec::new();
        for _ in 0..options.runs {
            let started = Instant::now();
            appizer(engine, &project, k.name).await?;
            times.push(started.elapsed());
            peak = peak.max(engine.last_query_peak_bytes());
        }
        let ours = Samples::new(times);
        let theirs = Samples::new(
            duck[k.name]["ms"]
                .as_array()
                .context("DuckDB times")?
                .iter()
                .map(|v| Duration::from_secs_f64(v.as_f64().unwrap_or(0.0) / 1e3))
                .collect(),
        );
        let expected = normalise(k.name, duck[k.name]["rows"].as_array().context("rows")?);
        let same = answer == expected;
        if !same {
            mismatches.push((k.name, answer.clone(), expected.clone()));
        }
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} | {:.1} MB | {} |",
            k.name,
            ms(ours.percentile(50.0)),
            ms(ours.percentile(95.0)),
            ms(theirs.percentile(50.0)),
            ms(theirs.percentile(95.0)),
            ours.percentile(50.0).as_secs_f64() / theirs.percentile(50.0).as_secs_f64(),
            peak as f64 / 1e6,
            if same {
                format!("equal ({} rows)", answer.len())
            } else {
                "DIFFER".to_string()
            }
        );
    }
    if options.segment_persons > 0 {
        segment(&engine, &meta, options.runs.min(3)).await?;
    }
    println!(
        "\nAppizer process peak RSS over the queries: {:.0} MB",
        peak_rss_bytes() as f64 / 1e6
    );
    println!(
        "DuckDB process peak RSS: {:.0} MB",
        duck["peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1e6
    );
    for (name, ours, theirs) in &mismatches {
        eprintln!(
            "{name}: Appizer {:?}\n  DuckDB {:?}",
            &ours[..ours.len().min(5)],
            &theirs[..theirs.len().min(5)]
        );
    }
    if !mismatches.is_empty() {
        bail!("{} query kinds answered differently", mismatches.len());
    }
    Ok(())
}

/// Recomputes a segment over the second project's persons (evaluation and storing its
/// members), timed; baseline: reading the persons' properties alone.
async fn segment(
    engine: &Engine,
    meta: &Arc<dyn appizer_storage::MetadataStore>,
    runs: usize,
) -> anyhow::Result<()> {
    use appizer_analytics::saved::SegmentCondition;
    let project = QueryProject {
        scope: scope_of(meta.as_ref(), segment_project()).await?,
        timezone: "UTC".into(),
    };
    let condition: SegmentCondition = serde_json::from_value(serde_json::json!({
        "type": "or", "conditions": [
            {"type": "and", "conditions": [
                {"type": "property", "key": "plan", "value": "pro"},
                {"type": "performed", "event": "purchase", "days": 30}
            ]},
            {"type": "property", "key": "plan", "value": "enterprise"}
        ]
    }))?;
    let now = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")?.with_timezone(&Utc);
    let definition = appizer_core::definition::Definition {
        id: appizer_core::DefinitionId::new(),
        project_id: project.scope.project(),
        kind: appizer_core::definition::DefinitionKind::Segment,
        name: format!("bench {}", Utc::now().timestamp_micros()),
        description: String::new(),
        body: serde_json::json!({"kind": "dynamic", "condition": condition}),
        member_count: None,
        computed_at: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    };
    let audit = appizer_core::tenancy::NewAuditEntry {
        organization_id: project.scope.organization(),
        project_id: Some(project.scope.project()),
        actor: appizer_core::tenancy::Actor::Cli,
        action: "segment.create".into(),
        target_type: "segment".into(),
        target_id: definition.id.to_string(),
        details: serde_json::json!({}),
        request_id: None,
        at: Utc::now(),
    };
    meta.create_definition(project.scope, &definition, &audit)
        .await?;
    let mut baseline = Vec::new();
    let mut times = Vec::new();
    let mut members = 0;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let rows = meta.persons().property_table(project.scope).await?;
        baseline.push(started.elapsed());
        drop(rows);
        let started = Instant::now();
        members = engine.refresh_segment(&project, &definition, now).await?;
        times.push(started.elapsed());
    }
    let (ours, floor) = (Samples::new(times), Samples::new(baseline));
    println!(
        "\nSegment over {} persons ({members} members): recomputed and stored in {:.2} s (p50 of {}), \
         reading the persons alone {:.2} s; ratio {:.2}",
        meta.persons().property_table(project.scope).await?.len(),
        ours.percentile(50.0).as_secs_f64(),
        ours.len(),
        floor.percentile(50.0).as_secs_f64(),
        ours.percentile(50.0).as_secs_f64() / floor.percentile(50.0).as_secs_f64(),
    );
    meta.delete_definition(project.scope, definition.kind, definition.id, &audit)
        .await?;
    Ok(())
}
