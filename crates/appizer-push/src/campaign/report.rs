//! A campaign's report: per variant and for the control, the persons assigned, sent,
//! failed, delivered, opened and converted, their rates with 95% intervals, each
//! variant's lift over the control with a two-proportion test, and a chi-squared test
//! across the variants; computed by the analytics engine as funnels over the events,
//! so a funnel over the same events answers the same numbers:
//!
//! `$push_assigned` (this campaign, this run) -> `$push_sent` / `$push_failed` /
//! `$push_delivered` / `$push_opened` (this campaign) or the goal event, broken down by
//! `$push_variant`.
//!
//! Rates: delivered and opened of sent, converted of assigned (the control converts
//! too: that is what a lift is measured against). Conversions count within the goal's
//! window after assignment.

use std::collections::HashMap;

use appizer_analytics::stats::{chi_squared, compare, Comparison, Rate, Test};
use appizer_analytics::{
    Breakdown, DateRange, FunnelQuery, FunnelResult, Operator, PropertyFilter, PropertyType,
    QueryProject, Step, WindowUnit,
};
use appizer_core::push::{CampaignRecord, CampaignRun, RunState};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::definition::{Plan, CONTROL};
use super::runner::{ASSIGNED, RUN_KEY};
use super::service::{CampaignError, Campaigns};
use crate::message::{CAMPAIGN_ID_KEY, VARIANT_KEY};
use crate::outbox::events::{DELIVERED, FAILED, OPENED, SENT};

/// How long after assignment a delivery event still counts (30 days).
const DELIVERY_WINDOW_DAYS: u32 = 30;

/// One run, as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RunSummary {
    pub key: String,
    pub phase: String,
    #[schema(value_type = String)]
    pub state: RunState,
    pub due_at: DateTime<Utc>,
    pub assigned: u64,
    pub queued: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Winner mode's decision and its figures (on the `rest` phase).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub decision: Option<serde_json::Value>,
}

impl From<&CampaignRun> for RunSummary {
    fn from(r: &CampaignRun) -> Self {
        Self {
            key: r.key.clone(),
            phase: r.phase.clone(),
            state: r.state,
            due_at: r.due_at,
            assigned: r.assigned,
            queued: r.queued,
            started_at: r.started_at,
            finished_at: r.finished_at,
            decision: r.decision.clone(),
        }
    }
}

/// A variant's or the control's figures.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GroupReport {
    /// A variant's name, or `control`.
    pub group: String,
    pub control: bool,
    pub assigned: u64,
    pub sent: u64,
    pub failed: u64,
    pub delivered: u64,
    pub opened: u64,
    /// Absent without a goal.
    pub converted: Option<u64>,
    /// Delivered of sent.
    pub delivery_rate: Rate,
    /// Opened of sent.
    pub open_rate: Rate,
    /// Converted of assigned.
    pub conversion_rate: Option<Rate>,
    /// Conversion against the control's (variants, with a control and a goal).
    pub against_control: Option<Comparison>,
}

/// The goal as the report measured it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GoalSummary {
    pub event: String,
    pub window_hours: u32,
}

/// A campaign's report.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Report {
    pub campaign_id: String,
    /// The run reported (absent: every run together).
    pub run: Option<String>,
    pub runs: Vec<RunSummary>,
    pub goal: Option<GoalSummary>,
    pub groups: Vec<GroupReport>,
    /// Chi-squared across the variants, on conversion with a goal, else on opens.
    pub across_variants: Option<Test>,
    /// Every test above has the sample its approximation needs.
    pub sample_large_enough: bool,
    /// The funnel whose numbers the conversions are (to run, or to change); absent
    /// without a goal.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub conversion_funnel: Option<serde_json::Value>,
}

fn filter(key: &str, value: &str) -> PropertyFilter {
    PropertyFilter {
        key: key.into(),
        kind: PropertyType::Event,
        operator: Operator::Exact,
        value: Some(json!(value)),
    }
}

/// Persons per group (breakdown value) who reached the funnel's last step.
fn reached(result: &FunnelResult) -> HashMap<String, (u64, u64)> {
    result
        .results
        .iter()
        .filter_map(|r| {
            let first = r.steps.first()?.count;
            let last = r.steps.last()?.count;
            Some((r.breakdown_value.clone().unwrap_or_default(), (first, last)))
        })
        .collect()
}

