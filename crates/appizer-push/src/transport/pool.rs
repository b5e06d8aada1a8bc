//! The connections to one origin.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::Request;
use parking_lot::Mutex;

use super::h1::H1Pool;
use super::tls::{connect, Stream};
use super::{Answer, Origin, TransportError, MAX_ANSWER_BYTES};

/// One HTTP/2 connection.
struct H2Conn {
    send: h2::client::SendRequest<Bytes>,
    /// Requests this pool has on it now.
    in_flight: AtomicUsize,
    /// Set when the connection's task ends (error, GOAWAY, closed).
    closed: Arc<AtomicBool>,
}

impl H2Conn {
    fn has_free_stream(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) < self.send.current_max_send_streams().max(1)
    }
}

/// Counts a request on a connection while it lives.
struct InFlight(Arc<H2Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) struct Pool {
    origin: Origin,
    most: usize,
    tls: Arc<rustls::ClientConfig>,
    h2: Mutex<Vec<Arc<H2Conn>>>,
    /// Held while a connection is being opened, so a burst opens one, not many.
    connecting: tokio::sync::Mutex<()>,
    /// Set once a TLS server chose HTTP/1.1: requests then go over `h1`.
    http1: AtomicBool,
    h1: H1Pool,
}

impl Pool {
    pub(super) fn new(origin: Origin, most: usize, tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            h1: H1Pool::new(origin.clone(), most),
            origin,
            most,
            tls,
            h2: Mutex::default(),
            connecting: tokio::sync::Mutex::new(()),
            http1: AtomicBool::new(false),
        }
    }

    pub(super) fn open_connections(&self) -> usize {
        let h2 = self.h2.lock();
        h2.iter()
            .filter(|c| !c.closed.load(Ordering::Relaxed))
            .count()
    }

    fn protocol_error(&self, e: impl std::fmt::Display) -> TransportError {
        TransportError::Protocol {
            origin: self.origin.to_string(),
            reason: e.to_string(),
        }
    }

    /// The least-loaded open connection with a free stream; with `or_any`, the
    /// least-loaded one even if it has none (the pool is full).
    fn pick(&self, or_any: bool) -> Option<InFlight> {
        let mut conns = self.h2.lock();
        conns.retain(|c| !c.closed.load(Ordering::Relaxed));
        let full = conns.len() >= self.most;
        let chosen = conns
            .iter()
            .filter(|c| (or_any && full) || c.has_free_stream())
            .min_by_key(|c| c.in_flight.load(Ordering::Relaxed))?
            .clone();
        chosen.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(InFlight(chosen))
    }

    async fn connection(&self) -> Result<InFlight, TransportError> {
        if let Some(conn) = self.pick(true) {
            return Ok(conn);
        }
        let _one = self.connecting.lock().await;
        // Another request may have opened one meanwhile.
        if let Some(conn) = self.pick(true) {
            return Ok(conn);
        }
        match connect(&self.origin, &self.tls).await? {
            Stream::Plain(tcp) => self.handshake(tcp).await,
            Stream::Tls { stream, h2: true } => self.handshake(stream).await,
            Stream::Tls { h2: false, .. } => {
                // The server chose HTTP/1.1: from now on this origin is reached over
                // the HTTP/1.1 pool (this one connection is dropped).
                self.http1.store(true, Ordering::Relaxed);
                Err(TransportError::NotHttp2 {
                    origin: self.origin.to_string(),
                })
            }
        }
    }

    async fn handshake<T>(&self, io: T) -> Result<InFlight, TransportError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, mut connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 22)
            .handshake::<T, Bytes>(io)
            .await
            .map_err(|e| self.protocol_error(e))?;
        let ping = connection.ping_pong();
        let closed = Arc::new(AtomicBool::new(false));
        let origin = self.origin.to_string();
        tokio::spawn({
            let closed = closed.clone();
            async move {
                if let Err(e) = connection.await {
                    tracing::debug!(%origin, error = %e, "push connection closed");
                }
                closed.store(true, Ordering::Relaxed);
            }
        });
        // The server's SETTINGS come before its answer to a PING: after the pong, the
        // connection knows how many streams the server allows.
        if let Some(mut ping) = ping {
            ping.ping(h2::Ping::opaque())
                .await
                .map_err(|e| self.protocol_error(e))?;
        }
        let conn = Arc::new(H2Conn {
            send,
            in_flight: AtomicUsize::new(1),
            closed,
        });
        self.h2.lock().push(conn.clone());
        Ok(InFlight(conn))
    }

    pub(super) async fn send(&self, request: Request<Vec<u8>>) -> Result<Answer, TransportError> {
        if self.http1.load(Ordering::Relaxed) {
            return self.h1.send(request, &self.tls).await;
        }
        // A stream the server refused (RST_STREAM REFUSED_STREAM, as when it lowers its
        // limit) was not processed: it is sent again, a few times.
        for _ in 0..3 {
            match self.send_h2(copy(&request)).await {
                Err(Attempt::Refused) => continue,
                Err(Attempt::Failed(e)) => return Err(e),
                Err(Attempt::Http1) => return self.h1.send(request, &self.tls).await,
                Ok(answer) => return Ok(answer),
            }
        }
        match self.send_h2(request).await {
            Ok(answer) => Ok(answer),
            Err(Attempt::Failed(e)) => Err(e),
            Err(_) => Err(self.protocol_error("the server refused the stream")),
        }
    }

    fn failed(&self, e: h2::Error) -> Attempt {
        if e.reason() == Some(h2::Reason::REFUSED_STREAM) {
            Attempt::Refused
        } else {
            Attempt::Failed(self.protocol_error(e))
        }
    }

    /// One attempt over HTTP/2.
    async fn send_h2(&self, request: Request<Vec<u8>>) -> Result<Answer, Attempt> {
        let conn = match self.connection().await {
            Ok(conn) => conn,
            Err(TransportError::NotHttp2 { .. }) => return Err(Attempt::Http1),
            Err(e) => return Err(Attempt::Failed(e)),
        };
        let (parts, body) = request.into_parts();
        let mut ready = conn
            .0
            .send
            .clone()
            .ready()
            .await
            .map_err(|e| self.failed(e))?;
        let end = body.is_empty();
        let (answer, mut stream) = ready
            .send_request(Request::from_parts(parts, ()), end)
            .map_err(|e| self.failed(e))?;
        if !end {
            stream
                .send_data(Bytes::from(body), true)
                .map_err(|e| self.failed(e))?;
        }
        let answer = answer.await.map_err(|e| self.failed(e))?;
        let (parts, mut body) = answer.into_parts();
        let mut read = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| self.failed(e))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if read.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(Attempt::Failed(TransportError::AnswerTooLarge {
                    origin: self.origin.to_string(),
                }));
            }
            read.extend_from_slice(&chunk);
        }
        drop(conn);
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: read.freeze(),
        })
    }
}

/// Why one HTTP/2 attempt got no answer.
enum Attempt {
    /// The server refused the stream unprocessed: safe to send again.
    Refused,
    /// The server chose HTTP/1.1.
    Http1,
    Failed(TransportError),
}

/// A copy of a request (method, URI, version, headers, body) to send again.
fn copy(request: &Request<Vec<u8>>) -> Request<Vec<u8>> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}
