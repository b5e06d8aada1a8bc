//! The event file catalog, read for one project or for all.

use appizer_core::ProjectId;
use sqlx::Row;

use crate::metadata::{EventFile, StoreError};

use super::rows::{from_millis, parse_id};
use super::SqlMetadataStore;

impl SqlMetadataStore {
    pub(super) async fn event_files(
        &self,
        project: Option<ProjectId>,
    ) -> Result<Vec<EventFile>, StoreError> {
        const COLUMNS: &str = "path, project_id, date, row_count, byte_size, min_timestamp, \
             max_timestamp, max_queue_offset, created_at, persons_folded_at, queue_partition";
        let rows = match project {
            Some(p) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM event_files WHERE project_id = $1 ORDER BY date, path"
                ))
                .bind(p.to_string())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM event_files ORDER BY date, path"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|row| {
                Ok(EventFile {
                    path: row.try_get("path")?,
                    project_id: parse_id(&row.try_get::<String, _>("project_id")?, "project id")?,
                    date: row.try_get("date")?,
                    row_count: row.try_get::<i64, _>("row_count")? as u64,
                    byte_size: row.try_get::<i64, _>("byte_size")? as u64,
                    min_timestamp: row.try_get("min_timestamp")?,
                    max_timestamp: row.try_get("max_timestamp")?,
                    max_queue_offset: row.try_get::<i64, _>("max_queue_offset")? as u64,
                    partition: row.try_get::<i64, _>("queue_partition")? as u32,
                    created_at: from_millis(row.try_get("created_at")?)?,
                    persons_folded_at: row
                        .try_get::<Option<i64>, _>("persons_folded_at")?
                        .map(from_millis)
                        .transpose()?,
                })
            })
            .collect()
    }
}
