//! Layered configuration: defaults, then `appizer.toml` (or `--config FILE`), then
//! `APPIZER_*` environment variables (`__` separates nesting levels), then command-line
//! flags applied by the binary. Unknown keys are errors that name the key.
//!
//! The loader takes the environment as an argument; nothing here reads the process
//! environment, so tests never have to mutate it.
//!
//! The sections and their defaults are here; `load` reads and checks the layers;
//! `default_file` prints the commented example file with every key.

mod default_file;
mod load;
#[cfg(test)]
mod tests;

pub use default_file::default_toml;
pub use load::ConfigError;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::secret::SecretString;

/// Environment variable prefix for configuration.
pub const ENV_PREFIX: &str = "APPIZER_";
/// Variables with these names or prefixes are not configuration and are skipped.
/// (`APPIZER_ADMIN_*` are the first admin member's email and password, read by `init`
/// and a first `serve`.)
pub const ENV_RESERVED: [&str; 4] = [
    "APPIZER_CONFIG",
    "APPIZER_LOG",
    "APPIZER_TEST_",
    "APPIZER_ADMIN_",
];
/// File read when no `--config` is given, if it exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "appizer.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where embedded storage lives (metadata database, later queue and event files).
    pub data_dir: PathBuf,
    /// Metadata store: empty = SQLite file `metadata.db` in `data_dir`;
    /// `sqlite://PATH` or `postgres://USER@HOST/DB`.
    pub database_url: SecretString,
    /// Where the Parquet event files live: empty = `data_dir/events`; `file:///PATH` =
    /// that directory (every worker and query node of a deployment names the same);
    /// `s3://BUCKET[/PREFIX]` = an S3-compatible object store (`[s3]`).
    pub events_url: String,
    /// What this node runs: `all`, or some of `api` (ingestion and management
    /// routes), `worker` (the queue's consumers: Parquet, persons, segments), `query`
    /// (analytics queries, `/api/v1/projects/{id}/query/...`) and `push` (delivery
    /// and campaigns). A node of a split deployment needs the shared services:
    /// `database_url` on PostgreSQL and `ingest.queue_url` on NATS.
    pub roles: Vec<NodeRole>,
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub rate_limit: RateLimitConfig,
    pub ingest: IngestConfig,
    pub users: UsersConfig,
    pub analytics: AnalyticsConfig,
    pub push: PushConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub s3: S3Config,
}

/// Where the Parquet event files live (`events_url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsLocation {
    /// A directory.
    Dir(PathBuf),
    /// Objects under `prefix` (no leading or trailing `/`; may be empty) in an
    /// S3-compatible bucket, reached as `[s3]` says.
    S3 { bucket: String, prefix: String },
}

/// `[s3]`: the S3-compatible object store of an `s3://` `events_url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// The service's base URL; empty: AWS (`https://s3.<region>.amazonaws.com`).
    /// `http://` only for a service on a trusted network.
    pub endpoint: String,
    pub region: String,
    /// Empty: the `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` environment variables,
    /// then the instance's role.
    pub access_key_id: SecretString,
    pub secret_access_key: SecretString,
    /// Path-style requests (`ENDPOINT/BUCKET/KEY`), as most S3-compatible services
    /// want; `false`: virtual-hosted style (`BUCKET.ENDPOINT/KEY`), as AWS prefers.
    pub path_style: bool,
    /// A request not answered within this time fails (and is retried, with backoff,
    /// by the next flush or compaction).
    pub request_timeout_ms: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id: SecretString::default(),
            secret_access_key: SecretString::default(),
            path_style: false,
            request_timeout_ms: 30_000,
        }
    }
}

/// One of the roles a node runs (`roles`, `serve --role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    All,
    Api,
    Worker,
    Query,
    Push,
}

impl NodeRole {
    pub fn name(self) -> &'static str {
        match self {
            NodeRole::All => "all",
            NodeRole::Api => "api",
            NodeRole::Worker => "worker",
            NodeRole::Query => "query",
            NodeRole::Push => "push",
        }
    }
}

