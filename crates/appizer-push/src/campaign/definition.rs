//! A campaign's definition as its request says it, and the check that turns it into the
//! plan the runner follows. Everything that needs no data is checked here (the shape,
//! every template, the split, the schedule, pacing, goal and winner settings, and each
//! variant's payload against each platform's limit); what depends on the project (its
//! segments, its saved metric, its audience conditions) is checked by `service`.
//!
//! ```json
//! {"audience": {"segments": ["..."], "exclude_segments": ["..."],
//!               "condition": {"type": "property", "key": "plan", "value": "pro"},
//!               "platforms": ["ios", "android"]},
//!  "when": {"type": "triggered", "event": "add_to_cart", "delay_seconds": 3600,
//!           "cancel_if": "purchase"},
//!  "variants": [{"name": "A", "weight": 1, "title": "Hi {{ person.first_name | default(\"there\") }}",
//!                "body": "Your cart misses you", "translations": {"de": {"title": "Hallo", "body": "..."}}},
//!               {"name": "B", "title": "...", "body": "..."}],
//!  "control_percent": 10,
//!  "quiet_hours": {"start": "22:00", "end": "08:00"},
//!  "pacing": {"per_minute": 1000, "ignore_frequency_cap": false, "over_cap": "defer"},
//!  "goal": {"event": "purchase", "window_hours": 24},
//!  "winner": {"test_percent": 20, "wait_minutes": 120, "by": "goal", "no_winner": "send_best"},
//!  "missed_run": "run"}
//! ```

use std::collections::{BTreeMap, HashSet};

use appizer_analytics::saved::SegmentCondition;
use appizer_analytics::scope::Condition;
use appizer_analytics::{AnalyticsError, PropertyFilter};
use appizer_core::push::Platform;
use appizer_core::{DefinitionId, DeviceId};
use chrono::NaiveTime;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::assign::{Split, MAX_VARIANTS};
use super::content::{Content, Localized, Text};
use super::pacing::CapMode;
use super::schedule::QuietHours;
use super::template::Scope;
use super::when::{Schedule, When};
use super::winner::NoWinnerRule;
use crate::devices::Refused;
use crate::message::{
    self, AndroidOptions, ApnsOptions, Notification, SendRequest, To, WebOptions,
};

/// Segments one campaign may include, and exclude.
pub const MAX_SEGMENTS: usize = 16;
/// The largest control group, in percent of the audience.
pub const MAX_CONTROL_PERCENT: u8 = 50;
/// The largest variant weight.
pub const MAX_WEIGHT: u32 = 10_000;
/// The longest variant name.
pub const MAX_VARIANT_NAME: usize = 64;
/// The highest throttle, in messages per minute.
pub const MAX_PER_MINUTE: u32 = 1_000_000;
/// The longest goal window, in hours (30 days).
pub const MAX_GOAL_WINDOW_HOURS: u32 = 30 * 24;
/// The goal window without one, in hours.
pub const DEFAULT_GOAL_WINDOW_HOURS: u32 = 24;
/// The longest winner-mode wait, in minutes (7 days).
pub const MAX_WINNER_WAIT_MINUTES: u32 = 7 * 24 * 60;
/// The largest winner-mode test share, in percent.
pub const MAX_TEST_PERCENT: u8 = 50;
/// The group name of the control (no variant may take it).
pub const CONTROL: &str = "control";

/// Who a campaign goes to.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AudienceSpec {
    /// The members of any of these segments (none: every person with an active device).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub segments: Vec<DefinitionId>,
    /// Less the members of any of these.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub exclude_segments: Vec<DefinitionId>,
    /// And only the persons this holds for (the segment condition language).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub condition: Option<SegmentCondition>,
    /// Only these platforms (default: every platform the project has a provider for).
    #[serde(default)]
    pub platforms: Option<Vec<Platform>>,
}

/// One variant: its share of the audience and its content.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// 1 to 64 characters, unique in the campaign, not `control`.
    pub name: String,
    /// Relative to the other variants' (default 1); the control's share is taken first.
    #[serde(default = "one")]
    pub weight: u32,
    /// A template (`{{ person.first_name | default("there") }}`).
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: String,
    /// Title and body by locale (`fr`, `pt-BR`), chosen by the person's `$locale`.
    #[serde(default)]
    pub translations: BTreeMap<String, Text>,
    pub image: Option<String>,
    pub url: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: BTreeMap<String, Value>,
}

