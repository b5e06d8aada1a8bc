//! The campaigns benchmark. The APNs emulator and the server run as child processes
//! (as in the push benchmark) on a store filled beforehand: persons with one iPhone
//! each, in a static segment.
//!
//! (a) trigger to send: a triggered campaign with no delay; single `track` events of
//!     the trigger, one at a time, each timed from its 200 to the emulator's accepting
//!     the notification for that person's device (polled every 5 ms): p50 and p95;
//! (b) audience enqueue: a campaign to the segment (two variants with a person
//!     template, a 10 % control), timed from `schedule` until its run has assigned
//!     every person and queued a delivery for each variant person, with the server's
//!     memory; the campaign is throttled to one message a minute, so the deliveries'
//!     sending does not run alongside the enqueue being measured (the throttle only
//!     spaces due times). Cancelled afterwards;
//! (c) the baseline, in the same run: the send API's fan-out of one message to the same
//!     segment (one `INSERT ... SELECT`, no per-person work), timed to its 202.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use appizer_core::push::Platform;
use appizer_core::ProjectId;
use appizer_storage::open_metadata_store;
use serde_json::{json, Value};

use crate::ingest::{anon_rss_bytes, appizer_binary, rss_bytes, spawn_serve_with};
use crate::push::{apns_token, audience, emulator_setup, providers, start_emulator};
use crate::stats::Samples;

#[derive(clap::Args)]
pub struct Options {
    /// Persons of the audience (the target run uses 1000000).
    #[arg(long, default_value_t = 1_000_000)]
    persons: usize,
    /// Trigger events timed in (a).
    #[arg(long, default_value_t = 200)]
    triggers: usize,
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    key: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut request = http.request(method, &url).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await?;
    let status = answer.status();
    let text = answer.text().await?;
    if !status.is_success() {
        bail!("{url} answered {status}: {text}");
    }
    Ok(if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)?
    })
}

