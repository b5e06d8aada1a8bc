//! Authorization: the one table saying which permission each management route needs,
//! and the middleware that enforces it together with tenant scoping and rate limits.
//!
//! Order for a management request: authenticate (401) -> rate limit (429) -> tenant
//! scope (404: a project key never learns that another project exists) -> permission
//! (403) -> handler.

use std::time::Instant;

use appizer_core::{ErrorCode, Permission, ProjectId};
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::rate_limit::{LimitClass, Limits};
use crate::state::AppState;

/// Every management route and the permission it needs. A management route missing from
/// this table answers 500 (and a test walks the OpenAPI document to keep them equal).
pub const ACCESS_TABLE: &[(Method, &str, Permission)] = &[
    (Method::GET, "/api/v1/projects", Permission::ProjectRead),
    (
        Method::POST,
        "/api/v1/projects",
        Permission::OrganizationManage,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}",
        Permission::ProjectRead,
    ),
    (
        Method::PATCH,
        "/api/v1/projects/{project_id}",
        Permission::ProjectWrite,
    ),
    (
        Method::DELETE,
        "/api/v1/projects/{project_id}",
        Permission::ProjectWrite,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/keys",
        Permission::KeysManage,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/keys",
        Permission::KeysManage,
    ),
    (
        Method::DELETE,
        "/api/v1/projects/{project_id}/keys/{key_id}",
        Permission::KeysManage,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/audit-log",
        Permission::AuditRead,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/events",
        Permission::EventsRead,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/events/live",
        Permission::EventsRead,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/events/counts",
        Permission::EventsRead,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/ingestion-warnings",
        Permission::EventsRead,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/persons",
        Permission::PersonsRead,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/persons",
        Permission::PersonsWrite,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/persons/{person_id}",
        Permission::PersonsRead,
    ),
    (
        Method::DELETE,
        "/api/v1/projects/{project_id}/persons/{person_id}",
        Permission::PersonsWrite,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/distinct-ids/{distinct_id}",
        Permission::PersonsRead,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/persons/{person_id}/distinct-ids",
        Permission::PersonsWrite,
    ),
    (
        Method::DELETE,
        "/api/v1/projects/{project_id}/persons/{person_id}/distinct-ids/{distinct_id}",
        Permission::PersonsWrite,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/persons/{person_id}/merge",
        Permission::PersonsWrite,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/persons/{person_id}/split",
        Permission::PersonsWrite,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/persons/{person_id}/merges",
        Permission::PersonsRead,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/query/trends",
        Permission::AnalyticsRead,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/query/trends/persons",
        Permission::PersonsRead,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/query/funnels",
        Permission::AnalyticsRead,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/query/retention",
        Permission::AnalyticsRead,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/query/stickiness",
        Permission::AnalyticsRead,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/query/lifecycle",
        Permission::AnalyticsRead,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/query/sql",
        Permission::AnalyticsRead,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/query/explain",
        Permission::AnalyticsRead,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/metrics",
        Permission::AnalyticsRead,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/metrics",
        Permission::MetricsWrite,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/metrics/{metric_id}",
        Permission::AnalyticsRead,
    ),
    (
        Method::PATCH,
        "/api/v1/projects/{project_id}/metrics/{metric_id}",
        Permission::MetricsWrite,
    ),
    (
        Method::DELETE,
        "/api/v1/projects/{project_id}/metrics/{metric_id}",
        Permission::MetricsWrite,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/metrics/{metric_id}/evaluate",
        Permission::AnalyticsRead,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/segments",
        Permission::AnalyticsRead,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/segments",
        Permission::SegmentsWrite,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/segments/{segment_id}",
        Permission::AnalyticsRead,
    ),
    (
        Method::PATCH,
        "/api/v1/projects/{project_id}/segments/{segment_id}",
        Permission::SegmentsWrite,
    ),
    (
        Method::DELETE,
        "/api/v1/projects/{project_id}/segments/{segment_id}",
        Permission::SegmentsWrite,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/segments/{segment_id}/refresh",
        Permission::SegmentsWrite,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/segments/{segment_id}/persons",
        Permission::AnalyticsRead,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/segments/{segment_id}/persons/{person_id}",
        Permission::AnalyticsRead,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/push/devices",
        Permission::PushRead,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/push/devices/{device_id}",
        Permission::PushRead,
    ),
    (
        Method::DELETE,
        "/api/v1/projects/{project_id}/push/devices/{device_id}",
        Permission::PushWrite,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/persons/{person_id}/devices",
        Permission::PushRead,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/push/providers",
        Permission::PushRead,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/push/providers/{provider}",
        Permission::PushRead,
    ),
    (
        Method::PUT,
        "/api/v1/projects/{project_id}/push/providers/{provider}",
        Permission::PushProvidersManage,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/push/messages",
        Permission::PushWrite,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/push/messages/{message_id}",
        Permission::PushRead,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/campaigns",
        Permission::PushRead,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/campaigns",
        Permission::CampaignsWrite,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/campaigns/preview",
        Permission::PushRead,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/campaigns/{campaign_id}",
        Permission::PushRead,
    ),
    (
        Method::PATCH,
        "/api/v1/projects/{project_id}/campaigns/{campaign_id}",
        Permission::CampaignsWrite,
    ),
    (
        Method::DELETE,
        "/api/v1/projects/{project_id}/campaigns/{campaign_id}",
        Permission::CampaignsWrite,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/campaigns/{campaign_id}/schedule",
        Permission::CampaignsWrite,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/campaigns/{campaign_id}/pause",
        Permission::CampaignsWrite,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/campaigns/{campaign_id}/resume",
        Permission::CampaignsWrite,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/campaigns/{campaign_id}/cancel",
        Permission::CampaignsWrite,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/campaigns/{campaign_id}/test-send",
        Permission::CampaignsWrite,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/campaigns/{campaign_id}/report",
        Permission::AnalyticsRead,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/insights",
        Permission::AnalyticsRead,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/insights",
        Permission::InsightsWrite,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/insights/{insight_id}",
        Permission::AnalyticsRead,
    ),
    (
        Method::PATCH,
        "/api/v1/projects/{project_id}/insights/{insight_id}",
        Permission::InsightsWrite,
    ),
    (
        Method::DELETE,
        "/api/v1/projects/{project_id}/insights/{insight_id}",
        Permission::InsightsWrite,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/dashboards",
        Permission::AnalyticsRead,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/dashboards",
        Permission::InsightsWrite,
    ),
    (
        Method::GET,
        "/api/v1/projects/{project_id}/dashboards/{dashboard_id}",
        Permission::AnalyticsRead,
    ),
    (
        Method::PATCH,
        "/api/v1/projects/{project_id}/dashboards/{dashboard_id}",
        Permission::InsightsWrite,
    ),
    (
        Method::DELETE,
        "/api/v1/projects/{project_id}/dashboards/{dashboard_id}",
        Permission::InsightsWrite,
    ),
    (
        Method::POST,
        "/api/v1/projects/{project_id}/segments/preview",
        Permission::AnalyticsRead,
    ),
    (Method::GET, "/api/v1/members", Permission::MembersRead),
    (
        Method::GET,
        "/api/v1/members/{member_id}",
        Permission::MembersRead,
    ),
    (
        Method::PATCH,
        "/api/v1/members/{member_id}",
        Permission::MembersManage,
    ),
    (
        Method::DELETE,
        "/api/v1/members/{member_id}",
        Permission::MembersManage,
    ),
    (
        Method::GET,
        "/api/v1/members/{member_id}/sessions",
        Permission::MembersManage,
    ),
    (
        Method::DELETE,
        "/api/v1/members/{member_id}/sessions/{session_id}",
        Permission::MembersManage,
    ),
    (Method::GET, "/api/v1/invites", Permission::MembersManage),
    (Method::POST, "/api/v1/invites", Permission::MembersManage),
    (
        Method::DELETE,
        "/api/v1/invites/{invite_id}",
        Permission::MembersManage,
    ),
];