impl std::str::FromStr for NodeRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [
            NodeRole::All,
            NodeRole::Api,
            NodeRole::Worker,
            NodeRole::Query,
            NodeRole::Push,
        ]
        .into_iter()
        .find(|r| r.name() == s)
        .ok_or_else(|| format!("`{s}` is not a role: all, api, worker, query or push"))
    }
}

/// The roles a node runs, each on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub worker: bool,
    pub query: bool,
    pub push: bool,
}

impl Roles {
    pub fn of(roles: &[NodeRole]) -> Self {
        let has = |r: NodeRole| roles.contains(&NodeRole::All) || roles.contains(&r);
        Self {
            api: has(NodeRole::Api),
            worker: has(NodeRole::Worker),
            query: has(NodeRole::Query),
            push: has(NodeRole::Push),
        }
    }

    /// Every role: one process is the whole product.
    pub fn is_all(&self) -> bool {
        self.api && self.worker && self.query && self.push
    }

    /// `api,worker`, ... (for logs and errors).
    pub fn names(&self) -> String {
        let names: Vec<&str> = [
            (self.api, "api"),
            (self.worker, "worker"),
            (self.query, "query"),
            (self.push, "push"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        names.join(",")
    }
}

/// `[push]`: push delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// The key provider credentials are sealed under: 64 hex characters. Empty: the
    /// key in `data_dir/push-master.key`, generated at first start.
    pub master_key: SecretString,
    /// APNs base URL; empty: Apple's production or sandbox host, as each project's
    /// credentials say. `http://` (HTTP/2 with prior knowledge) reaches an emulator.
    pub apns_url: String,
    /// FCM HTTP v1 base URL (the access token comes from the service account's
    /// `token_uri`).
    pub fcm_url: String,
    /// Hosts (or `*.suffix`) Web Push endpoints may point at; nothing else is fetched.
    /// `https` only, but for `127.0.0.1`, `localhost` and `[::1]` when listed here.
    pub webpush_allowed_hosts: Vec<String>,
    /// A PEM file of extra CA certificates trusted for provider connections, besides
    /// the system's (a provider reached through a private CA).
    pub ca_file: Option<PathBuf>,
    /// HTTP/2 connections at most per provider host; a new one opens only when every
    /// open one carries as many streams as its server allows.
    pub connections_per_host: usize,
    /// A provider request not answered within this time is retried.
    pub request_timeout_ms: u64,
    /// Deliveries in flight at most, per provider.
    pub concurrency: usize,
    /// Outbox records the delivery loop takes at a time.
    pub batch_size: usize,
    /// Attempts at most per delivery before it fails for good (`attempts_exhausted`).
    pub max_attempts: u32,
    /// The first retry waits about this long; each further one twice as long (with
    /// jitter), at most `retry_max_ms`, and never less than a `Retry-After`.
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
}

/// The push services of Chrome, Edge, Firefox and Safari.
pub const DEFAULT_WEBPUSH_HOSTS: [&str; 5] = [
    "fcm.googleapis.com",
    "*.notify.windows.com",
    "updates.push.services.mozilla.com",
    "web.push.apple.com",
    "*.push.apple.com",
];

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            master_key: SecretString::default(),
            apns_url: String::new(),
            fcm_url: "https://fcm.googleapis.com".into(),
            webpush_allowed_hosts: DEFAULT_WEBPUSH_HOSTS.map(String::from).to_vec(),
            ca_file: None,
            connections_per_host: 4,
            request_timeout_ms: 30_000,
            concurrency: 512,
            batch_size: 1000,
            max_attempts: 10,
            retry_min_ms: 1000,
            retry_max_ms: 600_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsersConfig {
    /// Distinct ids the identity cache holds per generation; it holds up to twice this
    /// (about 100 bytes per id).
    pub identity_cache_entries: usize,
    /// An identify or alias that would give a person more distinct ids is refused
    /// (with an ingestion warning).
    pub max_distinct_ids_per_person: usize,
}

impl Default for UsersConfig {
    fn default() -> Self {
        Self {
            identity_cache_entries: 1_000_000,
            max_distinct_ids_per_person: 1_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// Memory one query may hold for sorting, grouping and joining (MiB); past it the
    /// query fails with 422 rather than the server growing.
    pub query_memory_mb: usize,
    /// Longest a query may run (ms); past it the query is cancelled with 422.
    pub query_timeout_ms: u64,
    /// Rows an SQL query may return.
    pub sql_max_rows: usize,
    /// Bytes of JSON an SQL answer's rows may hold: the rows up to it are answered, with
    /// `truncated`; a first row larger than this is a 422.
    pub sql_max_answer_bytes: usize,
    /// Dynamic segments are recomputed this often (seconds; 0 turns it off). They are
    /// also recomputed when saved and on `POST .../segments/{id}/refresh`.
    pub segment_refresh_secs: u64,
    /// Answers kept for repeated queries (0 turns the cache off). An answer is reused
    /// while no event, person or definition changed through this node, within the same
    /// minute; with several nodes writing, turn it off.
    pub result_cache_entries: usize,
    /// Counts of events (trends series with math `total` and no property, segment or
    /// breakdown condition, over a range of whole quarter hours) come from the counts
    /// per event name and quarter hour each Parquet file keeps in its footer, plus the
    /// buffered rows, instead of a scan. Off: every query scans.
    pub rollups: bool,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            query_memory_mb: 1024,
            query_timeout_ms: 30_000,
            sql_max_rows: 10_000,
            sql_max_answer_bytes: 32 << 20,
            segment_refresh_secs: 300,
            result_cache_entries: 256,
            rollups: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Open connections at most; further connections wait to be accepted.
    pub max_connections: usize,
    /// Largest management request body, in bytes.
    pub max_body_bytes: usize,
    /// A request taking longer is answered 503 `unavailable`.
    pub request_timeout_ms: u64,
    /// A connection that takes longer to send a request's headers (including an idle
    /// keep-alive connection) is closed, so idle clients cannot hold every slot.
    pub header_read_timeout_ms: u64,
    /// On SIGINT/SIGTERM, in-flight requests get this long to finish.
    pub shutdown_grace_ms: u64,
    /// A live event stream ends after this many seconds (the client reconnects); it
    /// also ends, within `auth.key_cache_ttl_ms`, once its key is revoked.
    pub max_stream_secs: u64,
    /// The address people open the dashboard at (`https://appizer.example.com`), when
    /// it is not the address the request names (`Host`): invitation links start with
    /// it, and writes from a signed-in page must come from it or from the `Host`.
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; with `key_path`, the server speaks HTTPS only.
    pub cert_path: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained management requests per second, per key.
    pub api_per_second: u32,
    /// Management requests a key may make at once before the sustained rate applies.
    pub api_burst: u32,
    /// Sustained ingestion requests per second, per write key.
    pub ingest_per_second: u32,
    /// Ingestion burst per write key.
    pub ingest_burst: u32,
    /// Where the buckets live, chosen by scheme: empty = in this process (each node
    /// limits on its own); `redis://HOST:PORT[/DB]` = in Redis, shared by every node
    /// pointed at it (while it is unreachable, each node falls back to its own).
    pub shared_url: SecretString,
    /// Settings of the buckets in Redis.
    pub redis: RedisLimitConfig,
}

/// `[rate_limit.redis]`: the shared buckets in Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisLimitConfig {
    /// A request's decision waits this long for Redis, then is taken locally.
    pub timeout_ms: u64,
    /// After Redis failed, this node decides locally for this long before trying again.
    pub retry_ms: u64,
    /// Prefix of every key this node writes in Redis.
    pub key_prefix: String,
}

impl Default for RedisLimitConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 50,
            retry_ms: 1_000,
            key_prefix: "appizer:rl:".into(),
        }
    }
}