impl Campaigns {
    /// The report of `record` (its run `run`, or all of them), now.
    pub async fn report(
        &self,
        project: &QueryProject,
        record: &CampaignRecord,
        plan: &Plan,
        run: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Report, CampaignError> {
        let runs = self.runs(project, record.id).await?;
        if let Some(key) = run {
            if !runs.iter().any(|r| r.key == key) {
                return Err(CampaignError::Refused(crate::devices::Refused {
                    field: "run".into(),
                    rule: "must be the key of one of the campaign's runs".into(),
                }));
            }
        }
        let mut assigned_filters = vec![filter(CAMPAIGN_ID_KEY, &record.id.to_string())];
        if let Some(key) = run {
            assigned_filters.push(filter(RUN_KEY, key));
        }
        let assigned_step = Step {
            event: ASSIGNED.into(),
            properties: assigned_filters,
            label: None,
        };
        let from = record.created_at - chrono::Duration::minutes(1);
        let funnel = |second: Step, window: u32, unit: WindowUnit| FunnelQuery {
            steps: vec![assigned_step.clone(), second],
            window: Some(window),
            window_unit: unit,
            date_range: DateRange {
                from: Some(from.to_rfc3339_opts(SecondsFormat::Millis, true)),
                to: None,
            },
            breakdown: Some(Breakdown {
                key: VARIANT_KEY.into(),
                kind: PropertyType::Event,
                limit: Some(super::assign::MAX_VARIANTS + 1),
            }),
            ..FunnelQuery::default()
        };
        let of_campaign = |event: &str| Step {
            event: event.into(),
            properties: vec![filter(CAMPAIGN_ID_KEY, &record.id.to_string())],
            label: None,
        };
        let mut counts: HashMap<&str, HashMap<String, (u64, u64)>> = HashMap::new();
        for event in [SENT, FAILED, DELIVERED, OPENED] {
            let q = funnel(of_campaign(event), DELIVERY_WINDOW_DAYS, WindowUnit::Day);
            let result = self.engine().funnel(project, &q, now).await?;
            counts.insert(event, reached(&result));
        }
        let (conversions, conversion_funnel) = match &plan.goal {
            Some(goal) => {
                let q = funnel(
                    Step {
                        event: goal.event.clone(),
                        properties: goal.properties.clone(),
                        label: None,
                    },
                    goal.window_hours,
                    WindowUnit::Hour,
                );
                let result = self.engine().funnel(project, &q, now).await?;
                (
                    Some(reached(&result)),
                    Some(serde_json::to_value(&q).expect("a funnel serializes")),
                )
            }
            None => (None, None),
        };
        let names: Vec<(String, bool)> = plan
            .variants
            .iter()
            .map(|v| (v.name.clone(), false))
            .chain((plan.split.weights().1 > 0).then(|| (CONTROL.to_string(), true)))
            .collect();
        let get = |event: &str, group: &str| -> (u64, u64) {
            counts
                .get(event)
                .and_then(|c| c.get(group))
                .copied()
                .unwrap_or((0, 0))
        };
        let mut groups: Vec<GroupReport> = names
            .iter()
            .map(|(group, control)| {
                let (assigned, sent) = get(SENT, group);
                let failed = get(FAILED, group).1;
                let delivered = get(DELIVERED, group).1;
                let opened = get(OPENED, group).1;
                let converted = conversions
                    .as_ref()
                    .map(|c| c.get(group.as_str()).map_or(0, |(_, n)| *n));
                GroupReport {
                    group: group.clone(),
                    control: *control,
                    assigned,
                    sent,
                    failed,
                    delivered,
                    opened,
                    converted,
                    delivery_rate: Rate::new(delivered, sent),
                    open_rate: Rate::new(opened, sent),
                    conversion_rate: converted.map(|c| Rate::new(c, assigned)),
                    against_control: None,
                }
            })
            .collect();
        let control_rate = groups
            .iter()
            .find(|g| g.control)
            .and_then(|g| g.conversion_rate);
        for g in groups.iter_mut().filter(|g| !g.control) {
            if let (Some(rate), Some(control)) = (g.conversion_rate, control_rate) {
                g.against_control = Some(compare(rate, control));
            }
        }
        let measure: Vec<Rate> = groups
            .iter()
            .filter(|g| !g.control)
            .map(|g| g.conversion_rate.unwrap_or(g.open_rate))
            .collect();
        let across_variants = chi_squared(&measure);
        let tests: Vec<&Test> = across_variants
            .iter()
            .chain(
                groups
                    .iter()
                    .filter_map(|g| g.against_control.as_ref()?.test.as_ref()),
            )
            .collect();
        let sample_large_enough = !tests.is_empty() && tests.iter().all(|t| t.sample_large_enough);
        Ok(Report {
            campaign_id: record.id.to_string(),
            run: run.map(str::to_string),
            runs: runs.iter().map(RunSummary::from).collect(),
            goal: plan.goal.as_ref().map(|g| GoalSummary {
                event: g.event.clone(),
                window_hours: g.window_hours,
            }),
            groups,
            across_variants,
            sample_large_enough,
            conversion_funnel,
        })
    }
}
