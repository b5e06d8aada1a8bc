//! Campaigns (`/api/v1/projects/{project_id}/campaigns`): create, list, read, change and
//! delete; the actions `schedule`, `pause`, `resume` and `cancel`; `preview` of an
//! audience and its renderings before anything is sent; `test-send` to chosen devices.
//! What a campaign must be, what may change when and the state table are
//! `appizer_push::campaign`'s; these handlers decode and answer.
//!
//! A campaign is answered as it is written: its name and definition fields at the top
//! level, with its id, state, version and times. A change names the `version` it read
//! (optional): a campaign changed since answers 409 with the version it is at.

use appizer_analytics::QueryProject;
use appizer_core::push::{CampaignFilter, CampaignRecord, CampaignState};
use appizer_core::{CampaignId, DeviceId, ErrorCode, ProjectId};
use appizer_push::campaign::definition::Definition;
use appizer_push::campaign::report::{Report, RunSummary};
use appizer_push::campaign::service::{
    stored_definition, Act, CampaignError, Change, Preview, PreviewRequest, TestSent,
    MAX_PREVIEW_SAMPLE,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::{validate_name, Caller, CallerProject};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{decode_json, decode_value, ApiPath, ApiQuery};
use crate::state::AppState;

pub const DEFAULT_PAGE: u32 = 100;
pub const MAX_PAGE: u32 = 1_000;

/// A campaign as stored: its definition's fields beside these.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignView {
    #[schema(value_type = String, format = Uuid)]
    pub id: CampaignId,
    pub name: String,
    /// draft, scheduled, running, paused, completed or cancelled.
    #[schema(value_type = String)]
    pub state: CampaignState,
    /// Name it in a change to be sure nothing changed since it was read.
    pub version: u64,
    #[serde(flatten)]
    pub definition: Definition,
    /// Its runs so far, by due time (a campaign read alone; not in listings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<Vec<RunSummary>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignPage {
    pub campaigns: Vec<CampaignView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A new campaign: a name and its definition's fields.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewCampaign {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(flatten)]
    pub definition: Definition,
}

/// A change: any of the name and the definition's top-level fields, each replacing
/// the stored one whole (`null` clears an optional one).
#[derive(Debug, Deserialize, ToSchema)]
pub struct CampaignChange {
    /// The version read; a campaign changed since answers 409.
    pub version: Option<u64>,
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// Any top-level field of a campaign's definition (`audience`, `when`,
    /// `variants`, `pacing`, ...).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub fields: Map<String, Value>,
}

/// The body of an action: optionally the version read.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    pub version: Option<u64>,
}

/// A preview: a definition's fields (a saved campaign's with `campaign_id`), and what
/// to render.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PreviewBody {
    /// Preview this saved campaign (its split too); its fields given here replace the
    /// saved ones.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub campaign_id: Option<CampaignId>,
    /// Persons to render each variant for (default 3, at most 20).
    pub sample: Option<usize>,
    /// The trigger event's properties, for templates that read `event`.
    #[schema(value_type = Option<Object>)]
    pub event: Option<Map<String, Value>>,
    /// Ignored: a preview needs no name.
    pub name: Option<String>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub fields: Map<String, Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestSendBody {
    /// 1 to 20 devices of the project.
    #[schema(value_type = Vec<String>)]
    pub device_ids: Vec<DeviceId>,
    /// A variant's name (default: the first).
    pub variant: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestSends {
    pub sent: Vec<TestSent>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CampaignQuery {
    /// Only campaigns in this state.
    pub state: Option<String>,
    /// Campaigns per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// A campaign's request and answer carry the definition's fields beside their own;
/// the definition's schema, which refuses unknown fields on its own, must not refuse
/// them there (the server still refuses every field neither names).
pub fn document(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{RefOr, Schema};
    if let Some(components) = doc.components.as_mut() {
        if let Some(RefOr::T(Schema::Object(definition))) = components.schemas.get_mut("Definition")
        {
            definition.additional_properties = None;
        }
    }
}

fn campaign_error(e: CampaignError) -> ApiError {
    match e {
        CampaignError::Refused(r) => ApiError::invalid(r.field, r.rule),
        CampaignError::Missing => ApiError::not_found("campaign"),
        CampaignError::Conflict { message, current } => ApiError::new(
            ErrorCode::Conflict,
            format!(
                "{message} (the campaign is {} at version {})",
                current.state.as_str(),
                current.version
            ),
        ),
        CampaignError::Store(e) => e.into(),
        CampaignError::Analytics(e) => e.into(),
    }
}

fn view(record: CampaignRecord) -> ApiResult<CampaignView> {
    let definition = stored_definition(&record)?;
    Ok(CampaignView {
        id: record.id,
        name: record.name,
        state: record.state,
        version: record.version,
        definition,
        runs: None,
        created_at: record.created_at,
        updated_at: record.updated_at,
    })
}

/// Now, to the millisecond (as stored): an answer says what a later read says.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default()
}

fn auditor(
    caller: &Caller,
    project: ProjectId,
) -> impl Fn(&str, CampaignId, Value) -> appizer_core::tenancy::NewAuditEntry + Send + Sync + '_ {
    move |action, id, details| caller.audit(Some(project), action, "campaign", id, details)
}

/// The body's object, or a 400 naming `body`.
fn object(body: &[u8]) -> ApiResult<Map<String, Value>> {
    match decode_json::<Value>(body)? {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::invalid("body", "must be a JSON object")),
    }
}

