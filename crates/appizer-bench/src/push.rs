//! The push benchmark. The emulators run as a child process (`appizer push-emulator`,
//! announcing `--max-streams` concurrent HTTP/2 streams per connection, as APNs does),
//! the server as another (`appizer serve`) on a temporary data dir whose store is
//! filled beforehand: persons with one device each, and a static segment per platform.
//!
//! Per platform (APNs, FCM, Web Push):
//! (a) the ceiling: the server's own sender for the platform (`appizer_push`'s
//!     transport, payload, signing and encryption), run in this process, sending
//!     straight to the emulator with the server's concurrency;
//! (b) through the outbox: one message to the segment, from the 202 until the message
//!     has no queued delivery (every delivery recorded, its event in the queue);
//!     reported with the time the send API took to queue the fan-out;
//! (c) for the largest fan-out (APNs, `--devices`): the server's resident memory
//!     before the send and its peak until the last delivery is recorded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use appizer_core::definition::{Definition, DefinitionKind};
use appizer_core::push::{NewDevice, Platform, WebKeys};
use appizer_core::tenancy::{Actor, NewAuditEntry};
use appizer_core::{DefinitionId, MessageId, PersonId, ProjectId};
use appizer_push::credentials::{self, MasterKey};
use appizer_push::message::{Content, Notification, Tags};
use appizer_push::providers::apns::sender::ApnsSender;
use appizer_push::providers::apns::ApnsConfig;
use appizer_push::providers::fcm::config::FcmConfig;
use appizer_push::providers::fcm::sender::FcmSender;
use appizer_push::providers::webpush::sender::WebPushSender;
use appizer_push::providers::webpush::WebPushConfig;
use appizer_push::providers::{Attempt, Target};
use appizer_push::transport::{Transport, TransportConfig};
use appizer_storage::persons::NewPerson;
use appizer_storage::{open_metadata_store, MetadataStore, ProjectScope};
use chrono::Utc;
use serde_json::{json, Value};

use crate::ingest::{
    anon_rss_bytes, appizer_binary, peak_rss_bytes, reset_peak_rss, rss_bytes, spawn_serve_with,
    Running,
};

const P8: &str = include_str!("../../appizer-push/testdata/apns-test-key.p8");
const RSA: &str = include_str!("../../appizer-push/testdata/service-account-test-key.pem");

#[derive(clap::Args)]
pub struct Options {
    /// Devices of the APNs fan-out, whose memory is measured (the target run uses
    /// 1000000).
    #[arg(long, default_value_t = 1_000_000)]
    devices: usize,
    /// Devices of the FCM and Web Push fan-outs.
    #[arg(long, default_value_t = 100_000)]
    other_devices: usize,
    /// Sends of each ceiling run.
    #[arg(long, default_value_t = 100_000)]
    ceiling_sends: usize,
    /// Deliveries in flight per provider (the server's `push.concurrency`).
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
    /// Concurrent HTTP/2 streams the emulator allows per connection.
    #[arg(long, default_value_t = 1000)]
    max_streams: u32,
}

/// The emulator process and its base URL.
pub(crate) struct Emulator {
    _child: Running,
    pub(crate) url: String,
}

