//! The ingestion benchmark. The server runs as a child process (the release `appizer`
//! binary next to this one) on a temporary data dir; clients share the machine.
//!
//! (a) events/s durable through `/v1/batch`: 100-event batches of ~500-byte events,
//!     32 connections, each answer waited for (the answer means fsync'd);
//! (b) the same bodies only parsed by `serde_json` into values on every core: the parse
//!     ceiling;
//! (c) the same load against a bare axum handler that reads the body and answers 200:
//!     the HTTP ceiling;
//! (d) end-to-end events/s: from the first request until the last event is counted
//!     by the API (stored and queryable);
//! (e) p50/p99 of single-event `/v1/track` requests sent open-loop at half the maximum
//!     single-request rate (itself measured first), over the same number of keep-alive
//!     connections, opened before the clock starts, each latency counted from the
//!     request's scheduled time;
//!     and the same open loop against a bare axum server in a process of its own
//!     (`appizer-bench bare-server`), whose latency is what the client, loopback and
//!     the scheduler alone add; for both loops, what the machine did meanwhile (the
//!     server's, the clients' and other processes' CPU, steal, I/O stalls:
//!     `machine.rs`);
//! (f) the server's peak RSS (VmHWM);
//! (g) the server killed with SIGKILL and started again on the same data: the time
//!     until a new event is queryable (the duplicate window rebuilt from the stored
//!     files, the queue's uncommitted records replayed) and the new process's peak RSS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::Router;
use serde_json::Value;

use crate::machine::MachineSample;
use crate::stats::{us, Samples};

#[derive(clap::Args)]
pub struct Options {
    /// Events to send through /v1/batch (the issue's target run uses 10000000).
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Events per batch request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Seconds of each single-request measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Print (e)'s latency per quarter second of the open loop, and when the loop
    /// started on the wall clock.
    #[arg(long)]
    timeline: bool,
    /// Run the server with its queue on this NATS JetStream server (e.g.
    /// `nats://127.0.0.1:4222`), in a stream of its own deleted afterwards, instead of
    /// the embedded log. (f) is then the Appizer server's memory alone.
    #[arg(long)]
    nats: Option<String>,
}

/// Digits of the request number inside each message id.
const SLOT: usize = 10;

/// A batch body whose message ids contain a `SLOT`-digit request number, rewritten per
/// request so every event is unique without building JSON on the client.
pub(crate) struct Template {
    body: Vec<u8>,
    slots: Vec<usize>,
}

