//! One conformance suite for the person store on every backend (see `common` for how
//! the PostgreSQL cases find their database).

#[macro_use]
mod common;

use common::{postgres_store, sqlite_store};

use appizer_core::person::{MergeReason, MergeRecord, PersonDelta, PersonProperties};
use appizer_core::tenancy::{Actor, NewAuditEntry};
use appizer_core::{PersonId, ProjectId};
use appizer_storage::metadata::AuditScope;
use appizer_storage::persons::{
    Applied, Deleted, Identified, NewPerson, PersonFilter, PersonStore, Unlinked,
};
use appizer_storage::testing::Tenant;
use appizer_storage::{MetadataStore, ProjectScope, StoreError};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_780_000_000 + secs, 0).unwrap()
}

/// Creates one person per distinct id; returns their ids in order.
async fn people(
    persons: &dyn PersonStore,
    project: ProjectScope,
    ids: &[&str],
    identified: bool,
) -> Vec<PersonId> {
    let new: Vec<NewPerson> = ids
        .iter()
        .map(|d| NewPerson {
            distinct_id: d.to_string(),
            person_id: PersonId::new(),
            is_identified: identified,
            at: t(0),
        })
        .collect();
    let created = persons.create(project, &new).await.unwrap();
    ids.iter().map(|d| created[*d]).collect()
}

/// Merges `source` into `target` at `t(at)`, with nothing unapplied and no audit entry.
async fn merge(
    persons: &dyn PersonStore,
    project: ProjectScope,
    source: PersonId,
    target: PersonId,
    reason: MergeReason,
    at: i64,
) -> Result<MergeRecord, StoreError> {
    let nothing = PersonDelta::default();
    persons
        .merge(project, source, target, reason, None, &nothing, t(at), None)
        .await
}

fn delta(events: &[i64], set: &[(&str, serde_json::Value, i64)]) -> PersonDelta {
    let mut d = PersonDelta::default();
    for &at in events {
        d.saw(at);
    }
    for (k, v, at) in set {
        d.properties.set(k, v.clone(), *at);
    }
    d
}

mod cases {
    use super::*;

