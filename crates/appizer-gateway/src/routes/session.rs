//! `/api/v1/session`: a team member signs in (email and password) and out, reads their
//! session (with the CSRF token the page sends on writes) and changes their password;
//! `/api/v1/invites/accept` turns an invitation into a member, signed in. These routes
//! authenticate themselves (by password, invitation token or session cookie), so they
//! sit outside the key-authenticated management stack.

use std::net::SocketAddr;

use appizer_core::keys::hash_key;
use appizer_core::member::{
    csrf_token, hash_password, normalize_email, verify_password, Member, Session, Token,
};
use appizer_core::tenancy::{Actor, NewAuditEntry};
use appizer_core::{ErrorCode, MemberId, SessionId};
use appizer_storage::team::MemberChange;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{SET_COOKIE, USER_AGENT};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::capture::client_ip;
use super::members::{MemberView, SessionList, SessionView};
use crate::auth::{authenticate_session, Principal};
use crate::dashboard_auth::{
    cleared_cookie, secure_cookies, session_cookie, session_token, SESSION_PREFIX,
};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::observe::RequestId;
use crate::state::AppState;

/// The signed-in member and what the page needs to act for them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CurrentSession {
    pub member: MemberView,
    #[schema(value_type = String, format = Uuid)]
    pub session_id: SessionId,
    /// Send it as `X-CSRF-Token` with every write.
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    /// 10 to 256 characters.
    #[schema(min_length = 10, max_length = 256)]
    pub new_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvite {
    /// The invitation's token, from its link.
    pub token: String,
    /// The new member's password: 10 to 256 characters.
    #[schema(min_length = 10, max_length = 256)]
    pub password: String,
    /// Replaces the name the invitation gave; 1 to 200 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
}

/// The routes of this module with their OpenAPI description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_in, current, sign_out))
        .routes(routes!(change_password))
        .routes(routes!(own_sessions))
        .routes(routes!(end_own_session))
        .routes(routes!(accept_invite))
}

/// A hash no password matches, verified when the email is unknown so that an unknown
/// account takes as long to refuse as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password, never used").unwrap_or_default())
}

/// Verifies on a blocking thread: argon2 takes tens of milliseconds by design.
async fn verify(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false)
}

async fn hash(password: String, field: &'static str) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| ApiError::invalid(field, e.0))
}

fn audit_of(member: &Member, action: &str, request: Option<&RequestId>) -> NewAuditEntry {
    NewAuditEntry {
        organization_id: member.organization_id,
        project_id: None,
        actor: Actor::Member(member.id),
        action: action.into(),
        target_type: "member".into(),
        target_id: member.id.to_string(),
        details: serde_json::json!({}),
        request_id: request.map(|r| r.0.clone()),
        at: Utc::now(),
    }
}

/// Opens a session for `member` and answers it with its cookie.
async fn open_session(
    state: &AppState,
    member: Member,
    headers: &HeaderMap,
    ip: Option<std::net::IpAddr>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let ttl = Duration::hours(state.config.auth.session_ttl_hours.max(1) as i64);
    let token = Token::generate(SESSION_PREFIX);
    let session = Session {
        id: SessionId::new(),
        member_id: member.id,
        token_hash: token.hash.clone(),
        created_at: now,
        expires_at: now + ttl,
        last_seen_at: now,
        revoked_at: None,
        ip: ip.map(|ip| ip.to_string()),
        user_agent: headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(300).collect()),
    };
    state.store.team().create_session(&session).await?;
    let body = CurrentSession {
        member: member.into(),
        session_id: session.id,
        csrf_token: csrf_token(&token.plaintext),
        expires_at: session.expires_at,
    };
    let cookie = session_cookie(
        &token.plaintext,
        ttl.num_seconds(),
        secure_cookies(&state.config),
    );
    Ok((status, [(SET_COOKIE, cookie)], Json(body)).into_response())
}

fn peer_ip(
    state: &AppState,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: &HeaderMap,
) -> Option<std::net::IpAddr> {
    client_ip(
        peer.map(|c| c.0 .0),
        headers,
        &state.config.ingest.trusted_proxies,
    )
}