/// List a project's campaigns in creation order, optionally in one state.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/campaigns", tag = "campaigns", operation_id = "list_campaigns",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), CampaignQuery),
    responses((status = 200, body = CampaignPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    CallerProject { scope, project, .. }: CallerProject,
    ApiQuery(query): ApiQuery<CampaignQuery>,
) -> ApiResult<Json<CampaignPage>> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid(
            "limit",
            format!("must be 1 to {MAX_PAGE}"),
        ));
    }
    let filter = CampaignFilter {
        state: query
            .state
            .as_deref()
            .map(|s| {
                CampaignState::parse(s).ok_or_else(|| {
                    ApiError::invalid(
                        "state",
                        "one of draft, scheduled, running, paused, completed, cancelled",
                    )
                })
            })
            .transpose()?,
        after: query
            .cursor
            .as_deref()
            .map(|c| {
                c.parse::<CampaignId>()
                    .map_err(|_| ApiError::invalid("cursor", "a next_cursor of a previous page"))
            })
            .transpose()?,
        limit: limit + 1,
    };
    let project = QueryProject::of(scope, &project);
    let mut found = state
        .push
        .campaigns
        .list(&project, &filter)
        .await
        .map_err(campaign_error)?;
    let next_cursor = (found.len() > limit as usize).then(|| {
        found.truncate(limit as usize);
        found.last().map(|c| c.id.to_string()).unwrap_or_default()
    });
    Ok(Json(CampaignPage {
        campaigns: found.into_iter().map(view).collect::<ApiResult<_>>()?,
        next_cursor,
    }))
}

/// Create a campaign, as a draft: its definition is checked whole (templates,
/// audience, schedule, split, goal, winner settings, payload sizes) against the
/// project's segments and metrics.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/campaigns", tag = "campaigns", operation_id = "create_campaign",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = NewCampaign,
    responses((status = 201, body = CampaignView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    CallerProject {
        caller,
        scope,
        project,
    }: CallerProject,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<CampaignView>)> {
    let mut fields = object(&body)?;
    let name = match fields.remove("name") {
        Some(Value::String(name)) => validate_name("name", &name)?,
        Some(_) => return Err(ApiError::invalid("name", "must be a string")),
        None => return Err(ApiError::invalid("name", "missing field `name`")),
    };
    let definition: Definition = decode_value(Value::Object(fields))?;
    let project = QueryProject::of(scope, &project);
    let record = state
        .push
        .campaigns
        .create(
            &project,
            name,
            definition,
            &auditor(&caller, scope.project()),
            now(),
        )
        .await
        .map_err(campaign_error)?;
    Ok((StatusCode::CREATED, Json(view(record)?)))
}

/// A campaign.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/campaigns/{campaign_id}", tag = "campaigns", operation_id = "get_campaign",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("campaign_id" = String, Path, format = Uuid)),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    CallerProject { scope, project, .. }: CallerProject,
    ApiPath((_, id)): ApiPath<(ProjectId, CampaignId)>,
) -> ApiResult<Json<CampaignView>> {
    let project = QueryProject::of(scope, &project);
    let campaigns = &state.push.campaigns;
    let record = campaigns.get(&project, id).await.map_err(campaign_error)?;
    let runs = campaigns.runs(&project, id).await.map_err(campaign_error)?;
    let mut answer = view(record)?;
    answer.runs = Some(runs.iter().map(RunSummary::from).collect());
    Ok(Json(answer))
}

