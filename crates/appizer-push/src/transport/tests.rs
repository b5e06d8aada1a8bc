use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::*;

/// What a test server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    now: AtomicUsize,
    most: AtomicUsize,
    requests: AtomicUsize,
}

/// An HTTP/2 (prior knowledge) server allowing `streams` concurrent streams per
/// connection; each request is answered after `delay` with its body echoed.
async fn h2_server(streams: u32, delay: Duration) -> (String, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    tokio::spawn({
        let seen = seen.clone();
        async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                seen.connections.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let now = seen.now.fetch_add(1, Ordering::SeqCst) + 1;
                            seen.most.fetch_max(now, Ordering::SeqCst);
                            seen.requests.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(delay).await;
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            seen.now.fetch_sub(1, Ordering::SeqCst);
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(body)))
                        }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .max_concurrent_streams(streams)
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        }
    });
    (base, seen)
}

fn transport(
    connections: usize,
    timeout_ms: u64,
    ca_file: Option<std::path::PathBuf>,
) -> Transport {
    Transport::new(TransportConfig {
        connections_per_host: connections,
        request_timeout: Duration::from_millis(timeout_ms),
        ca_file,
    })
    .unwrap()
}

fn post(url: &str, body: &str) -> Request<Vec<u8>> {
    Request::post(url).body(body.as_bytes().to_vec()).unwrap()
}

async fn burst(transport: &Arc<Transport>, base: &str, n: usize) {
    let sends = (0..n).map(|i| {
        let (transport, url) = (transport.clone(), format!("{base}/echo"));
        tokio::spawn(async move { transport.send(post(&url, &format!("m{i}"))).await })
    });
    for (i, send) in sends.collect::<Vec<_>>().into_iter().enumerate() {
        let answer = send.await.unwrap().unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, Bytes::from(format!("m{i}")));
    }
}

#[tokio::test]
async fn one_connection_never_carries_more_streams_than_the_server_allows() {
    let (base, seen) = h2_server(3, Duration::from_millis(50)).await;
    let transport = Arc::new(transport(1, 10_000, None));
    burst(&transport, &base, 20).await;
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    assert_eq!(seen.requests.load(Ordering::SeqCst), 20);
    assert_eq!(
        seen.most.load(Ordering::SeqCst),
        3,
        "streams in use at once"
    );
    assert_eq!(transport.connections(&base), 1);
}

#[tokio::test]
async fn a_full_connection_opens_another_up_to_the_pool_size() {
    let (base, seen) = h2_server(2, Duration::from_millis(100)).await;
    let transport = Arc::new(transport(3, 10_000, None));
    burst(&transport, &base, 30).await;
    assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
    assert_eq!(
        seen.most.load(Ordering::SeqCst),
        6,
        "3 connections x 2 streams"
    );
    // Idle again: the next requests reuse what is open.
    burst(&transport, &base, 4).await;
    assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_slow_server_is_a_timeout_and_a_closed_port_a_connect_error() {
    let (base, _) = h2_server(10, Duration::from_secs(5)).await;
    let transport = transport(1, 100, None);
    let timed_out = transport.send(post(&format!("{base}/x"), "")).await;
    assert!(
        matches!(timed_out, Err(TransportError::Timeout { .. })),
        "{timed_out:?}"
    );

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let refused = transport
        .send(post(&format!("http://127.0.0.1:{port}/x"), ""))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), "connect");
    assert_eq!(
        transport
            .send(post("ftp://127.0.0.1/x", ""))
            .await
            .unwrap_err(),
        TransportError::Url("ftp://127.0.0.1/x".into())
    );
}

/// A TLS server on `localhost` offering only `alpn`, answering its ALPN choice.
async fn tls_server(alpn: &[&[u8]]) -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = generated.cert.der().clone();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(generated.key_pair.serialize_der()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let answer = format!("{:?} {}", request.version(), request.uri().path());
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(answer))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (format!("https://localhost:{port}"), generated.cert.pem())
}

#[tokio::test]
async fn tls_trusts_the_extra_ca_file_and_falls_back_to_http1_when_h2_is_not_offered() {
    let dir = tempfile::tempdir().unwrap();
    for (alpn, version) in [
        (vec![b"h2".as_slice(), b"http/1.1"], "HTTP/2.0"),
        (vec![b"http/1.1".as_slice()], "HTTP/1.1"),
    ] {
        let (base, ca) = tls_server(&alpn).await;
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca).unwrap();
        let trusting = transport(2, 5_000, Some(ca_file));
        for _ in 0..3 {
            let answer = trusting
                .send(post(&format!("{base}/path"), "x"))
                .await
                .unwrap();
            assert_eq!(answer.body, Bytes::from(format!("{version} /path")));
        }
        let untrusting = transport(2, 5_000, None);
        let refused = untrusting.send(post(&format!("{base}/path"), "x")).await;
        assert!(
            matches!(&refused, Err(TransportError::Connect { reason, .. }) if reason.contains("TLS")),
            "{refused:?}"
        );
    }
    let missing = Transport::new(TransportConfig {
        connections_per_host: 1,
        request_timeout: Duration::from_secs(1),
        ca_file: Some(dir.path().join("none.pem")),
    });
    assert_eq!(missing.unwrap_err().kind(), "ca_file");
}
