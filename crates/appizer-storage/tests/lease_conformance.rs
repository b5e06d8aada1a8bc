//! One conformance suite for the partition leases, and the fence every partition write
//! goes under, on every metadata store backend (see `metadata_conformance.rs` for the
//! PostgreSQL set-up).

#[macro_use]
mod common;

use common::{postgres_store, sqlite_store};

mod cases {
    use std::time::Duration;

    use appizer_core::ProjectId;
    use appizer_storage::leases::Fence;
    use appizer_storage::metadata::EventFile;
    use appizer_storage::persons::Applied;
    use appizer_storage::{MetadataStore, StoreError};
    use chrono::{TimeZone, Utc};

    const TTL: Duration = Duration::from_secs(10);
    const T0: i64 = 1_800_000_000_000;

    fn file(partition: u32, name: &str) -> EventFile {
        let project = ProjectId::new();
        EventFile {
            path: format!("project={project}/date=2027-01-15/p{partition}-{name}.parquet"),
            project_id: project,
            date: "2027-01-15".into(),
            row_count: 1,
            byte_size: 1,
            min_timestamp: 0,
            max_timestamp: 0,
            partition,
            max_queue_offset: 3,
            created_at: Utc.timestamp_millis_opt(T0).unwrap(),
            persons_folded_at: None,
        }
    }

