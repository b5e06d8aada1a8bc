//! Saved insights and dashboards. An insight is a saved query of any kind (the body a
//! query route takes, with its `kind`) and how it is displayed; a dashboard is an
//! ordered grid of insights with a date range and conditions that override each
//! insight's own when it is shown there. Both are stored as definitions; this module
//! gives their bodies a shape and the rules a saved one must keep, and the overview
//! dashboard a new project starts with.

use appizer_core::definition::{Definition, DefinitionKind};
use appizer_core::{DefinitionId, ProjectId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::*;
use crate::sql::SqlRequest;
use crate::{AnalyticsError, Result};

/// Tiles a dashboard holds at most.
pub const MAX_TILES: usize = 50;
/// Columns of a dashboard's grid.
pub const GRID_COLUMNS: u32 = 12;

/// A saved query: the body of the query route of its `kind`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SavedQuery {
    Trends(TrendsQuery),
    Funnels(FunnelQuery),
    Retention(RetentionQuery),
    Stickiness(StickinessQuery),
    Lifecycle(LifecycleQuery),
    Sql(SqlRequest),
    /// Events of the last `minutes` (the real-time counters), 1 to 1440.
    LiveCount {
        #[serde(default = "default_live_minutes")]
        minutes: u32,
    },
}

fn default_live_minutes() -> u32 {
    30
}

/// How an insight is drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Chart {
    /// Lines over time (trends, stickiness).
    #[default]
    Line,
    /// Bars over time (trends, lifecycle), or a funnel's steps.
    Bar,
    /// One number: the series' total over the range.
    Number,
    /// The numbers alone.
    Table,
    /// A heat table (retention).
    Heatmap,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Display {
    #[serde(default)]
    pub chart: Chart,
}

/// The body of a saved insight.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InsightDefinition {
    pub query: SavedQuery,
    #[serde(default)]
    pub display: Display,
}

