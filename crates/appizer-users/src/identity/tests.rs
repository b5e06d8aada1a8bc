use appizer_core::event::{Event, MessageType};
use appizer_core::person::{MergeReason, Person};
use appizer_storage::persons::Applied;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::profile::{add_event, referring_domain_of};
use super::resolve::link_of;
use super::*;

fn event(dialect: Dialect, kind: MessageType, name: &str, who: &str) -> Event {
    let at = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
    Event {
        dialect,
        ..Event::new(ProjectId::new(), kind, name, who, at)
    }
}

/// A new person after `delta`.
fn applied(delta: &PersonDelta) -> Person {
    let mut person = Person::new(PersonId::new(), ProjectId::new(), false, Utc::now());
    delta.apply_to(&mut person);
    person
}

#[test]
fn links_come_from_identify_alias_and_both_segment_ids() {
    let mut e = event(Dialect::Segment, MessageType::Identify, "$identify", "u1");
    e.user_id = Some("u1".into());
    e.anonymous_id = Some("a1".into());
    assert_eq!(link_of(&e).unwrap().0, "a1");
    let mut t = event(Dialect::Segment, MessageType::Track, "Clicked", "u1");
    t.user_id = Some("u1".into());
    assert!(link_of(&t).is_none());
    t.anonymous_id = Some("a1".into());
    assert_eq!(link_of(&t).unwrap().2, MergeReason::Identify);
    let mut a = event(Dialect::Posthog, MessageType::Alias, "$create_alias", "u1");
    a.previous_id = Some("x".into());
    assert_eq!(
        link_of(&a).unwrap(),
        ("x".into(), "properties.alias", MergeReason::Alias)
    );
    let mut m = event(
        Dialect::Posthog,
        MessageType::Track,
        "$merge_dangerously",
        "u1",
    );
    m.properties = json!({"alias": "u2"}).try_into().unwrap();
    assert_eq!(link_of(&m).unwrap().2, MergeReason::MergeDangerously);
    let plain = event(Dialect::Posthog, MessageType::Track, "Clicked", "d");
    assert!(link_of(&plain).is_none());
}

#[test]
fn an_event_sets_properties_and_latest_and_initial_context() {
    let mut e = event(Dialect::Posthog, MessageType::Track, "Clicked", "d");
    e.properties = json!({
        "$set": {"plan": "pro"}, "$set_once": {"signup": "2026-01-01"}, "$unset": ["old"],
        "$referrer": "https://news.example/a", "utm_source": "newsletter", "$app_version": "2.1"
    })
    .try_into()
    .unwrap();
    e.context = json!({"browser": {"name": "Firefox"}, "location": {"city": "Lyon"}})
        .try_into()
        .unwrap();
    let mut d = PersonDelta::default();
    add_event(&mut d, &e);
    let person = applied(&d);
    let p = &person.properties;
    assert_eq!(p.get("plan"), Some(&json!("pro")));
    assert_eq!(p.get("signup"), Some(&json!("2026-01-01")));
    assert_eq!(p.get("$browser"), Some(&json!("Firefox")));
    assert_eq!(p.get("$initial_browser"), Some(&json!("Firefox")));
    assert_eq!(p.get("$city"), Some(&json!("Lyon")));
    assert_eq!(p.get("utm_source"), Some(&json!("newsletter")));
    assert_eq!(p.get("$initial_utm_source"), Some(&json!("newsletter")));
    assert_eq!(p.get("$app_version"), Some(&json!("2.1")));
    assert_eq!(d.events, 1);
    assert!(!d.identified);
}

#[test]
fn segment_identify_traits_and_context_fill_the_profile() {
    let mut e = event(Dialect::Segment, MessageType::Identify, "$identify", "u1");
    e.user_id = Some("u1".into());
    e.traits = json!({"email": "a@x.io", "plan": "team"})
        .try_into()
        .unwrap();
    e.context = json!({
        "app": {"version": "5.0"},
        "page": {"referrer": "https://www.Search.example/q?x=1"},
        "campaign": {"source": "ads", "name": "autumn"}
    })
    .try_into()
    .unwrap();
    let mut d = PersonDelta::default();
    add_event(&mut d, &e);
    let person = applied(&d);
    let p = &person.properties;
    assert_eq!(p.get("email"), Some(&json!("a@x.io")));
    assert_eq!(p.get("$app_version"), Some(&json!("5.0")));
    assert_eq!(
        p.get("$referring_domain"),
        Some(&json!("www.search.example"))
    );
    assert_eq!(p.get("utm_campaign"), Some(&json!("autumn")));
    assert!(d.identified);
}

/// Identity over a fresh store with one project.
async fn identity() -> (Identity, ProjectScope, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let store = appizer_storage::open_metadata_store(&url).await.unwrap();
    let (_, scope, _) =
        appizer_storage::testing::Tenant::create(store.as_ref(), ProjectId::new(), "UTC")
            .await
            .unwrap();
    (Identity::new(store, IdentityConfig::default()), scope, dir)
}

