//! The Appizer server as a library: initialising a data directory, wiring storage and
//! the gateway, and serving until shut down. `main.rs` only parses the command line,
//! sets up logging, binds the listener and calls [`run`]; tests and benchmarks call the
//! same functions through [`testing::TestServer`].

pub mod init;
pub mod telemetry;
pub mod testing;

use std::sync::Arc;

use anyhow::Context;
use appizer_core::config::Config;
use appizer_gateway::server::{self, ServeOptions};
use appizer_gateway::AppState;
use appizer_storage::{open_metadata_store, MetadataStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use init::{initialize, InitError, InitOutput};

/// Opens (creating and migrating) the metadata store the config names.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn MetadataStore>> {
    if config.database_url.is_empty() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    }
    open_metadata_store(&config.metadata_url())
        .await
        .context("cannot open the metadata store")
}

/// Serves every component on `listener` until `shutdown` is cancelled; in-flight
/// requests get `server.shutdown_grace_ms` to finish.
pub async fn run(
    config: Config,
    store: Arc<dyn MetadataStore>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tls = match (&config.tls.cert_path, &config.tls.key_path) {
        (Some(cert), Some(key)) => {
            Some(server::load_tls(cert, key).context("cannot load the TLS certificate")?)
        }
        _ => None,
    };
    let options = ServeOptions {
        max_connections: config.server.max_connections,
        header_read_timeout: std::time::Duration::from_millis(config.server.header_read_timeout_ms),
        shutdown_grace: std::time::Duration::from_millis(config.server.shutdown_grace_ms),
    };
    let app = appizer_gateway::router(AppState::new(Arc::new(config), store.clone()));
    server::serve(listener, app, tls, options, shutdown).await;
    store.close().await;
    Ok(())
}
