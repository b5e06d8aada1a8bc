//! One conformance suite for the push store (devices, provider credentials, messages and
//! their outbox) on every backend (see `common` for how the PostgreSQL cases find their
//! database).

#[macro_use]
mod common;

use common::{postgres_store, sqlite_store};

use appizer_core::definition::{Definition, DefinitionKind};
use appizer_core::person::{MergeReason, PersonDelta};
use appizer_core::push::{
    Audience, CampaignFilter, CampaignRecord, CampaignRun, CampaignState, DeliveryOutcome,
    DeliveryState, DeviceFilter, DeviceState, MessageRecord, NewDelivery, NewDevice, NewMessage,
    Platform, Provider, ProviderRecord, RunPage, RunState, WebKeys,
};
use appizer_core::tenancy::{Actor, NewAuditEntry};
use appizer_core::{CampaignId, DefinitionId, DeviceId, MessageId, PersonId, ProjectId};
use appizer_storage::metadata::AuditScope;
use appizer_storage::persons::NewPerson;
use appizer_storage::push::{CampaignUpdate, CampaignWrite, ReachQuery, DEVICE_DELETED, OPTED_OUT};
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

fn message(audience: Audience, platforms: &[Platform], key: Option<&str>, at: i64) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        idempotency_key: key.map(str::to_string),
        content: serde_json::json!({"notification": {"title": "Hi", "body": "there"}}),
        audience,
        platforms: platforms.to_vec(),
        campaign_id: Some("c1".into()),
        variant: None,
        created_at: t(at),
    }
}

/// A project with persons alice (an iPhone and a browser, two distinct ids), bob (an
/// Android phone) and carol (a retired iPhone), and a device of an id with no person.
struct Audiences {
    scope: ProjectScope,
    alice: PersonId,
    bob: PersonId,
    iphone: DeviceId,
    browser: DeviceId,
    android: DeviceId,
    stray: DeviceId,
}

async fn audiences(store: &dyn MetadataStore, tenant: Option<&Tenant>) -> Audiences {
    let scope = match tenant {
        None => {
            Tenant::create(store, ProjectId::new(), "UTC")
                .await
                .unwrap()
                .1
        }
        Some(tenant) => {
            tenant
                .add_project(store, ProjectId::new(), "UTC")
                .await
                .unwrap()
                .0
        }
    };
    let [alice, bob, _carol] = people(store, scope, &["alice", "bob", "carol"]).await[..] else {
        unreachable!()
    };
    store
        .persons()
        .add_distinct_id(scope, alice, "alice-2", t(0), None)
        .await
        .unwrap();
    let push = store.push();
    let add = async |platform, address: &str, distinct_id| {
        push.register(scope, &device(platform, address, distinct_id, 1))
            .await
            .unwrap()
            .0
            .id
    };
    let iphone = add(Platform::Ios, &"a1".repeat(32), "alice").await;
    let browser = add(Platform::Web, "https://push.example/alice", "alice-2").await;
    let android = add(Platform::Android, "bob-token", "bob").await;
    add(Platform::Ios, &"c1".repeat(32), "carol").await;
    push.unregister(scope, Platform::Ios, &"c1".repeat(32), t(2))
        .await
        .unwrap();
    let stray = add(Platform::Android, "stray-token", "no-person-yet").await;
    Audiences {
        scope,
        alice,
        bob,
        iphone,
        browser,
        android,
        stray,
    }
}

async fn queued(
    store: &dyn MetadataStore,
    a: &Audiences,
    m: &NewMessage,
) -> (MessageRecord, Vec<DeviceId>) {
    let (record, new) = store.push().queue_message(a.scope, m, t(0)).await.unwrap();
    assert!(new);
    let counts = store
        .push()
        .delivery_counts(a.scope, record.id)
        .await
        .unwrap();
    assert_eq!(counts.queued, record.devices);
    let taken = store
        .push()
        .take_deliveries(None, t(10_000), 100, t(10_060))
        .await
        .unwrap();
    let mut devices: Vec<DeviceId> = taken
        .iter()
        .filter(|d| d.message_id == record.id)
        .map(|d| d.device_id)
        .collect();
    devices.sort();
    store.push().release_deliveries().await.unwrap();
    (record, devices)
}

fn sorted(mut ids: Vec<DeviceId>) -> Vec<DeviceId> {
    ids.sort();
    ids
}

mod cases {
    use super::*;

