//! `/api/v1/projects/{project_id}/keys`: issue, list and revoke a project's keys.
//! A key's plaintext is shown once, in the answer that creates it; only its SHA-256 is
//! stored. Revocation takes effect on the next request.

use appizer_core::keys::KeyKind;
use appizer_core::tenancy::{ApiKey, KeyAccess, KeyGrant};
use appizer_core::{KeyId, ProjectId, Role};
use appizer_storage::metadata::KeyScope;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{validate_name, CallerProject};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

/// A key as listed: never its plaintext.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    #[schema(value_type = String, format = Uuid)]
    pub id: KeyId,
    pub name: String,
    pub kind: KeyKind,
    /// The role of a secret key; absent for write keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The first characters of the key, to recognise it.
    pub display_prefix: String,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub created_by: Option<KeyId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            kind: k.kind(),
            role: k.role(),
            id: k.id,
            name: k.name,
            display_prefix: k.display_prefix,
            created_at: k.created_at,
            created_by: k.created_by,
            revoked_at: k.revoked_at,
        }
    }
}

/// A key just issued: the only answer that carries its plaintext.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub view: KeyView,
    /// The key itself. Store it now: it cannot be shown again.
    pub key: String,
}

impl CreatedKey {
    pub fn new(key: ApiKey, plaintext: String) -> Self {
        Self {
            view: key.into(),
            key: plaintext,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// `secret` (default; management API, needs a role) or `write` (ingestion only).
    #[serde(default)]
    pub kind: Option<KeyKind>,
    /// Required for a secret key; not allowed for a write key.
    #[serde(default)]
    pub role: Option<Role>,
}

/// List a project's keys, revoked ones included.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/keys", tag = "keys",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    responses((status = 200, body = KeyList), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_keys(
    State(state): State<AppState>,
    CallerProject { project, .. }: CallerProject,
) -> ApiResult<Json<KeyList>> {
    let keys = state
        .store
        .list_keys(KeyScope::Project(project.organization_id, project.id))
        .await?;
    Ok(Json(KeyList {
        keys: keys.into_iter().map(KeyView::from).collect(),
    }))
}

/// Issue a key for the project.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/keys", tag = "keys",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_key(
    State(state): State<AppState>,
    CallerProject {
        caller, project, ..
    }: CallerProject,
    ApiJson(body): ApiJson<CreateKey>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let name = validate_name("name", &body.name)?;
    let kind = body.kind.unwrap_or(KeyKind::Secret);
    let access = match (kind, body.role) {
        (KeyKind::Secret, None) => {
            return Err(ApiError::invalid(
                "role",
                "a secret key needs a role: admin, marketer, analyst or viewer",
            ))
        }
        (KeyKind::Write, Some(_)) => {
            return Err(ApiError::invalid("role", "a write key has no role"))
        }
        (KeyKind::Secret, Some(role)) => KeyAccess::ProjectSecret {
            project: project.id,
            role,
        },
        (KeyKind::Write, None) => KeyAccess::Write {
            project: project.id,
        },
    };
    let (key, plaintext) = ApiKey::issue(
        KeyGrant {
            organization_id: project.organization_id,
            access,
            name,
            created_by: caller.principal.creating_key(),
        },
        Utc::now(),
    );
    let audit = caller.audit(
        Some(project.id),
        "key.create",
        "key",
        key.id,
        serde_json::json!({ "name": key.name, "kind": kind, "role": key.role() }),
    );
    state.store.create_key(&key, &audit).await?;
    Ok((StatusCode::CREATED, Json(CreatedKey::new(key, plaintext))))
}

/// Revoke a key; it is refused from the next request on. Revoking twice is harmless.
#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/keys/{key_id}", tag = "keys",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("key_id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    CallerProject {
        caller, project, ..
    }: CallerProject,
    ApiPath((_, key_id)): ApiPath<(ProjectId, KeyId)>,
) -> ApiResult<StatusCode> {
    let audit = caller.audit(
        Some(project.id),
        "key.revoke",
        "key",
        key_id,
        serde_json::json!({}),
    );
    let revoked = state
        .store
        .revoke_key(
            KeyScope::Project(project.organization_id, project.id),
            key_id,
            Utc::now(),
            &audit,
        )
        .await?
        .ok_or_else(|| ApiError::not_found("key"))?;
    state.keys.evict_key(&revoked.key_hash);
    Ok(StatusCode::NO_CONTENT)
}
