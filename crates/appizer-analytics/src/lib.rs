//! Analytics engine: trends, funnels, retention, stickiness and lifecycle over the event
//! store (Parquet files and the in-memory buffer, through DataFusion) and the person
//! store, plus read-only SQL for analysts.
//!
//! Every query is a JSON object ([`model`]) compiled to a DataFusion plan built from
//! expressions (never from user text pasted into SQL), scoped to one project by the
//! files and buffer it reads, evaluated in the project's time zone ([`time`]), with
//! person merges, splits and deletions applied ([`scope::Scope::actor`]). Plans filter,
//! bucket and aggregate; what needs each person's ordered events (funnels) or set of
//! active periods (retention, stickiness, lifecycle) streams the reduced rows into Rust.
//! Each query runs under a memory pool and a time limit from [`AnalyticsConfig`]: the
//! pool ([`pool`]) counts the plan's operators, the query's own structures
//! (`Scope::hold`) and the text its SQL functions build ([`charged`]). Parquet footers
//! and statistics are cached across queries, and answers by query and data version
//! (the event store's, person store's and definitions' change counters of this node,
//! and the minute).

pub mod activity;
mod charged;
pub mod formula;
pub mod funnel;
pub mod insight;
pub mod model;
pub mod pool;
pub mod retention;
pub mod saved;
pub mod scope;
pub mod sql;
pub mod stats;
pub mod time;
pub mod trends;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use appizer_core::config::AnalyticsConfig;
use appizer_storage::events::{EventStore, EventStoreError};
use appizer_storage::persons::PersonStore;
use appizer_storage::{MetadataStore, ProjectScope, StoreError};
use chrono::{DateTime, Utc};
use datafusion::error::DataFusionError;
use datafusion::execution::cache::cache_manager::{CacheManager, CacheManagerConfig};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

pub use model::*;
pub use pool::PeakPool;

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// The query is malformed: `field` names the part at fault, `rule` what it breaks.
    #[error("{field}: {rule}")]
    Invalid { field: String, rule: String },
    /// The query went past its memory or time limit.
    #[error("query limit reached: {0}")]
    Limit(String),
    #[error("person store: {0}")]
    Store(#[from] StoreError),
    #[error("event store: {0}")]
    Events(EventStoreError),
    #[error("query engine: {0}")]
    Engine(DataFusionError),
}

impl AnalyticsError {
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

impl From<DataFusionError> for AnalyticsError {
    fn from(e: DataFusionError) -> Self {
        match e.find_root() {
            DataFusionError::ResourcesExhausted(what) => Self::Limit(format!(
                "memory: {what}; narrow the query or raise analytics.query_memory_mb"
            )),
            _ => Self::Engine(e),
        }
    }
}

impl From<datafusion::arrow::error::ArrowError> for AnalyticsError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        Self::Engine(e.into())
    }
}

impl From<EventStoreError> for AnalyticsError {
    fn from(e: EventStoreError) -> Self {
        match e {
            EventStoreError::Query(e) => e.into(),
            other => Self::Events(other),
        }
    }
}

pub type Result<T, E = AnalyticsError> = std::result::Result<T, E>;

/// File caches every session of an engine shares.
fn shared_caches() -> CacheManagerConfig {
    let config = CacheManagerConfig::default();
    match CacheManager::try_new(&config) {
        Ok(manager) => config
            .clone()
            .with_file_metadata_cache(Some(manager.get_file_metadata_cache()))
            .with_file_statistics_cache(manager.get_file_statistic_cache()),
        Err(e) => {
            tracing::warn!(error = %e, "no shared Parquet metadata cache");
            config
        }
    }
}

/// The project a query reads (its scope), with its time zone (IANA name).
#[derive(Debug, Clone)]
pub struct QueryProject {
    pub scope: ProjectScope,
    pub timezone: String,
}

impl QueryProject {
    /// The project `scope` names, as its store lookup returned it.
    pub fn of(scope: ProjectScope, project: &appizer_core::tenancy::Project) -> Self {
        Self {
            scope,
            timezone: project.timezone.clone(),
        }
    }
}

/// Answers analytics queries for every project.
pub struct Engine {
    events: Arc<EventStore>,
    persons: Arc<dyn PersonStore>,
    /// Saved metrics and segments.
    meta: Arc<dyn MetadataStore>,
    config: AnalyticsConfig,
    last_peak: std::sync::atomic::AtomicUsize,
    /// Parquet footers, page indexes and file statistics, kept across queries (files
    /// never change once written: a rewrite is a new file).
    caches: CacheManagerConfig,
    results: ResultCache,
}

/// A cached answer, of whichever result type its query kind has.
type Answer = Arc<dyn std::any::Any + Send + Sync>;

/// Recent answers by query and data version, oldest evicted first.
#[derive(Default)]
struct ResultCache {
    entries: parking_lot::Mutex<(
        std::collections::HashMap<String, Answer>,
        std::collections::VecDeque<String>,
    )>,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub fn new(
        events: Arc<EventStore>,
        meta: Arc<dyn MetadataStore>,
        config: AnalyticsConfig,
    ) -> Self {
        Self {
            events,
            persons: meta.persons(),
            meta,
            config,
            last_peak: std::sync::atomic::AtomicUsize::new(0),
            caches: shared_caches(),
            results: ResultCache::default(),
        }
    }

    pub fn config(&self) -> &AnalyticsConfig {
        &self.config
    }

