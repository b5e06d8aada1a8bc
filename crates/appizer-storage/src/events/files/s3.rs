//! [`S3Files`]: event files as objects under a prefix of an S3-compatible bucket. A put
//! is one request (S3 makes an object visible only whole), reads of a footer are range
//! requests, and queries read through the same client, registered with DataFusion
//! under `s3://<bucket>`.

use std::sync::Arc;
use std::time::Duration;

use appizer_core::secret::SecretString;
use async_trait::async_trait;
use bytes::Bytes;
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::ParquetMetaDataReader;
use datafusion::prelude::SessionContext;
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};

use super::known::KnownSizes;
use super::{FileBackend, Listed};
use crate::events::rollup::Rollup;
use crate::events::EventStoreError;

/// How to reach the bucket (`events_url = "s3://BUCKET/PREFIX"` and `[s3]`).
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// Without surrounding `/`; may be empty.
    pub prefix: String,
    /// Empty: AWS.
    pub endpoint: String,
    pub region: String,
    /// Empty: from the environment (`AWS_ACCESS_KEY_ID`, ...) or the instance's role.
    pub access_key_id: SecretString,
    pub secret_access_key: SecretString,
    pub path_style: bool,
    pub request_timeout: Duration,
}

/// Event files in a bucket.
#[derive(Debug)]
pub struct S3Files {
    bucket: Arc<AmazonS3>,
    /// The bucket as queries read it (DataFusion resolves `s3://<bucket>/...` to it),
    /// the catalogued files' sizes known without a request.
    reads: Arc<KnownSizes>,
    url: url::Url,
    /// Keys are `<prefix>/<path>`.
    prefix: String,
}

/// Bytes read from a file's end for its footer at first.
const FOOTER_GUESS: u64 = 64 * 1024;

/// Requests a failed flush or compaction makes before giving up; the pass itself is
/// retried later, with backoff, by the workers.
const MAX_RETRIES: usize = 2;

impl S3Files {
    pub fn open(settings: &S3Settings) -> Result<Self, EventStoreError> {
        let timeout = settings.request_timeout;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_virtual_hosted_style_request(!settings.path_style)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(timeout)
                    .with_connect_timeout(timeout.min(Duration::from_secs(5)))
                    .with_allow_http(settings.endpoint.starts_with("http://")),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: MAX_RETRIES,
                retry_timeout: timeout,
            });
        if !settings.endpoint.is_empty() {
            builder = builder.with_endpoint(&settings.endpoint);
        }
        if !settings.access_key_id.is_empty() {
            builder = builder
                .with_access_key_id(settings.access_key_id.expose())
                .with_secret_access_key(settings.secret_access_key.expose());
        }
        let url = url::Url::parse(&format!("s3://{}", settings.bucket))
            .map_err(|e| EventStoreError::Io(std::io::Error::other(e)))?;
        let bucket = Arc::new(builder.build()?);
        Ok(Self {
            reads: Arc::new(KnownSizes::new(bucket.clone())),
            bucket,
            url,
            prefix: settings.prefix.clone(),
        })
    }

    fn key(&self, path: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(path)
        } else {
            ObjectPath::from(format!("{}/{path}", self.prefix))
        }
    }
}

#[async_trait]
impl FileBackend for S3Files {
    async fn put(&self, path: &str, bytes: Bytes) -> Result<(), EventStoreError> {
        self.bucket.put(&self.key(path), bytes.into()).await?;
        Ok(())
    }

    async fn get(&self, path: &str) -> Result<Bytes, EventStoreError> {
        Ok(self.bucket.get(&self.key(path)).await?.bytes().await?)
    }

    async fn rollup(&self, path: &str, size: u64) -> Result<Option<Rollup>, EventStoreError> {
        let key = self.key(path);
        // The footer is in the file's last bytes: one range request, or a second of
        // the length the first says it needs.
        let mut suffix = FOOTER_GUESS.min(size);
        loop {
            let tail = self.bucket.get_range(&key, size - suffix..size).await?;
            let mut reader = ParquetMetaDataReader::new();
            match reader.try_parse_sized(&tail, size) {
                Ok(()) => {
                    let metadata = reader.finish()?;
                    return Ok(Rollup::from_metadata(
                        metadata.file_metadata().key_value_metadata(),
                    ));
                }
                Err(ParquetError::NeedMoreData(needed))
                    if needed as u64 > suffix && needed as u64 <= size =>
                {
                    suffix = needed as u64;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn delete(&self, path: &str) -> Result<(), EventStoreError> {
        match self.bucket.delete(&self.key(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self) -> Result<Vec<Listed>, EventStoreError> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let objects: Vec<object_store::ObjectMeta> =
            self.bucket.list(prefix.as_ref()).try_collect().await?;
        let skip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        Ok(objects
            .into_iter()
            .filter_map(|o| {
                let key = o.location.as_ref();
                Some(Listed {
                    path: key.get(skip..)?.to_string(),
                    modified: o.last_modified,
                })
            })
            .collect())
    }

    fn register(&self, ctx: &SessionContext) {
        ctx.register_object_store(&self.url, self.reads.clone());
    }

    fn table_path(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.url.as_str().trim_end_matches('/'),
            self.key(path)
        )
    }

    fn catalogued(&self, files: &[crate::metadata::EventFile]) {
        for f in files {
            self.reads
                .learn(self.key(&f.path), f.byte_size, f.created_at);
        }
    }
}
