//! One conformance suite for the push store (devices, provider credentials) on every backend (see `common` for
//! how the PostgreSQL cases find their database).

#[macro_use]
mod common;

use common::{postgres_store, sqlite_store};

use appizer_core::person::{MergeReason, PersonDelta};
use appizer_core::push::{
    DeviceFilter, DeviceState, NewDevice, Platform, Provider, ProviderRecord, WebKeys,
};
use appizer_core::tenancy::{Actor, NewAuditEntry};
use appizer_core::{PersonId, ProjectId};
use appizer_storage::metadata::AuditScope;
use appizer_storage::persons::NewPerson;
use appizer_storage::push::OPTED_OUT;
use appizer_storage::testing::Tenant;
use appizer_storage::{MetadataStore, ProjectScope};
use chrono::{DateTime, TimeZone, Utc};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_780_000_000 + secs, 0).unwrap()
}

fn device(platform: Platform, address: &str, distinct_id: &str, at: i64) -> NewDevice {
    NewDevice {
        platform,
        address: address.into(),
        web_keys: (platform == Platform::Web).then(|| WebKeys {
            p256dh: "key".into(),
            auth: "auth".into(),
        }),
        distinct_id: distinct_id.into(),
        app_id: Some("com.example.app".into()),
        locale: Some("fr-FR".into()),
        timezone: Some("Europe/Paris".into()),
        at: t(at),
    }
}

fn all() -> DeviceFilter {
    DeviceFilter {
        limit: 100,
        ..Default::default()
    }
}

/// A person for each distinct id.
async fn people(store: &dyn MetadataStore, scope: ProjectScope, ids: &[&str]) -> Vec<PersonId> {
    let new: Vec<NewPerson> = ids
        .iter()
        .map(|d| NewPerson {
            distinct_id: d.to_string(),
            person_id: PersonId::new(),
            is_identified: false,
            at: t(0),
        })
        .collect();
    let made = store.persons().create(scope, &new).await.unwrap();
    ids.iter().map(|d| made[*d]).collect()
}

mod cases {
    use super::*;

