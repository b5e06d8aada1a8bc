//! `/api/v1/members` and `/api/v1/invites`: the organisation's team members (who sign
//! in to the dashboard), their sessions, and invitations. Every role reads the member
//! list; organisation admins invite (a one-time link in the answer, no mail server
//! needed), change and remove members, and list and end their sessions.

use appizer_core::member::{normalize_email, Invite, Member, MemberAccess, Session, Token};
use appizer_core::{ErrorCode, InviteId, MemberId, ProjectId, SessionId};
use appizer_storage::team::MemberChange;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{validate_name, Caller};
use crate::dashboard_auth::INVITE_PREFIX;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

/// A member as listed: never their password hash.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    #[schema(value_type = String, format = Uuid)]
    pub id: MemberId,
    pub email: String,
    pub name: String,
    pub access: MemberAccess,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Member> for MemberView {
    fn from(m: Member) -> Self {
        Self {
            id: m.id,
            email: m.email,
            name: m.name,
            access: m.access,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberList {
    pub members: Vec<MemberView>,
}

/// A session as listed: never its token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    #[schema(value_type = String, format = Uuid)]
    pub id: SessionId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether it still opens the API.
    pub live: bool,
    /// Whether it is the session of this request.
    pub current: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl SessionView {
    pub fn new(s: Session, state: &AppState, current: Option<SessionId>) -> Self {
        let idle = Duration::hours(state.config.auth.session_idle_hours.max(1) as i64);
        Self {
            live: s.is_live(Utc::now(), idle),
            current: current == Some(s.id),
            id: s.id,
            created_at: s.created_at,
            expires_at: s.expires_at,
            last_seen_at: s.last_seen_at,
            revoked_at: s.revoked_at,
            ip: s.ip,
            user_agent: s.user_agent,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

/// An invitation as listed: never its token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InviteView {
    #[schema(value_type = String, format = Uuid)]
    pub id: InviteId,
    pub email: String,
    pub name: String,
    pub access: MemberAccess,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub created_by: Option<MemberId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl From<Invite> for InviteView {
    fn from(i: Invite) -> Self {
        Self {
            id: i.id,
            email: i.email,
            name: i.name,
            access: i.access,
            created_by: i.created_by,
            created_at: i.created_at,
            expires_at: i.expires_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InviteList {
    pub invites: Vec<InviteView>,
}

/// An invitation just made: the only answer carrying its token and link.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedInvite {
    #[serde(flatten)]
    pub view: InviteView,
    /// The one-time token (`POST /api/v1/invites/accept` takes it).
    pub token: String,
    /// The link to give the new member: the dashboard's accept page with the token.
    pub link: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvite {
    /// The new member's email; at most 254 characters.
    #[schema(max_length = 254)]
    pub email: String,
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// At least one role: in the organisation, or in projects of it.
    pub access: MemberAccess,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberPatch {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    #[serde(default)]
    pub name: Option<String>,
    /// Replaces the member's access (and ends their sessions, which then sign in
    /// again with it).
    #[serde(default)]
    pub access: Option<MemberAccess>,
}

/// Refuses access that opens nothing or names a project outside the organisation.
pub(super) async fn check_access(
    state: &AppState,
    caller: &Caller,
    access: &MemberAccess,
) -> Result<(), ApiError> {
    if access.is_empty() {
        return Err(ApiError::invalid(
            "access",
            "must give a role in the organisation or in at least one project",
        ));
    }
    let projects: Vec<ProjectId> = state
        .store
        .list_projects(caller.principal.organization_id())
        .await?
        .into_iter()
        .map(|p| p.id)
        .collect();
    if let Some(unknown) = access.projects.keys().find(|p| !projects.contains(p)) {
        return Err(ApiError::invalid(
            format!("access.projects.{unknown}"),
            "is not a project of this organisation",
        ));
    }
    Ok(())
}

/// List the organisation's team members.
#[utoipa::path(get, path = "/api/v1/members", tag = "members",
    security(("secret_key" = [])),
    responses((status = 200, body = MemberList), (status = 401, body = ErrorBody)))]
pub async fn list_members(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<MemberList>> {
    let members = state
        .store
        .team()
        .list_members(caller.principal.organization_id())
        .await?;
    Ok(Json(MemberList {
        members: members.into_iter().map(MemberView::from).collect(),
    }))
}

/// One team member.
#[utoipa::path(get, path = "/api/v1/members/{member_id}", tag = "members",
    security(("secret_key" = [])),
    params(("member_id" = String, Path, format = Uuid)),
    responses((status = 200, body = MemberView), (status = 404, body = ErrorBody)))]
pub async fn get_member(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<MemberId>,
) -> ApiResult<Json<MemberView>> {
    let member = state
        .store
        .team()
        .get_member(caller.principal.organization_id(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    Ok(Json(member.into()))
}

/// Change a member's name or access (organisation admins). A change of access ends the
/// member's sessions. The last organisation admin cannot lose the role (409).
#[utoipa::path(patch, path = "/api/v1/members/{member_id}", tag = "members",
    security(("secret_key" = [])),
    params(("member_id" = String, Path, format = Uuid)),
    request_body = MemberPatch,
    responses((status = 200, body = MemberView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn update_member(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<MemberId>,
    ApiJson(body): ApiJson<MemberPatch>,
) -> ApiResult<Json<MemberView>> {
    let name = body
        .name
        .as_deref()
        .map(|n| validate_name("name", n))
        .transpose()?;
    if let Some(access) = &body.access {
        check_access(&state, &caller, access).await?;
    }
    let audit = caller.audit(
        None,
        "member.update",
        "member",
        id,
        serde_json::json!({ "name": name, "access": body.access }),
    );
    let change = MemberChange {
        name,
        access: body.access,
        password_hash: None,
        at: Utc::now(),
    };
    let member = state
        .store
        .team()
        .update_member(
            caller.principal.organization_id(),
            id,
            &change,
            None,
            &audit,
        )
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    state.keys.evict_member(id);
    Ok(Json(member.into()))
}

/// Remove a member and end their sessions (organisation admins). The last
/// organisation admin cannot be removed (409).
#[utoipa::path(delete, path = "/api/v1/members/{member_id}", tag = "members",
    security(("secret_key" = [])),
    params(("member_id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<MemberId>,
) -> ApiResult<StatusCode> {
    let audit = caller.audit(None, "member.remove", "member", id, serde_json::json!({}));
    let removed = state
        .store
        .team()
        .remove_member(caller.principal.organization_id(), id, &audit)
        .await?;
    state.keys.evict_member(id);
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("member"))
    }
}

/// A member's sessions, newest first (organisation admins; a member lists their own
/// at `GET /api/v1/session/sessions`).
#[utoipa::path(get, path = "/api/v1/members/{member_id}/sessions", tag = "members",
    security(("secret_key" = [])),
    params(("member_id" = String, Path, format = Uuid)),
    responses((status = 200, body = SessionList), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_sessions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<MemberId>,
) -> ApiResult<Json<SessionList>> {
    let team = state.store.team();
    team.get_member(caller.principal.organization_id(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    let current = caller.principal.signed_in().map(|s| s.session.id);
    let sessions = team.list_sessions(id).await?;
    Ok(Json(SessionList {
        sessions: sessions
            .into_iter()
            .map(|s| SessionView::new(s, &state, current))
            .collect(),
    }))
}

/// End one of a member's sessions (organisation admins): it is refused from the next
/// request on.
#[utoipa::path(delete, path = "/api/v1/members/{member_id}/sessions/{session_id}",
    tag = "members", security(("secret_key" = [])),
    params(("member_id" = String, Path, format = Uuid),
        ("session_id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn revoke_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((member, session)): ApiPath<(MemberId, SessionId)>,
) -> ApiResult<StatusCode> {
    let team = state.store.team();
    team.get_member(caller.principal.organization_id(), member)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    let revoked = team
        .revoke_session(member, session, Utc::now())
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    state.keys.evict_session(&revoked.token_hash);
    Ok(StatusCode::NO_CONTENT)
}

/// Invitations not yet accepted (organisation admins).
#[utoipa::path(get, path = "/api/v1/invites", tag = "members",
    security(("secret_key" = [])),
    responses((status = 200, body = InviteList), (status = 403, body = ErrorBody)))]
pub async fn list_invites(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<InviteList>> {
    let invites = state
        .store
        .team()
        .list_invites(caller.principal.organization_id())
        .await?;
    Ok(Json(InviteList {
        invites: invites.into_iter().map(InviteView::from).collect(),
    }))
}

/// Invite a team member (organisation admins): the answer carries a one-time link,
/// valid `auth.invite_ttl_hours`, through which they choose a password and sign in.
#[utoipa::path(post, path = "/api/v1/invites", tag = "members",
    security(("secret_key" = [])),
    request_body = NewInvite,
    responses((status = 201, body = CreatedInvite), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_invite(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewInvite>,
) -> ApiResult<(StatusCode, Json<CreatedInvite>)> {
    let email = normalize_email(&body.email).map_err(|e| ApiError::invalid("email", e.0))?;
    let name = validate_name("name", &body.name)?;
    check_access(&state, &caller, &body.access).await?;
    let team = state.store.team();
    if team.find_member_by_email(&email).await?.is_some() {
        return Err(
            ApiError::new(ErrorCode::Conflict, "a member with this email exists")
                .with_field("email"),
        );
    }
    let now = Utc::now();
    let token = Token::generate(INVITE_PREFIX);
    let invite = Invite {
        id: InviteId::new(),
        organization_id: caller.principal.organization_id(),
        email,
        name,
        access: body.access,
        token_hash: token.hash,
        created_by: caller.principal.signed_in().map(|s| s.member.id),
        created_at: now,
        expires_at: now + Duration::hours(state.config.auth.invite_ttl_hours.max(1) as i64),
        accepted_at: None,
    };
    let audit = caller.audit(
        None,
        "member.invite",
        "invite",
        invite.id,
        serde_json::json!({ "email": invite.email, "access": invite.access }),
    );
    team.create_invite(&invite, &audit).await?;
    let base = state
        .config
        .server
        .public_url
        .as_deref()
        .unwrap_or("")
        .trim_end_matches('/');
    Ok((
        StatusCode::CREATED,
        Json(CreatedInvite {
            link: format!("{base}/accept-invite#token={}", token.plaintext),
            token: token.plaintext,
            view: invite.into(),
        }),
    ))
}

/// Withdraw an invitation not yet accepted (organisation admins).
#[utoipa::path(delete, path = "/api/v1/invites/{invite_id}", tag = "members",
    security(("secret_key" = [])),
    params(("invite_id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn delete_invite(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<InviteId>,
) -> ApiResult<StatusCode> {
    let audit = caller.audit(None, "member.uninvite", "invite", id, serde_json::json!({}));
    if state
        .store
        .team()
        .delete_invite(caller.principal.organization_id(), id, &audit)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("invite"))
    }
}
