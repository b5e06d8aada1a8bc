//! The `appizer` binary as a user runs it: `init`, `init --json`, `config default`,
//! config errors, and `serve` on a fresh data dir (first start prints keys; SIGTERM
//! stops it cleanly).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use appizer_core::config::Config;
use common::appizer;

mod common;

#[test]
fn init_json_prints_one_object_and_a_second_init_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = appizer()
        .args(["init", "--json", "--data-dir"])
        .arg(&data)
        .env_remove("APPIZER_ADMIN_PASSWORD")
        .env_remove("APPIZER_ADMIN_EMAIL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(stdout.trim()).expect("exactly one JSON object");
    let fields: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        fields,
        [
            "admin_email",
            "admin_key",
            "admin_password",
            "organization_id",
            "project_id",
            "write_key"
        ]
    );
    assert!(json["admin_key"].as_str().unwrap().starts_with("apz_sk_"));
    assert!(json["write_key"].as_str().unwrap().starts_with("apz_wk_"));
    assert_eq!(json["admin_email"], "admin@localhost");
    assert_eq!(json["admin_password"].as_str().unwrap().len(), 20);
    let db = data.join("metadata.db");
    assert!(db.exists());
    // Everything is in the database file: the log is gone or, when SQLite had not yet
    // removed it as the last connection closed, empty.
    let wal = std::fs::metadata(data.join("metadata.db-wal")).map_or(0, |m| m.len());
    assert_eq!(
        wal, 0,
        "init leaves one complete database file, its log checkpointed"
    );
    let before = std::fs::read(&db).unwrap();

    let again = appizer()
        .args(["init", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(again.stdout.is_empty(), "no second set of keys");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already initialised"), "{stderr}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the database is unchanged"
    );
}

#[test]
fn init_takes_the_first_admins_email_and_password_and_refuses_a_short_one() {
    let dir = tempfile::tempdir().unwrap();
    let short = appizer()
        .args([
            "init",
            "--json",
            "--admin-email",
            "Ops@Example.com",
            "--data-dir",
        ])
        .arg(dir.path().join("a"))
        .env("APPIZER_ADMIN_PASSWORD", "short")
        .output()
        .unwrap();
    assert!(!short.status.success());
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert!(stderr.contains("APPIZER_ADMIN_PASSWORD"), "{stderr}");
    assert!(!dir.path().join("a").join("metadata.db").exists() || short.stdout.is_empty());

    let given = appizer()
        .args([
            "init",
            "--json",
            "--admin-email",
            "Ops@Example.com",
            "--data-dir",
        ])
        .arg(dir.path().join("b"))
        .env("APPIZER_ADMIN_PASSWORD", "a long enough password")
        .output()
        .unwrap();
    assert!(
        given.status.success(),
        "{}",
        String::from_utf8_lossy(&given.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&given.stdout).unwrap();
    assert_eq!(json["admin_email"], "ops@example.com");
    assert!(
        json.get("admin_password").is_none(),
        "a given password is not printed"
    );
}

#[test]
fn config_default_prints_a_config_that_parses_to_the_defaults() {
    let out = appizer().args(["config", "default"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("# "), "commented");
    assert_eq!(Config::from_toml_str(&text).unwrap(), Config::default());
}

#[test]
fn an_unknown_config_key_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("appizer.toml");
    std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:0\"\nlisen = 1\n").unwrap();
    let out = appizer()
        .args(["serve", "--config"])
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.lisen"), "{stderr}");

    let out = appizer()
        .args(["init", "--data-dir"])
        .arg(dir.path().join("d"))
        .env("APPIZER_RATE_LIMIT__API_BRUST", "5")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("api_brust"), "{stderr}");
}

#[test]
fn serve_on_a_fresh_dir_prints_usable_keys_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = appizer()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut admin_key = None;
    let (mut email, mut password, mut dashboard) = (None, None, None);
    let url = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        let first_word = |rest: &str| rest.split_whitespace().next().map(str::to_string);
        if let Some(key) = line.trim().strip_prefix("admin key") {
            admin_key = first_word(key);
        }
        if let Some(rest) = line.trim().strip_prefix("email ") {
            email = first_word(rest);
        }
        if let Some(rest) = line.trim().strip_prefix("password ") {
            password = first_word(rest);
        }
        if let Some(rest) = line.strip_prefix("Sign in to the dashboard at ") {
            dashboard = first_word(rest);
        }
        if let Some(rest) = line.strip_prefix("Appizer is listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let admin_key = admin_key.expect("first start prints the admin key");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let health = http.get(format!("{url}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let projects = http
            .get(format!("{url}/api/v1/projects"))
            .bearer_auth(&admin_key)
            .send()
            .await
            .unwrap();
        assert_eq!(projects.status(), 200, "the printed admin key works");
        assert_eq!(
            dashboard,
            Some(format!("{url}/")),
            "the printed address is served"
        );
        let signed_in = http
            .post(format!("{url}/api/v1/session"))
            .json(&serde_json::json!({"email": email.unwrap(), "password": password.unwrap()}))
            .send()
            .await
            .unwrap();
        assert_eq!(signed_in.status(), 200, "the printed password signs in");
        assert!(signed_in.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("appizer_session=apz_ss_"));
    });

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit: {status:?}");
}