impl Template {
    pub(crate) fn new(batch: usize) -> Self {
        let mut body = String::from(r#"{"batch":["#);
        let mut slots = Vec::new();
        for i in 0..batch {
            if i > 0 {
                body.push(',');
            }
            body.push_str(r#"{"type":"track","event":"Product Viewed","userId":"user-"#);
            body.push_str(&format!("{:05}", i * 37 % 10_000));
            body.push_str(r#"","messageId":"m-"#);
            slots.push(body.len());
            body.push_str(&"0".repeat(SLOT));
            body.push_str(&format!("-{i:04}"));
            body.push_str(
                r#"","properties":{"product_id":"sku-48213","category":"Shoes","price":79.99,"currency":"EUR","quantity":1,"coupon":"AUTUMN","position":3},"context":{"library":{"name":"analytics-node","version":"2.1.0"},"locale":"fr-FR","userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36","page":{"path":"/shoes/48213","url":"https://shop.example/shoes/48213"}},"timestamp":"2026-11-25T10:00:00.000Z"}"#,
            );
        }
        body.push_str(r#"],"sentAt":"2026-11-25T10:00:00.100Z"}"#);
        Self {
            body: body.into_bytes(),
            slots,
        }
    }

    pub(crate) fn render(&self, request: u64) -> Vec<u8> {
        let mut body = self.body.clone();
        let digits = format!("{request:0width$}", width = SLOT);
        for &at in &self.slots {
            body[at..at + SLOT].copy_from_slice(digits.as_bytes());
        }
        body
    }
}

struct Server {
    child: Running,
    url: String,
    admin_key: String,
    write_key: String,
    project: String,
    data: PathBuf,
    nats: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Kills the server with SIGKILL and starts it again on the same data.
    fn crash_and_restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        let nats = self.nats.as_ref().map(|(u, s)| (u.as_str(), s.as_str()));
        let (child, url) = spawn_serve(&appizer_binary()?, &self.data, nats)?;
        (self.child, self.url) = (child, url);
        Ok(())
    }
}

/// A child process killed (and reaped) when dropped.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn appizer_binary() -> anyhow::Result<PathBuf> {
    let here = std::env::current_exe()?;
    let binary = here.with_file_name("appizer");
    if !binary.exists() {
        bail!(
            "{} not found: build it first with `cargo build --profile profiling -p appizer -p appizer-bench`",
            binary.display()
        );
    }
    Ok(binary)
}

fn start_server(nats: Option<(&str, &str)>) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let binary = appizer_binary()?;
    let init = Command::new(&binary)
        .args(["init", "--json", "--data-dir"])
        .arg(&data)
        .output()?;
    if !init.status.success() {
        bail!("init failed: {}", String::from_utf8_lossy(&init.stderr));
    }
    let keys: Value = serde_json::from_slice(&init.stdout)?;
    let (child, url) = spawn_serve(&binary, &data, nats)?;
    let text = |k: &str| keys[k].as_str().unwrap_or_default().to_string();
    Ok(Server {
        child,
        url,
        admin_key: text("admin_key"),
        write_key: text("write_key"),
        project: text("project_id"),
        data,
        nats: nats.map(|(u, s)| (u.to_string(), s.to_string())),
        _dir: dir,
    })
}

/// `appizer serve` on `data`, once it prints its address.
fn spawn_serve(
    binary: &Path,
    data: &Path,
    nats: Option<(&str, &str)>,
) -> anyhow::Result<(Running, String)> {
    let env = match nats {
        Some((url, stream)) => vec![
            ("APPIZER_INGEST__QUEUE_URL", url.to_string()),
            ("APPIZER_INGEST__NATS__STREAM", stream.to_string()),
        ],
        None => Vec::new(),
    };
    spawn_serve_with(binary, data, &env)
}

/// `appizer serve` on `data` with extra environment variables, once it prints its
/// address.
pub(crate) fn spawn_serve_with(
    binary: &Path,
    data: &Path,
    env: &[(&str, String)],
) -> anyhow::Result<(Running, String)> {
    use std::io::{BufRead, BufReader};
    let mut command = Command::new(binary);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("APPIZER_RATE_LIMIT__INGEST_PER_SECOND", "1000000")
        .env("APPIZER_RATE_LIMIT__INGEST_BURST", "1000000")
        .env("APPIZER_RATE_LIMIT__API_PER_SECOND", "1000000")
        .env("APPIZER_RATE_LIMIT__API_BURST", "1000000")
        .env("APPIZER_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let url = loop {
        let line = lines.next().context("serve exited")??;
        if let Some(rest) = line.strip_prefix("Appizer is listening on ") {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok((Running(child), url))
}

/// `appizer-bench bare-server` as a child process: the floor of (e).
struct BareServer {
    child: Running,
    url: String,
}

impl BareServer {
    fn start() -> anyhow::Result<Self> {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(std::env::current_exe()?)
            .arg("bare-server")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let line = BufReader::new(stdout)
            .lines()
            .next()
            .context("bare-server exited")??;
        let url = line
            .strip_prefix("listening on ")
            .with_context(|| format!("unexpected bare-server output {line:?}"))?
            .to_string();
        Ok(Self {
            child: Running(child),
            url,
        })
    }
}

/// Serves `/v1/track` and `/v1/batch` on a loopback port (printed as
/// `listening on http://ADDR`): each request's body is read and answered 200 with
/// Segment's success body, nothing else. The runtime is tokio's default, as the
/// server's is.
pub fn bare_server() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            println!("listening on http://{}", listener.local_addr()?);
            axum::serve(listener, bare_app()).await?;
            anyhow::Ok(())
        })
}