    pub async fn a_message_is_queued_for_each_active_device_of_its_audience(
        store: &dyn MetadataStore,
    ) {
        let a = audiences(store, None).await;
        let all = Platform::ALL;
        let (_, to_alice) = queued(
            store,
            &a,
            &message(Audience::Persons(vec![a.alice]), &all, None, 1),
        )
        .await;
        assert_eq!(to_alice, sorted(vec![a.iphone, a.browser]));
        let (_, by_ids) = queued(
            store,
            &a,
            &message(
                Audience::DistinctIds(vec!["alice-2".into(), "no-person-yet".into()]),
                &all,
                None,
                1,
            ),
        )
        .await;
        assert_eq!(by_ids, sorted(vec![a.iphone, a.browser, a.stray]));
        let (_, ios_only) = queued(
            store,
            &a,
            &message(
                Audience::Persons(vec![a.alice, a.bob]),
                &[Platform::Ios],
                None,
                1,
            ),
        )
        .await;
        assert_eq!(ios_only, vec![a.iphone]);
        let (_, named) = queued(
            store,
            &a,
            &message(
                Audience::Devices(vec![a.android, DeviceId::new()]),
                &all,
                None,
                1,
            ),
        )
        .await;
        assert_eq!(named, vec![a.android]);

        // A segment's stored members: bob and carol (whose only device is retired).
        let segment = appizer_core::definition::Definition {
            id: DefinitionId::new(),
            project_id: a.scope.project(),
            kind: appizer_core::definition::DefinitionKind::Segment,
            name: "S".into(),
            description: String::new(),
            body: serde_json::json!({}),
            member_count: None,
            computed_at: None,
            created_at: t(0),
            updated_at: t(0),
        };
        let audit = NewAuditEntry {
            organization_id: a.scope.organization(),
            project_id: Some(a.scope.project()),
            actor: Actor::Cli,
            action: "segment.create".into(),
            target_type: "segment".into(),
            target_id: segment.id.to_string(),
            details: serde_json::json!({}),
            request_id: None,
            at: t(0),
        };
        store
            .create_definition(a.scope, &segment, &audit)
            .await
            .unwrap();
        let carol = store
            .persons()
            .lookup(a.scope, &["carol".to_string()])
            .await
            .unwrap()["carol"];
        store
            .replace_segment_members(a.scope, segment.id, &[a.bob, carol], t(0))
            .await
            .unwrap();
        let (record, to_segment) = queued(
            store,
            &a,
            &message(Audience::Segment(segment.id), &all, None, 1),
        )
        .await;
        assert_eq!(to_segment, vec![a.android]);
        assert_eq!(record.devices, 1);

        // Another project's ids reach nothing of this one.
        let other = audiences(
            store,
            Some(&Tenant {
                organization: a.scope.organization(),
            }),
        )
        .await;
        let (_, none) = queued(
            store,
            &other,
            &message(Audience::Devices(vec![a.iphone]), &all, None, 1),
        )
        .await;
        assert!(none.is_empty());
        assert_eq!(
            store.push().message(other.scope, record.id).await.unwrap(),
            None
        );
        assert_eq!(
            store.push().message(a.scope, record.id).await.unwrap(),
            Some(record)
        );
    }

    pub async fn an_idempotency_key_answers_the_first_message_within_its_window(
        store: &dyn MetadataStore,
    ) {
        let a = audiences(store, None).await;
        let push = store.push();
        let first = message(
            Audience::Persons(vec![a.alice]),
            &Platform::ALL,
            Some("k1"),
            100,
        );
        let (record, new) = push.queue_message(a.scope, &first, t(0)).await.unwrap();
        assert!(new);
        let again = message(
            Audience::Persons(vec![a.bob]),
            &Platform::ALL,
            Some("k1"),
            200,
        );
        let (answer, new) = push.queue_message(a.scope, &again, t(50)).await.unwrap();
        assert!(!new);
        assert_eq!(answer, record);
        assert_eq!(push.message(a.scope, again.id).await.unwrap(), None);
        // Past the window the key is free again; the first message stays.
        let (later, new) = push.queue_message(a.scope, &again, t(150)).await.unwrap();
        assert!(new);
        assert_eq!(later.id, again.id);
        assert_eq!(later.devices, 1);
        assert!(push.message(a.scope, first.id).await.unwrap().is_some());
        // Keys are per project.
        let other = audiences(
            store,
            Some(&Tenant {
                organization: a.scope.organization(),
            }),
        )
        .await;
        let elsewhere = NewMessage {
            id: MessageId::new(),
            ..first.clone()
        };
        let (_, new) = push
            .queue_message(other.scope, &elsewhere, t(0))
            .await
            .unwrap();
        assert!(new);
    }

