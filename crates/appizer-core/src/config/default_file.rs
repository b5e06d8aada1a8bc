//! The commented example `appizer.toml` that `appizer config default` prints.

use super::Config;

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

# Parquet event files. Empty: <data_dir>/events. Or "file:///path" (a directory every
# worker and query node of a deployment names), or "s3://bucket/prefix" (an
# S3-compatible object store, reached as [s3] says).
events_url = ""

# What this node runs: ["all"], or some of "api" (ingestion and management routes),
# "worker" (consumes the queue: Parquet files, persons, segments), "query" (analytics
# queries) and "push" (delivery, campaigns). Split roles need database_url on
# PostgreSQL and ingest.queue_url on NATS (docs/deploy.md). `serve --role` overrides.
roles = ["all"]

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
# The dashboard's address when it differs from the Host requests name (a proxy):
# invitation links start with it; signed-in writes must come from it or the Host.
# public_url = "https://appizer.example.com"

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
# Where the buckets live: empty = in this process (each node limits on its own);
# "redis://HOST:6379" = in Redis, shared by every node (GCRA; when Redis is unreachable
# each node decides with its own buckets meanwhile, counted in
# appizer_rate_limit_local_fallback_total and shown in /readyz).
shared_url = ""

[rate_limit.redis]
# A decision waits this long for Redis before it is taken locally.
timeout_ms = {redis_timeout_ms}
# After a failure, decide locally this long before trying Redis again.
retry_ms = {redis_retry_ms}
key_prefix = "{redis_key_prefix}"

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
# A worker's lease on the queue partitions it consumes: renewed every third of this;
# partitions of a worker silent this long go to the others.
worker_lease_ms = {worker_lease_ms}
# Small Parquet files are merged this often; files it replaced are deleted after the
# grace (queries that listed them just before finish reading them).
compaction_interval_ms = {compaction_interval_ms}
retire_grace_ms = {retire_grace_ms}
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
# Partitions of the queue, one stream each: a person's events stay in one, and each is
# consumed by one worker at a time. Fixed once events are queued.
partitions = {partitions}

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

[push]
# The key provider credentials are sealed under (64 hex characters; better set as
# APPIZER_PUSH__MASTER_KEY). Empty: data_dir/push-master.key, made at first start.
master_key = ""
# APNs base URL; empty: Apple's production or sandbox host, as each project's
# credentials say (http:// reaches a local emulator over HTTP/2).
apns_url = "{apns_url}"
# FCM HTTP v1 base URL; the access token comes from the service account's token_uri.
fcm_url = "{fcm_url}"
# Hosts (or *.suffix) Web Push endpoints may point at; a subscription elsewhere is
# refused at registration and nothing else is ever fetched. https only, except for
# 127.0.0.1, localhost and [::1] when listed (local push services).
webpush_allowed_hosts = {webpush_allowed_hosts}
# A PEM file of extra CA certificates trusted for provider connections, besides the
# system's.
# ca_file = "/etc/appizer/provider-ca.pem"
# HTTP/2 connections at most per provider host (another opens only when every open one
# carries as many streams as its server allows).
connections_per_host = {connections_per_host}
# A provider request not answered within this time is retried.
request_timeout_ms = {push_request_timeout_ms}
# Deliveries in flight at most, per provider.
concurrency = {push_concurrency}
# Outbox records the delivery loop takes at a time.
batch_size = {push_batch_size}
# Attempts per delivery before it fails for good (attempts_exhausted); retries wait
# from retry_min_ms, doubling with jitter, up to retry_max_ms, never less than the
# provider's Retry-After.
max_attempts = {max_attempts}
retry_min_ms = {retry_min_ms}
retry_max_ms = {retry_max_ms}

[auth]
# Key lookups are cached this long; revoking through this node takes effect at once,
# through another node sharing PostgreSQL within this time plus one read of the key.
key_cache_ttl_ms = {key_cache_ttl_ms}
key_cache_capacity = {key_cache_capacity}
# Dashboard sessions (HttpOnly cookies) end this long after sign-in, or when unused
# this long; an invitation link works invite_ttl_hours.
session_ttl_hours = {session_ttl_hours}
session_idle_hours = {session_idle_hours}
invite_ttl_hours = {invite_ttl_hours}
# Sign-in allows this many attempts per account, and per client address, in a row;
# each allowance refills by one every sign_in_refill_seconds (beyond: 429).
sign_in_attempts_per_account = {sign_in_attempts_per_account}
sign_in_attempts_per_address = {sign_in_attempts_per_address}
sign_in_refill_seconds = {sign_in_refill_seconds}

[s3]
# The object store of an s3:// events_url. Empty endpoint: AWS. Most S3-compatible
# services (MinIO, Ceph, Garage) want path_style = true and their own endpoint.
endpoint = ""
region = "{s3_region}"
# Empty: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment, then the
# instance's role. Better set as APPIZER_S3__SECRET_ACCESS_KEY.
access_key_id = ""
secret_access_key = ""
path_style = {s3_path_style}
# A request not answered within this time fails; the flush or compaction that made it
# is retried with backoff while the events wait in the queue.
request_timeout_ms = {s3_request_timeout_ms}

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
        redis_timeout_ms = d.rate_limit.redis.timeout_ms,
        redis_retry_ms = d.rate_limit.redis.retry_ms,
        redis_key_prefix = d.rate_limit.redis.key_prefix,
        ingest_max_body_bytes = d.ingest.max_body_bytes,
        queue_max_disk_bytes = d.ingest.queue_max_disk_bytes,
        segment_bytes = d.ingest.log.segment_bytes,
        stream = d.ingest.nats.stream,
        replicas = d.ingest.nats.replicas,
        partitions = d.ingest.nats.partitions,
        worker_lease_ms = d.ingest.worker_lease_ms,
        compaction_interval_ms = d.ingest.compaction_interval_ms,
        retire_grace_ms = d.ingest.retire_grace_ms,
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
        webpush_allowed_hosts = toml::Value::from(d.push.webpush_allowed_hosts.clone()),
        apns_url = d.push.apns_url,
        fcm_url = d.push.fcm_url,
        connections_per_host = d.push.connections_per_host,
        push_request_timeout_ms = d.push.request_timeout_ms,
        push_concurrency = d.push.concurrency,
        push_batch_size = d.push.batch_size,
        max_attempts = d.push.max_attempts,
        retry_min_ms = d.push.retry_min_ms,
        retry_max_ms = d.push.retry_max_ms,
        key_cache_ttl_ms = d.auth.key_cache_ttl_ms,
        key_cache_capacity = d.auth.key_cache_capacity,
        session_ttl_hours = d.auth.session_ttl_hours,
        session_idle_hours = d.auth.session_idle_hours,
        invite_ttl_hours = d.auth.invite_ttl_hours,
        sign_in_attempts_per_account = d.auth.sign_in_attempts_per_account,
        sign_in_attempts_per_address = d.auth.sign_in_attempts_per_address,
        sign_in_refill_seconds = d.auth.sign_in_refill_seconds,
        level = d.log.level,
        s3_region = d.s3.region,
        s3_path_style = d.s3.path_style,
        s3_request_timeout_ms = d.s3.request_timeout_ms,
    )
}
