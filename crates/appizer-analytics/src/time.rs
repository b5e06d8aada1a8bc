//! Date ranges and buckets in a project's time zone. Buckets are the starts of local
//! minutes, hours, days, weeks (Monday) or months; the same bucket is computed in
//! Rust ([`Frame::bucket_of`]) and inside a DataFusion plan ([`local_bucket_expr`]),
//! where the time zone's offsets over the scanned span become one `CASE`, so daylight
//! saving changes fall where the zone puts them.

use chrono::{
    DateTime, Datelike, Duration, Months, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::functions::expr_fn::date_trunc;
use datafusion::logical_expr::{cast, when, Expr};
use datafusion::prelude::{col, lit};

use crate::model::{DateRange, Interval, MAX_BUCKETS};
use crate::AnalyticsError;

/// The start of the local bucket holding `local`.
pub fn trunc(local: NaiveDateTime, interval: Interval) -> NaiveDateTime {
    let date = local.date();
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).expect("midnight exists");
    match interval {
        Interval::Minute => local
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .expect("valid"),
        Interval::Hour => date.and_hms_opt(local.hour(), 0, 0).expect("valid"),
        Interval::Day => midnight(date),
        Interval::Week => {
            midnight(date - Duration::days(i64::from(date.weekday().num_days_from_monday())))
        }
        Interval::Month => midnight(date.with_day(1).expect("day 1 exists")),
    }
}

/// The start of the bucket after the one starting at `start`.
pub fn next(start: NaiveDateTime, interval: Interval) -> NaiveDateTime {
    match interval {
        Interval::Minute => start + Duration::minutes(1),
        Interval::Hour => start + Duration::hours(1),
        Interval::Day => start + Duration::days(1),
        Interval::Week => start + Duration::days(7),
        Interval::Month => start + Months::new(1),
    }
}

/// `n` buckets back from the one starting at `start`.
pub fn back(start: NaiveDateTime, interval: Interval, n: u32) -> NaiveDateTime {
    match interval {
        Interval::Month => start - Months::new(n),
        _ => {
            let mut t = start;
            for _ in 0..n {
                t = t - (next(t, interval) - t);
            }
            t
        }
    }
}

/// The instant a local time begins in `tz` (the first, when the clock went back; just
/// after the gap, when it went forward).
pub fn local_to_utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut t = local;
    for _ in 0..4 {
        if let Some(at) = tz.from_local_datetime(&t).earliest() {
            return at.with_timezone(&Utc);
        }
        t += Duration::minutes(30);
    }
    Utc.from_utc_datetime(&local)
}

pub fn to_local(tz: Tz, at: DateTime<Utc>) -> NaiveDateTime {
    at.with_timezone(&tz).naive_local()
}

/// Text of a bucket start: a date for days, weeks and months; date and minute otherwise.
pub fn label(start: NaiveDateTime, interval: Interval) -> String {
    match interval {
        Interval::Minute | Interval::Hour => start.format("%Y-%m-%dT%H:%M").to_string(),
        _ => start.format("%Y-%m-%d").to_string(),
    }
}

/// A resolved range `[from, to)` and its buckets.
#[derive(Debug, Clone)]
pub struct Frame {
    pub tz: Tz,
    pub interval: Interval,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Local starts of the buckets overlapping the range, in order.
    pub buckets: Vec<NaiveDateTime>,
}

