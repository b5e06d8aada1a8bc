//! Where the Parquet event files live, behind one interface ([`FileBackend`]), one
//! backend per folder shape:
//! - [`local`]: a directory (the default), each file fsync'd before it is catalogued;
//! - [`s3`]: an S3-compatible bucket, through the `object_store` crate DataFusion reads
//!   with.
//!
//! Paths are relative (`project=<id>/date=<day>/p<partition>-<uuid>.parquet`); each
//! backend maps them under its root. Files are written whole and never changed: a file
//! is either absent or complete, and its catalog entry is written only after it is.

mod known;
mod local;
mod s3;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;

pub use local::LocalFiles;
pub use s3::{S3Files, S3Settings};

use super::rollup::Rollup;
use super::EventStoreError;

/// Where a store's files live.
#[derive(Debug, Clone)]
pub enum FilesLocation {
    Dir(PathBuf),
    S3(S3Settings),
}

impl FilesLocation {
    /// The backend for this location (a directory is created if missing).
    pub fn open(&self) -> Result<Arc<dyn FileBackend>, EventStoreError> {
        Ok(match self {
            FilesLocation::Dir(root) => Arc::new(LocalFiles::open(root.clone())?),
            FilesLocation::S3(settings) => Arc::new(S3Files::open(settings)?),
        })
    }
}

/// A file found under the root, catalogued or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Relative to the root.
    pub path: String,
    /// When it was last written.
    pub modified: DateTime<Utc>,
}

/// One place the event files live; see the module docs.
#[async_trait]
pub trait FileBackend: Send + Sync + std::fmt::Debug {
    /// Stores a whole file at `path`, durably: once this returns every node reads it
    /// whole; a failure leaves at most a file no catalog entry names (a stray).
    async fn put(&self, path: &str, bytes: Bytes) -> Result<(), EventStoreError>;

    /// The whole file at `path`.
    async fn get(&self, path: &str) -> Result<Bytes, EventStoreError>;

    /// The rollup in the footer of the file at `path`, `size` bytes long (`None` for a
    /// file written without one); reads the footer only.
    async fn rollup(&self, path: &str, size: u64) -> Result<Option<Rollup>, EventStoreError>;

    /// Deletes the file at `path`; one already gone is no error.
    async fn delete(&self, path: &str) -> Result<(), EventStoreError>;

    /// Every file under the root.
    async fn list(&self) -> Result<Vec<Listed>, EventStoreError>;

    /// Lets `ctx` read the files at [`table_path`](Self::table_path)s.
    fn register(&self, ctx: &SessionContext);

    /// Where a query reads the file at `path` from.
    fn table_path(&self, path: &str) -> String;

    /// Tells the backend what the catalog says of files a query is about to read, so
    /// it need not ask the store (an object store's HEAD request per file).
    fn catalogued(&self, files: &[crate::metadata::EventFile]);
}
