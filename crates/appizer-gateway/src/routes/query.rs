//! Analytics queries: `POST /api/v1/projects/{project_id}/query/<kind>` with a JSON
//! query (`trends`, `funnels`, `retention`, `stickiness`, `lifecycle`), read-only SQL
//! (`sql`) and query plans (`explain`). Evaluated by `appizer-analytics` in the
//! project's time zone; malformed queries get 400 naming the field, queries past their
//! memory or time limit 422.

use appizer_analytics::sql::{ExplainRequest, ExplainResult, SqlRequest, SqlResult};
use appizer_analytics::{
    AnalyticsError, FunnelQuery, FunnelResult, LifecycleQuery, LifecycleResult, QueryProject,
    RetentionQuery, RetentionResult, StickinessQuery, StickinessResult, TrendsPersons,
    TrendsPersonsQuery, TrendsQuery, TrendsResult,
};
use appizer_core::error_code::ErrorCode;
use axum::extract::State;
use axum::Json;
use chrono::Utc;

use super::CallerProject;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

impl From<AnalyticsError> for ApiError {
    fn from(e: AnalyticsError) -> Self {
        match e {
            AnalyticsError::Invalid { field, rule } => ApiError::invalid(field, rule),
            AnalyticsError::Limit(message) => ApiError::new(ErrorCode::QueryLimitExceeded, message),
            AnalyticsError::Store(e) => e.into(),
            other => {
                tracing::error!(error = %other, "analytics query failed");
                ApiError::internal()
            }
        }
    }
}

#[utoipa::path(post, path = "/api/v1/projects/{project_id}/query/trends", tag = "analytics", operation_id = "query_trends",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = TrendsQuery,
    responses((status = 200, body = TrendsResult), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn trends(
    State(state): State<AppState>,
    CallerProject { scope, project, .. }: CallerProject,
    ApiJson(body): ApiJson<TrendsQuery>,
) -> ApiResult<Json<TrendsResult>> {
    Ok(Json(
        state
            .events
            .analytics
            .trends(&QueryProject::of(scope, &project), &body, Utc::now())
            .await?,
    ))
}

/// The persons behind one value of a trends answer (a series, a bucket, a breakdown
/// value), most events first.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/query/trends/persons", tag = "analytics", operation_id = "query_trends_persons",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = TrendsPersonsQuery,
    responses((status = 200, body = TrendsPersons), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn trends_persons(
    State(state): State<AppState>,
    CallerProject { scope, project, .. }: CallerProject,
    ApiJson(body): ApiJson<TrendsPersonsQuery>,
) -> ApiResult<Json<TrendsPersons>> {
    Ok(Json(
        state
            .events
            .analytics
            .trends_persons(&QueryProject::of(scope, &project), &body, Utc::now())
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/projects/{project_id}/query/funnels", tag = "analytics", operation_id = "query_funnels",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = FunnelQuery,
    responses((status = 200, body = FunnelResult), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn funnels(
    State(state): State<AppState>,
    CallerProject { scope, project, .. }: CallerProject,
    ApiJson(body): ApiJson<FunnelQuery>,
) -> ApiResult<Json<FunnelResult>> {
    Ok(Json(
        state
            .events
            .analytics
            .funnel(&QueryProject::of(scope, &project), &body, Utc::now())
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/projects/{project_id}/query/retention", tag = "analytics", operation_id = "query_retention",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = RetentionQuery,
    responses((status = 200, body = RetentionResult), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn retention(
    State(state): State<AppState>,
    CallerProject { scope, project, .. }: CallerProject,
    ApiJson(body): ApiJson<RetentionQuery>,
) -> ApiResult<Json<RetentionResult>> {
    Ok(Json(
        state
            .events
            .analytics
            .retention(&QueryProject::of(scope, &project), &body, Utc::now())
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/projects/{project_id}/query/stickiness", tag = "analytics", operation_id = "query_stickiness",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = StickinessQuery,
    responses((status = 200, body = StickinessResult), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn stickiness(
    State(state): State<AppState>,
    CallerProject { scope, project, .. }: CallerProject,
    ApiJson(body): ApiJson<StickinessQuery>,
) -> ApiResult<Json<StickinessResult>> {
    Ok(Json(
        state
            .events
            .analytics
            .stickiness(&QueryProject::of(scope, &project), &body, Utc::now())
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/projects/{project_id}/query/lifecycle", tag = "analytics", operation_id = "query_lifecycle",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = LifecycleQuery,
    responses((status = 200, body = LifecycleResult), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn lifecycle(
    State(state): State<AppState>,
    CallerProject { scope, project, .. }: CallerProject,
    ApiJson(body): ApiJson<LifecycleQuery>,
) -> ApiResult<Json<LifecycleResult>> {
    Ok(Json(
        state
            .events
            .analytics
            .lifecycle(&QueryProject::of(scope, &project), &body, Utc::now())
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/projects/{project_id}/query/sql", tag = "analytics", operation_id = "query_sql",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = SqlRequest,
    responses((status = 200, body = SqlResult), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn sql(
    State(state): State<AppState>,
    CallerProject { scope, project, .. }: CallerProject,
    ApiJson(body): ApiJson<SqlRequest>,
) -> ApiResult<Json<SqlResult>> {
    Ok(Json(
        state
            .events
            .analytics
            .sql(&QueryProject::of(scope, &project), &body.query)
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/projects/{project_id}/query/explain", tag = "analytics", operation_id = "query_explain",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = ExplainRequest,
    responses((status = 200, body = ExplainResult), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn explain(
    State(state): State<AppState>,
    CallerProject { scope, project, .. }: CallerProject,
    ApiJson(body): ApiJson<ExplainRequest>,
) -> ApiResult<Json<ExplainResult>> {
    Ok(Json(
        state
            .events
            .analytics
            .explain(&QueryProject::of(scope, &project), &body, Utc::now())
            .await?,
    ))
}
