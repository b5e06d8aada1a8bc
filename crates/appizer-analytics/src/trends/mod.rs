//! Trends: per series, one aggregate plan grouped by local bucket (and breakdown value)
//! with a grouping set for the whole range, so distinct persons over the range come
//! from the same scan as the per-bucket values. Counts, sums, minima and maxima over
//! the range are combined from the buckets instead, without the second grouping.
//! Percentiles are exact, from gathered values. Counts of events without conditions
//! come from the files' rollups ([`FromRollups`]), the buffer and scans of the partial
//! quarter hours at the range's ends; once a person was deleted, only files rewritten
//! since count by rollup, and the rest are scanned.

mod persons;
mod rollups;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::expr_fn::{
    array_agg, avg, count, count_distinct, max, median, min, sum,
};
use datafusion::logical_expr::{cast, when, Expr, GroupingSet};
use datafusion::prelude::{col, lit, DataFrame};

use crate::activity::cast_column;
use crate::formula::Formula;
use crate::model::*;
use crate::scope::{check_event_name, event_number, Scope};
use crate::time::{bucket_from_micros, resolve_range, Frame};
use crate::{AnalyticsError, Engine, QueryProject, Result};

pub(crate) use persons::persons;
pub(crate) use rollups::FromRollups;

pub(crate) async fn run(
    engine: &Engine,
    project: &QueryProject,
    q: &TrendsQuery,
    now: DateTime<Utc>,
) -> Result<TrendsResult> {
    check_series_count(&q.series)?;
    let scope = Scope::new(engine, project, now).await?;
    let (from, to) = resolve_range(&q.date_range, scope.tz, now)?;
    let frame = Frame::new(scope.tz, q.interval, from, to)?;
    let formula = q
        .formula
        .as_deref()
        .map(|f| Formula::parse(f, q.series.len()))
        .transpose()?;
    let results = evaluate(&scope, q, &frame, formula.as_ref()).await?;
    let (previous, previous_buckets) = if q.compare {
        let before = frame.previous()?;
        let results = evaluate(&scope, q, &before, formula.as_ref()).await?;
        (Some(results), Some(before.labels()))
    } else {
        (None, None)
    };
    Ok(TrendsResult {
        interval: q.interval,
        timezone: scope.tz.name().to_string(),
        buckets: frame.labels(),
        results,
        previous,
        previous_buckets,
    })
}

/// The plan of one series (for `explain`): the aggregate over buckets.
pub(crate) async fn series_plan(
    scope: &Scope<'_>,
    q: &TrendsQuery,
    frame: &Frame,
) -> Result<DataFrame> {
    let shared = Shared::of(scope, q).await?;
    let prepared = prepare(scope, frame, 0, &q.series[0], &shared).await?;
    prepared.aggregate()
}

/// What every series of a query shares, built once: the conditions on all events, and
/// the breakdown value with its limit.
struct Shared {
    global: Option<Expr>,
    breakdown: Option<(Expr, usize)>,
}

impl Shared {
    async fn of(scope: &Scope<'_>, q: &TrendsQuery) -> Result<Self> {
        let breakdown = match &q.breakdown {
            None => None,
            Some(b) => {
                let limit = b.checked_limit()?;
                let value = coalesce(vec![
                    scope.property(b.kind, &b.key, "breakdown").await?,
                    lit(BREAKDOWN_NONE),
                ]);
                Some((value, limit))
            }
        };
        Ok(Self {
            global: scope.global(&q.properties, &q.segments).await?,
            breakdown,
        })
    }
}

/// Per-bucket values and the value over the range.
type Values = (Vec<Option<f64>>, Option<f64>);

/// (breakdown value, per-bucket values, aggregated).
type BreakdownRow = (Option<String>, Vec<Option<f64>>, Option<f64>);

/// One series' values per breakdown value, in breakdown order.
struct SeriesValues {
    label: String,
    /// The value of a bucket without events.
    empty: Option<f64>,
    rows: Vec<BreakdownRow>,
}

