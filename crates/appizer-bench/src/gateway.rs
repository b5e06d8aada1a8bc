//! The gateway benchmark.
//!
//! 1. Fixed-rate load (open loop: requests leave on schedule whether or not earlier ones
//!    have been answered, so a slow answer never delays the next request; latency counts
//!    from the moment a request is handed to the client, and the schedule's own lag is
//!    reported beside it to show the load was held): authenticated
//!    `GET /api/v1/projects/{id}` on a real server over loopback, against the same load on
//!    a bare axum handler returning 200 (the HTTP ceiling).
//! 2. Middleware cost: the same request through the full router (request id, metrics,
//!    access log, timeout, authentication, rate limit, access table) and through the same
//!    handler with the middleware off, in process, alternating batches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use appizer::testing::TestServer;
use appizer_core::config::Config;
use appizer_gateway::AppState;
use axum::body::Body;
use axum::{Extension, Router};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::stats::{us, Samples};

#[derive(clap::Args)]
pub struct Options {
    /// Requests per second of the fixed-rate load.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds of fixed-rate load per target (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// In-process requests per variant for the middleware cost.
    #[arg(long, default_value_t = 20_000)]
    iterations: usize,
}

pub fn run(o: Options) -> anyhow::Result<()> {
    // Access logs are formatted as in production, then discarded.
    tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .init();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let server = server_rt.block_on(TestServer::start_with(|c| {
        c.log.level = "info".into();
    }));
    let bare_addr = server_rt.block_on(start_bare_server())?;
    let project_url = server.url(&format!("/api/v1/projects/{}", server.keys.project_id));
    let key = server.keys.admin_key.clone();

    println!(
        "gateway benchmark: {} req/s for {} s per target, open loop",
        o.rate, o.seconds
    );
    let appizer = client_rt.block_on(fixed_rate(&project_url, Some(&key), o.rate, o.seconds))?;
    let bare = client_rt.block_on(fixed_rate(
        &format!("http://{bare_addr}/"),
        None,
        o.rate,
        o.seconds,
    ))?;
    let (a99, b99) = (
        appizer.latency.percentile(99.0),
        bare.latency.percentile(99.0),
    );
    for (name, run) in [
        ("appizer GET /api/v1/projects/{id}", &appizer),
        ("bare axum 200 (baseline)         ", &bare),
    ] {
        println!(
            "  {name}  p50 {}  p99 {}  max {}  (n={}; dispatch lag p99 {})",
            us(run.latency.percentile(50.0)),
            us(run.latency.percentile(99.0)),
            us(run.latency.percentile(100.0)),
            run.latency.len(),
            us(run.dispatch_lag.percentile(99.0)),
        );
    }
    println!(
        "  p99 ratio appizer / baseline: {:.2}   target p99 < 2 ms: {}",
        a99.as_secs_f64() / b99.as_secs_f64(),
        verdict(a99 < Duration::from_millis(2))
    );

    let (with, without) = server_rt.block_on(middleware_cost(&server, o.iterations))?;
    let cost = with
        .percentile(50.0)
        .saturating_sub(without.percentile(50.0));
    println!(
        "middleware cost, in process, {} requests per variant:",
        o.iterations
    );
    println!(
        "  with middleware     median {}  p99 {}",
        us(with.percentile(50.0)),
        us(with.percentile(99.0))
    );
    println!(
        "  without (baseline)  median {}  p99 {}",
        us(without.percentile(50.0)),
        us(without.percentile(99.0))
    );
    println!(
        "  cost per request (median difference): {}  ratio {:.2}   target < 50 us: {}",
        us(cost),
        with.percentile(50.0).as_secs_f64() / without.percentile(50.0).as_secs_f64(),
        verdict(cost < Duration::from_micros(50))
    );
    server_rt.block_on(server.stop());
    Ok(())
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "met"
    } else {
        "NOT MET"
    }
}

async fn start_bare_server() -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// Latencies of a fixed-rate run and how late requests left against their schedule.
pub struct FixedRate {
    pub latency: Samples,
    pub dispatch_lag: Samples,
}

/// Sends `rate` requests a second for `seconds` (after a one-second warm-up) and returns
/// each request's latency from its dispatch, and each dispatch's lag behind schedule.
async fn fixed_rate(
    url: &str,
    bearer: Option<&str>,
    rate: u32,
    seconds: u32,
) -> anyhow::Result<FixedRate> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let warmup = rate as usize;
    let total = warmup + (rate * seconds) as usize;
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let at = start + interval * i as u32;
        tokio::time::sleep_until(at).await;
        let dispatched = tokio::time::Instant::now();
        let lag = dispatched - at;
        let mut request = client.get(url);
        if let Some(key) = bearer {
            request = request.bearer_auth(key);
        }
        tasks.push(tokio::spawn(async move {
            let response = request.send().await?;
            let status = response.status();
            response.bytes().await?;
            anyhow::Ok((status, dispatched.elapsed(), lag))
        }));
    }
    let mut latency = Vec::with_capacity(total - warmup);
    let mut dispatch_lag = Vec::with_capacity(total - warmup);
    for (i, task) in tasks.into_iter().enumerate() {
        let (status, took, lag) = task.await??;
        ensure!(status.is_success(), "{url} answered {status}");
        if i >= warmup {
            latency.push(took);
            dispatch_lag.push(lag);
        }
    }
    Ok(FixedRate {
        latency: Samples::new(latency),
        dispatch_lag: Samples::new(dispatch_lag),
    })
}

/// Times the same request through the full router and through the bare handler.
async fn middleware_cost(
    server: &TestServer,
    iterations: usize,
) -> anyhow::Result<(Samples, Samples)> {
    let state = AppState::new(
        Arc::new(Config::for_tests()),
        server.store.clone(),
        server.state.events.clone(),
        server.state.push.clone(),
        Arc::new(appizer_gateway::rate_limit::RateLimiter::local()),
    );
    let principal = state
        .keys
        .lookup(state.store.as_ref(), &server.keys.admin_key)
        .await?
        .context("the admin key resolves")?;
    let full = appizer_gateway::router(state.clone());
    let bare: Router = appizer_gateway::management_routes()
        .split_for_parts()
        .0
        .layer(Extension(principal))
        .with_state(state);
    let path = format!("/api/v1/projects/{}", server.keys.project_id);
    let key = server.keys.admin_key.clone();
    let request = || {
        axum::http::Request::get(&path)
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .expect("request")
    };
    let time = |app: Router, request: axum::http::Request<Body>| async move {
        let started = Instant::now();
        let response = app.oneshot(request).await.expect("infallible");
        let status = response.status();
        response.into_body().collect().await.expect("body");
        anyhow::ensure!(status.is_success(), "answered {status}");
        Ok(started.elapsed())
    };
    // Warm-up, then alternate batches so drift affects both variants alike.
    for _ in 0..1_000 {
        time(full.clone(), request()).await?;
        time(bare.clone(), request()).await?;
    }
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let batch = 500;
    while with.len() < iterations {
        for _ in 0..batch {
            with.push(time(full.clone(), request()).await?);
        }
        for _ in 0..batch {
            without.push(time(bare.clone(), request()).await?);
        }
    }
    Ok((Samples::new(with), Samples::new(without)))
}
