//! Which persons were active in which buckets: stickiness (in how many intervals of the
//! range each person did the event) and lifecycle (new, returning, resurrecting and
//! dormant persons per interval). Plans reduce events to distinct (person, bucket)
//! pairs (for stickiness over at most 64 intervals, to one bit mask per person) and
//! each person's first such event; Rust classifies them.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Builder};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::functions_aggregate::expr_fn::{bit_or, count, min};
use datafusion::logical_expr::{create_udf, ColumnarValue, Expr, ScalarUDF, Volatility};
use datafusion::prelude::{col, lit, DataFrame};
use futures_util::StreamExt;

use crate::model::*;
use crate::scope::{check_event_name, micros_expr, Scope};
use crate::time::{back, bucket_from_micros, local_to_utc, resolve_range, Frame};
use crate::{AnalyticsError, Engine, QueryProject, Result};

/// Persons interned to small numbers while rows stream in: numbered from 0 in the order
/// they first appear, so per-person state can live in a `Vec` indexed by the number.
/// Every streamed row is looked up here, so the map hashes with foldhash (the ids are
/// the store's, not attacker-chosen keys of a long-lived table).
#[derive(Debug, Default)]
pub(crate) struct Actors {
    index: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    pub ids: Vec<String>,
    /// About what the two hold: each id twice, plus a map entry and a `String`.
    bytes: usize,
}

impl Actors {
    pub fn intern(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.index.insert(id.into(), i);
        self.ids.push(id.to_string());
        self.bytes += 2 * id.len() + 64;
        i
    }

    /// About the bytes the interned ids take.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

/// Streams `df`'s `actor` (text) and `key` (Int64) columns into `each(actor, key)`,
/// charging the scope's pool with the new ids and `per_pair` bytes a row for what
/// `each` keeps.
pub(crate) async fn stream_pairs(
    scope: &Scope<'_>,
    df: DataFrame,
    actors: &mut Actors,
    per_pair: usize,
    mut each: impl FnMut(u32, i64),
) -> Result<()> {
    let mut stream = df.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let interned = actors.bytes();
        let key = cast_column(&batch, "key", &DataType::Int64)?;
        let key = key.as_primitive::<Int64Type>();
        let actor = text_views(&batch, "actor")?;
        pairs_of(&actor, key, actors, &mut each);
        scope.hold(actors.bytes() - interned + batch.num_rows() * per_pair)?;
    }
    Ok(())
}

fn pairs_of(
    actor: &datafusion::arrow::array::StringViewArray,
    key: &datafusion::arrow::array::Int64Array,
    actors: &mut Actors,
    each: &mut impl FnMut(u32, i64),
) {
    for i in 0..key.len() {
        if actor.is_null(i) || key.is_null(i) {
            continue;
        }
        each(actors.intern(actor.value(i)), key.value(i));
    }
}

/// Column `name` of `batch` cast to `to` (plans name their outputs; the types Arrow
/// reads back may be views or other widths).
pub(crate) fn cast_column(
    batch: &datafusion::arrow::array::RecordBatch,
    name: &str,
    to: &DataType,
) -> Result<datafusion::arrow::array::ArrayRef> {
    let column = batch.column_by_name(name).ok_or_else(|| {
        AnalyticsError::Engine(datafusion::error::DataFusionError::Internal(format!(
            "no column {name}"
        )))
    })?;
    Ok(datafusion::arrow::compute::cast(column, to)?)
}

/// Text column `name` of `batch` as string views: views (event names, ids as the files
/// are read) come as they are, and plain text is viewed in place, where a cast to plain
/// text would copy every value of a view array.
pub(crate) fn text_views(
    batch: &datafusion::arrow::array::RecordBatch,
    name: &str,
) -> Result<datafusion::arrow::array::StringViewArray> {
    Ok(cast_column(batch, name, &DataType::Utf8View)?
        .as_string_view()
        .clone())
}

/// Distinct (person, local bucket) pairs of the events matching `condition` in
/// `[from, to)`.
pub(crate) async fn active_buckets(
    scope: &Scope<'_>,
    condition: Option<Expr>,
    frame: &Frame,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    actors: &mut Actors,
) -> Result<Vec<(u32, chrono::NaiveDateTime)>> {
    let mut df = scope.events(from, to).await?;
    let mut keep = scope.actor().is_not_null();
    if let Some(c) = condition {
        keep = keep.and(c);
    }
    df = df.filter(keep)?.aggregate(
        vec![
            scope.actor().alias("actor"),
            frame.bucket_expr(from, to).alias("key"),
        ],
        vec![],
    )?;
    let mut out = Vec::new();
    let per_pair = std::mem::size_of::<(u32, chrono::NaiveDateTime)>();
    stream_pairs(scope, df, actors, per_pair, |a, us| {
        out.push((a, bucket_from_micros(us)))
    })
    .await?;
    Ok(out)
}

