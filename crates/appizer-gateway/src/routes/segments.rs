//! Segments (`/api/v1/projects/{project_id}/segments`): dynamic from conditions, or
//! static from a list of distinct ids or a funnel's drop-offs, with member counts, paged
//! member listing and membership checks. Changes are audited in the same transaction;
//! the analytics engine computes and stores the members when a segment is saved, on
//! `refresh` and every `analytics.segment_refresh_secs`.

use appizer_analytics::saved::{
    MemberSource, SegmentBody, SegmentCondition, SegmentKind, MAX_STATIC_IDS,
};
use appizer_analytics::{FunnelQuery, QueryProject};
use appizer_core::definition::{Definition, DefinitionKind};
use appizer_core::{DefinitionId, PersonId, ProjectId};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::definitions::{definition, delete, description};
use super::{validate_name, CallerProject};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

pub const DEFAULT_MEMBERS_PAGE: u32 = 100;
pub const MAX_MEMBERS_PAGE: u32 = 1_000;

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentView {
    #[schema(value_type = String, format = Uuid)]
    pub id: DefinitionId,
    pub name: String,
    pub description: String,
    pub kind: SegmentKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<SegmentCondition>,
    /// Members at the last computation.
    pub member_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub computed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentList {
    pub segments: Vec<SegmentView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSegment {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[serde(default)]
    pub kind: SegmentKind,
    /// The members of a dynamic segment.
    #[serde(default)]
    pub condition: Option<SegmentCondition>,
    /// The members of a static segment: the persons of these distinct ids (unknown ids
    /// are skipped and counted in `unknown_distinct_ids`).
    #[serde(default)]
    #[schema(max_items = 100000)]
    pub distinct_ids: Option<Vec<String>>,
    /// The members of a static segment: the persons who dropped out of a funnel at a
    /// step (reached the step before, not this one).
    #[serde(default)]
    pub funnel_dropped: Option<FunnelDropped>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunnelDropped {
    pub funnel: FunnelQuery,
    /// The step (0-based, after the first) the persons did not reach.
    pub step: usize,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentChange {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// Dynamic segments only.
    #[serde(default)]
    pub condition: Option<SegmentCondition>,
    /// Static segments only: replaces the members.
    #[serde(default)]
    #[schema(max_items = 100000)]
    pub distinct_ids: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentSaved {
    #[serde(flatten)]
    pub segment: SegmentView,
    /// Distinct ids of a static upload that have no person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_distinct_ids: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberPage {
    /// Person ids, in id order.
    #[schema(value_type = Vec<String>)]
    pub persons: Vec<PersonId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Membership {
    pub member: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MemberQuery {
    /// Persons per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

fn segment_view(d: Definition) -> Result<SegmentView, ApiError> {
    let body = SegmentBody::from_definition(&d)?;
    Ok(SegmentView {
        id: d.id,
        name: d.name,
        description: d.description,
        kind: body.kind,
        condition: body.condition,
        member_count: d.member_count.unwrap_or(0),
        computed_at: d.computed_at,
        created_at: d.created_at,
        updated_at: d.updated_at,
    })
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/segments", tag = "analytics", operation_id = "list_segments",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    responses((status = 200, body = SegmentList), (status = 404, body = ErrorBody)))]
pub async fn list_segments(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
) -> ApiResult<Json<SegmentList>> {
    let segments = state
        .store
        .list_definitions(scope, DefinitionKind::Segment)
        .await?
        .into_iter()
        .map(segment_view)
        .collect::<Result<_, _>>()?;
    Ok(Json(SegmentList { segments }))
}

/// Stores the members of the saved segment `d`; returns it as saved.
async fn store_members(
    state: &AppState,
    project: &QueryProject,
    d: Definition,
    members: appizer_analytics::saved::Members,
) -> Result<SegmentSaved, ApiError> {
    let now = Utc::now();
    state
        .events
        .analytics
        .store_members(project, d.id, &members, now)
        .await?;
    let mut view = segment_view(d)?;
    view.member_count = members.persons.len() as u64;
    view.computed_at = Some(now);
    Ok(SegmentSaved {
        segment: view,
        unknown_distinct_ids: members.unknown_distinct_ids,
    })
}

fn check_segment(
    kind: SegmentKind,
    condition: &Option<SegmentCondition>,
    distinct_ids: &Option<Vec<String>>,
    funnel: bool,
) -> Result<(), ApiError> {
    if funnel && (kind == SegmentKind::Dynamic || distinct_ids.is_some()) {
        return Err(ApiError::invalid(
            "funnel_dropped",
            "makes a static segment, in place of distinct_ids",
        ));
    }
    match kind {
        SegmentKind::Dynamic => {
            if condition.is_none() {
                return Err(ApiError::invalid(
                    "condition",
                    "is required for a dynamic segment",
                ));
            }
            if distinct_ids.is_some() {
                return Err(ApiError::invalid(
                    "distinct_ids",
                    "belongs to static segments; a dynamic segment has a condition",
                ));
            }
        }
        SegmentKind::Static => {
            if condition.is_some() {
                return Err(ApiError::invalid(
                    "condition",
                    "belongs to dynamic segments; a static segment has distinct_ids",
                ));
            }
            if distinct_ids
                .as_ref()
                .is_some_and(|ids| ids.len() > MAX_STATIC_IDS)
            {
                return Err(ApiError::invalid(
                    "distinct_ids",
                    format!("at most {MAX_STATIC_IDS} per upload"),
                ));
            }
        }
    }
    Ok(())
}

/// A condition to count the persons of, saving nothing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentPreviewBody {
    #[schema(value_type = Object)]
    pub condition: SegmentCondition,
}

/// How many persons a condition holds for now, with the first of them.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentPreview {
    pub persons: u64,
    /// Up to 20 person ids, in id order.
    #[schema(value_type = Vec<String>)]
    pub sample: Vec<PersonId>,
}

/// Persons per preview answer at most.
const PREVIEW_SAMPLE: usize = 20;

/// Count the persons a condition holds for, saving nothing: how a segment's size is
/// shown while it is edited.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/segments/preview", tag = "analytics", operation_id = "preview_segment",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = SegmentPreviewBody,
    responses((status = 200, body = SegmentPreview), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn preview_segment(
    State(state): State<AppState>,
    CallerProject { scope, project, .. }: CallerProject,
    ApiJson(body): ApiJson<SegmentPreviewBody>,
) -> ApiResult<Json<SegmentPreview>> {
    let project = QueryProject::of(scope, &project);
    let members = state
        .events
        .analytics
        .members_of(
            &project,
            MemberSource::Condition(body.condition),
            Utc::now(),
        )
        .await?;
    Ok(Json(SegmentPreview {
        persons: members.persons.len() as u64,
        sample: members.persons.into_iter().take(PREVIEW_SAMPLE).collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/projects/{project_id}/segments", tag = "analytics", operation_id = "create_segment",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = NewSegment,
    responses((status = 201, body = SegmentSaved), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_segment(
    State(state): State<AppState>,
    CallerProject {
        caller,
        scope,
        project,
    }: CallerProject,
    ApiJson(body): ApiJson<NewSegment>,
) -> ApiResult<(StatusCode, Json<SegmentSaved>)> {
    let name = validate_name("name", &body.name)?;
    let description = description(body.description)?;
    check_segment(
        body.kind,
        &body.condition,
        &body.distinct_ids,
        body.funnel_dropped.is_some(),
    )?;
    let project = QueryProject::of(scope, &project);
    let source = match (&body.condition, body.funnel_dropped, body.distinct_ids) {
        (Some(c), _, _) => MemberSource::Condition(c.clone()),
        (None, Some(FunnelDropped { funnel, step }), _) => {
            MemberSource::FunnelDropped { funnel, step }
        }
        (None, None, ids) => MemberSource::DistinctIds(ids.unwrap_or_default()),
    };
    let computed = state
        .events
        .analytics
        .members_of(&project, source, Utc::now())
        .await?;
    let now = Utc::now();
    let d = Definition {
        id: DefinitionId::new(),
        project_id: scope.project(),
        kind: DefinitionKind::Segment,
        name,
        description,
        body: serde_json::to_value(SegmentBody {
            kind: body.kind,
            condition: body.condition,
        })
        .map_err(|_| ApiError::internal())?,
        member_count: None,
        computed_at: None,
        created_at: now,
        updated_at: now,
    };
    let audit = caller.audit(
        Some(scope.project()),
        "segment.create",
        "segment",
        d.id,
        json!({"name": d.name}),
    );
    state.store.create_definition(scope, &d, &audit).await?;
    let saved = store_members(&state, &project, d, computed).await?;
    Ok((StatusCode::CREATED, Json(saved)))
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/segments/{segment_id}", tag = "analytics", operation_id = "get_segment",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("segment_id" = String, Path, format = Uuid)),
    responses((status = 200, body = SegmentView), (status = 404, body = ErrorBody)))]
pub async fn get_segment(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
    ApiPath((_, segment_id)): ApiPath<(ProjectId, DefinitionId)>,
) -> ApiResult<Json<SegmentView>> {
    let d = definition(&state, scope, DefinitionKind::Segment, segment_id).await?;
    Ok(Json(segment_view(d)?))
}

#[utoipa::path(patch, path = "/api/v1/projects/{project_id}/segments/{segment_id}", tag = "analytics", operation_id = "update_segment",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("segment_id" = String, Path, format = Uuid)),
    request_body = SegmentChange,
    responses((status = 200, body = SegmentSaved), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_segment(
    State(state): State<AppState>,
    CallerProject {
        caller,
        scope,
        project,
    }: CallerProject,
    ApiPath((_, segment_id)): ApiPath<(ProjectId, DefinitionId)>,
    ApiJson(body): ApiJson<SegmentChange>,
) -> ApiResult<Json<SegmentSaved>> {
    let project = QueryProject::of(scope, &project);
    let mut d = definition(&state, scope, DefinitionKind::Segment, segment_id).await?;
    let mut segment = SegmentBody::from_definition(&d)?;
    if let Some(name) = body.name {
        d.name = validate_name("name", &name)?;
    }
    if body.description.is_some() {
        d.description = description(body.description)?;
    }
    let condition = body.condition.or(segment.condition.clone());
    let changes_condition = segment.kind == SegmentKind::Dynamic;
    check_segment(
        segment.kind,
        &if changes_condition {
            condition.clone()
        } else {
            None
        },
        &body.distinct_ids,
        false,
    )?;
    let source = match (changes_condition, condition, body.distinct_ids) {
        (true, Some(c), _) => {
            segment.condition = Some(c.clone());
            Some(MemberSource::Condition(c))
        }
        (false, _, Some(ids)) => Some(MemberSource::DistinctIds(ids)),
        _ => None,
    };
    let computed = match source {
        Some(source) => Some(
            state
                .events
                .analytics
                .members_of(&project, source, Utc::now())
                .await?,
        ),
        None => None,
    };
    d.body = serde_json::to_value(&segment).map_err(|_| ApiError::internal())?;
    d.updated_at = Utc::now();
    let audit = caller.audit(
        Some(scope.project()),
        "segment.update",
        "segment",
        d.id,
        json!({"name": d.name}),
    );
    if !state.store.update_definition(scope, &d, &audit).await? {
        return Err(ApiError::not_found("segment"));
    }
    match computed {
        Some(computed) => Ok(Json(store_members(&state, &project, d, computed).await?)),
        None => Ok(Json(SegmentSaved {
            segment: segment_view(d)?,
            unknown_distinct_ids: None,
        })),
    }
}

#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/segments/{segment_id}", tag = "analytics", operation_id = "delete_segment",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("segment_id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_segment(
    State(state): State<AppState>,
    CallerProject { caller, scope, .. }: CallerProject,
    ApiPath((_, segment_id)): ApiPath<(ProjectId, DefinitionId)>,
) -> ApiResult<StatusCode> {
    delete(&state, &caller, scope, DefinitionKind::Segment, segment_id).await
}

#[utoipa::path(post, path = "/api/v1/projects/{project_id}/segments/{segment_id}/refresh", tag = "analytics", operation_id = "refresh_segment",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("segment_id" = String, Path, format = Uuid)),
    responses((status = 200, body = SegmentView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn refresh_segment(
    State(state): State<AppState>,
    CallerProject { scope, project, .. }: CallerProject,
    ApiPath((_, segment_id)): ApiPath<(ProjectId, DefinitionId)>,
) -> ApiResult<Json<SegmentView>> {
    let project = QueryProject::of(scope, &project);
    let d = definition(&state, scope, DefinitionKind::Segment, segment_id).await?;
    state
        .events
        .analytics
        .refresh_segment(&project, &d, Utc::now())
        .await?;
    let d = definition(&state, scope, DefinitionKind::Segment, segment_id).await?;
    Ok(Json(segment_view(d)?))
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/segments/{segment_id}/persons", tag = "analytics", operation_id = "list_segment_persons",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("segment_id" = String, Path, format = Uuid), MemberQuery),
    responses((status = 200, body = MemberPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn segment_persons(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
    ApiPath((_, segment_id)): ApiPath<(ProjectId, DefinitionId)>,
    ApiQuery(query): ApiQuery<MemberQuery>,
) -> ApiResult<Json<MemberPage>> {
    let limit = query.limit.unwrap_or(DEFAULT_MEMBERS_PAGE);
    if !(1..=MAX_MEMBERS_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_MEMBERS_PAGE}"),
        ));
    }
    let after = query
        .cursor
        .map(|c| {
            c.parse::<PersonId>()
                .map_err(|_| ApiError::invalid("cursor", "is not a cursor this API returned"))
        })
        .transpose()?;
    let d = definition(&state, scope, DefinitionKind::Segment, segment_id).await?;
    let mut persons = state
        .store
        .segment_members(scope, d.id, after, limit + 1)
        .await?;
    let next_cursor = (persons.len() > limit as usize).then(|| {
        persons.truncate(limit as usize);
        persons.last().map(ToString::to_string).unwrap_or_default()
    });
    Ok(Json(MemberPage {
        persons,
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/segments/{segment_id}/persons/{person_id}", tag = "analytics", operation_id = "is_segment_person",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("segment_id" = String, Path, format = Uuid), ("person_id" = String, Path, format = Uuid)),
    responses((status = 200, body = Membership), (status = 404, body = ErrorBody)))]
pub async fn segment_person(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
    ApiPath((_, segment_id, person_id)): ApiPath<(ProjectId, DefinitionId, PersonId)>,
) -> ApiResult<Json<Membership>> {
    let d = definition(&state, scope, DefinitionKind::Segment, segment_id).await?;
    Ok(Json(Membership {
        member: state
            .store
            .is_segment_member(scope, d.id, person_id)
            .await?,
    }))
}