/// Sign in with email and password: the answer sets the session cookie (HttpOnly,
/// SameSite=Lax) and carries the CSRF token. Attempts are limited per account and per
/// address (429 with `Retry-After`).
#[utoipa::path(post, path = "/api/v1/session", tag = "session",
    request_body = SignIn,
    responses((status = 200, body = CurrentSession,
            headers(("Set-Cookie" = String, description = "the session cookie"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn sign_in(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SignIn>,
) -> ApiResult<Response> {
    let ip = peer_ip(&state, peer, &headers);
    let email = normalize_email(&body.email).map_err(|e| ApiError::invalid("email", e.0))?;
    crate::dashboard_auth::spend_sign_in(&state, &email, ip).await?;
    let member = state.store.team().find_member_by_email(&email).await?;
    let hash = member
        .as_ref()
        .map_or_else(|| decoy_hash().to_string(), |m| m.password_hash.clone());
    let matches = verify(body.password, hash).await;
    let Some(member) = member.filter(|_| matches) else {
        return Err(
            ApiError::new(ErrorCode::Unauthorized, "wrong email or password")
                .with_field("password"),
        );
    };
    open_session(&state, member, &headers, ip, StatusCode::OK).await
}

/// The signed-in member, their session and its CSRF token (401 when not signed in).
#[utoipa::path(get, path = "/api/v1/session", tag = "session",
    responses((status = 200, body = CurrentSession), (status = 401, body = ErrorBody)))]
pub async fn current(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<CurrentSession>> {
    let principal = authenticate_session(&state, &Method::GET, &headers).await?;
    let token = session_token(&headers).unwrap_or_default();
    let signed_in = signed_in(&principal)?;
    Ok(Json(CurrentSession {
        member: signed_in.member.clone().into(),
        session_id: signed_in.session.id,
        csrf_token: csrf_token(&token),
        expires_at: signed_in.session.expires_at,
    }))
}

fn signed_in(principal: &Principal) -> Result<&crate::auth::SignedIn, ApiError> {
    principal.signed_in().ok_or_else(ApiError::internal)
}

/// Sign out: the session ends and its cookie is cleared. Needs the CSRF token.
#[utoipa::path(delete, path = "/api/v1/session", tag = "session",
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let principal = authenticate_session(&state, &Method::DELETE, &headers).await?;
    let signed_in = signed_in(&principal)?;
    state
        .store
        .team()
        .revoke_session(signed_in.member.id, signed_in.session.id, Utc::now())
        .await?;
    state.keys.evict_session(&signed_in.session.token_hash);
    Ok((
        StatusCode::NO_CONTENT,
        [(SET_COOKIE, cleared_cookie(secure_cookies(&state.config)))],
    )
        .into_response())
}

/// Change one's password (the current one is required); the member's other sessions
/// end. Needs the CSRF token.
#[utoipa::path(post, path = "/api/v1/session/password", tag = "session",
    request_body = PasswordChange,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    let principal = authenticate_session(&state, &Method::POST, &headers).await?;
    let signed_in = signed_in(&principal)?;
    let member = &signed_in.member;
    if !verify(body.current_password, member.password_hash.clone()).await {
        return Err(
            ApiError::new(ErrorCode::Forbidden, "the current password is wrong")
                .with_field("current_password"),
        );
    }
    let password_hash = hash(body.new_password, "new_password").await?;
    let change = MemberChange {
        password_hash: Some(password_hash),
        at: Utc::now(),
        ..Default::default()
    };
    state
        .store
        .team()
        .update_member(
            member.organization_id,
            member.id,
            &change,
            Some(signed_in.session.id),
            &audit_of(member, "member.password", request_id.as_deref()),
        )
        .await?;
    state.keys.evict_member(member.id);
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in member's sessions, newest first (`current` marks this one).
#[utoipa::path(get, path = "/api/v1/session/sessions", tag = "session",
    responses((status = 200, body = SessionList), (status = 401, body = ErrorBody)))]
pub async fn own_sessions(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<SessionList>> {
    let principal = authenticate_session(&state, &Method::GET, &headers).await?;
    let signed_in = signed_in(&principal)?;
    let sessions = state
        .store
        .team()
        .list_sessions(signed_in.member.id)
        .await?;
    Ok(Json(SessionList {
        sessions: sessions
            .into_iter()
            .map(|s| SessionView::new(s, &state, Some(signed_in.session.id)))
            .collect(),
    }))
}

/// End one of the signed-in member's sessions (another browser, say). Needs the CSRF
/// token.
#[utoipa::path(delete, path = "/api/v1/session/sessions/{session_id}", tag = "session",
    params(("session_id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn end_own_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<SessionId>,
) -> ApiResult<StatusCode> {
    let principal = authenticate_session(&state, &Method::DELETE, &headers).await?;
    let signed_in = signed_in(&principal)?;
    let revoked = state
        .store
        .team()
        .revoke_session(signed_in.member.id, id, Utc::now())
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    state.keys.evict_session(&revoked.token_hash);
    Ok(StatusCode::NO_CONTENT)
}

/// Accept an invitation: the member is created with the invitation's access and the
/// chosen password, and signed in (201 with the session cookie). An invitation works
/// once, until it expires.
#[utoipa::path(post, path = "/api/v1/invites/accept", tag = "members",
    request_body = AcceptInvite,
    responses((status = 201, body = CurrentSession), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn accept_invite(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AcceptInvite>,
) -> ApiResult<Response> {
    let gone = || {
        ApiError::new(
            ErrorCode::NotFound,
            "no such invitation, or it was used or expired",
        )
        .with_field("token")
    };
    let team = state.store.team();
    let invite = team
        .find_invite(&hash_key(&body.token))
        .await?
        .filter(|i| i.accepted_at.is_none() && Utc::now() < i.expires_at)
        .ok_or_else(gone)?;
    let name = match body.name.as_deref() {
        Some(n) => super::validate_name("name", n)?,
        None => invite.name.clone(),
    };
    let password_hash = hash(body.password, "password").await?;
    let now = Utc::now();
    let member = Member {
        id: MemberId::new(),
        organization_id: invite.organization_id,
        email: invite.email.clone(),
        name,
        access: invite.access.clone(),
        password_hash,
        created_at: now,
        updated_at: now,
    };
    if !team
        .accept_invite(
            invite.id,
            &member,
            &audit_of(&member, "member.join", request_id.as_deref()),
        )
        .await?
    {
        return Err(gone());
    }
    let ip = peer_ip(&state, peer, &headers);
    open_session(&state, member, &headers, ip, StatusCode::CREATED).await
}
