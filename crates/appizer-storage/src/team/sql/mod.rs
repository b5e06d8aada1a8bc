//! [`TeamStore`] over SQL, in the dialect SQLite and PostgreSQL both accept.

use appizer_core::member::{Invite, Member, MemberAccess, Session};
use appizer_core::tenancy::NewAuditEntry;
use appizer_core::{InviteId, MemberId, OrganizationId, Role, SessionId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use super::{MemberChange, TeamStore};
use crate::metadata::{from_millis, insert_audit, parse_id, Backend};
use crate::StoreError;

const MEMBER_COLUMNS: &str =
    "id, organization_id, email, name, access, password_hash, created_at, updated_at";
const SESSION_COLUMNS: &str =
    "id, member_id, token_hash, created_at, expires_at, last_seen_at, revoked_at, ip, user_agent";
const INVITE_COLUMNS: &str = "id, organization_id, email, name, access, token_hash, created_by, \
     created_at, expires_at, accepted_at";

#[derive(Debug, Clone)]
pub struct SqlTeamStore {
    pool: AnyPool,
    backend: Backend,
}

impl SqlTeamStore {
    /// A team store over the metadata store's pool (its migrations create the tables).
    pub fn new(pool: AnyPool, backend: Backend) -> Self {
        Self { pool, backend }
    }
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn access_from(text: &str) -> Result<MemberAccess, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("member access: {e}")))
}

fn access_text(access: &MemberAccess) -> String {
    serde_json::to_string(access).unwrap_or_else(|_| "{}".into())
}

fn member_from_row(row: &AnyRow, prefix: &str) -> Result<Member, StoreError> {
    let col = |name: &str| format!("{prefix}{name}");
    Ok(Member {
        id: parse_id(&row.try_get::<String, _>(col("id").as_str())?, "member id")?,
        organization_id: parse_id(
            &row.try_get::<String, _>(col("organization_id").as_str())?,
            "organization id",
        )?,
        email: row.try_get(col("email").as_str())?,
        name: row.try_get(col("name").as_str())?,
        access: access_from(&row.try_get::<String, _>(col("access").as_str())?)?,
        password_hash: row.try_get(col("password_hash").as_str())?,
        created_at: from_millis(row.try_get(col("created_at").as_str())?)?,
        updated_at: from_millis(row.try_get(col("updated_at").as_str())?)?,
    })
}

fn session_from_row(row: &AnyRow) -> Result<Session, StoreError> {
    Ok(Session {
        id: parse_id(&row.try_get::<String, _>("id")?, "session id")?,
        member_id: parse_id(&row.try_get::<String, _>("member_id")?, "member id")?,
        token_hash: row.try_get("token_hash")?,
        created_at: from_millis(row.try_get("created_at")?)?,
        expires_at: from_millis(row.try_get("expires_at")?)?,
        last_seen_at: from_millis(row.try_get("last_seen_at")?)?,
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at")?
            .map(from_millis)
            .transpose()?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
    })
}

fn invite_from_row(row: &AnyRow) -> Result<Invite, StoreError> {
    Ok(Invite {
        id: parse_id(&row.try_get::<String, _>("id")?, "invite id")?,
        organization_id: parse_id(
            &row.try_get::<String, _>("organization_id")?,
            "organization id",
        )?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        access: access_from(&row.try_get::<String, _>("access")?)?,
        token_hash: row.try_get("token_hash")?,
        created_by: row
            .try_get::<Option<String>, _>("created_by")?
            .map(|m| parse_id(&m, "member id"))
            .transpose()?,
        created_at: from_millis(row.try_get("created_at")?)?,
        expires_at: from_millis(row.try_get("expires_at")?)?,
        accepted_at: row
            .try_get::<Option<i64>, _>("accepted_at")?
            .map(from_millis)
            .transpose()?,
    })
}

