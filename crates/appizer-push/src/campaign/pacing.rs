//! Pacing: a campaign's throttle (messages per minute) and the project's frequency cap
//! per person across campaigns (at most N in a window), with drop or defer.
//!
//! Both are arithmetic on times, so the runner can keep their state in the store and a
//! restart continues where it stopped: the throttle is a virtual schedule (each message
//! takes `60 s / rate` of it, a burst of at most one second's worth goes at once), the
//! cap reads the person's recent sends.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// At most `per_minute` messages a minute, as an even rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    per_minute: u32,
    /// When the next message is due on the virtual schedule.
    next: Option<DateTime<Utc>>,
}

impl Throttle {
    /// `per_minute` above 0.
    pub fn new(per_minute: u32) -> Throttle {
        Throttle {
            per_minute: per_minute.max(1),
            next: None,
        }
    }

    /// Continues a schedule kept from before (its next due time).
    pub fn resume(per_minute: u32, next: Option<DateTime<Utc>>) -> Throttle {
        Throttle {
            next,
            ..Throttle::new(per_minute)
        }
    }

    fn interval(&self) -> Duration {
        Duration::microseconds(60_000_000 / i64::from(self.per_minute))
    }

    /// How many of `wanted` messages may go at `now` (the rest wait for
    /// [`Throttle::next_due`]).
    pub fn take(&mut self, now: DateTime<Utc>, wanted: u32) -> u32 {
        let interval = self.interval();
        // Idle time earns at most one second's worth of messages (at least one).
        let burst = (i64::from(self.per_minute) / 60).max(1);
        let floor = now - interval * (burst as i32 - 1);
        let mut next = self.next.map_or(floor, |n| n.max(floor));
        let mut taken = 0;
        while taken < wanted && next <= now {
            taken += 1;
            next += interval;
        }
        self.next = Some(next);
        taken
    }

    /// When the next message goes, from `now` on: its place on the virtual schedule,
    /// which it takes (the runner queues each delivery due at its slot).
    pub fn slot(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        let interval = self.interval();
        let burst = (i64::from(self.per_minute) / 60).max(1);
        let floor = now - interval * (burst as i32 - 1);
        let at = self.next.map_or(floor, |n| n.max(floor));
        self.next = Some(at + interval);
        at.max(now)
    }

    /// When the next message may go.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.next
    }
}

/// What happens to a message over the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CapMode {
    Drop,
    Defer,
}

/// At most `max` messages to a person in any `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrequencyCap {
    pub max: u32,
    pub window: Duration,
}

/// The cap's answer for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapVerdict {
    Send,
    Drop,
    /// Over the cap until then.
    Defer(DateTime<Utc>),
}

impl FrequencyCap {
    /// For a message at `at` to a person who was sent messages at `recent` (any order;
    /// older ones are ignored).
    pub fn check(&self, recent: &[DateTime<Utc>], at: DateTime<Utc>, mode: CapMode) -> CapVerdict {
        let start = at - self.window;
        let mut inside: Vec<DateTime<Utc>> = recent
            .iter()
            .copied()
            .filter(|t| *t > start && *t <= at)
            .collect();
        if inside.len() < self.max as usize {
            return CapVerdict::Send;
        }
        match mode {
            CapMode::Drop => CapVerdict::Drop,
            CapMode::Defer => {
                // Room opens when enough of the sends inside leave the window.
                inside.sort_unstable();
                let leaving = inside.len() - self.max as usize;
                CapVerdict::Defer(inside[leaving] + self.window)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_space_messages_at_the_rate_after_a_burst_of_one_second() {
        let t0: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
        let mut throttle = Throttle::new(120);
        let slots: Vec<DateTime<Utc>> = (0..6).map(|_| throttle.slot(t0)).collect();
        // Two a second: the first second's two go at once, then one every 500 ms.
        let offsets: Vec<i64> = slots.iter().map(|s| (*s - t0).num_milliseconds()).collect();
        assert_eq!(offsets, [0, 0, 500, 1000, 1500, 2000]);
        // A minute later the schedule has caught up: a burst again, never a backlog.
        let later = t0 + Duration::minutes(1);
        assert_eq!(throttle.slot(later), later);
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + seconds, 0).unwrap()
    }

    #[test]
    fn the_throttle_holds_its_rate_over_minutes() {
        // 600 a minute, asked for as fast as the runner can, checked every 100 ms for
        // ten minutes: 6,000 plus the first second's burst of 10.
        let mut throttle = Throttle::new(600);
        let mut sent = 0;
        let mut per_minute = vec![0u32; 10];
        for tick in 0..6_000 {
            let now = at(0) + Duration::milliseconds(100 * tick);
            let n = throttle.take(now, 1_000);
            sent += n;
            per_minute[(tick / 600) as usize] += n;
        }
        assert!((6_000..=6_010).contains(&sent), "{sent}");
        assert!(
            per_minute.iter().all(|m| (600..=610).contains(m)),
            "{per_minute:?}"
        );
        // Idle for an hour earns one second's worth, not an hour's.
        let later = at(4_000);
        assert_eq!(throttle.take(later, 1_000), 10);
        assert_eq!(throttle.take(later, 1_000), 0);
        assert_eq!(
            throttle.next_due(),
            Some(later + Duration::milliseconds(100))
        );
    }

    #[test]
    fn a_slow_throttle_and_a_resumed_one() {
        // 30 a minute: one every 2 s.
        let mut slow = Throttle::new(30);
        assert_eq!(slow.take(at(0), 5), 1);
        assert_eq!(slow.take(at(1), 5), 0);
        assert_eq!(slow.take(at(2), 5), 1);
        // Kept and resumed after a restart: the schedule continues, no new burst.
        let mut resumed = Throttle::resume(30, slow.next_due());
        assert_eq!(resumed.take(at(3), 5), 0);
        assert_eq!(resumed.take(at(4), 5), 1);
    }

    #[test]
    fn the_cap_drops_or_defers_until_room_opens() {
        let cap = FrequencyCap {
            max: 2,
            window: Duration::hours(24),
        };
        let now = at(100_000);
        assert_eq!(cap.check(&[], now, CapMode::Drop), CapVerdict::Send);
        let one = [now - Duration::hours(1)];
        assert_eq!(cap.check(&one, now, CapMode::Drop), CapVerdict::Send);
        // Two in the window: over the cap. Room opens 24 h after the older of the two.
        let two = [
            now - Duration::hours(1),
            now - Duration::hours(20),
            now - Duration::hours(30),
        ];
        assert_eq!(cap.check(&two, now, CapMode::Drop), CapVerdict::Drop);
        assert_eq!(
            cap.check(&two, now, CapMode::Defer),
            CapVerdict::Defer(now + Duration::hours(4))
        );
        // At the deferred time it goes.
        assert_eq!(
            cap.check(&two, now + Duration::hours(4), CapMode::Defer),
            CapVerdict::Send
        );
        // Three inside a cap of two (sent before the cap was lowered): two must leave.
        let three = [
            now - Duration::hours(2),
            now - Duration::hours(3),
            now - Duration::hours(5),
        ];
        assert_eq!(
            cap.check(&three, now, CapMode::Defer),
            CapVerdict::Defer(now + Duration::hours(21))
        );
    }
}
