//! Every query kind against a brute-force computation in plain Rust over the same
//! generated events: real SQLite person store, real Parquet files plus the in-memory
//! buffer, a time zone with a daylight saving change inside the range, late events,
//! merged and deleted persons, events without a person, breakdowns with `$other`.
//! The oracle shares no code with the engine: buckets, persons and percentiles are
//! computed here from first principles.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use appizer_analytics::*;
use appizer_core::config::AnalyticsConfig;
use appizer_core::event::{Event, MessageType};
use appizer_core::person::{MergeReason, PersonDelta};
use appizer_core::{PersonId, ProjectId};
use appizer_storage::events::{EventStore, EventStoreConfig};
use appizer_storage::persons::NewPerson;
use appizer_storage::testing::Tenant;
use appizer_storage::{open_metadata_store, MetadataStore};
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const TZ: &str = "America/New_York";
const EVENTS: [&str; 4] = ["$pageview", "signup", "view_item", "purchase"];
const PLANS: [&str; 4] = ["free", "pro", "team", "enterprise"];

/// One generated event as the oracle sees it.
#[derive(Debug, Clone)]
struct Fact {
    at: DateTime<Utc>,
    event: String,
    /// The person the event belongs to after merges; `None` without one or deleted.
    person: Option<String>,
    /// Deleted persons' events are gone from every answer.
    hidden: bool,
    props: serde_json::Map<String, Value>,
}

struct World {
    _dir: tempfile::TempDir,
    engine: Engine,
    store: Arc<EventStore>,
    meta: Arc<dyn MetadataStore>,
    /// The persons that exist now (users, less the deleted one).
    live: Vec<String>,
    project: QueryProject,
    facts: Vec<Fact>,
    /// Person properties by (final) person id.
    person_props: HashMap<String, serde_json::Map<String, Value>>,
    now: DateTime<Utc>,
    tz: Tz,
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// 2026-10-26 .. 2026-11-09 in New York, across the return to standard time on Nov 1.
fn range() -> DateRange {
    DateRange {
        from: Some("2026-10-26".into()),
        to: Some("2026-11-08".into()),
    }
}

async fn world() -> World {
    world_with(true).await
}

/// The generated world; `delete` also deletes one user.
async fn world_with(delete: bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    let meta = open_metadata_store(&format!("sqlite://{}", dir.path().join("m.db").display()))
        .await
        .unwrap();
    let persons = meta.persons();
    let mut config = EventStoreConfig::new(dir.path().join("events"));
    config.flush_rows = usize::MAX;
    let store = Arc::new(EventStore::open(config, meta.clone()).unwrap());
    let (project, other) = (ProjectId::new(), ProjectId::new());
    let (tenant, scope, _) = Tenant::create(meta.as_ref(), project, TZ).await.unwrap();
    tenant.add_project(meta.as_ref(), other, TZ).await.unwrap();
    let tz: Tz = TZ.parse().unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let start = utc("2026-10-20T00:00:00Z");
    let span = (utc("2026-11-10T00:00:00Z") - start).num_seconds();

    // 80 users, each with a person; 30 of them also browsed anonymously first, as a
    // separate person merged into theirs later.
    let mut person_of: HashMap<String, PersonId> = HashMap::new();
    let mut new = Vec::new();
    for u in 0..80 {
        for id in [format!("user{u}"), format!("anon{u}")] {
            if id.starts_with("anon") && u >= 30 {
                continue;
            }
            let p = PersonId::new();
            person_of.insert(id.clone(), p);
            new.push(NewPerson {
                distinct_id: id,
                person_id: p,
                is_identified: false,
                at: start,
            });
        }
    }
    persons.create(scope, &new).await.unwrap();

    let mut events = Vec::new();
    let mut stored_person: Vec<Option<String>> = Vec::new();
    for i in 0..6_000 {
        let u = rng.random_range(0..80usize);
        let id = if u < 30 && rng.random_bool(0.3) {
            format!("anon{u}")
        } else if rng.random_bool(0.02) {
            "anonymous".to_string()
        } else {
            format!("user{u}")
        };
        // Activity concentrates on some users and days.
        let at = start + Duration::seconds(rng.random_range(0..span) * (1 + (u as i64 % 3)) / 3);
        let name = match rng.random_range(0..10) {
            0..=4 => EVENTS[0],
            5 => EVENTS[1],
            6..=8 => EVENTS[2],
            _ => EVENTS[3],
        };
        let mut props = serde_json::Map::new();
        if rng.random_bool(0.9) {
            props.insert(
                "plan".into(),
                json!(PLANS[rng.random_range(0..4usize).min(rng.random_range(0..4usize))]),
            );
        }
        if name == "purchase" || rng.random_bool(0.1) {
            props.insert(
                "amount".into(),
                json!(rng.random_range(1..500) as f64 / 4.0),
            );
        }
        props.insert("n".into(), json!(i));
        let person = person_of.get(&id).map(|p| p.to_string());
        stored_person.push(person.clone());
        events.push(Event {
            message_id: format!("m{i}"),
            properties: props.into(),
            person_id: person_of.get(&id).copied(),
            ..Event::new(project, MessageType::Track, name, id, at)
        });
    }
    // Another project's events must never show.
    let foreign: Vec<Event> = (0..200)
        .map(|i| {
            Event::new(
                other,
                MessageType::Track,
                "$pageview",
                "user1",
                start + Duration::hours(i),
            )
        })
        .collect();

    // Half in Parquet files, a late batch in files too, the rest in the buffer.
    let (first, rest) = events.split_at(3_000);
    store.append(first.to_vec(), 1).unwrap();
    store.append(foreign, 2).unwrap();
    store.flush().await.unwrap();
    let (late, buffered) = rest.split_at(1_000);
    store.append(late.to_vec(), 3).unwrap();
    store.flush().await.unwrap();
    store.append(buffered.to_vec(), 4).unwrap();

    // Merges: anon persons into their users; one user deleted.
    let mut final_of: HashMap<String, Option<String>> = HashMap::new();
    for u in 0..30 {
        let (a, b) = (
            person_of[&format!("anon{u}")],
            person_of[&format!("user{u}")],
        );
        persons
            .merge(
                scope,
                a,
                b,
                MergeReason::Identify,
                None,
                &PersonDelta::default(),
                start,
                None,
            )
            .await
            .unwrap();
        final_of.insert(a.to_string(), Some(b.to_string()));
    }
    if delete {
        let deleted = person_of["user7"];
        persons
            .delete(scope, deleted, false, start, None)
            .await
            .unwrap();
        final_of.insert(deleted.to_string(), None);
        final_of.insert(person_of["anon7"].to_string(), None);
    }

    // Person properties: a tier for most users.
    let mut person_props = HashMap::new();
    let mut deltas = Vec::new();
    for u in 0..80 {
        if u == 7 || u % 5 == 4 {
            continue;
        }
        let p = person_of[&format!("user{u}")];
        let mut delta = appizer_core::person::PersonDelta::default();
        let tier = ["gold", "silver", "bronze"][u % 3];
        delta.properties.set("tier", json!(tier), 0);
        delta.properties.set("age", json!(20 + u), 0);
        deltas.push((scope, p, delta));
        let mut props = serde_json::Map::new();
        props.insert("tier".into(), json!(tier));
        props.insert("age".into(), json!(20 + u));
        person_props.insert(p.to_string(), props);
    }
    persons.apply_deltas(&deltas, None).await.unwrap();

    let facts = events
        .iter()
        .zip(stored_person)
        .map(|(e, stored)| {
            let (person, hidden) = match &stored {
                None => (None, false),
                Some(p) => match final_of.get(p) {
                    Some(None) => (None, true),
                    Some(Some(to)) => (Some(to.clone()), false),
                    None => (Some(p.clone()), false),
                },
            };
            Fact {
                at: e.timestamp,
                event: e.event.clone(),
                person,
                hidden,
                props: e.properties.to_map(),
            }
        })
        .filter(|f| !f.hidden)
        .collect();
    let live = (0..80)
        .filter(|u| *u != 7 || !delete)
        .map(|u| person_of[&format!("user{u}")].to_string())
        .collect();
    let engine = Engine::new(store.clone(), meta.clone(), AnalyticsConfig::default());
    World {
        _dir: dir,
        engine,
        store,
        meta,
        live,
        project: QueryProject {
            scope,
            timezone: TZ.into(),
        },
        facts,
        person_props,
        now: utc("2026-11-12T12:00:00Z"),
        tz,
    }
}

impl World {
    fn day(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.tz).date_naive()
    }