/// Routes under `/api/` that authenticate themselves (a password, an invitation token,
/// the session cookie) instead of going through the access table.
pub const SELF_AUTHENTICATED: &[(Method, &str)] = &[
    (Method::POST, "/api/v1/session"),
    (Method::GET, "/api/v1/session"),
    (Method::DELETE, "/api/v1/session"),
    (Method::POST, "/api/v1/session/password"),
    (Method::GET, "/api/v1/session/sessions"),
    (Method::DELETE, "/api/v1/session/sessions/{session_id}"),
    (Method::POST, "/api/v1/invites/accept"),
];

/// The permission `method` on the route template `path` needs.
pub fn required_permission(method: &Method, path: &str) -> Option<Permission> {
    ACCESS_TABLE
        .iter()
        .find(|(m, p, _)| m == method && *p == path)
        .map(|(_, _, permission)| *permission)
}

/// Whether `principal` may use `permission` on `project` (the route's project, if any).
/// `Err` carries the answer: 404 outside the caller's projects (a project key's own, a
/// member's with a role), 403 for a missing grant. Keys and sessions answer to the
/// same table: a member's role is the one they hold in the route's project.
pub fn authorize(
    principal: &Principal,
    permission: Permission,
    project: Option<ProjectId>,
) -> Result<(), ApiError> {
    if project.is_some_and(|p| !principal.sees(p)) {
        return Err(ApiError::not_found("project"));
    }
    let who = if principal.key().is_some() {
        "the key's"
    } else {
        "your"
    };
    let role = principal.role_in(project);
    if !role.is_some_and(|r| r.grants(permission)) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "{who} role `{}` does not allow this action",
                role.map_or("none", |r| r.as_str())
            ),
        ));
    }
    if permission.needs_organization_key() && !principal.is_organization_wide() {
        let message = if principal.key().is_some() {
            "this action needs an organisation-wide admin key, not a project key"
        } else {
            "this action needs the admin role in the whole organisation"
        };
        return Err(ApiError::new(ErrorCode::Forbidden, message));
    }
    Ok(())
}