/// Each person's first event matching `condition` before `to` (microseconds).
pub(crate) async fn first_times(
    scope: &Scope<'_>,
    condition: Option<Expr>,
    to: DateTime<Utc>,
    actors: &mut Actors,
) -> Result<HashMap<u32, i64>> {
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    let mut keep = scope.actor().is_not_null();
    if let Some(c) = condition {
        keep = keep.and(c);
    }
    let df = scope.events(epoch, to).await?.filter(keep)?.aggregate(
        vec![scope.actor().alias("actor")],
        vec![min(micros_expr()).alias("key")],
    )?;
    let mut out = HashMap::new();
    // A map entry: key, value and about as much again of table.
    stream_pairs(scope, df, actors, 24, |a, us| {
        out.insert(a, us);
    })
    .await?;
    Ok(out)
}

/// The condition of a series or lifecycle event: its name, its own conditions and the
/// query's.
pub(crate) async fn event_condition(
    scope: &Scope<'_>,
    event: Option<&str>,
    own: &[PropertyFilter],
    own_field: &str,
    global: &[PropertyFilter],
    segments: &[String],
) -> Result<Option<Expr>> {
    let mut parts: Vec<Expr> = Vec::new();
    parts.extend(scope.event_is(event));
    parts.extend(scope.conditions(own, own_field).await?);
    parts.extend(scope.global(global, segments).await?);
    Ok(parts.into_iter().reduce(Expr::and))
}

pub(crate) async fn stickiness(
    engine: &Engine,
    project: &QueryProject,
    q: &StickinessQuery,
    now: DateTime<Utc>,
) -> Result<StickinessResult> {
    check_series_count(&q.series)?;
    let scope = Scope::new(engine, project, now).await?;
    scope.group_by_person_once();
    let (from, to) = resolve_range(&q.date_range, scope.tz, now)?;
    let frame = Frame::new(scope.tz, q.interval, from, to)?;
    let mut results = Vec::new();
    for (i, s) in q.series.iter().enumerate() {
        let field = format!("series[{i}]");
        if let Some(name) = &s.event {
            check_event_name(name, &format!("{field}.event"))?;
        }
        if s.math != Math::Total || s.math_property.is_some() || s.metric_id.is_some() {
            return Err(AnalyticsError::invalid(
                format!("{field}.math"),
                "stickiness counts persons per number of active intervals; leave math out",
            ));
        }
        let condition = event_condition(
            &scope,
            s.event.as_deref(),
            &s.properties,
            &format!("{field}.properties"),
            &q.properties,
            &q.segments,
        )
        .await?;
        let mut keep = scope.actor().is_not_null();
        if let Some(c) = condition {
            keep = keep.and(c);
        }
        let events = scope.events(from, to).await?.filter(keep)?;
        let mut persons = vec![0u64; frame.buckets.len()];
        if frame.buckets.len() <= 64 {
            // One grouping: each person's buckets as the bits of one number.
            let bit = bucket_bit_udf(&frame).call(vec![frame.bucket_expr(from, to)]);
            let df = events
                .aggregate(
                    vec![scope.actor().alias("actor")],
                    vec![bit_or(bit).alias("mask")],
                )?
                .select(vec![col("mask")])?;
            for b in df.collect().await? {
                let mask = cast_column(&b, "mask", &DataType::Int64)?;
                let mask = mask.as_primitive::<Int64Type>();
                for r in 0..b.num_rows() {
                    let days = if mask.is_null(r) {
                        0
                    } else {
                        (mask.value(r) as u64).count_ones() as usize
                    };
                    if (1..=persons.len()).contains(&days) {
                        persons[days - 1] += 1;
                    }
                }
            }
        } else {
            // Distinct (person, bucket) pairs, then buckets per person: grouping
            // twice instead of a distinct set per person.
            let df = events
                .aggregate(
                    vec![
                        scope.actor().alias("actor"),
                        frame.bucket_expr(from, to).alias("bucket"),
                    ],
                    vec![],
                )?
                .aggregate(vec![col("actor")], vec![count(lit(1)).alias("k")])?
                .aggregate(vec![col("k")], vec![count(lit(1)).alias("n")])?;
            for b in df.collect().await? {
                let k = cast_column(&b, "k", &DataType::Int64)?;
                let n = cast_column(&b, "n", &DataType::Int64)?;
                let (k, n) = (k.as_primitive::<Int64Type>(), n.as_primitive::<Int64Type>());
                for r in 0..b.num_rows() {
                    let days = k.value(r) as usize;
                    if (1..=persons.len()).contains(&days) {
                        persons[days - 1] += n.value(r) as u64;
                    }
                }
            }
        }
        results.push(StickinessSeries {
            series: ((b'A' + (i % 26) as u8) as char).to_string(),
            label: s
                .label
                .clone()
                .or_else(|| s.event.clone())
                .unwrap_or_else(|| "All events".into()),
            persons,
        });
    }
    Ok(StickinessResult {
        interval: q.interval,
        intervals: frame.buckets.len(),
        results,
    })
}

