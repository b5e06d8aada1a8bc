//! The persons behind one trends value: the series' events in the bucket (and the
//! breakdown value), grouped by the person they belong to now. The events are those
//! the value counts: the same conditions, segments and breakdown mapping (`$other` is
//! every value outside the top ones over the whole range, as in the answer).

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::functions_aggregate::expr_fn::{count, min};
use datafusion::logical_expr::{cast, Expr};
use datafusion::prelude::{col, lit};

use super::{prepare, top_values, Shared};
use crate::activity::cast_column;
use crate::model::*;
use crate::scope::{ts, Scope};
use crate::time::{local_to_utc, next, resolve_range, Frame};
use crate::{AnalyticsError, Engine, QueryProject, Result};

pub(crate) async fn persons(
    engine: &Engine,
    project: &QueryProject,
    p: &TrendsPersonsQuery,
    now: DateTime<Utc>,
) -> Result<TrendsPersons> {
    let q = &p.query;
    check_series_count(&q.series)?;
    let limit = match p.limit {
        None => 100,
        Some(n) if (1..=MAX_POINT_PERSONS).contains(&n) => n,
        Some(_) => {
            return Err(AnalyticsError::invalid(
                "limit",
                format!("must be between 1 and {MAX_POINT_PERSONS}"),
            ))
        }
    };
    let Some(series) = q.series.get(p.series) else {
        return Err(AnalyticsError::invalid(
            "series",
            format!(
                "must name one of the query's {} series (from 0)",
                q.series.len()
            ),
        ));
    };
    if series.metric_id.is_some() {
        return Err(AnalyticsError::invalid(
            "series",
            "a metric's value is a formula over its own series: it lists no persons",
        ));
    }
    match (&q.breakdown, &p.breakdown_value) {
        (Some(_), None) => {
            return Err(AnalyticsError::invalid(
                "breakdown_value",
                "is required when the query is broken down",
            ))
        }
        (None, Some(_)) => {
            return Err(AnalyticsError::invalid(
                "breakdown_value",
                "is only allowed when the query is broken down",
            ))
        }
        _ => {}
    }
    let scope = Scope::new(engine, project, now).await?;
    let (from, to) = resolve_range(&q.date_range, scope.tz, now)?;
    let frame = Frame::new(scope.tz, q.interval, from, to)?;
    let Some(at) = frame.labels().iter().position(|l| *l == p.bucket) else {
        return Err(AnalyticsError::invalid(
            "bucket",
            "is not one of the buckets of the query's range",
        ));
    };
    let start = frame.buckets[at];
    let lo = local_to_utc(scope.tz, start).max(from);
    let hi = local_to_utc(scope.tz, next(start, q.interval)).min(to);

    let shared = Shared::of(&scope, q).await?;
    let prepared = prepare(&scope, &frame, p.series, series, &shared).await?;
    let mut keep: Vec<Expr> = vec![
        col("timestamp").gt_eq(ts(lo)),
        col("timestamp").lt(ts(hi)),
        scope.actor().is_not_null(),
    ];
    if let (Some(value), Some(wanted)) = (&prepared.breakdown, &p.breakdown_value) {
        let value = cast(value.clone(), DataType::Utf8);
        match prepared.fold_top {
            // Counts keep raw values: `$other` is what is outside the top ones.
            Some(top) if wanted == BREAKDOWN_OTHER => {
                let (top, _) = top_values(prepared.events.clone(), value.clone(), top).await?;
                keep.push(value.in_list(top.into_iter().map(lit).collect(), true));
            }
            _ => keep.push(value.eq(lit(wanted.clone()))),
        }
    }
    let events = prepared
        .events
        .filter(keep.into_iter().reduce(Expr::and).expect("conditions"))?;
    let per_person = events.aggregate(
        vec![cast(scope.actor(), DataType::Utf8).alias("person_id")],
        vec![
            count(lit(1)).alias("events"),
            min(col("distinct_id")).alias("distinct_id"),
        ],
    )?;
    let total = per_person.clone().count().await? as u64;
    let batches = per_person
        .sort(vec![
            col("events").sort(false, false),
            col("person_id").sort(true, false),
        ])?
        .limit(0, Some(limit))?
        .collect()
        .await?;
    let mut persons = Vec::new();
    for b in &batches {
        let ids = cast_column(b, "person_id", &DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        let n = cast_column(b, "events", &DataType::Int64)?;
        let n = n.as_primitive::<Int64Type>();
        let names = cast_column(b, "distinct_id", &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        for i in 0..b.num_rows() {
            if !ids.is_null(i) {
                persons.push(PointPerson {
                    person_id: ids.value(i).to_string(),
                    distinct_id: (!names.is_null(i)).then(|| names.value(i).to_string()),
                    events: n.value(i).max(0) as u64,
                });
            }
        }
    }
    Ok(TrendsPersons { total, persons })
}
