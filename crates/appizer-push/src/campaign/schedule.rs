//! When a campaign sends: local times in a person's zone, quiet hours, and recurring
//! schedules as cron expressions in a zone, all correct across daylight saving.
//!
//! One rule for wall-clock times a zone skips (the hour lost in spring): they resolve to
//! the first instant after the gap, so a 02:30 send on that day goes out at 03:00. Times
//! a zone repeats (the hour gained in autumn) resolve to their first occurrence, so a
//! cron run or a local-time send happens once.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;

/// The first zone name that parses, in the order given (the person's `$timezone`, the
/// device's, the project's), else UTC.
pub fn zone<'a>(candidates: impl IntoIterator<Item = Option<&'a str>>) -> Tz {
    candidates
        .into_iter()
        .flatten()
        .find_map(|name| name.trim().parse::<Tz>().ok())
        .unwrap_or(Tz::UTC)
}

/// The instant a wall-clock time in `zone` names, by the rule of this module.
pub fn resolve(local: NaiveDateTime, zone: Tz) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) => at.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: step to the first minute that exists (gaps are at most a few
            // hours and whole minutes in every zone in use).
            let mut probe = local;
            for _ in 0..(24 * 60) {
                probe += Duration::minutes(1);
                let probe = probe.with_second(0).unwrap_or(probe);
                if let Some(at) = zone.from_local_datetime(&probe).earliest() {
                    return at.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&local)
        }
    }
}

/// Sending at `time` on `date` in the person's zone.
pub fn local_time(date: NaiveDate, time: NaiveTime, zone: Tz) -> DateTime<Utc> {
    resolve(date.and_time(time), zone)
}

/// A daily window of local time in which nothing is sent (`start` inclusive, `end`
/// exclusive; past midnight when `start` is after `end`, as in 22:00 to 08:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl QuietHours {
    fn contains(&self, t: NaiveTime) -> bool {
        if self.start <= self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }

    /// `at` itself when it is outside the window in `zone`, else the window's end.
    pub fn defer(&self, at: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
        let local = at.with_timezone(&zone).naive_local();
        if !self.contains(local.time()) {
            return at;
        }
        let mut date = local.date();
        if self.start > self.end && local.time() >= self.start {
            date = date.succ_opt().unwrap_or(date);
        }
        resolve(date.and_time(self.end), zone).max(at)
    }
}

/// A five-field cron expression (minute, hour, day of month, month, day of week) read in
/// a zone. Fields take `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists, and
/// month and day names (`JAN`, `MON`); day of week 0 or 7 is Sunday. When both the day
/// of month and the day of week are restricted, a day matching either runs (as cron
/// does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    any_day: bool,
    any_weekday: bool,
    zone: Tz,
}

/// Why a cron expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(pub String);

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// How far ahead a next run is looked for (a leap day on a given weekday recurs within
/// 28 years).
const HORIZON_DAYS: i64 = 366 * 29;

impl Cron {
    pub fn parse(expression: &str, zone: Tz) -> Result<Cron, CronError> {
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(CronError(format!(
                "a cron expression has 5 fields (minute hour day-of-month month day-of-week), not {}",
                fields.len()
            )));
        };
        let minutes = field(minute, "minute", 0, 59, &[])?;
        let hours = field(hour, "hour", 0, 23, &[])? as u32;
        let days = field(day, "day of month", 1, 31, &[])? as u32;
        let months = (field(month, "month", 1, 12, &MONTHS)? >> 1) as u16;
        let mut weekdays = field(weekday, "day of week", 0, 7, &WEEKDAYS)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        let cron = Cron {
            minutes,
            hours,
            days,
            months,
            weekdays: (weekdays & 0x7f) as u8,
            any_day: day == "*",
            any_weekday: weekday == "*",
            zone,
        };
        // A day of month no selected month has (31 in April only, 30 in February) never
        // runs: refused rather than silently idle.
        let longest = (1..=12u32)
            .filter(|m| cron.months & (1 << (m - 1)) != 0)
            .map(|m| if m == 2 { 29 } else { days_in(2001, m) })
            .max()
            .unwrap_or(0);
        if cron.any_weekday && (1..=longest).all(|d| cron.days & (1 << d) == 0) {
            return Err(CronError(format!(
                "`{day}` is no day of the selected months"
            )));
        }
        Ok(cron)
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    fn runs_on(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month0()) == 0 {
            return false;
        }
        let by_day = self.days & (1 << date.day()) != 0;
        let by_weekday = self.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (false, true) => by_day,
            (true, false) => by_weekday,
            (false, false) => by_day || by_weekday,
        }
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Start a day early: a run resolved forward out of a gap, or the first of a
        // repeated hour, may lie after `after` although its local date is earlier.
        let start = after.with_timezone(&self.zone).date_naive().pred_opt()?;
        for offset in 0..HORIZON_DAYS {
            let date = start + Duration::days(offset);
            if !self.runs_on(date) {
                continue;
            }
            let mut best: Option<DateTime<Utc>> = None;
            for hour in (0..24).filter(|h| self.hours & (1 << h) != 0) {
                for minute in (0..60).filter(|m| self.minutes & (1 << m) != 0) {
                    let time = NaiveTime::from_hms_opt(hour, minute, 0)?;
                    let at = resolve(date.and_time(time), self.zone);
                    if at > after && best.is_none_or(|b| at < b) {
                        best = Some(at);
                    }
                }
            }
            if best.is_some() {
                return best;
            }
        }
        None
    }
}