    fn days(&self) -> Vec<NaiveDate> {
        let first = NaiveDate::from_ymd_opt(2026, 10, 26).unwrap();
        (0..14).map(|i| first + Duration::days(i)).collect()
    }

    fn in_range(&self, f: &Fact) -> bool {
        let d = self.day(f.at);
        d >= self.days()[0] && d <= *self.days().last().unwrap()
    }

    fn text(f: &Fact, key: &str) -> Option<String> {
        match f.props.get(key)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            v => Some(v.to_string()),
        }
    }
}

fn close(a: Option<f64>, b: Option<f64>, what: &str) {
    within(a, b, 1e-9, what)
}

fn within(a: Option<f64>, b: Option<f64>, tolerance: f64, what: &str) {
    match (a, b) {
        (Some(x), Some(y)) => assert!(
            (x - y).abs() <= tolerance * x.abs().max(y.abs()).max(1.0),
            "{what}: engine {x} oracle {y}"
        ),
        _ => assert_eq!(a, b, "{what}"),
    }
}

/// Linear interpolation between closest ranks.
fn percentile(mut v: Vec<f64>, p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = p * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (rank - lo as f64))
}

fn math_of(values: &[&Fact], math: Math) -> Option<f64> {
    let nums = || -> Vec<f64> {
        values
            .iter()
            .filter_map(|f| World::text(f, "amount")?.parse().ok())
            .collect()
    };
    match math {
        Math::Total => Some(values.len() as f64),
        Math::UniquePersons => Some(
            values
                .iter()
                .filter_map(|f| f.person.clone())
                .collect::<HashSet<_>>()
                .len() as f64,
        ),
        Math::AvgPerPerson => {
            let mut per: HashMap<&str, usize> = HashMap::new();
            for f in values {
                if let Some(p) = &f.person {
                    *per.entry(p).or_default() += 1;
                }
            }
            (!per.is_empty()).then(|| per.values().sum::<usize>() as f64 / per.len() as f64)
        }
        Math::Sum => Some(nums().iter().sum()),
        Math::Avg => {
            let n = nums();
            (!n.is_empty()).then(|| n.iter().sum::<f64>() / n.len() as f64)
        }
        Math::Min => nums().into_iter().reduce(f64::min),
        Math::Max => nums().into_iter().reduce(f64::max),
        Math::Median => percentile(nums(), 0.5),
        Math::P90 => percentile(nums(), 0.9),
        Math::P95 => percentile(nums(), 0.95),
        Math::P99 => percentile(nums(), 0.99),
    }
}

#[tokio::test]
async fn trends_match_the_oracle_for_every_math() {
    let w = world().await;
    let maths = [
        Math::Total,
        Math::UniquePersons,
        Math::AvgPerPerson,
        Math::Sum,
        Math::Avg,
        Math::Min,
        Math::Max,
        Math::Median,
        Math::P90,
        Math::P95,
        Math::P99,
    ];
    for math in maths {
        let q = TrendsQuery {
            series: vec![Series {
                event: Some("purchase".into()),
                math,
                math_property: math.needs_property().then(|| "amount".into()),
                ..Default::default()
            }],
            date_range: range(),
            ..Default::default()
        };
        let r = w.engine.trends(&w.project, &q, w.now).await.unwrap();
        let tolerance = 1e-9;
        assert_eq!(r.buckets.len(), 14);
        assert_eq!(r.buckets[0], "2026-10-26");
        let matching: Vec<&Fact> = w
            .facts
            .iter()
            .filter(|f| f.event == "purchase" && w.in_range(f))
            .collect();
        for (i, day) in w.days().iter().enumerate() {
            let of_day: Vec<&Fact> = matching
                .iter()
                .copied()
                .filter(|f| w.day(f.at) == *day)
                .collect();
            let expected = match (math_of(&of_day, math), math) {
                (None, Math::Total | Math::UniquePersons | Math::Sum) => Some(0.0),
                (v, _) => v,
            };
            within(
                r.results[0].data[i],
                expected,
                tolerance,
                &format!("{math:?} on {day}"),
            );
        }
        within(
            r.results[0].aggregated,
            math_of(&matching, math),
            tolerance,
            &format!("{math:?} over the range"),
        );
    }
}