fn records(project: ProjectId, who: &[&str]) -> Vec<(u64, Option<Vec<Event>>)> {
    who.iter()
        .enumerate()
        .map(|(i, w)| {
            let mut e = event(Dialect::Segment, MessageType::Track, "x", w);
            e.project_id = project;
            e.user_id = Some(w.to_string());
            (i as u64, Some(vec![e]))
        })
        .collect()
}

#[tokio::test]
async fn updates_of_records_already_applied_are_not_gathered_again() {
    let (identity, scope, _dir) = identity().await;
    let project = scope.project();
    let mut batch = records(project, &["u1", "u2", "u1"]);
    identity.resolve(&mut batch, Some(1)).await.unwrap();
    let persons: Vec<PersonId> = batch
        .iter()
        .map(|(_, e)| e.as_ref().unwrap()[0].person_id.unwrap())
        .collect();
    // Only offset 2 is past the recorded offset: one event of one person.
    assert_eq!(identity.take_deltas(), 1);
    let count = |p: Option<Person>| p.unwrap().event_count;
    let u1 = identity.read_person(scope, persons[0], &[]).await.unwrap();
    let u2 = identity.read_person(scope, persons[1], &[]).await.unwrap();
    assert_eq!((count(u1), count(u2)), (1, 0));
    assert_eq!(persons[0], persons[2]);
    assert_ne!(persons[0], persons[1]);
    // A replay resolves to the same persons, from the store with a cold cache.
    identity.forget_project(project);
    let mut again = records(project, &["u1", "u2", "u1"]);
    identity.resolve(&mut again, None).await.unwrap();
    let replayed: Vec<PersonId> = again
        .iter()
        .map(|(_, e)| e.as_ref().unwrap()[0].person_id.unwrap())
        .collect();
    assert_eq!(replayed, persons);
}

#[tokio::test]
async fn reads_see_held_updates_once_before_and_after_they_are_applied() {
    let (identity, scope, _dir) = identity().await;
    let project = scope.project();
    let mut batch = records(project, &["u1", "u1"]);
    identity.resolve(&mut batch, None).await.unwrap();
    let person = batch[0].1.as_ref().unwrap()[0].person_id.unwrap();
    let count = |p: Option<Person>| p.unwrap().event_count;
    assert_eq!(
        count(identity.read_person(scope, person, &[]).await.unwrap()),
        2
    );
    assert_eq!(identity.take_deltas(), 1);
    assert_eq!(
        count(identity.read_person(scope, person, &[]).await.unwrap()),
        2
    );
    identity.apply(Some(Applied::unleased(1))).await.unwrap();
    assert_eq!(
        count(identity.read_person(scope, person, &[]).await.unwrap()),
        2
    );
    assert_eq!(identity.store().applied_offset(0).await.unwrap(), Some(1));
}

#[tokio::test]
async fn a_split_gives_back_what_the_merge_took_however_the_updates_were_timed() {
    // The source's event is still held at the merge; its update is applied before
    // the split, taken for a flush and applied after it, or still held at it.
    for applied in ["before the split", "across the split", "after the split"] {
        let (identity, scope, _dir) = identity().await;
        let project = scope.project();
        let mut batch = records(project, &["a", "b", "b"]);
        identity.resolve(&mut batch, None).await.unwrap();
        let person = |i: usize| batch[i].1.as_ref().unwrap()[0].person_id.unwrap();
        let (a, b) = (person(0), person(1));
        let count = |p: Option<Person>| p.unwrap().event_count;
        let merge = identity
            .merge(scope, a, b, MergeReason::Api, None, Utc::now(), None)
            .await
            .unwrap();
        assert_eq!(merge.source_snapshot.event_count, 1, "{applied}");
        let merged = identity.read_person(scope, b, &[a]).await.unwrap();
        assert_eq!(count(merged), 3, "{applied}");
        match applied {
            "before the split" => {
                identity.take_deltas();
                identity.apply(Some(Applied::unleased(2))).await.unwrap();
                identity
                    .split(scope, &merge, Utc::now(), None)
                    .await
                    .unwrap();
            }
            "across the split" => {
                identity.take_deltas();
                identity
                    .split(scope, &merge, Utc::now(), None)
                    .await
                    .unwrap();
                identity.apply(Some(Applied::unleased(2))).await.unwrap();
            }
            _ => {
                identity
                    .split(scope, &merge, Utc::now(), None)
                    .await
                    .unwrap();
                identity.take_deltas();
                identity.apply(Some(Applied::unleased(2))).await.unwrap();
            }
        }
        let store = identity.store();
        assert_eq!(count(store.get(scope, a).await.unwrap()), 1, "{applied}");
        assert_eq!(count(store.get(scope, b).await.unwrap()), 2, "{applied}");
    }
}

#[test]
fn referring_domains_are_hosts() {
    assert_eq!(referring_domain_of("https://a.b/c").as_deref(), Some("a.b"));
    assert_eq!(
        referring_domain_of("http://u:p@Host.io?x").as_deref(),
        Some("host.io")
    );
    assert_eq!(referring_domain_of("").as_deref(), None);
}
