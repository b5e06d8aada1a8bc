//! `/api/v1/projects/{project_id}/audit-log`: management actions on a project, newest
//! first, paged by entry id.

use appizer_core::tenancy::{Actor, AuditEntry};
use appizer_storage::metadata::AuditScope;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::CallerProject;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// Entries per page by default and at most.
pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 500;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEntryView {
    /// Increases with time; pass it as `before` to read older entries.
    pub id: i64,
    /// Who acted: a key (`key:<id>`), a signed-in member (`member:<id>`), or `cli` for
    /// `appizer init`.
    pub actor: String,
    /// Dotted verb: project.create, project.update, project.delete, key.create, key.revoke.
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    /// What changed; never secrets.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub at: DateTime<Utc>,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(a: AuditEntry) -> Self {
        let e = a.entry;
        Self {
            id: a.id,
            actor: match e.actor {
                Actor::Key(k) => format!("key:{k}"),
                Actor::Member(m) => format!("member:{m}"),
                Actor::Cli => "cli".into(),
            },
            action: e.action,
            target_type: e.target_type,
            target_id: e.target_id,
            details: e.details,
            request_id: e.request_id,
            at: e.at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntryView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Only entries with an id below this.
    pub before: Option<i64>,
}

/// Read a project's audit log (admin keys).
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/audit-log", tag = "audit",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_audit(
    State(state): State<AppState>,
    CallerProject { project, .. }: CallerProject,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    let entries = state
        .store
        .list_audit(
            AuditScope::Project(project.organization_id, project.id),
            query.before,
            limit + 1,
        )
        .await?;
    let more = entries.len() > limit as usize;
    let entries: Vec<AuditEntryView> = entries
        .into_iter()
        .take(limit as usize)
        .map(AuditEntryView::from)
        .collect();
    Ok(Json(AuditPage {
        next_before: if more {
            entries.last().map(|e| e.id)
        } else {
            None
        },
        entries,
    }))
}
