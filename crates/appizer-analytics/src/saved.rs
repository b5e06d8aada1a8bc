//! Saved definitions: custom metrics (series, formula and conditions under a name,
//! evaluable alone and usable as a series of a trends query) and segments (persons
//! defined by person-property and behavioural conditions, nested with AND and OR, or a
//! static list), with their members computed and stored.

use std::collections::HashSet;

use appizer_core::definition::{Definition, DefinitionKind};
use appizer_core::{DefinitionId, PersonId};
use chrono::{DateTime, Duration, Utc};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::prelude::{col, lit};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::activity::{stream_pairs, Actors};
use crate::formula::Formula;
use crate::model::*;
use crate::scope::{check_event_name, Condition, Scope};
use crate::time::resolve_range;
use crate::{AnalyticsError, Engine, QueryProject, Result};

/// The health component of the periodic refresh of dynamic segments.
pub const SEGMENT_REFRESH: &str = "segment_refresh";

/// A metric: one series, or several combined by a formula, with conditions on all.
/// Requests name its fields in `NewMetric` and `MetricChange`, which refuse unknown
/// fields; this is the shape stored and answered, inside `MetricView`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
pub struct MetricDefinition {
    pub series: Vec<Series>,
    /// Required with more than one series.
    #[serde(default)]
    pub formula: Option<String>,
    #[serde(default)]
    pub properties: Vec<PropertyFilter>,
}

impl MetricDefinition {
    /// Checks the parts that need no data: series count, no nested metrics, formula.
    pub fn check(&self) -> Result<()> {
        check_series_count(&self.series)?;
        for (i, s) in self.series.iter().enumerate() {
            if s.metric_id.is_some() {
                return Err(AnalyticsError::invalid(
                    format!("series[{i}].metric_id"),
                    "a metric's series cannot be metrics themselves",
                ));
            }
            if s.math.needs_property() && s.math_property.is_none() {
                return Err(AnalyticsError::invalid(
                    format!("series[{i}].math_property"),
                    "is required by this math",
                ));
            }
        }
        match &self.formula {
            Some(f) => {
                Formula::parse(f, self.series.len())?;
            }
            None if self.series.len() > 1 => {
                return Err(AnalyticsError::invalid(
                    "formula",
                    "is required to combine several series into one metric",
                ))
            }
            None => {}
        }
        Ok(())
    }

    pub fn from_definition(d: &Definition) -> Result<Self> {
        serde_json::from_value(d.body.clone()).map_err(|e| {
            AnalyticsError::invalid("metric_id", format!("the saved metric is unreadable: {e}"))
        })
    }
}

/// A condition on persons.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SegmentCondition {
    /// Every one of `conditions`.
    And {
        #[schema(value_type = Vec<Object>)]
        conditions: Vec<SegmentCondition>,
    },
    /// At least one of `conditions`.
    Or {
        #[schema(value_type = Vec<Object>)]
        conditions: Vec<SegmentCondition>,
    },
    /// A person property condition.
    Property {
        key: String,
        #[serde(default)]
        operator: Operator,
        #[serde(default)]
        /// Any JSON value: text, number, boolean, list.
        #[schema(value_type = Option<serde_json::Value>)]
        value: Option<Value>,
    },
    /// Did `event` (matching `properties`) between `min_count` (default 1) and
    /// `max_count` times in the last `days` days.
    Performed {
        event: String,
        #[serde(default)]
        properties: Vec<PropertyFilter>,
        #[serde(default)]
        min_count: Option<u64>,
        #[serde(default)]
        max_count: Option<u64>,
        days: u32,
    },
    /// Has not done `event` since `since` (a date, an RFC 3339 time or relative: -30d).
    NotPerformedSince { event: String, since: String },
    /// Is a member of another segment.
    InSegment { segment_id: String },
}

/// Conditions nested at most this deep (segments in segments count).
pub const MAX_SEGMENT_DEPTH: usize = 8;
/// Longest behavioural look-back, in days.
pub const MAX_SEGMENT_DAYS: u32 = 3_650;
/// Ids in one static segment upload.
pub const MAX_STATIC_IDS: usize = 100_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SegmentKind {
    /// Members follow `condition`, recomputed on change, on request and on a schedule.
    #[default]
    Dynamic,
    /// Members are the persons of an uploaded list of distinct ids.
    Static,
}