fn one() -> u32 {
    1
}

/// Quiet hours in each person's local time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursSpec {
    /// `HH:MM`: nothing is sent from here ...
    pub start: String,
    /// ... until here (past midnight when before `start`).
    pub end: String,
}

/// How fast, and under which caps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pacing {
    /// Messages per minute at most (none: as fast as delivery goes).
    pub per_minute: Option<u32>,
    /// Send even to persons over the project's frequency cap.
    #[serde(default)]
    pub ignore_frequency_cap: bool,
    /// Over the cap: `drop` (default) or `defer` until under it.
    #[serde(default)]
    pub over_cap: OverCap,
}

/// [`CapMode`] with its default, as the request says it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverCap {
    #[default]
    Drop,
    Defer,
}

impl OverCap {
    pub fn mode(self) -> CapMode {
        match self {
            OverCap::Drop => CapMode::Drop,
            OverCap::Defer => CapMode::Defer,
        }
    }
}

/// What counts as a conversion: an event with conditions, or a saved metric's event,
/// within a window after the send (for the control, after assignment).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    pub event: Option<String>,
    #[serde(default)]
    pub properties: Vec<PropertyFilter>,
    /// A saved metric of one series: its event and conditions are the goal.
    #[schema(value_type = Option<String>)]
    pub metric_id: Option<DefinitionId>,
    /// Default 24, at most 720.
    pub window_hours: Option<u32>,
}

/// What winner mode measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WinnerMeasure {
    /// Opens of sent.
    Opens,
    /// Goal conversions of assigned.
    Goal,
}

/// Winner mode: the test share first, then the winner to the rest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WinnerSpec {
    /// The share of the audience that receives the test, 1 to 50 percent.
    pub test_percent: u8,
    /// How long the test runs before the decision, 1 to 10080 minutes.
    pub wait_minutes: u32,
    pub by: WinnerMeasure,
    /// Without a significant winner: `send_best` (default) or `stop`.
    #[serde(default = "send_best")]
    pub no_winner: NoWinnerRule,
}

fn send_best() -> NoWinnerRule {
    NoWinnerRule::SendBest
}

/// A run the server was down for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MissedRun {
    /// Run it when the server is back (default).
    #[default]
    Run,
    /// Skip it; the next run is as planned.
    Skip,
}

/// A campaign's definition: everything of the request but its name.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    #[serde(default)]
    pub audience: AudienceSpec,
    pub when: When,
    /// 1 to 8.
    pub variants: Vec<Variant>,
    /// The share of the audience held out as a control group that receives nothing.
    #[serde(default)]
    pub control_percent: u8,
    pub quiet_hours: Option<QuietHoursSpec>,
    #[serde(default)]
    pub pacing: Pacing,
    pub goal: Option<Goal>,
    pub winner: Option<WinnerSpec>,
    #[serde(default)]
    pub missed_run: MissedRun,
    #[serde(default)]
    pub apns: ApnsOptions,
    #[serde(default)]
    pub android: AndroidOptions,
    #[serde(default)]
    pub web: WebOptions,
    pub ttl_seconds: Option<u32>,
    pub collapse_key: Option<String>,
}

/// A checked variant.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedVariant {
    pub name: String,
    /// The title and body templates with their translations.
    pub text: Content,
    /// The message as queued, title and body replaced per person.
    pub message: message::Content,
}

/// A checked goal (a saved metric already read into its event and conditions).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedGoal {
    pub event: String,
    pub properties: Vec<PropertyFilter>,
    pub window_hours: u32,
}

/// A definition, checked: what the runner follows.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub audience: AudienceSpec,
    /// The platforms asked for (all when none was named).
    pub platforms: Vec<Platform>,
    pub schedule: Schedule,
    pub split: Split,
    pub variants: Vec<PlannedVariant>,
    pub quiet_hours: Option<QuietHours>,
    pub per_minute: Option<u32>,
    pub ignore_frequency_cap: bool,
    pub over_cap: CapMode,
    /// The goal's event and conditions, once a metric goal is read (`None` while only
    /// its id is known).
    pub goal: Option<PlannedGoal>,
    pub goal_metric: Option<DefinitionId>,
    pub winner: Option<WinnerSpec>,
    pub missed_run: MissedRun,
}