/// The start of the local bucket holding `at`, as the answer labels it.
fn oracle_bucket(tz: Tz, at: DateTime<Utc>, interval: Interval) -> String {
    let local = at.with_timezone(&tz).naive_local();
    let date = local.date();
    match interval {
        Interval::Hour => format!("{}T{:02}:00", date, local.hour()),
        Interval::Day => date.to_string(),
        Interval::Week => {
            (date - Duration::days(i64::from(date.weekday().num_days_from_monday()))).to_string()
        }
        Interval::Month => format!("{}-{:02}-01", date.year(), date.month()),
        Interval::Minute => unreachable!("not asked"),
    }
}

#[tokio::test]
async fn event_counts_from_the_files_rollups_match_the_oracle_in_every_zone() {
    // Without deleted persons, counts of events come from the files' per-quarter-hour
    // rollups and the buffered rows, with scans only for the ends of a range that are
    // not whole quarter hours.
    let w = world_with(false).await;
    let scanning = Engine::new(
        w.store.clone(),
        w.meta.clone(),
        AnalyticsConfig {
            rollups: false,
            ..AnalyticsConfig::default()
        },
    );
    let whole = (utc("2026-10-20T00:00:00Z"), utc("2026-11-10T00:00:00Z"));
    assert!(
        w.store
            .counts(w.project.scope, whole.0, whole.1, None)
            .await
            .unwrap()
            .is_some(),
        "every file has a rollup"
    );
    let ranges = count_ranges();
    for zone in ["America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "UTC"] {
        let tz: Tz = zone.parse().unwrap();
        let project = QueryProject {
            scope: w.project.scope,
            timezone: zone.into(),
        };
        for (r, date_range) in ranges.iter().enumerate() {
            let (from, to) = bounds(tz, date_range);
            for interval in [
                Interval::Hour,
                Interval::Day,
                Interval::Week,
                Interval::Month,
            ] {
                for event in [Some("$pageview"), None] {
                    let what = format!("{zone}, range {r}, {interval:?}, {event:?}");
                    let q = TrendsQuery {
                        series: vec![Series {
                            event: event.map(str::to_string),
                            math: Math::Total,
                            ..Default::default()
                        }],
                        interval,
                        date_range: date_range.clone(),
                        ..Default::default()
                    };
                    let counted = w.engine.trends(&project, &q, w.now).await.unwrap();
                    let mut oracle: BTreeMap<String, f64> = BTreeMap::new();
                    for f in &w.facts {
                        if f.at >= from && f.at < to && event.is_none_or(|e| f.event == e) {
                            *oracle.entry(oracle_bucket(tz, f.at, interval)).or_default() += 1.0;
                        }
                    }
                    let series = &counted.results[0];
                    for (label, value) in counted.buckets.iter().zip(&series.data) {
                        let want = oracle.remove(label).unwrap_or(0.0);
                        assert_eq!(*value, Some(want), "{what}: bucket {label}");
                    }
                    assert!(oracle.is_empty(), "{what}: buckets missing {oracle:?}");
                    let total = series.data.iter().flatten().sum::<f64>();
                    assert_eq!(series.aggregated, Some(total), "{what}");
                    assert!(total > 0.0, "{what}: events counted");
                    let scanned = scanning.trends(&project, &q, w.now).await.unwrap();
                    assert_eq!(
                        serde_json::to_value(&scanned.results).unwrap(),
                        serde_json::to_value(&counted.results).unwrap(),
                        "{what}: as a scan"
                    );
                }
            }
        }
    }
    // `explain` tells which way a series is answered.
    let whole_days = explain(&w.engine, &w, ranges[0].clone(), false).await;
    assert_eq!(whole_days.answered_from, "rollups");
    let rollups = whole_days.rollups.as_ref().expect("what the rollups cover");
    assert!(rollups.files > 0, "{rollups:?}");
    assert_eq!(
        rollups.from,
        utc("2026-10-26T04:00:00Z"),
        "New York midnight"
    );
    assert_eq!(
        rollups.to,
        utc("2026-11-09T05:00:00Z"),
        "after daylight saving"
    );
    assert_eq!(whole_days.physical_plan, "", "nothing is scanned");
    let ragged = explain(&w.engine, &w, ranges[1].clone(), false).await;
    assert_eq!(ragged.answered_from, "rollups");
    let rollups = ragged.rollups.as_ref().expect("what the rollups cover");
    assert_eq!(rollups.from, utc("2026-10-27T03:30:00Z"));
    assert_eq!(rollups.to, utc("2026-11-05T10:00:00Z"));
    assert!(
        ragged.physical_plan.contains("DataSourceExec") && ragged.physical_plan.contains("Union"),
        "both ends are scanned: {}",
        ragged.physical_plan
    );
    for (engine, filtered) in [(&w.engine, true), (&scanning, false)] {
        let scan = explain(engine, &w, ranges[0].clone(), filtered).await;
        assert_eq!(scan.answered_from, "scan", "filtered {filtered}");
        assert!(scan.rollups.is_none());
        assert!(scan.physical_plan.contains("DataSourceExec"));
    }
}

/// Ranges for counts: the test range of whole days, and one whose ends are not on a
/// quarter hour.
fn count_ranges() -> [DateRange; 2] {
    [
        range(),
        DateRange {
            from: Some("2026-10-27T03:20:10Z".into()),
            to: Some("2026-11-05T10:07:30.5Z".into()),
        },
    ]
}

/// `[from, to)` of a range of local dates (`to` inclusive) in `tz`, or of RFC 3339
/// times.
fn bounds(tz: Tz, range: &DateRange) -> (DateTime<Utc>, DateTime<Utc>) {
    let end = |text: &str, next_day: bool| match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(d) => {
            let d = if next_day { d.succ_opt().unwrap() } else { d };
            tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
                .earliest()
                .unwrap()
                .with_timezone(&Utc)
        }
        Err(_) => utc(text),
    };
    (
        end(range.from.as_deref().unwrap(), false),
        end(range.to.as_deref().unwrap(), true),
    )
}

/// `explain` of a trends series counting `$pageview`, optionally with a condition.
async fn explain(
    engine: &Engine,
    w: &World,
    date_range: DateRange,
    filtered: bool,
) -> sql::ExplainResult {
    let properties = if filtered {
        vec![PropertyFilter {
            key: "plan".into(),
            kind: PropertyType::Event,
            operator: Operator::Exact,
            value: Some(json!("pro")),
        }]
    } else {
        Vec::new()
    };
    let request = sql::ExplainRequest {
        sql: None,
        trends: Some(TrendsQuery {
            series: vec![Series {
                event: Some("$pageview".into()),
                properties,
                ..Default::default()
            }],
            date_range,
            ..Default::default()
        }),
    };
    engine.explain(&w.project, &request, w.now).await.unwrap()
}

