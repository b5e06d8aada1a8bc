//! The one HTTP stack every provider sends on: HTTP/2 (h2) connections pooled per
//! origin, with an HTTP/1.1 fallback for a TLS server that does not offer h2 in ALPN
//! (some Web Push services).
//!
//! - `https://`: TLS (rustls) trusting the system's roots plus `push.ca_file`, ALPN
//!   `h2` then `http/1.1`.
//! - `http://`: HTTP/2 with prior knowledge (local emulators; APNs speaks only h2).
//! - Per origin at most `push.connections_per_host` HTTP/2 connections; a request takes
//!   the least-loaded one that has a stream free under the server's
//!   `SETTINGS_MAX_CONCURRENT_STREAMS`, and a new connection is opened only when none
//!   has (when the pool is full, h2 itself waits for a stream to free up, so the
//!   server's limit is never exceeded).
//! - A connection that fails or is closed by the server (GOAWAY) leaves the pool; the
//!   requests on it fail with a [`TransportError`], which the outbox retries.
//! - Every request has a deadline (`push.request_timeout_ms`) and answers are read up
//!   to [`MAX_ANSWER_BYTES`].

mod h1;
mod pool;
#[cfg(test)]
mod tests;
mod tls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use parking_lot::Mutex;

use appizer_core::config::PushConfig;
use pool::Pool;

/// The most of an answer's body that is read; push services answer a few hundred bytes.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A provider's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A request that got no answer: worth retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("the URL {0} cannot be sent to")]
    Url(String),
    #[error("cannot connect to {origin}: {reason}")]
    Connect { origin: String, reason: String },
    #[error("{origin} does not speak HTTP/2")]
    NotHttp2 { origin: String },
    #[error("the connection to {origin} failed: {reason}")]
    Protocol { origin: String, reason: String },
    #[error("{origin} did not answer within {millis} ms")]
    Timeout { origin: String, millis: u128 },
    #[error("the answer of {origin} is over {MAX_ANSWER_BYTES} bytes")]
    AnswerTooLarge { origin: String },
    #[error("the CA file {path} cannot be read: {reason}")]
    CaFile { path: String, reason: String },
}

impl TransportError {
    /// A short stable name, for metrics and recorded reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Url(_) => "bad_url",
            Self::Connect { .. } => "connect",
            Self::NotHttp2 { .. } => "not_http2",
            Self::Protocol { .. } => "protocol",
            Self::Timeout { .. } => "timeout",
            Self::AnswerTooLarge { .. } => "answer_too_large",
            Self::CaFile { .. } => "ca_file",
        }
    }
}

/// Where connections go: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl Origin {
    fn of(uri: &http::Uri) -> Result<Self, TransportError> {
        let bad = || TransportError::Url(uri.to_string());
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let host = uri.host().ok_or_else(bad)?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self { tls, host, port })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// How the transport connects.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub connections_per_host: usize,
    pub request_timeout: Duration,
    pub ca_file: Option<std::path::PathBuf>,
}

impl TransportConfig {
    pub fn from_config(push: &PushConfig) -> Self {
        Self {
            connections_per_host: push.connections_per_host.max(1),
            request_timeout: Duration::from_millis(push.request_timeout_ms.max(1)),
            ca_file: push.ca_file.clone(),
        }
    }
}

/// The pooled client; cheap to share (`Arc`).
pub struct Transport {
    config: TransportConfig,
    tls: Arc<rustls::ClientConfig>,
    pools: Mutex<HashMap<Origin, Arc<Pool>>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A transport trusting the system's roots and `config.ca_file`.
    pub fn new(config: TransportConfig) -> Result<Self, TransportError> {
        let tls = Arc::new(tls::client_config(config.ca_file.as_deref())?);
        Ok(Self {
            config,
            tls,
            pools: Mutex::default(),
        })
    }

    fn pool(&self, origin: Origin) -> Arc<Pool> {
        self.pools
            .lock()
            .entry(origin.clone())
            .or_insert_with(|| {
                Arc::new(Pool::new(
                    origin,
                    self.config.connections_per_host,
                    self.tls.clone(),
                ))
            })
            .clone()
    }

    /// Sends `request` (an absolute URI) and reads its answer, within the request
    /// deadline.
    pub async fn send(&self, request: Request<Vec<u8>>) -> Result<Answer, TransportError> {
        let origin = Origin::of(request.uri())?;
        let pool = self.pool(origin.clone());
        let timeout = self.config.request_timeout;
        match tokio::time::timeout(timeout, pool.send(request)).await {
            Ok(answer) => answer,
            Err(_) => Err(TransportError::Timeout {
                origin: origin.to_string(),
                millis: timeout.as_millis(),
            }),
        }
    }

    /// Open HTTP/2 connections to `url`'s origin (for tests and metrics).
    pub fn connections(&self, url: &str) -> usize {
        let Ok(uri) = url.parse::<http::Uri>() else {
            return 0;
        };
        let Ok(origin) = Origin::of(&uri) else {
            return 0;
        };
        self.pools
            .lock()
            .get(&origin)
            .map(|p| p.open_connections())
            .unwrap_or(0)
    }
}
