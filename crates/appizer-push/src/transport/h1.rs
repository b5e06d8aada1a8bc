//! HTTP/1.1 for a TLS server that did not choose h2: keep-alive connections, one request
//! at a time each, at most the pool's size open at once (more requests wait).

use std::sync::Arc;

use bytes::Bytes;
use http::header::HOST;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::tls::{connect, Stream};
use super::{Answer, Origin, TransportError, MAX_ANSWER_BYTES};

pub(super) struct H1Pool {
    origin: Origin,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    open: Semaphore,
}

impl H1Pool {
    pub(super) fn new(origin: Origin, most: usize) -> Self {
        Self {
            origin,
            idle: Mutex::default(),
            open: Semaphore::new(most.max(1)),
        }
    }

    fn failed(&self, e: impl std::fmt::Display) -> TransportError {
        TransportError::Protocol {
            origin: self.origin.to_string(),
            reason: e.to_string(),
        }
    }

    async fn connection(
        &self,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<SendRequest<Full<Bytes>>, TransportError> {
        loop {
            let Some(sender) = self.idle.lock().pop() else {
                break;
            };
            if !sender.is_closed() {
                return Ok(sender);
            }
        }
        let stream = match connect(&self.origin, tls).await? {
            Stream::Tls { stream, .. } => stream,
            Stream::Plain(_) => return Err(self.failed("HTTP/1.1 is used over TLS only")),
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.failed(e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    pub(super) async fn send(
        &self,
        request: Request<Vec<u8>>,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<Answer, TransportError> {
        let _slot = self.open.acquire().await.map_err(|e| self.failed(e))?;
        let mut sender = self.connection(tls).await?;
        let (mut parts, body) = request.into_parts();
        let authority = parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        parts.uri = path.parse::<Uri>().map_err(|e| self.failed(e))?;
        parts.headers.insert(
            HOST,
            authority.parse().map_err(|e| self.failed(format!("{e}")))?,
        );
        sender.ready().await.map_err(|e| self.failed(e))?;
        let answer = sender
            .send_request(Request::from_parts(parts, Full::new(Bytes::from(body))))
            .await
            .map_err(|e| self.failed(e))?;
        let (parts, body) = answer.into_parts();
        let body = Limited::new(body, MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|_| TransportError::AnswerTooLarge {
                origin: self.origin.to_string(),
            })?
            .to_bytes();
        self.idle.lock().push(sender);
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}
