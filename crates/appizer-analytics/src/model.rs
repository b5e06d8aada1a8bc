//! The JSON shapes of analytics queries and their answers. Every query is evaluated in
//! the project's time zone over a [`DateRange`], with person merges applied.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Series in one trends query, steps in one funnel, and other explicit limits.
pub const MAX_SERIES: usize = 20;
pub const MIN_FUNNEL_STEPS: usize = 2;
pub const MAX_FUNNEL_STEPS: usize = 20;
pub const MAX_FILTERS: usize = 50;
pub const DEFAULT_BREAKDOWN_LIMIT: usize = 10;
pub const MAX_BREAKDOWN_LIMIT: usize = 100;
pub const MAX_RETENTION_PERIODS: usize = 100;
/// Buckets a query may span (a year of hours fits; a year of minutes does not).
pub const MAX_BUCKETS: usize = 10_000;
/// Persons listed per funnel step at most.
pub const MAX_FUNNEL_PERSONS: usize = 10_000;

/// `from` and `to` are local dates (`2026-11-01`, `to` inclusive), RFC 3339 instants,
/// or relative to now: `-7d`, `-24h`, `-30m` (minutes), `-2w`, `-3mo`; relative values
/// start at the beginning of that day, hour, minute, week or month. `to` defaults to
/// now; `from` to `-7d`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DateRange {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Minute,
    Hour,
    #[default]
    Day,
    Week,
    Month,
}

impl Interval {
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Minute => "minute",
            Interval::Hour => "hour",
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }
}

/// Whose property a filter or breakdown reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PropertyType {
    #[default]
    Event,
    Person,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// Equals the value (or one of the values of an array).
    #[default]
    Exact,
    /// Different from the value (or from every value of an array), or not set.
    IsNot,
    /// Contains the text, case-insensitively.
    Contains,
    /// Does not contain the text, or is not set.
    NotContains,
    /// Numeric comparisons; values that are not numbers never match.
    Gt,
    Gte,
    Lt,
    Lte,
    IsSet,
    IsNotSet,
}

/// A condition on a property. Values compare as text: strings as they are, numbers and
/// booleans as written in JSON (`42`, `true`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PropertyFilter {
    pub key: String,
    #[serde(default, rename = "type")]
    pub kind: PropertyType,
    #[serde(default)]
    pub operator: Operator,
    /// A string, number or boolean, or an array of them for `exact` and `is_not`; not
    /// used by `is_set` and `is_not_set`.
    #[serde(default)]
    /// Any JSON value: text, number, boolean, list.
    #[schema(value_type = Option<serde_json::Value>)]
    pub value: Option<Value>,
}

/// What a series computes per interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Math {
    /// Number of events.
    #[default]
    Total,
    /// Number of distinct persons.
    UniquePersons,
    /// Events per person, among persons with at least one.
    AvgPerPerson,
    /// Of the numeric property `math_property` (events without a number are skipped).
    Sum,
    Avg,
    Min,
    Max,
    Median,
    P90,
    P95,
    P99,
}

impl Math {
    pub fn needs_property(self) -> bool {
        matches!(
            self,
            Math::Sum
                | Math::Avg
                | Math::Min
                | Math::Max
                | Math::Median
                | Math::P90
                | Math::P95
                | Math::P99
        )
    }

    /// The quantile of `p90`, `p95` and `p99`.
    pub fn quantile(self) -> Option<f64> {
        match self {
            Math::P90 => Some(0.9),
            Math::P95 => Some(0.95),
            Math::P99 => Some(0.99),
            _ => None,
        }
    }

    /// Whether a total over the range is the sum of the intervals' values.
    pub fn is_additive(self) -> bool {
        matches!(self, Math::Total | Math::Sum)
    }
}

/// One series: an event (or every event) and the math applied to it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Series {
    /// The event name; absent for all events.
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub math: Math,
    /// The numeric event property of `sum`, `avg`, `min`, `max`, `median` and `pNN`.
    #[serde(default)]
    pub math_property: Option<String>,
    /// Conditions on this series' events only.
    #[serde(default)]
    pub properties: Vec<PropertyFilter>,
    /// Shown with the results; defaults to the event name (the metric's name).
    #[serde(default)]
    pub label: Option<String>,
    /// A saved metric (its id) in place of `event`, `math` and `properties`: one value
    /// per interval from its series and formula.
    #[serde(default)]
    pub metric_id: Option<String>,
}

/// Split results by the value of a property: the `limit` most frequent values by event
/// count, and every other value together as `$other`. Events without the property
/// are `$none`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Breakdown {
    pub key: String,
    #[serde(default, rename = "type")]
    pub kind: PropertyType,
    #[serde(default)]
    pub limit: Option<usize>,
}