/// `1 << i` for a bucket start (as [`Frame::bucket_expr`] gives it) that is bucket `i`
/// of `frame` (at most 64 buckets), null for any other value.
fn bucket_bit_udf(frame: &Frame) -> ScalarUDF {
    let starts: Vec<i64> = frame
        .buckets
        .iter()
        .map(|b| b.and_utc().timestamp_micros())
        .collect();
    create_udf(
        "bucket_bit",
        vec![DataType::Int64],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let values = args[0].clone().into_array(1)?;
            let values = datafusion::arrow::compute::cast(&values, &DataType::Int64)?;
            let values = values.as_primitive::<Int64Type>();
            let mut out = Int64Builder::with_capacity(values.len());
            for i in 0..values.len() {
                let index = (!values.is_null(i))
                    .then(|| starts.binary_search(&values.value(i)).ok())
                    .flatten()
                    .filter(|&index| index < 64);
                out.append_option(index.map(|index| (1u64 << index) as i64));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
        }),
    )
}

pub(crate) async fn lifecycle(
    engine: &Engine,
    project: &QueryProject,
    q: &LifecycleQuery,
    now: DateTime<Utc>,
) -> Result<LifecycleResult> {
    if let Some(name) = &q.event {
        check_event_name(name, "event")?;
    }
    let scope = Scope::new(engine, project, now).await?;
    scope.group_by_person_once();
    let (from, to) = resolve_range(&q.date_range, scope.tz, now)?;
    let frame = Frame::new(scope.tz, q.interval, from, to)?;
    // One bucket before the range, to tell returning from resurrecting in the first.
    let before = back(frame.buckets[0], q.interval, 1);
    let scan_from = local_to_utc(scope.tz, before);
    let wide = Frame::new(scope.tz, q.interval, scan_from, to)?;
    let condition = event_condition(
        &scope,
        q.event.as_deref(),
        &[],
        "",
        &q.properties,
        &q.segments,
    )
    .await?;
    let mut actors = Actors::default();
    let pairs =
        active_buckets(&scope, condition.clone(), &wide, scan_from, to, &mut actors).await?;
    let first = first_times(&scope, condition, to, &mut actors).await?;
    let n = wide.buckets.len();
    let mut active: Vec<Vec<bool>> = vec![Vec::new(); actors.len()];
    for (a, bucket) in pairs {
        if let Some(i) = wide.index_of(bucket) {
            let row = &mut active[a as usize];
            row.resize(n, false);
            row[i] = true;
        }
    }
    let buckets = frame.buckets.len();
    let (mut new, mut returning, mut resurrecting, mut dormant) = (
        vec![0i64; buckets],
        vec![0i64; buckets],
        vec![0i64; buckets],
        vec![0i64; buckets],
    );
    // `wide` holds `frame`'s buckets shifted by one.
    for (a, row) in active.iter().enumerate() {
        if row.is_empty() {
            continue;
        }
        let first_bucket = first
            .get(&(a as u32))
            .and_then(|us| DateTime::from_timestamp_micros(*us))
            .map(|t| wide.bucket_of(t));
        for i in 0..buckets {
            let (now_active, was_active) = (row[i + 1], row[i]);
            if now_active {
                if first_bucket == Some(wide.buckets[i + 1]) {
                    new[i] += 1;
                } else if was_active {
                    returning[i] += 1;
                } else {
                    resurrecting[i] += 1;
                }
            } else if was_active {
                dormant[i] -= 1;
            }
        }
    }
    Ok(LifecycleResult {
        interval: q.interval,
        timezone: scope.tz.name().to_string(),
        buckets: frame.labels(),
        new,
        returning,
        resurrecting,
        dormant,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, StringViewArray};

    #[test]
    fn actors_are_numbered_in_order_of_first_appearance() {
        let mut actors = Actors::default();
        assert_eq!(actors.intern("b"), 0);
        assert_eq!(actors.intern("a"), 1);
        assert_eq!(actors.intern("b"), 0);
        assert_eq!(actors.len(), 2);
        assert_eq!(actors.ids, ["b", "a"]);
    }

    #[test]
    fn pairs_skip_nulls_alike_from_views_and_plain_strings() {
        let key = Int64Array::from(vec![Some(1), Some(2), None, Some(4)]);
        let ids = [Some("p1"), None, Some("p2"), Some("p1")];
        let read = |view: bool| {
            let mut actors = Actors::default();
            let mut out = Vec::new();
            let mut each = |a: u32, k: i64| out.push((a, k));
            let column: ArrayRef = if view {
                Arc::new(StringViewArray::from(ids.to_vec()))
            } else {
                Arc::new(StringArray::from(ids.to_vec()))
            };
            let batch = RecordBatch::try_from_iter([("actor", column)]).unwrap();
            let actor = text_views(&batch, "actor").unwrap();
            pairs_of(&actor, &key, &mut actors, &mut each);
            (out, actors.ids)
        };
        let expected = (vec![(0, 1), (0, 4)], vec!["p1".to_string()]);
        assert_eq!(read(true), expected);
        assert_eq!(read(false), expected);
    }
}
