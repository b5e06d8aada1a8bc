//! When a campaign sends, as its request says, checked into what the runner uses.
//!
//! ```json
//! {"type": "now"}
//! {"type": "at", "at": "2026-12-24T09:00:00Z"}
//! {"type": "local_time", "date": "2026-12-24", "time": "09:00"}
//! {"type": "recurring", "cron": "0 9 * * MON", "timezone": "Europe/Berlin"}
//! {"type": "triggered", "event": "add_to_cart", "delay_seconds": 3600,
//!  "cancel_if": "purchase", "reentry": {"type": "once_per", "seconds": 604800}}
//! ```
//!
//! A local time is sent at that wall-clock time in each person's zone (their
//! `$timezone`, else their device's, else the project's). Triggered sends wait
//! `delay_seconds` (at most [`MAX_DELAY_SECS`]) and are dropped when the person does
//! `cancel_if` meanwhile.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use appizer_analytics::scope::Condition;
use appizer_analytics::{AnalyticsError, PropertyFilter, PropertyType};

use super::schedule::Cron;
use crate::devices::Refused;

/// The longest a triggered send may wait after its event.
pub const MAX_DELAY_SECS: u64 = 30 * 24 * 3600;
/// The longest an event name.
pub const MAX_EVENT_NAME: usize = 200;

/// How often one person may enter a triggered campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reentry {
    /// Once ever.
    Once,
    /// At most once in any period of this many seconds.
    OncePer { seconds: u64 },
    /// On every trigger.
    Always,
}

/// The request's `when`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum When {
    /// As soon as the campaign is scheduled.
    // A struct variant, so that unknown keys beside the tag are refused too.
    Now {},
    At {
        #[schema(value_type = String, format = DateTime)]
        at: DateTime<Utc>,
    },
    LocalTime {
        #[schema(value_type = String, format = Date)]
        date: NaiveDate,
        /// `HH:MM` or `HH:MM:SS`.
        time: String,
    },
    Recurring {
        cron: String,
        /// The zone the expression is read in; the project's when absent.
        timezone: Option<String>,
    },
    Triggered {
        event: String,
        /// Conditions on the trigger event's properties (every one must hold).
        #[serde(default)]
        properties: Vec<PropertyFilter>,
        #[serde(default)]
        delay_seconds: u64,
        cancel_if: Option<String>,
        #[serde(default = "once")]
        reentry: Reentry,
    },
}

fn once() -> Reentry {
    Reentry::Once
}

/// `when`, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Now,
    At(DateTime<Utc>),
    LocalTime(NaiveDate, NaiveTime),
    Recurring(Cron),
    Triggered {
        event: String,
        /// Every one holds on the trigger event's properties.
        conditions: Vec<(String, Condition)>,
        delay_seconds: u64,
        cancel_if: Option<String>,
        reentry: Reentry,
    },
}

/// Most conditions on a trigger event.
pub const MAX_TRIGGER_CONDITIONS: usize = 20;

fn refused(field: &str, rule: impl Into<String>) -> Refused {
    Refused {
        field: format!("when.{field}"),
        rule: rule.into(),
    }
}

fn event_name(value: &str, field: &str) -> Result<String, Refused> {
    let name = value.trim();
    if name.is_empty() || name.len() > MAX_EVENT_NAME {
        return Err(refused(
            field,
            format!("an event name is 1 to {MAX_EVENT_NAME} bytes"),
        ));
    }
    Ok(name.to_string())
}

