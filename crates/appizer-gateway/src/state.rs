//! What every handler and middleware shares: config, the metadata store, the key cache,
//! the rate limiter and the metrics handle.

use std::sync::Arc;

use appizer_core::config::Config;
use appizer_events::feed::Feed;
use appizer_events::warnings::WarningSink;
use appizer_storage::events::EventStore;
use appizer_storage::queue::Partitions;
use appizer_storage::MetadataStore;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::KeyCache;
use crate::rate_limit::RateLimiter;

/// Cloned for every request by each middleware and extractor that takes the state, so
/// it is one shared allocation: a clone is one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The fields of [`AppState`], reached through it by `Deref`.
pub struct Shared {
    pub config: Arc<Config>,
    pub store: Arc<dyn MetadataStore>,
    pub keys: Arc<KeyCache>,
    pub limiter: Arc<RateLimiter>,
    pub metrics: PrometheusHandle,
    pub events: EventServices,
    pub push: PushServices,
}

/// What the push routes need besides the stores.
#[derive(Clone)]
pub struct PushServices {
    /// Provider secrets are sealed and opened with it.
    pub master: Arc<appizer_push::credentials::MasterKey>,
    /// Messages are queued here; its delivery loop runs beside the server.
    pub outbox: Arc<appizer_push::outbox::Outbox>,
    /// Campaigns: their definitions, actions, previews and test sends.
    pub campaigns: Arc<appizer_push::campaign::service::Campaigns>,
}

/// The event pipeline as the gateway uses it.
#[derive(Clone)]
pub struct EventServices {
    /// Accepted events are appended here, each to its partition; the answer waits for
    /// durability.
    pub queue: Partitions,
    /// The event store: stored events and what this node's workers buffer.
    pub store: Arc<EventStore>,
    /// Live stream, counters and progress of this node's workers.
    pub feed: Arc<Feed>,
    pub warnings: WarningSink,
    /// Identity resolution of the workers: the persons API forgets cached ids whose
    /// person it changes.
    pub identity: Arc<appizer_users::Identity>,
    /// Analytics queries over the event and person stores.
    pub analytics: Arc<appizer_analytics::Engine>,
    /// Cancelled when the server starts shutting down: long-lived answers (live
    /// streams) end so connections can drain.
    pub closing: tokio_util::sync::CancellationToken,
    /// What the background loops report: `/readyz` and `/metrics` read it.
    pub health: appizer_core::health::HealthRegistry,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn MetadataStore>,
        events: EventServices,
        push: PushServices,
        limiter: Arc<RateLimiter>,
    ) -> Self {
        Self(Arc::new(Shared {
            events,
            push,
            keys: Arc::new(KeyCache::new(&config.auth)),
            limiter,
            metrics: crate::metrics::prometheus_handle(),
            config,
            store,
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