pub(crate) async fn insert_member(conn: &mut AnyConnection, m: &Member) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO members ({MEMBER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(m.id.to_string())
    .bind(m.organization_id.to_string())
    .bind(&m.email)
    .bind(&m.name)
    .bind(access_text(&m.access))
    .bind(&m.password_hash)
    .bind(millis(m.created_at))
    .bind(millis(m.updated_at))
    .execute(conn)
    .await?;
    Ok(())
}

async fn members_of(
    conn: &mut AnyConnection,
    org: OrganizationId,
) -> Result<Vec<Member>, StoreError> {
    sqlx::query(&format!(
        "SELECT {MEMBER_COLUMNS} FROM members WHERE organization_id = $1 \
         ORDER BY created_at, id"
    ))
    .bind(org.to_string())
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| member_from_row(r, ""))
    .collect()
}

fn is_admin(m: &Member) -> bool {
    m.access.organization_role == Some(Role::Admin)
}

#[async_trait]
impl TeamStore for SqlTeamStore {
    async fn create_member(
        &self,
        member: &Member,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        insert_member(&mut tx, member).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_member(
        &self,
        org: OrganizationId,
        id: MemberId,
    ) -> Result<Option<Member>, StoreError> {
        sqlx::query(&format!(
            "SELECT {MEMBER_COLUMNS} FROM members WHERE organization_id = $1 AND id = $2"
        ))
        .bind(org.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| member_from_row(&r, ""))
        .transpose()
    }

    async fn find_member_by_email(&self, email: &str) -> Result<Option<Member>, StoreError> {
        sqlx::query(&format!(
            "SELECT {MEMBER_COLUMNS} FROM members WHERE email = $1"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| member_from_row(&r, ""))
        .transpose()
    }

    async fn list_members(&self, org: OrganizationId) -> Result<Vec<Member>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        members_of(&mut conn, org).await
    }

    async fn update_member(
        &self,
        org: OrganizationId,
        id: MemberId,
        change: &MemberChange,
        keep: Option<SessionId>,
        audit: &NewAuditEntry,
    ) -> Result<Option<Member>, StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let members = members_of(&mut tx, org).await?;
        let Some(mut member) = members.iter().find(|m| m.id == id).cloned() else {
            return Ok(None);
        };
        let was_admin = is_admin(&member);
        if let Some(name) = &change.name {
            member.name = name.clone();
        }
        if let Some(access) = &change.access {
            member.access = access.clone();
        }
        if let Some(hash) = &change.password_hash {
            member.password_hash = hash.clone();
        }
        member.updated_at = change.at;
        if was_admin && !is_admin(&member) && !members.iter().any(|m| m.id != id && is_admin(m)) {
            return Err(StoreError::Conflict(
                "the organisation would have no admin member left".into(),
            ));
        }
        sqlx::query(
            "UPDATE members SET name = $1, access = $2, password_hash = $3, updated_at = $4 \
             WHERE id = $5",
        )
        .bind(&member.name)
        .bind(access_text(&member.access))
        .bind(&member.password_hash)
        .bind(millis(member.updated_at))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if change.access.is_some() || change.password_hash.is_some() {
            sqlx::query(
                "UPDATE member_sessions SET revoked_at = $1 \
                 WHERE member_id = $2 AND revoked_at IS NULL AND id <> $3",
            )
            .bind(millis(change.at))
            .bind(id.to_string())
            .bind(keep.map(|s| s.to_string()).unwrap_or_default())
            .execute(&mut *tx)
            .await?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Some(member))
    }

