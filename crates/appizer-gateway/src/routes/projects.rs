//! `/api/v1/projects`: list, create (with a first write key), read, update (name, time
//! zone, rate limit overrides) and delete projects.

use appizer_core::config::RateLimitConfig;
use appizer_core::tenancy::{
    is_valid_timezone, ApiKey, FrequencyCapSetting, KeyAccess, KeyGrant, Project, RateLimitOverride,
};
use appizer_core::ProjectId;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::keys::CreatedKey;
use super::{validate_name, Caller, CallerProject};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// The largest rate or burst a project may set.
pub const MAX_RATE_LIMIT: u32 = 1_000_000;

/// A project as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProjectView {
    #[schema(value_type = String, format = Uuid)]
    pub id: ProjectId,
    #[schema(value_type = String, format = Uuid)]
    pub organization_id: appizer_core::OrganizationId,
    pub name: String,
    /// IANA time zone analytics are evaluated in.
    pub timezone: String,
    /// The project's overrides of the server's `[rate_limit]` config.
    pub rate_limit: RateLimitOverride,
    /// The limits in force: overrides, else the server's defaults.
    pub effective_rate_limit: EffectiveRateLimit,
    /// Campaign messages per person across the project's campaigns, at most (absent:
    /// no cap); a campaign may opt out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_cap: Option<FrequencyCapSetting>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EffectiveRateLimit {
    pub api_per_second: u32,
    pub api_burst: u32,
    pub ingest_per_second: u32,
    pub ingest_burst: u32,
}

impl ProjectView {
    pub fn new(project: Project, defaults: &RateLimitConfig) -> Self {
        let o = project.settings.rate_limit;
        Self {
            id: project.id,
            organization_id: project.organization_id,
            name: project.name,
            timezone: project.timezone,
            effective_rate_limit: EffectiveRateLimit {
                api_per_second: o.api_per_second.unwrap_or(defaults.api_per_second),
                api_burst: o.api_burst.unwrap_or(defaults.api_burst),
                ingest_per_second: o.ingest_per_second.unwrap_or(defaults.ingest_per_second),
                ingest_burst: o.ingest_burst.unwrap_or(defaults.ingest_burst),
            },
            rate_limit: o,
            frequency_cap: project.settings.frequency_cap,
            created_at: project.created_at,
            updated_at: project.updated_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProjectList {
    pub projects: Vec<ProjectView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// IANA time zone; default `UTC`.
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitOverride>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedProject {
    pub project: ProjectView,
    /// The project's first write key; its plaintext is shown only here.
    pub write_key: CreatedKey,
}

/// A partial update; absent fields keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitPatch>,
    /// Sets the project's frequency cap; `null` removes it.
    #[serde(default, deserialize_with = "present_cap")]
    #[schema(value_type = Option<FrequencyCapSetting>, nullable)]
    pub frequency_cap: Option<Option<FrequencyCapSetting>>,
}

fn present_cap<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<FrequencyCapSetting>>, D::Error> {
    Option::<FrequencyCapSetting>::deserialize(d).map(Some)
}

/// Rate limit overrides to change: a number sets one, `null` returns to the default.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, nullable)]
    pub api_per_second: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, nullable)]
    pub api_burst: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, nullable)]
    pub ingest_per_second: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, nullable)]
    pub ingest_burst: Option<Option<u32>>,
}

/// Tells a field given as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

impl RateLimitPatch {
    fn apply(&self, to: &mut RateLimitOverride) {
        let pairs = [
            (self.api_per_second, &mut to.api_per_second),
            (self.api_burst, &mut to.api_burst),
            (self.ingest_per_second, &mut to.ingest_per_second),
            (self.ingest_burst, &mut to.ingest_burst),
        ];
        for (patch, field) in pairs {
            if let Some(value) = patch {
                *field = value;
            }
        }
    }
}

