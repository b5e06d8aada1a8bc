//! The trends screen over 10 million events, as a person opens it.
//!
//! 1. A data directory is made once into `--data` (kept for later runs): `appizer init`
//!    with a known admin password, then the analytics benchmark's dataset (`--events`
//!    events of `--persons` persons over 30 days from 2026-10-02, one sorted Parquet
//!    file per day) written into the project init made. A second, empty project is the
//!    baseline.
//! 2. `appizer serve` on that directory, with the analytics answer cache off so every
//!    load computes its answer.
//! 3. Over HTTP, signed in with a session cookie, each run replays what the page asks
//!    for in the order it asks: the page, its script and style (gzip), the session, the
//!    projects, then the event names and the trends answer together. The page is
//!    usable when the last of them arrives. Then one interaction: the same query broken
//!    down by plan (top 10).
//! 4. With `--python` (Playwright) and `--chromium`, the same page in Chromium: from the
//!    navigation's start until the numbers table and the chart are drawn, and the
//!    breakdown typed into its field until the table shows it.
//!
//! Each figure is given for the 10-million-event project and, measured in the same
//! run, for the empty project: the ratio is what the events cost.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use appizer_core::config::ParquetCompression;
use appizer_core::ProjectId;
use appizer_storage::open_metadata_store;
use clap::Args;
use reqwest::header::{ACCEPT_ENCODING, CONTENT_TYPE, COOKIE, SET_COOKIE};
use serde_json::{json, Value};

use crate::ingest::{appizer_binary, spawn_serve_with};
use crate::stats::{ms, Samples};

#[derive(Args)]
pub struct Options {
    #[arg(long, default_value_t = 10_000_000)]
    events: usize,
    #[arg(long, default_value_t = 100_000)]
    persons: usize,
    /// Timed page loads per project (after one untimed).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Where the data directory lives (made if missing).
    #[arg(long)]
    data: Option<PathBuf>,
    /// A Python with Playwright, for the figures in Chromium.
    #[arg(long)]
    python: Option<PathBuf>,
    #[arg(long, default_value = "/usr/bin/chromium")]
    chromium: PathBuf,
}

const EMAIL: &str = "admin@localhost";
const PASSWORD: &str = "dashboard-bench-password";
/// Written once the data directory is whole: the project's id and the empty one's.
const COMPLETE: &str = "dashboard-complete.v1";

/// The trends screen's query: daily events over the dataset's 30 days.
fn trends() -> Value {
    json!({"series": [{"math": "total"}], "interval": "day",
           "date_range": {"from": "2026-10-02", "to": "2026-10-31"}})
}

fn broken_down() -> Value {
    let mut q = trends();
    q["breakdown"] = json!({"key": "plan", "type": "event", "limit": 10});
    q
}

pub fn run(o: Options) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = o.data.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("appizer-dashboard-{}-{}", o.events, o.persons))
    });
    let binary = appizer_binary()?;
    if !dir.join(COMPLETE).exists() {
        let started = Instant::now();
        runtime.block_on(prepare(&binary, &dir, o.events, o.persons))?;
        println!(
            "data directory made in {:.1} s: {}",
            started.elapsed().as_secs_f64(),
            dir.display()
        );
    }
    let ids = std::fs::read_to_string(dir.join(COMPLETE))?;
    let mut ids = ids.split_whitespace();
    let (full, empty) = (
        ids.next().context("project id")?.to_string(),
        ids.next().context("empty project id")?.to_string(),
    );
    let (child, url) = spawn_serve_with(
        &binary,
        &dir.join("data"),
        &[("APPIZER_ANALYTICS__RESULT_CACHE_ENTRIES", "0".into())],
    )?;
    println!(
        "dashboard benchmark: {} events of {} persons over 30 days; {} timed loads per project; answer cache off",
        o.events, o.persons, o.runs
    );
    runtime.block_on(async {
        let http = reqwest::Client::builder().no_gzip().build()?;
        let session = sign_in(&http, &url).await?;
        for (name, project) in [("10M events", &full), ("empty", &empty)] {
            let mut loads = Vec::new();
            let mut answers = Vec::new();
            let mut interactions = Vec::new();
            for run in 0..=o.runs {
                let (load, answer) = page_load(&http, &url, &session, project).await?;
                let started = Instant::now();
                query(&http, &url, &session, project, &broken_down()).await?;
                if run > 0 {
                    loads.push(load);
                    answers.push(answer);
                    interactions.push(started.elapsed());
                }
            }
            let (loads, answers, interactions) = (
                Samples::new(loads),
                Samples::new(answers),
                Samples::new(interactions),
            );
            println!(
                "http {name:>10}: page usable p50 {:.1} ms, max {:.1} ms (trends answer p50 {:.1} ms); breakdown by plan p50 {:.1} ms, max {:.1} ms",
                ms(loads.percentile(50.0)),
                ms(loads.percentile(100.0)),
                ms(answers.percentile(50.0)),
                ms(interactions.percentile(50.0)),
                ms(interactions.percentile(100.0)),
            );
        }
        anyhow::Ok(())
    })?;
    if let Some(python) = &o.python {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/bench/dashboard_page.py"
        );
        let config = json!({
            "base_url": url, "email": EMAIL, "password": PASSWORD, "chromium": o.chromium,
            "runs": o.runs,
            "pages": [
                ["10M events", format!("/projects/{full}/trends?q={}", urlencode(&trends().to_string()))],
                ["empty", format!("/projects/{empty}/trends?q={}", urlencode(&trends().to_string()))],
            ],
        });
        let out = Command::new(python)
            .arg(script)
            .arg(config.to_string())
            .output()?;
        if !out.status.success() {
            bail!(
                "the page in Chromium failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    drop(child);
    Ok(())
}

/// `appizer init` with a known password, the dataset in its project, an empty project.
async fn prepare(binary: &Path, dir: &Path, events: usize, persons: usize) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let data = dir.join("data");
    let init = Command::new(binary)
        .args(["init", "--json", "--admin-email", EMAIL, "--data-dir"])
        .arg(&data)
        .env("APPIZER_ADMIN_PASSWORD", PASSWORD)
        .output()?;
    if !init.status.success() {
        bail!("init failed: {}", String::from_utf8_lossy(&init.stderr));
    }
    let keys: Value = serde_json::from_slice(&init.stdout)?;
    let project: ProjectId = keys["project_id"]
        .as_str()
        .context("init's project id")?
        .parse()?;
    let admin = keys["admin_key"]
        .as_str()
        .context("init's admin key")?
        .to_string();
    let meta =
        open_metadata_store(&format!("sqlite://{}", data.join("metadata.db").display())).await?;
    let scope = meta
        .project_scope(project)
        .await?
        .context("the project init made")?;
    crate::analytics::fill(
        Arc::clone(&meta),
        &data.join("events"),
        scope,
        events,
        persons,
        (ParquetCompression::Zstd, ParquetCompression::Lz4Raw),
    )
    .await?;
    meta.close().await;
    // The empty project, made through the API as an admin would.
    let binary = binary.to_path_buf();
    let (child, url) = spawn_serve_with(&binary, &data, &[])?;
    let made = reqwest::Client::new()
        .post(format!("{url}/api/v1/projects"))
        .bearer_auth(&admin)
        .json(&json!({"name": "Empty", "timezone": "UTC"}))
        .send()
        .await?;
    if !made.status().is_success() {
        bail!("creating the empty project: {}", made.text().await?);
    }
    let made: Value = made.json().await?;
    drop(child);
    let empty = made["project"]["id"]
        .as_str()
        .context("the empty project's id")?;
    std::fs::write(dir.join(COMPLETE), format!("{project} {empty}\n"))?;
    Ok(())
}

