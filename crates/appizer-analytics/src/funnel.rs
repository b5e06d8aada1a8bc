//! Funnels. The plan keeps the events that match a step or an exclusion (every event
//! of the person for strict order), as (person, time, step bits, breakdown value);
//! rows stream into per-person lists that are sorted by time and walked here.
//!
//! Per person, an attempt starts at each first-step event inside the date range and
//! takes each next step at its earliest matching event within the window (an event
//! serves one step). The person's result is the attempt reaching the most steps, the
//! earliest-starting among equals. An attempt with an exclusion event between the
//! times of its `from_step` and `to_step` (both reached) does not count; a person with
//! no attempt left is not in the funnel.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::functions::expr_fn::coalesce;
use datafusion::logical_expr::{when, Expr};
use datafusion::prelude::lit;
use futures_util::StreamExt;

use crate::activity::{cast_column, text_views, Actors};
use crate::model::*;
use crate::scope::{check_event_name, micros_expr, Scope};
use crate::time::resolve_range;
use crate::{AnalyticsError, Engine, QueryProject, Result};

pub const DEFAULT_WINDOW_DAYS: u32 = 14;
/// Longest conversion window.
pub const MAX_WINDOW_DAYS: i64 = 366;
const EXCLUSION_BIT: u32 = 32;

/// One event of a person: time (us), step and exclusion bits, breakdown value index.
#[derive(Debug, Clone, Copy)]
struct Row {
    at: i64,
    bits: u64,
    breakdown: u32,
}

/// What one person reached.
#[derive(Debug, Clone)]
struct Outcome {
    reached: usize,
    times: Vec<i64>,
    breakdown: u32,
}

/// Checks a funnel query; returns its window (us), breakdown limit and persons limit.
fn check(q: &FunnelQuery) -> Result<(i64, usize, usize)> {
    let n = q.steps.len();
    if !(MIN_FUNNEL_STEPS..=MAX_FUNNEL_STEPS).contains(&n) {
        return Err(AnalyticsError::invalid(
            "steps",
            format!("must hold {MIN_FUNNEL_STEPS} to {MAX_FUNNEL_STEPS} steps"),
        ));
    }
    for (i, s) in q.steps.iter().enumerate() {
        check_event_name(&s.event, &format!("steps[{i}].event"))?;
    }
    if q.exclusions.len() > MAX_FUNNEL_STEPS {
        return Err(AnalyticsError::invalid(
            "exclusions",
            format!("at most {MAX_FUNNEL_STEPS}"),
        ));
    }
    for (i, x) in q.exclusions.iter().enumerate() {
        check_event_name(&x.event, &format!("exclusions[{i}].event"))?;
        if x.from_step >= x.to_step || x.to_step >= n {
            return Err(AnalyticsError::invalid(
                format!("exclusions[{i}]"),
                "needs from_step < to_step < the number of steps",
            ));
        }
    }
    let window = window(q)?;
    let persons_limit = q.persons_limit.unwrap_or(0);
    if persons_limit > MAX_FUNNEL_PERSONS {
        return Err(AnalyticsError::invalid(
            "persons_limit",
            format!("must be at most {MAX_FUNNEL_PERSONS}"),
        ));
    }
    let breakdown_limit = match &q.breakdown {
        Some(b) => b.checked_limit()?,
        None => 0,
    };

    Ok((window, breakdown_limit, persons_limit))
}

/// The persons who reached step `step - 1` (0-based) of the funnel but not `step`,
/// in id order (for a segment of those who dropped there).
pub(crate) async fn dropped(
    engine: &Engine,
    project: &QueryProject,
    q: &FunnelQuery,
    step: usize,
    now: DateTime<Utc>,
) -> Result<Vec<appizer_core::PersonId>> {
    let (window, _, _) = check(q)?;
    if step == 0 || step >= q.steps.len() {
        return Err(AnalyticsError::invalid(
            "step",
            format!(
                "must be 1 to {} (a step after the first)",
                q.steps.len() - 1
            ),
        ));
    }
    let (actors, _, outcomes) = walk(engine, project, q, now, window).await?;
    let mut out: Vec<appizer_core::PersonId> = outcomes
        .iter()
        .filter(|(_, o)| o.reached == step)
        .filter_map(|(a, _)| actors.ids[*a as usize].parse().ok())
        .collect();
    out.sort();
    Ok(out)
}

