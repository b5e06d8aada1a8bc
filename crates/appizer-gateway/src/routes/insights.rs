//! Saved insights (`/api/v1/projects/{project_id}/insights`) and dashboards
//! (`.../dashboards`): a query of any kind with its display, and an ordered grid of
//! insights with a date range and conditions overriding theirs. Every role reads;
//! analysts and admins write. A dashboard is answered with its insights, so a page
//! draws it from one request; a tile whose insight was deleted is answered without it.

use std::collections::HashMap;

use appizer_analytics::insight::{DashboardDefinition, Display, InsightDefinition, SavedQuery};
use appizer_analytics::{DateRange, PropertyFilter};
use appizer_core::definition::{Definition, DefinitionKind};
use appizer_core::{DefinitionId, ProjectId};
use appizer_storage::ProjectScope;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::definitions::{definition, delete, description};
use super::{validate_name, CallerProject};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct InsightView {
    #[schema(value_type = String, format = Uuid)]
    pub id: DefinitionId,
    pub name: String,
    pub description: String,
    /// The body of the query route of its `kind` (trends, funnels, retention,
    /// stickiness, lifecycle, sql) with `kind`, or `{"kind": "live_count", "minutes"}`.
    #[schema(value_type = Object)]
    pub query: SavedQuery,
    pub display: Display,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InsightList {
    pub insights: Vec<InsightView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInsight {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// The body of the query route of its `kind` (trends, funnels, retention,
    /// stickiness, lifecycle, sql) with `kind`, or `{"kind": "live_count", "minutes"}`.
    #[schema(value_type = Object)]
    pub query: SavedQuery,
    #[serde(default)]
    pub display: Display,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InsightChange {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub query: Option<SavedQuery>,
    #[serde(default)]
    pub display: Option<Display>,
}

/// A dashboard's tile, with its insight (absent when the insight was deleted).
#[derive(Debug, Serialize, ToSchema)]
pub struct TileView {
    #[schema(value_type = String, format = Uuid)]
    pub insight_id: DefinitionId,
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insight: Option<InsightView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardView {
    #[schema(value_type = String, format = Uuid)]
    pub id: DefinitionId,
    pub name: String,
    pub description: String,
    pub tiles: Vec<TileView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_range: Option<DateRange>,
    pub properties: Vec<PropertyFilter>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A dashboard as listed: its tiles without their insights.
#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardSummary {
    #[schema(value_type = String, format = Uuid)]
    pub id: DefinitionId,
    pub name: String,
    pub description: String,
    pub tiles: usize,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardList {
    pub dashboards: Vec<DashboardSummary>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDashboard {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// In reading order; each names an insight of the project.
    #[serde(default)]
    pub tiles: Vec<appizer_analytics::insight::Tile>,
    /// Overrides each insight's range when shown here.
    #[serde(default)]
    pub date_range: Option<DateRange>,
    /// Added to each insight's conditions when shown here.
    #[serde(default)]
    pub properties: Vec<PropertyFilter>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DashboardChange {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[serde(default)]
    pub tiles: Option<Vec<appizer_analytics::insight::Tile>>,
    /// `null` keeps the range; `{}` removes the override.
    #[serde(default)]
    pub date_range: Option<DateRange>,
    #[serde(default)]
    pub properties: Option<Vec<PropertyFilter>>,
}

fn insight_view(d: Definition) -> Result<InsightView, ApiError> {
    let body = InsightDefinition::from_definition(&d)?;
    Ok(InsightView {
        id: d.id,
        name: d.name,
        description: d.description,
        query: body.query,
        display: body.display,
        created_at: d.created_at,
        updated_at: d.updated_at,
    })
}

fn new_definition(
    scope: ProjectScope,
    kind: DefinitionKind,
    name: String,
    description: String,
    body: serde_json::Value,
) -> Definition {
    let now = Utc::now();
    Definition {
        id: DefinitionId::new(),
        project_id: scope.project(),
        kind,
        name,
        description,
        body,
        member_count: None,
        computed_at: None,
        created_at: now,
        updated_at: now,
    }
}

fn to_body(value: &impl Serialize) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value).map_err(|_| ApiError::internal())
}

/// The project's insights: what a dashboard's tiles are checked against and shown with
/// (read once per request).
async fn project_insights(
    state: &AppState,
    scope: ProjectScope,
) -> Result<Vec<Definition>, ApiError> {
    Ok(state
        .store
        .list_definitions(scope, DefinitionKind::Insight)
        .await?)
}

fn ids(insights: &[Definition]) -> Vec<DefinitionId> {
    insights.iter().map(|d| d.id).collect()
}

/// The dashboard `d` with its tiles' insights, from the project's `insights`.
fn dashboard_view(d: Definition, insights: Vec<Definition>) -> Result<DashboardView, ApiError> {
    let body = DashboardDefinition::from_definition(&d)?;
    let insights: HashMap<DefinitionId, Definition> =
        insights.into_iter().map(|i| (i.id, i)).collect();
    let tiles = body
        .tiles
        .into_iter()
        .map(|t| {
            let insight = insights
                .get(&t.insight_id)
                .cloned()
                .map(insight_view)
                .transpose()?;
            Ok(TileView {
                insight_id: t.insight_id,
                x: t.x,
                y: t.y,
                w: t.w,
                h: t.h,
                insight,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(DashboardView {
        id: d.id,
        name: d.name,
        description: d.description,
        tiles,
        date_range: body.date_range,
        properties: body.properties,
        created_at: d.created_at,
        updated_at: d.updated_at,
    })
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/insights", tag = "insights",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    responses((status = 200, body = InsightList), (status = 404, body = ErrorBody)))]
pub async fn list_insights(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
) -> ApiResult<Json<InsightList>> {
    let insights = state
        .store
        .list_definitions(scope, DefinitionKind::Insight)
        .await?
        .into_iter()
        .map(insight_view)
        .collect::<Result<_, _>>()?;
    Ok(Json(InsightList { insights }))
}

#[utoipa::path(post, path = "/api/v1/projects/{project_id}/insights", tag = "insights",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = NewInsight,
    responses((status = 201, body = InsightView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_insight(
    State(state): State<AppState>,
    CallerProject { caller, scope, .. }: CallerProject,
    ApiJson(body): ApiJson<NewInsight>,
) -> ApiResult<(StatusCode, Json<InsightView>)> {
    let name = validate_name("name", &body.name)?;
    let description = description(body.description)?;
    let insight = InsightDefinition {
        query: body.query,
        display: body.display,
    };
    insight.check()?;
    let d = new_definition(
        scope,
        DefinitionKind::Insight,
        name,
        description,
        to_body(&insight)?,
    );
    let audit = caller.audit(
        Some(scope.project()),
        "insight.create",
        "insight",
        d.id,
        json!({"name": d.name}),
    );
    state.store.create_definition(scope, &d, &audit).await?;
    Ok((StatusCode::CREATED, Json(insight_view(d)?)))
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/insights/{insight_id}", tag = "insights",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("insight_id" = String, Path, format = Uuid)),
    responses((status = 200, body = InsightView), (status = 404, body = ErrorBody)))]
pub async fn get_insight(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
    ApiPath((_, id)): ApiPath<(ProjectId, DefinitionId)>,
) -> ApiResult<Json<InsightView>> {
    let d = definition(&state, scope, DefinitionKind::Insight, id).await?;
    Ok(Json(insight_view(d)?))
}

#[utoipa::path(patch, path = "/api/v1/projects/{project_id}/insights/{insight_id}", tag = "insights",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("insight_id" = String, Path, format = Uuid)),
    request_body = InsightChange,
    responses((status = 200, body = InsightView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_insight(
    State(state): State<AppState>,
    CallerProject { caller, scope, .. }: CallerProject,
    ApiPath((_, id)): ApiPath<(ProjectId, DefinitionId)>,
    ApiJson(body): ApiJson<InsightChange>,
) -> ApiResult<Json<InsightView>> {
    let mut d = definition(&state, scope, DefinitionKind::Insight, id).await?;
    let mut insight = InsightDefinition::from_definition(&d)?;
    if let Some(name) = body.name {
        d.name = validate_name("name", &name)?;
    }
    if body.description.is_some() {
        d.description = description(body.description)?;
    }
    if let Some(query) = body.query {
        insight.query = query;
    }
    if let Some(display) = body.display {
        insight.display = display;
    }
    insight.check()?;
    d.body = to_body(&insight)?;
    d.updated_at = Utc::now();
    let audit = caller.audit(
        Some(scope.project()),
        "insight.update",
        "insight",
        d.id,
        json!({"name": d.name}),
    );
    if !state.store.update_definition(scope, &d, &audit).await? {
        return Err(ApiError::not_found("insight"));
    }
    Ok(Json(insight_view(d)?))
}

#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/insights/{insight_id}", tag = "insights",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("insight_id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_insight(
    State(state): State<AppState>,
    CallerProject { caller, scope, .. }: CallerProject,
    ApiPath((_, id)): ApiPath<(ProjectId, DefinitionId)>,
) -> ApiResult<StatusCode> {
    delete(&state, &caller, scope, DefinitionKind::Insight, id).await
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/dashboards", tag = "insights",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    responses((status = 200, body = DashboardList), (status = 404, body = ErrorBody)))]
pub async fn list_dashboards(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
) -> ApiResult<Json<DashboardList>> {
    let dashboards = state
        .store
        .list_definitions(scope, DefinitionKind::Dashboard)
        .await?
        .into_iter()
        .map(|d| {
            Ok(DashboardSummary {
                tiles: DashboardDefinition::from_definition(&d)?.tiles.len(),
                id: d.id,
                name: d.name,
                description: d.description,
                updated_at: d.updated_at,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(Json(DashboardList { dashboards }))
}

#[utoipa::path(post, path = "/api/v1/projects/{project_id}/dashboards", tag = "insights",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = NewDashboard,
    responses((status = 201, body = DashboardView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_dashboard(
    State(state): State<AppState>,
    CallerProject { caller, scope, .. }: CallerProject,
    ApiJson(body): ApiJson<NewDashboard>,
) -> ApiResult<(StatusCode, Json<DashboardView>)> {
    let name = validate_name("name", &body.name)?;
    let description = description(body.description)?;
    let dashboard = DashboardDefinition {
        tiles: body.tiles,
        date_range: body.date_range,
        properties: body.properties,
    };
    let insights = project_insights(&state, scope).await?;
    dashboard.check(&ids(&insights))?;
    let d = new_definition(
        scope,
        DefinitionKind::Dashboard,
        name,
        description,
        to_body(&dashboard)?,
    );
    let audit = caller.audit(
        Some(scope.project()),
        "dashboard.create",
        "dashboard",
        d.id,
        json!({"name": d.name}),
    );
    state.store.create_definition(scope, &d, &audit).await?;
    Ok((StatusCode::CREATED, Json(dashboard_view(d, insights)?)))
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/dashboards/{dashboard_id}", tag = "insights",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("dashboard_id" = String, Path, format = Uuid)),
    responses((status = 200, body = DashboardView), (status = 404, body = ErrorBody)))]
pub async fn get_dashboard(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
    ApiPath((_, id)): ApiPath<(ProjectId, DefinitionId)>,
) -> ApiResult<Json<DashboardView>> {
    let d = definition(&state, scope, DefinitionKind::Dashboard, id).await?;
    let insights = project_insights(&state, scope).await?;
    Ok(Json(dashboard_view(d, insights)?))
}

#[utoipa::path(patch, path = "/api/v1/projects/{project_id}/dashboards/{dashboard_id}", tag = "insights",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("dashboard_id" = String, Path, format = Uuid)),
    request_body = DashboardChange,
    responses((status = 200, body = DashboardView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_dashboard(
    State(state): State<AppState>,
    CallerProject { caller, scope, .. }: CallerProject,
    ApiPath((_, id)): ApiPath<(ProjectId, DefinitionId)>,
    ApiJson(body): ApiJson<DashboardChange>,
) -> ApiResult<Json<DashboardView>> {
    let mut d = definition(&state, scope, DefinitionKind::Dashboard, id).await?;
    let mut dashboard = DashboardDefinition::from_definition(&d)?;
    if let Some(name) = body.name {
        d.name = validate_name("name", &name)?;
    }
    if body.description.is_some() {
        d.description = description(body.description)?;
    }
    if let Some(tiles) = body.tiles {
        dashboard.tiles = tiles;
    }
    if let Some(range) = body.date_range {
        dashboard.date_range = (range.from.is_some() || range.to.is_some()).then_some(range);
    }
    if let Some(properties) = body.properties {
        dashboard.properties = properties;
    }
    let insights = project_insights(&state, scope).await?;
    dashboard.check(&ids(&insights))?;
    d.body = to_body(&dashboard)?;
    d.updated_at = Utc::now();
    let audit = caller.audit(
        Some(scope.project()),
        "dashboard.update",
        "dashboard",
        d.id,
        json!({"name": d.name}),
    );
    if !state.store.update_definition(scope, &d, &audit).await? {
        return Err(ApiError::not_found("dashboard"));
    }
    Ok(Json(dashboard_view(d, insights)?))
}

#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/dashboards/{dashboard_id}", tag = "insights",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("dashboard_id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_dashboard(
    State(state): State<AppState>,
    CallerProject { caller, scope, .. }: CallerProject,
    ApiPath((_, id)): ApiPath<(ProjectId, DefinitionId)>,
) -> ApiResult<StatusCode> {
    delete(&state, &caller, scope, DefinitionKind::Dashboard, id).await
}