fn refused(field: impl Into<String>, rule: impl Into<String>) -> Refused {
    Refused {
        field: field.into(),
        rule: rule.into(),
    }
}

fn analytics_refusal(e: AnalyticsError, field: &str) -> Refused {
    match e {
        AnalyticsError::Invalid { field, rule } => Refused { field, rule },
        other => refused(field, other.to_string()),
    }
}

fn time_of_day(value: &str, field: &str) -> Result<NaiveTime, Refused> {
    NaiveTime::parse_from_str(value, "%H:%M").map_err(|_| refused(field, "a time of day as HH:MM"))
}

fn segment_list(list: &[DefinitionId], field: &str) -> Result<(), Refused> {
    if list.len() > MAX_SEGMENTS {
        return Err(refused(field, format!("at most {MAX_SEGMENTS} segments")));
    }
    let mut seen = HashSet::new();
    if list.iter().any(|s| !seen.insert(*s)) {
        return Err(refused(field, "names a segment twice"));
    }
    Ok(())
}

impl Definition {
    /// Checks everything that needs no data, in the project's time zone.
    pub fn check(&self, project_zone: Tz) -> Result<Plan, Refused> {
        let audience = &self.audience;
        segment_list(&audience.segments, "audience.segments")?;
        segment_list(&audience.exclude_segments, "audience.exclude_segments")?;
        if let Some(s) = audience
            .exclude_segments
            .iter()
            .find(|s| audience.segments.contains(s))
        {
            return Err(refused(
                "audience.exclude_segments",
                format!("segment {s} is also included"),
            ));
        }
        let platforms = match &audience.platforms {
            None => Platform::ALL.to_vec(),
            Some(list) if list.is_empty() => {
                return Err(refused(
                    "audience.platforms",
                    "must name at least one platform",
                ))
            }
            Some(list) => {
                let mut list = list.clone();
                list.sort_by_key(|p| p.as_str());
                list.dedup();
                list
            }
        };
        let schedule = self.when.check(project_zone)?;
        let triggered = matches!(schedule, Schedule::Triggered { .. });
        let variants = self.variants(&platforms, triggered)?;
        let split = self.split()?;
        let quiet_hours = match &self.quiet_hours {
            None => None,
            Some(q) => {
                let start = time_of_day(&q.start, "quiet_hours.start")?;
                let end = time_of_day(&q.end, "quiet_hours.end")?;
                if start == end {
                    return Err(refused(
                        "quiet_hours.end",
                        "must differ from start (a window of no length, or of all day)",
                    ));
                }
                Some(QuietHours { start, end })
            }
        };
        if let Some(n) = self.pacing.per_minute {
            if n == 0 || n > MAX_PER_MINUTE {
                return Err(refused(
                    "pacing.per_minute",
                    format!("must be 1 to {MAX_PER_MINUTE}"),
                ));
            }
        }
        let (goal, goal_metric) = self.goal()?;
        if let Some(w) = &self.winner {
            self.check_winner(w, &schedule, goal.is_some() || goal_metric.is_some())?;
        }
        Ok(Plan {
            audience: audience.clone(),
            platforms,
            schedule,
            split,
            variants,
            quiet_hours,
            per_minute: self.pacing.per_minute,
            ignore_frequency_cap: self.pacing.ignore_frequency_cap,
            over_cap: self.pacing.over_cap.mode(),
            goal,
            goal_metric,
            winner: self.winner.clone(),
            missed_run: self.missed_run,
        })
    }

    fn variants(
        &self,
        platforms: &[Platform],
        triggered: bool,
    ) -> Result<Vec<PlannedVariant>, Refused> {
        if self.variants.is_empty() || self.variants.len() > MAX_VARIANTS {
            return Err(refused(
                "variants",
                format!("a campaign has 1 to {MAX_VARIANTS} variants"),
            ));
        }
        let scope = Scope { event: triggered };
        let mut names = HashSet::new();
        let mut out = Vec::with_capacity(self.variants.len());
        for (i, v) in self.variants.iter().enumerate() {
            let field = format!("variants[{i}]");
            let name = v.name.trim();
            if name.is_empty() || name.chars().count() > MAX_VARIANT_NAME {
                return Err(refused(
                    format!("{field}.name"),
                    format!("must be 1 to {MAX_VARIANT_NAME} characters"),
                ));
            }
            if name.eq_ignore_ascii_case(CONTROL) {
                return Err(refused(
                    format!("{field}.name"),
                    "`control` names the control group",
                ));
            }
            if !names.insert(name.to_lowercase()) {
                return Err(refused(
                    format!("{field}.name"),
                    "two variants have this name",
                ));
            }
            if v.weight > MAX_WEIGHT {
                return Err(refused(
                    format!("{field}.weight"),
                    format!("must be 0 to {MAX_WEIGHT}"),
                ));
            }
            let localized = Localized {
                default: Text {
                    title: v.title.clone(),
                    body: v.body.clone(),
                },
                translations: v.translations.clone(),
            };
            let text = Content::check(&localized, &field, scope)?;
            let message = self.message(v, platforms, &field)?;
            out.push(PlannedVariant {
                name: name.to_string(),
                text,
                message,
            });
        }
        Ok(out)
    }