/// Change a campaign: a draft's every field; a scheduled, running or paused
/// campaign's name and pacing; a completed or cancelled one's name. Each top-level
/// field given replaces the stored one.
#[utoipa::path(patch, path = "/api/v1/projects/{project_id}/campaigns/{campaign_id}", tag = "campaigns", operation_id = "update_campaign",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("campaign_id" = String, Path, format = Uuid)),
    request_body = CampaignChange,
    responses((status = 200, body = CampaignView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    CallerProject {
        caller,
        scope,
        project,
    }: CallerProject,
    ApiPath((_, id)): ApiPath<(ProjectId, CampaignId)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<CampaignView>> {
    let mut fields = object(&body)?;
    let version = match fields.remove("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| ApiError::invalid("version", "must be a whole number"))?,
        ),
    };
    let name = match fields.remove("name") {
        None => None,
        Some(Value::String(name)) => Some(validate_name("name", &name)?),
        Some(_) => return Err(ApiError::invalid("name", "must be a string")),
    };
    let project = QueryProject::of(scope, &project);
    let campaigns = &state.push.campaigns;
    let definition = if fields.is_empty() {
        None
    } else {
        let record = campaigns.get(&project, id).await.map_err(campaign_error)?;
        let Value::Object(mut merged) = record.definition else {
            return Err(ApiError::internal());
        };
        for (key, value) in fields {
            merged.insert(key, value);
        }
        Some(decode_value::<Definition>(Value::Object(merged))?)
    };
    let record = campaigns
        .update(
            &project,
            id,
            Change {
                version,
                name,
                definition,
            },
            &auditor(&caller, scope.project()),
            now(),
        )
        .await
        .map_err(campaign_error)?;
    Ok(Json(view(record)?))
}

/// Delete a draft, completed or cancelled campaign (cancel a live one first).
#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/campaigns/{campaign_id}", tag = "campaigns", operation_id = "delete_campaign",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("campaign_id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    CallerProject {
        caller,
        scope,
        project,
    }: CallerProject,
    ApiPath((_, id)): ApiPath<(ProjectId, CampaignId)>,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    let version = action_body(&body)?.version;
    let project = QueryProject::of(scope, &project);
    state
        .push
        .campaigns
        .delete(&project, id, version, &auditor(&caller, scope.project()))
        .await
        .map_err(campaign_error)?;
    Ok(StatusCode::NO_CONTENT)
}

fn action_body(body: &[u8]) -> ApiResult<ActionBody> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ActionBody::default());
    }
    decode_json(body)
}

async fn act(
    state: AppState,
    caller_project: CallerProject,
    id: CampaignId,
    act: Act,
    body: &[u8],
) -> ApiResult<Json<CampaignView>> {
    let CallerProject {
        caller,
        scope,
        project,
    } = caller_project;
    let version = action_body(body)?.version;
    let project = QueryProject::of(scope, &project);
    let record = state
        .push
        .campaigns
        .act(
            &project,
            id,
            act,
            version,
            &auditor(&caller, scope.project()),
            now(),
        )
        .await
        .map_err(campaign_error)?;
    Ok(Json(view(record)?))
}