/// `/v1/track` and `/v1/batch` that read the body and answer Segment's success body:
/// the HTTP ceiling (c) and the floor of (e).
fn bare_app() -> Router {
    let handler = |body: axum::body::Bytes| async move {
        std::hint::black_box(body.len());
        "{\"success\":true}"
    };
    Router::new()
        .route("/v1/track", axum::routing::post(handler))
        .route("/v1/batch", axum::routing::post(handler))
}

/// A process's peak resident memory (VmHWM).
pub(crate) fn peak_rss_bytes(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmHWM:")
}

/// A process's resident memory now (VmRSS).
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmRSS:")
}

/// A process's resident anonymous memory now (RssAnon: heap and stacks, no mapped file).
pub(crate) fn anon_rss_bytes(pid: u32) -> Option<u64> {
    status_bytes(pid, "RssAnon:")
}

/// Makes the process's peak resident memory its current one (Linux `clear_refs` 5).
pub(crate) fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Sends `requests` batch requests over `connections` workers; returns the seconds taken.
pub(crate) async fn blast(
    url: &str,
    key: Option<&str>,
    template: Arc<Template>,
    first_request: u64,
    requests: u64,
    connections: usize,
) -> anyhow::Result<f64> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let next = Arc::new(AtomicU64::new(first_request));
    let end = first_request + requests;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, next, template, url) = (
            client.clone(),
            next.clone(),
            template.clone(),
            url.to_string(),
        );
        let key = key.map(str::to_string);
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    return anyhow::Ok(());
                }
                let mut request = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(template.render(n));
                if let Some(key) = &key {
                    request = request.basic_auth(key, Some(""));
                }
                let response = request.send().await?;
                let status = response.status();
                response.bytes().await?;
                if !status.is_success() {
                    bail!("{url} answered {status}");
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Waits until the API counts `events` events (at most 10 minutes).
async fn wait_until_stored(server: &Server, events: u64) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let stored = stored_count(server, &client).await?;
        if stored >= events {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {stored} of {events} events stored after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stored_count(server: &Server, client: &reqwest::Client) -> anyhow::Result<u64> {
    let url = format!(
        "{}/api/v1/projects/{}/events/counts?last=24h",
        server.url, server.project
    );
    let body: Value = client
        .get(url)
        .bearer_auth(&server.admin_key)
        .send()
        .await?
        .json()
        .await?;
    Ok(body["events"]["Product Viewed"]["total"]
        .as_u64()
        .unwrap_or(0))
}

/// (b): events/s of `requests` rendered bodies parsed into `serde_json::Value`, on
/// every core.
fn parse_ceiling(template: &Template, requests: u64) -> f64 {
    let events = requests * template.slots.len() as u64;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                for n in (t..requests).step_by(threads as usize) {
                    let body = template.render(n);
                    let value: Value = serde_json::from_slice(&body).expect("valid JSON");
                    std::hint::black_box(value);
                }
            });
        }
    });
    events as f64 / started.elapsed().as_secs_f64()
}