    pub async fn registering_again_updates_and_moves_the_device(store: &dyn MetadataStore) {
        let (_, scope, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let devices = store.push();
        let [alice, bob] = people(store, scope, &["alice", "bob"]).await[..] else {
            unreachable!()
        };
        let token = "ab".repeat(32);
        let (first, created) = devices
            .register(scope, &device(Platform::Ios, &token, "alice", 1))
            .await
            .unwrap();
        assert!(created);
        assert_eq!(first.person_id, Some(alice));
        assert_eq!(first.state, DeviceState::Active);
        // The same token again: the same device, now bob's, nothing duplicated.
        let mut again = device(Platform::Ios, &token, "bob", 2);
        again.locale = Some("en-GB".into());
        let (second, created) = devices.register(scope, &again).await.unwrap();
        assert!(!created);
        assert_eq!(second.id, first.id);
        assert_eq!(
            (second.person_id, second.locale.as_deref()),
            (Some(bob), Some("en-GB"))
        );
        assert_eq!((second.created_at, second.updated_at), (t(1), t(2)));
        assert_eq!(devices.list(scope, &all()).await.unwrap().len(), 1);
        // The same token on another platform is another device.
        devices
            .register(scope, &device(Platform::Android, &token, "bob", 3))
            .await
            .unwrap();
        let bobs = DeviceFilter {
            person: Some(bob),
            ..all()
        };
        assert_eq!(devices.list(scope, &bobs).await.unwrap().len(), 2);
    }

    pub async fn an_opt_out_retires_until_registered_again(store: &dyn MetadataStore) {
        let (_, scope, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let devices = store.push();
        let endpoint = "https://push.example/abc";
        devices
            .register(scope, &device(Platform::Web, endpoint, "w", 1))
            .await
            .unwrap();
        let retired = devices
            .unregister(scope, Platform::Web, endpoint, t(2))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(retired.state, DeviceState::Retired);
        assert_eq!(retired.retired_reason.as_deref(), Some(OPTED_OUT));
        assert!(devices
            .unregister(scope, Platform::Web, "https://push.example/none", t(2))
            .await
            .unwrap()
            .is_none());
        let active = DeviceFilter {
            state: Some(DeviceState::Active),
            ..all()
        };
        assert!(devices.list(scope, &active).await.unwrap().is_empty());
        let (back, _) = devices
            .register(scope, &device(Platform::Web, endpoint, "w", 3))
            .await
            .unwrap();
        assert_eq!(
            (back.state, back.retired_reason),
            (DeviceState::Active, None)
        );
        assert_eq!(back.web_keys.unwrap().auth, "auth");
    }

    pub async fn a_device_follows_its_distinct_ids_person(store: &dyn MetadataStore) {
        let (_, scope, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let (devices, persons) = (store.push(), store.persons());
        let [anon, user] = people(store, scope, &["anon", "user"]).await[..] else {
            unreachable!()
        };
        let (phone, _) = devices
            .register(scope, &device(Platform::Android, "fcm-token", "anon", 1))
            .await
            .unwrap();
        assert_eq!(phone.person_id, Some(anon));
        let merge = persons
            .merge(
                scope,
                anon,
                user,
                MergeReason::Identify,
                None,
                &PersonDelta::default(),
                t(2),
                None,
            )
            .await
            .unwrap();
        let now = devices.get(scope, phone.id).await.unwrap().unwrap();
        assert_eq!(now.person_id, Some(user), "merged: the survivor's");
        persons
            .split(scope, merge.id, &PersonDelta::default(), t(3), None)
            .await
            .unwrap();
        let now = devices.get(scope, phone.id).await.unwrap().unwrap();
        assert_eq!(now.person_id, Some(anon), "split: back with its id");
        persons
            .delete(scope, anon, false, t(4), None)
            .await
            .unwrap();
        let now = devices.get(scope, phone.id).await.unwrap().unwrap();
        assert_eq!(now.person_id, None, "deleted: no one's");
    }

    pub async fn listings_filter_and_page_and_deletion_is_audited(store: &dyn MetadataStore) {
        let (tenant, scope, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let devices = store.push();
        for i in 0..5 {
            let platform = [Platform::Ios, Platform::Android, Platform::Web][i % 3];
            devices
                .register(
                    scope,
                    &device(platform, &format!("address-{i}"), "d", i as i64),
                )
                .await
                .unwrap();
        }
        let page = DeviceFilter { limit: 3, ..all() };
        let first = devices.list(scope, &page).await.unwrap();
        let rest = DeviceFilter {
            after: Some(first[2].id),
            ..page.clone()
        };
        let rest = devices.list(scope, &rest).await.unwrap();
        assert_eq!((first.len(), rest.len()), (3, 2));
        assert!(first.iter().chain(&rest).map(|d| d.id).is_sorted());
        let ios = DeviceFilter {
            platform: Some(Platform::Ios),
            ..all()
        };
        assert_eq!(devices.list(scope, &ios).await.unwrap().len(), 2);

        // Another project of the organisation sees, changes and deletes nothing.
        let (other, _) = tenant
            .add_project(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        assert!(devices.list(other, &all()).await.unwrap().is_empty());
        assert!(devices.get(other, first[0].id).await.unwrap().is_none());
        assert!(devices
            .unregister(other, first[0].platform, &first[0].address, t(9))
            .await
            .unwrap()
            .is_none());
        let audit = |scope: ProjectScope| NewAuditEntry {
            organization_id: scope.organization(),
            project_id: Some(scope.project()),
            actor: Actor::Cli,
            action: "device.delete".into(),
            target_type: "device".into(),
            target_id: first[0].id.to_string(),
            details: serde_json::json!({}),
            request_id: None,
            at: t(10),
        };
        assert!(!devices
            .delete(other, first[0].id, &audit(other))
            .await
            .unwrap());
        assert!(devices
            .delete(scope, first[0].id, &audit(scope))
            .await
            .unwrap());
        assert!(devices.get(scope, first[0].id).await.unwrap().is_none());
        let logged = |scope: ProjectScope| async move {
            store
                .list_audit(
                    AuditScope::Project(scope.organization(), scope.project()),
                    None,
                    10,
                )
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.entry.action == "device.delete")
                .count()
        };
        assert_eq!((logged(scope).await, logged(other).await), (1, 0));
    }
    pub async fn provider_credentials_are_replaced_and_kept_per_project(store: &dyn MetadataStore) {
        let (tenant, scope, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let (other, _) = tenant
            .add_project(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let push = store.push();
        let record = |topic: &str, sealed: &[u8], at: i64| ProviderRecord {
            provider: Provider::Apns,
            settings: serde_json::json!({"topic": topic}),
            sealed: sealed.to_vec(),
            updated_at: t(at),
        };
        let audit = NewAuditEntry {
            organization_id: scope.organization(),
            project_id: Some(scope.project()),
            actor: Actor::Cli,
            action: "push_provider.put".into(),
            target_type: "push_provider".into(),
            target_id: "apns".into(),
            details: serde_json::json!({}),
            request_id: None,
            at: t(1),
        };
        push.put_provider(scope, &record("com.a", &[1, 2, 3], 1), &audit)
            .await
            .unwrap();
        push.put_provider(scope, &record("com.b", &[0, 255, 7, 9], 2), &audit)
            .await
            .unwrap();
        assert_eq!(
            push.provider(scope, Provider::Apns).await.unwrap(),
            Some(record("com.b", &[0, 255, 7, 9], 2))
        );
        assert_eq!(push.providers(scope).await.unwrap().len(), 1);
        assert_eq!(push.provider(scope, Provider::Fcm).await.unwrap(), None);
        assert_eq!(push.provider(other, Provider::Apns).await.unwrap(), None);
        assert!(push.providers(other).await.unwrap().is_empty());
        let entries = store
            .list_audit(
                AuditScope::Project(scope.organization(), scope.project()),
                None,
                10,
            )
            .await
            .unwrap();
        assert_eq!(
            entries
                .iter()
                .filter(|e| e.entry.action == "push_provider.put")
                .count(),
            2
        );
    }
}

all_backends!(
    registering_again_updates_and_moves_the_device,
    an_opt_out_retires_until_registered_again,
    a_device_follows_its_distinct_ids_person,
    listings_filter_and_page_and_deletion_is_audited,
    provider_credentials_are_replaced_and_kept_per_project,
);
