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
        ["admin_key", "organization_id", "project_id", "write_key"]
    );
    assert!(json["admin_key"].as_str().unwrap().starts_with("apz_sk_"));
    assert!(json["write_key"].as_str().unwrap().starts_with("apz_wk_"));
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
    let url = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(key) = line.trim().strip_prefix("admin key") {
            admin_key = Some(key.split_whitespace().next().unwrap().to_string());
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