/// Schemes `rate_limit.shared_url` may have (besides empty: buckets in the process).
pub const SHARED_LIMIT_SCHEMES: [&str; 1] = ["redis://"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest ingestion request body, compressed or not, in bytes.
    pub max_body_bytes: usize,
    /// Peers whose `X-Forwarded-For` is believed (load balancers, reverse proxies).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The durable queue, chosen by scheme: empty or `file:` = the embedded log in
    /// `data_dir/queue` (`file:///path` = in that directory); `nats://HOST:PORT`
    /// (comma-separated for a cluster; `tls://` for TLS) = a NATS JetStream stream,
    /// shared by every node pointed at it.
    pub queue_url: SecretString,
    /// The durable queue refuses new events (503) while its records take more than this
    /// (the embedded log's disk also holds the current segment's unwritten rest and up
    /// to two spare segments: at most three times `log.segment_bytes` more).
    pub queue_max_disk_bytes: u64,
    /// Settings of the embedded log.
    pub log: LogQueueConfig,
    /// Settings of the queue on NATS JetStream.
    pub nats: NatsQueueConfig,
    /// Buffered events that trigger a flush to Parquet.
    pub flush_rows: usize,
    /// Age of the oldest buffered event that triggers a flush to Parquet.
    pub flush_interval_ms: u64,
    /// A message id seen again within this many hours is dropped (at least 24).
    pub dedup_window_hours: u64,
    /// A MaxMind-format City database (GeoIP2 / GeoLite2 `.mmdb`): events get
    /// `context.location` (country, region, city) from the client IP.
    pub geoip_database: Option<PathBuf>,
    /// Niceness added to the threads that decode, enrich and write events to Parquet
    /// (0 to 19; 19 by default). Above 0, when the CPU is short, request handling goes
    /// first and acknowledged events wait, durable, in the queue (bounded by
    /// `queue_max_disk_bytes`); when it is idle they get every core. 0 runs them at the
    /// gateway's priority.
    pub worker_nice: i32,
    /// On Linux, also run those threads under the `SCHED_IDLE` policy (the default):
    /// they use only CPU no other thread wants and give a core back as soon as a request
    /// thread wakes, where a nice thread may keep it for the rest of its time slice
    /// (milliseconds). Niceness then no longer orders them against request handling.
    pub worker_sched_idle: bool,
    /// Codec of the Parquet event files: `zstd` (the default: smallest files),
    /// `lz4_raw` or `snappy` (about 37 % larger files that decode faster, so scans are
    /// quicker). Files already written keep theirs; every reader reads them all.
    pub parquet_compression: ParquetCompression,
    /// Codec of the columns nearly every query reads (`timestamp`, `event`,
    /// `distinct_id`, `person_id`): `lz4_raw` by default, which decodes several times
    /// faster than zstd for about 8 % more disk in all.
    pub parquet_key_compression: ParquetCompression,
    /// A worker holds each queue partition it consumes under a lease in the metadata
    /// store, renewed every third of this; a worker that stops renewing (killed, paused,
    /// cut off) loses its partitions this long after its last renewal, and the others
    /// take them over. Its writes after that are refused.
    pub worker_lease_ms: u64,
    /// How often the workers compact a partition's small files (and collect its stray
    /// ones).
    pub compaction_interval_ms: u64,
    /// Files compaction replaced stay on disk this long for queries that listed them
    /// just before; uncatalogued files younger than this are left alone (a query on
    /// another node may still read a replaced one).
    pub retire_grace_ms: u64,
}