pub fn run(o: Options) -> anyhow::Result<()> {
    let template = Arc::new(Template::new(o.batch));
    let event_bytes = template.body.len() / o.batch;
    let requests = o.events.div_ceil(o.batch as u64);
    let events = requests * o.batch as u64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "ingestion benchmark: {events} events in {requests} batches of {} (~{event_bytes} bytes/event), {} connections",
        o.batch, o.connections
    );

    // (b) Parse ceiling.
    let parse_requests = requests.min(20_000);
    let parse_rate = parse_ceiling(&template, parse_requests);

    // (c) HTTP ceiling: a bare axum handler that reads the body.
    let bare_requests = requests.min(20_000);
    let bare_rate = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move { axum::serve(listener, bare_app()).await });
        let secs = blast(
            &format!("http://{addr}/v1/batch"),
            None,
            template.clone(),
            0,
            bare_requests,
            o.connections,
        )
        .await?;
        server.abort();
        anyhow::Ok((bare_requests * o.batch as u64) as f64 / secs)
    })?;

    // (a) and (d): durable acknowledgements, then until everything is queryable.
    let stream = format!("APPIZER_BENCH_{}", std::process::id());
    let nats = o.nats.as_deref().map(|url| (url, stream.as_str()));
    if let Some((url, _)) = nats {
        println!("  queue: NATS JetStream at {url}, stream {stream}");
    }
    let mut server = start_server(nats)?;
    let pid = server.child.0.id();
    let (ack_rate, e2e_rate, drain) = runtime.block_on(async {
        let url = format!("{}/v1/batch", server.url);
        let started = Instant::now();
        let secs = blast(
            &url,
            Some(&server.write_key),
            template.clone(),
            0,
            requests,
            o.connections,
        )
        .await?;
        // Where the workers stood when the clients stopped: the rest they store with
        // the machine to themselves.
        let stored_at_ack = stored_count(&server, &reqwest::Client::new()).await?;
        let acked = Instant::now();
        wait_until_stored(&server, events).await?;
        let drain = Drain {
            stored_at_ack,
            events,
            secs: acked.elapsed().as_secs_f64(),
        };
        let e2e = started.elapsed().as_secs_f64();
        anyhow::Ok((events as f64 / secs, events as f64 / e2e, drain))
    })?;
    let peak_rss = peak_rss_bytes(pid);

    // (e) Single /v1/track: maximum rate (closed loop), then half of it open loop.
    let single = Arc::new(Template::new(1));
    let (max_single, latency, served, load) = runtime.block_on(async {
        let url = format!("{}/v1/batch", server.url);
        let probe = 20_000u64;
        let secs = blast(
            &url,
            Some(&server.write_key),
            single.clone(),
            10_000_000_000 / 2,
            probe,
            o.connections,
        )
        .await?;
        let max = probe as f64 / secs;
        // The open loop measures the steady state, not the drain of the probe's backlog.
        wait_until_stored(&server, events + probe).await?;
        let client =
            warm_connections(&server.url, &server.write_key, &single, o.connections).await?;
        let before = track_durations(&server).await?;
        let machine_before = MachineSample::read(pid);
        let latency = open_loop(
            &server.url,
            &server.write_key,
            client,
            single.clone(),
            max / 2.0,
            o.seconds,
            o.connections,
            o.timeline,
        )
        .await?;
        let load = MachineSample::load_since(machine_before, pid);
        let served = track_durations(&server).await?.since(&before);
        anyhow::Ok((max, latency, served, load))
    })?;
    // The same open loop against a server that only reads each body and answers: the
    // share of (e)'s tail that the client, loopback and scheduler add on this machine.
    let bare = BareServer::start()?;
    let bare_pid = bare.child.0.id();
    let (floor, bare_load) = runtime.block_on(async {
        let client = warm_connections(&bare.url, "none", &single, o.connections).await?;
        let before = MachineSample::read(bare_pid);
        let floor = open_loop(
            &bare.url,
            "none",
            client,
            single.clone(),
            max_single / 2.0,
            o.seconds,
            o.connections,
            false,
        )
        .await?;
        anyhow::Ok((floor, MachineSample::load_since(before, bare_pid)))
    })?;
    drop(bare);

    println!(
        "  (a) durable through /v1/batch      {:>12.0} events/s",
        ack_rate
    );
    println!(
        "  (b) serde_json parse ceiling       {:>12.0} events/s   (a)/(b) = {:.2}",
        parse_rate,
        ack_rate / parse_rate
    );
    println!(
        "  (c) bare axum HTTP ceiling         {:>12.0} events/s   (a)/(c) = {:.2}",
        bare_rate,
        ack_rate / bare_rate
    );
    println!(
        "  (d) end to end until queryable     {:>12.0} events/s   ({events} events)",
        e2e_rate
    );
    println!("      {drain}");
    println!(
        "  (e) single events, max {:.0} req/s; at {:.0} req/s open loop: p50 {}  p99 {}  (n={})",
        max_single,
        max_single / 2.0,
        us(latency.percentile(50.0)),
        us(latency.percentile(99.0)),
        latency.len()
    );
    println!(
        "      in the server (request in to answer out): {:.2}% within 1 ms, {:.2}% within 5 ms",
        served.share_within(0.001) * 100.0,
        served.share_within(0.005) * 100.0
    );
    println!(
        "      same open loop against a bare axum server in its own process: p50 {}  p99 {}   p99 ratio (e) / bare: {:.2}",
        us(floor.percentile(50.0)),
        us(floor.percentile(99.0)),
        latency.percentile(99.0).as_secs_f64() / floor.percentile(99.0).as_secs_f64().max(1e-9)
    );
    if let (Some(load), Some(bare_load)) = (load, bare_load) {
        println!(
            "      the machine meanwhile: during (e) {load}; during the bare loop {bare_load}"
        );
    }
    let peak_rss_run = peak_rss_bytes(pid);
    match (peak_rss, peak_rss_run) {
        (Some(bytes), Some(run)) => println!(
            "  (f) server peak RSS                {:>12.1} MB   (while ingesting (a)/(d); {:.1} MB over the whole run)",
            bytes as f64 / 1e6,
            run as f64 / 1e6
        ),
        _ => println!("  (f) server peak RSS                unavailable (no /proc)"),
    }

    // (g) SIGKILL and restart: the duplicate window is rebuilt from every stored id and
    // the queue's uncommitted tail replayed before a new event can be stored.
    let client = reqwest::Client::new();
    let before = runtime.block_on(stored_count(&server, &client))?;
    let restarted = Instant::now();
    server.crash_and_restart()?;
    runtime.block_on(async {
        let url = format!("{}/v1/batch", server.url);
        // Request numbers no earlier phase used (the warm-up took 8_000_000_000 on).
        blast(
            &url,
            Some(&server.write_key),
            template.clone(),
            7_000_000_000,
            1,
            1,
        )
        .await?;
        wait_until_stored(&server, before + o.batch as u64).await
    })?;
    let recovery = restarted.elapsed();
    match (peak_rss_bytes(server.child.0.id()), peak_rss) {
        (Some(bytes), Some(ingesting)) => println!(
            "  (g) restart after SIGKILL, {before} events stored: a new event queryable after {:.1} s; peak RSS {:.1} MB   (g)/(f) = {:.2}",
            recovery.as_secs_f64(),
            bytes as f64 / 1e6,
            bytes as f64 / ingesting as f64
        ),
        _ => println!("  (g) restart peak RSS               unavailable (no /proc)"),
    }
    drop(server);
    if let Some((url, stream)) = nats {
        runtime.block_on(async {
            use appizer_storage::queue::{NatsConfig, NatsQueue};
            NatsQueue::open(NatsConfig::new(url, stream))
                .await?
                .delete()
                .await
        })?;
    }

    // (b) once more, with the server gone: on a VM whose cores are shared with other
    // guests the machine's speed can drift within a run, and every absolute figure
    // above with it.
    let again = parse_ceiling(&template, parse_requests);
    println!(
        "  (b) again at the end               {:>12.0} events/s   {}; (a)/(b) against it = {:.2}",
        again,
        drift(parse_rate, again),
        ack_rate / again
    );
    Ok(())
}

