//! The team store: an organisation's members (who sign in to the dashboard), their
//! sessions and their invitations. Every member change writes its audit entry in the
//! same transaction. One trait; one SQL implementation for SQLite and PostgreSQL
//! (`sql/`), run against `tests/team_conformance.rs`.

mod sql;

use appizer_core::member::{Invite, Member, MemberAccess, Session};
use appizer_core::tenancy::NewAuditEntry;
use appizer_core::{InviteId, MemberId, OrganizationId, SessionId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub(crate) use sql::insert_member;
pub use sql::SqlTeamStore;

use crate::StoreError;

/// A member's new name, access or password hash; `None` keeps it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberChange {
    pub name: Option<String>,
    pub access: Option<MemberAccess>,
    pub password_hash: Option<String>,
    pub at: DateTime<Utc>,
}

#[async_trait]
pub trait TeamStore: Send + Sync + std::fmt::Debug {
    /// Adds a member; `Conflict` if the email is taken.
    async fn create_member(&self, member: &Member, audit: &NewAuditEntry)
        -> Result<(), StoreError>;

    async fn get_member(
        &self,
        org: OrganizationId,
        id: MemberId,
    ) -> Result<Option<Member>, StoreError>;

    /// The member with this (normalised) email, in any organisation: how sign-in
    /// finds them.
    async fn find_member_by_email(&self, email: &str) -> Result<Option<Member>, StoreError>;

    /// The organisation's members, oldest first.
    async fn list_members(&self, org: OrganizationId) -> Result<Vec<Member>, StoreError>;

    /// Changes a member; `None` if there is no such member. A changed password or
    /// access revokes the member's other sessions than `keep`.
    async fn update_member(
        &self,
        org: OrganizationId,
        id: MemberId,
        change: &MemberChange,
        keep: Option<SessionId>,
        audit: &NewAuditEntry,
    ) -> Result<Option<Member>, StoreError>;

    /// Removes a member with their sessions; whether there was one. Refused
    /// (`Conflict`) when it would leave the organisation without an admin member.
    async fn remove_member(
        &self,
        org: OrganizationId,
        id: MemberId,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError>;

    async fn create_session(&self, session: &Session) -> Result<(), StoreError>;

    /// The session with this token hash and its member (revoked or expired ones too:
    /// the caller decides with [`Session::is_live`]).
    async fn find_session(&self, token_hash: &str)
        -> Result<Option<(Session, Member)>, StoreError>;

    /// Marks the session used at `at`.
    async fn touch_session(&self, id: SessionId, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// A member's sessions, newest first (revoked ones included for a while: those
    /// revoked or expired more than a day ago are deleted by [`Self::prune_sessions`]).
    async fn list_sessions(&self, member: MemberId) -> Result<Vec<Session>, StoreError>;

    /// Revokes one session of the member; the session if it was theirs.
    async fn revoke_session(
        &self,
        member: MemberId,
        id: SessionId,
        at: DateTime<Utc>,
    ) -> Result<Option<Session>, StoreError>;

    /// Deletes sessions that ended (revoked or expired) before `before`; how many.
    async fn prune_sessions(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    async fn create_invite(&self, invite: &Invite, audit: &NewAuditEntry)
        -> Result<(), StoreError>;

    async fn find_invite(&self, token_hash: &str) -> Result<Option<Invite>, StoreError>;

    /// The organisation's invitations not yet accepted, newest first.
    async fn list_invites(&self, org: OrganizationId) -> Result<Vec<Invite>, StoreError>;

    /// Withdraws an invitation not yet accepted; whether there was one.
    async fn delete_invite(
        &self,
        org: OrganizationId,
        id: InviteId,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError>;

    /// Accepts the invitation as `member`, once: in one transaction the invitation is
    /// marked accepted (only if it was not) and the member created. False if it was
    /// accepted already; `Conflict` if the email became a member meanwhile.
    async fn accept_invite(
        &self,
        id: InviteId,
        member: &Member,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError>;
}
