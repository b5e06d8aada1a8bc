//! Persons: `/api/v1/projects/{project_id}/persons` (server-side identify, listing and
//! search), one person with its ids, properties and recent events, alias management
//! (add and remove distinct ids), explicit merge, split (undo a merge from the merge
//! log), the merge log, and deletion (optionally suppressing the person's ids).
//! The rules of each change are `Identity`'s (`appizer-users`); each writes its audit
//! entry in the change's transaction.

use std::sync::Arc;

use appizer_core::person::{is_placeholder_id, MergeRecord, Person};
use appizer_core::tenancy::NewAuditEntry;
use appizer_core::{MergeId, PersonId, ProjectId};
use appizer_storage::events::{list_events, EventFilter, StoredEvent};
use appizer_storage::persons::{Deleted, Identified, PersonFilter, PersonOverrides};
use appizer_storage::ProjectScope;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::{Caller, CallerProject};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

/// Persons per page by default and at most.
pub const DEFAULT_PERSONS_PAGE: u32 = 100;
pub const MAX_PERSONS_PAGE: u32 = 1_000;
/// Events shown with a person.
pub const RECENT_EVENTS: usize = 20;
/// Longest distinct id, in bytes (as at ingestion).
const MAX_ID_BYTES: usize = appizer_core::event::MAX_ID_BYTES;

#[derive(Debug, Serialize, ToSchema)]
pub struct PersonView {
    #[schema(value_type = String, format = Uuid)]
    pub id: PersonId,
    pub distinct_ids: Vec<String>,
    /// Known by an id the app chose (a user id), not only anonymous ids.
    pub is_identified: bool,
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
    pub event_count: u64,
    pub created_at: DateTime<Utc>,
    /// The newest events, with the person on a single read.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub recent_events: Option<Vec<StoredEvent>>,
}