pub(crate) fn start_emulator(max_streams: u32) -> anyhow::Result<Emulator> {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(appizer_binary()?)
        .args(["push-emulator", "--listen", "127.0.0.1:0", "--max-streams"])
        .arg(max_streams.to_string())
        .env("APPIZER_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let line = BufReader::new(child.stdout.take().context("stdout")?)
        .lines()
        .next()
        .context("push-emulator exited")??;
    let url = line
        .strip_prefix("Push emulator on ")
        .and_then(|rest| rest.split(": ").next())
        .context("unexpected push-emulator output")?
        .to_string();
    Ok(Emulator {
        _child: Running(child),
        url,
    })
}

fn service_account() -> Value {
    json!({"type": "service_account", "project_id": "bench-app", "private_key": RSA,
           "client_email": "push@bench-app.iam.gserviceaccount.com",
           "token_uri": "https://oauth2.googleapis.com/token"})
}

/// What the emulator must know (the APNs key, the service account) and three
/// provider records sealed for `project`; the Web Push subscriptions it made.
pub(crate) async fn emulator_setup(
    http: &reqwest::Client,
    emulator: &str,
    subscriptions: usize,
) -> anyhow::Result<(Value, Vec<Value>)> {
    let ok = |r: reqwest::Response| {
        if r.status().is_success() {
            Ok(r)
        } else {
            bail!("the emulator answered {}", r.status())
        }
    };
    ok(http
        .post(format!("{emulator}/apns/keys"))
        .json(
            &json!({"team_id": "ABCDE12345", "key_id": "KEY1234567", "private_key": P8,
                      "topics": ["com.example.bench"]}),
        )
        .send()
        .await?)?;
    let account: Value = ok(http
        .post(format!("{emulator}/fcm/service-accounts"))
        .json(&service_account())
        .send()
        .await?)?
    .json()
    .await?;
    let mut subs = Vec::with_capacity(subscriptions);
    for _ in 0..subscriptions {
        let s: Value = ok(http
            .post(format!("{emulator}/webpush/subscriptions"))
            .send()
            .await?)?
        .json()
        .await?;
        subs.push(s);
    }
    Ok((account, subs))
}

fn audit(scope: ProjectScope, action: &str) -> NewAuditEntry {
    NewAuditEntry {
        organization_id: scope.organization(),
        project_id: Some(scope.project()),
        actor: Actor::Cli,
        action: action.into(),
        target_type: "bench".into(),
        target_id: "push".into(),
        details: json!({}),
        request_id: None,
        at: Utc::now(),
    }
}

/// `n` persons with one device each of `platform` (addresses from `address`), in a new
/// static segment; returns the segment.
pub(crate) async fn audience(
    store: &dyn MetadataStore,
    scope: ProjectScope,
    platform: Platform,
    n: usize,
    address: impl Fn(usize) -> (String, Option<WebKeys>),
) -> anyhow::Result<DefinitionId> {
    let now = Utc::now();
    let mut members = Vec::with_capacity(n);
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(2000) {
        let persons: Vec<NewPerson> = chunk
            .iter()
            .map(|i| NewPerson {
                distinct_id: format!("{}-{i}", platform.as_str()),
                person_id: PersonId::new(),
                is_identified: true,
                at: now,
            })
            .collect();
        members.extend(persons.iter().map(|p| p.person_id));
        store.persons().create(scope, &persons).await?;
        let devices: Vec<NewDevice> = chunk
            .iter()
            .map(|i| {
                let (address, web_keys) = address(*i);
                NewDevice {
                    platform,
                    address,
                    web_keys,
                    distinct_id: format!("{}-{i}", platform.as_str()),
                    app_id: None,
                    locale: None,
                    timezone: None,
                    at: now,
                }
            })
            .collect();
        store.push().import_devices(scope, &devices).await?;
    }
    let segment = Definition {
        id: DefinitionId::new(),
        project_id: scope.project(),
        kind: DefinitionKind::Segment,
        name: format!("bench {}", platform.as_str()),
        description: String::new(),
        body: json!({"kind": "static"}),
        member_count: None,
        computed_at: None,
        created_at: now,
        updated_at: now,
    };
    store
        .create_definition(scope, &segment, &audit(scope, "segment.create"))
        .await?;
    members.sort();
    store
        .replace_segment_members(scope, segment.id, &members, now)
        .await?;
    Ok(segment.id)
}

pub(crate) fn apns_token(i: usize) -> String {
    format!("{i:064x}")
}

fn web_keys(subscription: &Value) -> (String, Option<WebKeys>) {
    (
        subscription["endpoint"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        Some(WebKeys {
            p256dh: subscription["keys"]["p256dh"]
                .as_str()
                .unwrap_or_default()
                .into(),
            auth: subscription["keys"]["auth"]
                .as_str()
                .unwrap_or_default()
                .into(),
        }),
    )
}

/// A project's three providers, sealed as the API would.
pub(crate) async fn providers(
    store: &dyn MetadataStore,
    scope: ProjectScope,
    master: &MasterKey,
    account: &Value,
) -> anyhow::Result<()> {
    let now = Utc::now();
    let records = [
        credentials::apns(
            credentials::ApnsCredentials {
                team_id: "ABCDE12345".into(),
                key_id: "KEY1234567".into(),
                private_key: P8.into(),
                topic: "com.example.bench".into(),
                environment: "production".into(),
            },
            master,
            scope.project(),
            now,
        ),
        credentials::fcm(
            credentials::FcmCredentials {
                service_account: account.clone(),
            },
            master,
            scope.project(),
            now,
        ),
        credentials::webpush(
            credentials::WebPushCredentials {
                subject: "mailto:bench@example.com".into(),
                private_key: None,
            },
            master,
            scope.project(),
            now,
        ),
    ];
    for record in records {
        let record = record.map_err(|r| anyhow::anyhow!("{}: {}", r.field, r.rule))?;
        store
            .push()
            .put_provider(scope, &record, &audit(scope, "push_provider.put"))
            .await?;
    }
    Ok(())
}

/// The message every run sends.
fn content() -> Content {
    Content {
        notification: Notification {
            title: "Spring sale".into(),
            body: "20% off everything until midnight".into(),
            url: Some("https://shop.example/sale".into()),
            data: [("order".to_string(), json!(42))].into_iter().collect(),
            ..Default::default()
        },
        ttl_seconds: 3600,
        ..Default::default()
    }
}

/// The ceiling: `sends` deliveries by the platform's sender straight to the emulator,
/// `concurrency` at a time; sends/s.
async fn ceiling(
    platform: Platform,
    sends: usize,
    concurrency: usize,
    emulator: &str,
    account: &Value,
    subscriptions: &[Value],
) -> anyhow::Result<f64> {
    let push = appizer_core::config::PushConfig {
        apns_url: emulator.to_string(),
        fcm_url: format!("{emulator}/fcm"),
        webpush_allowed_hosts: vec!["127.0.0.1".into()],
        ..Default::default()
    };
    let transport = Arc::new(Transport::new(TransportConfig::from_config(&push))?);
    let project = ProjectId::new();
    let master = MasterKey::from_hex(&"42".repeat(32))?;
    let now = Utc::now();
    enum Sender {
        Apns(ApnsSender),
        Fcm(FcmSender),
        Web(WebPushSender),
    }
    let fail = |r: appizer_push::devices::Refused| anyhow::anyhow!("{}: {}", r.field, r.rule);
    let sender = match platform {
        Platform::Ios => {
            let record = credentials::apns(
                credentials::ApnsCredentials {
                    team_id: "ABCDE12345".into(),
                    key_id: "KEY1234567".into(),
                    private_key: P8.into(),
                    topic: "com.example.bench".into(),
                    environment: "production".into(),
                },
                &master,
                project,
                now,
            )
            .map_err(fail)?;
            Sender::Apns(ApnsSender::load(
                &record,
                P8.as_bytes(),
                &ApnsConfig::from_config(&push),
                transport,
            )?)
        }
        Platform::Android => {
            let record = credentials::fcm(
                credentials::FcmCredentials {
                    service_account: account.clone(),
                },
                &master,
                project,
                now,
            )
            .map_err(fail)?;
            Sender::Fcm(FcmSender::load(
                &record,
                account.to_string().as_bytes(),
                &FcmConfig::from_config(&push),
                transport,
            )?)
        }
        Platform::Web => {
            let record = credentials::webpush(
                credentials::WebPushCredentials {
                    subject: "mailto:bench@example.com".into(),
                    private_key: None,
                },
                &master,
                project,
                now,
            )
            .map_err(fail)?;
            let secret = master.open(
                project,
                appizer_core::push::Provider::Webpush,
                &record.sealed,
            )?;
            Sender::Web(WebPushSender::load(
                &record,
                &secret,
                &WebPushConfig::from_config(&push),
                transport,
            )?)
        }
    };
    let sender = Arc::new(sender);
    let content = Arc::new(content());
    let tags = Arc::new(Tags {
        message_id: MessageId::new(),
        campaign_id: None,
        variant: None,
    });
    let subscriptions = Arc::new(subscriptions.to_vec());
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (sender, content, tags, subs, next, failures) = (
            sender.clone(),
            content.clone(),
            tags.clone(),
            subscriptions.clone(),
            next.clone(),
            failures.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= sends {
                    break;
                }
                let (address, keys) = match platform {
                    Platform::Ios => (apns_token(i), None),
                    Platform::Android => (format!("bench-token-{i}"), None),
                    Platform::Web => web_keys(&subs[i % subs.len()]),
                };
                let target = Target {
                    address: &address,
                    web_keys: keys.as_ref(),
                    delivery_id: uuid::Uuid::now_v7(),
                };
                let attempt = match &*sender {
                    Sender::Apns(s) => s.send(&content, &tags, target).await,
                    Sender::Fcm(s) => s.send(&content, &tags, target).await,
                    Sender::Web(s) => s.send(&content, &tags, target).await,
                };
                if attempt != Attempt::Accepted {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let failed = failures.load(Ordering::Relaxed);
    if failed > 0 {
        bail!(
            "{failed} ceiling sends to the {} emulator failed",
            platform.as_str()
        );
    }
    Ok(sends as f64 / secs)
}

/// What one message through the server took.
struct OutboxRun {
    /// Seconds until the 202.
    queued: f64,
    /// Seconds from the 202 until every delivery is recorded.
    seconds: f64,
    /// The server's resident memory before the send and its peak (VmHWM) until the end.
    rss_before: u64,
    rss_peak: u64,
    /// Its anonymous memory (heap and stacks, RssAnon) before and the largest sampled
    /// every 100 ms until the end: resident memory less the mapped files (the metadata
    /// database is memory-mapped, and its pages count in VmRSS once touched).
    anon_before: u64,
    anon_peak: u64,
}

/// One message to `segment` through the server.
async fn through_outbox(
    http: &reqwest::Client,
    server: &Server,
    segment: DefinitionId,
    platform: Platform,
    devices: usize,
) -> anyhow::Result<OutboxRun> {
    let before = rss_bytes(server.pid).unwrap_or(0);
    let anon_before = anon_rss_bytes(server.pid).unwrap_or(0);
    let mut anon_peak = anon_before;
    if !reset_peak_rss(server.pid) {
        eprintln!("cannot reset the server's peak RSS: (c) may show an earlier peak");
    }
    let base = format!("{}/api/v1/projects/{}", server.url, server.project);
    let started = Instant::now();
    let answer = http
        .post(format!("{base}/push/messages"))
        .bearer_auth(&server.admin_key)
        .json(&json!({"to": {"segment_id": segment}, "platforms": [platform],
                      "notification": {"title": "Spring sale", "body": "20% off everything until midnight",
                                       "url": "https://shop.example/sale", "data": {"order": 42}},
                      "ttl_seconds": 3600}))
        .send()
        .await?;
    if answer.status() != reqwest::StatusCode::ACCEPTED {
        bail!(
            "the send API answered {}: {}",
            answer.status(),
            answer.text().await?
        );
    }
    let queued = started.elapsed().as_secs_f64();
    let body: Value = answer.json().await?;
    if body["devices"].as_u64() != Some(devices as u64) {
        bail!("queued {} deliveries, not {devices}", body["devices"]);
    }
    let id = body["message_id"].as_str().unwrap_or_default().to_string();
    let delivering = Instant::now();
    until_delivered(http, &base, &server.admin_key, &id, devices, || {
        anon_peak = anon_peak.max(anon_rss_bytes(server.pid).unwrap_or(0));
    })
    .await?;
    let seconds = delivering.elapsed().as_secs_f64();
    Ok(OutboxRun {
        queued,
        seconds,
        rss_before: before,
        rss_peak: peak_rss_bytes(server.pid).unwrap_or(0),
        anon_before,
        anon_peak: anon_peak.max(anon_rss_bytes(server.pid).unwrap_or(0)),
    })
}

/// Polls the message `id` of the project at `base` every 100 ms (calling `each_poll`
/// first) until nothing of it is queued; fails unless all `devices` were sent.
pub(crate) async fn until_delivered(
    http: &reqwest::Client,
    base: &str,
    admin_key: &str,
    id: &str,
    devices: usize,
    mut each_poll: impl FnMut(),
) -> anyhow::Result<()> {
    loop {
        each_poll();
        let status: Value = http
            .get(format!("{base}/push/messages/{id}"))
            .bearer_auth(admin_key)
            .send()
            .await?
            .json()
            .await?;
        if status["counts"]["queued"] == 0 {
            let sent = status["counts"]["sent"].as_u64().unwrap_or(0);
            if sent != devices as u64 {
                bail!("{sent} of {devices} sent: {status}");
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Server {
    _child: Running,
    pid: u32,
    url: String,
    admin_key: String,
    project: String,
}

pub fn run(o: Options) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let emulator = start_emulator(o.max_streams)?;
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
    println!(
        "push benchmark: {} APNs devices, {} FCM and Web Push devices, {} ceiling sends, \
         concurrency {}, emulator streams per connection {}",
        o.devices, o.other_devices, o.ceiling_sends, o.concurrency, o.max_streams
    );
    let http = reqwest::Client::new();
    let web_subscriptions = o.other_devices.min(1000);
    let (account, subscriptions, segments) = runtime.block_on(async {
        let (account, subscriptions) =
            emulator_setup(&http, &emulator.url, web_subscriptions).await?;
        let started = Instant::now();
        let store =
            open_metadata_store(&format!("sqlite://{}", data.join("metadata.db").display()))
                .await?;
        let scope = store
            .project_scope(project)
            .await?
            .context("the project init made")?;
        providers(
            store.as_ref(),
            scope,
            &MasterKey::load_or_create(&data)?,
            &account,
        )
        .await?;
        let ios = audience(store.as_ref(), scope, Platform::Ios, o.devices, |i| {
            (apns_token(i), None)
        })
        .await?;
        let android = audience(
            store.as_ref(),
            scope,
            Platform::Android,
            o.other_devices,
            |i| (format!("bench-token-{i}"), None),
        )
        .await?;
        // Browsers share the emulator's subscriptions: each endpoint once per device
        // would need as many subscriptions; the endpoint is made unique by a query.
        let web = audience(store.as_ref(), scope, Platform::Web, o.other_devices, |i| {
            let (endpoint, keys) = web_keys(&subscriptions[i % subscriptions.len()]);
            (format!("{endpoint}?d={i}"), keys)
        })
        .await?;
        store.close().await;
        println!("store filled in {:.1} s", started.elapsed().as_secs_f64());
        anyhow::Ok((account, subscriptions, [ios, android, web]))
    })?;

    // (a) ceilings.
    let mut ceilings = Vec::new();
    for platform in Platform::ALL {
        let sends = match platform {
            Platform::Ios => o.ceiling_sends,
            _ => o.ceiling_sends.min(o.other_devices),
        };
        let rate = runtime.block_on(ceiling(
            platform,
            sends,
            o.concurrency,
            &emulator.url,
            &account,
            &subscriptions,
        ))?;
        println!(
            "(a) ceiling {:<8} {:>9.0} sends/s ({sends} sends, the sender alone)",
            platform.as_str(),
            rate
        );
        ceilings.push(rate);
    }

    // (b), (c) through the server's outbox.
    let (child, url) = spawn_serve_with(
        &binary,
        &data,
        &[
            ("APPIZER_PUSH__APNS_URL", emulator.url.clone()),
            ("APPIZER_PUSH__FCM_URL", format!("{}/fcm", emulator.url)),
            (
                "APPIZER_PUSH__WEBPUSH_ALLOWED_HOSTS",
                "[\"127.0.0.1\"]".to_string(),
            ),
            ("APPIZER_PUSH__CONCURRENCY", o.concurrency.to_string()),
        ],
    )?;
    let server = Server {
        pid: child.0.id(),
        _child: child,
        url,
        admin_key: text("admin_key"),
        project: project.to_string(),
    };
    for platform in [Platform::Android, Platform::Web, Platform::Ios] {
        let index = match platform {
            Platform::Ios => 0,
            Platform::Android => 1,
            Platform::Web => 2,
        };
        let devices = if platform == Platform::Ios {
            o.devices
        } else {
            o.other_devices
        };
        let run = runtime.block_on(through_outbox(
            &http,
            &server,
            segments[index],
            platform,
            devices,
        ))?;
        let rate = devices as f64 / run.seconds;
        println!(
            "(b) outbox  {:<8} {:>9.0} sends/s = {:.2} x ceiling ({devices} devices; fan-out queued in {:.1} s, delivered in {:.1} s)",
            platform.as_str(),
            rate,
            rate / ceilings[index],
            run.queued,
            run.seconds,
        );
        if platform == Platform::Ios {
            let mb = |bytes: u64| bytes as f64 / 1e6;
            println!(
                "(c) server RSS {:.0} MB before the {devices}-device fan-out, peak {:.0} MB: growth {:.0} MB; \
                 anonymous memory {:.0} MB before, peak sampled {:.0} MB: growth {:.0} MB",
                mb(run.rss_before),
                mb(run.rss_peak),
                mb(run.rss_peak.saturating_sub(run.rss_before)),
                mb(run.anon_before),
                mb(run.anon_peak),
                mb(run.anon_peak.saturating_sub(run.anon_before)),
            );
        }
    }
    Ok(())
}