#[tokio::test]
async fn event_counts_with_a_deleted_person_use_only_rollups_of_files_rewritten_since() {
    // The world's deleted person's events are still in the files until compaction
    // rewrites them: until then every file is scanned; after it, rollups count.
    let w = world().await;
    let ranges = count_ranges();
    for compacted in [false, true] {
        if compacted {
            // Rewritten strictly after the deletion (times are in milliseconds).
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let done = w.store.compact().await.unwrap();
            assert!(done.files_out > 0, "{done:?}");
        }
        let explained = explain(&w.engine, &w, ranges[0].clone(), false).await;
        let rollups = explained.rollups.expect("answered from rollups");
        if compacted {
            assert!(
                rollups.files > 0 && rollups.files_scanned == 0,
                "{rollups:?}"
            );
        } else {
            assert!(
                rollups.files == 0 && rollups.files_scanned > 0,
                "{rollups:?}"
            );
        }
        for (r, date_range) in ranges.iter().enumerate() {
            for interval in [Interval::Hour, Interval::Day] {
                for event in [Some("$pageview"), None] {
                    let what = format!("compacted {compacted}, range {r}, {interval:?}, {event:?}");
                    let q = TrendsQuery {
                        series: vec![Series {
                            event: event.map(str::to_string),
                            ..Default::default()
                        }],
                        interval,
                        date_range: date_range.clone(),
                        ..Default::default()
                    };
                    let counted = w.engine.trends(&w.project, &q, w.now).await.unwrap();
                    let mut oracle: BTreeMap<String, f64> = BTreeMap::new();
                    let (lo, hi) = bounds(w.tz, date_range);
                    for f in &w.facts {
                        if !f.hidden
                            && f.at >= lo
                            && f.at < hi
                            && event.is_none_or(|e| f.event == e)
                        {
                            *oracle
                                .entry(oracle_bucket(w.tz, f.at, interval))
                                .or_default() += 1.0;
                        }
                    }
                    let series = &counted.results[0];
                    for (label, value) in counted.buckets.iter().zip(&series.data) {
                        let want = oracle.remove(label).unwrap_or(0.0);
                        assert_eq!(*value, Some(want), "{what}: bucket {label}");
                    }
                    assert!(oracle.is_empty(), "{what}: buckets missing {oracle:?}");
                }
            }
        }
    }
}