impl PersonView {
    fn new(p: Person, distinct_ids: Vec<String>) -> Self {
        Self {
            id: p.id,
            distinct_ids,
            is_identified: p.is_identified,
            properties: p.properties.values().clone(),
            first_seen: p.first_seen,
            last_seen: p.last_seen,
            event_count: p.event_count,
            created_at: p.created_at,
            recent_events: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PersonPage {
    pub persons: Vec<PersonView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MergeView {
    #[schema(value_type = String, format = Uuid)]
    pub id: MergeId,
    /// The person merged away.
    #[schema(value_type = String, format = Uuid)]
    pub source_person_id: PersonId,
    /// The person that remained.
    #[schema(value_type = String, format = Uuid)]
    pub target_person_id: PersonId,
    /// The ids that moved.
    pub distinct_ids: Vec<String>,
    /// `identify`, `alias`, `merge_dangerously` or `api`.
    pub reason: String,
    /// The event that caused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub merged_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split_at: Option<DateTime<Utc>>,
}

impl From<MergeRecord> for MergeView {
    fn from(m: MergeRecord) -> Self {
        Self {
            id: m.id,
            source_person_id: m.source,
            target_person_id: m.target,
            distinct_ids: m.distinct_ids,
            reason: m.reason.as_str().to_string(),
            message_id: m.message_id,
            merged_at: m.merged_at,
            split_at: m.split_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MergeLog {
    pub merges: Vec<MergeView>,
}

/// Server-side identify: the person of `distinct_id` (created, identified, if new)
/// with its properties updated as `$set`, `$set_once` and `$unset` at this moment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertPerson {
    /// The user id: at most 512 bytes, not a placeholder such as `anonymous`.
    #[schema(min_length = 1, max_length = 512)]
    pub distinct_id: String,
    /// Set, replacing current values.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub set: Option<Map<String, Value>>,
    /// Set only where the person has no value yet.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub set_once: Option<Map<String, Value>>,
    /// Keys to remove.
    #[serde(default)]
    pub unset: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddDistinctId {
    /// At most 512 bytes, not a placeholder such as `anonymous`.
    #[schema(min_length = 1, max_length = 512)]
    pub distinct_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    /// The person to merge into this one; it is removed, its ids and events move here.
    #[schema(value_type = String, format = Uuid)]
    pub source_person_id: PersonId,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitRequest {
    /// The merge to undo; by default the newest merge into this person not yet undone.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub merge_id: Option<MergeId>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Also drop (and count) later events of the person's distinct ids.
    #[serde(default)]
    pub suppress: bool,
}

/// Filters of the person listing; `property.<name>=<value>` parameters filter on person
/// properties (numbers, booleans and `null` as written, anything else as a string).
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PersonQuery {
    /// Persons with a distinct id containing this text (case-insensitive).
    pub search: Option<String>,
    /// Persons per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

fn validate_id(field: &str, id: &str) -> Result<(), ApiError> {
    if is_placeholder_id(id) {
        return Err(ApiError::invalid(
            field,
            "must be a real id, not blank or a placeholder such as \"anonymous\" or \"null\"",
        ));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {MAX_ID_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn person_filter(query: Option<&str>) -> Result<PersonFilter, ApiError> {
    let mut filter = PersonFilter {
        limit: DEFAULT_PERSONS_PAGE,
        ..Default::default()
    };
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "search" => filter.distinct_id_contains = Some(value.into_owned()),
            "limit" => {
                filter.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PERSONS_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "limit",
                            format!("must be between 1 and {MAX_PERSONS_PAGE}"),
                        )
                    })?
            }
            "cursor" => {
                filter.after = Some(value.parse().map_err(|_| {
                    ApiError::invalid("cursor", "is not a cursor this API returned")
                })?)
            }
            other => match other.strip_prefix("property.") {
                Some(name) if !name.is_empty() => {
                    let typed = match serde_json::from_str::<Value>(&value) {
                        Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => v,
                        _ => Value::String(value.into_owned()),
                    };
                    filter.properties.push((name.to_string(), typed));
                }
                _ => {
                    return Err(ApiError::invalid(
                        other,
                        "unknown parameter: use search, limit, cursor or property.<name>",
                    ))
                }
            },
        }
    }
    Ok(filter)
}

async fn view(
    state: &AppState,
    scope: ProjectScope,
    person: Person,
) -> Result<PersonView, ApiError> {
    let ids = state.store.persons().distinct_ids(scope, person.id).await?;
    Ok(PersonView::new(person, ids))
}

/// The person `id` under `overrides`: updates held for persons merged into it land on
/// it too.
async fn read(
    state: &AppState,
    scope: ProjectScope,
    id: PersonId,
    overrides: &PersonOverrides,
) -> Result<Person, ApiError> {
    state
        .events
        .identity
        .read_person(scope, id, &overrides.merged_into(id))
        .await?
        .ok_or_else(|| ApiError::not_found("person"))
}

/// The person `id` as answered after a change.
async fn shown(state: &AppState, scope: ProjectScope, id: PersonId) -> ApiResult<Json<PersonView>> {
    let person = state
        .events
        .identity
        .current(scope, id)
        .await?
        .ok_or_else(|| ApiError::not_found("person"))?;
    Ok(Json(view(state, scope, person).await?))
}

/// The audit entry of a person change by `caller`, built from the change's outcome in
/// its transaction.
fn audit_of<'a, T>(
    caller: &'a Caller,
    scope: ProjectScope,
    entry: impl Fn(&T) -> (&'static str, String, Value) + Send + Sync + 'a,
) -> impl Fn(&T) -> NewAuditEntry + Send + Sync + 'a {
    move |outcome| {
        let (action, target, details) = entry(outcome);
        caller.audit(Some(scope.project()), action, "person", target, details)
    }
}

/// List a project's persons in creation order, with filters.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/persons", tag = "persons", operation_id = "list_persons",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), PersonQuery),
    responses((status = 200, body = PersonPage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<PersonPage>> {
    let mut filter = person_filter(query.as_deref())?;
    let limit = filter.limit;
    filter.limit = limit + 1;
    let mut found = state.events.identity.list_persons(scope, &filter).await?;
    let next_cursor = if found.len() > limit as usize {
        found.truncate(limit as usize);
        found.last().map(|p| p.id.to_string())
    } else {
        None
    };
    let mut persons = Vec::with_capacity(found.len());
    for p in found {
        persons.push(view(&state, scope, p).await?);
    }
    Ok(Json(PersonPage {
        persons,
        next_cursor,
    }))
}

/// Server-side identify: create or update the person of a user id.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/persons", tag = "persons", operation_id = "upsert_person",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = UpsertPerson,
    responses((status = 200, body = PersonView, description = "updated"),
        (status = 201, body = PersonView, description = "created"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn upsert(
    State(state): State<AppState>,
    CallerProject { caller, scope, .. }: CallerProject,
    ApiJson(body): ApiJson<UpsertPerson>,
) -> ApiResult<(StatusCode, Json<PersonView>)> {
    validate_id("distinct_id", &body.distinct_id)?;
    let unset = body
        .unset
        .map(|keys| Value::Array(keys.into_iter().map(Value::String).collect()));
    let distinct_id = body.distinct_id.clone();
    let audit = audit_of(&caller, scope, move |done: &Identified| {
        let action = if done.created {
            "person.create"
        } else {
            "person.update"
        };
        let details = serde_json::json!({ "distinct_id": distinct_id });
        (action, done.person.to_string(), details)
    });
    let done = state
        .events
        .identity
        .identify(
            scope,
            &body.distinct_id,
            body.set.as_ref(),
            body.set_once.as_ref(),
            unset.as_ref(),
            Utc::now(),
            Some(&audit),
        )
        .await?;
    let status = if done.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, shown(&state, scope, done.person).await?))
}

/// One person: ids, properties, first and last seen, recent events.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/persons/{person_id}", tag = "persons", operation_id = "get_person",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("person_id" = String, Path, format = Uuid)),
    responses((status = 200, body = PersonView), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
    ApiPath((_, person_id)): ApiPath<(ProjectId, PersonId)>,
) -> ApiResult<Json<PersonView>> {
    Ok(Json(with_events(&state, scope, person_id).await?))
}

/// The person `id` with its recent events; the overrides are read once for both.
async fn with_events(
    state: &AppState,
    scope: ProjectScope,
    id: PersonId,
) -> Result<PersonView, ApiError> {
    let overrides = Arc::new(state.store.persons().overrides(scope).await?);
    let person = read(state, scope, id, &overrides).await?;
    let filter = EventFilter {
        limit: RECENT_EVENTS,
        person: Some(person.id),
        overrides: Some(overrides),
        ..Default::default()
    };
    let (events, _) = list_events(&state.events.store, scope, &filter)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "person events listing failed");
            ApiError::internal()
        })?;
    let mut view = view(state, scope, person).await?;
    view.recent_events = Some(events);
    Ok(view)
}

/// The person a distinct id belongs to.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/distinct-ids/{distinct_id}", tag = "persons", operation_id = "get_person_by_distinct_id",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("distinct_id" = String, Path)),
    responses((status = 200, body = PersonView), (status = 404, body = ErrorBody)))]
pub async fn by_distinct_id(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
    ApiPath((_, distinct_id)): ApiPath<(ProjectId, String)>,
) -> ApiResult<Json<PersonView>> {
    let found = state
        .store
        .persons()
        .lookup(scope, std::slice::from_ref(&distinct_id))
        .await?;
    let id = found
        .get(&distinct_id)
        .copied()
        .ok_or_else(|| ApiError::not_found("distinct id"))?;
    Ok(Json(with_events(&state, scope, id).await?))
}

/// Delete a person, its distinct ids and its events (hidden at once, removed from the
/// files by the next compaction).
#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/persons/{person_id}", tag = "persons", operation_id = "delete_person",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("person_id" = String, Path, format = Uuid), DeleteQuery),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    CallerProject { caller, scope, .. }: CallerProject,
    ApiPath((_, person_id)): ApiPath<(ProjectId, PersonId)>,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let audit = audit_of(&caller, scope, move |deleted: &Deleted| {
        let details = serde_json::json!({
            "distinct_ids": deleted.distinct_ids,
            "suppress": deleted.suppressed,
        });
        ("person.delete", person_id.to_string(), details)
    });
    state
        .events
        .identity
        .delete(scope, person_id, query.suppress, Utc::now(), Some(&audit))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Link another distinct id to the person (alias). 409 if it belongs to someone else:
/// merge the persons instead.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/persons/{person_id}/distinct-ids", tag = "persons", operation_id = "add_person_distinct_id",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("person_id" = String, Path, format = Uuid)),
    request_body = AddDistinctId,
    responses((status = 200, body = PersonView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_distinct_id(
    State(state): State<AppState>,
    CallerProject { caller, scope, .. }: CallerProject,
    ApiPath((_, person_id)): ApiPath<(ProjectId, PersonId)>,
    ApiJson(body): ApiJson<AddDistinctId>,
) -> ApiResult<Json<PersonView>> {
    validate_id("distinct_id", &body.distinct_id)?;
    let distinct_id = body.distinct_id.clone();
    let audit = audit_of(&caller, scope, move |person: &PersonId| {
        let details = serde_json::json!({ "distinct_id": distinct_id });
        ("person.add_distinct_id", person.to_string(), details)
    });
    let person = state
        .events
        .identity
        .link(
            scope,
            person_id,
            &body.distinct_id,
            Utc::now(),
            Some(&audit),
        )
        .await?;
    Ok(Json(view(&state, scope, person).await?))
}

/// Move a distinct id off the person, with its events, onto a new person.
#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/persons/{person_id}/distinct-ids/{distinct_id}", tag = "persons", operation_id = "remove_person_distinct_id",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("person_id" = String, Path, format = Uuid),
        ("distinct_id" = String, Path)),
    responses((status = 200, body = PersonView, description = "the new person of the id"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove_distinct_id(
    State(state): State<AppState>,
    CallerProject { caller, scope, .. }: CallerProject,
    ApiPath((_, person_id, distinct_id)): ApiPath<(ProjectId, PersonId, String)>,
) -> ApiResult<Json<PersonView>> {
    let removed = distinct_id.clone();
    let audit = audit_of(&caller, scope, move |moved: &PersonId| {
        let details = serde_json::json!({
            "distinct_id": removed,
            "new_person_id": moved.to_string(),
        });
        ("person.remove_distinct_id", person_id.to_string(), details)
    });
    let moved = state
        .events
        .identity
        .unlink(scope, person_id, &distinct_id, Utc::now(), Some(&audit))
        .await?;
    shown(&state, scope, moved).await
}

/// Merge another person into this one (identified persons too).
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/persons/{person_id}/merge", tag = "persons", operation_id = "merge_persons",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("person_id" = String, Path, format = Uuid)),
    request_body = MergeRequest,
    responses((status = 200, body = PersonView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn merge(
    State(state): State<AppState>,
    CallerProject { caller, scope, .. }: CallerProject,
    ApiPath((_, person_id)): ApiPath<(ProjectId, PersonId)>,
    ApiJson(body): ApiJson<MergeRequest>,
) -> ApiResult<Json<PersonView>> {
    if body.source_person_id == person_id {
        return Err(ApiError::invalid(
            "source_person_id",
            "must be another person than the one merged into",
        ));
    }
    let audit = audit_of(&caller, scope, move |record: &MergeRecord| {
        let details = serde_json::json!({
            "merge_id": record.id.to_string(),
            "source_person_id": record.source.to_string(),
        });
        ("person.merge", person_id.to_string(), details)
    });
    state
        .events
        .identity
        .merge_persons(
            scope,
            body.source_person_id,
            person_id,
            Utc::now(),
            Some(&audit),
        )
        .await?;
    shown(&state, scope, person_id).await
}

/// Undo a merge into this person: the merged person comes back with its ids and events.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/persons/{person_id}/split", tag = "persons", operation_id = "split_person",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("person_id" = String, Path, format = Uuid)),
    request_body = SplitRequest,
    responses((status = 200, body = PersonView, description = "the restored person"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn split(
    State(state): State<AppState>,
    CallerProject { caller, scope, .. }: CallerProject,
    ApiPath((_, person_id)): ApiPath<(ProjectId, PersonId)>,
    ApiJson(body): ApiJson<SplitRequest>,
) -> ApiResult<Json<PersonView>> {
    let audit = audit_of(&caller, scope, move |record: &MergeRecord| {
        let details = serde_json::json!({
            "merge_id": record.id.to_string(),
            "restored_person_id": record.source.to_string(),
        });
        ("person.split", person_id.to_string(), details)
    });
    let record = state
        .events
        .identity
        .split_person(scope, person_id, body.merge_id, Utc::now(), Some(&audit))
        .await?;
    shown(&state, scope, record.source).await
}

/// Merges into and out of the person, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/persons/{person_id}/merges", tag = "persons", operation_id = "list_person_merges",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("person_id" = String, Path, format = Uuid)),
    responses((status = 200, body = MergeLog), (status = 404, body = ErrorBody)))]
pub async fn merges(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
    ApiPath((_, person_id)): ApiPath<(ProjectId, PersonId)>,
) -> ApiResult<Json<MergeLog>> {
    let merges = state.events.identity.merges_of(scope, person_id).await?;
    Ok(Json(MergeLog {
        merges: merges.into_iter().map(MergeView::from).collect(),
    }))
}
