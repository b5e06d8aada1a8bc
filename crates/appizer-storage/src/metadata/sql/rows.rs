//! Row mapping, and the inserts several methods share.

use std::str::FromStr;

use appizer_core::definition::{Definition, DefinitionKind};
use appizer_core::keys::KeyKind;
use appizer_core::tenancy::{
    Actor, ApiKey, AuditEntry, KeyAccess, NewAuditEntry, Project, ProjectSettings,
};
use appizer_core::Role;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::scope::ProjectScope;

use crate::metadata::StoreError;

pub(super) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

pub(crate) fn parse_id<T: FromStr>(text: &str, what: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} `{text}` is not a valid id")))
}

pub(super) fn project_from_row(row: &AnyRow) -> Result<Project, StoreError> {
    let settings: String = row.try_get("settings")?;
    Ok(Project {
        id: parse_id(&row.try_get::<String, _>("id")?, "project id")?,
        organization_id: parse_id(&row.try_get::<String, _>("organization_id")?, "org id")?,
        name: row.try_get("name")?,
        timezone: row.try_get("timezone")?,
        settings: serde_json::from_str::<ProjectSettings>(&settings)
            .map_err(|e| StoreError::Corrupt(format!("project settings: {e}")))?,
        created_at: from_millis(row.try_get("created_at")?)?,
        updated_at: from_millis(row.try_get("updated_at")?)?,
    })
}

pub(super) fn key_from_row(row: &AnyRow) -> Result<ApiKey, StoreError> {
    let kind: String = row.try_get("kind")?;
    let role: Option<String> = row.try_get("role")?;
    let project_id: Option<String> = row.try_get("project_id")?;
    let created_by: Option<String> = row.try_get("created_by")?;
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    let id = parse_id(&row.try_get::<String, _>("id")?, "key id")?;
    let project = project_id.map(|p| parse_id(&p, "project id")).transpose()?;
    let kind =
        KeyKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("key kind `{kind}`")))?;
    let role = role
        .map(|r| {
            r.parse::<Role>()
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .transpose()?;
    let access = KeyAccess::from_parts(kind, project, role).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "key {id}: a {} key with project {project:?} and role {role:?}",
            kind.as_str()
        ))
    })?;
    Ok(ApiKey {
        id,
        organization_id: parse_id(&row.try_get::<String, _>("organization_id")?, "org id")?,
        access,
        name: row.try_get("name")?,
        display_prefix: row.try_get("display_prefix")?,
        key_hash: row.try_get("key_hash")?,
        created_at: from_millis(row.try_get("created_at")?)?,
        created_by: created_by.map(|k| parse_id(&k, "key id")).transpose()?,
        revoked_at: revoked_at.map(from_millis).transpose()?,
    })
}

pub(super) fn audit_from_row(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    let project_id: Option<String> = row.try_get("project_id")?;
    let actor: Option<String> = row.try_get("actor_key_id")?;
    let member: Option<String> = row.try_get("actor_member_id")?;
    let details: String = row.try_get("details")?;
    Ok(AuditEntry {
        id: row.try_get("id")?,
        entry: NewAuditEntry {
            organization_id: parse_id(&row.try_get::<String, _>("organization_id")?, "org id")?,
            project_id: project_id.map(|p| parse_id(&p, "project id")).transpose()?,
            actor: match (actor, member) {
                (Some(k), _) => Actor::Key(parse_id(&k, "key id")?),
                (None, Some(m)) => Actor::Member(parse_id(&m, "member id")?),
                (None, None) => Actor::Cli,
            },
            action: row.try_get("action")?,
            target_type: row.try_get("target_type")?,
            target_id: row.try_get("target_id")?,
            details: serde_json::from_str(&details)
                .map_err(|e| StoreError::Corrupt(format!("audit details: {e}")))?,
            request_id: row.try_get("request_id")?,
            at: from_millis(row.try_get("created_at")?)?,
        },
    })
}

pub(super) fn settings_json(project: &Project) -> String {
    serde_json::to_string(&project.settings).expect("settings serialize")
}

pub(super) async fn insert_project(
    conn: &mut AnyConnection,
    p: &Project,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO projects (id, organization_id, name, timezone, settings, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(p.id.to_string())
    .bind(p.organization_id.to_string())
    .bind(&p.name)
    .bind(&p.timezone)
    .bind(settings_json(p))
    .bind(millis(p.created_at))
    .bind(millis(p.updated_at))
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn insert_key(conn: &mut AnyConnection, k: &ApiKey) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO api_keys (id, organization_id, project_id, kind, role, name, \
         display_prefix, key_hash, created_at, created_by, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(k.id.to_string())
    .bind(k.organization_id.to_string())
    .bind(k.project_id().map(|p| p.to_string()))
    .bind(k.kind().as_str())
    .bind(k.role().map(|r| r.as_str()))
    .bind(&k.name)
    .bind(&k.display_prefix)
    .bind(&k.key_hash)
    .bind(millis(k.created_at))
    .bind(k.created_by.map(|c| c.to_string()))
    .bind(k.revoked_at.map(millis))
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn insert_audit(
    conn: &mut AnyConnection,
    a: &NewAuditEntry,
) -> Result<(), StoreError> {
    let (key, member) = match &a.actor {
        Actor::Key(k) => (Some(k.to_string()), None),
        Actor::Member(m) => (None, Some(m.to_string())),
        Actor::Cli => (None, None),
    };
    sqlx::query(
        "INSERT INTO audit_log (organization_id, project_id, actor_key_id, actor_member_id, \
         action, target_type, target_id, details, request_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(a.organization_id.to_string())
    .bind(a.project_id.map(|p| p.to_string()))
    .bind(key)
    .bind(member)
    .bind(&a.action)
    .bind(&a.target_type)
    .bind(&a.target_id)
    .bind(a.details.to_string())
    .bind(a.request_id.clone())
    .bind(millis(a.at))
    .execute(conn)
    .await?;
    Ok(())
}

/// Refuses a definition that names another project than the scope's.
pub(super) fn owned_by(scope: ProjectScope, d: &Definition) -> Result<(), StoreError> {
    if d.project_id == scope.project() {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "definition {} belongs to another project than {}",
            d.id,
            scope.project()
        )))
    }
}

pub(super) const DEFINITION_COLUMNS: &str =
    "id, project_id, kind, name, description, body, member_count, \
     computed_at, created_at, updated_at";

pub(super) fn definition_from_row(row: &AnyRow) -> Result<Definition, StoreError> {
    let kind: String = row.try_get("kind")?;
    let body: String = row.try_get("body")?;
    Ok(Definition {
        id: parse_id(&row.try_get::<String, _>("id")?, "definition id")?,
        project_id: parse_id(&row.try_get::<String, _>("project_id")?, "project id")?,
        kind: DefinitionKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("definition kind `{kind}`")))?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        body: serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("definition body: {e}")))?,
        member_count: row
            .try_get::<Option<i64>, _>("member_count")?
            .map(|n| n.max(0) as u64),
        computed_at: row
            .try_get::<Option<i64>, _>("computed_at")?
            .map(from_millis)
            .transpose()?,
        created_at: from_millis(row.try_get("created_at")?)?,
        updated_at: from_millis(row.try_get("updated_at")?)?,
    })
}