/// What a segment's stored body holds.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SegmentBody {
    pub kind: SegmentKind,
    #[serde(default)]
    pub condition: Option<SegmentCondition>,
}

impl SegmentBody {
    pub fn from_definition(d: &Definition) -> Result<Self> {
        serde_json::from_value(d.body.clone()).map_err(|e| {
            AnalyticsError::invalid("segment", format!("the saved segment is unreadable: {e}"))
        })
    }
}

impl Engine {
    /// The persons `condition` holds for now, in id order.
    pub async fn segment_members(
        &self,
        project: &QueryProject,
        condition: &SegmentCondition,
        now: DateTime<Utc>,
    ) -> Result<Vec<PersonId>> {
        let run = async {
            let scope = Scope::new(self, project, now).await?;
            let everyone: HashSet<String> = scope.person_ids().await?;
            let mut stack = Vec::new();
            let members =
                evaluate(&scope, condition, "condition", &everyone, &mut stack, 0).await?;
            let mut out: Vec<PersonId> = members
                .iter()
                .filter(|id| everyone.contains(*id))
                .filter_map(|id| id.parse().ok())
                .collect();
            out.sort();
            Ok(out)
        };
        self.limited(run).await
    }

    /// A saved metric's definition.
    pub async fn metric(
        &self,
        project: &QueryProject,
        id: &str,
    ) -> Result<(String, MetricDefinition)> {
        let d = self
            .definition(project, DefinitionKind::Metric, id, "metric_id")
            .await?;
        Ok((d.name.clone(), MetricDefinition::from_definition(&d)?))
    }

    async fn definition(
        &self,
        project: &QueryProject,
        kind: DefinitionKind,
        id: &str,
        field: &str,
    ) -> Result<Definition> {
        let unknown =
            || AnalyticsError::invalid(field, format!("no such {} in this project", kind.as_str()));
        let id: DefinitionId = id.parse().map_err(|_| unknown())?;
        self.meta
            .get_definition(project.scope, kind, id)
            .await?
            .ok_or_else(unknown)
    }

    /// The stored members of segment `id` (for query filters).
    pub(crate) async fn stored_members(
        &self,
        project: &QueryProject,
        id: &str,
        field: &str,
    ) -> Result<HashSet<String>> {
        let d = self
            .definition(project, DefinitionKind::Segment, id, field)
            .await?;
        Ok(self
            .meta
            .segment_members(project.scope, d.id, None, u32::MAX)
            .await?
            .into_iter()
            .map(|p| p.to_string())
            .collect())
    }
}

