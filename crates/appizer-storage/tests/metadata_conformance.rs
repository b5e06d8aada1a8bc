//! One conformance suite for every metadata store backend.
//!
//! The cases are written once against `dyn MetadataStore` and instantiated per backend
//! by `metadata_conformance_suite!`. The PostgreSQL run needs `APPIZER_TEST_POSTGRES_URL`
//! (e.g. `postgres://postgres@127.0.0.1:5432/postgres`); each test gets its own schema.
//! Without the variable the PostgreSQL cases are skipped locally and fail under CI
//! (`CI=true`), so the suite can never silently shrink there. To start PostgreSQL on a
//! Debian machine: `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`.

#[macro_use]
mod common;

/// The fence of a writer that holds no lease.
const UNLEASED: Fence = Fence::unleased(0);

use common::{postgres_store, sqlite_store};

use appizer_core::event::{Dialect, NewIngestionWarning};
use appizer_core::keys::{generate_key, KeyKind};
use appizer_core::tenancy::{
    Actor, ApiKey, KeyAccess, NewAuditEntry, Organization, Project, ProjectSettings,
    RateLimitOverride,
};
use appizer_core::{KeyId, OrganizationId, ProjectId, Role};
use appizer_storage::leases::Fence;
use appizer_storage::metadata::{AuditScope, Bootstrap, EventFile, KeyScope};
use appizer_storage::testing::Tenant;
use appizer_storage::{MetadataStore, ProjectScope, StoreError};
use chrono::{DateTime, TimeZone, Utc};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_780_000_000 + secs, 0).unwrap()
}

fn audit(org: OrganizationId, project: Option<ProjectId>, action: &str, at: i64) -> NewAuditEntry {
    NewAuditEntry {
        organization_id: org,
        project_id: project,
        actor: Actor::Cli,
        action: action.into(),
        target_type: "test".into(),
        target_id: "x".into(),
        details: serde_json::json!({ "action": action }),
        request_id: Some("req-1".into()),
        at: t(at),
    }
}

fn project(org: OrganizationId, name: &str, at: i64) -> Project {
    Project {
        id: ProjectId::new(),
        organization_id: org,
        name: name.into(),
        timezone: "Europe/Paris".into(),
        settings: ProjectSettings::default(),
        created_at: t(at),
        updated_at: t(at),
    }
}

fn key(
    org: OrganizationId,
    project: Option<ProjectId>,
    kind: KeyKind,
    role: Option<Role>,
    at: i64,
) -> (ApiKey, String) {
    let generated = generate_key(kind);
    (
        ApiKey {
            id: KeyId::new(),
            organization_id: org,
            access: KeyAccess::from_parts(kind, project, role).expect("a key's parts"),
            name: format!("{} key", kind.as_str()),
            display_prefix: generated.display_prefix,
            key_hash: generated.hash,
            created_at: t(at),
            created_by: None,
            revoked_at: None,
        },
        generated.plaintext,
    )
}

/// An initialised store: one organisation, one project, an admin org key, a write key.
struct World {
    org: OrganizationId,
    project: Project,
    /// The project's scope, read back by the lookup requests make.
    scope: ProjectScope,
    admin: ApiKey,
    write: ApiKey,
}

async fn bootstrap(store: &dyn MetadataStore) -> World {
    let org = Organization {
        id: OrganizationId::new(),
        name: "Acme".into(),
        created_at: t(0),
    };
    let p = project(org.id, "Default", 0);
    let (admin, _) = key(org.id, None, KeyKind::Secret, Some(Role::Admin), 0);
    let (write, _) = key(org.id, Some(p.id), KeyKind::Write, None, 0);
    store
        .bootstrap(&Bootstrap {
            organization: org.clone(),
            project: p.clone(),
            keys: vec![admin.clone(), write.clone()],
            members: vec![],
            definitions: vec![],
            audit: audit(org.id, Some(p.id), "installation.init", 0),
        })
        .await
        .unwrap();
    let (scope, _) = store.get_project(org.id, p.id).await.unwrap().unwrap();
    World {
        org: org.id,
        project: p,
        scope,
        admin,
        write,
    }
}

