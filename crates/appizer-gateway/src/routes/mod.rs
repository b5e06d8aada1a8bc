//! Handlers of the management API (`/api/v1`) and the operations endpoints. Handlers
//! run after authentication and authorization ([`crate::access`]); they validate the
//! body, call the metadata store (always scoped by organisation) and write audit entries.

pub mod audit;
pub mod campaigns;
pub mod capture;
pub mod definitions;
pub mod events;
pub mod insights;
pub mod keys;
pub mod members;
pub mod metrics;
pub mod ops;
pub mod persons;
pub mod projects;
pub mod push;
pub mod push_messages;
pub mod query;
pub mod segments;
pub mod session;

use appizer_core::tenancy::{NewAuditEntry, Project};
use appizer_core::ProjectId;
use appizer_storage::ProjectScope;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use chrono::Utc;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::observe::RequestId;
use crate::state::AppState;

/// The authenticated caller of a management route: its key and the request id.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub request_id: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| {
                tracing::error!("management handler reached without authentication");
                ApiError::internal()
            })?;
        Ok(Caller {
            principal,
            request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
        })
    }
}

impl Caller {
    /// An audit entry for an action of this caller.
    pub fn audit(
        &self,
        project: Option<ProjectId>,
        action: &str,
        target_type: &str,
        target_id: impl ToString,
        details: serde_json::Value,
    ) -> NewAuditEntry {
        NewAuditEntry {
            organization_id: self.principal.organization_id(),
            project_id: project,
            actor: self.principal.actor(),
            action: action.into(),
            target_type: target_type.into(),
            target_id: target_id.to_string(),
            details,
            request_id: self.request_id.clone(),
            at: Utc::now(),
        }
    }

    /// The project `id` of the caller's organisation and its scope, or 404.
    pub async fn project(
        &self,
        state: &AppState,
        id: ProjectId,
    ) -> Result<(ProjectScope, Project), ApiError> {
        state
            .store
            .get_project(self.principal.organization_id(), id)
            .await?
            .ok_or_else(|| ApiError::not_found("project"))
    }
}

/// The route's project (`{project_id}`), read from the caller's organisation: 404 when
/// it has no such project. The access middleware has already refused a project key of
/// another project; this is the one place a handler gets its project from, and its
/// `scope` is the only key handlers have to the project's data.
#[derive(Debug, Clone)]
pub struct CallerProject {
    pub caller: Caller,
    pub scope: ProjectScope,
    pub project: Project,
}

impl FromRequestParts<AppState> for CallerProject {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("project"))?;
        let id: ProjectId = params
            .iter()
            .find(|(name, _)| *name == "project_id")
            .and_then(|(_, value)| value.parse().ok())
            .ok_or_else(|| ApiError::not_found("project"))?;
        let (scope, project) = caller.project(state, id).await?;
        Ok(Self {
            caller,
            scope,
            project,
        })
    }
}

/// A name a user gives a project or key: 1 to 200 characters, not blank, no control
/// characters. Returns it trimmed.
pub fn validate_name(field: &str, name: &str) -> Result<String, ApiError> {
    use appizer_core::tenancy::MAX_NAME_CHARS;
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(ApiError::invalid(field, "must not be blank"));
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_name("name", "  Web app ").unwrap(), "Web app");
        for bad in ["", "   ", "a\u{0}b"] {
            let e = validate_name("name", bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("name"), "{bad:?}");
        }
        assert!(validate_name("name", &"é".repeat(200)).is_ok());
        assert!(validate_name("name", &"é".repeat(201)).is_err());
    }

    /// Handlers take their project's scope from [`CallerProject`], which reads it with
    /// the caller's organisation; the by-project lookup is the workers' alone.
    #[test]
    fn no_handler_scopes_a_project_without_the_callers_organisation() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut pending = vec![dir];
        let mut read = 0;
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                    assert!(
                        !code.contains(".project_scope("),
                        "{} scopes a project by id alone",
                        path.display()
                    );
                    read += 1;
                }
            }
        }
        assert!(read > 10, "read the gateway's sources ({read} files)");
    }
}
