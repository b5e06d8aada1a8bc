//! The Appizer server as a library: initialising a data directory, wiring storage and
//! the gateway, and serving until shut down. `main.rs` only parses the command line,
//! sets up logging, binds the listener and calls [`run`]; tests and benchmarks call the
//! same functions through [`testing::TestServer`].

pub mod backup;
pub mod init;
pub mod telemetry;
pub mod testing;

use std::sync::Arc;

use anyhow::Context;
use appizer_analytics::saved::SEGMENT_REFRESH;
use appizer_core::config::{Config, EventsLocation};
use appizer_core::health::{HealthRegistry, Policy};
use std::time::Duration;

use appizer_events::consumers::{Consumers, Sharing};
use appizer_events::feed::Feed;
use appizer_events::geoip::GeoIp;
use appizer_events::pipeline::PipelineConfig;
use appizer_events::warnings::WarningSink;
use appizer_gateway::server::{self, ServeOptions};
use appizer_gateway::state::{EventServices, PushServices};
use appizer_gateway::AppState;
use appizer_push::campaign::runner::Runner;
use appizer_push::campaign::service::Campaigns;
use appizer_push::campaign::triggers::TriggerTap;
use appizer_push::outbox::Outbox;
use appizer_storage::background::{cores, Background, BackgroundRuntime, Priority};
use appizer_storage::events::files::{FilesLocation, S3Settings};
use appizer_storage::events::{EventStore, EventStoreConfig};
use appizer_storage::queue::{
    DurableLog, EventQueue, LogConfig, NatsConfig, NatsQueue, Partitions, QueueBackend,
};
use appizer_storage::{open_metadata_store, MetadataStore};
use appizer_users::{Identity, IdentityConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use init::{initialize, FirstAdmin, InitError, InitOutput};

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

/// The push master key: `push.master_key`, or the key file in the data directory
/// (generated at first start).
pub fn open_master_key(config: &Config) -> anyhow::Result<appizer_push::credentials::MasterKey> {
    use appizer_push::credentials::MasterKey;
    let configured = config.push.master_key.expose();
    if configured.is_empty() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        Ok(MasterKey::load_or_create(&config.data_dir)?)
    } else {
        Ok(MasterKey::from_hex(configured)?)
    }
}

/// Where the Parquet event files live, as `events_url` and `[s3]` say.
pub fn files_location(config: &Config) -> FilesLocation {
    match config.events_location() {
        EventsLocation::Dir(dir) => FilesLocation::Dir(dir),
        EventsLocation::S3 { bucket, prefix } => FilesLocation::S3(S3Settings {
            bucket,
            prefix,
            endpoint: config.s3.endpoint.clone(),
            region: config.s3.region.clone(),
            access_key_id: config.s3.access_key_id.clone(),
            secret_access_key: config.s3.secret_access_key.clone(),
            path_style: config.s3.path_style,
            request_timeout: Duration::from_millis(config.s3.request_timeout_ms),
        }),
    }
}