/// `[ingest.log]`: the embedded log's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogQueueConfig {
    /// Size of a segment file: allocated in full when it starts, closed when full.
    pub segment_bytes: u64,
}

impl Default for LogQueueConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
        }
    }
}

/// `[ingest.nats]`: the JetStream queue's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsQueueConfig {
    /// The JetStream stream's name (letters, digits, `_`, `-`); created when missing.
    pub stream: String,
    /// Copies JetStream keeps of each record: 1, or 3 on a cluster.
    pub replicas: usize,
    /// Partitions of the queue, one stream each (`<stream>-<k>`; with one, the stream
    /// is `stream` itself). A person's events all go to one partition, and each
    /// partition is consumed by one worker at a time, so this bounds how many workers
    /// share the ingestion. Fixed once events are queued.
    pub partitions: u32,
}

impl Default for NatsQueueConfig {
    fn default() -> Self {
        Self {
            stream: "APPIZER_EVENTS".into(),
            replicas: 1,
            partitions: 1,
        }
    }
}

/// Most partitions the queue may have (`ingest.nats.partitions`).
pub const MAX_PARTITIONS: u32 = 1024;

/// The schemes `ingest.queue_url` may have (or be empty).
pub const QUEUE_SCHEMES: [&str; 3] = ["file:", "nats://", "tls://"];