pub(crate) async fn run(
    engine: &Engine,
    project: &QueryProject,
    q: &FunnelQuery,
    now: DateTime<Utc>,
) -> Result<FunnelResult> {
    let (window, breakdown_limit, persons_limit) = check(q)?;
    let (actors, values, outcomes) = walk(engine, project, q, now, window).await?;
    let labels: Vec<(String, String)> = q
        .steps
        .iter()
        .map(|s| {
            (
                s.event.clone(),
                s.label.clone().unwrap_or_else(|| s.event.clone()),
            )
        })
        .collect();
    summarize(
        q,
        window,
        breakdown_limit,
        persons_limit,
        &labels,
        &actors,
        &values,
        &outcomes,
    )
}

/// Persons of the funnel with what each reached: the interned persons and breakdown
/// values, and one outcome per person in the funnel.
async fn walk(
    engine: &Engine,
    project: &QueryProject,
    q: &FunnelQuery,
    now: DateTime<Utc>,
    window: i64,
) -> Result<(Actors, Actors, Vec<(u32, Outcome)>)> {
    let n = q.steps.len();
    let scope = Scope::new(engine, project, now).await?;
    let (from, to) = resolve_range(&q.date_range, scope.tz, now)?;
    let scan_to = to + Duration::microseconds(window);
    let global = scope.global(&q.properties, &q.segments).await?;
    let mut bits: Vec<(u32, Expr)> = Vec::new();
    for (i, s) in q.steps.iter().enumerate() {
        let mut parts = vec![scope.event_is(Some(&s.event)).expect("a name")];
        parts.extend(
            scope
                .conditions(&s.properties, &format!("steps[{i}].properties"))
                .await?,
        );
        parts.extend(global.clone());
        bits.push((i as u32, parts.into_iter().reduce(Expr::and).expect("one")));
    }
    for (i, x) in q.exclusions.iter().enumerate() {
        let mut parts = vec![scope.event_is(Some(&x.event)).expect("a name")];
        parts.extend(
            scope
                .conditions(&x.properties, &format!("exclusions[{i}].properties"))
                .await?,
        );
        bits.push((
            EXCLUSION_BIT + i as u32,
            parts.into_iter().reduce(Expr::and).expect("one"),
        ));
    }
    let mask = bits
        .iter()
        .map(|(bit, e)| {
            when(e.clone(), lit(1i64 << bit))
                .otherwise(lit(0i64))
                .expect("a CASE")
        })
        .reduce(|a, b| a + b)
        .expect("steps");
    let breakdown = match &q.breakdown {
        Some(b) => coalesce(vec![
            scope.property(b.kind, &b.key, "breakdown").await?,
            lit(BREAKDOWN_NONE),
        ]),
        None => lit(""),
    };
    let mut df = scope
        .events(from, scan_to)
        .await?
        .filter(scope.actor().is_not_null())?;
    if q.order != FunnelOrder::Strict {
        let any = bits
            .iter()
            .map(|(_, e)| e.clone())
            .reduce(Expr::or)
            .expect("steps");
        df = df.filter(any)?;
    }
    let df = df.select(vec![
        scope.actor().alias("actor"),
        micros_expr().alias("at"),
        mask.alias("bits"),
        breakdown.alias("bd"),
    ])?;

    let mut actors = Actors::default();
    let mut values = Actors::default();
    let mut rows: Vec<Vec<Row>> = Vec::new();
    let mut stream = df.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let actor = text_views(&batch, "actor")?;
        let at = cast_column(&batch, "at", &DataType::Int64)?;
        let at = at.as_primitive::<Int64Type>();
        let mask = cast_column(&batch, "bits", &DataType::Int64)?;
        let mask = mask.as_primitive::<Int64Type>();
        let bd = text_views(&batch, "bd")?;
        let interned = actors.bytes() + values.bytes();
        let people = rows.len();
        for r in 0..batch.num_rows() {
            let a = actors.intern(actor.value(r)) as usize;
            if a == rows.len() {
                rows.push(Vec::new());
            }
            rows[a].push(Row {
                at: at.value(r),
                bits: mask.value(r) as u64,
                breakdown: values.intern(bd.value(r)),
            });
        }
        scope.hold(
            actors.bytes() + values.bytes() - interned
                + (rows.len() - people) * std::mem::size_of::<Vec<Row>>()
                + batch.num_rows() * std::mem::size_of::<Row>(),
        )?;
    }
    let (from_us, to_us) = (from.timestamp_micros(), to.timestamp_micros());
    let mut outcomes: Vec<(u32, Outcome)> = Vec::new();
    for (a, mut events) in rows.into_iter().enumerate() {
        events.sort_by_key(|r| r.at);
        if let Some(o) = person(&events, q, n, window, from_us, to_us) {
            outcomes.push((a as u32, o));
        }
    }
    Ok((actors, values, outcomes))
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    q: &FunnelQuery,
    window: i64,
    breakdown_limit: usize,
    persons_limit: usize,
    labels: &[(String, String)],
    actors: &Actors,
    values: &Actors,
    outcomes: &[(u32, Outcome)],
) -> Result<FunnelResult> {
    let results = if q.breakdown.is_some() {
        // Values by persons entering the funnel, then by value.
        let mut entered: HashMap<u32, u64> = HashMap::new();
        for (_, o) in outcomes {
            *entered.entry(o.breakdown).or_default() += 1;
        }
        let mut order: Vec<(u32, u64)> = entered.into_iter().collect();
        order.sort_by(|x, y| {
            y.1.cmp(&x.1)
                .then_with(|| values.ids[x.0 as usize].cmp(&values.ids[y.0 as usize]))
        });
        let top: Vec<u32> = order
            .iter()
            .take(breakdown_limit)
            .map(|(v, _)| *v)
            .collect();
        let mut groups: Vec<(String, Vec<&(u32, Outcome)>)> = top
            .iter()
            .map(|v| (values.ids[*v as usize].clone(), Vec::new()))
            .collect();
        let mut other = Vec::new();
        for entry in outcomes {
            match top.iter().position(|v| *v == entry.1.breakdown) {
                Some(i) => groups[i].1.push(entry),
                None => other.push(entry),
            }
        }
        if !other.is_empty() {
            groups.push((BREAKDOWN_OTHER.to_string(), other));
        }
        groups
            .into_iter()
            .map(|(value, members)| FunnelBreakdownResult {
                breakdown_value: Some(value),
                steps: steps(&members, labels, actors, persons_limit),
            })
            .collect()
    } else {
        let members: Vec<&(u32, Outcome)> = outcomes.iter().collect();
        vec![FunnelBreakdownResult {
            breakdown_value: None,
            steps: steps(&members, labels, actors, persons_limit),
        }]
    };
    Ok(FunnelResult {
        order: q.order,
        window_seconds: window / 1_000_000,
        results,
    })
}