    async fn remove_member(
        &self,
        org: OrganizationId,
        id: MemberId,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let members = members_of(&mut tx, org).await?;
        let Some(member) = members.iter().find(|m| m.id == id) else {
            return Ok(false);
        };
        if is_admin(member) && !members.iter().any(|m| m.id != id && is_admin(m)) {
            return Err(StoreError::Conflict(
                "the organisation would have no admin member left".into(),
            ));
        }
        sqlx::query("DELETE FROM member_sessions WHERE member_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM members WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_session(&self, s: &Session) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO member_sessions ({SESSION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(s.id.to_string())
        .bind(s.member_id.to_string())
        .bind(&s.token_hash)
        .bind(millis(s.created_at))
        .bind(millis(s.expires_at))
        .bind(millis(s.last_seen_at))
        .bind(s.revoked_at.map(millis))
        .bind(s.ip.clone())
        .bind(s.user_agent.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn find_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<(Session, Member)>, StoreError> {
        let member_columns: Vec<String> = MEMBER_COLUMNS
            .split(", ")
            .map(|c| format!("m.{c} AS m_{c}"))
            .collect();
        let session_columns: Vec<String> = SESSION_COLUMNS
            .split(", ")
            .map(|c| format!("s.{c}"))
            .collect();
        let row = sqlx::query(&format!(
            "SELECT {}, {} FROM member_sessions s JOIN members m ON m.id = s.member_id \
             WHERE s.token_hash = $1",
            session_columns.join(", "),
            member_columns.join(", ")
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((session_from_row(&r)?, member_from_row(&r, "m_")?)))
            .transpose()
    }

    async fn touch_session(&self, id: SessionId, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE member_sessions SET last_seen_at = $1 WHERE id = $2")
            .bind(millis(at))
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_sessions(&self, member: MemberId) -> Result<Vec<Session>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM member_sessions WHERE member_id = $1 \
             ORDER BY created_at DESC, id DESC"
        ))
        .bind(member.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(session_from_row)
        .collect()
    }

    async fn revoke_session(
        &self,
        member: MemberId,
        id: SessionId,
        at: DateTime<Utc>,
    ) -> Result<Option<Session>, StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let changed = sqlx::query(
            "UPDATE member_sessions SET revoked_at = COALESCE(revoked_at, $1) \
             WHERE id = $2 AND member_id = $3",
        )
        .bind(millis(at))
        .bind(id.to_string())
        .bind(member.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM member_sessions WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        session_from_row(&row).map(Some)
    }

    async fn prune_sessions(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM member_sessions WHERE revoked_at < $1 OR expires_at < $1")
                .bind(millis(before))
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    async fn create_invite(&self, i: &Invite, audit: &NewAuditEntry) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        sqlx::query(&format!(
            "INSERT INTO member_invites ({INVITE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(i.id.to_string())
        .bind(i.organization_id.to_string())
        .bind(&i.email)
        .bind(&i.name)
        .bind(access_text(&i.access))
        .bind(&i.token_hash)
        .bind(i.created_by.map(|m| m.to_string()))
        .bind(millis(i.created_at))
        .bind(millis(i.expires_at))
        .bind(i.accepted_at.map(millis))
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_invite(&self, token_hash: &str) -> Result<Option<Invite>, StoreError> {
        sqlx::query(&format!(
            "SELECT {INVITE_COLUMNS} FROM member_invites WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| invite_from_row(&r))
        .transpose()
    }

    async fn list_invites(&self, org: OrganizationId) -> Result<Vec<Invite>, StoreError> {
        sqlx::query(&format!(
            "SELECT {INVITE_COLUMNS} FROM member_invites \
             WHERE organization_id = $1 AND accepted_at IS NULL \
             ORDER BY created_at DESC, id DESC"
        ))
        .bind(org.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(invite_from_row)
        .collect()
    }

    async fn delete_invite(
        &self,
        org: OrganizationId,
        id: InviteId,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let deleted = sqlx::query(
            "DELETE FROM member_invites \
             WHERE organization_id = $1 AND id = $2 AND accepted_at IS NULL",
        )
        .bind(org.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn accept_invite(
        &self,
        id: InviteId,
        member: &Member,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let taken = sqlx::query(
            "UPDATE member_invites SET accepted_at = $1 WHERE id = $2 AND accepted_at IS NULL",
        )
        .bind(millis(member.created_at))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if taken == 0 {
            return Ok(false);
        }
        insert_member(&mut tx, member).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }
}