    pub async fn deliveries_are_taken_under_a_lease_and_completed(store: &dyn MetadataStore) {
        let a = audiences(store, None).await;
        let push = store.push();
        let m = message(
            Audience::Persons(vec![a.alice, a.bob]),
            &Platform::ALL,
            None,
            1,
        );
        let (record, _) = push.queue_message(a.scope, &m, t(0)).await.unwrap();
        assert_eq!(record.devices, 3);
        let first = push.take_deliveries(None, t(10), 2, t(70)).await.unwrap();
        assert_eq!(first.len(), 2);
        assert!(first
            .iter()
            .all(|d| d.attempts == 1 && d.project_id == a.scope.project()));
        let rest = push.take_deliveries(None, t(10), 10, t(70)).await.unwrap();
        assert_eq!(rest.len(), 1, "what is held is not taken twice");
        assert!(push
            .take_deliveries(None, t(20), 10, t(80))
            .await
            .unwrap()
            .is_empty());
        let iphone = first
            .iter()
            .chain(&rest)
            .find(|d| d.device_id == a.iphone)
            .unwrap();
        let device = iphone.device.as_ref().unwrap();
        assert_eq!(
            (
                device.address.as_str(),
                device.distinct_id.as_str(),
                device.state
            ),
            ("a1".repeat(32).as_str(), "alice", DeviceState::Active)
        );
        let browser = first
            .iter()
            .chain(&rest)
            .find(|d| d.device_id == a.browser)
            .unwrap();
        assert!(browser.device.as_ref().unwrap().web_keys.is_some());

        push.complete_deliveries(
            &[
                (record.id, a.iphone, DeliveryOutcome::Sent),
                (
                    record.id,
                    a.browser,
                    DeliveryOutcome::Retired("410 subscription gone".into()),
                ),
                (
                    record.id,
                    a.android,
                    DeliveryOutcome::Retry {
                        due: t(100),
                        reason: "429".into(),
                    },
                ),
            ],
            t(30),
        )
        .await
        .unwrap();
        let counts = push.delivery_counts(a.scope, record.id).await.unwrap();
        assert_eq!((counts.queued, counts.sent, counts.retired), (1, 1, 1));
        assert_eq!(counts.retired_by_reason["410 subscription gone"], 1);
        assert_eq!(counts.by_platform["ios"].sent, 1);
        assert_eq!(counts.by_platform["web"].retired, 1);
        let browser = push.get(a.scope, a.browser).await.unwrap().unwrap();
        assert_eq!(browser.state, DeviceState::Retired);
        assert_eq!(
            browser.retired_reason.as_deref(),
            Some("410 subscription gone")
        );

        // The retry is due at its time, not before, with the attempt counted.
        assert!(push
            .take_deliveries(None, t(99), 10, t(160))
            .await
            .unwrap()
            .is_empty());
        let retry = push
            .take_deliveries(None, t(100), 10, t(160))
            .await
            .unwrap();
        assert_eq!(retry.len(), 1);
        assert_eq!((retry[0].device_id, retry[0].attempts), (a.android, 2));
        // A loop that stopped holding it: released at the next start, due again.
        assert_eq!(push.release_deliveries().await.unwrap(), 1);
        let again = push
            .take_deliveries(None, t(101), 10, t(160))
            .await
            .unwrap();
        assert_eq!(again[0].attempts, 3);
        push.complete_deliveries(
            &[(
                record.id,
                a.android,
                DeliveryOutcome::Failed("PayloadTooLarge".into()),
            )],
            t(102),
        )
        .await
        .unwrap();
        let counts = push.delivery_counts(a.scope, record.id).await.unwrap();
        assert_eq!((counts.queued, counts.failed), (0, 1));
        assert_eq!(counts.failed_by_reason["PayloadTooLarge"], 1);
        assert!(push
            .take_deliveries(None, t(1000), 10, t(1060))
            .await
            .unwrap()
            .is_empty());
        // A later message does not reach the retired browser.
        let (later, _) = push
            .queue_message(
                a.scope,
                &message(Audience::Persons(vec![a.alice]), &Platform::ALL, None, 5),
                t(0),
            )
            .await
            .unwrap();
        assert_eq!(later.devices, 1);
    }