/// Opens the durable event queue `ingest.queue_url` names: the embedded log (under
/// `data_dir/queue` unless the URL names a directory; one partition), or NATS
/// JetStream, one stream per partition (`ingest.nats.partitions`; the disk budget
/// shared evenly among them). The embedded log reads a backlog on `background`'s
/// threads.
pub async fn open_queue(config: &Config, background: &Background) -> anyhow::Result<Partitions> {
    let ingest = &config.ingest;
    match QueueBackend::from_url(ingest.queue_url.expose())? {
        QueueBackend::Log { dir } => {
            let log = DurableLog::open(LogConfig {
                segment_bytes: ingest.log.segment_bytes,
                max_disk_bytes: ingest.queue_max_disk_bytes,
                long_reads: Some(background.clone()),
                ..LogConfig::new(dir.unwrap_or_else(|| config.data_dir.join("queue")))
            })
            .context("cannot open the event queue")?;
            Ok(Partitions::single(Arc::new(log)))
        }
        QueueBackend::Nats { url } => {
            let count = ingest.nats.partitions.max(1);
            let mut streams: Vec<Arc<dyn EventQueue>> = Vec::with_capacity(count as usize);
            for partition in 0..count {
                let stream = match count {
                    1 => ingest.nats.stream.clone(),
                    _ => format!("{}-{partition}", ingest.nats.stream),
                };
                let nats = NatsQueue::open(NatsConfig {
                    replicas: ingest.nats.replicas,
                    max_disk_bytes: ingest.queue_max_disk_bytes / u64::from(count),
                    ..NatsConfig::new(url.clone(), stream)
                })
                .await
                .context("cannot open the NATS JetStream event queue")?;
                streams.push(Arc::new(nats));
            }
            tracing::info!(stream = %ingest.nats.stream, partitions = count, "event queue on NATS JetStream");
            Ok(Partitions::new(streams))
        }
    }
}

/// Every component of a running server: the gateway's state and the background tasks
/// (ingestion workers, warning writer) it relies on.
pub struct App {
    pub state: AppState,
    /// The campaign runner (its loop runs on the delivery threads).
    pub runner: Arc<Runner>,
    workers: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The push delivery loop's threads (below request handling).
    _delivery: BackgroundRuntime,
}

