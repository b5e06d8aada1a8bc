//! Custom metrics (`/api/v1/projects/{project_id}/metrics`): series, formula and
//! conditions saved under a name, evaluable alone and usable as a trends series by
//! `metric_id`. Changes are audited in the same transaction.

use appizer_analytics::saved::MetricDefinition;
use appizer_analytics::{
    Breakdown, DateRange, Interval, PropertyFilter, QueryProject, Series, TrendsQuery, TrendsResult,
};
use appizer_core::definition::{Definition, DefinitionKind};
use appizer_core::{DefinitionId, ProjectId};
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
pub struct MetricView {
    #[schema(value_type = String, format = Uuid)]
    pub id: DefinitionId,
    pub name: String,
    pub description: String,
    #[serde(flatten)]
    pub definition: MetricDefinition,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MetricList {
    pub metrics: Vec<MetricView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMetric {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[schema(min_items = 1, max_items = 20)]
    pub series: Vec<Series>,
    #[serde(default)]
    pub formula: Option<String>,
    #[serde(default)]
    pub properties: Vec<PropertyFilter>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricChange {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(min_items = 1, max_items = 20)]
    pub series: Option<Vec<Series>>,
    /// `""` removes the formula.
    #[serde(default)]
    pub formula: Option<String>,
    #[serde(default)]
    pub properties: Option<Vec<PropertyFilter>>,
}

/// How to evaluate a metric: like a trends query of that one series.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateMetric {
    #[serde(default)]
    pub interval: Interval,
    #[serde(default)]
    pub date_range: DateRange,
    #[serde(default)]
    pub properties: Vec<PropertyFilter>,
    #[serde(default)]
    pub segments: Vec<String>,
    #[serde(default)]
    pub breakdown: Option<Breakdown>,
    #[serde(default)]
    pub compare: bool,
}

fn metric_view(d: Definition) -> Result<MetricView, ApiError> {
    Ok(MetricView {
        definition: MetricDefinition::from_definition(&d)?,
        id: d.id,
        name: d.name,
        description: d.description,
        created_at: d.created_at,
        updated_at: d.updated_at,
    })
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/metrics", tag = "analytics", operation_id = "list_metrics",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    responses((status = 200, body = MetricList), (status = 404, body = ErrorBody)))]
pub async fn list_metrics(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
) -> ApiResult<Json<MetricList>> {
    let metrics = state
        .store
        .list_definitions(scope, DefinitionKind::Metric)
        .await?
        .into_iter()
        .map(metric_view)
        .collect::<Result<_, _>>()?;
    Ok(Json(MetricList { metrics }))
}

#[utoipa::path(post, path = "/api/v1/projects/{project_id}/metrics", tag = "analytics", operation_id = "create_metric",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = NewMetric,
    responses((status = 201, body = MetricView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_metric(
    State(state): State<AppState>,
    CallerProject { caller, scope, .. }: CallerProject,
    ApiJson(body): ApiJson<NewMetric>,
) -> ApiResult<(StatusCode, Json<MetricView>)> {
    let name = validate_name("name", &body.name)?;
    let description = description(body.description)?;
    let metric = MetricDefinition {
        series: body.series,
        formula: body.formula,
        properties: body.properties,
    };
    metric.check()?;
    let now = Utc::now();
    let d = Definition {
        id: DefinitionId::new(),
        project_id: scope.project(),
        kind: DefinitionKind::Metric,
        name,
        description,
        body: serde_json::to_value(&metric).map_err(|_| ApiError::internal())?,
        member_count: None,
        computed_at: None,
        created_at: now,
        updated_at: now,
    };
    let audit = caller.audit(
        Some(scope.project()),
        "metric.create",
        "metric",
        d.id,
        json!({"name": d.name}),
    );
    state.store.create_definition(scope, &d, &audit).await?;
    Ok((StatusCode::CREATED, Json(metric_view(d)?)))
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/metrics/{metric_id}", tag = "analytics", operation_id = "get_metric",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("metric_id" = String, Path, format = Uuid)),
    responses((status = 200, body = MetricView), (status = 404, body = ErrorBody)))]
pub async fn get_metric(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
    ApiPath((_, metric_id)): ApiPath<(ProjectId, DefinitionId)>,
) -> ApiResult<Json<MetricView>> {
    let d = definition(&state, scope, DefinitionKind::Metric, metric_id).await?;
    Ok(Json(metric_view(d)?))
}

#[utoipa::path(patch, path = "/api/v1/projects/{project_id}/metrics/{metric_id}", tag = "analytics", operation_id = "update_metric",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("metric_id" = String, Path, format = Uuid)),
    request_body = MetricChange,
    responses((status = 200, body = MetricView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_metric(
    State(state): State<AppState>,
    CallerProject { caller, scope, .. }: CallerProject,
    ApiPath((_, metric_id)): ApiPath<(ProjectId, DefinitionId)>,
    ApiJson(body): ApiJson<MetricChange>,
) -> ApiResult<Json<MetricView>> {
    let mut d = definition(&state, scope, DefinitionKind::Metric, metric_id).await?;
    let mut metric = MetricDefinition::from_definition(&d)?;
    if let Some(name) = body.name {
        d.name = validate_name("name", &name)?;
    }
    if body.description.is_some() {
        d.description = description(body.description)?;
    }
    if let Some(series) = body.series {
        metric.series = series;
    }
    if let Some(formula) = body.formula {
        metric.formula = (!formula.trim().is_empty()).then_some(formula);
    }
    if let Some(properties) = body.properties {
        metric.properties = properties;
    }
    metric.check()?;
    d.body = serde_json::to_value(&metric).map_err(|_| ApiError::internal())?;
    d.updated_at = Utc::now();
    let audit = caller.audit(
        Some(scope.project()),
        "metric.update",
        "metric",
        d.id,
        json!({"name": d.name}),
    );
    if !state.store.update_definition(scope, &d, &audit).await? {
        return Err(ApiError::not_found("metric"));
    }
    Ok(Json(metric_view(d)?))
}

#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/metrics/{metric_id}", tag = "analytics", operation_id = "delete_metric",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("metric_id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_metric(
    State(state): State<AppState>,
    CallerProject { caller, scope, .. }: CallerProject,
    ApiPath((_, metric_id)): ApiPath<(ProjectId, DefinitionId)>,
) -> ApiResult<StatusCode> {
    delete(&state, &caller, scope, DefinitionKind::Metric, metric_id).await
}

#[utoipa::path(post, path = "/api/v1/projects/{project_id}/metrics/{metric_id}/evaluate", tag = "analytics", operation_id = "evaluate_metric",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("metric_id" = String, Path, format = Uuid)),
    request_body = EvaluateMetric,
    responses((status = 200, body = TrendsResult), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn evaluate_metric(
    State(state): State<AppState>,
    CallerProject { scope, project, .. }: CallerProject,
    ApiPath((_, metric_id)): ApiPath<(ProjectId, DefinitionId)>,
    ApiJson(body): ApiJson<EvaluateMetric>,
) -> ApiResult<Json<TrendsResult>> {
    let project = QueryProject::of(scope, &project);
    definition(&state, scope, DefinitionKind::Metric, metric_id).await?;
    let query = TrendsQuery {
        series: vec![Series {
            metric_id: Some(metric_id.to_string()),
            ..Default::default()
        }],
        interval: body.interval,
        date_range: body.date_range,
        properties: body.properties,
        segments: body.segments,
        breakdown: body.breakdown,
        formula: None,
        compare: body.compare,
    };
    Ok(Json(
        state
            .events
            .analytics
            .trends(&project, &query, Utc::now())
            .await?,
    ))
}
