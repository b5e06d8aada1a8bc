//! The JetStream queue's own tests; the contract of every backend is checked against a
//! live server by `tests/queue_conformance.rs`.

use async_nats::jetstream::stream;

use super::{committed_from, NatsConfig};

/// A stream state as the server answers it.
fn state(messages: u64, first_sequence: u64, last_sequence: u64) -> stream::State {
    serde_json::from_value(serde_json::json!({
        "messages": messages, "bytes": 0, "consumer_count": 0,
        "first_seq": first_sequence, "first_ts": "2026-12-01T00:00:00Z",
        "last_seq": last_sequence, "last_ts": "2026-12-01T00:00:00Z",
    }))
    .expect("a stream state")
}

#[test]
fn the_committed_offset_is_read_from_the_stream_state() {
    // Nothing ever written.
    assert_eq!(committed_from(&state(0, 0, 0)), 0);
    // Offsets 0..5 written, everything purged: all five processed.
    assert_eq!(committed_from(&state(0, 6, 5)), 5);
    // Offsets 3..5 left (sequences 4..6): 0..3 processed.
    assert_eq!(committed_from(&state(3, 4, 6)), 3);
}

#[test]
fn each_stream_has_its_own_subject() {
    let a = NatsConfig::new("nats://127.0.0.1:4222", "EVENTS_A");
    let b = NatsConfig::new("nats://127.0.0.1:4222", "EVENTS_B");
    assert_eq!(a.subject(), "appizer.queue.EVENTS_A");
    assert_ne!(a.subject(), b.subject());
    assert_eq!((a.replicas, a.max_disk_bytes), (1, 10 << 30));
}

#[test]
fn a_cluster_url_names_each_server() {
    let config = NatsConfig::new(
        "nats://10.0.0.7:4222, nats://u:p@10.0.0.8:4222,,tls://10.0.0.9:4222",
        "EVENTS",
    );
    assert_eq!(
        config.servers(),
        [
            "nats://10.0.0.7:4222",
            "nats://u:p@10.0.0.8:4222",
            "tls://10.0.0.9:4222"
        ]
    );
    let servers: Vec<async_nats::ServerAddr> = config
        .servers()
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(servers.len(), 3);
}