/// The members (person ids as text) of `condition`.
fn evaluate<'a>(
    scope: &'a Scope<'_>,
    condition: &'a SegmentCondition,
    field: &'a str,
    everyone: &'a HashSet<String>,
    stack: &'a mut Vec<String>,
    depth: usize,
) -> futures_util::future::BoxFuture<'a, Result<HashSet<String>>> {
    Box::pin(async move {
        if depth > MAX_SEGMENT_DEPTH {
            return Err(AnalyticsError::invalid(
                field,
                format!("conditions nest at most {MAX_SEGMENT_DEPTH} deep"),
            ));
        }
        match condition {
            SegmentCondition::And { conditions } | SegmentCondition::Or { conditions } => {
                if conditions.is_empty() {
                    return Err(AnalyticsError::invalid(
                        format!("{field}.conditions"),
                        "must hold at least one condition",
                    ));
                }
                let and = matches!(condition, SegmentCondition::And { .. });
                let mut acc: Option<HashSet<String>> = None;
                for (i, c) in conditions.iter().enumerate() {
                    let f = format!("{field}.conditions[{i}]");
                    let set = evaluate(scope, c, &f, everyone, stack, depth + 1).await?;
                    acc = Some(match acc {
                        None => set,
                        Some(a) if and => a.intersection(&set).cloned().collect(),
                        Some(mut a) => {
                            a.extend(set);
                            a
                        }
                    });
                }
                Ok(acc.unwrap_or_default())
            }
            SegmentCondition::Property {
                key,
                operator,
                value,
            } => {
                let filter = PropertyFilter {
                    key: key.clone(),
                    kind: PropertyType::Person,
                    operator: *operator,
                    value: value.clone(),
                };
                let c = Condition::parse(&filter, field)?;
                scope.persons_where(key, &c).await
            }
            SegmentCondition::Performed {
                event,
                properties,
                min_count,
                max_count,
                days,
            } => {
                check_event_name(event, &format!("{field}.event"))?;
                if *days == 0 || *days > MAX_SEGMENT_DAYS {
                    return Err(AnalyticsError::invalid(
                        format!("{field}.days"),
                        format!("must be 1 to {MAX_SEGMENT_DAYS}"),
                    ));
                }
                let min = min_count.unwrap_or(1);
                if min == 0 || max_count.is_some_and(|m| m < min) {
                    return Err(AnalyticsError::invalid(
                        format!("{field}.min_count"),
                        "must be at least 1 and at most max_count",
                    ));
                }
                let counts = performed(
                    scope,
                    event,
                    properties,
                    &format!("{field}.properties"),
                    scope.now - Duration::days(i64::from(*days)),
                )
                .await?;
                Ok(counts
                    .into_iter()
                    .filter(|(_, n)| *n >= min && max_count.is_none_or(|m| *n <= m))
                    .map(|(p, _)| p)
                    .collect())
            }
            SegmentCondition::NotPerformedSince { event, since } => {
                check_event_name(event, &format!("{field}.event"))?;
                let range = DateRange {
                    from: Some(since.clone()),
                    to: None,
                };
                let (from, _) = resolve_range(&range, scope.tz, scope.now).map_err(|_| {
                    AnalyticsError::invalid(
                        format!("{field}.since"),
                        "must be a date, an RFC 3339 time or relative (-30d) in the past",
                    )
                })?;
                let did: HashSet<String> = performed(scope, event, &[], field, from)
                    .await?
                    .into_iter()
                    .map(|(p, _)| p)
                    .collect();
                Ok(everyone.difference(&did).cloned().collect())
            }
            SegmentCondition::InSegment { segment_id } => {
                let f = format!("{field}.segment_id");
                if stack.contains(segment_id) {
                    return Err(AnalyticsError::invalid(
                        f,
                        "segments cannot contain themselves",
                    ));
                }
                let project = &scope.query_project;
                let d = scope
                    .engine
                    .definition(project, DefinitionKind::Segment, segment_id, &f)
                    .await?;
                let body = SegmentBody::from_definition(&d)?;
                match (body.kind, &body.condition) {
                    (SegmentKind::Dynamic, Some(c)) => {
                        stack.push(segment_id.clone());
                        let set = evaluate(scope, c, &f, everyone, stack, depth + 1).await;
                        stack.pop();
                        set
                    }
                    _ => scope.engine.stored_members(project, segment_id, &f).await,
                }
            }
        }
    })
}

/// Persons who did `event` at or after `from` (until now), with their counts.
async fn performed(
    scope: &Scope<'_>,
    event: &str,
    properties: &[PropertyFilter],
    field: &str,
    from: DateTime<Utc>,
) -> Result<Vec<(String, u64)>> {
    let mut keep = col("event")
        .eq(lit(event.to_string()))
        .and(scope.actor().is_not_null());
    if let Some(c) = scope.conditions(properties, field).await? {
        keep = keep.and(c);
    }
    let df = scope
        .events(from, scope.now)
        .await?
        .filter(keep)?
        .aggregate(
            vec![scope.actor().alias("actor")],
            vec![count(lit(1)).alias("key")],
        )?;
    let mut actors = Actors::default();
    let mut counts = Vec::new();
    let per_pair = std::mem::size_of::<(u32, u64)>();
    stream_pairs(scope, df, &mut actors, per_pair, |a, n| {
        counts.push((a, n.max(0) as u64))
    })
    .await?;
    Ok(counts
        .into_iter()
        .map(|(a, n)| (actors.ids[a as usize].clone(), n))
        .collect())
}