impl App {
    /// Opens the durable queue and the event store and starts what the node's roles
    /// run: the ingestion workers and segment refresh (`worker`), the push delivery
    /// loop and the campaign runner (`push`). Every node opens the queue (API nodes
    /// append to it) and reads the event files (query nodes answer from them).
    pub async fn open(mut config: Config, store: Arc<dyn MetadataStore>) -> anyhow::Result<Self> {
        let roles = config.node_roles();
        let queue_url = config.ingest.queue_url.expose();
        let shared_queue = queue_url.starts_with("nats://") || queue_url.starts_with("tls://");
        if !roles.is_all() || shared_queue {
            // The answer cache is keyed by the data versions this node's own writes
            // bump: right only where every write goes through this node (the whole
            // product on the embedded queue). On a shared queue other nodes write too.
            if config.analytics.result_cache_entries > 0 {
                tracing::info!("analytics answers are not cached: other nodes may write the events and persons they read");
            }
            config.analytics.result_cache_entries = 0;
        }
        if !roles.is_all() {
            tracing::info!(roles = %roles.names(), "this node runs some of the roles");
        }
        let ingest = &config.ingest;
        let priority = Priority {
            nice: ingest.worker_nice,
            idle: ingest.worker_sched_idle,
        };
        let background = Background::per_core("appizer-worker", priority)
            .context("cannot start the background threads")?;
        let queue = open_queue(&config, &background).await?;
        let master = open_master_key(&config)?;
        let events = Arc::new(
            EventStore::open(
                EventStoreConfig {
                    flush_rows: ingest.flush_rows,
                    flush_age: Duration::from_millis(ingest.flush_interval_ms),
                    background: background.clone(),
                    compression: ingest.parquet_compression,
                    key_compression: ingest.parquet_key_compression,
                    retire_grace: Duration::from_millis(ingest.retire_grace_ms),
                    ..EventStoreConfig::at(files_location(&config))
                },
                store.clone(),
            )
            .context("cannot open the event store")?,
        );
        tracing::info!(files = ?events, "event files");
        let geoip = match &ingest.geoip_database {
            Some(path) => Some(Arc::new(GeoIp::open(path)?)),
            None => None,
        };
        let workers = CancellationToken::new();
        let health = HealthRegistry::new();
        let (warnings, warning_task) = WarningSink::start(store.clone(), workers.clone());
        let identity = Arc::new(Identity::new(
            store.clone(),
            IdentityConfig {
                cache_entries: config.users.identity_cache_entries,
                max_distinct_ids_per_person: config.users.max_distinct_ids_per_person,
            },
        ));
        if roles.worker && queue.count() > 1 && roles.push {
            tracing::warn!("triggered campaigns need the queue in one partition; with ingest.nats.partitions above 1 none starts");
        }
        // The workers hand the campaign runner the events of triggered campaigns, when
        // both run here (and the queue has one partition: the tap follows one
        // partition's offsets).
        let tap = Arc::new(TriggerTap::default());
        let triggers_here = roles.worker && roles.push && queue.count() == 1;
        let feed = Feed::new(queue.count(), 4_096);
        let identity_config = IdentityConfig {
            cache_entries: config.users.identity_cache_entries,
            max_distinct_ids_per_person: config.users.max_distinct_ids_per_person,
        };
        // One node holding the one partition shares its identity with the persons API,
        // whose merges and splits account for the updates the workers hold; otherwise
        // each partition's workers gather their own (applied with their offsets).
        let shared_identity = queue.count() == 1 && roles.is_all();
        let pipelines: appizer_events::consumers::PipelineFactory = Arc::new({
            let (store, identity, feed, health, tap) = (
                store.clone(),
                identity.clone(),
                feed.clone(),
                health.clone(),
                tap.clone(),
            );
            let warnings = warnings.clone();
            let dedup_window = Duration::from_secs(ingest.dedup_window_hours * 3600);
            let compaction_interval = Duration::from_millis(ingest.compaction_interval_ms);
            move |_partition| PipelineConfig {
                dedup_window,
                compaction_interval,
                feed: feed.clone(),
                geoip: geoip.clone(),
                background: background.clone(),
                identity: Some(if shared_identity {
                    // What an earlier holding left unapplied is gathered again from
                    // the replay.
                    identity.forget_held();
                    identity.clone()
                } else {
                    Arc::new(Identity::new(store.clone(), identity_config))
                }),
                warnings: Some(warnings.clone()),
                health: health.clone(),
                tap: triggers_here.then(|| tap.clone() as _),
                ..PipelineConfig::default()
            }
        });
        // A queue on JetStream is shared: its partitions go by leases. The embedded log
        // is this node's own.
        let sharing = match QueueBackend::from_url(ingest.queue_url.expose())? {
            QueueBackend::Nats { .. } => Sharing::Leased,
            QueueBackend::Log { .. } => Sharing::Private,
        };
        let consumers = roles.worker.then(|| {
            Arc::new(Consumers::new(
                queue.clone(),
                events.clone(),
                store.leases(),
                Duration::from_millis(ingest.worker_lease_ms),
                sharing,
                pipelines,
                &health,
            ))
        });
        let analytics = Arc::new(appizer_analytics::Engine::new(
            events.clone(),
            store.clone(),
            config.analytics.clone(),
        ));
        let refresh_every = Duration::from_secs(config.analytics.segment_refresh_secs);
        let segments_task = tokio::spawn({
            let (analytics, workers) = (analytics.clone(), workers.clone());
            let reporter = health.register(SEGMENT_REFRESH, Policy::default());
            async move {
                if refresh_every.is_zero() || !roles.worker {
                    return;
                }
                loop {
                    tokio::select! {
                        _ = workers.cancelled() => break,
                        _ = tokio::time::sleep(refresh_every) => {}
                    }
                    let refreshed = analytics.refresh_all_segments(chrono::Utc::now()).await;
                    match reporter.report(refreshed) {
                        Ok(n) => tracing::debug!(segments = n, "dynamic segments refreshed"),
                        Err(e) => tracing::warn!(error = %e, "refreshing segments failed"),
                    }
                }
            }
        });
        let master = Arc::new(master);
        let outbox = Arc::new(
            Outbox::new(store.clone(), queue.clone(), master.clone(), &config.push)
                .context("cannot start push delivery")?,
        );
        let delivery = BackgroundRuntime::new("appizer-push", cores(), priority)
            .context("cannot start the push delivery threads")?;
        let delivery_task = {
            let loop_ = roles
                .push
                .then(|| delivery.handle().spawn(outbox.clone().run(workers.clone())));
            tokio::spawn(async move {
                if let Some(delivery) = loop_ {
                    if let Err(e) = delivery.await {
                        tracing::error!(error = %e, "the push delivery loop ended");
                    }
                }
            })
        };
        let campaigns = Arc::new(Campaigns::new(
            store.clone(),
            analytics.clone(),
            outbox.clone(),
        ));
        let runner = Arc::new(Runner::new(
            store.clone(),
            queue.clone(),
            campaigns.clone(),
            outbox.clone(),
            tap,
        ));
        // Triggered campaigns are armed before the workers replay unflushed events.
        if !triggers_here {
            if roles.push {
                tracing::warn!("triggered campaigns need the worker and push roles on one node; this node runs no workers, so it starts none");
            }
        } else if let Err(e) = runner.arm_triggers(chrono::Utc::now()).await {
            tracing::warn!(error = %e, "cannot arm triggered campaigns before the workers start; triggers of replayed events may be missed");
        }
        // A failed run gives its partition up and it is taken again, resuming from the
        // durable state; what it had buffered is replayed from the queue.
        let (first_pass, first_pass_done) = tokio::sync::oneshot::channel();
        let worker_task = tokio::spawn({
            let workers = workers.clone();
            async move {
                if let Some(consumers) = consumers {
                    consumers.run(workers, first_pass).await;
                }
            }
        });
        // The partitions this node takes at once are consumed, their duplicate windows
        // and counters rebuilt, before it serves.
        let _ = first_pass_done.await;
        let runner_task = roles
            .push
            .then(|| delivery.handle().spawn(runner.clone().run(workers.clone())));
        let runner_task = tokio::spawn(async move {
            if let Some(runner) = runner_task {
                if let Err(e) = runner.await {
                    tracing::error!(error = %e, "the campaign runner ended");
                }
            }
        });
        let limiter = appizer_gateway::rate_limit::RateLimiter::open(&config.rate_limit, &health)
            .await
            .context("cannot open the shared rate limits")?;
        let state = AppState::new(
            Arc::new(config),
            store,
            EventServices {
                queue,
                store: events,
                feed,
                warnings,
                identity,
                analytics,
                closing: CancellationToken::new(),
                health,
            },
            PushServices {
                master,
                campaigns,
                outbox,
            },
            Arc::new(limiter),
        );
        Ok(Self {
            state,
            runner,
            workers,
            tasks: vec![
                worker_task,
                warning_task,
                segments_task,
                delivery_task,
                runner_task,
            ],
            _delivery: delivery,
        })
    }

    /// Serves on `listener` until `shutdown` is cancelled; then in-flight requests get
    /// `server.shutdown_grace_ms` to finish, and the workers flush what they hold.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let config = self.state.config.clone();
        let tls = match (&config.tls.cert_path, &config.tls.key_path) {
            (Some(cert), Some(key)) => {
                Some(server::load_tls(cert, key).context("cannot load the TLS certificate")?)
            }
            _ => None,
        };
        let options = ServeOptions {
            max_connections: config.server.max_connections,
            header_read_timeout: Duration::from_millis(config.server.header_read_timeout_ms),
            shutdown_grace: Duration::from_millis(config.server.shutdown_grace_ms),
        };
        let store = self.state.store.clone();
        let closing = self.state.events.closing.clone();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            signal.cancelled().await;
            closing.cancel();
        });
        let app = appizer_gateway::router(self.state);
        server::serve(listener, app, tls, options, shutdown).await;
        self.workers.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        store.close().await;
        Ok(())
    }
}

/// Opens every component and serves on `listener` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    store: Arc<dyn MetadataStore>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    App::open(config, store)
        .await?
        .serve(listener, shutdown)
        .await
}