async fn sign_in(http: &reqwest::Client, url: &str) -> anyhow::Result<Session> {
    let answer = http
        .post(format!("{url}/api/v1/session"))
        .header("origin", url)
        .json(&json!({"email": EMAIL, "password": PASSWORD}))
        .send()
        .await?;
    if !answer.status().is_success() {
        bail!("sign-in refused: {}", answer.text().await?);
    }
    let cookie = answer
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("appizer_session="))
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?
        .to_string();
    let body: Value = answer.json().await?;
    let csrf = body["csrf_token"].as_str().context("no CSRF token")?;
    Ok(Session {
        cookie,
        csrf: csrf.to_string(),
        origin: url.to_string(),
    })
}

/// A signed-in browser's credentials: its cookie, and the CSRF token and origin its
/// POSTs carry.
struct Session {
    cookie: String,
    csrf: String,
    origin: String,
}

/// A GET as the page makes it; `gzip` asks for compression (the bytes are then left
/// compressed, as they are timed arriving).
async fn fetch(http: &reqwest::Client, url: String, cookie: &str) -> anyhow::Result<Vec<u8>> {
    get(http, url, cookie, true).await
}

async fn get(
    http: &reqwest::Client,
    url: String,
    cookie: &str,
    gzip: bool,
) -> anyhow::Result<Vec<u8>> {
    let mut request = http.get(&url).header(COOKIE, cookie);
    if gzip {
        request = request.header(ACCEPT_ENCODING, "gzip");
    }
    let answer = request.send().await?;
    if !answer.status().is_success() {
        bail!("GET {url}: {}", answer.status());
    }
    Ok(answer.bytes().await?.to_vec())
}

async fn query(
    http: &reqwest::Client,
    url: &str,
    session: &Session,
    project: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let answer = http
        .post(format!("{url}/api/v1/projects/{project}/query/trends"))
        .header(COOKIE, &session.cookie)
        .header("x-csrf-token", &session.csrf)
        .header("origin", &session.origin)
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await?;
    if !answer.status().is_success() {
        bail!("trends: {}", answer.text().await?);
    }
    let answer: Value = answer.json().await?;
    if !answer["results"].is_array() {
        bail!("trends answered no results: {answer}");
    }
    Ok(answer)
}

/// One load of the trends screen: until everything it needs arrived, and the trends
/// answer's own time.
async fn page_load(
    http: &reqwest::Client,
    url: &str,
    session: &Session,
    project: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let cookie = session.cookie.as_str();
    let started = Instant::now();
    let page = format!(
        "{url}/projects/{project}/trends?q={}",
        urlencode(&trends().to_string())
    );
    // The page itself is a few hundred bytes: asked for uncompressed, to read its
    // asset names.
    let html = String::from_utf8(get(http, page, cookie, false).await?)?;
    let assets: Vec<String> = html
        .split('"')
        .filter(|s| s.starts_with("/assets/"))
        .map(|s| format!("{url}{s}"))
        .collect();
    if assets.len() < 2 {
        bail!("the page names no script and style: {html}");
    }
    let (script, style) = (assets[0].clone(), assets[1].clone());
    let (a, b) = tokio::join!(fetch(http, script, cookie), fetch(http, style, cookie));
    a?;
    b?;
    fetch(http, format!("{url}/api/v1/session"), cookie).await?;
    fetch(http, format!("{url}/api/v1/projects"), cookie).await?;
    let asked = Instant::now();
    let (names, answer) = tokio::join!(
        fetch(
            http,
            format!("{url}/api/v1/projects/{project}/events/counts?last=24h"),
            cookie
        ),
        async {
            let a = query(http, url, session, project, &trends()).await;
            (a, asked.elapsed())
        }
    );
    names?;
    answer.0?;
    Ok((started.elapsed(), answer.1))
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
