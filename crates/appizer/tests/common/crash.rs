//! The push crash tests' setting: a server run as a child process (so it can be killed
//! with SIGKILL) on a data directory whose persons, devices, segment and APNs
//! credentials are written straight into its store, and the APNs emulator on a
//! loopback port.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use appizer_core::definition::{Definition, DefinitionKind};
use appizer_core::push::{NewDevice, Platform};
use appizer_core::tenancy::{Actor, NewAuditEntry};
use appizer_core::{DefinitionId, PersonId, ProjectId};
use appizer_push::credentials::{self, ApnsCredentials, MasterKey};
use appizer_push::emulator::apns::ApnsEmulator;
use appizer_push::emulator::{serve_router, ServeOptions};
use appizer_storage::persons::NewPerson;
use appizer_storage::{open_metadata_store, MetadataStore};
use chrono::Utc;
use serde_json::{json, Value};

use super::appizer;
use super::push::P8;

/// The server's delivery settings: in flight per provider, and taken at a time.
pub const CONCURRENCY: usize = 200;
pub const BATCH: usize = 500;

/// An initialised data directory, its admin key and project.
pub struct Data {
    pub dir: tempfile::TempDir,
    pub admin_key: String,
    pub write_key: String,
    pub project: ProjectId,
}

impl Data {
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    pub fn store_url(&self) -> String {
        format!("sqlite://{}", self.path().join("metadata.db").display())
    }

    /// Opens the data directory's store (the server may be down or running).
    pub async fn store(&self) -> std::sync::Arc<dyn MetadataStore> {
        open_metadata_store(&self.store_url()).await.unwrap()
    }
}

/// `appizer init` on a new temporary directory.
pub fn init() -> Data {
    let dir = tempfile::tempdir().unwrap();
    let init = appizer()
        .args(["init", "--json", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(init.status.success());
    let keys: Value = serde_json::from_slice(&init.stdout).unwrap();
    Data {
        dir,
        admin_key: keys["admin_key"].as_str().unwrap().to_string(),
        write_key: keys["write_key"].as_str().unwrap().to_string(),
        project: keys["project_id"].as_str().unwrap().parse().unwrap(),
    }
}

/// The APNs emulator on a loopback port, knowing the test key: its state and URL.
pub async fn apns_emulator() -> (ApnsEmulator, String) {
    let emulator = ApnsEmulator::new();
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
    let added = reqwest::Client::new()
        .post(format!("{url}/apns/keys"))
        .json(&json!({"team_id": "ABCDE12345", "key_id": "KEY1234567",
                      "private_key": P8, "topics": ["com.example.app"]}))
        .send()
        .await
        .unwrap();
    assert!(added.status().is_success());
    (emulator, url)
}

/// `appizer serve` on `data` with APNs at `apns_url`: the child and its base URL.
pub fn serve(data: &Path, apns_url: &str) -> (Child, String) {
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

/// SIGKILL, then waits for the child to be gone.
pub fn kill(child: &mut Child) {
    let killed = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let _ = child.wait();
}

/// SIGTERM, then waits for the child to be gone.
pub fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Device `i`'s APNs token.
pub fn token(i: usize) -> String {
    format!("{i:064x}")
}

/// `n` persons `u0`… with an iPhone each (token [`token`]`(i)`), all in one static
/// segment, and the project's APNs credentials: written straight into the store.
pub async fn audience(data: &Data, n: usize) -> DefinitionId {
    let store = data.store().await;
    let scope = store.project_scope(data.project).await.unwrap().unwrap();
    let now = Utc::now();
    let mut members = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
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
    let master = MasterKey::load_or_create(&data.path()).unwrap();
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
    store.close().await;
    segment.id
}