fn validate_rate_limit(o: &RateLimitOverride) -> Result<(), ApiError> {
    for (name, value) in [
        ("api_per_second", o.api_per_second),
        ("api_burst", o.api_burst),
        ("ingest_per_second", o.ingest_per_second),
        ("ingest_burst", o.ingest_burst),
    ] {
        if let Some(v) = value {
            if !(1..=MAX_RATE_LIMIT).contains(&v) {
                return Err(ApiError::invalid(
                    format!("rate_limit.{name}"),
                    format!("must be between 1 and {MAX_RATE_LIMIT}"),
                ));
            }
        }
    }
    Ok(())
}

fn validate_timezone(tz: &str) -> Result<(), ApiError> {
    if is_valid_timezone(tz) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "timezone",
            format!("`{tz}` is not an IANA time zone name (e.g. Europe/Paris, UTC)"),
        ))
    }
}

/// List the projects the key can see.
#[utoipa::path(get, path = "/api/v1/projects", tag = "projects",
    security(("secret_key" = [])),
    responses(
        (status = 200, body = ProjectList),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn list_projects(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<ProjectList>> {
    let projects = match caller.principal.project_id() {
        Some(own) => vec![caller.project(&state, own).await?.1],
        None => state
            .store
            .list_projects(caller.principal.organization_id())
            .await?
            .into_iter()
            .filter(|p| caller.principal.sees(p.id))
            .collect(),
    };
    Ok(Json(ProjectList {
        projects: projects
            .into_iter()
            .map(|p| ProjectView::new(p, &state.config.rate_limit))
            .collect(),
    }))
}

/// Create a project and its first write key (organisation admin keys only).
#[utoipa::path(post, path = "/api/v1/projects", tag = "projects",
    security(("secret_key" = [])),
    request_body = CreateProject,
    responses(
        (status = 201, body = CreatedProject),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_project(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateProject>,
) -> ApiResult<(StatusCode, Json<CreatedProject>)> {
    let name = validate_name("name", &body.name)?;
    let timezone = body.timezone.unwrap_or_else(|| "UTC".into());
    validate_timezone(&timezone)?;
    let rate_limit = body.rate_limit.unwrap_or_default();
    validate_rate_limit(&rate_limit)?;

    let now = Utc::now();
    let mut project = Project::new(caller.principal.organization_id(), name, timezone, now);
    project.settings.rate_limit = rate_limit;
    let (write_key, plaintext) = ApiKey::issue(
        KeyGrant {
            organization_id: project.organization_id,
            access: KeyAccess::Write {
                project: project.id,
            },
            name: "Default write key".into(),
            created_by: caller.principal.creating_key(),
        },
        now,
    );
    let audit = caller.audit(
        Some(project.id),
        "project.create",
        "project",
        project.id,
        serde_json::json!({ "name": project.name, "timezone": project.timezone,
            "write_key_id": write_key.id }),
    );
    state
        .store
        .create_project(&project, &write_key, &overview(project.id, now), &audit)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedProject {
            project: ProjectView::new(project, &state.config.rate_limit),
            write_key: CreatedKey::new(write_key, plaintext),
        }),
    ))
}

/// Read a project.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}", tag = "projects",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    responses((status = 200, body = ProjectView), (status = 404, body = ErrorBody)))]
pub async fn get_project(
    State(state): State<AppState>,
    CallerProject { project, .. }: CallerProject,
) -> ApiResult<Json<ProjectView>> {
    Ok(Json(ProjectView::new(project, &state.config.rate_limit)))
}

