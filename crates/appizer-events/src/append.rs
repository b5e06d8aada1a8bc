//! Events into the queue: each to its partition ([`Partitions::of`]: by project and
//! distinct id), as records of at most the queue's record size. Every producer (the
//! capture routes, push delivery outcomes, campaign assignments) appends through
//! [`append_events`], so one person's events land in one partition whatever sends them.

use appizer_core::event::Event;
use appizer_storage::queue::{Partitions, QueueError};
use futures_util::future::try_join_all;

use crate::record::encode_records;

/// Appends `events`, each to its partition, and returns once every record is durable.
/// The events of one partition go in their order, one record after the other;
/// partitions are written side by side. On an error some records may have landed: a
/// retry of the whole is harmless, as the workers drop events by message id.
pub async fn append_events(queue: &Partitions, events: &[Event]) -> Result<(), QueueError> {
    if events.is_empty() {
        return Ok(());
    }
    let max_bytes = queue.max_record_bytes();
    if queue.count() == 1 {
        return append_in_order(queue, 0, events, max_bytes).await;
    }
    let mut by_partition: std::collections::BTreeMap<u32, Vec<Event>> = Default::default();
    for event in events {
        by_partition
            .entry(queue.of(event.project_id, &event.distinct_id))
            .or_default()
            .push(event.clone());
    }
    try_join_all(
        by_partition
            .iter()
            .map(|(partition, events)| append_in_order(queue, *partition, events, max_bytes)),
    )
    .await?;
    Ok(())
}

async fn append_in_order(
    queue: &Partitions,
    partition: u32,
    events: &[Event],
    max_bytes: usize,
) -> Result<(), QueueError> {
    let target = queue.get(partition);
    for record in encode_records(events, max_bytes) {
        target.append(record).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use appizer_core::event::MessageType;
    use appizer_core::ProjectId;
    use appizer_storage::queue::{DurableLog, EventQueue, LogConfig};

    use super::*;
    use crate::record::decode_record;

    fn event(project: ProjectId, distinct_id: &str, n: usize) -> Event {
        Event {
            message_id: format!("{distinct_id}-{n}"),
            ..Event::new(
                project,
                MessageType::Track,
                "viewed",
                distinct_id,
                chrono::Utc::now(),
            )
        }
    }

    #[tokio::test]
    async fn each_person_lands_in_one_partition_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let logs: Vec<Arc<dyn EventQueue>> = (0..4)
            .map(|k| {
                Arc::new(DurableLog::open(LogConfig::new(dir.path().join(k.to_string()))).unwrap())
                    as Arc<dyn EventQueue>
            })
            .collect();
        let queue = Partitions::new(logs);
        let project = ProjectId::new();
        let people: Vec<String> = (0..20).map(|i| format!("person-{i}")).collect();
        let events: Vec<Event> = (0..5)
            .flat_map(|n| people.iter().map(move |p| event(project, p, n)))
            .collect();
        append_events(&queue, &events).await.unwrap();
        let mut used = std::collections::BTreeSet::new();
        let mut total = 0;
        for k in 0..4 {
            let mut reader = queue.get(k).reader(0).unwrap();
            let records = reader
                .next_batch(100, std::time::Duration::from_millis(100))
                .await
                .unwrap();
            for record in records {
                let got = decode_record(&record.payload).unwrap();
                for (i, e) in got.iter().enumerate() {
                    assert_eq!(queue.of(project, &e.distinct_id), k);
                    used.insert(k);
                    total += 1;
                    // A person's events in the order sent.
                    let later = got[i + 1..].iter().find(|l| l.distinct_id == e.distinct_id);
                    if let Some(later) = later {
                        assert!(later.message_id > e.message_id);
                    }
                }
            }
        }
        assert_eq!(total, 100);
        assert!(used.len() > 1, "twenty persons use more than one partition");
    }
}
