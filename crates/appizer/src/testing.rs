//! `TestServer`: a real Appizer server on `127.0.0.1:0` over a temporary data dir,
//! initialised, for tests and benchmarks. It never touches the process environment.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use appizer_core::config::Config;
use appizer_gateway::AppState;
use appizer_push::campaign::runner::Runner;
use appizer_storage::MetadataStore;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::init::{initialize, FirstAdmin, InitOutput};

/// The first admin member of a test server signs in with these.
pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "test admin password";

/// A running server and the keys `init` gave it.
pub struct TestServer {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT` (or `https://localhost:PORT` with TLS configured).
    pub base_url: String,
    pub keys: InitOutput,
    pub store: Arc<dyn MetadataStore>,
    /// The state the server runs with (its queue, pipeline, caches).
    pub state: AppState,
    /// The campaign runner, which a test may also step at a time of its choosing.
    pub runner: Arc<Runner>,
    pub config: Config,
    /// The temporary data dir, when the server made one.
    pub temp_dir: Option<tempfile::TempDir>,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    /// Starts a server with [`Config::for_tests`].
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server with [`Config::for_tests`] changed by `configure`, on a new
    /// temporary data dir unless `configure` names one, initialising it.
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> Self {
        let (config, temp_dir, store) = Self::prepare(configure).await;
        let admin = FirstAdmin {
            email: ADMIN_EMAIL.into(),
            password: Some(ADMIN_PASSWORD.into()),
        };
        let keys = initialize(store.as_ref(), &admin)
            .await
            .expect("initialise");
        Self::launch(config, store, keys, Some(temp_dir)).await
    }

    /// Starts another node beside a running one whose keys were `keys`: `configure`
    /// points it at the same shared services (`database_url`, `rate_limit.shared_url`,
    /// ...); it gets its own temporary data dir and initialises nothing.
    pub async fn join(keys: InitOutput, configure: impl FnOnce(&mut Config)) -> Self {
        let (config, temp_dir, store) = Self::prepare(configure).await;
        Self::launch(config, store, keys, Some(temp_dir)).await
    }

    /// [`Config::for_tests`] on a new temporary data dir, changed by `configure`, and
    /// the store it names.
    async fn prepare(
        configure: impl FnOnce(&mut Config),
    ) -> (Config, tempfile::TempDir, Arc<dyn MetadataStore>) {
        let temp_dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::for_tests();
        config.data_dir = temp_dir.path().to_path_buf();
        configure(&mut config);
        let store = crate::open_store(&config).await.expect("open the store");
        (config, temp_dir, store)
    }

    /// Starts a server again on the initialised `data_dir` of a stopped one, whose
    /// keys were `keys`.
    pub async fn restart(data_dir: &Path, keys: InitOutput) -> Self {
        let mut config = Config::for_tests();
        config.data_dir = data_dir.to_path_buf();
        let store = crate::open_store(&config).await.expect("open the store");
        Self::launch(config, store, keys, None).await
    }

    async fn launch(
        config: Config,
        store: Arc<dyn MetadataStore>,
        keys: InitOutput,
        temp_dir: Option<tempfile::TempDir>,
    ) -> Self {
        let listener = TcpListener::bind(config.server.listen).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let base_url = if config.tls_enabled() {
            format!("https://localhost:{}", addr.port())
        } else {
            format!("http://{addr}")
        };
        let shutdown = CancellationToken::new();
        let app = crate::App::open(config.clone(), store.clone())
            .await
            .expect("open the app");
        let state = app.state.clone();
        let runner = app.runner.clone();
        let task = tokio::spawn(app.serve(listener, shutdown.clone()));
        Self {
            addr,
            base_url,
            keys,
            store,
            state,
            runner,
            config,
            temp_dir,
            shutdown,
            task,
        }
    }

    /// `base_url` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// The data dir the server runs on.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// The token that starts a graceful shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Asks the server to shut down gracefully and waits until it has.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("server task panicked")
            .expect("server failed");
    }
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}
