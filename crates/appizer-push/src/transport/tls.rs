//! Connecting: TCP, then TLS for `https` origins (the system's roots plus the extra CA
//! file; ALPN `h2`, `http/1.1`).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{Origin, TransportError};

/// A connected stream and whether it speaks HTTP/2.
pub(super) enum Stream {
    /// `http://`: HTTP/2 with prior knowledge.
    Plain(TcpStream),
    Tls {
        stream: Box<TlsStream<TcpStream>>,
        h2: bool,
    },
}

pub(super) fn client_config(
    ca_file: Option<&Path>,
) -> Result<rustls::ClientConfig, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    // A system without a CA bundle still reaches emulators and a configured CA.
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    if let Some(path) = ca_file {
        let failed = |reason: String| TransportError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
        let certs = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failed(e.to_string()))?;
        if certs.is_empty() {
            return Err(failed("it holds no PEM certificate".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| failed(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

pub(super) async fn connect(
    origin: &Origin,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Stream, TransportError> {
    let failed = |reason: String| TransportError::Connect {
        origin: origin.to_string(),
        reason,
    };
    let tcp = TcpStream::connect((origin.host.as_str(), origin.port))
        .await
        .map_err(|e| failed(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    if !origin.tls {
        return Ok(Stream::Plain(tcp));
    }
    let name = ServerName::try_from(origin.host.clone()).map_err(|e| failed(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| failed(format!("TLS: {e}")))?;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    Ok(Stream::Tls {
        stream: Box::new(stream),
        h2,
    })
}