    pub async fn devices_are_imported_in_bulk_keeping_those_already_there(
        store: &dyn MetadataStore,
    ) {
        let (_, scope, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let push = store.push();
        let (kept, _) = push
            .register(scope, &device(Platform::Android, "t-7", "someone", 1))
            .await
            .unwrap();
        let many: Vec<NewDevice> = (0..1000)
            .map(|i| device(Platform::Android, &format!("t-{i}"), &format!("d{i}"), 2))
            .collect();
        assert_eq!(push.import_devices(scope, &many).await.unwrap(), 999);
        let all = push
            .list(
                scope,
                &DeviceFilter {
                    limit: 2000,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(all.len(), 1000);
        let seven = all.iter().find(|d| d.address == "t-7").unwrap();
        assert_eq!((seven.id, seven.distinct_id.as_str()), (kept.id, "someone"));
        let other = all.iter().find(|d| d.address == "t-500").unwrap();
        assert_eq!(
            (
                other.distinct_id.as_str(),
                other.state,
                other.locale.as_deref()
            ),
            ("d500", DeviceState::Active, Some("fr-FR"))
        );
    }

    pub async fn a_deleted_device_is_taken_without_its_details(store: &dyn MetadataStore) {
        let a = audiences(store, None).await;
        let push = store.push();
        let (record, _) = push
            .queue_message(
                a.scope,
                &message(Audience::Devices(vec![a.android]), &Platform::ALL, None, 1),
                t(0),
            )
            .await
            .unwrap();
        let audit = NewAuditEntry {
            organization_id: a.scope.organization(),
            project_id: Some(a.scope.project()),
            actor: Actor::Cli,
            action: "push_device.delete".into(),
            target_type: "push_device".into(),
            target_id: a.android.to_string(),
            details: serde_json::json!({}),
            request_id: None,
            at: t(2),
        };
        assert!(push.delete(a.scope, a.android, &audit).await.unwrap());
        let taken = push.take_deliveries(None, t(10), 10, t(70)).await.unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].device, None);
        push.complete_deliveries(
            &[(
                record.id,
                a.android,
                DeliveryOutcome::Retired(DEVICE_DELETED.into()),
            )],
            t(11),
        )
        .await
        .unwrap();
        let counts = push.delivery_counts(a.scope, record.id).await.unwrap();
        assert_eq!(counts.retired_by_reason[DEVICE_DELETED], 1);
    }

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

    pub async fn campaigns_are_written_only_at_the_version_read(store: &dyn MetadataStore) {
        let (tenant, scope, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let (other, _) = tenant
            .add_project(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let push = store.push();
        let audit = |action: &str, id: CampaignId| NewAuditEntry {
            organization_id: scope.organization(),
            project_id: Some(scope.project()),
            actor: Actor::Cli,
            action: action.into(),
            target_type: "campaign".into(),
            target_id: id.to_string(),
            details: serde_json::json!({}),
            request_id: None,
            at: t(0),
        };
        let mut ids = Vec::new();
        for (i, name) in ["spring", "summer", "autumn"].iter().enumerate() {
            let record = CampaignRecord {
                id: CampaignId::new(),
                project_id: scope.project(),
                name: name.to_string(),
                state: CampaignState::Draft,
                definition: serde_json::json!({"variants": [{"title": name, "body": "b"}]}),
                version: 1,
                created_at: t(i as i64),
                updated_at: t(i as i64),
            };
            push.create_campaign(scope, &record, &audit("campaign.create", record.id))
                .await
                .unwrap();
            assert_eq!(
                push.campaign(scope, record.id).await.unwrap(),
                Some(record.clone())
            );
            ids.push(record.id);
        }
        // Another project sees none of them.
        assert!(push.campaign(other, ids[0]).await.unwrap().is_none());
        let none = CampaignFilter {
            limit: 10,
            ..Default::default()
        };
        assert!(push.campaigns(other, &none).await.unwrap().is_empty());
        // Pages in id order.
        let page = CampaignFilter {
            limit: 2,
            ..Default::default()
        };
        let first: Vec<CampaignId> = push
            .campaigns(scope, &page)
            .await
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(first, ids[..2]);
        let rest = CampaignFilter {
            after: Some(ids[1]),
            ..page
        };
        let second: Vec<CampaignId> = push
            .campaigns(scope, &rest)
            .await
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(second, ids[2..]);
        // An update at the version read moves it on; a second at the old version is stale
        // and writes nothing.
        let update = CampaignUpdate {
            version: 1,
            name: "spring sale".into(),
            state: CampaignState::Scheduled,
            definition: serde_json::json!({"variants": [], "when": "now"}),
            at: t(10),
        };
        let CampaignWrite::Done(Some(updated)) = push
            .update_campaign(scope, ids[0], &update, &audit("campaign.schedule", ids[0]))
            .await
            .unwrap()
        else {
            panic!("the update was refused")
        };
        assert_eq!(
            (
                updated.version,
                updated.state,
                updated.name.as_str(),
                updated.updated_at,
                updated.created_at
            ),
            (2, CampaignState::Scheduled, "spring sale", t(10), t(0))
        );
        assert_eq!(updated.definition["when"], "now");
        let late = CampaignUpdate {
            state: CampaignState::Cancelled,
            ..update.clone()
        };
        assert_eq!(
            push.update_campaign(scope, ids[0], &late, &audit("campaign.cancel", ids[0]))
                .await
                .unwrap(),
            CampaignWrite::Stale(updated.clone())
        );
        // Other projects cannot write it; a missing one is missing.
        assert_eq!(
            push.update_campaign(other, ids[0], &update, &audit("x", ids[0]))
                .await
                .unwrap(),
            CampaignWrite::Missing
        );
        // Listing by state.
        let scheduled = CampaignFilter {
            state: Some(CampaignState::Scheduled),
            limit: 10,
            after: None,
        };
        assert_eq!(
            push.campaigns(scope, &scheduled).await.unwrap(),
            std::slice::from_ref(&updated)
        );
        // Delete at the version read, audited; stale or missing otherwise.
        assert_eq!(
            push.delete_campaign(scope, ids[0], 1, &audit("campaign.delete", ids[0]))
                .await
                .unwrap(),
            CampaignWrite::Stale(updated)
        );
        assert_eq!(
            push.delete_campaign(scope, ids[0], 2, &audit("campaign.delete", ids[0]))
                .await
                .unwrap(),
            CampaignWrite::Done(None)
        );
        assert!(push.campaign(scope, ids[0]).await.unwrap().is_none());
        assert_eq!(
            push.delete_campaign(scope, ids[0], 2, &audit("campaign.delete", ids[0]))
                .await
                .unwrap(),
            CampaignWrite::Missing
        );
        let actions: Vec<String> = store
            .list_audit(
                AuditScope::Project(scope.organization(), scope.project()),
                None,
                20,
            )
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.entry.action)
            .filter(|a| a.starts_with("campaign."))
            .collect();
        let count = |a: &str| actions.iter().filter(|x| *x == a).count();
        // Only the writes that happened are in the log.
        assert_eq!(
            (
                count("campaign.create"),
                count("campaign.schedule"),
                count("campaign.cancel"),
                count("campaign.delete")
            ),
            (3, 1, 0, 1)
        );
    }
    pub async fn a_campaign_reaches_active_devices_of_its_segments_page_by_page(
        store: &dyn MetadataStore,
    ) {
        let a = audiences(store, None).await;
        let segment = Definition {
            id: DefinitionId::new(),
            project_id: a.scope.project(),
            kind: DefinitionKind::Segment,
            name: "alice only".into(),
            description: String::new(),
            body: serde_json::json!({"kind": "static"}),
            member_count: None,
            computed_at: None,
            created_at: t(0),
            updated_at: t(0),
        };
        let audit = NewAuditEntry {
            organization_id: a.scope.organization(),
            project_id: Some(a.scope.project()),
            actor: Actor::Cli,
            action: "segment.create".into(),
            target_type: "segment".into(),
            target_id: segment.id.to_string(),
            details: serde_json::json!({}),
            request_id: None,
            at: t(0),
        };
        store
            .create_definition(a.scope, &segment, &audit)
            .await
            .unwrap();
        store
            .replace_segment_members(a.scope, segment.id, &[a.alice], t(0))
            .await
            .unwrap();
        let push = store.push();
        let reach = async |query: ReachQuery| -> Vec<(PersonId, DeviceId)> {
            let mut out = Vec::new();
            let mut query = query;
            loop {
                let page = push.reachable(a.scope, &query).await.unwrap();
                let Some(last) = page.last() else { break };
                query.after = Some(last.person_id);
                for r in &page {
                    assert_eq!(r.device.person_id, Some(r.person_id));
                    assert!(r.properties.is_empty());
                    out.push((r.person_id, r.device.id));
                }
            }
            out
        };
        let everyone = ReachQuery {
            platforms: Platform::ALL.to_vec(),
            limit: 100,
            ..Default::default()
        };
        let mut expected = vec![
            (a.alice, a.iphone),
            (a.alice, a.browser),
            (a.bob, a.android),
        ];
        expected.sort();
        // Every active device of a person (carol's is retired; the stray one has no
        // person), in person then device order.
        assert_eq!(reach(everyone.clone()).await, expected);
        // Pages of two hold whole persons, and together every device once.
        let paged = reach(ReachQuery {
            limit: 2,
            ..everyone.clone()
        })
        .await;
        assert_eq!(paged, expected);
        let android = reach(ReachQuery {
            platforms: vec![Platform::Android],
            ..everyone.clone()
        })
        .await;
        assert_eq!(android, vec![(a.bob, a.android)]);
        let included = reach(ReachQuery {
            include: vec![segment.id],
            ..everyone.clone()
        })
        .await;
        assert_eq!(included.len(), 2);
        assert!(included.iter().all(|(p, _)| *p == a.alice));
        let excluded = reach(ReachQuery {
            exclude: vec![segment.id],
            ..everyone.clone()
        })
        .await;
        assert_eq!(excluded, vec![(a.bob, a.android)]);
    }
    pub async fn a_run_page_is_written_once_from_the_cursor_it_read(store: &dyn MetadataStore) {
        let a = audiences(store, None).await;
        let push = store.push();
        let audit = NewAuditEntry {
            organization_id: a.scope.organization(),
            project_id: Some(a.scope.project()),
            actor: Actor::Cli,
            action: "campaign.create".into(),
            target_type: "campaign".into(),
            target_id: String::new(),
            details: serde_json::json!({}),
            request_id: None,
            at: t(0),
        };
        let campaign = CampaignRecord {
            id: CampaignId::new(),
            project_id: a.scope.project(),
            name: "runs".into(),
            state: CampaignState::Scheduled,
            definition: serde_json::json!({}),
            version: 1,
            created_at: t(0),
            updated_at: t(0),
        };
        push.create_campaign(a.scope, &campaign, &audit)
            .await
            .unwrap();
        let run = CampaignRun {
            campaign_id: campaign.id,
            key: "once".into(),
            phase: "all".into(),
            project_id: a.scope.project(),
            state: RunState::Sending,
            due_at: t(1),
            cursor: None,
            assigned: 0,
            queued: 0,
            started_at: t(2),
            finished_at: None,
            decision: None,
        };
        let to = |state, version| CampaignUpdate {
            version,
            name: campaign.name.clone(),
            state,
            definition: campaign.definition.clone(),
            at: t(2),
        };
        let CampaignWrite::Done(Some(running)) = push
            .start_run(a.scope, &run, &to(CampaignState::Running, 1))
            .await
            .unwrap()
        else {
            panic!("started")
        };
        assert_eq!(
            (running.state, running.version),
            (CampaignState::Running, 2)
        );
        // A second start at the old version is refused and records no second run.
        let again = push
            .start_run(a.scope, &run, &to(CampaignState::Running, 1))
            .await
            .unwrap();
        assert!(matches!(again, CampaignWrite::Stale(_)));
        assert_eq!(
            push.runs(a.scope, campaign.id).await.unwrap(),
            vec![run.clone()]
        );

        let message = NewMessage {
            audience: Audience::Campaign {
                campaign_id: campaign.id,
                run: "once".into(),
            },
            campaign_id: Some(campaign.id.to_string()),
            variant: Some("A".into()),
            ..message(Audience::Devices(vec![]), &[Platform::Ios], None, 2)
        };
        let delivery = |device: DeviceId, platform, rendered: Option<&str>| NewDelivery {
            message_id: message.id,
            device_id: device,
            person_id: None,
            platform,
            due_at: t(3),
            rendered: rendered.map(str::to_string),
        };
        let (first, second) = if a.alice < a.bob {
            (a.alice, a.bob)
        } else {
            (a.bob, a.alice)
        };
        let page = RunPage {
            campaign_id: campaign.id,
            key: "once".into(),
            phase: "all".into(),
            after: None,
            cursor: first,
            messages: vec![message.clone()],
            deliveries: vec![
                delivery(
                    a.iphone,
                    Platform::Ios,
                    Some(r#"{"title":"Hi Alice","body":"b"}"#),
                ),
                delivery(a.browser, Platform::Web, None),
            ],
            assigned: 1,
            at: t(3),
        };
        assert!(push.queue_run_page(a.scope, &page).await.unwrap());
        // The same page again (a crash before the runner learnt it was written): refused.
        assert!(!push.queue_run_page(a.scope, &page).await.unwrap());
        let next = RunPage {
            after: Some(first),
            cursor: second,
            deliveries: vec![
                delivery(a.android, Platform::Android, None),
                delivery(a.iphone, Platform::Ios, None),
            ],
            ..page.clone()
        };
        assert!(push.queue_run_page(a.scope, &next).await.unwrap());
        let runs = push.runs(a.scope, campaign.id).await.unwrap();
        assert_eq!(
            (runs[0].cursor, runs[0].assigned, runs[0].queued),
            (Some(second), 2, 3),
            "a delivery is one per message and device"
        );
        let record = push.message(a.scope, message.id).await.unwrap().unwrap();
        assert_eq!(record.devices, 3);
        assert_eq!(
            record.campaign_id.as_deref(),
            Some(campaign.id.to_string().as_str())
        );
        let taken = push.take_deliveries(None, t(10), 100, t(70)).await.unwrap();
        let iphone = taken.iter().find(|d| d.device_id == a.iphone).unwrap();
        assert_eq!(
            iphone.rendered.as_deref(),
            Some(r#"{"title":"Hi Alice","body":"b"}"#)
        );
        push.release_deliveries().await.unwrap();
        // Pausing holds what is queued; resuming queues it again; cancelling ends it.
        let moved = |from: &'static [DeliveryState], to_state| {
            push.move_campaign_deliveries(a.scope, campaign.id, from, to_state, t(20))
        };
        assert_eq!(
            moved(&[DeliveryState::Queued], DeliveryState::Held)
                .await
                .unwrap(),
            3
        );
        let counts = push.delivery_counts(a.scope, message.id).await.unwrap();
        assert_eq!((counts.queued, counts.held), (0, 3));
        assert!(push
            .take_deliveries(None, t(30), 100, t(90))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            moved(&[DeliveryState::Held], DeliveryState::Queued)
                .await
                .unwrap(),
            3
        );
        assert_eq!(
            moved(
                &[DeliveryState::Queued, DeliveryState::Held],
                DeliveryState::Cancelled
            )
            .await
            .unwrap(),
            3
        );
        assert_eq!(
            push.delivery_counts(a.scope, message.id)
                .await
                .unwrap()
                .cancelled,
            3
        );
        // The end of the run moves the campaign on, in one transaction.
        let CampaignWrite::Done(Some(done)) = push
            .finish_run(
                a.scope,
                campaign.id,
                "once",
                "all",
                RunState::Sent,
                &to(CampaignState::Completed, 2),
            )
            .await
            .unwrap()
        else {
            panic!("finished")
        };
        assert_eq!(done.state, CampaignState::Completed);
        let runs = push.runs(a.scope, campaign.id).await.unwrap();
        assert_eq!(
            (runs[0].state, runs[0].finished_at),
            (RunState::Sent, Some(t(2)))
        );
        // Every running campaign of every project, for the runner.
        assert!(push
            .campaigns_in(CampaignState::Completed, None, 10)
            .await
            .unwrap()
            .iter()
            .any(|c| c.id == campaign.id));
    }
}

all_backends!(
    registering_again_updates_and_moves_the_device,
    an_opt_out_retires_until_registered_again,
    a_device_follows_its_distinct_ids_person,
    listings_filter_and_page_and_deletion_is_audited,
    provider_credentials_are_replaced_and_kept_per_project,
    a_message_is_queued_for_each_active_device_of_its_audience,
    an_idempotency_key_answers_the_first_message_within_its_window,
    deliveries_are_taken_under_a_lease_and_completed,
    a_deleted_device_is_taken_without_its_details,
    devices_are_imported_in_bulk_keeping_those_already_there,
    campaigns_are_written_only_at_the_version_read,
    a_campaign_reaches_active_devices_of_its_segments_page_by_page,
    a_run_page_is_written_once_from_the_cursor_it_read,
);