/// The window in microseconds.
fn window(q: &FunnelQuery) -> Result<i64> {
    let count = i64::from(q.window.unwrap_or(DEFAULT_WINDOW_DAYS));
    let unit_seconds: i64 = match q.window_unit {
        WindowUnit::Minute => 60,
        WindowUnit::Hour => 3_600,
        WindowUnit::Day => 86_400,
        WindowUnit::Week => 7 * 86_400,
    };
    // Both factors are below 2^33, so the product cannot overflow.
    let seconds = count * unit_seconds;
    if count == 0 || seconds > MAX_WINDOW_DAYS * 86_400 {
        return Err(AnalyticsError::invalid(
            "window",
            format!("must be at least 1 and at most {MAX_WINDOW_DAYS} days"),
        ));
    }
    Ok(seconds * 1_000_000)
}

/// The best attempt of one person, if any.
fn person(
    events: &[Row],
    q: &FunnelQuery,
    n: usize,
    window: i64,
    from: i64,
    to: i64,
) -> Option<Outcome> {
    let mut best: Option<Outcome> = None;
    for (s, start) in events.iter().enumerate() {
        if start.at < from || start.at >= to {
            continue;
        }
        let starts = match q.order {
            FunnelOrder::Unordered => start.bits & ((1 << n) - 1) != 0,
            _ => start.bits & 1 != 0,
        };
        if !starts {
            continue;
        }
        let attempt = match q.order {
            FunnelOrder::Ordered => ordered(events, s, n, window),
            FunnelOrder::Strict => strict(events, s, n, window),
            FunnelOrder::Unordered => unordered(events, s, n, window),
        };
        if excluded(events, &attempt, q) {
            continue;
        }
        if best.as_ref().is_none_or(|b| attempt.0 > b.reached) {
            let done = attempt.0 == n;
            best = Some(Outcome {
                reached: attempt.0,
                times: attempt.1,
                breakdown: start.breakdown,
            });
            if done {
                break;
            }
        }
    }
    best
}

/// Steps reached from `s` in order, other events allowed between; their times.
fn ordered(events: &[Row], s: usize, n: usize, window: i64) -> (usize, Vec<i64>) {
    let start = events[s].at;
    let mut times = vec![start];
    for e in &events[s + 1..] {
        if times.len() == n || e.at - start > window {
            break;
        }
        if e.bits & (1 << times.len()) != 0 {
            times.push(e.at);
        }
    }
    (times.len(), times)
}