#[tokio::test]
async fn trends_breakdowns_filters_formulas_and_comparison_match_the_oracle() {
    let w = world().await;
    // Breakdown by an event property, top 2 and the rest as `$other` (persons need a
    // second pass for `$other`; counts fold in one).
    for math in [Math::UniquePersons, Math::Total] {
        let q = TrendsQuery {
            series: vec![Series {
                event: Some("$pageview".into()),
                math,
                ..Default::default()
            }],
            date_range: range(),
            breakdown: Some(Breakdown {
                key: "plan".into(),
                kind: PropertyType::Event,
                limit: Some(2),
            }),
            ..Default::default()
        };
        let r = w.engine.trends(&w.project, &q, w.now).await.unwrap();
        let views: Vec<&Fact> = w
            .facts
            .iter()
            .filter(|f| f.event == "$pageview" && w.in_range(f))
            .collect();
        let value = |f: &Fact| World::text(f, "plan").unwrap_or_else(|| BREAKDOWN_NONE.into());
        let mut by_count: BTreeMap<String, usize> = BTreeMap::new();
        for f in &views {
            *by_count.entry(value(f)).or_default() += 1;
        }
        let mut ranked: Vec<(String, usize)> = by_count.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let top: Vec<String> = ranked.iter().take(2).map(|(v, _)| v.clone()).collect();
        let got: Vec<String> = r
            .results
            .iter()
            .map(|s| s.breakdown_value.clone().unwrap())
            .collect();
        assert_eq!(
            got,
            [top[0].clone(), top[1].clone(), BREAKDOWN_OTHER.into()]
        );
        for s in &r.results {
            let bd = s.breakdown_value.as_deref().unwrap();
            let members: Vec<&Fact> = views
                .iter()
                .copied()
                .filter(|f| {
                    let v = value(f);
                    if bd == BREAKDOWN_OTHER {
                        !top.contains(&v)
                    } else {
                        v == bd
                    }
                })
                .collect();
            close(
                s.aggregated,
                math_of(&members, math),
                &format!("persons with plan {bd}"),
            );
            for (i, day) in w.days().iter().enumerate() {
                let of_day: Vec<&Fact> = members
                    .iter()
                    .copied()
                    .filter(|f| w.day(f.at) == *day)
                    .collect();
                close(
                    s.data[i],
                    math_of(&of_day, math).or(Some(0.0)),
                    &format!("{bd} {day}"),
                );
            }
        }
    }

    // Breakdown by a person property, with an event and a person condition, and a
    // formula over two series.
    let q = TrendsQuery {
        series: vec![
            Series {
                event: Some("purchase".into()),
                ..Default::default()
            },
            Series {
                event: Some("$pageview".into()),
                properties: vec![PropertyFilter {
                    key: "plan".into(),
                    kind: PropertyType::Event,
                    operator: Operator::IsNot,
                    value: Some(json!("free")),
                }],
                ..Default::default()
            },
        ],
        properties: vec![PropertyFilter {
            key: "age".into(),
            kind: PropertyType::Person,
            operator: Operator::Gte,
            value: Some(json!(40)),
        }],
        breakdown: Some(Breakdown {
            key: "tier".into(),
            kind: PropertyType::Person,
            limit: None,
        }),
        formula: Some("A / B * 100".into()),
        date_range: range(),
        ..Default::default()
    };
    let r = w.engine.trends(&w.project, &q, w.now).await.unwrap();
    let person_text = |f: &Fact, key: &str| -> Option<String> {
        let v = w.person_props.get(f.person.as_ref()?)?.get(key)?;
        Some(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let old = |f: &Fact| {
        person_text(f, "age")
            .and_then(|a| a.parse::<f64>().ok())
            .is_some_and(|a| a >= 40.0)
    };
    for s in &r.results {
        assert_eq!(s.series, "formula");
        let bd = s.breakdown_value.clone().unwrap();
        let tier_of = |f: &Fact| person_text(f, "tier").unwrap_or_else(|| BREAKDOWN_NONE.into());
        for (i, day) in w.days().iter().enumerate() {
            let of = |event: &str, extra: &dyn Fn(&Fact) -> bool| {
                w.facts
                    .iter()
                    .filter(|f| {
                        f.event == event
                            && w.day(f.at) == *day
                            && old(f)
                            && tier_of(f) == bd
                            && extra(f)
                    })
                    .count() as f64
            };
            let a = of("purchase", &|_| true);
            let b = of("$pageview", &|f| {
                World::text(f, "plan").as_deref() != Some("free")
            });
            let expected = (b != 0.0).then(|| a / b * 100.0);
            close(s.data[i], expected, &format!("formula for {bd} on {day}"));
        }
    }
    assert!(!r.results.is_empty());

    // The previous period is the same length just before.
    let q = TrendsQuery {
        series: vec![Series::default()],
        interval: Interval::Week,
        date_range: range(),
        compare: true,
        ..Default::default()
    };
    let r = w.engine.trends(&w.project, &q, w.now).await.unwrap();
    assert_eq!(r.buckets, ["2026-10-26", "2026-11-02"]);
    assert_eq!(
        r.previous_buckets.as_ref().unwrap(),
        &["2026-10-12", "2026-10-19"]
    );
    let from =
        w.tz.with_ymd_and_hms(2026, 10, 26, 0, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
    let to =
        w.tz.with_ymd_and_hms(2026, 11, 9, 0, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
    // The same local length: 14 days, though this one is an hour longer in UTC.
    let before =
        w.tz.with_ymd_and_hms(2026, 10, 12, 0, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
    let previous = w
        .facts
        .iter()
        .filter(|f| f.at >= before && f.at < from)
        .count() as f64;
    close(
        r.previous.as_ref().unwrap()[0].aggregated,
        Some(previous),
        "previous period",
    );
    let current = w.facts.iter().filter(|f| f.at >= from && f.at < to).count() as f64;
    close(r.results[0].aggregated, Some(current), "all events");
}

/// The end of the funnels' range, and each person's events from its start to the end
/// plus the window, by time.
fn funnel_events(w: &World, window: Duration) -> (DateTime<Utc>, BTreeMap<&str, Vec<&Fact>>) {
    let from =
        w.tz.with_ymd_and_hms(2026, 10, 26, 0, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
    let to =
        w.tz.with_ymd_and_hms(2026, 11, 9, 0, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
    let mut by_person: BTreeMap<&str, Vec<&Fact>> = BTreeMap::new();
    for f in &w.facts {
        if let Some(p) = &f.person {
            if f.at >= from && f.at < to + window {
                by_person.entry(p).or_default().push(f);
            }
        }
    }
    for events in by_person.values_mut() {
        events.sort_by_key(|f| f.at);
    }
    (to, by_person)
}

/// The oracle's funnel: every start, greedy steps, the best attempt.
fn oracle_funnel(w: &World, steps: &[&str], order: FunnelOrder, window: Duration) -> Vec<u64> {
    let (to, by_person) = funnel_events(w, window);
    let mut counts = vec![0u64; steps.len()];
    for (_, evs) in by_person {
        let mut best = 0;
        for (s, start) in evs.iter().enumerate() {
            if start.at >= to {
                continue;
            }
            let reached = match order {
                FunnelOrder::Ordered | FunnelOrder::Strict => {
                    if start.event != steps[0] {
                        continue;
                    }
                    let mut k = 1;
                    for e in &evs[s + 1..] {
                        if k == steps.len() || e.at - start.at > window {
                            break;
                        }
                        if e.event == steps[k] {
                            k += 1;
                        } else if order == FunnelOrder::Strict {
                            break;
                        }
                    }
                    k
                }
                FunnelOrder::Unordered => {
                    if !steps.contains(&start.event.as_str()) {
                        continue;
                    }
                    let seen: HashSet<&str> = evs[s..]
                        .iter()
                        .take_while(|e| e.at - start.at <= window)
                        .map(|e| e.event.as_str())
                        .filter(|e| steps.contains(e))
                        .collect();
                    seen.len()
                }
            };
            best = best.max(reached);
        }
        for c in counts.iter_mut().take(best) {
            *c += 1;
        }
    }
    counts
}

#[tokio::test]
async fn funnels_match_the_oracle_in_every_order() {
    let w = world().await;
    let steps = ["$pageview", "view_item", "purchase"];
    for order in [
        FunnelOrder::Ordered,
        FunnelOrder::Strict,
        FunnelOrder::Unordered,
    ] {
        for (window, unit, span) in [
            (1, WindowUnit::Hour, Duration::hours(1)),
            (3, WindowUnit::Day, Duration::days(3)),
        ] {
            let q = FunnelQuery {
                steps: steps
                    .iter()
                    .map(|e| Step {
                        event: e.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                order,
                window: Some(window),
                window_unit: unit,
                date_range: range(),
                persons_limit: Some(5),
                ..Default::default()
            };
            let r = w.engine.funnel(&w.project, &q, w.now).await.unwrap();
            // The rows gathered per person count in the query's memory (24 bytes each).
            let gathered = w
                .facts
                .iter()
                .filter(|f| f.person.is_some() && steps.contains(&f.event.as_str()))
                .filter(|f| w.in_range(f))
                .count();
            assert!(
                w.engine.last_query_peak_bytes() >= 24 * gathered,
                "{} bytes held for {gathered} rows",
                w.engine.last_query_peak_bytes()
            );
            let got: Vec<u64> = r.results[0].steps.iter().map(|s| s.count).collect();
            let expected = oracle_funnel(&w, &steps, order, span);
            assert_eq!(got, expected, "{order:?} within {window} {unit:?}");
            assert!(expected[2] > 0, "the data converts: {expected:?}");
            let last = &r.results[0].steps[2];
            assert_eq!(last.dropped, expected[1] - expected[2]);
            let dropped = w
                .engine
                .funnel_dropped(&w.project, &q, 2, w.now)
                .await
                .unwrap();
            assert_eq!(dropped.len() as u64, last.dropped);
            assert!(last.median_seconds.is_some());
            assert!(last.persons.as_ref().unwrap().len() <= 5);
        }
    }
}

#[tokio::test]
async fn retention_stickiness_and_lifecycle_match_the_oracle() {
    let w = world().await;
    let from_day = w.days()[0];
    let persons_on = |event: Option<&str>| -> BTreeMap<String, BTreeSet<NaiveDate>> {
        let mut out: BTreeMap<String, BTreeSet<NaiveDate>> = BTreeMap::new();
        for f in &w.facts {
            if let (Some(p), true) = (&f.person, event.is_none_or(|e| f.event == e)) {
                out.entry(p.clone()).or_default().insert(w.day(f.at));
            }
        }
        out
    };
    let signups = persons_on(Some("signup"));
    let views = persons_on(Some("$pageview"));
    for kind in [RetentionType::Recurring, RetentionType::FirstTime] {
        let q = RetentionQuery {
            start_event: Step {
                event: "signup".into(),
                ..Default::default()
            },
            return_event: Step {
                event: "$pageview".into(),
                ..Default::default()
            },
            retention_type: kind,
            period: Interval::Day,
            periods: Some(5),
            date_range: range(),
            ..Default::default()
        };
        let r = w.engine.retention(&w.project, &q, w.now).await.unwrap();
        assert_eq!(r.cohorts.len(), 14);
        for (c, cohort) in r.cohorts.iter().enumerate() {
            let day = from_day + Duration::days(c as i64);
            let members: Vec<&String> = signups
                .iter()
                .filter(|(_, days)| match kind {
                    RetentionType::Recurring => days.contains(&day),
                    RetentionType::FirstTime => days.first() == Some(&day),
                })
                .map(|(p, _)| p)
                .collect();
            assert_eq!(cohort.size, members.len() as u64, "{kind:?} cohort {day}");
            let today = w.day(w.now);
            let begun = (1..=5)
                .filter(|k| day + Duration::days(*k) <= today)
                .count();
            assert_eq!(cohort.values.len(), 1 + begun, "periods begun by now");
            for k in 1..=begun as i64 {
                let back = members
                    .iter()
                    .filter(|p| {
                        views
                            .get(**p)
                            .is_some_and(|d| d.contains(&(day + Duration::days(k))))
                    })
                    .count() as u64;
                assert_eq!(
                    cohort.values[k as usize], back,
                    "{kind:?} cohort {day} +{k}"
                );
            }
        }
    }

    let q = StickinessQuery {
        series: vec![Series {
            event: Some("view_item".into()),
            ..Default::default()
        }],
        date_range: range(),
        ..Default::default()
    };
    let r = w.engine.stickiness(&w.project, &q, w.now).await.unwrap();
    let items = persons_on(Some("view_item"));
    let mut expected = vec![0u64; 14];
    for days in items.values() {
        let n = days.iter().filter(|d| w.days().contains(d)).count();
        if n > 0 {
            expected[n - 1] += 1;
        }
    }
    assert_eq!(r.results[0].persons, expected);

    // By local hour: more intervals than the bits of one number, counted the other way.
    let q = StickinessQuery {
        interval: Interval::Hour,
        ..q
    };
    let r = w.engine.stickiness(&w.project, &q, w.now).await.unwrap();
    assert!(r.intervals > 64, "{} intervals", r.intervals);
    let mut hours: BTreeMap<&str, BTreeSet<NaiveDateTime>> = BTreeMap::new();
    for f in &w.facts {
        if let (Some(p), "view_item", true) = (&f.person, f.event.as_str(), w.in_range(f)) {
            let local = f.at.with_timezone(&w.tz).naive_local();
            let hour = local.date().and_hms_opt(local.hour(), 0, 0).unwrap();
            hours.entry(p).or_default().insert(hour);
        }
    }
    let mut expected = vec![0u64; r.intervals];
    for active in hours.values() {
        expected[active.len() - 1] += 1;
    }
    assert_eq!(r.results[0].persons, expected);

    let q = LifecycleQuery {
        event: Some("purchase".into()),
        date_range: range(),
        ..Default::default()
    };
    let r = w.engine.lifecycle(&w.project, &q, w.now).await.unwrap();
    let buyers = persons_on(Some("purchase"));
    for (i, day) in w.days().iter().enumerate() {
        let prev = *day - Duration::days(1);
        let (mut new, mut ret, mut res, mut dor) = (0, 0, 0, 0);
        for days in buyers.values() {
            let (now, before) = (days.contains(day), days.contains(&prev));
            if now {
                if days.first() == Some(day) {
                    new += 1;
                } else if before {
                    ret += 1;
                } else {
                    res += 1;
                }
            } else if before {
                dor -= 1;
            }
        }
        assert_eq!(
            (r.new[i], r.returning[i], r.resurrecting[i], r.dormant[i]),
            (new, ret, res, dor),
            "lifecycle on {day}"
        );
    }
    assert!(r.new.iter().sum::<i64>() > 0 && r.returning.iter().sum::<i64>() > 0);
    let _ = from_day.weekday();
}

#[tokio::test]
async fn sql_reads_only_the_project_and_refuses_anything_but_a_query() {
    let w = world().await;
    let r = w
        .engine
        .sql(
            &w.project,
            "SELECT event, count(*) AS n FROM events GROUP BY event ORDER BY event",
        )
        .await
        .unwrap();
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &w.facts {
        *expected.entry(&f.event).or_default() += 1;
    }
    let got: BTreeMap<String, u64> = r
        .rows
        .iter()
        .map(|row| {
            (
                row["event"].as_str().unwrap().to_string(),
                row["n"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got.len(), expected.len());
    for (event, n) in expected {
        assert_eq!(got[event], n as u64, "{event}");
    }
    // Persons after merges: every stored person id is a live person.
    let r = w
        .engine
        .sql(
            &w.project,
            "SELECT count(DISTINCT e.person_id) AS n FROM events e JOIN persons p ON p.id = e.person_id",
        )
        .await
        .unwrap();
    let live: HashSet<&String> = w.facts.iter().filter_map(|f| f.person.as_ref()).collect();
    assert_eq!(r.rows[0]["n"].as_u64().unwrap(), live.len() as u64);
    for bad in [
        "DELETE FROM events",
        "CREATE TABLE t (a INT)",
        "SELECT 1; SELECT 2",
        "COPY events TO '/tmp/x.parquet'",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM information_schema.tables",
        "SET datafusion.execution.batch_size = 1",
        "not sql at all",
    ] {
        let e = w.engine.sql(&w.project, bad).await.unwrap_err();
        assert!(matches!(e, AnalyticsError::Invalid { .. }), "{bad}: {e:?}");
    }
    let explained = w
        .engine
        .explain(
            &w.project,
            &sql::ExplainRequest {
                sql: None,
                trends: Some(TrendsQuery {
                    series: vec![Series {
                        event: Some("purchase".into()),
                        ..Default::default()
                    }],
                    date_range: range(),
                    ..Default::default()
                }),
            },
            w.now,
        )
        .await
        .unwrap();
    assert!(
        explained.physical_plan.contains("DataSourceExec"),
        "{}",
        explained.physical_plan
    );
    assert!(
        explained.physical_plan.contains("purchase"),
        "the event filter reaches the scan"
    );
}

fn audit(project: ProjectId) -> appizer_core::tenancy::NewAuditEntry {
    appizer_core::tenancy::NewAuditEntry {
        organization_id: appizer_core::OrganizationId::new(),
        project_id: Some(project),
        actor: appizer_core::tenancy::Actor::Cli,
        action: "test".into(),
        target_type: "definition".into(),
        target_id: String::new(),
        details: json!({}),
        request_id: None,
        at: Utc::now(),
    }
}

async fn save(
    w: &World,
    kind: appizer_core::definition::DefinitionKind,
    name: &str,
    body: Value,
) -> appizer_core::definition::Definition {
    let d = appizer_core::definition::Definition {
        id: appizer_core::DefinitionId::new(),
        project_id: w.project.scope.project(),
        kind,
        name: name.into(),
        description: String::new(),
        body,
        member_count: None,
        computed_at: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    };
    w.meta
        .create_definition(w.project.scope, &d, &audit(w.project.scope.project()))
        .await
        .unwrap();
    d
}

#[tokio::test]
async fn segments_match_the_oracle_and_filter_queries() {
    use appizer_analytics::saved::SegmentCondition;
    use appizer_core::definition::DefinitionKind;
    let w = world().await;
    let condition: SegmentCondition = serde_json::from_value(json!({
        "type": "or",
        "conditions": [
            {"type": "and", "conditions": [
                {"type": "property", "key": "tier", "value": "gold"},
                {"type": "performed", "event": "purchase", "min_count": 2, "days": 20}
            ]},
            {"type": "not_performed_since", "event": "$pageview", "since": "2026-11-05"}
        ]
    }))
    .unwrap();
    let since =
        w.tz.with_ymd_and_hms(2026, 11, 5, 0, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
    let window = w.now - Duration::days(20);
    let expected: BTreeSet<String> = w
        .live
        .iter()
        .filter(|p| {
            let facts = || {
                w.facts
                    .iter()
                    .filter(move |f| f.person.as_deref() == Some(p.as_str()))
            };
            let gold = w
                .person_props
                .get(*p)
                .and_then(|props| props.get("tier"))
                .is_some_and(|t| t == "gold");
            let buys = facts()
                .filter(|f| f.event == "purchase" && f.at >= window && f.at < w.now)
                .count();
            let viewed = facts().any(|f| f.event == "$pageview" && f.at >= since && f.at < w.now);
            (gold && buys >= 2) || !viewed
        })
        .cloned()
        .collect();
    let got: BTreeSet<String> = w
        .engine
        .segment_members(&w.project, &condition, w.now)
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(got, expected);
    assert!(
        !expected.is_empty() && expected.len() < w.live.len(),
        "{}",
        expected.len()
    );

    // Stored, then used as a filter (and inside another segment).
    let segment = save(
        &w,
        DefinitionKind::Segment,
        "buyers",
        json!({"kind": "dynamic", "condition": condition}),
    )
    .await;
    let n = w
        .engine
        .refresh_segment(&w.project, &segment, w.now)
        .await
        .unwrap();
    assert_eq!(n, expected.len() as u64);
    let q = TrendsQuery {
        series: vec![Series {
            math: Math::UniquePersons,
            ..Default::default()
        }],
        date_range: range(),
        segments: vec![segment.id.to_string()],
        ..Default::default()
    };
    let r = w.engine.trends(&w.project, &q, w.now).await.unwrap();
    let active: HashSet<&String> = w
        .facts
        .iter()
        .filter(|f| w.in_range(f))
        .filter_map(|f| f.person.as_ref())
        .filter(|p| expected.contains(*p))
        .collect();
    close(
        r.results[0].aggregated,
        Some(active.len() as f64),
        "persons of the segment",
    );
    let nested: SegmentCondition = serde_json::from_value(json!({
        "type": "and",
        "conditions": [
            {"type": "in_segment", "segment_id": segment.id.to_string()},
            {"type": "property", "key": "age", "operator": "lt", "value": 50}
        ]
    }))
    .unwrap();
    let inner = w
        .engine
        .segment_members(&w.project, &nested, w.now)
        .await
        .unwrap();
    let young = expected
        .iter()
        .filter(|p| {
            w.person_props
                .get(*p)
                .and_then(|props| props.get("age"))
                .and_then(Value::as_f64)
                .is_some_and(|a| a < 50.0)
        })
        .count();
    assert_eq!(inner.len(), young);
    // A segment may not contain itself.
    let looping = save(
        &w,
        DefinitionKind::Segment,
        "loop",
        json!({"kind": "dynamic", "condition": {"type": "property", "key": "tier", "operator": "is_set"}}),
    )
    .await;
    let itself: SegmentCondition = serde_json::from_value(json!({
        "type": "in_segment", "segment_id": looping.id.to_string()
    }))
    .unwrap();
    let mut changed = looping.clone();
    changed.body = json!({"kind": "dynamic", "condition": itself});
    w.meta
        .update_definition(w.project.scope, &changed, &audit(w.project.scope.project()))
        .await
        .unwrap();
    let e = w
        .engine
        .segment_members(&w.project, &itself, w.now)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("themselves"), "{e}");
}

#[tokio::test]
async fn a_saved_metric_is_a_series_like_its_formula() {
    use appizer_core::definition::DefinitionKind;
    let w = world().await;
    let metric = save(
        &w,
        DefinitionKind::Metric,
        "purchases per view",
        json!({
            "series": [{"event": "purchase"}, {"event": "$pageview"}],
            "formula": "A / B * 100",
            "properties": [{"key": "plan", "operator": "is_not", "value": "free"}]
        }),
    )
    .await;
    let by_metric = w
        .engine
        .trends(
            &w.project,
            &TrendsQuery {
                series: vec![
                    Series {
                        metric_id: Some(metric.id.to_string()),
                        ..Default::default()
                    },
                    Series {
                        event: Some("signup".into()),
                        ..Default::default()
                    },
                ],
                formula: Some("A + B".into()),
                date_range: range(),
                ..Default::default()
            },
            w.now,
        )
        .await
        .unwrap();
    for (i, day) in w.days().iter().enumerate() {
        let count = |event: &str, paid: bool| {
            w.facts
                .iter()
                .filter(|f| f.event == event && w.day(f.at) == *day)
                .filter(|f| !paid || World::text(f, "plan").as_deref() != Some("free"))
                .count() as f64
        };
        let (a, b) = (count("purchase", true), count("$pageview", true));
        let expected = (b != 0.0).then(|| a / b * 100.0 + count("signup", false));
        close(
            by_metric.results[0].data[i],
            expected,
            &format!("metric + signups on {day}"),
        );
    }
    let unknown = w
        .engine
        .trends(
            &w.project,
            &TrendsQuery {
                series: vec![Series {
                    metric_id: Some(appizer_core::DefinitionId::new().to_string()),
                    ..Default::default()
                }],
                ..Default::default()
            },
            w.now,
        )
        .await
        .unwrap_err();
    assert!(
        unknown.to_string().starts_with("series[0].metric_id"),
        "{unknown}"
    );
}

/// Ordered funnels with an exclusion, per breakdown value of the first step's `plan`:
/// each person's best valid attempt (most steps, earliest start among equals).
fn oracle_ordered(
    w: &World,
    steps: &[&str],
    window: Duration,
    exclusion: (&str, usize, usize),
) -> BTreeMap<String, Vec<u64>> {
    let (to, by_person) = funnel_events(w, window);
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (_, evs) in by_person {
        let mut best: Option<(usize, String)> = None;
        for (s, start) in evs.iter().enumerate() {
            if start.at >= to || start.event != steps[0] {
                continue;
            }
            let mut times = vec![start.at];
            for e in &evs[s + 1..] {
                if times.len() == steps.len() || e.at - start.at > window {
                    break;
                }
                if e.event == steps[times.len()] {
                    times.push(e.at);
                }
            }
            let (event, a, b) = exclusion;
            if times.len() > b
                && evs
                    .iter()
                    .any(|e| e.event == event && e.at > times[a] && e.at < times[b])
            {
                continue;
            }
            if best.as_ref().is_none_or(|(r, _)| times.len() > *r) {
                let plan = World::text(start, "plan").unwrap_or_else(|| BREAKDOWN_NONE.into());
                best = Some((times.len(), plan));
            }
        }
        if let Some((reached, plan)) = best {
            let counts = out.entry(plan).or_insert_with(|| vec![0; steps.len()]);
            for c in counts.iter_mut().take(reached) {
                *c += 1;
            }
        }
    }
    out
}

#[tokio::test]
async fn funnel_exclusions_and_breakdowns_match_the_oracle() {
    let w = world().await;
    let steps = ["$pageview", "view_item", "purchase"];
    let q = FunnelQuery {
        steps: steps
            .iter()
            .map(|e| Step {
                event: e.to_string(),
                ..Default::default()
            })
            .collect(),
        window: Some(2),
        window_unit: WindowUnit::Day,
        date_range: range(),
        exclusions: vec![Exclusion {
            event: "signup".into(),
            properties: vec![],
            from_step: 0,
            to_step: 2,
        }],
        breakdown: Some(Breakdown {
            key: "plan".into(),
            kind: PropertyType::Event,
            limit: Some(2),
        }),
        ..Default::default()
    };
    let r = w.engine.funnel(&w.project, &q, w.now).await.unwrap();
    let by_plan = oracle_ordered(&w, &steps, Duration::days(2), ("signup", 0, 2));
    let mut ranked: Vec<(&String, &Vec<u64>)> = by_plan.iter().collect();
    ranked.sort_by(|a, b| b.1[0].cmp(&a.1[0]).then(a.0.cmp(b.0)));
    let mut expected: Vec<(String, Vec<u64>)> = ranked
        .iter()
        .take(2)
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect();
    let mut other = vec![0u64; 3];
    for (_, v) in ranked.iter().skip(2) {
        for (o, x) in other.iter_mut().zip(v.iter()) {
            *o += x;
        }
    }
    if ranked.len() > 2 {
        expected.push((BREAKDOWN_OTHER.into(), other));
    }
    let got: Vec<(String, Vec<u64>)> = r
        .results
        .iter()
        .map(|b| {
            (
                b.breakdown_value.clone().unwrap(),
                b.steps.iter().map(|s| s.count).collect(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    // The exclusion changes the answer for this data.
    let without = oracle_ordered(&w, &steps, Duration::days(2), ("no such event", 0, 2));
    assert_ne!(without, by_plan);
}

#[tokio::test]
async fn repeated_queries_come_from_the_cache_until_the_data_changes() {
    use appizer_core::definition::DefinitionKind;
    let w = world().await;
    let q = TrendsQuery {
        series: vec![Series {
            event: Some("purchase".into()),
            ..Default::default()
        }],
        date_range: range(),
        ..Default::default()
    };
    let first = w.engine.trends(&w.project, &q, w.now).await.unwrap();
    let again = w.engine.trends(&w.project, &q, w.now).await.unwrap();
    assert_eq!(w.engine.cache_stats(), (1, 1));
    assert_eq!(first.results[0].aggregated, again.results[0].aggregated);

    // A new event: computed again, and counted.
    let at = utc("2026-10-30T12:00:00Z");
    let late = Event {
        message_id: "late".into(),
        ..Event::new(
            w.project.scope.project(),
            MessageType::Track,
            "purchase",
            "someone",
            at,
        )
    };
    w.store.append(vec![late], 99).unwrap();
    let after = w.engine.trends(&w.project, &q, w.now).await.unwrap();
    assert_eq!(w.engine.cache_stats(), (1, 2));
    assert_eq!(
        after.results[0].aggregated,
        first.results[0].aggregated.map(|n| n + 1.0)
    );

    // A person change, a definition change and another minute each compute again.
    w.meta
        .persons()
        .set_identified(w.project.scope, w.live[0].parse().unwrap())
        .await
        .unwrap();
    w.engine.trends(&w.project, &q, w.now).await.unwrap();
    save(
        &w,
        DefinitionKind::Metric,
        "m",
        json!({"series": [{"event": "x"}]}),
    )
    .await;
    w.engine.trends(&w.project, &q, w.now).await.unwrap();
    w.engine
        .trends(&w.project, &q, w.now + Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(w.engine.cache_stats(), (1, 5));
    // A different query is a different answer.
    let other = TrendsQuery {
        interval: Interval::Week,
        ..q.clone()
    };
    w.engine.trends(&w.project, &other, w.now).await.unwrap();
    assert_eq!(w.engine.cache_stats(), (1, 6));
}