/// Answers `response` to a request refused before its handler, once its body (up to
/// `server.max_body_bytes`) is read: a body left unread would make the server close
/// the connection, so a client told to slow down would also have to reconnect.
pub async fn refuse(state: &AppState, request: Request, response: Response) -> Response {
    let limit = state.config.server.max_body_bytes;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_none_or(|n| n > 0 && n <= limit as u64) {
        let _ = axum::body::to_bytes(request.into_body(), limit).await;
    }
    response
}

/// Middleware after [`crate::auth::require_credential`]: rate limit, scope, permission.
pub async fn enforce(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Response {
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        tracing::error!("access enforcement ran without an authenticated principal");
        return ApiError::internal().into_response();
    };
    let limits = Limits::resolve(
        &state.config.rate_limit,
        &principal.rate_limit,
        LimitClass::Api,
    );
    let decision = state
        .limiter
        .check(
            principal.limit_id(),
            LimitClass::Api,
            limits,
            Instant::now(),
        )
        .await;
    if !decision.allowed {
        let response = ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "rate limit of {} requests/s (burst {}) exceeded for this key",
                limits.per_second, limits.burst
            ),
        )
        .with_rate_limit(decision)
        .into_response();
        return refuse(&state, request, response).await;
    }

    let path = matched.as_ref().map_or("", |m| m.as_str());
    let Some(permission) = required_permission(request.method(), path) else {
        tracing::error!(method = %request.method(), route = path, "route missing from the access table");
        return ApiError::internal().into_response();
    };
    let project = match route_project(params) {
        Ok(p) => p,
        Err(e) => return refuse(&state, request, e.into_response()).await,
    };
    if let Err(e) = authorize(&principal, permission, project) {
        let response = e.with_rate_limit(decision).into_response();
        return refuse(&state, request, response).await;
    }
    let mut response = next.run(request).await;
    decision.write_headers(response.headers_mut());
    response
}

