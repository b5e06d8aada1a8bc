//! [`KnownSizes`]: an object store that answers what a query asks of a catalogued file
//! before reading it (its size, by a HEAD request per file) from the catalog instead,
//! and passes every other request on. Event files never change once written, so the
//! catalog's size is the object's.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use parking_lot::RwLock;

/// Objects whose size is known at most: beyond, the oldest half is forgotten (a file
/// forgotten is asked for again, once).
const MAX_KNOWN: usize = 200_000;

#[derive(Debug)]
pub(super) struct KnownSizes {
    inner: Arc<dyn ObjectStore>,
    known: RwLock<HashMap<Path, (u64, DateTime<Utc>)>>,
}

impl KnownSizes {
    pub(super) fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            known: RwLock::default(),
        }
    }

    /// Records the size and time of a file as its catalog entry says.
    pub(super) fn learn(&self, location: Path, size: u64, written: DateTime<Utc>) {
        if self.known.read().contains_key(&location) {
            return;
        }
        let mut known = self.known.write();
        if known.len() >= MAX_KNOWN {
            let mut by_age: Vec<(DateTime<Utc>, Path)> =
                known.iter().map(|(p, (_, t))| (*t, p.clone())).collect();
            by_age.sort();
            for (_, old) in by_age.into_iter().take(MAX_KNOWN / 2) {
                known.remove(&old);
            }
        }
        known.insert(location, (size, written));
    }
}

impl std::fmt::Display for KnownSizes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KnownSizes({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for KnownSizes {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if options.head {
            let known = self.known.read().get(location).copied();
            if let Some((size, last_modified)) = known {
                return Ok(GetResult {
                    payload: GetResultPayload::Stream(Box::pin(futures_util::stream::empty())),
                    meta: ObjectMeta {
                        location: location.clone(),
                        last_modified,
                        size,
                        e_tag: None,
                        version: None,
                    },
                    range: 0..size,
                    attributes: Default::default(),
                });
            }
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    use super::*;

    #[tokio::test]
    async fn a_known_file_is_described_without_a_request_and_the_rest_passes_on() {
        let inner = Arc::new(InMemory::new());
        let store = KnownSizes::new(inner.clone());
        let stored = Path::from("project=1/date=2026-01-02/p0-a.parquet");
        store
            .put(&stored, PutPayload::from_static(b"PAR1 bytes"))
            .await
            .unwrap();
        // Not in the inner store at all: only the catalog knows it.
        let catalogued = Path::from("project=1/date=2026-01-02/p0-b.parquet");
        let at = Utc::now();
        store.learn(catalogued.clone(), 1234, at);
        let meta = store.head(&catalogued).await.unwrap();
        assert_eq!((meta.size, meta.last_modified), (1234, at));
        assert_eq!(store.head(&stored).await.unwrap().size, 10);
        assert_eq!(&store.get_range(&stored, 0..4).await.unwrap()[..], b"PAR1");
        assert!(store
            .head(&Path::from("project=1/absent.parquet"))
            .await
            .is_err());
    }
}