/// A saved metric as one series: its series and formula over the same buckets, with
/// the query's conditions, segments and breakdown added.
async fn metric_series(
    scope: &Scope<'_>,
    q: &TrendsQuery,
    frame: &Frame,
    i: usize,
    s: &Series,
    id: &str,
) -> Result<SeriesValues> {
    let field = format!("series[{i}]");
    if s.event.is_some()
        || s.math != Math::Total
        || s.math_property.is_some()
        || !s.properties.is_empty()
    {
        return Err(AnalyticsError::invalid(
            format!("{field}.metric_id"),
            "a metric series takes no event, math or properties of its own",
        ));
    }
    let (name, metric) = scope
        .engine
        .metric(&scope.query_project, id)
        .await
        .map_err(|e| match e {
            AnalyticsError::Invalid { rule, .. } => {
                AnalyticsError::invalid(format!("{field}.metric_id"), rule)
            }
            other => other,
        })?;
    metric.check()?;
    let inner = TrendsQuery {
        series: metric.series.clone(),
        interval: q.interval,
        date_range: q.date_range.clone(),
        properties: metric
            .properties
            .iter()
            .chain(&q.properties)
            .cloned()
            .collect(),
        segments: q.segments.clone(),
        breakdown: q.breakdown.clone(),
        formula: metric.formula.clone(),
        compare: false,
    };
    let formula = metric
        .formula
        .as_deref()
        .map(|f| Formula::parse(f, inner.series.len()))
        .transpose()?;
    let results = Box::pin(evaluate(scope, &inner, frame, formula.as_ref())).await?;
    Ok(SeriesValues {
        label: s.label.clone().unwrap_or(name),
        empty: match (&metric.formula, metric.series.first()) {
            (None, Some(first)) => empty_value(first.math),
            _ => None,
        },
        rows: results
            .into_iter()
            .map(|r| (r.breakdown_value, r.data, r.aggregated))
            .collect(),
    })
}

async fn evaluate(
    scope: &Scope<'_>,
    q: &TrendsQuery,
    frame: &Frame,
    formula: Option<&Formula>,
) -> Result<Vec<SeriesResult>> {
    let shared = Shared::of(scope, q).await?;
    let mut all = Vec::with_capacity(q.series.len());
    for (i, s) in q.series.iter().enumerate() {
        if let Some(id) = &s.metric_id {
            all.push(metric_series(scope, q, frame, i, s, id).await?);
            continue;
        }
        if let Some(rollups) = FromRollups::of(scope, q, frame, i, s).await? {
            all.push(rollups.values(scope, frame, s).await?);
            continue;
        }
        let prepared = prepare(scope, frame, i, s, &shared).await?;
        all.push(prepared.values(frame).await?);
    }
    match formula {
        None => Ok(all
            .into_iter()
            .enumerate()
            .flat_map(|(i, s)| {
                let label = s.label;
                s.rows
                    .into_iter()
                    .map(move |(bd, data, aggregated)| SeriesResult {
                        series: letter(i),
                        label: label.clone(),
                        breakdown_value: bd,
                        data,
                        aggregated,
                    })
            })
            .collect()),
        Some(f) => Ok(combine(f, q.formula.as_deref().unwrap_or(""), &all, frame)),
    }
}

fn letter(i: usize) -> String {
    ((b'A' + (i % 26) as u8) as char).to_string()
}

/// The formula per breakdown value (values missing from a series count as that
/// series' empty value: 0 for counts and sums, undefined otherwise).
fn combine(f: &Formula, text: &str, all: &[SeriesValues], frame: &Frame) -> Vec<SeriesResult> {
    let mut keys: Vec<Option<String>> = Vec::new();
    for s in all {
        for (bd, _, _) in &s.rows {
            if !keys.contains(bd) {
                keys.push(bd.clone());
            }
        }
    }
    keys.into_iter()
        .map(|key| {
            let per_series: Vec<(Vec<Option<f64>>, Option<f64>)> = all
                .iter()
                .map(|s| {
                    s.rows
                        .iter()
                        .find(|(bd, _, _)| *bd == key)
                        .map(|(_, d, a)| (d.clone(), *a))
                        .unwrap_or_else(|| (vec![s.empty; frame.buckets.len()], s.empty))
                })
                .collect();
            let data = (0..frame.buckets.len())
                .map(|b| {
                    let values: Vec<Option<f64>> = per_series.iter().map(|(d, _)| d[b]).collect();
                    f.eval(&values)
                })
                .collect();
            let aggregated: Vec<Option<f64>> = per_series.iter().map(|(_, a)| *a).collect();
            SeriesResult {
                series: "formula".into(),
                label: text.to_string(),
                breakdown_value: key,
                data,
                aggregated: f.eval(&aggregated),
            }
        })
        .collect()
}

/// The value of a bucket without events.
fn empty_value(math: Math) -> Option<f64> {
    match math {
        Math::Total | Math::UniquePersons | Math::Sum => Some(0.0),
        _ => None,
    }
}