    pub async fn a_distinct_id_gets_one_person_however_often_it_is_created(
        store: &dyn MetadataStore,
    ) {
        let persons = store.persons();
        let (tenant, project, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let first = people(&*persons, project, &["anon-1"], false).await[0];
        let again = people(&*persons, project, &["anon-1"], false).await[0];
        assert_eq!(first, again);
        // Fifty concurrent creations of one new id: one person.
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let persons = persons.clone();
                tokio::spawn(async move { people(&*persons, project, &["new-id"], false).await[0] })
            })
            .collect();
        let mut winners = std::collections::HashSet::new();
        for task in tasks {
            winners.insert(task.await.unwrap());
        }
        assert_eq!(winners.len(), 1);
        let all = persons
            .list(
                project,
                &PersonFilter {
                    limit: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(all.len(), 2);
        let found = persons
            .lookup(
                project,
                &["anon-1".into(), "new-id".into(), "unknown".into()],
            )
            .await
            .unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found["anon-1"], first);
        // Another project sees none of it.
        let (other, _) = tenant
            .add_project(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        assert!(persons
            .lookup(other, &["anon-1".into()])
            .await
            .unwrap()
            .is_empty());
        assert_eq!(persons.get(other, first).await.unwrap(), None);
    }

    pub async fn merge_moves_ids_folds_properties_and_logs(store: &dyn MetadataStore) {
        let persons = store.persons();
        let (_, project, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let [anon, user] = people(&*persons, project, &["anon", "user"], false).await[..] else {
            unreachable!()
        };
        persons
            .apply_deltas(
                &[
                    (
                        project,
                        anon,
                        delta(
                            &[100, 200],
                            &[("plan", json!("free"), 100), ("ref", json!("ads"), 100)],
                        ),
                    ),
                    (project, user, delta(&[300], &[("plan", json!("pro"), 300)])),
                ],
                Some(Applied::unleased(7)),
            )
            .await
            .unwrap();
        assert_eq!(persons.applied_offset(0).await.unwrap(), Some(7));
        let record = persons
            .merge(
                project,
                anon,
                user,
                MergeReason::Identify,
                Some("msg-1"),
                &PersonDelta::default(),
                t(10),
                None,
            )
            .await
            .unwrap();
        assert_eq!(record.distinct_ids, vec!["anon".to_string()]);
        assert_eq!(record.source_snapshot.event_count, 2);
        assert_eq!(persons.get(project, anon).await.unwrap(), None);
        let merged = persons.get(project, user).await.unwrap().unwrap();
        assert_eq!(merged.event_count, 3);
        assert_eq!(merged.properties.get("plan"), Some(&json!("pro")));
        assert_eq!(merged.properties.get("ref"), Some(&json!("ads")));
        assert_eq!(merged.first_seen, DateTime::from_timestamp_millis(100));
        let mut ids = persons.distinct_ids(project, user).await.unwrap();
        ids.sort();
        assert_eq!(ids, vec!["anon".to_string(), "user".to_string()]);
        let overrides = persons.overrides(project).await.unwrap();
        assert_eq!(overrides.effective(anon, "anon"), Some(user));
        let log = persons.merge_log(project, user).await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].message_id.as_deref(), Some("msg-1"));
        assert_eq!(log[0].reason, MergeReason::Identify);
        // A delta for the merged-away person lands on the survivor.
        persons
            .apply_deltas(
                &[(project, anon, delta(&[400], &[]))],
                Some(Applied::unleased(8)),
            )
            .await
            .unwrap();
        assert_eq!(
            persons
                .get(project, user)
                .await
                .unwrap()
                .unwrap()
                .event_count,
            4
        );
        // Merging into a missing person changes nothing.
        let err = persons
            .merge(
                project,
                user,
                PersonId::new(),
                MergeReason::Api,
                None,
                &PersonDelta::default(),
                t(11),
                None,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        assert!(persons.get(project, user).await.unwrap().is_some());
    }

    pub async fn merge_chains_lead_to_the_last_survivor(store: &dyn MetadataStore) {
        let persons = store.persons();
        let (_, project, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let [a, b, c] = people(&*persons, project, &["a", "b", "c"], false).await[..] else {
            unreachable!()
        };
        persons
            .merge(
                project,
                a,
                b,
                MergeReason::Alias,
                None,
                &PersonDelta::default(),
                t(1),
                None,
            )
            .await
            .unwrap();
        persons
            .merge(
                project,
                b,
                c,
                MergeReason::Alias,
                None,
                &PersonDelta::default(),
                t(2),
                None,
            )
            .await
            .unwrap();
        let o = persons.overrides(project).await.unwrap();
        assert_eq!(o.effective(a, "a"), Some(c));
        assert_eq!(o.effective(b, "b"), Some(c));
        let mut stored = o.stored_ids_of(c);
        stored.sort();
        let mut expected = vec![a, b, c];
        expected.sort();
        assert_eq!(stored, expected);
        assert_eq!(persons.distinct_ids(project, c).await.unwrap().len(), 3);
    }

    pub async fn split_restores_the_source_its_ids_and_its_events(store: &dyn MetadataStore) {
        let persons = store.persons();
        let (_, project, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let [anon, user] = people(&*persons, project, &["anon", "user"], false).await[..] else {
            unreachable!()
        };
        persons
            .apply_deltas(
                &[(
                    project,
                    anon,
                    delta(&[100], &[("color", json!("red"), 100)]),
                )],
                Some(Applied::unleased(1)),
            )
            .await
            .unwrap();
        let merge = merge(&*persons, project, anon, user, MergeReason::Identify, 5)
            .await
            .unwrap();
        let undone = persons
            .split(project, merge.id, &PersonDelta::default(), t(6), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(undone.split_at, Some(t(6)));
        let back = persons.get(project, anon).await.unwrap().unwrap();
        assert_eq!(back.event_count, 1);
        assert_eq!(back.properties.get("color"), Some(&json!("red")));
        assert_eq!(
            persons.distinct_ids(project, anon).await.unwrap(),
            vec!["anon".to_string()]
        );
        assert_eq!(
            persons.distinct_ids(project, user).await.unwrap(),
            vec!["user".to_string()]
        );
        assert_eq!(
            persons
                .get(project, user)
                .await
                .unwrap()
                .unwrap()
                .event_count,
            0
        );
        let o = persons.overrides(project).await.unwrap();
        // Events stored before the merge, and those the user received for "anon" since.
        assert_eq!(o.effective(anon, "anon"), Some(anon));
        assert_eq!(o.effective(user, "anon"), Some(anon));
        assert_eq!(o.effective(user, "user"), Some(user));
        assert_eq!(
            persons
                .split(project, merge.id, &PersonDelta::default(), t(7), None)
                .await
                .unwrap(),
            None
        );
        let log = persons.merge_log(project, anon).await.unwrap();
        assert_eq!(log[0].split_at, Some(t(6)));
    }

    pub async fn a_split_gives_back_the_updates_unapplied_at_the_merge(store: &dyn MetadataStore) {
        let persons = store.persons();
        let (_, project, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let [anon, user] = people(&*persons, project, &["anon", "user"], false).await[..] else {
            unreachable!()
        };
        let count = |p: Option<appizer_core::person::Person>| p.unwrap().event_count;
        persons
            .apply_deltas(
                &[(project, anon, delta(&[100], &[]))],
                Some(Applied::unleased(1)),
            )
            .await
            .unwrap();
        // One event of the source is gathered but not yet applied when they merge.
        let unapplied = delta(&[200], &[("plan", json!("pro"), 200)]);
        let merge = persons
            .merge(
                project,
                anon,
                user,
                MergeReason::Identify,
                None,
                &unapplied,
                t(5),
                None,
            )
            .await
            .unwrap();
        assert_eq!(merge.source_snapshot.event_count, 2);
        assert_eq!(
            merge.source_snapshot.properties.get("plan"),
            Some(&json!("pro"))
        );
        assert_eq!(count(persons.get(project, user).await.unwrap()), 1);
        // Applied later under the source's id, it reaches the target.
        persons
            .apply_deltas(&[(project, anon, unapplied)], Some(Applied::unleased(2)))
            .await
            .unwrap();
        assert_eq!(count(persons.get(project, user).await.unwrap()), 2);
        persons
            .split(project, merge.id, &PersonDelta::default(), t(6), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(count(persons.get(project, anon).await.unwrap()), 2);
        assert_eq!(count(persons.get(project, user).await.unwrap()), 0);
        // Merged again with an update unapplied, and split while it still is: neither
        // side counts it until it is applied, to the restored source.
        let unapplied = delta(&[300], &[]);
        let merge = persons
            .merge(
                project,
                anon,
                user,
                MergeReason::Identify,
                None,
                &unapplied,
                t(7),
                None,
            )
            .await
            .unwrap();
        assert_eq!(merge.source_snapshot.event_count, 3);
        assert_eq!(count(persons.get(project, user).await.unwrap()), 2);
        persons
            .split(project, merge.id, &unapplied, t(8), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(count(persons.get(project, anon).await.unwrap()), 2);
        assert_eq!(count(persons.get(project, user).await.unwrap()), 0);
        persons
            .apply_deltas(&[(project, anon, unapplied)], Some(Applied::unleased(3)))
            .await
            .unwrap();
        assert_eq!(count(persons.get(project, anon).await.unwrap()), 3);
        assert_eq!(count(persons.get(project, user).await.unwrap()), 0);
    }

    pub async fn deltas_are_last_write_wins_by_event_time(store: &dyn MetadataStore) {
        let persons = store.persons();
        let (_, project, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let p = people(&*persons, project, &["u"], true).await[0];
        let mut late_old = PersonDelta::default();
        late_old.properties.set("plan", json!("old"), 50);
        late_old.properties.set_once("first", json!("late"), 60);
        let mut newer = PersonDelta::default();
        newer.properties.set("plan", json!("new"), 100);
        newer.properties.set_once("first", json!("early"), 10);
        newer.properties.unset("gone", 100);
        persons
            .apply_deltas(&[(project, p, newer)], Some(Applied::unleased(1)))
            .await
            .unwrap();
        persons
            .apply_deltas(&[(project, p, late_old)], Some(Applied::unleased(2)))
            .await
            .unwrap();
        let got = persons.get(project, p).await.unwrap().unwrap();
        assert_eq!(got.properties.get("plan"), Some(&json!("new")));
        assert_eq!(got.properties.get("first"), Some(&json!("early")));
        assert!(got.is_identified);
        assert_eq!(persons.applied_offset(0).await.unwrap(), Some(2));
        let mut expected = PersonProperties::default();
        expected.set("plan", json!("new"), 100);
        assert_eq!(got.properties.get("plan"), expected.get("plan"));
    }

    pub async fn listing_filters_by_property_and_id_and_pages(store: &dyn MetadataStore) {
        let persons = store.persons();
        let (_, project, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let ids = people(
            &*persons,
            project,
            &["alice@x.io", "bob@y.io", "carol@x.io"],
            true,
        )
        .await;
        let deltas: Vec<_> = ids
            .iter()
            .zip(["pro", "free", "pro"])
            .map(|(p, plan)| {
                (
                    project,
                    *p,
                    delta(&[1], &[("plan", json!(plan), 1), ("seats", json!(3), 1)]),
                )
            })
            .collect();
        persons.apply_deltas(&deltas, None).await.unwrap();
        let filter = |props: Vec<(&str, serde_json::Value)>, text: Option<&str>| PersonFilter {
            properties: props.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            distinct_id_contains: text.map(str::to_string),
            after: None,
            limit: 10,
        };
        let pro = persons
            .list(project, &filter(vec![("plan", json!("pro"))], None))
            .await
            .unwrap();
        assert_eq!(
            pro.iter().map(|p| p.id).collect::<Vec<_>>(),
            vec![ids[0], ids[2]]
        );
        let numeric = persons
            .list(project, &filter(vec![("seats", json!(3))], None))
            .await
            .unwrap();
        assert_eq!(numeric.len(), 3);
        let x = persons
            .list(project, &filter(vec![("plan", json!("pro"))], Some("X.IO")))
            .await
            .unwrap();
        assert_eq!(x.len(), 2);
        let none = persons
            .list(project, &filter(vec![], Some("%")))
            .await
            .unwrap();
        assert!(
            none.is_empty(),
            "LIKE wildcards in the search text are literal"
        );
        let first = persons
            .list(
                project,
                &PersonFilter {
                    limit: 2,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let rest = persons
            .list(
                project,
                &PersonFilter {
                    limit: 2,
                    after: Some(first[1].id),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(first.len() + rest.len(), 3);
        assert_eq!(rest[0].id, ids[2]);
    }

    pub async fn delete_hides_events_and_can_suppress_ids(store: &dyn MetadataStore) {
        let persons = store.persons();
        let (_, project, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let [a, b] = people(&*persons, project, &["a", "b"], false).await[..] else {
            unreachable!()
        };
        persons
            .merge(
                project,
                a,
                b,
                MergeReason::Alias,
                None,
                &PersonDelta::default(),
                t(1),
                None,
            )
            .await
            .unwrap();
        let deleted = persons
            .delete(project, b, true, t(2), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(deleted.distinct_ids.len(), 2);
        assert_eq!(persons.get(project, b).await.unwrap(), None);
        assert!(persons
            .lookup(project, &["a".into(), "b".into()])
            .await
            .unwrap()
            .is_empty());
        let o = persons.overrides(project).await.unwrap();
        assert_eq!(o.effective(a, "a"), None);
        assert_eq!(o.effective(b, "b"), None);
        let suppressed = persons
            .suppressed(project, &["a".into(), "b".into(), "c".into()])
            .await
            .unwrap();
        assert_eq!(suppressed.len(), 2);
        assert_eq!(
            persons.delete(project, b, false, t(3), None).await.unwrap(),
            None
        );
        // Without suppression, the id comes back as a new, visible person.
        let c = people(&*persons, project, &["c"], false).await[0];
        persons
            .delete(project, c, false, t(4), None)
            .await
            .unwrap()
            .unwrap();
        assert!(persons
            .suppressed(project, &["c".into()])
            .await
            .unwrap()
            .is_empty());
        let again = people(&*persons, project, &["c"], false).await[0];
        assert_ne!(again, c);
        assert_eq!(
            persons
                .overrides(project)
                .await
                .unwrap()
                .effective(again, "c"),
            Some(again)
        );
        // A delta for a deleted person is dropped, the offset still recorded.
        persons
            .apply_deltas(
                &[(project, b, delta(&[5], &[]))],
                Some(Applied::unleased(9)),
            )
            .await
            .unwrap();
        assert_eq!(persons.applied_offset(0).await.unwrap(), Some(9));
    }

    pub async fn removing_an_id_moves_it_and_its_events_to_a_new_person(store: &dyn MetadataStore) {
        let persons = store.persons();
        let (_, project, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let [phone, user] = people(&*persons, project, &["phone", "user"], false).await[..] else {
            unreachable!()
        };
        merge(&*persons, project, phone, user, MergeReason::Identify, 1)
            .await
            .unwrap();
        assert_eq!(
            persons
                .remove_distinct_id(project, phone, "user", t(2), None)
                .await
                .unwrap(),
            Unlinked::NotTheirs,
            "not that person's id"
        );
        let Unlinked::Moved(moved) = persons
            .remove_distinct_id(project, user, "phone", t(2), None)
            .await
            .unwrap()
        else {
            panic!("the id moves")
        };
        // The last id stays.
        assert_eq!(
            persons
                .remove_distinct_id(project, user, "user", t(3), None)
                .await
                .unwrap(),
            Unlinked::OnlyId
        );
        assert_eq!(
            persons.distinct_ids(project, user).await.unwrap(),
            vec!["user".to_string()]
        );
        assert_eq!(
            persons.lookup(project, &["phone".into()]).await.unwrap()["phone"],
            moved
        );
        let o = persons.overrides(project).await.unwrap();
        assert_eq!(o.effective(phone, "phone"), Some(moved));
        assert_eq!(o.effective(user, "phone"), Some(moved));
        assert_eq!(o.effective(user, "user"), Some(user));
    }

    pub async fn linking_an_id_keeps_its_first_owner(store: &dyn MetadataStore) {
        let persons = store.persons();
        let (_, project, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let [a, b] = people(&*persons, project, &["a", "b"], false).await[..] else {
            unreachable!()
        };
        assert_eq!(
            persons
                .add_distinct_id(project, a, "a-2", t(1), None)
                .await
                .unwrap(),
            a
        );
        assert_eq!(
            persons
                .add_distinct_id(project, b, "a-2", t(1), None)
                .await
                .unwrap(),
            a
        );
        persons.set_identified(project, b).await.unwrap();
        assert!(
            persons
                .get(project, b)
                .await
                .unwrap()
                .unwrap()
                .is_identified
        );
        assert!(
            !persons
                .get(project, a)
                .await
                .unwrap()
                .unwrap()
                .is_identified
        );
    }
    /// Every person change a caller asks for writes its audit entry in its own
    /// transaction: an entry built from the outcome when the change lands, none when it
    /// fails.
    pub async fn a_change_and_its_audit_entry_land_together(store: &dyn MetadataStore) {
        let persons = store.persons();
        let (_, project, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let entries = || async {
            store
                .list_audit(
                    AuditScope::Project(project.organization(), project.project()),
                    None,
                    100,
                )
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.entry.target_type == "person")
                .map(|e| (e.entry.action, e.entry.details))
                .collect::<Vec<_>>()
        };
        let merge_audit = |m: &MergeRecord| entry(project, "person.merge", m.id.to_string());
        let [a, b] = people(&*persons, project, &["a", "b"], false).await[..] else {
            unreachable!()
        };
        // Failed changes: an unknown person to merge, a split of no merge, the last id,
        // an unknown person to delete, an id of someone else to link.
        let missing = PersonId::new();
        assert!(matches!(
            persons
                .merge(
                    project,
                    missing,
                    b,
                    MergeReason::Api,
                    None,
                    &PersonDelta::default(),
                    t(1),
                    Some(&merge_audit),
                )
                .await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(
            persons
                .split(
                    project,
                    appizer_core::MergeId::new(),
                    &PersonDelta::default(),
                    t(1),
                    Some(&merge_audit),
                )
                .await
                .unwrap(),
            None
        );
        let unlink_audit =
            |p: &PersonId| entry(project, "person.remove_distinct_id", p.to_string());
        assert_eq!(
            persons
                .remove_distinct_id(project, a, "a", t(1), Some(&unlink_audit))
                .await
                .unwrap(),
            Unlinked::OnlyId
        );
        let delete_audit = |d: &Deleted| entry(project, "person.delete", d.distinct_ids.join(","));
        assert_eq!(
            persons
                .delete(project, missing, false, t(1), Some(&delete_audit))
                .await
                .unwrap(),
            None
        );
        let link_audit = |p: &PersonId| entry(project, "person.add_distinct_id", p.to_string());
        assert_eq!(
            persons
                .add_distinct_id(project, a, "b", t(1), Some(&link_audit))
                .await
                .unwrap(),
            b,
            "the id stays with its owner"
        );
        assert_eq!(entries().await, vec![], "no failed change is audited");
        assert_eq!(persons.distinct_ids(project, a).await.unwrap(), ["a"]);

        // Changes that land, each with its entry, built from what the change did.
        let merged = persons
            .merge(
                project,
                a,
                b,
                MergeReason::Api,
                None,
                &PersonDelta::default(),
                t(2),
                Some(&merge_audit),
            )
            .await
            .unwrap();
        let identify_audit = |i: &Identified| {
            entry(
                project,
                if i.created {
                    "person.create"
                } else {
                    "person.update"
                },
                i.person.to_string(),
            )
        };
        let new = NewPerson {
            distinct_id: "c".into(),
            person_id: PersonId::new(),
            is_identified: true,
            at: t(3),
        };
        let created = persons
            .identify(
                project,
                &new,
                &delta(&[], &[("plan", json!("pro"), 3)]),
                Some(&identify_audit),
            )
            .await
            .unwrap();
        assert!(created.created);
        let again = persons
            .identify(
                project,
                &NewPerson {
                    person_id: PersonId::new(),
                    ..new.clone()
                },
                &delta(&[], &[("plan", json!("team"), 4)]),
                Some(&identify_audit),
            )
            .await
            .unwrap();
        assert_eq!((again.person, again.created), (created.person, false));
        let person = persons.get(project, created.person).await.unwrap().unwrap();
        assert!(person.is_identified);
        assert_eq!(person.properties.get("plan"), Some(&json!("team")));
        let deleted = persons
            .delete(project, created.person, false, t(5), Some(&delete_audit))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(deleted.distinct_ids, ["c"]);
        let target =
            |action: &str, target: String| (action.to_string(), json!({ "target": target }));
        let mut landed = entries().await;
        landed.reverse();
        assert_eq!(
            landed,
            vec![
                target("person.merge", merged.id.to_string()),
                target("person.create", created.person.to_string()),
                target("person.update", created.person.to_string()),
                target("person.delete", "c".into()),
            ]
        );
    }

    /// A scope reads and writes only its own project's persons.
    pub async fn a_scope_never_reaches_another_projects_persons(store: &dyn MetadataStore) {
        let persons = store.persons();
        let (tenant, mine, _) = Tenant::create(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let (theirs, _) = tenant
            .add_project(store, ProjectId::new(), "UTC")
            .await
            .unwrap();
        let [a, b] = people(&*persons, theirs, &["a", "b"], true).await[..] else {
            unreachable!()
        };
        assert!(persons
            .lookup(mine, &["a".into()])
            .await
            .unwrap()
            .is_empty());
        assert_eq!(persons.get(mine, a).await.unwrap(), None);
        assert!(persons.distinct_ids(mine, a).await.unwrap().is_empty());
        let all = PersonFilter {
            limit: 100,
            ..Default::default()
        };
        assert!(persons.list(mine, &all).await.unwrap().is_empty());
        assert!(persons.property_table(mine).await.unwrap().is_empty());
        assert!(matches!(
            merge(&*persons, mine, a, b, MergeReason::Api, 1).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(
            persons.delete(mine, a, true, t(1), None).await.unwrap(),
            None
        );
        assert_eq!(
            persons
                .remove_distinct_id(mine, a, "a", t(1), None)
                .await
                .unwrap(),
            Unlinked::NotTheirs
        );
        persons
            .apply_deltas(&[(mine, a, delta(&[1], &[("x", json!(1), 1)]))], None)
            .await
            .unwrap();
        // Their persons are as they were.
        let seen = persons.get(theirs, a).await.unwrap().unwrap();
        assert_eq!((seen.event_count, seen.properties.get("x")), (0, None));
        assert_eq!(persons.distinct_ids(theirs, a).await.unwrap(), ["a"]);
        assert_eq!(persons.list(theirs, &all).await.unwrap().len(), 2);
        assert!(persons.overrides(theirs).await.unwrap().is_empty());
        assert!(persons.merge_log(theirs, b).await.unwrap().is_empty());
    }
}

/// An audit entry whose details name the target, so a test can tell what built it.
fn entry(scope: ProjectScope, action: &str, target: String) -> NewAuditEntry {
    NewAuditEntry {
        organization_id: scope.organization(),
        project_id: Some(scope.project()),
        actor: Actor::Cli,
        action: action.into(),
        target_type: "person".into(),
        target_id: target.clone(),
        details: json!({ "target": target }),
        request_id: None,
        at: t(0),
    }
}

all_backends!(
    a_distinct_id_gets_one_person_however_often_it_is_created,
    merge_moves_ids_folds_properties_and_logs,
    merge_chains_lead_to_the_last_survivor,
    split_restores_the_source_its_ids_and_its_events,
    a_split_gives_back_the_updates_unapplied_at_the_merge,
    deltas_are_last_write_wins_by_event_time,
    listing_filters_by_property_and_id_and_pages,
    delete_hides_events_and_can_suppress_ids,
    removing_an_id_moves_it_and_its_events_to_a_new_person,
    linking_an_id_keeps_its_first_owner,
    a_change_and_its_audit_entry_land_together,
    a_scope_never_reaches_another_projects_persons,
);