pub fn run(o: Options) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let emulator = start_emulator(1000)?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let binary = appizer_binary()?;
    let init = std::process::Command::new(&binary)
        .args(["init", "--json", "--data-dir"])
        .arg(&data)
        .output()?;
    if !init.status.success() {
        bail!("init failed: {}", String::from_utf8_lossy(&init.stderr));
    }
    let keys: Value = serde_json::from_slice(&init.stdout)?;
    let text = |k: &str| keys[k].as_str().unwrap_or_default().to_string();
    let project: ProjectId = text("project_id").parse()?;
    let (admin, write_key) = (text("admin_key"), text("write_key"));
    println!(
        "campaigns benchmark: {} persons with an iPhone each, {} timed triggers",
        o.persons, o.triggers
    );
    let http = reqwest::Client::new();
    let segment = runtime.block_on(async {
        let (account, _) = emulator_setup(&http, &emulator.url, 0).await?;
        let started = Instant::now();
        let store =
            open_metadata_store(&format!("sqlite://{}", data.join("metadata.db").display()))
                .await?;
        let scope = store
            .project_scope(project)
            .await?
            .context("the project init made")?;
        let master = appizer_push::credentials::MasterKey::load_or_create(&data)?;
        providers(store.as_ref(), scope, &master, &account).await?;
        let segment = audience(store.as_ref(), scope, Platform::Ios, o.persons, |i| {
            (apns_token(i), None)
        })
        .await?;
        store.close().await;
        println!("store filled in {:.1} s", started.elapsed().as_secs_f64());
        anyhow::Ok(segment)
    })?;
    let (child, url) = spawn_serve_with(
        &binary,
        &data,
        &[("APPIZER_PUSH__APNS_URL", emulator.url.clone())],
    )?;
    let pid = child.0.id();
    let base = format!("{url}/api/v1/projects/{project}");
    runtime.block_on(async {
        use reqwest::Method;
        // (a) trigger to send.
        let triggered = call(
            &http,
            Method::POST,
            format!("{base}/campaigns"),
            &admin,
            Some(json!({
                "name": "bench trigger", "audience": {"platforms": ["ios"]},
                "when": {"type": "triggered", "event": "bench_trigger", "reentry": {"type": "always"}},
                "variants": [{"name": "A", "title": "Hi {{ person.name | default(\"there\") }}", "body": "b"}]
            })),
        )
        .await?;
        let id = triggered["id"].as_str().unwrap_or_default().to_string();
        call(&http, Method::POST, format!("{base}/campaigns/{id}/schedule"), &admin, None).await?;
        // Armed at the runner's next pass after it is running.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut latencies = Vec::with_capacity(o.triggers);
        for i in 0..o.triggers {
            let token = apns_token(i);
            let sent = Instant::now();
            let answer = http
                .post(format!("{url}/v1/track"))
                .basic_auth(&write_key, Some(""))
                .json(&json!({"userId": format!("ios-{i}"), "event": "bench_trigger"}))
                .send()
                .await?;
            if !answer.status().is_success() {
                bail!("track answered {}", answer.status());
            }
            let acked = Instant::now();
            loop {
                let seen: Value = http
                    .get(format!("{}/apns/notifications", emulator.url))
                    .send()
                    .await?
                    .json()
                    .await?;
                if seen["per_token"][&token].as_u64().unwrap_or(0) > 0 {
                    latencies.push(acked.elapsed());
                    break;
                }
                if sent.elapsed() > Duration::from_secs(30) {
                    bail!("trigger {i} not sent within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        call(&http, Method::POST, format!("{base}/campaigns/{id}/cancel"), &admin, None).await?;
        let s = Samples::new(latencies);
        println!(
            "(a) trigger to send: p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms ({} triggers, from the 200 of /v1/track to the emulator's acceptance)",
            s.percentile(50.0).as_secs_f64() * 1e3,
            s.percentile(95.0).as_secs_f64() * 1e3,
            s.percentile(100.0).as_secs_f64() * 1e3,
            s.len()
        );

        // (b) audience enqueue.
        let rss_before = rss_bytes(pid).unwrap_or(0);
        let anon_before = anon_rss_bytes(pid).unwrap_or(0);
        let mut anon_peak = anon_before;
        let mut rss_peak = rss_before;
        let created = call(
            &http,
            Method::POST,
            format!("{base}/campaigns"),
            &admin,
            Some(json!({
                "name": "bench audience", "when": {"type": "now"},
                "audience": {"segments": [segment]},
                "variants": [
                    {"name": "A", "title": "Hi {{ person.name | default(\"there\") }}", "body": "Spring sale"},
                    {"name": "B", "title": "Spring sale", "body": "20% off for {{ person.name | default(\"you\") }}"}],
                "control_percent": 10,
                "pacing": {"per_minute": 1}
            })),
        )
        .await?;
        let id = created["id"].as_str().unwrap_or_default().to_string();
        let started = Instant::now();
        call(&http, Method::POST, format!("{base}/campaigns/{id}/schedule"), &admin, None).await?;
        let run = loop {
            rss_peak = rss_peak.max(rss_bytes(pid).unwrap_or(0));
            anon_peak = anon_peak.max(anon_rss_bytes(pid).unwrap_or(0));
            let c = call(&http, Method::GET, format!("{base}/campaigns/{id}"), &admin, None).await?;
            let run = &c["runs"][0];
            if run["assigned"].as_u64() == Some(o.persons as u64) {
                break run.clone();
            }
            if started.elapsed() > Duration::from_secs(1800) {
                bail!("not enqueued within 30 min: {c}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let enqueue = started.elapsed().as_secs_f64();
        let mb = |b: u64| b as f64 / 1e6;
        println!(
            "(b) campaign enqueue: {} persons assigned, {} deliveries queued in {enqueue:.1} s ({:.0} persons/s); \
             server RSS {:.0} MB before, peak sampled {:.0} MB; anonymous {:.0} MB before, peak sampled {:.0} MB",
            run["assigned"], run["queued"], o.persons as f64 / enqueue,
            mb(rss_before), mb(rss_peak), mb(anon_before), mb(anon_peak),
        );
        call(&http, Method::POST, format!("{base}/campaigns/{id}/cancel"), &admin, None).await?;

        // (c) the send API's fan-out of the same segment.
        let started = Instant::now();
        let sent = call(
            &http,
            Method::POST,
            format!("{base}/push/messages"),
            &admin,
            Some(json!({"to": {"segment_id": segment}, "platforms": ["ios"],
                        "notification": {"title": "Spring sale", "body": "20% off"}})),
        )
        .await?;
        let baseline = started.elapsed().as_secs_f64();
        println!(
            "(c) baseline, the send API's fan-out: {} deliveries queued in {baseline:.1} s; \
             the campaign's enqueue took {:.1} x as long",
            sent["devices"],
            enqueue / baseline
        );
        anyhow::Ok(())
    })?;
    drop(child);
    Ok(())
}