/// Whether the value over the range follows from the buckets' values (counts and sums
/// add up, minima and maxima compare), so the plan need not aggregate twice.
fn combinable(math: Math) -> bool {
    matches!(math, Math::Total | Math::Sum | Math::Min | Math::Max)
}

/// The value over two sets of events from the value over each (a combinable math;
/// `None` for a set without a value).
fn combine_values(math: Math, a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(match math {
            Math::Min => a.min(b),
            Math::Max => a.max(b),
            _ => a + b,
        }),
        (a, b) => a.or(b),
    }
}

/// A series ready to aggregate: its filtered events, bucket and breakdown expressions.
struct Prepared<'s> {
    scope: &'s Scope<'s>,
    events: DataFrame,
    math: Math,
    value_input: Option<Expr>,
    bucket: Expr,
    breakdown: Option<Expr>,
    /// Breakdown values in answer order (`$other` last when present).
    order: Vec<String>,
    /// Counts broken down by raw value: keep the `limit` largest, fold the rest into
    /// `$other` (sums of counts are counts).
    fold_top: Option<usize>,
    label: String,
}

async fn prepare<'s>(
    scope: &'s Scope<'s>,
    frame: &Frame,
    i: usize,
    s: &Series,
    shared: &Shared,
) -> Result<Prepared<'s>> {
    let field = format!("series[{i}]");
    if let Some(name) = &s.event {
        check_event_name(name, &format!("{field}.event"))?;
    }
    if s.metric_id.is_some() {
        return Err(AnalyticsError::invalid(
            format!("{field}.metric_id"),
            "a metric series has no plan of its own to explain",
        ));
    }
    let value_input = match (s.math.needs_property(), &s.math_property) {
        (true, Some(key)) => Some(event_number(key, &format!("{field}.math_property"))?),
        (true, None) => {
            return Err(AnalyticsError::invalid(
                format!("{field}.math_property"),
                "is required by this math",
            ))
        }
        (false, _) => None,
    };
    let mut predicates: Vec<Expr> = Vec::new();
    predicates.extend(scope.event_is(s.event.as_deref()));
    predicates.extend(
        scope
            .conditions(&s.properties, &format!("{field}.properties"))
            .await?,
    );
    predicates.extend(shared.global.clone());
    if matches!(s.math, Math::UniquePersons | Math::AvgPerPerson) {
        predicates.push(scope.actor().is_not_null());
    }
    // Events without a number are skipped by the aggregates themselves (nulls).
    let mut events = scope.events(frame.from, frame.to).await?;
    if let Some(p) = predicates.into_iter().reduce(Expr::and) {
        events = events.filter(p)?;
    }
    let (breakdown, order) = match &shared.breakdown {
        None => (None, Vec::new()),
        Some((value, limit)) => {
            let (value, limit) = (value.clone(), *limit);
            if s.math == Math::Total {
                // Counts rank the values themselves: one pass, folded in `values`.
                return Ok(Prepared {
                    scope,
                    events,
                    math: s.math,
                    value_input,
                    bucket: frame.bucket_expr(frame.from, frame.to),
                    breakdown: Some(value),
                    order: Vec::new(),
                    fold_top: Some(limit),
                    label: label(s),
                });
            }
            let (top, more) = top_values(events.clone(), value.clone(), limit).await?;
            let mut order = top.clone();
            let mapped = if more {
                order.push(BREAKDOWN_OTHER.to_string());
                let list = top.into_iter().map(lit).collect();
                when(value.clone().in_list(list, false), value).otherwise(lit(BREAKDOWN_OTHER))?
            } else {
                value
            };
            (Some(mapped), order)
        }
    };
    Ok(Prepared {
        scope,
        events,
        math: s.math,
        value_input,
        bucket: frame.bucket_expr(frame.from, frame.to),
        breakdown,
        order,
        fold_top: None,
        label: label(s),
    })
}

fn label(s: &Series) -> String {
    s.label
        .clone()
        .or_else(|| s.event.clone())
        .unwrap_or_else(|| "All events".into())
}