impl Frame {
    pub fn new(
        tz: Tz,
        interval: Interval,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Self, AnalyticsError> {
        if to <= from {
            return Err(AnalyticsError::invalid(
                "date_range",
                "must end after it starts",
            ));
        }
        let mut buckets = Vec::new();
        let mut b = trunc(to_local(tz, from), interval);
        while local_to_utc(tz, b) < to {
            if buckets.len() == MAX_BUCKETS {
                return Err(AnalyticsError::invalid(
                    "interval",
                    format!(
                        "the date range holds more than {MAX_BUCKETS} {}s: use a longer interval or a shorter range",
                        interval.as_str()
                    ),
                ));
            }
            buckets.push(b);
            b = next(b, interval);
        }
        Ok(Self {
            tz,
            interval,
            from,
            to,
            buckets,
        })
    }

    pub fn bucket_of(&self, at: DateTime<Utc>) -> NaiveDateTime {
        trunc(to_local(self.tz, at), self.interval)
    }

    pub fn index_of(&self, bucket: NaiveDateTime) -> Option<usize> {
        self.buckets.binary_search(&bucket).ok()
    }

    pub fn labels(&self) -> Vec<String> {
        self.buckets
            .iter()
            .map(|b| label(*b, self.interval))
            .collect()
    }

    /// The same range and interval moved back by the range's length on the local
    /// clock (two weeks back are two weeks of days, whatever daylight saving did).
    pub fn previous(&self) -> Result<Self, AnalyticsError> {
        let (from, to) = (to_local(self.tz, self.from), to_local(self.tz, self.to));
        let len = to - from;
        Self::new(
            self.tz,
            self.interval,
            local_to_utc(self.tz, from - len),
            self.from,
        )
    }

    /// The bucket expression over `[lo, hi)` (see [`local_bucket_expr`]).
    pub fn bucket_expr(&self, lo: DateTime<Utc>, hi: DateTime<Utc>) -> Expr {
        local_bucket_expr(self.tz, self.interval, lo, hi)
    }
}

fn offset_at(tz: Tz, at: DateTime<Utc>) -> i64 {
    i64::from(
        tz.offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc(),
    )
}

/// The zone's UTC offsets over `[lo, hi)`: `(from, offset seconds)`, the first from
/// `lo`. Changes are found hour by hour, then to the second.
pub fn offsets(tz: Tz, lo: DateTime<Utc>, hi: DateTime<Utc>) -> Vec<(DateTime<Utc>, i64)> {
    let mut out = vec![(lo, offset_at(tz, lo))];
    let mut t = lo;
    while t < hi {
        let step = (t + Duration::hours(1)).min(hi);
        let (last_offset, at_step) = (out.last().expect("one").1, offset_at(tz, step));
        if at_step != last_offset {
            let (mut a, mut b) = (t, step);
            while (b - a) > Duration::seconds(1) {
                let mid = a + (b - a) / 2;
                if offset_at(tz, mid) == last_offset {
                    a = mid;
                } else {
                    b = mid;
                }
            }
            out.push((b, at_step));
        }
        t = step;
    }
    out
}

/// Microseconds since the epoch of the local wall-clock time of `timestamp`.
pub fn local_micros_expr(tz: Tz, lo: DateTime<Utc>, hi: DateTime<Utc>) -> Expr {
    let utc = cast(col("timestamp"), DataType::Int64);
    let spans = offsets(tz, lo, hi);
    let shifted = |offset: i64| utc.clone() + lit(offset * 1_000_000);
    if spans.len() == 1 {
        return if spans[0].1 == 0 {
            utc
        } else {
            shifted(spans[0].1)
        };
    }
    let mut case = when(
        utc.clone().lt(lit(spans[1].0.timestamp_micros())),
        shifted(spans[0].1),
    );
    for pair in spans[1..].windows(2) {
        case = case.when(
            utc.clone().lt(lit(pair[1].0.timestamp_micros())),
            shifted(pair[0].1),
        );
    }
    case.otherwise(shifted(spans.last().expect("two").1))
        .expect("a CASE with branches")
}

/// The local bucket start of `timestamp`, as microseconds of the naive local time
/// (what [`Frame::bucket_of`] gives, as `and_utc().timestamp_micros()`). Exact for
/// timestamps in `[lo, hi)`.
pub fn local_bucket_expr(tz: Tz, interval: Interval, lo: DateTime<Utc>, hi: DateTime<Utc>) -> Expr {
    let local = local_micros_expr(tz, lo, hi);
    // Fixed-length units are integer arithmetic on local microseconds (Euclidean
    // remainder, so times before 1970 round down too); weeks start on Monday, and
    // 1970-01-01 was a Thursday, three days after one. Months need the calendar.
    let minute = 60_000_000i64;
    let (unit, shift) = match interval {
        Interval::Minute => (minute, 0),
        Interval::Hour => (60 * minute, 0),
        Interval::Day => (1_440 * minute, 0),
        Interval::Week => (7 * 1_440 * minute, 3 * 1_440 * minute),
        Interval::Month => {
            let local = cast(local, DataType::Timestamp(TimeUnit::Microsecond, None));
            return cast(date_trunc(lit("month"), local), DataType::Int64);
        }
    };
    let shifted = if shift == 0 {
        local.clone()
    } else {
        local.clone() + lit(shift)
    };
    let remainder = ((shifted % lit(unit)) + lit(unit)) % lit(unit);
    local - remainder
}

/// The naive local time of a bucket key from [`local_bucket_expr`].
pub fn bucket_from_micros(us: i64) -> NaiveDateTime {
    DateTime::from_timestamp_micros(us)
        .map(|t| t.naive_utc())
        .unwrap_or_default()
}

/// Resolves a range against `now` in `tz`.
pub fn resolve_range(
    range: &DateRange,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), AnalyticsError> {
    let from = match &range.from {
        None => resolve(tz, now, "-7d", false).expect("a valid default"),
        Some(text) => resolve(tz, now, text, false).ok_or_else(|| bad_date("date_range.from"))?,
    };
    let to = match &range.to {
        None => now,
        Some(text) => resolve(tz, now, text, true).ok_or_else(|| bad_date("date_range.to"))?,
    };
    if to <= from {
        return Err(AnalyticsError::invalid(
            "date_range",
            "`to` must be after `from`",
        ));
    }
    Ok((from, to))
}

fn bad_date(field: &str) -> AnalyticsError {
    AnalyticsError::invalid(
        field,
        "must be a date (2026-11-01), an RFC 3339 time, `now`, or relative (-7d, -24h, -30m, -2w, -3mo)",
    )
}

/// One end of a range; `end` makes dates and relative values inclusive (the end of
/// that day or unit).
fn resolve(tz: Tz, now: DateTime<Utc>, text: &str, end: bool) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if text == "now" {
        return Some(now);
    }
    if let Some(rest) = text.strip_prefix('-') {
        let split = rest.find(|c: char| !c.is_ascii_digit())?;
        let (n, unit) = rest.split_at(split);
        let n: u32 = n.parse().ok()?;
        let interval = match unit {
            "m" => Interval::Minute,
            "h" => Interval::Hour,
            "d" => Interval::Day,
            "w" => Interval::Week,
            "mo" => Interval::Month,
            _ => return None,
        };
        if n > 100_000 {
            return None;
        }
        let start = back(trunc(to_local(tz, now), interval), interval, n);
        let local = if end { next(start, interval) } else { start };
        let at = local_to_utc(tz, local);
        return Some(if end { at.min(now) } else { at });
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let date = if end { date.succ_opt()? } else { date };
        return Some(local_to_utc(tz, date.and_hms_opt(0, 0, 0)?));
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Parses an IANA zone name (projects' zones are checked when set; UTC otherwise).
pub fn zone(name: &str) -> Tz {
    name.parse().unwrap_or(Tz::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn buckets_follow_daylight_saving_changes() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        // Clocks went back at 03:00 local on 2026-10-25 (01:00 UTC).
        let frame = Frame::new(
            paris,
            Interval::Day,
            utc("2026-10-23T22:00:00Z"),
            utc("2026-10-27T23:00:00Z"),
        )
        .unwrap();
        assert_eq!(
            frame.labels(),
            ["2026-10-24", "2026-10-25", "2026-10-26", "2026-10-27"]
        );
        // 23:30 UTC on the 25th is 00:30 on the 26th in winter time.
        assert_eq!(
            label(frame.bucket_of(utc("2026-10-25T23:30:00Z")), Interval::Day),
            "2026-10-26"
        );
        // ...but 22:30 UTC on the 24th is 00:30 on the 25th in summer time.
        assert_eq!(
            label(frame.bucket_of(utc("2026-10-24T22:30:00Z")), Interval::Day),
            "2026-10-25"
        );
        let spans = offsets(paris, frame.from, frame.to);
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[1], (utc("2026-10-25T01:00:00Z"), 3600));
        assert_eq!(spans[0].1, 7200);
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let t = NaiveDate::from_ymd_opt(2026, 11, 25)
            .unwrap()
            .and_hms_opt(13, 5, 9)
            .unwrap();
        assert_eq!(
            label(trunc(t, Interval::Week), Interval::Week),
            "2026-11-23"
        );
        assert_eq!(
            label(trunc(t, Interval::Month), Interval::Month),
            "2026-11-01"
        );
        assert_eq!(
            label(trunc(t, Interval::Hour), Interval::Hour),
            "2026-11-25T13:00"
        );
        assert_eq!(
            label(
                next(trunc(t, Interval::Month), Interval::Month),
                Interval::Month
            ),
            "2026-12-01"
        );
        assert_eq!(
            label(
                back(trunc(t, Interval::Month), Interval::Month, 11),
                Interval::Month
            ),
            "2025-12-01"
        );
    }

    #[test]
    fn ranges_resolve_dates_instants_and_relative_values() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let now = utc("2026-11-25T15:00:00Z");
        let range = |from: &str, to: Option<&str>| DateRange {
            from: Some(from.into()),
            to: to.map(Into::into),
        };
        let (from, to) = resolve_range(&range("2026-11-01", Some("2026-11-02")), ny, now).unwrap();
        // New York left daylight time on 2026-11-01 at 02:00 local.
        assert_eq!(from, utc("2026-11-01T04:00:00Z"));
        assert_eq!(to, utc("2026-11-03T05:00:00Z"));
        let (from, to) = resolve_range(&range("-1d", None), ny, now).unwrap();
        assert_eq!(from, utc("2026-11-24T05:00:00Z"));
        assert_eq!(to, now);
        let (from, _) = resolve_range(&range("2026-11-20T10:00:00Z", None), ny, now).unwrap();
        assert_eq!(from, utc("2026-11-20T10:00:00Z"));
        for bad in ["yesterday", "-7x", "2026-13-01", "-d"] {
            let e = resolve_range(&range(bad, None), ny, now).unwrap_err();
            assert!(e.to_string().contains("date_range.from"), "{bad}: {e}");
        }
        assert!(resolve_range(&range("2026-11-26", Some("2026-11-20")), ny, now).is_err());
    }

    #[test]
    fn a_range_of_too_many_buckets_is_refused() {
        let e = Frame::new(
            Tz::UTC,
            Interval::Minute,
            utc("2026-01-01T00:00:00Z"),
            utc("2026-11-01T00:00:00Z"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("interval"), "{e}");
    }
}