/// Where a segment's members come from.
#[derive(Debug, Clone)]
pub enum MemberSource {
    /// A dynamic segment's condition.
    Condition(SegmentCondition),
    /// A static upload: the persons of these distinct ids.
    DistinctIds(Vec<String>),
    /// A static segment of the persons who reached the step before `step` of a funnel
    /// and not `step`.
    FunnelDropped { funnel: FunnelQuery, step: usize },
}

/// A segment's members as computed, before they are stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Members {
    /// Person ids, sorted, without repeats.
    pub persons: Vec<PersonId>,
    /// For a static upload: how many distinct ids have no person.
    pub unknown_distinct_ids: Option<u64>,
}

/// Distinct ids looked up per query when resolving a static upload.
const LOOKUP_CHUNK: usize = 1_000;

impl Engine {
    /// Computes a segment's members from `source`, storing nothing (so a condition or
    /// a funnel that fails leaves the segment as it was).
    pub async fn members_of(
        &self,
        project: &QueryProject,
        source: MemberSource,
        now: DateTime<Utc>,
    ) -> Result<Members> {
        match source {
            MemberSource::Condition(c) => Ok(Members {
                persons: self.segment_members(project, &c, now).await?,
                unknown_distinct_ids: None,
            }),
            MemberSource::FunnelDropped { funnel, step } => {
                let mut persons = self
                    .funnel_dropped(project, &funnel, step, now)
                    .await
                    .map_err(|e| match e {
                        AnalyticsError::Invalid { field, rule } => {
                            AnalyticsError::invalid(format!("funnel_dropped.{field}"), rule)
                        }
                        other => other,
                    })?;
                persons.sort();
                persons.dedup();
                Ok(Members {
                    persons,
                    unknown_distinct_ids: None,
                })
            }
            MemberSource::DistinctIds(mut ids) => {
                ids.sort();
                ids.dedup();
                let (mut persons, mut known) = (Vec::new(), 0usize);
                for chunk in ids.chunks(LOOKUP_CHUNK) {
                    let found = self.persons.lookup(project.scope, chunk).await?;
                    known += found.len();
                    persons.extend(found.into_values());
                }
                persons.sort();
                persons.dedup();
                Ok(Members {
                    persons,
                    unknown_distinct_ids: Some((ids.len() - known) as u64),
                })
            }
        }
    }

    /// Stores computed members as the segment's, with their count and time.
    pub async fn store_members(
        &self,
        project: &QueryProject,
        segment: DefinitionId,
        members: &Members,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.meta
            .replace_segment_members(project.scope, segment, &members.persons, now)
            .await?;
        Ok(())
    }

    /// Recomputes a dynamic segment's members and stores them; returns their number.
    pub async fn refresh_segment(
        &self,
        project: &QueryProject,
        segment: &Definition,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let body = SegmentBody::from_definition(segment)?;
        let Some(condition) = body.condition.filter(|_| body.kind == SegmentKind::Dynamic) else {
            return Ok(segment.member_count.unwrap_or(0));
        };
        let members = self
            .members_of(project, MemberSource::Condition(condition), now)
            .await?;
        self.store_members(project, segment.id, &members, now)
            .await?;
        Ok(members.persons.len() as u64)
    }

    /// Recomputes every dynamic segment of every project; returns how many were
    /// refreshed. A segment that fails is logged and left as it was.
    pub async fn refresh_all_segments(&self, now: DateTime<Utc>) -> Result<usize> {
        let mut done = 0;
        for segment in self.meta.all_definitions(DefinitionKind::Segment).await? {
            let Some(scope) = self.meta.project_scope(segment.project_id).await? else {
                continue;
            };
            let Some((scope, project)) = self
                .meta
                .get_project(scope.organization(), scope.project())
                .await?
            else {
                continue;
            };
            let project = QueryProject::of(scope, &project);
            match self.refresh_segment(&project, &segment, now).await {
                Ok(_) => done += 1,
                Err(e) => {
                    tracing::warn!(segment = %segment.id, error = %e, "segment refresh failed")
                }
            }
        }
        Ok(done)
    }
}
