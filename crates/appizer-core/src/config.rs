//! Layered configuration: defaults, then `appizer.toml` (or `--config FILE`), then
//! `APPIZER_*` environment variables (`__` separates nesting levels), then command-line
//! flags applied by the binary. Unknown keys are errors that name the key.
//!
//! The loader takes the environment as an argument; nothing here reads the process
//! environment, so tests never have to mutate it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::secret::SecretString;

/// Environment variable prefix for configuration.
pub const ENV_PREFIX: &str = "APPIZER_";
/// Variables with these names or prefixes are not configuration and are skipped.
pub const ENV_RESERVED: [&str; 3] = ["APPIZER_CONFIG", "APPIZER_LOG", "APPIZER_TEST_"];
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
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub rate_limit: RateLimitConfig,
    pub ingest: IngestConfig,
    pub users: UsersConfig,
    pub analytics: AnalyticsConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
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
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; with `key_path`, the server speaks HTTPS only.
    pub cert_path: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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
}

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
}

impl Default for NatsQueueConfig {
    fn default() -> Self {
        Self {
            stream: "APPIZER_EVENTS".into(),
            replicas: 1,
        }
    }
}

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
            server: ServerConfig::default(),
            tls: TlsConfig::default(),
            rate_limit: RateLimitConfig::default(),
            ingest: IngestConfig::default(),
            users: UsersConfig::default(),
            analytics: AnalyticsConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
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
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            key_cache_ttl_ms: 5_000,
            key_cache_capacity: 100_000,
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

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("invalid config at `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl Config {
    /// Defaults suited to tests: listen on an ephemeral loopback port, rate limits high
    /// enough not to interfere, short shutdown grace. Tests set `data_dir` themselves.
    pub fn for_tests() -> Self {
        let mut config = Self::default();
        config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.server.shutdown_grace_ms = 2_000;
        config.rate_limit = RateLimitConfig {
            api_per_second: 100_000,
            api_burst: 100_000,
            ingest_per_second: 100_000,
            ingest_burst: 100_000,
        };
        config.log.level = "warn".into();
        config.ingest.flush_interval_ms = 500;
        // Tests run side by side on a busy machine and wait for their events to be
        // visible: their workers keep the test's priority.
        config.ingest.worker_nice = 0;
        config.ingest.worker_sched_idle = false;
        config
    }

    /// Loads defaults, then `file` (or `appizer.toml` in `cwd` if present and `file` is
    /// `None`), then the `APPIZER_*` entries of `env`.
    pub fn load<I, K, V>(file: Option<&Path>, cwd: &Path, env: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut tree =
            toml::Value::try_from(Config::default()).map_err(|e| ConfigError::Invalid {
                key: String::new(),
                message: e.to_string(),
            })?;
        let path = match file {
            Some(p) => Some(p.to_path_buf()),
            None => Some(cwd.join(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
        };
        if let Some(path) = path {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let file_tree: toml::Value =
                toml::from_str(&text).map_err(|e| ConfigError::Syntax {
                    path: path.clone(),
                    message: e.message().to_string(),
                })?;
            merge(&mut tree, file_tree);
        }
        merge(&mut tree, env_tree(env)?);
        Self::from_tree(tree)
    }

    /// Parses a TOML document on top of the defaults (used for `config default`).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let mut tree = toml::Value::try_from(Config::default()).expect("defaults serialize");
        let doc: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: PathBuf::from("<string>"),
            message: e.message().to_string(),
        })?;
        merge(&mut tree, doc);
        Self::from_tree(tree)
    }

    fn from_tree(tree: toml::Value) -> Result<Self, ConfigError> {
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Invalid {
                key: if key == "." { String::new() } else { key },
                message: e.into_inner().to_string(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| {
            Err(ConfigError::Invalid {
                key: key.into(),
                message: message.into(),
            })
        };
        let rl = &self.rate_limit;
        for (key, value) in [
            ("rate_limit.api_per_second", rl.api_per_second),
            ("rate_limit.api_burst", rl.api_burst),
            ("rate_limit.ingest_per_second", rl.ingest_per_second),
            ("rate_limit.ingest_burst", rl.ingest_burst),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if self.server.max_connections == 0 {
            return invalid("server.max_connections", "must be at least 1");
        }
        if self.ingest.dedup_window_hours < 24 {
            return invalid("ingest.dedup_window_hours", "must be at least 24");
        }
        if self.users.identity_cache_entries == 0 || self.users.max_distinct_ids_per_person < 2 {
            return invalid(
                "users",
                "identity_cache_entries must be at least 1 and max_distinct_ids_per_person at least 2",
            );
        }
        if !(0..=19).contains(&self.ingest.worker_nice) {
            return invalid("ingest.worker_nice", "must be between 0 and 19");
        }
        if self.ingest.max_body_bytes < 1024 {
            return invalid("ingest.max_body_bytes", "must be at least 1024");
        }
        if self.ingest.flush_rows == 0 || self.ingest.flush_interval_ms == 0 {
            return invalid(
                "ingest",
                "flush_rows and flush_interval_ms must be at least 1",
            );
        }
        if self.server.header_read_timeout_ms == 0 {
            return invalid("server.header_read_timeout_ms", "must be at least 1");
        }
        if self.server.max_body_bytes < 1024 {
            return invalid("server.max_body_bytes", "must be at least 1024");
        }
        if self.tls.cert_path.is_some() != self.tls.key_path.is_some() {
            return invalid("tls", "cert_path and key_path must be set together");
        }
        let queue_url = self.ingest.queue_url.expose();
        if !(queue_url.is_empty()
            || QUEUE_SCHEMES
                .iter()
                .any(|scheme| queue_url.starts_with(scheme)))
        {
            return invalid(
                "ingest.queue_url",
                "must be empty or file: (the embedded log), or nats://HOST:PORT",
            );
        }
        if !is_stream_name(&self.ingest.nats.stream) {
            return invalid(
                "ingest.nats.stream",
                "must be letters, digits, `_` and `-` only",
            );
        }
        if !(1..=5).contains(&self.ingest.nats.replicas) {
            return invalid("ingest.nats.replicas", "must be between 1 and 5");
        }
        let url = self.database_url.expose();
        let known = ["sqlite:", "postgres://", "postgresql://"];
        if !(url.is_empty() || known.iter().any(|scheme| url.starts_with(scheme))) {
            return invalid(
                "database_url",
                "must be empty, sqlite://PATH or postgres://...",
            );
        }
        Ok(())
    }

    /// The metadata store URL: `database_url`, or the SQLite file in `data_dir`.
    pub fn metadata_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("metadata.db").display())
        } else {
            self.database_url.expose().to_string()
        }
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls.cert_path.is_some()
    }
}