/// Counts per breakdown value: the `limit` largest (then by value) in that order, and
/// the sum of the others as `$other`.
fn fold(rows: HashMap<Option<String>, Values>, limit: usize, buckets: usize) -> Vec<BreakdownRow> {
    let mut ranked: Vec<(Option<String>, Values)> = rows.into_iter().collect();
    ranked.sort_by(|a, b| {
        let (x, y) = (a.1 .1.unwrap_or(0.0), b.1 .1.unwrap_or(0.0));
        y.total_cmp(&x).then_with(|| a.0.cmp(&b.0))
    });
    let rest = ranked.split_off(ranked.len().min(limit));
    let mut out: Vec<BreakdownRow> = ranked.into_iter().map(|(k, (d, a))| (k, d, a)).collect();
    if !rest.is_empty() {
        let mut data = vec![Some(0.0); buckets];
        let mut total = 0.0;
        for (_, (d, a)) in rest {
            for (slot, v) in data.iter_mut().zip(d) {
                *slot = Some(slot.unwrap_or(0.0) + v.unwrap_or(0.0));
            }
            total += a.unwrap_or(0.0);
        }
        out.push((Some(BREAKDOWN_OTHER.to_string()), data, Some(total)));
    }
    out
}

/// The `limit` most frequent values of `value` (by events, then by value), and whether
/// there are others.
async fn top_values(events: DataFrame, value: Expr, limit: usize) -> Result<(Vec<String>, bool)> {
    let batches = events
        .aggregate(vec![value.alias("v")], vec![count(lit(1)).alias("n")])?
        .sort(vec![
            col("n").sort(false, false),
            col("v").sort(true, false),
        ])?
        .limit(0, Some(limit + 1))?
        .collect()
        .await?;
    let mut out = Vec::new();
    for b in &batches {
        let v = cast_column(b, "v", &DataType::Utf8)?;
        let v = v.as_string::<i32>();
        for i in 0..v.len() {
            out.push(v.value(i).to_string());
        }
    }
    let more = out.len() > limit;
    out.truncate(limit);
    Ok((out, more))
}

/// The `q` quantile of each row's list of values, interpolated linearly between the
/// closest ranks (as `percentile_cont` in SQL).
fn quantiles(batch: &RecordBatch, q: f64) -> Result<datafusion::arrow::array::ArrayRef> {
    let lists = cast_column(
        batch,
        "value",
        &DataType::List(std::sync::Arc::new(
            datafusion::arrow::datatypes::Field::new_list_field(DataType::Float64, true),
        )),
    )?;
    let lists = lists.as_list::<i32>();
    let mut out = datafusion::arrow::array::Float64Builder::with_capacity(lists.len());
    for i in 0..lists.len() {
        let mut values: Vec<f64> = if lists.is_null(i) {
            Vec::new()
        } else {
            let v = lists.value(i);
            v.as_primitive::<Float64Type>().iter().flatten().collect()
        };
        values.sort_by(f64::total_cmp);
        out.append_option(quantile(&values, q));
    }
    Ok(std::sync::Arc::new(out.finish()))
}

/// The `q` quantile of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = q * last as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64))
}