    /// The variant's message through the send API's checks (payload sizes included,
    /// with the templates' text), its faults named at the variant.
    fn message(
        &self,
        v: &Variant,
        platforms: &[Platform],
        field: &str,
    ) -> Result<message::Content, Refused> {
        let request = SendRequest {
            to: To {
                device_ids: Some(vec![DeviceId::new()]),
                ..To::default()
            },
            platforms: Some(platforms.to_vec()),
            notification: Notification {
                title: v.title.clone(),
                body: v.body.clone(),
                image: v.image.clone(),
                url: v.url.clone(),
                data: v.data.clone(),
            },
            apns: self.apns.clone(),
            android: self.android.clone(),
            web: self.web.clone(),
            ttl_seconds: self.ttl_seconds,
            collapse_key: self.collapse_key.clone(),
            idempotency_key: None,
        };
        let longest_tag = "x".repeat(MAX_VARIANT_NAME * 4);
        let checked = request
            .check(Some((&DefinitionId::new().to_string(), Some(&longest_tag))))
            .map_err(|e| match e.field.strip_prefix("notification.") {
                Some(rest) => refused(format!("{field}.{rest}"), e.rule),
                None if e.field == "notification" => refused(field, e.rule),
                None => e,
            })?;
        Ok(checked.content)
    }

    /// Variant weights scaled so that the control takes exactly `control_percent`.
    fn split(&self) -> Result<Split, Refused> {
        let p = u32::from(self.control_percent);
        if p > u32::from(MAX_CONTROL_PERCENT) {
            return Err(refused(
                "control_percent",
                format!("must be 0 to {MAX_CONTROL_PERCENT}"),
            ));
        }
        let total: u32 = self.variants.iter().map(|v| v.weight).sum();
        let weights = self.variants.iter().map(|v| v.weight * (100 - p)).collect();
        Split::new(weights, p * total).map_err(|e| refused("variants", e.to_string()))
    }

    fn goal(&self) -> Result<(Option<PlannedGoal>, Option<DefinitionId>), Refused> {
        let Some(g) = &self.goal else {
            return Ok((None, None));
        };
        let window_hours = g.window_hours.unwrap_or(DEFAULT_GOAL_WINDOW_HOURS);
        if window_hours == 0 || window_hours > MAX_GOAL_WINDOW_HOURS {
            return Err(refused(
                "goal.window_hours",
                format!("must be 1 to {MAX_GOAL_WINDOW_HOURS}"),
            ));
        }
        match (&g.event, g.metric_id) {
            (Some(event), None) => {
                let event = event.trim();
                appizer_analytics::scope::check_event_name(event, "goal.event")
                    .map_err(|e| analytics_refusal(e, "goal.event"))?;
                for (i, p) in g.properties.iter().enumerate() {
                    let field = format!("goal.properties[{i}]");
                    Condition::parse(p, &field).map_err(|e| analytics_refusal(e, &field))?;
                }
                Ok((
                    Some(PlannedGoal {
                        event: event.to_string(),
                        properties: g.properties.clone(),
                        window_hours,
                    }),
                    None,
                ))
            }
            (None, Some(metric)) if g.properties.is_empty() => Ok((None, Some(metric))),
            (None, Some(_)) => Err(refused(
                "goal.properties",
                "a metric goal takes the metric's conditions",
            )),
            _ => Err(refused(
                "goal",
                "must name exactly one of event and metric_id",
            )),
        }
    }

