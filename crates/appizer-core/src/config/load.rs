//! Reading the layers (file, environment) into a [`Config`] and checking it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    is_stream_name, Config, EventsLocation, NodeRole, RateLimitConfig, Roles, DEFAULT_CONFIG_FILE,
    ENV_PREFIX, ENV_RESERVED, MAX_PARTITIONS, QUEUE_SCHEMES, SHARED_LIMIT_SCHEMES,
};

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
            ..RateLimitConfig::default()
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
        if self.events_url.starts_with("s3:") {
            let bucket = s3_parts(&self.events_url).map(|(b, _)| b);
            if !bucket.is_some_and(is_bucket_name) {
                return invalid(
                    "events_url",
                    "s3://BUCKET[/PREFIX]: a bucket name of 3 to 63 lowercase letters, digits, dots and hyphens",
                );
            }
            if self.s3.request_timeout_ms == 0 {
                return invalid("s3.request_timeout_ms", "must be at least 1");
            }
            let endpoint = &self.s3.endpoint;
            if !(endpoint.is_empty()
                || endpoint.starts_with("http://")
                || endpoint.starts_with("https://"))
            {
                return invalid("s3.endpoint", "must be empty (AWS) or an http(s):// URL");
            }
        } else if !(self.events_url.is_empty() || self.events_url.starts_with("file:")) {
            return invalid(
                "events_url",
                "must be empty (data_dir/events), file:///PATH or s3://BUCKET[/PREFIX]",
            );
        }
        if self.roles.is_empty() {
            return invalid("roles", "must name at least one role");
        }
        if self.roles.len() > 1 && self.roles.contains(&NodeRole::All) {
            return invalid("roles", "`all` is every role: name it alone");
        }
        let roles = self.node_roles();
        if !roles.is_all() {
            if !self.database_url.expose().starts_with("postgres") {
                return invalid(
                    "database_url",
                    "a node with some of the roles shares its metadata with the others: postgres://USER@HOST/DB",
                );
            }
            let queue = self.ingest.queue_url.expose();
            if !(queue.starts_with("nats://") || queue.starts_with("tls://")) {
                return invalid(
                    "ingest.queue_url",
                    "a node with some of the roles shares its queue with the others: nats://HOST:4222",
                );
            }
            if self.events_url.is_empty() {
                return invalid(
                    "events_url",
                    "a node with some of the roles shares the event files with the others: s3://BUCKET/PREFIX or file:///SHARED/PATH",
                );
            }
        }
        let shared = rl.shared_url.expose();
        if !(shared.is_empty() || SHARED_LIMIT_SCHEMES.iter().any(|s| shared.starts_with(s))) {
            return invalid(
                "rate_limit.shared_url",
                "must be empty (buckets in this process) or redis://HOST:PORT[/DB]",
            );
        }
        for (key, value) in [
            ("rate_limit.redis.timeout_ms", rl.redis.timeout_ms),
            ("rate_limit.redis.retry_ms", rl.redis.retry_ms),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        let push = &self.push;
        for (key, value) in [
            (
                "push.connections_per_host",
                push.connections_per_host as u64,
            ),
            ("push.request_timeout_ms", push.request_timeout_ms),
            ("push.concurrency", push.concurrency as u64),
            ("push.batch_size", push.batch_size as u64),
            ("push.max_attempts", u64::from(push.max_attempts)),
            ("push.retry_min_ms", push.retry_min_ms),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if push.retry_max_ms < push.retry_min_ms {
            return invalid("push.retry_max_ms", "must be at least push.retry_min_ms");
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
        if !(1..=MAX_PARTITIONS).contains(&self.ingest.nats.partitions) {
            return invalid(
                "ingest.nats.partitions",
                &format!("must be between 1 and {MAX_PARTITIONS}"),
            );
        }
        if self.ingest.nats.partitions > 1
            && !queue_url.starts_with("nats://")
            && !queue_url.starts_with("tls://")
        {
            return invalid(
                "ingest.nats.partitions",
                "more than one partition needs the queue on NATS JetStream (ingest.queue_url)",
            );
        }
        if self.ingest.worker_lease_ms < 1_000 {
            return invalid("ingest.worker_lease_ms", "must be at least 1000");
        }
        if self.ingest.compaction_interval_ms < 100 {
            return invalid("ingest.compaction_interval_ms", "must be at least 100");
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

    /// Where the Parquet event files live, as `events_url` names it.
    pub fn events_location(&self) -> EventsLocation {
        if let Some((bucket, prefix)) = s3_parts(&self.events_url) {
            return EventsLocation::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            };
        }
        EventsLocation::Dir(match self.events_url.strip_prefix("file:") {
            Some(rest) if !rest.is_empty() => {
                PathBuf::from(rest.strip_prefix("//").unwrap_or(rest))
            }
            _ => self.data_dir.join("events"),
        })
    }

    /// The config with `roles` instead of its own (a command-line flag), checked again.
    pub fn with_roles(mut self, roles: Vec<NodeRole>) -> Result<Self, ConfigError> {
        self.roles = roles;
        self.validate()?;
        Ok(self)
    }

    /// The roles this node runs.
    pub fn node_roles(&self) -> Roles {
        Roles::of(&self.roles)
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

/// The bucket and prefix (without surrounding `/`) of `s3://BUCKET[/PREFIX]`.
fn s3_parts(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    Some((bucket, prefix.trim_matches('/')))
}

/// S3's rule for bucket names (the common subset every compatible service accepts).
fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}
