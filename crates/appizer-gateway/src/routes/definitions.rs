//! What the saved metrics and segments routes share: the description rule, reading one
//! definition of the caller's project, and deletion with its audit entry.

use appizer_core::definition::{Definition, DefinitionKind};
use appizer_core::DefinitionId;
use appizer_storage::ProjectScope;
use axum::http::StatusCode;
use serde_json::json;

use super::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;

pub(super) fn description(text: Option<String>) -> Result<String, ApiError> {
    let text = text.unwrap_or_default();
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::invalid(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok(text)
}

pub(super) async fn definition(
    state: &AppState,
    scope: ProjectScope,
    kind: DefinitionKind,
    id: DefinitionId,
) -> Result<Definition, ApiError> {
    state
        .store
        .get_definition(scope, kind, id)
        .await?
        .ok_or_else(|| ApiError::not_found(kind.as_str()))
}

pub(super) async fn delete(
    state: &AppState,
    caller: &Caller,
    scope: ProjectScope,
    kind: DefinitionKind,
    id: DefinitionId,
) -> ApiResult<StatusCode> {
    let audit = caller.audit(
        Some(scope.project()),
        &format!("{}.delete", kind.as_str()),
        kind.as_str(),
        id,
        json!({}),
    );
    if !state
        .store
        .delete_definition(scope, kind, id, &audit)
        .await?
    {
        return Err(ApiError::not_found(kind.as_str()));
    }
    Ok(StatusCode::NO_CONTENT)
}