mod cases {
    use super::*;

    pub async fn bootstrap_writes_everything_once(store: &dyn MetadataStore) {
        assert!(!store.is_initialized().await.unwrap());
        let w = bootstrap(store).await;
        assert!(store.is_initialized().await.unwrap());
        assert_eq!(
            store
                .get_project(w.org, w.project.id)
                .await
                .unwrap()
                .map(|(_, p)| p),
            Some(w.project.clone())
        );
        assert_eq!(
            store.find_key_by_hash(&w.admin.key_hash).await.unwrap(),
            Some(w.admin.clone())
        );
        assert_eq!(
            store.find_key_by_hash(&w.write.key_hash).await.unwrap(),
            Some(w.write.clone())
        );

        // A second bootstrap fails and writes nothing.
        let again = bootstrap_attempt(store).await;
        assert!(
            matches!(again, Err(StoreError::AlreadyInitialized)),
            "{again:?}"
        );
        let entries = store
            .list_audit(AuditScope::Organization(w.org), None, 100)
            .await
            .unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].entry.action, "installation.init");
    }

    async fn bootstrap_attempt(store: &dyn MetadataStore) -> Result<(), StoreError> {
        let org = Organization {
            id: OrganizationId::new(),
            name: "Other".into(),
            created_at: t(1),
        };
        let p = project(org.id, "P", 1);
        store
            .bootstrap(&Bootstrap {
                organization: org.clone(),
                project: p.clone(),
                keys: vec![],
                members: vec![],
                definitions: vec![],
                audit: audit(org.id, Some(p.id), "installation.init", 1),
            })
            .await
    }

    pub async fn projects_crud_round_trips_settings(store: &dyn MetadataStore) {
        let w = bootstrap(store).await;
        let mut p = project(w.org, "Mobile", 10);
        let (wk, _) = key(w.org, Some(p.id), KeyKind::Write, None, 10);
        store
            .create_project(
                &p,
                &wk,
                &[],
                &audit(w.org, Some(p.id), "project.create", 10),
            )
            .await
            .unwrap();
        let listed = store.list_projects(w.org).await.unwrap();
        assert_eq!(
            listed.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["Default", "Mobile"]
        );

        p.name = "Mobile apps".into();
        p.timezone = "America/New_York".into();
        p.settings.rate_limit = RateLimitOverride {
            api_per_second: Some(5),
            ingest_burst: Some(77),
            ..Default::default()
        };
        p.updated_at = t(20);
        assert!(store
            .update_project(&p, &audit(w.org, Some(p.id), "project.update", 20))
            .await
            .unwrap());
        assert_eq!(
            store
                .get_project(w.org, p.id)
                .await
                .unwrap()
                .map(|(_, p)| p),
            Some(p.clone())
        );

        assert!(store
            .delete_project(
                w.org,
                p.id,
                t(30),
                &audit(w.org, Some(p.id), "project.delete", 30)
            )
            .await
            .unwrap());
        assert_eq!(store.get_project(w.org, p.id).await.unwrap(), None);
        assert_eq!(store.list_projects(w.org).await.unwrap().len(), 1);
        // The workers learn which projects' event files to remove.
        assert_eq!(store.deleted_projects().await.unwrap(), vec![p.id]);
        // Deleting revokes the project's keys, and a second delete finds nothing.
        let wk_after = store.find_key_by_hash(&wk.key_hash).await.unwrap().unwrap();
        assert_eq!(wk_after.revoked_at, Some(t(30)));
        assert!(!store
            .delete_project(
                w.org,
                p.id,
                t(31),
                &audit(w.org, Some(p.id), "project.delete", 31)
            )
            .await
            .unwrap());
        assert!(!store
            .update_project(&p, &audit(w.org, Some(p.id), "project.update", 32))
            .await
            .unwrap());
    }

    pub async fn keys_are_scoped_and_revocation_is_idempotent(store: &dyn MetadataStore) {
        let w = bootstrap(store).await;
        let (viewer, plaintext) = key(
            w.org,
            Some(w.project.id),
            KeyKind::Secret,
            Some(Role::Viewer),
            5,
        );
        store
            .create_key(&viewer, &audit(w.org, Some(w.project.id), "key.create", 5))
            .await
            .unwrap();
        assert_eq!(
            store
                .find_key_by_hash(&appizer_core::keys::hash_key(&plaintext))
                .await
                .unwrap()
                .map(|k| k.id),
            Some(viewer.id)
        );
        let project_keys = store
            .list_keys(KeyScope::Project(w.org, w.project.id))
            .await
            .unwrap();
        assert_eq!(
            project_keys.iter().map(|k| k.id).collect::<Vec<_>>(),
            [w.write.id, viewer.id]
        );
        let org_keys = store
            .list_keys(KeyScope::Organization(w.org))
            .await
            .unwrap();
        assert_eq!(
            org_keys.iter().map(|k| k.id).collect::<Vec<_>>(),
            [w.admin.id]
        );

        // Revoking through the wrong scope finds nothing.
        let a = audit(w.org, Some(w.project.id), "key.revoke", 6);
        assert_eq!(
            store
                .revoke_key(KeyScope::Organization(w.org), viewer.id, t(6), &a)
                .await
                .unwrap(),
            None
        );
        let revoked = store
            .revoke_key(KeyScope::Project(w.org, w.project.id), viewer.id, t(6), &a)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(revoked.revoked_at, Some(t(6)));
        let again = store
            .revoke_key(KeyScope::Project(w.org, w.project.id), viewer.id, t(9), &a)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            again.revoked_at,
            Some(t(6)),
            "first revocation time is kept"
        );
        assert!(store
            .find_key_by_hash(&viewer.key_hash)
            .await
            .unwrap()
            .unwrap()
            .is_revoked());
        assert_eq!(
            store
                .find_key_by_hash("0".repeat(64).as_str())
                .await
                .unwrap(),
            None
        );
    }

    pub async fn duplicate_key_hash_is_a_conflict(store: &dyn MetadataStore) {
        let w = bootstrap(store).await;
        let (mut dup, _) = key(
            w.org,
            Some(w.project.id),
            KeyKind::Secret,
            Some(Role::Admin),
            3,
        );
        dup.key_hash = w.admin.key_hash.clone();
        let err = store
            .create_key(&dup, &audit(w.org, Some(w.project.id), "key.create", 3))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        // Nothing of the failed action was written, not even its audit entry.
        let entries = store
            .list_audit(AuditScope::Organization(w.org), None, 10)
            .await
            .unwrap();
        assert_eq!(entries.len(), 1);
    }

    pub async fn tenants_never_see_each_other(store: &dyn MetadataStore) {
        let w = bootstrap(store).await;
        let other_org = OrganizationId::new();
        // Another organisation cannot read, change, delete or add keys to this project.
        assert_eq!(
            store.get_project(other_org, w.project.id).await.unwrap(),
            None
        );
        assert!(store.list_projects(other_org).await.unwrap().is_empty());
        let mut hijack = w.project.clone();
        hijack.organization_id = other_org;
        hijack.name = "pwned".into();
        assert!(!store
            .update_project(
                &hijack,
                &audit(other_org, Some(w.project.id), "project.update", 1)
            )
            .await
            .unwrap());
        assert!(!store
            .delete_project(
                other_org,
                w.project.id,
                t(1),
                &audit(other_org, None, "project.delete", 1)
            )
            .await
            .unwrap());
        assert!(store
            .list_keys(KeyScope::Project(other_org, w.project.id))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store
                .revoke_key(
                    KeyScope::Project(other_org, w.project.id),
                    w.write.id,
                    t(1),
                    &audit(other_org, None, "key.revoke", 1)
                )
                .await
                .unwrap(),
            None
        );
        let (foreign, _) = key(
            other_org,
            Some(w.project.id),
            KeyKind::Secret,
            Some(Role::Admin),
            1,
        );
        assert!(store
            .create_key(&foreign, &audit(other_org, None, "key.create", 1))
            .await
            .is_err());
        assert!(store
            .list_audit(AuditScope::Organization(other_org), None, 10)
            .await
            .unwrap()
            .is_empty());
        // The project is untouched.
        assert_eq!(
            store
                .get_project(w.org, w.project.id)
                .await
                .unwrap()
                .map(|(_, p)| p),
            Some(w.project.clone())
        );
        assert!(!store
            .find_key_by_hash(&w.write.key_hash)
            .await
            .unwrap()
            .unwrap()
            .is_revoked());
    }

    pub async fn audit_log_pages_newest_first_and_filters_by_project(store: &dyn MetadataStore) {
        let w = bootstrap(store).await;
        let other = project(w.org, "Other", 1);
        let (wk, _) = key(w.org, Some(other.id), KeyKind::Write, None, 1);
        store
            .create_project(
                &other,
                &wk,
                &[],
                &audit(w.org, Some(other.id), "project.create", 1),
            )
            .await
            .unwrap();
        for i in 0..5 {
            let mut p = w.project.clone();
            p.name = format!("name {i}");
            p.updated_at = t(10 + i);
            store
                .update_project(
                    &p,
                    &audit(w.org, Some(p.id), &format!("update.{i}"), 10 + i),
                )
                .await
                .unwrap();
        }
        let scope = AuditScope::Project(w.org, w.project.id);
        let page1 = store.list_audit(scope, None, 3).await.unwrap();
        let actions: Vec<_> = page1.iter().map(|e| e.entry.action.as_str()).collect();
        assert_eq!(actions, ["update.4", "update.3", "update.2"]);
        let page2 = store
            .list_audit(scope, Some(page1.last().unwrap().id), 10)
            .await
            .unwrap();
        let actions: Vec<_> = page2.iter().map(|e| e.entry.action.as_str()).collect();
        assert_eq!(actions, ["update.1", "update.0", "installation.init"]);
        assert_eq!(
            page2[0].entry.details,
            serde_json::json!({"action": "update.1"})
        );
        assert_eq!(page2[0].entry.request_id.as_deref(), Some("req-1"));
        assert_eq!(page2[0].entry.at, t(11));
        let all = store
            .list_audit(AuditScope::Organization(w.org), None, 100)
            .await
            .unwrap();
        assert_eq!(all.len(), 7);
    }

    pub async fn ingestion_warnings_are_scoped_and_paged(store: &dyn MetadataStore) {
        let w = bootstrap(store).await;
        let other_org = OrganizationId::new();
        let warning = |org, project, field: &str, at| NewIngestionWarning {
            organization_id: org,
            project_id: project,
            message_id: Some(format!("m-{field}")),
            field: field.into(),
            reason: "is required".into(),
            dialect: Dialect::Segment,
            at: t(at),
        };
        store
            .record_ingestion_warnings(&[
                warning(w.org, w.project.id, "event", 1),
                warning(w.org, w.project.id, "userId", 2),
                warning(w.org, w.project.id, "timestamp", 3),
                warning(other_org, w.project.id, "foreign", 4),
            ])
            .await
            .unwrap();
        let page = store
            .list_ingestion_warnings(w.scope, None, 2)
            .await
            .unwrap();
        let fields: Vec<_> = page.iter().map(|e| e.warning.field.as_str()).collect();
        assert_eq!(fields, ["timestamp", "userId"]);
        assert_eq!(
            page[0].warning,
            warning(w.org, w.project.id, "timestamp", 3)
        );
        let rest = store
            .list_ingestion_warnings(w.scope, Some(page[1].id), 10)
            .await
            .unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].warning.field, "event");
        let all = store
            .list_ingestion_warnings(w.scope, None, 10)
            .await
            .unwrap();
        assert_eq!(
            all.len(),
            3,
            "a scope sees only its organisation's warnings, not another's with the same project id"
        );
    }

    pub async fn event_files_are_catalogued_per_project(store: &dyn MetadataStore) {
        let w = bootstrap(store).await;
        let other = ProjectId::new();
        let file = |project: ProjectId, date: &str, offset: u64| EventFile {
            path: format!("project={project}/date={date}/{offset}.parquet"),
            project_id: project,
            date: date.into(),
            row_count: 10,
            byte_size: 2048,
            min_timestamp: 1_000,
            max_timestamp: 2_000,
            partition: 0,
            max_queue_offset: offset,
            created_at: t(offset as i64),
            persons_folded_at: None,
        };
        let files = [
            file(w.project.id, "2026-11-25", 7),
            file(w.project.id, "2026-11-24", 9),
            file(other, "2026-11-25", 12),
        ];
        store.add_event_files(&files, UNLEASED).await.unwrap();
        let mine = store.list_event_files(w.scope).await.unwrap();
        assert_eq!(
            mine,
            vec![files[1].clone(), files[0].clone()],
            "ordered by date"
        );
        assert_eq!(store.all_event_files().await.unwrap().len(), 3);
        assert!(matches!(
            store.add_event_files(&files[..1], UNLEASED).await,
            Err(StoreError::Conflict(_))
        ));

        // Compaction swaps files atomically; a stale swap changes nothing.
        let merged = file(w.project.id, "2026-11-25", 9);
        let merged = EventFile {
            path: "project=x/date=2026-11-25/merged.parquet".into(),
            row_count: 20,
            persons_folded_at: Some(t(30)),
            ..merged
        };
        store
            .replace_event_files(
                std::slice::from_ref(&merged),
                &[files[0].path.clone()],
                UNLEASED,
            )
            .await
            .unwrap();
        let mine = store.list_event_files(w.scope).await.unwrap();
        assert_eq!(mine, vec![files[1].clone(), merged.clone()]);
        let stale = EventFile {
            path: "project=x/other.parquet".into(),
            ..merged.clone()
        };
        assert!(matches!(
            store
                .replace_event_files(&[stale], &[files[0].path.clone()], UNLEASED)
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.list_event_files(w.scope).await.unwrap(), mine);
    }

    pub async fn definitions_and_segment_members_round_trip(store: &dyn MetadataStore) {
        use appizer_core::definition::{Definition, DefinitionKind};
        use appizer_core::{DefinitionId, PersonId};
        let w = bootstrap(store).await;
        let (p, scope) = (w.project.id, w.scope);
        let metric = Definition {
            id: DefinitionId::new(),
            project_id: p,
            kind: DefinitionKind::Metric,
            name: "Revenue".into(),
            description: "sum of amounts".into(),
            body: serde_json::json!({"series": [{"event": "purchase"}]}),
            member_count: None,
            computed_at: None,
            created_at: t(10),
            updated_at: t(10),
        };
        store
            .create_definition(scope, &metric, &audit(w.org, Some(p), "metric.create", 10))
            .await
            .unwrap();
        let twin = Definition {
            id: DefinitionId::new(),
            ..metric.clone()
        };
        assert!(matches!(
            store
                .create_definition(scope, &twin, &audit(w.org, Some(p), "metric.create", 11))
                .await,
            Err(StoreError::Conflict(_))
        ));
        // The same name is free for a segment.
        let segment = Definition {
            id: DefinitionId::new(),
            kind: DefinitionKind::Segment,
            body: serde_json::json!({"kind": "static"}),
            ..metric.clone()
        };
        store
            .create_definition(
                scope,
                &segment,
                &audit(w.org, Some(p), "segment.create", 12),
            )
            .await
            .unwrap();
        assert_eq!(
            store
                .list_definitions(scope, DefinitionKind::Metric)
                .await
                .unwrap(),
            vec![metric.clone()]
        );
        let (other, _) = Tenant {
            organization: w.org,
        }
        .add_project(store, ProjectId::new(), "UTC")
        .await
        .unwrap();
        assert!(store
            .get_definition(other, DefinitionKind::Metric, metric.id)
            .await
            .unwrap()
            .is_none());
        assert!(store
            .get_definition(scope, DefinitionKind::Segment, metric.id)
            .await
            .unwrap()
            .is_none());

        let changed = Definition {
            name: "Revenue (net)".into(),
            body: serde_json::json!({"series": [{"event": "refund"}]}),
            updated_at: t(20),
            ..metric.clone()
        };
        assert!(store
            .update_definition(scope, &changed, &audit(w.org, Some(p), "metric.update", 20))
            .await
            .unwrap());
        assert_eq!(
            store
                .get_definition(scope, DefinitionKind::Metric, metric.id)
                .await
                .unwrap(),
            Some(changed.clone())
        );

        let mut members: Vec<PersonId> = (0..230).map(|_| PersonId::new()).collect();
        members.sort();
        store
            .replace_segment_members(scope, segment.id, &members, t(30))
            .await
            .unwrap();
        store
            .replace_segment_members(scope, segment.id, &members[..120], t(31))
            .await
            .unwrap();
        let page = store
            .segment_members(scope, segment.id, None, 100)
            .await
            .unwrap();
        assert_eq!(page, members[..100]);
        let rest = store
            .segment_members(scope, segment.id, Some(page[99]), 100)
            .await
            .unwrap();
        assert_eq!(rest, members[100..120]);
        assert!(store
            .is_segment_member(scope, segment.id, members[0])
            .await
            .unwrap());
        assert!(!store
            .is_segment_member(scope, segment.id, members[200])
            .await
            .unwrap());
        let saved = store
            .get_definition(scope, DefinitionKind::Segment, segment.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (saved.member_count, saved.computed_at),
            (Some(120), Some(t(31)))
        );
        assert!(matches!(
            store
                .replace_segment_members(other, segment.id, &members, t(32))
                .await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(
            store
                .all_definitions(DefinitionKind::Segment)
                .await
                .unwrap()
                .len(),
            1
        );

        assert!(store
            .delete_definition(
                scope,
                DefinitionKind::Segment,
                segment.id,
                &audit(w.org, Some(p), "segment.delete", 40)
            )
            .await
            .unwrap());
        assert!(store
            .segment_members(scope, segment.id, None, 100)
            .await
            .unwrap()
            .is_empty());
        assert!(!store
            .delete_definition(
                scope,
                DefinitionKind::Segment,
                segment.id,
                &audit(w.org, Some(p), "segment.delete", 41)
            )
            .await
            .unwrap());
    }

    /// A scope is made only by a lookup that checks the organisation, and reaches only
    /// its own project's definitions, segment members, event files and warnings.
    pub async fn a_scope_reaches_only_its_own_project(store: &dyn MetadataStore) {
        use appizer_core::definition::{Definition, DefinitionKind};
        use appizer_core::{DefinitionId, PersonId};
        let w = bootstrap(store).await;
        let other_org = OrganizationId::new();
        assert!(store
            .get_project(other_org, w.project.id)
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            store.project_scope(w.project.id).await.unwrap(),
            Some(w.scope)
        );
        assert_eq!(w.scope.organization(), w.org);
        assert_eq!(store.project_scope(ProjectId::new()).await.unwrap(), None);
        let (theirs, _) = Tenant {
            organization: w.org,
        }
        .add_project(store, ProjectId::new(), "UTC")
        .await
        .unwrap();
        let mine = w.scope;

        // Their segment, with members.
        let segment = Definition {
            id: DefinitionId::new(),
            project_id: theirs.project(),
            kind: DefinitionKind::Segment,
            name: "Theirs".into(),
            description: String::new(),
            body: serde_json::json!({"kind": "static"}),
            member_count: None,
            computed_at: None,
            created_at: t(1),
            updated_at: t(1),
        };
        let audit_of =
            |scope: ProjectScope, action: &str| audit(w.org, Some(scope.project()), action, 1);
        // A definition of their project cannot be written through my scope.
        assert!(matches!(
            store
                .create_definition(mine, &segment, &audit_of(mine, "segment.create"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert!(store
            .all_definitions(DefinitionKind::Segment)
            .await
            .unwrap()
            .is_empty());
        store
            .create_definition(theirs, &segment, &audit_of(theirs, "segment.create"))
            .await
            .unwrap();
        let members = vec![PersonId::new(), PersonId::new()];
        store
            .replace_segment_members(theirs, segment.id, &members, t(2))
            .await
            .unwrap();

        // Through my scope: nothing to read, nothing to change.
        assert!(store
            .list_definitions(mine, DefinitionKind::Segment)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store
                .get_definition(mine, DefinitionKind::Segment, segment.id)
                .await
                .unwrap(),
            None
        );
        assert!(store
            .segment_members(mine, segment.id, None, 100)
            .await
            .unwrap()
            .is_empty());
        assert!(!store
            .is_segment_member(mine, segment.id, members[0])
            .await
            .unwrap());
        assert!(matches!(
            store
                .replace_segment_members(mine, segment.id, &[], t(3))
                .await,
            Err(StoreError::NotFound(_))
        ));
        let renamed = Definition {
            name: "Mine now".into(),
            ..segment.clone()
        };
        assert!(!store
            .update_definition(mine, &renamed, &audit_of(mine, "segment.update"))
            .await
            .unwrap());
        assert!(!store
            .delete_definition(
                mine,
                DefinitionKind::Segment,
                segment.id,
                &audit_of(mine, "segment.delete")
            )
            .await
            .unwrap());

        // Their rows are as they were.
        let kept = store
            .get_definition(theirs, DefinitionKind::Segment, segment.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((kept.name.as_str(), kept.member_count), ("Theirs", Some(2)));
        let mut stored = store
            .segment_members(theirs, segment.id, None, 100)
            .await
            .unwrap();
        stored.sort();
        let mut expected = members.clone();
        expected.sort();
        assert_eq!(stored, expected);

        // Event files and warnings of their project stay theirs.
        store
            .add_event_files(
                &[EventFile {
                    path: format!("project={}/date=2026-11-25/a.parquet", theirs.project()),
                    project_id: theirs.project(),
                    date: "2026-11-25".into(),
                    row_count: 1,
                    byte_size: 1,
                    min_timestamp: 0,
                    max_timestamp: 0,
                    partition: 0,
                    max_queue_offset: 1,
                    created_at: t(4),
                    persons_folded_at: None,
                }],
                UNLEASED,
            )
            .await
            .unwrap();
        assert!(store.list_event_files(mine).await.unwrap().is_empty());
        assert_eq!(store.list_event_files(theirs).await.unwrap().len(), 1);
        store
            .record_ingestion_warnings(&[NewIngestionWarning {
                organization_id: w.org,
                project_id: theirs.project(),
                message_id: None,
                field: "event".into(),
                reason: "is required".into(),
                dialect: Dialect::Segment,
                at: t(5),
            }])
            .await
            .unwrap();
        assert!(store
            .list_ingestion_warnings(mine, None, 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store
                .list_ingestion_warnings(theirs, None, 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }

    pub async fn ping_answers_until_closed(store: &dyn MetadataStore) {
        store.ping().await.unwrap();
        store.close().await;
        assert!(matches!(
            store.ping().await,
            Err(StoreError::Unavailable(_))
        ));
    }
}

all_backends!(
    bootstrap_writes_everything_once,
    projects_crud_round_trips_settings,
    keys_are_scoped_and_revocation_is_idempotent,
    duplicate_key_hash_is_a_conflict,
    tenants_never_see_each_other,
    audit_log_pages_newest_first_and_filters_by_project,
    ingestion_warnings_are_scoped_and_paged,
    event_files_are_catalogued_per_project,
    definitions_and_segment_members_round_trip,
    a_scope_reaches_only_its_own_project,
    ping_answers_until_closed,
);