impl Prepared<'_> {
    fn value_expr(&self) -> Expr {
        let x = || self.value_input.clone().unwrap_or_else(|| lit(0.0));
        let value = match self.math {
            Math::Total => count(lit(1)),
            Math::UniquePersons => count_distinct(self.scope.actor()),
            // Aggregated in two steps by `per_person`.
            Math::AvgPerPerson => count(lit(1)),
            Math::Sum => sum(x()),
            Math::Avg => avg(x()),
            Math::Min => min(x()),
            Math::Max => max(x()),
            Math::Median => median(x()),
            // DataFusion's `percentile_cont` interpolates in fixed point; the values
            // are gathered and interpolated exactly in `values`.
            Math::P90 | Math::P95 | Math::P99 => return array_agg(x()).alias("value"),
        };
        cast(value, DataType::Float64).alias("value")
    }

    fn breakdown_expr(&self) -> Expr {
        self.breakdown
            .clone()
            .unwrap_or_else(|| lit(datafusion::scalar::ScalarValue::Utf8(None)))
            .alias("bd")
    }

    /// Values per (bucket, breakdown) and, unless the buckets' values combine into it,
    /// per breakdown over the range (bucket NULL).
    fn aggregate(&self) -> Result<DataFrame> {
        let bucket = self.bucket.clone().alias("bucket");
        if self.math == Math::AvgPerPerson {
            return self.per_person(Some(bucket));
        }
        if combinable(self.math) {
            // The value over the range is combined from the buckets' in `values`.
            return Ok(self
                .events
                .clone()
                .aggregate(vec![bucket, self.breakdown_expr()], vec![self.value_expr()])?);
        }
        let sets = GroupingSet::GroupingSets(vec![
            vec![bucket, self.breakdown_expr()],
            vec![self.breakdown_expr()],
        ]);
        Ok(self
            .events
            .clone()
            .aggregate(vec![Expr::GroupingSet(sets)], vec![self.value_expr()])?)
    }

    /// Average events per person: counts per person, then their average.
    fn per_person(&self, bucket: Option<Expr>) -> Result<DataFrame> {
        let mut inner = vec![self.breakdown_expr(), self.scope.actor().alias("actor")];
        let mut outer = vec![col("bd")];
        if let Some(b) = bucket {
            inner.push(b);
            outer.push(col("bucket"));
        }
        Ok(self
            .events
            .clone()
            .aggregate(inner, vec![count(lit(1)).alias("n")])?
            .aggregate(
                outer,
                vec![cast(avg(col("n")), DataType::Float64).alias("value")],
            )?)
    }

    async fn values(&self, frame: &Frame) -> Result<SeriesValues> {
        let mut batches = self.aggregate()?.collect().await?;
        if self.math == Math::AvgPerPerson {
            batches.extend(self.per_person(None)?.collect().await?);
        }
        let empty = empty_value(self.math);
        let keys: Vec<Option<String>> = if self.breakdown.is_some() {
            self.order.iter().cloned().map(Some).collect()
        } else {
            vec![None]
        };
        let mut rows: HashMap<Option<String>, Values> = keys
            .iter()
            .map(|k| (k.clone(), (vec![empty; frame.buckets.len()], empty)))
            .collect();
        let folding = self.fold_top.is_some();
        for b in &batches {
            let value = match self.math.quantile() {
                Some(q) => quantiles(b, q)?,
                None => cast_column(b, "value", &DataType::Float64)?,
            };
            let value = value.as_primitive::<Float64Type>();
            let bd = cast_column(b, "bd", &DataType::Utf8)?;
            let bd = bd.as_string::<i32>();
            let bucket = match b.column_by_name("bucket") {
                Some(_) => Some(cast_column(b, "bucket", &DataType::Int64)?),
                None => None,
            };
            for i in 0..b.num_rows() {
                let key = (!bd.is_null(i)).then(|| bd.value(i).to_string());
                if folding && !rows.contains_key(&key) {
                    rows.insert(key.clone(), (vec![empty; frame.buckets.len()], empty));
                }
                let Some(entry) = rows.get_mut(&key) else {
                    continue;
                };
                let v = (!value.is_null(i)).then(|| value.value(i));
                let at = bucket.as_ref().and_then(|c| {
                    let c = c.as_primitive::<Int64Type>();
                    (!c.is_null(i)).then(|| c.value(i))
                });
                match at {
                    Some(us) => {
                        if let Some(slot) = frame.index_of(bucket_from_micros(us)) {
                            entry.0[slot] = v.or(empty);
                        }
                        if combinable(self.math) {
                            entry.1 = combine_values(self.math, entry.1, v);
                        }
                    }
                    None => entry.1 = v.or(empty),
                }
            }
        }
        if let Some(limit) = self.fold_top {
            return Ok(SeriesValues {
                label: self.label.clone(),
                empty,
                rows: fold(rows, limit, frame.buckets.len()),
            });
        }
        Ok(SeriesValues {
            label: self.label.clone(),
            empty,
            rows: keys
                .into_iter()
                .map(|k| {
                    let (data, aggregated) = rows.remove(&k).unwrap_or_default();
                    (k, data, aggregated)
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_values_combine_into_the_range_value() {
        let fold = |math, values: &[Option<f64>]| {
            values
                .iter()
                .fold(empty_value(math), |a, v| combine_values(math, a, *v))
        };
        let buckets = [Some(3.0), None, Some(-1.5), Some(7.0)];
        assert_eq!(fold(Math::Total, &buckets), Some(8.5));
        assert_eq!(fold(Math::Sum, &buckets), Some(8.5));
        assert_eq!(fold(Math::Min, &buckets), Some(-1.5));
        assert_eq!(fold(Math::Max, &buckets), Some(7.0));
        // No bucket with a value: a count or sum is 0, a minimum or maximum has none.
        assert_eq!(fold(Math::Sum, &[None, None]), Some(0.0));
        assert_eq!(fold(Math::Min, &[None, None]), None);
        assert!(combinable(Math::Max) && !combinable(Math::UniquePersons));
        assert!(!combinable(Math::Avg) && !combinable(Math::Median));
    }
}