    pub async fn a_lease_has_one_holder_at_a_time_and_a_new_epoch_each(store: &dyn MetadataStore) {
        let leases = store.leases();
        leases.ensure_partitions(4).await.unwrap();
        let states = leases.leases().await.unwrap();
        assert_eq!(states.len(), 4);
        assert!(states.iter().all(|s| s.owner.is_none() && s.epoch == 0));

        let a = leases.acquire(2, "a", TTL, T0).await.unwrap().unwrap();
        assert_eq!((a.partition, a.epoch), (2, 1));
        assert!(
            leases
                .acquire(2, "b", TTL, T0 + 5_000)
                .await
                .unwrap()
                .is_none(),
            "held and running"
        );
        // Renewed, it runs on past its first expiry.
        let a = leases
            .renew(&a, "a", TTL, T0 + 8_000)
            .await
            .unwrap()
            .unwrap();
        assert!(leases
            .acquire(2, "b", TTL, T0 + 12_000)
            .await
            .unwrap()
            .is_none());
        // Not renewed, it expires and passes on under a new epoch.
        let b = leases
            .acquire(2, "b", TTL, T0 + 18_001)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.epoch, 2);
        assert!(
            leases
                .renew(&a, "a", TTL, T0 + 18_002)
                .await
                .unwrap()
                .is_none(),
            "the old holder cannot renew"
        );
        // The old holder's release leaves the new holder's lease alone.
        leases.release(&a, "a").await.unwrap();
        let state = &leases.leases().await.unwrap()[2];
        assert_eq!((state.owner.as_deref(), state.epoch), (Some("b"), 2));
        // A release frees it at once.
        leases.release(&b, "b").await.unwrap();
        let again = leases
            .acquire(2, "a", TTL, T0 + 18_003)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.epoch, 3);
        // Other partitions are their own.
        let other = leases.acquire(0, "b", TTL, T0).await.unwrap().unwrap();
        assert_eq!(other.epoch, 1);
    }

    pub async fn the_partition_count_is_fixed(store: &dyn MetadataStore) {
        let leases = store.leases();
        leases.ensure_partitions(4).await.unwrap();
        leases.ensure_partitions(4).await.unwrap();
        let e = leases.ensure_partitions(8).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::Conflict(m) if m.contains("4 partitions")),
            "{e:?}"
        );
        assert_eq!(leases.leases().await.unwrap().len(), 4);
    }

    pub async fn concurrent_takers_get_one_lease(store: &dyn MetadataStore) {
        let leases = store.leases();
        leases.ensure_partitions(1).await.unwrap();
        let takers = (0..12).map(|i| {
            let leases = leases.clone();
            async move { leases.acquire(0, &format!("w{i}"), TTL, T0).await.unwrap() }
        });
        let won: Vec<_> = futures_util::future::join_all(takers)
            .await
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(won.len(), 1, "{won:?}");
        assert_eq!(won[0].epoch, 1);
    }

    pub async fn writes_under_a_lost_lease_are_refused(store: &dyn MetadataStore) {
        let leases = store.leases();
        leases.ensure_partitions(2).await.unwrap();
        let old = leases.acquire(1, "a", TTL, T0).await.unwrap().unwrap();
        store
            .add_event_files(&[file(1, "first")], old.fence())
            .await
            .unwrap();
        store
            .persons()
            .apply_deltas(
                &[],
                Some(Applied {
                    fence: old.fence(),
                    offset: 7,
                }),
            )
            .await
            .unwrap();
        // Taken over after its expiry: the old holder's writes change nothing.
        let new = leases
            .acquire(1, "b", TTL, T0 + 60_000)
            .await
            .unwrap()
            .unwrap();
        let refused = store
            .add_event_files(&[file(1, "stale")], old.fence())
            .await
            .unwrap_err();
        assert!(matches!(refused, StoreError::Fenced(_)), "{refused:?}");
        let first = store.all_event_files().await.unwrap();
        assert_eq!(first.len(), 1);
        let refused = store
            .replace_event_files(&[], &[first[0].path.clone()], old.fence())
            .await
            .unwrap_err();
        assert!(matches!(refused, StoreError::Fenced(_)), "{refused:?}");
        let refused = store
            .persons()
            .apply_deltas(
                &[],
                Some(Applied {
                    fence: old.fence(),
                    offset: 9,
                }),
            )
            .await
            .unwrap_err();
        assert!(matches!(refused, StoreError::Fenced(_)), "{refused:?}");
        assert_eq!(store.persons().applied_offset(1).await.unwrap(), Some(7));
        // The new holder writes; a file of another partition is refused under its fence.
        store
            .add_event_files(&[file(1, "second")], new.fence())
            .await
            .unwrap();
        assert!(matches!(
            store.add_event_files(&[file(0, "x")], new.fence()).await,
            Err(StoreError::Conflict(_))
        ));
        let files = store.all_event_files().await.unwrap();
        assert_eq!(files.len(), 2);
        assert!(files.iter().all(|f| f.partition == 1));
        // Offsets are kept per partition; an unleased writer is never refused.
        store
            .persons()
            .apply_deltas(&[], Some(Applied::unleased(3)))
            .await
            .unwrap();
        assert_eq!(store.persons().applied_offset(0).await.unwrap(), Some(3));
        assert_eq!(store.persons().applied_offset(1).await.unwrap(), Some(7));
        store
            .add_event_files(&[file(0, "free")], Fence::unleased(0))
            .await
            .unwrap();
    }

    pub async fn heartbeats_list_the_workers_alive(store: &dyn MetadataStore) {
        let leases = store.leases();
        assert_eq!(leases.heartbeat("b", TTL, T0).await.unwrap(), ["b"]);
        assert_eq!(
            leases.heartbeat("a", TTL, T0 + 1_000).await.unwrap(),
            ["a", "b"]
        );
        // `b` falls silent; `a` goes on.
        assert_eq!(
            leases.heartbeat("a", TTL, T0 + 10_500).await.unwrap(),
            ["a"]
        );
        leases.heartbeat("c", TTL, T0 + 10_600).await.unwrap();
        leases.leave("c").await.unwrap();
        assert_eq!(
            leases.heartbeat("a", TTL, T0 + 10_700).await.unwrap(),
            ["a"]
        );
    }
}

all_backends!(
    a_lease_has_one_holder_at_a_time_and_a_new_epoch_each,
    the_partition_count_is_fixed,
    concurrent_takers_get_one_lease,
    writes_under_a_lost_lease_are_refused,
    heartbeats_list_the_workers_alive,
);