/// The workers' part of (d): how many events were stored when the last batch was
/// acknowledged, and how fast the rest were stored once the clients had stopped.
struct Drain {
    stored_at_ack: u64,
    events: u64,
    secs: f64,
}

impl std::fmt::Display for Drain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rest = self.events.saturating_sub(self.stored_at_ack);
        write!(
            f,
            "when the last batch was acknowledged {} events ({:.0}%) were stored",
            self.stored_at_ack,
            self.stored_at_ack as f64 / self.events.max(1) as f64 * 100.0
        )?;
        if rest > 0 && self.secs > 0.0 {
            write!(
                f,
                "; the other {rest} in {:.1} s, {:.0} events/s with the clients stopped",
                self.secs,
                rest as f64 / self.secs
            )?;
        }
        Ok(())
    }
}

/// How far the parse ceiling moved between its two measurements.
fn drift(first: f64, last: f64) -> String {
    format!("{:+.0}% from the first", (last / first - 1.0) * 100.0)
}

/// Single-event requests at `rate` per second for `seconds`, open loop over a fixed set
/// of `connections` (each sends every `connections`-th request of the schedule, one at
/// a time, as wrk2 does). A request that waits for its connection's previous answer is
/// timed from when the schedule wanted it sent: a stall delays the requests due meanwhile
/// and they count it (no coordinated omission), while the client never opens more
/// connections than it was given.
#[allow(clippy::too_many_arguments)]
async fn open_loop(
    base: &str,
    key: &str,
    client: reqwest::Client,
    template: Arc<Template>,
    rate: f64,
    seconds: u64,
    connections: usize,
    timeline: bool,
) -> anyhow::Result<Samples> {
    let url = format!("{base}/v1/track");
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (rate * seconds as f64) as usize;
    let connections = connections.clamp(1, total.max(1));
    // Bodies are made before the clock starts, so the senders only send.
    let mut bodies: Vec<Vec<(usize, Vec<u8>)>> = vec![Vec::new(); connections];
    for n in 0..total {
        // The single-message route takes the message itself.
        let batch: Value =
            serde_json::from_slice(&template.render(9_000_000_000 + n as u64)).expect("valid");
        let body = serde_json::to_vec(&batch["batch"][0]).expect("serializes");
        bodies[n % connections].push((n, body));
    }
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    if timeline {
        // On the wall clock too, to line the timeline up with a trace taken meanwhile
        // (a trace on another clock is shifted by that clock's offset from this one;
        // docs/benchmarks.md, twelfth round of the ingestion benchmark).
        let wall = std::time::SystemTime::now() + Duration::from_millis(50);
        let unix = wall.duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
        println!("      open loop starts at {unix:.6} (Unix time)");
    }
    let mut tasks = Vec::with_capacity(connections);
    for share in bodies {
        let (client, url, key) = (client.clone(), url.clone(), key.to_string());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share.len());
            let mut free_at = tokio::time::Instant::now();
            for (n, body) in share {
                let due = start + interval.mul_f64(n as f64);
                tokio::time::sleep_until(due).await;
                // Late because the previous answer came after `due`: the server's delay,
                // counted from `due`. Otherwise from now (the timer's own lateness, up to
                // a millisecond, is the client's).
                let from = if free_at > due {
                    due
                } else {
                    tokio::time::Instant::now()
                };
                let response = client
                    .post(&url)
                    .basic_auth(&key, Some(""))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                response.bytes().await?;
                anyhow::ensure!(status.is_success(), "answered {status}");
                free_at = tokio::time::Instant::now();
                latencies.push((n, free_at - from));
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut samples = vec![Duration::ZERO; total];
    for t in tasks {
        for (n, latency) in t.await?? {
            samples[n] = latency;
        }
    }
    if timeline {
        // Requests in schedule order, a quarter of a second of them per line.
        for (i, window) in samples.chunks(((rate / 4.0) as usize).max(1)).enumerate() {
            let window = Samples::new(window.to_vec());
            println!(
                "      {:>5.2} s: p50 {}  p99 {}",
                i as f64 / 4.0,
                us(window.percentile(50.0)),
                us(window.percentile(99.0))
            );
        }
    }
    Ok(Samples::new(samples))
}

/// A client holding `connections` open keep-alive connections to the server, each
/// used once, so the open loop measures requests on established connections (as client
/// libraries send them) rather than TCP handshakes at its start.
async fn warm_connections(
    base: &str,
    key: &str,
    template: &Template,
    connections: usize,
) -> anyhow::Result<reqwest::Client> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let url = format!("{base}/v1/track");
    let mut warming = tokio::task::JoinSet::new();
    for i in 0..connections {
        let batch: Value =
            serde_json::from_slice(&template.render(8_000_000_000 + i as u64)).expect("valid");
        let body = serde_json::to_vec(&batch["batch"][0]).expect("serializes");
        let request = client
            .post(&url)
            .basic_auth(key, Some(""))
            .header("content-type", "application/json")
            .body(body);
        warming.spawn(async move {
            let response = request.send().await?;
            let status = response.status();
            response.bytes().await?;
            anyhow::ensure!(status.is_success(), "answered {status}");
            anyhow::Ok(())
        });
    }
    while let Some(outcome) = warming.join_next().await {
        outcome??;
    }
    Ok(client)
}

