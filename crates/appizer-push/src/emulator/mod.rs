//! Local push services that behave as the real ones do, for tests and for developing
//! apps without Apple or Google accounts: they check what the real services check,
//! answer with their statuses, can be told to fail, and list what they received.
//!
//! APNs (`apns`, at the root, as Apple's host), FCM with its token endpoint (`fcm`,
//! under `/fcm`) and Web Push (`webpush`, under `/webpush`) share one listener, over
//! HTTP/1.1 or HTTP/2 with prior knowledge, with an optional limit on concurrent
//! HTTP/2 streams per connection (as APNs announces one).

pub mod apns;
pub mod fcm;
pub mod webpush;

use std::collections::{HashMap, VecDeque};

use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::ServiceExt;

/// How many received messages each emulator keeps to list (the totals count all).
pub const KEEP: usize = 10_000;

/// What an emulator received: the most recent [`KEEP`] messages, the total, and how
/// many each address (device token, subscription) got.
pub(crate) struct Log<T> {
    recent: VecDeque<T>,
    total: u64,
    counts: HashMap<String, u64>,
}

impl<T> Default for Log<T> {
    fn default() -> Self {
        Self {
            recent: VecDeque::new(),
            total: 0,
            counts: HashMap::new(),
        }
    }
}

impl<T: Clone> Log<T> {
    pub(crate) fn push(&mut self, address: String, message: T) {
        if self.recent.len() == KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back(message);
        self.total += 1;
        *self.counts.entry(address).or_default() += 1;
    }

    pub(crate) fn recent(&self) -> Vec<T> {
        self.recent.iter().cloned().collect()
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    pub(crate) fn counts(&self) -> &HashMap<String, u64> {
        &self.counts
    }
}

/// Every emulator's routes; `base` is how clients reach the listener.
pub fn router(base: &str) -> axum::Router {
    webpush::WebPushEmulator::new(base)
        .router()
        .merge(fcm::FcmEmulator::new(base).router())
        .merge(apns::ApnsEmulator::new().router())
}

/// How the listener serves.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServeOptions {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` announced on HTTP/2 connections (none: no
    /// limit).
    pub max_streams: Option<u32>,
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Some(streams) = options.max_streams {
        builder.http2().max_concurrent_streams(streams);
    }
    let shutdown = std::pin::pin!(shutdown);
    let mut shutdown = shutdown;
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: http::Request<_>| {
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
        let builder = builder.clone();
        tokio::spawn(async move {
            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}

/// Serves every emulator on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let base = format!("http://{}", listener.local_addr()?);
    serve_router(listener, router(&base), options, shutdown).await
}
