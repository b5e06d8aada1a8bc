//! [`LocalFiles`]: event files in a directory. A file is written beside its final name
//! (`.tmp`), fsync'd, renamed, and the directories' entries fsync'd, so a crash leaves
//! either the whole file or a stray.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;

use super::{FileBackend, Listed};
use crate::events::rollup::Rollup;
use crate::events::EventStoreError;

/// Event files under a directory.
#[derive(Debug, Clone)]
pub struct LocalFiles {
    root: PathBuf,
}

impl LocalFiles {
    /// The files under `root`, created if missing.
    pub fn open(root: PathBuf) -> Result<Self, EventStoreError> {
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Path) -> std::io::Result<T> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, EventStoreError>> {
        let root = self.root.clone();
        async move {
            tokio::task::spawn_blocking(move || work(&root))
                .await
                .map_err(std::io::Error::other)?
                .map_err(EventStoreError::from)
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn write_durably(root: &Path, path: &str, bytes: &[u8]) -> std::io::Result<()> {
    let full = root.join(path);
    let dir = full.parent().unwrap_or(root);
    std::fs::create_dir_all(dir)?;
    let tmp = full.with_extension("parquet.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &full)?;
    // The file's entry, and the entries of the directories above it up to the root
    // (new ones for a new project or day).
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| d.starts_with(root)) {
        sync_dir(d)?;
        at = d.parent();
    }
    Ok(())
}

/// Removes the directories above `file` (its day, then its project) that it left empty,
/// never the root. One that still holds a file stays.
fn remove_empty_parents(root: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir.filter(|d| d.starts_with(root) && *d != root) {
        if std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[async_trait]
impl FileBackend for LocalFiles {
    async fn put(&self, path: &str, bytes: Bytes) -> Result<(), EventStoreError> {
        let path = path.to_string();
        self.blocking(move |root| write_durably(root, &path, &bytes))
            .await
    }

    async fn get(&self, path: &str) -> Result<Bytes, EventStoreError> {
        let path = path.to_string();
        self.blocking(move |root| std::fs::read(root.join(path)).map(Bytes::from))
            .await
    }

    async fn rollup(&self, path: &str, _size: u64) -> Result<Option<Rollup>, EventStoreError> {
        let path = path.to_string();
        self.blocking(move |root| Rollup::read(&root.join(path)))
            .await
    }

    async fn delete(&self, path: &str) -> Result<(), EventStoreError> {
        let path = path.to_string();
        self.blocking(move |root| {
            let full = root.join(path);
            match std::fs::remove_file(&full) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
            remove_empty_parents(root, &full);
            Ok(())
        })
        .await
    }

    async fn list(&self) -> Result<Vec<Listed>, EventStoreError> {
        self.blocking(|root| {
            let mut listed = Vec::new();
            let mut stack = vec![root.to_path_buf()];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir)? {
                    let entry = entry?;
                    let full = entry.path();
                    if entry.file_type()?.is_dir() {
                        stack.push(full);
                        continue;
                    }
                    let Ok(relative) = full.strip_prefix(root) else {
                        continue;
                    };
                    let modified = match entry.metadata().and_then(|m| m.modified()) {
                        Ok(at) => DateTime::<Utc>::from(at),
                        // Removed meanwhile.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    };
                    let parts: Vec<String> = relative
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    listed.push(Listed {
                        path: parts.join("/"),
                        modified,
                    });
                }
            }
            Ok(listed)
        })
        .await
    }

    fn register(&self, _ctx: &SessionContext) {
        // Local paths are read through DataFusion's default store.
    }

    fn table_path(&self, path: &str) -> String {
        self.root.join(path).display().to_string()
    }

    fn catalogued(&self, _files: &[crate::metadata::EventFile]) {
        // A local file's size is one system call away.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_lists_and_deletes_files_whole() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFiles::open(dir.path().join("events")).unwrap();
        crate::testing::s3::check_file_backend(&files).await;
        // The emptied day and project directories went with the file; the root stays.
        assert!(dir.path().join("events").is_dir());
        assert_eq!(
            std::fs::read_dir(dir.path().join("events"))
                .unwrap()
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn an_interrupted_write_is_listed_as_a_stray_under_its_own_name() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFiles::open(dir.path().to_path_buf()).unwrap();
        std::fs::create_dir_all(dir.path().join("project=1/date=2026-01-02")).unwrap();
        std::fs::write(
            dir.path()
                .join("project=1/date=2026-01-02/p3-x.parquet.tmp"),
            b"PAR",
        )
        .unwrap();
        let listed = files.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].path, "project=1/date=2026-01-02/p3-x.parquet.tmp");
    }
}