/// Builds a TOML tree from `APPIZER_*` variables. A value that parses as a TOML value
/// (number, boolean, quoted string, array) takes that type; anything else is a string.
fn env_tree<I, K, V>(env: I) -> Result<toml::Value, ConfigError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut root = toml::value::Table::new();
    for (name, value) in env {
        let name = name.as_ref();
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if ENV_RESERVED.iter().any(|r| name.starts_with(r)) || rest.is_empty() {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(ConfigError::Invalid {
                key: name.to_string(),
                message: "empty segment in variable name".into(),
            });
        }
        let parsed = parse_env_value(value.as_ref());
        let mut table = &mut root;
        for segment in &path[..path.len() - 1] {
            let entry = table
                .entry(segment.clone())
                .or_insert_with(|| toml::Value::Table(Default::default()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Invalid {
                        key: name.to_string(),
                        message: format!("`{segment}` is both a value and a section"),
                    })
                }
            };
        }
        table.insert(path[path.len() - 1].clone(), parsed);
    }
    Ok(toml::Value::Table(root))
}

fn parse_env_value(raw: &str) -> toml::Value {
    #[derive(Deserialize)]
    struct Wrapper {
        v: toml::Value,
    }
    match toml::from_str::<Wrapper>(&format!("v = {raw}")) {
        Ok(w) => w.v,
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn merge(base: &mut toml::Value, overlay: toml::Value) {
    match (base, overlay) {
        (toml::Value::Table(base), toml::Value::Table(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) if existing.is_table() && value.is_table() => {
                        merge(existing, value)
                    }
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// A commented example `appizer.toml` listing every key with its default.
pub fn default_toml() -> String {
    let d = Config::default();
    format!(
        r#"# Appizer configuration. Every key is optional; shown are the defaults.
# Precedence: defaults < this file < APPIZER_* environment variables < command-line flags.
# Environment: APPIZER_<KEY> for top-level keys, APPIZER_<SECTION>__<KEY> for nested ones,
# e.g. APPIZER_RATE_LIMIT__API_BURST=200. Unknown keys are rejected.

# Embedded storage lives here: metadata database, event queue, Parquet event files.
data_dir = "{data_dir}"

# Metadata store. Empty: SQLite file <data_dir>/metadata.db.
# Or "sqlite:///path/to/metadata.db", or "postgres://user:password@host:5432/dbname".
database_url = ""

[server]
listen = "{listen}"
# Open connections at most; further connections wait to be accepted.
max_connections = {max_connections}
# Largest management request body, in bytes (larger: 413 payload_too_large).
max_body_bytes = {max_body_bytes}
# A request taking longer is answered 503.
request_timeout_ms = {request_timeout_ms}
# A connection that does not send a request's headers within this time (idle
# keep-alive connections too) is closed.
header_read_timeout_ms = {header_read_timeout_ms}
# On SIGINT/SIGTERM, in-flight requests get this long to finish.
shutdown_grace_ms = {shutdown_grace_ms}
# A live event stream ends after this many seconds (clients reconnect), and within
# auth.key_cache_ttl_ms once its key is revoked.
max_stream_secs = {max_stream_secs}

[tls]
# Set both to serve HTTPS (PEM files).
# cert_path = "/etc/appizer/cert.pem"
# key_path = "/etc/appizer/key.pem"

[rate_limit]
# Token bucket per key; a project can override each value (PATCH /api/v1/projects/ID).
api_per_second = {api_per_second}
api_burst = {api_burst}
ingest_per_second = {ingest_per_second}
ingest_burst = {ingest_burst}

[ingest]
# Largest ingestion request body (compressed or not), in bytes; larger: 413.
max_body_bytes = {ingest_max_body_bytes}
# Peers whose X-Forwarded-For header is believed for the client IP, e.g. ["10.0.0.5"].
trusted_proxies = []
# The durable event queue, by scheme: empty or "file:" = the embedded log under
# data_dir ("file:///path" = in that directory); "nats://HOST:4222" = a NATS JetStream
# stream shared by every node (see README, "Configure it").
queue_url = ""
# The durable event queue refuses new events (503 + Retry-After) past this many bytes.
queue_max_disk_bytes = {queue_max_disk_bytes}
# Buffered events are written to Parquet at this many rows or this age, whichever first.
flush_rows = {flush_rows}
flush_interval_ms = {flush_interval_ms}
# A message id seen again within this many hours is dropped as a duplicate (>= 24).
dedup_window_hours = {dedup_window_hours}
# A MaxMind-format City database (.mmdb); events then get context.location from the IP.
# geoip_database = "/var/lib/GeoIP/GeoLite2-City.mmdb"
# Niceness added to the threads that decode events and write Parquet (0-19). Above 0,
# when the CPU is short, requests are answered first and events wait in the queue; 0
# gives them the same priority as request handling.
worker_nice = {worker_nice}
# Linux: run them under SCHED_IDLE as well, so a waking request thread takes their core
# at once (true), or only by niceness (false).
worker_sched_idle = {worker_sched_idle}
# Codec of the Parquet event files: "zstd" (smallest), "lz4_raw" or "snappy" (about 37%
# larger, faster to scan). Files already written keep theirs.
parquet_compression = "{parquet_compression}"
# Codec of the columns nearly every query reads (timestamp, event, distinct_id,
# person_id): "lz4_raw" (the default) decodes several times faster than zstd.
parquet_key_compression = "{parquet_key_compression}"

[ingest.log]
# The embedded log's segment files: allocated in full when they start, closed when full.
segment_bytes = {segment_bytes}

[ingest.nats]
# The JetStream stream (letters, digits, `_`, `-`); created when missing.
stream = "{stream}"
# Copies JetStream keeps of each record: 1, or 3 on a cluster.
replicas = {replicas}

[users]
# Distinct ids cached for identity resolution, per generation (up to twice this are held).
identity_cache_entries = {identity_cache_entries}
# An identify or alias giving a person more distinct ids than this is refused.
max_distinct_ids_per_person = {max_distinct_ids_per_person}

[analytics]
# Memory one query may hold (MiB): its operators, its own structures (persons,
# gathered rows) and the text its SQL functions build; past it the query gets 422.
query_memory_mb = {query_memory_mb}
# Longest a query may run (ms); past it the query is cancelled with 422.
query_timeout_ms = {query_timeout_ms}
# Rows an SQL answer holds at most (more: `truncated: true`).
sql_max_rows = {sql_max_rows}
# Bytes of JSON an SQL answer's rows hold at most (more: `truncated: true`; a first
# row larger than this is a 422).
sql_max_answer_bytes = {sql_max_answer_bytes}
# Dynamic segments are recomputed this often (seconds; 0 turns it off), and when saved.
segment_refresh_secs = {segment_refresh_secs}
# Answers kept for repeated queries (0: off). An answer is reused while no event,
# person or definition changed through this node, within the same minute; with
# several nodes writing, set 0.
result_cache_entries = {result_cache_entries}
# Plain event counts from the per-quarter-hour counts in each Parquet file's footer
# instead of a scan (false: every query scans).
rollups = {rollups}

[auth]
# Key lookups are cached this long; revoking through this node takes effect at once,
# through another node sharing PostgreSQL within this time plus one read of the key.
key_cache_ttl_ms = {key_cache_ttl_ms}
key_cache_capacity = {key_cache_capacity}

[log]
# tracing filter, e.g. "info" or "appizer=debug,info"; APPIZER_LOG overrides it.
level = "{level}"
# "text" or "json"
format = "text"
"#,
        data_dir = d.data_dir.display(),
        listen = d.server.listen,
        max_connections = d.server.max_connections,
        max_body_bytes = d.server.max_body_bytes,
        request_timeout_ms = d.server.request_timeout_ms,
        header_read_timeout_ms = d.server.header_read_timeout_ms,
        shutdown_grace_ms = d.server.shutdown_grace_ms,
        max_stream_secs = d.server.max_stream_secs,
        api_per_second = d.rate_limit.api_per_second,
        api_burst = d.rate_limit.api_burst,
        ingest_per_second = d.rate_limit.ingest_per_second,
        ingest_burst = d.rate_limit.ingest_burst,
        ingest_max_body_bytes = d.ingest.max_body_bytes,
        queue_max_disk_bytes = d.ingest.queue_max_disk_bytes,
        segment_bytes = d.ingest.log.segment_bytes,
        stream = d.ingest.nats.stream,
        replicas = d.ingest.nats.replicas,
        flush_rows = d.ingest.flush_rows,
        flush_interval_ms = d.ingest.flush_interval_ms,
        dedup_window_hours = d.ingest.dedup_window_hours,
        worker_nice = d.ingest.worker_nice,
        worker_sched_idle = d.ingest.worker_sched_idle,
        parquet_compression = d.ingest.parquet_compression.name(),
        parquet_key_compression = d.ingest.parquet_key_compression.name(),
        identity_cache_entries = d.users.identity_cache_entries,
        max_distinct_ids_per_person = d.users.max_distinct_ids_per_person,
        query_memory_mb = d.analytics.query_memory_mb,
        query_timeout_ms = d.analytics.query_timeout_ms,
        sql_max_rows = d.analytics.sql_max_rows,
        sql_max_answer_bytes = d.analytics.sql_max_answer_bytes,
        segment_refresh_secs = d.analytics.segment_refresh_secs,
        result_cache_entries = d.analytics.result_cache_entries,
        rollups = d.analytics.rollups,
        key_cache_ttl_ms = d.auth.key_cache_ttl_ms,
        key_cache_capacity = d.auth.key_cache_capacity,
        level = d.log.level,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn default_toml_parses_back_to_the_defaults() {
        assert_eq!(
            Config::from_toml_str(&default_toml()).unwrap(),
            Config::default()
        );
    }

    /// The keys (`section.key`) a printed file names, set or commented out.
    fn printed_keys(text: &str) -> std::collections::BTreeSet<String> {
        let mut section = String::new();
        let mut keys = std::collections::BTreeSet::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = format!("{name}.");
                continue;
            }
            let entry = line.strip_prefix("# ").unwrap_or(line);
            if let Some((key, _)) = entry.split_once(" = ") {
                if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    keys.insert(format!("{section}{key}"));
                }
            }
        }
        keys
    }

    fn serialised_keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (key, value) in table {
            match value {
                toml::Value::Table(inner) => {
                    serialised_keys(inner, &format!("{prefix}{key}."), out)
                }
                _ => out.push(format!("{prefix}{key}")),
            }
        }
    }

    #[test]
    fn the_default_file_names_every_key_of_the_config() {
        let printed = printed_keys(&default_toml());
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        let mut keys = Vec::new();
        serialised_keys(&defaults, "", &mut keys);
        assert!(
            keys.len() > 30 && keys.iter().any(|k| k == "analytics.rollups"),
            "{keys:?}"
        );
        let missing: Vec<&String> = keys.iter().filter(|k| !printed.contains(*k)).collect();
        assert!(missing.is_empty(), "`config default` lacks {missing:?}");
        // Keys that are None by default are printed commented out, and still known.
        for optional in ["tls.cert_path", "tls.key_path", "ingest.geoip_database"] {
            assert!(printed.contains(optional), "{optional}");
        }
    }

    #[test]
    fn file_then_env_override_defaults_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("appizer.toml"),
            "data_dir = \"/srv/a\"\n[rate_limit]\napi_burst = 7\napi_per_second = 3\n",
        )
        .unwrap();
        let env = [
            ("APPIZER_RATE_LIMIT__API_BURST", "9"),
            ("APPIZER_SERVER__LISTEN", "0.0.0.0:9000"),
            ("APPIZER_TEST_POSTGRES_URL", "postgres://ignored"),
            ("HOME", "/root"),
        ];
        let c = Config::load(None, dir.path(), env).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/a"));
        assert_eq!(c.rate_limit.api_per_second, 3, "from the file");
        assert_eq!(c.rate_limit.api_burst, 9, "env beats the file");
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(
            c.rate_limit.ingest_burst,
            RateLimitConfig::default().ingest_burst
        );
    }

    #[test]
    fn unknown_keys_are_errors_that_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.toml");
        std::fs::write(&file, "[rate_limit]\napi_brust = 7\n").unwrap();
        let err = Config::load(Some(&file), dir.path(), no_env()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("api_brust"), "{text}");
        assert!(text.contains("rate_limit"), "{text}");

        let err = Config::load(None, dir.path(), [("APPIZER_SERVR__LISTEN", "x")]).unwrap_err();
        assert!(err.to_string().contains("servr"), "{err}");
    }

    #[test]
    fn wrong_types_and_broken_rules_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::load(
            None,
            dir.path(),
            [("APPIZER_RATE_LIMIT__API_BURST", "lots")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("rate_limit.api_burst"), "{err}");
        let err =
            Config::load(None, dir.path(), [("APPIZER_RATE_LIMIT__API_BURST", "0")]).unwrap_err();
        assert!(err.to_string().contains("rate_limit.api_burst"), "{err}");
        let err =
            Config::load(None, dir.path(), [("APPIZER_TLS__CERT_PATH", "/x.pem")]).unwrap_err();
        assert!(err.to_string().contains("tls"), "{err}");
        let err =
            Config::load(None, dir.path(), [("APPIZER_DATABASE_URL", "mysql://x")]).unwrap_err();
        assert!(err.to_string().contains("database_url"), "{err}");
        let err =
            Config::load(None, dir.path(), [("APPIZER_INGEST__WORKER_NICE", "20")]).unwrap_err();
        assert!(err.to_string().contains("ingest.worker_nice"), "{err}");
        let err = Config::load(
            None,
            dir.path(),
            [("APPIZER_INGEST__PARQUET_COMPRESSION", "gzip")],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("ingest.parquet_compression"),
            "{err}"
        );
        let config = Config::load(
            None,
            dir.path(),
            [("APPIZER_INGEST__PARQUET_COMPRESSION", "lz4_raw")],
        )
        .unwrap();
        assert_eq!(
            config.ingest.parquet_compression,
            ParquetCompression::Lz4Raw
        );
        assert_eq!(
            config.ingest.parquet_key_compression,
            ParquetCompression::Lz4Raw,
            "the key columns' own default"
        );
        let config = Config::load(
            None,
            dir.path(),
            [("APPIZER_INGEST__PARQUET_KEY_COMPRESSION", "zstd")],
        )
        .unwrap();
        assert_eq!(
            config.ingest.parquet_key_compression,
            ParquetCompression::Zstd
        );
        for codec in ParquetCompression::ALL {
            assert_eq!(codec.name().parse::<ParquetCompression>(), Ok(codec));
        }
        assert!("gzip".parse::<ParquetCompression>().is_err());
        for (key, value, named) in [
            (
                "APPIZER_INGEST__QUEUE_URL",
                "kafka://x:9092",
                "ingest.queue_url",
            ),
            (
                "APPIZER_INGEST__NATS__STREAM",
                "events.v1",
                "ingest.nats.stream",
            ),
            (
                "APPIZER_INGEST__NATS__REPLICAS",
                "0",
                "ingest.nats.replicas",
            ),
        ] {
            let err = Config::load(None, dir.path(), [(key, value)]).unwrap_err();
            assert!(err.to_string().contains(named), "{err}");
        }
        let config = Config::load(
            None,
            dir.path(),
            [("APPIZER_INGEST__QUEUE_URL", "nats://user:pw@10.0.0.7:4222")],
        )
        .unwrap();
        assert_eq!(
            config.ingest.queue_url.expose(),
            "nats://user:pw@10.0.0.7:4222"
        );
        assert!(
            !format!("{config:?}").contains("pw@"),
            "the URL is a secret"
        );
    }

    #[test]
    fn a_missing_explicit_file_is_an_error_and_bad_toml_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        assert!(matches!(
            Config::load(Some(&missing), dir.path(), no_env()),
            Err(ConfigError::Read { .. })
        ));
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "data_dir = ").unwrap();
        let err = Config::load(Some(&bad), dir.path(), no_env()).unwrap_err();
        assert!(err.to_string().contains("bad.toml"), "{err}");
    }

    #[test]
    fn metadata_url_defaults_to_sqlite_in_the_data_dir_and_debug_hides_it() {
        let mut c = Config {
            data_dir: PathBuf::from("/d"),
            ..Config::default()
        };
        assert_eq!(c.metadata_url(), "sqlite:///d/metadata.db");
        c.database_url = SecretString::new("postgres://u:pw@h/db");
        assert_eq!(c.metadata_url(), "postgres://u:pw@h/db");
        assert!(!format!("{c:?}").contains("pw@"));
    }
}