/// Steps reached from `s` by the events right after it.
fn strict(events: &[Row], s: usize, n: usize, window: i64) -> (usize, Vec<i64>) {
    let start = events[s].at;
    let mut times = vec![start];
    for e in &events[s + 1..] {
        if times.len() == n || e.at - start > window || e.bits & (1 << times.len()) == 0 {
            break;
        }
        times.push(e.at);
    }
    (times.len(), times)
}

/// Distinct steps done within the window from `s`, in any order; the times of each
/// step's first event, ascending. An event counts for every step it matches.
fn unordered(events: &[Row], s: usize, n: usize, window: i64) -> (usize, Vec<i64>) {
    let start = events[s].at;
    let mut first: Vec<Option<i64>> = vec![None; n];
    for e in &events[s..] {
        if e.at - start > window {
            break;
        }
        for (step, slot) in first.iter_mut().enumerate() {
            if slot.is_none() && e.bits & (1 << step) != 0 {
                *slot = Some(e.at);
            }
        }
    }
    let mut times: Vec<i64> = first.into_iter().flatten().collect();
    times.sort_unstable();
    (times.len(), times)
}

/// Whether an exclusion event falls strictly between the times of its steps.
fn excluded(events: &[Row], attempt: &(usize, Vec<i64>), q: &FunnelQuery) -> bool {
    q.exclusions.iter().enumerate().any(|(i, x)| {
        if attempt.0 <= x.to_step {
            return false;
        }
        let (a, b) = (attempt.1[x.from_step], attempt.1[x.to_step]);
        let bit = 1u64 << (EXCLUSION_BIT + i as u32);
        events
            .iter()
            .any(|e| e.bits & bit != 0 && e.at > a && e.at < b)
    })
}

fn steps(
    members: &[&(u32, Outcome)],
    labels: &[(String, String)],
    actors: &Actors,
    persons_limit: usize,
) -> Vec<FunnelStepResult> {
    let counts: Vec<u64> = (0..labels.len())
        .map(|i| members.iter().filter(|(_, o)| o.reached > i).count() as u64)
        .collect();
    let list = |pick: &dyn Fn(&Outcome) -> bool| -> Option<Vec<String>> {
        (persons_limit > 0).then(|| {
            let mut ids: Vec<String> = members
                .iter()
                .filter(|(_, o)| pick(o))
                .map(|(a, _)| actors.ids[*a as usize].clone())
                .collect();
            ids.sort();
            ids.truncate(persons_limit);
            ids
        })
    };
    labels
        .iter()
        .enumerate()
        .map(|(i, (event, label))| {
            let mut seconds: Vec<f64> = if i == 0 {
                Vec::new()
            } else {
                members
                    .iter()
                    .filter(|(_, o)| o.reached > i)
                    .map(|(_, o)| (o.times[i] - o.times[i - 1]) as f64 / 1e6)
                    .collect()
            };
            seconds.sort_by(f64::total_cmp);
            let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
            FunnelStepResult {
                step: i,
                event: event.clone(),
                label: label.clone(),
                count: counts[i],
                conversion_from_start: ratio(counts[i], counts[0]),
                conversion_from_previous: ratio(counts[i], counts[i.saturating_sub(1)]),
                dropped: if i == 0 { 0 } else { counts[i - 1] - counts[i] },
                average_seconds: (!seconds.is_empty())
                    .then(|| seconds.iter().sum::<f64>() / seconds.len() as f64),
                median_seconds: median(&seconds),
                persons: list(&|o| o.reached > i),
                dropped_persons: if i == 0 {
                    None
                } else {
                    list(&|o| o.reached == i)
                },
            }
        })
        .collect()
}

/// The median of sorted values (the mean of the two middle ones for an even count).
pub fn median(sorted: &[f64]) -> Option<f64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_bounded_without_overflow() {
        let q = |window, unit| FunnelQuery {
            window: Some(window),
            window_unit: unit,
            ..Default::default()
        };
        assert_eq!(window(&q(2, WindowUnit::Hour)).unwrap(), 7_200_000_000);
        assert_eq!(
            window(&q(366, WindowUnit::Day)).unwrap(),
            366 * 86_400_000_000
        );
        for (w, unit) in [
            (0, WindowUnit::Day),
            (367, WindowUnit::Day),
            (u32::MAX, WindowUnit::Minute),
            (u32::MAX, WindowUnit::Week),
        ] {
            let e = window(&q(w, unit)).unwrap_err();
            assert!(e.to_string().starts_with("window"), "{w} {unit:?}: {e}");
        }
    }
}
