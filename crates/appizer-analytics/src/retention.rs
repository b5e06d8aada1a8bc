//! Retention: cohorts of persons by the period of their start event (the first ever, or
//! each one), and per later period how many of them did the return event.

use chrono::{DateTime, Utc};

use crate::activity::{active_buckets, first_times, Actors};
use crate::model::*;
use crate::scope::{check_event_name, Scope};
use crate::time::{label, local_to_utc, next, resolve_range, Frame};
use crate::{AnalyticsError, Engine, QueryProject, Result};

pub const DEFAULT_RETENTION_PERIODS: usize = 7;

pub(crate) async fn run(
    engine: &Engine,
    project: &QueryProject,
    q: &RetentionQuery,
    now: DateTime<Utc>,
) -> Result<RetentionResult> {
    check_event_name(&q.start_event.event, "start_event.event")?;
    check_event_name(&q.return_event.event, "return_event.event")?;
    if q.period == Interval::Minute {
        return Err(AnalyticsError::invalid(
            "period",
            "must be hour, day, week or month",
        ));
    }
    let periods = q.periods.unwrap_or(DEFAULT_RETENTION_PERIODS);
    if periods == 0 || periods > MAX_RETENTION_PERIODS {
        return Err(AnalyticsError::invalid(
            "periods",
            format!("must be 1 to {MAX_RETENTION_PERIODS}"),
        ));
    }
    let scope = Scope::new(engine, project, now).await?;
    let (from, to) = resolve_range(&q.date_range, scope.tz, now)?;
    let cohorts = Frame::new(scope.tz, q.period, from, to)?;
    // Return events are read up to the end of the last cohort's last period.
    let mut end = *cohorts.buckets.last().expect("a frame has a bucket");
    for _ in 0..=periods {
        end = next(end, q.period);
    }
    let scan_to = local_to_utc(scope.tz, end).min(now.max(to));
    let scan_from = local_to_utc(scope.tz, cohorts.buckets[0]);
    let wide = Frame::new(scope.tz, q.period, scan_from, scan_to.max(to))?;

    let global = scope.global(&q.properties, &q.segments).await?;
    let condition = |step: &Step, field: &'static str| {
        let scope = &scope;
        let global = global.clone();
        let step = step.clone();
        async move {
            let mut parts = vec![col_event(&step.event)];
            parts.extend(scope.conditions(&step.properties, field).await?);
            parts.extend(global);
            Ok::<_, AnalyticsError>(parts.into_iter().reduce(datafusion::prelude::Expr::and))
        }
    };
    let start = condition(&q.start_event, "start_event.properties").await?;
    let back = condition(&q.return_event, "return_event.properties").await?;

    let mut actors = Actors::default();
    // The persons of each cohort (an index of `wide`, which starts with `cohorts`).
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); cohorts.buckets.len()];
    match q.retention_type {
        RetentionType::FirstTime => {
            for (a, us) in first_times(&scope, start, to, &mut actors).await? {
                let at = DateTime::from_timestamp_micros(us).unwrap_or_default();
                if at < from {
                    continue;
                }
                if let Some(i) = cohorts.index_of(cohorts.bucket_of(at)) {
                    members[i].push(a);
                }
            }
        }
        RetentionType::Recurring => {
            for (a, bucket) in
                active_buckets(&scope, start, &cohorts, from, to, &mut actors).await?
            {
                if let Some(i) = cohorts.index_of(bucket) {
                    members[i].push(a);
                }
            }
        }
    }
    for persons in &mut members {
        persons.sort_unstable();
        persons.dedup();
    }
    // Per person (by interned number), the periods (indexes of `wide`) with a return
    // event, as bits: `words` words a person.
    let words = wide.buckets.len().div_ceil(64);
    let pairs = active_buckets(&scope, back, &wide, scan_from, scan_to, &mut actors).await?;
    let mut returned = vec![0u64; actors.len() * words];
    for (a, bucket) in pairs {
        if let Some(i) = wide.index_of(bucket) {
            returned[a as usize * words + i / 64] |= 1 << (i % 64);
        }
    }
    let begun = |i: usize| {
        wide.buckets
            .get(i)
            .is_some_and(|b| local_to_utc(scope.tz, *b) <= now)
    };
    let cohorts_out = members
        .iter()
        .enumerate()
        .map(|(c, persons)| {
            let begun_periods = (1..=periods).take_while(|k| begun(c + k)).count();
            let mut values = vec![persons.len() as u64];
            values.resize(1 + begun_periods, 0);
            for &a in persons {
                let bits = &returned[a as usize * words..(a as usize + 1) * words];
                for (k, count) in values.iter_mut().enumerate().skip(1) {
                    let i = c + k;
                    if bits[i / 64] >> (i % 64) & 1 == 1 {
                        *count += 1;
                    }
                }
            }
            RetentionCohort {
                period: label(cohorts.buckets[c], q.period),
                size: persons.len() as u64,
                values,
            }
        })
        .collect();
    Ok(RetentionResult {
        period: q.period,
        timezone: scope.tz.name().to_string(),
        cohorts: cohorts_out,
    })
}

fn col_event(name: &str) -> datafusion::prelude::Expr {
    datafusion::prelude::col("event").eq(datafusion::prelude::lit(name.to_string()))
}