impl InsightDefinition {
    /// Checks what needs no data: the query's own limits and a chart its kind can draw.
    pub fn check(&self) -> Result<()> {
        match &self.query {
            SavedQuery::Trends(q) => check_series_count(&q.series)?,
            SavedQuery::Stickiness(q) => check_series_count(&q.series)?,
            SavedQuery::Funnels(q) if q.steps.len() < 2 => {
                return Err(AnalyticsError::invalid(
                    "query.steps",
                    "a funnel needs at least 2 steps",
                ))
            }
            SavedQuery::Sql(q) if q.query.trim().is_empty() => {
                return Err(AnalyticsError::invalid("query.query", "must not be empty"))
            }
            SavedQuery::LiveCount { minutes } if !(1..=1440).contains(minutes) => {
                return Err(AnalyticsError::invalid(
                    "query.minutes",
                    "must be 1 to 1440",
                ))
            }
            _ => {}
        }
        let allowed: &[Chart] = match &self.query {
            SavedQuery::Trends(_) => &[Chart::Line, Chart::Bar, Chart::Number, Chart::Table],
            SavedQuery::Stickiness(_) | SavedQuery::Lifecycle(_) => {
                &[Chart::Line, Chart::Bar, Chart::Table]
            }
            SavedQuery::Funnels(_) => &[Chart::Bar, Chart::Table],
            SavedQuery::Retention(_) => &[Chart::Heatmap, Chart::Table],
            SavedQuery::Sql(_) => &[Chart::Table],
            SavedQuery::LiveCount { .. } => &[Chart::Number],
        };
        if !allowed.contains(&self.display.chart) {
            return Err(AnalyticsError::invalid(
                "display.chart",
                format!(
                    "this query kind is drawn as one of: {}",
                    allowed
                        .iter()
                        .map(|c| serde_json::to_value(c)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(())
    }

    pub fn from_definition(d: &Definition) -> Result<Self> {
        serde_json::from_value(d.body.clone())
            .map_err(|e| AnalyticsError::invalid("body", format!("stored insight: {e}")))
    }
}

/// One insight on a dashboard, at a place of its 12-column grid.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tile {
    #[schema(value_type = String, format = Uuid)]
    pub insight_id: DefinitionId,
    /// Column, 0 to 11.
    #[serde(default)]
    pub x: u32,
    /// Row.
    #[serde(default)]
    pub y: u32,
    /// Columns wide, 1 to 12 (default 6).
    #[serde(default = "default_width")]
    pub w: u32,
    /// Rows high, 1 to 12 (default 4).
    #[serde(default = "default_height")]
    pub h: u32,
}

fn default_width() -> u32 {
    6
}

fn default_height() -> u32 {
    4
}

/// The body of a dashboard.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DashboardDefinition {
    /// In reading order.
    #[serde(default)]
    pub tiles: Vec<Tile>,
    /// Overrides each insight's range when shown here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_range: Option<DateRange>,
    /// Added to each insight's conditions when shown here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<PropertyFilter>,
}

impl DashboardDefinition {
    /// Checks the grid; `insights` are the project's insight ids, which every tile must
    /// name.
    pub fn check(&self, insights: &[DefinitionId]) -> Result<()> {
        if self.tiles.len() > MAX_TILES {
            return Err(AnalyticsError::invalid(
                "tiles",
                format!("at most {MAX_TILES} tiles"),
            ));
        }
        for (i, t) in self.tiles.iter().enumerate() {
            if !insights.contains(&t.insight_id) {
                return Err(AnalyticsError::invalid(
                    format!("tiles[{i}].insight_id"),
                    "is not an insight of this project",
                ));
            }
            if !(1..=GRID_COLUMNS).contains(&t.w) || t.x + t.w > GRID_COLUMNS {
                return Err(AnalyticsError::invalid(
                    format!("tiles[{i}].w"),
                    format!("the tile must fit the {GRID_COLUMNS} columns (x + w <= {GRID_COLUMNS}, w >= 1)"),
                ));
            }
            if !(1..=12).contains(&t.h) {
                return Err(AnalyticsError::invalid(
                    format!("tiles[{i}].h"),
                    "must be 1 to 12",
                ));
            }
        }
        Ok(())
    }

    pub fn from_definition(d: &Definition) -> Result<Self> {
        serde_json::from_value(d.body.clone())
            .map_err(|e| AnalyticsError::invalid("body", format!("stored dashboard: {e}")))
    }
}

/// Name of the dashboard a new project starts with.
pub const OVERVIEW: &str = "Overview";

/// The overview a new project starts with: its insights (events per day, unique
/// persons per day, top events, live count), then the dashboard showing them.
pub fn overview(project: ProjectId, now: DateTime<Utc>) -> (Vec<Definition>, Definition) {
    let series = |math: Math| Series {
        event: None,
        math,
        ..Default::default()
    };
    let last_30_days = DateRange {
        from: Some("-30d".into()),
        to: None,
    };
    let trends = |series: Series, chart: Chart| InsightDefinition {
        query: SavedQuery::Trends(TrendsQuery {
            series: vec![series],
            interval: Interval::Day,
            date_range: last_30_days.clone(),
            ..Default::default()
        }),
        display: Display { chart },
    };
    let insights: Vec<(&str, &str, InsightDefinition)> = vec![
        (
            "Events per day",
            "Every event, per day, over the last 30 days.",
            trends(series(Math::Total), Chart::Line),
        ),
        (
            "Unique persons per day",
            "Persons with any event, per day, over the last 30 days.",
            trends(series(Math::UniquePersons), Chart::Line),
        ),
        (
            "Top events",
            "The most frequent event names over the last 30 days.",
            InsightDefinition {
                query: SavedQuery::Sql(SqlRequest {
                    query: "SELECT event, count(*) AS events FROM events \
                            WHERE timestamp >= now() - INTERVAL '30 days' \
                            GROUP BY event ORDER BY events DESC, event LIMIT 10"
                        .into(),
                }),
                display: Display {
                    chart: Chart::Table,
                },
            },
        ),
        (
            "Live events",
            "Events received in the last 30 minutes.",
            InsightDefinition {
                query: SavedQuery::LiveCount { minutes: 30 },
                display: Display {
                    chart: Chart::Number,
                },
            },
        ),
    ];
    let definitions: Vec<Definition> = insights
        .into_iter()
        .map(|(name, description, body)| Definition {
            id: DefinitionId::new(),
            project_id: project,
            kind: DefinitionKind::Insight,
            name: name.into(),
            description: description.into(),
            body: serde_json::to_value(body).unwrap_or_default(),
            member_count: None,
            computed_at: None,
            created_at: now,
            updated_at: now,
        })
        .collect();
    let places = [(0, 0), (6, 0), (0, 4), (6, 4)];
    let dashboard = DashboardDefinition {
        tiles: definitions
            .iter()
            .zip(places)
            .map(|(d, (x, y))| Tile {
                insight_id: d.id,
                x,
                y,
                w: 6,
                h: 4,
            })
            .collect(),
        date_range: None,
        properties: Vec::new(),
    };
    let dashboard = Definition {
        id: DefinitionId::new(),
        project_id: project,
        kind: DefinitionKind::Dashboard,
        name: OVERVIEW.into(),
        description: "What happens in this project, at a glance.".into(),
        body: serde_json::to_value(dashboard).unwrap_or_default(),
        member_count: None,
        computed_at: None,
        created_at: now,
        updated_at: now,
    };
    (definitions, dashboard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn insight(body: serde_json::Value) -> Result<InsightDefinition> {
        let parsed: InsightDefinition = serde_json::from_value(body)
            .map_err(|e| AnalyticsError::invalid("body", e.to_string()))?;
        parsed.check()?;
        Ok(parsed)
    }

    fn field(r: Result<InsightDefinition>) -> String {
        match r {
            Err(AnalyticsError::Invalid { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn an_insight_is_a_query_of_its_kind_with_a_chart_that_kind_can_draw() {
        let trends = insight(
            json!({"query": {"kind": "trends", "series": [{"event": "x"}]},
                                    "display": {"chart": "bar"}}),
        )
        .unwrap();
        assert!(matches!(trends.query, SavedQuery::Trends(_)));
        assert!(
            insight(json!({"query": {"kind": "funnels",
                                         "steps": [{"event": "a"}, {"event": "b"}]}}))
            .is_err(),
            "a funnel is not drawn as lines"
        );
        assert!(insight(json!({"query": {"kind": "funnels",
                                         "steps": [{"event": "a"}, {"event": "b"}]},
                               "display": {"chart": "bar"}}))
        .is_ok());
        assert_eq!(
            field(insight(json!({"query": {"kind": "retention",
                "start_event": {"event": "a"}, "return_event": {"event": "b"}},
                "display": {"chart": "line"}}))),
            "display.chart"
        );
        assert_eq!(
            field(insight(json!({"query": {"kind": "trends", "series": []}}))),
            "series"
        );
        assert_eq!(
            field(insight(
                json!({"query": {"kind": "live_count", "minutes": 0},
                                  "display": {"chart": "number"}})
            )),
            "query.minutes"
        );
        assert!(insight(json!({"query": {"kind": "nope"}})).is_err());
        assert!(
            insight(
                json!({"query": {"kind": "trends", "series": [{"event": "x"}],
                                         "bogus": 1}})
            )
            .is_err(),
            "unknown fields are refused"
        );
    }

    #[test]
    fn a_dashboards_tiles_name_insights_of_the_project_and_fit_the_grid() {
        let a = DefinitionId::new();
        let tile = |x, w| Tile {
            insight_id: a,
            x,
            y: 0,
            w,
            h: 4,
        };
        let ok = DashboardDefinition {
            tiles: vec![tile(0, 6), tile(6, 6)],
            ..Default::default()
        };
        assert!(ok.check(&[a]).is_ok());
        assert!(ok.check(&[]).is_err(), "an unknown insight");
        let wide = DashboardDefinition {
            tiles: vec![tile(8, 6)],
            ..Default::default()
        };
        assert!(
            matches!(wide.check(&[a]), Err(AnalyticsError::Invalid { field, .. }) if field == "tiles[0].w")
        );
    }

    #[test]
    fn a_new_project_has_an_overview_of_four_valid_insights() {
        let project = ProjectId::new();
        let (insights, dashboard) = overview(project, Utc::now());
        assert_eq!(insights.len(), 4);
        for d in &insights {
            InsightDefinition::from_definition(d)
                .unwrap()
                .check()
                .unwrap();
        }
        let ids: Vec<DefinitionId> = insights.iter().map(|d| d.id).collect();
        let body = DashboardDefinition::from_definition(&dashboard).unwrap();
        body.check(&ids).unwrap();
        assert_eq!(body.tiles.len(), 4);
        assert_eq!(dashboard.name, OVERVIEW);
    }
}