impl Breakdown {
    /// The number of values kept (the rest are `$other`), checked.
    pub fn checked_limit(&self) -> Result<usize, crate::AnalyticsError> {
        let limit = self.limit.unwrap_or(DEFAULT_BREAKDOWN_LIMIT);
        if limit == 0 || limit > MAX_BREAKDOWN_LIMIT {
            return Err(crate::AnalyticsError::invalid(
                "breakdown.limit",
                format!("must be 1 to {MAX_BREAKDOWN_LIMIT}"),
            ));
        }
        Ok(limit)
    }
}

/// Refuses an empty list of series or one longer than [`MAX_SERIES`].
pub fn check_series_count(series: &[Series]) -> Result<(), crate::AnalyticsError> {
    if series.is_empty() || series.len() > MAX_SERIES {
        return Err(crate::AnalyticsError::invalid(
            "series",
            format!("must hold 1 to {MAX_SERIES} series"),
        ));
    }
    Ok(())
}

pub const BREAKDOWN_OTHER: &str = "$other";
pub const BREAKDOWN_NONE: &str = "$none";

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrendsQuery {
    /// 1 to 20 series.
    #[schema(min_items = 1, max_items = 20)]
    pub series: Vec<Series>,
    #[serde(default)]
    pub interval: Interval,
    #[serde(default)]
    pub date_range: DateRange,
    /// Conditions on every series' events (event or person properties).
    #[serde(default)]
    pub properties: Vec<PropertyFilter>,
    /// Only persons in every one of these segments (ids).
    #[serde(default)]
    pub segments: Vec<String>,
    #[serde(default)]
    pub breakdown: Option<Breakdown>,
    /// Arithmetic over the series named by letter in order: `A / B * 100`.
    #[serde(default)]
    pub formula: Option<String>,
    /// Also answer the period of the same length just before.
    #[serde(default)]
    pub compare: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SeriesResult {
    /// `A`, `B`, ... in the order of the query; `formula` for a formula.
    pub series: String,
    pub label: String,
    /// The breakdown value (`$other`, `$none`), when broken down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdown_value: Option<String>,
    /// One value per bucket; `null` where a value is undefined (an average over no
    /// events, a division by zero).
    pub data: Vec<Option<f64>>,
    /// Over the whole range: distinct persons over the range for `unique_persons`, the
    /// sum for additive math, the math over all events otherwise.
    pub aggregated: Option<f64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TrendsResult {
    pub interval: Interval,
    pub timezone: String,
    /// Starts of the buckets in the project's time zone.
    pub buckets: Vec<String>,
    pub results: Vec<SeriesResult>,
    /// The previous period, when `compare` was asked; its buckets are those of
    /// `results` shifted back by the range's length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<Vec<SeriesResult>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_buckets: Option<Vec<String>>,
}

/// Most persons one trends point lists.
pub const MAX_POINT_PERSONS: usize = 1_000;

/// The persons behind one value of a trends answer: a series, a bucket and, when
/// broken down, a breakdown value of `query`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrendsPersonsQuery {
    pub query: TrendsQuery,
    /// The series' position in `query.series` (0 for `A`).
    pub series: usize,
    /// The bucket's label, as in the answer's `buckets`.
    pub bucket: String,
    /// The breakdown value, as in the answer (`$other`, `$none` included); required
    /// when `query` is broken down.
    #[serde(default)]
    pub breakdown_value: Option<String>,
    /// 1 to 1,000 persons (default 100), most events first.
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PointPerson {
    pub person_id: String,
    /// The smallest of the person's distinct ids in these events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_id: Option<String>,
    /// The person's events counted in the point.
    pub events: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TrendsPersons {
    /// Every person with an event in the point (events without a person are not
    /// listed).
    pub total: u64,
    /// The first `limit` of them, most events first, then by id.
    pub persons: Vec<PointPerson>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FunnelOrder {
    /// Steps in order; other events may come between.
    #[default]
    Ordered,
    /// Steps in order with no other event of the person between.
    Strict,
    /// Every step within the window, in any order.
    Unordered,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WindowUnit {
    Minute,
    Hour,
    #[default]
    Day,
    Week,
}

/// A funnel step or exclusion: an event with conditions.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub event: String,
    #[serde(default)]
    pub properties: Vec<PropertyFilter>,
    #[serde(default)]
    pub label: Option<String>,
}

/// Persons who did `event` between reaching step `from_step` and step `to_step` (0-based)
/// are left out of the funnel for that attempt.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    pub event: String,
    #[serde(default)]
    pub properties: Vec<PropertyFilter>,
    pub from_step: usize,
    pub to_step: usize,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunnelQuery {
    pub steps: Vec<Step>,
    #[serde(default)]
    pub order: FunnelOrder,
    /// How long after the first step the last may come (default 14 days).
    #[serde(default)]
    pub window: Option<u32>,
    #[serde(default)]
    pub window_unit: WindowUnit,
    /// The first step must fall in this range; later steps may follow up to the
    /// window after it.
    #[serde(default)]
    pub date_range: DateRange,
    #[serde(default)]
    pub properties: Vec<PropertyFilter>,
    /// Only persons in every one of these segments (ids).
    #[serde(default)]
    pub segments: Vec<String>,
    #[serde(default)]
    pub exclusions: Vec<Exclusion>,
    /// By a property of the first step's event (or of the person).
    #[serde(default)]
    pub breakdown: Option<Breakdown>,
    /// List up to this many persons who reached and who dropped at each step.
    #[serde(default)]
    pub persons_limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FunnelStepResult {
    pub step: usize,
    pub event: String,
    pub label: String,
    /// Persons who reached this step.
    pub count: u64,
    /// `count` over the first step's count (1 for the first step).
    pub conversion_from_start: Option<f64>,
    /// `count` over the previous step's count.
    pub conversion_from_previous: Option<f64>,
    /// Persons who reached the previous step but not this one.
    pub dropped: u64,
    /// Seconds from the previous step, over the persons who reached this one.
    pub average_seconds: Option<f64>,
    pub median_seconds: Option<f64>,
    /// Up to `persons_limit` persons who reached this step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persons: Option<Vec<String>>,
    /// Up to `persons_limit` persons who reached the previous step but not this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_persons: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FunnelBreakdownResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdown_value: Option<String>,
    pub steps: Vec<FunnelStepResult>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FunnelResult {
    pub order: FunnelOrder,
    pub window_seconds: i64,
    /// One entry without breakdown; one per breakdown value otherwise.
    pub results: Vec<FunnelBreakdownResult>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetentionType {
    /// A person's cohort is the period of their first start event ever.
    FirstTime,
    /// A person is in the cohort of every period they did the start event.
    #[default]
    Recurring,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionQuery {
    /// The event that puts a person in a cohort.
    pub start_event: Step,
    /// The event that counts as coming back.
    pub return_event: Step,
    #[serde(default)]
    pub retention_type: RetentionType,
    /// `day`, `week` or `month`.
    #[serde(default)]
    pub period: Interval,
    /// Periods after the cohort's own (default 7; at most 100). `minute` is refused.
    #[serde(default)]
    pub periods: Option<usize>,
    /// Cohorts whose period starts in this range.
    #[serde(default)]
    pub date_range: DateRange,
    #[serde(default)]
    pub properties: Vec<PropertyFilter>,
    /// Only persons in every one of these segments (ids).
    #[serde(default)]
    pub segments: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RetentionCohort {
    /// The cohort's period start, local.
    pub period: String,
    /// Persons in the cohort.
    pub size: u64,
    /// `values[0]` is `size`; `values[k]` the persons of the cohort who did the return
    /// event in the k-th period after. Periods not yet begun are absent.
    pub values: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RetentionResult {
    pub period: Interval,
    pub timezone: String,
    pub cohorts: Vec<RetentionCohort>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StickinessQuery {
    pub series: Vec<Series>,
    #[serde(default)]
    pub interval: Interval,
    #[serde(default)]
    pub date_range: DateRange,
    #[serde(default)]
    pub properties: Vec<PropertyFilter>,
    /// Only persons in every one of these segments (ids).
    #[serde(default)]
    pub segments: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StickinessSeries {
    pub series: String,
    pub label: String,
    /// `persons[k-1]`: persons who did the event in exactly k intervals of the range.
    pub persons: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StickinessResult {
    pub interval: Interval,
    /// Intervals in the range.
    pub intervals: usize,
    pub results: Vec<StickinessSeries>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LifecycleQuery {
    /// The event that makes a person active (absent: any event).
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub interval: Interval,
    #[serde(default)]
    pub date_range: DateRange,
    #[serde(default)]
    pub properties: Vec<PropertyFilter>,
    /// Only persons in every one of these segments (ids).
    #[serde(default)]
    pub segments: Vec<String>,
}

/// Per bucket: `new` (first such event ever), `returning` (active in the bucket and
/// the one before), `resurrecting` (active, not in the bucket before, active before
/// that), `dormant` (active in the bucket before, not in this one; negative).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LifecycleResult {
    pub interval: Interval,
    pub timezone: String,
    pub buckets: Vec<String>,
    pub new: Vec<i64>,
    pub returning: Vec<i64>,
    pub resurrecting: Vec<i64>,
    pub dormant: Vec<i64>,
}
