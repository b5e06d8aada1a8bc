//! The dashboard in a real browser: Debian's Chromium driven by Playwright (PyPI), as a
//! person uses it. Known events are sent through the capture API; the script
//! (`browser/dashboard.py`) signs in and out, reads the trends table and chart data,
//! the funnel and retention, runs SQL, creates and sends a campaign, watches live events arrive and pause, finds the
//! VAPID key in the settings, checks what a viewer sees and
//! that the server refuses their forged request, ends a session from another browser,
//! asserts no console error on any screen, and saves a screenshot of each.

mod common;

use std::collections::BTreeMap;

use appizer::testing::{ADMIN_EMAIL, ADMIN_PASSWORD};
use chrono::{Duration, TimeZone, Utc};
use common::{run_python, test_env};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_uses_the_dashboard_in_chromium() {
    let (Some(python), Some(chromium)) = (
        test_env("APPIZER_TEST_PYTHON"),
        test_env("APPIZER_TEST_CHROMIUM"),
    ) else {
        return;
    };
    // A server whose push providers are the local emulators.
    let setup = common::push::start().await;
    setup.providers().await;
    let (server, api) = (&setup.server, &setup.api);
    let admin = &server.keys.admin_key.clone();
    let project = server.keys.project_id.to_string();

    // Ten persons visit over the three days before today; six of them then sign up,
    // on the pro or the free plan. The expected figures are counted from these events.
    let today = Utc::now().date_naive();
    let mut events = Vec::new();
    let mut signups_per_day = BTreeMap::<String, u64>::new();
    let mut signups_per_plan = BTreeMap::<String, u64>::new();
    let mut signed_up = BTreeMap::<String, Vec<String>>::new();
    let mut visits_per_day = BTreeMap::<String, u64>::new();
    for i in 0..10u32 {
        let day = today - Duration::days(1 + i64::from(i % 3));
        let at = |hour| Utc.from_utc_datetime(&day.and_hms_opt(hour, i, 0).unwrap());
        events.push(
            json!({"type": "track", "userId": format!("p{i}"), "event": "visit",
                           "timestamp": at(10).to_rfc3339()}),
        );
        *visits_per_day.entry(day.to_string()).or_default() += 1;
        if i < 6 {
            let plan = if i % 2 == 0 { "pro" } else { "free" };
            events.push(
                json!({"type": "track", "userId": format!("p{i}"), "event": "signup",
                               "properties": {"plan": plan}, "timestamp": at(11).to_rfc3339()}),
            );
            *signups_per_day.entry(day.to_string()).or_default() += 1;
            *signups_per_plan.entry(plan.to_string()).or_default() += 1;
            signed_up
                .entry(day.to_string())
                .or_default()
                .push(format!("p{i}"));
        }
    }
    let sent = api
        .send_batch(&server.keys.write_key, &json!({"batch": events}))
        .await;
    assert_eq!(sent.status(), StatusCode::OK);
    let trends = format!("/api/v1/projects/{project}/query/trends");
    let started = std::time::Instant::now();
    loop {
        let answer = api
            .post(
                &trends,
                admin,
                json!({"series": [{"event": "visit"}], "date_range": {"from": "-7d"}}),
            )
            .await;
        if answer.body["results"][0]["aggregated"] == 10.0 {
            break;
        }
        assert!(started.elapsed().as_secs() < 20, "{:#}", answer.body);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Web Push is set up, so the settings show the VAPID public key to copy; every
    // person has an iPhone, for the campaign the page creates.
    let webpush = api
        .get(
            &format!("/api/v1/projects/{project}/push/providers/webpush"),
            admin,
        )
        .await;
    assert_eq!(webpush.status, StatusCode::OK, "{:#}", webpush.body);
    for i in 0..10 {
        setup
            .register(common::push::ios(
                &format!("p{i}"),
                &format!("{:0>64x}", 0xda5b_0000_u64 + i),
            ))
            .await;
    }
    // An invitation for a viewer of the project, accepted in the browser.
    let invite = api
        .post(
            "/api/v1/invites",
            admin,
            json!({"email": "viewer@example.com", "name": "Vera Viewer",
                   "access": {"projects": {&project: "viewer"}}}),
        )
        .await;
    assert_eq!(invite.status, StatusCode::CREATED);

    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let expected: Value = json!({
        "base_url": server.base_url,
        "project": project,
        "write_key": server.keys.write_key,
        "email": ADMIN_EMAIL,
        "password": ADMIN_PASSWORD,
        "invite_link": invite.body["link"],
        "signups_per_day": signups_per_day,
        "signups_per_plan": signups_per_plan,
        "signed_up": signed_up,
        "funnel": {"visit": 10, "signup": 6},
        "visits_per_day": visits_per_day,
        "vapid_public_key": webpush.body["settings"]["public_key"],
        "chromium": chromium,
        "screenshots": shots,
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/dashboard.py");
    let out = tokio::task::spawn_blocking(move || {
        run_python(
            &python,
            &[script, &expected.to_string()],
            "the dashboard in Chromium",
        )
    })
    .await
    .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out));
    // The campaign the page created and scheduled reached the APNs emulator, once per
    // person.
    let apns = setup.emulator_get("/apns/notifications").await;
    assert_eq!(apns["total"], 10, "{apns:#}");
    setup.server.stop().await;
}