    /// A DataFusion session whose operators hold at most `query_memory_mb`, and the
    /// pool that counts what they hold.
    pub(crate) fn session(&self) -> Result<(SessionContext, Arc<PeakPool>)> {
        let pool = Arc::new(PeakPool::new(self.config.query_memory_mb.max(1) << 20));
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(pool.clone())
            .with_cache_manager(self.caches.clone())
            .build_arc()?;
        let mut config = SessionConfig::new()
            .with_information_schema(false)
            .with_batch_size(8192);
        // Late materialisation: columns of rows a filter drops are not decoded.
        let parquet = &mut config.options_mut().execution.parquet;
        parquet.pushdown_filters = true;
        parquet.reorder_filters = true;
        Ok((SessionContext::new_with_config_rt(config, runtime), pool))
    }

    /// The most memory the operators of the last finished query held at once, in
    /// bytes (also exported as `appizer_query_memory_peak_bytes`).
    pub fn last_query_peak_bytes(&self) -> usize {
        self.last_peak.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn record_peak(&self, bytes: usize) {
        self.last_peak
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
        metrics::histogram!("appizer_query_memory_peak_bytes").record(bytes as f64);
    }

    /// Runs `work` under the query time limit.
    async fn limited<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        let limit = Duration::from_millis(self.config.query_timeout_ms.max(1));
        match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) => Err(AnalyticsError::Limit(format!(
                "time: the query ran past {} ms (analytics.query_timeout_ms)",
                limit.as_millis()
            ))),
        }
    }

    /// The answer of `work` for `query`, from the cache when nothing it reads changed
    /// (events, persons, definitions) within the same minute.
    async fn cached<T: Clone + Send + Sync + 'static>(
        &self,
        kind: &str,
        project: &QueryProject,
        query: &impl serde::Serialize,
        now: DateTime<Utc>,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        use std::sync::atomic::Ordering;
        let capacity = self.config.result_cache_entries;
        if capacity == 0 {
            return self.limited(work).await;
        }
        // Versions are read before the work: a change during it makes a new key.
        let key = format!(
            "{kind}|{}|{}|{}|{}|{}|{}|{}",
            project.scope.project(),
            project.timezone,
            self.events.version(),
            self.persons.version(),
            self.meta.definitions_version(),
            now.timestamp().div_euclid(60),
            serde_json::to_string(query).unwrap_or_default()
        );
        let found = self.results.entries.lock().0.get(&key).cloned();
        if let Some(answer) = found.and_then(|a| a.downcast::<T>().ok()) {
            self.results.hits.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("appizer_query_cache_hits_total").increment(1);
            return Ok((*answer).clone());
        }
        self.results.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("appizer_query_cache_misses_total").increment(1);
        let answer = self.limited(work).await?;
        let mut entries = self.results.entries.lock();
        let (map, order) = &mut *entries;
        if map.insert(key.clone(), Arc::new(answer.clone())).is_none() {
            order.push_back(key);
        }
        while order.len() > capacity {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
        Ok(answer)
    }

    /// Answers served from the cache, and computed, so far.
    pub fn cache_stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        (
            self.results.hits.load(Ordering::Relaxed),
            self.results.misses.load(Ordering::Relaxed),
        )
    }

    pub async fn trends(
        &self,
        project: &QueryProject,
        query: &TrendsQuery,
        now: DateTime<Utc>,
    ) -> Result<TrendsResult> {
        self.cached(
            "trends",
            project,
            query,
            now,
            trends::run(self, project, query, now),
        )
        .await
    }

    /// The persons behind one value of a trends answer.
    pub async fn trends_persons(
        &self,
        project: &QueryProject,
        query: &TrendsPersonsQuery,
        now: DateTime<Utc>,
    ) -> Result<TrendsPersons> {
        self.limited(trends::persons(self, project, query, now))
            .await
    }

    pub async fn funnel(
        &self,
        project: &QueryProject,
        query: &FunnelQuery,
        now: DateTime<Utc>,
    ) -> Result<FunnelResult> {
        self.cached(
            "funnel",
            project,
            query,
            now,
            funnel::run(self, project, query, now),
        )
        .await
    }

    /// The persons who reached the step before `step` (0-based) but not `step`.
    pub async fn funnel_dropped(
        &self,
        project: &QueryProject,
        query: &FunnelQuery,
        step: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<appizer_core::PersonId>> {
        self.limited(funnel::dropped(self, project, query, step, now))
            .await
    }

    pub async fn retention(
        &self,
        project: &QueryProject,
        query: &RetentionQuery,
        now: DateTime<Utc>,
    ) -> Result<RetentionResult> {
        self.limited(retention::run(self, project, query, now))
            .await
    }

    pub async fn stickiness(
        &self,
        project: &QueryProject,
        query: &StickinessQuery,
        now: DateTime<Utc>,
    ) -> Result<StickinessResult> {
        self.cached(
            "stickiness",
            project,
            query,
            now,
            activity::stickiness(self, project, query, now),
        )
        .await
    }

    pub async fn lifecycle(
        &self,
        project: &QueryProject,
        query: &LifecycleQuery,
        now: DateTime<Utc>,
    ) -> Result<LifecycleResult> {
        self.cached(
            "lifecycle",
            project,
            query,
            now,
            activity::lifecycle(self, project, query, now),
        )
        .await
    }

    /// Read-only SQL over the project's `events` and `persons`.
    pub async fn sql(&self, project: &QueryProject, text: &str) -> Result<sql::SqlResult> {
        self.limited(sql::run(self, project, text)).await
    }

    /// The optimized plan of an SQL query or of a trends query.
    pub async fn explain(
        &self,
        project: &QueryProject,
        request: &sql::ExplainRequest,
        now: DateTime<Utc>,
    ) -> Result<sql::ExplainResult> {
        self.limited(sql::explain(self, project, request, now))
            .await
    }
}
