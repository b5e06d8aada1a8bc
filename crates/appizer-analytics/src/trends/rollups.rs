//! Counts of plain events from the files' rollups, the buffer and scans of the
//! partial quarter hours at a range's ends.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::cast;
use datafusion::prelude::{col, lit, DataFrame};

use crate::activity::cast_column;
use crate::model::*;
use crate::scope::{check_event_name, Scope};
use crate::time::Frame;
use crate::Result;

use super::{empty_value, label, SeriesValues};

/// How a series of plain event counts is answered from the files' rollups and the
/// buffered rows (see `appizer_storage::events::rollup`): whole quarter hours in
/// `[lo, hi)` from the rollups, the parts of a quarter hour at the range's ends (a
/// range ending now) from a scan. When the project has deleted persons, only files
/// rewritten since persons last changed (which hold no deleted person's events) count
/// by rollup; the other files and the buffered rows in `[lo, hi)` are scanned too.
pub(crate) struct FromRollups {
    first_slot: i64,
    end_slot: i64,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
    counts: appizer_storage::events::Counts,
}

impl FromRollups {
    /// The rollups of series `s`, or `None` when the series or range does not allow
    /// them: another math, a condition, a breakdown, minutes, a range within one
    /// quarter hour, `analytics.rollups` off, or a file in range without a rollup.
    pub(crate) async fn of(
        scope: &Scope<'_>,
        q: &TrendsQuery,
        frame: &Frame,
        i: usize,
        s: &Series,
    ) -> Result<Option<FromRollups>> {
        use appizer_storage::events::rollup::SLOT_SECONDS;
        let slot_us = SLOT_SECONDS * 1_000_000;
        let (from_us, to_us) = (frame.from.timestamp_micros(), frame.to.timestamp_micros());
        let first_slot = from_us.div_euclid(slot_us) + i64::from(from_us.rem_euclid(slot_us) != 0);
        let end_slot = to_us.div_euclid(slot_us);
        if !scope.engine.config().rollups
            || s.math != Math::Total
            || s.math_property.is_some()
            || s.metric_id.is_some()
            || !s.properties.is_empty()
            || !q.properties.is_empty()
            || !q.segments.is_empty()
            || q.breakdown.is_some()
            || frame.interval == Interval::Minute
            || end_slot <= first_slot
        {
            return Ok(None);
        }
        if let Some(name) = &s.event {
            check_event_name(name, &format!("series[{i}].event"))?;
        }
        let (lo, hi) = (slot_time(first_slot), slot_time(end_slot));
        Ok(scope
            .engine
            .events
            .counts(scope.project, lo, hi, scope.deletions_changed_at())
            .await?
            .map(|counts| FromRollups {
                first_slot,
                end_slot,
                lo,
                hi,
                counts,
            }))
    }

    /// How many files' rollups are read.
    pub(crate) fn files(&self) -> usize {
        self.counts.files.len()
    }

    /// The whole quarter hours counted from rollups.
    pub(crate) fn covered(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (self.lo, self.hi)
    }

    /// Files read whole instead of by rollup (see [`FromRollups`]).
    pub(crate) fn files_scanned(&self) -> usize {
        self.counts.scan.files.len()
    }

    /// The timestamps of `s`'s events that rollups do not count: in the parts of the
    /// range outside whole quarter hours, and in the files and buffered rows left to
    /// scan. `None` when there are none.
    pub(crate) async fn scans(
        &self,
        scope: &Scope<'_>,
        frame: &Frame,
        s: &Series,
    ) -> Result<Option<DataFrame>> {
        let mut parts = Vec::new();
        for (a, b) in [(frame.from, self.lo), (self.hi, frame.to)] {
            if a < b {
                parts.push(scope.events(a, b).await?);
            }
        }
        if !self.counts.scan.is_empty() {
            let rows = scope
                .engine
                .events
                .read(&scope.ctx, self.counts.scan.clone())
                .await?;
            parts.push(scope.restrict(rows, self.lo, self.hi)?);
        }
        let mut plan: Option<DataFrame> = None;
        for mut events in parts {
            if let Some(p) = scope.event_is(s.event.as_deref()) {
                events = events.filter(p)?;
            }
            let times = events.select(vec![col("timestamp")])?;
            plan = Some(match plan {
                None => times,
                Some(p) => p.union(times)?,
            });
        }
        Ok(plan)
    }

    /// The series' counts per bucket.
    pub(super) async fn values(
        &self,
        scope: &Scope<'_>,
        frame: &Frame,
        s: &Series,
    ) -> Result<SeriesValues> {
        use appizer_storage::events::rollup::SLOT_SECONDS;
        let mut data = vec![0u64; frame.buckets.len()];
        // Each quarter hour lies in one bucket (every zone's offset is a multiple of
        // 15 minutes): map each slot once.
        let mut bucket_of_slot: HashMap<i64, Option<usize>> = HashMap::new();
        let mut bucket = |slot: i64| {
            *bucket_of_slot
                .entry(slot)
                .or_insert_with(|| frame.index_of(frame.bucket_of(slot_time(slot))))
        };
        let files = self.counts.files.iter().map(|r| &**r);
        for rollup in files.chain([&self.counts.buffered]) {
            for (slot, n) in rollup.slots(s.event.as_deref()) {
                if (self.first_slot..self.end_slot).contains(&slot) {
                    if let Some(b) = bucket(slot) {
                        data[b] += n;
                    }
                }
            }
        }
        // What rollups do not count, counted per quarter hour by the plan (the rows
        // are in the range already, a part of a quarter hour at its ends included).
        if let Some(scans) = self.scans(scope, frame, s).await? {
            let slot_us = lit(SLOT_SECONDS * 1_000_000);
            let micros = cast(col("timestamp"), DataType::Int64);
            let since_slot =
                ((micros.clone() % slot_us.clone()) + slot_us.clone()) % slot_us.clone();
            let slot = (micros - since_slot) / slot_us;
            let per_slot =
                scans.aggregate(vec![slot.alias("slot")], vec![count(lit(1)).alias("n")])?;
            for batch in per_slot.collect().await? {
                let slots = cast_column(&batch, "slot", &DataType::Int64)?;
                let counts = cast_column(&batch, "n", &DataType::Int64)?;
                let slots = slots.as_primitive::<Int64Type>();
                let counts = counts.as_primitive::<Int64Type>();
                for r in 0..batch.num_rows() {
                    if let Some(b) = bucket(slots.value(r)) {
                        data[b] += counts.value(r) as u64;
                    }
                }
            }
        }
        let total: u64 = data.iter().sum();
        Ok(SeriesValues {
            label: label(s),
            empty: empty_value(Math::Total),
            rows: vec![(
                None,
                data.into_iter().map(|n| Some(n as f64)).collect(),
                Some(total as f64),
            )],
        })
    }
}

/// The start of quarter hour `slot` (counted from the epoch).
fn slot_time(slot: i64) -> DateTime<Utc> {
    use appizer_storage::events::rollup::SLOT_SECONDS;
    DateTime::from_timestamp(slot * SLOT_SECONDS, 0).expect("a slot of a valid range")
}
