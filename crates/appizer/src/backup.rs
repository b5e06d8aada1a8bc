//! `appizer backup DEST` and `appizer restore SRC`: a consistent copy of a node on
//! embedded storage, taken while it runs, and that copy put back into an empty data
//! dir.
//!
//! A backup is a directory, or a prefix of an S3-compatible bucket (`s3://BUCKET/PREFIX`,
//! reached as `[s3]` says):
//! - `queue/`: the embedded queue's committed offset and segments, copied first;
//! - `metadata.db`: SQLite's copy of the metadata as of one moment after that (its
//!   catalog names the event files of that moment);
//! - `events/`: every event file that catalog names;
//! - `push-master.key`: the key push credentials are sealed under (unless configured);
//! - `backup.json`: what the backup holds, written last (a backup without it is
//!   incomplete and is not restored).
//!
//! Why it is consistent: every event acknowledged before the copy of the queue began
//! is in a copied segment, or was committed before its segment went, which happens
//! only after its event file was catalogued, and so before the metadata copy, whose
//! files are all copied. A restored node replays the copied queue from past the
//! highest offset in its files, as after a crash. Event files never change once
//! written; one that compaction deletes before it is copied (it waits
//! `ingest.retire_grace_ms` first) fails the backup, which is then run again.
//!
//! A PostgreSQL metadata store is backed up with `pg_dump`, and a NATS queue keeps its
//! own replicas: `backup` refuses both and says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use appizer_core::config::Config;
use appizer_storage::events::files::{FileBackend, FilesLocation, S3Settings};
use appizer_storage::open_metadata_store;
use appizer_storage::queue::log::copy::{files_to_copy, read_for_copy};
use appizer_storage::queue::QueueBackend;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The backup's table of contents.
const MANIFEST: &str = "backup.json";
const METADATA: &str = "metadata.db";
const MASTER_KEY: &str = "push-master.key";
const FORMAT: u32 = 1;

/// What a backup holds (`backup.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The version of the binary that wrote it.
    pub appizer_version: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Event files (under `events/`) and their bytes.
    pub event_files: usize,
    pub event_bytes: u64,
    /// Files of the queue (under `queue/`).
    pub queue_files: Vec<String>,
    pub master_key: bool,
}

/// A backup's location: `s3://BUCKET/PREFIX` (reached as `[s3]` says) or a directory.
fn location(config: &Config, place: &str) -> anyhow::Result<FilesLocation> {
    let Some(rest) = place.strip_prefix("s3://") else {
        return Ok(FilesLocation::Dir(PathBuf::from(place)));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        bail!("`{place}`: expected s3://BUCKET/PREFIX");
    }
    let s3 = &config.s3;
    Ok(FilesLocation::S3(S3Settings {
        bucket: bucket.into(),
        prefix: prefix.trim_matches('/').into(),
        endpoint: s3.endpoint.clone(),
        region: s3.region.clone(),
        access_key_id: s3.access_key_id.clone(),
        secret_access_key: s3.secret_access_key.clone(),
        path_style: s3.path_style,
        request_timeout: Duration::from_millis(s3.request_timeout_ms),
    }))
}

/// The embedded queue's directory, or an error naming why there is none to copy.
fn queue_dir(config: &Config) -> anyhow::Result<PathBuf> {
    match QueueBackend::from_url(config.ingest.queue_url.expose())? {
        QueueBackend::Log { dir } => Ok(dir.unwrap_or_else(|| config.data_dir.join("queue"))),
        QueueBackend::Nats { .. } => bail!(
            "the queue is NATS JetStream, which keeps its own replicas (stream snapshots: `nats stream backup`); backup copies the embedded queue only"
        ),
    }
}

/// Refuses a PostgreSQL metadata store, saying what backs it up instead.
fn require_sqlite(config: &Config) -> anyhow::Result<()> {
    let url = config.metadata_url();
    if !url.starts_with("sqlite:") {
        bail!(
            "the metadata store is PostgreSQL: back it up with pg_dump (pg_dump --format=custom DB > metadata.dump; pg_restore into an empty database), and the event files with the object store's own replication or versioning"
        );
    }
    Ok(())
}