/// Whether `name` can name the queue's JetStream stream: letters, digits, `_` and `-`
/// (JetStream forbids dots, wildcards and spaces; the subject is built from it).
pub fn is_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Codecs the event store writes Parquet files with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParquetCompression {
    /// Zstandard, level 1.
    #[default]
    Zstd,
    Lz4Raw,
    Snappy,
}

impl ParquetCompression {
    pub const ALL: [Self; 3] = [Self::Zstd, Self::Lz4Raw, Self::Snappy];

    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Zstd => "zstd",
            Self::Lz4Raw => "lz4_raw",
            Self::Snappy => "snappy",
        }
    }
}

impl std::str::FromStr for ParquetCompression {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| format!("`{name}`: expected zstd, lz4_raw or snappy"))
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: crate::event::MAX_BATCH_BYTES,
            trusted_proxies: Vec::new(),
            queue_url: SecretString::default(),
            queue_max_disk_bytes: 10 << 30,
            log: LogQueueConfig::default(),
            nats: NatsQueueConfig::default(),
            flush_rows: 50_000,
            flush_interval_ms: 10_000,
            dedup_window_hours: 24,
            geoip_database: None,
            worker_nice: 19,
            worker_sched_idle: true,
            parquet_compression: ParquetCompression::Zstd,
            parquet_key_compression: ParquetCompression::Lz4Raw,
            worker_lease_ms: 10_000,
            compaction_interval_ms: 300_000,
            retire_grace_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How long a key lookup is cached. Revocation through this node takes effect at
    /// once; through another node (shared PostgreSQL), within this time plus one read
    /// of the key (at most twice this time): when a lookup expires, one request reads
    /// the key again while the others keep the expired answer.
    pub key_cache_ttl_ms: u64,
    /// Cached key lookups at most (known and unknown keys).
    pub key_cache_capacity: usize,
    /// A dashboard session ends this long after sign-in, however it is used.
    pub session_ttl_hours: u64,
    /// A session unused this long ends.
    pub session_idle_hours: u64,
    /// An invitation link works this long.
    pub invite_ttl_hours: u64,
    /// Sign-in attempts per account allowed in a row before it waits: the allowance
    /// refills by one every `sign_in_refill_seconds`.
    pub sign_in_attempts_per_account: u32,
    /// Sign-in attempts per client address allowed in a row, refilled likewise.
    pub sign_in_attempts_per_address: u32,
    pub sign_in_refill_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `appizer=debug,info`.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./appizer-data"),
            database_url: SecretString::default(),
            events_url: String::new(),
            roles: vec![NodeRole::All],
            server: ServerConfig::default(),
            tls: TlsConfig::default(),
            rate_limit: RateLimitConfig::default(),
            ingest: IngestConfig::default(),
            users: UsersConfig::default(),
            analytics: AnalyticsConfig::default(),
            push: PushConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
            s3: S3Config::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_connections: 10_000,
            max_body_bytes: 256 * 1024,
            request_timeout_ms: 30_000,
            header_read_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
            max_stream_secs: 3_600,
            public_url: None,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            api_per_second: 50,
            api_burst: 100,
            ingest_per_second: 5_000,
            ingest_burst: 10_000,
            shared_url: SecretString::default(),
            redis: RedisLimitConfig::default(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            key_cache_ttl_ms: 5_000,
            key_cache_capacity: 100_000,
            session_ttl_hours: 14 * 24,
            session_idle_hours: 3 * 24,
            invite_ttl_hours: 7 * 24,
            sign_in_attempts_per_account: 5,
            sign_in_attempts_per_address: 30,
            sign_in_refill_seconds: 60,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}
