//! Push delivery survives SIGKILL: the server (a child process) fans a message out to a
//! segment of 100,000 iOS devices through the APNs emulator and is killed mid-delivery.
//! After a restart every device has the message, and a device has it twice only if its
//! delivery was in flight at the kill (accepted by the emulator, not yet recorded in the
//! outbox); none has it three times.

mod common;

use std::time::{Duration, Instant};

use common::crash::{apns_emulator, audience, init, kill, serve, stop, BATCH, CONCURRENCY};
use serde_json::{json, Value};

const DEVICES: usize = 100_000;

#[test]
fn a_fan_out_killed_mid_delivery_reaches_every_device_once_but_for_those_in_flight() {
    let test_started = Instant::now();
    let data = init();
    let (admin_key, project) = (data.admin_key.clone(), data.project);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ((emulator, apns_url), segment) = runtime.block_on(async {
        let emulator = apns_emulator().await;
        (emulator, audience(&data, DEVICES).await)
    });

    eprintln!("audience ready after {:?}", test_started.elapsed());
    let (mut child, url) = serve(&data.path(), &apns_url);
    let http = reqwest::Client::new();
    let get = |url: String| {
        let (http, key) = (http.clone(), admin_key.clone());
        runtime.block_on(async move {
            let answer = http.get(url).bearer_auth(key).send().await.unwrap();
            answer.json::<Value>().await.unwrap()
        })
    };
    let sent: Value = runtime.block_on(async {
        http.post(format!("{url}/api/v1/projects/{project}/push/messages"))
            .bearer_auth(&admin_key)
            .json(&json!({"to": {"segment_id": segment},
                          "notification": {"title": "Crash", "body": "test"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(sent["devices"], DEVICES, "{sent}");
    let message_id = sent["message_id"].as_str().unwrap().to_string();
    eprintln!("queued after {:?}", test_started.elapsed());

    // Kill once a good part has been delivered.
    let started = Instant::now();
    while emulator.total() < DEVICES as u64 / 4 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "delivery is too slow"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("killing after {:?}", test_started.elapsed());
    kill(&mut child);
    // Requests the emulator had read before the kill are still being answered.
    std::thread::sleep(Duration::from_millis(500));
    let received_at_kill = emulator.counts().len();
    // What the outbox had recorded as sent when it was killed.
    let recorded_at_kill = runtime.block_on(async {
        let store = data.store().await;
        let scope = store.project_scope(project).await.unwrap().unwrap();
        let id = message_id.parse().unwrap();
        let counts = store.push().delivery_counts(scope, id).await.unwrap();
        store.close().await;
        counts.sent as usize
    });

    let (mut child, url) = serve(&data.path(), &apns_url);
    let status_url = format!("{url}/api/v1/projects/{project}/push/messages/{message_id}");
    let started = Instant::now();
    let status = loop {
        let status = get(status_url.clone());
        if status["counts"]["queued"] == 0 {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{status}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["counts"]["sent"], DEVICES, "{status}");
    let counts = emulator.counts();
    assert_eq!(counts.len(), DEVICES, "every device got the message");
    let twice = counts.values().filter(|n| **n == 2).count();
    assert!(counts.values().all(|n| *n <= 2), "none three times");
    // The deliveries sent twice are those accepted before the kill but not recorded
    // then: the ones in flight, bounded by what the loop takes and holds at a time.
    let in_flight = received_at_kill.saturating_sub(recorded_at_kill);
    assert!(
        twice <= in_flight,
        "{twice} twice, {in_flight} in flight at the kill"
    );
    assert!(
        in_flight <= BATCH + CONCURRENCY + 3 * 2000,
        "{in_flight} in flight is more than the loop holds"
    );
    eprintln!(
        "done after {:?}: killed after {received_at_kill} received, {recorded_at_kill} recorded; {twice} sent twice",
        test_started.elapsed()
    );
    stop(&mut child);
}