#[tokio::test]
async fn push_emulator_serves_web_push_and_fcm() {
    let mut child = appizer()
        .args(["push-emulator", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(|w| w.trim_end_matches(':').to_string())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let http = reqwest::Client::new();
    let made: serde_json::Value = http
        .post(format!("{base}/webpush/subscriptions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(made["endpoint"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{base}/webpush/push/")));
    assert_eq!(made["keys"]["auth"].as_str().unwrap().len(), 22);
    let listed: serde_json::Value = http
        .get(format!("{base}/webpush/messages"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["messages"], serde_json::json!([]));
    let fcm = http
        .get(format!("{base}/fcm/messages"))
        .send()
        .await
        .unwrap();
    assert_eq!(fcm.status(), 200);
    child.kill().unwrap();
    let _ = child.wait();
}

/// Provider secrets and the master key never reach the log, even at debug level, while
/// credentials are set (one refused) and used to deliver.
#[tokio::test]
async fn provider_secrets_never_reach_the_log() {
    use serde_json::{json, Value};
    const P8: &str = include_str!("../../appizer-push/testdata/apns-test-key.p8");
    const RSA: &str = include_str!("../../appizer-push/testdata/service-account-test-key.pem");
    let master = "5a".repeat(32);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let init = appizer()
        .args(["init", "--json", "--data-dir"])
        .arg(&data)
        .env("APPIZER_PUSH__MASTER_KEY", &master)
        .output()
        .unwrap();
    let keys: Value = serde_json::from_slice(&init.stdout).unwrap();
    let admin = keys["admin_key"].as_str().unwrap().to_string();
    let write = keys["write_key"].as_str().unwrap().to_string();
    let project = keys["project_id"].as_str().unwrap().to_string();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let emulator = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(appizer_push::emulator::serve(
        listener,
        Default::default(),
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    http.post(format!("{emulator}/apns/keys"))
        .json(
            &json!({"team_id": "ABCDE12345", "key_id": "KEY1234567", "private_key": P8,
                      "topics": ["com.example.app"]}),
        )
        .send()
        .await
        .unwrap();
    let account: Value = http
        .post(format!("{emulator}/fcm/service-accounts"))
        .json(
            &json!({"type": "service_account", "project_id": "demo-app", "private_key": RSA,
                      "client_email": "push@demo-app.iam.gserviceaccount.com",
                      "token_uri": "https://oauth2.googleapis.com/token"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let mut child = appizer()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("APPIZER_PUSH__MASTER_KEY", &master)
        .env("APPIZER_PUSH__APNS_URL", &emulator)
        .env("APPIZER_PUSH__FCM_URL", format!("{emulator}/fcm"))
        .env("APPIZER_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text).unwrap();
        text
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.strip_prefix("Appizer is listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let stdout =
        std::thread::spawn(move || lines.map(|l| l.unwrap_or_default()).collect::<Vec<_>>());
    let base = format!("{url}/api/v1/projects/{project}");
    let put = |provider: &str, body: Value| {
        let request = http
            .put(format!("{base}/push/providers/{provider}"))
            .bearer_auth(&admin)
            .json(&body);
        async move { request.send().await.unwrap().status() }
    };
    let apns = json!({"team_id": "ABCDE12345", "key_id": "KEY1234567", "private_key": P8,
                      "topic": "com.example.app", "environment": "production"});
    assert_eq!(put("apns", apns).await, 200);
    assert_eq!(put("fcm", json!({ "service_account": account })).await, 200);
    let refused = json!({"team_id": "ABCDE12345", "key_id": "KEY1234567", "private_key": RSA,
                         "topic": "com.example.app", "environment": "production"});
    assert_eq!(put("apns", refused).await, 400);
    for device in [
        json!({"distinct_id": "u1", "platform": "ios", "token": "ab".repeat(32)}),
        json!({"distinct_id": "u1", "platform": "android", "token": "fcm-token"}),
    ] {
        let status = http
            .post(format!("{url}/v1/push/devices"))
            .bearer_auth(&write)
            .json(&device)
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success());
    }
    let sent: Value = http
        .post(format!("{base}/push/messages"))
        .bearer_auth(&admin)
        .json(&json!({"to": {"distinct_ids": ["u1"]}, "notification": {"title": "t", "body": "b"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = sent["message_id"].as_str().unwrap();
    let started = std::time::Instant::now();
    loop {
        let status: Value = http
            .get(format!("{base}/push/messages/{id}"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["counts"]["sent"] == 2 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let log = log.join().unwrap();
    let printed = stdout.join().unwrap().join("\n");
    assert!(
        log.contains("DEBUG") || log.contains("debug"),
        "the log was at debug level"
    );
    for text in [&log, &printed] {
        for secret in [
            master.as_str(),
            P8.lines().nth(1).unwrap(),
            RSA.lines().nth(5).unwrap(),
            "PRIVATE KEY",
        ] {
            assert!(!text.contains(secret), "a secret in the output: {secret}");
        }
    }
}