fn days_in(year: i32, month: u32) -> u32 {
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    };
    next.and_then(|n| n.pred_opt()).map_or(31, |d| d.day())
}

/// A field's set as bits (bit n = value n).
fn field(text: &str, name: &str, low: u32, high: u32, names: &[&str]) -> Result<u64, CronError> {
    let refused = |why: &str| CronError(format!("the {name} field `{text}`: {why}"));
    let value = |part: &str| -> Result<u32, CronError> {
        let upper = part.to_ascii_uppercase();
        if let Some(i) = names.iter().position(|n| *n == upper) {
            // Month names count from 1, weekday names from 0.
            return Ok(i as u32 + u32::from(low == 1));
        }
        let n: u32 = part
            .parse()
            .map_err(|_| refused(&format!("`{part}` is not a number")))?;
        if n < low || n > high {
            return Err(refused(&format!("{n} is outside {low}-{high}")));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| refused("a step is a number above 0"))?;
                (range, step)
            }
            None => (item, 1),
        };
        let (from, to) = match range {
            "*" => (low, high),
            _ => match range.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if step > 1 => (value(range)?, high),
                None => {
                    let v = value(range)?;
                    (v, v)
                }
            },
        };
        if from > to {
            return Err(refused(&format!("the range {from}-{to} is backwards")));
        }
        let mut v = from;
        while v <= to {
            bits |= 1 << v;
            v += step;
        }
    }
    if bits == 0 {
        return Err(refused("empty"));
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    const NEW_YORK: Tz = chrono_tz::America::New_York;
    const BERLIN: Tz = chrono_tz::Europe::Berlin;

    #[test]
    fn local_times_across_daylight_saving_in_two_zones() {
        // 09:00 local the day before, of, and after each change: the UTC offset follows.
        // New York moves to EDT on 2026-03-08, Berlin to CEST on 2026-03-29.
        let nine = hm(9, 0);
        assert_eq!(
            local_time(ymd(2026, 3, 7), nine, NEW_YORK),
            utc("2026-03-07T14:00:00Z")
        );
        assert_eq!(
            local_time(ymd(2026, 3, 8), nine, NEW_YORK),
            utc("2026-03-08T13:00:00Z")
        );
        assert_eq!(
            local_time(ymd(2026, 3, 28), nine, BERLIN),
            utc("2026-03-28T08:00:00Z")
        );
        assert_eq!(
            local_time(ymd(2026, 3, 29), nine, BERLIN),
            utc("2026-03-29T07:00:00Z")
        );
        // Back in autumn: New York 2026-11-01, Berlin 2026-10-25.
        assert_eq!(
            local_time(ymd(2026, 10, 31), nine, NEW_YORK),
            utc("2026-10-31T13:00:00Z")
        );
        assert_eq!(
            local_time(ymd(2026, 11, 1), nine, NEW_YORK),
            utc("2026-11-01T14:00:00Z")
        );
        assert_eq!(
            local_time(ymd(2026, 10, 25), nine, BERLIN),
            utc("2026-10-25T08:00:00Z")
        );
        // A skipped time goes out when the clock resumes; a repeated one at its first.
        assert_eq!(
            local_time(ymd(2026, 3, 8), hm(2, 30), NEW_YORK),
            utc("2026-03-08T07:00:00Z")
        );
        assert_eq!(
            local_time(ymd(2026, 3, 29), hm(2, 30), BERLIN),
            utc("2026-03-29T01:00:00Z")
        );
        assert_eq!(
            local_time(ymd(2026, 11, 1), hm(1, 30), NEW_YORK),
            utc("2026-11-01T05:30:00Z")
        );
        assert_eq!(
            local_time(ymd(2026, 10, 25), hm(2, 30), BERLIN),
            utc("2026-10-25T00:30:00Z")
        );
    }

    #[test]
    fn the_zone_is_the_first_that_parses() {
        assert_eq!(
            zone([Some("Europe/Berlin"), Some("America/New_York")]),
            BERLIN
        );
        assert_eq!(
            zone([Some("Mars/Olympus"), None, Some("America/New_York")]),
            NEW_YORK
        );
        assert_eq!(zone([None, Some("")]), Tz::UTC);
    }

    #[test]
    fn quiet_hours_defer_to_their_end_in_local_time() {
        let night = QuietHours {
            start: hm(22, 0),
            end: hm(8, 0),
        };
        // 23:30 in Berlin (CET, UTC+1) on 2026-01-10 waits until 08:00 the next day.
        assert_eq!(
            night.defer(utc("2026-01-10T22:30:00Z"), BERLIN),
            utc("2026-01-11T07:00:00Z")
        );
        // 06:00 local waits until 08:00 the same day; 12:00 goes now.
        assert_eq!(
            night.defer(utc("2026-01-10T05:00:00Z"), BERLIN),
            utc("2026-01-10T07:00:00Z")
        );
        let noon = utc("2026-01-10T11:00:00Z");
        assert_eq!(night.defer(noon, BERLIN), noon);
        // The same instant is quiet in New York (06:00 EST) and not in Berlin (12:00).
        assert_eq!(night.defer(noon, NEW_YORK), utc("2026-01-10T13:00:00Z"));
        // The night the clocks go back in New York: 08:00 EST is 13:00 UTC.
        assert_eq!(
            night.defer(utc("2026-11-01T03:00:00Z"), NEW_YORK),
            utc("2026-11-01T13:00:00Z")
        );
        // A window within one day; its end is exclusive.
        let lunch = QuietHours {
            start: hm(12, 0),
            end: hm(13, 0),
        };
        assert_eq!(
            lunch.defer(utc("2026-01-10T12:59:00Z"), Tz::UTC),
            utc("2026-01-10T13:00:00Z")
        );
        let one = utc("2026-01-10T13:00:00Z");
        assert_eq!(lunch.defer(one, Tz::UTC), one);
    }

    #[test]
    fn cron_runs_in_its_zone_once_each_across_daylight_saving() {
        let daily = Cron::parse("30 2 * * *", NEW_YORK).unwrap();
        let mut at = utc("2026-03-06T12:00:00Z");
        let mut runs = Vec::new();
        for _ in 0..4 {
            at = daily.next_after(at).unwrap();
            runs.push(at);
        }
        // 02:30 EST, EST, then the skipped 02:30 at 03:00 EDT, then 02:30 EDT.
        assert_eq!(
            runs,
            [
                utc("2026-03-07T07:30:00Z"),
                utc("2026-03-08T07:00:00Z"),
                utc("2026-03-09T06:30:00Z"),
                utc("2026-03-10T06:30:00Z"),
            ]
        );
        // The repeated hour in autumn runs once.
        let early = Cron::parse("30 1 * * *", NEW_YORK).unwrap();
        let first = early.next_after(utc("2026-10-31T12:00:00Z")).unwrap();
        assert_eq!(first, utc("2026-11-01T05:30:00Z"));
        assert_eq!(
            early.next_after(first).unwrap(),
            utc("2026-11-02T06:30:00Z")
        );
        // Weekdays at 09:00 in Berlin, every 15 minutes of an hour, month names.
        let weekdays = Cron::parse("0 9 * * MON-FRI", BERLIN).unwrap();
        // 2026-01-09 is a Friday: next is Monday the 12th.
        assert_eq!(
            weekdays.next_after(utc("2026-01-09T08:00:00Z")).unwrap(),
            utc("2026-01-12T08:00:00Z")
        );
        let quarter = Cron::parse("*/15 10 1 jan,jul *", Tz::UTC).unwrap();
        assert_eq!(
            quarter.next_after(utc("2026-01-01T10:15:00Z")).unwrap(),
            utc("2026-01-01T10:30:00Z")
        );
        assert_eq!(
            quarter.next_after(utc("2026-01-01T10:45:00Z")).unwrap(),
            utc("2026-07-01T10:00:00Z")
        );
        // Day of month or day of week when both are given; Sunday as 7.
        let either = Cron::parse("0 0 13 * 7", Tz::UTC).unwrap();
        // From Tuesday 2026-01-06: Sunday the 11th comes before the 13th.
        assert_eq!(
            either.next_after(utc("2026-01-06T00:00:00Z")).unwrap(),
            utc("2026-01-11T00:00:00Z")
        );
        let leap = Cron::parse("0 12 29 2 *", Tz::UTC).unwrap();
        assert_eq!(
            leap.next_after(utc("2026-01-01T00:00:00Z")).unwrap(),
            utc("2028-02-29T12:00:00Z")
        );
    }

    #[test]
    fn bad_cron_expressions_are_refused_with_the_rule() {
        for (expression, rule) in [
            ("* * * *", "5 fields"),
            ("60 * * * *", "outside 0-59"),
            ("* 24 * * *", "outside 0-23"),
            ("* * 0 * *", "outside 1-31"),
            ("* * * 13 *", "outside 1-12"),
            ("* * * * 8", "outside 0-7"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "backwards"),
            ("x * * * *", "not a number"),
            ("0 0 30 2 *", "no day"),
            ("0 0 31 apr,jun *", "no day"),
        ] {
            let e = Cron::parse(expression, Tz::UTC).unwrap_err();
            assert!(e.0.contains(rule), "{expression}: {e}");
        }
    }
}