/// The `{project_id}` of the route, if it has one; a malformed id is 404.
fn route_project(
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
) -> Result<Option<ProjectId>, ApiError> {
    let Ok(params) = params else {
        return Ok(None);
    };
    params
        .iter()
        .find(|(name, _)| *name == "project_id")
        .map(|(_, value)| value.parse().map_err(|_| ApiError::not_found("project")))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Credential, SignedIn};
    use appizer_core::member::{Member, MemberAccess, Session};
    use appizer_core::tenancy::{ApiKey, KeyAccess, KeyGrant};
    use appizer_core::{MemberId, OrganizationId, Role, SessionId};
    use std::sync::Arc;

    fn principal(role: Role, project: Option<ProjectId>) -> Principal {
        let (key, _) = ApiKey::issue(
            KeyGrant {
                organization_id: OrganizationId::new(),
                access: match project {
                    Some(project) => KeyAccess::ProjectSecret { project, role },
                    None => KeyAccess::OrganizationSecret { role },
                },
                name: "t".into(),
                created_by: None,
            },
            chrono::Utc::now(),
        );
        Principal {
            credential: Credential::Key(Arc::new(key)),
            rate_limit: Default::default(),
            scope: None,
        }
    }

    fn member(access: MemberAccess) -> Principal {
        let now = chrono::Utc::now();
        let member = Member {
            id: MemberId::new(),
            organization_id: OrganizationId::new(),
            email: "m@example.com".into(),
            name: "M".into(),
            access,
            password_hash: String::new(),
            created_at: now,
            updated_at: now,
        };
        let session = Session {
            id: SessionId::new(),
            member_id: member.id,
            token_hash: String::new(),
            created_at: now,
            expires_at: now,
            last_seen_at: now,
            revoked_at: None,
            ip: None,
            user_agent: None,
        };
        Principal {
            credential: Credential::Session(Arc::new(SignedIn { session, member })),
            rate_limit: Default::default(),
            scope: None,
        }
    }

    #[test]
    fn a_members_session_gets_the_grant_of_the_table_for_their_role_there() {
        let (own, other) = (ProjectId::new(), ProjectId::new());
        for role in Role::ALL {
            let org_member = member(MemberAccess {
                organization_role: Some(role),
                projects: Default::default(),
            });
            let project_member = member(MemberAccess {
                organization_role: None,
                projects: [(own, role)].into(),
            });
            for (method, path, permission) in ACCESS_TABLE {
                let scoped = path.contains("{project_id}");
                let expected = role.grants(*permission);
                assert_eq!(
                    authorize(&org_member, *permission, scoped.then_some(own)).is_ok(),
                    expected,
                    "{role} member of the organisation on {method} {path}"
                );
                let answer = authorize(&project_member, *permission, scoped.then_some(own));
                let project_expected = if scoped {
                    expected
                } else {
                    // Outside a project a project member reads as a viewer.
                    Role::Viewer.grants(*permission) && !permission.needs_organization_key()
                };
                assert_eq!(
                    answer.is_ok(),
                    project_expected,
                    "{role} member of one project on {method} {path}"
                );
                if scoped {
                    let e = authorize(&project_member, *permission, Some(other)).unwrap_err();
                    assert_eq!(e.code, ErrorCode::NotFound, "{role} on {path}");
                }
            }
        }
        // A project's own role wins over the organisation's.
        let mixed = member(MemberAccess {
            organization_role: Some(Role::Viewer),
            projects: [(own, Role::Admin)].into(),
        });
        assert!(authorize(&mixed, Permission::KeysManage, Some(own)).is_ok());
        assert!(authorize(&mixed, Permission::KeysManage, Some(other)).is_err());
        assert!(authorize(&mixed, Permission::MembersManage, None).is_err());
    }

    #[test]
    fn every_route_and_role_gets_the_grant_of_the_table() {
        let project = ProjectId::new();
        for role in Role::ALL {
            for (method, path, permission) in ACCESS_TABLE {
                let org_key = principal(role, None);
                let project_key = principal(role, Some(project));
                let scoped = path.contains("{project_id}").then_some(project);
                let expected = role.grants(*permission);
                assert_eq!(
                    authorize(&org_key, *permission, scoped).is_ok(),
                    expected,
                    "{role} org key on {method} {path}"
                );
                let project_expected = expected && !permission.needs_organization_key();
                let answer = authorize(&project_key, *permission, scoped);
                assert_eq!(
                    answer.is_ok(),
                    project_expected,
                    "{role} project key on {method} {path}"
                );
                if let Err(e) = answer {
                    assert_eq!(e.code, ErrorCode::Forbidden);
                }
            }
        }
    }

    #[test]
    fn another_projects_routes_are_not_found_whatever_the_role() {
        let own = ProjectId::new();
        let other = ProjectId::new();
        for role in Role::ALL {
            for (_, path, permission) in
                ACCESS_TABLE.iter().filter(|r| r.1.contains("{project_id}"))
            {
                let e =
                    authorize(&principal(role, Some(own)), *permission, Some(other)).unwrap_err();
                assert_eq!(e.code, ErrorCode::NotFound, "{role} on {path}");
            }
        }
    }

    #[test]
    fn the_table_has_one_entry_per_route() {
        for (i, (m, p, _)) in ACCESS_TABLE.iter().enumerate() {
            assert!(
                !ACCESS_TABLE[i + 1..]
                    .iter()
                    .any(|(m2, p2, _)| m2 == m && p2 == p),
                "{m} {p} listed twice"
            );
            assert_eq!(required_permission(m, p), Some(ACCESS_TABLE[i].2));
        }
        assert_eq!(required_permission(&Method::PUT, "/api/v1/projects"), None);
    }
}