/// Writes a backup of the node `config` describes (running or not) to `dest`, which
/// must be empty. Returns what it holds.
pub async fn backup(config: &Config, dest: &str) -> anyhow::Result<Manifest> {
    require_sqlite(config)?;
    let queue = queue_dir(config)?;
    let dest = location(config, dest)?
        .open()
        .context("cannot open the backup's destination")?;
    if !dest.list().await?.is_empty() {
        bail!("the destination holds files: back up into an empty directory or prefix");
    }

    // 1. The queue, before the metadata (see the module docs).
    let mut queue_files = Vec::new();
    if queue.is_dir() {
        for name in files_to_copy(&queue)? {
            let dir = queue.clone();
            let read_name = name.clone();
            let read =
                tokio::task::spawn_blocking(move || read_for_copy(&dir, &read_name)).await??;
            if let Some(bytes) = read {
                dest.put(&format!("queue/{name}"), Bytes::from(bytes))
                    .await?;
                queue_files.push(name);
            }
        }
    }

    // 2. The metadata as of one moment, and the event files its catalog names.
    let store = crate::open_store(config).await?;
    let scratch = tempfile::tempdir().context("cannot make a scratch directory")?;
    let snapshot = scratch.path().join(METADATA);
    let snapshotted = store.snapshot_into(&snapshot).await;
    store.close().await;
    snapshotted.context("cannot copy the metadata")?;
    let copy = open_metadata_store(&format!("sqlite://{}", snapshot.display())).await?;
    let files = copy.all_event_files().await;
    copy.close().await;
    let files = files?;
    let source = crate::files_location(config).open()?;
    let mut event_bytes = 0;
    for f in &files {
        let bytes = source.get(&f.path).await.with_context(|| {
            format!(
                "cannot read event file {} (replaced by compaction meanwhile? run the backup again)",
                f.path
            )
        })?;
        event_bytes += bytes.len() as u64;
        dest.put(&format!("events/{}", f.path), bytes).await?;
    }
    let metadata = tokio::fs::read(&snapshot).await?;
    dest.put(METADATA, Bytes::from(metadata)).await?;

    // 3. The master key, unless it is configured (then it is the operator's to keep).
    let key = config.data_dir.join(MASTER_KEY);
    let master_key = config.push.master_key.is_empty() && key.exists();
    if master_key {
        dest.put(MASTER_KEY, Bytes::from(tokio::fs::read(&key).await?))
            .await?;
    }

    let manifest = Manifest {
        format: FORMAT,
        appizer_version: env!("CARGO_PKG_VERSION").into(),
        created_at: chrono::Utc::now(),
        event_files: files.len(),
        event_bytes,
        queue_files,
        master_key,
    };
    dest.put(MANIFEST, Bytes::from(serde_json::to_vec_pretty(&manifest)?))
        .await?;
    Ok(manifest)
}

/// Puts the backup at `src` back as the node `config` describes: its data dir, queue
/// and event files must hold nothing yet. Returns what it restored.
pub async fn restore(config: &Config, src: &str) -> anyhow::Result<Manifest> {
    require_sqlite(config)?;
    let queue = queue_dir(config)?;
    let src = location(config, src)?
        .open()
        .context("cannot open the backup")?;
    let manifest: Manifest = serde_json::from_slice(
        &src.get(MANIFEST)
            .await
            .context("not a complete backup: no backup.json")?,
    )
    .context("backup.json is not valid")?;
    if manifest.format != FORMAT {
        bail!(
            "backup format {} is not known here (format {FORMAT})",
            manifest.format
        );
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let metadata = config.data_dir.join(METADATA);
    if metadata.exists() || has_files(&queue) {
        bail!(
            "{} already holds a node: restore into an empty data dir",
            config.data_dir.display()
        );
    }
    let events: Arc<dyn FileBackend> = crate::files_location(config).open()?;
    if !events.list().await?.is_empty() {
        bail!("the event files' location is not empty: restore into an empty one");
    }
    // Event files first, the metadata that names them last: an interrupted restore
    // leaves no node that would start on half its files.
    for listed in src.list().await? {
        if let Some(path) = listed.path.strip_prefix("events/") {
            events.put(path, src.get(&listed.path).await?).await?;
        }
    }
    std::fs::create_dir_all(&queue)?;
    for name in &manifest.queue_files {
        let bytes = src.get(&format!("queue/{name}")).await?;
        tokio::fs::write(queue.join(name), bytes).await?;
    }
    if manifest.master_key {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let key = src.get(MASTER_KEY).await?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(config.data_dir.join(MASTER_KEY))
            .and_then(|mut f| f.write_all(&key).and_then(|()| f.sync_all()))
            .context("cannot write the push master key")?;
    }
    let scratch = metadata.with_extension("db.restoring");
    tokio::fs::write(&scratch, src.get(METADATA).await?).await?;
    tokio::fs::rename(&scratch, &metadata).await?;
    Ok(manifest)
}

fn has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}
