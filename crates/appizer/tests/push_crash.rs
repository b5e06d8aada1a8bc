//! Push delivery survives SIGKILL: the server (a child process) fans a message out to a
//! segment of 100,000 iOS devices through the APNs emulator and is killed mid-delivery.
//! After a restart every device has the message, and a device has it twice only if its
//! delivery was in flight at the kill (accepted by the emulator, not yet recorded in the
//! outbox); none has it three times.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use appizer_core::definition::{Definition, DefinitionKind};
use appizer_core::push::{NewDevice, Platform};
use appizer_core::tenancy::{Actor, NewAuditEntry};
use appizer_core::{DefinitionId, PersonId, ProjectId};
use appizer_push::credentials::{self, ApnsCredentials, MasterKey};
use appizer_push::emulator::apns::ApnsEmulator;
use appizer_push::emulator::{serve_router, ServeOptions};
use appizer_storage::persons::NewPerson;
use appizer_storage::{open_metadata_store, MetadataStore, ProjectScope};
use chrono::Utc;
use common::appizer;
use serde_json::{json, Value};

const DEVICES: usize = 100_000;
const P8: &str = include_str!("../../appizer-push/testdata/apns-test-key.p8");
/// The server's delivery settings: in flight per provider, and taken at a time.
const CONCURRENCY: usize = 200;
const BATCH: usize = 500;

fn serve(data: &Path, apns_url: &str) -> (Child, String) {
    let mut child = appizer()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("APPIZER_PUSH__APNS_URL", apns_url)
        .env("APPIZER_PUSH__CONCURRENCY", CONCURRENCY.to_string())
        .env("APPIZER_PUSH__BATCH_SIZE", BATCH.to_string())
        .env("APPIZER_PUSH__RETRY_MIN_MS", "100")
        .env("APPIZER_PUSH__RETRY_MAX_MS", "1000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(rest) = line.strip_prefix("Appizer is listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

fn token(i: usize) -> String {
    format!("{i:064x}")
}

/// 100,000 persons with an iPhone each, all in one static segment, and the project's
/// APNs credentials: written straight into the data directory's store.
async fn audience(store: &dyn MetadataStore, scope: ProjectScope, data: &Path) -> DefinitionId {
    let now = Utc::now();
    let mut members = Vec::with_capacity(DEVICES);
    for chunk in (0..DEVICES).collect::<Vec<_>>().chunks(1000) {
        let persons: Vec<NewPerson> = chunk
            .iter()
            .map(|i| NewPerson {
                distinct_id: format!("u{i}"),
                person_id: PersonId::new(),
                is_identified: true,
                at: now,
            })
            .collect();
        members.extend(persons.iter().map(|p| p.person_id));
        store.persons().create(scope, &persons).await.unwrap();
        let devices: Vec<NewDevice> = chunk
            .iter()
            .map(|i| NewDevice {
                platform: Platform::Ios,
                address: token(*i),
                web_keys: None,
                distinct_id: format!("u{i}"),
                app_id: None,
                locale: None,
                timezone: None,
                at: now,
            })
            .collect();
        store.push().import_devices(scope, &devices).await.unwrap();
    }
    let audit = |action: &str| NewAuditEntry {
        organization_id: scope.organization(),
        project_id: Some(scope.project()),
        actor: Actor::Cli,
        action: action.into(),
        target_type: "test".into(),
        target_id: "crash".into(),
        details: json!({}),
        request_id: None,
        at: now,
    };
    let segment = Definition {
        id: DefinitionId::new(),
        project_id: scope.project(),
        kind: DefinitionKind::Segment,
        name: "Everyone".into(),
        description: String::new(),
        body: json!({"kind": "static"}),
        member_count: None,
        computed_at: None,
        created_at: now,
        updated_at: now,
    };
    store
        .create_definition(scope, &segment, &audit("segment.create"))
        .await
        .unwrap();
    members.sort();
    store
        .replace_segment_members(scope, segment.id, &members, now)
        .await
        .unwrap();
    let master = MasterKey::load_or_create(data).unwrap();
    let record = credentials::apns(
        ApnsCredentials {
            team_id: "ABCDE12345".into(),
            key_id: "KEY1234567".into(),
            private_key: P8.into(),
            topic: "com.example.app".into(),
            environment: "production".into(),
        },
        &master,
        scope.project(),
        now,
    )
    .unwrap();
    store
        .push()
        .put_provider(scope, &record, &audit("push_provider.put"))
        .await
        .unwrap();
    segment.id
}

#[test]
fn a_fan_out_killed_mid_delivery_reaches_every_device_once_but_for_those_in_flight() {
    let test_started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let init = appizer()
        .args(["init", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(init.status.success());
    let keys: Value = serde_json::from_slice(&init.stdout).unwrap();
    let admin_key = keys["admin_key"].as_str().unwrap().to_string();
    let project: ProjectId = keys["project_id"].as_str().unwrap().parse().unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let emulator = ApnsEmulator::new();
    let (apns_url, segment) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let options = ServeOptions {
            max_streams: Some(100),
        };
        tokio::spawn(serve_router(
            listener,
            emulator.router(),
            options,
            std::future::pending(),
        ));
        let http = reqwest::Client::new();
        let added = http
            .post(format!("{url}/apns/keys"))
            .json(&json!({"team_id": "ABCDE12345", "key_id": "KEY1234567",
                          "private_key": P8, "topics": ["com.example.app"]}))
            .send()
            .await
            .unwrap();
        assert!(added.status().is_success());
        let store =
            open_metadata_store(&format!("sqlite://{}", data.join("metadata.db").display()))
                .await
                .unwrap();
        let scope = store.project_scope(project).await.unwrap().unwrap();
        let segment = audience(store.as_ref(), scope, &data).await;
        store.close().await;
        (url, segment)
    });

    eprintln!("audience ready after {:?}", test_started.elapsed());
    let (mut child, url) = serve(&data, &apns_url);
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
    let killed = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let _ = child.wait();
    // Requests the emulator had read before the kill are still being answered.
    std::thread::sleep(Duration::from_millis(500));
    let received_at_kill = emulator.counts().len();
    // What the outbox had recorded as sent when it was killed.
    let recorded_at_kill = runtime.block_on(async {
        let store =
            open_metadata_store(&format!("sqlite://{}", data.join("metadata.db").display()))
                .await
                .unwrap();
        let scope = store.project_scope(project).await.unwrap().unwrap();
        let id = message_id.parse().unwrap();
        let counts = store.push().delivery_counts(scope, id).await.unwrap();
        store.close().await;
        counts.sent as usize
    });

    let (mut child, url) = serve(&data, &apns_url);
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
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