impl When {
    /// Checks against the project's zone (for `recurring` without its own).
    pub fn check(&self, project_zone: Tz) -> Result<Schedule, Refused> {
        Ok(match self {
            When::Now {} => Schedule::Now,
            When::At { at } => Schedule::At(*at),
            When::LocalTime { date, time } => {
                let parsed = NaiveTime::parse_from_str(time, "%H:%M")
                    .or_else(|_| NaiveTime::parse_from_str(time, "%H:%M:%S"))
                    .map_err(|_| refused("time", "a time of day as HH:MM or HH:MM:SS"))?;
                Schedule::LocalTime(*date, parsed)
            }
            When::Recurring { cron, timezone } => {
                let zone = match timezone {
                    None => project_zone,
                    Some(name) => name
                        .parse::<Tz>()
                        .map_err(|_| refused("timezone", "an IANA time zone, as Europe/Berlin"))?,
                };
                Schedule::Recurring(Cron::parse(cron, zone).map_err(|e| refused("cron", e.0))?)
            }
            When::Triggered {
                event,
                properties,
                delay_seconds,
                cancel_if,
                reentry,
            } => {
                if *delay_seconds > MAX_DELAY_SECS {
                    return Err(refused(
                        "delay_seconds",
                        format!("at most {MAX_DELAY_SECS} (30 days)"),
                    ));
                }
                if let Reentry::OncePer { seconds: 0 } = reentry {
                    return Err(refused("reentry.seconds", "a period above 0"));
                }
                let event = event_name(event, "event")?;
                let cancel_if = cancel_if
                    .as_deref()
                    .map(|c| event_name(c, "cancel_if"))
                    .transpose()?;
                if cancel_if.as_deref() == Some(event.as_str()) {
                    return Err(refused(
                        "cancel_if",
                        "must differ from the trigger event (it would cancel every send)",
                    ));
                }
                if properties.len() > MAX_TRIGGER_CONDITIONS {
                    return Err(refused(
                        "properties",
                        format!("at most {MAX_TRIGGER_CONDITIONS} conditions"),
                    ));
                }
                let mut conditions = Vec::with_capacity(properties.len());
                for (i, p) in properties.iter().enumerate() {
                    let field = format!("when.properties[{i}]");
                    if p.kind != PropertyType::Event {
                        return Err(Refused {
                            field: format!("{field}.type"),
                            rule:
                                "a trigger's conditions are on the event's properties (type event)"
                                    .into(),
                        });
                    }
                    let c = Condition::parse(p, &field).map_err(|e| match e {
                        AnalyticsError::Invalid { field, rule } => Refused { field, rule },
                        other => Refused {
                            field: field.clone(),
                            rule: other.to_string(),
                        },
                    })?;
                    conditions.push((p.key.clone(), c));
                }
                Schedule::Triggered {
                    event,
                    conditions,
                    delay_seconds: *delay_seconds,
                    cancel_if,
                    reentry: *reentry,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(value: serde_json::Value) -> Result<Schedule, Refused> {
        serde_json::from_value::<When>(value)
            .expect("parses")
            .check(chrono_tz::Europe::Paris)
    }

    #[test]
    fn each_kind_is_checked_into_its_schedule() {
        assert_eq!(check(json!({"type": "now"})).unwrap(), Schedule::Now);
        let at = check(json!({"type": "at", "at": "2026-12-24T09:00:00Z"})).unwrap();
        assert_eq!(at, Schedule::At("2026-12-24T09:00:00Z".parse().unwrap()));
        let local = check(json!({"type": "local_time", "date": "2026-12-24", "time": "09:30"}));
        assert_eq!(
            local.unwrap(),
            Schedule::LocalTime(
                NaiveDate::from_ymd_opt(2026, 12, 24).unwrap(),
                NaiveTime::from_hms_opt(9, 30, 0).unwrap()
            )
        );
        // Without its own zone a cron reads in the project's.
        let Schedule::Recurring(cron) =
            check(json!({"type": "recurring", "cron": "0 9 * * MON"})).unwrap()
        else {
            panic!()
        };
        assert_eq!(cron.zone(), chrono_tz::Europe::Paris);
        let Schedule::Recurring(cron) =
            check(json!({"type": "recurring", "cron": "0 9 * * MON", "timezone": "Asia/Tokyo"}))
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(cron.zone(), chrono_tz::Asia::Tokyo);
        let cart = check(
            json!({"type": "triggered", "event": "add_to_cart", "delay_seconds": 3600,
                                "cancel_if": "purchase", "reentry": {"type": "once_per", "seconds": 604800}}),
        );
        assert_eq!(
            cart.unwrap(),
            Schedule::Triggered {
                event: "add_to_cart".into(),
                conditions: vec![],
                delay_seconds: 3600,
                cancel_if: Some("purchase".into()),
                reentry: Reentry::OncePer { seconds: 604_800 },
            }
        );
        // Defaults: no delay, once ever.
        let plain = check(json!({"type": "triggered", "event": "signed_up"})).unwrap();
        assert!(matches!(
            plain,
            Schedule::Triggered {
                delay_seconds: 0,
                reentry: Reentry::Once,
                ..
            }
        ));
    }

    #[test]
    fn faults_name_their_field() {
        for (value, field, rule) in [
            (
                json!({"type": "local_time", "date": "2026-12-24", "time": "9h"}),
                "when.time",
                "HH:MM",
            ),
            (
                json!({"type": "recurring", "cron": "0 9 * *"}),
                "when.cron",
                "5 fields",
            ),
            (
                json!({"type": "recurring", "cron": "0 9 * * *", "timezone": "Mars/Base"}),
                "when.timezone",
                "IANA",
            ),
            (
                json!({"type": "triggered", "event": " "}),
                "when.event",
                "1 to 200",
            ),
            (
                json!({"type": "triggered", "event": "a", "delay_seconds": 2_600_000}),
                "when.delay_seconds",
                "30 days",
            ),
            (
                json!({"type": "triggered", "event": "a", "cancel_if": "a"}),
                "when.cancel_if",
                "differ",
            ),
            (
                json!({"type": "triggered", "event": "a", "reentry": {"type": "once_per", "seconds": 0}}),
                "when.reentry.seconds",
                "above 0",
            ),
        ] {
            let e = check(value.clone()).unwrap_err();
            assert_eq!(e.field, field, "{value}");
            assert!(e.rule.contains(rule), "{value}: {e}");
        }
        // Unknown kinds and keys are the request parser's refusal.
        assert!(serde_json::from_value::<When>(json!({"type": "sometime"})).is_err());
        assert!(serde_json::from_value::<When>(json!({"type": "now", "at": "x"})).is_err());
        assert!(serde_json::from_value::<When>(
            json!({"type": "triggered", "event": "a", "delay": 5})
        )
        .is_err());
    }
}