/// Schedule a draft: it sends when its `when` says (now: at once). Needs a provider
/// for one of its platforms and a time still ahead.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/campaigns/{campaign_id}/schedule", tag = "campaigns", operation_id = "schedule_campaign",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("campaign_id" = String, Path, format = Uuid)),
    request_body(content = Option<ActionBody>),
    responses((status = 200, body = CampaignView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn schedule(
    State(state): State<AppState>,
    caller: CallerProject,
    ApiPath((_, id)): ApiPath<(ProjectId, CampaignId)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<CampaignView>> {
    act(state, caller, id, Act::Schedule, &body).await
}

/// Pause a scheduled or running campaign: nothing more is sent until it is resumed.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/campaigns/{campaign_id}/pause", tag = "campaigns", operation_id = "pause_campaign",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("campaign_id" = String, Path, format = Uuid)),
    request_body(content = Option<ActionBody>),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn pause(
    State(state): State<AppState>,
    caller: CallerProject,
    ApiPath((_, id)): ApiPath<(ProjectId, CampaignId)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<CampaignView>> {
    act(state, caller, id, Act::Pause, &body).await
}

/// Resume a paused campaign where it stopped, sending nothing twice.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/campaigns/{campaign_id}/resume", tag = "campaigns", operation_id = "resume_campaign",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("campaign_id" = String, Path, format = Uuid)),
    request_body(content = Option<ActionBody>),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resume(
    State(state): State<AppState>,
    caller: CallerProject,
    ApiPath((_, id)): ApiPath<(ProjectId, CampaignId)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<CampaignView>> {
    act(state, caller, id, Act::Resume, &body).await
}

/// Cancel a campaign that is not completed: what was not sent never is.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/campaigns/{campaign_id}/cancel", tag = "campaigns", operation_id = "cancel_campaign",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("campaign_id" = String, Path, format = Uuid)),
    request_body(content = Option<ActionBody>),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: CallerProject,
    ApiPath((_, id)): ApiPath<(ProjectId, CampaignId)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<CampaignView>> {
    act(state, caller, id, Act::Cancel, &body).await
}

/// Preview a campaign before sending: its audience's persons and devices per
/// platform, persons per variant and control, and each variant rendered for the first
/// persons. Sends nothing.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/campaigns/preview", tag = "campaigns", operation_id = "preview_campaign",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = PreviewBody,
    responses((status = 200, body = Preview), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn preview(
    State(state): State<AppState>,
    CallerProject { scope, project, .. }: CallerProject,
    body: axum::body::Bytes,
) -> ApiResult<Json<Preview>> {
    let mut fields = object(&body)?;
    let campaign = match fields.remove("campaign_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            decode_value::<CampaignId>(v)
                .map_err(|_| ApiError::invalid("campaign_id", "must be a campaign id"))?,
        ),
    };
    let sample = match fields.remove("sample") {
        None | Some(Value::Null) => 3,
        Some(v) => match v.as_u64() {
            Some(n) if n as usize <= MAX_PREVIEW_SAMPLE => n as usize,
            _ => {
                return Err(ApiError::invalid(
                    "sample",
                    format!("must be 0 to {MAX_PREVIEW_SAMPLE}"),
                ))
            }
        },
    };
    let event = match fields.remove("event") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(_) => {
            return Err(ApiError::invalid(
                "event",
                "must be an object of properties",
            ))
        }
    };
    fields.remove("name");
    let project = QueryProject::of(scope, &project);
    let campaigns = &state.push.campaigns;
    let mut merged = Map::new();
    if let Some(id) = campaign {
        let record = campaigns.get(&project, id).await.map_err(|e| match e {
            CampaignError::Missing => {
                ApiError::invalid("campaign_id", "no such campaign in this project")
            }
            other => campaign_error(other),
        })?;
        if let Value::Object(stored) = record.definition {
            merged = stored;
        }
    }
    merged.extend(fields);
    let definition: Definition = decode_value(Value::Object(merged))?;
    let request = PreviewRequest {
        sample,
        event,
        campaign,
    };
    let preview = campaigns
        .preview(&project, &definition, &request, Utc::now())
        .await
        .map_err(campaign_error)?;
    Ok(Json(preview))
}

/// Send a variant to chosen devices now, rendered for each device's person; not part
/// of the campaign's figures.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/campaigns/{campaign_id}/test-send", tag = "campaigns", operation_id = "test_send_campaign",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("campaign_id" = String, Path, format = Uuid)),
    request_body = TestSendBody,
    responses((status = 202, body = TestSends), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn test_send(
    State(state): State<AppState>,
    CallerProject { scope, project, .. }: CallerProject,
    ApiPath((_, id)): ApiPath<(ProjectId, CampaignId)>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<TestSends>)> {
    let body: TestSendBody = decode_json(&body)?;
    let project = QueryProject::of(scope, &project);
    let sent = state
        .push
        .campaigns
        .test_send(
            &project,
            id,
            &body.device_ids,
            body.variant.as_deref(),
            now(),
        )
        .await
        .map_err(campaign_error)?;
    Ok((StatusCode::ACCEPTED, Json(TestSends { sent })))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// One run's key (a recurring campaign's occurrence); absent: every run together.
    pub run: Option<String>,
}

/// A campaign's report: per variant and for the control, persons assigned, sent,
/// failed, delivered, opened and converted, their rates with 95% intervals, lift over
/// the control with a two-proportion test, a chi-squared test across variants, and
/// whether the sample is large enough to call. Computed from the events by the
/// analytics engine (as funnels), so a funnel over the same events answers the same.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/campaigns/{campaign_id}/report", tag = "campaigns", operation_id = "campaign_report",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("campaign_id" = String, Path, format = Uuid), ReportQuery),
    responses((status = 200, body = Report), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn report(
    State(state): State<AppState>,
    CallerProject { scope, project, .. }: CallerProject,
    ApiPath((_, id)): ApiPath<(ProjectId, CampaignId)>,
    ApiQuery(query): ApiQuery<ReportQuery>,
) -> ApiResult<Json<Report>> {
    let project = QueryProject::of(scope, &project);
    let campaigns = &state.push.campaigns;
    let record = campaigns.get(&project, id).await.map_err(campaign_error)?;
    let now = Utc::now();
    let definition = stored_definition(&record)?;
    let plan = campaigns
        .plan(&project, &definition, now)
        .await
        .map_err(campaign_error)?;
    let report = campaigns
        .report(&project, &record, &plan, query.run.as_deref(), now)
        .await
        .map_err(campaign_error)?;
    Ok(Json(report))
}