/// The server's own histogram of `/v1/track` handling times (from `/metrics`): bucket
/// upper bounds in seconds and cumulative counts.
struct Durations(Vec<(f64, u64)>);

impl Durations {
    /// The requests counted between `earlier` and this reading.
    fn since(&self, earlier: &Durations) -> Durations {
        Durations(
            self.0
                .iter()
                .map(|&(le, n)| {
                    let before = earlier.0.iter().find(|(l, _)| *l == le).map_or(0, |e| e.1);
                    (le, n - before)
                })
                .collect(),
        )
    }

    /// The share of requests answered within `seconds` (a bucket bound).
    fn share_within(&self, seconds: f64) -> f64 {
        let total = self.0.iter().map(|e| e.1).max().unwrap_or(0);
        let within = self
            .0
            .iter()
            .find(|(le, _)| (*le - seconds).abs() < 1e-9)
            .map_or(0, |e| e.1);
        if total == 0 {
            0.0
        } else {
            within as f64 / total as f64
        }
    }
}

async fn track_durations(server: &Server) -> anyhow::Result<Durations> {
    let text = reqwest::get(format!("{}/metrics", server.url))
        .await?
        .text()
        .await?;
    let mut buckets = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("appizer_http_request_duration_seconds_bucket{") else {
            continue;
        };
        if !rest.contains("route=\"/v1/track\"") {
            continue;
        }
        let le = rest
            .split("le=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or("+Inf");
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse()?
        };
        let count: u64 = line.rsplit(' ').next().unwrap_or("0").parse()?;
        buckets.push((le, count));
    }
    Ok(Durations(buckets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_signed_and_relative_to_the_first_measurement() {
        assert_eq!(drift(400_000.0, 300_000.0), "-25% from the first");
        assert_eq!(drift(300_000.0, 330_000.0), "+10% from the first");
        assert_eq!(drift(300_000.0, 300_000.0), "+0% from the first");
    }

    #[test]
    fn the_drain_reports_the_share_stored_at_the_last_ack_and_the_rate_of_the_rest() {
        let drain = Drain {
            stored_at_ack: 4_000_000,
            events: 10_000_000,
            secs: 40.0,
        };
        assert_eq!(
            drain.to_string(),
            "when the last batch was acknowledged 4000000 events (40%) were stored; \
             the other 6000000 in 40.0 s, 150000 events/s with the clients stopped"
        );
        let caught_up = Drain {
            stored_at_ack: 10_000_000,
            events: 10_000_000,
            secs: 0.1,
        };
        assert_eq!(
            caught_up.to_string(),
            "when the last batch was acknowledged 10000000 events (100%) were stored"
        );
    }
}