/// Change a project's name, time zone or rate limit overrides.
#[utoipa::path(patch, path = "/api/v1/projects/{project_id}", tag = "projects",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = UpdateProject,
    responses(
        (status = 200, body = ProjectView),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn update_project(
    State(state): State<AppState>,
    CallerProject {
        caller,
        mut project,
        ..
    }: CallerProject,
    ApiJson(body): ApiJson<UpdateProject>,
) -> ApiResult<Json<ProjectView>> {
    let mut changes = serde_json::Map::new();
    if let Some(name) = &body.name {
        project.name = validate_name("name", name)?;
        changes.insert("name".into(), project.name.clone().into());
    }
    if let Some(tz) = &body.timezone {
        validate_timezone(tz)?;
        project.timezone = tz.clone();
        changes.insert("timezone".into(), tz.clone().into());
    }
    if let Some(patch) = &body.rate_limit {
        patch.apply(&mut project.settings.rate_limit);
        validate_rate_limit(&project.settings.rate_limit)?;
        changes.insert(
            "rate_limit".into(),
            serde_json::to_value(project.settings.rate_limit).unwrap_or_default(),
        );
    }
    if let Some(cap) = body.frequency_cap {
        if let Some(c) = &cap {
            c.check()
                .map_err(|(field, rule)| ApiError::invalid(field, rule))?;
        }
        project.settings.frequency_cap = cap;
        changes.insert(
            "frequency_cap".into(),
            serde_json::to_value(cap).unwrap_or_default(),
        );
    }
    if changes.is_empty() {
        return Ok(Json(ProjectView::new(project, &state.config.rate_limit)));
    }
    project.updated_at = Utc::now();
    let audit = caller.audit(
        Some(project.id),
        "project.update",
        "project",
        project.id,
        changes.into(),
    );
    if !state.store.update_project(&project, &audit).await? {
        return Err(ApiError::not_found("project"));
    }
    state.keys.evict_project(project.id);
    Ok(Json(ProjectView::new(project, &state.config.rate_limit)))
}

/// Delete a project; all its keys are revoked at once, its event files removed.
#[utoipa::path(delete, path = "/api/v1/projects/{project_id}", tag = "projects",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_project(
    State(state): State<AppState>,
    CallerProject {
        caller, project, ..
    }: CallerProject,
) -> ApiResult<StatusCode> {
    let audit = caller.audit(
        Some(project.id),
        "project.delete",
        "project",
        project.id,
        serde_json::json!({ "name": project.name }),
    );
    let deleted = state
        .store
        .delete_project(project.organization_id, project.id, Utc::now(), &audit)
        .await?;
    if !deleted {
        return Err(ApiError::not_found("project"));
    }
    state.keys.evict_project(project.id);
    // Its event files leave the catalog now and the disk after the grace period (at
    // the next compaction pass); a failure here is retried by that pass.
    let events = state.events.store.clone();
    tokio::spawn(async move {
        if let Err(e) = events.sweep_deleted_projects().await {
            tracing::warn!(error = %e, "retiring a deleted project's event files failed");
        }
    });
    Ok(StatusCode::NO_CONTENT)
}

/// The definitions a new project starts with: its overview dashboard and insights.
pub fn overview(
    project: appizer_core::ProjectId,
    now: chrono::DateTime<Utc>,
) -> Vec<appizer_core::definition::Definition> {
    let (mut insights, dashboard) = appizer_analytics::insight::overview(project, now);
    insights.push(dashboard);
    insights
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::decode_json;

    #[test]
    fn rate_limit_patches_set_clear_and_keep_fields() {
        let mut o = RateLimitOverride {
            api_burst: Some(5),
            ingest_burst: Some(9),
            ..Default::default()
        };
        let patch: RateLimitPatch =
            decode_json(br#"{"api_per_second": 3, "api_burst": null}"#).unwrap();
        patch.apply(&mut o);
        assert_eq!(o.api_per_second, Some(3));
        assert_eq!(o.api_burst, None, "null returns to the default");
        assert_eq!(o.ingest_burst, Some(9), "absent keeps the value");
    }

    #[test]
    fn rate_limits_out_of_range_name_the_field() {
        let o = RateLimitOverride {
            ingest_burst: Some(0),
            ..Default::default()
        };
        let e = validate_rate_limit(&o).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("rate_limit.ingest_burst"));
        assert!(validate_timezone("Nowhere/Land").is_err());
    }
}