    fn check_winner(
        &self,
        w: &WinnerSpec,
        schedule: &Schedule,
        has_goal: bool,
    ) -> Result<(), Refused> {
        if !matches!(schedule, Schedule::Now | Schedule::At(_)) {
            return Err(refused(
                "winner",
                "winner mode is for a one-time send (when: now or at)",
            ));
        }
        if self.variants.iter().filter(|v| v.weight > 0).count() < 2 {
            return Err(refused(
                "winner",
                "needs at least two variants with a weight above 0",
            ));
        }
        if w.test_percent == 0 || w.test_percent > MAX_TEST_PERCENT {
            return Err(refused(
                "winner.test_percent",
                format!("must be 1 to {MAX_TEST_PERCENT}"),
            ));
        }
        if w.wait_minutes == 0 || w.wait_minutes > MAX_WINNER_WAIT_MINUTES {
            return Err(refused(
                "winner.wait_minutes",
                format!("must be 1 to {MAX_WINNER_WAIT_MINUTES} (7 days)"),
            ));
        }
        if w.by == WinnerMeasure::Goal && !has_goal {
            return Err(refused("winner.by", "`goal` needs the campaign's goal"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::assign::Group;
    use appizer_core::{CampaignId, PersonId};
    use serde_json::json;

    fn base() -> Value {
        json!({
            "when": {"type": "now"},
            "variants": [
                {"name": "A", "title": "Hi {{ person.first_name | default(\"there\") }}", "body": "Sale"},
                {"name": "B", "weight": 3, "title": "Hello", "body": "Sale today",
                 "translations": {"de": {"title": "Hallo", "body": "Heute"}}}
            ]
        })
    }

    fn with(patch: Value) -> Value {
        let mut v = base();
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    }

    fn check(v: Value) -> Result<Plan, Refused> {
        serde_json::from_value::<Definition>(v)
            .expect("parses")
            .check(chrono_tz::Europe::Berlin)
    }

    #[test]
    fn a_full_definition_checks_into_its_plan() {
        let plan = check(with(json!({
            "audience": {"segments": [DefinitionId::new()], "platforms": ["web", "ios", "web"]},
            "control_percent": 20,
            "quiet_hours": {"start": "22:00", "end": "08:00"},
            "pacing": {"per_minute": 600, "over_cap": "defer"},
            "goal": {"event": "purchase", "properties": [{"key": "total", "operator": "gt", "value": 10}]},
            "winner": {"test_percent": 20, "wait_minutes": 60, "by": "goal"}
        })))
        .unwrap();
        assert_eq!(plan.platforms, vec![Platform::Ios, Platform::Web]);
        assert_eq!(plan.variants.len(), 2);
        assert_eq!(plan.variants[1].name, "B");
        assert_eq!(plan.per_minute, Some(600));
        assert_eq!(plan.over_cap, CapMode::Defer);
        assert_eq!(plan.goal.as_ref().unwrap().window_hours, 24);
        assert_eq!(
            plan.winner.as_ref().unwrap().no_winner,
            NoWinnerRule::SendBest
        );
        // The control takes exactly 20 %; B three times A's share of the rest.
        let (weights, control) = plan.split.weights();
        let total: u32 = weights.iter().sum::<u32>() + control;
        assert_eq!(control * 100 / total, 20);
        assert_eq!(weights[1], 3 * weights[0]);
        let campaign = CampaignId::new();
        let mut counts = [0u32; 3];
        for _ in 0..20_000 {
            match plan.split.assign(campaign, PersonId::new()) {
                Group::Variant(i) => counts[i] += 1,
                Group::Control => counts[2] += 1,
            }
        }
        // 20 %, 60 % and 20 % within a few standard deviations.
        assert!((3_600..4_400).contains(&counts[0]), "{counts:?}");
        assert!((11_400..12_600).contains(&counts[1]), "{counts:?}");
        assert!((3_600..4_400).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn faults_name_their_field() {
        let segment = DefinitionId::new();
        for (patch, field, rule) in [
            (json!({"variants": []}), "variants", "1 to 8"),
            (
                json!({"variants": [{"name": "control", "title": "a", "body": "b"}]}),
                "variants[0].name",
                "control group",
            ),
            (
                json!({"variants": [{"name": "A", "title": "a", "body": "b"},
                                    {"name": "a", "title": "a", "body": "b"}]}),
                "variants[1].name",
                "two variants",
            ),
            (
                json!({"variants": [{"name": "A", "weight": 0, "title": "a", "body": "b"}]}),
                "variants",
                "weight above 0",
            ),
            (
                json!({"variants": [{"name": "A", "title": "{{ person.x", "body": "b"}]}),
                "variants[0].title",
                "at byte",
            ),
            (
                json!({"variants": [{"name": "A", "title": "a", "body": "{{ event.sku }}"}]}),
                "variants[0].body",
                "event-triggered",
            ),
            (
                json!({"variants": [{"name": "A", "title": "a", "body": "b", "url": "not a url"}]}),
                "variants[0].url",
                "absolute URL",
            ),
            (
                json!({"variants": [{"name": "A", "title": "a", "body": "b",
                                     "data": {"$push_variant": "x"}}]}),
                "variants[0].data",
                "reserved",
            ),
            (
                json!({"variants": [{"name": "A", "title": "a", "body": "b",
                                     "data": {"blob": "x".repeat(5000)}}]}),
                "variants[0]",
                "bytes",
            ),
            (json!({"control_percent": 60}), "control_percent", "0 to 50"),
            (
                json!({"audience": {"segments": [segment], "exclude_segments": [segment]}}),
                "audience.exclude_segments",
                "also included",
            ),
            (
                json!({"audience": {"segments": [segment, segment]}}),
                "audience.segments",
                "twice",
            ),
            (
                json!({"audience": {"platforms": []}}),
                "audience.platforms",
                "at least one",
            ),
            (
                json!({"quiet_hours": {"start": "22:00", "end": "8"}}),
                "quiet_hours.end",
                "HH:MM",
            ),
            (
                json!({"quiet_hours": {"start": "22:00", "end": "22:00"}}),
                "quiet_hours.end",
                "differ",
            ),
            (
                json!({"pacing": {"per_minute": 0}}),
                "pacing.per_minute",
                "1 to",
            ),
            (
                json!({"goal": {"event": "buy", "metric_id": segment}}),
                "goal",
                "exactly one",
            ),
            (
                json!({"goal": {"event": "buy", "window_hours": 1000}}),
                "goal.window_hours",
                "1 to 720",
            ),
            (
                json!({"goal": {"event": "buy", "properties": [{"key": "total", "operator": "gt", "value": "x"}]}}),
                "goal.properties[0].value",
                "number",
            ),
            (
                json!({"winner": {"test_percent": 20, "wait_minutes": 60, "by": "goal"}}),
                "winner.by",
                "goal",
            ),
            (
                json!({"winner": {"test_percent": 0, "wait_minutes": 60, "by": "opens"}}),
                "winner.test_percent",
                "1 to 50",
            ),
            (
                json!({"when": {"type": "recurring", "cron": "0 9 * * *"},
                       "winner": {"test_percent": 10, "wait_minutes": 60, "by": "opens"}}),
                "winner",
                "one-time",
            ),
            (
                json!({"variants": [{"name": "A", "title": "a", "body": "b"}],
                       "winner": {"test_percent": 10, "wait_minutes": 60, "by": "opens"}}),
                "winner",
                "two variants",
            ),
            (
                json!({"when": {"type": "triggered", "event": "add_to_cart",
                                "properties": [{"key": "plan", "type": "person", "value": "pro"}]}}),
                "when.properties[0].type",
                "type event",
            ),
        ] {
            let e = check(with(patch.clone())).unwrap_err();
            assert!(e.field.ends_with(field), "{patch}: {e:?}");
            assert!(e.rule.contains(rule), "{patch}: {e:?}");
        }
    }

    #[test]
    fn triggered_campaigns_may_use_the_event_in_templates() {
        let plan = check(with(json!({
            "when": {"type": "triggered", "event": "add_to_cart", "delay_seconds": 3600,
                     "cancel_if": "purchase",
                     "properties": [{"key": "price", "operator": "gte", "value": 20}]},
            "variants": [{"name": "A", "title": "Still want {{ event.sku }}?", "body": "b"}]
        })))
        .unwrap();
        let Schedule::Triggered { conditions, .. } = &plan.schedule else {
            panic!("{:?}", plan.schedule)
        };
        assert_eq!(conditions[0].0, "price");
        assert!(conditions[0].1.matches(Some(&json!(25))));
        assert!(!conditions[0].1.matches(Some(&json!(5))));
        // Unknown fields are the parser's refusal.
        assert!(serde_json::from_value::<Definition>(with(json!({"colour": "red"}))).is_err());
    }
}
